"""Memory and start-up of the serving process.

    python -m benchmarks.footprint [--runs 3]

A fresh Python process imports the bot (discord.py, onnxruntime, numpy: what `make run`
starts), loads every bundled style's live version through the bot's registry (sessions
created and warmed), and reports: seconds from process start to ready, resident memory at
ready and after one poem from each style, and whether TensorFlow was imported. For each model
precision (fp32 and int8). Results go to benchmarks/results/footprint.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.stats import write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_RSS_MB = 300
TARGET_READY_S = 3.0


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(models: Path, precision: str) -> None:
    """The measured process: prints one JSON line when ready and one after serving."""
    import bot.composition  # noqa: F401  (the Discord client and everything the bot imports)
    from bot.engine.registry import Registry
    from bot.engine.scheduler import Request

    async def main() -> dict:
        registry = Registry(models, providers="auto", precision=precision)
        loaded = await registry.reload()  # one line per style: "jaychou: now v2"
        ready = time.time()
        ready_rss = _status_mb("VmRSS")
        styles = registry.styles()
        for style in styles:
            await registry.generate(style, Request(prompt="", length=200, seed=1))
        served_rss = _status_mb("VmRSS")
        await registry.close()
        return {
            "ready_at": ready,
            "styles": styles,
            "loaded": loaded,
            "rss_ready_mb": ready_rss,
            "rss_after_poems_mb": served_rss,
            "peak_rss_mb": _status_mb("VmHWM"),
            "tensorflow_imported": any(
                m.split(".")[0] in ("tensorflow", "keras", "tf2onnx") for m in sys.modules
            ),
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def measure(models: Path, precision: str) -> dict:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.footprint", "--child", str(models), precision],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds_to_ready"] = result.pop("ready_at") - started
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[2])
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.footprint", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    targets = {"rss_mb": TARGET_RSS_MB, "ready_s": TARGET_READY_S}
    report: dict = {"runs": args.runs, "targets": targets}
    for precision in ("fp32", "int8"):
        runs = [measure(args.models, precision) for _ in range(args.runs)]
        summary = {
            "styles": runs[0]["styles"],
            "loaded": runs[0]["loaded"],
            "tensorflow_imported": any(r["tensorflow_imported"] for r in runs),
            "seconds_to_ready_median": statistics.median(r["seconds_to_ready"] for r in runs),
            "seconds_to_ready_max": max(r["seconds_to_ready"] for r in runs),
            "rss_ready_mb": max(r["rss_ready_mb"] for r in runs),
            "rss_after_poems_mb": max(r["rss_after_poems_mb"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        }
        report[precision] = summary
        print(precision, json.dumps(summary), flush=True)
    lines = [
        "# Footprint of the serving process",
        "",
        f"`python -m benchmarks.footprint`: a fresh process imports the bot, loads and warms "
        f"every bundled style ({', '.join(report['fp32']['styles'])}) through the registry, "
        f"then writes one 200-character poem per style. Worst of {args.runs} runs (time: "
        "median and max).",
        "",
        "| precision | start to ready, s (median / max) | RSS at ready, MB | RSS after poems, MB "
        "| peak RSS, MB | TensorFlow imported |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for precision in ("fp32", "int8"):
        s = report[precision]
        lines.append(
            f"| {precision} | {s['seconds_to_ready_median']:.2f} / {s['seconds_to_ready_max']:.2f}"
            f" | {s['rss_ready_mb']:.0f} | {s['rss_after_poems_mb']:.0f} | {s['peak_rss_mb']:.0f}"
            f" | {'yes' if s['tensorflow_imported'] else 'no'} |"
        )
    lines += ["", f"Targets: resident memory <= {TARGET_RSS_MB} MB, ready <= {TARGET_READY_S} s.\n"]
    write_results(args.out, "footprint", report, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
