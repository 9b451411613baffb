"""onnxruntime sessions: one bundle's one-step graph (and its prefill and int8 graphs) on
CUDA or the CPU, with the recurrent state bound to the device where it can stay there."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bot.engine.bundle import PREFILL_FILE, Bundle, BundleError, check_signature, load_bundle

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cuda", "cpu")
PRECISIONS = ("fp32", "int8")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class ProviderError(RuntimeError):
    """The asked-for execution provider cannot run here."""


def _cuda_driver_loads() -> bool:
    """Whether the NVIDIA driver library is present; asking onnxruntime without one only
    produces pages of errors."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def cuda_loads() -> bool:
    """Whether this onnxruntime has the CUDA provider and the NVIDIA driver is present."""
    return _CUDA in ort.get_available_providers() and _cuda_driver_loads()


_shared_pool: bool | None = None
_pool_threads = 0  # 0: one per core


def set_thread_pool_size(threads: int) -> None:
    """How many threads the process's onnxruntime pool gets (0: one per core); takes effect
    only before the first session. Several bot processes on one machine should split the
    cores between them rather than each take them all."""
    global _pool_threads
    if threads < 0:
        raise ValueError("threads must be 0 (one per core) or more")
    _pool_threads = threads


def _use_shared_thread_pool() -> bool:
    """One onnxruntime thread pool for every session of the process, set up before the first
    session. Each session would otherwise own a pool as large as the machine, whose threads
    spin after every run: with a step, a prefill and an int8 session per style they would
    take the cores from each other."""
    global _shared_pool
    if _shared_pool is None:
        try:
            from onnxruntime.capi import _pybind_state

            _pybind_state.set_global_thread_pool_sizes(_pool_threads, 1)
            _shared_pool = True
        except Exception as err:  # the environment already exists, or an older onnxruntime
            log.debug("onnxruntime's shared thread pool is not available (%s)", err)
            _shared_pool = False
    return _shared_pool


def create_session(model_path: Path, providers: str = "auto", threads: int = 0):
    """An onnxruntime session on CUDA or CPU.

    `auto` uses CUDA only where it really loads (checked on the session) and CPU otherwise;
    `cuda` where CUDA cannot load raises ProviderError instead of silently using the CPU.
    Sessions share the process's thread pool unless `threads` asks for a pool of their own,
    which onnxruntime allows only in a process whose sessions have never shared one.
    """
    if providers not in PROVIDERS:
        raise ProviderError(f"providers must be one of {PROVIDERS}, not {providers!r}")
    if threads and _shared_pool:
        raise ProviderError(
            f"this process's sessions share one onnxruntime thread pool; a session of its own "
            f"{threads} threads cannot be made beside them (open it in another process)"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads or not _use_shared_thread_pool():
        options.intra_op_num_threads = threads
    else:
        options.use_per_session_threads = False
    options.log_severity_level = 3
    wants_cuda = providers == "cuda" or (providers == "auto" and cuda_loads())
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


def _ids_dtype(session) -> type:
    return np.int64 if session.get_inputs()[0].type == "tensor(int64)" else np.int32


class StepModel:
    """One bundle's one-step graph in an onnxruntime session: ids + state in, logits + state out.

    With the bundle's optional prefill graph, a prompt is read in one run instead of one step
    per character. With IO binding (the default on CUDA) the recurrent state stays in
    onnxruntime's memory on the device between steps; `host` and `to_device` move it across
    only when the batch changes shape.
    """

    def __init__(
        self,
        bundle: Bundle,
        providers: str = "auto",
        int8: bool = False,
        threads: int = 0,
        io_binding: bool | None = None,
    ) -> None:
        self.bundle = bundle
        self.int8 = int8
        self.session = self._open(bundle.model_path(int8), providers, threads)
        self.provider = self.session.get_providers()[0]
        self.input_names = [a.name for a in self.session.get_inputs()]
        self.output_names = [a.name for a in self.session.get_outputs()]
        self.ids_dtype = _ids_dtype(self.session)
        self.units = bundle.units
        self.n_states = len(bundle.state_names)
        self.device = "cuda" if self.provider == _CUDA else "cpu"
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding
        self.ngram = bundle.load_ngram()
        self.ngram_weight = bundle.ngram_weight
        self.guard = bundle.load_guard()
        self.prefill_session = None
        if bundle.prefill_path is not None:
            self.prefill_session = self._open(bundle.prefill_path, self.device, threads)
            self._prefill_inputs = [a.name for a in self.prefill_session.get_inputs()]
            self._prefill_ids_dtype = _ids_dtype(self.prefill_session)
        log.info(
            "%s/%s runs on %s%s%s%s",
            bundle.style,
            bundle.version,
            self.provider,
            " (int8)" if int8 else "",
            " with prompt prefill" if self.prefill_session else "",
            f", mixed with a {self.ngram.order}-gram model" if self.ngram else "",
        )

    def _open(self, path: Path, providers: str, threads: int):
        """A session of one of the bundle's graphs, its inputs and outputs checked."""
        if not path.is_file():
            raise BundleError(f"{path} is missing")
        try:
            session = create_session(path, providers, threads)
        except ProviderError:
            raise
        except Exception as err:  # a truncated or foreign file: onnxruntime's errors are untyped
            raise BundleError(f"{path}: onnxruntime cannot load it ({err})") from err
        check_signature(
            self.bundle,
            [(a.name, a.shape, a.type) for a in session.get_inputs()],
            [(a.name, a.shape, a.type) for a in session.get_outputs()],
            path.name,
        )
        return session

    def warm_up(self) -> None:
        """One step and one prefill: onnxruntime allocates and plans on a session's first runs,
        which should not be a user's first request."""
        start = self.bundle.vocab.start_id
        self.step(np.array([start]), self.to_device(self.zero_states(1)))
        if self.prefill_session is not None:
            self.prefill([[start, start]])

    @classmethod
    def load(cls, path: Path, providers: str = "auto", int8: bool = False, **options) -> StepModel:
        return cls(load_bundle(path), providers=providers, int8=int8, **options)

    def zero_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, self.units), np.float32) for _ in range(self.n_states)]

    def host(self, states: list) -> list[np.ndarray]:
        """The states as numpy arrays (copied from the device under IO binding)."""
        return [s.numpy() if isinstance(s, ort.OrtValue) else s for s in states]

    def to_device(self, states: list) -> list:
        """States in the form `step` takes: on the device under IO binding."""
        if not self.io_binding:
            return states
        return [
            s
            if isinstance(s, ort.OrtValue)
            else ort.OrtValue.ortvalue_from_numpy(s, self.device, 0)
            for s in states
        ]

    def step(self, ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        """Logits [batch, vocab] (numpy) and the new states, in the form given."""
        ids = ids.astype(self.ids_dtype, copy=False)
        if self.io_binding:
            return self._bound_step(ids, states)
        feeds = {self.input_names[0]: ids}
        feeds.update(zip(self.input_names[1:], states, strict=True))
        logits, *new_states = self.session.run(self.output_names, feeds)
        return logits, new_states

    def _bound_step(self, ids: np.ndarray, states: list) -> tuple[np.ndarray, list]:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_names[0], ids)
        for name, state in zip(self.input_names[1:], self.to_device(states), strict=True):
            binding.bind_ortvalue_input(name, state)
        binding.bind_output(self.output_names[0], "cpu")
        for name in self.output_names[1:]:
            binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(binding)
        logits, *new_states = binding.get_outputs()
        return logits.numpy(), new_states

    def prefill(self, prompts: list[list[int]]) -> list[np.ndarray]:
        """The states [len(prompts), units] after reading each (non-empty) id list from the
        zero state, in one run of the prefill graph; numpy, on the host."""
        if self.prefill_session is None:
            raise RuntimeError(f"{self.bundle.path} has no {PREFILL_FILE}")
        lengths = np.array([len(p) for p in prompts], np.int32)
        ids = np.zeros((len(prompts), int(lengths.max())), self._prefill_ids_dtype)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
        feeds = {self._prefill_inputs[0]: ids, self._prefill_inputs[1]: lengths}
        feeds.update(zip(self._prefill_inputs[2:], self.zero_states(len(prompts)), strict=True))
        _, *states = self.prefill_session.run(None, feeds)
        return states


def _own_precision(bundle: Bundle) -> str:
    return "int8" if bundle.card.get("int8", {}).get("serve") else "fp32"


def serving_precision(bundle: Bundle, precision: str | None = None) -> str:
    """What `load_model` runs a bundle's steps in when asked for `precision` (None: the
    bundle's own): "int8" where it has an int8 graph with per-row scales, else "fp32"."""
    has = bundle.model_path(int8=True).is_file() and "int8" in bundle.card
    return "int8" if (precision or _own_precision(bundle)) == "int8" and has else "fp32"


def load_model(path: Path, providers: str = "auto", precision: str | None = None) -> StepModel:
    """A bundle's model at the asked precision; fp32 (with a log line) where the bundle has no
    int8 graph. No precision asked: the bundle's own, int8 where its card's int8 section says
    `serve` (its int8 graph measured as good as fp32 and faster: see the README), else fp32."""
    bundle = load_bundle(path)
    asked = precision or _own_precision(bundle)
    int8 = serving_precision(bundle, asked) == "int8"
    if asked == "int8" and not int8:
        if not bundle.model_path(int8=True).is_file():
            log.info("%s/%s has no int8 graph; serving fp32", bundle.style, bundle.version)
        else:
            # Written by onnxruntime's dynamic quantisation (one activation scale per batch),
            # whose text would depend on the other requests in the batch.
            log.warning(
                "%s/%s: its int8 graph predates per-row scales; serving fp32 "
                "(`python -m export derive %s` rebuilds it)",
                bundle.style,
                bundle.version,
                bundle.path,
            )
    return StepModel(bundle, providers=providers, int8=int8)
