"""The serving process's cycle collector, run on the event loop instead of wherever it lands.

Python's collector runs when allocations pass a threshold, in whichever thread allocates, and
holds the GIL throughout. In the bot that was mostly a step thread (they allocate the most),
running at a lower priority than the event loop (scheduler.STEP_THREAD_NICE): a full
collection of the 256k objects start-up leaves took 35 ms on a quiet core and far longer
when other work took the deprioritised thread's core, and every interaction that arrived
meanwhile waited for the GIL before it could be acknowledged. `make load` showed it as an
acknowledgement p99 of 100-200 ms on a quiet 2-core machine whose p50 was 2 ms.

So, once the models are loaded: collect once and freeze what is alive (`gc.freeze`: start-up's
objects leave the collector's generations and are never walked again), turn automatic
collection off, and collect on the event loop every `period` seconds: the young generations
each time (only what the last period made and kept), everything unfrozen every
`full_every`-th time. The pauses are short, at the loop's own priority, and between callbacks,
never in the middle of one. Frozen objects are still freed by their reference counts; only
reference cycles among them stay until the process ends (a model a hot swap retires is freed
by its reference counts; any cycle inside it would stay).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

log = logging.getLogger(__name__)


class LoopCollector:
    """Start after the models are loaded, stop before the loop closes; period 0: Python's own
    collector, untouched."""

    def __init__(self, period: float = 0.5, full_every: int = 60) -> None:
        if period < 0 or full_every < 1:
            raise ValueError("period must be 0 or more seconds and full_every at least 1")
        self.period = period
        self.full_every = full_every
        self.collections = 0  # by this collector, since start
        self._task: asyncio.Task | None = None
        self._was_enabled = True

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.period == 0 or self.running:
            return
        gc.collect()
        gc.freeze()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc")
        log.info(
            "garbage collection on the event loop every %.2f s (%d start-up objects frozen)",
            self.period,
            gc.get_freeze_count(),
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.collections += 1
            gc.collect(2 if self.collections % self.full_every == 0 else 1)

    async def stop(self) -> None:
        """Cancel the loop's collections and give the process its automatic collector back."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._was_enabled:
            gc.enable()
