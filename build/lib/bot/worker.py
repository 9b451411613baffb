"""The worker that takes retrain jobs from the queue (`bot.stores.job_queue`) and runs them,
training and export as child processes: inside the bot's process (RETRAIN_WORKER=local, on
SQLite or PostgreSQL), or as `python -m bot worker` (PostgreSQL), on whatever machine it runs
(a GPU host, say).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.engine.bundle import Bundle, load_bundle, versions
from bot.engine.registry import UnknownStyle
from bot.jobs import Job, JobRunner
from bot.stores.job_queue import Claimed, JobQueue, QueueUnavailable
from bot.stores.live_versions import SharedModels, SharedUnavailable

log = logging.getLogger(__name__)

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

    async def refresh(self, style: str) -> None:
        """Learn the style's live version, fetching its bundle."""
        live = (await self.shared.pointers()).get(style)
        if live is not None:
            path = await self.shared.fetch(style, live, self.models_dir)
            self._live[style] = _Live(load_bundle(path))
        else:
            self._live.pop(style, None)

    def live(self, style: str) -> _Live:
        try:
            return self._live[style]
        except KeyError:
            raise UnknownStyle(style) from None

    async def activate(self, style: str, version: str) -> None:
        await self.shared.publish(style, version, self.models_dir / style / version)


class Worker:
    """Takes jobs from the queue and runs them with `runner`, one at a time: in
    `python -m bot worker`, or in the bot's own process (RETRAIN_WORKER=local)."""

    def __init__(
        self,
        queue: JobQueue,
        runner: JobRunner,
        refresh: Callable[[str], Awaitable[None]] | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = queue
        self.runner = runner
        self.refresh = refresh  # called with a job's style before it runs
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Take jobs from now on, in a task of its own; on SQLite, first the jobs this bot was
        running when it stopped, resumed from where they were."""
        adopted: list[Claimed] = []
        if not self.queue.shared:
            try:
                adopted = await self.queue.adopt(self.name)
            except QueueUnavailable as err:
                log.error("jobs the bot was running when it stopped cannot be resumed: %s", err)
        self._task = asyncio.create_task(self._loop(adopted), name="retrain-worker")

    async def stop(self) -> None:
        """Stop at once, leaving the job running as it is (its child killed): on SQLite the
        next start resumes it; on PostgreSQL it is queued again when its heartbeats stop, and
        a worker resumes it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_one(self) -> bool:
        """Claim and run one job; whether there was one."""
        await self.queue.reap()
        claimed = await self.queue.claim(self.name)
        if claimed is None:
            return False
        # A job queued again after its worker went silent goes on from where it was, where
        # this machine has its run (else it trains from the start, under the same version).
        await self._run(claimed, resume=claimed.requeued > 0)
        return True

    async def _run(self, claimed: Claimed, resume: bool = False) -> None:
        job = claimed.job
        how = "resumes" if resume else "took"
        log.info("worker %s %s job %s (%s)", self.name, how, job.id, job.style)
        if claimed.corpus_text is not None:  # uploaded to a bot process, maybe elsewhere
            corpus = self.runner.runs_dir / f"{job.style}-job{job.id}.txt"
            corpus.parent.mkdir(parents=True, exist_ok=True)
            corpus.write_text(claimed.corpus_text, encoding="utf-8")
            job.corpus = str(corpus)
        heart = asyncio.create_task(self._beat(job), name=f"heartbeat-{job.id}")
        try:
            try:
                if self.refresh is not None:
                    await self.refresh(job.style)
                version = job.version or await self.queue.name_version(
                    job, await self._taken(job.style)
                )
            except (SharedUnavailable, QueueUnavailable) as err:
                job.status, job.detail, job.finished = "failed", str(err), time.time()
                with contextlib.suppress(QueueUnavailable):  # else failed by its heartbeats
                    await self.queue.save(job, self.name)
                return
            job.export_args = [*job.export_args, "--version", version]
            await self.runner.run(job, self._save, resume)
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart

    async def _taken(self, style: str) -> set[str]:
        """The versions of `style` in the models folder and in the shared database."""
        models = self.runner.registry
        taken = set(versions(models.models_dir, style))
        if models.shared is not None:
            taken |= set(await models.shared.stored_versions(style))
        return taken

    async def _save(self, job: Job) -> None:
        if not await self.queue.save(job, self.name) and not job.done:
            log.warning("job %s is no longer this worker's; stopping it", job.id)
            with contextlib.suppress(LookupError, ValueError):
                await self.runner.cancel(job.id)

    async def _beat(self, job: Job) -> None:
        """Every heartbeat, and at once when the queue changes (a cancel, say)."""
        async for _ in self.queue.changes(self.queue.heartbeat):
            try:
                stop = await self.queue.beat(job, self.name)
            except QueueUnavailable as err:
                log.warning("heartbeat of job %s: %s", job.id, err)
                continue
            if stop and not job.done:
                log.info("job %s is cancelled", job.id)
                with contextlib.suppress(LookupError, ValueError):
                    await self.runner.cancel(job.id)

    async def _loop(self, adopted: list[Claimed]) -> None:
        for claimed in adopted:
            await self._run(claimed, resume=True)
        async for _ in self.queue.changes(self.queue.heartbeat):
            try:
                while await self.run_one():
                    pass
            except (QueueUnavailable, SharedUnavailable) as err:
                log.warning("worker: %s", err)


async def serve(settings: Settings, data_dir: Path) -> int:
    """Take jobs until SIGTERM or SIGINT (a job running then is cancelled)."""
    queue = JobQueue(settings.database_url, settings.worker_heartbeat)
    models = WorkerModels(settings.models_dir, SharedModels(settings.database_url))
    runner = JobRunner(models, Path(data_dir) / "runs", settings.retrain_timeout)
    runner.preexec = die_with_parent
    worker = Worker(queue, runner, models.refresh)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %s takes retrain jobs", worker.name)
    await worker.start()
    await stop.wait()
    log.info("worker %s stopping", worker.name)
    await runner.close()
    await worker.stop()
    await queue.close()
    return 0


def worker_main(settings: Settings, data_dir: Path) -> int:
    """`python -m bot worker`."""
    if not settings.shared:
        print("error: the worker needs DATABASE_URL to name PostgreSQL", flush=True)
        return 2
    return asyncio.run(serve(settings, data_dir))
