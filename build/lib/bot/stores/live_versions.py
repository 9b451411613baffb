"""Which version of each style is live, shared by every bot process through PostgreSQL, with the
bundles themselves stored beside the pointers.

A bundle's files are stored once each, by sha256, and a version exists in the database only
whole (its row is written in the transaction that writes its last file). A process that is told
to serve a version it lacks fetches it into its own MODELS_DIR (a temporary folder renamed into
place, like every bundle) before it swaps. A pointer is updated and announced (NOTIFY) in one
transaction; every process LISTENs, re-reads every pointer after (re)connecting, and re-reads
them every `poll_seconds` as well, in case a notification was lost.

With SQLite there is one process and nothing of this: the `ACTIVE` files are the pointers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.engine.bundle import CARD_FILE, BundleError, check_name
from bot.engine.registry import StoredVersion
from bot.stores.postgres import connection, listen

log = logging.getLogger(__name__)

CHANNEL = "poembot_live_versions"
POLL_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bundle_blobs (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS bundle_versions (
    style TEXT NOT NULL,
    version TEXT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (style, version)
);
CREATE TABLE IF NOT EXISTS bundle_files (
    style TEXT NOT NULL,
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES bundle_blobs (sha256),
    PRIMARY KEY (style, version, name)
);
CREATE TABLE IF NOT EXISTS live_versions (
    style TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL,
    FOREIGN KEY (style, version) REFERENCES bundle_versions (style, version)
);
"""

Pointers = dict[str, str]


class SharedUnavailable(BundleError):
    """The database that holds the live versions and bundles cannot be reached; nothing
    changed."""


def _files(path: Path) -> list[tuple[str, Path]]:
    """A bundle's files by their path inside it (POSIX), sorted; temporary files left out."""
    return sorted(
        (p.relative_to(path).as_posix(), p)
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


class SharedModels:
    """Live-version pointers and stored bundles in one PostgreSQL database (DATABASE_URL)."""

    def __init__(self, url: str, poll_seconds: float = POLL_SECONDS) -> None:
        self.url = url
        self.poll_seconds = poll_seconds

    def _db(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return connection(self.url, _SCHEMA, SharedUnavailable, "shared live-version database")

    # Bundles -----------------------------------------------------------------------------
    async def stored(self, style: str, version: str) -> bool:
        async with self._db() as db:
            cursor = await db.execute(
                "SELECT 1 FROM bundle_versions WHERE style = %s AND version = %s",
                (style, version),
            )
            return await cursor.fetchone() is not None

    async def stored_versions(self, style: str) -> list[str]:
        async with self._db() as db:
            cursor = await db.execute(
                "SELECT version FROM bundle_versions WHERE style = %s", (style,)
            )
            return [row[0] for row in await cursor.fetchall()]

    async def catalog(self) -> list[StoredVersion]:
        """Every stored version, oldest first, with the figures of its card."""
        async with self._db() as db:
            cursor = await db.execute(
                "SELECT v.style, v.version, b.data, (SELECT sum(octet_length(s.data)) "
                "FROM bundle_files f2 JOIN bundle_blobs s USING (sha256) "
                "WHERE f2.style = v.style AND f2.version = v.version) "
                "FROM bundle_versions v LEFT JOIN bundle_files f ON f.style = v.style "
                "AND f.version = v.version AND f.name = %s "
                "LEFT JOIN bundle_blobs b ON b.sha256 = f.sha256 ORDER BY v.stored_at",
                (CARD_FILE,),
            )
            rows = await cursor.fetchall()
        return [_stored(style, version, card, size) for style, version, card, size in rows]

    async def store(self, style: str, version: str, path: Path) -> None:
        """Store the bundle at `path` as style/version, unless it is stored already."""
        check_name(style, "style"), check_name(version, "version")
        if await self.stored(style, version):
            return
        files = await asyncio.to_thread(_files, Path(path))
        if not files:
            raise BundleError(f"{path} holds no bundle to store")
        async with self._db() as db, db.transaction():
            for name, file in files:
                data = await asyncio.to_thread(file.read_bytes)
                digest = hashlib.sha256(data).hexdigest()
                await db.execute(
                    "INSERT INTO bundle_blobs (sha256, data) VALUES (%s, %s) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    (digest, data),
                )
                await db.execute(
                    "INSERT INTO bundle_files (style, version, name, sha256) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (style, version, name, digest),
                )
            await db.execute(
                "INSERT INTO bundle_versions (style, version, stored_at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (style, version, time.time()),
            )
        log.info("stored %s/%s in the database (%d files)", style, version, len(files))

    async def fetch(self, style: str, version: str, models_dir: Path) -> Path:
        """Write the stored style/version into `models_dir` (whole, checked against its
        sha256s) unless it is there already; BundleError when the database lacks it."""
        target = Path(models_dir) / check_name(style, "style") / check_name(version, "version")
        if target.is_dir():
            return target
        async with self._db() as db:
            cursor = await db.execute(
                "SELECT f.name, f.sha256, b.data FROM bundle_files f "
                "JOIN bundle_blobs b USING (sha256) WHERE f.style = %s AND f.version = %s",
                (style, version),
            )
            rows = await cursor.fetchall()
        if not rows:
            raise BundleError(f"{style}/{version} is in neither {models_dir} nor the database")
        await asyncio.to_thread(_write_fetched, target, rows)
        log.info("fetched %s/%s from the database into %s", style, version, models_dir)
        return target

    # Pointers ----------------------------------------------------------------------------
    async def pointers(self) -> Pointers:
        async with self._db() as db:
            return await _read_pointers(db)

    async def publish(self, style: str, version: str, path: Path) -> None:
        """Store the bundle if needed, then point `style` at it and notify every process, in
        one transaction."""
        await self.store(style, version, path)
        async with self._db() as db, db.transaction():
            await db.execute(
                "INSERT INTO live_versions (style, version, changed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (style) DO UPDATE SET version = excluded.version, "
                "changed_at = excluded.changed_at",
                (style, version, time.time()),
            )
            await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{style}/{version}"))

    async def seed(self, style: str, version: str, path: Path) -> bool:
        """Point `style` at this version only if the database has no pointer for it yet (the
        first process to start with a style brings it); whether it did."""
        await self.store(style, version, path)
        async with self._db() as db, db.transaction():
            cursor = await db.execute(
                "INSERT INTO live_versions (style, version, changed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (style) DO NOTHING RETURNING style",
                (style, version, time.time()),
            )
            seeded = await cursor.fetchone() is not None
            if seeded:
                await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{style}/{version}"))
        return seeded

    async def follow(self, apply: Callable[[Pointers], Awaitable[None]]) -> None:
        """Call `apply` with every pointer after each (re)connection, each notification and
        every `poll_seconds`; reconnect after the database goes away. Runs until cancelled."""

        async def heard(db: Any, _payload: str | None) -> None:
            await apply(await _read_pointers(db))

        await listen(
            self.url,
            _SCHEMA,
            SharedUnavailable,
            "shared live-version database",
            CHANNEL,
            heard,
            self.poll_seconds,
        )


def _stored(style: str, version: str, card: bytes | None, size: int | None) -> StoredVersion:
    try:
        data = json.loads(bytes(card or b"{}"))
    except ValueError:
        data = {}
    val_loss = data.get("metrics", {}).get("val_loss") if isinstance(data, dict) else None
    created = str(data.get("created_at", "")) if isinstance(data, dict) else ""
    return StoredVersion(
        style,
        version,
        val_loss if isinstance(val_loss, (int, float)) else None,
        int(size or 0),
        created,
    )


async def _read_pointers(db: Any) -> Pointers:
    cursor = await db.execute("SELECT style, version FROM live_versions")
    return dict(await cursor.fetchall())


def _write_fetched(target: Path, rows: list[tuple[str, str, bytes]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.fetch.", dir=target.parent)).resolve()
    try:
        for name, digest, data in rows:
            data = bytes(data)
            if hashlib.sha256(data).hexdigest() != digest:
                raise BundleError(f"{name} of {target} does not match its sha256")
            file = tmp.joinpath(*name.split("/"))
            if tmp not in file.resolve().parents:
                raise BundleError(f"{name!r} is not a path inside a bundle")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process fetched it meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
