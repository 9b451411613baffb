"""Retrain jobs as rows in the bot's database (DATABASE_URL): SQLite, where the one bot process
runs its jobs itself, or PostgreSQL, where bot processes (RETRAIN_WORKER=local) or
`python -m bot worker`s on any machine (RETRAIN_WORKER=queue) run them.

A bot process queues a job and posts its Discord message; a worker claims it (on PostgreSQL
`SELECT ... FOR UPDATE SKIP LOCKED`), names its version in the row, runs it, stores its progress
and result, and beats a heartbeat while it runs. Every change bumps the job's revision; the bot
process that holds the job's guild edits its message up to the latest revision
(`bot/discord_app/job_messages.py`). A job whose worker misses three heartbeats (killed, or its
machine gone) is, on PostgreSQL, queued again by whichever process notices first, at most
REQUEUES times, and then failed; the worker that takes it again resumes it (from the run's
last checkpoint where that worker's machine has it). Cancelling marks the job; its worker sees
the mark at its next heartbeat and kills the child. On SQLite, which one bot process serves,
the next start of that process adopts the jobs it was running when it stopped, and resumes
them; a job that stops beating while that process runs is failed.

Version names cannot collide: one job per style is queued or running at a time (a unique index),
and a job's name is the next after every version stored in the database, in the models folder
and named by any earlier job of its style.

Each process keeps one connection for its calls (on a thread of the queue's own, so the event
loop never waits on the database) and, on PostgreSQL, one that LISTENs for changes: waiting for
work or for messages to edit opens no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.jobs import Job
from bot.stores.channel_settings import (
    SQLITE_PREFIX,
    check_database_url,
    postgres_backend,
    sqlite_backend,
)
from bot.stores.postgres import CONNECT_TIMEOUT, SCHEMA_LOCK

log = logging.getLogger(__name__)

CHANNEL = "poembot_jobs"  # NOTIFY after every change to a job
MISSED_BEATS = 3  # heartbeats a worker may miss before its job is queued again or failed
REQUEUES = 2  # times (PostgreSQL) a job whose worker went silent is queued again, then failed
STATEMENT_SECONDS = 30.0  # an uploaded corpus (up to MAX_CORPUS_BYTES) travels in its row
RESUMED = "resumed after the bot restarted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retrain_jobs (
    id {id},
    style TEXT NOT NULL,
    corpus TEXT NOT NULL,
    corpus_text TEXT,
    train_args {json} NOT NULL,
    epochs INTEGER NOT NULL,
    activate BOOLEAN,
    requested_by BIGINT NOT NULL,
    export_args {json} NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    detail TEXT NOT NULL DEFAULT '',
    progress {json} NOT NULL DEFAULT '[]',
    version TEXT,
    val_loss DOUBLE PRECISION,
    activated BOOLEAN NOT NULL DEFAULT FALSE,
    created DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION,
    worker TEXT,
    heartbeat DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    revision INTEGER NOT NULL DEFAULT 0,
    guild_id BIGINT,
    channel_id BIGINT,
    application_id BIGINT,
    token TEXT,
    token_at DOUBLE PRECISION,
    message_id BIGINT,
    message_kind TEXT,
    shown INTEGER NOT NULL DEFAULT -1,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS retrain_jobs_one_per_style ON retrain_jobs (style)
    WHERE status IN ('queued', 'training', 'exporting');
"""
_POSTGRES = {"id": "BIGSERIAL PRIMARY KEY", "json": "JSONB"}
_SQLITE = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "json": "TEXT"}
_JOB = (
    "id, style, corpus, train_args, epochs, activate, requested_by, export_args, status, "
    "detail, progress, version, val_loss, activated, created, finished"
)
_IS_RUNNING = "status IN ('training', 'exporting')"
_ATTEMPTS = "attempts INTEGER NOT NULL DEFAULT 0"


class QueueUnavailable(Exception):
    """The job queue's database cannot be reached; the message says why."""


@dataclass(frozen=True)
class JobMessage:
    """Where a job's Discord message is, and how it may be edited: with the interaction's
    token while it lasts (15 minutes), then as a plain channel message."""

    guild_id: int | None
    channel_id: int
    application_id: int
    token: str
    token_at: float
    message_id: int | None = None
    kind: str = "webhook"  # webhook (the interaction's followup) or channel


@dataclass(frozen=True)
class Claimed:
    """A job a worker took, the text of its uploaded corpus if it has one, and how many times
    it was queued again after a worker went silent (then the worker resumes it)."""

    job: Job
    corpus_text: str | None
    requeued: int = 0


def _json(value: Any) -> Any:
    """A JSON column's value: PostgreSQL's driver decodes JSONB, SQLite's gives the text."""
    return json.loads(value) if isinstance(value, str) else value


def _job(row: tuple) -> Job:
    """A Job from the columns of _JOB, which are its first fields in order."""
    (id_, style, corpus, train_args, epochs, activate, requested_by, export_args) = row[:8]
    (status, detail, progress, version, val_loss, activated, created, finished) = row[8:16]
    return Job(
        id_,
        style,
        corpus,
        _json(train_args),
        epochs,
        None if activate is None else bool(activate),
        requested_by,
        _json(export_args),
        status,
        detail,
        _json(progress),
        version,
        val_loss,
        bool(activated),
        created,
        finished,
    )


def next_version(taken: Iterable[str]) -> str:
    """The version after the highest vN of `taken`."""
    return f"v{1 + max((int(v[1:]) for v in taken if v[1:].isdigit()), default=0)}"


class JobQueue:
    """The retrain_jobs table of the database `url` names."""

    def __init__(self, url: str, heartbeat: float = 5.0) -> None:
        self.url = check_database_url(url)
        self.heartbeat = heartbeat
        self.shared = not url.startswith(SQLITE_PREFIX)  # PostgreSQL: several processes
        if self.shared:
            import psycopg

            self.backend = postgres_backend(url, STATEMENT_SECONDS)
            self._duplicate: type[Exception] = psycopg.errors.UniqueViolation
        else:
            path = Path(url.removeprefix(SQLITE_PREFIX))
            self.backend = sqlite_backend(path, STATEMENT_SECONDS)
            self._duplicate = sqlite3.IntegrityError
        self._db: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self._changed = asyncio.Event()
        self._listener: asyncio.Task | None = None
        self._closed = False

    # In the queue's thread ---------------------------------------------------------------
    def _connection(self) -> Any:
        if self._db is None:
            db = self.backend.connect()
            try:
                if self.shared:
                    with db.transaction():  # processes starting together: one makes the table
                        db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                        db.execute(_SCHEMA.format(**_POSTGRES))
                    db.execute(f"ALTER TABLE retrain_jobs ADD COLUMN IF NOT EXISTS {_ATTEMPTS}")
                else:
                    db.executescript(_SCHEMA.format(**_SQLITE))
                    columns = {r[1] for r in db.execute("PRAGMA table_info(retrain_jobs)")}
                    if "attempts" not in columns:  # a database from before requeueing
                        db.execute(f"ALTER TABLE retrain_jobs ADD COLUMN {_ATTEMPTS}")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _run(self, sql: str, params: tuple, notify: bool) -> list[tuple]:
        try:
            db = self._connection()
            cursor = db.execute(sql.replace("?", self.backend.marker), params)
            rows = cursor.fetchall() if cursor.description else []
            if notify and rows and self.shared:
                db.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            return rows
        except (self.backend.error, OSError) as err:
            db, broken = self._db, getattr(self._db, "broken", False)
            if db is not None and (broken or getattr(db, "closed", False)):
                self._drop()
            raise QueueUnavailable(
                f"the retrain job queue's database ({self.backend.name}) cannot be reached "
                f"({str(err).strip()})"
            ) from err

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(self.backend.error):
                db.close()

    # On the event loop -------------------------------------------------------------------
    async def _rows(self, sql: str, params: tuple = (), notify: bool = False) -> list[tuple]:
        """The statement's rows; with `notify`, a change (rows returned) is announced to every
        process waiting on `changes`."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._thread, self._run, sql, params, notify)
        if notify and rows:
            self._wake()
        return rows

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changes(self, every: float) -> AsyncIterator[None]:
        """Yield now, then after each change to the queue (made by any process) or after
        `every` seconds without one, whichever comes first."""
        if self.shared and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="job-queue-listener")
        while True:
            changed = self._changed  # taken before the caller looks: no change goes unseen
            yield
            # Not wait_for: a change coinciding with a cancel of the caller would swallow the
            # cancel there (Python < 3.12), leaving a task that was told to stop running on.
            waiting = asyncio.ensure_future(changed.wait())
            try:
                await asyncio.wait({waiting}, timeout=every)
            finally:
                waiting.cancel()

    async def _listen(self) -> None:
        """On PostgreSQL: LISTEN on one connection of its own, reconnecting when it is lost."""
        import psycopg

        delay = 0.25
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    application_name="poembot",
                ) as db:
                    await db.execute(f"LISTEN {CHANNEL}")
                    delay = 0.25
                    self._wake()  # whatever changed while nobody listened
                    async for _ in db.notifies():
                        self._wake()
            except (psycopg.Error, OSError) as err:
                log.warning("retrain jobs: not listening (%s); retrying", str(err).strip())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)
        self._thread.shutdown(wait=False)

    # The bot's side ----------------------------------------------------------------------
    async def enqueue(
        self,
        style: str,
        corpus: str,
        train_args: list[str],
        epochs: int,
        activate: bool | None,
        requested_by: int,
        export_args: list[str],
        message: JobMessage,
    ) -> Job:
        """Queue a job; ValueError if one for this style is queued or running already. A
        corpus that is a file here travels in the row, for a worker on another machine (and
        for this one after a restart, whatever became of the file)."""
        path = Path(corpus)
        text = path.read_text(encoding="utf-8") if path.is_file() else None
        try:
            rows = await self._rows(
                "INSERT INTO retrain_jobs (style, corpus, corpus_text, train_args, epochs, "
                "activate, requested_by, export_args, created, guild_id, channel_id, "
                "application_id, token, token_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_JOB}",
                (
                    style,
                    corpus,
                    text,
                    json.dumps(train_args),
                    epochs,
                    activate,
                    requested_by,
                    json.dumps(export_args),
                    time.time(),
                    message.guild_id,
                    message.channel_id,
                    message.application_id,
                    message.token,
                    message.token_at,
                ),
                notify=True,
            )
        except QueueUnavailable as err:
            if isinstance(err.__cause__, self._duplicate):
                raise ValueError(f"a job for {style} is already queued or running") from None
            raise
        return _job(rows[0])

    async def message_posted(self, job: Job, message_id: int) -> None:
        """The job's message is posted, showing the job as it was when queued."""
        await self._rows(
            "UPDATE retrain_jobs SET message_id = ?, shown = 0 WHERE id = ? RETURNING id",
            (message_id, job.id),
            notify=True,
        )

    async def listing(self, limit: int = 15) -> list[Job]:
        rows = await self._rows(
            f"SELECT {_JOB} FROM retrain_jobs ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_job(r) for r in reversed(rows)]

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once, or mark a running one for its worker to stop;
        LookupError or ValueError saying why not."""
        if not 0 < job_id < 2**63:  # past what a BIGINT (or SQLite's INTEGER) holds
            raise LookupError(f"there is no job {job_id}")
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = 'cancelled', detail = 'cancelled before it "
            "started', finished = ?, revision = revision + 1 WHERE id = ? AND status = "
            f"'queued' RETURNING {_JOB}",
            (time.time(), job_id),
            notify=True,
        )
        rows = rows or await self._rows(
            f"UPDATE retrain_jobs SET cancel_requested = TRUE WHERE id = ? AND {_IS_RUNNING} "
            f"RETURNING {_JOB}",
            (job_id,),
            notify=True,
        )
        if rows:
            return _job(rows[0])
        rows = await self._rows("SELECT status FROM retrain_jobs WHERE id = ?", (job_id,))
        if not rows:
            raise LookupError(f"there is no job {job_id}")
        raise ValueError(f"job {job_id} already {rows[0][0]}")

    async def unshown(self) -> list[tuple[Job, int, JobMessage]]:
        """Jobs whose message shows an older revision than the job's: each with its revision
        and where its message is."""
        rows = await self._rows(
            f"SELECT {_JOB}, revision, guild_id, channel_id, application_id, token, token_at, "
            "message_id, message_kind FROM retrain_jobs "
            "WHERE message_id IS NOT NULL AND revision > shown ORDER BY id"
        )
        found = []
        for row in rows:
            guild, channel, app, token, token_at, message_id, kind = row[17:]
            where = JobMessage(guild, channel, app, token, token_at, message_id, kind or "webhook")
            found.append((_job(row[:16]), row[16], where))
        return found

    async def shown(self, job_id: int, revision: int, message_id: int, kind: str) -> None:
        await self._rows(
            "UPDATE retrain_jobs SET shown = CASE WHEN shown > ? THEN shown ELSE ? END, "
            "message_id = ?, message_kind = ? WHERE id = ?",
            (revision, revision, message_id, kind, job_id),
        )

    async def reap(self) -> list[tuple[int, str]]:
        """Queue again (PostgreSQL, up to REQUEUES times) or fail the running jobs whose worker
        has missed its heartbeats; their ids and new status."""
        now = time.time()
        again = REQUEUES if self.shared else 0  # SQLite: its one process resumes at restart
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = CASE WHEN attempts < ? THEN 'queued' ELSE "
            "'failed' END, finished = CASE WHEN attempts < ? THEN NULL ELSE ? END, "
            "worker = CASE WHEN attempts < ? THEN NULL ELSE worker END, "
            "attempts = attempts + 1, revision = revision + 1, "
            "detail = 'worker ' || coalesce(worker, 'unknown') || ' stopped answering (no "
            "heartbeat for ' || CAST(round(CAST(? - heartbeat AS NUMERIC), 1) AS TEXT) || "
            "' s); ' || CASE WHEN attempts < ? THEN 'queued again, to go on where it was (' || "
            "CAST(attempts + 1 AS TEXT) || ' of ' || CAST(? AS TEXT) || ')' ELSE "
            "'nothing live changed' END "
            f"WHERE {_IS_RUNNING} AND heartbeat < ? RETURNING id, status",
            (again, again, now, again, now, again, again, now - MISSED_BEATS * self.heartbeat),
            notify=True,
        )
        return [(r[0], r[1]) for r in rows]

    # The worker's side -------------------------------------------------------------------
    async def claim(self, worker: str) -> Claimed | None:
        """Take the oldest queued job, if any, for `worker`."""
        lock = " FOR UPDATE SKIP LOCKED" if self.shared else ""  # SQLite: one writer anyway
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = 'training', worker = ?, heartbeat = ?, "
            "revision = revision + 1 WHERE id = (SELECT id FROM retrain_jobs WHERE status = "
            f"'queued' ORDER BY id LIMIT 1{lock}) RETURNING {_JOB}, corpus_text, attempts",
            (worker, time.time()),
            notify=True,
        )
        return Claimed(_job(rows[0][:16]), rows[0][16], rows[0][17]) if rows else None

    async def adopt(self, worker: str) -> list[Claimed]:
        """On SQLite, at start: the jobs this process was running when it stopped, now
        `worker`'s to resume (those an operator cancelled meanwhile end cancelled)."""
        if self.shared:
            raise ValueError("jobs are adopted only on SQLite, which one process serves")
        now = time.time()
        await self._rows(
            "UPDATE retrain_jobs SET status = 'cancelled', detail = 'cancelled by an operator', "
            f"finished = ?, revision = revision + 1 WHERE {_IS_RUNNING} AND cancel_requested "
            "RETURNING id",
            (now,),
            notify=True,
        )
        rows = await self._rows(
            "UPDATE retrain_jobs SET worker = ?, heartbeat = ?, detail = ?, "
            f"revision = revision + 1 WHERE {_IS_RUNNING} RETURNING {_JOB}, corpus_text",
            (worker, now, RESUMED),
            notify=True,
        )
        return [Claimed(_job(row[:16]), row[16]) for row in sorted(rows)]

    async def name_version(self, job: Job, taken: Iterable[str]) -> str:
        """Give `job` the version after `taken` (the models folder's and the database's
        bundles) and every version a job of its style was given; kept in its row."""
        rows = await self._rows(
            "SELECT version FROM retrain_jobs WHERE style = ? AND version IS NOT NULL",
            (job.style,),
        )
        job.version = next_version({*taken, *(r[0] for r in rows)})
        await self._rows("UPDATE retrain_jobs SET version = ? WHERE id = ?", (job.version, job.id))
        return job.version

    async def save(self, job: Job, worker: str) -> bool:
        """Store the job's state, while it is still this worker's running job; whether it
        was (a job failed for missed heartbeats stays failed)."""
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = ?, detail = ?, progress = ?, version = ?, "
            "val_loss = ?, activated = ?, finished = ?, heartbeat = ?, "
            f"revision = revision + 1 WHERE id = ? AND worker = ? AND {_IS_RUNNING} "
            "RETURNING id",
            (
                job.status,
                job.detail,
                json.dumps(job.progress),
                job.version,
                job.val_loss,
                job.activated,
                job.finished,
                time.time(),
                job.id,
                worker,
            ),
            notify=True,
        )
        return bool(rows)

    async def beat(self, job: Job, worker: str) -> bool:
        """The worker is alive; whether it should stop the job (cancelled, or no longer its)."""
        rows = await self._rows(
            f"UPDATE retrain_jobs SET heartbeat = ? WHERE id = ? AND worker = ? AND {_IS_RUNNING} "
            "RETURNING cancel_requested",
            (time.time(), job.id, worker),
        )
        return not rows or bool(rows[0][0])
