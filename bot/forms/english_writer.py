"""English writers: the state machines that keep a play-trained model to real words, and to the
speech, the sonnet and the couplet, one character ahead.

The engine asks `EnglishWriter.allowed()` before every character and tells `advance(ch)` which
one came (the prompt's characters first). The rules, all kept by masks:

Words (every shape). A word is what `english.words` makes a token of: ASCII letters with
single apostrophes inside ("o'er"); a leading apostrophe is not part of it, a trailing one
ends it. Inside a word the next letter (either case) must continue a word of the lexicon
(`Trie.next_chars`), and a non-letter may follow only when the letters so far are a whole
word; at a word start the letters are those that begin some word. Only words whose every
letter the vocabulary has (in some case) are offered. A prompt's word outside the lexicon is
let finish freely (any letters, up to `MAX_FREE_WORD`, then any non-letter).

Gaps. Between words come spaces, ASCII punctuation and (in a speech) digits and newlines;
never the unknown character or non-ASCII symbols. At most `MAX_GAP` non-letters in a row
within a line, so a poem always moves on.

speech: the text up to the first blank line after at least one line of speech (a leading
`NAME:` line, as the plays head a speech, is not one: `english.poem_lines` decides); a newline
is not allowed before that, nor after a line of only spaces. `done` after the "\\n\\n". With an
acrostic the poem is one line per head letter, each line's first character that letter
(either case), no blank lines, and `done` after the last line's newline.

sonnet and couplet: 14 (2) lines of `LINE_MIN`..`LINE_MAX` syllables (`Lexicon.syllables`),
rhyming ABAB CDCD EFEF GG (the couplet's two lines rhyme). With s the syllables of the line's
finished words, a word may start when it is "ordinary", s + syllables <= `ORDINARY_MAX`, or
"final", `LINE_MIN` <= s + syllables <= `LINE_MAX`, and then also rhyming: on a line whose rhyme
partner is written (the B-line of a pair), a word of the partner's CMU rhyme other than the
partner; otherwise a word whose rhyme has at least `RHYME_MATES` other spellable words of 1-3
syllables. After a final word only punctuation (at most `MAX_END_PUNCT` characters) and then
"\\n" may come, and "\\n" only there; no space or newline starts a line. `done` after the
last line's newline.

Why no state is a dead end (the constructor refuses a lexicon or acrostic for which this
fails): a word is offered only through a trie of words that are allowed whole, so every prefix
either continues by a letter the vocabulary has or is a whole word after which a non-letter
may come; the vocabulary has " " and "\\n" (checked). In a line with s <= 7 a one-syllable
ordinary word exists (checked), which leads to s + 1 <= 8; at s = 8 only final words of 1-3
syllables fit, and those exist: on an A-line by the rhyme-mates rule, which the constructor
checks some word meets; on a B-line because its partner met that rule, so at least 3 other
words of its rhyme have 1-3 syllables. A B-line whose partner came from the prompt with
too few mates falls back to the A-line rule (its rhyme is the prompt's to break). An acrostic
head must begin an ordinary word. A prompt that leaves s >= `LINE_MIN` mid-line leaves the
line's end (punctuation, "\\n") open; its words outside the lexicon finish freely.

Endings and substance (issue 22). No word is written in capitals (a letter after a capital
inside a word is lower case: no speaker tag such as "ROMEO" fused into the verse). A speech
(no acrostic) is SPEECH_MIN to SPEECH_MAX lines and ends a sentence: its blank line may come
only after SPEECH_MIN lines (sooner only when the length leaves no room) and after a line that
ends in ., ! or ?; its last possible line may end only after one; and within a line, ":" may
not follow a speaker's name ("Romeo:") after the first line. Nearing `length` (all characters
advanced, the prompt's included): within END_SOON characters a line may end only after a
sentence end, and after such a line the speech ends; within END_NOW characters a word may be
followed only by ., ! or ?, and that by the line's end. An acrostic speech's last line ends
a sentence too. A sonnet or couplet starts every line with a capital, ends its last line with
a full stop, never names a character of the plays (`names`, left out of its words), and uses
no content word (`english.STOP_WORDS` aside) twice: a word already used may not end where a
longer word can continue it, nor its last letter come where another letter may (masks with
no dead end), and `penalty` is infinite for a line that repeats one anyway. No poem writes a
line twice: a speech's line may not end while it repeats an earlier one, and `penalty` is
infinite for a line that does (the engine's candidates drop it).

A theme (`themes.Thread`): each line holds one keyword of the plan as one of its first words
(never first on a line an acrostic heads unless it begins with the head: the head wins).
Until it is written the line may not end, and on a sonnet or couplet line the words before it
leave room for its syllables (only ordinary words, of a budget less the keyword's); it is
written where its place comes, or where that room runs out, as an ordinary word (a line's rhyme
word stays the rhyme's). The plan's words are not written elsewhere in a sonnet or couplet (they
count as used), but a sonnet's last line takes a user's word again (the poem ends on its
subject; a couplet is too short to come back to it). A speech has at least as many lines as
the user's words. Each candidate of a line (the engine's `branch`) starts the keyword at
another word of the line.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import defaultdict
from collections.abc import Iterable

from bot.forms import themes
from bot.forms.english import (
    SENTENCE_ENDS,
    SONNET_PAIRS,
    STOP_WORDS,
    Lexicon,
    Trie,
    is_name,
    owner,
    poem_lines,
    words,
)
from bot.forms.rules import Allowed, FormError

SHAPES: tuple[str, ...] = ("speech", "sonnet", "couplet")
LINES: dict[str, int] = {"sonnet": 14, "couplet": 2}
ORDINARY_MAX = 8  # an ordinary word leaves at most this many syllables on the line
LINE_MIN = 9  # syllables of a line in metre, inclusive
LINE_MAX = 11
RHYME_MATES = 3  # other 1-3 syllable words an A-line's rhyme word needs
MATE_SYLLABLES = 3
MAX_GAP = 4  # non-letters in a row within a line
MAX_END_PUNCT = 3  # characters after a line's final word before its newline
MAX_FREE_WORD = 24  # letters of a prompt's word outside the lexicon before a non-letter
KEYWORD_PLACES = 4  # a line's keyword is one of its first this many words
SPEECH_MIN, SPEECH_MAX = 4, 14  # lines of a speech (the corpus's longer speeches)
END_SOON = 120  # characters left: a line ends only at a sentence's end, and the speech there
END_NOW = 48  # characters left: the next word ends the sentence
_SPEAKER_TAG = re.compile(r"[A-Z][A-Za-z'.-]*(?: +(?:[A-Z][A-Za-z'.-]*|of|the|and)){0,4}")

# Line index (0-based) of each B-line -> its A-line, the partner whose rhyme it must take.
PARTNERS: dict[str, dict[int, int]] = {
    "sonnet": {j - 1: i - 1 for i, j in SONNET_PAIRS},
    "couplet": {1: 0},
    "speech": {},
}

_EMPTY: frozenset[str] = frozenset()
_LETTERS = frozenset(string.ascii_letters)
_LOWER = frozenset(string.ascii_lowercase)
_APOSTROPHE = frozenset("'")
_NO_TRIE = Trie(())
_ACTIVE, _FULL, _FREE = 0, 1, 2  # how a word in progress is masked (see EnglishWriter)
_ANY, _UPPER, _LOWER_ONLY = 0, 1, 2  # the case of the letters a mask offers


def _has(trie: Trie, prefix: str) -> bool:
    """Whether `prefix` (lowercase, maybe ending in one apostrophe) is on a path of `trie`: it
    continues into a word, or it is a whole word (with the apostrophe as its closing mark)."""
    if trie.next_chars(prefix):
        return True
    return trie.is_word(prefix[:-1] if prefix.endswith("'") else prefix)


class _Plan:
    """What one (lexicon, vocabulary, words left out) offers every writer, built once and
    shared: the spellable words, their syllables and rhymes, tries by syllable budget and by
    rhyme, and the masks (one `Allowed`, with one interned set, per distinct situation)."""

    def __init__(self, lexicon: Lexicon, vocab: frozenset[str], leave_out: frozenset[str]) -> None:
        self.lexicon = lexicon
        self.vocab = vocab
        kept = [
            w
            for w in lexicon.words
            if not is_name(w, leave_out) and all(c in vocab or c.upper() in vocab for c in w)
        ]
        self.trie = lexicon.trie if len(kept) == len(lexicon.words) else Trie(kept)
        self.syllables = {w: lexicon.syllables(w) for w in kept}
        members: dict[str, list[str]] = defaultdict(list)
        for word in sorted(kept):
            part = lexicon.rhyme(word)
            if part is not None:
                members[part].append(word)
        self.classes = {part: tuple(ws) for part, ws in members.items()}
        short = {p: sum(self._short(w) for w in ws) for p, ws in members.items()}
        self.open_finals = tuple(
            w for p, ws in members.items() for w in ws if short[p] - self._short(w) >= RHYME_MATES
        )
        punct = frozenset(string.punctuation) & vocab
        space = frozenset(" ") & vocab
        self.nl = frozenset("\n") & vocab
        self.line_start = punct  # before a sonnet line's first word: no space, no newline
        self.gap = punct | space  # between a sonnet line's words
        self.end = punct | self.nl  # after a sonnet line's final word
        self.sep_no_colon = (punct - {":"} | space | frozenset(string.digits)) & vocab
        self.sep = (punct | space | frozenset(string.digits)) & vocab  # a speech's gaps
        self.sep_nl = self.sep | self.nl
        # A vocabulary without them: a line may end anyhow (no dead end).
        self.stops = SENTENCE_ENDS & vocab or self.sep_nl
        self.period = frozenset(".") & vocab or self.nl
        self._ordinary: dict[int, Trie] = {}
        self._finals: dict[tuple[int, str | None], Trie] = {}
        self._masks: dict[tuple[frozenset[str], frozenset[str], frozenset[str], int], Allowed] = {}
        self._heads: dict[tuple[frozenset[str], frozenset[str], str, int], Allowed] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def _short(self, word: str) -> bool:
        return 1 <= self.syllables[word] <= MATE_SYLLABLES

    def ordinary(self, budget: int) -> Trie:
        """The trie of spellable words of at most `budget` syllables (cached)."""
        trie = self._ordinary.get(budget)
        if trie is None:
            trie = Trie(w for w, n in self.syllables.items() if n <= budget)
            self._ordinary[budget] = trie
        return trie

    def finals(self, s: int, partner: str | None) -> Trie:
        """The trie of final words for a line with `s` syllables so far: the words that bring
        it to LINE_MIN..LINE_MAX and rhyme with `partner` (not being it), or, with no partner,
        those of a rhyme with enough mates (cached by (s, partner))."""
        key = (s, partner)
        trie = self._finals.get(key)
        if trie is None:
            if partner is None:
                pool: Iterable[str] = self.open_finals
            else:
                pool = self.classes.get(self.lexicon.rhyme(partner) or "", ())
            low, high = LINE_MIN - s, LINE_MAX - s
            trie = Trie(w for w in pool if w != partner and low <= self.syllables[w] <= high)
            if len(self._finals) >= 4096:  # masks are interned by content, so a rebuild is safe
                self._finals.clear()
            self._finals[key] = trie
        return trie

    def _intern(self, chars: frozenset[str]) -> frozenset[str]:
        return self._sets.setdefault(chars, chars)

    def _cased(self, letters: frozenset[str], case: int = _ANY) -> frozenset[str]:
        """Lowercase trie characters -> those characters in `case` (_ANY: either) that the
        vocabulary has."""
        if case == _UPPER:  # capitals, where the vocabulary has any of them
            forms = [low.upper() for low in letters if low.upper() in self.vocab]
            forms = forms or [c for low in letters for c in (low, low.upper())]
        elif case == _LOWER_ONLY:
            forms = list(letters)
        else:
            forms = [c for low in letters for c in (low, low.upper())]
        return frozenset(c for c in forms if c in self.vocab)

    def mask(
        self, a: frozenset[str], b: frozenset[str], extra: frozenset[str], case: int = _ANY
    ) -> Allowed:
        """Allowed: a letter of `a` or `b` (lowercase trie sets, in `case`) or a character of
        `extra` (a non-letter set of this plan)."""
        key = (a, b, extra, case)
        got = self._masks.get(key)
        if got is None:
            got = Allowed(required=(self._intern(self._cased(a | b, case) | extra),))
            self._masks[key] = got
        return got

    def head(self, a: frozenset[str], b: frozenset[str], letter: str, case: int = _ANY) -> Allowed:
        """Allowed: the acrostic head `letter` (in `case`), as a letter of `a` or `b`."""
        key = (a, b, letter, case)
        got = self._heads.get(key)
        if got is None:
            got = Allowed(required=(self._intern(self._cased((a | b) & {letter}, case)),))
            self._heads[key] = got
        return got


@functools.lru_cache(maxsize=8)
def _plan(lexicon: Lexicon, vocab: frozenset[str], leave_out: frozenset[str]) -> _Plan:
    """The shared plan of a lexicon (by identity), a vocabulary and the words left out."""
    return _Plan(lexicon, vocab, leave_out)


@functools.lru_cache(maxsize=256)
def _keyword_trie(word: str) -> Trie:
    """A trie of one word: the only word that may start where a line's keyword is due."""
    return Trie((word,))


def prepare(lexicon: Lexicon, vocab: frozenset[str], names: frozenset[str] = frozenset()) -> None:
    """Build ahead what the first sonnet or couplet of this lexicon, vocabulary and names would
    build on its way (the ordinary tries of every syllable budget and the A-line final tries):
    about 5 s for the full CMU lexicon, 0.2 s for a corpus's own words. Optional."""
    plan = _plan(lexicon, frozenset(vocab), frozenset(names))
    for s in range(ORDINARY_MAX + 1):
        plan.ordinary(ORDINARY_MAX - s)
        plan.finals(s, None)


def _heads(acrostic: str | None, shape: str, vocab: frozenset[str]) -> tuple[str, ...]:
    """The acrostic's head letters, lowercased; FormError for ones that cannot work."""
    if acrostic is None:
        return ()
    if not acrostic:
        raise FormError("The acrostic is empty: give one letter for each line.")
    odd = sorted({c for c in acrostic if c not in _LETTERS})
    if odd:
        shown = " ".join(repr(c) for c in odd)
        raise FormError(
            f"An acrostic takes only the letters A-Z, one per line; {acrostic!r} also has "
            f"{shown}. Leave out spaces, digits and punctuation."
        )
    want = LINES.get(shape)
    if want is not None and len(acrostic) != want:
        raise FormError(
            f"A {shape}'s acrostic needs exactly {want} letters, one per line; {acrostic!r} "
            f"has {len(acrostic)}."
        )
    for c in acrostic:
        if c.lower() not in vocab and c.upper() not in vocab:
            raise FormError(
                f"This model never writes the letter {c!r} in either case; choose an acrostic "
                "without it."
            )
    return tuple(c.lower() for c in acrostic)


class EnglishWriter(themes.Keyed):
    """One English poem's rules as a state machine (the module docstring has the rules).

    `shape` is "speech" (a play's unit: up to a blank line), "sonnet" or "couplet"; `acrostic`
    gives each line's first letter; `seed` is accepted for symmetry with the other writers (no
    choice here is random); `names` are the characters' names a sonnet or couplet may not
    write; `length` bounds the characters advanced, the prompt's included (None: no bound to
    steer by). The constructor raises FormError for options that cannot work.
    """

    def __init__(
        self,
        lexicon: Lexicon,
        vocab: frozenset[str],
        shape: str = "speech",
        acrostic: str | None = None,
        seed: int = 0,
        names: frozenset[str] = frozenset(),
        length: int | None = None,
        thread: themes.Thread | None = None,
    ) -> None:
        if shape not in SHAPES:
            raise FormError(f"Unknown English form {shape!r}: choose one of {', '.join(SHAPES)}.")
        if "\n" not in vocab or " " not in vocab:
            raise FormError("This model cannot write lines of words (it lacks space or newline).")
        self._metred = shape != "speech"
        leave_out = frozenset(names) if self._metred else frozenset()
        self._plan = plan = _plan(lexicon, frozenset(vocab), leave_out)
        self._shape = shape
        self.form = shape  # named in the reply's footer
        self._heads = _heads(acrostic, shape, plan.vocab)
        self._total = LINES.get(shape, len(self._heads) or None)
        self._most = self._total or SPEECH_MAX  # lines at most
        users = len(thread.users) if thread else 0
        self._fewest = self._total or max(SPEECH_MIN, users)  # lines before the poem may end
        self._length = length
        self._pairs = PARTNERS[shape]
        self.seed = seed
        if self._metred:
            if not plan.ordinary(1):
                raise FormError(f"This model's lexicon has no one-syllable word: no {shape}.")
            if not plan.finals(ORDINARY_MAX, None):
                raise FormError(f"This model's lexicon has too few rhymes for a {shape}.")
        starts = (plan.ordinary(ORDINARY_MAX) if self._metred else plan.trie).next_chars("")
        for c in self._heads:
            if c not in starts:
                raise FormError(
                    f"No word this model knows starts with {c.upper()!r}; choose an acrostic "
                    "without it."
                )
        self._count = 0  # characters advanced
        self._cut = 0  # characters up to the last newline that closed a line
        self._done = False
        self._line = 0  # lines of the poem closed (a leading speaker line not counted)
        self._seen_first = False  # the first non-empty line has been checked for a speaker
        self._line_chars: list[str] = []
        self._content = False  # the current line has a non-space character
        self._s = 0  # syllables of the current line's finished words
        self._last: str | None = None  # the current line's last finished word
        self._finals: list[str | None] = []  # each closed line's last word
        self._partner: str | None = None
        self._run = 0  # non-letters in a row on this line
        self._word = ""  # the word in progress, lowercase ("" in a gap)
        self._mode = _ACTIVE
        self._tries: tuple[Trie, Trie] = (plan.trie, _NO_TRIE)
        self._now: Allowed | None = None
        self._upper = False  # the last character was a capital letter
        self._sentence = False  # the last closed line of the poem ended a sentence
        self._used: set[str] = set()  # content words written (sonnet, couplet)
        self._lines: set[str] = set()  # the lines closed, as their words
        self._repeated = False  # the current line repeats a content word
        self._penalty = 0.0  # of the last closed line (see `penalty`)
        self._start_theme(thread, seed)
        if thread and self._metred:  # the plan's words, each kept for its own line
            self._used.update(owner(w) for w in thread.words if w not in STOP_WORDS)
        self._placed = False  # the line's keyword is written
        self._forcing = False  # the word in progress is the keyword
        self._words = 0  # words started on this line

    # --- the contract ---------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The poem is whole: the blank line after a speech, or its last line's newline."""
        return self._done

    def cut(self) -> int:
        """Characters advanced up to and including the newline that closed the last line."""
        return self._cut

    def penalty(self) -> float:
        """For the line just closed: infinite when it repeats an earlier line of the poem or
        (sonnet, couplet) a content word of it, else 0."""
        return self._penalty

    def allowed(self) -> Allowed:
        """What may come next (computed once per character, from shared masks)."""
        now = self._now
        if now is None:
            now = self._now = self._compute()
        return now

    # --- the theme ------------------------------------------------------------------------

    def _plan_line(self) -> None:
        """Choose the line's keyword where it is not chosen yet (after the prompt)."""
        thread = self._thread
        if thread is None or self._count < thread.skip or self._planned == self._line:
            return
        self._planned = self._line
        lines_left = None if self._total is None else self._total - self._line
        chosen = thread.choose(
            self._unwritten,
            lines_left,
            self._places,
            self._branch + self._line,
            close=self._metred and (self._total or 0) >= themes.CLOSE_LINES,
        )
        self._keyword, self._at = chosen if chosen else ("", -1)
        self._placed = False

    def _places(self, word: str, strict: bool) -> list[int]:
        """Which of the line's words (by index) `word` may be: one of the next
        KEYWORD_PLACES, with syllables to spare on a metred line, not first on a line an
        acrostic heads unless it begins with the head."""
        syllables = self._plan.syllables.get(word)
        if syllables is None or (self._metred and self._s + syllables > ORDINARY_MAX):
            return []
        first = self._words
        if first == 0 and self._heads and word[0] != self._heads[self._line]:
            first = 1
        return list(range(first, self._words + KEYWORD_PLACES))

    def _pending(self) -> bool:
        return bool(self._keyword) and not self._placed

    def _due(self) -> bool:
        """Whether the word starting now must be the keyword: its place has come, or on a
        metred line the room for it would run out, or a speech nears its end."""
        if self._words >= self._at:
            return True
        if self._metred:
            return ORDINARY_MAX - self._s - self._syllables(self._keyword) < 1
        return self._ending(END_SOON)

    def _word_tries(self) -> tuple[Trie, Trie]:
        """(ordinary, final) tries for a word starting now on a speech's line."""
        if self._pending() and self._due():
            return _keyword_trie(self._keyword), _NO_TRIE
        return self._plan.trie, _NO_TRIE

    def advance(self, ch: str) -> None:
        """`ch` came next: a prompt's character (any) or a sampled one."""
        self._count += 1
        self._now = None
        if self._done:
            return
        self._upper = ch.isupper()
        if ch in _LETTERS:
            self._letter(ch.lower())
            self._run = 0
        elif ch == "'" and self._word and not self._word.endswith("'"):
            self._extend(self._word + "'")  # inside a word ("o'er"), or closing it ("lovers'")
            self._run += 1
        else:
            if self._word:
                self._close_word()
            if ch == "\n":
                self._newline()
                return
            self._run += 1
        self._line_chars.append(ch)
        if not ch.isspace():
            self._content = True

    # --- masks ----------------------------------------------------------------------------

    def _compute(self) -> Allowed:
        plan = self._plan
        if self._done:
            return plan.mask(_EMPTY, _EMPTY, plan.nl)
        self._plan_line()
        if self._word:
            return self._in_word()
        if self._metred:
            return self._metred_gap()
        return self._speech_gap()

    def _left(self) -> int | None:
        """Characters left before the length runs out (None: no bound)."""
        return None if self._length is None else self._length - self._count

    def _ending(self, within: int) -> bool:
        """Whether a speech without an acrostic is within `within` characters of its bound."""
        left = self._left()
        return not self._metred and not self._heads and left is not None and left <= within

    def _last_line(self) -> bool:
        return self._line >= self._most - 1

    def _tail(self, word: str) -> frozenset[str]:
        """The non-letters that may close `word` (finished) where the tries do not say."""
        plan = self._plan
        if not self._metred:
            if self._ending(END_NOW):
                return plan.stops
            return plan.sep_nl if self._may_break() else plan.sep
        if self._s + self._syllables(word) <= ORDINARY_MAX:
            return plan.gap
        return plan.period if self._last_line() else plan.end

    def _in_word(self) -> Allowed:
        plan = self._plan
        word = self._word
        base = word[:-1] if word.endswith("'") else word
        case = _LOWER_ONLY if self._upper else _ANY  # no word in capitals
        if self._mode == _FREE:
            letters = _LOWER if len(word) < MAX_FREE_WORD else _EMPTY
            return plan.mask(letters, _EMPTY, self._tail(base))
        if self._mode == _FULL:
            tail = self._tail(base) if plan.trie.is_word(base) else _EMPTY
            return plan.mask(plan.trie.next_chars(word), _EMPTY, tail, case)
        ordinary, final = self._tries
        a, b = ordinary.next_chars(word), final.next_chars(word)
        used = owner(base) in self._used
        if used and ("'" in a or "'" in b) and (a | b) - _APOSTROPHE:
            # nor its possessive, where another word may come ("world's" after "world")
            a, b = a - _APOSTROPHE, b - _APOSTROPHE
        if (a or b) and used:
            tail = _EMPTY  # a content word used already: only a longer word may come
        elif ordinary.is_word(base):
            tail = plan.gap if self._metred else self._tail(base)
        elif final.is_word(base):
            tail = self._tail(base)
        else:
            tail = _EMPTY
        if self._used:  # nor the letter that would finish one, where another may come
            spent = frozenset(
                c
                for c in a | b
                if owner(word + c) in self._used
                and not (ordinary.next_chars(word + c) or final.next_chars(word + c))
            )
            if spent and ((a | b) - spent or tail):
                a, b = a - spent, b - spent
        return plan.mask(a, b, tail, case)

    def _metred_gap(self) -> Allowed:
        plan = self._plan
        if self._s >= LINE_MIN:
            if self._last_line():  # the poem's last line ends with a full stop
                stopped = self._line_chars[-1:] == ["."]
                return plan.mask(_EMPTY, _EMPTY, plan.nl if stopped else plan.period)
            return plan.mask(_EMPTY, _EMPTY, plan.end if self._run < MAX_END_PUNCT else plan.nl)
        ordinary, final = self._start_tries()
        a, b = ordinary.next_chars(""), final.next_chars("")
        line_start = not self._line_chars
        case = _UPPER if not any(c in _LETTERS for c in self._line_chars) else _ANY
        if line_start and self._heads:
            return plan.head(a, b, self._heads[self._line], _UPPER)
        if self._run >= MAX_GAP:
            return plan.mask(a, b, _EMPTY, case)
        return plan.mask(a, b, plan.line_start if line_start else plan.gap, case)

    def _speech_gap(self) -> Allowed:
        plan = self._plan
        a = self._word_tries()[0].next_chars("")
        line_start = not self._line_chars
        if line_start and self._heads:
            return plan.head(a, _EMPTY, self._heads[self._line])
        if line_start and self._line >= 1 and not self._heads:
            # The blank line that ends a speech: after a sentence's end, and enough lines or
            # too little room for more; at the most lines, nothing else.
            if self._sentence and (self._line >= self._fewest or self._ending(END_SOON)):
                return plan.mask(_EMPTY, _EMPTY, plan.nl)
            return plan.mask(a, _EMPTY, plan.sep)
        newline = self._may_break()
        if self._ending(END_NOW) and self._content:  # the sentence ends with the next word
            return plan.mask(_EMPTY, _EMPTY, plan.nl) if newline else plan.mask(a, _EMPTY, _EMPTY)
        sep = plan.sep
        if self._seen_first and _SPEAKER_TAG.fullmatch("".join(self._line_chars).strip()):
            sep = plan.sep_no_colon  # no speaker's tag ("Romeo:") inside the speech
        if self._run >= MAX_GAP:
            return plan.mask(a, _EMPTY, plan.nl if newline else _EMPTY)
        return plan.mask(a, _EMPTY, plan.sep_nl if newline and sep is plan.sep else sep)

    def _may_break(self) -> bool:
        """Whether a speech's line may end now, by a newline in a gap or right after a word:
        it has text, its keyword is written, `_may_end_line` allows it, and an acrostic's
        first line does not read as a speaker's ("O FEAR:"), which the checker
        (`poem_lines`) would not count as a line of the poem."""
        if not self._content or self._pending() or not self._may_end_line():
            return False
        return not (self._heads and not self._seen_first) or bool(
            poem_lines("".join(self._line_chars))
        )

    def _may_end_line(self) -> bool:
        """Whether a speech's line with text may end now: not while it repeats an earlier
        line, and on its last possible line (or near the length) only after a sentence's
        end."""
        line = "".join(self._line_chars)
        if " ".join(words(line)) in self._lines:
            return False
        last = self._heads and self._line == len(self._heads) - 1
        if last or (not self._heads and (self._last_line() or self._ending(END_SOON))):
            return line.rstrip()[-1:] in SENTENCE_ENDS
        return True

    # --- state ----------------------------------------------------------------------------

    def _syllables(self, word: str) -> int:
        count = self._plan.syllables.get(word)
        return self._plan.lexicon.syllables(word) if count is None else count

    def _start_tries(self) -> tuple[Trie, Trie]:
        """(ordinary, final) word tries for a word starting now on a metred line: while the
        line's keyword is to come, it (when due) or ordinary words that leave it room."""
        plan = self._plan
        if self._pending():
            if self._due():
                return _keyword_trie(self._keyword), _NO_TRIE
            room = ORDINARY_MAX - self._s - self._syllables(self._keyword)
            return plan.ordinary(room), _NO_TRIE
        return plan.ordinary(ORDINARY_MAX - self._s), plan.finals(self._s, self._partner)

    def _letter(self, c: str) -> None:
        if self._word:
            self._extend(self._word + c)
            return
        self._mode = _ACTIVE
        # The word's tries are the ones the gap before it allowed: chosen while `_words` still
        # counts the words before it (whether the keyword is due depends on that count).
        self._forcing = self._pending() and self._due()
        if not self._metred:
            self._tries = self._word_tries()
        elif self._s <= ORDINARY_MAX:
            self._tries = self._start_tries()
        else:
            self._mode = _FULL  # a prompt's word after the line's final word
        self._words += 1
        self._extend(c)

    def _extend(self, word: str) -> None:
        """The word in progress is now `word`: fall back from the shape's tries to the whole
        lexicon, and from that to a free word, when it leaves them (only a prompt can)."""
        self._word = word
        mode = self._mode
        if mode == _ACTIVE and not (_has(self._tries[0], word) or _has(self._tries[1], word)):
            mode = _FULL if self._metred else _FREE
        if mode == _FULL and not _has(self._plan.trie, word):
            mode = _FREE
        self._mode = mode

    def _close_word(self) -> None:
        word = self._word
        if word.endswith("'"):
            word = word[:-1]
        if self._forcing and word == self._keyword:
            self._placed = True
        elif self._metred and word not in STOP_WORDS:
            own = owner(word)  # "fortune's" repeats "fortune", and the other way round
            self._repeated |= own in self._used
            self._used.add(own)
        self._forcing = False
        self._s += self._syllables(word)
        self._last = word
        self._word = ""

    def _newline(self) -> None:
        if self._content:
            speaker = False
            line = "".join(self._line_chars)
            if not self._seen_first:
                self._seen_first = True
                speaker = not poem_lines(line)
            if not speaker:
                flat = " ".join(words(line))
                self._penalty = math.inf if self._repeated or flat in self._lines else 0.0
                self._lines.add(flat)
                self._sentence = line.rstrip()[-1:] in SENTENCE_ENDS
                self._finals.append(self._last)
                self._line += 1
            self._cut = self._count
            if self._total is not None and self._line >= self._total:
                self._done = True
        elif not self._line_chars and self._total is None and self._line >= 1:
            self._done = True  # the blank line after a speech
        self._end_theme_line(self._placed)
        self._words = 0
        self._line_chars = []
        self._content = False
        self._repeated = False
        self._s = 0
        self._last = None
        self._run = 0
        if self._metred:
            self._partner = self._partner_for(self._line)

    def _partner_for(self, line: int) -> str | None:
        """The word line `line` must rhyme with, or None (an A-line, or a partner too rare)."""
        first = self._pairs.get(line)
        if first is None or first >= len(self._finals):
            return None
        word = self._finals[first]
        if word is None or not self._plan.finals(ORDINARY_MAX, word):
            return None
        return word
