"""Interpolated Kneser-Ney character n-gram model over vocabulary ids (numpy only).

Two users: `benchmarks.kneser_ney` scores it as the baseline every style must beat, and a bundle
may carry one (`ngram.npz`) that the engine mixes with the network's distribution at every step.
On a small corpus the mixture is the better model: the n-gram remembers the rare character
pairs and phrases that the network's low-rank softmax cannot learn from a few examples, and the
network supplies the long context the n-gram lacks (a kNN-LM-style interpolation with an n-gram
as the memory).

Serving keeps, per row, the id of the context at every order (`state`); one vectorised lookup per
order advances all rows by a character, and `distribution` expands Chen & Goodman's recursion
into a dense unigram term plus each order's few seen continuations, scattered in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ORDER = 6
# The network's share when a bundle mixes in an n-gram model: an even mixture, fixed in advance
# rather than tuned on the validation tail (which would make the reported loss optimistic).
DEFAULT_WEIGHT = 0.5

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
class Level:
    """One order k of the model: the k-grams seen in training, keyed by (context id, char id)."""

    keys: np.ndarray  # sorted context_id * size + char_id; a k-gram's id is its index here
    discounted: np.ndarray  # per k-gram: its count minus its discount
    total: np.ndarray  # per context ((k-1)-gram id): the sum of its k-grams' counts
    backoff: np.ndarray  # per context: the discounted mass given to order k-1
    discounts: tuple[float, ...]
    fallback: bool


class NGram:
    """Interpolated (modified) Kneser-Ney over ids 0..size-1, bottoming out in a uniform
    distribution. The highest order uses raw counts and the lower ones continuation counts (how
    many distinct characters precede an n-gram), as in Chen & Goodman's interpolated modified
    Kneser-Ney."""

    def __init__(self, levels: list[Level], size: int) -> None:
        if not levels:
            raise ValueError("an n-gram model needs at least one order")
        self.levels = levels
        self.size = size
        self.order = len(levels)
        # For serving, every order's tables laid end to end, so that one vectorised operation
        # covers all orders: `advance` searches one sorted key array, `distribution` gathers
        # per-context values (with a last entry for "no context": ratio 1, no continuations).
        contexts = [len(lv.total) for lv in levels]
        key_base = np.cumsum([0, *(c * size for c in contexts[:-1])])
        self._keys = np.concatenate(
            [key_base[k] + lv.keys for k, lv in enumerate(levels[:-1])] or [np.zeros(0, np.int64)]
        )
        self._key_base = key_base[:-1]
        self._key_start = np.cumsum([0, *(len(lv.keys) for lv in levels[:-2])])
        upper = levels[1:]
        self._context_base = np.cumsum([0, *contexts[1:-1]])
        ratio, inv_total, lo, hi = [], [], [], []
        position = 0
        for lv in upper:
            offsets = np.searchsorted(lv.keys, np.arange(len(lv.total) + 1) * size) + position
            lo.append(offsets[:-1])
            hi.append(offsets[1:])
            seen = lv.total > 0
            safe = np.where(seen, lv.total, 1.0)
            ratio.append(np.where(seen, lv.backoff / safe, 1.0))
            inv_total.append(np.where(seen, 1.0 / safe, 0.0))
            position += len(lv.keys)
        self._ratio = np.concatenate([*ratio, [1.0]])
        self._inv_total = np.concatenate([*inv_total, [0.0]])
        self._lo = np.concatenate([*lo, [0]]).astype(np.int64)
        self._hi = np.concatenate([*hi, [0]]).astype(np.int64)
        self._chars = np.concatenate([lv.keys % size for lv in upper] or [np.zeros(0, np.int64)])
        self._discounted = np.concatenate([lv.discounted for lv in upper] or [np.zeros(0)])
        first = levels[0]
        unigram = np.zeros(size)
        unigram[first.keys] = first.discounted
        self._base = (unigram + first.backoff[0] / size) / first.total[0]

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

        levels = []
        for k in range(1, order + 1):
            if k == order:
                counts = raw[k - 1]
            else:
                # The continuation count of a k-gram is the number of distinct (k+1)-grams that
                # end with it; any occurrence of a (k+1)-gram tells us which k-gram that is.
                suffix = ending_at[k][first_end[k]]
                counts = np.bincount(suffix, minlength=len(keys[k - 1]))
            contexts = len(keys[k - 2]) if k > 1 else 1
            levels.append(_level(keys[k - 1], counts, contexts, size, modified))
        return cls(levels, size)

    # -- scoring text ------------------------------------------------------------------------

    def _lookup(self, level: int, context: np.ndarray, chars: np.ndarray) -> np.ndarray:
        """The k-gram id of each (context id, char) at `level`, or -1 if training never saw it."""
        keys = self.levels[level].keys
        query = np.where(context >= 0, context * self.size + chars, -1)
        if len(keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        found = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[found] == query, found, -1)

    def probabilities(self, contexts: list[np.ndarray], chars: np.ndarray) -> np.ndarray:
        """P(char | context) where contexts[k-1] holds each char's order-k context id (or -1)."""
        prob = np.full(len(chars), 1.0 / self.size)
        for k, (level, context) in enumerate(zip(self.levels, contexts, strict=True)):
            gram = self._lookup(k, context, chars)
            seen = context >= 0
            total = np.where(seen, level.total[np.maximum(context, 0)], 0.0)
            backoff = np.where(seen, level.backoff[np.maximum(context, 0)], 0.0)
            discounted = np.where(gram >= 0, level.discounted[np.maximum(gram, 0)], 0.0)
            # A context never seen at this order passes the lower order's estimate through.
            prob = np.where(
                total > 0, (discounted + backoff * prob) / np.where(total > 0, total, 1.0), prob
            )
        return prob

    def context_ids(self, ids: np.ndarray) -> list[np.ndarray]:
        """Per order k, the id of the (k-1) characters before each position (-1 if unseen)."""
        ids = np.asarray(ids, dtype=np.int64)
        contexts = [np.zeros(len(ids), dtype=np.int64)]
        for k in range(self.order - 1):
            gram = self._lookup(k, contexts[-1], ids)
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
        context = state[:, :-1]
        chars = np.asarray(chars, dtype=np.int64)[:, None]
        query = np.where(context >= 0, self._key_base + context * self.size + chars, -1)
        found = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)
        hit = (self._keys[found] == query) & (context >= 0)
        new[:, 1:] = np.where(hit, found - self._key_start, -1)
        return new

    def state_after(self, ids: list[int]) -> np.ndarray:
        """The state [order] of a row that has read `ids` (only the last order-1 matter)."""
        state = self.start(1)
        for i in ids[len(ids) - (self.order - 1) :] if self.order > 1 else ():
            state = self.advance(state, np.array([i]))
        return state[0]

    def distribution(self, state: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """scale * P(next id | each row's context), [rows, size] float64.

        Unrolled, the recursion p_k = (d_k + b_k p_(k-1)) / t_k is a sum over orders of each
        order's discounted counts d_k / t_k, weighted by the product of b_j / t_j over the
        orders above it, plus the order-1 estimate under the product of them all; an order
        whose context was never seen passes through (ratio 1, no counts).
        """
        rows = len(state)
        # Per row and order above the first: its context's entry in the laid-out tables.
        entry = np.where(state[:, 1:] >= 0, self._context_base + state[:, 1:], len(self._ratio) - 1)
        ratio = self._ratio[entry]
        above = np.ones_like(ratio)  # the product of the ratios of the orders above each
        if self.order > 2:
            above[:, :-1] = np.cumprod(ratio[:, :0:-1], axis=1)[:, ::-1]
        weight = (scale * above * self._inv_total[entry]).ravel()
        lo = self._lo[entry].ravel()
        lengths = self._hi[entry].ravel() - lo
        total = int(lengths.sum())
        # The continuations of every (row, order), flattened: positions lo..hi-1 of each.
        positions = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        row = np.repeat(np.repeat(np.arange(rows), self.order - 1), lengths)
        out = np.bincount(
            row * self.size + self._chars[positions],
            weights=self._discounted[positions] * np.repeat(weight, lengths),
            minlength=rows * self.size,
        ).reshape(rows, self.size)
        out = out.astype(np.float64, copy=False)  # bincount of no entries gives integers
        bottom = scale * (above[:, 0] * ratio[:, 0] if self.order > 1 else np.ones(rows))
        out += bottom[:, None] * self._base
        return out

    def mixed_logits(self, logits: np.ndarray, state: np.ndarray, weight: float) -> np.ndarray:
        """log(weight * softmax(logits) + (1 - weight) * P(next | state)), row by row, as
        float64 logits for the sampler (which applies temperature, top-k and top-p to the
        mixture)."""
        # The network's softmax in its own float32 (half the memory traffic of float64, and
        # ample for sampling), the sum and its log in float64.
        z = logits - logits.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z *= weight / z.sum(axis=1, dtype=np.float64, keepdims=True)
        out = self.distribution(state, 1.0 - weight)
        out += z
        return np.log(out, out=out)

    # -- storage -----------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"size": np.array(self.size)}
        for k, level in enumerate(self.levels):
            arrays[f"keys{k}"] = level.keys
            arrays[f"discounted{k}"] = level.discounted
            arrays[f"total{k}"] = level.total
            arrays[f"backoff{k}"] = level.backoff
            arrays[f"discounts{k}"] = np.array(level.discounts)
            arrays[f"fallback{k}"] = np.array(level.fallback)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> NGram:
        """Read a saved model; ValueError if the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                size = int(data["size"])
                levels = []
                k = 0
                while f"keys{k}" in data:
                    levels.append(
                        Level(
                            keys=data[f"keys{k}"].astype(np.int64),
                            discounted=data[f"discounted{k}"].astype(np.float64),
                            total=data[f"total{k}"].astype(np.float64),
                            backoff=data[f"backoff{k}"].astype(np.float64),
                            discounts=tuple(float(d) for d in data[f"discounts{k}"]),
                            fallback=bool(data[f"fallback{k}"]),
                        )
                    )
                    k += 1
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"not an n-gram model ({err})") from err
        for k, level in enumerate(levels):
            contexts = len(levels[k - 1].keys) if k else 1
            if len(level.total) != contexts or len(level.discounted) != len(level.keys):
                raise ValueError(f"order {k + 1}'s tables do not fit together")
            if len(level.keys) and (level.keys[0] < 0 or level.keys[-1] >= contexts * size):
                raise ValueError(f"order {k + 1}'s keys lie outside its contexts")
        return cls(levels, size)


def _level(keys: np.ndarray, counts: np.ndarray, contexts: int, size: int, modified: bool) -> Level:
    discounts, fallback = estimate_discounts(counts, modified)
    by_count = np.array((0.0, *discounts))[np.minimum(counts, 3)]
    context = keys // size
    return Level(
        keys=keys,
        discounted=counts - by_count,
        total=np.bincount(context, weights=counts, minlength=contexts).astype(np.float64),
        backoff=np.bincount(context, weights=by_count, minlength=contexts),
        discounts=discounts,
        fallback=fallback,
    )
