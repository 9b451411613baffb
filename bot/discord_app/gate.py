"""The answers being written: refused once the bot is stopping, waited for (bounded) before
the models and stores close, so a restart does not cut a poem off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from bot.discord_app.errors import UserError

log = logging.getLogger(__name__)


class AnswerGate:
    def __init__(self) -> None:
        self.stopping = False
        self._answering = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[None]:
        """Around a command that writes: UserError once stopping, waited for by `drain`."""
        if self.stopping:
            raise UserError("I'm restarting; try again in a minute.")
        self._answering += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                self._idle.set()

    async def drain(self, grace: float) -> None:
        """Stop taking answers and wait up to `grace` seconds for those in flight."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning(
                "%d answers still unfinished after %g s; stopping anyway", self._answering, grace
            )
