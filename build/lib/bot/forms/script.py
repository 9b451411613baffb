"""Simplified and traditional Chinese script, by OpenCC (Apache-2.0; its data ships inside).

Traditional -> simplified is safe for display; simplified -> traditional is ambiguous
(发 -> 發/髮, 后 -> 後/后, 干 -> 乾/幹/干), so `candidates` lists every form a typed character
may stand for, for the engine to try each and take the likeliest.

The installed `opencc` (the official binding) takes a config by stem or file name
(`OpenCC("t2s")` or `OpenCC("t2s.json")`); converters are built once, on first use.
"""

from __future__ import annotations

import functools
from collections import defaultdict

import opencc

SCRIPTS: tuple[str, ...] = ("simplified", "traditional")

# The unified CJK ideographs (basic, extension A, extensions B-H) that `candidates` reads
# OpenCC's traditional -> simplified table over. Compatibility ideographs (U+F900-U+FAFF) are
# left out: they are duplicates of unified ones (裏 U+F9E7 of 裏), not other characters.
_UNIFIED_RANGES = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0x20000, 0x323B0))


@functools.cache
def _converter(config: str) -> opencc.OpenCC:
    """One OpenCC converter per config ("t2s", "s2t"), built once."""
    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    """`text` in simplified characters (OpenCC t2s, phrase-aware)."""
    return _converter("t2s").convert(text)


def to_traditional(text: str) -> str:
    """`text` in traditional characters (OpenCC s2t: its one likeliest form, phrase-aware)."""
    return _converter("s2t").convert(text)


def convert(text: str, script: str) -> str:
    """`text` in `script`, one of SCRIPTS."""
    if script == "simplified":
        return to_simplified(text)
    if script == "traditional":
        return to_traditional(text)
    raise ValueError(f"script must be one of {SCRIPTS}, not {script!r}")


@functools.cache
def _traditional_forms() -> dict[str, tuple[str, ...]]:
    """Simplified character -> every traditional character OpenCC simplifies to it.

    The pip package ships its dictionaries only compiled (`STCharacters.ocd2`, no `.txt`), and
    s2t gives one form per character; so this inverts the other direction instead: every
    unified ideograph, each on its own line (no phrase can span two), goes through t2s once
    (about 100,000 characters, tens of milliseconds), and each that changes is a traditional
    form of what it became (發 and 髮 -> 发; 乾, 幹 and 榦 -> 干).
    """
    chars = [chr(i) for start, stop in _UNIFIED_RANGES for i in range(start, stop)]
    simplified = to_simplified("\n".join(chars)).split("\n")
    forms: dict[str, list[str]] = defaultdict(list)
    if len(simplified) == len(chars):  # the converter kept every line break
        for trad, simp in zip(chars, simplified, strict=True):
            if trad != simp and len(simp) == 1:
                forms[simp].append(trad)
    return {simp: tuple(trads) for simp, trads in forms.items()}


def candidates(ch: str) -> list[str]:
    """The characters a user's typed `ch` may stand for in either script, `ch` first.

    Then its traditional forms: OpenCC s2t's choice, then every other traditional character
    that OpenCC's t2s turns into `ch` (see `_traditional_forms`), in code point order; then
    its simplified form (t2s). Deduplicated: 发 -> [发, 發, 髮]; 后 -> [后, 後];
    干 -> [干, 幹, 乾, 榦]; 發 -> [發, 发]. Anything that is not one character comes back alone.
    """
    if len(ch) != 1:
        return [ch]
    found = [ch, to_traditional(ch), *_traditional_forms().get(ch, ()), to_simplified(ch)]
    return list(dict.fromkeys(c for c in found if len(c) == 1))
