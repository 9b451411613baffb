"""The answers being written: refused once the bot is stopping, waited for (bounded) before
the models and stores close, so a restart does not cut a poem off; those that outlast the wait
are cancelled, which tells their users (`acknowledged`) rather than leaving a reply that says
"writing…" for ever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from bot.discord_app.errors import UserError

log = logging.getLogger(__name__)


# Seconds the answers cancelled at the end of the grace get to tell their users so.
CUTOFF_SECONDS = 5.0


class AnswerGate:
    def __init__(self) -> None:
        self.stopping = False
        self._answering = 0
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[None]:
        """Around a command that writes: UserError once stopping, waited for by `drain`."""
        if self.stopping:
            raise UserError("I'm restarting; try again in a minute.")
        self._answering += 1
        self._idle.clear()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)
            self._answering -= 1
            if not self._answering:
                self._idle.set()

    async def drain(self, grace: float) -> None:
        """Stop taking answers and wait up to `grace` seconds for those in flight; cancel the
        rest, and give them CUTOFF_SECONDS to say so."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning(
                "%d answers still unfinished after %g s; cutting them off", self._answering, grace
            )
            unfinished = set(self._tasks)
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished, timeout=CUTOFF_SECONDS)
