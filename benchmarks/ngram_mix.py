"""What mixing a bundle's n-gram model into its network buys and costs.

`python -m benchmarks.ngram_mix [--bundle models/jaychou/v2] [--corpus PATH_OR_NAME]`:
- quality: validation loss (the bundle's protocol: the last 10% of its corpus, full context) of
  the network alone, the n-gram alone, and the mixture at a range of weights. The bundle ships
  the weight fixed before this sweep (DEFAULT_WEIGHT); the sweep shows how much that choice
  leaves on the table, it does not pick the weight;
- copying: the longest run of each sample (300 characters, temperature 0.8) found verbatim in
  the corpus, network alone against the mixture; an n-gram model remembers phrases;
- cost: the engine's chars/s and latency on 400-character requests at concurrency 1 and 64,
  the same network with and without the n-gram, taking turns three times (median run).
Results go to benchmarks/results/ngram_mix.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from benchmarks.kneser_ney import DEFAULT_CORPORA
from benchmarks.serve import engine_runs
from benchmarks.stats import write_results
from bot.bundle import load_bundle
from bot.engine import Request, Scheduler, StepModel
from export.onnx_export import ngram_loss, onnx_loss
from training.corpus import load_corpus, split

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SAMPLES = 40


def longest_copied(text: str, corpus: str) -> int:
    """The length of the longest stretch of `text` that occurs verbatim in `corpus`."""
    best = 0
    for i in range(len(text)):
        while i + best < len(text) and text[i : i + best + 1] in corpus:
            best += 1
    return best


def copying(model: StepModel, corpus: str) -> dict[str, Any]:
    async def texts() -> list[str]:
        scheduler = Scheduler(model)
        try:
            return [
                (await scheduler.generate(Request(length=300, temperature=0.8, seed=s))).text
                for s in range(SAMPLES)
            ]
        finally:
            await scheduler.close()

    runs = sorted(longest_copied(t, corpus) for t in asyncio.run(texts()))
    return {"samples": SAMPLES, "median": runs[len(runs) // 2], "max": runs[-1], "runs": runs}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.ngram_mix", description=__doc__)
    p.add_argument("--bundle", type=Path, default=ROOT / "models" / "jaychou" / "v2")
    p.add_argument(
        "--corpus",
        help="the bundle's corpus (default: ../shared/corpora's copy, else the card's known name)",
    )
    p.add_argument("--length", type=int, default=400)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)

    bundle = load_bundle(args.bundle)
    ngram = bundle.load_ngram()
    if ngram is None:
        p.error(f"{bundle.path} carries no n-gram model")
    name = bundle.card["corpus"]["name"]
    shared = [p for p in DEFAULT_CORPORA if Path(p).name.startswith(name) and Path(p).exists()]
    corpus = load_corpus(args.corpus or (shared[0] if shared else name))
    val_ids, _ = bundle.vocab.encode(split(corpus.text)[1])
    penalty = bundle.vocab.unknown_penalty(corpus.text)
    mixed = StepModel(bundle, providers="cpu")
    network = StepModel(
        dataclasses.replace(bundle, card={k: v for k, v in bundle.card.items() if k != "ngram"}),
        providers="cpu",
    )

    quality = {
        "network": onnx_loss(network, val_ids, penalty),
        "ngram": ngram_loss(ngram, val_ids, bundle.vocab.unk_id, penalty),
        "mixture": {str(w): onnx_loss(network, val_ids, penalty, (ngram, w)) for w in WEIGHTS},
        "shipped_weight": bundle.ngram_weight,
    }
    print(f"quality: {quality}", flush=True)
    copied = {"network": copying(network, corpus.text), "mixed": copying(mixed, corpus.text)}
    print(f"copying: {copied}", flush=True)
    plain, with_ngram = engine_runs([network, mixed], args.length, (1, 64))
    report = {
        "bundle": str(
            bundle.path.relative_to(ROOT) if bundle.path.is_relative_to(ROOT) else bundle.path
        ),
        "order": ngram.order,
        "command": shlex.join(["python", "-m", "benchmarks.ngram_mix", *argv]),
        "quality": quality,
        "copying": copied,
        "speed": {"network": plain, "mixed": with_ngram},
    }
    write_results(args.out, "ngram_mix", report, markdown(report))
    print(markdown(report))
    return 0


def markdown(r: dict[str, Any]) -> str:
    q = r["quality"]
    lines = [
        f"# Mixing an n-gram model into the network: {r['bundle']}",
        "",
        f"Reproduce with `{r['command']}`. Validation: the last 10% of the corpus, full context,",
        "unknown characters charged as in the card.",
        "",
        "| model | validation nats/char | bits/char |",
        "|---|---:|---:|",
        f"| network alone | {q['network']:.4f} | {q['network'] / math.log(2):.3f} |",
        f"| {r['order']}-gram alone | {q['ngram']:.4f} | {q['ngram'] / math.log(2):.3f} |",
    ]
    for w, loss in q["mixture"].items():
        mark = " (shipped)" if float(w) == q["shipped_weight"] else ""
        lines.append(
            f"| mixture, network weight {w}{mark} | {loss:.4f} | {loss / math.log(2):.3f} |"
        )
    lines += [
        "",
        "The shipped weight was fixed before this sweep; the sweep does not choose it.",
        "",
        f"## Copying ({r['copying']['network']['samples']} samples of 300 characters, "
        "temperature 0.8, seeds 0 on)",
        "",
        "The longest stretch of each sample found verbatim in the corpus.",
        "",
        "| model | median | max |",
        "|---|---:|---:|",
        *(f"| {name} | {c['median']} | {c['max']} |" for name, c in r["copying"].items()),
        "",
        "## Serving cost (400-character requests, median of 3 alternating runs)",
        "",
        "| concurrency | network chars/s | mixed chars/s | mixed / network "
        "| p99 network s | p99 mixed s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(r["speed"]["network"], r["speed"]["mixed"], strict=True):
        lines.append(
            f"| {a['concurrency']} | {a['chars_per_second']:,.0f} | {b['chars_per_second']:,.0f} "
            f"| {b['chars_per_second'] / a['chars_per_second']:.2f} | {a['p99']:.3f} "
            f"| {b['p99']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
