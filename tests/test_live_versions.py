"""Several processes on one PostgreSQL (here: registries and queues in one test process, each
with a models folder of its own): a version made live in one is served by the others on its
notification, fetched from the database where they lack it, with no poem in flight dropped;
after the database restarts they follow again; IDENTIFY is paced per bucket across
processes; retrain jobs are claimed once, failed when their worker goes silent, and cancelled
from anywhere, and their versions named in the database. Through the loopback and real
processes: /model list shows the versions only the database holds and activates them; an idle
bot process opens no connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sqlite3
import time

import pytest

from bot.discord_app.sharding import IdentifyGate
from bot.engine.registry import Registry
from bot.engine.scheduler import Limits, Request
from bot.stores import job_queue
from bot.stores.job_queue import JobMessage, JobQueue
from bot.stores.live_versions import SharedModels

from .botworld import (
    TOKEN,
    asynchronous,
    bot_process,
    bot_world,
    footer,
    make_models,
    make_settings,
)
from .bundles import make_bundle
from .loopback import LoopbackDiscord
from .stepping import holding, until
from .test_bot_process import process_env

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
async def test_jobs_are_claimed_once_queued_again_when_silent_and_cancelled_from_anywhere(url):
    bot, other_bot = JobQueue(url, heartbeat=0.2), JobQueue(url, heartbeat=0.2)
    first = await _enqueue(bot, "verse")
    with pytest.raises(ValueError, match="already queued"):
        await _enqueue(other_bot, "verse")
    second = await _enqueue(bot, "tang")
    claims = await asyncio.gather(bot.claim("w1"), other_bot.claim("w2"), bot.claim("w3"))
    taken = sorted(c.job.id for c in claims if c is not None)
    assert taken == [first.id, second.id]  # each job once, the third claim finds none
    assert all(c.requeued == 0 for c in claims if c is not None)
    runner = next(c for c in claims if c is not None and c.job.id == first.id)
    worker = ["w1", "w2", "w3"][claims.index(runner)]
    silent = ["w1", "w2", "w3"][next(i for i, c in enumerate(claims) if c and c is not runner)]

    async def outlast_silence() -> dict:
        # The worker of the first job keeps beating; the other's goes silent. (0.6 s of
        # silence: each reap comes right after the runner's beat, and the sleeps alone outlast
        # the silent one's 0.6 s, however slow the machine.)
        for _ in range(5):
            await asyncio.sleep(0.15)
            assert await bot.beat(runner.job, worker) is False
            await other_bot.reap()
        return {j.id: j for j in await other_bot.listing()}

    # A silent worker's job is queued again (twice), for another worker to go on with; the
    # silent one may no longer save it.
    for attempt in (1, 2):
        jobs = await outlast_silence()
        assert jobs[first.id].status == "training"
        assert jobs[second.id].status == "queued", jobs[second.id]
        assert "stopped answering (no heartbeat for" in jobs[second.id].detail
        assert f"queued again, to go on where it was ({attempt} of 2)" in jobs[second.id].detail
        assert await bot.save(jobs[second.id], silent) is False
        again = await other_bot.claim(f"w{3 + attempt}")
        assert again is not None and again.job.id == second.id and again.requeued == attempt
        silent = f"w{3 + attempt}"
    # The third silence fails it, with the reason.
    jobs = await outlast_silence()
    assert jobs[second.id].status == "failed"
    assert "stopped answering" in jobs[second.id].detail
    assert "nothing live changed" in jobs[second.id].detail
    # A cancel from another process reaches the worker at its next heartbeat.
    await other_bot.cancel(first.id)
    assert await bot.beat(runner.job, worker) is True
    queued = await _enqueue(bot, "tang")
    assert (await other_bot.cancel(queued.id)).status == "cancelled"
    with pytest.raises(ValueError, match="already cancelled"):
        await bot.cancel(queued.id)
    with pytest.raises(LookupError):
        await bot.cancel(999)


@asynchronous
async def test_on_sqlite_a_silent_job_is_failed_and_an_older_database_still_opens(tmp_path):
    # One process serves SQLite: its own restart resumes its jobs (tests/test_job_restart.py),
    # so a job that goes silent while it runs is failed, not queued again. A database made
    # before jobs were queued again (no attempts column) opens and works.
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        job_queue._SCHEMA.format(**job_queue._SQLITE).replace(
            ",\n    attempts INTEGER NOT NULL DEFAULT 0", ""
        )
    )
    old.close()
    assert "attempts" not in {
        r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(retrain_jobs)")
    }
    queue = JobQueue(f"sqlite:///{path}", heartbeat=0.05)
    try:
        job = await _enqueue(queue, "verse")
        claimed = await queue.claim("w1")
        assert claimed is not None and claimed.job.id == job.id and claimed.requeued == 0
        await asyncio.sleep(0.2)  # three heartbeats of 0.05 s missed
        assert await queue.reap() == [(job.id, "failed")]
        (failed,) = await queue.listing()
        assert failed.status == "failed" and "stopped answering" in failed.detail
    finally:
        await queue.close()


@asynchronous
async def test_version_names_are_given_in_the_database_so_processes_never_collide(url):
    # Two bot processes training locally: each names its job's version from its own folder
    # (v1, v2 here) and the database, where every name a job was given is kept.
    one, two = JobQueue(url), JobQueue(url)
    try:
        first = (await _enqueue(one, "verse")).id
        claimed = await one.claim("process-1")
        assert claimed.job.id == first
        assert await one.name_version(claimed.job, {"v1", "v2"}) == "v3"
        claimed.job.status, claimed.job.detail = "failed", "export failed"
        assert await one.save(claimed.job, "process-1")  # v3 was never stored anywhere
        await _enqueue(two, "verse")
        claimed = await two.claim("process-2")
        assert await two.name_version(claimed.job, {"v1", "v2"}) == "v4"
        assert {j.version for j in await one.listing()} == {"v3", "v4"}
    finally:
        await one.close()
        await two.close()


@asynchronous
async def test_model_list_shows_versions_only_in_the_database_and_activates_them(tmp_path, url):
    models = make_models(tmp_path)
    elsewhere = tmp_path / "elsewhere"  # made by a worker or another bot process
    make_bundle(elsewhere, "verse", "v3", seed=4, val_loss=1.5, scale=2.0)
    make_bundle(elsewhere, "ballad", "v1", seed=5, val_loss=1.7, scale=2.0)
    shared = SharedModels(url)
    await shared.store("verse", "v3", elsewhere / "verse" / "v3")
    await shared.store("ballad", "v1", elsewhere / "ballad" / "v1")
    settings = make_settings(tmp_path, models, database_url=url)

    def fields(listing) -> dict[str, str]:
        return {f["name"]: f["value"] for f in listing.embeds[0]["fields"]}

    async with bot_world(tmp_path, settings=settings) as w:
        _, listing = await w.run("model", w.operator, subcommand="list")
        shown = fields(listing)
        assert "v3 · 1.500 nats/char" in shown["verse"], shown
        assert shown["verse"].count("not fetched here") == 1  # v1 and v2 are here
        assert "v1 · 1.700 nats/char" in shown["ballad"]
        assert "not fetched here" in shown["ballad"]

        for style, version, was in (("verse", "v3", "v1"), ("ballad", "v1", "nothing")):
            _, said = await w.run(
                "model", w.operator, {"style": style, "version": version}, subcommand="activate"
            )
            assert f"{style} now serves {version} (was {was})" in said.content, said.content
            assert (models / style / version / "card.json").is_file()
            _, poem = await w.poem({"style": style, "length": 30})
            assert f"{style} {version}" in footer(poem)
        _, listing = await w.run("model", w.operator, subcommand="list")
        shown = fields(listing)
        assert "not fetched" not in shown["verse"] + shown["ballad"]
        assert "v3 **live**" in shown["verse"] and "v1 **live**" in shown["ballad"]
        assert not w.discord.violations


IDLE_WINDOW = 10.0  # seconds: 50 heartbeats of the job loops, 50 polls of the live versions
BEAT = 0.2


async def _eventually(check, timeout: float, what: str):
    """The first truthy `await check()`, looked for every 0.1 s; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.1)
    return found


@asynchronous
async def test_an_idle_bot_process_opens_no_postgresql_connections(tmp_path, url, postgres):
    import psycopg

    models = make_models(tmp_path)
    database = url.rsplit("/", 1)[1]
    async with LoopbackDiscord(token=TOKEN) as discord:
        guild = discord.add_guild("Poets")
        # Its loops made to look often: a job-queue heartbeat and a live-version poll of 0.2 s.
        env = process_env(
            tmp_path,
            guild,
            models,
            DATABASE_URL=url,
            WORKER_HEARTBEAT_SECONDS=str(BEAT),
            LIVE_POLL_SECONDS=str(BEAT),
        )
        monitor = await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True)

        async def backends() -> list[tuple]:
            cursor = await monitor.execute(
                "SELECT pid, backend_start, now() - backend_start, query_start "
                "FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            return await cursor.fetchall()

        async def sessions() -> int:
            await monitor.execute("SELECT pg_stat_clear_snapshot()")
            cursor = await monitor.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
            )
            return (await cursor.fetchone())[0]

        async def settled() -> list[tuple]:
            # Start-up's connections (the IDENTIFY lock, seeding the pointers) are closed, and
            # those it keeps are old enough (10 s: PostgreSQL's idle flush) to be counted.
            rows = await backends()
            old = all(age.total_seconds() > 11 for _, _, age, _ in rows)
            return rows if len(rows) >= 3 and old else []

        async with monitor, bot_process(tmp_path, discord, env) as bot:
            await discord.wait_for(lambda: discord.guild_commands(guild), 30, "synced commands")
            before = await _eventually(settled, 60, "a settled set of connections")
            counted, started = await sessions(), time.monotonic()
            seen = set()
            while time.monotonic() - started < IDLE_WINDOW:
                rows = await backends()
                seen |= {(pid, start) for pid, start, _, _ in rows}
                await asyncio.sleep(0.05)
            assert seen == {(pid, start) for pid, start, _, _ in before}, (before, seen)
            assert await sessions() == counted  # none opened, however briefly
            # ...while its loops kept working on the connections it keeps.
            last_query = max(query for *_, query in before if query is not None)
            assert max(query for *_, query in rows if query is not None) > last_query
            bot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.process.wait(), 60) == 0
