"""What the echo judge (`bot.forms.themes.EchoJudge`) does to poems about a theme, on the
shipped styles: for each style's default form (Tang: 七律; 宋詞: 水调歌头; Shakespeare: sonnet;
Jay Chou: verse), the 20 themes a user would type (`benchmarks.about.TYPED`), N seeds each,
with each style's own candidates a line for a poem about a theme, written once with the judge
off (ECHO_WEIGHT 0) and once at each weight asked: the echoes of its theme a poem holds
(words the corpus relates to the user's own; Chinese: their characters), and the network's
mean log-probability per character of the poem, read afresh (`benchmarks.candidates.poem_logp`).

    python -m benchmarks.echoes [--styles tang jaychou songci shakespeare] [--seeds 3]
                                [--weights 0 0.3 0.6]

Results: benchmarks/results/echoes.json and .md. Whether readers name the theme more often is
for blind readers (`benchmarks.ratings sheets --topic`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks.about import TYPED, live
from benchmarks.candidates import poem_logp
from benchmarks.forms import ROOT, say
from benchmarks.stats import cpu_name, write_results
from bot.config import Settings
from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import load_model
from bot.forms import catalog, themes
from bot.poems import candidates_for

FORMS = {"tang": "qilv", "songci": "水调歌头", "shakespeare": "sonnet", "jaychou": None}
SETTINGS = Settings.from_env()
DEFAULT_WEIGHT = themes.ECHO_WEIGHT


async def measure(style: str, seeds: int, weights: list[float]) -> dict[str, Any]:
    path = live(style)
    bundle = load_bundle(path)
    model = load_model(path)
    k = candidates_for(SETTINGS, bundle.card, about=True)
    scheduler = Scheduler(model, Limits(max_batch=4096, max_queue=100_000, deadline=3600.0))
    related = catalog.table(path, bundle.card, "themes", "themes")
    rows: dict[str, Any] = {}
    try:
        for weight in weights:
            themes.ECHO_WEIGHT = weight
            plans = [
                catalog.plan(bundle.card, bundle.vocab.chars, path, form=FORMS[style], about=t)
                for t in TYPED[related.chinese]
            ]
            requests = [
                Request(
                    p.prompt,
                    p.length,
                    SETTINGS.default_temperature,
                    seed=seed,
                    rules=p.rules,
                    candidates=k,
                )
                for p in plans
                for seed in range(1, seeds + 1)
            ]
            poems = await asyncio.gather(*(scheduler.generate(r) for r in requests))
            judges = [
                themes.EchoJudge(None, p.theme.echoes, p.theme.chinese)
                for p in plans
                for _ in range(seeds)
            ]
            rows[f"{weight:g}"] = {
                "poems": len(poems),
                "echoes_per_poem": statistics.fmean(
                    j.echoes_in(g.text) for j, g in zip(judges, poems, strict=True)
                ),
                "logp_per_char": statistics.fmean(poem_logp(model, g.text) for g in poems),
            }
    finally:
        themes.ECHO_WEIGHT = DEFAULT_WEIGHT
        await scheduler.close()
    return {"form": FORMS[style], "candidates": k, "by_weight": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The echo judge: poems about a theme, with and without it",
        "",
        f"`{report['command']}` on {report['cpu']} (load average "
        f"{', '.join(f'{x:.1f}' for x in report['load_average'])}). The shipped default "
        f"weight is {DEFAULT_WEIGHT:g}; 0 is the judge off. Each row: the 20 themes a user "
        "would type x the seeds, each style's own candidates a line for a themed poem.",
        "",
        "| style (form, candidates) | weight | poems | echoes a poem | network's log-prob a char |",
        "|---|---:|---:|---:|---:|",
    ]
    for style, r in report["styles"].items():
        for weight, row in r["by_weight"].items():
            lines.append(
                f"| {style} ({r['form'] or 'default'}, {r['candidates']}) | {weight} | "
                f"{row['poems']} | {row['echoes_per_poem']:.2f} | {row['logp_per_char']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--styles", nargs="+", default=list(FORMS), choices=tuple(FORMS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, DEFAULT_WEIGHT, 0.6])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    report: dict[str, Any] = {
        "command": f"python -m benchmarks.echoes --styles {' '.join(args.styles)} "
        f"--seeds {args.seeds} --weights {' '.join(f'{w:g}' for w in args.weights)}",
        "cpu": cpu_name(),
        "load_average": list(os.getloadavg()),
        "styles": {},
    }
    for style in args.styles:
        say(f"{style}: echoes")
        report["styles"][style] = asyncio.run(measure(style, args.seeds, args.weights))
    text = markdown(report)
    write_results(args.out, "echoes", report, text)
    print(text)


if __name__ == "__main__":
    main()
