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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.corpus import fetch_known, load_corpus, read_text_file, split

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = [
    str(PROJECT_ROOT.parent / "shared" / "corpora" / name)
    for name in ("shakespeare.txt", "jaychou_lyrics.txt", "tang_poems.txt")
]
DEFAULT_OUT = PROJECT_ROOT / "benchmarks" / "results"
DEFAULT_ORDER = 6

# KenLM's --discount_fallback values, for orders whose count-of-counts cannot give valid ones
# (tiny corpora, or unigram continuation counts over a 65-character alphabet).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def code_points(text: str) -> np.ndarray:
    """The Unicode code points of `text`, as an int64 array."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def estimate_discounts(counts: np.ndarray, modified: bool = True) -> tuple[tuple[float, ...], bool]:
    """Discounts (D1, D2, D3+) from count-of-counts (Chen & Goodman 1998); True if they fell back.

    Plain Kneser-Ney uses one discount for every count, returned three times.
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    if n1 == 0 or (modified and min(n2, n3, n4) == 0):
        return FALLBACK_DISCOUNTS, True
    y = n1 / (n1 + 2 * n2)
    discounts = (
        (y, y, y)
        if not modified
        else (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    )
    # A discount outside (0, r] would either remove no mass for unseen events or make a count
    # negative, breaking normalisation.
    if not all(0 < d <= r for r, d in enumerate(discounts, start=1)):
        return FALLBACK_DISCOUNTS, True
    return discounts, False


@dataclass(frozen=True)
class _Level:
    """One order k of the model: the k-grams seen in training, keyed by (context id, char id)."""

    keys: np.ndarray  # sorted context_id * vocab_size + char_id; a k-gram's id is its index here
    discounted: np.ndarray  # per k-gram: its count minus its discount
    total: np.ndarray  # per context ((k-1)-gram id): the sum of its k-grams' counts
    backoff: np.ndarray  # per context: the discounted mass given to order k-1
    discounts: tuple[float, ...]
    fallback: bool


class KneserNey:
    """Interpolated (modified) Kneser-Ney over characters, bottoming out in a uniform distribution.

    The highest order uses raw counts and the lower ones continuation counts (how many distinct
    characters precede an n-gram), as in Chen & Goodman's interpolated modified Kneser-Ney.
    """

    def __init__(self, train: str, vocab: str, order: int = DEFAULT_ORDER, modified: bool = True):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = order
        self.modified = modified
        self.vocab = np.unique(code_points(vocab))
        self.size = len(self.vocab)
        self.levels = self._fit(self.encode(train))

    def encode(self, text: str) -> np.ndarray:
        """Character ids in the vocabulary; a character outside it is an error."""
        points = code_points(text)
        ids = np.searchsorted(self.vocab, points)
        outside = (ids == self.size) | (self.vocab[np.minimum(ids, self.size - 1)] != points)
        if outside.any():
            raise ValueError(f"character {chr(points[outside][0])!r} is not in the vocabulary")
        return ids

    def _fit(self, ids: np.ndarray) -> list[_Level]:
        # Ids are built hierarchically: a k-gram is (id of its first k-1 chars, last char), which
        # keeps keys well inside int64 however large the order or vocabulary.
        n = len(ids)
        keys: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        first_end: list[np.ndarray] = []  # end position of each k-gram's first occurrence
        ending_at = [np.zeros(n, dtype=np.int64)]  # [k][i]: id of the k-gram ending at i, or -1
        for k in range(1, self.order + 1):
            ends = np.arange(k - 1, n)
            prefix = ending_at[k - 1][ends - 1] if k > 1 else np.zeros(len(ends), dtype=np.int64)
            level_keys, first, inverse, counts = np.unique(
                prefix * self.size + ids[ends],
                return_index=True,
                return_inverse=True,
                return_counts=True,
            )
            ids_k = np.full(n, -1, dtype=np.int64)
            ids_k[ends] = inverse
            keys.append(level_keys)
            raw.append(counts)
            first_end.append(ends[first])
            ending_at.append(ids_k)

        levels = []
        for k in range(1, self.order + 1):
            if k == self.order:
                counts = raw[k - 1]
            else:
                # The continuation count of a k-gram is the number of distinct (k+1)-grams that
                # end with it; any occurrence of a (k+1)-gram tells us which k-gram that is.
                suffix = ending_at[k][first_end[k]]
                counts = np.bincount(suffix, minlength=len(keys[k - 1]))
            levels.append(
                self._level(keys[k - 1], counts, contexts=len(keys[k - 2]) if k > 1 else 1)
            )
        return levels

    def _level(self, keys: np.ndarray, counts: np.ndarray, contexts: int) -> _Level:
        discounts, fallback = estimate_discounts(counts, self.modified)
        by_count = np.array((0.0, *discounts))[np.minimum(counts, 3)]
        context = keys // self.size
        return _Level(
            keys=keys,
            discounted=counts - by_count,
            total=np.bincount(context, weights=counts, minlength=contexts).astype(np.float64),
            backoff=np.bincount(context, weights=by_count, minlength=contexts),
            discounts=discounts,
            fallback=fallback,
        )

    def _lookup(self, level: _Level, context: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """The k-gram id of each (context id, char), or -1 if it was not seen in training."""
        query = np.where(context >= 0, context * self.size + chars, -1)
        if len(level.keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        found = np.minimum(np.searchsorted(level.keys, query), len(level.keys) - 1)
        return np.where(level.keys[found] == query, found, -1)

    def _probabilities(self, contexts: list[np.ndarray], chars: np.ndarray) -> np.ndarray:
        """P(char | context) where contexts[k-1] holds each char's order-k context id (or -1)."""
        prob = np.full(len(chars), 1.0 / self.size)
        for level, context in zip(self.levels, contexts, strict=True):
            gram = self._lookup(level, context, chars)
            seen = context >= 0
            total = np.where(seen, level.total[np.maximum(context, 0)], 0.0)
            backoff = np.where(seen, level.backoff[np.maximum(context, 0)], 0.0)
            discounted = np.where(gram >= 0, level.discounted[np.maximum(gram, 0)], 0.0)
            # A context never seen at this order passes the lower order's estimate through.
            prob = np.where(
                total > 0, (discounted + backoff * prob) / np.where(total > 0, total, 1.0), prob
            )
        return prob

    def _context_ids(self, ids: np.ndarray) -> list[np.ndarray]:
        """Per order k, the id of the (k-1) characters before each position (-1 if unseen)."""
        contexts = [np.zeros(len(ids), dtype=np.int64)]
        for level in self.levels[:-1]:
            gram = self._lookup(level, contexts[-1], ids)
            # The k-gram ending at i-1 is the order-(k+1) context of position i.
            contexts.append(np.concatenate(([-1], gram))[:-1])
        return contexts

    def log_probs(self, text: str, start: int = 0) -> np.ndarray:
        """Natural log P of each char of text[start:] given up to order-1 chars before it."""
        window = max(start - (self.order - 1), 0)
        ids = self.encode(text[window:])
        probs = self._probabilities(self._context_ids(ids), ids)
        return np.log(probs[start - window :])

    def cross_entropy(self, text: str, start: int = 0) -> float:
        """Mean loss over text[start:] in nats/char, contexts reaching back before `start`."""
        return float(-self.log_probs(text, start).mean())

    def distribution(self, context: str) -> np.ndarray:
        """P(next char | context) over the whole vocabulary, in `vocab` order."""
        tail = context[len(context) - (self.order - 1) :] if self.order > 1 else ""
        # A position's context ids do not depend on its own char, so any placeholder will do.
        ids = np.append(self.encode(tail), 0)
        contexts = [np.repeat(c[-1], self.size) for c in self._context_ids(ids)]
        return self._probabilities(contexts, np.arange(self.size))


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
        "first 90% of each corpus and scored on the last 10% (`training.corpus.split`); each",
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
        help="corpus paths or known names (default: the three in ../shared/corpora)",
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
