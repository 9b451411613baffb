"""Forms through Discord (the loopback, the real discord.py): the shipped Tang and Shakespeare
bundles write whole poems in the form asked for, the form option's autocomplete offers what
the chosen style has, named in its language, and options a form cannot take are answered
privately in words, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.engine.bundle import active_version
from bot.forms import english, tang

from .botworld import asynchronous, bot_world, footer, make_settings

ROOT = Path(__file__).resolve().parent.parent


def shipped(root: Path, *styles: str) -> Path:
    """A models folder holding the shipped bundles of `styles` (linked, not copied)."""
    models = root / "models"
    for style in styles:
        (models / style).mkdir(parents=True)
        (models / style / "v1").symlink_to(ROOT / "models" / style / "v1")
        (models / style / "ACTIVE").write_text("v1\n")
    return models


def own_themes(root: Path, *words: str) -> Path:
    """A models folder whose shakespeare is the shipped live bundle with `words` as the themes
    it gives a poem asked without one (its other files linked, not copied)."""
    shipped_models = ROOT / "models"
    live = shipped_models / "shakespeare" / active_version(shipped_models, "shakespeare")
    folder = root / "models" / "shakespeare" / live.name
    folder.mkdir(parents=True)
    for path in live.iterdir():
        if path.name != "card.json":
            (folder / path.name).symlink_to(path)
    card = json.loads((live / "card.json").read_text(encoding="utf-8"))
    card["poem"]["default_themes"] = list(words)
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    (folder.parent / "ACTIVE").write_text(f"{live.name}\n")
    return root / "models"


@asynchronous
async def test_a_tang_acrostic_quatrain_keeps_every_rule(tmp_path):
    settings = make_settings(tmp_path, shipped(tmp_path, "tang"), default_style="tang")
    async with bot_world(tmp_path, settings=settings) as w:
        options = {"style": "tang", "form": "qijue", "acrostic": "春夏秋冬", "seed": 11}
        _, message = await w.poem(options)
        poem = message.embeds[0]["description"]
        assert tang.check(poem, "qijue", "春夏秋冬").all_rules, poem
        assert "qijue" in footer(message) and "seed 11" in footer(message)
        # Shown in simplified characters when asked, the same poem underneath.
        _, simple = await w.poem({**options, "acrostic": "春夏秋冬", "script": "simplified"})
        assert "simplified" in footer(simple)
        assert simple.embeds[0]["description"] != poem
        assert len(simple.embeds[0]["description"]) == len(poem)
        choices = await w.discord.autocomplete(
            w.guild, w.channel, w.member, "poem", {"style": "tang", "form": "七"}, focused="form"
        )
        assert [c["value"] for c in choices] == ["qijue", "qilv"]
        assert choices[0]["name"] == "七言絕句 (qijue)"
        assert not w.discord.violations


@asynchronous
async def test_a_sonnet_has_fourteen_rhyming_lines_of_real_words(tmp_path):
    settings = make_settings(tmp_path, shipped(tmp_path, "shakespeare"))
    async with bot_world(tmp_path, settings=settings) as w:
        _, message = await w.poem({"style": "shakespeare", "form": "sonnet", "seed": 5})
        poem = message.embeds[0]["description"].replace("\\", "")  # markdown escapes
        words = english.Lexicon.from_text(
            (ROOT / "models/shakespeare/v1/words.txt").read_text(), cmu=True
        )
        check = english.check_sonnet(poem, words)
        assert check.fourteen and check.rhyme_pairs_kept == 7, poem
        assert check.syllable_ok == 14, poem
        assert english.invented(poem, words)[0] == 0
        assert "sonnet" in footer(message)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"style": "tang", "form": "qijue", "acrostic": "春夏秋"}, "needs 4"),
        ({"style": "tang", "acrostic": "春夏秋冬春"}, "4 or 8"),
        ({"style": "tang", "form": "sonnet"}, "has no form"),
        ({"style": "tang", "form": "qilv", "length": 30}, "needs 64 characters"),
        ({"style": "tang", "form": "wujue", "prompt": "白日依山盡黃河"}, "first line"),
        ({"style": "shakespeare", "script": "simplified"}, "Only the Chinese styles"),
        ({"style": "shakespeare", "form": "sonnet", "acrostic": "ROSE"}, "needs 14"),
        ({"style": "shakespeare", "form": "sonnet", "length": 100}, "at least"),
    ],
)
@asynchronous
async def test_options_a_form_cannot_take_get_a_private_answer(tmp_path, options, says):
    settings = make_settings(tmp_path, shipped(tmp_path, "tang", "shakespeare"))
    async with bot_world(tmp_path, settings=settings) as w:
        _, reply = await w.poem(options)
        assert reply.ephemeral and says in reply.content.replace("\\", ""), reply.content
        assert not w.discord.violations
