"""The copy guard: no run of k consecutive characters of a style's training text ever appears
in what it writes, with whitespace and punctuation ignored on both sides.

The index is the training split's k-grams (after normalising: whitespace, punctuation and
control characters dropped), as ids over the bundle's vocabulary, sorted by a 64-bit hash of
their first k - 1 ids. While a row writes, the engine keeps the last k - 1 normalised ids it
has read (its prompt's too, so a prompt that is itself a lyric does not unlock the rest of
the song) and, at every step, bans each id that would complete a k-gram of the index: one
vectorised hash of every guarded row, one binary search, and an exact comparison of the
candidates' prefixes, so the guard never blocks what is not in the text (no false positives,
unlike a Bloom filter) and never lets through what is. Nothing is thrown away after the fact.
"""

from __future__ import annotations

import functools
import hashlib
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GUARD_FILE = "copyguard.npz"
FORMAT = 1
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the hash of a prefix is a polynomial in it
_MASK = 2**64 - 1
SMALL = 4  # rows up to which a step's bookkeeping runs on plain integers


def transparent(ch: str) -> bool:
    """Whether the guard ignores `ch`: whitespace, punctuation, symbols of layout, controls."""
    category = unicodedata.category(ch)
    return ch.isspace() or category[0] in "PZC"


def vocab_digest(chars: tuple[str, ...]) -> str:
    return hashlib.sha256("\x00".join(chars).encode("utf-8")).hexdigest()


def _hash(prefixes: np.ndarray) -> np.ndarray:
    """64-bit hashes of id rows [n, k - 1] (wrapping arithmetic: fast and exact enough as a
    sort key; matches are then checked id by id)."""
    h = np.zeros(len(prefixes), np.uint64)
    with np.errstate(over="ignore"):
        for column in prefixes.T.astype(np.uint64):
            h = h * _MULTIPLIER + column + np.uint64(1)
    return h


@dataclass(frozen=True)
class CopyIndex:
    """The k-grams of a normalised training split, over one vocabulary."""

    k: int
    hashes: np.ndarray  # [m] uint64, sorted: the hash of each k-gram's first k - 1 ids
    grams: np.ndarray  # [m, k] ids, in the same order
    transparent: np.ndarray  # [vocab] bool: ids the guard ignores
    digest: str  # of the vocabulary it was built over
    build_seconds: float = 0.0

    @property
    def size(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.grams.nbytes + self.transparent.nbytes

    @classmethod
    def build(cls, text: str, chars: tuple[str, ...], unk_id: int, k: int) -> CopyIndex:
        """The index of `text`'s normalised k-grams over the vocabulary `chars`; k-grams with
        a character the vocabulary lacks cannot be written by the model and are left out."""
        if k < 2:
            raise ValueError("a copy guard needs k >= 2")
        started = time.perf_counter()
        index = {c: i for i, c in enumerate(chars)}
        see_through = np.array([transparent(c) for c in chars], bool)
        see_through[unk_id] = False
        ids = np.array([index.get(c, unk_id) for c in text if not transparent(c)], dtype=np.int64)
        if len(ids) < k:
            grams = np.zeros((0, k), np.int32)
        else:
            windows = np.lib.stride_tricks.sliding_window_view(ids, k)
            grams = np.unique(windows[(windows != unk_id).all(axis=1)], axis=0).astype(np.int32)
        hashes = _hash(grams[:, :-1])
        order = np.lexsort((grams[:, -1], hashes))
        return cls(
            k,
            hashes[order],
            np.ascontiguousarray(grams[order]),
            see_through,
            vocab_digest(chars),
            time.perf_counter() - started,
        )

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                format=np.int64(FORMAT),
                k=np.int64(self.k),
                hashes=self.hashes,
                grams=self.grams,
                transparent=self.transparent,
                digest=np.array(self.digest),
            )

    @classmethod
    def load(cls, path: Path, chars: tuple[str, ...]) -> CopyIndex:
        """The index at `path`; ValueError saying why when it is unreadable or was built over
        another vocabulary."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    raise ValueError(f"format {int(data['format'])}, expected {FORMAT}")
                index = cls(
                    int(data["k"]),
                    data["hashes"],
                    data["grams"],
                    data["transparent"],
                    str(data["digest"]),
                )
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"the copy-guard index is unreadable ({err})") from err
        if index.digest != vocab_digest(chars) or len(index.transparent) != len(chars):
            raise ValueError("the copy-guard index was built over another vocabulary")
        if index.grams.shape[1:] != (index.k,) or len(index.hashes) != len(index.grams):
            raise ValueError("the copy-guard index's arrays do not agree")
        return index

    # --- serving -----------------------------------------------------------------------------

    def empty_context(self, rows: int) -> np.ndarray:
        """Contexts of `rows` rows that have read nothing (-1 never matches an id)."""
        return np.full((rows, self.k - 1), -1, np.int64)

    def context(self, ids: list[int] | np.ndarray) -> tuple[np.ndarray, np.uint64]:
        """The context after reading `ids` (a prompt): its last k - 1 normalised ids, and
        their hash (an empty slot counts for nothing in it)."""
        kept = [int(i) for i in ids if not self.transparent[int(i)]][-(self.k - 1) :]
        row = self.empty_context(1)[0]
        if kept:
            row[-len(kept) :] = kept
        return row, _hash(row[None, :])[0]

    def advance(
        self, contexts: np.ndarray, hashes: np.ndarray, rows: np.ndarray, ids: np.ndarray
    ) -> None:
        """Rows `rows` read `ids`: their contexts shift and their hashes slide, in place (an
        ignored id leaves a row as it is). The hash is a polynomial in the context, so sliding
        it is one multiply-add: no step rehashes a whole context."""
        if len(rows) <= SMALL:  # a few rows: plain integers beat a dozen tiny array operations
            see_through, top, multiplier = self._see_through, self._top_int, int(_MULTIPLIER)
            for r, i in zip(rows.tolist(), ids.tolist(), strict=True):
                if see_through[i]:
                    continue
                oldest = int(contexts[r, 0]) + 1
                hashes[r] = ((int(hashes[r]) - oldest * top) * multiplier + i + 1) & _MASK
                contexts[r, :-1] = contexts[r, 1:]
                contexts[r, -1] = i
            return
        moving = ~self.transparent[ids]
        rows, ids = rows[moving], ids[moving]
        if not rows.size:
            return
        oldest = contexts[rows, 0].astype(np.uint64) + np.uint64(1)  # -1 (empty) adds nothing
        with np.errstate(over="ignore"):
            slid = hashes[rows] - oldest * self._top
            hashes[rows] = slid * _MULTIPLIER + ids.astype(np.uint64) + np.uint64(1)
        contexts[rows, :-1] = contexts[rows, 1:]
        contexts[rows, -1] = ids

    @functools.cached_property
    def _see_through(self) -> list[bool]:
        return self.transparent.tolist()

    @functools.cached_property
    def _top_int(self) -> int:
        return int(self._top)

    @functools.cached_property
    def _top(self) -> np.uint64:
        """The multiplier of a context's oldest id in its hash: MULTIPLIER^(k - 2)."""
        top = np.uint64(1)
        with np.errstate(over="ignore"):
            for _ in range(self.k - 2):
                top = top * _MULTIPLIER
        return top

    def banned(self, contexts: np.ndarray, hashes: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """For each row (index into `contexts`) that some k-gram continues, the ids that would
        complete one: those its next character must not be. One binary search over all rows'
        hashes; the few that hit are then compared id by id, so nothing is banned that is not
        a real continuation of the text."""
        if not self.size or not len(hashes):
            return []
        lo = np.searchsorted(self.hashes, hashes, "left")
        hi = np.searchsorted(self.hashes, hashes, "right")
        hits = np.flatnonzero(hi > lo)
        if not hits.size:
            return []
        found = []
        for j in hits.tolist():
            candidates = self.grams[lo[j] : hi[j]]
            same = (candidates[:, :-1] == contexts[j]).all(axis=1)
            if same.any():
                found.append((j, candidates[same, -1]))
        return found

    def holds_copy(self, ids: list[int] | np.ndarray) -> bool:
        """Whether `ids` hold a normalised run of k from the text (a check for tests and
        benchmarks: what the guard promises never happens)."""
        kept = np.array([int(i) for i in ids if not self.transparent[int(i)]], np.int64)
        if len(kept) < self.k:
            return False
        windows = np.lib.stride_tricks.sliding_window_view(kept, self.k)
        h = _hash(windows[:, :-1])
        lo = np.searchsorted(self.hashes, h, "left")
        hi = np.searchsorted(self.hashes, h, "right")
        for j in np.flatnonzero(hi > lo).tolist():
            if (self.grams[lo[j] : hi[j]] == windows[j]).all(axis=1).any():
                return True
        return False
