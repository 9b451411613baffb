"""The bundles that ship in models/: they load, serve from the shell, repeat with a seed, and
carry the card the contract asks for, within the size budget and their quality bars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.engine.bundle import active_version, load_bundle, styles
from bot.engine.sessions import StepModel
from bot.forms import tang

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHIPPED = ["jaychou", "shakespeare", "tang"]
KNESER_NEY = {
    c["name"]: c["orders"]["6"]["nats_per_char"]
    for c in json.loads((ROOT / "benchmarks/results/kneser_ney.json").read_text())["corpora"]
}


def test_the_three_styles_ship():
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
    if style == "shakespeare":
        assert card["metrics"]["val_loss"] <= 1.50


@pytest.mark.parametrize("style", ["tang", "jaychou"])
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
