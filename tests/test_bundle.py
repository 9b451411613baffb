"""The bundle contract: broken bundles are refused with a reason; ACTIVE flips atomically."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from onnx import TensorProto

from bot.engine.bundle import (
    BundleError,
    active_version,
    check_name,
    load_bundle,
    next_version,
    set_active,
    versions,
)
from bot.engine.sessions import StepModel

from .bundles import make_bundle, step_graph


@pytest.fixture
def bundle_path(tmp_path):
    return make_bundle(tmp_path / "models")


def test_a_good_bundle_loads_and_serves(bundle_path):
    model = StepModel.load(bundle_path, providers="cpu")
    logits, states = model.step(model.bundle.vocab.encode("ab")[0], model.zero_states(2))
    assert logits.shape == (2, len(model.bundle.vocab))
    assert len(states) == 4


@pytest.mark.parametrize("missing", ["model.onnx", "vocab.json", "card.json"])
def test_missing_file_is_named(bundle_path, missing):
    (bundle_path / missing).unlink()
    with pytest.raises(BundleError, match=missing):
        StepModel.load(bundle_path, providers="cpu")


def test_card_that_is_not_json(bundle_path):
    (bundle_path / "card.json").write_text("{ this is not json")
    with pytest.raises(BundleError, match=r"card\.json is not readable JSON"):
        load_bundle(bundle_path)


def test_vocab_that_does_not_match_the_card(bundle_path):
    vocab = json.loads((bundle_path / "vocab.json").read_text())
    vocab["chars"].append("☃")
    (bundle_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(BundleError, match="vocab_size"):
        load_bundle(bundle_path)


def test_vocab_that_does_not_match_the_model(bundle_path):
    # Card and vocab agree with each other but not with the graph's logits.
    vocab = json.loads((bundle_path / "vocab.json").read_text())
    vocab["chars"].append("☃")
    (bundle_path / "vocab.json").write_text(json.dumps(vocab))
    card = json.loads((bundle_path / "card.json").read_text())
    card["vocab_size"] += 1
    (bundle_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"logits|shape"):
        StepModel.load(bundle_path, providers="cpu")


def test_truncated_onnx(bundle_path):
    data = (bundle_path / "model.onnx").read_bytes()
    (bundle_path / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        StepModel.load(bundle_path, providers="cpu")


def test_wrong_signature_gru_graph_in_an_lstm_bundle(bundle_path):
    card = json.loads((bundle_path / "card.json").read_text())
    onnx.save(step_graph(card["vocab_size"], "gru", 2, 32), bundle_path / "model.onnx")
    with pytest.raises(BundleError, match="expected 5 inputs"):
        StepModel.load(bundle_path, providers="cpu")


def test_wrong_units(bundle_path):
    card = json.loads((bundle_path / "card.json").read_text())
    onnx.save(step_graph(card["vocab_size"], "lstm", 2, 24), bundle_path / "model.onnx")
    with pytest.raises(BundleError, match="state"):
        StepModel.load(bundle_path, providers="cpu")


def test_float_ids_are_refused(bundle_path):
    card = json.loads((bundle_path / "card.json").read_text())
    onnx.save(step_graph(card["vocab_size"], ids_type=TensorProto.FLOAT), bundle_path / "m.onnx")
    # Float ids would not even make a valid Gather; a graph that loads with them is still wrong.
    shutil.move(bundle_path / "m.onnx", bundle_path / "model.onnx")
    with pytest.raises(BundleError):
        StepModel.load(bundle_path, providers="cpu")


def test_int32_ids_are_accepted(tmp_path):
    path = make_bundle(tmp_path, ids_type=TensorProto.INT32)
    model = StepModel.load(path, providers="cpu")
    assert model.step(model.bundle.vocab.encode("a")[0], model.zero_states(1))[0].shape[0] == 1


def test_bundle_moved_to_another_name_is_refused(bundle_path):
    moved = bundle_path.parent / "v9"
    bundle_path.rename(moved)
    with pytest.raises(BundleError, match="sits at"):
        load_bundle(moved)


@pytest.mark.parametrize(
    "bad",
    ["../etc", "/abs", "a/b", "", "x" * 40, "Caps", "a\x00b", "ѕhakespeare", ".hidden", "v1 "],
)
def test_names_that_could_leave_the_models_folder_are_refused(bad):
    with pytest.raises(ValueError):
        check_name(bad)


def test_versions_and_active(tmp_path):
    models = tmp_path / "models"
    for v in ("v1", "v2", "v10"):
        make_bundle(models, version=v)
    assert versions(models, "tiny") == ["v1", "v2", "v10"]
    assert active_version(models, "tiny") == "v10"  # no ACTIVE: the newest
    assert next_version(models, "tiny") == "v11"
    set_active(models, "tiny", "v2")
    assert active_version(models, "tiny") == "v2"
    assert not list((models / "tiny").glob(".*tmp"))
    with pytest.raises(BundleError):
        set_active(models, "tiny", "v3")


def test_write_bundle_refuses_to_overwrite(tmp_path):
    make_bundle(tmp_path)
    with pytest.raises(BundleError, match="already exists"):
        make_bundle(tmp_path)


@pytest.mark.parametrize("cell", ["peephole", "coupled"])
def test_a_bundle_of_each_lstm_variant_loads_with_h_and_c_per_layer(tmp_path, cell):
    model = StepModel.load(make_bundle(tmp_path, cell=cell), providers="cpu")
    assert model.bundle.state_names == ["h0", "c0", "h1", "c1"]
    logits, states = model.step(model.bundle.vocab.encode("ab")[0], model.zero_states(2))
    assert logits.shape == (2, len(model.bundle.vocab)) and len(states) == 4


def test_a_card_naming_an_unknown_cell_is_refused_with_the_cells_it_could_be(bundle_path):
    card = json.loads((bundle_path / "card.json").read_text())
    card["cell"] = "mlstm"
    (bundle_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"cell 'mlstm' is not one of lstm, gru, peephole"):
        StepModel.load(bundle_path, providers="cpu")
