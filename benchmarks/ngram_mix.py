"""What mixing a bundle's n-gram model into its network buys and costs.

`python -m benchmarks.ngram_mix [--bundle models/jaychou/v2] [--corpus PATH_OR_NAME]`:
- quality: validation loss (the bundle's protocol: the last 10% of its corpus, full context) of
  the network alone, the n-gram alone, and the mixture at a range of weights. The bundle ships
  the weight fixed before this sweep (DEFAULT_WEIGHT); the sweep shows how much that choice
  leaves on the table, it does not pick the weight;
- samples (40 of 300 characters, temperature 0.8), network alone against the mixture:
  copying, the longest stretch of each found verbatim in the corpus (an n-gram model remembers
  phrases); and form, the lengths of the clauses between punctuation, spaces and line breaks
  against the validation tail's (total variation distance: 0 the same shape, 1 none in common).
  A lower loss does not guarantee the form: an n-gram model knows nothing of line lengths;
- cost: the engine's chars/s and latency on 400-character requests at concurrency 1 and 64,
  the same network with and without the n-gram, taking turns three times (median run).
Results go to benchmarks/results/ngram_mix.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kneser_ney import DEFAULT_CORPORA
from benchmarks.serve import engine_runs
from benchmarks.stats import write_results
from bot.corpus import load_corpus, split
from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Request, Scheduler
from bot.engine.sessions import StepModel
from export.onnx_export import ngram_loss, onnx_loss

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SAMPLES = 40
SEPARATORS = re.compile(r"[\s，。？！、；：,.?!;:]+")


def longest_copied(text: str, corpus: str) -> int:
    """The length of the longest stretch of `text` that occurs verbatim in `corpus`."""
    best = 0
    for i in range(len(text)):
        while i + best < len(text) and text[i : i + best + 1] in corpus:
            best += 1
    return best


def clause_lengths(text: str) -> list[int]:
    """Lengths of the clauses between separators, without a text's first and last (cut off)."""
    return [len(c) for c in SEPARATORS.split(text)[1:-1] if c]


def form_distance(lengths: list[int], reference: list[int]) -> float:
    """Total variation distance between two clause-length distributions (16+ pooled)."""
    a = np.bincount(np.minimum(lengths, 16), minlength=17) / max(len(lengths), 1)
    b = np.bincount(np.minimum(reference, 16), minlength=17) / max(len(reference), 1)
    return float(np.abs(a - b).sum() / 2)


def samples(model: StepModel, corpus: str, reference: list[int]) -> dict[str, Any]:
    """Copying and form of SAMPLES texts from `model`."""

    async def texts() -> list[str]:
        scheduler = Scheduler(model)
        try:
            return [
                (await scheduler.generate(Request(length=300, temperature=0.8, seed=s))).text
                for s in range(SAMPLES)
            ]
        finally:
            await scheduler.close()

    written = asyncio.run(texts())
    runs = sorted(longest_copied(t, corpus) for t in written)
    lengths = [n for t in written for n in clause_lengths(t)]
    return {
        "samples": SAMPLES,
        "copied_median": runs[len(runs) // 2],
        "copied_max": runs[-1],
        "clause_mean": float(np.mean(lengths)),
        "form_distance": form_distance(lengths, reference),
    }


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
    val_text = split(corpus.text)[1]
    reference = clause_lengths(val_text)
    written = {
        "validation tail": {"clause_mean": float(np.mean(reference)), "form_distance": 0.0},
        "network": samples(network, corpus.text, reference),
        "mixed": samples(mixed, corpus.text, reference),
    }
    print(f"samples: {written}", flush=True)
    plain, with_ngram = engine_runs([network, mixed], args.length, (1, 64))
    report = {
        "bundle": str(
            bundle.path.relative_to(ROOT) if bundle.path.is_relative_to(ROOT) else bundle.path
        ),
        "order": ngram.order,
        "command": shlex.join(["python", "-m", "benchmarks.ngram_mix", *argv]),
        "quality": quality,
        "samples": written,
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
        f"## Samples ({SAMPLES} of 300 characters, temperature 0.8, seeds 0 on)",
        "",
        "Copying: the longest stretch of each sample found verbatim in the corpus. Form: the",
        "lengths of clauses between punctuation, spaces and line breaks, against the validation",
        "tail's (total variation distance; 0 is the same shape).",
        "",
        "| | copied, median | copied, max | mean clause length | form distance |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {c.get('copied_median', '-')} | {c.get('copied_max', '-')} "
            f"| {c['clause_mean']:.2f} | {c['form_distance']:.3f} |"
            for name, c in r["samples"].items()
        ),
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
