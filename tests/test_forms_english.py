"""English forms: the tokeniser, CMU syllables and rhyme, the mask trie, the benchmark checkers."""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.forms import english
from bot.forms.english import (
    Lexicon,
    check_couplet,
    check_sonnet,
    final_word,
    invented,
    line_syllables,
    poem_lines,
    words,
)

EXCERPT = (Path(__file__).parent / "fixtures" / "shakespeare_excerpt.txt").read_text(
    encoding="utf-8"
)

SONNET_18 = """\
Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
"""


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.from_text(EXCERPT)


@pytest.fixture(scope="module")
def text_lexicon() -> Lexicon:
    return Lexicon.from_text(EXCERPT, cmu=False)


@pytest.fixture(scope="module")
def sorted_words(lexicon: Lexicon) -> list[str]:
    return list(lexicon.trie)


def test_words_keep_inner_apostrophes_and_split_at_hyphens():
    text = "'Tis the self-same LOVERS' hearts; o'er know't, is't? 'Speak.' a''b 3rd"
    assert words(text) == [
        "tis",
        "the",
        "self",
        "same",
        "lovers",
        "hearts",
        "o'er",
        "know't",
        "is't",
        "speak",
        "a",
        "b",
        "rd",
    ]


def test_lexicon_holds_the_text_and_cmu(lexicon: Lexicon, text_lexicon: Lexicon):
    assert "Marcius" in lexicon  # a name of the play, not in CMU
    assert "know't" in lexicon
    assert "temperate" in lexicon and "temperate" not in text_lexicon
    assert "marcius" in text_lexicon
    assert "roges" not in lexicon
    rare = Lexicon.from_text(EXCERPT, cmu=False, min_count=2)
    assert "citizens" in rare and "prating" not in rare  # "prating" occurs once


def test_syllables_come_from_cmu_then_the_estimate(lexicon: Lexicon):
    assert lexicon.syllables("Compare") == 2
    assert lexicon.syllables("possession") == 3
    # CMU's first pronunciation of "temperate" is the two-syllable "temp'rate".
    assert lexicon.syllables("temperate") == 2
    # Not in CMU: the estimate, which must not read the apostrophe as a letter.
    assert lexicon.syllables("o'er") == 1
    assert lexicon.syllables("bointed") == 2
    assert lexicon.syllables("x") >= 1


def test_line_syllables_of_known_lines(lexicon: Lexicon):
    assert line_syllables("Shall I compare thee to a summer's day?", lexicon) == 10
    assert line_syllables("So long lives this, and this gives life to thee.", lexicon) == 10
    assert line_syllables("Thou art more lovely and more temperate:", lexicon) == 9
    assert line_syllables("", lexicon) == 0


def test_sonnet_18_has_fourteen_lines_and_keeps_four_rhyme_pairs(lexicon: Lexicon):
    # By CMU, day/May, shines/declines, fade/shade and see/thee rhyme. temperate/date do not
    # (the stress is on "tem"), and dimm'd/untrimm'd, ow'st/grow'st are not in CMU at all,
    # so those pairs cannot rhyme.
    check = check_sonnet(SONNET_18, lexicon)
    assert check == english.SonnetCheck(
        lines=14, fourteen=True, syllable_ok=14, rhyme_pairs_kept=4, rhyme_pairs=7
    )


def test_swapping_lines_breaks_rhyme_pairs(lexicon: Lexicon):
    lines = SONNET_18.splitlines()
    lines[0], lines[1] = lines[1], lines[0]  # day and temperate trade places: (1,3) is lost
    assert check_sonnet("\n".join(lines), lexicon).rhyme_pairs_kept == 3
    lines = SONNET_18.splitlines()
    lines[12], lines[8] = lines[8], lines[12]  # fade/see: (9,11) and (13,14) are lost
    assert check_sonnet("\n".join(lines), lexicon).rhyme_pairs_kept == 2


def test_sonnet_skips_a_leading_speaker_line_and_blank_lines(lexicon: Lexicon):
    spoken = "First Citizen:\n" + SONNET_18.replace("date;\n", "date;\n\n")
    assert check_sonnet(spoken, lexicon) == check_sonnet(SONNET_18, lexicon)
    assert poem_lines("KING RICHARD III:\nNow is the winter")[0] == "Now is the winter"
    assert len(poem_lines("Hold thy peace:\nNow is the winter")) == 2  # verse, not a name
    # A speaker line later on is a line of the poem (the form is broken).
    assert check_sonnet(SONNET_18 + "\nAll:\n", lexicon).lines == 15


def test_short_sonnet_has_fewer_pairs(lexicon: Lexicon):
    first_five = "\n".join(SONNET_18.splitlines()[:5])
    check = check_sonnet(first_five, lexicon)
    assert (check.lines, check.fourteen, check.rhyme_pairs, check.rhyme_pairs_kept) == (
        5,
        False,
        2,
        1,
    )
    assert check_sonnet("", lexicon).rhyme_pairs == 0


def test_rhymes(lexicon: Lexicon):
    assert lexicon.rhymes("day", "May")
    assert lexicon.rhymes("heat", "feet")
    assert not lexicon.rhymes("day", "day")
    assert not lexicon.rhymes("Day", "day")
    assert not lexicon.rhymes("day", "night")
    assert not lexicon.rhymes("untrimm'd", "dimm'd")  # unknown to CMU: never rhymes
    assert lexicon.rhyme("day") == "EY1"
    assert lexicon.rhyme("bointed") is None


def test_rhyming_words_and_classes(lexicon: Lexicon, text_lexicon: Lexicon):
    day = lexicon.rhyming("day")
    assert {"may", "away", "say"} <= day and "day" not in day
    assert lexicon.rhyming("bointed") == frozenset()
    assert text_lexicon.rhyming("day") <= text_lexicon.words
    classes = lexicon.rhyme_classes(min_words=50)
    assert classes["EY1"] == day | {"day"}
    assert all(len(members) >= 50 for members in classes.values())
    assert len(lexicon.rhyme_classes(min_words=1)) > len(classes)


def test_every_word_is_reachable_letter_by_letter(text_lexicon: Lexicon):
    trie = text_lexicon.trie
    assert len(trie) == len(text_lexicon)
    for word in trie:
        for i, char in enumerate(word):
            assert char in trie.next_chars(word[:i])
        assert trie.is_word(word)


def test_next_chars_of_a_non_prefix_is_empty(lexicon: Lexicon):
    trie = lexicon.trie
    assert trie.next_chars("zzxq") == frozenset()
    assert trie.next_chars("know'") == {"t"}  # only "know't" goes on past the apostrophe
    assert not trie.is_word("know'")
    assert trie.next_chars("Sha") == trie.next_chars("sha")
    assert trie.is_word("Shall") and not trie.is_word("shal")
    assert set(trie.next_chars("")) <= set("abcdefghijklmnopqrstuvwxyz")


def test_subtrie_restricts_to_its_words(lexicon: Lexicon):
    sub = lexicon.trie.subtrie(["day", "May", "Dawn", "roges"])
    assert list(sub) == ["dawn", "day", "may"]  # "roges" is not in the lexicon
    assert sub.next_chars("") == {"d", "m"}
    assert sub.next_chars("da") == {"w", "y"}
    assert sub.next_chars("day") == frozenset() and sub.is_word("day")
    assert not sub.is_word("dance") and "n" not in sub.next_chars("da")


def _next_chars_by_scan(sorted_words: list[str], prefix: str) -> set[str]:
    found = set()
    for word in sorted_words[bisect_left(sorted_words, prefix) :]:
        if not word.startswith(prefix):
            break
        if len(word) > len(prefix):
            found.add(word[len(prefix)])
    return found


@given(st.data())
def test_next_chars_agrees_with_the_word_list(lexicon: Lexicon, sorted_words, data):
    word = data.draw(st.sampled_from(sorted_words))
    cut = data.draw(st.integers(0, len(word)))
    tail = data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", max_size=2))
    prefix = word[:cut] + tail
    assert lexicon.trie.next_chars(prefix) == _next_chars_by_scan(sorted_words, prefix)
    assert lexicon.trie.is_word(prefix) == (prefix in lexicon)


@settings(max_examples=30)  # `allowed` scans the words under a prefix: all of them for ""
@given(st.data())
def test_next_chars_allowed_matches_the_subtrie(lexicon: Lexicon, sorted_words, data):
    word = data.draw(st.sampled_from(sorted_words))
    chosen = set(data.draw(st.lists(st.sampled_from(sorted_words), max_size=20))) | {word}
    sub = lexicon.trie.subtrie(chosen)
    for cut in range(len(word) + 1):
        prefix = word[:cut]
        assert lexicon.trie.next_chars(prefix, chosen.__contains__) == sub.next_chars(prefix)
        if cut < len(word):
            assert word[cut] in sub.next_chars(prefix)


def test_invented_counts_made_up_words(lexicon: Lexicon):
    assert invented("the roges bointed adtening", lexicon) == (3, 4)
    assert invented("The roges bointed adtening.", lexicon, exclude="Roges") == (2, 3)
    assert invented("First Citizen:\nSpeak, speak.", lexicon) == (0, 4)
    assert invented("", lexicon) == (0, 0)


def test_couplet(lexicon: Lexicon):
    last_two = "\n".join(SONNET_18.splitlines()[-2:])
    assert check_couplet(last_two, lexicon) == english.CoupletCheck(
        lines=2, two=True, syllable_ok=2, rhyme_kept=True
    )
    unrhymed = "\n".join(SONNET_18.splitlines()[:2])
    assert not check_couplet(unrhymed, lexicon).rhyme_kept
    assert not check_couplet("So long as men can breathe or eyes can see,", lexicon).rhyme_kept


def test_final_word():
    assert final_word("Is't a verdict?") == "verdict"
    assert final_word("We know't, we know't.") == "know't"
    assert final_word("-- !") is None
