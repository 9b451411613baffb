"""Per-row constraints: a writer's rules (characters allowed next) as masks over the model's
vocabulary, applied to the logits before temperature, top-k and top-p.

The engine knows writers only by their methods (`allowed`, `advance`, `done`, `cut`; see
`bot/forms/rules.py`), never which form they keep. A writer names characters; the masks here
turn each set it names into one boolean row over the vocabulary, computed once per set object
and then reused, so a step's masks are a few vector ANDs per constrained row.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np

from bot.engine.bundle import Vocab

MASK_CACHE = 8192  # distinct character sets kept as masks per model


class Masks:
    """Boolean rows over one vocabulary for the character sets writers name."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.size = len(vocab.chars)
        self._cache: OrderedDict[frozenset[str], np.ndarray] = OrderedDict()
        everything = np.ones(self.size, bool)
        everything[vocab.unk_id] = False
        self.everything = everything

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

    def allowed(self, allowed: Any) -> tuple[np.ndarray, bool]:
        """The mask of what a writer allows next, and whether its `preferred` sets had to be
        dropped (nothing in the vocabulary keeps them all)."""
        mask = self.everything
        for chars in allowed.required:
            mask = mask & self.of(chars)
        if allowed.banned:
            mask = mask.copy() if mask is self.everything else mask
            for c in allowed.banned:
                j = self.vocab.index.get(c)
                if j is not None:
                    mask[j] = False
        if allowed.preferred:
            kept = mask
            for chars in allowed.preferred:
                kept = kept & self.of(chars)
            if kept.any():
                return kept, False
            return mask, True
        return mask, False


class StuckError(ValueError):
    """A writer allowed nothing the model can write: the form cannot be finished with this
    model's characters."""


def fork(writer: Any) -> Any:
    """A copy of a writer that goes on from where it stands without touching the original:
    its lists, sets and dicts copied, a writer it wraps forked too, the rest (plans, cached
    frozensets) shared. Writers keep their mutable state in such attributes
    (bot/forms/rules.py)."""
    twin = copy.copy(writer)
    for name, value in vars(writer).items():
        if isinstance(value, (list, set, dict)):
            setattr(twin, name, copy.copy(value))
        elif hasattr(value, "allowed") and hasattr(value, "advance"):
            setattr(twin, name, fork(value))
    return twin


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

    def mask(self) -> tuple[np.ndarray, bool]:
        """The mask for the next character and whether it is to be the likeliest."""
        allowed = self.writer.allowed()
        mask, relaxed = self.masks.allowed(allowed)
        if relaxed:
            self.relaxed.append(allowed.relax or "a preferred rule")
        if not mask.any():
            raise StuckError(
                "the form could not be finished with this model's characters; try another "
                "seed or form"
            )
        return mask, allowed.greedy

    def advance(self, ch: str) -> None:
        self.writer.advance(ch)

    @property
    def done(self) -> bool:
        return bool(self.writer.done)

    def cut(self) -> int:
        return int(self.writer.cut())
