"""Interpolated Kneser-Ney character n-gram model over vocabulary ids (numpy only).

Two users: `benchmarks.kneser_ney` scores it as the baseline every style must beat, and a bundle
may carry one (`ngram.npz`) that the engine mixes with the network's distribution at every step.
On a small corpus the mixture is the better model: the n-gram remembers the rare character
pairs and phrases that the network's low-rank softmax cannot learn from a few examples, and the
network supplies the long context the n-gram lacks (a kNN-LM-style interpolation with an n-gram
as the memory).

Serving keeps, per row, the id of its context at every order (`state`); one search of the sorted
keys advances all rows and orders by a character, and `distribution` expands Chen & Goodman's
recursion into a dense order-1 term plus each order's few seen continuations, scattered in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ORDER = 6
# The network's share when a bundle mixes in an n-gram model: an even mixture, fixed in advance
# rather than tuned on the validation tail (which would make the reported loss optimistic).
DEFAULT_WEIGHT = 0.5
FORMAT = 1  # of the saved file
BYTES_PER_NGRAM = 44  # in memory, at most

# KenLM's --discount_fallback values, for orders whose count-of-counts cannot give valid ones
# (tiny corpora, or unigram continuation counts over a 65-character alphabet).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


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
class Order:
    """What one order k of a model reports: its n-gram count and its discounts."""

    ngrams: int
    discounts: tuple[float, ...]
    fallback: bool


class NGram:
    """Interpolated (modified) Kneser-Ney over ids 0..size-1, bottoming out in a uniform
    distribution. The highest order uses raw counts and the lower ones continuation counts (how
    many distinct characters precede an n-gram), as in Chen & Goodman's interpolated modified
    Kneser-Ney.

    Every order's tables are laid end to end, so one vectorised operation covers all orders and
    nothing is held twice: the k-grams' keys (order base + context id * size + char, sorted) and
    discounted counts, and per context (the (k-1)-gram it extends; one empty context for order
    1) where its k-grams start and its ratios backoff/total and 1/total. A last context stands
    for "never seen": no k-grams, ratio 1. At most 44 bytes per n-gram in memory.
    """

    def __init__(
        self,
        size: int,
        keys: list[np.ndarray],
        counts: list[np.ndarray],
        discounts: list[tuple[float, ...]],
        fallback: list[bool] | None = None,
    ) -> None:
        """Per order: its k-grams' keys (context id * size + char, sorted), their counts (raw
        for the highest order, continuation counts below) and its discounts (D1, D2, D3+)."""
        if not keys:
            raise ValueError("an n-gram model needs at least one order")
        self.size = size
        self.order = len(keys)
        fallback = fallback or [False] * self.order
        self.levels = [
            Order(len(k), tuple(float(d) for d in ds), bool(f))
            for k, ds, f in zip(keys, discounts, fallback, strict=True)
        ]
        ngrams = [len(k) for k in keys]
        contexts = [1, *ngrams[:-1]]  # order k's contexts are order k-1's k-grams
        self._level_start = np.cumsum([0, *ngrams[:-1]])
        self._key_base = np.cumsum([0, *(c * size for c in contexts[:-1])])
        self._context_base = np.cumsum([0, *contexts[:-1]])
        self._keys = np.concatenate([b + k for b, k in zip(self._key_base, keys, strict=True)])
        self._counts = np.concatenate(counts).astype(np.uint32)  # for `save`
        removed = [
            np.array((0.0, *ds))[np.minimum(c, 3)] for c, ds in zip(counts, discounts, strict=True)
        ]
        self._discounted = np.concatenate(
            [c - r for c, r in zip(counts, removed, strict=True)]
        ).astype(np.float64)
        lo, ratio, inv_total = [], [], []
        for k in range(self.order):
            context = keys[k] // size
            lengths = np.bincount(context, minlength=contexts[k])
            lo.append(self._level_start[k] + np.cumsum(lengths) - lengths)
            total = np.bincount(context, weights=counts[k], minlength=contexts[k])
            backoff = np.bincount(context, weights=removed[k], minlength=contexts[k])
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            ratio.append(np.where(seen, backoff / safe, 1.0))
            inv_total.append(np.where(seen, 1.0 / safe, 0.0))
        # Context g's k-grams are positions lo[g] to lo[g + 1] - 1 (contexts and k-grams are
        # laid out in the same order); the "never seen" context at the end has none.
        self._lo = np.concatenate([*lo, [len(self._keys)] * 2]).astype(np.int64)
        self._ratio = np.concatenate([*ratio, [1.0]])
        self._inv_total = np.concatenate([*inv_total, [0.0]])
        self._unseen = len(self._ratio) - 1
        unigram = np.zeros(size)
        unigram[keys[0]] = self._discounted[: ngrams[0]]
        self._base = unigram * self._inv_total[0] + self._ratio[0] / size
        self._base32 = self._base.astype(np.float32)  # for mixing with float32 logits

    @classmethod
    def fit(
        cls, ids: np.ndarray, size: int, order: int = DEFAULT_ORDER, modified: bool = True
    ) -> NGram:
        """Count the n-grams of `ids` (all < size) up to `order`."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            raise ValueError("an n-gram model needs some text to count")
        if ids.min() < 0 or ids.max() >= size:
            raise ValueError(f"ids must lie in [0, {size})")
        # Ids are built hierarchically: a k-gram is (id of its first k-1 chars, last char), which
        # keeps keys well inside int64 however large the order or vocabulary.
        n = len(ids)
        keys: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        first_end: list[np.ndarray] = []  # end position of each k-gram's first occurrence
        ending_at = [np.zeros(n, dtype=np.int64)]  # [k][i]: id of the k-gram ending at i, or -1
        for k in range(1, order + 1):
            ends = np.arange(k - 1, n)
            prefix = ending_at[k - 1][ends - 1] if k > 1 else np.zeros(len(ends), dtype=np.int64)
            level_keys, first, inverse, counts = np.unique(
                prefix * size + ids[ends],
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

        counts_by_order, discounts, fallback = [], [], []
        for k in range(1, order + 1):
            if k == order:
                counts = raw[k - 1]
            else:
                # The continuation count of a k-gram is the number of distinct (k+1)-grams that
                # end with it; any occurrence of a (k+1)-gram tells us which k-gram that is.
                suffix = ending_at[k][first_end[k]]
                counts = np.bincount(suffix, minlength=len(keys[k - 1]))
            found, fell_back = estimate_discounts(counts, modified)
            counts_by_order.append(counts)
            discounts.append(found)
            fallback.append(fell_back)
        return cls(size, keys, counts_by_order, discounts, fallback)

    # -- scoring text ------------------------------------------------------------------------

    def _lookup(self, level: np.ndarray, context: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """The id within its order of each (order, context id, char) k-gram, or -1 if training
        never saw it (or the context is -1); arguments broadcast together."""
        query = np.where(context >= 0, self._key_base[level] + context * self.size + chars, -1)
        found = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)
        hit = (self._keys[found] == query) & (context >= 0)
        return np.where(hit, found - self._level_start[level], -1)

    def _entry(self, level: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The laid-out index of each (order, context id), the unseen entry for -1."""
        return np.where(context >= 0, self._context_base[level] + context, self._unseen)

    def probabilities(self, contexts: list[np.ndarray], chars: np.ndarray) -> np.ndarray:
        """P(char | context) where contexts[k-1] holds each char's order-k context id (or -1)."""
        prob = np.full(len(chars), 1.0 / self.size)
        for k, context in enumerate(contexts):
            gram = self._lookup(np.int64(k), context, chars)
            entry = self._entry(np.int64(k), context)
            discounted = np.where(
                gram >= 0, self._discounted[self._level_start[k] + np.maximum(gram, 0)], 0.0
            )
            # A context never seen at this order passes the lower order's estimate through.
            prob = discounted * self._inv_total[entry] + self._ratio[entry] * prob
        return prob

    def context_ids(self, ids: np.ndarray) -> list[np.ndarray]:
        """Per order k, the id of the (k-1) characters before each position (-1 if unseen)."""
        ids = np.asarray(ids, dtype=np.int64)
        contexts = [np.zeros(len(ids), dtype=np.int64)]
        for k in range(self.order - 1):
            gram = self._lookup(np.int64(k), contexts[-1], ids)
            # The k-gram ending at i-1 is the order-(k+1) context of position i.
            contexts.append(np.concatenate(([-1], gram))[:-1])
        return contexts

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """Natural log P of each id given the up to order-1 ids before it."""
        return np.log(self.probabilities(self.context_ids(ids), np.asarray(ids, dtype=np.int64)))

    # -- serving -----------------------------------------------------------------------------

    def start(self, rows: int) -> np.ndarray:
        """The state of rows that have read nothing: [rows, order] context ids per order."""
        state = np.full((rows, self.order), -1, dtype=np.int64)
        state[:, 0] = 0
        return state

    def advance(self, state: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """The state after each row reads its char (a new array)."""
        new = np.empty_like(state)
        new[:, 0] = 0
        if self.order == 1:
            return new
        # Order k+1's new context is the k-gram (order k's context + char): all orders at once.
        levels = np.arange(self.order - 1)
        new[:, 1:] = self._lookup(levels, state[:, :-1], np.asarray(chars, np.int64)[:, None])
        return new

    def state_after(self, ids: list[int]) -> np.ndarray:
        """The state [order] of a row that has read `ids` (only the last order-1 matter)."""
        state = self.start(1)
        for i in ids[len(ids) - (self.order - 1) :] if self.order > 1 else ():
            state = self.advance(state, np.array([i]))
        return state[0]

    def _terms(
        self, state: np.ndarray, scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """scale * P(next id | each row's context), unrolled.

        The recursion p_k = (d_k + b_k p_(k-1)) / t_k is a sum over orders of each order's
        discounted counts d_k / t_k, weighted by the product of b_j / t_j over the orders above
        it, plus the order-1 estimate under the product of them all; an order whose context was
        never seen passes through (ratio 1, no counts). Returns each row's weight on the order-1
        estimate, and the (row * size + id, value) of every seen continuation, order by order,
        with where each order's run ends (within one order a row's ids are distinct).
        """
        rows = len(state)
        # Per row and order above the first: its context's entry in the laid-out tables.
        entry = self._entry(np.arange(1, self.order), state[:, 1:])
        ratio = self._ratio[entry]
        above = np.ones_like(ratio)  # the product of the ratios of the orders above each
        if self.order > 2:
            above[:, :-1] = np.cumprod(ratio[:, :0:-1], axis=1)[:, ::-1]
        bottom = scale * (above[:, 0] * ratio[:, 0] if self.order > 1 else np.ones(rows))
        # Order by order (then row by row): the k-grams of each, positions lo to lo + length - 1.
        weight = (scale * above * self._inv_total[entry]).T.ravel()
        lo = self._lo[entry.T.ravel()]
        lengths = self._lo[entry.T.ravel() + 1] - lo
        positions = np.repeat(lo - np.cumsum(lengths) + lengths, lengths)
        positions += np.arange(len(positions))
        row = np.repeat(np.tile(np.arange(rows), self.order - 1), lengths)
        index = row * self.size + self._keys[positions] % self.size
        values = self._discounted[positions] * np.repeat(weight, lengths)
        ends = np.cumsum(lengths.reshape(self.order - 1, rows).sum(axis=1))
        return bottom, index, values, ends

    def distribution(self, state: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """scale * P(next id | each row's context), [rows, size] float64."""
        rows = len(state)
        bottom, index, values, _ = self._terms(state, scale)
        out = np.bincount(index, weights=values, minlength=rows * self.size)
        out = out.reshape(rows, self.size).astype(np.float64, copy=False)  # no entries: ints
        out += bottom[:, None] * self._base
        return out

    def mixed_logits(self, logits: np.ndarray, state: np.ndarray, weight: float) -> np.ndarray:
        """log(weight * softmax(logits) + (1 - weight) * P(next | state)), row by row, as
        logits for the sampler (which applies temperature, top-k and top-p to the mixture).

        In the logits' own precision (float32 from onnxruntime: half the memory traffic of
        float64, and ample for sampling), with each row's sum taken in float64."""
        z = logits - logits.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z *= (weight / z.sum(axis=1, dtype=np.float64, keepdims=True)).astype(z.dtype)
        bottom, index, values, ends = self._terms(state, 1.0 - weight)
        base = self._base32 if z.dtype == np.float32 else self._base
        z += bottom.astype(z.dtype)[:, None] * base
        flat = z.reshape(-1)
        start = 0
        for end in ends.tolist():  # distinct indices within an order: a plain add is exact
            flat[index[start:end]] += values[start:end]
            start = end
        return np.log(z, out=z)

    # -- storage -----------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the counts (compressed npz, no pickles): per order, each context's number of
        k-grams, their chars and counts, and the discounts; everything else is derived."""
        char_type = np.uint16 if self.size <= 1 << 16 else np.uint32
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT),
            "size": np.array(self.size),
            "order": np.array(self.order),
        }
        for k, level in enumerate(self.levels):
            start = self._level_start[k]
            keys = self._keys[start : start + level.ngrams] - self._key_base[k]
            contexts = 1 if k == 0 else self.levels[k - 1].ngrams
            arrays[f"lengths{k}"] = np.bincount(keys // self.size, minlength=contexts).astype(
                np.uint32
            )
            arrays[f"chars{k}"] = (keys % self.size).astype(char_type)
            arrays[f"counts{k}"] = self._counts[start : start + level.ngrams]
            arrays[f"discounts{k}"] = np.array(level.discounts)
            arrays[f"fallback{k}"] = np.array(level.fallback)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> NGram:
        """Read a saved model; ValueError (saying what is wrong) if the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    raise ValueError(f"format {int(data['format'])}, this code reads {FORMAT}")
                size, order = int(data["size"]), int(data["order"])
                if size < 1 or order < 1:
                    raise ValueError("size and order must be positive")
                keys, counts, discounts, fallback = [], [], [], []
                contexts = 1
                for k in range(order):
                    lengths = data[f"lengths{k}"].astype(np.int64)
                    chars = data[f"chars{k}"].astype(np.int64)
                    count = data[f"counts{k}"].astype(np.int64)
                    found = tuple(float(d) for d in data[f"discounts{k}"])
                    if (
                        len(lengths) != contexts
                        or lengths.sum() != len(chars)
                        or len(count) != len(chars)
                    ):
                        raise ValueError(f"order {k + 1}'s tables do not fit together")
                    key = np.repeat(np.arange(contexts), lengths) * size + chars
                    if len(chars) and (chars.max() >= size or (np.diff(key) <= 0).any()):
                        raise ValueError(f"order {k + 1}'s chars are outside or out of order")
                    if (count < 0).any() or len(found) != 3 or not all(0 < d <= 3 for d in found):
                        raise ValueError(f"order {k + 1}'s counts or discounts are invalid")
                    keys.append(key)
                    counts.append(count)
                    discounts.append(found)
                    fallback.append(bool(data[f"fallback{k}"]))
                    contexts = len(key)
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise ValueError(f"not an n-gram model ({err})") from err
        return cls(size, keys, counts, discounts, fallback)
