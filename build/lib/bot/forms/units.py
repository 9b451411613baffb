"""A style's unit when no form shapes it: text that ends where the corpus's pieces end.

`paragraph`: up to the first blank line after some text (a speech of a play, a stanza);
`line`: up to the first line break after some text (a Tang poem in its one-poem-a-line
corpus); `lines`: a given number of lines. A newline never starts the text. When the length
runs out first, the poem is cut at its last whole line (one that ends a sentence, below).

A theme (`themes.Thread`): each line starts with its keyword (after the acrostic's head,
where there is one), the plan's words in order; a paragraph does not end before the user's
words are written.

Nearing the length (issue 22), given `length` (the characters advanced at most, the prompt's
included) and `vocab` (the model's characters, among them a sentence end of SENTENCE_ENDS and
the newline), in three stretches before the bound (characters left, the script's: `_steer`):
- `soon`: a line may close only after a sentence end (its last character one of them), and
  the paragraph end (a blank line) only after such a line;
- `now`: the clause in progress ends the sentence: after a word no comma, colon, dash or
  newline (Latin: a space, where the sentence goes on; Chinese: nothing but more of the
  clause, or its end), and a line that ends a sentence closes there, as the paragraph does
  after it;
- `last`: the word in progress ends it (Latin: no space either; Chinese, a word a character:
  the next character is the sentence end).
A Latin word is never cut: the sentence ends where the model ends the word. Once a line that
ends a sentence has closed within `now`, the lines after it (an acrostic's, a counted
paragraph's) are steered only as within `soon`. The stretches are at most two thirds, one
third and one third of `length` (a short poem is not all steering). All of it is `preferred`,
which the engine drops where nothing allowed keeps it (the line guard's ban on ending a
training line can do that): it never leaves a poem stuck, and never refuses a prompt. Cut by
the length, a poem ends at its last whole line that ended a sentence, where one did (the
prompt's lines aside), else at its last whole line.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from bot.forms import themes
from bot.forms.rules import ANYTHING, Allowed

UNITS = ("paragraph", "line")
_NEWLINE = frozenset("\n")
# English's (english.SENTENCE_ENDS), and Chinese: the ideographic full stop and the
# full-width and half-width forms of the three.
SENTENCE_ENDS = frozenset(".!?。！？．｡")
APOSTROPHES = frozenset("'’")  # inside a Latin word ("o'er") or closing it ("lovers'")
# The stretches (characters left before the bound). Latin script: `soon` and `now` are the
# English writer's END_SOON and END_NOW, for the same kind of text (a line of verse is about
# 40 characters, a sentence 60 to 120, a clause 20 to 40); `last` holds a long word, its
# sentence end, the newline and the blank line. Chinese: a character carries about what three
# English letters with their space do, and a sentence of the verse (a couplet to its 。) is 12
# or 16 characters: `soon` leaves room for two to come of themselves, `now` holds a
# seven-character clause with its sentence end, the newline and the blank line, and `last`
# the sentence end, the newline and the blank line alone.
LATIN_SOON, LATIN_NOW, LATIN_LAST = 120, 48, 16
HAN_SOON, HAN_NOW, HAN_LAST = 40, 12, 3
RELAX = "a sentence end near the length"


def wide(ch: str) -> bool:
    """Whether `ch` is East Asian wide (a Chinese character, kana, a full-width form): a word
    of its own, where a Latin letter is part of one."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


@dataclass(frozen=True)
class _Steer:
    """One vocabulary's sets for steering to a sentence end, made once and shared (the
    engine caches a mask per set object), and its script's stretches."""

    stops: frozenset[str]  # the sentence ends the vocabulary holds
    newline: frozenset[str]
    not_newline: frozenset[str]  # every character but the newline
    word: frozenset[str]  # letters and digits: what a word starts with
    in_word: frozenset[str]  # after a word's letter: more of it, or a sentence end
    spaced: frozenset[str]  # the same, or a space (another word of the sentence)
    soon: int
    now: int
    last: int


@functools.lru_cache(maxsize=32)
def _steer(vocab: frozenset[str]) -> _Steer | None:
    """The steering sets of a vocabulary; None where it cannot end a sentence and a line."""
    stops = SENTENCE_ENDS & vocab
    word = frozenset(c for c in vocab if c.isalnum())
    if not stops or "\n" not in vocab or not word:
        return None
    han = sum(map(wide, word)) * 2 > len(word)
    in_word = word | stops | (APOSTROPHES & vocab)
    return _Steer(
        stops=stops,
        newline=_NEWLINE,
        not_newline=vocab - _NEWLINE,
        word=word,
        in_word=in_word,
        spaced=in_word | (frozenset(" ") & vocab),
        soon=HAN_SOON if han else LATIN_SOON,
        now=HAN_NOW if han else LATIN_NOW,
        last=HAN_LAST if han else LATIN_LAST,
    )


class UnitWriter(themes.Keyed):
    def __init__(
        self,
        unit: str,
        lines: int | None = None,
        heads: tuple[frozenset[str], ...] = (),
        thread: themes.Thread | None = None,
        length: int | None = None,
        vocab: frozenset[str] = frozenset(),
    ):
        """`length` (the characters advanced at most, the prompt's included) and `vocab` (the
        model's characters) steer the poem to a sentence end as the length runs out (the
        module docstring); without either, nothing does."""
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
        self.unit = unit
        self.form = None
        self._lines = len(heads) if heads else lines  # None: as the unit says
        self._heads = heads
        self._steer = _steer(frozenset(vocab)) if length is not None and vocab else None
        self._length = length or 0
        steer = self._steer
        self._nearing = min(steer.soon, 2 * self._length // 3) if steer else 0  # `soon`
        self._closing = min(steer.now, self._length // 3) if steer else 0  # `now`
        self._last = min(steer.last, self._closing) if steer else 0
        self._fed = 0
        self._whole = 0  # characters up to the last line break that closed a line of text
        self._ended = 0  # the same, for the last such line of its own that ended a sentence
        self._asked: int | None = None  # characters advanced when first asked (the prompt)
        self._sentence = False  # the last line closed ended a sentence
        self._line = ""  # the line being written
        self._count = 0  # lines closed
        self._done = False
        self._start_theme(thread, 0)

    @property
    def done(self) -> bool:
        return self._done

    def cut(self) -> int:
        """With steering, the end of the last whole line that ended a sentence, else (and
        without) of the last whole line. Only a line closed after the writer was first asked
        what may come counts as one that ended a sentence: the engine feeds the prompt before
        it asks (scheduler.generate), and a cut inside the prompt leaves no poem."""
        return self._ended or self._whole

    def allowed(self) -> Allowed:
        if self._asked is None:
            self._asked = self._fed
        if self._done:
            return Allowed(required=(frozenset(),))
        keyword = self._keyword_here()
        if keyword:
            return Allowed(required=(frozenset(keyword),))
        if not self._line:
            if self._count < len(self._heads):
                return Allowed(required=(self._heads[self._count],), greedy=True)
            users_left = self._thread is not None and any(
                w in self._thread.users for w in self._unwritten
            )
            if self._count == 0 or self._lines is not None or users_left:
                return Allowed(banned=_NEWLINE)  # no empty line first, none inside counted lines
        steer, left = self._steer, self._length - self._fed
        if steer is None or left > self._nearing:
            return ANYTHING
        if not self._line:  # the blank line that ends the paragraph: after a sentence's end
            if not self._sentence:
                return Allowed(preferred=(steer.not_newline,), relax=RELAX)
            if left <= self._closing:
                return Allowed(preferred=(steer.newline,), relax=RELAX)  # and it ends there
            return ANYTHING
        settled = bool(self._ended) and self._length - self._ended < self._closing
        if left <= self._closing and not settled:  # the sentence ends, and its line
            return Allowed(preferred=(self._next(steer, left),), relax=RELAX)
        if self._line.rstrip()[-1:] in steer.stops:
            return ANYTHING
        return Allowed(preferred=(steer.not_newline,), relax=RELAX)  # no line end mid-sentence

    def _next(self, steer: _Steer, left: int) -> frozenset[str]:
        """What may come next within `now` (the module docstring)."""
        ch = self._line[-1]
        if ch in steer.stops:
            return steer.newline
        in_word = ch.isalnum() or (
            ch in APOSTROPHES and len(self._line) > 1 and self._line[-2].isalnum()
        )
        if not in_word:
            return steer.word  # after a space or a comma: a word first
        if wide(ch):
            return steer.stops if left <= self._last else steer.in_word
        return steer.in_word if left <= self._last else steer.spaced

    def _keyword_here(self) -> str:
        """The keyword's character due next ("" none): a line's first (after its head)."""
        if self._thread is None or self._fed < self._thread.skip or not self._unwritten:
            return ""
        start = 1 if self._count < len(self._heads) else 0
        if len(self._line) == start and not self._keyword:
            self._keyword = self._unwritten[0]
        offset = len(self._line) - start
        return self._keyword[offset] if 0 <= offset < len(self._keyword) else ""

    def advance(self, ch: str) -> None:
        self._fed += 1
        if self._done:
            return
        if ch != "\n":
            self._line += ch
            return
        text = self._line.rstrip()
        if text:
            self._count += 1
            self._whole = self._fed
            self._sentence = text[-1] in SENTENCE_ENDS
            if self._sentence and self._steer is not None and self._asked is not None:
                self._ended = self._fed
        self._end_theme_line()
        ended = (
            (self._lines is not None and self._count >= self._lines)
            or (self._lines is None and self.unit == "line" and self._count > 0)
            or (self._lines is None and not self._line and self._count > 0)  # a blank line
        )
        self._line = ""
        self._done = ended
