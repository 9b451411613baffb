"""The inference engine: an onnxruntime session per bundle and a continuous-batching scheduler.

Every step, one `session.run` (off the event loop) advances every active request by one
character; requests join the batch and leave it at any step. Prompts are fed through the same
step, inside the batch, so a long prompt never blocks other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import math
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bot.bundle import Bundle, BundleError, check_signature, load_bundle
from bot.sampling import sample

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cuda", "cpu")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
SEED_MODULUS = 2**64


class ProviderError(RuntimeError):
    """The asked-for execution provider cannot run here."""


class Busy(Exception):
    """The engine cannot take (or finish) this request now; `retry_after` is an estimate."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _cuda_driver_loads() -> bool:
    """Whether the NVIDIA driver library is present; asking onnxruntime without one only
    produces pages of errors."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def create_session(model_path: Path, providers: str = "auto", threads: int = 0):
    """An onnxruntime session on CUDA or CPU.

    `auto` uses CUDA only where it really loads (checked on the session) and CPU otherwise;
    `cuda` where CUDA cannot load raises ProviderError instead of silently using the CPU.
    """
    if providers not in PROVIDERS:
        raise ProviderError(f"providers must be one of {PROVIDERS}, not {providers!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    wants_cuda = providers == "cuda" or (
        providers == "auto" and _CUDA in ort.get_available_providers() and _cuda_driver_loads()
    )
    if providers == "cuda" and _CUDA not in ort.get_available_providers():
        raise ProviderError(
            "ORT_PROVIDERS=cuda, but this onnxruntime has no CUDA provider: install "
            "onnxruntime-gpu, or set ORT_PROVIDERS=auto or cpu"
        )
    if wants_cuda:
        try:
            session = ort.InferenceSession(str(model_path), options, providers=[_CUDA, _CPU])
        except Exception as err:  # onnxruntime raises its own untyped errors here
            if providers == "cuda":
                raise ProviderError(f"CUDA could not start: {err}") from err
            log.info("CUDA is present but did not start (%s); using the CPU", err)
        else:
            if session.get_providers()[0] == _CUDA:
                return session
            if providers == "cuda":
                raise ProviderError(
                    "ORT_PROVIDERS=cuda, but onnxruntime could not load CUDA (check the NVIDIA "
                    "driver and the CUDA/cuDNN libraries onnxruntime-gpu needs)"
                )
    return ort.InferenceSession(str(model_path), options, providers=[_CPU])


class StepModel:
    """One bundle's one-step graph in an onnxruntime session: ids + state in, logits + state out."""

    def __init__(
        self, bundle: Bundle, providers: str = "auto", int8: bool = False, threads: int = 0
    ) -> None:
        self.bundle = bundle
        self.int8 = int8
        path = bundle.model_path(int8)
        if not path.is_file():
            raise BundleError(f"{path} is missing")
        try:
            self.session = create_session(path, providers, threads)
        except ProviderError:
            raise
        except Exception as err:  # a truncated or foreign file: onnxruntime's errors are untyped
            raise BundleError(f"{path}: onnxruntime cannot load it ({err})") from err
        signature = [(a.name, a.shape, a.type) for a in self.session.get_inputs()]
        outputs = [(a.name, a.shape, a.type) for a in self.session.get_outputs()]
        check_signature(bundle, signature, outputs)
        self.provider = self.session.get_providers()[0]
        log.info("%s/%s runs on %s", bundle.style, bundle.version, self.provider)
        self.input_names = [name for name, _, _ in signature]
        self.output_names = [name for name, _, _ in outputs]
        self.ids_dtype = np.int64 if signature[0][2] == "tensor(int64)" else np.int32
        self.units = bundle.units
        self.n_states = len(bundle.state_names)

    @classmethod
    def load(cls, path: Path, providers: str = "auto", int8: bool = False) -> StepModel:
        return cls(load_bundle(path), providers=providers, int8=int8)

    def zero_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, self.units), np.float32) for _ in range(self.n_states)]

    def step(
        self, ids: np.ndarray, states: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {self.input_names[0]: ids.astype(self.ids_dtype, copy=False)}
        feeds.update(zip(self.input_names[1:], states, strict=True))
        logits, *new_states = self.session.run(self.output_names, feeds)
        return logits, new_states


@dataclass(frozen=True)
class Limits:
    """Bounds that keep the engine answering: past them a request gets `Busy`, never a wait."""

    max_batch: int = 64
    max_queue: int = 256
    deadline: float = 60.0  # seconds from submission to the last character
    max_length: int = 2000
    max_prompt: int = 500


@dataclass(frozen=True)
class Request:
    prompt: str = ""
    length: int = 400
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    text: str  # the prompt followed by what the model wrote
    prompt: str
    unknown: list[str]  # prompt characters the model does not know (left out of its input)
    style: str
    version: str
    temperature: float
    top_k: int
    top_p: float
    seed: int
    seconds: float


def validate(request: Request, limits: Limits) -> Request:
    """The request with a seed chosen if it had none; ValueError saying what to fix otherwise."""
    if not 1 <= request.length <= limits.max_length:
        raise ValueError(f"length must be between 1 and {limits.max_length} characters")
    if len(request.prompt) > limits.max_prompt:
        raise ValueError(
            f"the prompt is {len(request.prompt)} characters; at most {limits.max_prompt} are read"
        )
    if not (math.isfinite(request.temperature) and 0.0 <= request.temperature <= 5.0):
        raise ValueError("temperature must be a number from 0 (always the likeliest) to 5")
    if request.top_k < 0:
        raise ValueError("top-k must be 0 (off) or a positive number of characters")
    if not (math.isfinite(request.top_p) and 0.0 < request.top_p <= 1.0):
        raise ValueError("top-p must be above 0 and at most 1")
    seed = request.seed if request.seed is not None else secrets.randbits(63)
    if not 0 <= seed < SEED_MODULUS:
        raise ValueError(f"seed must be between 0 and {SEED_MODULUS - 1}")
    return Request(
        request.prompt,
        request.length,
        float(request.temperature),
        request.top_k,
        float(request.top_p),
        seed,
    )


@dataclass(eq=False)
class _Row:
    request: Request
    feed: deque[int]  # ids still to read before the first sampled character
    rng: np.random.Generator
    future: asyncio.Future
    deadline: float
    unknown: list[str]
    started: float
    out: list[int] = field(default_factory=list)
    next_id: int = 0


class Scheduler:
    """Continuous batching over one StepModel.

    `generate` queues a request; the step loop admits queued requests into the running batch
    whenever a slot is free, advances all rows with one `session.run`, samples every row that
    is past its prompt, and retires rows that are done, all at every step.
    """

    def __init__(self, model: StepModel, limits: Limits | None = None) -> None:
        self.model = model
        self.limits = limits or Limits()
        self.vocab = model.bundle.vocab
        self._queue: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._states = model.zero_states(0)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"step-{model.bundle.style}")
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._step_seconds = 0.002  # running mean, for "try again in N s" estimates
        self.steps = 0

    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not self._rows and not self._queue

    def retry_after(self) -> float:
        """Seconds until a slot is likely free, from the work ahead and the measured step time."""
        ahead = sum(r.request.length + len(r.feed) - len(r.out) for r in self._rows)
        ahead += sum(r.request.length + len(r.feed) for r in self._queue)
        return max(1.0, math.ceil(ahead / self.limits.max_batch * self._step_seconds))

    def estimate(self, request: Request) -> float:
        """Seconds `request` should take once in the batch, at the measured step time."""
        return (1 + len(request.prompt) + request.length) * self._step_seconds

    async def generate(self, request: Request) -> Generation:
        """Run one request to the end; raises ValueError for bad options, Busy past the limits."""
        request = validate(request, self.limits)
        if self._closing:
            raise Busy("this model is being replaced; try again", 1.0)
        if len(self._queue) >= self.limits.max_queue:
            raise Busy(f"{len(self._queue)} requests are already waiting", self.retry_after())
        ids, unknown = self.vocab.encode(request.prompt)
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        row = _Row(
            request=request,
            feed=deque([self.vocab.start_id, *(int(i) for i in ids if i != self.vocab.unk_id)]),
            rng=np.random.Generator(np.random.PCG64(request.seed)),
            future=loop.create_future(),
            deadline=now + self.limits.deadline,
            unknown=unknown,
            started=now,
        )
        self._queue.append(row)
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"scheduler-{self.model.bundle.style}")
        self._wakeup.set()
        try:
            return await row.future
        finally:
            if not row.future.done():  # the caller gave up: free the slot at the next step
                row.future.cancel()

    async def close(self) -> None:
        """Take no new requests, let running and queued ones finish, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def _admit(self) -> None:
        now = time.monotonic()
        admitted = 0
        while self._queue and len(self._rows) < self.limits.max_batch:
            row = self._queue.popleft()
            if row.future.done():
                continue
            if now > row.deadline:
                row.future.set_exception(
                    Busy("waited too long for a free slot", self.retry_after())
                )
                continue
            row.next_id = row.feed.popleft()
            self._rows.append(row)
            admitted += 1
        if admitted:  # one concatenation for the whole burst of newcomers
            self._states = [
                np.concatenate([s, z])
                for s, z in zip(self._states, self.model.zero_states(admitted), strict=True)
            ]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._admit()
            if not self._rows:
                if self._closing and not self._queue:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            ids = np.fromiter((r.next_id for r in self._rows), np.int64, len(self._rows))
            started = time.monotonic()
            try:
                logits, self._states = await loop.run_in_executor(
                    self._executor, self.model.step, ids, self._states
                )
                elapsed = time.monotonic() - started
                self._step_seconds += 0.05 * (elapsed - self._step_seconds)
                self.steps += 1
                self._advance(logits)
            except Exception as err:  # a bug or a broken device: fail the batch, keep serving
                log.exception("step failed for %s", self.model.bundle.path)
                for row in self._rows:
                    if not row.future.done():
                        row.future.set_exception(RuntimeError(f"the model failed: {err}"))
                self._rows, self._states = [], self.model.zero_states(0)

    def _advance(self, logits: np.ndarray) -> None:
        rows = self._rows
        sampling = [i for i, r in enumerate(rows) if not r.feed]
        if sampling:
            picked = sample(
                logits[sampling],
                np.array([rows[i].request.temperature for i in sampling]),
                np.array([rows[i].request.top_k for i in sampling]),
                np.array([rows[i].request.top_p for i in sampling]),
                np.array([rows[i].rng.random() for i in sampling]),
                banned=self.vocab.unk_id,
            )
            for i, token in zip(sampling, picked.tolist(), strict=True):
                rows[i].out.append(token)
                rows[i].next_id = token
        now = time.monotonic()
        keep: list[int] = []
        for i, row in enumerate(rows):
            if row.feed:  # still reading its prompt: the output is not sampled
                row.next_id = row.feed.popleft()
            if row.future.done():
                continue
            if len(row.out) >= row.request.length:
                row.future.set_result(self._finish(row, now))
            elif now > row.deadline:
                row.future.set_exception(
                    Busy("the poem took too long to write", self.retry_after())
                )
            else:
                keep.append(i)
        if len(keep) != len(rows):
            self._rows = [rows[i] for i in keep]
            index = np.array(keep, dtype=np.int64)
            self._states = [s[index] for s in self._states]

    def _finish(self, row: _Row, now: float) -> Generation:
        r = row.request
        bundle = self.model.bundle
        return Generation(
            text=r.prompt + self.vocab.decode(row.out),
            prompt=r.prompt,
            unknown=row.unknown,
            style=bundle.style,
            version=bundle.version,
            temperature=r.temperature,
            top_k=r.top_k,
            top_p=r.top_p,
            seed=int(r.seed),
            seconds=now - row.started,
        )


async def generate_once(bundle_path: Path, request: Request, providers: str = "auto") -> Generation:
    """Load a bundle, generate one text, close: the shell's and the export check's way in."""
    scheduler = Scheduler(StepModel.load(bundle_path, providers=providers))
    try:
        return await scheduler.generate(request)
    finally:
        with contextlib.suppress(Exception):
            await scheduler.close()
