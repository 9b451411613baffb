"""The command lines a newcomer runs: `python -m bot generate` and `python -m bot` itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .bundles import make_bundle

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MODELS_DIR"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
        cwd=cwd,
    )


def test_generate_repeats_with_the_same_seed(tmp_path):
    make_bundle(tmp_path / "models", "verse")
    args = [
        "generate",
        "--style",
        "verse",
        "--models",
        str(tmp_path / "models"),
        "--prompt",
        "ROMEO:",
        "--length",
        "80",
        "--seed",
        "11",
    ]
    first, second = run(*args), run(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("ROMEO:") and len(first.stdout.rstrip("\n")) == 86
    assert "seed 11" in first.stderr
    other = run(*args[:-1], "12")
    assert other.stdout != first.stdout


def test_generate_names_unknown_styles_and_bad_options(tmp_path):
    make_bundle(tmp_path / "models", "verse")
    models = ["--models", str(tmp_path / "models")]
    missing = run("generate", "--style", "sonnets", *models)
    assert missing.returncode == 2 and "styles: verse" in missing.stderr
    hostile = run("generate", "--style", "../../etc", *models)
    assert hostile.returncode == 2 and "not valid" in hostile.stderr
    bad = run("generate", "--style", "verse", "--temperature", "nan", *models)
    assert bad.returncode == 2 and "temperature" in bad.stderr


def test_the_bot_without_a_token_says_how_to_get_one(tmp_path):
    result = run(env={"DISCORD_TOKEN": ""}, cwd=tmp_path)
    assert result.returncode == 2
    assert "discord.com/developers/applications" in result.stderr
    assert "applications.commands" in result.stderr and ".env" in result.stderr


def test_serving_never_imports_tensorflow():
    code = (
        "import sys, bot.composition, bot.__main__, bot.engine.scheduler, bot.engine.registry\n"
        "import bot.jobs\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generate_serves_the_int8_graph_when_asked_and_says_when_a_bundle_has_none(tmp_path):
    make_bundle(tmp_path / "models", "verse", int8=True)
    make_bundle(tmp_path / "models", "plain")
    base = ["--models", str(tmp_path / "models"), "--length", "60", "--seed", "3"]
    fp32 = run("generate", "--style", "verse", *base)
    int8 = run("generate", "--style", "verse", *base, env={"MODEL_PRECISION": "int8"})
    assert fp32.returncode == int8.returncode == 0, int8.stderr
    assert len(int8.stdout.rstrip("\n")) == 60
    assert "(int8)" in int8.stderr and "(int8)" not in fp32.stderr
    fallback = run("generate", "--style", "plain", *base, "--precision", "int8")
    assert fallback.returncode == 0 and "has no int8 graph; serving fp32" in fallback.stderr
    old = make_bundle(tmp_path / "models", "old", int8=True)  # dynamic quantisation's card
    card = json.loads((old / "card.json").read_text())
    del card["int8"]
    (old / "card.json").write_text(json.dumps(card))
    stale = run("generate", "--style", "old", *base, "--precision", "int8")
    assert stale.returncode == 0 and "predates per-row scales; serving fp32" in stale.stderr
    wrong = run("generate", "--style", "verse", *base, env={"MODEL_PRECISION": "fp16"})
    assert wrong.returncode == 2 and "MODEL_PRECISION" in wrong.stderr
