"""Mandarin lyric rhyme (the Jay Chou style, simplified script): finals and the 十三辙.

Mandarin lyrics rhyme by the finals (韵母) of their line-final syllables, grouped as the
十三辙 of northern song and opera. A character's final comes from `pypinyin` (its first,
normal reading, the character taken alone); `FINAL_TO_CLASS` maps finals to 辙. Nothing here
reads context, so a polyphone at a line's end takes its commonest reading (了 le, 着 zhe),
unless a table of usual classes says otherwise: `usual_classes` ranks a heteronym's classes
(pypinyin's several readings) by how often the corpus's neighbouring lines rhyme with each,
and export ships the winners in the bundle (READINGS_FILE), which the functions here take as
`usual`.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pypinyin import Style, pinyin

READINGS_FILE = "readings.json"
MIN_VOTES = 5  # neighbouring lines' votes a heteronym's other class needs (usual_classes)

# The thirteen rhyme classes, in the traditional order.
RHYME_CLASSES: tuple[str, ...] = (
    "发花",
    "梭波",
    "乜斜",
    "一七",
    "姑苏",
    "怀来",
    "灰堆",
    "遥条",
    "油求",
    "言前",
    "人辰",
    "江阳",
    "中东",
)

# Finals (as pypinyin's strict Style.FINALS spells them: ü is "v", 对 is "uei", 有 "iou",
# 论 "uen") -> 辙. The standard grouping:
#   发花 a ia ua            梭波 o uo e (and io, 哟)      乜斜 ie ve (üe) ê
#   一七 i (also the -i of zhi chi shi ri zi ci si) v (ü) er
#   姑苏 u                   怀来 ai uai                  灰堆 ei uei
#   遥条 ao iao              油求 ou iou                  言前 an ian uan van (üan)
#   人辰 en in uen vn (ün)   江阳 ang iang uang           中东 eng ing ueng ong iong
FINAL_TO_CLASS: dict[str, str] = {
    **dict.fromkeys(("a", "ia", "ua"), "发花"),
    **dict.fromkeys(("o", "uo", "e", "io"), "梭波"),
    **dict.fromkeys(("ie", "ve", "ê"), "乜斜"),
    **dict.fromkeys(("i", "v", "er"), "一七"),
    **dict.fromkeys(("u",), "姑苏"),
    **dict.fromkeys(("ai", "uai"), "怀来"),
    **dict.fromkeys(("ei", "uei"), "灰堆"),
    **dict.fromkeys(("ao", "iao"), "遥条"),
    **dict.fromkeys(("ou", "iou"), "油求"),
    **dict.fromkeys(("an", "ian", "uan", "van"), "言前"),
    **dict.fromkeys(("en", "in", "uen", "vn"), "人辰"),
    **dict.fromkeys(("ang", "iang", "uang"), "江阳"),
    **dict.fromkeys(("eng", "ing", "ueng", "ong", "iong"), "中东"),
}

_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def is_han(ch: str) -> bool:
    """Whether `ch` is a single CJK ideograph."""
    return len(ch) == 1 and _HAN_RE.fullmatch(ch) is not None


@functools.cache
def final(ch: str) -> str | None:
    """The Mandarin final of `ch`'s first, normal reading; None for non-Han characters.

    Uses pypinyin's `Style.FINALS` with strict=True, the 《汉语拼音方案》 analysis: the
    non-strict one reads the y/w of 也 (ye), 鱼 (yu) and 居 (ju) as initials and gives "e"
    and "u", which would put them in 梭波 and 姑苏 instead of 乜斜 and 一七. Characters
    pypinyin has no reading for, and syllabic nasals (嗯, 呣: no final), give None too.
    """
    if not is_han(ch):
        return None
    readings = pinyin(ch, style=Style.FINALS, strict=True, heteronym=False, errors="ignore")
    if not readings or not readings[0] or not readings[0][0]:
        return None
    return readings[0][0]


def rhyme_class(ch: str, usual: Mapping[str, str] | None = None) -> str | None:
    """The 十三辙 class (one of RHYME_CLASSES) of `ch`'s final, or None without one; with
    `usual`, a heteronym's class from that table where it has one."""
    if usual is not None and ch in usual:
        return usual[ch]
    f = final(ch)
    return None if f is None else FINAL_TO_CLASS.get(f)


@functools.cache
def heteronym_classes(ch: str) -> tuple[str, ...]:
    """The distinct classes of all of `ch`'s readings (pypinyin's heteronyms), the first
    reading's first; empty for a character without one."""
    if not is_han(ch):
        return ()
    readings = pinyin(ch, style=Style.FINALS, strict=True, heteronym=True, errors="ignore")
    found = [FINAL_TO_CLASS.get(f) for f in (readings[0] if readings else [])]
    return tuple(dict.fromkeys(c for c in found if c is not None))


def usual_classes(text: str) -> dict[str, str]:
    """The line-final heteronyms of `text` (readings in several classes) that the corpus
    rhymes in another class than their first reading's: a neighbouring line (the one before
    or after) whose last character has one class only votes for that class when the
    heteronym has it; a class other than the first reading's wins with at least MIN_VOTES
    votes and more than the first's (fewer are as likely chance as rhyme)."""
    ends = [_last_han(line) for line in text.split("\n") if line.strip()]
    votes: dict[str, Counter[str]] = {}
    for i, ch in enumerate(ends):
        classes = heteronym_classes(ch) if ch else ()
        if len(classes) < 2:
            continue
        for j in (i - 1, i + 1):
            other = heteronym_classes(ends[j]) if 0 <= j < len(ends) and ends[j] else ()
            if len(other) == 1 and other[0] in classes:
                votes.setdefault(ch, Counter())[other[0]] += 1
    usual = {}
    for ch, counted in sorted(votes.items()):
        first = heteronym_classes(ch)[0]
        best, n = max(counted.items(), key=lambda item: (item[1], item[0] == first))
        if best != first and n >= MIN_VOTES and n > counted[first]:
            usual[ch] = best
    return usual


def repeats_per_verse(text: str, most: int) -> dict[int, float]:
    """For verses of 1 to `most` lines: the mean number of reused characters
    (`tang.repeats`: an immediate doubling not counted) over `text`'s lines taken in
    consecutive chunks of that many (the corpus keeps no song boundaries)."""
    from bot.forms.tang import repeats

    lines = [line + "\n" for line in text.split("\n") if line.strip()]
    out = {}
    for k in range(1, most + 1):
        chunks = ["".join(lines[i : i + k]) for i in range(0, len(lines) - k + 1, k)]
        if chunks:
            out[k] = round(sum(repeats(c) for c in chunks) / len(chunks), 3)
    return out


@dataclass(frozen=True, eq=False)
class VerseReadings:
    """A lyric style's tables from its corpus: heteronyms' usual classes, and the mean
    reused characters of a verse by its line count (hashed by identity: writers' plans are
    cached per table)."""

    usual: dict[str, str]
    repeats: dict[int, float]

    def budget(self, lines: int) -> float | None:
        """The reused characters a verse of `lines` lines may hold (None: no bound)."""
        if not self.repeats:
            return None
        most = max(self.repeats)
        return self.repeats[lines] if lines in self.repeats else self.repeats[most] * lines / most

    def to_json(self) -> str:
        table = {"usual": self.usual, "repeats_per_verse": self.repeats}
        return json.dumps(table, ensure_ascii=False, indent=1, sort_keys=True) + "\n"

    @classmethod
    def derive(cls, text: str, most: int) -> VerseReadings:
        return cls(usual_classes(text), repeats_per_verse(text, most))

    @classmethod
    def load(cls, path: Path) -> VerseReadings:
        """The tables export wrote at `path`; ValueError when they are unreadable."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            usual = {str(ch): str(c) for ch, c in raw["usual"].items()}
            counts = {int(k): float(v) for k, v in raw.get("repeats_per_verse", {}).items()}
        except (OSError, KeyError, AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from err
        if not set(usual.values()) <= set(RHYME_CLASSES):
            raise ValueError(f"{path.name} names classes that are not of the 十三辙")
        return cls(usual, counts)


NO_READINGS = VerseReadings({}, {})


def _is_trailing_noise(ch: str) -> bool:
    """Spaces, punctuation and symbols, which a line may end in after its last syllable."""
    return unicodedata.category(ch)[0] in "PSZC"


def _last_han(line: str) -> str:
    """A line's last character after trailing spaces, punctuation and symbols, when it is a
    Han character; "" otherwise."""
    end = len(line)
    while end and _is_trailing_noise(line[end - 1]):
        end -= 1
    return line[end - 1] if end and is_han(line[end - 1]) else ""


def line_rhyme(line: str, usual: Mapping[str, str] | None = None) -> str | None:
    """The rhyme class of a line's last syllable: its last character, after trailing spaces,
    punctuation and symbols, when that is a Han character; None otherwise (a line ending in
    a Latin word such as "baby" does not rhyme by a Han character before it).
    """
    last = _last_han(line)
    return rhyme_class(last, usual) if last else None


@dataclass(frozen=True)
class VerseCheck:
    """Rhyme and shape of a verse of lyrics.

    `lines`: how many non-empty lines; `rhyme_class`: the commonest class of their last
    syllables (None when no line has one); `rhyming_lines`: lines whose last syllable is of
    that class; `rhyme_rate`: rhyming_lines / lines (0.0 for no lines); `median_line_chars`:
    the median line length, spaces not counted; `fragments`: lines of at most 2 characters,
    spaces not counted.
    """

    lines: int
    rhyming_lines: int
    rhyme_rate: float
    median_line_chars: float
    fragments: int
    rhyme_class: str | None = None


def check_verse(text: str, usual: Mapping[str, str] | None = None) -> VerseCheck:
    """Measure a verse: how many of its lines end in its commonest rhyme class, and so on
    (with `usual`, heteronyms in their usual classes)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return VerseCheck(0, 0, 0.0, 0.0, 0)
    classes = [line_rhyme(line, usual) for line in lines]
    counts = Counter(c for c in classes if c is not None)
    top, rhyming = counts.most_common(1)[0] if counts else (None, 0)
    lengths = [len("".join(line.split())) for line in lines]
    return VerseCheck(
        lines=len(lines),
        rhyming_lines=rhyming,
        rhyme_rate=rhyming / len(lines),
        median_line_chars=float(statistics.median(lengths)),
        fragments=sum(n <= 2 for n in lengths),
        rhyme_class=top,
    )


def classes_for(
    chars: Iterable[str], usual: Mapping[str, str] | None = None
) -> dict[str, frozenset[str]]:
    """For a vocabulary, the characters of each rhyme class (every class a key, maybe empty).

    Characters without a class (non-Han, no reading) are in none.
    """
    members: dict[str, set[str]] = {c: set() for c in RHYME_CLASSES}
    for ch in chars:
        c = rhyme_class(ch, usual)
        if c is not None:
            members[c].add(ch)
    return {c: frozenset(m) for c, m in members.items()}
