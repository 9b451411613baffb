"""The bundles that ship in models/: they load, serve from the shell, repeat with a seed, and
carry the card the contract asks for, within the size budget and their quality bars."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bot.composition import build_registry
from bot.config import ConfigError, Settings
from bot.engine.bundle import active_version, load_bundle, styles
from bot.engine.scheduler import Request, generate_once
from bot.engine.sessions import StepModel, load_model
from bot.forms import catalog, english_writer, lyric_writer, tang, tang_writer
from bot.forms.rules import FormError
from bot.poems import plan_request, theme_for

from .botworld import asynchronous, make_settings

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHIPPED = ["jaychou", "shakespeare", "songci", "tang"]
KNESER_NEY = {
    c["name"]: c["orders"]["6"]["nats_per_char"]
    for c in json.loads((ROOT / "benchmarks/results/kneser_ney.json").read_text())["corpora"]
}


def test_the_bundled_styles_ship():
    assert styles(MODELS) == SHIPPED


@pytest.mark.parametrize("style", SHIPPED)
def test_shipped_bundle_card_and_budget(style):
    bundle = load_bundle(MODELS / style / active_version(MODELS, style))
    card = bundle.card
    assert card["parity"]["max_abs_logit_diff"] <= 1e-4
    assert card["training"]["command"].startswith("python -m training")
    assert card["metrics"]["training_seconds"] > 0
    assert bundle.size_bytes <= 50e6
    model = StepModel(bundle, providers="cpu")
    assert model.provider == "CPUExecutionProvider"
    # Each serves its int8 graph, measured as good as fp32 on the validation tail.
    assert card["int8"]["serve"] and load_model(bundle.path, providers="cpu").int8
    assert abs(card["metrics"]["val_loss_int8"] - card["metrics"]["val_loss_onnx"]) <= 0.002
    if style == "shakespeare":
        assert card["metrics"]["val_loss"] <= 1.50


@pytest.mark.parametrize("style", ["tang", "jaychou", "songci"])
def test_chinese_styles_beat_kneser_ney_on_their_split(style):
    bundle = load_bundle(MODELS / style / active_version(MODELS, style))
    card = bundle.card
    assert card["metrics"]["val_loss"] < KNESER_NEY[card["corpus"]["name"]]
    if bundle.ngram_weight is not None:  # the figure is the mixture the engine serves
        assert card["metrics"]["val_loss_onnx"] == card["metrics"]["val_loss"]
        assert StepModel(bundle, providers="cpu").ngram.order == card["ngram"]["order"]


@pytest.mark.parametrize(
    ("style", "prompt"), [("shakespeare", "ROMEO:"), ("tang", "春"), ("jaychou", "")]
)
def test_generate_on_a_shipped_model_repeats_with_its_seed(style, prompt):
    cmd = [
        sys.executable,
        "-m",
        "bot",
        "generate",
        "--style",
        style,
        "--prompt",
        prompt,
        "--length",
        "120",
        "--seed",
        "2026",
        "--models",
        str(MODELS),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith(prompt)
    poem = first.stdout[:-1]  # print's newline
    assert len(poem) <= len(prompt) + 120  # the length bounds the poem
    # One whole unit: a Tang poem in a form, else text ending at a whole line.
    assert tang.check(poem).all_rules if style == "tang" else poem.endswith("\n")


# Versions whose step graph was built again from the weights of the one before
# (`python -m export derive ... --new-version`), and the real text each is checked on.
REDERIVED = [
    ("shakespeare", "v2", "v3", "shakespeare_excerpt.txt"),
    ("tang", "v1", "v2", "tang_excerpt.txt"),
    ("jaychou", "v3", "v4", "tang_excerpt.txt"),
]


@pytest.mark.parametrize(("style", "old", "new", "text"), REDERIVED)
def test_a_rederived_step_graph_writes_what_the_old_one_wrote(style, old, new, text):
    before, after = (StepModel.load(MODELS / style / v, providers="cpu") for v in (old, new))
    card = after.bundle.card
    assert card["derived_from"] == f"{style}/{old}"
    assert card["step_graph"]["parity"]["max_abs_logit_diff"] <= 1e-4
    # Logits over 200 characters of real text, 4 rows at once.
    chars = (ROOT / "tests" / "fixtures" / text).read_text(encoding="utf-8")
    ids = before.bundle.vocab.encode(chars)[0][:800].reshape(4, 200)
    states_before, states_after = before.zero_states(4), after.zero_states(4)
    for t in range(ids.shape[1]):
        logits_before, states_before = before.step(ids[:, t], states_before)
        logits_after, states_after = after.step(ids[:, t], states_after)
        assert np.abs(logits_before - logits_after).max() <= 1e-4
    # The same text for the same seed: 200 characters at temperature 0.
    greedy = Request(length=200, temperature=0.0, seed=3)
    texts = [
        asyncio.run(generate_once(m.bundle.path, greedy, "cpu", "fp32")).text
        for m in (before, after)
    ]
    assert texts[0] == texts[1] and len(texts[0]) == 200


# What a poem's plan builds once per bundle: the seconds a cold one takes (an English lexicon
# reads CMU's dictionary) would otherwise hold up the event loop on a style's first poem, and
# every acknowledgement behind it.
PLAN_CACHES = [
    catalog._lexicon,
    catalog._lines,
    catalog._table,
    catalog._writable,
    english_writer._plan,
    lyric_writer._plan,
    tang_writer._sets,
    tang._table,
]


@asynchronous
async def test_a_style_goes_live_with_its_forms_ready(tmp_path):
    """The registry builds each form's tables while it loads the model, in its thread: the
    first poem of every form of every shipped style, with and without a theme, builds none."""
    for cache in PLAN_CACHES:
        cache.cache_clear()
    registry = build_registry(make_settings(tmp_path, MODELS))
    try:
        await registry.reload()
        assert registry.styles() == SHIPPED
        built = sum(cache.cache_info().misses for cache in PLAN_CACHES)
        assert built > 0
        themes = {"shakespeare": "love", "tang": "月", "jaychou": "爱", "songci": "明月"}
        for style in SHIPPED:
            bundle = registry.live(style).bundle
            for form in [None, *bundle.card["poem"]["forms"]]:
                for about in (None, themes[style]):
                    # A tune too short for the theme refuses it: that builds nothing either.
                    with contextlib.suppress(FormError):
                        catalog.plan(
                            bundle.card, bundle.vocab.chars, bundle.path, form=form, about=about
                        )
        assert sum(cache.cache_info().misses for cache in PLAN_CACHES) == built
    finally:
        await registry.close()


@pytest.mark.parametrize(("style", "end"), [("tang", "\n"), ("shakespeare", "\n\n")])
def test_a_poem_continued_is_read_as_a_finished_poem(tmp_path, style, end):
    """Continue (and a message a poem starts from) gives the model the old poem as the corpus
    ends its pieces: a Tang poem ends at its 。, and without the newline after it the new
    poem would be read as the old one's next clause."""
    settings = make_settings(tmp_path, MODELS)
    live = types.SimpleNamespace(bundle=load_bundle(MODELS / style / active_version(MODELS, style)))
    old = {"tang": "春眠不覺曉，處處聞啼鳥。", "shakespeare": "ROMEO:\nBut soft, what light."}[
        style
    ]
    for context in (old, old + end, old + "\n"):
        _, request = plan_request(settings, live, context=context)
        assert request.context == old + end
    cap = settings.limits.max_length + settings.limits.max_prompt
    _, request = plan_request(settings, live, context=old * (cap // len(old) + 1))
    assert len(request.context) == cap and request.context.endswith(old + end)


def test_each_style_writes_its_own_candidates_unless_the_operator_says(tmp_path):
    """Without CANDIDATES, a poem of a form takes its style's candidates a line (tang's card:
    32, chosen by blind readers against the latency), else 8; CANDIDATES sets every style's,
    and no style's exceeds the batch."""
    settings = make_settings(tmp_path, MODELS)

    def asked(settings, style: str) -> int:
        version = active_version(MODELS, style)
        live = types.SimpleNamespace(bundle=load_bundle(MODELS / style / version))
        return plan_request(settings, live, about="-")[1].candidates  # a free poem

    assert (
        load_bundle(MODELS / "tang" / active_version(MODELS, "tang")).card["poem"]["candidates"]
        == 32
    )
    assert asked(dataclasses.replace(settings, candidates=None), "tang") == 32
    assert asked(dataclasses.replace(settings, candidates=None), "shakespeare") == 8
    assert asked(dataclasses.replace(settings, candidates=4), "tang") == 4
    small = dataclasses.replace(settings.limits, max_batch=12)
    assert asked(dataclasses.replace(settings, candidates=None, limits=small), "tang") == 12
    # A style named in CANDIDATES takes its number; the others the bare one, else their own.
    named = dataclasses.replace(settings, candidates=None, style_candidates={"songci": 8})
    assert asked(named, "songci") == 8 and asked(named, "tang") == 32
    both = dataclasses.replace(named, candidates=4)
    assert asked(both, "songci") == 8 and asked(both, "tang") == 4


def test_a_poem_about_a_theme_writes_more_candidates(tmp_path, monkeypatch):
    """A theme's candidates try its keyword in different places of a line: a themed poem
    takes its style's own number (Shakespeare's card: 32, chosen by blind readers), else
    twice a free poem's; ABOUT_CANDIDATES sets it as CANDIDATES does, CANDIDATES alone
    doubles; always within the batch."""
    settings = make_settings(tmp_path, MODELS)

    def asked(settings, style: str, about: str | None) -> int:
        version = active_version(MODELS, style)
        live = types.SimpleNamespace(bundle=load_bundle(MODELS / style / version))
        return plan_request(settings, live, about=about)[1].candidates

    own = dataclasses.replace(settings, candidates=None)
    assert (asked(own, "tang", None), asked(own, "tang", "秋風")) == (32, 64)
    assert (asked(own, "shakespeare", "-"), asked(own, "shakespeare", "love")) == (8, 32)
    # Asked without a theme, Shakespeare writes about one of its own: as many as for a theme.
    assert asked(own, "shakespeare", None) == 32
    small = dataclasses.replace(own, limits=dataclasses.replace(own.limits, max_batch=40))
    assert asked(small, "tang", "秋風") == 40
    # The operator's CANDIDATES: a themed poem takes twice it, over the style's own.
    assert asked(dataclasses.replace(own, candidates=4), "shakespeare", "love") == 8
    monkeypatch.setenv("ABOUT_CANDIDATES", "12,shakespeare=20")
    read = Settings.from_env()
    assert (read.about_candidates, read.style_about_candidates) == (12, {"shakespeare": 20})
    chosen = dataclasses.replace(
        own,
        about_candidates=read.about_candidates,
        style_about_candidates=read.style_about_candidates,
    )
    assert asked(chosen, "shakespeare", "love") == 20 and asked(chosen, "tang", "秋風") == 12
    assert asked(chosen, "tang", None) == 32  # free poems keep theirs
    monkeypatch.setenv("ABOUT_CANDIDATES", "tang=0")
    with pytest.raises(ConfigError, match=re.escape("ABOUT_CANDIDATES: 'tang=0' must be from 1")):
        Settings.from_env()


def test_shakespeare_gives_a_poem_asked_without_a_theme_one_of_its_own(tmp_path, monkeypatch):
    """Blind readers found Shakespeare's poems about a theme more coherent than its free ones
    and as fluent, so its card names themes a poem asked without one is about: picked by the
    seed, each one its every form can write; a user's theme, `-`, opening words or an acrostic
    come first, DEFAULT_THEMES=off turns it off, and a style whose card names none writes free."""
    settings = make_settings(tmp_path, MODELS)

    def live(style: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            bundle=load_bundle(MODELS / style / active_version(MODELS, style))
        )

    shakespeare = live("shakespeare")
    card = shakespeare.bundle.card
    own = card["poem"]["default_themes"]
    picked = {}
    for seed in range(40):
        plan, request = plan_request(settings, shakespeare, seed=seed)
        assert plan.theme is not None and plan.theme.typed in own and request.seed == seed
        picked[seed] = plan.theme.typed
    assert len(set(picked.values())) >= 10
    assert plan_request(settings, shakespeare, seed=7)[0].theme.typed == picked[7]
    chars, path = shakespeare.bundle.vocab.chars, shakespeare.bundle.path
    for theme in own:
        for form in card["poem"]["forms"]:
            plan = catalog.plan(card, chars, path, form=form, about=theme)
            assert plan.theme is not None and plan.theme.plan, (theme, form)
    for free in ({"about": "-"}, {"about": " - "}, {"prompt": "Shall I"}, {"acrostic": "LOVE"}):
        assert plan_request(settings, shakespeare, seed=7, **free)[0].theme is None, free
    assert plan_request(settings, shakespeare, seed=7, about="the sea")[0].theme.typed == "the sea"
    off = dataclasses.replace(settings, default_themes=False)
    assert plan_request(off, shakespeare, seed=7)[0].theme is None
    for style in ("tang", "songci", "jaychou"):
        assert "default_themes" not in live(style).bundle.card["poem"]
        assert plan_request(settings, live(style), seed=7)[0].theme is None
    # A card an operator mistyped: a string is no list of themes, blank entries are skipped.
    assert theme_for(settings, {"poem": {"default_themes": "love"}}, 7, about=None) == (None, False)
    assert theme_for(settings, {"poem": {"default_themes": [" ", "love"]}}, 7, about=None) == (
        "love",
        True,
    )
    monkeypatch.setenv("DEFAULT_THEMES", "off")
    assert Settings.from_env().default_themes is False
    monkeypatch.setenv("DEFAULT_THEMES", "sometimes")
    with pytest.raises(ConfigError, match="DEFAULT_THEMES='sometimes' must be on or off"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("raw", "every", "styles"),
    [
        ("8", 8, {}),
        ("songci=8, tang=16", None, {"songci": 8, "tang": 16}),
        ("12,songci=8", 12, {"songci": 8}),
        ("", None, {}),
    ],
)
def test_candidates_are_set_for_every_style_or_by_name(monkeypatch, raw, every, styles):
    monkeypatch.setenv("CANDIDATES", raw)
    settings = Settings.from_env()
    assert (settings.candidates, settings.style_candidates) == (every, styles)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("many", "'many' is not a whole number or STYLE=NUMBER"),
        ("songci=0", "must be from 1 to MAX_BATCH"),
        ("tang=100000", "must be from 1 to MAX_BATCH"),
        ("=8", "names no style"),
        ("8,9", "sets every style twice"),
        ("tang=8,tang=16", "sets tang twice"),
    ],
)
def test_a_bad_candidates_setting_is_refused_saying_what(monkeypatch, raw, says):
    monkeypatch.setenv("CANDIDATES", raw)
    with pytest.raises(ConfigError, match=re.escape(says)):
        Settings.from_env()
