"""Writing Tang regulated verse character by character: shape, acrostic, rhyme and tone as
masks one character ahead (bot/forms/rules.py's contract).

Every rule of FORMS.md that `tang.check` checks can be kept this way, so none needs lines
written twice: the shape fixes where `，` and `。` go; an acrostic fixes each clause's first
character; the tone pattern (`tang.pattern`, chosen by whether clause 1's second character is
level) fixes the tone at positions 2, 4 (and 6) and at each clause's end; and the rhyme is
kept by the first rhyme character choosing the level-tone groups, and each later one coming
from those groups (shared by all so far), never repeating. The first rhyme character is
chosen only from groups with at least MIN_GROUP characters the model knows, so a 律詩's four
rhymes always find distinct characters. Tone positions are `preferred` (a poem may bend them
where the model knows no character that fits); shape, acrostic and rhyme are `required`.

Rhyme groups are those of each character's usual reading when the bundle ships a table of
them (`tang.Readings`, from its corpus's poems), else every group the 平水韻 lists it under.

No worn-out repeats: a character already in the poem (the prompt's included), or heading a
later clause of the acrostic, is `banned`, except an immediate doubling (蕭蕭, never 蕭蕭蕭).
The ban never breaks a rule: an acrostic head is written even if used, and where the ban
would leave a rhyme position fewer than MIN_RHYMES characters, only the rhymes used are banned.

A theme (`themes.Thread`): each clause holds one keyword of the plan, written where a word
may start (a two-character word at 0, 2, 3 of five or 0, 2, 4, 5 of seven; one character
anywhere), each of its characters keeping the clause's rules: the tone of its position, the
rhyme at a rhyme clause's end, the acrostic's head at the start (the head wins: a keyword
starts there only if it begins with the head). A keyword that fits nowhere in the clause (or a
related word whose characters the poem has already) gives way to the next of the plan; a
user's word may bend a tone only where the clauses left are
no more than the user's words still to write. The keyword's characters are exempt from the
reuse ban where it stands and banned elsewhere in its clause. Each candidate of a line (the
engine's `branch`) takes another of the keyword's places.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from bot.forms import tang, themes
from bot.forms.rules import Allowed
from bot.forms.tang import PING, ZE, TangForm

COMMA, STOP = "，", "。"
MIN_GROUP = 12  # characters the model knows in a group the first rhyme may choose
MIN_RHYMES = 3  # rhymes a position keeps after the reuse ban (else only used rhymes are banned)


@functools.cache
def _sets(vocab: frozenset[str], readings: tang.Readings) -> dict[str, frozenset[str]]:
    """The vocabulary's ideographs, and those that fit each tone."""
    han = frozenset(c for c in vocab if len(c) == 1 and tang.is_ideograph(c))
    return {
        "han": han,
        PING: frozenset(c for c in han if tang.fits(c, PING)),
        ZE: frozenset(c for c in han if tang.fits(c, ZE)),
        "first_rhyme": frozenset(
            c
            for c in han
            if any(len(readings.group_chars(g) & han) >= MIN_GROUP for g in readings.groups(c))
        ),
    }


@functools.cache
def _rhymes(
    groups: frozenset[str], vocab: frozenset[str], readings: tang.Readings
) -> frozenset[str]:
    """The known characters of any of `groups`: each shares a group with every rhyme so far."""
    han = _sets(vocab, readings)["han"]
    return frozenset().union(*(readings.group_chars(g) for g in groups)) & han


_PUNCTUATION = {COMMA: frozenset(COMMA), STOP: frozenset(STOP)}
_NOTHING: frozenset[str] = frozenset()


class TangWriter(themes.Keyed):
    """One regulated poem of `form`, its tone pattern starting level or oblique, with an
    acrostic's candidates per clause (each a set of characters the model knows; the likeliest
    is taken where there are several, e.g. 發 and 髮 for a typed 发); `readings` the usual
    rhyme groups (default: the table's)."""

    def __init__(
        self,
        vocab: frozenset[str],
        form: TangForm,
        level_start: bool,
        heads: Sequence[frozenset[str]] = (),
        readings: tang.Readings = tang.TABLE_READINGS,
        thread: themes.Thread | None = None,
        seed: int = 0,
    ) -> None:
        self.vocab = vocab
        self.form = form.name
        self._form = form
        self._readings = readings
        self._pattern = tang.pattern(form, level_start)
        self._rhyme_clauses = frozenset(tang.rhyme_clauses(form))
        self._sets = _sets(vocab, readings)
        self._heads = tuple(heads)
        self._clause = 0
        self._position = 0  # within the clause; == chars: its punctuation comes next
        self._groups: frozenset[str] | None = None
        self._used: set[str] = set()  # rhyme characters written
        self._seen: set[str] = set()  # every ideograph written
        self._previous = ""  # the ideograph just written ("" after punctuation)
        self._doubled = False  # it doubled the one before it
        self._fed = 0
        self._whole = 0  # characters up to the last couplet's 。
        self._done = False
        self._start_theme(thread, seed)

    @property
    def done(self) -> bool:
        return self._done

    def cut(self) -> int:
        return self._whole

    def last_of_line(self) -> bool:
        """Whether the clause's last character comes next (for `lines.LineGuard`)."""
        return not self._done and self._position == self._form.chars - 1

    def allowed(self) -> Allowed:
        if self._done:
            return Allowed(required=(_NOTHING,))
        chars = self._form.chars
        if self._position == chars:
            return Allowed(required=(_PUNCTUATION[COMMA if self._clause % 2 == 0 else STOP],))
        tone = self._pattern[self._clause][self._position]
        keyword = self._keyword_here()
        if keyword:
            tones = self._sets[tone] if tone else None
            return self._keyword_allowed(keyword, tones, self._clause, self._position)
        if self._position == 0 and self._clause < len(self._heads):
            return Allowed(required=(self._heads[self._clause],), greedy=True)
        required = [self._sets["han"]]
        banned = self._reused()
        banned.update(self._keyword)
        last = self._position == chars - 1
        if last and self._clause in self._rhyme_clauses:
            rhymes = self._rhymes_now()
            required.append(rhymes)
            banned |= self._used
            if len(rhymes) < len(banned) + MIN_RHYMES and len(rhymes - banned) < MIN_RHYMES:
                banned = self._used
        if tone is None:
            return Allowed(required=tuple(required), banned=frozenset(banned))
        return Allowed(
            required=tuple(required),
            banned=frozenset(banned),
            preferred=(self._sets[tone],),
            relax=f"tone at clause {self._clause + 1}, position {self._position + 1}",
        )

    def _keyword_here(self) -> str:
        """The keyword's character due at this position ("" none), the clause's keyword
        chosen first where it is not yet."""
        if self._thread is None or self._fed < self._thread.skip:
            return ""
        if self._planned != self._clause:
            self._planned = self._clause
            chosen = self._thread.choose(
                self._unwritten,
                self._form.lines - self._clause,
                self._places,
                self._branch + self._clause,
            )
            self._keyword, self._at = chosen if chosen else ("", -1)
        offset = self._position - self._at
        return self._keyword[offset] if self._keyword and 0 <= offset < len(self._keyword) else ""

    def _places(self, word: str, strict: bool) -> list[int]:
        """Where in this clause, from the position reached, `word` may start keeping every
        rule (without `strict`, bending tones); nowhere for a related word whose characters
        the poem has written already."""
        chars, clause = self._form.chars, self._clause
        if self._thread and word not in self._thread.users and self._seen.intersection(word):
            return []  # a related word the poem has written already gives way
        starts = range(chars) if len(word) == 1 else themes.word_starts(chars, True)
        tones = self._pattern[clause]
        places = []
        for start in starts:
            if start < self._position or start + len(word) > chars:
                continue
            fits = True
            for i, ch in enumerate(word):
                p = start + i
                tone = tones[p]
                fits = fits and ch in self._sets["han"]
                if p == 0 and clause < len(self._heads):
                    fits = fits and ch in self._heads[clause]
                if p == chars - 1 and clause in self._rhyme_clauses:
                    fits = fits and ch in self._rhymes_now() and ch not in self._used
                if strict and tone is not None:
                    fits = fits and ch in self._sets[tone]
            if fits:
                places.append(start)
        return places

    def _rhymes_now(self) -> frozenset[str]:
        if self._groups is None:
            return self._sets["first_rhyme"]
        return _rhymes(self._groups, self.vocab, self._readings)

    def _reused(self) -> set[str]:
        """The characters no position but an acrostic head may take: those in the poem and
        later clauses' heads, less the one just written unless it was itself a doubling (a
        set of its own, for the caller to add to: built at every character of every
        candidate row, so copied once)."""
        banned = tang.reuse_ban(self._seen, self._previous, self._doubled)
        banned.update(*self._heads[self._clause + 1 :])
        return banned

    def advance(self, ch: str) -> None:
        self._fed += 1
        if self._done:
            return
        self._previous, self._doubled, _ = tang.after(self._seen, self._previous, ch)
        chars = self._form.chars
        if self._position == chars or ch in _PUNCTUATION:
            # A clause ends (where the shape puts its mark, or early in a prompt that breaks
            # the shape: carry on from the next clause).
            self._clause += 1
            self._position = 0
            if self._clause % 2 == 0:
                self._whole = self._fed
            self._end_theme_line()
            if self._clause == self._form.lines:
                self._done = True
            return
        if self._position == chars - 1 and self._clause in self._rhyme_clauses:
            groups = self._readings.groups(ch)
            self._groups = groups if self._groups is None else (self._groups & groups) or groups
            self._used.add(ch)
        self._position += 1
