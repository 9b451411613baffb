"""Pretraining on other corpora, then fine-tuning on the target (two runs):

    python -m training --corpus TARGET --pretrain OTHER [OTHER ...] --out runs/pre ...
    python -m training --corpus TARGET --init-from runs/pre --out runs/final ...

The first run trains on the other corpora and the target's training split, and is validated
on the target's validation tail; its vocabulary is the target's training split plus the
characters the other corpora bring at least `--pretrain-min-count` times (rarer ones read as
unknown). The second starts from its weights and vocabulary and trains on the target alone.
No line of the target's validation tail may occur in the other corpora: the first run refuses
to start, naming the line.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from bot.corpus import Corpus
from bot.engine.bundle import UNKNOWN, Vocab

# Shorter validation lines ("ROMEO:", "Ay.") occur anywhere without being copies.
MIN_LEAK_CHARS = 16


class LeakError(ValueError):
    """A line of the target's validation tail occurs in a pretraining corpus."""


def find_leaks(val_text: str, other: Corpus) -> list[tuple[str, int]]:
    """(line, position in `other`) for each line of `val_text` of at least MIN_LEAK_CHARS
    characters that occurs in `other`'s text, in the order they occur there."""
    k = MIN_LEAK_CHARS
    by_head: dict[str, list[str]] = collections.defaultdict(list)
    for line in {line.strip() for line in val_text.splitlines()}:
        if len(line) >= k:
            by_head[line[:k]].append(line)
    found: list[tuple[str, int]] = []
    text = other.text
    for i in range(len(text) - k + 1):
        for line in by_head.get(text[i : i + k], ()):
            if text.startswith(line, i):
                found.append((line, i))
    return found


def check_no_leak(val_text: str, others: list[Corpus]) -> None:
    """Refuse (LeakError naming the line and where) when a line of `val_text` occurs in one
    of `others`."""
    for other in others:
        leaks = find_leaks(val_text, other)
        if leaks:
            line, at = leaks[0]
            more = f" (and {len(leaks) - 1} more)" if len(leaks) > 1 else ""
            raise LeakError(
                f"the validation tail's line {line!r} occurs in the pretraining corpus "
                f"{other.name} ({other.source}, character {at:,}){more}: remove it from one "
                "of them (--drop-leaks leaves such lines out of the pretraining corpora), or "
                "the validation loss would reward copying"
            )


def drop_leaks(val_text: str, others: list[Corpus]) -> tuple[list[Corpus], list[int]]:
    """`others` less each line holding a line of `val_text` (as `find_leaks` finds them), and
    how many lines each lost. Their sha256 stays the file's: the card says what was left out."""
    kept, dropped = [], []
    for other in others:
        leaked = {line for line, _ in find_leaks(val_text, other)}
        lines = other.text.splitlines(keepends=True)
        clean = [line for line in lines if not any(leak in line for leak in leaked)]
        kept.append(dataclasses.replace(other, text="".join(clean)))
        dropped.append(len(lines) - len(clean))
    return kept, dropped


def pretraining_vocab(target: Vocab, others: list[Corpus], min_count: int) -> Vocab:
    """The target's vocabulary plus the others' characters seen >= min_count times."""
    counts: collections.Counter[str] = collections.Counter()
    for other in others:
        counts.update(other.text)
    kept = set(target.chars) | {c for c, n in counts.items() if n >= min_count}
    kept.discard(UNKNOWN)
    return Vocab(chars=(UNKNOWN, *sorted(kept)), unk_id=0)


def pretraining_text(target_train: str, others: list[Corpus]) -> str:
    """What the first run trains on: the others, then the target's training split."""
    return "\n".join([*(other.text.rstrip("\n") for other in others), target_train])


def describe(
    others: list[Corpus], min_count: int, dropped: list[int] | None = None
) -> dict[str, Any]:
    """config.json's "pretraining" section of the first run (`dropped`: the lines each corpus
    lost to `drop_leaks`)."""
    corpora = [
        {"name": o.name, "source": o.source, "sha256": o.sha256, "characters": len(o.text)}
        for o in others
    ]
    for entry, n in zip(corpora, dropped or [], strict=False):
        entry["lines_left_out_for_leaks"] = n
    return {
        "corpora": corpora,
        "with_target_training_split": True,
        "vocabulary_min_count": min_count,
    }
