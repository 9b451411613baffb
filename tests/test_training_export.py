"""Training and export on a small shipped corpus, in seconds: losses fall, resume works, the
exported ONNX graph matches TensorFlow and serves through the bot's engine."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import onnx
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

import keras

from bot.engine.bundle import CELLS, Vocab, active_version, load_bundle
from bot.engine.scheduler import Request, generate_once
from bot.engine.sessions import StepModel, create_session, load_model
from export import graphs
from export.__main__ import main as export_main
from export.onnx_export import INT8_SERVE_TOLERANCE, RECURRENT_OPS, keras_weights, write_step
from training.__main__ import main as train_main
from training.model import ModelConfig, build_model, forward, zero_states

from .bundles import FIXTURES

CORPUS = str(FIXTURES / "shakespeare_excerpt.txt")
TINY = [
    "--layers",
    "1",
    "--units",
    "64",
    "--embedding",
    "16",
    "--batch-size",
    "16",
    "--seq-len",
    "32",
    "--lr",
    "1e-2",
    "--dropout",
    "0.0",
    "--sample-chars",
    "20",
]


def train(style: str, out, *extra: str) -> int:
    """`python -m training` on the shipped excerpt, in this process."""
    return train_main(["--corpus", CORPUS, "--style", style, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for cell in CELLS:
        run = root / cell
        assert train(f"tiny-{cell}", run, "--cell", cell, "--epochs", "3", *TINY) == 0
        out[cell] = run
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_loss_falls_and_the_run_folder_is_complete(runs, cell):
    run = runs[cell]
    state = json.loads((run / "state.json").read_text())
    losses = [h["loss"] for h in state["history"]]
    vals = [h["val_loss"] for h in state["history"]]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 0.25
    assert vals[-1] < vals[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_bpc"] == pytest.approx(metrics["val_loss"] / 0.6931471805599453)
    # The run's cost includes each epoch's scoring, sample and checkpoint, not just the fit.
    assert metrics["wall_seconds"] > metrics["training_seconds"] > 0
    for name in (
        "vocab.json",
        "best.weights.h5",
        "last.keras",
        "loss.png",
        "samples.txt",
        "progress.jsonl",
        "config.json",
    ):
        assert (run / name).exists(), name
    assert len((run / "progress.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("cell", ["lstm", "peephole", "coupled"])
def test_resume_continues_from_the_last_epoch(runs, capsys, cell):
    run = runs[cell]  # the checkpoint holds the variants' own Keras cells
    assert train(f"tiny-{cell}", run, "--epochs", "4", "--resume", "--cell", cell, *TINY) == 0
    state = json.loads((run / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    assert "resuming" in capsys.readouterr().out


def test_a_used_run_folder_is_not_overwritten_without_resume(runs):
    with pytest.raises(SystemExit, match="--resume"):
        train("tiny-lstm", runs["lstm"])


# The recurrent operator of each cell's one-step graph (none where its layers are one MatMul
# of [x, h] and the gate arithmetic), and where it steps fastest.
STEP_OPS = {
    cell: op if graphs.STEP_FORMS[cell] == "operator" else None
    for cell, op in RECURRENT_OPS.items()
}


@pytest.mark.parametrize("cell", CELLS)
def test_export_matches_tensorflow_and_serves(runs, tmp_path, cell):
    models = tmp_path / "models"
    assert export_main([str(runs[cell]), "--models", str(models), "--activate"]) == 0
    style = f"tiny-{cell}"
    assert active_version(models, style) == "v1"
    bundle = load_bundle(models / style / "v1")
    card = bundle.card
    assert card["parity"]["max_abs_logit_diff"] <= 1e-4
    assert card["parity"]["steps"] >= 200
    nodes = onnx.load(bundle.model_path()).graph.node
    ops = [n.op_type for n in nodes]
    assert "Loop" not in ops and "Scan" not in ops
    assert ops.count("LSTM") + ops.count("GRU") == (1 if STEP_OPS[cell] else 0)
    if STEP_OPS[cell]:
        assert ops.count(STEP_OPS[cell]) == 1
        recurrent = next(n for n in nodes if n.op_type == STEP_OPS[cell])
        has_p = len(recurrent.input) > 7 and recurrent.input[7] != ""
        assert has_p == (cell == "peephole")
    assert card["step_graph"]["form"] == graphs.STEP_FORMS[cell]
    assert card["metrics"]["val_loss_onnx"] == pytest.approx(card["metrics"]["val_loss"], abs=1e-3)
    assert bundle.prefill_path is not None and card["prefill"]["max_abs_state_diff"] <= 1e-4
    result = asyncio.run(generate_once(bundle.path, Request(prompt="MENENIUS:", length=50, seed=3)))
    assert result.text.startswith("MENENIUS:") and len(result.text) == 59


@pytest.mark.parametrize("cell", CELLS)
def test_int8_export_reports_its_own_loss(runs, tmp_path, cell):
    models = tmp_path / "models"
    assert export_main([str(runs[cell]), "--models", str(models), "--int8"]) == 0
    bundle = load_bundle(models / f"tiny-{cell}" / "v1")
    assert bundle.model_path(int8=True).is_file()
    metrics = bundle.card["metrics"]
    assert abs(metrics["val_loss_int8"] - metrics["val_loss"]) < 0.02
    assert "never depend on the rest of the batch" in bundle.card["int8"]["method"]


def test_a_new_version_keeps_what_its_style_serves_with(runs, tmp_path, capsys):
    """A new version of a style takes its live version's candidates a line and, where its
    own int8 graph is as near its fp32 as the rule says, its int8 serving."""
    models = tmp_path / "models"
    assert export_main([str(runs["lstm"]), "--models", str(models), "--int8"]) == 0
    first = models / "tiny-lstm" / "v1"
    card = json.loads((first / "card.json").read_text())
    assert "candidates" not in card["poem"] and not card["int8"].get("serve")
    card["poem"]["candidates"], card["int8"]["serve"] = 32, True
    card["poem"]["about_candidates"] = 48
    card["poem"]["default_themes"] = ["love", "war"]
    (first / "card.json").write_text(json.dumps(card))
    capsys.readouterr()
    assert export_main([str(runs["lstm"]), "--models", str(models), "--int8"]) == 0
    said = capsys.readouterr().out
    second = load_bundle(models / "tiny-lstm" / "v2").card
    metrics = second["metrics"]
    near = abs(metrics["val_loss_int8"] - metrics["val_loss_onnx"]) <= INT8_SERVE_TOLERANCE
    assert second["poem"]["candidates"] == 32 and "32 candidates a line, as tiny-lstm/v1" in said
    assert second["poem"]["about_candidates"] == 48
    assert "48 candidates a line about a theme, as tiny-lstm/v1" in said
    assert second["poem"]["default_themes"] == ["love", "war"]
    assert "its own themes for a poem asked without one (2), as tiny-lstm/v1" in said
    assert second["int8"]["serve"] == near and "nats/char from fp32" in said
    # Its poem section rebuilt in place (`derive --poem`) keeps them as well.
    derive = ["derive", str(models / "tiny-lstm" / "v2"), "--poem", "--corpus", CORPUS]
    assert export_main(derive) == 0
    rebuilt = load_bundle(models / "tiny-lstm" / "v2").card["poem"]
    assert rebuilt["candidates"] == 32 and rebuilt["about_candidates"] == 48
    assert rebuilt.get("default_themes") == (["love", "war"] if "themes" in rebuilt else None)
    # Without an int8 graph there is nothing to serve in int8: fp32, the candidates kept.
    assert export_main([str(runs["lstm"]), "--models", str(models), "--version", "v3"]) == 0
    third = load_bundle(models / "tiny-lstm" / "v3")
    assert third.card["poem"]["candidates"] == 32 and "int8" not in third.card
    assert not load_model(third.path, "cpu").int8


def test_ngram_export_serves_the_mixture_and_reports_its_loss(runs, tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    args = [str(runs["lstm"]), "--models", str(models), "--int8", "--ngram", "3"]
    assert export_main([*args, "--ngram-weight", "1.5"]) == 2
    with monkeypatch.context() as patch:
        patch.setattr("export.onnx_export.MAX_NGRAMS", 100)
        assert export_main(args) == 2
    assert "use a lower --ngram order" in capsys.readouterr().err
    assert not (models / "tiny-lstm").exists()
    assert export_main([*args, "--ngram-weight", "0.4"]) == 0
    bundle = load_bundle(models / "tiny-lstm" / "v1")
    card, metrics = bundle.card, bundle.card["metrics"]
    assert (card["ngram"]["order"], card["ngram"]["weight"]) == (3, 0.4)
    # log is concave, so the mixture's loss is at most the same mix of the two losses.
    average = 0.4 * metrics["val_loss_network"] + 0.6 * card["ngram"]["val_loss"]
    assert metrics["val_loss"] <= average + 1e-4
    assert metrics["val_loss"] != pytest.approx(metrics["val_loss_network"], abs=1e-3)
    assert abs(metrics["val_loss_int8"] - metrics["val_loss"]) < 0.02
    assert StepModel.load(bundle.path, providers="cpu").ngram.order == 3
    result = asyncio.run(generate_once(bundle.path, Request(prompt="MENENIUS:", length=50)))
    assert len(result.text) == 59


def test_no_prefill_export_writes_the_same_poems_from_a_smaller_bundle(runs, tmp_path):
    """--no-prefill leaves the prefill graph (a second copy of the weights) out: the bundle is
    smaller, its card claims no prefill, and a prompt read a step at a time gives the same poem
    as with the prefill graph."""
    full, lean = tmp_path / "full", tmp_path / "lean"
    assert export_main([str(runs["lstm"]), "--models", str(full), "--int8"]) == 0
    assert export_main([str(runs["lstm"]), "--models", str(lean), "--int8", "--no-prefill"]) == 0
    with_prefill, without = (
        load_bundle(full / "tiny-lstm" / "v1"),
        load_bundle(lean / "tiny-lstm" / "v1"),
    )
    assert without.prefill_path is None and "prefill" not in without.card
    assert without.model_path(int8=True).is_file()
    assert (
        without.size_bytes < with_prefill.size_bytes - with_prefill.prefill_path.stat().st_size / 2
    )
    request = Request(prompt="CORIOLANUS: " * 4, length=60, seed=9)
    texts = [asyncio.run(generate_once(b.path, request)).text for b in (with_prefill, without)]
    assert texts[0] == texts[1]


def test_derive_adds_prefill_and_int8_to_a_bundle_that_lacks_them(runs, tmp_path):
    models = tmp_path / "models"
    assert export_main([str(runs["lstm"]), "--models", str(models)]) == 0
    path = models / "tiny-lstm" / "v1"
    request = Request(prompt="CORIOLANUS: " * 4, length=60, seed=9)
    before = asyncio.run(generate_once(path, request)).text
    (path / "prefill.onnx").unlink()
    assert load_bundle(path).prefill_path is None
    assert export_main(["derive", str(path), "--corpus", CORPUS]) == 0
    bundle = load_bundle(path)
    assert bundle.prefill_path is not None and bundle.model_path(int8=True).is_file()
    assert "val_loss_int8" in bundle.card["metrics"]
    assert asyncio.run(generate_once(path, request)).text == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1"]  # nothing left behind
    wrong = export_main(["derive", str(path), "--corpus", str(FIXTURES / "tang_excerpt.txt")])
    assert wrong == 2
    # A big network's bundle takes its int8 graph alone: no second copy of the weights.
    (path / "prefill.onnx").unlink()
    (path / "model.int8.onnx").unlink()
    assert export_main(["derive", str(path), "--corpus", CORPUS, "--no-prefill"]) == 0
    bundle = load_bundle(path)
    assert bundle.prefill_path is None and bundle.model_path(int8=True).is_file()
    nothing = ["derive", str(path), "--corpus", CORPUS, "--no-prefill", "--no-int8"]
    assert export_main(nothing) == 2


def test_derive_gives_a_shipped_bundle_an_ngram_as_a_new_version(runs, tmp_path, capsys):
    models = tmp_path / "models"
    assert export_main([str(runs["lstm"]), "--models", str(models), "--int8"]) == 0
    old = load_bundle(models / "tiny-lstm" / "v1")
    derive = ["derive", str(old.path), "--corpus", CORPUS, "--ngram", "3", "--ngram-weight", "0.6"]
    assert export_main([*derive, "--new-version", "v2"]) == 0
    new = load_bundle(models / "tiny-lstm" / "v2")
    card, metrics = new.card, new.card["metrics"]
    assert card["derived_from"] == "tiny-lstm/v1" and card["ngram"]["weight"] == 0.6
    assert metrics["val_loss_network"] == old.card["metrics"]["val_loss"]
    # Served as a mixture: its loss is at most the same mix of the two models' losses.
    average = 0.6 * metrics["val_loss_network"] + 0.4 * card["ngram"]["val_loss"]
    assert metrics["val_loss"] <= average + 1e-4
    assert abs(metrics["val_loss_int8"] - metrics["val_loss"]) < 0.02
    assert StepModel.load(new.path, providers="cpu").ngram.order == 3
    assert load_bundle(old.path).card == old.card and old.load_ngram() is None  # kept as it was
    # An existing version is never overwritten; a flag that needs another is named.
    assert export_main([*derive, "--new-version", "v2"]) == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["derive", str(old.path), "--poem", "--new-version", "v3"])
    assert "--poem changes a bundle in place" in capsys.readouterr().err
    assert sorted(p.name for p in old.path.parent.iterdir()) == ["v1", "v2"]


def test_init_from_a_finished_run_starts_where_it_ended(runs, tmp_path, capsys):
    fresh = json.loads((runs["lstm"] / "state.json").read_text())["history"][0]["loss"]
    out = tmp_path / "warm"
    assert train("warm", out, "--epochs", "1", "--init-from", str(runs["lstm"]), *TINY) == 0
    assert "characters carried over" in capsys.readouterr().out
    warm = json.loads((out / "state.json").read_text())["history"][0]["loss"]
    assert warm < fresh - 0.3
    with pytest.raises(SystemExit, match="units"):
        train(
            "warm",
            tmp_path / "bad",
            "--init-from",
            str(runs["lstm"]),
            *TINY[:2],
            "--units",
            "32",
            *TINY[4:],
        )


def test_select_by_full_keeps_the_epoch_with_the_best_full_context_loss(tmp_path):
    out = tmp_path / "full"
    assert train("full", out, "--epochs", "3", "--select-by", "full", *TINY) == 0
    state = json.loads((out / "state.json").read_text())
    full = {h["epoch"]: h["val_loss_full"] for h in state["history"]}
    assert state["best_val_loss"] == min(full.values())
    assert state["best_epoch"] == min(full, key=full.get)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(full[metrics["best_epoch"]], abs=1e-4)
    windowed = {h["epoch"]: h["val_loss"] for h in state["history"]}
    assert metrics["val_loss_windowed"] == windowed[metrics["best_epoch"]]


def _session(model: onnx.ModelProto, path):
    onnx.save(model, path)
    return create_session(path, "cpu")


def _onnx_steps(session, ids: np.ndarray, names: list[str], units: int):
    """Logits [batch, steps, vocab] of stepping a one-step graph through ids [batch, steps]."""
    states = [np.zeros((ids.shape[0], units), np.float32) for _ in names]
    out = []
    for t in range(ids.shape[1]):
        logits, *states = session.run(
            None, {"ids": ids[:, t], **dict(zip(names, states, strict=True))}
        )
        out.append(logits)
    return np.stack(out, axis=1), states


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("form", graphs.FORMS)
def test_graphs_match_tensorflow_with_random_gates_on_random_and_real_text(cell, form, tmp_path):
    """A short training run leaves the peepholes and biases near where they started; random
    ones here make a gate block or peephole row in the wrong place show. 200 steps of random
    and of real text through the one-step graph (in either form) and the prefill graph against
    Keras."""
    text = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
    vocab = Vocab.build(text)
    config = ModelConfig(len(vocab), cell, layers=2, units=32, embedding=16, dropout=0.0)
    # Keras's initial weights seeded too: with random peepholes some draws let 200 steps
    # amplify float rounding past the tolerance (peephole, 8 seeds: 4e-7 to 8e-5, and 1.4e-4
    # in one unseeded run of the suite), which made the test fail now and then.
    keras.utils.set_random_seed(0)
    model = build_model(config)
    rng = np.random.default_rng(0)
    for i in range(config.layers):
        layer = model.get_layer(f"rnn_{i}")
        kernel, recurrent, *rest = layer.get_weights()  # bias and, for peephole, its rows
        layer.set_weights([kernel, recurrent, *(rng.normal(0, 0.5, w.shape) for w in rest)])
    real = vocab.encode(text[:800])[0].reshape(4, 200)
    ids = np.concatenate([real, rng.integers(0, len(vocab), (4, 200), dtype=np.int32)])
    expected, tf_states = forward(model, config, ids, zero_states(config, len(ids)))
    weights = keras_weights(model, config)
    step = graphs.step_graph(weights, form)
    got, states = _onnx_steps(
        _session(step, tmp_path / "step.onnx"), ids, config.state_names, config.units
    )
    assert np.abs(got - expected.numpy()).max() <= 1e-4
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(states, tf_states, strict=True)) <= 1e-4
    # Its weights read back out of the graph make the same graph: the derived graphs' source.
    again = graphs.read_weights(step)
    assert again.cell == cell
    assert np.array_equal(again.layers[1].w, weights.layers[1].w)
    prefill = _session(graphs.prefill_graph(again), tmp_path / "prefill.onnx")
    zeros = [np.zeros((len(ids), config.units), np.float32) for _ in config.state_names]
    lengths = np.full(len(ids), ids.shape[1], np.int32)
    _, *read = prefill.run(
        None, {"ids": ids, "lengths": lengths, **dict(zip(config.state_names, zeros, strict=True))}
    )
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(read, tf_states, strict=True)) <= 1e-4


def test_write_step_refuses_a_graph_that_breaks_the_cells_contract(monkeypatch, tmp_path):
    config = ModelConfig(30, "coupled", layers=1, units=8, embedding=4)
    gru_like = graphs.step_graph(graphs.random_weights(30, "gru", 1, 8, 4), "operator")
    monkeypatch.setattr(graphs, "step_graph", lambda weights: gru_like)
    from export.onnx_export import ExportError

    with pytest.raises(ExportError, match="no Loop or Scan"):
        write_step(build_model(config), config, tmp_path / "model.onnx")
