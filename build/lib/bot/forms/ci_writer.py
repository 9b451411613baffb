"""Writing a 詞 to a tune character by character: the tune's name first (the model read it in
training before every poem), then its shape, rhymes and tones as masks one character ahead
(bot/forms/rules.py's contract), as tang_writer.py does for regulated verse.

- Shape: each clause's length and mark (`，` `。` `、`) as the chosen attested shape has them;
  the poem is done after its last mark. A clause is a line for the candidates (the engine
  writes each K times and keeps the likeliest).
- Acrostic (藏頭): one character heads each clause.
- Rhyme (`required`): the last character of a rhyme clause (`。`) rhymes, by the 詞林正韻,
  with the other clauses of its segment, at the tone the poets use there: a segment's first
  rhyme chooses among the sections in which the model knows at least MIN_SECTION characters
  at every tone the segment asks for (西江月 ends its halves oblique in the level rhyme's
  section), each later one keeps to the sections shared so far. A segment of one clause
  still keeps its tone.
- Tone (`preferred`): every other position the poets agree on takes its tone where the model
  knows a character of it (else it is relaxed, and the poem says so).
- No worn-out repeats, as far as the poets allow: a poem may reuse characters (an immediate
  doubling such as 依依 not counted) as often as the poets of its shape do on average
  (`Shape.reuse`, rounded down: 5.1 allows 5); once it has, every character already in it is
  banned (except a doubling of the one just written), and so are later clauses' acrostic
  heads; a rhyme already used is banned at every rhyme position unless fewer than MIN_RHYMES
  would be left.
- A theme (`themes.Thread`): each sentence (its clauses up to a `。`: a rhyme, the line the
  poem is shown in) holds one keyword of the plan, within one of its clauses, where a word may
  start (a two-character word at 0, 2, 3 of a clause of five, 0, 2, 4, 5 of seven, anywhere
  in the others), each character keeping that position's rules: its tone, the segment's rhyme
  at a rhyme clause's end, the acrostic's head at a clause's start (a keyword starts there
  only if it begins with the head). A sentence, not a clause, because a 詞's clauses are often
  of three or four characters and a tune has up to 26 of them: a keyword a clause would crowd
  the poem with the plan (and its words share no character), while a sentence is the unit
  its sense and its rhyme run to, long enough for a keyword to find a place that keeps the
  tones, and the line the reader sees; a rhyme segment would be too few (浣溪沙 is one).
  As in tang_writer.py: a keyword that fits nowhere left in the sentence (or a related word
  whose characters the poem has already) gives way to the next of the plan; a user's word may
  bend a tone only where the sentences left are no more than the user's words still to write;
  the keyword's characters are exempt from the reuse ban where it stands and banned elsewhere
  in its sentence; each candidate of a clause (the engine's `branch`) places a keyword not
  yet written at another of its places.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.forms import cilin, tang, themes
from bot.forms.ci import MARKS, STOP, Choice, Shape, Tune, Tunes, layout
from bot.forms.rules import Allowed, FormError
from bot.forms.tang import PING, ZE

MIN_SECTION = 12  # characters the model knows in a section, at a tone, for a rhyme to choose it
MIN_RHYMES = 3  # rhymes a position keeps after the reuse ban (else only used rhymes are banned)
TYPED_MARKS = frozenset(MARKS + ",.;；?？!！")  # what a prompt may end a clause with
_NOTHING: frozenset[str] = frozenset()


@functools.cache
def _one(ch: str) -> frozenset[str]:
    return frozenset(ch)


@functools.cache
def _sets(vocab: frozenset[str]) -> dict[Any, frozenset[str]]:
    """The vocabulary's ideographs, those that fit each tone, and those of each rhyme."""
    han = frozenset(c for c in vocab if tang.is_ideograph(c))
    out: dict[Any, frozenset[str]] = {
        "han": han,
        PING: frozenset(c for c in han if cilin.fits(c, PING)),
        ZE: frozenset(c for c in han if cilin.fits(c, ZE)),
    }
    by_rhyme: dict[cilin.Rhyme, set[str]] = {}
    for c in han:
        for rhyme in cilin.rhymes(c):
            by_rhyme.setdefault(rhyme, set()).add(c)
    out.update({rhyme: frozenset(chars) for rhyme, chars in by_rhyme.items()})
    return out


@functools.cache
def _rhymes(vocab: frozenset[str], sections: frozenset[int], tone: str | None) -> frozenset[str]:
    """The known characters that rhyme in any of `sections` at `tone` (None: either)."""
    sets = _sets(vocab)
    tones = (PING, ZE) if tone is None else (tone,)
    return frozenset().union(*(sets.get((s, t), _NOTHING) for s in sections for t in tones))


@functools.cache
def _viable(vocab: frozenset[str], tones: tuple[str | None, ...]) -> frozenset[int]:
    """The sections in which the model knows MIN_SECTION characters at each of `tones`."""
    return frozenset(
        s
        for s in cilin.SECTIONS
        if all(len(_rhymes(vocab, frozenset({s}), t)) >= MIN_SECTION for t in tones)
    )


@functools.cache
def sentences(shape: Shape) -> tuple[int, ...]:
    """Each clause's sentence (the clauses up to a `。`), counted from 0."""
    return tuple(shape.marks[:i].count(STOP) for i in range(len(shape.lengths)))


def sentence_count(shape: Shape) -> int:
    """A shape's sentences: the lines it is shown in, each holding a theme's keyword."""
    return sentences(shape)[-1] + 1


class CiWriter(themes.Keyed):
    """One 詞 of `tune` in its shape `shape` (an index into its shapes), after the tune's name,
    with an acrostic's candidates per clause (sets of characters the model knows; the
    likeliest is taken where there are several); `form` is how the footer names it; `thread`
    a theme's plan, a keyword a sentence (`seed`: which of a keyword's places it takes)."""

    def __init__(
        self,
        vocab: frozenset[str],
        tune: Tune,
        shape: int,
        heads: Sequence[frozenset[str]] = (),
        form: str | None = None,
        thread: themes.Thread | None = None,
        seed: int = 0,
    ) -> None:
        self.vocab = vocab
        self.tune = tune
        self.form = form or tune.name
        self._shape = tune.shapes[shape]
        self._sets = _sets(vocab)
        self._heads = tuple(heads)
        self._header = tune.header
        self._budget = self._shape.reuse
        self._segment_tones = {
            segment: tuple(self._shape.tone(i, self._shape.lengths[i] - 1) for i in members)
            for segment in set(self._shape.segments) - {-1}
            for members in [self._shape.segment_clauses(segment)]
        }
        self._read = 0  # characters of the header read
        self._clause = 0
        self._position = 0  # within the clause; == its length: its mark comes next
        self._sections: dict[int, frozenset[int]] = {}  # each segment's sections so far
        self._used: set[str] = set()  # rhyme characters written
        self._seen: set[str] = set()  # every ideograph written
        self._repeats = 0  # reused characters so far
        self._previous = ""  # the ideograph just written ("" after a mark)
        self._doubled = False  # it doubled the one before it
        self._fed = 0
        self._whole = 0  # characters up to the last rhyme clause's 。
        self._done = False
        self._sentence = sentences(self._shape)  # each clause's sentence
        self._starts = tuple(itertools.accumulate(self._shape.lengths, initial=0))
        self._kept = -1  # the sentence whose keyword is written
        self._start_theme(thread, seed)

    @property
    def done(self) -> bool:
        return self._done

    def cut(self) -> int:
        return self._whole

    def last_of_line(self) -> bool:
        """Whether a line's last character comes next (for `lines.LineGuard`: the training
        lines it knows end at `，` and `。`)."""
        shape = self._shape
        return (
            not self._done
            and self._read == len(self._header)
            and self._position == shape.lengths[self._clause] - 1
            and shape.marks[self._clause] != "、"
        )

    def allowed(self) -> Allowed:
        if self._done:
            return Allowed(required=(_NOTHING,))
        if self._read < len(self._header):
            return Allowed(required=(_one(self._header[self._read]),), greedy=True)
        shape, clause, position = self._shape, self._clause, self._position
        length = shape.lengths[clause]
        if position == length:
            return Allowed(required=(_one(shape.marks[clause]),))
        tone = shape.tone(clause, position)
        keyword = self._keyword_here()
        if keyword:
            tones = self._sets[tone] if tone else None
            return self._keyword_allowed(keyword, tones, clause, position)
        if position == 0 and clause < len(self._heads):
            return Allowed(required=(self._heads[clause],), greedy=True)
        required = [self._sets["han"]]
        banned = self._reused() | frozenset(self._keyword)
        if position == length - 1 and shape.rhymes(clause):
            rhymes = self._rhyme_set(shape.segments[clause], tone)
            required.append(rhymes)
            banned |= self._used
            if len(rhymes - banned) < MIN_RHYMES:
                banned = frozenset(self._used)
                if len(rhymes - banned) < MIN_RHYMES:
                    banned = _NOTHING
            return Allowed(required=tuple(required), banned=frozenset(banned))
        if tone is None:
            return Allowed(required=tuple(required), banned=frozenset(banned))
        return Allowed(
            required=tuple(required),
            banned=frozenset(banned),
            preferred=(self._sets[tone],),
            relax=f"tone at clause {clause + 1}, position {position + 1}",
        )

    def sentences_left(self) -> int:
        """The sentences from here on (this one too): the lines a theme's words may take."""
        return sentence_count(self._shape) - self._sentence[self._clause]

    def _keyword_here(self) -> str:
        """The keyword's character due at this position ("" none), the sentence's keyword
        chosen first where it is not yet (nor written)."""
        if self._thread is None or self._fed < self._thread.skip:
            return ""
        sentence = self._sentence[self._clause]
        if self._planned != sentence and self._kept != sentence:
            self._planned = sentence
            chosen = self._thread.choose(
                self._unwritten, self.sentences_left(), self._places, self._branch + sentence
            )
            self._keyword, self._at = chosen if chosen else ("", -1)
        offset = self._starts[self._clause] + self._position - self._at
        return self._keyword[offset] if self._keyword and 0 <= offset < len(self._keyword) else ""

    def _places(self, word: str, strict: bool) -> list[int]:
        """Where in this sentence, from the position reached, `word` may start within a
        clause keeping every rule (without `strict`, bending tones), as an index into the
        poem's characters; nowhere for a related word whose characters the poem has."""
        if self._thread and word not in self._thread.users and self._seen.intersection(word):
            return []  # a related word the poem has written already gives way
        lengths, sentence = self._shape.lengths, self._sentence[self._clause]
        places = []
        for clause in range(self._clause, len(lengths)):
            if self._sentence[clause] != sentence:
                break
            first = self._position if clause == self._clause else 0
            length = lengths[clause]
            starts = range(length) if len(word) == 1 else themes.word_starts(length, True)
            places += [
                self._starts[clause] + start
                for start in starts
                if first <= start <= length - len(word)
                and all(self._fits(clause, start + i, ch, strict) for i, ch in enumerate(word))
            ]
        return places

    def _fits(self, clause: int, position: int, ch: str, strict: bool) -> bool:
        """Whether a keyword's `ch` keeps the rules at a position: a character the model
        knows, the acrostic's head, the rhyme (unused) at a rhyme clause's end; with `strict`
        the position's tone."""
        shape = self._shape
        tone = shape.tone(clause, position)
        if ch not in self._sets["han"]:
            return False
        if position == 0 and clause < len(self._heads) and ch not in self._heads[clause]:
            return False
        if position == shape.lengths[clause] - 1 and shape.rhymes(clause):
            rhymes = self._rhyme_set(shape.segments[clause], tone)
            if ch not in rhymes or ch in self._used:
                return False
        return not strict or tone is None or ch in self._sets[tone]

    def can_rhyme(self) -> bool:
        """Whether the model knows enough characters of some section for every rhyme."""
        return all(_viable(self.vocab, tones) for tones in self._segment_tones.values())

    def _rhyme_set(self, segment: int, tone: str | None) -> frozenset[str]:
        sections = self._sections.get(segment)
        if sections is None:
            sections = _viable(self.vocab, self._segment_tones[segment])
        return _rhymes(self.vocab, sections, tone)

    def _reused(self) -> frozenset[str]:
        """What no position but an acrostic head may take: later clauses' heads, and once
        the poem has reused its budget, the characters in it (less the one just written,
        unless that was itself a doubling)."""
        later = frozenset().union(*self._heads[self._clause + 1 :])
        if self._repeats + 1 <= self._budget:  # one more reuse stays within the poets' mean
            return later
        return later | tang.reuse_ban(self._seen, self._previous, self._doubled)

    def advance(self, ch: str) -> None:
        self._fed += 1
        if self._done:
            return
        if self._read < len(self._header):
            self._read += 1
            return
        self._previous, self._doubled, reused = tang.after(self._seen, self._previous, ch)
        self._repeats += reused
        shape = self._shape
        length = shape.lengths[self._clause]
        if self._position == length or ch in MARKS:
            # A clause ends (where the shape puts its mark, or early in a prompt that breaks
            # the shape: carry on from the next clause).
            if ch == STOP:
                self._whole = self._fed
            sentence = self._sentence[self._clause]
            self._clause += 1
            self._position = 0
            self._done = self._clause == len(shape.lengths)
            if self._done or self._sentence[self._clause] != sentence:
                self._end_theme_line(self._kept == sentence)
            return
        here = self._starts[self._clause] + self._position
        if self._keyword and here == self._at + len(self._keyword) - 1:
            self._kept = self._sentence[self._clause]
        if self._position == length - 1 and shape.rhymes(self._clause):
            segment = shape.segments[self._clause]
            tone = shape.tone(self._clause, self._position)
            own = frozenset(s for s, t in cilin.rhymes(ch) if tone is None or t == tone)
            before = self._sections.get(segment)
            self._sections[segment] = (before & own or own) if before is not None else own
            self._used.add(ch)
        self._position += 1


@dataclass(frozen=True)
class CiPlan:
    """What catalog.plan needs for a 詞: the writer by seed and theme, the prompt as the model
    reads it (the tune's name first: its `header`), the length bound, the poem's layout, the
    tune as asked (`label`) and the most sentences its shapes have (the lines a theme is
    planned for)."""

    writer: Callable[[int, themes.Thread | None], CiWriter]
    prompt: str
    length: int
    layout: Callable[[str], str]
    header: str
    label: str
    lines: int

    def make(self, thread: themes.Thread | None = None) -> Callable[[int], CiWriter]:
        """The writer by seed, with a theme's `thread` where there is one."""
        return lambda seed: self.writer(seed, thread)


def _feed(writer: CiWriter, prompt: str) -> str:
    """The user's prompt through a writer that has read its header, as the tune writes it
    (any clause mark typed where the tune ends a clause becomes the tune's own: `，` `。` `、`);
    FormError where the shape or an acrostic head refuses a character."""
    out = []
    for i, ch in enumerate(prompt):
        required = writer.allowed().required
        if ch in TYPED_MARKS and len(required) == 1 and len(required[0]) == 1:
            ch = next(iter(required[0])) if required[0] <= frozenset(MARKS) else ch
        if any(ch not in chars for chars in required):
            shown = repr(ch) if ch.strip() else "a space or line break"
            raise FormError(
                f"The prompt breaks the tune's shape at character {i + 1} ({shown}); a prompt "
                f"is the poem's beginning: {writer.tune.name}'s clauses and marks."
            )
        writer.advance(ch)
        out.append(ch)
        if writer.done:
            raise FormError("The prompt is a whole poem already; give the tune's beginning.")
    return "".join(out)


def plan(
    tunes: Tunes,
    vocab: frozenset[str],
    form: str | None,
    heads: tuple[frozenset[str], ...],
    prompt: str,
    length: int | None,
    theme: Sequence[str] = (),
) -> CiPlan:
    """The plan for a 詞 of the tune `form` names (None: the commonest tune that takes the
    acrostic, the prompt and the `theme`'s words, one a sentence, in its commonest shape that
    does), or FormError saying what to change."""
    if not len(tunes):
        raise FormError("This style's bundle has no tunes; ask the operators.")
    if form is not None:
        choices = [tunes.find(form)]
    else:
        choices = [Choice(t, tuple(range(len(t.shapes))), t.name) for t in tunes.tunes.values()]
    if heads:
        _check_heads(choices, len(heads))
    refusal: FormError | None = None
    for choice in choices:
        fitting: list[int] = []
        written = prompt  # as the first fitting shape writes it (its marks)
        for k in choice.shapes:
            shape = choice.tune.shapes[k]
            if heads and len(shape.lengths) != len(heads):
                continue
            if length is not None and length < shape.size:
                refusal = refusal or FormError(
                    f"A {choice.tune.name} needs {shape.size} characters; ask for a length of "
                    f"{shape.size}."
                )
                continue
            writer = CiWriter(vocab, choice.tune, k, heads)
            for ch in choice.tune.header:
                writer.advance(ch)
            if not writer.can_rhyme():
                refusal = refusal or FormError(
                    f"This style's model knows too few rhyming characters for {choice.label}; "
                    "choose another tune."
                )
                continue
            try:
                fed = _feed(writer, written)
            except FormError as err:
                refusal = refusal or err
                continue
            if len(theme) > writer.sentences_left():
                after = " after the prompt" if prompt else ""
                refusal = refusal or themes.too_many_words(
                    choice.label, writer.sentences_left(), theme, after
                )
                continue
            written = fed if not fitting else written
            fitting.append(k)
            if not choice.any:
                break
        if fitting:
            return _plan(choice, fitting, vocab, heads, written, length)
    raise refusal or FormError("No tune fits that prompt.")


def _check_heads(choices: list[Choice], count: int) -> None:
    """FormError unless some shape asked for has one clause per acrostic head."""
    counts = sorted({len(c.tune.shapes[k].lengths) for c in choices for k in c.shapes})
    if count not in counts:
        name = f"{choices[0].label} " if len(choices) == 1 else ""
        raise FormError(
            f"A {name}acrostic needs one character per clause: "
            f"{' or '.join(map(str, counts[:8]))}{' ...' if len(counts) > 8 else ''}, "
            f"not {count}."
        )


def _plan(
    choice: Choice,
    shapes: list[int],
    vocab: frozenset[str],
    heads: tuple[frozenset[str], ...],
    prompt: str,
    length: int | None,
) -> CiPlan:
    tune = choice.tune

    def writer(seed: int, thread: themes.Thread | None) -> CiWriter:
        k = random.Random(seed).choice(shapes)
        form = f"{tune.name}/{k + 1}" if choice.any else None
        return CiWriter(vocab, tune, k, heads, form, thread, seed)

    bound = max(tune.shapes[k].size for k in shapes)
    return CiPlan(
        writer,
        tune.header + prompt,
        bound if length is None else max(bound, length),
        lambda text: layout(text, tune, shapes),
        tune.header,
        choice.label,
        max(sentence_count(tune.shapes[k]) for k in shapes),
    )
