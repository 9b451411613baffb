"""Mandarin lyric rhyme (the Jay Chou style, simplified script): finals and the 十三辙.

Mandarin lyrics rhyme by the finals (韵母) of their line-final syllables, grouped as the
十三辙 of northern song and opera. A character's final comes from `pypinyin` (its first,
normal reading, the character taken alone); `FINAL_TO_CLASS` maps finals to 辙. Nothing here
reads context, so a polyphone at a line's end takes its commonest reading (了 le, 着 zhe).
"""

from __future__ import annotations

import functools
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pypinyin import Style, pinyin

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


def rhyme_class(ch: str) -> str | None:
    """The 十三辙 class (one of RHYME_CLASSES) of `ch`'s final, or None without one."""
    f = final(ch)
    return None if f is None else FINAL_TO_CLASS.get(f)


def _is_trailing_noise(ch: str) -> bool:
    """Spaces, punctuation and symbols, which a line may end in after its last syllable."""
    return unicodedata.category(ch)[0] in "PSZC"


def line_rhyme(line: str) -> str | None:
    """The rhyme class of a line's last syllable: its last character, after trailing spaces,
    punctuation and symbols, when that is a Han character; None otherwise (a line ending in
    a Latin word such as "baby" does not rhyme by a Han character before it).
    """
    end = len(line)
    while end and _is_trailing_noise(line[end - 1]):
        end -= 1
    return rhyme_class(line[end - 1]) if end else None


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


def check_verse(text: str) -> VerseCheck:
    """Measure a verse: how many of its lines end in its commonest rhyme class, and so on."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return VerseCheck(0, 0, 0.0, 0.0, 0)
    classes = [line_rhyme(line) for line in lines]
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


def classes_for(chars: Iterable[str]) -> dict[str, frozenset[str]]:
    """For a vocabulary, the characters of each rhyme class (every class a key, maybe empty).

    Characters without a class (non-Han, no reading) are in none.
    """
    members: dict[str, set[str]] = {c: set() for c in RHYME_CLASSES}
    for ch in chars:
        c = rhyme_class(ch)
        if c is not None:
            members[c].add(ch)
    return {c: frozenset(m) for c, m in members.items()}
