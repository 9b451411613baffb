"""End-to-end latency of `/poem` through the loopback Discord: from the interaction's dispatch
to the bot's first response (the defer) and to the finished poem, with the shipped models.

    python -m benchmarks.poem_latency [--style shakespeare] [--length 400] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentile
from tests.botworld import bot_world, make_settings

ROOT = Path(__file__).resolve().parent.parent


async def measure(style: str, length: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = make_settings(root, ROOT / "models", default_style=style)
        async with bot_world(root, settings=settings) as w:
            await w.poem({"style": style, "length": 20})  # warm-up
            defer, final = [], []
            for seed in range(runs):
                record = await w.discord.invoke(
                    w.guild,
                    w.channel,
                    w.member,
                    "poem",
                    {"style": style, "length": length, "seed": seed},
                )
                first = await record.first_response(timeout=10)
                message = await record.final(timeout=60)
                defer.append(first.latency)
                final.append(message.versions[-1].received_at - record.dispatched_at)
            assert w.discord.violations == []
    return {
        "style": style,
        "length": length,
        "runs": runs,
        "defer_ms": {"p50": 1e3 * statistics.median(defer), "p95": 1e3 * percentile(defer, 0.95)},
        "final_ms": {"p50": 1e3 * statistics.median(final), "p95": 1e3 * percentile(final, 0.95)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--style", default="shakespeare")
    p.add_argument("--length", type=int, default=400)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    started = time.time()
    result = asyncio.run(measure(args.style, args.length, args.runs))
    result["command"] = (
        f"python -m benchmarks.poem_latency --style {args.style} "
        f"--length {args.length} --runs {args.runs}"
    )
    result["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poem_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
