"""Retrain jobs in PostgreSQL, for bot processes and `python -m bot worker`s on any machine.

A bot process queues a job and posts its Discord message; a worker claims it (`SELECT ... FOR
UPDATE SKIP LOCKED`), runs it, stores its progress and result, and beats a heartbeat while it
runs. Every change bumps the job's revision; the bot process that holds the job's guild edits
its message up to the latest revision (`bot/discord_app/job_messages.py`). A job whose worker
misses three heartbeats is failed by whichever process notices first. Cancelling marks the job;
its worker sees the mark at its next heartbeat and kills the child.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.jobs import Job
from bot.stores.postgres import connection

MISSED_BEATS = 3  # heartbeats a worker may miss before its job is failed
RUNNING = ("training", "exporting")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retrain_jobs (
    id BIGSERIAL PRIMARY KEY,
    style TEXT NOT NULL,
    corpus TEXT NOT NULL,
    corpus_text TEXT,
    train_args JSONB NOT NULL,
    epochs INTEGER NOT NULL,
    activate BOOLEAN,
    requested_by BIGINT NOT NULL,
    export_args JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    detail TEXT NOT NULL DEFAULT '',
    progress JSONB NOT NULL DEFAULT '[]',
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
    shown INTEGER NOT NULL DEFAULT -1
);
CREATE UNIQUE INDEX IF NOT EXISTS retrain_jobs_one_per_style ON retrain_jobs (style)
    WHERE status IN ('queued', 'training', 'exporting');
"""
_JOB = (
    "id, style, corpus, train_args, epochs, activate, requested_by, export_args, status, "
    "detail, progress, version, val_loss, activated, created, finished"
)


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
    """A job a worker took, and the text of its uploaded corpus if it has one."""

    job: Job
    corpus_text: str | None


def _job(row: tuple) -> Job:
    """A Job from the columns of _JOB, which are its first fields in order."""
    return Job(*row[:16])


class JobQueue:
    """The retrain_jobs table; every call opens a connection of its own."""

    remote = True  # jobs run in `python -m bot worker`, and their messages are edited from here

    def __init__(self, url: str, heartbeat: float = 5.0) -> None:
        self.url = url
        self.heartbeat = heartbeat

    def _db(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return connection(self.url, _SCHEMA, QueueUnavailable, "retrain job queue's database")

    async def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        async with self._db() as db:
            cursor = await db.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

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
        corpus that is a file here travels in the row, for a worker on another machine."""
        import psycopg

        path = Path(corpus)
        text = path.read_text(encoding="utf-8") if path.is_file() else None
        try:
            rows = await self._rows(
                "INSERT INTO retrain_jobs (style, corpus, corpus_text, train_args, epochs, "
                "activate, requested_by, export_args, created, guild_id, channel_id, "
                "application_id, token, token_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                f"RETURNING {_JOB}",
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
            )
        except QueueUnavailable as err:
            if isinstance(err.__cause__, psycopg.errors.UniqueViolation):
                raise ValueError(f"a job for {style} is already queued or running") from None
            raise
        return _job(rows[0])

    async def message_posted(self, job: Job, message_id: int) -> None:
        """The job's message is posted, showing the job as it was when queued."""
        await self._rows(
            "UPDATE retrain_jobs SET message_id = %s, shown = 0 WHERE id = %s", (message_id, job.id)
        )

    async def listing(self, limit: int = 15) -> list[Job]:
        rows = await self._rows(
            f"SELECT {_JOB} FROM retrain_jobs ORDER BY id DESC LIMIT %s", (limit,)
        )
        return [_job(r) for r in reversed(rows)]

    async def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once, or mark a running one for its worker to stop;
        LookupError or ValueError saying why not."""
        now = time.time()
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = 'cancelled', detail = 'cancelled before it "
            "started', finished = %s, revision = revision + 1 WHERE id = %s AND status = "
            f"'queued' RETURNING {_JOB}",
            (now, job_id),
        )
        rows = rows or await self._rows(
            "UPDATE retrain_jobs SET cancel_requested = TRUE WHERE id = %s AND status = ANY(%s) "
            f"RETURNING {_JOB}",
            (job_id, list(RUNNING)),
        )
        if rows:
            return _job(rows[0])
        rows = await self._rows("SELECT status FROM retrain_jobs WHERE id = %s", (job_id,))
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
            "UPDATE retrain_jobs SET shown = GREATEST(shown, %s), message_id = %s, "
            "message_kind = %s WHERE id = %s",
            (revision, message_id, kind, job_id),
        )

    async def reap(self) -> list[int]:
        """Fail the running jobs whose worker has missed its heartbeats; their ids."""
        now = time.time()
        late = MISSED_BEATS * self.heartbeat
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = 'failed', finished = %s, revision = revision + 1, "
            "detail = 'worker ' || coalesce(worker, '?') || ' stopped answering (no heartbeat "
            "for ' || round((%s - heartbeat)::numeric, 1) || ' s); nothing live changed' "
            "WHERE status = ANY(%s) AND heartbeat < %s RETURNING id",
            (now, now, list(RUNNING), now - late),
        )
        return [r[0] for r in rows]

    async def close(self) -> None:
        return None

    # The worker's side -------------------------------------------------------------------
    async def claim(self, worker: str) -> Claimed | None:
        """Take the oldest queued job, if any, for `worker`."""
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = 'training', worker = %s, heartbeat = %s, "
            "revision = revision + 1 WHERE id = (SELECT id FROM retrain_jobs WHERE status = "
            "'queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) "
            f"RETURNING {_JOB}, corpus_text",
            (worker, time.time()),
        )
        return Claimed(_job(rows[0][:16]), rows[0][16]) if rows else None

    async def save(self, job: Job, worker: str) -> bool:
        """Store the job's state, while it is still this worker's running job; whether it
        was (a job failed for missed heartbeats stays failed)."""
        rows = await self._rows(
            "UPDATE retrain_jobs SET status = %s, detail = %s, progress = %s, version = %s, "
            "val_loss = %s, activated = %s, finished = %s, heartbeat = %s, "
            "revision = revision + 1 WHERE id = %s AND worker = %s AND status = ANY(%s) "
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
                list(RUNNING),
            ),
        )
        return bool(rows)

    async def beat(self, job: Job, worker: str) -> bool:
        """The worker is alive; whether it should stop the job (cancelled, or no longer its)."""
        rows = await self._rows(
            "UPDATE retrain_jobs SET heartbeat = %s WHERE id = %s AND worker = %s "
            "AND status = ANY(%s) RETURNING cancel_requested",
            (time.time(), job.id, worker, list(RUNNING)),
        )
        return not rows or bool(rows[0][0])
