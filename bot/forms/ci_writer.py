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
  (`Shape.reuse`); once it has, every character already in it is banned (except a doubling of
  the one just written), and so are later clauses' acrostic heads; a rhyme already used is
  banned at every rhyme position unless fewer than MIN_RHYMES would be left.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.forms import cilin, tang
from bot.forms.ci import MARKS, STOP, Choice, Tune, Tunes, layout
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


class CiWriter:
    """One 詞 of `tune` in its shape `shape` (an index into its shapes), after the tune's name,
    with an acrostic's candidates per clause (sets of characters the model knows; the
    likeliest is taken where there are several); `form` is how the footer names it."""

    def __init__(
        self,
        vocab: frozenset[str],
        tune: Tune,
        shape: int,
        heads: Sequence[frozenset[str]] = (),
        form: str | None = None,
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
        if position == 0 and clause < len(self._heads):
            return Allowed(required=(self._heads[clause],), greedy=True)
        required = [self._sets["han"]]
        banned = self._reused()
        tone = shape.tone(clause, position)
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
        if self._repeats < self._budget:
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
            self._clause += 1
            self._position = 0
            self._done = self._clause == len(shape.lengths)
            return
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
    """What catalog.plan needs for a 詞: the writer by seed, the prompt as the model reads it
    (the tune's name first), the length bound and the poem's layout."""

    make: Callable[[int], CiWriter]
    prompt: str
    length: int
    layout: Callable[[str], str]


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
) -> CiPlan:
    """The plan for a 詞 of the tune `form` names (None: the commonest tune that takes the
    acrostic and the prompt, in its commonest shape that does), or FormError saying what to
    change."""
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

    def make(seed: int) -> CiWriter:
        k = random.Random(seed).choice(shapes)
        return CiWriter(vocab, tune, k, heads, f"{tune.name}/{k + 1}" if choice.any else None)

    bound = max(tune.shapes[k].size for k in shapes)
    return CiPlan(
        make,
        tune.header + prompt,
        bound if length is None else max(bound, length),
        lambda text: layout(text, tune, shapes),
    )
