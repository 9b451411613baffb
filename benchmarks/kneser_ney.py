"""Interpolated Kneser-Ney character n-gram baseline: the validation loss our LSTMs must beat.

Run `python -m benchmarks.kneser_ney --help`; results go to benchmarks/results/kneser_ney.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus import fetch_known, load_corpus, read_text_file, split
from bot.engine.ngram import DEFAULT_ORDER, FALLBACK_DISCOUNTS, NGram

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = [
    str(PROJECT_ROOT.parent / "shared" / "corpora" / name)
    for name in ("shakespeare.txt", "jaychou_lyrics.txt", "tang_poems.txt", "song_ci.txt")
]
DEFAULT_OUT = PROJECT_ROOT / "benchmarks" / "results"


def code_points(text: str) -> np.ndarray:
    """The Unicode code points of `text`, as an int64 array."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


class KneserNey:
    """`bot.ngram.NGram` over the code points of a text, the vocabulary every character of
    `vocab` (so validation characters unseen in training share the uniform floor)."""

    def __init__(self, train: str, vocab: str, order: int = DEFAULT_ORDER, modified: bool = True):
        self.vocab = np.unique(code_points(vocab))
        self.size = len(self.vocab)
        self.model = NGram.fit(self.encode(train), self.size, order, modified)
        self.order, self.levels = order, self.model.levels

    def encode(self, text: str) -> np.ndarray:
        """Character ids in the vocabulary; a character outside it is an error."""
        points = code_points(text)
        ids = np.searchsorted(self.vocab, points)
        outside = (ids == self.size) | (self.vocab[np.minimum(ids, self.size - 1)] != points)
        if outside.any():
            raise ValueError(f"character {chr(points[outside][0])!r} is not in the vocabulary")
        return ids

    def log_probs(self, text: str, start: int = 0) -> np.ndarray:
        """Natural log P of each char of text[start:] given up to order-1 chars before it."""
        window = max(start - (self.order - 1), 0)
        return self.model.log_probs(self.encode(text[window:]))[start - window :]

    def cross_entropy(self, text: str, start: int = 0) -> float:
        """Mean loss over text[start:] in nats/char, contexts reaching back before `start`."""
        return float(-self.log_probs(text, start).mean())

    def distribution(self, context: str) -> np.ndarray:
        """P(next char | context) over the whole vocabulary, in `vocab` order."""
        return self.model.distribution(self.model.state_after(list(self.encode(context)))[None])[0]


def evaluate(name: str, text: str, orders: Sequence[int], modified: bool = True) -> dict[str, Any]:
    """Train on the train split of `text` and score its validation tail at each order."""
    started = time.perf_counter()
    train, val = split(text)
    seen = set(train)
    by_order = {}
    for order in orders:
        model = KneserNey(train, vocab=text, order=order, modified=modified)
        nats = model.cross_entropy(text, start=len(train))
        by_order[str(order)] = {
            "nats_per_char": round(nats, 4),
            "bits_per_char": round(nats / math.log(2), 4),
            # One row per level, lowest order first; the last level uses raw counts.
            "discounts": [[round(d, 4) for d in level.discounts] for level in model.levels],
            "fallback_levels": [k for k, lv in enumerate(model.levels, start=1) if lv.fallback],
        }
    return {
        "name": name,
        "chars_train": len(train),
        "chars_val": len(val),
        "vocab_size": len(set(text)),
        "val_chars_unseen_in_train": sum(1 for c in val if c not in seen),
        "orders": by_order,
        "seconds": round(time.perf_counter() - started, 1),
    }


def corpus_path(path_or_name: str) -> Path:
    """The file behind a --corpus argument: the path itself, or a known corpus's cached copy."""
    path = Path(path_or_name)
    return path if path.exists() else fetch_known(path_or_name)


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown page: loss tables, corpus sizes, discounts and how to rerun."""
    corpora = report["corpora"]
    orders = [int(o) for o in corpora[0]["orders"]]
    headline = report["headline_order"]
    header = "| corpus | " + " | ".join(f"{o}-gram" for o in orders) + " |"
    rule = "|---|" + "---:|" * len(orders)
    lines = [
        "# Kneser-Ney character n-gram baseline",
        "",
        f"Interpolated {report['discounting']} Kneser-Ney over Unicode code points, trained on the",
        "first 90% of each corpus and scored on the last 10% (`bot.corpus.split`); each",
        "validation character is conditioned on the n-1 characters before it, which may lie in",
        "the training part. The lowest order interpolates with a uniform distribution over every",
        f"character of the corpus. The headline is the {headline}-gram.",
        "",
        "Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
        "## Validation loss, nats/char",
        "",
        header,
        rule,
    ]
    for kind in ("nats_per_char", "bits_per_char"):
        if kind == "bits_per_char":
            lines += ["", "## Validation loss, bits/char", "", header, rule]
        for corpus in corpora:
            cells = [f"{corpus['orders'][str(o)][kind]:.4f}" for o in orders]
            lines.append(f"| {corpus['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Corpora",
        "",
        "| corpus | train chars | val chars | vocabulary | val chars unseen in train | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for corpus in corpora:
        lines.append(
            f"| {corpus['name']} | {corpus['chars_train']:,} | {corpus['chars_val']:,} | "
            f"{corpus['vocab_size']:,} | {corpus['val_chars_unseen_in_train']:,} | "
            f"{corpus['seconds']} |"
        )
    lines += [
        "",
        f"## Discounts of the {headline}-gram model (D1, D2, D3+ per order)",
        "",
        "Orders below the highest use continuation counts. Orders marked * had count-of-counts",
        f"that gave no valid discounts and used KenLM's fallback {FALLBACK_DISCOUNTS}.",
        "",
        "| corpus | " + " | ".join(str(k) for k in range(1, headline + 1)) + " |",
        "|---|" + "---|" * headline,
    ]
    for corpus in corpora:
        model = corpus["orders"][str(headline)]
        cells = [
            ", ".join(f"{d:.3f}" for d in discounts)
            + (" *" if k in model["fallback_levels"] else "")
            for k, discounts in enumerate(model["discounts"], start=1)
        ]
        lines.append(f"| {corpus['name']} | " + " | ".join(cells) + " |")
    lines += ["", f"Total {report['seconds']} s, peak memory {report['peak_rss_mib']} MiB.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kneser_ney", description=__doc__)
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER, help="headline order")
    parser.add_argument("--orders", help="comma-separated orders to report (default: 1 to --order)")
    parser.add_argument(
        "--corpus",
        nargs="+",
        default=DEFAULT_CORPORA,
        help="corpus paths or known names (default: the four in ../shared/corpora)",
    )
    parser.add_argument("--single-discount", action="store_true", help="plain interpolated KN")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args(argv)
    orders = sorted(
        {int(o) for o in args.orders.split(",")} | {args.order}
        if args.orders
        else set(range(1, args.order + 1))
    )
    modified = not args.single_discount

    started = time.perf_counter()
    results = []
    for path_or_name in args.corpus:
        path = corpus_path(path_or_name)
        corpus = load_corpus(str(path))
        variants = [(corpus.name, corpus.text)]
        raw = read_text_file(path)
        # Reference figures are sometimes measured on the uncleaned file, so score that too.
        if raw != corpus.text:
            variants.append((f"{corpus.name} (raw)", raw))
        for name, text in variants:
            result = evaluate(name, text, orders, modified)
            results.append(result)
            losses = "  ".join(f"{o}:{v['nats_per_char']:.4f}" for o, v in result["orders"].items())
            print(f"{name:16} nats/char  {losses}  ({result['seconds']} s)", flush=True)

    report = {
        "method": "interpolated Kneser-Ney character n-gram model (Chen & Goodman 1998)",
        "discounting": "modified (D1, D2, D3+)" if modified else "single-discount",
        "headline_order": args.order,
        "command": shlex.join(["python", "-m", "benchmarks.kneser_ney", *argv]),
        "corpora": results,
        "seconds": round(time.perf_counter() - started, 1),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kneser_ney.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "kneser_ney.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {args.out / 'kneser_ney.json'} and {args.out / 'kneser_ney.md'}")


if __name__ == "__main__":
    main()
