"""Abuse limits on /poem: a per-user cooldown and a cap on poems being written per channel.

The engine's queue bound protects the machine; these keep one user or one busy channel from
taking all of it. State is two small dicts, pruned as they are used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Throttled(Exception):
    """Over a limit; `retry_after` seconds is when trying again will work."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        self._writing: dict[int, int] = {}

    def take(self, user_id: int, channel_id: int) -> Slot:
        """One of the channel's slots, held until the returned Slot's `with` block ends;
        Throttled if the user is inside their cooldown or the channel is full."""
        now = self.clock()
        if len(self._last_start) > 10_000:  # keep memory bounded under a flood of users
            horizon = now - self.user_cooldown
            self._last_start = {u: t for u, t in self._last_start.items() if t > horizon}
        wait = self._last_start.get(user_id, -math.inf) + self.user_cooldown - now
        if wait > 0:
            raise Throttled(f"You can ask for another poem in {math.ceil(wait)} s.", wait)
        if self._writing.get(channel_id, 0) >= self.channel_concurrency:
            raise Throttled(
                f"{self.channel_concurrency} poems are being written in this channel; "
                "try again in a few seconds.",
                2.0,
            )
        self._last_start[user_id] = now
        self._writing[channel_id] = self._writing.get(channel_id, 0) + 1
        return Slot(self._writing, channel_id)


class Slot:
    def __init__(self, writing: dict[int, int], channel_id: int) -> None:
        self._writing, self._channel_id = writing, channel_id

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        left = self._writing[self._channel_id] - 1
        if left:
            self._writing[self._channel_id] = left
        else:
            del self._writing[self._channel_id]
