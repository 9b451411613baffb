"""宋詞: tunes (詞牌) as forms, read from a corpus of 詞 (one a line, `詞牌：text`), and the
checker that says how a poem keeps its tune.

FORMS.md: a tune fixes how many clauses, how long each, where the rhymes fall and the tone of
most positions. None of that is typed in here: `Tunes.derive` computes it at export from the
corpus's own poems of each tune (the TUNES commonest named tunes, not 失調名):
- shapes: the clause-length patterns (clauses end at `，` `。` `、`) that at least
  MIN_SHAPE_POEMS poems and MIN_SHAPE_SHARE of the tune's poems follow, commonest first;
- rhyme positions: the clauses that at least RHYME_SHARE of the shape's poems end with `。`;
- rhyme segments: a rhyme position rhymes with an earlier one when at least SAME_RHYME of the
  poems end the two in one 詞林正韻 section (bot/forms/cilin.py), else it starts a new rhyme
  (菩薩蠻 changes rhyme every couplet); each segment keeps one section;
- tones: each position's tone (level P, oblique Z) where at least AGREE of the poets whose
  character there has one tone agree, free (".") elsewhere; at a rhyme position that is the
  rhyme's tone (西江月's halves end oblique in the level rhyme's section);
- halves: where the second stanza (下片) starts, for display (`Shape.half`);
- reuse: how many characters the poets reuse in a poem of the shape, on average.

Names are the corpus's own (simplified for the shipped corpus); `Tunes.find` takes a name in
either script, with `/N` for the N-th commonest shape or `/*` for one chosen by the seed.
"""

from __future__ import annotations

import difflib
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.forms import cilin, script, tang
from bot.forms.rules import FormError
from bot.forms.tang import PING, ZE

TUNES_FILE = "tunes.json"
FORMAT = 1
HEADER = "："  # between a poem's tune name and its text, in the corpus and the model's input
MARKS = "，。、"
STOP = "。"
LOST = frozenset({"失调名", "失調名"})  # "tune lost": not a form
TUNES = 20  # the commonest named tunes become forms
MIN_SHAPE_POEMS = 5
MIN_SHAPE_SHARE = 0.05
RHYME_SHARE = 0.5
SAME_RHYME = 0.5
AGREE = 0.8
MIN_HALF = 0.75  # the least score a split into two stanzas needs (`_half`)
MIN_STANZAS = 40  # characters a poem needs to have two stanzas
MIN_VOTES = 4  # poets with a one-tone character at a position, for its tone to be fixed
FREE = "."
_TONE_LETTER = {PING: "P", ZE: "Z"}
_LETTER_TONE = {"P": PING, "Z": ZE, FREE: None}

_LINE_RE = re.compile(f"^([^{MARKS}{HEADER}\\s]{{1,20}}){HEADER}(.+)$")
_POEM_RE = re.compile(f"(?:[{tang.IDEOGRAPH}]+[{MARKS}])+")
_CLAUSE_RE = re.compile(f"([{tang.IDEOGRAPH}]+)([{MARKS}])")
_VARIANT_RE = re.compile(r"^(.*?)\s*[/／]\s*(\d+|\*)$")


def clauses(text: str) -> list[tuple[str, str]] | None:
    """A poem's clauses as (characters, mark) if it is all ideographs and clause marks, ending
    in one (whitespace ignored), else None."""
    text = "".join(text.split())
    if not _POEM_RE.fullmatch(text):
        return None
    return _CLAUSE_RE.findall(text)


def parse_line(line: str) -> tuple[str, str] | None:
    """A corpus line's (tune name, text), or None when it is not `name：text`."""
    match = _LINE_RE.match(line.strip())
    return (match[1], match[2]) if match else None


def looks_like_ci(text: str) -> bool:
    """Whether a corpus is 詞 one a line under their tune names: most lines `name：text` of
    clauses, and the names repeat (a tune holds many poems)."""
    lines = [line for line in text[:500_000].split("\n") if line.strip()]
    parsed = [p for p in map(parse_line, lines) if p is not None and clauses(p[1])]
    names = Counter(name for name, _ in parsed)
    return len(parsed) >= 0.8 * max(len(lines), 1) and len(parsed) >= 3 * max(len(names), 1)


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One attested shape of a tune: its clauses' lengths and marks, each position's tone
    ("P", "Z", "." free), each clause's rhyme segment (-1: no rhyme), the clauses of its first
    half (its length: one stanza), and what the poets of it do."""

    lengths: tuple[int, ...]
    marks: str
    tones: tuple[str, ...]
    segments: tuple[int, ...]
    half: int
    poems: int
    reuse: float

    @property
    def chars(self) -> int:
        """Ideographs in a poem of this shape."""
        return sum(self.lengths)

    @property
    def size(self) -> int:
        """Characters of a poem of this shape, its marks included."""
        return self.chars + len(self.lengths)

    def tone(self, clause: int, position: int) -> str | None:
        """The tone fixed at a position (tang.PING or tang.ZE), None where it is free."""
        return _LETTER_TONE[self.tones[clause][position]]

    def rhymes(self, clause: int) -> bool:
        return self.segments[clause] >= 0

    def segment_clauses(self, segment: int) -> list[int]:
        return [i for i, s in enumerate(self.segments) if s == segment]

    def to_json(self) -> dict:
        return {
            "lengths": list(self.lengths),
            "marks": self.marks,
            "tones": list(self.tones),
            "segments": list(self.segments),
            "half": self.half,
            "poems": self.poems,
            "reuse": self.reuse,
        }

    @classmethod
    def from_json(cls, data: dict) -> Shape:
        shape = cls(
            lengths=tuple(int(n) for n in data["lengths"]),
            marks=str(data["marks"]),
            tones=tuple(str(t) for t in data["tones"]),
            segments=tuple(int(s) for s in data["segments"]),
            half=int(data["half"]),
            poems=int(data["poems"]),
            reuse=float(data["reuse"]),
        )
        n = len(shape.lengths)
        if not (
            n
            and len(shape.marks) == n
            and len(shape.tones) == n
            and len(shape.segments) == n
            and all(m in MARKS for m in shape.marks)
            and all(len(t) == k > 0 for t, k in zip(shape.tones, shape.lengths, strict=True))
            and all(c in _LETTER_TONE for t in shape.tones for c in t)
            and 0 < shape.half <= n
        ):
            raise ValueError("a shape's lengths, marks, tones, segments and half disagree")
        return shape


@dataclass(frozen=True)
class Tune:
    name: str  # as the corpus writes it (the model reads it before the poem)
    poems: int
    shapes: tuple[Shape, ...]  # commonest first

    @property
    def header(self) -> str:
        """What the model reads before a poem of this tune."""
        return f"{self.name}{HEADER}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "poems": self.poems,
            "shapes": [s.to_json() for s in self.shapes],
        }


@dataclass(frozen=True)
class Choice:
    """A tune asked for, and which of its shapes may be written (indices into its shapes,
    commonest first): the first that takes the options, or with `any` one of those that do,
    by the seed."""

    tune: Tune
    shapes: tuple[int, ...]
    label: str  # the name as asked: 水调歌头, 水调歌头/2, 水调歌头/*
    any: bool = False


class Tunes:
    """A style's tunes, by their corpus names, commonest first."""

    def __init__(self, tunes: Iterable[Tune]) -> None:
        self.tunes = {t.name: t for t in tunes}

    def __len__(self) -> int:
        return len(self.tunes)

    def names(self) -> list[str]:
        return list(self.tunes)

    def to_json(self) -> str:
        data = {"format": FORMAT, "tunes": [t.to_json() for t in self.tunes.values()]}
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Tunes:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a version-{FORMAT} tune table")
        return cls(
            Tune(
                str(t["name"]),
                int(t["poems"]),
                tuple(Shape.from_json(s) for s in t["shapes"]),
            )
            for t in data["tunes"]
        )

    @classmethod
    def load(cls, path: Path) -> Tunes:
        """The table export wrote at `path`; ValueError when it is unreadable."""
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from err

    def lookup(self, typed: str) -> Tune | None:
        """The tune a name typed in either script stands for, or None."""
        typed = typed.strip()
        for name in (typed, script.to_simplified(typed), script.to_traditional(typed)):
            if name in self.tunes:
                return self.tunes[name]
        return None

    def near(self, typed: str, count: int = 5) -> list[str]:
        """The tune names likest `typed` (in either script), likest first."""
        typed = script.to_simplified(typed.strip())
        names = {script.to_simplified(n): n for n in self.tunes}
        close = difflib.get_close_matches(typed, list(names), n=count, cutoff=0.3)
        sharing = [n for n in names if set(n) & set(typed) and n not in close]
        return [names[n] for n in [*close, *sharing][:count]]

    def find(self, typed: str) -> Choice:
        """The tune and shapes a form option names (`浣溪沙`, `鷓鴣天`, `水调歌头/2` for its
        second commonest shape, `水调歌头/*` for any, by the seed); FormError naming the
        nearest tunes for a name it does not know."""
        match = _VARIANT_RE.match(typed.strip())
        name, variant = (match[1], match[2]) if match else (typed, None)
        tune = self.lookup(name)
        if tune is None:
            near = self.near(name)
            hint = f" Near names: {', '.join(near)}." if near else ""
            raise FormError(
                f"This style has no tune {name.strip()!r}.{hint} The form option lists all "
                f"{len(self.tunes)}."
            )
        every = tuple(range(len(tune.shapes)))
        if variant is None:
            return Choice(tune, every, tune.name)
        if variant == "*":
            return Choice(tune, every, f"{tune.name}/*", any=True)
        k = int(variant)
        if not 1 <= k <= len(tune.shapes):
            raise FormError(
                f"{tune.name} has {len(tune.shapes)} shape(s) the poets used often; ask for "
                f"{tune.name}/1 to /{len(tune.shapes)}, or {tune.name}/* for any."
            )
        return Choice(tune, (k - 1,), f"{tune.name}/{k}")

    # --- derived from a corpus -------------------------------------------------------------

    @classmethod
    def derive(cls, text: str, count: int = TUNES) -> Tunes:
        """The `count` commonest named tunes of a corpus of 詞 with an attested shape each."""
        by_tune: dict[str, list[list[tuple[str, str]]]] = defaultdict(list)
        totals: Counter[str] = Counter()
        for line in text.split("\n"):
            parsed = parse_line(line)
            if parsed is None or parsed[0] in LOST:
                continue
            totals[parsed[0]] += 1
            found = clauses(parsed[1])
            if found is not None:
                by_tune[parsed[0]].append(found)
        tunes = []
        for name, total in totals.most_common():
            shapes = _shapes(by_tune[name], total)
            if shapes:
                tunes.append(Tune(name, total, shapes))
            if len(tunes) == count:
                break
        return cls(tunes)


def _shapes(poems: list[list[tuple[str, str]]], total: int) -> tuple[Shape, ...]:
    groups: dict[tuple[int, ...], list[list[tuple[str, str]]]] = defaultdict(list)
    for poem in poems:
        groups[tuple(len(c) for c, _ in poem)].append(poem)
    least = max(MIN_SHAPE_POEMS, MIN_SHAPE_SHARE * total)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return tuple(_shape(lengths, group) for lengths, group in ranked if len(group) >= least)


def _shape(lengths: tuple[int, ...], poems: list[list[tuple[str, str]]]) -> Shape:
    n = len(lengths)
    marks = ""
    for i in range(n):
        counted = Counter(poem[i][1] for poem in poems)
        if counted[STOP] >= RHYME_SHARE * len(poems):
            marks += STOP
        else:
            counted.pop(STOP, None)
            marks += counted.most_common(1)[0][0]
    tones = tuple(
        "".join(_agreed([poem[i][0][p] for poem in poems]) for p in range(lengths[i]))
        for i in range(n)
    )
    segments = _segments(marks, [[c[-1] for c, _ in poem] for poem in poems])
    reuse = statistics.fmean(tang.repeats("".join(c for c, _ in poem)) for poem in poems)
    return Shape(lengths, marks, tones, segments, _half(lengths, segments), len(poems), reuse)


def _agreed(chars: Sequence[str]) -> str:
    """The tone letter the poets agree on at a position (FREE when fewer than AGREE do)."""
    votes = Counter(next(iter(t)) for t in map(cilin.tones, chars) if len(t) == 1)
    if sum(votes.values()) < MIN_VOTES:
        return FREE
    tone, n = votes.most_common(1)[0]
    return _TONE_LETTER[tone] if n >= AGREE * sum(votes.values()) else FREE


def _segments(marks: str, ends: list[list[str]]) -> tuple[int, ...]:
    """Each clause's rhyme segment: a rhyme position joins the earlier segment with a member
    the poets rhyme it with most often (in at least SAME_RHYME of the poems), else starts
    one; -1 for clauses that do not rhyme."""
    segments = [-1] * len(marks)
    members: list[list[int]] = []  # each segment's clauses so far
    for j, mark in enumerate(marks):
        if mark != STOP:
            continue
        rates = [
            max(sum(bool(cilin.shared((e[i], e[j]), (None, None))) for e in ends) for i in seg)
            / len(ends)
            for seg in members
        ]
        best = max(range(len(members)), key=rates.__getitem__, default=None)
        if best is not None and rates[best] >= SAME_RHYME:
            segments[j] = best
            members[best].append(j)
        else:
            segments[j] = len(members)
            members.append([j])
    return tuple(segments)


def _half(lengths: tuple[int, ...], segments: tuple[int, ...]) -> int:
    """The clauses of the first stanza (上片), or all of them for one stanza: of the rhyme
    clauses after which a second stanza could start, the best by how much of the shorter
    stanza's end the other repeats (clause lengths from the end), whether the next rhyme is
    a new one (清平樂 turns level there), and how near the stanzas are in size; none under
    MIN_HALF, nor in a poem shorter than MIN_STANZAS characters (a single-stanza 小令)."""
    total = sum(lengths)
    best, best_score = len(lengths), MIN_HALF
    for k in range(2, len(lengths) - 1 if total >= MIN_STANZAS else 0):
        if segments[k - 1] < 0:
            continue
        first, second = sum(lengths[:k]), sum(lengths[k:])
        tail = 0
        for a, b in zip(reversed(lengths[:k]), reversed(lengths[k:]), strict=False):
            if a != b:
                break
            tail += a
        following = next((s for s in segments[k:] if s >= 0), -1)
        fresh = following > max(segments[:k])
        score = tail / min(first, second) + fresh + 1 - 4 * abs(first - second) / total
        if score > best_score:
            best, best_score = k, score
    return best


# --- checking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CiCheck:
    """How a poem keeps a tune: `shape` the index of the attested shape it has (None: none),
    `rhyme` every rhyme segment in one section at its tones, `tone` every fixed position
    fitting (but an acrostic's heads), `acrostic` its clauses heading with the given
    characters (True when none)."""

    shape: int | None
    rhyme: bool
    tone: bool
    acrostic: bool

    @property
    def all_rules(self) -> bool:
        return self.shape is not None and self.rhyme and self.tone and self.acrostic


def strip_header(text: str, tune: Tune) -> str:
    """A poem's text without its tune name, where it begins with it."""
    text = text.lstrip()
    return text[len(tune.header) :] if text.startswith(tune.header) else text


def rhyme_kept(shape: Shape, ends: Sequence[str]) -> bool:
    """Whether each rhyme segment's clause ends (one per clause) share a section, each at its
    position's tone; an end the 平水韻 does not list is not judged (as an unlisted character
    fits either tone)."""
    for segment in set(shape.segments) - {-1}:
        listed = [i for i in shape.segment_clauses(segment) if cilin.rhymes(ends[i])]
        wanted = [shape.tone(i, shape.lengths[i] - 1) for i in listed]
        if len(listed) > 1 and not cilin.shared([ends[i] for i in listed], wanted):
            return False
    return True


def check(text: str, tune: Tune, acrostic: str | None = None) -> CiCheck:
    """Check a poem (its tune name at the start or not) against a tune's attested shapes."""
    found = clauses(strip_header(text, tune))
    lengths = tuple(len(c) for c, _ in found) if found is not None else None
    index = next((k for k, s in enumerate(tune.shapes) if s.lengths == lengths), None)
    heads = "".join((acrostic or "").split())
    acrostic_ok = acrostic is None or (
        found is not None
        and len(heads) == len(found)
        and all(c.startswith(h) for (c, _), h in zip(found, heads, strict=True))
    )
    if index is None or found is None:
        return CiCheck(None, False, False, acrostic_ok)
    shape = tune.shapes[index]
    rhyme = rhyme_kept(shape, [c[-1] for c, _ in found])
    tone = all(
        cilin.fits(ch, shape.tone(i, p))
        for i, (clause, _) in enumerate(found)
        for p, ch in enumerate(clause)
        if p > 0 or not heads  # an acrostic's heads are the user's, whatever their tone
    )
    return CiCheck(index, rhyme, tone, acrostic_ok)


# --- display -----------------------------------------------------------------------------


def layout(text: str, tune: Tune, shapes: Sequence[int]) -> str:
    """A poem as shown: the tune's name as its title, a line break after each rhyme clause
    (each `。`), the halves parted by a blank line (by the first of `shapes` whose lengths the
    clauses so far follow; none where they follow none)."""
    body = strip_header(text, tune)
    lengths = [len(c) for c in re.findall(f"[{tang.IDEOGRAPH}]+(?=[{MARKS}])", body)]
    followed = (tune.shapes[k] for k in shapes)
    shape = next((s for s in followed if list(s.lengths[: len(lengths)]) == lengths), None)
    half = shape.half if shape is not None and shape.half < len(shape.lengths) else None
    out, clause = [], 0
    for ch in body:
        out.append(ch)
        if ch in MARKS:
            clause += 1
            if ch == STOP:
                out.append("\n\n" if clause == half else "\n")
    return f"{tune.name}\n\n{''.join(out).rstrip()}"
