"""The word model that scores an English poem's candidate lines: a proper distribution in every
context, the text's own word order preferred, the same after a round trip through the bundle's
file; an English writer's line penalty follows it; the shipped English style has one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bot.engine.bundle import active_version, load_bundle
from bot.forms import catalog
from bot.forms.english import Lexicon, words
from bot.forms.english_writer import EnglishWriter
from bot.forms.wordgram import WordGram

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "tests" / "fixtures" / "shakespeare_excerpt.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def grams() -> WordGram:
    return WordGram.build(TEXT)


@pytest.mark.parametrize(
    "before",
    [[], ["the"], ["my", "lord"], ["of", "the"], ["zebra", "the"], ["the", "zebra"]],
)
def test_every_context_gives_a_distribution_over_the_words(grams: WordGram, before):
    total = sum(grams.probability(before, w) for w in grams.vocab)
    assert total == pytest.approx(1.0, abs=1e-4)


def test_the_texts_own_word_order_is_likelier():
    grams = WordGram.build("we will bring thee home. " * 3 + "they brought the horse. " * 3)
    fit = grams.log_prob(["and"], words("we will bring thee"))
    assert fit > grams.log_prob(["and"], words("we will brought thee"))
    assert fit > grams.log_prob(["and"], words("thee bring will we"))
    assert grams.probability(["we", "will"], "bring") > 0.5


def test_an_unknown_word_costs_the_most(grams: WordGram):
    known = min(grams.probability(["the"], w) for w in grams.vocab)
    assert 0 < grams.probability(["the"], "xylophonist") < known


def test_the_file_gives_back_the_same_model(grams: WordGram, tmp_path: Path):
    path = tmp_path / "wordgram.npz"
    path.write_bytes(grams.to_bytes())
    again = WordGram.load(path)
    line = words("What say you to my lord the king?")
    assert again.log_prob(["o"], line) == grams.log_prob(["o"], line)
    assert again.vocab == grams.vocab


def test_a_line_in_the_plays_word_order_is_penalised_less(grams: WordGram):
    lexicon = Lexicon(words(TEXT))
    vocab = frozenset(TEXT) | {"\n", " "}

    def penalty(line: str) -> float:
        writer = EnglishWriter(lexicon, vocab, "speech", grams=grams)
        for ch in line + "\n":
            writer.advance(ch)
        return writer.penalty()

    ordered = "What say you to my lord the king?"
    scrambled = "King the lord my to you say what?"
    assert 0 < penalty(ordered) < penalty(scrambled) < math.inf
    without = EnglishWriter(lexicon, vocab, "speech")
    for ch in ordered + "\n":
        without.advance(ch)
    assert without.penalty() == 0.0


def test_the_shipped_english_style_scores_its_lines_by_its_words():
    models = ROOT / "models"
    bundle = load_bundle(models / "shakespeare" / str(active_version(models, "shakespeare")))
    grams = catalog.table(bundle.path, bundle.card, "wordgram", "wordgram")
    assert isinstance(grams, WordGram)
    assert len(grams.vocab) > 10_000
    assert grams.log_prob(["i"], ["do", "beseech", "you"]) > grams.log_prob(
        ["i"], ["beseech", "do", "you"]
    )
