"""Per-row constraints: a writer's rules (characters allowed next) as masks over the model's
vocabulary, applied to the logits before temperature, top-k and top-p.

The engine knows writers only by their methods (`allowed`, `advance`, `done`, `cut`; see
`bot/forms/rules.py`), never which form they keep. A writer names characters; the masks here
turn each set it names into one boolean row over the vocabulary, computed once per set object
and then reused; what a writer allows next becomes an addend to its row's scores (0 allowed,
-inf not), combined once per pair of set tuples, so a row's step costs one copy and one indexed
write for the characters it bans.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.engine.bundle import Vocab

MASK_CACHE = 8192  # distinct character sets kept as masks per model
# Combined required/preferred rows kept per model, in bytes (a pair holds up to two boolean
# rows and two float32 ones: 18 bytes a character, 136 KB over Tang's 7,586 characters). The
# Chinese forms use a few dozen pairs (tang 23, songci 44, jaychou 20 over 20 poems each),
# English ones thousands of small ones (shakespeare 1,719 over 8): at most MASK_CACHE.
PAIR_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Rows:
    """One allowed set as a boolean row, the same as a score addend (0 allowed, -inf not),
    and how many characters it allows."""

    allows: np.ndarray
    addend: np.ndarray
    count: int

    @classmethod
    def of(cls, allows: np.ndarray) -> _Rows:
        return cls(allows, _ADDEND.take(allows.view(np.uint8)), int(np.count_nonzero(allows)))

    def leaves(self, ids: list[int]) -> bool:
        """Whether anything stays allowed with `ids` banned too. Counted only where it could
        be close: a row allowing more characters than there are ids keeps some whatever they
        are (a tone's thousands against a poem's few dozen)."""
        if self.count > len(ids):
            return True
        return self.count - (int(np.count_nonzero(self.allows[ids])) if ids else 0) > 0

    def without(self, ids: list[int]) -> np.ndarray | None:
        """The addend with `ids` banned too; None when that leaves nothing allowed."""
        if not self.leaves(ids):
            return None
        if not ids:
            return self.addend
        addend = self.addend.copy()
        addend[ids] = -np.inf
        return addend


_ADDEND = np.array([-np.inf, 0.0], np.float32)  # a mask's False, True as a score's addend


class Masks:
    """Rows over one vocabulary for the character sets writers name: boolean masks, and for
    the engine each writer's next `Allowed` as an addend to its row's scores (0 where allowed,
    -inf elsewhere: added, an allowed character's score stays exactly as it was)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.size = len(vocab.chars)
        self._cache: OrderedDict[frozenset[str], np.ndarray] = OrderedDict()
        self._pairs: OrderedDict[tuple, tuple[_Rows, _Rows | None]] = OrderedDict()
        self._pair_limit = min(MASK_CACHE, max(64, PAIR_BYTES // (18 * self.size)))
        everything = np.ones(self.size, bool)
        everything[vocab.unk_id] = False
        self.everything = everything
        self.everything_addend = _Rows.of(everything).addend

    def of(self, chars: frozenset[str]) -> np.ndarray:
        """The mask of a set of characters (those the vocabulary lacks ignored)."""
        mask = self._cache.get(chars)
        if mask is None:
            mask = np.zeros(self.size, bool)
            ids = [self.vocab.index[c] for c in chars if c in self.vocab.index]
            mask[ids] = True
            mask[self.vocab.unk_id] = False
            self._cache[chars] = mask
            if len(self._cache) > MASK_CACHE:
                self._cache.popitem(last=False)
        return mask

    def _pair(self, allowed: Any) -> tuple[_Rows, _Rows | None]:
        """What `required` allows, and within it what `preferred` does too (None: no
        preference), combined once per pair of tuples and kept."""
        key = (allowed.required, allowed.preferred)
        pair = self._pairs.get(key)
        if pair is None:
            mask = self.everything
            for chars in allowed.required:
                mask = mask & self.of(chars)
            kept = None
            if allowed.preferred:
                kept = mask
                for chars in allowed.preferred:
                    kept = kept & self.of(chars)
                kept = _Rows.of(kept)
            pair = self._pairs[key] = (_Rows.of(mask), kept)
            if len(self._pairs) > self._pair_limit:
                self._pairs.popitem(last=False)
        return pair

    def _rows(self, allowed: Any) -> tuple[_Rows | None, list[int], bool]:
        """The rows a writer's next `Allowed` comes to (None: nothing allowed), the ids it
        bans besides, and whether its `preferred` sets had to be dropped (nothing in the
        vocabulary keeps them all)."""
        required, preferred = self._pair(allowed)
        index = self.vocab.index
        ids = [index[c] for c in allowed.banned if c in index] if allowed.banned else []
        if preferred is not None and preferred.leaves(ids):
            return preferred, ids, False
        return (required if required.leaves(ids) else None), ids, preferred is not None

    def addend(self, allowed: Any) -> tuple[np.ndarray | None, bool]:
        """What a writer allows next as an addend to its row's scores (None: nothing), and
        whether its `preferred` sets had to be dropped."""
        rows, ids, relaxed = self._rows(allowed)
        return (None if rows is None else rows.without(ids)), relaxed

    def add(self, allowed: Any, scores: np.ndarray) -> bool | None:
        """Add what a writer allows next into its row's `scores`, in place (its addend, then
        -inf at its banned ids: one pass over the row and one indexed write, no copy of the
        addend); whether its `preferred` sets had to be dropped. None: nothing is allowed,
        and `scores` is left as it was."""
        rows, ids, relaxed = self._rows(allowed)
        if rows is None:
            return None
        np.add(scores, rows.addend, out=scores)
        if ids:
            scores[ids] = -np.inf
        return relaxed


class StuckError(ValueError):
    """A writer allowed nothing the model can write: the form cannot be finished with this
    model's characters."""


def fork(writer: Any) -> Any:
    """A copy of a writer that goes on from where it stands without touching the original:
    its lists, sets and dicts copied, a writer it wraps forked too, the rest (plans, cached
    frozensets) shared. Writers keep their mutable state in such attributes
    (bot/forms/rules.py). A line's 32 candidates fork their writers at every line, so this
    copies the instance's attributes directly, deciding what to do with each attribute by its
    type once (a Tang writer in its two guards: 8.5 µs against 23 µs with `copy.copy`)."""
    state = dict(writer.__dict__)
    for name, value in state.items():
        how = _HOW.get(type(value))
        if how is None:
            how = _HOW[type(value)] = _how(type(value))
        if how is _shared:
            continue
        state[name] = how(value)
    twin = object.__new__(type(writer))
    twin.__dict__.update(state)
    return twin


def _shared(value: Any) -> Any:
    return value


def _how(kind: type) -> Callable[[Any], Any]:
    """What `fork` does with an attribute of this type: copy a list, set or dict (a subclass
    such as defaultdict as `copy.copy` would), fork a writer, share anything else."""
    if kind in (list, set, dict):
        return kind.copy
    if issubclass(kind, (list, set, dict)):
        return copy.copy
    if hasattr(kind, "allowed") and hasattr(kind, "advance"):
        return fork
    return _shared


_HOW: dict[type, Callable[[Any], Any]] = {}


class RowRules:
    """One row's writer, bound to the model's vocabulary: the next mask, and what it bent."""

    def __init__(self, writer: Any, masks: Masks) -> None:
        self.writer = writer
        self.masks = masks
        self.relaxed: list[str] = []

    def fork(self) -> RowRules:
        """Rules that go on from here on their own (a line's candidate)."""
        twin = RowRules(fork(self.writer), self.masks)
        twin.relaxed = list(self.relaxed)
        return twin

    def branch(self, k: int) -> None:
        """Tell the writer it is candidate `k` of the line about to start, where it asks
        (`branch`: it may write the line differently for each, e.g. put a keyword elsewhere)."""
        branch = getattr(self.writer, "branch", None)
        if branch is not None:
            branch(k)

    def penalty(self) -> float:
        """The writer's judgement of the line just finished (0: none; inf: rejected)."""
        judge = getattr(self.writer, "penalty", None)
        return float(judge()) if judge is not None else 0.0

    def constrain(self, scores: np.ndarray) -> bool:
        """Mask the row's scores for the next character in place (-inf where the writer does
        not allow it; `Masks.add`); whether it is to be the likeliest."""
        allowed = self.writer.allowed()
        relaxed = self.masks.add(allowed, scores)
        if relaxed is None:
            raise StuckError(
                "the form could not be finished with this model's characters; try another "
                "seed or form"
            )
        if relaxed:
            self.relaxed.append(allowed.relax or "a preferred rule")
        return allowed.greedy

    def advance(self, ch: str) -> None:
        self.writer.advance(ch)

    @property
    def done(self) -> bool:
        return bool(self.writer.done)

    def cut(self) -> int:
        return int(self.writer.cut())
