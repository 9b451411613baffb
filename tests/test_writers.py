"""The English and lyric writers, driven by a fake model: at each step a seeded random choice
among the characters the writer allows (sometimes the last one again, a bias toward spaces and
newlines as a real model has), until the writer says the poem is done. Every poem must come
out whole by the forms' own checkers, and no step may leave nothing to choose.

Data: an English lexicon of the words of the public-domain excerpt in tests/fixtures (no CMU
words added: its rhymes suffice, since the writer offers A-line rhyme words only from rhymes
with enough partners in the lexicon it is given); a Chinese vocabulary of every CJK unified
ideograph U+4E00..U+9FFF that has a 十三辙 class, plus the characters of two Tang quatrains
typed here (静夜思, 春晓; public domain).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.forms import lyrics
from bot.forms.english import (
    Lexicon,
    check_couplet,
    check_sonnet,
    ends_sentence,
    invented,
    poem_lines,
    words,
)
from bot.forms.english_writer import MAX_FREE_WORD, EnglishWriter
from bot.forms.lyric_writer import MIN_CLASS, VerseWriter
from bot.forms.rules import Allowed, FormError
from bot.forms.units import HAN_SOON, LATIN_SOON, SENTENCE_ENDS, UnitWriter

EXCERPT = (Path(__file__).parent / "fixtures" / "shakespeare_excerpt.txt").read_text(
    encoding="utf-8"
)
SHAKESPEARE_VOCAB = frozenset(
    "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\ufffd"
)
QUATRAINS = (
    "床前明月光 疑是地上霜 举头望明月 低头思故乡 " + "春眠不觉晓 处处闻啼鸟 夜来风雨声 花落知多少"
)
SONNET_HEADS = "WHENINDISGRACE"
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
SOME = settings(max_examples=50, deadline=None)
FEW = settings(max_examples=25, deadline=None)


@functools.cache
def lexicon() -> Lexicon:
    return Lexicon.from_text(EXCERPT, cmu=False)


@functools.cache
def han_vocab() -> frozenset[str]:
    chars = {chr(c) for c in range(0x4E00, 0xA000)}
    ranged = {c for members in lyrics.classes_for(chars).values() for c in members}
    return frozenset(ranged | set(QUATRAINS) | {" ", "\n", "，", "。", "\ufffd"})


@functools.cache
def small_han_vocab() -> frozenset[str]:
    """A vocabulary where some rhyme classes are too small to be chosen."""
    chars = {chr(c) for c in range(0x4E00, 0x4F00)}
    return frozenset(chars | set(QUATRAINS) | {" ", "\n"})


_CHOICES: dict[tuple[object, ...], tuple[str, ...]] = {}


def choices(allowed: Allowed, vocab: frozenset[str]) -> tuple[str, ...]:
    """What the engine's mask leaves: in every required set, not banned, in the vocabulary
    (never its unknown character), narrowed to the preferred sets when that leaves any."""
    key = (allowed.required, allowed.banned, allowed.preferred, vocab)
    got = _CHOICES.get(key)
    if got is None:
        for chars in allowed.required:
            assert chars <= vocab, sorted(chars - vocab)  # the writers stay within the vocab
        chars = set(vocab) - {"\ufffd"} - allowed.banned
        for required in allowed.required:
            chars &= required
        narrowed = chars.intersection(*allowed.preferred) if allowed.preferred else chars
        got = tuple(sorted(narrowed or chars))
        _CHOICES[key] = got
    return got


def drive(
    writer: EnglishWriter | VerseWriter | UnitWriter,
    vocab: frozenset[str],
    seed: int,
    limit: int,
    prompt: str = "",
    newline: float = 0.1,
    steps: int | None = None,
) -> str:
    """The prompt, then sampled characters until the writer is done (or `steps` came)."""
    rng = random.Random(seed)
    for ch in prompt:
        writer.allowed()  # the engine asks before each prompt character too
        writer.advance(ch)
    out = list(prompt)
    previous = None
    while not writer.done and (steps is None or len(out) - len(prompt) < steps):
        assert len(out) < limit, "".join(out)
        options = choices(writer.allowed(), vocab)
        assert options, "".join(out)
        roll = rng.random()
        if previous in options and roll < 0.25:
            ch = previous
        elif "\n" in options and roll < 0.25 + newline:
            ch = "\n"
        elif " " in options and roll < 0.5 + newline:
            ch = " "
        else:
            ch = rng.choice(options)
        writer.advance(ch)
        out.append(ch)
        previous = ch
    return "".join(out)


def english(shape: str, acrostic: str | None = None, seed: int = 0) -> EnglishWriter:
    return EnglishWriter(lexicon(), SHAKESPEARE_VOCAB, shape, acrostic, seed)


def assert_real_words(text: str, prompt: str = "") -> None:
    missing, total = invented(text, lexicon(), exclude=prompt)
    assert (missing, total) == (0, total), [w for w in words(text) if w not in lexicon()]


def assert_heads(text: str, heads: str) -> None:
    lines = poem_lines(text)
    assert len(lines) == len(heads)
    assert [line[0].lower() for line in lines] == [h.lower() for h in heads]


# --- English: sonnet and couplet --------------------------------------------------------


@SOME
@given(SEEDS)
def test_sonnet_keeps_metre_rhyme_and_words(seed: int) -> None:
    text = drive(english("sonnet"), SHAKESPEARE_VOCAB, seed, limit=14 * 120)
    check = check_sonnet(text, lexicon())
    assert (check.lines, check.syllable_ok, check.rhyme_pairs_kept) == (14, 14, 7), text
    assert text.endswith("\n") and "\n\n" not in text
    assert_real_words(text)


@FEW
@given(SEEDS)
def test_sonnet_acrostic(seed: int) -> None:
    text = drive(english("sonnet", SONNET_HEADS), SHAKESPEARE_VOCAB, seed, limit=14 * 120)
    check = check_sonnet(text, lexicon())
    assert (check.lines, check.syllable_ok, check.rhyme_pairs_kept) == (14, 14, 7), text
    assert_heads(text, SONNET_HEADS)
    assert_real_words(text)


@SOME
@given(SEEDS, st.sampled_from([None, "Lo", "ok"]))
def test_couplet(seed: int, acrostic: str | None) -> None:
    text = drive(english("couplet", acrostic), SHAKESPEARE_VOCAB, seed, limit=2 * 120)
    check = check_couplet(text, lexicon())
    assert (check.lines, check.syllable_ok, check.rhyme_kept) == (2, 2, True), text
    if acrostic:
        assert_heads(text, acrostic)
    assert_real_words(text)


@FEW
@given(SEEDS)
def test_sonnet_with_a_poorer_vocabulary(seed: int) -> None:
    """Words the vocabulary cannot spell (no apostrophe, no q, no capitals) are never offered."""
    vocab = frozenset("\n ,.;:!?abcdefghijklmnoprstuvwxyz")
    writer = EnglishWriter(lexicon(), vocab, "sonnet", "whenindisgrace", seed)
    text = drive(writer, vocab, seed, limit=14 * 120)
    check = check_sonnet(text, lexicon())
    assert (check.lines, check.syllable_ok, check.rhyme_pairs_kept) == (14, 14, 7), text
    assert set(text) <= vocab
    assert_real_words(text)


def test_rhyme_word_never_repeats_its_partner() -> None:
    for seed in range(40):
        lines = poem_lines(drive(english("couplet"), SHAKESPEARE_VOCAB, seed, limit=240))
        assert words(lines[0])[-1] != words(lines[1])[-1]


# --- English: speech ------------------------------------------------------------------


@SOME
@given(SEEDS)
def test_speech_ends_at_a_blank_line(seed: int) -> None:
    text = drive(english("speech"), SHAKESPEARE_VOCAB, seed, limit=20_000, newline=0.15)
    assert text.endswith("\n\n") and text.count("\n\n") == 1
    assert not text.startswith("\n")
    assert poem_lines(text)
    assert_real_words(text)


@FEW
@given(SEEDS)
def test_speech_after_a_speaker_line(seed: int) -> None:
    prompt = "ROMEO:\n"
    text = drive(english("speech"), SHAKESPEARE_VOCAB, seed, limit=20_000, prompt=prompt)
    assert text.endswith("\n\n") and poem_lines(text)  # a line of speech, not the name alone
    assert_real_words(text, prompt=prompt)


@SOME
@given(SEEDS, st.sampled_from(["Love", "HAMLET", "o"]))
def test_speech_acrostic(seed: int, heads: str) -> None:
    text = drive(english("speech", heads), SHAKESPEARE_VOCAB, seed, limit=20_000, newline=0.15)
    assert text.endswith("\n") and "\n\n" not in text
    assert len(text.splitlines()) == len(heads)
    assert_heads(text, heads)
    assert_real_words(text)
    assert ends_sentence(text), text  # its last line too, even where a word ends it


# --- English: prompts that break the rules --------------------------------------------


@FEW
@given(SEEDS, st.sampled_from(["speech", "sonnet", "couplet"]))
def test_prompt_outside_the_lexicon(seed: int, shape: str) -> None:
    prompt = "Zzyzx "
    text = drive(english(shape), SHAKESPEARE_VOCAB, seed, limit=20_000, prompt=prompt)
    assert_real_words(text, prompt=prompt)
    if shape == "sonnet":
        check = check_sonnet(text, lexicon())
        assert (check.lines, check.syllable_ok, check.rhyme_pairs_kept) == (14, 14, 7), text


@SOME
@given(
    SEEDS,
    st.sampled_from(["speech", "sonnet", "couplet"]),
    st.text(alphabet=sorted(SHAKESPEARE_VOCAB | {"é", "7", "\t"}), max_size=80),
)
def test_any_prompt_is_carried_on(seed: int, shape: str, prompt: str) -> None:
    writer = english(shape)
    drive(writer, SHAKESPEARE_VOCAB, seed, limit=len(prompt) + 20_000, prompt=prompt)
    assert writer.done


def test_long_free_word_is_closed() -> None:
    writer = english("sonnet")
    for ch in "Zq" * MAX_FREE_WORD:
        writer.advance(ch)
    assert not set(writer.allowed().required[0]) & set("abcXYZ")
    text = drive(writer, SHAKESPEARE_VOCAB, 1, limit=3000)
    assert writer.done and len(poem_lines(text)) == 14


def test_overlong_prompt_line_may_end() -> None:
    writer = english("couplet")
    prompt = "Now is the winter of our discontent made glorious summer"
    for ch in prompt:
        writer.advance(ch)
    assert "\n" in writer.allowed().required[0]
    drive(writer, SHAKESPEARE_VOCAB, 3, limit=400)
    assert writer.done


@FEW
@given(SEEDS, st.integers(min_value=0, max_value=900), st.sampled_from(["sonnet", "speech"]))
def test_cut_is_the_last_whole_line(seed: int, steps: int, shape: str) -> None:
    writer = english(shape)
    text = drive(writer, SHAKESPEARE_VOCAB, seed, limit=20_000, steps=steps)
    if not writer.done:
        assert writer.cut() == text.rfind("\n") + 1


def test_sets_are_stable_objects() -> None:
    one, two = english("sonnet"), english("sonnet", seed=9)
    for ch in "Shall I compare thee to a ":
        assert one.allowed().required[0] is two.allowed().required[0]
        one.advance(ch)
        two.advance(ch)
    assert one.allowed() is two.allowed()


@pytest.mark.parametrize(
    ("shape", "acrostic", "vocab"),
    [
        ("sonnet", "LOVE", SHAKESPEARE_VOCAB),
        ("couplet", "ABC", SHAKESPEARE_VOCAB),
        ("speech", "AB1", SHAKESPEARE_VOCAB),
        ("speech", "A B", SHAKESPEARE_VOCAB),
        ("speech", "", SHAKESPEARE_VOCAB),
        ("couplet", "Zo", SHAKESPEARE_VOCAB - {"z", "Z"}),
        ("ode", None, SHAKESPEARE_VOCAB),
        ("speech", None, SHAKESPEARE_VOCAB - {" "}),
    ],
)
def test_english_options_that_cannot_work(shape: str, acrostic: str | None, vocab) -> None:
    with pytest.raises(FormError):
        EnglishWriter(lexicon(), vocab, shape, acrostic, 0)


def test_head_no_word_starts_with() -> None:
    small = Lexicon(["the", "day", "may", "say", "way", "play", "stay", "a", "summer"])
    with pytest.raises(FormError, match="starts with"):
        EnglishWriter(small, SHAKESPEARE_VOCAB, "couplet", "tq", 0)
    with pytest.raises(FormError, match="rhymes"):
        EnglishWriter(Lexicon(["the", "a", "day"]), SHAKESPEARE_VOCAB, "couplet", None, 0)


# --- Mandarin lyrics ------------------------------------------------------------------


def assert_verse(text: str, count: int, low: int, high: int) -> None:
    check = lyrics.check_verse(text)
    assert check.lines == count and check.rhyme_rate == 1.0, text
    assert text.endswith("\n") and "\n\n" not in text
    for line in text.splitlines():
        assert low <= len(line.replace(" ", "")) <= high, line
        assert line == line.strip() and "  " not in line, line
        assert all(lyrics.is_han(c) or c == " " for c in line), line


@SOME
@given(SEEDS)
def test_verse_rhymes_and_fits(seed: int) -> None:
    writer = VerseWriter(han_vocab(), None, None, seed)
    assert 4 <= writer.lines <= 8
    text = drive(writer, han_vocab(), seed, limit=8 * 40, newline=0.3)
    assert_verse(text, writer.lines, 5, 14)


@SOME
@given(SEEDS, st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=3))
def test_verse_lengths_and_lines(seed: int, low: int, extra: int) -> None:
    high = max(2, low + extra)
    writer = VerseWriter(han_vocab(), 3, None, seed, min_chars=low, max_chars=high)
    text = drive(writer, han_vocab(), seed, limit=3 * 40, newline=0.3)
    assert_verse(text, 3, low, high)


@SOME
@given(SEEDS)
def test_verse_acrostic(seed: int) -> None:
    heads = "春夏秋冬天"
    writer = VerseWriter(han_vocab(), 2, heads, seed)
    text = drive(writer, han_vocab(), seed, limit=5 * 40, newline=0.3)
    assert_verse(text, 5, 5, 14)
    assert [line[0] for line in text.splitlines()] == list(heads)


@FEW
@given(SEEDS)
def test_verse_rhyme_class_is_a_big_one(seed: int) -> None:
    vocab = small_han_vocab()
    sizes = {name: len(chars) for name, chars in lyrics.classes_for(vocab).items()}
    assert min(sizes.values()) < MIN_CLASS <= max(sizes.values())  # the case this tests
    writer = VerseWriter(vocab, 4, None, seed)
    text = drive(writer, vocab, seed, limit=4 * 40, newline=0.3)
    assert_verse(text, 4, 5, 14)
    assert sizes[lyrics.check_verse(text).rhyme_class] >= MIN_CLASS


@SOME
@given(SEEDS, st.text(alphabet=sorted(set(QUATRAINS) | set("，。 a\n\t")), max_size=60))
def test_verse_carries_any_prompt_on(seed: int, prompt: str) -> None:
    writer = VerseWriter(han_vocab(), 4, None, seed, min_chars=3, max_chars=6)
    text = drive(writer, han_vocab(), seed, limit=len(prompt) + 4 * 20, prompt=prompt)
    assert writer.done
    start = len(prompt) if not prompt or prompt.endswith("\n") else text.find("\n", len(prompt))
    if start >= 0:  # the lines written after the prompt's own keep every rule but the rhyme
        for line in text[start:].split("\n"):
            assert not line or 3 <= len(line.replace(" ", "")) <= 6, line
            assert all(lyrics.is_han(c) or c == " " for c in line), line


@FEW
@given(SEEDS, st.integers(min_value=0, max_value=120))
def test_verse_cut(seed: int, steps: int) -> None:
    writer = VerseWriter(han_vocab(), 8, None, seed)
    text = drive(writer, han_vocab(), seed, limit=400, steps=steps)
    if not writer.done:
        assert writer.cut() == text.rfind("\n") + 1


@pytest.mark.parametrize(
    ("lines", "acrostic", "low", "high"),
    [(4, "春X", 5, 14), (4, "春 夏", 5, 14), (4, "", 5, 14), (0, None, 5, 14), (4, None, 6, 5)],
)
def test_verse_options_that_cannot_work(lines, acrostic, low, high) -> None:
    with pytest.raises(FormError):
        VerseWriter(han_vocab(), lines, acrostic, 0, min_chars=low, max_chars=high)
    with pytest.raises(FormError):
        VerseWriter(frozenset(QUATRAINS + "\n"), 4, None, 0)  # no class of 30 characters


# --- A unit nearing its length (bot/forms/units.py) -------------------------------------

# (unit, lines): a paragraph, a line, a paragraph of three counted lines.
UNIT_SHAPES = st.sampled_from([("paragraph", None), ("line", None), ("paragraph", 3)])
BOUNDS = st.integers(min_value=1, max_value=320)
UNIT_PROMPTS = st.text(alphabet=sorted(SHAKESPEARE_VOCAB | {"é", "\t"}), max_size=60)


def unit_poem(
    shape: tuple[str, int | None], vocab: frozenset[str], seed: int, bound: int, prompt: str = ""
) -> tuple[UnitWriter, str]:
    """A unit written by `drive` up to `bound` characters after the prompt, steered by that
    length (the prompt's included, as the catalog gives it)."""
    unit, lines = shape
    writer = UnitWriter(unit, lines, length=len(prompt) + bound, vocab=vocab)
    text = drive(writer, vocab, seed, len(prompt) + bound + 1, prompt=prompt, steps=bound)
    return writer, text


def nearing(length: int) -> int:
    """The characters left where a Latin unit's steering starts (units.py: `soon`)."""
    return min(LATIN_SOON, 2 * length // 3)


@SOME
@given(SEEDS, UNIT_SHAPES, BOUNDS, UNIT_PROMPTS)
def test_unit_steering_only_prefers(seed: int, shape, bound: int, prompt: str) -> None:
    """Never stuck (`drive` asserts something is left to choose at every step), and nothing
    refused that the unit allows without steering: it adds `preferred` sets only, which the
    engine drops where they leave nothing. So no prompt is refused for it either."""
    text = unit_poem(shape, SHAKESPEARE_VOCAB, seed, bound, prompt)[1]
    plain = UnitWriter(*shape)
    steered = UnitWriter(*shape, length=len(prompt) + bound, vocab=SHAKESPEARE_VOCAB)
    for ch in text:
        ours, theirs = steered.allowed(), plain.allowed()
        assert (ours.required, ours.banned, ours.greedy) == (
            theirs.required,
            theirs.banned,
            theirs.greedy,
        )
        steered.advance(ch)
        plain.advance(ch)


@SOME
@given(SEEDS, UNIT_SHAPES, BOUNDS, UNIT_PROMPTS)
def test_unit_closes_lines_near_its_length_only_after_a_sentence_end(
    seed: int, shape, bound: int, prompt: str
) -> None:
    """Within `soon` of the bound, a newline the writer chose closes a line that ends in .,
    ! or ?, or is the blank line after one (the paragraph's end); and a Latin word is never
    cut: after a letter, a letter may always come next."""
    text = unit_poem(shape, SHAKESPEARE_VOCAB, seed, bound, prompt)[1]
    length = len(prompt) + bound
    replay = UnitWriter(*shape, length=length, vocab=SHAKESPEARE_VOCAB)
    for i, ch in enumerate(text):
        options = choices(replay.allowed(), SHAKESPEARE_VOCAB)
        replay.advance(ch)
        if i < len(prompt):
            continue
        if i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
            assert any(c.isalpha() for c in options), (text[: i + 1], options)
        if ch == "\n" and length - i <= nearing(length):
            *earlier, line = text[:i].split("\n")
            if not line:  # a blank line: after the last line of text
                line = next((t for t in reversed(earlier) if t.strip()), "")
            assert line.rstrip()[-1:] in SENTENCE_ENDS, (text[: i + 1], prompt)


@SOME
@given(SEEDS, UNIT_SHAPES, BOUNDS, UNIT_PROMPTS)
def test_unit_cut_by_its_length_ends_its_last_sentence(
    seed: int, shape, bound: int, prompt: str
) -> None:
    """Cut by the length: at the last whole line that ended a sentence, where one did (here
    the prompt's count: `drive` asks before each of its characters); else at the last whole
    line."""
    writer, text = unit_poem(shape, SHAKESPEARE_VOCAB, seed, bound, prompt)
    if writer.done:
        return
    lines = [i + 1 for i, ch in enumerate(text) if ch == "\n" and text[:i].split("\n")[-1].strip()]
    ended = [end for end in lines if text[: end - 1].rstrip()[-1] in SENTENCE_ENDS]
    assert writer.cut() == (ended or lines or [0])[-1]


def test_a_unit_cut_is_never_inside_the_prompt() -> None:
    """The engine feeds the prompt without asking what may come: the prompt's line that ends
    a sentence is not where a poem is cut (that would leave it nothing of its own)."""
    writer = UnitWriter("paragraph", length=60, vocab=SHAKESPEARE_VOCAB)
    for ch in "Go.\n":
        writer.advance(ch)
    for ch in "and then\nI":
        writer.allowed()
        writer.advance(ch)
    assert writer.cut() == len("Go.\nand then\n")
    for ch in " go.\nwhat":
        writer.allowed()
        writer.advance(ch)
    assert writer.cut() == len("Go.\nand then\nI go.\n")
    for ch in " then\nnow":  # closed without a sentence end (not steered: the prompt's way)
        writer.advance(ch)
    assert writer.cut() == len("Go.\nand then\nI go.\n")


@SOME
@given(SEEDS, st.integers(min_value=9, max_value=200))
def test_a_chinese_line_unit_always_ends_with_a_sentence_end(seed: int, bound: int) -> None:
    """A Chinese `line` (its poem) always ends within its length: where it has not ended
    before `soon`, the clause in progress ends with 。 (within 3 characters of the bound the
    next character is it), and the line there."""
    writer, text = unit_poem(("line", None), han_vocab(), seed, bound)
    assert writer.done, text
    if bound - (len(text) - 1) <= min(HAN_SOON, 2 * bound // 3):  # its newline came within
        assert text.endswith("。\n"), text
