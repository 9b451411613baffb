"""Characters a reader cannot see but that change what they see: control characters, bidi
overrides and isolates (U+202A-202E, U+2066-2069) that flip the text after them in Discord and
in a browser, zero-width marks, soft hyphens. A user's text (prompt, acrostic, theme) and
anything shown loses them; a zero-width joiner inside an emoji sequence (👩‍💻) and the tag
characters of a flag (🏴 + tags) are part of what is seen and stay."""

from __future__ import annotations

import unicodedata

ZWJ = "\u200d"
BLACK_FLAG = "\U0001f3f4"
# What may sit between an emoji and a joiner: the emoji presentation selector and skin tones.
_MODIFIERS = {"\ufe0f", *map(chr, range(0x1F3FB, 0x1F400))}


def _is_tag(ch: str) -> bool:
    return 0xE0020 <= ord(ch) <= 0xE007F


def _emoji(ch: str) -> bool:
    return unicodedata.category(ch) == "So"


def _joins_emoji(text: str, i: int) -> bool:
    """Whether the joiner at text[i] stands between two emoji."""
    j = i - 1
    while j >= 0 and text[j] in _MODIFIERS:
        j -= 1
    return j >= 0 and _emoji(text[j]) and i + 1 < len(text) and _emoji(text[i + 1])


def _in_flag(text: str, i: int) -> bool:
    """Whether the tag character at text[i] follows a black flag through tags only."""
    j = i - 1
    while j >= 0 and _is_tag(text[j]):
        j -= 1
    return j >= 0 and text[j] == BLACK_FLAG


def hidden_at(text: str) -> list[int]:
    """The positions of the characters in `text` nobody sees (newlines are seen)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\n":
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            out.append(i)
        elif category == "Cf":
            if ch == ZWJ and _joins_emoji(text, i):
                continue
            if _is_tag(ch) and _in_flag(text, i):
                continue
            out.append(i)
    return out


def visible(text: str) -> str:
    """`text` without the characters nobody sees (newlines and emoji sequences kept)."""
    drop = set(hidden_at(text))
    return "".join(ch for i, ch in enumerate(text) if i not in drop) if drop else text
