"""What holds up the bot's event loop under `make load`'s crowd: every callback that ran for
longer than a threshold (by its coroutine or function), and every garbage collection (its
generation, length and objects freed), recorded inside the bot process from its first
collection on the loop (start-up left out), beside the acknowledgement latencies the crowd
saw.

    python -m benchmarks.loop_stalls [--interactions 1000] [--seconds 60] [--threshold-ms 2]

The bot runs as in `make load`, with a `sitecustomize.py` on its PYTHONPATH that times
`asyncio.Handle._run` (each callback and each step of a task) and listens to `gc.callbacks`,
and writes what it saw when the process exits. The timing adds about a microsecond a callback.
An acknowledgement waits for whatever callback holds the loop when it arrives, so the callbacks
here are what its tail is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.load import Shape, prompts_for, run_load
from benchmarks.stats import cpu_name, write_results

ROOT = Path(__file__).resolve().parent.parent

# Loaded by the bot's interpreter at start-up (its PYTHONPATH names the folder it is in).
SITECUSTOMIZE = """
import asyncio.events, atexit, gc, json, os, time

_THRESHOLD = float(os.environ["LOOP_STALLS_THRESHOLD"])
_OUT = os.environ["LOOP_STALLS_OUT"]
_slow, _gc, _started = [], [], [0.0]
_serving = [False]  # from the bot's first collection on its loop: start-up is left out
_run = asyncio.events.Handle._run


def _name(handle):
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    if owner is not None and hasattr(owner, "get_coro"):
        try:
            return owner.get_coro().__qualname__
        except Exception:
            pass
    return getattr(callback, "__qualname__", None) or type(callback).__name__


def _timed(self):
    started = time.perf_counter()
    _run(self)
    took = time.perf_counter() - started
    if took > _THRESHOLD and _serving[0]:
        _slow.append((_name(self), took))


def _collected(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        _serving[0] = _serving[0] or not gc.isenabled()  # the loop's collector turned it off
    elif _serving[0]:
        _gc.append((info["generation"], time.perf_counter() - _started[0], info["collected"]))


def _write():
    with open(os.path.join(_OUT, f"{os.getpid()}.json"), "w") as f:
        json.dump({"slow": _slow, "gc": _gc}, f)


asyncio.events.Handle._run = _timed
gc.callbacks.append(_collected)
atexit.register(_write)
"""


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Slow callbacks by name (count, total, p50, max in ms, the longest first by total) and
    collections by generation (count, mean and max ms, objects freed per collection)."""
    by_name: dict[str, list[float]] = {}
    by_gen: dict[int, list[tuple[float, int]]] = {}
    for record in records:
        for name, took in record["slow"]:
            by_name.setdefault(name, []).append(took * 1000)
        for generation, took, freed in record["gc"]:
            by_gen.setdefault(generation, []).append((took * 1000, freed))
    callbacks = [
        {
            "name": name,
            "count": len(ms),
            "total_ms": round(sum(ms), 1),
            "p50_ms": round(statistics.median(ms), 1),
            "max_ms": round(max(ms), 1),
        }
        for name, ms in by_name.items()
    ]
    callbacks.sort(key=lambda c: -c["total_ms"])
    collections = {
        str(gen): {
            "count": len(runs),
            "mean_ms": round(statistics.fmean(ms for ms, _ in runs), 2),
            "max_ms": round(max(ms for ms, _ in runs), 2),
            "freed_mean": round(statistics.fmean(n for _, n in runs)),
        }
        for gen, runs in sorted(by_gen.items())
    }
    return {"callbacks": callbacks, "collections": collections}


def markdown(report: dict[str, Any]) -> str:
    acks = report["ack_ms"]
    lines = [
        "# What holds up the event loop under load",
        "",
        f"`{report['command']}` on {report['cpu']}: the bot process's callbacks longer than "
        f"{report['threshold_ms']:g} ms and its garbage collections, recorded inside it, and "
        f"the acknowledgements the crowd saw: p50 {acks['p50']} ms, p99 {acks['p99']} ms, max "
        f"{acks['max']} ms.",
        "",
        "| callback (coroutine or function) | count | total ms | p50 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| `{c['name']}` | {c['count']} | {c['total_ms']} | {c['p50_ms']} | {c['max_ms']} |"
            for c in report["callbacks"][:15]
        ),
        "",
        "| collection | count | mean ms | max ms | objects freed (mean) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| generation {gen} | {c['count']} | {c['mean_ms']} | {c['max_ms']} | "
            f"{c['freed_mean']:,} |"
            for gen, c in report["collections"].items()
        ),
        "",
        "The bot collects on its event loop (`bot/engine/heap.py`): generations 0-1 every "
        "0.5 s, everything every 30 s. Recorded from its first collection there on: start-up "
        "(loading the models, connecting) is left out.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--interactions", type=int, default=Shape.interactions)
    p.add_argument("--seconds", type=float, default=Shape.seconds)
    p.add_argument("--threshold-ms", type=float, default=2.0)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    shape = dataclasses.replace(Shape(), interactions=args.interactions, seconds=args.seconds)
    prompts = prompts_for(args.models)
    with tempfile.TemporaryDirectory() as tmp:
        site, dumps = Path(tmp) / "site", Path(tmp) / "dumps"
        site.mkdir()
        dumps.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        (Path(tmp) / "run").mkdir()
        load = asyncio.run(
            run_load(
                Path(tmp) / "run",
                args.models.resolve(),
                shape,
                prompts,
                PYTHONPATH=f"{site}:{ROOT}",
                LOOP_STALLS_THRESHOLD=str(args.threshold_ms / 1000),
                LOOP_STALLS_OUT=str(dumps),
            )
        )
        records = [json.loads(f.read_text()) for f in sorted(dumps.glob("*.json"))]
    if not records:
        raise SystemExit("the bot process wrote nothing (did it exit cleanly?)")
    report = {
        "command": f"python -m benchmarks.loop_stalls --interactions {args.interactions} "
        f"--seconds {args.seconds:g} --threshold-ms {args.threshold_ms:g}",
        "cpu": cpu_name(),
        "threshold_ms": args.threshold_ms,
        "ack_ms": load.summary["ack_ms"],
        "problems": load.problems,
        **summarise(records),
    }
    text = markdown(report)
    write_results(args.out, "loop_stalls", report, text)
    print(text)


if __name__ == "__main__":
    main()
