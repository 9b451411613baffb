"""The command lines a newcomer runs: `python -m bot generate` and `python -m bot` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
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


def test_generate_drops_a_bidi_override_from_the_prompt(tmp_path):
    make_bundle(tmp_path / "models", "verse")
    models = ["--models", str(tmp_path / "models")]
    done = run("generate", "--style", "verse", *models, "--prompt", "\u202eROMEO:", "--seed", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ROMEO:") and "\u202e" not in done.stdout + done.stderr


def test_generate_names_unknown_styles_and_bad_options(tmp_path):
    make_bundle(tmp_path / "models", "verse")
    models = ["--models", str(tmp_path / "models")]
    missing = run("generate", "--style", "sonnets", *models)
    assert missing.returncode == 2 and "styles: verse" in missing.stderr
    hostile = run("generate", "--style", "../../etc", *models)
    assert hostile.returncode == 2 and "not valid" in hostile.stderr
    bad = run("generate", "--style", "verse", "--temperature", "nan", *models)
    assert bad.returncode == 2 and "temperature" in bad.stderr


def test_the_bot_without_a_token_serves_the_page_and_says_how_to_connect_discord(tmp_path):
    make_bundle(tmp_path / "models", "verse")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "MODELS_DIR"))}
    env = {**base, "DISCORD_TOKEN": "", "WEB_PORT": str(port), "MODELS_DIR": "models"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        while f"http://127.0.0.1:{port}/" not in "".join(seen[-1:]) and len(seen) < 50:
            seen.append(process.stdout.readline())  # the log first, then the page's address
        assert f"writing poems at http://127.0.0.1:{port}/" in seen[-1], seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"page.js" in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/styles", timeout=10) as api:
            assert [s["name"] for s in json.load(api)["styles"]] == ["verse"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        output = process.stdout.read()  # not communicate(): it would skip what readline buffered
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + output
    assert process.returncode == 0, output
    assert "discord.com/developers/applications" in output and "applications.commands" in output


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
    # A style whose card says its int8 graph serves it gets int8 unless told otherwise.
    own = make_bundle(tmp_path / "models", "own", int8=True)
    card = json.loads((own / "card.json").read_text())
    card["int8"]["serve"] = True
    (own / "card.json").write_text(json.dumps(card))
    mine = run("generate", "--style", "own", *base, env={"MODEL_PRECISION": ""})
    told = run("generate", "--style", "own", *base, env={"MODEL_PRECISION": "fp32"})
    assert mine.returncode == told.returncode == 0, mine.stderr + told.stderr
    assert "(int8)" in mine.stderr and "(int8)" not in told.stderr
    assert "(int8)" not in run("generate", "--style", "own", *base, "--precision", "fp32").stderr
