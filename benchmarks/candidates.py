"""What candidates cost and buy, at concurrency 1 on the shipped models: for each K, a poem's
latency (p50, p95) and what the network thinks of the poem chosen (mean log-probability per
character of the whole poem, read afresh), with the seeds taken in turn across the K so that
the machine's noise falls on every K alike; and the speed of a request without a form (no
candidates), to compare with another checkout run back to back (`--plain`).

    python -m benchmarks.candidates [--style tang --form qilv] [--ks 1 4 8 16 32] [--runs 20]
        [--lookahead 0 0.5]   # each K above 1 also with these lookahead weights
    python -m benchmarks.candidates --plain [--runs 30]   # prints chars/s of plain streams
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.stats import cpu_name, percentile, write_results
from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import PRECISIONS, StepModel, load_model
from bot.forms import catalog

ROOT = Path(__file__).resolve().parent.parent


def live_path(style: str) -> Path:
    folder = ROOT / "models" / style
    return folder / (folder / "ACTIVE").read_text().strip()


def poem_logp(model: StepModel, text: str) -> float:
    """The network's mean log-probability per character of `text` from the start (n-gram
    mixture left out: the network's own judgement)."""
    vocab = model.bundle.vocab
    ids = [vocab.start_id, *vocab.encode(text)[0]]
    states = model.zero_states(1)
    total = 0.0
    for now, nxt in itertools.pairwise(ids):
        logits, states = model.step(np.array([now]), states)
        z = logits[0].astype(np.float64)
        top = z.max()
        total += z[nxt] - (top + math.log(np.exp(z - top).sum()))
    return total / max(len(ids) - 1, 1)


async def timed(scheduler: Scheduler, model: StepModel, request: Request) -> tuple[float, float]:
    """A poem's seconds alone in the scheduler, and the network's mean log-probability per
    character of it."""
    started = time.perf_counter()
    poem = await scheduler.generate(request)
    return time.perf_counter() - started, poem_logp(model, poem.text)


async def measure(
    style: str,
    form: str | None,
    ks: list[int],
    runs: int,
    weights: tuple[float, ...] = (0.0,),
    precisions: tuple[str | None, ...] = (None,),
) -> dict:
    """Each K (and each K above 1 with each lookahead weight, the engine's
    `Request.lookahead`) at each precision (None: the style's own), the seeds in turn across
    all of them; p50 / K=1 against K=1 at the same precision."""
    path = live_path(style)
    bundle = load_bundle(path)
    models = {p: load_model(path, precision=p) for p in precisions}
    schedulers = {p: Scheduler(m, Limits(max_batch=max(ks))) for p, m in models.items()}
    runs_of = [(p, k, w) for p in precisions for k in ks for w in (weights if k > 1 else (0.0,))]
    seconds: dict[tuple, list[float]] = {run: [] for run in runs_of}
    fluency: dict[tuple, list[float]] = {run: [] for run in runs_of}
    try:
        plan = catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, form=form)
        warm = Request(length=plan.length, seed=0, rules=plan.rules, candidates=max(ks))
        for scheduler in schedulers.values():
            await scheduler.generate(warm)
        for seed in range(1, runs + 1):
            for p, k, w in runs_of:
                ask = Request(
                    length=plan.length, seed=seed, rules=plan.rules, candidates=k, lookahead=w
                )
                took, logp = await timed(schedulers[p], models[p], ask)
                seconds[p, k, w].append(took)
                fluency[p, k, w].append(logp)
    finally:
        for scheduler in schedulers.values():
            await scheduler.close()

    def name(p: str | None, k: int, w: float) -> str:
        shown = f"{k}" if not w else f"{k}, lookahead {w:g}"
        return shown if len(precisions) == 1 else f"{shown}, {'int8' if models[p].int8 else 'fp32'}"

    return {
        name(p, k, w): {
            "p50_s": statistics.median(seconds[p, k, w]),
            "p95_s": percentile(seconds[p, k, w], 0.95),
            "over_k1": statistics.median(seconds[p, k, w])
            / statistics.median(seconds[p, ks[0], 0.0]),
            "mean_logp": statistics.fmean(fluency[p, k, w]),
            "precision": "int8" if models[p].int8 else "fp32",
        }
        for p, k, w in runs_of
    }


async def plain(style: str, runs: int, length: int) -> float:
    """Characters a second of requests without a form, one at a time."""
    model = load_model(live_path(style))
    scheduler = Scheduler(model)
    try:
        await scheduler.generate(Request(length=50, seed=0))
        started, written = time.perf_counter(), 0
        for seed in range(1, runs + 1):
            written += len((await scheduler.generate(Request(length=length, seed=seed))).text)
        return written / (time.perf_counter() - started)
    finally:
        await scheduler.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--style", default="tang")
    p.add_argument("--form", default="qilv")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument(
        "--lookahead",
        type=float,
        nargs="+",
        default=[0.0],
        help="lookahead weights each K above 1 is also measured with (0: none)",
    )
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        help="measure each K at each of these (default: the style's own)",
    )
    p.add_argument("--plain", action="store_true", help="only the no-form speed, printed")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    if args.plain:
        print(f"{asyncio.run(plain(args.style, args.runs, 400)):.0f} chars/s")
        return
    if args.ks[0] != 1:
        p.error("--ks starts with 1, the baseline")
    precisions = tuple(args.precisions) if args.precisions else (None,)
    lookahead = tuple(dict.fromkeys(args.lookahead))
    rows = asyncio.run(measure(args.style, args.form, args.ks, args.runs, lookahead, precisions))
    report = {
        "command": f"python -m benchmarks.candidates --style {args.style} --form {args.form} "
        f"--ks {' '.join(map(str, args.ks))} --runs {args.runs}"
        + (
            f" --lookahead {' '.join(f'{w:g}' for w in args.lookahead)}"
            if any(args.lookahead)
            else ""
        )
        + (f" --precisions {' '.join(args.precisions)}" if args.precisions else ""),
        "cpu": cpu_name(),
        "load_average": list(os.getloadavg()),
        "by_k": rows,
    }
    lines = [
        f"# Candidates: {args.style} {args.form}, concurrency 1",
        "",
        f"`{report['command']}` on {report['cpu']} (load average "
        f"{', '.join(f'{x:.1f}' for x in report['load_average'])}).",
        "",
        "| K | precision | p50 s | p95 s | p50 / K=1 | network's mean log-prob per char |",
        "|---:|---|---:|---:|---:|---:|",
        *(
            f"| {k} | {r['precision']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | "
            f"{r['over_k1']:.2f} | {r['mean_logp']:.3f} |"
            for k, r in rows.items()
        ),
        "",
    ]
    write_results(args.out, "candidates", report, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
