"""A word trigram model of an English style's training split, to score candidate lines.

The character network knows spelling and local texture but often strings real words into
no sentence ("we will brought thee", "why should it were is past"). Each candidate line of an
English poem is therefore also scored by how likely its words are, one after another, in the
plays themselves: interpolated Kneser-Ney over lowercased word tokens (`english.words`), with
each level's discount from its counts of counts (Chen & Goodman's D = n1 / (n1 + 2 n2)). The
two scores are per character, so a line's choice weighs both models alike whatever its
length (`EnglishWriter.penalty`).

Stored as sorted integer keys and float32 values (`wordgram.npz` in the bundle): 1.2 MB for
Shakespeare's 166,000 trigrams (its validation split's perplexity 798; 832 with the trigrams
seen once left out, which would halve the file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bot.forms.english import words

WORDGRAM_FILE = "wordgram.npz"
UNSEEN = 1e-7  # probability of a word the training split never wrote (the lexicon has few)


def _discount(counts: np.ndarray) -> float:
    n1 = int((counts == 1).sum())
    n2 = int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5


def _find(keys: np.ndarray, values: np.ndarray, key: int) -> float:
    at = int(np.searchsorted(keys, key))
    return float(values[at]) if at < len(keys) and keys[at] == key else 0.0


class WordGram:
    """P(word | two words before), smoothed down to how many words a word follows."""

    def __init__(
        self,
        vocab: Sequence[str],
        unigram: np.ndarray,
        bigram: tuple[np.ndarray, np.ndarray, np.ndarray],
        trigram: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        self.vocab = list(vocab)
        self._id = {w: i for i, w in enumerate(self.vocab)}
        self._n = len(self.vocab)
        self._p1 = unigram
        self._k2, self._a2, self._g2 = bigram
        self._k3, self._a3, self._c3, self._g3 = trigram

    @classmethod
    def build(cls, text: str) -> WordGram:
        """Fitted on `text`'s word tokens as one stream (lines and speeches run on)."""
        tokens = words(text)
        vocab = sorted(set(tokens))
        n = len(vocab)
        index = {w: i for i, w in enumerate(vocab)}
        ids = np.array([index[t] for t in tokens], dtype=np.int64)
        if len(ids) < 3:
            raise ValueError("a word model needs at least three words of text")
        tri, c3 = np.unique((ids[:-2] * n + ids[1:-1]) * n + ids[2:], return_counts=True)
        # Middle level: how many different words come before each pair (continuation counts).
        pair = tri % (n * n)
        bi, n_bi = np.unique(pair, return_counts=True)
        # Lowest level: how many different words come before each word.
        first, n_uni = np.unique(bi % n, return_counts=True)
        p1 = np.zeros(n, np.float64)
        p1[first] = n_uni / n_uni.sum()
        p1 = 0.999 * p1 + 0.001 / n  # a word seen only at the stream's start keeps some mass
        d2 = _discount(n_bi)
        before = bi // n  # the pair's first word
        total2 = np.bincount(before, weights=n_bi, minlength=n)  # N1+(. b .)
        types2 = np.bincount(before, minlength=n)  # distinct words after b
        a2 = np.maximum(n_bi - d2, 0) / total2[before]
        g2 = np.where(total2 > 0, d2 * types2 / np.maximum(total2, 1), 1.0)
        d3 = _discount(c3)
        context = tri // n
        ctx, start = np.unique(context, return_index=True)
        counts = np.add.reduceat(c3, start)  # C(a b .)
        kinds = np.diff(np.append(start, len(tri)))  # distinct words after (a, b)
        where = np.searchsorted(ctx, context)
        a3 = np.maximum(c3 - d3, 0) / counts[where]
        g3 = d3 * kinds / counts
        return cls(
            vocab,
            p1.astype(np.float32),
            (bi, a2.astype(np.float32), g2.astype(np.float32)),
            (tri, a3.astype(np.float32), ctx, g3.astype(np.float32)),
        )

    def probability(self, before: Sequence[str], word: str) -> float:
        """P(word | the last two words of `before`), interpolated down to the unigram."""
        w = self._id.get(word)
        if w is None:
            return UNSEEN
        n = self._n
        context = [self._id.get(x) for x in before[-2:]]
        p = float(self._p1[w])
        if not context or context[-1] is None:
            return p
        b = context[-1]
        p = _find(self._k2, self._a2, b * n + w) + float(self._g2[b]) * p
        if len(context) < 2 or context[0] is None:
            return p
        pair = context[0] * n + b
        at = int(np.searchsorted(self._c3, pair))
        if at == len(self._c3) or self._c3[at] != pair:
            return p
        return _find(self._k3, self._a3, pair * n + w) + float(self._g3[at]) * p

    def log_prob(self, before: Sequence[str], line: Iterable[str]) -> float:
        """The natural log-probability of the words of `line`, one after another, after the
        words `before` (only the last two matter)."""
        seen = list(before[-2:])
        total = 0.0
        for word in line:
            total += math.log(max(self.probability(seen, word), UNSEEN))
            seen = [*seen[-1:], word]
        return total

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(
            out,
            vocab=np.frombuffer("\n".join(self.vocab).encode("utf-8"), dtype=np.uint8),
            p1=self._p1,
            k2=self._k2,
            a2=self._a2,
            g2=self._g2,
            k3=self._k3,
            a3=self._a3,
            c3=self._c3,
            g3=self._g3,
        )
        return out.getvalue()

    @classmethod
    def load(cls, path: Path) -> WordGram:
        with np.load(path) as f:
            vocab = bytes(f["vocab"]).decode("utf-8").split("\n")
            return cls(
                vocab,
                f["p1"],
                (f["k2"], f["a2"], f["g2"]),
                (f["k3"], f["a3"], f["c3"], f["g3"]),
            )
