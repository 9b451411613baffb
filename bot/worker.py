"""`python -m bot worker`: takes retrain jobs from the queue in PostgreSQL (DATABASE_URL) and runs
them, training and export as child processes, on whatever machine it runs (a GPU host, say).

Progress and results go to the job's row; a heartbeat every WORKER_HEARTBEAT_SECONDS tells the
bot processes it is alive, and brings back a cancel. A new version is stored in the database
beside the live-version pointers, so any process can serve it; made live, every process swaps.
The children die with the worker, so a worker killed mid-job leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.engine.bundle import Bundle, load_bundle, versions
from bot.engine.registry import UnknownStyle
from bot.jobs import Job, JobRunner
from bot.stores.job_queue import JobQueue, QueueUnavailable
from bot.stores.live_versions import SharedModels, SharedUnavailable

log = logging.getLogger(__name__)

IDLE_SECONDS = 1.0  # between looks at an empty queue
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before it starts (Linux): SIGKILL it when the worker dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class _Live:
    bundle: Bundle

    @property
    def version(self) -> str:
        return self.bundle.version


class WorkerModels:
    """What a job asks of the registry, for a worker that serves nothing: the live bundle of a
    style (fetched from the database) and making a version live (the shared pointer)."""

    def __init__(self, models_dir: Path, shared: SharedModels) -> None:
        self.models_dir = Path(models_dir)
        self.shared = shared
        self._live: dict[str, _Live] = {}

    async def prepare(self, style: str) -> str:
        """Learn the style's live version; the next free version name for a new one."""
        live = (await self.shared.pointers()).get(style)
        if live is not None:
            path = await self.shared.fetch(style, live, self.models_dir)
            self._live[style] = _Live(load_bundle(path))
        else:
            self._live.pop(style, None)
        taken = set(versions(self.models_dir, style)) | set(
            await self.shared.stored_versions(style)
        )
        number = 1 + max((int(v[1:]) for v in taken if v[1:].isdigit()), default=0)
        return f"v{number}"

    def live(self, style: str) -> _Live:
        try:
            return self._live[style]
        except KeyError:
            raise UnknownStyle(style) from None

    async def activate(self, style: str, version: str) -> None:
        await self.shared.publish(style, version, self.models_dir / style / version)


class WorkerRunner(JobRunner):
    """The bot's job runner, storing each new version in the database before it decides
    whether it goes live."""

    registry: WorkerModels

    async def _maybe_activate(self, job: Job) -> None:
        path = self.registry.models_dir / job.style / str(job.version)
        await self.registry.shared.store(job.style, str(job.version), path)
        await super()._maybe_activate(job)


class Worker:
    def __init__(self, settings: Settings, data_dir: Path, name: str | None = None) -> None:
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = JobQueue(settings.database_url, settings.worker_heartbeat)
        self.models = WorkerModels(settings.models_dir, SharedModels(settings.database_url))
        self.runner = WorkerRunner(self.models, Path(data_dir) / "runs", settings.retrain_timeout)
        self.runner.preexec = die_with_parent

    async def run_one(self) -> bool:
        """Claim and run one job; whether there was one."""
        await self.queue.reap()
        claimed = await self.queue.claim(self.name)
        if claimed is None:
            return False
        job = claimed.job
        log.info("worker %s took job %s (%s)", self.name, job.id, job.style)
        if claimed.corpus_text is not None:  # uploaded to a bot process, maybe elsewhere
            corpus = self.runner.runs_dir / f"{job.style}-job{job.id}.txt"
            corpus.parent.mkdir(parents=True, exist_ok=True)
            corpus.write_text(claimed.corpus_text, encoding="utf-8")
            job.corpus = str(corpus)
        heart = asyncio.create_task(self._beat(job), name=f"heartbeat-{job.id}")
        try:
            try:
                version = await self.models.prepare(job.style)
            except (SharedUnavailable, QueueUnavailable) as err:
                job.status, job.detail, job.finished = "failed", str(err), time.time()
                await self.queue.save(job, self.name)
                return True
            job.export_args = [*job.export_args, "--version", version]
            await self.runner.run(job, self._save)
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
        return True

    async def _save(self, job: Job) -> None:
        if not await self.queue.save(job, self.name) and not job.done:
            log.warning("job %s is no longer this worker's; stopping it", job.id)
            with contextlib.suppress(LookupError, ValueError):
                await self.runner.cancel(job.id)

    async def _beat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.queue.heartbeat)
            try:
                stop = await self.queue.beat(job, self.name)
            except QueueUnavailable as err:
                log.warning("heartbeat of job %s: %s", job.id, err)
                continue
            if stop and not job.done:
                log.info("job %s is cancelled", job.id)
                with contextlib.suppress(LookupError, ValueError):
                    await self.runner.cancel(job.id)

    async def serve(self) -> int:
        """Take jobs until SIGTERM or SIGINT (a job running then is cancelled)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker %s takes retrain jobs", self.name)
        working = asyncio.create_task(self._loop())
        await stop.wait()
        log.info("worker %s stopping", self.name)
        await self.runner.close()
        working.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await working
        return 0

    async def _loop(self) -> None:
        while True:
            try:
                took = await self.run_one()
            except (QueueUnavailable, SharedUnavailable) as err:
                log.warning("worker: %s", err)
                took = False
            if not took:
                await asyncio.sleep(IDLE_SECONDS)


def worker_main(settings: Settings, data_dir: Path) -> int:
    """`python -m bot worker`."""
    if not settings.shared:
        print("error: the worker needs DATABASE_URL to name PostgreSQL", flush=True)
        return 2
    return asyncio.run(Worker(settings, data_dir).serve())
