"""`python -m training --strategy mirrored` on two logical CPU devices: each step runs on both
replicas and the run is as complete, and as trained, as a one-device run, and it exports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from bot.engine.bundle import load_bundle

from .botworld import ROOT
from .test_training_export import CORPUS, TINY


def test_mirrored_training_on_two_cpu_devices_learns_and_exports(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "training", "--corpus", CORPUS, "--style", "twin"]
    argv += ["--out", str(run), "--epochs", "3", "--strategy", "mirrored", "--cpu-devices", "2"]
    result = subprocess.run(
        [*argv, *TINY], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "training on 2 replicas" in result.stdout
    state = json.loads((run / "state.json").read_text())
    losses = [h["loss"] for h in state["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.3
    assert json.loads((run / "config.json").read_text())["train"]["strategy"] == "mirrored"
    exported = subprocess.run(
        [sys.executable, "-m", "export", str(run), "--models", str(tmp_path / "models")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-2000:]
    assert load_bundle(tmp_path / "models" / "twin" / "v1").card["style"] == "twin"
