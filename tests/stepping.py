"""Handles on time for tests whose outcome would otherwise depend on how fast the machine steps
or how long a sleep lasts: a step model the test holds and lets go (`HeldSteps`, `holding`), a
clock it moves by hand (`ManualClock`), and waiting on a condition instead of sleeping
(`until`).

`POEMBOT_STEP_PACE` reruns every held model at another speed, to show that no test depends on
it: `instant` (every step returns at once, its logits looked up in a table of each character's
first step, so the text is not the model's) or the seconds every step takes at least (a slow
machine), e.g. `0.005`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bot.engine.scheduler import Scheduler
from bot.engine.sessions import StepModel

HOLD_LIMIT = 30.0  # seconds a held step waits for the test before it fails the step


class HeldSteps:
    """A StepModel whose steps wait at a gate the test opens: all at once (`release`), a
    number of them (`allow`), or those whose batch a rule lets through (`let`). It counts the
    steps that started (`entered`: the last may be waiting at the gate) and the steps done
    (`steps`), and the test can wait for step N to start (`reached`). Everything else is the
    wrapped model's."""

    def __init__(self, model: StepModel, delay: float | None = None) -> None:
        pace = os.environ.get("POEMBOT_STEP_PACE", "")
        self.model = model
        self.instant = pace == "instant"
        if delay is None:
            delay = 0.0 if self.instant else float(pace or 0)
        self.delay = delay
        self.entered = 0
        self.steps = 0
        self._rule: Callable[[np.ndarray], bool] = lambda ids: False
        self._permits = 0
        self._changed = threading.Condition()
        self._table: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def release(self) -> None:
        """Every step from now on goes through."""
        self.let(lambda ids: True)

    def let(self, rule: Callable[[np.ndarray], bool]) -> None:
        """Steps whose batch of ids `rule` accepts go through (the others wait for `allow`)."""
        with self._changed:
            self._rule = rule
            self._changed.notify_all()

    def allow(self, steps: int = 1) -> None:
        """`steps` more steps go through, whatever their batch."""
        with self._changed:
            self._permits += steps
            self._changed.notify_all()

    async def reached(self, step: int) -> None:
        """Returns once step number `step` (from 1) has started."""
        await asyncio.to_thread(self._wait, lambda: self.entered >= step, f"step {step}")

    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, HOLD_LIMIT):
                raise AssertionError(f"{what} did not start within {HOLD_LIMIT} s")

    def step(self, ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        with self._changed:
            self.entered += 1
            number = self.entered
            self._changed.notify_all()
            if not self._changed.wait_for(lambda: self._rule(ids) or self._permits, HOLD_LIMIT):
                raise TimeoutError(f"step {number} was held {HOLD_LIMIT} s: the test never let go")
            if not self._rule(ids):
                self._permits -= 1
        result = self._instant(ids, states) if self.instant else self.model.step(ids, states)
        time.sleep(self.delay)
        with self._changed:
            self.steps += 1
            self._changed.notify_all()
        return result

    def _instant(self, ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        if self._table is None:
            size = len(self.model.bundle.vocab)
            zero = self.model.to_device(self.model.zero_states(size))
            self._table = self.model.step(np.arange(size), zero)[0]
        return self._table[ids], states


@contextlib.contextmanager
def holding(scheduler: Scheduler, delay: float | None = None) -> Iterator[HeldSteps]:
    """The scheduler's steps held (`HeldSteps`) until the block ends, then all let through."""
    held = HeldSteps(scheduler.model, delay)
    scheduler.model = held
    try:
        yield held
    finally:
        held.release()


def paced(scheduler: Scheduler, seconds: float) -> HeldSteps:
    """Every step of the scheduler takes at least `seconds` from now on: a floor under how
    fast it writes, whatever the machine."""
    stepper = HeldSteps(scheduler.model, seconds)
    stepper.release()
    scheduler.model = stepper
    return stepper


class ManualClock:
    """Seconds that pass only when the test says so, for code that takes a `clock`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> float:
    """Seconds until `predicate()` held, checked every 10 ms; fails after `timeout` (a bound
    only a broken machine reaches, not a measure of the code's speed)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start
