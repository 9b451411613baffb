"""Per-channel settings (default temperature and style), kept across restarts.

`ChannelSettingsStore` is the interface; SQLite (WAL) is the default backend. The calls are
small and run in a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class SettingsUnavailable(Exception):
    """The store cannot be written (locked, read-only, full); the message says which."""


@dataclass(frozen=True)
class ChannelSettings:
    temperature: float | None = None
    style: str | None = None


class ChannelSettingsStore(Protocol):
    async def get(self, channel_id: int) -> ChannelSettings: ...

    async def update(
        self, channel_id: int, guild_id: int, **changes: float | str | None
    ) -> None: ...

    async def reset(self, channel_id: int) -> None: ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS channel_settings (
    channel_id INTEGER PRIMARY KEY,
    guild_id INTEGER NOT NULL,
    temperature REAL,
    style TEXT,
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""
_COLUMNS = ("temperature", "style")


class SQLiteChannelSettings:
    """SQLite in WAL mode: readers never block the writer; a write either lands or raises."""

    def __init__(self, path: Path, timeout: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def _read(self, channel_id: int) -> ChannelSettings:
        with self._lock:
            row = self._db.execute(
                "SELECT temperature, style FROM channel_settings WHERE channel_id = ?",
                (channel_id,),
            ).fetchone()
        return ChannelSettings(*row) if row else ChannelSettings()

    def _write(self, sql: str, params: tuple) -> None:
        try:
            with self._lock, self._db:
                self._db.execute(sql, params)
        except sqlite3.OperationalError as err:  # locked, read-only, disk full
            raise SettingsUnavailable(f"the settings database cannot be written ({err})") from err

    async def get(self, channel_id: int) -> ChannelSettings:
        try:
            return await asyncio.to_thread(self._read, channel_id)
        except sqlite3.Error as err:
            raise SettingsUnavailable(f"the settings database cannot be read ({err})") from err

    async def update(self, channel_id: int, guild_id: int, **changes: float | str | None) -> None:
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no channel setting named {', '.join(sorted(unknown))}")
        columns = ", ".join(changes)
        marks = ", ".join("?" for _ in changes)
        updates = ", ".join(f"{c} = excluded.{c}" for c in changes)
        sql = (
            f"INSERT INTO channel_settings (channel_id, guild_id, {columns}) "
            f"VALUES (?, ?, {marks}) ON CONFLICT(channel_id) DO UPDATE SET {updates}, "
            "updated_at = datetime('now')"
        )
        await asyncio.to_thread(self._write, sql, (channel_id, guild_id, *changes.values()))

    async def reset(self, channel_id: int) -> None:
        await asyncio.to_thread(
            self._write, "DELETE FROM channel_settings WHERE channel_id = ?", (channel_id,)
        )

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(database_url: str) -> ChannelSettingsStore:
    """The store a DATABASE_URL names: `sqlite:///relative.db` or `sqlite:////absolute.db`."""
    if database_url.startswith("sqlite:///"):
        return SQLiteChannelSettings(Path(database_url.removeprefix("sqlite:///")))
    scheme = database_url.split(":", 1)[0]
    raise ValueError(
        f"DATABASE_URL scheme {scheme!r} is not supported yet; use sqlite:///path/to/file.db"
    )
