"""Retrain jobs: `python -m training` then `python -m export` as child processes, one job at a
time, with a timeout and cancel. TensorFlow never enters the bot's process. A job that fails
or is cancelled changes nothing live; a new version goes live when asked, or when its
validation loss beats the live one's. Jobs are queued in the database (`bot.stores.job_queue`)
and taken from there by a worker (`bot.worker`), in the bot's process or in one of their own."""

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
from typing import Any, Protocol

from bot.engine.bundle import CARD_FILE
from bot.engine.registry import SharedVersions, UnknownStyle
from bot.engine.scheduler import STEP_THREAD_NICE

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
CHILD_NICE = STEP_THREAD_NICE + 5  # training children: below the step threads, below the loop
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


class Models(Protocol):
    """What a job asks of the models it adds to: the bot's Registry, or a worker's view of the
    shared database (`bot.worker.WorkerModels`)."""

    models_dir: Path
    shared: SharedVersions | None

    def live(self, style: str) -> Any: ...  # with .version and .bundle; UnknownStyle if none

    async def activate(self, style: str, version: str) -> Any: ...


class JobRunner:
    """Runs jobs a worker (`bot.worker.Worker`) took from the queue, one at a time."""

    def __init__(
        self,
        registry: Models,
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
        self.preexec: Callable[[], None] | None = None  # run in each child before it starts

    async def run(self, job: Job, listener: Listener | None = None, resume: bool = False) -> None:
        """Run one job to its end now; with `resume`, from where an earlier run of it stopped
        (training from its last checkpoint, export skipped if its bundle is there)."""
        self.jobs[job.id] = job
        if listener:
            self._listeners[job.id] = listener
        try:
            await self._run(job, resume)
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
        """Cancel the job running, if any (its child is killed; the job ends cancelled)."""
        for job in self.jobs.values():
            if job._process is not None and not job.done:
                job._cancelled = True
                _kill(job._process)

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

    async def _run(self, job: Job, resume: bool) -> None:
        started = time.monotonic()
        run = self.runs_dir / f"{job.style}-job{job.id}-{int(job.created)}"
        logfile = run.with_suffix(".log")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        exported = (
            job.version is not None
            and (self.registry.models_dir / job.style / job.version / CARD_FILE).is_file()
        )
        if not (resume and exported) and not await self._train_and_export(
            job, run, logfile, started, resume
        ):
            return
        # The exported card's figure is the one the engine serves (with any n-gram mixed in),
        # so it compares with the live card's.
        path = self.registry.models_dir / job.style / str(job.version)
        job.val_loss = json.loads((path / CARD_FILE).read_text("utf-8"))["metrics"]["val_loss"]
        if self.registry.shared is not None:  # every process can serve it, live or not
            await self.registry.shared.store(job.style, str(job.version), path)
        await self._maybe_activate(job)

    async def _train_and_export(
        self, job: Job, run: Path, logfile: Path, started: float, resume: bool
    ) -> bool:
        """Train (on from the run's last checkpoint with `resume`), then export; whether both
        succeeded (if not, the job is finished)."""
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
            *(["--resume"] if resume else []),
        ]
        ok = await self._child(job, train, logfile, started, watch=run / "progress.jsonl")
        if not ok:
            return False
        job.status = "exporting"
        await self._notify(job)
        # --int8: every bundle can serve either precision (MODEL_PRECISION).
        models = str(self.registry.models_dir)
        export = [self.python, "-m", "export", str(run), "--models", models, "--int8"]
        export += job.export_args
        if not await self._child(job, export, logfile, started):
            return False
        found = _EXPORTED.findall(logfile.read_text(encoding="utf-8", errors="replace"))
        if not found:
            await self._finish(job, "failed", "export finished without naming a bundle")
            return False
        job.version = found[-1][1]
        return True

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

    def _prepare_child(self) -> None:
        """In the child before it starts: below the bot's step threads in priority (a retrain
        never slows the poems being written beside it), then the runner's own preparation."""
        with contextlib.suppress(OSError):
            os.nice(CHILD_NICE)
        if self.preexec is not None:
            self.preexec()

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
                preexec_fn=self._prepare_child,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                if not await self._watch(job, started, watch):
                    return False
            except asyncio.CancelledError:  # the worker stops: so does the child, at once
                _kill(job._process)
                await job._process.wait()
                raise
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

    async def _watch(self, job: Job, started: float, watch: Path | None) -> bool:
        """Wait for the job's child to end, relaying the progress lines it writes to `watch`;
        False (job failed) if it overran the job's time."""
        assert job._process is not None
        while True:
            remaining = self.timeout - (time.monotonic() - started)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job._process.wait(), min(1.0, max(remaining, 0.01)))
            if watch is not None and watch.exists():
                # The whole file: a resumed run's lines follow those of the run it resumes.
                lines = watch.read_text(encoding="utf-8").splitlines()
                if len(lines) != len(job.progress):
                    job.progress = [json.loads(line) for line in lines]
                    await self._notify(job)
            if job._process.returncode is not None:
                return True
            if time.monotonic() - started > self.timeout:
                _kill(job._process)
                await job._process.wait()
                job._process = None
                await self._finish(job, "failed", f"timed out after {self.timeout:g} s")
                return False


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
