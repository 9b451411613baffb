"""The Mandarin lyric writer: a verse of rhyming lines, kept by masks one character ahead.

Rules (a line's length counts its non-space characters, as `lyrics.check_verse` does):
1. Shape: k lines (the acrostic's length, else `lines`, else 4..8 by the seed), each of
   `min_chars` to at most its own longest (drawn by the seed from LINE_SPAN, never past
   `max_chars`) characters; `done` after the k-th line's newline.
2. Characters: inside a line only Han characters of the vocabulary and single spaces between
   them: no space at a line start, none right before the newline, never two in a row; no
   punctuation, no Latin; no blank lines.
3. Rhyme (十三辙, `lyrics.rhyme_class`): the first line's last character sets the class, and
   may be of any class with at least `MIN_CLASS` characters in the vocabulary (so that every
   later line can rhyme); every later line ends in a character of that class.
4. Acrostic (藏头): line i starts with the i-th given character.

By masks: "\\n" is allowed only when the line has at least `min_chars` characters and its last
is of the rhyme class (on line 1: of any big class); once a line has its longest - 1
characters the next must be of the class, and after it "\\n" is forced. That leaves no dead
end: a line start offers its head or every Han character; a line shorter than its longest - 1
offers every Han character; at its longest - 1 or more it offers the (big, non-empty) class;
and at its longest or more ending in the class (with at least `min_chars`) the newline, which
the vocabulary has (checked). A prompt may break any of this: a line it leaves too long ends
at the next class character; a first line it ends outside the big classes leaves the rhyme to
the next line.

No worn-out repeats, as far as the poets allow: with the style's `lyrics.VerseReadings`, a
verse of k lines may reuse characters (an immediate doubling such as 哈哈 not counted) as
often as the corpus's verses of k lines do on average, and no more: once it has, every
character already in it is banned, except a doubling of the one just written, and except where
the ban would leave a rhyme position fewer than MIN_LEFT characters. Jay Chou reuses a lot
(5.6 characters in 4 lines, 18 in 8: refrains, 我 你 的), so a Tang-like ban would make the
verses unlike his; an average bound keeps the bot from its own loops and no stricter than him.
Rhyme classes are the usual ones of the table's heteronyms (了 着 at a line's end).

A theme (`themes.Thread`): each line holds one keyword of the plan, its characters together
(no space inside it), ending before the line's last character (the rhyme's); never at the
start of a line an acrostic heads unless it begins with the head (the head wins). The line
may not end before its keyword is written; the keyword is exempt from the reuse ban where it
stands and banned elsewhere in its line. A keyword too long for the line (or a related word
whose characters the verse has already) gives way to the next of the plan. The last line of a
verse of 4 lines or more takes a user's word again, as a refrain would (it ends on its
subject). The verse has at least as many lines as the user's words. Each candidate of a line
(the engine's `branch`) starts the keyword at another place.
"""

from __future__ import annotations

import functools
import random
from dataclasses import replace

from bot.forms import lyrics, themes
from bot.forms.rules import Allowed, FormError
from bot.forms.tang import after, reuse_ban

MIN_CLASS = 30  # characters a rhyme class needs in the vocabulary to be chosen
MIN_LINES, MAX_LINES = 4, 8  # the verse's length when neither `lines` nor an acrostic says
# Each line's longest, drawn by the seed: the corpus's lines have a median of 9 characters, and a
# line that may run to `max_chars` before its rhyme is forced runs there nearly every time.
LINE_SPAN = (8, 12)
MIN_LEFT = 3  # characters a position keeps after the reuse ban (else the ban is dropped there)


class _VersePlan:
    """What one vocabulary offers every verse writer: its Han characters, its rhyme classes
    and the masks (one `Allowed` per combination of stable sets), built once and shared."""

    def __init__(self, vocab: frozenset[str], readings: lyrics.VerseReadings) -> None:
        self.readings = readings
        self.han = frozenset(c for c in vocab if lyrics.is_han(c))
        self.classes = {
            name: chars
            for name, chars in lyrics.classes_for(self.han, readings.usual).items()
            if len(chars) >= MIN_CLASS
        }
        self.any_class = frozenset().union(*self.classes.values())
        self.space = frozenset(" ") & vocab
        self.nl = frozenset("\n") & vocab
        self._masks: dict[tuple[frozenset[str], ...], Allowed] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def mask(self, *parts: frozenset[str]) -> Allowed:
        """Allowed: a character of any of `parts` (stable sets of this plan)."""
        got = self._masks.get(parts)
        if got is None:
            chars = frozenset().union(*parts)
            got = Allowed(required=(self._sets.setdefault(chars, chars),))
            self._masks[parts] = got
        return got

    def head(self, ch: str) -> Allowed:
        """Allowed: exactly the acrostic head `ch`."""
        key = (frozenset(ch),)
        got = self._masks.get(key)
        if got is None:
            got = Allowed(required=(self._sets.setdefault(key[0], key[0]),))
            self._masks[key] = got
        return got


@functools.lru_cache(maxsize=8)
def _plan(vocab: frozenset[str], readings: lyrics.VerseReadings) -> _VersePlan:
    """The shared plan of a vocabulary and a style's tables."""
    return _VersePlan(vocab, readings)


class VerseWriter(themes.Keyed):
    """One verse of Mandarin lyrics as a state machine (the module docstring has the rules).

    The constructor raises FormError for options that cannot work: heads the model does not
    know (the caller converts scripts first), lengths out of range, a vocabulary without a
    rhyme class of `MIN_CLASS` characters. `readings`: the style's tables (default: none, so
    first readings and no bound on reuse).
    """

    def __init__(
        self,
        vocab: frozenset[str],
        lines: int | None = None,
        acrostic: str | None = None,
        seed: int = 0,
        min_chars: int = 5,
        max_chars: int = 14,
        readings: lyrics.VerseReadings = lyrics.NO_READINGS,
        thread: themes.Thread | None = None,
    ) -> None:
        self._plan = plan = _plan(frozenset(vocab), readings)
        if not 1 <= min_chars <= max_chars or max_chars < 2:
            raise FormError(
                f"A line needs between 1 and its maximum characters, and at least 2 in all; "
                f"{min_chars}..{max_chars} will not do."
            )
        if not plan.classes:
            raise FormError("This model knows too few rhyming characters to write a verse.")
        if not plan.nl:
            raise FormError("This model cannot write lines (it lacks the newline).")
        if acrostic is not None:
            if not acrostic:
                raise FormError("The acrostic is empty: give one character for each line.")
            for ch in acrostic:
                if ch not in plan.han:
                    raise FormError(
                        f"This model cannot start a line with {ch!r}: an acrostic takes Chinese "
                        "characters the model knows; choose another."
                    )
            count = len(acrostic)
        elif lines is not None:
            if lines < 1:
                raise FormError(f"A verse needs at least one line, not {lines}.")
            count = lines
        else:
            count = random.Random(seed).randint(MIN_LINES, MAX_LINES)
            count = max(count, len(thread.users) if thread else 0)
        self.lines = count
        self.form = "verse"  # named in the reply's footer
        self._heads = acrostic or ""
        self._min = min_chars
        self._max_chars = max_chars
        self._spans = random.Random(seed ^ 0x5EED)
        self._max = self._span()
        self._count = 0  # characters advanced
        self._cut = 0
        self._done = False
        self._line = 0  # lines closed
        self._n = 0  # non-space characters on this line
        self._last = ""  # this line's last character ("" at its start)
        self._target = plan.any_class  # characters the line may end in
        self.rhyme_class: str | None = None
        self._now: Allowed | None = None
        self._budget = readings.budget(count)  # reused characters the verse may hold
        self._repeats = 0  # reused characters so far
        self._seen: set[str] = set()
        self._previous = ""  # the Han character just written ("" after anything else)
        self._doubled = False  # it doubled the one before it
        self._start_theme(thread, seed)

    def _span(self) -> int:
        """The next line's longest: a draw from LINE_SPAN within min_chars..max_chars."""
        low, high = LINE_SPAN
        return min(self._max_chars, max(self._min, self._spans.randint(low, high)))

    @property
    def done(self) -> bool:
        """The verse is whole: its k-th line's newline came."""
        return self._done

    def cut(self) -> int:
        """Characters advanced up to and including the newline that closed the last line."""
        return self._cut

    def allowed(self) -> Allowed:
        """What may come next (computed once per character, from shared masks)."""
        now = self._now
        if now is None:
            keyword = self._keyword_here()
            now = self._plan.head(keyword) if keyword else self._banned(self._compute())
            self._now = now
        return now

    def _keyword_here(self) -> str:
        """The keyword's character due next ("" none), the line's keyword chosen first where
        it is not yet."""
        if self._thread is None or self._count < self._thread.skip or self._done:
            return ""
        if self._planned != self._line:
            self._planned = self._line
            chosen = self._thread.choose(
                self._unwritten,
                self.lines - self._line,
                self._places,
                self._branch + self._line,
                close=self.lines >= themes.CLOSE_LINES,
            )
            self._keyword, self._at = chosen if chosen else ("", -1)
        offset = self._n - self._at
        return self._keyword[offset] if self._keyword and 0 <= offset < len(self._keyword) else ""

    def _places(self, word: str, strict: bool) -> list[int]:
        """The counts of the line's characters after which `word` may start: from here, so
        that it ends before the line's last (rhyming) character, not at a head's place."""
        if any(c not in self._plan.han for c in word):
            return []
        if self._thread and word not in self._thread.users and self._seen.intersection(word):
            return []  # a related word the verse has written already gives way
        first = self._n
        if self._n == 0 and self._heads and word[0] != self._heads[self._line]:
            first = 1
        return list(range(first, self._max - len(word)))

    def _pending(self) -> bool:
        """Whether the line's keyword is still to be written."""
        return bool(self._keyword) and self._n < self._at + len(self._keyword)

    def _banned(self, allowed: Allowed) -> Allowed:
        """`allowed` with the characters already in the verse banned, once it has reused its
        budget (never an acrostic head, nor where the ban would leave too little), and the
        line's keyword banned until it is written (never at a head)."""
        at_head = self._n == 0 and bool(self._heads)
        extra = frozenset(self._keyword) if self._pending() and not at_head else frozenset()
        if self._budget is None or self._repeats < self._budget or self._done or at_head:
            return replace(allowed, banned=allowed.banned | extra) if extra else allowed
        banned = reuse_ban(self._seen, self._previous, self._doubled)
        chars = allowed.required[0]
        if len(chars) < len(banned) + MIN_LEFT and len(chars - banned) < MIN_LEFT:
            banned = set()
        return replace(allowed, banned=frozenset(banned) | extra)

    def _compute(self) -> Allowed:
        plan = self._plan
        if self._done:
            return plan.mask(plan.nl)
        n = self._n
        target = self._target
        can_end = n >= self._min and self._last in target and not self._pending()
        if n >= self._max - 1:  # max_chars >= 2, so this line has a character
            if can_end:
                return plan.mask(plan.nl) if n >= self._max else plan.mask(target, plan.nl)
            return plan.mask(target)
        if n == 0:
            return plan.head(self._heads[self._line]) if self._heads else plan.mask(plan.han)
        if self._last == " ":
            return plan.mask(plan.han)
        if can_end:
            return plan.mask(plan.han, plan.space, plan.nl)
        return plan.mask(plan.han, plan.space)

    def advance(self, ch: str) -> None:
        """`ch` came next: a prompt's character (any) or a sampled one."""
        self._count += 1
        self._now = None
        if self._done:
            return
        self._previous, self._doubled, reused = after(self._seen, self._previous, ch)
        self._repeats += reused
        if ch == "\n":
            if self._n:
                self._close_line()
            self._n = 0
            self._last = ""
            return
        if not ch.isspace():
            self._n += 1
        self._last = ch

    def _close_line(self) -> None:
        self._end_theme_line()
        if self.rhyme_class is None:
            name = lyrics.rhyme_class(self._last, self._plan.readings.usual)
            if name in self._plan.classes:
                self.rhyme_class = name
                self._target = self._plan.classes[name]
        self._line += 1
        self._cut = self._count
        self._max = self._span()
        if self._line >= self.lines:
            self._done = True
