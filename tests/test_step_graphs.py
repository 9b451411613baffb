"""One-step graphs built from the weights: both layer forms compute the same network for every
cell, any graph's weights read back build it again, and `python -m export derive
--new-version` writes a new version whose step graph gives the old one's text, leaving the old
version as it was."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from bot.corpus import load_corpus
from bot.engine.bundle import load_bundle, update_card
from bot.engine.scheduler import Request, generate_once
from bot.engine.sessions import create_session
from export import graphs
from export.__main__ import main as export_main

from .bundles import FIXTURES, make_bundle

CORPUS = FIXTURES / "shakespeare_excerpt.txt"


def _steps(model: onnx.ModelProto, ids: np.ndarray, tmp_path: Path):
    """Logits [steps, batch, vocab] and final states of stepping a graph through ids."""
    path = tmp_path / f"{model.graph.name}-{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(model, path)
    session = create_session(path, "cpu")
    names = [i.name for i in session.get_inputs()]
    units = session.get_inputs()[1].shape[1]
    states = [np.zeros((ids.shape[0], units), np.float32) for _ in names[1:]]
    logits = []
    for t in range(ids.shape[1]):
        out, *states = session.run(
            None, {"ids": ids[:, t], **dict(zip(names[1:], states, strict=True))}
        )
        logits.append(out)
    return np.stack(logits), states


@pytest.mark.parametrize("cell", list(graphs.GATES))
def test_both_forms_compute_the_same_network_and_read_back(cell, tmp_path):
    weights = graphs.random_weights(40, cell, layers=2, units=24, seed=4, scale=2.0, bias=0.5)
    ids = np.random.default_rng(1).integers(0, 40, (6, 200))
    reference = None
    for form in graphs.FORMS:
        model = graphs.step_graph(weights, form)
        ops = [node.op_type for node in model.graph.node]
        recurrent = ops.count("LSTM") + ops.count("GRU")
        assert recurrent == (2 if form == "operator" else 0) and "Loop" not in ops
        logits, states = _steps(model, ids, tmp_path)
        if reference is None:
            reference = logits, states
        else:
            assert np.abs(logits - reference[0]).max() <= 1e-4
            assert (
                max(np.abs(a - b).max() for a, b in zip(states, reference[1], strict=True)) <= 1e-4
            )
        again = graphs.read_weights(model)
        assert again.cell == cell
        rebuilt, _ = _steps(graphs.step_graph(again, form), ids[:, :20], tmp_path)
        assert np.array_equal(rebuilt, logits[:20])


@pytest.fixture
def shipped(tmp_path):
    """A bundle as one ships: trained on a corpus the card names by its sha256, ACTIVE."""
    models = tmp_path / "models"
    path = make_bundle(models, "verse", text=load_corpus(str(CORPUS)).text, units=32, int8=True)
    corpus = load_corpus(str(CORPUS))
    update_card(path, corpus={"name": corpus.name, "sha256": corpus.sha256, "characters": 1})
    (models / "verse" / "ACTIVE").write_text("v1\n")
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_derive_writes_a_new_version_that_writes_what_the_old_one_wrote(shipped):
    before = _digests(shipped)
    args = ["derive", str(shipped), "--corpus", str(CORPUS), "--new-version", "v2"]
    assert export_main(args) == 0
    assert _digests(shipped) == before  # the old version is untouched
    assert (shipped.parent / "ACTIVE").read_text() == "v1\n"
    new = load_bundle(shipped.parent / "v2")
    card = new.card
    assert (card["version"], card["derived_from"]) == ("v2", "verse/v1")
    step = card["step_graph"]
    assert step["form"] == graphs.STEP_FORMS["lstm"] and "derive" in step["command"]
    assert step["parity"]["max_abs_logit_diff"] <= 1e-4 and step["parity"]["steps"] == 200
    assert "val_loss_int8" in card["metrics"] and card["int8"]["file"]
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["ACTIVE", "v1", "v2"]
    # The same text for the same seed: greedy over 200 characters, and sampled.
    for request in (
        Request(prompt="ROMEO:", length=200, temperature=0.0, seed=1),
        Request(prompt="ROMEO:", length=200, temperature=0.9, seed=8),
    ):
        old = asyncio.run(generate_once(shipped, request, "cpu")).text
        assert asyncio.run(generate_once(new.path, request, "cpu")).text == old
    # A version that exists is not overwritten.
    assert export_main(args) == 2
    assert _digests(shipped.parent / "v2") == _digests(new.path)


def test_derive_refuses_a_step_graph_that_strays_from_the_old_one(shipped, monkeypatch, capsys):
    original = graphs.step_graph

    def strayed(weights, form=None):
        weights.dense_b = weights.dense_b + 1e-3  # a logit shift the parity check must catch
        return original(weights, form)

    monkeypatch.setattr(graphs, "step_graph", strayed)
    args = ["derive", str(shipped), "--corpus", str(CORPUS), "--new-version", "v2"]
    assert export_main(args) == 2
    assert "step parity" in capsys.readouterr().err
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["ACTIVE", "v1"]
