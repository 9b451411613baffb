"""Characters nobody sees are dropped from what users type and what is shown: bidi overrides
and isolates, zero-width marks, controls; emoji sequences and newlines stay whole."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from bot.forms.hidden import hidden_at, visible

BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


def test_bidi_overrides_and_isolates_are_dropped():
    for mark in BIDI:
        assert visible(f"{mark}Hello{mark} 世界") == "Hello 世界"


def test_zero_width_and_control_characters_are_dropped_newlines_kept():
    text = "a\u200bb\u200cc\u2060d\ufeffe\u00adf\x00g\x1b[31m\nh\u200di"
    assert visible(text) == "abcdefg[31m\nhi"


def test_emoji_sequences_stay_whole():
    for emoji in ("👩\u200d💻", "👨\u200d👩\u200d👧", "🏳\ufe0f\u200d🌈", "👋🏽\u200d🔥"):
        assert visible(f"hi {emoji}!") == f"hi {emoji}!"
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    assert visible(scotland) == scotland
    # A joiner or a tag that joins no emoji is hidden text.
    assert visible("a\u200d🙂") == "a🙂" and visible("x\U000e0067") == "x"


@given(st.text())
def test_what_is_left_is_seen_and_nothing_seen_is_lost(text):
    shown = visible(text)
    assert hidden_at(shown) == [] and visible(shown) == shown
    seen = [c for c in text if c == "\n" or unicodedata.category(c) not in ("Cc", "Cf")]
    assert [c for c in shown if c == "\n" or unicodedata.category(c) not in ("Cc", "Cf")] == seen
