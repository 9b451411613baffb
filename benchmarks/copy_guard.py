"""What the copy guard buys and what it costs, guarded bundle against the same model unguarded.

    python -m benchmarks.copy_guard [--samples 1000] [--tang-samples 200] [--corpora DIR]

jaychou: models/jaychou/v3 (a guard of k = 8) against models/jaychou/v2 (the same network and
n-gram, no guard). tang: models/tang/v1 against a copy of it given a guard of 8 by
`export.onnx_export.add_guard` in a temporary folder (removed at the end). For each style:

- copying: N plain streams (`Request(length=300, seed=s)`, seeds 0..N-1, temperature 0.8,
  top-p 1, no rules) from each variant; per sample, the longest run found verbatim in the
  training split, both normalised as the guard normalises (`copyguard.transparent`
  characters dropped). Computed exactly from the training text, not from the guard's index:
  the sorted 64-bit hashes of the split's normalised L-grams for L = 1, 2, ... (another hash
  than the guard's), each sample's longest L found, a witness run of it checked with a
  substring search (a hash collision would fall back to a plain search), runs past 40
  extended by substring search; a few samples are also checked against a plain search, and
  every sample against the guard's own `holds_copy`. Median, p99, max and the share of
  samples holding a run >= 8;
- fluency: the mean loss (nats/char) of the samples under the network alone (teacher-forced
  through `StepModel.step` from zero states, fed from the start id; jaychou's served
  distribution also mixes in its n-gram, which is left out here) and under a Kneser-Ney
  6-gram of the training split (`benchmarks.kneser_ney.KneserNey`, each sample read after a
  newline), guarded against unguarded, with the paired (same seed) difference;
- guard activity: `Scheduler.guarded_steps` over the row-steps sampled (N * 300), and the
  share of samples whose text differs from the unguarded one of the same seed;
- serving: chars/s and latency of 300-character requests at concurrency 1 and 64 (closed
  loop: each client sends its next request when answered; 16 and 128 requests), the two
  variants taking turns (ABBA) 5 times, medians and their ratio;
- memory: the index's `nbytes` and file size, the resident memory of loading each bundle in
  a fresh process (`StepModel.load(..., providers="cpu")`, 3 alternating runs, medians), the
  index's load time, and `CopyIndex.build` on the training split (median of 3).

Results go to benchmarks/results/copy_guard.{json,md}. Neither holds any text: the Jay Chou
corpus is copyrighted, and so no sample (nor corpus line) is written or printed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.kneser_ney import KneserNey, code_points
from benchmarks.stats import percentile, write_results
from bot.corpus import load_corpus, split
from bot.engine.bundle import MODEL_FILE, load_bundle
from bot.engine.copyguard import GUARD_FILE, CopyIndex, transparent
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import StepModel

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
K = 8  # the guard every guarded variant carries
LENGTH = 300
TEMPERATURE = 0.8
KN_ORDER = 6
HASHED_UP_TO = 40  # runs up to this long are found by hashing, longer ones by substring search
CROSS_CHECKED = 20  # samples per variant also measured by a plain substring search
LEVELS = {1: 16, 64: 128}  # concurrency: requests per closed-loop run
REPEATS = 5
BUILDS = 3
RSS_RUNS = 3
SERVING_TARGET = 0.9
_BASE = np.uint64(0xD6E8FEB86659FD93)  # odd; not the guard's multiplier


def say(*parts: Any) -> None:
    print(*parts, flush=True)


# --- copying: the exact longest verbatim run ------------------------------------------------


def plain_longest(text: str, corpus: str, best: int = 0) -> int:
    """The longest substring of `text` found in `corpus`, by substring search, given that one
    of length `best` is known to be there."""
    for i in range(len(text)):
        while i + best < len(text) and text[i : i + best + 1] in corpus:
            best += 1
    return best


class Runs:
    """Longest verbatim runs of texts in a training split, both normalised as the copy guard
    normalises them (every `transparent` character dropped)."""

    def __init__(self, train: str) -> None:
        self._drop: dict[int, None] = {}
        self._seen: set[str] = set()
        self.train = self.normalise(train)
        self._points = code_points(self.train).astype(np.uint64) + np.uint64(1)
        self.collisions = 0  # hash hits that the substring check refuted (expected: none)
        self.extended = 0  # samples whose run passed HASHED_UP_TO

    def normalise(self, text: str) -> str:
        new = set(text) - self._seen
        if new:
            self._seen |= new
            self._drop.update({ord(c): None for c in new if transparent(c)})
        return text.translate(self._drop)

    def longest(self, texts: list[str]) -> list[int]:
        """Each text's longest normalised run that the normalised training split holds."""
        norm = [self.normalise(t) for t in texts]
        lengths = np.array([len(s) for s in norm], np.int64)
        x = np.zeros((len(norm), max(int(lengths.max(initial=0)), 1)), np.uint64)
        for i, s in enumerate(norm):
            x[i, : len(s)] = code_points(s).astype(np.uint64) + np.uint64(1)
        best = np.zeros(len(norm), np.int64)
        start = np.zeros(len(norm), np.int64)  # where a run of `best` begins
        alive = np.flatnonzero(lengths > 0)  # rows whose run may reach the next length
        grams, hashed = self._points.copy(), x[alive]  # hashes of the L-grams, L = 1
        length = 1
        while alive.size and length <= HASHED_UP_TO and len(grams):
            if length > 1:
                grams = grams[:-1] * _BASE + self._points[length - 1 :]
                hashed = hashed[:, :-1] * _BASE + x[alive, length - 1 :]
            known = np.unique(grams)
            found = np.minimum(np.searchsorted(known, hashed), len(known) - 1)
            fits = np.arange(hashed.shape[1])[None, :] + length <= lengths[alive, None]
            hit = (known[found] == hashed) & fits
            holds = hit.any(axis=1)
            best[alive[holds]] = length
            start[alive[holds]] = hit[holds].argmax(axis=1)
            alive, hashed = alive[holds], hashed[holds]
            length += 1
        out = best.tolist()
        for i, n in enumerate(out):
            if n and norm[i][start[i] : start[i] + n] not in self.train:
                self.collisions += 1
                out[i] = plain_longest(norm[i], self.train)
            elif n == HASHED_UP_TO:
                self.extended += 1
                out[i] = plain_longest(norm[i], self.train, n)
        return out

    def plain(self, texts: list[str]) -> list[int]:
        return [plain_longest(self.normalise(t), self.train) for t in texts]


def run_stats(runs: list[int]) -> dict[str, Any]:
    return {
        "samples": len(runs),
        "median": statistics.median(runs),
        "mean": round(statistics.fmean(runs), 3),
        "p99": percentile(runs, 0.99),
        "max": max(runs),
        "share_at_least_k": sum(r >= K for r in runs) / len(runs),
        "histogram": {str(n): c for n, c in sorted(Counter(runs).items())},
    }


# --- generating ------------------------------------------------------------------------------


@dataclass
class Written:
    texts: list[str]
    guarded_steps: int
    steps: int
    seconds: float

    @property
    def row_steps(self) -> int:
        return sum(len(t) for t in self.texts)  # no prompts: one sampled row-step a character


def write(model: StepModel, seeds: list[int]) -> Written:
    """Plain streams of LENGTH characters, one per seed, through one scheduler (64 at a time)."""

    async def run() -> Written:
        scheduler = Scheduler(model, Limits(max_queue=100_000, deadline=3600.0))
        started = time.perf_counter()
        try:
            got = await asyncio.gather(
                *(
                    scheduler.generate(Request(length=LENGTH, temperature=TEMPERATURE, seed=s))
                    for s in seeds
                )
            )
        finally:
            await scheduler.close()
        seconds = time.perf_counter() - started
        return Written([g.text for g in got], scheduler.guarded_steps, scheduler.steps, seconds)

    return asyncio.run(run())


# --- fluency ---------------------------------------------------------------------------------


def network_nats(model: StepModel, texts: list[str]) -> np.ndarray:
    """Each text's mean loss (nats/char) under the network alone, teacher-forced from the
    zero state fed the start id."""
    vocab = model.bundle.vocab
    out = np.zeros(len(texts))
    for lo in range(0, len(texts), 128):
        chunk = texts[lo : lo + 128]
        seqs = [vocab.encode(t)[0].astype(np.int64) for t in chunk]
        if any((s == vocab.unk_id).any() for s in seqs):
            raise ValueError("a sample holds the unknown id, which the engine never samples")
        steps = max(len(s) for s in seqs)
        y = np.zeros((len(chunk), steps), np.int64)
        live = np.zeros((len(chunk), steps), bool)
        for row, s in enumerate(seqs):
            y[row, : len(s)], live[row, : len(s)] = s, True
        x = np.concatenate([np.full((len(chunk), 1), vocab.start_id, np.int64), y[:, :-1]], 1)
        states = model.zero_states(len(chunk))
        total = np.zeros(len(chunk))
        rows = np.arange(len(chunk))
        for t in range(steps):
            logits, states = model.step(x[:, t], states)
            z = logits.astype(np.float64)
            top = z.max(axis=1)
            log_norm = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
            total += np.where(live[:, t], log_norm - z[rows, y[:, t]], 0.0)
        out[lo : lo + len(chunk)] = total / np.maximum(live.sum(axis=1), 1)
    return out


def kn_nats(kn: KneserNey, texts: list[str]) -> np.ndarray:
    """Each text's mean loss (nats/char) under the Kneser-Ney model, read after a newline."""
    return np.array([-kn.log_probs("\n" + t, start=1).mean() for t in texts])


def paired(guarded: np.ndarray, plain: np.ndarray) -> dict[str, float]:
    diff = guarded - plain
    return {
        "unguarded": float(plain.mean()),
        "guarded": float(guarded.mean()),
        "difference": float(diff.mean()),
        "difference_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0,
        "relative": float(diff.mean() / plain.mean()),
    }


# --- serving ---------------------------------------------------------------------------------


def closed_loop(
    model: StepModel,
    concurrency: int,
    total: int,
    prepare: Callable[[Scheduler], None] | None = None,
) -> dict[str, Any]:
    """`concurrency` clients share `total` LENGTH-character requests, each sending its next
    when answered."""

    async def run() -> dict[str, Any]:
        scheduler = Scheduler(model, Limits(max_queue=100_000, deadline=3600.0))
        if prepare is not None:
            prepare(scheduler)
        latencies: list[float] = []
        counter = iter(range(total))

        async def client() -> None:
            for i in counter:
                started = time.perf_counter()
                got = await scheduler.generate(
                    Request(length=LENGTH, temperature=TEMPERATURE, seed=10_000 + i)
                )
                assert len(got.text) == LENGTH
                latencies.append(time.perf_counter() - started)

        try:
            await scheduler.generate(Request(length=20, seed=0))  # warm-up
            steps = scheduler.steps
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            steps = scheduler.steps - steps
        finally:
            await scheduler.close()
        return {
            "seconds": wall,
            "steps": steps,
            "chars_per_second": total * LENGTH / wall,
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
        }

    return asyncio.run(run())


def serving(plain: StepModel, guarded: StepModel, repeats: int) -> list[dict[str, Any]]:
    """Both variants at each level, taking turns (ABBA) `repeats` times; medians and ratios."""
    out = []
    for c, total in LEVELS.items():
        runs: dict[str, list[dict[str, Any]]] = {"unguarded": [], "guarded": []}
        for r in range(repeats):
            pair = [("unguarded", plain), ("guarded", guarded)]
            for name, model in pair if r % 2 == 0 else pair[::-1]:
                runs[name].append(closed_loop(model, c, total))
        row: dict[str, Any] = {"concurrency": c, "requests": total}
        for name, got in runs.items():
            row[name] = {
                "chars_per_second": statistics.median(g["chars_per_second"] for g in got),
                "p50": statistics.median(g["p50"] for g in got),
                "p99": statistics.median(g["p99"] for g in got),
                "chars_per_second_runs": [round(g["chars_per_second"], 1) for g in got],
            }
        row["ratio"] = row["guarded"]["chars_per_second"] / row["unguarded"]["chars_per_second"]
        row["ratio_of_turns_median"] = statistics.median(
            g["chars_per_second"] / u["chars_per_second"]
            for g, u in zip(runs["guarded"], runs["unguarded"], strict=True)
        )
        out.append(row)
        say(
            f"  at {c}: unguarded {row['unguarded']['chars_per_second']:,.0f} chars/s, guarded "
            f"{row['guarded']['chars_per_second']:,.0f} chars/s, ratio {row['ratio']:.3f} "
            f"(median of turns {row['ratio_of_turns_median']:.3f})"
        )
    return out


class _Timed:
    """The scheduler's copy-guard index with its `advance` timed (everything else passed on)."""

    def __init__(self, index: CopyIndex, clock: dict[str, float]) -> None:
        self._index, self._clock = index, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def advance(self, *args: Any) -> None:
        started = time.perf_counter()
        self._index.advance(*args)
        self._clock["advance"] += time.perf_counter() - started


def guard_time(model: StepModel, concurrency: int, total: int) -> dict[str, float]:
    """One closed-loop run of the guarded model (not one of the timed ones) with the guard's
    work timed where the scheduler does it: `Scheduler._guard` (the index's `banned` and the
    masking) and the index's `advance`, in microseconds per step and as a share of the run."""
    clock = {"guard": 0.0, "advance": 0.0}

    def prepare(scheduler: Scheduler) -> None:
        guard = scheduler._guard

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return guard(*args)
            finally:
                clock["guard"] += time.perf_counter() - started

        scheduler._guard = timed  # type: ignore[method-assign]
        scheduler.guard = _Timed(scheduler.guard, clock)  # type: ignore[assignment]

    run = closed_loop(model, concurrency, total, prepare)
    steps = run["steps"]
    return {
        "concurrency": concurrency,
        "guard_us": clock["guard"] / steps * 1e6,
        "advance_us": clock["advance"] / steps * 1e6,
        "step_us": run["seconds"] / steps * 1e6,
        "share": (clock["guard"] + clock["advance"]) / run["seconds"],
    }


# --- memory ----------------------------------------------------------------------------------

RSS_SCRIPT = r"""
import json, sys, time
from pathlib import Path

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

from bot.engine.sessions import StepModel
before = rss()
started = time.perf_counter()
model = StepModel.load(Path(sys.argv[1]), providers="cpu")
seconds = time.perf_counter() - started
print(json.dumps({"before": before, "after": rss(), "load_seconds": seconds}))
"""


def rss_of(bundle: Path) -> dict[str, float]:
    """Resident memory of a fresh process before and after loading `bundle`."""
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(bundle)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(plain: Path, guarded: Path, index: CopyIndex, runs: int) -> dict[str, Any]:
    got: dict[str, list[dict[str, float]]] = {"unguarded": [], "guarded": []}
    for r in range(runs):
        pair = [("unguarded", plain), ("guarded", guarded)]
        for name, path in pair if r % 2 == 0 else pair[::-1]:
            got[name].append(rss_of(path))

    def median(name: str, key: str) -> float:
        return statistics.median(g[key] for g in got[name])

    loads, chars = [], load_bundle(guarded).vocab.chars
    for _ in range(BUILDS):
        started = time.perf_counter()
        CopyIndex.load(guarded / GUARD_FILE, chars)
        loads.append(time.perf_counter() - started)
    added = [
        (g["after"] - g["before"]) - (u["after"] - u["before"])
        for g, u in zip(got["guarded"], got["unguarded"], strict=True)
    ]
    return {
        "index_nbytes": index.nbytes,
        "index_grams": index.size,
        "file_bytes": (guarded / GUARD_FILE).stat().st_size,
        "rss_after_load": {n: median(n, "after") for n in got},
        "rss_added_by_load": {n: median(n, "after") - median(n, "before") for n in got},
        "rss_difference": median("guarded", "after") - median("unguarded", "after"),
        "rss_difference_paired": statistics.median(added),
        "model_load_seconds": {n: median(n, "load_seconds") for n in got},
        "index_load_seconds": statistics.median(loads),
        "rss_runs": got,
    }


def build_times(train: str, model: StepModel, shipped: CopyIndex) -> dict[str, Any]:
    vocab = model.bundle.vocab
    seconds, index = [], None
    for _ in range(BUILDS):
        index = CopyIndex.build(train, vocab.chars, vocab.unk_id, K)
        seconds.append(index.build_seconds)
    assert index is not None
    return {
        "build_seconds": statistics.median(seconds),
        "build_seconds_runs": [round(s, 4) for s in seconds],
        "rebuild_matches_bundle": bool(
            np.array_equal(index.grams, shipped.grams)
            and np.array_equal(index.hashes, shipped.hashes)
            and np.array_equal(index.transparent, shipped.transparent)
        ),
    }


# --- one style -------------------------------------------------------------------------------


@dataclass
class Style:
    name: str
    plain: Path  # the bundle without a guard
    guarded: Path  # the same model with a guard of K
    corpus: Path
    samples: int
    notes: dict[str, Any] = field(default_factory=dict)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(style: Style, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        seconds[name] = round(now - since, 1)
        return now

    plain = StepModel.load(style.plain, providers="cpu")
    guarded = StepModel.load(style.guarded, providers="cpu")
    index = guarded.guard
    if plain.guard is not None or index is None or index.k != K:
        raise SystemExit(f"{style.plain} must have no guard and {style.guarded} one of {K}")
    corpus = load_corpus(str(style.corpus))
    train = split(corpus.text)[0]
    seeds = list(range(style.samples))
    say(f"{style.name}: {len(train):,} training characters, {style.samples} samples per variant")

    t = time.perf_counter()
    written = {"unguarded": write(plain, seeds), "guarded": write(guarded, seeds)}
    for name, w in written.items():
        say(f"  wrote {len(w.texts)} {name} samples in {w.seconds:.1f} s")
    t = lap("sampling", t)

    finder = Runs(train)
    texts = written["unguarded"].texts + written["guarded"].texts
    runs = finder.longest(texts)
    by_variant = {
        "unguarded": runs[: style.samples],
        "guarded": runs[style.samples :],
    }
    checked = [*texts[:CROSS_CHECKED], *texts[style.samples : style.samples + CROSS_CHECKED]]
    plain_runs = finder.plain(checked)
    hashed_runs = [*runs[:CROSS_CHECKED], *runs[style.samples : style.samples + CROSS_CHECKED]]
    guard_says = [index.holds_copy(guarded.bundle.vocab.encode(t)[0]) for t in texts]
    copying = {name: run_stats(r) for name, r in by_variant.items()}
    checks = {
        "hash_collisions": finder.collisions,
        "runs_past_hashed_length": finder.extended,
        "plain_search_checked": len(checked),
        "plain_search_agrees": plain_runs == hashed_runs,
        "guard_index_disagreements": sum(
            said != (r >= K) for said, r in zip(guard_says, runs, strict=True)
        ),
    }
    for name, c in copying.items():
        say(
            f"  {name}: longest run median {c['median']}, p99 {c['p99']}, max {c['max']}, "
            f">= {K} in {c['share_at_least_k']:.1%}"
        )
    say(f"  checks: {checks}")
    t = lap("copying", t)

    kn = KneserNey(train, vocab=corpus.text + "".join(sorted(set("".join(texts)))), order=KN_ORDER)
    fluency = {
        "network": paired(
            network_nats(plain, written["guarded"].texts),
            network_nats(plain, written["unguarded"].texts),
        ),
        "kneser_ney": paired(
            kn_nats(kn, written["guarded"].texts), kn_nats(kn, written["unguarded"].texts)
        ),
    }
    for name, f in fluency.items():
        say(
            f"  {name} nats/char: unguarded {f['unguarded']:.4f}, guarded {f['guarded']:.4f} "
            f"({f['difference']:+.4f} +- {f['difference_se']:.4f})"
        )
    t = lap("fluency", t)

    g = written["guarded"]
    differs = [a != b for a, b in zip(g.texts, written["unguarded"].texts, strict=True)]
    activity = {
        "guarded_steps": g.guarded_steps,
        "row_steps": g.row_steps,
        "share": g.guarded_steps / g.row_steps,
        "unguarded_variant_guarded_steps": written["unguarded"].guarded_steps,
        "samples_changed": sum(differs) / len(differs),
    }
    say(
        f"  guard masked something at {activity['share']:.3%} of {g.row_steps:,} row-steps; "
        f"{activity['samples_changed']:.1%} of samples differ from the unguarded one"
    )
    speed = serving(plain, guarded, repeats)
    activity["guard_time"] = [guard_time(guarded, c, total) for c, total in LEVELS.items()]
    for gt in activity["guard_time"]:
        say(
            f"  guard's work at {gt['concurrency']}: {gt['guard_us']:.1f} + "
            f"{gt['advance_us']:.1f} us of a {gt['step_us']:.0f} us step ({gt['share']:.1%})"
        )
    t = lap("serving", t)

    mem = memory(style.plain, style.guarded, index, RSS_RUNS)
    build = build_times(train, plain, index)
    say(
        f"  index {mem['index_nbytes']:,} bytes in memory, {mem['file_bytes']:,} on disk; RSS "
        f"+{mem['rss_difference'] / 2**20:.1f} MiB; built in {build['build_seconds']:.3f} s"
    )
    lap("memory", t)
    return {
        "style": style.name,
        "unguarded_bundle": _shown(style.plain),
        "guarded_bundle": _shown(style.guarded),
        "same_network": file_digest(style.plain / MODEL_FILE)
        == file_digest(style.guarded / MODEL_FILE),
        "training_chars": len(train),
        "training_chars_normalised": len(finder.train),
        "samples": style.samples,
        "copying": copying,
        "checks": checks,
        "fluency": fluency,
        "activity": activity,
        "sampling_seconds": {n: round(w.seconds, 2) for n, w in written.items()},
        "serving": speed,
        "memory": mem,
        "build": build | style.notes,
        "seconds": seconds | {"total": round(time.perf_counter() - started, 1)},
    }


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else "(temporary copy)"


ADD_GUARD = r"""
import sys, time
from pathlib import Path
from export.onnx_export import add_guard
started = time.perf_counter()
add_guard(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], version=sys.argv[4], log=lambda m: 0)
print(time.perf_counter() - started)
"""


def guarded_copy(bundle: Path, corpus: Path, where: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of `bundle` under `where` and a new version of it there with a guard of K,
    made by export's add_guard (in a subprocess: it imports TensorFlow)."""
    style, version = bundle.parent.name, bundle.name
    copy = where / style / version
    shutil.copytree(bundle, copy)
    done = subprocess.run(
        [sys.executable, "-c", ADD_GUARD, str(copy), str(K), str(corpus), "guard8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"add_guard failed:\n{done.stderr[-3000:]}")
    seconds = float(done.stdout.strip().splitlines()[-1])
    return where / style / "guard8", {"add_guard_seconds": round(seconds, 1)}


# --- the report ------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for sty in report["styles"]:
        name, copying = sty["style"], sty["copying"]
        rows.append(
            {
                "label": f"{name}: longest run in any guarded sample",
                "value": str(copying["guarded"]["max"]),
                "target": f"< {K}",
                "met": copying["guarded"]["max"] < K,
            }
        )
        for row in sty["serving"]:
            rows.append(
                {
                    "label": f"{name}: guarded / unguarded chars/s at {row['concurrency']}",
                    "value": f"{row['ratio']:.3f}",
                    "target": f">= {SERVING_TARGET}",
                    "met": row["ratio"] >= SERVING_TARGET,
                }
            )
    return rows


def yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def style_md(s: dict[str, Any]) -> list[str]:
    c, f, a, m, b = s["copying"], s["fluency"], s["activity"], s["memory"], s["build"]
    n = s["samples"]
    turns = len(s["serving"][0]["guarded"]["chars_per_second_runs"])
    against = s["guarded_bundle"]
    if against.startswith("("):
        against = "a temporary copy of it given a guard by `add_guard`"
    lines = [
        f"## {s['style']}: {s['unguarded_bundle']} against {against} (k = {K})",
        "",
        f"Training split: {s['training_chars']:,} characters, {s['training_chars_normalised']:,} "
        f"normalised. Same network file in both: {yes(s['same_network'])}.",
        "",
        f"### Copying ({n} samples of {LENGTH} characters each)",
        "",
        "Longest normalised run of each sample found verbatim in the training split.",
        "",
        f"| variant | median | mean | p99 | max | share >= {K} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("unguarded", "guarded"):
        r = c[name]
        lines.append(
            f"| {name} | {r['median']:g} | {r['mean']:.2f} | {r['p99']} | {r['max']} "
            f"| {r['share_at_least_k']:.1%} |"
        )
    hist = sorted({int(k) for name in c for k in c[name]["histogram"]})
    lines += [
        "",
        "Samples by longest run:",
        "",
        "| variant | " + " | ".join(str(h) for h in hist) + " |",
        "|---|" + "---:|" * len(hist),
    ]
    for name in ("unguarded", "guarded"):
        counts = c[name]["histogram"]
        lines.append(f"| {name} | " + " | ".join(str(counts.get(str(h), 0)) for h in hist) + " |")
    ch = s["checks"]
    lines += [
        "",
        f"Checks: hash collisions {ch['hash_collisions']}; runs past {HASHED_UP_TO} "
        f"{ch['runs_past_hashed_length']}; a plain substring search over "
        f"{ch['plain_search_checked']} samples agrees: {yes(ch['plain_search_agrees'])}; "
        f"samples where the guard's own `holds_copy` disagrees about a run >= {K}: "
        f"{ch['guard_index_disagreements']}.",
        "",
        "### Fluency (mean nats/char of the samples; difference: guarded - unguarded, same seeds)",
        "",
        "| scored by | unguarded | guarded | difference | ± s.e. | relative |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("network", "network alone"), ("kneser_ney", f"{KN_ORDER}-gram KN")):
        r = f[name]
        lines.append(
            f"| {label} | {r['unguarded']:.4f} | {r['guarded']:.4f} | {r['difference']:+.4f} "
            f"| {r['difference_se']:.4f} | {r['relative']:+.2%} |"
        )
    lines += [
        "",
        "### Guard activity",
        "",
        f"It masked something at {a['share']:.3%} of the guarded variant's "
        f"{a['row_steps']:,} row-steps ({a['guarded_steps']:,}); {a['samples_changed']:.1%} of "
        "guarded samples differ from the unguarded one of the same seed.",
        "",
        "Where the guard's time goes (one more run of the guarded variant at each level, its "
        "work timed where the scheduler does it; not one of the timed runs below):",
        "",
        "| concurrency | `Scheduler._guard` µs/step | index `advance` µs/step | step µs "
        "| share of the run |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {gt['concurrency']} | {gt['guard_us']:.1f} | {gt['advance_us']:.1f} "
            f"| {gt['step_us']:.0f} | {gt['share']:.1%} |"
            for gt in a["guard_time"]
        ),
        "",
        f"### Serving ({LENGTH}-character requests, median of {turns} alternating runs)",
        "",
        "| concurrency | unguarded chars/s | guarded chars/s | ratio | ratio, median of turns "
        "| p50 unguarded s | p50 guarded s | p99 unguarded s | p99 guarded s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["serving"]:
        u, g = r["unguarded"], r["guarded"]
        lines.append(
            f"| {r['concurrency']} | {u['chars_per_second']:,.0f} | {g['chars_per_second']:,.0f} "
            f"| {r['ratio']:.3f} | {r['ratio_of_turns_median']:.3f} | {u['p50']:.3f} "
            f"| {g['p50']:.3f} | {u['p99']:.3f} | {g['p99']:.3f} |"
        )
    rss = m["rss_after_load"]
    lines += [
        "",
        "### Memory and build",
        "",
        "| | value |",
        "|---|---:|",
        f"| {K}-grams in the index | {m['index_grams']:,} |",
        f"| index in memory (`nbytes`) | {m['index_nbytes']:,} B ({mib(m['index_nbytes'])}) |",
        f"| index file | {m['file_bytes']:,} B ({mib(m['file_bytes'])}) |",
        f"| RSS after loading, unguarded | {mib(rss['unguarded'])} |",
        f"| RSS after loading, guarded | {mib(rss['guarded'])} |",
        f"| RSS difference (medians) | {mib(m['rss_difference'])} |",
        f"| RSS added by the load, difference (median of pairs) "
        f"| {mib(m['rss_difference_paired'])} |",
        f"| bundle load, unguarded / guarded | {m['model_load_seconds']['unguarded']:.2f} s / "
        f"{m['model_load_seconds']['guarded']:.2f} s |",
        f"| index load (`CopyIndex.load`) | {m['index_load_seconds']:.3f} s |",
        f"| index build (`CopyIndex.build`, median of {BUILDS}) | {b['build_seconds']:.3f} s |",
        f"| rebuilt index equals the bundle's | {yes(b['rebuild_matches_bundle'])} |",
    ]
    tail = [
        "",
        "RSS: resident memory after `StepModel.load` in a fresh process, before and after; an "
        "index of a megabyte or so can land in heap memory the model's loading already freed, "
        "so its difference can read near zero (or below: noise).",
    ]
    if "add_guard_seconds" in b:
        lines.append(
            f"| `add_guard` on the copy (whole, with its check) | {b['add_guard_seconds']} s |"
        )
    return [*lines, *tail, ""]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The copy guard: what it buys, what it costs",
        "",
        "Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Plain streams of {LENGTH} characters (temperature {TEMPERATURE}, top-p 1, seeds 0 on, no "
        "rules) from each bundle with and without its guard of "
        f"{K}. A sample's run is the longest stretch of it found verbatim in the training split, "
        "both with whitespace, punctuation and control characters dropped (the guard's "
        "normalisation), computed from the training text itself (hashes of every L-gram, "
        "checked by substring search), not from the guard's index. Fluency is scored by the "
        "network alone (teacher-forced from the start id; jaychou serves it mixed with its "
        "n-gram, left out here) and by a Kneser-Ney "
        f"{KN_ORDER}-gram of the training split. tang has no shipped guard: a copy of "
        "models/tang/v1 is given one by `export.onnx_export.add_guard` in a temporary folder. "
        "No text is recorded here: the Jay Chou corpus is copyrighted.",
        "",
        "## Summary",
        "",
        "| | value | target | met |",
        "|---|---:|---:|---|",
    ]
    for t in report["targets"]:
        lines.append(f"| {t['label']} | {t['value']} | {t['target']} | {yes(t['met'])} |")
    lines += ["", "| | unguarded | guarded |", "|---|---:|---:|"]
    for s in report["styles"]:
        c, f = s["copying"], s["fluency"]
        lines += [
            f"| {s['style']}: share of samples with a run >= {K} "
            f"| {c['unguarded']['share_at_least_k']:.1%} "
            f"| {c['guarded']['share_at_least_k']:.1%} |",
            f"| {s['style']}: longest run, median / p99 / max "
            f"| {c['unguarded']['median']:g} / {c['unguarded']['p99']} / {c['unguarded']['max']} "
            f"| {c['guarded']['median']:g} / {c['guarded']['p99']} / {c['guarded']['max']} |",
            f"| {s['style']}: network nats/char | {f['network']['unguarded']:.4f} "
            f"| {f['network']['guarded']:.4f} |",
            f"| {s['style']}: {KN_ORDER}-gram nats/char | {f['kneser_ney']['unguarded']:.4f} "
            f"| {f['kneser_ney']['guarded']:.4f} |",
            f"| {s['style']}: row-steps the guard masked | | {s['activity']['share']:.3%} |",
            f"| {s['style']}: memory added (index `nbytes` / file) | "
            f"| {mib(s['memory']['index_nbytes'])} / {mib(s['memory']['file_bytes'])} |",
            f"| {s['style']}: index build | | {s['build']['build_seconds']:.3f} s |",
        ]
    lines.append("")
    for s in report["styles"]:
        lines += style_md(s)
    m, where = report["machine"], report.get("tree", {})
    lines += [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"shared and noisy (variants measured in the same run, taking turns). "
        f"Total {report['seconds']} s.",
        "",
        f"Measured at commit {where.get('commit', '?')}"
        + (" with uncommitted changes in bot/ or export/." if where.get("engine_changed") else "."),
        "",
    ]
    return "\n".join(lines)


def tree() -> dict[str, Any]:
    """The commit measured, and whether the engine's code differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_changed": bool(git("status", "--porcelain", "--", "bot", "export")),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.copy_guard", description=__doc__)
    p.add_argument("--samples", type=int, default=1000, help="jaychou samples per variant")
    p.add_argument("--tang-samples", type=int, default=200, help="tang samples per variant")
    p.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help="the corpus files")
    p.add_argument("--repeats", type=int, default=REPEATS, help="serving runs per variant")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.samples < CROSS_CHECKED or args.tang_samples < CROSS_CHECKED:
        p.error(f"need at least {CROSS_CHECKED} samples per style")

    # A plain SIGTERM would skip the clean-up of the temporary bundle folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    styles = []
    jaychou = Style(
        "jaychou",
        MODELS / "jaychou" / "v2",
        MODELS / "jaychou" / "v3",
        args.corpora / "jaychou_lyrics.txt",
        args.samples,
    )
    styles.append(measure(jaychou, args.repeats))
    with tempfile.TemporaryDirectory(prefix="copy-guard-bench-") as tmp:
        corpus = args.corpora / "tang_poems.txt"
        say("tang: adding a guard to a copy of models/tang/v1")
        guarded, notes = guarded_copy(MODELS / "tang" / "v1", corpus, Path(tmp))
        tang = Style("tang", MODELS / "tang" / "v1", guarded, corpus, args.tang_samples, notes)
        styles.append(measure(tang, args.repeats))

    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks.copy_guard", *argv]),
        "k": K,
        "length": LENGTH,
        "temperature": TEMPERATURE,
        "styles": styles,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "tree": tree(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    report["targets"] = targets(report)
    write_results(args.out, "copy_guard", report, markdown(report))
    for t in report["targets"]:
        say(
            f"{t['label']}: {t['value']} (target {t['target']}: {'met' if t['met'] else 'NOT met'})"
        )
    say(f"total {report['seconds']} s; wrote {args.out / 'copy_guard.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
