"""The continuous-batching scheduler: one per live model.

Every step, one `session.run` advances every active request by one character, and every
row's next character is sampled at once. Steps run in a worker thread in bursts (until a row
finishes, a queued request could join, or 20 ms pass), so the event loop is free and pays no
hand-off per character; between bursts it answers finished requests and admits new ones, whose
prompts the bundle's prefill graph reads in one run (or, without one, the same step reads them
inside the batch). Where the bundle carries an n-gram model, each sampled row's distribution is
the card's mixture of the network's and the n-gram's. A request's text depends only on its own
seed and options.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.engine import kernels
from bot.engine.constraints import Masks, RowRules, StuckError
from bot.engine.sampling import sample
from bot.engine.sessions import StepModel, load_model

log = logging.getLogger(__name__)

SEED_MODULUS = 2**64


class Busy(Exception):
    """The engine cannot take (or finish) this request now; `retry_after` is an estimate."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """Bounds that keep the engine answering: past them a request gets `Busy`, never a wait."""

    max_batch: int = 256  # rows: a request with K candidates a line takes K of them
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
    # A form's writer for this poem, made from the seed (bot/forms/rules.py's Writer): what
    # may come next at every character, and where the poem ends. None: a stream of `length`.
    rules: Callable[[int], Any] | None = field(default=None, compare=False)
    # Text the model reads before the prompt (a poem to write on from), not part of the poem
    # nor shown; the copy guard reads it too.
    context: str = ""
    # With a writer: each line is written this many times from the same state, as rows of the
    # batch, and the best-scored candidate goes on (1: as sampled). Without one: 1.
    candidates: int = 1
    # What a candidate is: a "line" (chosen line by line) or the whole "poem".
    candidate_unit: str = "line"
    # The weight, in a line candidate's score, of its lookahead: the log of the probability
    # the network gives, after the line, to what the form allows next (0: none).
    lookahead: float = 0.0


@dataclass(frozen=True)
class LineChoice:
    """One line's candidates (text as written, score) and the index of the one chosen."""

    texts: tuple[str, ...]
    scores: tuple[float, ...]
    chosen: int


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
    relaxed: tuple[str, ...] = ()  # rules a form bent to finish the poem (none: all kept)
    whole: bool = False  # a form's writer saw the poem end (not cut at the length)
    form: str | None = None  # the form its writer kept, where it names one
    lines: tuple[LineChoice, ...] = ()  # each line's candidates, where there were several


def validate(request: Request, limits: Limits) -> Request:
    """The request with a seed chosen if it had none; ValueError saying what to fix otherwise."""
    if not 1 <= request.length <= limits.max_length:
        raise ValueError(f"length must be between 1 and {limits.max_length} characters")
    if len(request.prompt) > limits.max_prompt:
        raise ValueError(
            f"the prompt is {len(request.prompt)} characters; at most {limits.max_prompt} are read"
        )
    if len(request.context) > limits.max_length + limits.max_prompt:
        raise ValueError("the text to write on from is longer than a poem can be")
    if not (math.isfinite(request.temperature) and 0.0 <= request.temperature <= 5.0):
        raise ValueError("temperature must be a number from 0 (always the likeliest) to 5")
    if request.top_k < 0:
        raise ValueError("top-k must be 0 (off) or a positive number of characters")
    if not (math.isfinite(request.top_p) and 0.0 < request.top_p <= 1.0):
        raise ValueError("top-p must be above 0 and at most 1")
    seed = request.seed if request.seed is not None else secrets.randbits(63)
    if not 0 <= seed < SEED_MODULUS:
        raise ValueError(f"seed must be between 0 and {SEED_MODULUS - 1}")
    candidates = request.candidates if request.rules is not None else 1
    if not 1 <= candidates <= limits.max_batch:
        raise ValueError(f"candidates must be between 1 and {limits.max_batch} (the batch)")
    if request.candidate_unit not in CANDIDATE_UNITS:
        raise ValueError(f"a candidate is one of: {', '.join(CANDIDATE_UNITS)}")
    return replace(
        request,
        temperature=float(request.temperature),
        top_p=float(request.top_p),
        seed=seed,
        candidates=candidates,
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
    # The n-gram model's context ids per order once the prefill graph has read the prompt.
    ngram_state: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rules: RowRules | None = None  # the form's writer, when the request has one
    # The copy guard's context (the last k - 1 normalised ids read), when the model has one.
    guard: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    guard_hash: int = 0  # the hash of `guard` (uint64), slid along with it
    listener: Callable[[str], None] | None = None  # told of each stretch of new text
    told: int = 0  # characters of `out` the listener has heard
    error: Exception | None = None  # why the row cannot go on (its writer got stuck)
    group: _Group | None = None  # the request's candidate rows, when it has several
    parked: _Parked | None = None  # where the candidate stood when its line ended


@dataclass(eq=False)
class _Parked:
    """A candidate whose line is written, waiting for the others: its state and columns as
    they were then (it keeps being stepped with the batch, and that is thrown away)."""

    states: list[np.ndarray]
    next_id: int
    left: int
    ngram: np.ndarray
    guard: np.ndarray
    guard_hash: int
    ruled: bool


@dataclass(eq=False)
class _Group:
    """One request's K candidate rows: each line they write from the same state, and when
    all have written theirs, every row takes up the best one."""

    members: list[_Row]
    start: int = 0  # len(out) where the current line began: what is before it is chosen
    lines: list[LineChoice] = field(default_factory=list)


LINE_ENDS = frozenset("\n，。、")  # a candidate's line (a 詞's clause) ends with one of these
CANDIDATE_UNITS = ("line", "poem")


def _candidates(leader: _Row) -> list[_Row]:
    """A newly admitted request's rows: itself, and where it asks for K candidates K - 1 more
    that start where it stands, each with a random stream of its own (the first keeps the
    request's, so candidate 0 writes what a single sample would)."""
    request = leader.request
    if request.candidates == 1:
        return [leader]
    group = _Group([leader])
    leader.group = group
    for k in range(1, request.candidates):
        group.members.append(
            replace(
                leader,
                feed=deque(leader.feed),
                rng=np.random.Generator(np.random.PCG64([int(request.seed), k])),
                out=[],
                ngram_state=leader.ngram_state.copy(),
                rules=leader.rules.fork() if leader.rules is not None else None,
                guard=leader.guard.copy(),
                listener=None,
            )
        )
    _branch(group.members)
    return group.members


def _branch(members: list[_Row]) -> None:
    """Tell each candidate's writer which candidate it is, as a line starts."""
    for k, member in enumerate(members):
        if member.rules is not None:
            member.rules.branch(k)


def _logsumexp(scores: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) of each row of a [rows, vocab] array of its own (overwritten), in
    float64 from float32 sums: a row's value does not depend on the other rows."""
    top = scores.max(axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    np.subtract(scores, top, out=scores)
    np.exp(scores, out=scores)
    total = scores.sum(axis=1, dtype=np.float64)
    return top[:, 0].astype(np.float64) + np.log(total)


def _normaliser(scores: np.ndarray) -> np.ndarray:
    """`_logsumexp` of a [rows, vocab] array of its own, by onnxruntime's row kernel where it
    runs (on the thread pool, a third to a quarter of numpy's time: `bot/engine/kernels`),
    else by numpy."""
    norm = kernels.logsumexp(scores)
    return _logsumexp(scores) if norm is None else norm


def _group_normalisers(
    scores: np.ndarray, grouped: np.ndarray, twin: np.ndarray | None
) -> np.ndarray:
    """`_normaliser` of the candidate rows `grouped` (indices into `scores`), computed once
    for twins (`twin`, over the same rows as `scores`: a row that is the row before it, as a
    group's line starts) and given to each."""
    if twin is None or not twin[grouped].any():
        return _normaliser(scores[grouped])
    own = ~twin[grouped]
    return _normaliser(scores[grouped[own]])[np.cumsum(own) - 1]


def _own(scores: np.ndarray) -> np.ndarray:
    """`scores` if it is an array of its own to write in, else a copy: masks never write into
    an array something else reads. Fancy indexing and the n-gram mixture make one; so does a
    step: onnxruntime hands each run's outputs over as new arrays, each holding its memory
    through a capsule (a view of another array, or a read-only one, is copied)."""
    base = scores.base
    mine = base is None or type(base).__name__ == "PyCapsule"
    return scores if scores.flags.writeable and mine else scores.copy()


def _yield_to_the_loop() -> None:
    """In a step thread (Linux): lower its priority by STEP_THREAD_NICE, so that the event
    loop, which acknowledges Discord's interactions, gets a core first whenever both want one.
    Measured under `make load` with 8 candidates a line: ack p50 halved (41 -> 21 ms)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: as before
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid) + STEP_THREAD_NICE
        os.setpriority(os.PRIO_PROCESS, tid, nice)


def _fail(rows: list[_Row], err: Exception) -> None:
    for row in rows:
        if not row.future.done():
            row.future.set_exception(RuntimeError(f"the model failed: {err}"))


UNIFORM_BLOCK = 64  # draws taken from a row's random stream at a time
BURST_SECONDS = 0.02  # longest run of steps in the worker before the event loop gets the batch
STEP_THREAD_NICE = 10  # how much less a step thread is favoured than the event loop (Linux nice)


@dataclass
class _Columns:
    """The running batch's per-row values as arrays in row order, so a step's bookkeeping is
    a few vector operations instead of a Python loop over the rows."""

    temperature: np.ndarray
    top_k: np.ndarray
    top_p: np.ndarray
    left: np.ndarray  # characters each row has still to write
    deadline: np.ndarray
    next_id: np.ndarray  # what each row reads at the next step
    uniforms: np.ndarray  # [rows, UNIFORM_BLOCK]: the next draws of each row's own stream
    used: np.ndarray  # how many of its uniforms each row has used
    ngram: np.ndarray  # [rows, order]: each row's n-gram context ids ([rows, 0] without one)
    ruled: np.ndarray  # whether each row has a writer whose mask applies
    guard: np.ndarray  # [rows, k - 1]: each row's copy-guard context ([rows, 0] without one)
    guard_hash: np.ndarray  # [rows] uint64: each context's hash
    grouped: np.ndarray  # whether each row is one of its request's candidates
    by_line: np.ndarray  # whether a candidate's line (not its whole poem) is chosen
    parked: np.ndarray  # whether each row is a candidate waiting for its group's choice
    logp: np.ndarray  # a candidate's log-probability of its line so far
    chars: np.ndarray  # and the characters in it
    # Whether a row's state and next input are the row before it's (a candidate group's rows
    # as its line starts, all from one state): the next step computes them once.
    twin: np.ndarray

    @classmethod
    def of(cls, rows: list[_Row], order: int = 0, guard: int = 0) -> _Columns:
        # A block of draws is the same sequence as as many single draws, so a row's text does
        # not depend on when its blocks are taken.
        blocks = [r.rng.random(UNIFORM_BLOCK) for r in rows]
        return cls(
            np.array([r.request.temperature for r in rows], np.float64),
            np.array([r.request.top_k for r in rows], np.int64),
            np.array([r.request.top_p for r in rows], np.float64),
            np.array([r.request.length for r in rows], np.int64),
            np.array([r.deadline for r in rows], np.float64),
            np.array([r.next_id for r in rows], np.int64),
            np.array(blocks, np.float64).reshape(len(rows), UNIFORM_BLOCK),
            np.zeros(len(rows), np.int64),
            np.array([r.ngram_state for r in rows], np.int64).reshape(len(rows), order),
            np.array([r.rules is not None for r in rows], bool),
            np.array([r.guard for r in rows], np.int64).reshape(len(rows), guard),
            np.array([r.guard_hash for r in rows], np.uint64),
            np.array([r.group is not None for r in rows], bool),
            np.array([r.request.candidate_unit == "line" for r in rows], bool),
            np.zeros(len(rows), bool),
            np.zeros(len(rows), np.float64),
            np.zeros(len(rows), np.int64),
            np.array([r.group is not None and r.group.members[0] is not r for r in rows], bool),
        )

    def extend(self, other: _Columns) -> _Columns:
        return _Columns(
            *(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self))
        )

    def select(self, index: np.ndarray) -> _Columns:
        return _Columns(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass
class _Plan:
    """What one step samples: the rows (indices into the batch), their options and draws."""

    sampling: np.ndarray
    reading: np.ndarray | None  # rows reading a prompt character this step, if any
    temperature: np.ndarray
    top_k: np.ndarray
    top_p: np.ndarray
    uniforms: np.ndarray


class Scheduler:
    """Continuous batching over one StepModel.

    `generate` queues a request; the loop admits queued requests into the running batch
    whenever a slot is free (reading their prompts with the prefill graph), then hands the
    batch to the worker thread, which advances all rows with one `session.run` per step and
    samples every row past its prompt, step after step, until a row is done or a newcomer
    could join; back on the loop, finished rows are answered and the batch closes up.
    """

    def __init__(
        self,
        model: StepModel,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.limits = limits or Limits()
        self._clock = clock  # what deadlines are read on (tests move one by hand)
        self.vocab = model.bundle.vocab
        self._queue: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._states = model.to_device(model.zero_states(0))
        self._admitting: list[_Row] = []
        self._order = model.ngram.order if model.ngram else 0
        self.guard = model.guard
        self._guard_width = model.guard.k - 1 if model.guard else 0
        self._cols = self._columns([])
        self.guarded_steps = 0  # row-steps at which the copy guard banned something
        self.masks = Masks(self.vocab)
        self._line_end = self.masks.of(LINE_ENDS)  # ids that end a candidate's line
        self._feeding = False  # some row reads its prompt one step at a time (no prefill graph)
        self._cancelled = False  # some row's caller gave up since the last step
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"step-{model.bundle.style}", initializer=_yield_to_the_loop
        )
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._step_seconds = 0.002  # running mean, for "try again in N s" estimates
        self.steps = 0

    def _columns(self, rows: list[_Row]) -> _Columns:
        return _Columns.of(rows, self._order, self._guard_width)

    @property
    def active(self) -> int:
        """Requests in the running batch (one with K candidates holds K rows)."""
        return sum(1 for r in self._rows if r.group is None or r.group.members[0] is r)

    @property
    def rows(self) -> int:
        """Rows of the running batch."""
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

    async def generate(
        self, request: Request, listener: Callable[[str], None] | None = None
    ) -> Generation:
        """Run one request to the end; raises ValueError for bad options, Busy past the limits.

        `listener`, if given, is called on the event loop with each stretch of new text as it
        is written (after every burst of steps, so about every 20 ms at most); the returned
        Generation is the poem as it stands, which may end before the last stretch heard when
        the length cut it at its last whole line. A caller that gives up (its task cancelled)
        frees its row at the next step."""
        request = validate(request, self.limits)
        if self._closing:
            raise Busy("this model is being replaced; try again", 1.0)
        if len(self._queue) >= self.limits.max_queue:
            raise Busy(f"{len(self._queue)} requests are already waiting", self.retry_after())
        ids, unknown = self.vocab.encode(request.prompt)
        context = self.vocab.encode(request.context)[0] if request.context else []
        rules = None
        if request.rules is not None:
            rules = RowRules(request.rules(int(request.seed)), self.masks)
            for ch in request.prompt:  # the prompt is the poem's beginning
                rules.advance(ch)
        loop = asyncio.get_running_loop()
        now = self._clock()
        row = _Row(
            request=request,
            feed=deque(
                [
                    self.vocab.start_id,
                    *(int(i) for i in context if i != self.vocab.unk_id),
                    *(int(i) for i in ids if i != self.vocab.unk_id),
                ]
            ),
            rng=np.random.Generator(np.random.PCG64(request.seed)),
            future=loop.create_future(),
            deadline=now + self.limits.deadline,
            unknown=unknown,
            started=now,
            rules=rules,
            listener=listener,
        )
        if self.guard is not None:  # the prompt counts: a lyric typed in unlocks nothing
            read = [*context, *ids]
            row.guard, start = self.guard.context([i for i in read if i != self.vocab.unk_id])
            row.guard_hash = int(start)
        self._queue.append(row)
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"scheduler-{self.model.bundle.style}")
        self._wakeup.set()
        try:
            return await row.future
        finally:
            # The caller gave up (cancelling its task cancels the future it awaits): free the
            # slot at the next step.
            if row.future.cancelled() or not row.future.done():
                row.future.cancel()
                self._cancelled = True

    async def close(self) -> None:
        """Take no new requests, let running and queued ones finish, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _admit(self) -> None:
        """Move queued requests into free slots; their prompts are read by the prefill graph in
        one run (all but the last character, which the next step reads)."""
        now = self._clock()
        newcomers = self._admitting = []  # failed by _run if anything below raises
        taken = len(self._rows)
        while self._queue and self._fits(self._queue[0], taken):
            row = self._queue.popleft()
            if row.future.done():
                continue
            if now > row.deadline:
                row.future.set_exception(
                    Busy("waited too long for a free slot", self.retry_after())
                )
                continue
            newcomers.append(row)
            taken += row.request.candidates
        if not newcomers:
            return
        fresh = self.model.zero_states(len(newcomers))
        prefilled: list[list[int]] = [[] for _ in newcomers]  # ids the prefill graph read
        reading = [i for i, r in enumerate(newcomers) if len(r.feed) > 1]
        if reading and self.model.prefill_session is not None:
            prompts = [list(newcomers[i].feed)[:-1] for i in reading]
            loop = asyncio.get_running_loop()
            try:
                states = await loop.run_in_executor(self._executor, self.model.prefill, prompts)
            except Exception as err:  # fail these newcomers, keep the running batch going
                log.exception("prefill failed for %s", self.model.bundle.path)
                _fail(newcomers, err)
                return
            for fresh_state, state in zip(fresh, states, strict=True):
                fresh_state[reading] = state
            for i, prompt in zip(reading, prompts, strict=True):
                newcomers[i].feed = deque([newcomers[i].feed[-1]])
                prefilled[i] = prompt
        ngram = self.model.ngram
        for row, read in zip(newcomers, prefilled, strict=True):
            if ngram is not None:
                row.ngram_state = ngram.state_after(read)
            row.next_id = row.feed.popleft()
            self._feeding = self._feeding or bool(row.feed)
        if any(r.request.candidates > 1 for r in newcomers):
            # K candidates a request (31 forks of its writer, 31 random streams: about 1 ms a
            # Tang request at 32) are made in the step thread, idle between bursts, so that
            # the event loop stays free to acknowledge interactions meanwhile.
            loop = asyncio.get_running_loop()
            rows, take, columns = await loop.run_in_executor(
                self._executor, self._expand, newcomers
            )
        else:
            rows, take, columns = self._expand(newcomers)
        self._admitting = rows
        # One concatenation for the whole burst of newcomers.
        old = self.model.host(self._states)
        self._states = self.model.to_device(
            [np.concatenate([s, z[take]]) for s, z in zip(old, fresh, strict=True)]
        )
        self._cols = self._cols.extend(columns)
        self._rows.extend(rows)
        self._admitting = []

    def _expand(self, newcomers: list[_Row]) -> tuple[list[_Row], list[int], _Columns]:
        """The newcomers' rows (a request with candidates becomes its K rows, each from the
        state its prompt left), the newcomer each row comes from, and their columns."""
        rows, take = [], []
        for n, row in enumerate(newcomers):
            members = _candidates(row)
            rows.extend(members)
            take.extend([n] * len(members))
        return rows, take, self._columns(rows)

    def _fits(self, row: _Row, taken: int) -> bool:
        """Whether a queued request's rows fit beside `taken` rows of the batch."""
        return taken + row.request.candidates <= self.limits.max_batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._admit()
                if not self._rows:
                    if self._closing and not self._queue:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                started = time.monotonic()
                self._states, steps = await loop.run_in_executor(
                    self._executor, self._burst, self._states
                )
                elapsed = (time.monotonic() - started) / steps
                self._step_seconds += 0.05 * (elapsed - self._step_seconds)
                self.steps += steps
                self._retire()
            except Exception as err:  # a bug or a broken device: fail the batch, keep serving
                log.exception("step failed for %s", self.model.bundle.path)
                _fail([*self._rows, *self._admitting], err)
                self._admitting = []
                self._rows, self._states = [], self.model.to_device(self.model.zero_states(0))
                self._cols, self._feeding = self._columns([]), False

    def _burst(self, states: list) -> tuple[list, int]:
        """In the worker thread: steps of the whole batch, each followed by sampling and
        recording every row's next character, until a row is done, out of time or given up,
        a queued request could take a free slot, or BURST_SECONDS have passed. The event loop
        meanwhile only queues new requests; it gets the batch back to retire and admit rows.
        """
        started = time.monotonic()
        steps = 0
        cols = self._cols
        ngram = self.model.ngram
        while True:
            plan = self._plan()
            twin = cols.twin[plan.sampling] if cols.twin.any() else None  # (the step clears)
            scores, states = self._step(plan, states)
            if ngram is not None:
                cols.ngram = ngram.advance(cols.ngram, cols.next_id)
                scores = ngram.mixed_logits(
                    scores, cols.ngram[plan.sampling], self.model.ngram_weight
                )
            # Candidates are scored under the model's own distribution, before any mask.
            grouped = np.flatnonzero(cols.grouped[plan.sampling])
            if grouped.size:
                norm = _group_normalisers(scores, grouped, twin)
            temperature = plan.temperature
            ruled = np.flatnonzero(cols.ruled[plan.sampling])
            if ruled.size:
                scores, temperature = self._constrain(plan, ruled, scores)
            if self.guard is not None:
                scores = self._guard(plan, scores)
            picked = sample(
                scores,
                temperature,
                plan.top_k,
                plan.top_p,
                plan.uniforms,
                banned=self.vocab.unk_id,
            )
            self._record(plan, picked)
            if self.guard is not None:
                self.guard.advance(cols.guard, cols.guard_hash, plan.sampling, picked)
            if ruled.size:
                self._heard(plan.sampling[ruled], picked[ruled])
            if grouped.size:
                # Masks and the guard leave a picked character's score as it was.
                logp = scores[grouped, picked[grouped]] - norm
                states = self._score(plan.sampling[grouped], picked[grouped], logp, states)
            steps += 1
            if (
                ((cols.left <= 0) & ~cols.parked).any()
                or (cols.deadline < self._clock()).any()
                or self._cancelled
                or (self._queue and self._fits(self._queue[0], len(self._rows)))
                or time.monotonic() - started > BURST_SECONDS
            ):
                return states, steps

    def _step(self, plan: _Plan, states: list) -> tuple[np.ndarray, list]:
        """One step of the batch: the sampling rows' logits, and the new states. Candidates
        parked at their line's end wait unstepped (their state is kept in `_Parked`), so a
        group whose lines differ in length costs the rows still writing, not all K; a group
        whose line starts (its K rows one state, reading one character) is stepped as one row,
        which gives each of them what it would have alone (a row's result does not depend on
        the batch around it)."""
        cols = self._cols
        twins = cols.twin.any()
        if not isinstance(states[0], np.ndarray) or not (twins or cols.parked.any()):
            logits, states = self.model.step(cols.next_id, states)  # (device states: all)
            cols.twin[:] = False
            every = len(plan.sampling) == len(logits)  # (then in row order: no copy to take)
            return (logits if every else logits[plan.sampling]), states
        live = np.flatnonzero(~cols.parked)
        if twins:
            # Each live row's source: the last row at or before it that is no one's twin (a
            # group's rows are consecutive and all live as a line starts).
            own = ~cols.twin[live]
            lead = live[own]
            source = np.cumsum(own) - 1
            cols.twin[:] = False
        else:
            lead, source = live, None
        logits, stepped = self.model.step(cols.next_id[lead], [s[lead] for s in states])
        pick = np.searchsorted(live, plan.sampling)  # each sampling row's place among `live`
        if source is not None:
            stepped = [s[source] for s in stepped]
            pick = source[pick]
        for state, new in zip(states, stepped, strict=True):
            state[live] = new
        return logits[pick], states

    def _constrain(
        self, plan: _Plan, ruled: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each writer's mask on its row's scores (logits -> mask -> temperature -> top-k/p);
        a row whose writer asks for the likeliest character samples at temperature 0."""
        rows, cols = self._rows, self._cols
        # Each row's mask as an addend (0 where allowed, -inf not: x + 0 is x, so an allowed
        # character's score stays exactly as it was), four times the speed of assigning
        # -inf through a boolean index; added row by row into scores of their own (never the
        # model's outputs), one pass over each row.
        scores = _own(scores)
        temperature = plan.temperature
        for j, i in zip(ruled.tolist(), plan.sampling[ruled].tolist(), strict=True):
            row, line = rows[i], scores[j]
            try:
                greedy = row.rules.constrain(line)
            except StuckError as err:  # this row ends; the batch goes on
                row.error, cols.ruled[i], cols.left[i] = err, False, 0
                np.add(line, self.masks.everything_addend, out=line)
                greedy = False
            if greedy:
                if temperature is plan.temperature:
                    temperature = temperature.copy()
                temperature[j] = 0.0
        return scores, temperature

    def _guard(self, plan: _Plan, scores: np.ndarray) -> np.ndarray:
        """Ban, in each sampling row, every character that would complete a run of k of the
        training text; a row left with nothing allowed (its form demanded a banned character)
        ends with a reason."""
        cols = self._cols
        found = self.guard.banned(cols.guard[plan.sampling], cols.guard_hash[plan.sampling])
        if not found:
            return scores
        scores = _own(scores)
        for j, ids in found:
            scores[j, ids] = -np.inf
            if not np.isfinite(scores[j]).any():
                i = int(plan.sampling[j])
                self._rows[i].error = StuckError(
                    "every character the form allows here would copy the training text; try "
                    "another seed"
                )
                self._cols.ruled[i], self._cols.left[i] = False, 0
                scores[j] = 0.0  # sample anything: the row ends with its error
        self.guarded_steps += len(found)
        return scores

    def _heard(self, index: np.ndarray, picked: np.ndarray) -> None:
        """Tell each writer what its row wrote; a writer that sees its poem end ends the row."""
        rows, cols, chars = self._rows, self._cols, self.vocab.chars
        for i, token in zip(index.tolist(), picked.tolist(), strict=True):
            rules = rows[i].rules
            if rules is None or not cols.ruled[i]:
                continue
            rules.advance(chars[token])
            if rules.done:
                cols.left[i] = 0

    def _score(self, index: np.ndarray, picked: np.ndarray, logp: np.ndarray, states: list) -> list:
        """After a step, for candidate rows: add each character's log-probability to its line;
        park each candidate whose line (or poem, or length, or luck) has ended; where a whole
        group is parked, choose its line. Returns the states, with chosen ones copied in."""
        rows, cols = self._rows, self._cols
        cols.logp[index] += logp
        cols.chars[index] += 1
        # A stuck row (its writer or the copy guard) has nothing left to write either.
        line = self._line_end[picked] & cols.by_line[index]
        ended = index[line | (cols.left[index] <= 0)]
        if not ended.size:
            return states
        host = self.model.host(states)
        where: dict[int, int] | None = None  # row -> its index, once a group is chosen
        for i in ended.tolist():
            row = rows[i]
            cols.parked[i] = True
            row.parked = _Parked(
                states=[s[i].copy() for s in host],
                next_id=int(cols.next_id[i]),
                left=int(cols.left[i]),
                ngram=cols.ngram[i].copy(),
                guard=cols.guard[i].copy(),
                guard_hash=int(cols.guard_hash[i]),
                ruled=bool(cols.ruled[i]),
            )
            group = row.group
            if all(m.parked is not None for m in group.members):
                if where is None:
                    host = [np.array(s) for s in host]  # written in below
                    where = {id(r): j for j, r in enumerate(rows)}
                self._choose(group, host, where)
        return self.model.to_device(host) if where is not None else states

    def _choose(self, group: _Group, host: list[np.ndarray], where: dict[int, int]) -> None:
        """Every candidate's line is written: the best-scored one (mean log-probability per
        character, less its writer's penalty; a rejected or stuck one only when all are) is
        copied into every row of the group, which writes the next line from it."""
        members, cols = group.members, self._cols
        weight = members[0].request.lookahead
        ahead = self._lookahead(members) if weight else [0.0] * len(members)
        scores, keys = [], []
        for k, m in enumerate(members):
            i = where[id(m)]
            mean = float(cols.logp[i]) / max(int(cols.chars[i]), 1)
            penalty = m.rules.penalty() if m.rules is not None and m.error is None else 0.0
            score = mean - penalty + weight * ahead[k] if math.isfinite(penalty) else -math.inf
            scores.append(score if m.error is None else -math.inf)
            keys.append((m.error is not None, not math.isfinite(penalty), -score, -mean, k))
        best = min(range(len(members)), key=keys.__getitem__)
        winner = members[best]
        texts = tuple(self.vocab.decode(m.out[group.start :]) for m in members)
        group.lines.append(LineChoice(texts, tuple(scores), best))
        parked = winner.parked
        for m in members:
            i = where[id(m)]
            for state, value in zip(host, parked.states, strict=True):
                state[i] = value
            cols.next_id[i], cols.left[i] = parked.next_id, parked.left
            cols.ngram[i], cols.guard[i] = parked.ngram, parked.guard
            cols.guard_hash[i], cols.ruled[i] = parked.guard_hash, parked.ruled
            cols.parked[i] = False
            if m is not winner:
                m.out = list(winner.out)
                m.rules = winner.rules.fork() if winner.rules is not None else None
                m.error = winner.error
            cols.logp[i], cols.chars[i] = 0.0, 0
            cols.twin[i] = m is not members[0]
        for m in members:
            m.parked = None
        _branch(members)
        group.start = len(winner.out)

    def _lookahead(self, members: list[_Row]) -> list[float]:
        """Each parked candidate's lookahead: one step past its line's end (its own row, off
        the batch), the log of the probability the network (with its n-gram model, as
        sampled) gives to what the form allows next; 0 where the poem ends with the line,
        -inf where the form allows nothing next."""
        out = [0.0] * len(members)
        ahead = [
            k
            for k, m in enumerate(members)
            if m.error is None and m.rules is not None and not m.rules.done
        ]
        if not ahead:
            return out
        parked = [members[k].parked for k in ahead]
        ids = np.array([p.next_id for p in parked], np.int64)
        states = [np.stack(column) for column in zip(*(p.states for p in parked), strict=True)]
        logits, _ = self.model.step(ids, self.model.to_device(states))
        scores = np.asarray(logits, np.float64)
        if self.model.ngram is not None:
            context = self.model.ngram.advance(np.stack([p.ngram for p in parked]), ids)
            scores = self.model.ngram.mixed_logits(scores, context, self.model.ngram_weight)
        total = _logsumexp(scores.copy())
        for j, k in enumerate(ahead):
            addend, _ = self.masks.addend(members[k].rules.writer.allowed())
            if addend is None:  # the form allows nothing next
                out[k] = -math.inf
                continue
            out[k] = float(_logsumexp(scores[j : j + 1] + addend)[0] - total[j])
        return out

    def _plan(self) -> _Plan:
        """Before a step: which rows sample, with what options, and their draws."""
        rows, cols = self._rows, self._cols
        if self._feeding:  # rows still reading their prompt are not sampled
            reading = np.fromiter((bool(r.feed) for r in rows), bool, len(rows))
            sampling = np.flatnonzero(~reading)
        else:
            reading, sampling = None, np.arange(len(rows))
        if cols.parked.any():  # candidates whose line is written wait for the others
            sampling = sampling[~cols.parked[sampling]]
        for i in np.flatnonzero(cols.used == UNIFORM_BLOCK).tolist():
            cols.uniforms[i] = rows[i].rng.random(UNIFORM_BLOCK)
            cols.used[i] = 0
        uniforms = cols.uniforms[sampling, cols.used[sampling]]
        cols.used[sampling] += 1
        return _Plan(
            sampling,
            reading,
            cols.temperature[sampling],
            cols.top_k[sampling],
            cols.top_p[sampling],
            uniforms,
        )

    def _record(self, plan: _Plan, picked: np.ndarray) -> None:
        """After a step: each sampling row's new character, each reading row's next input."""
        rows, cols = self._rows, self._cols
        sampling, reading = plan.sampling, plan.reading
        if sampling.size:
            cols.next_id[sampling] = picked
            cols.left[sampling] -= 1
            for i, token in zip(sampling.tolist(), picked.tolist(), strict=True):
                rows[i].out.append(token)
        if reading is not None:
            for i in np.flatnonzero(reading).tolist():
                cols.next_id[i] = rows[i].feed.popleft()
            self._feeding = any(r.feed for r in rows)

    def _tell(self) -> None:
        """On the event loop, after a burst: each listening row's new text."""
        for row in self._rows:
            # A request with candidates is told only the lines chosen.
            written = row.group.start if row.group is not None else len(row.out)
            if row.listener is not None and written > row.told and not row.future.done():
                text = self.vocab.decode(row.out[row.told : written])
                row.told = written
                try:
                    row.listener(text)
                except Exception:  # a listener's failure must not stop the batch
                    log.exception("a text listener failed")
                    row.listener = None

    def _retire(self) -> None:
        """On the event loop, after a burst: answer the rows that are done, out of time or
        given up, and close the batch up behind them."""
        self._tell()
        rows, cols = self._rows, self._cols
        now = self._clock()
        finished = (cols.left <= 0) & ~cols.parked
        retire = finished | (cols.deadline < now)
        if self._cancelled:
            self._cancelled = False
            retire |= np.fromiter((r.future.done() for r in rows), bool, len(rows))
        if not retire.any():
            return
        for i in np.flatnonzero(retire).tolist():
            row = rows[i]
            if row.future.done():
                continue
            if row.error is not None:
                row.future.set_exception(row.error)
            elif finished[i]:
                try:
                    row.future.set_result(self._finish(row, now))
                except ValueError as err:
                    row.future.set_exception(err)
            else:
                row.future.set_exception(
                    Busy("the poem took too long to write", self.retry_after())
                )
        for i in np.flatnonzero(retire).tolist():
            # A group and its rows point at each other: part them, so that reference counting
            # frees a finished poem's rows at once. Left to the cycle collector they would
            # outlive the young generations (a poem takes seconds) and wait for a full
            # collection: 130 ms of the event loop every 30 s under `make load`.
            if rows[i].group is not None:
                rows[i].group.members.clear()
                rows[i].group = None
        keep = np.flatnonzero(~retire)
        self._rows = [rows[i] for i in keep.tolist()]
        self._cols = cols.select(keep)
        self._states = self.model.to_device([s[keep] for s in self.model.host(self._states)])

    def _finish(self, row: _Row, now: float) -> Generation:
        """The answer for a row that is done; with a writer whose poem the length cut short,
        the poem up to its last whole line (ValueError when no line was whole)."""
        r = row.request
        bundle = self.model.bundle
        out, rules = row.out, row.rules
        if rules is not None and not rules.done:
            keep = rules.cut() - len(r.prompt)
            if keep <= 0:
                raise ValueError(
                    f"{r.length} characters did not hold one whole line; ask for a longer length"
                )
            out = out[:keep]
        return Generation(
            text=r.prompt + self.vocab.decode(out),
            prompt=r.prompt,
            unknown=row.unknown,
            style=bundle.style,
            version=bundle.version,
            temperature=r.temperature,
            top_k=r.top_k,
            top_p=r.top_p,
            seed=int(r.seed),
            seconds=now - row.started,
            relaxed=tuple(rules.relaxed) if rules is not None else (),
            whole=rules is not None and rules.done,
            form=getattr(rules.writer, "form", None) if rules is not None else None,
            lines=tuple(row.group.lines) if row.group is not None else (),
        )


async def generate_once(
    bundle_path: Path, request: Request, providers: str = "auto", precision: str | None = None
) -> Generation:
    """Load a bundle, generate one text, close: the shell's and the export check's way in."""
    scheduler = Scheduler(load_model(bundle_path, providers, precision))
    try:
        return await scheduler.generate(request)
    finally:
        with contextlib.suppress(Exception):
            await scheduler.close()
