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

It also follows each acknowledgement along its way (both processes read one monotonic clock):
the loopback dispatches the interaction; the bot reads the Gateway frame that carries it
(discord.py's `received_message`), parses it, and calls `defer`; the loopback receives that
request (where the crowd's acknowledgement ends); the bot hears the reply. The hops of the slow
acknowledgements say which process kept them waiting.
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

from benchmarks.load import (
    Outcome,
    Report,
    Shape,
    add_env_option,
    env_changes,
    prompts_for,
    run_load,
)
from benchmarks.stats import cpu_name, percentile, write_results

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


_acks, _frame = {}, [0.0]  # interaction id -> its seed and times; the last frame's time


def _follow_acknowledgements():
    import discord.gateway, discord.interactions, discord.state

    received = discord.gateway.DiscordWebSocket.received_message
    parse = discord.state.ConnectionState.parse_interaction_create
    defer = discord.interactions.InteractionResponse.defer

    async def received_message(self, msg, /):
        _frame[0] = time.monotonic()
        return await received(self, msg)

    def parse_interaction_create(self, data):
        options = (data.get("data") or {}).get("options") or []
        seed = next((o.get("value") for o in options if o.get("name") == "seed"), None)
        _acks[str(data["id"])] = {"seed": seed, "frame": _frame[0], "parse": time.monotonic()}
        return parse(self, data)

    async def timed_defer(self, *args, **kwargs):
        times = _acks.get(str(self._parent.id))
        if times is not None:
            times["defer"] = time.monotonic()
        try:
            return await defer(self, *args, **kwargs)
        finally:
            if times is not None:
                times["heard"] = time.monotonic()

    discord.gateway.DiscordWebSocket.received_message = received_message
    discord.state.ConnectionState.parse_interaction_create = parse_interaction_create
    discord.interactions.InteractionResponse.defer = timed_defer


def _write():
    with open(os.path.join(_OUT, f"{os.getpid()}.json"), "w") as f:
        json.dump({"slow": _slow, "gc": _gc, "acks": list(_acks.values())}, f)


asyncio.events.Handle._run = _timed
gc.callbacks.append(_collected)
_follow_acknowledgements()
atexit.register(_write)
"""

HOPS = (
    ("to_bot", "the loopback's dispatch to the bot reading the frame"),
    ("to_defer", "the bot's parsing and handler, to its `defer` call"),
    ("to_loopback", "the `defer` request to the loopback receiving it"),
    ("reply", "the loopback's reply back to the bot (after the acknowledgement)"),
)


def hops(outcomes: list[Outcome], records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each acknowledged poem request's way, in ms: the crowd's latency and every hop."""
    by_seed = {
        a["seed"]: a for r in records for a in r.get("acks", []) if "heard" in a and a["seed"]
    }
    out = []
    for o in outcomes:
        times = by_seed.get(o.arrival.options.get("seed"))
        if times is None or o.ack is None or o.dispatched_at is None:
            continue
        received = o.dispatched_at + o.ack
        out.append(
            {
                "at_s": o.arrival.at,
                "ack": o.ack * 1000,
                "to_bot": (times["frame"] - o.dispatched_at) * 1000,
                "to_defer": (times["defer"] - times["frame"]) * 1000,
                "to_loopback": (received - times["defer"]) * 1000,
                "reply": (times["heard"] - received) * 1000,
            }
        )
    return out


def hop_summary(ways: list[dict[str, float]]) -> dict[str, Any]:
    """Per hop p50 / p90 / p99 / max (ms), and the ten slowest acknowledgements' hops."""
    summary: dict[str, Any] = {"count": len(ways)}
    for name in ("ack", *(h for h, _ in HOPS)):
        values = [w[name] for w in ways]
        summary[name] = {
            q: round(percentile(values, v), 1)
            for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        } | {"max": round(max(values), 1)}
    slowest = sorted(ways, key=lambda w: -w["ack"])[:10]
    summary["slowest"] = [{k: round(v, 1) for k, v in w.items()} for w in slowest]
    return summary


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
        *hop_lines(report["hops_ms"]),
    ]
    return "\n".join(lines)


def hop_lines(summary: dict[str, Any]) -> list[str]:
    names = dict(HOPS)
    return [
        f"Where an acknowledgement's time goes ({summary['count']} poem requests followed from "
        "the loopback into the bot and back; ms):",
        "",
        "| hop | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {names.get(name, 'acknowledgement, as the crowd saw it')} | "
            f"{summary[name]['p50']} | {summary[name]['p90']} | {summary[name]['p99']} | "
            f"{summary[name]['max']} |"
            for name in ("ack", *names)
        ),
        "",
        "The ten slowest acknowledgements, hop by hop (ms):",
        "",
        "| arrival s | ack | to the bot | to `defer` | to the loopback | reply |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {w['at_s']} | {w['ack']} | {w['to_bot']} | {w['to_defer']} | "
            f"{w['to_loopback']} | {w['reply']} |"
            for w in summary["slowest"]
        ),
        "",
    ]


async def watched_load(
    root: Path,
    models: Path,
    shape: Shape,
    prompts: dict[str, list[str]],
    threshold_ms: float,
    **env_changes: str,
) -> tuple[Report, list[dict[str, Any]]]:
    """`make load`'s run (in `root`) with the bot watched from inside: the crowd's report and
    what the bot process recorded (its slow callbacks, collections and acknowledgements)."""
    site, dumps = root / "site", root / "dumps"
    site.mkdir()
    dumps.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (root / "run").mkdir()
    load = await run_load(
        root / "run",
        models,
        shape,
        prompts,
        PYTHONPATH=f"{site}:{ROOT}",
        LOOP_STALLS_THRESHOLD=str(threshold_ms / 1000),
        LOOP_STALLS_OUT=str(dumps),
        **env_changes,
    )
    return load, [json.loads(f.read_text()) for f in sorted(dumps.glob("*.json"))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--interactions", type=int, default=Shape.interactions)
    p.add_argument("--seconds", type=float, default=Shape.seconds)
    p.add_argument("--threshold-ms", type=float, default=2.0)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    add_env_option(p, "a bot setting over .env.example's (repeatable), e.g. GC_SECONDS=0")
    args = p.parse_args()
    changes = env_changes(p, args.env)
    shape = dataclasses.replace(Shape(), interactions=args.interactions, seconds=args.seconds)
    prompts = prompts_for(args.models)
    with tempfile.TemporaryDirectory() as tmp:
        load, records = asyncio.run(
            watched_load(
                Path(tmp), args.models.resolve(), shape, prompts, args.threshold_ms, **changes
            )
        )
    if not records:
        raise SystemExit("the bot process wrote nothing (did it exit cleanly?)")
    report = {
        "command": f"python -m benchmarks.loop_stalls --interactions {args.interactions} "
        f"--seconds {args.seconds:g} --threshold-ms {args.threshold_ms:g}"
        + "".join(f" --env {item}" for item in args.env),
        "cpu": cpu_name(),
        "threshold_ms": args.threshold_ms,
        "ack_ms": load.summary["ack_ms"],
        "problems": load.problems,
        **summarise(records),
        "hops_ms": hop_summary(hops(load.outcomes, records)),
    }
    text = markdown(report)
    write_results(args.out, "loop_stalls", report, text)
    print(text)


if __name__ == "__main__":
    main()
