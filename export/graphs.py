"""ONNX graphs built from a bundle's weights: the one-step graph, the prompt prefill graph and
the int8 step graph with per-row activation scales.

`read_weights` takes the weights back out of any one-step graph that keeps the bundle contract
(the tf2onnx export or one built here), so the derived graphs can be added to a bundle that
already ships without TensorFlow and without its training run. numpy and onnx only.

- `step_graph`: ids [batch] + states -> logits + states, ONNX LSTM/GRU operators (a peephole
  layer: LSTM with its `P` input); a coupled-gate layer is plain arithmetic (one MatMul of
  [x, h] for its three gates, Sigmoid, Tanh), ONNX having no coupled LSTM, its initializers
  named `coupled<layer>_W/_R/_B` so `read_weights` finds them again.
- `prefill_graph`: ids [batch, time] + lengths [batch] + states -> logits at each row's last
  character + states after it. One LSTM/GRU operator per layer runs the whole prompt (its
  `sequence_lens` input stops each row at its own length), so the input projections of a
  prompt are one matrix multiply instead of one per character. A coupled layer is an ONNX
  LSTM too: its input gate 1 - sigmoid(z) = sigmoid(-z) is an input gate whose weights are the
  forget gate's negated, so every cell has a prefill graph.
- `int8_step_graph`: the step with int8 weights (7-bit, one scale per output column) and int8
  activations with one scale per batch row. The integer products are exact and every scale
  belongs to one row, so a row's logits do not depend on the other rows of the batch.
  onnxruntime's dynamic quantisation uses one activation scale for the whole batch, which
  makes a request's text depend on its neighbours. Each LSTM layer is one integer product of
  [x, h] with [W; R]; where the vocabulary is small, the first layer's input projection is a
  table lookup instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bot.engine.bundle import state_names

OPSET = 17
IR_VERSION = 8
GATES = {"lstm": 4, "gru": 3, "peephole": 4, "coupled": 3}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


class GraphError(Exception):
    """The graph does not keep the bundle contract, or cannot be derived; the message says why."""


@dataclass
class Layer:
    # Gate blocks in ONNX order: LSTM and peephole i o f c, GRU z r h; coupled o f c (the
    # LSTM's without the input gate, which is 1 - f).
    w: np.ndarray  # [gates * units, input]
    r: np.ndarray  # [gates * units, units]
    b: np.ndarray  # [2 * gates * units]: input bias then recurrent bias
    p: np.ndarray | None = None  # peephole [3 * units], ONNX order i o f; other cells None

    def as_lstm(self) -> Layer:
        """A coupled layer as the ONNX LSTM that computes it: input gate sigmoid(-z_f)."""

        def widen(m: np.ndarray) -> np.ndarray:
            o, f, c = np.split(m, 3)
            return np.concatenate([-f, o, f, c])

        wb, rb = np.split(self.b, 2)
        return Layer(widen(self.w), widen(self.r), np.concatenate([widen(wb), widen(rb)]))


@dataclass
class StepWeights:
    cell: str
    embedding: np.ndarray  # [vocab, embedding]
    layers: list[Layer]
    dense_w: np.ndarray  # [units, vocab]
    dense_b: np.ndarray  # [vocab]
    ids_type: int = TensorProto.INT64

    @property
    def units(self) -> int:
        return self.layers[0].r.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.embedding.shape[0]

    @property
    def state_names(self) -> list[str]:
        return state_names(self.cell, len(self.layers))

    @property
    def per_layer(self) -> int:
        """State tensors per layer: h and c for the LSTM family, h for the GRU."""
        return len(self.state_names) // len(self.layers)

    def flops_per_char(self) -> int:
        """Multiply-adds x 2 of one step for one row: the matrix multiplies, which dominate."""
        mults = sum(layer.w.size + layer.r.size for layer in self.layers) + self.dense_w.size
        return 2 * mults

    def matmul_shapes(self) -> list[tuple[int, int]]:
        """(inner, outer) of every matrix multiply of one step, in order."""
        shapes = []
        for layer in self.layers:
            shapes += [(layer.w.shape[1], layer.w.shape[0]), (layer.r.shape[1], layer.r.shape[0])]
        return [*shapes, self.dense_w.shape]


def random_weights(
    vocab_size: int,
    cell: str = "lstm",
    layers: int = 2,
    units: int = 32,
    embedding: int = 16,
    seed: int = 0,
    scale: float = 0.6,
    ids_type: int = TensorProto.INT64,
) -> StepWeights:
    """Random weights of the given shape: tests and benchmarks that need no trained model."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    gates = GATES[cell]
    stack, width = [], embedding
    for _ in range(layers):
        bias = np.zeros(2 * gates * units, np.float32)
        stack.append(Layer(weight(gates * units, width), weight(gates * units, units), bias))
        if cell == "peephole":
            # Diagonal: one weight per unit, the size of one recurrent weight.
            stack[-1].p = weight(3 * units, units)[:, 0]
        width = units
    return StepWeights(
        cell,
        weight(vocab_size, embedding),
        stack,
        weight(units, vocab_size),
        np.zeros(vocab_size, np.float32),
        ids_type,
    )


def read_weights(model: onnx.ModelProto) -> StepWeights:
    """The weights of a one-step graph that keeps the bundle contract."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    recurrent = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    if not recurrent and f"{COUPLED}0_W" in inits:
        cell, layers = "coupled", _coupled_layers(inits)
    elif recurrent and len({n.op_type for n in recurrent}) == 1:
        cell, layers = _recurrent_layers(recurrent, inits)
    else:
        raise GraphError(
            "the graph needs one kind of recurrent operator, LSTM or GRU, or coupled-gate "
            "layers built by export.graphs"
        )
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    if len(gathers) != 1 or inits[gathers[0].input[0]].ndim != 2:
        raise GraphError("the graph needs exactly one embedding lookup (Gather on a weight)")
    top = producer[graph.output[0].name]
    while top.op_type == "Identity":  # the graphs built here name their outputs so
        top = producer[top.input[0]]
    dense_w, dense_b = _dense(top, producer, inits)
    return StepWeights(
        cell,
        inits[gathers[0].input[0]].astype(np.float32),
        layers,
        dense_w,
        dense_b,
        graph.input[0].type.tensor_type.elem_type,
    )


def _recurrent_layers(nodes, inits) -> tuple[str, list[Layer]]:
    """The cell and layers of a graph's ONNX LSTM/GRU operators (an LSTM with peepholes: P)."""
    op = nodes[0].op_type
    layers = []
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        if acts and acts != _DEFAULT_ACTIVATIONS[op]:
            raise GraphError(f"{node.name}: activations {acts} are not the standard ones")
        if attrs.get("direction", b"forward") not in (b"forward", "forward") or "clip" in attrs:
            raise GraphError(f"{node.name}: only forward cells without clipping are supported")
        if op == "GRU" and attrs.get("linear_before_reset", 0) != 1:
            raise GraphError(f"{node.name}: only GRUs with linear_before_reset=1 are supported")
        if op == "LSTM" and attrs.get("input_forget", 0):
            raise GraphError(f"{node.name}: input_forget LSTMs are not supported")
        w, r = inits[node.input[1]][0], inits[node.input[2]][0]
        units = r.shape[1]
        gates = GATES[op.lower()]
        has_b = len(node.input) > 3 and node.input[3]
        b = inits[node.input[3]][0] if has_b else np.zeros(2 * gates * units, np.float32)
        has_p = op == "LSTM" and len(node.input) > 7 and node.input[7]
        p = inits[node.input[7]][0].astype(np.float32) if has_p else None
        layers.append(Layer(w.astype(np.float32), r.astype(np.float32), b.astype(np.float32), p))
    peepholes = {layer.p is not None for layer in layers}
    if len(peepholes) != 1:
        raise GraphError("some LSTM layers have peepholes and some do not")
    return ("peephole" if peepholes == {True} else op.lower()), layers


COUPLED = "coupled"  # initializer names of a coupled layer: coupled<i>_W, _R, _B


def _coupled_layers(inits) -> list[Layer]:
    layers = []
    while f"{COUPLED}{len(layers)}_W" in inits:
        name = f"{COUPLED}{len(layers)}"
        bias = inits[f"{name}_B"].astype(np.float32)
        layers.append(
            Layer(
                inits[f"{name}_W"].astype(np.float32),
                inits[f"{name}_R"].astype(np.float32),
                np.concatenate([bias, np.zeros_like(bias)]),
            )
        )
    return layers


def _dense(node, producer, inits) -> tuple[np.ndarray, np.ndarray]:
    """(weight [units, vocab], bias [vocab]) of the node that makes the logits."""
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = inits[node.input[1]]
        w = w.T if attrs.get("transB", 0) else w
        return w.astype(np.float32), inits[node.input[2]].reshape(-1).astype(np.float32)
    if node.op_type == "Add":
        bias_name = next((i for i in node.input if i in inits), None)
        other = next((i for i in node.input if i not in inits), None)
        matmul = producer.get(other)
        if bias_name and matmul is not None and matmul.op_type == "MatMul":
            weight = next((i for i in matmul.input if i in inits), None)
            if weight is not None:
                return (
                    inits[weight].astype(np.float32),
                    inits[bias_name].reshape(-1).astype(np.float32),
                )
    raise GraphError("the logits must come from MatMul + Add (or Gemm) on constant weights")


class _Builder:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        self._n += 1
        name = name or f"const{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> list[str]:
        self._n += 1
        names = [f"{op_type.lower()}{self._n}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names

    def one(self, op_type: str, *inputs: str, **attrs) -> str:
        return self.op(op_type, *inputs, **attrs)[0]

    def model(self, name: str, inputs, outputs) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def _io(w: StepWeights, ids_shape: list[str], extra_inputs=()) -> tuple[list, list]:
    units = w.units
    inputs = [helper.make_tensor_value_info("ids", w.ids_type, ids_shape), *extra_inputs]
    inputs += [
        helper.make_tensor_value_info(s, TensorProto.FLOAT, ["batch", units]) for s in w.state_names
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "vocab"])]
    outputs[0].type.tensor_type.shape.dim[1].dim_value = w.vocab_size
    outputs += [
        helper.make_tensor_value_info(f"{s}_out", TensorProto.FLOAT, ["batch", units])
        for s in w.state_names
    ]
    return inputs, outputs


def _recurrent(g: _Builder, w: StepWeights, x: str, lengths: str | None) -> tuple[str, list[str]]:
    """Every layer's LSTM/GRU operator over x [time, batch, features]; returns the last layer's
    final hidden state [1, batch, units] and the new states [batch, units] in contract order."""
    axis0, axis1 = g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64))
    per = w.per_layer
    new_states: list[str] = []
    last_h = ""
    for i, layer in enumerate(w.layers):
        names = w.state_names[i * per : (i + 1) * per]
        initial = [g.one("Unsqueeze", s, axis0) for s in names]
        extra = {"linear_before_reset": 1} if w.cell == "gru" else {}
        if w.cell == "coupled":
            layer = layer.as_lstm()
        peephole = [] if layer.p is None else [g.const(layer.p[None])]
        y, *finals = g.op(
            "GRU" if w.cell == "gru" else "LSTM",
            x,
            g.const(layer.w[None]),
            g.const(layer.r[None]),
            g.const(layer.b[None]),
            lengths or "",
            *initial,
            *peephole,
            outputs=1 + per,
            hidden_size=w.units,
            **extra,
        )
        x = g.one("Squeeze", y, axis1)  # [time, 1, batch, units] -> [time, batch, units]
        new_states += [g.one("Squeeze", f, axis0) for f in finals]
        last_h = finals[0]
    return last_h, new_states


def _finish(g: _Builder, w: StepWeights, top: str, new_states: list[str], logits_fn) -> None:
    logits = logits_fn(top)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    for s, new in zip(w.state_names, new_states, strict=True):
        g.nodes.append(helper.make_node("Identity", [new], [f"{s}_out"]))


def step_graph(w: StepWeights) -> onnx.ModelProto:
    """The bundle contract's one-step graph."""
    if w.cell == "coupled":
        return _coupled_step_graph(w)
    g = _Builder()
    x = g.one("Gather", g.const(w.embedding), "ids")  # [batch, embedding]
    x = g.one("Unsqueeze", x, g.const(np.array([0], np.int64)))  # [1, batch, embedding]
    last_h, states = _recurrent(g, w, x, None)
    top = g.one("Squeeze", last_h, g.const(np.array([0], np.int64)))
    _finish(g, w, top, states, lambda t: _dense_fp32(g, w, t))
    return g.model(f"step_{w.cell}", *_io(w, ["batch"]))


def prefill_graph(w: StepWeights) -> onnx.ModelProto:
    """Many characters per row in one run: ids [batch, time], lengths [batch] (>= 1)."""
    g = _Builder()
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])
    x = g.one("Gather", g.const(w.embedding), "ids")  # [batch, time, embedding]
    x = g.one("Transpose", x, perm=[1, 0, 2])
    last_h, states = _recurrent(g, w, x, "lengths")
    top = g.one("Squeeze", last_h, g.const(np.array([0], np.int64)))
    _finish(g, w, top, states, lambda t: _dense_fp32(g, w, t))
    return g.model(f"prefill_{w.cell}", *_io(w, ["batch", "time"], [lengths]))


def _coupled_step_graph(w: StepWeights) -> onnx.ModelProto:
    """One step of coupled-gate layers in plain arithmetic: per layer one MatMul of [x, h] with
    [W; R] for the three gates, then the cell update."""
    g = _Builder()
    x = g.one("Gather", g.const(w.embedding), "ids")  # [batch, embedding]
    new_states: list[str] = []
    for i, layer in enumerate(w.layers):
        h, c = w.state_names[2 * i : 2 * i + 2]
        name = f"{COUPLED}{i}"
        # Stored as the layer's own weights (read back by read_weights), multiplied as one.
        weights = g.one(
            "Concat",
            g.one("Transpose", g.const(layer.w, f"{name}_W")),
            g.one("Transpose", g.const(layer.r, f"{name}_R")),
            axis=0,
        )
        wb, rb = np.split(layer.b, 2)
        z = g.one("MatMul", g.one("Concat", x, h, axis=1), weights)
        z = g.one("Add", z, g.const((wb + rb).astype(np.float32), f"{name}_B"))
        new_states += _lstm_update(g, w, layer, z, c)
        x = new_states[-2]
    _finish(g, w, x, new_states, lambda t: _dense_fp32(g, w, t))
    return g.model("step_coupled", *_io(w, ["batch"]))


def _lstm_update(g: _Builder, w: StepWeights, layer: Layer, z: str, c: str) -> list[str]:
    """[h, c] after one step of an LSTM-family layer from its gates' pre-activations z
    [batch, gates * units] (blocks in Layer order) and the previous cell state c."""
    units = w.units
    sigmoid, tanh = (lambda t: g.one("Sigmoid", t)), (lambda t: g.one("Tanh", t))
    if w.cell == "coupled":
        go, gf, gc = g.op("Split", z, g.const(np.full(3, units, np.int64)), axis=1, outputs=3)
        f, candidate = sigmoid(gf), tanh(gc)
        # f * c + (1 - f) * candidate = candidate + f * (c - candidate)
        new_c = g.one("Add", candidate, g.one("Mul", f, g.one("Sub", c, candidate)))
        return [g.one("Mul", sigmoid(go), tanh(new_c)), new_c]
    gi, go, gf, gc = g.op("Split", z, g.const(np.full(4, units, np.int64)), axis=1, outputs=4)
    if layer.p is not None:  # peepholes: i and f read the old cell state, o the new one
        pi, po, pf = (g.const(part) for part in np.split(layer.p, 3))
        gi = g.one("Add", gi, g.one("Mul", pi, c))
        gf = g.one("Add", gf, g.one("Mul", pf, c))
    new_c = g.one("Add", g.one("Mul", sigmoid(gf), c), g.one("Mul", sigmoid(gi), tanh(gc)))
    if layer.p is not None:
        go = g.one("Add", go, g.one("Mul", po, new_c))
    return [g.one("Mul", sigmoid(go), tanh(new_c)), new_c]


def _dense_fp32(g: _Builder, w: StepWeights, x: str) -> str:
    return g.one("Add", g.one("MatMul", x, g.const(w.dense_w)), g.const(w.dense_b))


WEIGHT_LEVELS = 63  # 7-bit weights: see _quantize_columns


def _quantize_columns(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m [inner, outer] -> (int8 [inner, outer], scale [outer]), symmetric per column.

    Weights use 7 bits (-63..63): x86 kernels without VNNI add pairs of uint8 x int8
    products in int16, which 8-bit weights can overflow (255 * 127 * 2 > 32767).
    """
    scale = np.abs(m).max(axis=0) / WEIGHT_LEVELS
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(m / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return q, scale


class _Int8:
    """x [batch, inner] @ m [inner, outer] with int8 weights and per-row int8 activations."""

    def __init__(self, g: _Builder) -> None:
        self.g = g
        self.tiny = g.const(np.array(1e-12, np.float32))
        self.inv127 = g.const(np.array(1 / 127, np.float32))
        self.offset = g.const(np.array(128, np.float32))
        self.zero_point = g.const(np.array(128, np.uint8))
        self.nothing = g.const(np.array(0, np.float32))
        self.axis1 = g.const(np.array([1], np.int64))

    def row_quantize(self, x: str) -> tuple[str, str]:
        """x -> (uint8 codes around 128, scale [batch, 1]): each row's own scale. One
        QuantizeLinear along the batch axis rounds, offsets and saturates in one pass."""
        g = self.g
        peak = g.one("ReduceMax", g.one("Abs", x), axes=[1], keepdims=0)  # [batch]
        scale = g.one("Max", g.one("Mul", peak, self.inv127), self.tiny)
        zero = g.one(
            "Cast",
            g.one("Add", g.one("Mul", scale, self.nothing), self.offset),
            to=TensorProto.UINT8,
        )  # [batch] of 128
        codes = g.one("QuantizeLinear", x, scale, zero, axis=0)
        return codes, g.one("Unsqueeze", scale, self.axis1)

    def matmul(self, quantized: tuple[str, str], m: np.ndarray) -> str:
        g = self.g
        codes, row_scale = quantized
        q, col_scale = _quantize_columns(m)
        acc = g.one("MatMulInteger", codes, g.const(q), self.zero_point)
        acc = g.one("Cast", acc, to=TensorProto.FLOAT)
        return g.one("Mul", g.one("Mul", acc, row_scale), g.const(col_scale))


def int8_step_graph(w: StepWeights) -> onnx.ModelProto:
    """The one-step graph with int8 matrix multiplies and per-row activation scales; the cells
    are written out as gate arithmetic around MatMulInteger."""
    g = _Builder()
    q = _Int8(g)
    per = w.per_layer
    new_states: list[str] = []
    units = w.units
    gates = GATES[w.cell]
    first = w.layers[0]
    # Where the vocabulary is about as small as the embedding, the first layer's input
    # projection of every character fits in a table as small as its weights: a lookup, exact.
    table = w.cell != "gru" and w.vocab_size <= 2 * first.w.shape[1]
    x = "" if table else g.one("Gather", g.const(w.embedding), "ids")  # [batch, embedding]
    for i, layer in enumerate(w.layers):
        names = w.state_names[i * per : (i + 1) * per]
        wb, rb = layer.b[: gates * units], layer.b[gates * units :]
        if w.cell != "gru":
            if i == 0 and table:
                projected = (w.embedding @ layer.w.T + wb + rb).astype(np.float32)
                xw = g.one("Gather", g.const(projected), "ids")
                z = g.one("Add", xw, q.matmul(q.row_quantize(names[0]), layer.r.T))
            else:
                # One product for input and state: [x, h] @ [W; R]^T, one scale per row.
                both = g.one("Concat", x, names[0], axis=1)
                stacked = np.concatenate([layer.w.T, layer.r.T])
                z = g.one("Add", q.matmul(q.row_quantize(both), stacked), g.const(wb + rb))
            new_states += _lstm_update(g, w, layer, z, names[1])
        else:
            xw = q.matmul(q.row_quantize(x), layer.w.T)
            hr = q.matmul(q.row_quantize(names[0]), layer.r.T)
            split = g.const(np.full(3, units, np.int64))
            xz, xr, xh = g.op("Split", g.one("Add", xw, g.const(wb)), split, axis=1, outputs=3)
            hz, hr_, hh = g.op("Split", g.one("Add", hr, g.const(rb)), split, axis=1, outputs=3)
            zt = g.one("Sigmoid", g.one("Add", xz, hz))
            rt = g.one("Sigmoid", g.one("Add", xr, hr_))
            candidate = g.one("Tanh", g.one("Add", xh, g.one("Mul", rt, hh)))
            # h' = (1 - z) * candidate + z * h = candidate + z * (h - candidate)
            h = g.one("Add", candidate, g.one("Mul", zt, g.one("Sub", names[0], candidate)))
            new_states += [h]
        x = new_states[-per]

    def dense(top: str) -> str:
        return g.one("Add", q.matmul(q.row_quantize(top), w.dense_w), g.const(w.dense_b))

    _finish(g, w, x, new_states, dense)
    return g.model(f"step_{w.cell}_int8", *_io(w, ["batch"]))
