"""Retrain jobs: `python -m training` then `python -m export` as child processes, one job at a
time, with a timeout and cancel. TensorFlow never enters the bot's process. A job that fails
or is cancelled changes nothing live; a new version goes live when asked, or when its
validation loss beats the live one's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.bundle import CARD_FILE, check_name
from bot.engine.registry import Registry, UnknownStyle

log = logging.getLogger(__name__)

# Architectures offered for a new style; retraining keeps the live bundle's.
SIZES: dict[str, list[str]] = {
    "small": [
        "--layers",
        "1",
        "--units",
        "128",
        "--embedding",
        "32",
        "--batch-size",
        "16",
        "--seq-len",
        "64",
    ],
    "medium": ["--layers", "2", "--units", "256", "--embedding", "64", "--batch-size", "32"],
    "large": ["--layers", "2", "--units", "512", "--embedding", "64", "--batch-size", "32"],
}
_EXPORTED = re.compile(r"^exported (\S+)/(\S+)$", re.MULTILINE)


@dataclass(eq=False)
class Job:
    id: int
    style: str
    corpus: str
    train_args: list[str]
    epochs: int
    activate: bool | None  # None: activate when the validation loss beats the live one
    requested_by: int
    export_args: list[str] = field(default_factory=list)  # e.g. --ngram 6
    status: str = "queued"  # queued, training, exporting, succeeded, failed, cancelled
    detail: str = ""
    progress: list[dict] = field(default_factory=list)
    version: str | None = None
    val_loss: float | None = None
    activated: bool = False
    created: float = field(default_factory=time.time)
    finished: float | None = None
    _process: asyncio.subprocess.Process | None = None
    _cancelled: bool = False

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    def summary(self) -> str:
        line = f"job {self.id} · {self.style} · {self.status}"
        if self.progress:
            last = self.progress[-1]
            line += (
                f" · epoch {last['epoch']}/{self.epochs} · loss {last['loss']:.3f}"
                f" · validation {last['val_loss']:.3f}"
            )
        if self.detail:
            line += f" · {self.detail}"
        return line


Listener = Callable[[Job], Awaitable[None]]


class JobRunner:
    remote = False  # jobs run in this process, and report through their listeners

    def __init__(
        self,
        registry: Registry,
        runs_dir: Path,
        timeout: float,
        python: str = sys.executable,
    ) -> None:
        self.registry = registry
        self.runs_dir = Path(runs_dir)
        self.timeout = timeout
        self.python = python
        self.jobs: dict[int, Job] = {}
        self._listeners: dict[int, Listener] = {}
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._next_id = 1
        self.preexec: Callable[[], None] | None = None  # run in each child before it starts

    def submit(
        self,
        style: str,
        corpus: str,
        train_args: list[str],
        epochs: int,
        activate: bool | None,
        requested_by: int,
        listener: Listener | None = None,
        export_args: list[str] | None = None,
    ) -> Job:
        check_name(style, "style")
        if any(j.style == style and not j.done for j in self.jobs.values()):
            raise ValueError(f"a job for {style} is already queued or running")
        job = Job(
            self._next_id,
            style,
            corpus,
            train_args,
            epochs,
            activate,
            requested_by,
            list(export_args or []),
        )
        self._next_id += 1
        self.jobs[job.id] = job
        if listener:
            self._listeners[job.id] = listener
        self._queue.put_nowait(job)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="retrain-jobs")
        return job

    async def listing(self) -> list[Job]:
        return list(self.jobs.values())

    async def run(self, job: Job, listener: Listener | None = None) -> None:
        """Run one job to its end now (a worker's way: `submit` queues it instead)."""
        self.jobs[job.id] = job
        if listener:
            self._listeners[job.id] = listener
        try:
            await self._run(job)
        except Exception as err:  # a bug: fail the job loudly, keep the runner alive
            log.exception("job %s crashed", job.id)
            await self._finish(job, "failed", f"internal error: {err}")

    async def cancel(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise LookupError(f"there is no job {job_id}")
        if job.done:
            raise ValueError(f"job {job_id} already {job.status}")
        job._cancelled = True
        if job._process is not None:
            _kill(job._process)
        else:
            await self._finish(job, "cancelled", "cancelled before it started")
        return job

    async def close(self) -> None:
        for job in self.jobs.values():
            if job._process is not None and not job.done:
                job._cancelled = True
                _kill(job._process)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _notify(self, job: Job) -> None:
        listener = self._listeners.get(job.id)
        if listener is None:
            return
        try:
            await listener(job)
        except Exception:  # a failed progress edit must not fail the job
            log.warning("progress update for job %s failed", job.id, exc_info=True)

    async def _finish(self, job: Job, status: str, detail: str) -> None:
        job.status, job.detail, job.finished = status, detail, time.time()
        log.info("job %s (%s) %s: %s", job.id, job.style, status, detail)
        await self._notify(job)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if not job.done:
                await self.run(job)

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        run = self.runs_dir / f"{job.style}-job{job.id}-{int(job.created)}"
        logfile = run.with_suffix(".log")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        job.status = "training"
        await self._notify(job)
        train = [
            self.python,
            "-m",
            "training",
            "--corpus",
            job.corpus,
            "--style",
            job.style,
            "--out",
            str(run),
            "--epochs",
            str(job.epochs),
            *job.train_args,
            "--max-minutes",
            f"{self.timeout / 60:.2f}",
        ]
        ok = await self._child(job, train, logfile, started, watch=run / "progress.jsonl")
        if not ok:
            return
        job.status = "exporting"
        await self._notify(job)
        # --int8: every bundle can serve either precision (MODEL_PRECISION).
        models = str(self.registry.models_dir)
        export = [self.python, "-m", "export", str(run), "--models", models, "--int8"]
        export += job.export_args
        ok = await self._child(job, export, logfile, started)
        if not ok:
            return
        found = _EXPORTED.findall(logfile.read_text(encoding="utf-8", errors="replace"))
        if not found:
            await self._finish(job, "failed", "export finished without naming a bundle")
            return
        job.version = found[-1][1]
        # The exported card's figure is the one the engine serves (with any n-gram mixed in),
        # so it compares with the live card's.
        card = json.loads(
            (self.registry.models_dir / job.style / job.version / CARD_FILE).read_text("utf-8")
        )
        job.val_loss = card["metrics"]["val_loss"]
        await self._maybe_activate(job)

    async def _maybe_activate(self, job: Job) -> None:
        try:
            live = self.registry.live(job.style)
            live_loss = live.bundle.card.get("metrics", {}).get("val_loss")
        except UnknownStyle:
            live, live_loss = None, None
        better = live_loss is None or (job.val_loss is not None and job.val_loss < live_loss)
        wanted = job.activate if job.activate is not None else better
        comparison = (
            f"validation {job.val_loss:.4f} vs live {live_loss:.4f} nats/char"
            if live_loss is not None
            else f"validation {job.val_loss:.4f} nats/char"
        )
        if wanted:
            await self.registry.activate(job.style, job.version)
            job.activated = True
            await self._finish(job, "succeeded", f"{job.version} is live ({comparison})")
        else:
            kept = f"; {live.version} stays live" if live else ""
            await self._finish(job, "succeeded", f"{job.version} saved ({comparison}){kept}")

    async def _child(
        self, job: Job, argv: list[str], logfile: Path, started: float, watch: Path | None = None
    ) -> bool:
        """Run one child to the end, relaying progress; False (job finished) if it failed."""
        with open(logfile, "ab") as out:
            job._process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            seen = 0
            while True:
                remaining = self.timeout - (time.monotonic() - started)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(job._process.wait(), min(1.0, max(remaining, 0.01)))
                if watch is not None and watch.exists():
                    lines = watch.read_text(encoding="utf-8").splitlines()
                    if len(lines) > seen:
                        job.progress.extend(json.loads(line) for line in lines[seen:])
                        seen = len(lines)
                        await self._notify(job)
                if job._process.returncode is not None:
                    break
                if time.monotonic() - started > self.timeout:
                    _kill(job._process)
                    await job._process.wait()
                    job._process = None
                    await self._finish(job, "failed", f"timed out after {self.timeout:g} s")
                    return False
        code = job._process.returncode
        job._process = None
        if job._cancelled:
            await self._finish(job, "cancelled", "cancelled by an operator")
            return False
        if code != 0:
            tail = logfile.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = next((ln for ln in reversed(tail) if ln.startswith("error:")), "")
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            await self._finish(
                job, "failed", f"{argv[2]} {how}" + (f": {reason}" if reason else "")
            )
            return False
        return True


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
