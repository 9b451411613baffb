"""The small row kernels the bot runs in onnxruntime beside its step graphs, built here and
shipped as files in `bot/engine/kernels/` (the bot itself does not depend on the onnx package).
`python -m export kernels` writes them again; `tests/test_kernels.py` checks that the shipped
files are what this module builds.

- `logsumexp.onnx`: x [rows, vocab] -> log(sum(exp(x))) [rows], the normaliser of candidate
  rows' log-probabilities, as max(x) - max(LogSoftmax(x)): onnxruntime's LogSoftmax runs on
  MLAS's vectorised exp (its ReduceLogSumExp is slower than numpy's).

Tried and not kept: the draw's exponentials and block totals (`sampling.sample`) as a kernel.
MLAS's exp takes 15-20x as long where its argument is below float32's range, as a masked id's
-inf is; clamping first and zeroing those ids afterwards costs more passes than it saves: at
32 rows of Tang's 7,586 ids the kernel took 780-920 us against numpy's 710-730.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from bot.engine.kernels import KERNELS, LOGSUMEXP_FILE

OPSET = 17  # onnxruntime 1.20 (the oldest this project allows) runs opset 17 and IR 8
IR_VERSION = 8


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="poembot export.kernels",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _floats(name: str, *shape: str | int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def logsumexp_graph() -> onnx.ModelProto:
    # max(x) - max(logsoftmax(x)): exact where a row holds -inf (a masked or mixed score),
    # and max(logsoftmax) is small (-log of the top id's probability), so little is lost
    # to rounding.
    nodes = [
        helper.make_node("LogSoftmax", ["x"], ["normalised"], axis=-1),
        helper.make_node("ReduceMax", ["x"], ["top"], axes=[1], keepdims=0),
        helper.make_node("ReduceMax", ["normalised"], ["top_normalised"], axes=[1], keepdims=0),
        helper.make_node("Sub", ["top", "top_normalised"], ["logsumexp"]),
    ]
    graph = helper.make_graph(
        nodes,
        "logsumexp",
        [_floats("x", "rows", "vocab")],
        [_floats("logsumexp", "rows")],
    )
    return _model(graph)


BUILDERS = {LOGSUMEXP_FILE: logsumexp_graph}


def write(folder: Path = KERNELS) -> list[Path]:
    """Write every kernel into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in BUILDERS.items():
        path = folder / name
        path.write_bytes(build().SerializeToString())
        paths.append(path)
    return paths
