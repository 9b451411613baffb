"""Past one machine, with real processes: two `python -m bot` processes (shards 0 and 1 of 2) and
one `python -m bot worker`, one throwaway PostgreSQL, a models folder each, all through the
loopback Discord. An activation on one shard is served on the other on its notification while
poems are being written on both; a retrain outlives the bot process that started it; a worker killed
mid-job is noticed and the next job runs; PostgreSQL restarts under them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest

from .botworld import TOKEN, asynchronous, bot_process, footer, still_writing
from .bundles import FIXTURES, make_bundle
from .loopback import LoopbackDiscord, Permission

pytest.importorskip("tensorflow", reason="the retrain scenarios need the train extra")
pytestmark = pytest.mark.timeout(400)

HEARTBEAT = 1.0
# A version made live reaches the other processes on its notification, or on their poll every
# 30 s where one was lost: a poem from it well inside that came by the notification.
NOTIFIED = 15.0


def guild_on(shard: int, n: int) -> int:
    """A guild id that Discord routes to `shard` of 2."""
    return ((2 * n + shard) << 22) | 1


def env_for(root: Path, url: str, guilds: list[int], shard: int | None) -> dict[str, str]:
    env = {
        "DISCORD_GUILD_IDS": ",".join(map(str, guilds)),
        "MODELS_DIR": str(root / "models"),
        "DATABASE_URL": url,
        "ORT_PROVIDERS": "cpu",
        "DEFAULT_STYLE": "verse",
        "USER_COOLDOWN_SECONDS": "0",
        "CHANNEL_MAX_POEMS": "100",
        "RETRAIN_WORKER": "queue",
        "WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "RETRAIN_TIMEOUT_SECONDS": "300",
    }
    if shard is not None:
        env |= {"SHARD_COUNT": "2", "SHARD_IDS": str(shard)}
    return env


async def seeded(url: str, timeout: float = 60.0) -> None:
    """Returns once some process has brought its live versions to the database (read with a
    plain connection: the table may not be there yet, and making it is the processes' job)."""
    import psycopg

    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(psycopg.Error):
                async with await psycopg.AsyncConnection.connect(url) as db:
                    cursor = await db.execute("SELECT count(*) FROM live_versions")
                    if (await cursor.fetchone())[0]:
                        return
            await asyncio.sleep(0.05)


async def poem_footer(discord, guild, member) -> str:
    record = await discord.invoke(guild, guild.channel("general"), member, "poem", {"length": 300})
    return footer(await record.final(timeout=30))


async def serves(discord, guild, member, version: str, timeout: float) -> float:
    """Seconds until a /poem in `guild` comes from `version`; fails after `timeout`."""
    start = time.monotonic()
    while True:
        record = await discord.invoke(
            guild, guild.channel("general"), member, "poem", {"length": 300}
        )
        message = await record.final(timeout=30)
        assert message.embeds, message.content
        if f"verse {version}" in footer(message):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{guild.name} still answers {footer(message)!r}")
        await asyncio.sleep(0.05)


def job_said(record) -> str:
    return " ".join(v.body.get("content", "") for m in record.messages for v in m.versions)


def job_now(record) -> str:
    return " ".join(m.content for m in record.messages)


@asynchronous
async def test_two_shards_and_a_worker_share_live_versions_and_jobs(tmp_path, postgres):
    url = postgres.new_database("shards_e2e")
    one, two, work = tmp_path / "shard0", tmp_path / "shard1", tmp_path / "worker"
    for root in (one, two):
        make_bundle(root / "models", "verse", "v1", seed=1, val_loss=2.0, scale=2.0)
    make_bundle(one / "models", "verse", "v2", seed=2, val_loss=2.1, scale=2.0)  # shard 0 only
    (one / "models" / "verse" / "ACTIVE").write_text("v1\n")
    (work / "models").mkdir(parents=True)
    # The corpus a retrain of verse reads, uploaded to the shard-1 process earlier.
    corpora = two / "data" / "corpora"
    corpora.mkdir(parents=True)
    (corpora / "verse.txt").write_text(
        (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8"), encoding="utf-8"
    )

    async with LoopbackDiscord(token=TOKEN, shard_count=2) as discord:
        discord.state.signal.in_progress = still_writing  # final(): the poem once finished
        g0 = discord.add_guild("Zero", guild_id=guild_on(0, 1))
        g1 = discord.add_guild("One", guild_id=guild_on(1, 1))
        operator = discord.add_user("operator")
        discord.set_owner(operator)
        ops = {
            g: g.add_member(operator, [g.add_role("ops", Permission.ADMINISTRATOR)])
            for g in (g0, g1)
        }
        readers = {g: g.add_member(discord.add_user(f"reader-{g.name}")) for g in (g0, g1)}
        guilds = [g0.id, g1.id]

        async def model(guild, subcommand, options=None):
            return await discord.invoke(
                guild,
                guild.channel("general"),
                ops[guild],
                "model",
                options or {},
                subcommand=subcommand,
            )

        async with contextlib.AsyncExitStack() as stack:
            start = lambda root, shard, **kw: stack.enter_async_context(  # noqa: E731
                bot_process(root, discord, env_for(root, url, guilds, shard), wait=False, **kw)
            )
            bot0 = await start(one, 0)
            # The first brings its live versions to the database before the second starts.
            await seeded(url)
            bot1 = await start(two, 1)
            worker = await start(work, None, args=("worker",))
            await discord.wait_until_connected(timeout=60)
            identified = sorted(c.identified_at for c in discord.gateway.connections)
            # Both shards are in bucket 0 (max_concurrency 1): their IDENTIFYs 5 s apart.
            assert identified[1] - identified[0] >= 4.9, identified
            await discord.wait_for(lambda: discord.guild_commands(g1), timeout=30)

            # 1. /model activate on shard 0 reaches shard 1 within 2 s, poems in flight on both.
            await serves(discord, g1, readers[g1], "v1", NOTIFIED)
            streaming = [
                await discord.invoke(
                    g, g.channel("general"), readers[g], "poem", {"length": 2000, "seed": s}
                )
                for g in (g0, g1)
                for s in (1, 2)
            ]
            record = await model(g0, "activate", {"style": "verse", "version": "v2"})
            said = await record.final(timeout=30)
            assert "now serves v2" in said.content, said.content
            await serves(discord, g1, readers[g1], "v2", NOTIFIED)
            for poem in streaming:
                assert "seed" in footer(await poem.final(timeout=60))
            assert (two / "models" / "verse" / "v2" / "card.json").is_file()  # fetched

            # 2. A retrain from shard 1 outlives shard 1's process; its message is finished.
            record = await model(g1, "retrain", {"style": "verse", "epochs": 1, "activate": True})
            await record.wait_for(lambda r: "training" in job_now(r) and r, timeout=60)
            bot1.process.kill()
            await bot1.process.wait()
            bot1 = await start(two, 1)
            await discord.wait_until_connected(timeout=60)
            done = await record.wait_for(
                lambda r: ("succeeded" in job_now(r) or "failed" in job_now(r)) and job_now(r),
                timeout=240,
            )
            assert "v3 is live" in done, job_said(record)
            await serves(discord, g1, readers[g1], "v3", NOTIFIED)
            await serves(discord, g0, readers[g0], "v3", NOTIFIED)
            listing = await (await model(g0, "jobs")).final(timeout=10)
            assert "verse · succeeded" in listing.content

            # 3. The worker killed mid-job: queued again for its missed heartbeats (within a
            # minute, long before the job's own 300 s timeout), nothing live changes meanwhile;
            # the next worker goes on with it to the end, and then the next job runs (here
            # cancelled from the other shard).
            record = await model(g1, "retrain", {"style": "verse", "epochs": 1, "activate": True})
            await record.wait_for(lambda r: "training" in job_now(r) and r, timeout=60)
            worker.process.send_signal(signal.SIGKILL)
            again = await record.wait_for(lambda r: "queued again" in job_now(r) and job_now(r), 60)
            assert "stopped answering" in again and "1 of 2" in again
            assert "verse v3" in await poem_footer(discord, g0, readers[g0])
            worker = await start(work, None, args=("worker",))
            done = await record.wait_for(
                lambda r: ("succeeded" in job_now(r) or "failed" in job_now(r)) and job_now(r),
                timeout=240,
            )
            assert "v4 is live" in done, job_said(record)
            await serves(discord, g0, readers[g0], "v4", NOTIFIED)
            record = await model(g1, "retrain", {"style": "verse", "epochs": 1})
            await record.wait_for(lambda r: "training" in job_now(r) and r, timeout=60)
            job_id = int(job_now(record).split("**Job ")[1].split("**")[0])
            cancel = await (await model(g0, "cancel", {"job": job_id})).final(timeout=10)
            assert "being cancelled" in cancel.content
            await record.wait_for(lambda r: "cancelled" in job_now(r), timeout=30)

            # 4. PostgreSQL restarts: both go on serving, listen again, and follow.
            postgres.stop()
            assert "verse v4" in await poem_footer(discord, g0, readers[g0])
            assert "verse v4" in await poem_footer(discord, g1, readers[g1])
            postgres.start()
            # Whether shard 0 listens again before or after this, it follows: it reads every
            # pointer when it reconnects (backoff at most 2 s).
            record = await model(g1, "activate", {"style": "verse", "version": "v1"})
            assert "now serves v1" in (await record.final(timeout=30)).content
            await serves(discord, g0, readers[g0], "v1", NOTIFIED)

            for process in (bot0, bot1, worker):
                process.process.send_signal(signal.SIGTERM)
            for process in (bot0, bot1, worker):
                assert await asyncio.wait_for(process.process.wait(), 60) == 0
        assert {v.rule for v in discord.violations} <= set(), discord.violations
