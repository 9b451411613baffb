"""Abuse limits on /poem: a per-user cooldown and a cap on poems being written per channel.

The engine's queue bound protects the machine; these keep one user or one busy channel from
taking all of it. State is two small dicts, pruned as they are used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Throttled(Exception):
    """Over a limit; `retry_after` seconds is when trying again will work. `kind` says which
    ("cooldown": this user's; "channel": the channel's cap, with `count` poems being written)."""

    def __init__(self, message: str, retry_after: float, kind: str = "", count: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind
        self.count = count

    @property
    def seconds(self) -> int:
        """The wait in whole seconds, as the message says it."""
        return math.ceil(self.retry_after)


class Throttle:
    def __init__(
        self,
        user_cooldown: float,
        channel_concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user_cooldown = user_cooldown
        self.channel_concurrency = channel_concurrency
        self.clock = clock
        self._last_start: dict[int, float] = {}
        self._writing: dict[int, list[float]] = {}  # channel -> expected ends of its poems

    def check(self, user_id: int, channel_id: int) -> None:
        """Throttled if `take` would refuse now; changes nothing (an answer before any wait)."""
        self._refusal(user_id, channel_id, self.clock())

    def take(self, user_id: int, channel_id: int, seconds: float = 0.0) -> Slot:
        """One of the channel's slots, held until the returned Slot is released (or its `with`
        block ends); `seconds` is how long the poem is expected to take. Throttled if the user
        is inside their cooldown or the channel is full (with when its first poem should be
        done)."""
        now = self.clock()
        self._refusal(user_id, channel_id, now)
        self._last_start[user_id] = now
        end = now + seconds
        self._writing.setdefault(channel_id, []).append(end)
        return Slot(self._writing, channel_id, end)

    def _refusal(self, user_id: int, channel_id: int, now: float) -> None:
        if len(self._last_start) > 10_000:  # keep memory bounded under a flood of users
            horizon = now - self.user_cooldown
            self._last_start = {u: t for u, t in self._last_start.items() if t > horizon}
        wait = self._last_start.get(user_id, -math.inf) + self.user_cooldown - now
        if wait > 0:
            raise Throttled(
                f"You can ask for another poem in {math.ceil(wait)} s.", wait, "cooldown"
            )
        ends = self._writing.get(channel_id, [])
        if len(ends) >= self.channel_concurrency:
            # A poem running late still frees its slot soon: never promise less than a second.
            wait = max(1.0, min(ends) - now)
            raise Throttled(
                f"{len(ends)} poems are being written in this channel; "
                f"try again in {math.ceil(wait)} s.",
                wait,
                "channel",
                len(ends),
            )


class Slot:
    """A channel's slot, held from `take` until `release` (or the end of its `with` block)."""

    def __init__(self, writing: dict[int, list[float]], channel_id: int, end: float) -> None:
        self._writing, self._channel_id, self._end = writing, channel_id, end
        self._held = True

    def release(self) -> None:
        """Free the slot (once: later calls do nothing)."""
        if not self._held:
            return
        self._held = False
        ends = self._writing[self._channel_id]
        ends.remove(self._end)
        if not ends:
            del self._writing[self._channel_id]

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
