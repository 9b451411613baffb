"""A style's unit when no form shapes it: text that ends where the corpus's pieces end.

`paragraph`: up to the first blank line after some text (a speech of a play, a stanza);
`line`: up to the first line break after some text (a Tang poem in its one-poem-a-line
corpus); `lines`: a given number of lines. A newline never starts the text. When the length
runs out first, the poem is cut at its last whole line.

A theme (`themes.Thread`): each line starts with its keyword (after the acrostic's head,
where there is one), the plan's words in order; a paragraph does not end before the user's
words are written.
"""

from __future__ import annotations

from bot.forms import themes
from bot.forms.rules import ANYTHING, Allowed

UNITS = ("paragraph", "line")
_NEWLINE = frozenset("\n")


class UnitWriter(themes.Keyed):
    def __init__(
        self,
        unit: str,
        lines: int | None = None,
        heads: tuple[frozenset[str], ...] = (),
        thread: themes.Thread | None = None,
    ):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
        self.unit = unit
        self.form = None
        self._lines = len(heads) if heads else lines  # None: as the unit says
        self._heads = heads
        self._fed = 0
        self._whole = 0  # characters up to the last line break that closed a line of text
        self._line = ""  # the line being written
        self._count = 0  # lines closed
        self._done = False
        self._start_theme(thread, 0)

    @property
    def done(self) -> bool:
        return self._done

    def cut(self) -> int:
        return self._whole

    def allowed(self) -> Allowed:
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
        return ANYTHING

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
        if self._line.strip():
            self._count += 1
            self._whole = self._fed
        self._end_theme_line()
        ended = (
            (self._lines is not None and self._count >= self._lines)
            or (self._lines is None and self.unit == "line" and self._count > 0)
            or (self._lines is None and not self._line and self._count > 0)  # a blank line
        )
        self._line = ""
        self._done = ended
