"""A reply that shows the poem as it is written: the deferred response edited in place at most
once every `every` seconds (STREAM_EDIT_SECONDS, 1 by default), one edit in flight at a time,
each carrying everything written so far (so an edit held up by a rate limit is never followed
by a queue of stale ones). `every` <= 0 turns it off.

A poem finished within `every` seconds is never edited here: its one message is the finished
poem. discord.py honours the rate limits Discord announces (it waits out a bucket whose
`X-RateLimit-Remaining` reached 0, and retries a 429 after its `retry_after`); this class only
makes sure there is never more than one edit waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import discord

log = logging.getLogger(__name__)

EDIT_SECONDS = 1.0
# Discord lets a bot write one interaction's messages 5 times per 5 s: the stream takes at
# most 4 of them in any 5 s, so that the finished poem never waits for the window to reopen.
BURST, WINDOW = 4, 5.0

Render = Callable[[str], dict[str, Any] | None]  # text so far -> the edit's fields (None: stop)


class LiveReply:
    def __init__(
        self,
        interaction: discord.Interaction,
        render: Render,
        present: Callable[[str], str] = lambda text: text,
        every: float = EDIT_SECONDS,
        prompt: str = "",
    ) -> None:
        """`render` makes an edit's fields from the text so far (shown through `present`);
        the poem begins with `prompt`, which the engine's listener does not repeat."""
        self.interaction = interaction
        self.render = render
        self.present = present
        self.every = every
        self.edits = 0
        self._text: list[str] = [prompt]
        self._shown = len(prompt)  # characters already shown (the prompt: by the defer)
        self._sent: deque[float] = deque(maxlen=BURST)  # when the last edits were sent
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="live-reply") if every > 0 else None

    def heard(self, text: str) -> None:
        """The engine's listener: more of the poem was written."""
        self._text.append(text)

    async def close(self) -> None:
        """Stop editing; returns once no edit is in flight (the final answer comes next)."""
        self._done.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        next_at = time.monotonic() + self.every
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._done.wait(), max(0.0, next_at - time.monotonic()))
            if self._done.is_set():
                return
            now = time.monotonic()
            if len(self._sent) == BURST and now < self._sent[0] + WINDOW:
                next_at = self._sent[0] + WINDOW  # keep one write for the finished poem
                continue
            written = "".join(self._text)
            next_at = now + self.every
            if len(written) == self._shown:
                continue
            fields = self.render(self.present(written))
            if fields is None:  # too long to show whole: the finished poem will say the rest
                return
            self._sent.append(now)
            try:
                await self.interaction.edit_original_response(**fields)
            except discord.HTTPException as err:
                log.warning("could not show the poem being written: %s", err)
                return
            self.edits += 1
            self._shown = len(written)
