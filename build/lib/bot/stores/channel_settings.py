"""Per-channel settings (default temperature, style and reply format), kept across restarts,
and what each poem's buttons need to write again (its options and text: more than a button's
100-character custom_id holds).

`ChannelSettingsStore` is the interface and `SQLChannelSettings` its one implementation: the
same SQL on SQLite (the default, a file in WAL mode) or PostgreSQL (for several bot processes
sharing settings), chosen by DATABASE_URL. Only connecting differs between them. Calls run on
the store's own worker thread, so the event loop never waits on the database, and a slow
database cannot take the threads other work shares.

A database that cannot be reached does not stop poems: calls raise SettingsUnavailable with
the reason, and for a few seconds after a failed connection they fail at once instead of
queueing behind more connection attempts. A lost connection is opened again on a later call.

On PostgreSQL every change to a channel's settings is announced (NOTIFY on `CHANGED`, the
channel id as payload) in the transaction that makes it, so that the other processes' caches
(bot/stores/settings_cache.py) drop what they hold of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
TIMEOUT = 1.0  # seconds a statement (or a lock) may take before it fails, nothing changed
CONNECT_TIMEOUT = 2  # seconds, whole: libpq's connect_timeout takes an integer
RETRY_AFTER = 5.0  # seconds calls fail at once after a connection could not be made
CHANGED = "poembot_channel_settings"  # the NOTIFY channel of settings changes (PostgreSQL)


class SettingsUnavailable(Exception):
    """The store cannot be read or written (unreachable, locked, read-only, full); the
    message says which."""


@dataclass(frozen=True)
class ChannelSettings:
    temperature: float | None = None
    style: str | None = None
    format: str | None = None  # "embed" (the default) or "text"


@dataclass(frozen=True)
class PoemRecord:
    """A poem that was sent with buttons: who asked where, the options it was written with,
    and its text (the model's script), for Again and Continue."""

    id: int
    channel_id: int
    user_id: int
    style: str
    version: str
    options: dict[str, Any]  # the user's options (bot/discord_app: PoemOptions), as JSON
    text: str


class ChannelSettingsStore(Protocol):
    async def get(self, channel_id: int) -> ChannelSettings: ...

    async def update(
        self, channel_id: int, guild_id: int, **changes: float | str | None
    ) -> ChannelSettings: ...

    async def reset(self, channel_id: int) -> None: ...

    async def remember_poem(self, poem: PoemRecord) -> None: ...

    async def recall_poem(self, poem_id: int) -> PoemRecord | None: ...

    async def close(self) -> None: ...


# Written once for both databases: BIGINT holds Discord's 64-bit ids, DOUBLE PRECISION keeps a
# temperature as typed (PostgreSQL's REAL is 32-bit), and both accept this upsert. A SQLite
# file made by earlier versions (INTEGER, REAL, TEXT columns) works unchanged.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS channel_settings (
    channel_id BIGINT PRIMARY KEY,
    guild_id BIGINT NOT NULL,
    temperature DOUBLE PRECISION,
    style TEXT,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""
_COLUMNS = ("temperature", "style", "format")
_GET = "SELECT temperature, style, format FROM channel_settings WHERE channel_id = ?"
_RESET = "DELETE FROM channel_settings WHERE channel_id = ?"
# Columns added after the table's first release, added to older tables when they are opened.
_ADDED = {"format": "TEXT"}
_POEMS = """
CREATE TABLE IF NOT EXISTS poems (
    id BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    style TEXT NOT NULL,
    version TEXT NOT NULL,
    options TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""
# Pruning reads the oldest rows only: without this index each pruning scans the whole table,
# on the thread every settings read (before a /poem is acknowledged) waits behind.
_POEMS_BY_AGE = "CREATE INDEX IF NOT EXISTS poems_created_at ON poems (created_at)"
_REMEMBER = (
    "INSERT INTO poems (id, channel_id, user_id, style, version, options, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_RECALL = "SELECT id, channel_id, user_id, style, version, options, text FROM poems WHERE id = ?"
_FORGET = "DELETE FROM poems WHERE created_at < ?"
POEM_DAYS = 365  # a poem's buttons work this long; older records are deleted
PRUNE_EVERY = 1000  # poems remembered between two prunings (and one at each connection)


def _upsert(columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
    return (
        f"INSERT INTO channel_settings (channel_id, guild_id, {names}) VALUES (?, ?, {marks}) "
        f"ON CONFLICT (channel_id) DO UPDATE SET {updates}, updated_at = CURRENT_TIMESTAMP "
        f"RETURNING {', '.join(_COLUMNS)}"
    )


@dataclass(frozen=True)
class Backend:
    """What differs between databases: how to connect (a DB-API connection in autocommit
    mode), the driver's parameter marker and error class, a name for messages that carries
    no password, and the NOTIFY channel that announces changes (PostgreSQL only)."""

    name: str
    connect: Callable[[], Any]
    marker: str
    error: type[Exception]
    notify: str | None = None


def sqlite_backend(path: Path, timeout: float = TIMEOUT) -> Backend:
    path = Path(path)

    def connect() -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        return db

    return Backend(f"SQLite file {path}", connect, "?", sqlite3.Error)


def postgres_backend(url: str, timeout: float = TIMEOUT) -> Backend:
    try:
        import psycopg
    except ImportError as err:  # installed with the bot; missing only in a trimmed install
        raise ValueError("DATABASE_URL names PostgreSQL, but psycopg is not installed") from err
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    ms = int(timeout * 1000)

    def connect() -> Any:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            options=f"-c statement_timeout={ms} -c lock_timeout={ms}",
            application_name="poembot",
        )

    return Backend(f"PostgreSQL at {where}", connect, "%s", psycopg.Error, CHANGED)


class SQLChannelSettings:
    """The settings table on one connection, used from one worker thread."""

    def __init__(
        self, backend: Backend, retry_after: float = RETRY_AFTER, poem_days: float = POEM_DAYS
    ) -> None:
        self.backend = backend
        self.retry_after = retry_after
        self.poem_days = poem_days
        self._remembered = 0
        self._db: Any = None
        self._down_until = 0.0
        self._closed = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settings")

    # In the worker thread ---------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._db is None:
            if time.monotonic() < self._down_until:
                raise SettingsUnavailable(
                    f"the settings database ({self.backend.name}) could not be reached a moment ago"
                )
            db = None
            try:
                db = self.backend.connect()
                db.execute(_SCHEMA)
                db.execute(_POEMS)
                db.execute(_POEMS_BY_AGE)
                self._prune_quietly(db)
                have = {
                    c[0] for c in db.execute("SELECT * FROM channel_settings LIMIT 0").description
                }
                for column, kind in _ADDED.items():
                    # Another process may add it first: then its ALTER fails, harmlessly.
                    with contextlib.suppress(self.backend.error):
                        if column not in have:
                            db.execute(f"ALTER TABLE channel_settings ADD COLUMN {column} {kind}")
            except (self.backend.error, OSError) as err:  # OSError: the SQLite folder
                if db is not None:
                    with contextlib.suppress(self.backend.error):
                        db.close()
                self._down_until = time.monotonic() + self.retry_after
                log.error("settings database %s: cannot connect (%s)", self.backend.name, err)
                raise SettingsUnavailable(
                    f"the settings database ({self.backend.name}) cannot be reached ({err})"
                ) from err
            self._db, self._down_until = db, 0.0
        return self._db

    def _run(self, sql: str, params: tuple, verb: str, changed: int | None = None) -> list[tuple]:
        """The statement's rows; with `changed` (a channel id), a write announced with it."""
        db = self._connection()
        notify = self.backend.notify if changed is not None else None
        try:
            with db.transaction() if notify else contextlib.nullcontext():
                cursor = db.execute(sql.replace("?", self.backend.marker), params)
                rows = cursor.fetchall() if cursor.description else []
                if notify:
                    db.execute("SELECT pg_notify(%s, %s)", (notify, str(changed)))
            return rows
        except self.backend.error as err:  # locked, read-only, full, timed out, connection lost
            if getattr(db, "broken", False) or getattr(db, "closed", False):
                self._drop()
            raise SettingsUnavailable(
                f"the settings database cannot be {verb} ({str(err).strip()})"
            ) from err

    def _prune(self, db: Any) -> None:
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
            days=self.poem_days
        )
        # CURRENT_TIMESTAMP is UTC in SQLite; in PostgreSQL the column is compared as a time.
        db.execute(
            _FORGET.replace("?", self.backend.marker), (cutoff.strftime("%Y-%m-%d %H:%M:%S"),)
        )
        self._remembered = 0

    def _prune_now(self) -> None:
        try:
            self._prune_quietly(self._connection())
        except SettingsUnavailable as err:
            log.warning("old poems could not be deleted: %s", err)

    def _prune_quietly(self, db: Any) -> None:
        """Delete poems older than `poem_days`; a database that refuses only delays that."""
        try:
            self._prune(db)
        except self.backend.error as err:
            log.warning("old poems could not be deleted: %s", err)

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(self.backend.error):
                db.close()

    # On the event loop ------------------------------------------------------------------------
    async def _call(
        self, sql: str, params: tuple, verb: str, changed: int | None = None
    ) -> list[tuple]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._run, sql, params, verb, changed)

    async def get(self, channel_id: int) -> ChannelSettings:
        rows = await self._call(_GET, (channel_id,), "read")
        return ChannelSettings(*rows[0]) if rows else ChannelSettings()

    async def update(
        self, channel_id: int, guild_id: int, **changes: float | str | None
    ) -> ChannelSettings:
        """Change some of the channel's settings; all of them as they now stand."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no channel setting named {', '.join(sorted(unknown))}")
        if not changes:
            return await self.get(channel_id)
        params = (channel_id, guild_id, *changes.values())
        rows = await self._call(_upsert(tuple(changes)), params, "written", channel_id)
        return ChannelSettings(*rows[0])

    async def reset(self, channel_id: int) -> None:
        await self._call(_RESET, (channel_id,), "written", channel_id)

    async def remember_poem(self, poem: PoemRecord) -> None:
        options = json.dumps(poem.options, ensure_ascii=False)
        params = (poem.id, poem.channel_id, poem.user_id, poem.style, poem.version, options)
        await self._call(_REMEMBER, (*params, poem.text), "written")
        self._remembered += 1
        if self._remembered >= PRUNE_EVERY:
            await asyncio.get_running_loop().run_in_executor(self._worker, self._prune_now)

    async def recall_poem(self, poem_id: int) -> PoemRecord | None:
        rows = await self._call(_RECALL, (poem_id,), "read")
        if not rows:
            return None
        poem_id, channel_id, user_id, style, version, options, text = rows[0]
        return PoemRecord(poem_id, channel_id, user_id, style, version, json.loads(options), text)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._drop)
        self._worker.shutdown(wait=False)


def check_database_url(url: str) -> str:
    """The URL if the store can use it; ValueError saying what is accepted otherwise."""
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        return url
    parts = urlsplit(url)
    if parts.scheme in POSTGRES_SCHEMES and (
        parts.hostname or parts.query or parts.path.strip("/")  # the path alone: a local socket
    ):
        return url
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(
        f"DATABASE_URL {scheme!r} is not a database this bot can use; give "
        "sqlite:///path/to/file.db (relative) or sqlite:////path (absolute), or "
        "postgresql://user:password@host:5432/dbname"
    )


def open_store(database_url: str) -> ChannelSettingsStore:
    """The store a DATABASE_URL names: `sqlite:///relative.db`, `sqlite:////absolute.db` or
    `postgresql://user:password@host:port/dbname`. Nothing connects until the first call."""
    url = check_database_url(database_url)
    if url.startswith(SQLITE_PREFIX):
        return SQLChannelSettings(sqlite_backend(Path(url.removeprefix(SQLITE_PREFIX))))
    return SQLChannelSettings(postgres_backend(url))
