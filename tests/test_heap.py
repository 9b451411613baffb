"""The serving process collects its garbage on the event loop (bot/engine/heap.py): garbage
is still freed, the process gets Python's collector back when it stops, and GC_SECONDS is
checked like every setting."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from bot.config import ConfigError, Settings
from bot.engine.heap import LoopCollector

from .botworld import asynchronous


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _drop_a_cycle(freed: asyncio.Event) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # only the cycle collector can free these
    weakref.finalize(a, freed.set)


@pytest.fixture
def restore_gc():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


@asynchronous
async def test_reference_cycles_are_still_freed_while_the_loop_collects(restore_gc):
    collector = LoopCollector(period=0.02, full_every=3)
    collector.start()
    try:
        assert not gc.isenabled(), "allocations must no longer trigger collections"
        assert gc.get_freeze_count() > 0, "start-up's objects are frozen out of the collector"
        for _ in range(3):  # young and full collections both free them
            freed = asyncio.Event()
            _drop_a_cycle(freed)
            await asyncio.wait_for(freed.wait(), timeout=30)
        assert collector.collections >= 1
    finally:
        await collector.stop()
    assert gc.isenabled(), "stopping gives the process its automatic collector back"
    assert not collector.running


@asynchronous
async def test_period_zero_leaves_pythons_collector_alone(restore_gc):
    collector = LoopCollector(period=0)
    frozen = gc.get_freeze_count()
    collector.start()
    assert gc.isenabled() and not collector.running
    assert gc.get_freeze_count() == frozen
    await collector.stop()
    assert gc.isenabled()


@pytest.mark.parametrize("raw", ["-1", "soon"])
def test_a_bad_gc_seconds_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv("GC_SECONDS", raw)
    with pytest.raises(ConfigError, match="GC_SECONDS"):
        Settings.from_env()
