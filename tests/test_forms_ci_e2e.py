"""宋詞 through Discord (the loopback, the real discord.py), the page, the shell and export:
`/poem style:songci` with the tune autocompleted writes a 詞 of it, shown under the tune's
name, a rhyme a line, its halves apart; the page lists the tunes and streams a 詞 laid out
alike; a tune the style does not know, or an acrostic of the wrong count, is answered in words
(privately in Discord, status 2 in the shell); `/poem style:songci about:` names the theme
and its plan a word a line under the poem; a model trained in seconds on 詞 exports its tunes
and themes and writes them."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.composition import build_page, build_registry
from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Request, generate_once
from bot.forms import catalog, ci, themes

from .botworld import asynchronous, bot_world, footer, make_settings
from .bundles import SONG_CI, make_songci_bundle
from .test_cli import run
from .test_page import events


def songci_models(root):
    models = root / "models"
    make_songci_bundle(models)
    (models / "songci" / "ACTIVE").write_text("v1\n")
    return models


@asynchronous
async def test_poem_style_songci_with_the_tune_autocompleted(tmp_path):
    models = songci_models(tmp_path)
    settings = make_settings(tmp_path, models, default_style="songci")
    tunes = ci.Tunes.load(models / "songci" / "v1" / ci.TUNES_FILE)
    async with bot_world(tmp_path, settings=settings) as w:
        for typed in ("浣", "鷓鴣"):  # either script
            choices = await w.discord.autocomplete(
                w.guild, w.channel, w.member, "poem", {"style": "songci", "form": typed},
                focused="form",
            )  # fmt: skip
            assert len(choices) == 1, choices
        assert choices[0] == {"name": "鹧鸪天 (鷓鴣天) · 55字", "value": "鹧鸪天"}
        _, message = await w.poem({"style": "songci", "form": choices[0]["value"], "seed": 5})
        shown = message.embeds[0]["description"]
        title, blank, *lines = shown.split("\n")
        assert (title, blank) == ("鹧鸪天", ""), shown
        # 7。7。7，7。 and, after a blank line, 3，3。7。7，7。: a line ends at each 。.
        assert [len(line) for line in lines] == [8, 8, 16, 0, 8, 8, 16], shown
        assert ci.check("".join(lines), tunes.tunes["鹧鸪天"]).shape == 0
        assert "鹧鸪天" in footer(message) and "seed 5" in footer(message)
        _, other = await w.poem({"style": "songci", "form": "鷓鴣天", "seed": 5})
        assert other.embeds[0]["description"] == shown  # the name typed in traditional script
        assert not w.discord.violations


@asynchronous
async def test_poem_songci_about_a_theme_names_it_a_word_a_line(tmp_path):
    settings = make_settings(tmp_path, songci_models(tmp_path), default_style="songci")
    async with bot_world(tmp_path, settings=settings) as w:
        options = {"style": "songci", "form": "鹧鸪天", "about": "秋风", "seed": 5}
        _, message = await w.poem(options)
        title, blank, *lines = message.embeds[0]["description"].split("\n")
        assert (title, blank) == ("鹧鸪天", "")
        about, rest = footer(message).split("\n", 1)
        assert about.startswith("about 秋风: 秋风 · ") and "seed 5" in rest, footer(message)
        named = about.split(": ", 1)[1].split(" · ")
        lines = [line for line in lines if line]
        assert len(named) == len(lines) == 6
        assert all(word in line for word, line in zip(named, lines, strict=True)), lines
        # In traditional script, the plan's words are shown in it too.
        _, shown = await w.poem({**options, "script": "traditional"})
        assert footer(shown).startswith("about 秋风: 秋風 · ")
        _, refused = await w.poem({"style": "songci", "form": "鹧鸪天", "about": "咖啡"})
        assert refused.ephemeral and "咖 啡" in refused.content, refused.content
        assert not w.discord.violations


@asynchronous
async def test_an_unknown_tune_or_a_wrong_acrostic_is_answered_privately(tmp_path):
    settings = make_settings(tmp_path, songci_models(tmp_path), default_style="songci")
    async with bot_world(tmp_path, settings=settings) as w:
        _, reply = await w.poem({"style": "songci", "form": "浣沙溪"})
        assert reply.ephemeral and "浣溪沙" in reply.content, reply.content
        _, reply = await w.poem({"style": "songci", "form": "浣溪沙", "acrostic": "春花秋月"})
        assert reply.ephemeral and "6, not 4" in reply.content, reply.content
        assert not w.discord.violations


def test_the_shell_writes_a_tune_and_refuses_in_words(tmp_path):
    models = ["--models", str(songci_models(tmp_path))]
    base = ["generate", "--style", "songci", *models]
    done = run(*base, "--form", "鷓鴣天", "--script", "traditional", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("鷓鴣天\n\n") and "鹧鸪天" in done.stderr
    unknown = run(*base, "--form", "浣沙溪")
    assert unknown.returncode == 2 and "Near names: 浣溪沙" in unknown.stderr
    heads = run(*base, "--form", "浣溪沙", "--acrostic", "春花秋月")
    assert heads.returncode == 2 and "one character per clause: 6, not 4" in heads.stderr


@asynchronous
async def test_the_page_lists_the_tunes_and_streams_a_poem_under_its_name(tmp_path):
    settings = make_settings(tmp_path, songci_models(tmp_path), default_style="songci")
    registry = build_registry(settings)
    await registry.reload()
    client = TestClient(TestServer(build_page(settings, registry).app()))
    await client.start_server()
    try:
        (style,) = (await (await client.get("/api/styles")).json())["styles"]
        assert len(style["forms"]) == 20 and style["scripts"]
        assert {"name": "鹧鸪天", "label": "鹧鸪天 (鷓鴣天)"}.items() <= style["forms"][2].items()
        options = {"style": "songci", "form": "菩萨蛮", "seed": 2, "script": "traditional"}
        stream = await client.post(
            "/api/poems", json=options, headers={"Accept": "text/event-stream"}
        )
        got = await events(stream)
        streamed = "".join(d["text"] for n, d in got if n == "chunk")
        assert streamed == got[-1][1]["text"], streamed
        assert streamed.startswith("菩薩蠻\n\n") and streamed.count("\n\n") == 2, streamed
    finally:
        await client.close()
        await registry.close()


def test_a_model_trained_on_ci_exports_its_tunes_and_writes_them(tmp_path):
    pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from export.__main__ import main as export_main
    from training.__main__ import main as train_main

    from .test_training_export import TINY

    run_dir, models = tmp_path / "run", tmp_path / "models"
    args = ["--corpus", str(SONG_CI), "--style", "songci", "--out", str(run_dir), "--epochs", "1"]
    assert train_main([*args, *TINY]) == 0
    assert export_main([str(run_dir), "--models", str(models), "--language", "zh-Hans"]) == 0
    bundle = load_bundle(models / "songci" / "v1")
    section = bundle.card["poem"]
    assert section["tunes"] == ci.TUNES_FILE and len(section["forms"]) == 20
    assert section["script"] == "simplified" and "readings" not in section
    tunes = ci.Tunes.load(bundle.path / ci.TUNES_FILE)
    plan = catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, form="菩萨蛮")
    request = Request(prompt=plan.prompt, length=plan.length, seed=1, rules=plan.rules)
    poem = asyncio.run(generate_once(bundle.path, request, "cpu"))
    assert ci.check(poem.text, tunes.tunes["菩萨蛮"]).shape == 0, poem.text
    # Its themes are exported with it: a 詞 about something holds the theme's word.
    assert section["themes"] == themes.THEMES_FILE
    plan = catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, form="菩萨蛮", about="明月")
    request = Request(prompt=plan.prompt, length=plan.length, seed=1, rules=plan.rules)
    poem = asyncio.run(generate_once(bundle.path, request, "cpu"))
    assert ci.check(poem.text, tunes.tunes["菩萨蛮"]).shape == 0 and "明月" in poem.text
