"""Whole lines of the training split, so that no poem line is one of them verbatim.

A line is the text between line breaks, and for Chinese also between the clause marks `，` and
`。`, and after a 詞's tune name (the `：` of `浣溪沙：`: else a 詞's first clause would be
indexed glued to its tune's name, and never matched); lines are compared normalised
(whitespace, punctuation and controls dropped, letters lowercased). The index keeps, for every
training line of at least MIN_CHARS normalised characters, a 64-bit hash of all but its last
character and that last character, sorted: what can complete a training line after a given
beginning is one binary search away. It holds no text (the Jay Chou corpus is copyrighted),
only hashes and final characters.

`LineGuard` wraps a writer: a line may not end (at a line break or clause mark) while it is a
training line, where anything else may come; and where the writer says the line's last
character comes next (a Tang clause's fixed length), the characters that would complete a
training line are banned, unless the writer allows one character only there (a theme's
keyword ending the clause): then the line is judged instead, its `penalty` infinite when it is
a training line (the engine's candidates drop it).
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.forms.rules import Allowed

LINES_FILE = "lines.npz"
MIN_CHARS = 4  # shorter lines ("Speak.", "你笑") are too common to count as copies
CLOSERS = frozenset("\n，。：")  # "：" closes a 詞's header, its tune's name


def ignored(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PZC"


def _key(text: str) -> int:
    """A stable 64-bit key of a normalised text (CRC-32 and Adler-32 side by side: computed in
    C, about a microsecond; two different lines share one with odds of about 2^-64 each)."""
    data = text.encode("utf-8")
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


class _Normal(dict):
    """`str.translate`'s table for `normalise`, filled one code point at a time as text shows
    them: ignored characters to nothing, the rest lowercased (three times the speed of a
    character-by-character join, which the training split's 300k lines are read through)."""

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        value = None if ignored(ch) else ch.lower()
        self[code] = value
        return value


_NORMAL = _Normal()


def normalise(line: str) -> str:
    return line.translate(_NORMAL)


_TO_NEWLINE = str.maketrans({c: "\n" for c in CLOSERS})


def training_lines(text: str) -> Iterable[str]:
    for piece in text.translate(_TO_NEWLINE).split("\n"):
        flat = normalise(piece)
        if len(flat) >= MIN_CHARS:
            yield flat


@dataclass(frozen=True)
class LineIndex:
    keys: np.ndarray  # [n] uint64, sorted: key of a line's normalised text but its last char
    last: np.ndarray  # [n] int32: the code point of that last char
    whole: frozenset[int]  # keys of the whole lines

    @classmethod
    def build(cls, text: str) -> LineIndex:
        lines = set(training_lines(text))
        pairs = sorted({(_key(line[:-1]), ord(line[-1])) for line in lines})
        keys = np.array([k for k, _ in pairs], np.uint64)
        last = np.array([c for _, c in pairs], np.int32)
        return cls(keys, last, frozenset(_key(line) for line in lines))

    def save(self, path: Path) -> None:
        whole = np.array(sorted(self.whole), np.uint64)
        with open(path, "wb") as f:
            np.savez_compressed(f, keys=self.keys, last=self.last, whole=whole)

    @classmethod
    def load(cls, path: Path) -> LineIndex:
        """The index at `path`; ValueError when it is unreadable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["keys"], data["last"], frozenset(data["whole"].tolist()))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from err

    def __len__(self) -> int:
        return len(self.keys)

    def completions(self, flat_prefix: str) -> frozenset[str]:
        """The characters that would make a line beginning `flat_prefix` (normalised) a whole
        training line."""
        if len(flat_prefix) + 1 < MIN_CHARS:
            return frozenset()
        key = np.uint64(_key(flat_prefix))
        lo, hi = np.searchsorted(self.keys, key, "left"), np.searchsorted(self.keys, key, "right")
        return frozenset(chr(int(c)) for c in self.last[lo:hi])

    def holds(self, flat_line: str) -> bool:
        """Whether a normalised line is a training line."""
        return len(flat_line) >= MIN_CHARS and _key(flat_line) in self.whole


class LineGuard:
    """A writer's rules, and no line of the poem a training line verbatim."""

    def __init__(self, inner: Any, index: LineIndex) -> None:
        self.inner = inner
        self.index = index
        self.form = getattr(inner, "form", None)
        self._line = ""  # the current line, normalised
        self._yielded = False  # the guard let the writer's one character end this line
        self._copied = False  # the line just closed is a training line the guard let through

    @property
    def done(self) -> bool:
        return self.inner.done

    def cut(self) -> int:
        return self.inner.cut()

    def penalty(self) -> float:
        """The inner writer's `penalty` (rules.py), 0.0 where it has none; infinite for a
        line the guard let end as a training line."""
        if self._copied:
            return math.inf
        penalty = getattr(self.inner, "penalty", None)
        return 0.0 if penalty is None else penalty()

    def branch(self, k: int) -> None:
        """The inner writer's `branch` (a line's k-th candidate), where it has one."""
        branch = getattr(self.inner, "branch", None)
        if branch is not None:
            branch(k)

    def allowed(self) -> Allowed:
        allowed = self.inner.allowed()
        banned: frozenset[str] = frozenset()
        last = getattr(self.inner, "last_of_line", None)
        if last is not None and last():
            banned = self.index.completions(self._line)
            if any(chars <= banned for chars in allowed.required):
                banned = frozenset()  # one character is all the writer allows: judged after
                self._yielded = True
        elif self.index.holds(self._line) and not any(
            chars <= CLOSERS for chars in allowed.required
        ):  # unless ending the line is all the writer allows (then the line is the form's)
            banned = CLOSERS
        if not banned:
            return allowed
        # Built directly (every field of Allowed named): `dataclasses.replace` costs twice as
        # much, at every character of every candidate row.
        return Allowed(
            required=allowed.required,
            banned=allowed.banned | banned,
            preferred=allowed.preferred,
            relax=allowed.relax,
            greedy=allowed.greedy,
        )

    def advance(self, ch: str) -> None:
        self.inner.advance(ch)
        if ch in CLOSERS:
            self._copied = self._yielded and self.index.holds(self._line)
            self._yielded = False
            self._line = ""
        elif not ignored(ch):
            self._line += ch.lower()
