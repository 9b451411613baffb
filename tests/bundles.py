"""Bundles for tests: random-weight one-step LSTM/GRU graphs built with onnx.helper.

They follow the bundle contract exactly (ids + states in, logits + states out, ONNX LSTM/GRU
operators), so the engine and the bot can be tested in milliseconds without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bot.bundle import Vocab, state_names, write_bundle

FIXTURES = Path(__file__).parent / "fixtures"


def step_graph(
    vocab_size: int,
    cell: str = "lstm",
    layers: int = 2,
    units: int = 32,
    embedding: int = 16,
    seed: int = 0,
    ids_type: int = TensorProto.INT64,
    scale: float = 0.6,
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32), name
        )

    gates = 4 if cell == "lstm" else 3
    names = state_names(cell, layers)
    inits = [
        weight("emb", vocab_size, embedding),
        weight("dense_w", units, vocab_size),
        numpy_helper.from_array(np.zeros(vocab_size, np.float32), "dense_b"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["x0_2d"]),
        helper.make_node("Unsqueeze", ["x0_2d", "axis0"], ["x0"]),
    ]
    x, width = "x0", embedding
    outputs = []
    per = 2 if cell == "lstm" else 1
    for i in range(layers):
        inits += [
            weight(f"W{i}", 1, gates * units, width),
            weight(f"R{i}", 1, gates * units, units),
            numpy_helper.from_array(np.zeros((1, 2 * gates * units), np.float32), f"B{i}"),
        ]
        layer_states = names[i * per : (i + 1) * per]
        for s in layer_states:
            nodes.append(helper.make_node("Unsqueeze", [s, "axis0"], [f"{s}_3d"]))
        op_inputs = [x, f"W{i}", f"R{i}", f"B{i}", "", *(f"{s}_3d" for s in layer_states)]
        op_outputs = [f"y{i}", *(f"{s}_out_3d" for s in layer_states)]
        extra = {"linear_before_reset": 1} if cell == "gru" else {}
        nodes.append(
            helper.make_node(cell.upper(), op_inputs, op_outputs, hidden_size=units, **extra)
        )
        nodes.append(helper.make_node("Squeeze", [f"y{i}", "axis1"], [f"x{i + 1}"]))
        for s in layer_states:
            nodes.append(helper.make_node("Squeeze", [f"{s}_out_3d", "axis0"], [f"{s}_out"]))
            outputs.append(f"{s}_out")
        x, width = f"x{i + 1}", units
    nodes += [
        helper.make_node("Squeeze", [x, "axis0"], ["top"]),
        helper.make_node("MatMul", ["top", "dense_w"], ["logits_nb"]),
        helper.make_node("Add", ["logits_nb", "dense_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"tiny_{cell}",
        [helper.make_tensor_value_info("ids", ids_type, ["batch"])]
        + [helper.make_tensor_value_info(s, TensorProto.FLOAT, ["batch", units]) for s in names],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab_size])]
        + [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", units]) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_bundle(
    models_dir: Path,
    style: str = "tiny",
    version: str = "v1",
    text: str | None = None,
    cell: str = "lstm",
    layers: int = 2,
    units: int = 32,
    seed: int = 0,
    val_loss: float = 3.0,
    **graph_args,
) -> Path:
    """A complete bundle at models_dir/style/version with random weights."""
    if text is None:
        text = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
    vocab = Vocab.build(text)
    tmp = Path(models_dir) / f".{style}-{version}.onnx"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(step_graph(len(vocab), cell, layers, units, seed=seed, **graph_args), tmp)
    card = {
        "style": style,
        "display_name": style.title(),
        "language": "en",
        "version": version,
        "cell": cell,
        "layers": layers,
        "units": units,
        "embedding": 16,
        "vocab_size": len(vocab),
        "corpus": {"name": style, "sha256": "0" * 64, "characters": len(text)},
        "split": {"validation": "last 10%"},
        "metrics": {"val_loss": val_loss, "val_bpc": val_loss / np.log(2)},
        "created_at": "2026-11-26T00:00:00+00:00",
    }
    try:
        return write_bundle(models_dir, vocab, card, {"model.onnx": tmp})
    finally:
        tmp.unlink()
