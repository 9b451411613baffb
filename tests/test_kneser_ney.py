"""The Kneser-Ney baseline: normalisation, agreement with a textbook implementation, the CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.kneser_ney import KneserNey, main
from bot.engine.ngram import FALLBACK_DISCOUNTS, estimate_discounts

TRAIN = "the cat sat on the mat. the rat ate the hat; a cat, a bat.\n" * 3 + "that cat? the mat!\n"
VOCAB = TRAIN + "zq"  # z and q never occur in training


def reference_prob(
    train: str, vocab: str, order: int, modified: bool, context: str, char: str
) -> float:
    """Chen & Goodman's recursion written out with string counters, one probability at a time."""
    raw = [Counter(train[i : i + k] for i in range(len(train) - k + 1)) for k in range(order + 1)]
    counts = []
    for k in range(1, order + 1):
        if k == order:
            counts.append(raw[k])
        else:
            counts.append(Counter(gram[1:] for gram in raw[k + 1]))

    def prob(k: int, history: str) -> float:
        if k == 0:
            return 1.0 / len(set(vocab))
        if len(history) < k - 1:
            return prob(k - 1, history)
        history = history[len(history) - (k - 1) :]
        lower = prob(k - 1, history[1:])
        level = {g: c for g, c in counts[k - 1].items() if g[:-1] == history and c > 0}
        total = sum(level.values())
        if total == 0:
            return lower
        discounts, _ = estimate_discounts(np.array(list(counts[k - 1].values())), modified)
        d = {c: discounts[min(c, 3) - 1] for c in level.values()}
        backoff = sum(d[c] for c in level.values())
        c = level.get(history + char, 0)
        return ((c - d[c] if c else 0.0) + backoff * lower) / total

    return prob(order, context)


def test_discounts_from_count_of_counts():
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4, 7])  # n1=4, n2=2, n3=1, n4=1, so Y=0.5
    assert estimate_discounts(counts) == ((0.5, 1.25, 1.0), False)
    assert estimate_discounts(counts, modified=False) == ((0.5, 0.5, 0.5), False)
    assert estimate_discounts(np.array([1, 2, 4])) == (FALLBACK_DISCOUNTS, True)  # no n3


@pytest.mark.parametrize("modified", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distribution_sums_to_one_and_matches_reference(order: int, modified: bool):
    model = KneserNey(TRAIN, VOCAB, order=order, modified=modified)
    vocab = sorted(set(VOCAB))
    for context in ["", "t", "the c", "a bat.\nthe", "zq z", " cat"]:
        dist = model.distribution(context)
        assert dist.shape == (len(vocab),)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert (dist > 0).all()
        for char in ("t", "a", " ", "z"):
            expected = reference_prob(TRAIN, VOCAB, order, modified, context, char)
            assert dist[vocab.index(char)] == pytest.approx(expected, rel=1e-12)


def test_log_probs_match_distribution_with_context_across_start():
    model = KneserNey(TRAIN, VOCAB, order=4)
    text = TRAIN + "the zat"
    start = len(TRAIN)
    vocab = sorted(set(VOCAB))
    log_probs = model.log_probs(text, start)
    assert len(log_probs) == len(text) - start
    for i, lp in enumerate(log_probs):
        position = start + i
        dist = model.distribution(text[:position])
        assert lp == pytest.approx(math.log(dist[vocab.index(text[position])]), rel=1e-12)


def test_higher_order_beats_unigram_on_repetitive_text():
    text = "abcabdabcabd " * 40
    start = len(text) * 9 // 10
    losses = [KneserNey(text[:start], text, order=n).cross_entropy(text, start) for n in (1, 3, 6)]
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < 0.2


def test_unseen_character_gets_finite_loss():
    text = "abababab" * 20 + "c"
    model = KneserNey(text[:-1], vocab=text, order=6)
    loss = -model.log_probs(text, start=len(text) - 1)[0]
    assert math.isfinite(loss) and loss > math.log(3)


def test_character_outside_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        KneserNey("abc", vocab="abc", order=2).cross_entropy("abd")


def test_cli_writes_json_and_markdown_with_raw_variant(tmp_path: Path):
    corpus = tmp_path / "tiny.txt"
    # Decomposed accents make the cleaned (NFC) text differ from the file, so a raw row appears.
    corpus.write_text("Le cafe\u0301 est fini. " * 30, encoding="utf-8")
    main(["--corpus", str(corpus), "--orders", "1,3", "--order", "2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "kneser_ney.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in report["corpora"]] == ["tiny", "tiny (raw)"]
    assert list(report["corpora"][0]["orders"]) == ["1", "2", "3"]
    first = report["corpora"][0]["orders"]["2"]
    assert first["bits_per_char"] == pytest.approx(first["nats_per_char"] / math.log(2), abs=1e-3)
    assert report["command"].startswith("python -m benchmarks.kneser_ney --corpus")
    markdown = (tmp_path / "kneser_ney.md").read_text(encoding="utf-8")
    assert report["command"] in markdown and "| tiny (raw) |" in markdown
