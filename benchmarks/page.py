"""The local page's API under load: what HTTP and streaming (SSE) cost against the engine alone.

    python -m benchmarks.page [--poems 200] [--clients 20] [--rounds 3]

The page (`build_page(settings, registry).app()`) is served in this process on a loopback port
(aiohttp `AppRunner`/`TCPSite`, as `bot.web.server.serve` does) over the shipped models (models/,
their live versions), with `Settings()` but providers=cpu, no per-client cooldown and a cap of
1000 poems per client (every client here has the same address).

Each round sends the same N poems each way, closed loop (each of C clients sends its next poem
when its last is answered):

- sse: `POST /api/poems` with `Accept: text/event-stream` from C clients on one aiohttp
  session on the page's own event loop, the stream read as it comes: first chunk = the first
  `chunk` event read, whole = the `poem` event read (its figures include the in-process
  client's own HTTP and SSE reading, which no browser puts in the server's process);
- sse_apart: the same from a client process of its own (`--client URL`, as a browser is one),
  started and connected before the clock starts: the page as a browser uses it, and the
  target's measure;
- json: sse's client with `Accept: application/json` (whole only): HTTP without the streaming,
  to tell the two costs apart;
- direct: `registry.generate(style, request, listener)` from C tasks, the request made as the
  page makes it (`catalog.plan(...)`, the settings' temperature), timed from before the plan:
  first chunk = the listener's first call, whole = the Generation returned.

The poems: a fixed mix, poem i of style i mod 3: shakespeare (default form, speech, length
400), tang (default: the seed picks a form), jaychou (verse); seed 1000 + i; no prompt. The
ways take turns for R rounds, the order rotated each round; medians over the rounds, and the
median of each round's ratio to direct (a round's runs share the machine's state of the
moment). CPU per poem: CPU time (all threads) over the run, of this process and, for
sse_apart, the client's. Every poem's text through HTTP (its `poem` event, or its JSON) is
compared with the direct one of the same seed and options, and the `chunk` events (joined)
with the poem they stream. Memory: this process's peak RSS (`resource.getrusage`) and current
RSS after loading, after warm-up and at the end. Results go to benchmarks/results/
page.{json,md}; no poem text is written (Jay Chou's corpus is copyrighted).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.stats import percentile, write_results
from bot.composition import build_page, build_registry
from bot.config import Settings
from bot.engine.registry import Registry
from bot.engine.scheduler import Request
from bot.forms import catalog
from bot.web.server import serve

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEED_BASE = 1000
MIX: tuple[dict[str, Any], ...] = (
    {"style": "shakespeare", "length": 400},
    {"style": "tang"},
    {"style": "jaychou", "form": "verse"},
)
TARGET_RATIO = 0.9  # sse_apart poems/s over direct poems/s
TARGET_WAY = "sse_apart"  # clients in a process of their own, as browsers are
WAYS = ("sse", "sse_apart", "json", "direct")


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def rss_mb() -> dict[str, float]:
    """Peak RSS (getrusage, KiB on Linux) and current RSS (/proc), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    now = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"peak_mb": round(peak, 1), "current_mb": round(now, 1)}


def poems(n: int) -> list[dict[str, Any]]:
    """The options of poem i, as the page's JSON body."""
    return [{**MIX[i % len(MIX)], "seed": SEED_BASE + i} for i in range(n)]


@dataclass
class Outcome:
    """One poem, one way."""

    style: str
    first: float | None = None  # seconds to the first chunk
    whole: float | None = None  # seconds to the whole poem
    text: str | None = None
    chunks: list[str] = field(default_factory=list)
    engine_seconds: float | None = None  # Generation.seconds (the engine's own time)
    form: str | None = None
    is_whole: bool | None = None
    error: str | None = None


# --- the three ways --------------------------------------------------------------------------


async def via_http(session: aiohttp.ClientSession, url: str, options: dict) -> Outcome:
    out = Outcome(options["style"])
    started = time.perf_counter()
    async with session.post(url, json=options, headers={"Accept": "text/event-stream"}) as response:
        if response.status != 200:
            out.error = f"HTTP {response.status}: {(await response.text())[:200]}"
            return out
        name = None
        async for raw in response.content:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if name == "chunk":
                    if out.first is None:
                        out.first = time.perf_counter() - started
                    out.chunks.append(data["text"])
                elif name == "poem":
                    out.whole = time.perf_counter() - started
                    out.text = data["text"]
                    out.engine_seconds = data["seconds"]
                    out.form, out.is_whole = data["form"], data["whole"]
                elif name == "error":
                    out.whole = time.perf_counter() - started
                    out.error = f"error event: {data.get('error')}"
    if out.text is None and out.error is None:
        out.error = "the stream ended without a poem event"
    return out


async def via_json(session: aiohttp.ClientSession, url: str, options: dict) -> Outcome:
    out = Outcome(options["style"])
    started = time.perf_counter()
    async with session.post(url, json=options, headers={"Accept": "application/json"}) as response:
        data = await response.json()
        out.whole = time.perf_counter() - started
        if response.status != 200:
            out.error = f"HTTP {response.status}: {data.get('error')}"
            return out
    out.text, out.engine_seconds = data["text"], data["seconds"]
    out.form, out.is_whole = data["form"], data["whole"]
    return out


def page_request(settings: Settings, registry: Registry, options: dict):
    """The plan and engine request the page makes for these options (server.PoemPage._plan)."""
    live = registry.live(options["style"])
    plan = catalog.plan(
        live.bundle.card,
        live.bundle.vocab.chars,
        live.bundle.path,
        form=options.get("form"),
        prompt=options.get("prompt", ""),
        length=options.get("length"),
        default_length=settings.default_length,
        max_length=settings.limits.max_length,
    )
    request = Request(
        prompt=plan.prompt,
        length=plan.length,
        temperature=settings.default_temperature + 0.0,
        seed=options["seed"],
        rules=plan.rules,
    )
    return plan, request


async def direct(settings: Settings, registry: Registry, options: dict) -> Outcome:
    out = Outcome(options["style"])
    started = time.perf_counter()

    def listener(text: str) -> None:
        if out.first is None:
            out.first = time.perf_counter() - started
        out.chunks.append(text)

    try:
        plan, request = page_request(settings, registry, options)
        result = await registry.generate(options["style"], request, listener)
    except Exception as err:  # a poem the engine refused: counted, compared with http's
        out.whole = time.perf_counter() - started
        out.error = f"{type(err).__name__}: {err}"
        return out
    out.whole = time.perf_counter() - started
    out.text = plan.present(result.text)
    out.chunks = [plan.present(c) for c in out.chunks]
    out.engine_seconds = result.seconds
    out.form, out.is_whole = result.form, result.whole
    return out


async def closed_loop(jobs: list[dict], clients: int, one) -> tuple[list[Outcome], float, float]:
    """`clients` workers, each taking the next job when its last is done: the outcomes by job,
    the wall seconds and the process's CPU seconds."""
    results: list[Outcome | None] = [None] * len(jobs)
    position = iter(range(len(jobs)))

    async def worker() -> None:
        for i in position:
            results[i] = await one(jobs[i])

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    done = [r for r in results if r is not None]
    return done, time.perf_counter() - started, time.process_time() - cpu


async def client_main(url: str, n: int, clients: int) -> None:
    """The client of `sse_apart`, in a process of its own: says `ready`, waits for a line on
    stdin, runs the closed loop of sse requests, prints its outcomes, wall and CPU seconds."""
    jobs = poems(n)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:
        await closed_loop(jobs[: min(n, clients)], clients, lambda o: via_http(session, url, o))
        print("ready", flush=True)
        sys.stdin.readline()
        outcomes, seconds, cpu = await closed_loop(
            jobs, clients, lambda o: via_http(session, url, o)
        )
    print(
        json.dumps(
            {"seconds": seconds, "cpu": cpu, "outcomes": [dataclasses.asdict(o) for o in outcomes]}
        ),
        flush=True,
    )


async def apart(url: str, n: int, clients: int) -> tuple[list[Outcome], float, float, float]:
    """`sse_apart`: the closed loop from a client process of its own (started, and its
    connections opened, before the clock starts): its outcomes, its wall seconds, this
    process's CPU seconds meanwhile and the client's."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.page",
        "--client",
        url,
        "--poems",
        str(n),
        "--clients",
        str(clients),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    line = await child.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"the client process said {line!r}")
    cpu = time.process_time()
    child.stdin.write(b"go\n")
    await child.stdin.drain()
    output = await child.stdout.read()
    cpu = time.process_time() - cpu
    if await child.wait() != 0:
        raise RuntimeError(f"the client process failed ({child.returncode})")
    got = json.loads(output)
    return [Outcome(**o) for o in got["outcomes"]], got["seconds"], cpu, got["cpu"]


def summary(
    outcomes: list[Outcome], seconds: float, cpu: float, client_cpu: float = 0.0
) -> dict[str, Any]:
    done = [o for o in outcomes if o.error is None]
    first = [o.first for o in done if o.first is not None]
    whole = [o.whole for o in done if o.whole is not None]
    engine = [o.engine_seconds for o in done if o.engine_seconds is not None]
    chars = sum(len(o.text or "") for o in done)

    def ms(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p99": None}
        return {
            "p50": round(1e3 * statistics.median(values), 1),
            "p99": round(1e3 * percentile(values, 0.99), 1),
        }

    return {
        "seconds": round(seconds, 3),
        "poems": len(outcomes),
        "errors": len(outcomes) - len(done),
        "poems_per_second": round(len(done) / seconds, 2),
        "chars_per_second": round(chars / seconds, 1),
        "chars": chars,
        # This process's CPU (the page, the engine, and the client when it is in-process), plus
        # the client process's for sse_apart.
        "cpu_ms_per_poem": round(1e3 * (cpu + client_cpu) / max(1, len(outcomes)), 2),
        "server_cpu_ms_per_poem": round(1e3 * cpu / max(1, len(outcomes)), 2),
        "chunks_per_poem": round(statistics.mean(len(o.chunks) for o in outcomes), 1)
        if any(o.chunks for o in outcomes)
        else None,
        "first_chunk_ms": ms(first),
        "whole_ms": ms(whole),
        "engine_ms": ms(engine),
        "by_style": {
            style: {
                "poems": sum(o.style == style for o in done),
                "first_chunk_ms": ms(
                    [o.first for o in done if o.style == style and o.first is not None]
                ),
                "whole_ms": ms([o.whole for o in done if o.style == style and o.whole is not None]),
            }
            for style in dict.fromkeys(m["style"] for m in MIX)
        },
    }


def chunked(outcomes: list[Outcome]) -> dict[str, int]:
    """Each poem's chunks joined against the poem: equal, or the poem a prefix of them (a length
    that cut the poem at its last whole line after the rest had streamed), or different."""
    equal = prefix = other = 0
    for o in outcomes:
        if o.text is None or not o.chunks:
            continue
        joined = "".join(o.chunks)
        if joined == o.text:
            equal += 1
        elif joined.startswith(o.text):
            prefix += 1
        else:
            other += 1
    return {"equal": equal, "cut_after_streaming": prefix, "differ": other}


def same(a: list[Outcome], b: list[Outcome]) -> int:
    """Poems with the same text (or both refused) both ways."""
    return sum(
        x.text == y.text and (x.error is None) == (y.error is None)
        for x, y in zip(a, b, strict=True)
    )


# --- the run ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(n: int, clients: int, rounds: int) -> dict[str, Any]:
    settings = dataclasses.replace(
        Settings(),
        models_dir=ROOT / "models",
        providers="cpu",
        user_cooldown=0.0,
        channel_concurrency=1000,
    )
    memory: dict[str, Any] = {"start": rss_mb()}
    registry = build_registry(settings)
    notes = await registry.reload()
    say("models:", "; ".join(notes))
    memory["models_loaded"] = rss_mb()
    live = {
        s: {"version": registry.live(s).version, "provider": registry.live(s).provider}
        for s in registry.styles()
    }
    port = free_port()
    runner = await serve(build_page(settings, registry).app(), "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}/api/poems"
    jobs = poems(n)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    checks: list[dict[str, Any]] = []
    first_round: list[str | None] = []
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            ways = {
                "sse": lambda options: via_http(session, url, options),
                "json": lambda options: via_json(session, url, options),
                "direct": lambda options: direct(settings, registry, options),
            }
            # Warm-up: every style each way (the English lexicon, CMU, line indexes, sessions).
            warm = [{**m, "seed": s} for s in range(2) for m in MIX]
            for one in ways.values():
                await closed_loop(warm, clients, one)
            memory["warmed_up"] = rss_mb()
            for r in range(rounds):
                got: dict[str, list[Outcome]] = {}
                for way in order(r):
                    client_cpu = 0.0
                    if way == "sse_apart":
                        outcomes, seconds, cpu, client_cpu = await apart(url, n, clients)
                    else:
                        outcomes, seconds, cpu = await closed_loop(jobs, clients, ways[way])
                    got[way] = outcomes
                    s = summary(outcomes, seconds, cpu, client_cpu)
                    runs[way].append(s)
                    say(
                        f"round {r + 1} {way:9}: {s['poems_per_second']:6.2f} poems/s "
                        f"{s['chars_per_second']:6.0f} chars/s  cpu {s['cpu_ms_per_poem']:5.1f} "
                        f"ms/poem  first chunk p50/p99 {_n(s['first_chunk_ms']['p50'], 0)}/"
                        f"{_n(s['first_chunk_ms']['p99'], 0)} ms  whole p50/p99 "
                        f"{s['whole_ms']['p50']:.0f}/{s['whole_ms']['p99']:.0f} ms  "
                        f"errors {s['errors']}"
                    )
                texts = [o.text for o in got["direct"]]
                first_round = first_round or texts
                check = {
                    "of": len(jobs),
                    "sse_same_as_direct": same(got["sse"], got["direct"]),
                    "sse_apart_same_as_direct": same(got["sse_apart"], got["direct"]),
                    "json_same_as_direct": same(got["json"], got["direct"]),
                    "direct_same_as_round_1": sum(
                        a == b for a, b in zip(texts, first_round, strict=True)
                    ),
                    "sse_chunks": chunked(got["sse"]),
                    "sse_apart_chunks": chunked(got["sse_apart"]),
                    "direct_chunks": chunked(got["direct"]),
                    "errors": sorted(
                        {o.error for way in got.values() for o in way if o.error is not None}
                    ),
                    "forms": dict(
                        sorted(Counter(f"{o.style}/{o.form}" for o in got["direct"]).items())
                    ),
                    "whole": sum(bool(o.is_whole) for o in got["direct"]),
                }
                checks.append(check)
                say(
                    f"  same text as direct: sse {check['sse_same_as_direct']}/{len(jobs)}, "
                    f"sse_apart {check['sse_apart_same_as_direct']}/{len(jobs)}, "
                    f"json {check['json_same_as_direct']}/{len(jobs)}"
                )
    finally:
        await runner.cleanup()
        memory["serving_end"] = rss_mb()
        await registry.close()
    return {"live": live, "runs": runs, "checks": checks, "memory": memory}


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(get) -> float:
        values = [get(r) for r in runs]
        values = [v for v in values if v is not None]  # json has no first chunk
        return round(statistics.median(values), 2) if values else None

    return {
        "poems_per_second": med(lambda r: r["poems_per_second"]),
        "chars_per_second": med(lambda r: r["chars_per_second"]),
        "cpu_ms_per_poem": med(lambda r: r["cpu_ms_per_poem"]),
        "server_cpu_ms_per_poem": med(lambda r: r["server_cpu_ms_per_poem"]),
        "first_chunk_p50_ms": med(lambda r: r["first_chunk_ms"]["p50"]),
        "first_chunk_p99_ms": med(lambda r: r["first_chunk_ms"]["p99"]),
        "whole_p50_ms": med(lambda r: r["whole_ms"]["p50"]),
        "whole_p99_ms": med(lambda r: r["whole_ms"]["p99"]),
        "engine_p50_ms": med(lambda r: r["engine_ms"]["p50"]),
        "chunks_per_poem": med(lambda r: r["chunks_per_poem"]),
    }


def overhead(report: dict[str, Any]) -> dict[str, Any]:
    """Each way's medians, and sse's and json's against direct: throughput ratios (the ratio of
    medians, and the median of each round's ratio: the runs of one round share the machine's
    state of the moment) and the time added to the first chunk and the whole poem."""
    runs = report["runs"]
    med = {way: medians(runs[way]) for way in WAYS}
    d = med["direct"]
    out: dict[str, Any] = {"medians": med, "target_ratio": TARGET_RATIO}
    for way in ("sse", "sse_apart", "json"):
        m = med[way]
        pairs = [
            w["poems_per_second"] / x["poems_per_second"]
            for w, x in zip(runs[way], runs["direct"], strict=True)
        ]
        out[way] = {
            "poems_ratio": round(m["poems_per_second"] / d["poems_per_second"], 3),
            "poems_ratio_per_round": [round(p, 3) for p in pairs],
            "poems_ratio_round_median": round(statistics.median(pairs), 3),
            "chars_ratio": round(m["chars_per_second"] / d["chars_per_second"], 3),
            "cpu_ms_per_poem_added": _minus(m["cpu_ms_per_poem"], d["cpu_ms_per_poem"], 2),
            "first_chunk_p50_added_ms": _minus(m["first_chunk_p50_ms"], d["first_chunk_p50_ms"], 1),
            "first_chunk_p99_added_ms": _minus(m["first_chunk_p99_ms"], d["first_chunk_p99_ms"], 1),
            "whole_p50_added_ms": _minus(m["whole_p50_ms"], d["whole_p50_ms"], 1),
            "whole_p99_added_ms": _minus(m["whole_p99_ms"], d["whole_p99_ms"], 1),
        }
    out["met"] = out[TARGET_WAY]["poems_ratio"] >= TARGET_RATIO
    return out


def _minus(a: float | None, b: float | None, digits: int = 1) -> float | None:
    return None if a is None or b is None else round(a - b, digits)


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def order(r: int) -> tuple[str, ...]:
    """The ways in round r's order (rotated each round)."""
    k = r % len(WAYS)
    return WAYS[k:] + WAYS[:k]


def markdown(report: dict[str, Any]) -> str:
    o = report["overhead"]
    med = o["medians"]
    d = med["direct"]
    mem = report["memory"]
    checks = report["checks"]
    n = report["poems"]
    commit = report["commit"][:10] + (" with uncommitted changes" if report["dirty"] else "")
    live = ", ".join(f"{s} {v['version']} ({v['provider']})" for s, v in report["live"].items())
    http = ("sse", "sse_apart", "json")
    same_counts = "; ".join(", ".join(str(c[f"{w}_same_as_direct"]) for w in http) for c in checks)
    all_same = all(c[f"{w}_same_as_direct"] == n for c in checks for w in http)
    rounds = " / ".join(" ".join(order(r)) for r in range(min(report["rounds"], len(WAYS))))

    def ratio_row(way: str, label: str, target: bool) -> str:
        w = o[way]
        met = ("yes" if w["poems_ratio"] >= TARGET_RATIO else "**no**") if target else "-"
        return (
            f"| poems/s, {label} / direct | {med[way]['poems_per_second']:.2f} / "
            f"{d['poems_per_second']:.2f} = {w['poems_ratio']:.3f} (per round: "
            f"{', '.join(f'{p:.3f}' for p in w['poems_ratio_per_round'])}) | "
            f"{f'>= {TARGET_RATIO}' if target else '(for comparison)'} | {met} |"
        )

    lines = [
        "# The page's API under load: HTTP and streaming against the engine alone",
        "",
        f"Reproduce with `{report['command']}` ({report['seconds']:.0f} s on "
        f"{report['machine']['cpus']} CPUs, no GPU). Commit {commit}. Models: {live}.",
        "",
        f"{n} poems from {report['clients']} concurrent clients, closed loop (each client sends "
        "its next poem when its last is answered), the page served in this process on a "
        "loopback port: poem i of style i mod 3 (shakespeare default form, speech, length 400; "
        "tang default, the seed picks a form; jaychou verse), seed "
        f"{SEED_BASE} + i, temperature {report['temperature']}, no prompt. Four ways:",
        "",
        "- **sse**: `POST /api/poems` read as it streams (first chunk: the first `chunk` event "
        "read; whole: the `poem` event), the client on the page's own event loop (so these "
        "figures include the client's own HTTP and SSE reading);",
        "- **sse_apart**: the same from a client process of its own (as a browser is), started "
        "and connected before the clock starts: the target's measure;",
        "- **json**: sse's client with `Accept: application/json` (whole only): HTTP without the "
        "streaming;",
        "- **direct**: `registry.generate(style, request, listener)` from as many tasks, with the "
        "request the page would make (`catalog.plan`, timed from before it; first chunk: the "
        "listener's first call).",
        "",
        f"{report['rounds']} rounds, the order rotated each round ({rounds}); medians of the "
        "rounds. CPU: CPU time (all threads) per poem, of this process plus, for sse_apart, the "
        "client process's; server CPU: this process's alone.",
        "",
        "## Targets",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        ratio_row("sse_apart", "sse_apart", True),
        ratio_row("sse", "sse", False),
        ratio_row("json", "json", False),
        "| same text through HTTP as direct (same seed and options), sse, sse_apart and json, "
        f"per round | {same_counts} of {n} | all | {'yes' if all_same else '**no**'} |",
        "",
        "## Medians of the rounds",
        "",
        "| | " + " | ".join(WAYS) + " | " + " | ".join(f"{w} − direct" for w in http) + " |",
        "|---" * (len(WAYS) + len(http) + 1) + "|",
        "| poems/s | "
        + " | ".join(f"{med[w]['poems_per_second']:.2f}" for w in WAYS)
        + " | "
        + " | ".join(
            f"ratio {o[w]['poems_ratio']:.3f} (rounds' median "
            f"{o[w]['poems_ratio_round_median']:.3f})"
            for w in http
        )
        + " |",
        "| chars/s | "
        + " | ".join(f"{med[w]['chars_per_second']:,.0f}" for w in WAYS)
        + " | "
        + " | ".join(f"ratio {o[w]['chars_ratio']:.3f}" for w in http)
        + " |",
    ]
    for key, label in (
        ("cpu_ms_per_poem", "CPU per poem, ms"),
        ("server_cpu_ms_per_poem", "server CPU per poem, ms"),
        ("first_chunk_p50_ms", "first chunk p50, ms"),
        ("first_chunk_p99_ms", "first chunk p99, ms"),
        ("whole_p50_ms", "whole poem p50, ms"),
        ("whole_p99_ms", "whole poem p99, ms"),
        ("engine_p50_ms", "engine's own time p50 (Generation.seconds), ms"),
        ("chunks_per_poem", "chunks per poem (chunk events; listener calls)"),
    ):
        diff = [_minus(med[w][key], d[key]) for w in http]
        lines.append(
            f"| {label} | "
            + " | ".join(_n(med[w][key]) for w in WAYS)
            + " | "
            + " | ".join("-" if x is None else f"{x:+.1f}" for x in diff)
            + " |"
        )
    lines += [
        "",
        "## Each run",
        "",
        "| round | way | s | poems/s | chars/s | CPU ms/poem (server) | first chunk p50 / p99 "
        "ms | whole p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in range(report["rounds"]):
        for way in order(r):
            s = report["runs"][way][r]
            lines.append(
                f"| {r + 1} | {way} | {s['seconds']:.2f} | {s['poems_per_second']:.2f} | "
                f"{s['chars_per_second']:,.0f} | {s['cpu_ms_per_poem']:.1f} "
                f"({s['server_cpu_ms_per_poem']:.1f}) | "
                f"{_n(s['first_chunk_ms']['p50'], 0)} / {_n(s['first_chunk_ms']['p99'], 0)} | "
                f"{s['whole_ms']['p50']:.0f} / {s['whole_ms']['p99']:.0f} | {s['errors']} |"
            )
    lines += [
        "",
        f"By style (round 1; {' / '.join(WAYS)}), ms:",
        "",
        "| style | poems | first chunk p50 | first chunk p99 | whole p50 | whole p99 |",
        "|---|---|---|---|---|---|",
    ]
    first = {way: report["runs"][way][0]["by_style"] for way in WAYS}
    for style in first["sse"]:
        row = [" / ".join(str(first[w][style]["poems"]) for w in WAYS)]
        for key in ("first_chunk_ms", "whole_ms"):
            for q in ("p50", "p99"):
                row.append(" / ".join(_n(first[w][style][key][q], 0) for w in WAYS))
        lines.append(f"| {style} | {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} |")
    c0 = checks[0]
    lines += [
        "",
        "## Checks",
        "",
        "- Same text as direct, per round: "
        + "; ".join(
            f"{w} " + ", ".join(f"{c[f'{w}_same_as_direct']}/{n}" for c in checks) for w in http
        )
        + "; direct against round 1's direct: "
        + ", ".join(f"{c['direct_same_as_round_1']}/{n}" for c in checks)
        + ".",
        f"- Chunks joined against the poem (round 1): sse {c0['sse_chunks']}, sse_apart "
        f"{c0['sse_apart_chunks']}, direct {c0['direct_chunks']} (cut_after_streaming: the "
        "length cut the poem at its last whole line after the rest had streamed).",
        f"- Forms written (round 1, direct): {c0['forms']}; whole (the writer saw the poem "
        f"end): {c0['whole']}/{n}.",
        f"- Errors (any round, any way): {sorted({e for c in checks for e in c['errors']})}.",
        "",
        "## Memory (this process: the page, its models and the in-process client)",
        "",
        "| when | peak RSS, MiB | current RSS, MiB |",
        "|---|---|---|",
    ]
    for when, label in (
        ("start", "start"),
        ("models_loaded", "models loaded"),
        ("warmed_up", "after warm-up"),
        ("serving_end", f"after {report['rounds']} rounds, still serving"),
    ):
        lines.append(f"| {label} | {mem[when]['peak_mb']:.1f} | {mem[when]['current_mb']:.1f} |")
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}; load average "
        f"{m['load_start']} at the start, {m['load_end']} at the end.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.page", description=__doc__)
    p.add_argument("--poems", type=int, default=200)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=7)  # each round is a few seconds: noisy alone
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # sse_apart's client
    args = p.parse_args(argv)
    if args.client:
        asyncio.run(client_main(args.client, args.poems, args.clients))
        return 0
    started = time.perf_counter()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks.page", *argv]),
        "poems": args.poems,
        "clients": args.clients,
        "rounds": args.rounds,
        "mix": list(MIX),
        "seed_base": SEED_BASE,
        "temperature": Settings().default_temperature,
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }
    report |= asyncio.run(measure(args.poems, args.clients, args.rounds))
    report["overhead"] = overhead(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_start": load_start,
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    write_results(args.out, "page", report, markdown(report))
    o = report["overhead"][TARGET_WAY]
    ratio, first, whole = o["poems_ratio"], o["first_chunk_p50_added_ms"], o["whole_p50_added_ms"]
    say(
        f"{TARGET_WAY}/direct poems/s {ratio:.3f} (target >= {TARGET_RATIO}); first chunk p50 "
        f"{first:+.1f} ms, whole p50 {whole:+.1f} ms; wrote {args.out / 'page.json'} and .md "
        f"in {report['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
