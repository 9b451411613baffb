"""Several processes on one PostgreSQL (here: registries and queues in one test process, each
with a models folder of its own): a version made live in one is served by the others on its
notification, fetched from the database where they lack it, with no poem in flight dropped;
after the database restarts they follow again; IDENTIFY is paced per bucket across
processes; retrain jobs are claimed once, failed when their worker goes silent, and cancelled
from anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import pytest

from bot.discord_app.sharding import IdentifyGate
from bot.engine.registry import Registry
from bot.engine.scheduler import Limits, Request
from bot.stores.job_queue import JobMessage, JobQueue
from bot.stores.live_versions import SharedModels

from .botworld import asynchronous
from .bundles import make_bundle
from .stepping import holding, until

_names = itertools.count()


@pytest.fixture
def url(postgres) -> str:
    return postgres.new_database(f"live_{next(_names)}")


@contextlib.asynccontextmanager
async def process(models, url: str, poll: float = 30.0):
    """A registry as one bot process runs it: load the folder, then follow the database;
    entered once it has read (and where empty, filled) the shared pointers."""
    registry = Registry(models, "cpu", Limits(), shared=SharedModels(url, poll_seconds=poll))
    await registry.reload()
    read, follow = asyncio.Event(), registry.follow

    async def followed(pointers: dict[str, str]) -> list[str]:
        try:
            return await follow(pointers)
        finally:
            read.set()

    registry.follow = followed  # the registry's own, and word that it ran
    registry.start_following()
    try:
        await asyncio.wait_for(read.wait(), 30)
        yield registry
    finally:
        await registry.close()


def live(registry: Registry, style: str = "verse") -> str | None:
    try:
        return registry.live(style).version
    except LookupError:
        return None


@asynchronous
async def test_an_activation_in_one_process_reaches_another_that_lacks_the_bundle(
    tmp_path, url, postgres
):
    a, b = tmp_path / "a", tmp_path / "b"
    make_bundle(a, "verse", "v1", seed=1)
    make_bundle(a, "verse", "v2", seed=2, val_loss=2.5)
    (a / "verse" / "ACTIVE").write_text("v1\n")
    make_bundle(b, "verse", "v1", seed=1)
    # The first process to start brings its live versions to the database.
    async with process(a, url) as first, process(b, url) as second:
        assert (await first.shared.pointers()) == {"verse": "v1"}
        # A poem starts on the second process before the swap, held at its first step...
        with holding(second.live("verse").scheduler) as held:
            in_flight = asyncio.create_task(second.generate("verse", Request(length=600)))
            await held.reached(1)
            await first.activate("verse", "v2")
            # The second polls every 30 s: a swap well inside that came by the notification.
            await until(lambda: live(second) == "v2", 10.0, "the swap in the second")
            assert not in_flight.done()
        assert (b / "verse" / "v2" / "model.onnx").is_file()  # fetched from the database
        assert (b / "verse" / "ACTIVE").read_text().strip() == "v2"
        # ...and finishes on the version it started with; new poems get the new one.
        assert (await in_flight).version == "v1"
        assert (await second.generate("verse", Request(length=20))).version == "v2"

        # The database restarts: both go on serving, listen again, and still follow.
        postgres.stop()
        assert (await second.generate("verse", Request(length=20))).version == "v2"
        postgres.start()
        # Whether the first listens again before or after this, it follows: it reads
        # every pointer when it reconnects (backoff up to 2 s).
        await second.activate("verse", "v1")
        await until(lambda: live(first) == "v1", 10.0, "the swap after the restart")


@asynchronous
async def test_a_lost_notification_is_made_good_by_the_slow_poll(tmp_path, url):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        make_bundle(folder, "verse", "v1", seed=1)
        make_bundle(folder, "verse", "v2", seed=2)
        (folder / "verse" / "ACTIVE").write_text("v1\n")
    async with process(a, url) as first, process(b, url, poll=0.5) as second:
        # A pointer changed with no NOTIFY (as when one is lost): the poll finds it.
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            await db.execute(
                "INSERT INTO bundle_versions VALUES ('verse', 'v2', 0) ON CONFLICT DO NOTHING"
            )
            await db.execute("UPDATE live_versions SET version = 'v2'")
        await until(lambda: live(second) == "v2", 10.0, "the poll")
        assert live(first) == "v1"  # its poll is 30 s, and no notification came


@asynchronous
async def test_identify_is_paced_per_bucket_across_processes(url):
    one, two = IdentifyGate(url, interval=60.0), IdentifyGate(url, interval=60.0)
    try:
        await one.wait(0, max_concurrency=2)  # bucket 0 held for a minute
        again = asyncio.create_task(two.wait(2, max_concurrency=2))  # bucket 0, other process
        await asyncio.wait_for(two.wait(1, max_concurrency=2), 30)  # another bucket: through
        assert not again.done()
        await one.close()  # the process holding bucket 0 ends: it is free at once
        await asyncio.wait_for(again, 30)
    finally:
        await one.close()
        await two.close()
    # The interval itself, a wait the gate enforces (a lower bound however slow the machine).
    one, two = IdentifyGate(url, interval=1.0), IdentifyGate(url, interval=1.0)
    try:
        start = time.monotonic()
        await one.wait(0, max_concurrency=2)
        await two.wait(2, max_concurrency=2)  # bucket 0 again, from the other process
        assert time.monotonic() - start >= 0.95
    finally:
        await one.close()
        await two.close()


def _message() -> JobMessage:
    return JobMessage(guild_id=None, channel_id=1, application_id=2, token="t", token_at=0.0)


async def _enqueue(queue: JobQueue, style: str):
    return await queue.enqueue(style, "shakespeare", [], 1, None, 7, [], _message())


@asynchronous
async def test_jobs_are_claimed_once_failed_when_silent_and_cancelled_from_anywhere(url):
    bot, other_bot = JobQueue(url, heartbeat=0.2), JobQueue(url, heartbeat=0.2)
    first = await _enqueue(bot, "verse")
    with pytest.raises(ValueError, match="already queued"):
        await _enqueue(other_bot, "verse")
    second = await _enqueue(bot, "tang")
    claims = await asyncio.gather(bot.claim("w1"), other_bot.claim("w2"), bot.claim("w3"))
    taken = sorted(c.job.id for c in claims if c is not None)
    assert taken == [first.id, second.id]  # each job once, the third claim finds none
    runner = next(c for c in claims if c is not None and c.job.id == first.id)
    worker = ["w1", "w2", "w3"][claims.index(runner)]
    # The worker of the first job keeps beating; the other's goes silent and is failed.
    # (0.6 s of silence fails a job: each reap comes right after the runner's beat, and the
    # sleeps alone outlast the silent one's 0.6 s, however slow the machine.)
    for _ in range(5):
        await asyncio.sleep(0.15)
        assert await bot.beat(runner.job, worker) is False
        await other_bot.reap()
    jobs = {j.id: j for j in await other_bot.listing()}
    assert jobs[first.id].status == "training"
    assert jobs[second.id].status == "failed"
    assert "stopped answering (no heartbeat for" in jobs[second.id].detail
    # A cancel from another process reaches the worker at its next heartbeat.
    await other_bot.cancel(first.id)
    assert await bot.beat(runner.job, worker) is True
    queued = await _enqueue(bot, "tang")
    assert (await other_bot.cancel(queued.id)).status == "cancelled"
    with pytest.raises(ValueError, match="already cancelled"):
        await bot.cancel(queued.id)
    with pytest.raises(LookupError):
        await bot.cancel(999)
