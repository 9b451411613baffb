"""The bot as one of several processes: Discord's shards split between them (SHARD_COUNT,
SHARD_IDS; discord.py's AutoShardedClient), IDENTIFY coordinated across them, the shared live
versions followed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from bot.config import Settings
from bot.discord_app.client import PoemBot

log = logging.getLogger(__name__)

IDENTIFY_SECONDS = 5.0  # Discord allows one IDENTIFY per max_concurrency bucket per 5 s
IDENTIFY_LOCK = 0x706F6964  # first key of pg_advisory_lock(key, bucket)


class IdentifyGate:
    """Lets one IDENTIFY through per bucket (`shard_id % max_concurrency`) every 5 s: across
    every process through a PostgreSQL advisory lock on the bucket, held for 5 s after the
    IDENTIFY goes (the session holding it ends then; a process that dies frees it at once);
    without PostgreSQL, within this process."""

    def __init__(self, database_url: str | None, interval: float = IDENTIFY_SECONDS) -> None:
        self.database_url = database_url
        self.interval = interval
        self._local: dict[int, asyncio.Lock] = {}
        self._holding: set[asyncio.Task] = set()

    async def wait(self, shard_id: int | None, max_concurrency: int) -> None:
        bucket = (shard_id or 0) % max(max_concurrency, 1)
        if self.database_url is not None:
            try:
                db = await self._lock(bucket)
            except OSError as err:  # the database is down: do not hold the shards back
                log.warning("identify lock unavailable (%s); pacing this process alone", err)
            else:
                self._hold(db.close)
                return
        lock = self._local.setdefault(bucket, asyncio.Lock())
        await lock.acquire()
        self._hold(_released(lock))

    async def _lock(self, bucket: int) -> Any:
        import psycopg

        try:
            db = await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, connect_timeout=2, application_name="poembot"
            )
            await db.execute("SELECT pg_advisory_lock(%s, %s)", (IDENTIFY_LOCK, bucket))
        except psycopg.Error as err:
            raise OSError(str(err).strip()) from err
        return db

    def _hold(self, release: Any) -> None:
        async def hold() -> None:
            try:
                await asyncio.sleep(self.interval)
            finally:
                await release()

        task = asyncio.create_task(hold(), name="identify-bucket")
        self._holding.add(task)
        task.add_done_callback(self._holding.discard)

    async def close(self) -> None:
        for task in list(self._holding):
            task.cancel()
        await asyncio.gather(*self._holding, return_exceptions=True)


def _released(lock: asyncio.Lock) -> Any:
    async def release() -> None:
        lock.release()

    return release


class SharedPoemBot(PoemBot):
    """PoemBot as one process of several: follows the shared live versions, edits the
    messages of queued jobs of its guilds, and waits its turn to IDENTIFY."""

    def __init__(self, *, identify: IdentifyGate, **options: Any) -> None:
        super().__init__(**options)
        self.identify = identify
        self.max_concurrency = 1

    async def setup_hook(self) -> None:
        await super().setup_hook()
        self.registry.start_following()
        if isinstance(self, discord.AutoShardedClient):
            limits = await self.fetch_session_start_limits()
            self.max_concurrency = limits.max_concurrency

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        await self.identify.wait(shard_id, self.max_concurrency)
        log.info("shard %s identifies", shard_id)

    async def close(self) -> None:
        await self.identify.close()
        await super().close()


class ShardedPoemBot(SharedPoemBot, discord.AutoShardedClient):
    """SharedPoemBot connected for the shards SHARD_COUNT and SHARD_IDS name."""


def client_options(settings: Settings) -> dict[str, Any]:
    """What `build_client` needs for the settings: the plain PoemBot for one process on
    SQLite, SharedPoemBot with PostgreSQL, ShardedPoemBot with SHARD_COUNT."""
    if settings.shard_count is None and not settings.shared:
        return {}
    identify = IdentifyGate(settings.database_url if settings.shared else None)
    if settings.shard_count is None:
        return {"client_class": SharedPoemBot, "identify": identify}
    return {
        "client_class": ShardedPoemBot,
        "identify": identify,
        "shard_count": settings.shard_count,
        "shard_ids": list(settings.shard_ids) if settings.shard_ids is not None else None,
    }
