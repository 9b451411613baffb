"""ONNX graphs built from a bundle's weights: the one-step graph, the prompt prefill graph and
the int8 step graph.

`read_weights` takes the weights back out of any one-step graph that keeps the bundle contract
(tf2onnx's export in the bundles made before, or one built here), so every graph of a bundle can
be built again from its own model.onnx, without TensorFlow and without its training run. numpy
and onnx only.

- `step_graph`: ids [batch] + states -> logits + states. Each layer takes one of two forms
  (`STEP_FORMS` says which per cell, as `python -m benchmarks.step_forms` measured them):
  `operator`, the ONNX LSTM/GRU operator (a peephole layer: LSTM with its `P` input; a coupled
  layer: the LSTM `as_lstm` makes of it), or `matmul`, one MatMul of [x, h] with [W; R] and the
  gate arithmetic (a GRU multiplies x and h apart: its reset gate sits between R and the
  candidate). A `matmul` layer's initializers are named `<cell><layer>_W/_R/_B` (a GRU's
  recurrent bias `_RB`, peepholes `_P`) so `read_weights` finds them again.
- `prefill_graph`: ids [batch, time] + lengths [batch] + states -> logits at each row's last
  character + states after it. One LSTM/GRU operator per layer runs the whole prompt (its
  `sequence_lens` input stops each row at its own length), so the input projections of a
  prompt are one matrix multiply instead of one per character. A coupled layer is an ONNX
  LSTM too: its input gate 1 - sigmoid(z) = sigmoid(-z) is an input gate whose weights are the
  forget gate's negated, so every cell has a prefill graph.
- `int8_step_graph`: the step with int8 weights (7-bit, one scale per output column) and uint8
  activations. Every activation a product reads is a hidden state, which lies in (-1, 1) for
  every cell (h = o * tanh(c) in the LSTM family; a GRU's h mixes tanh values and the h
  before), so each is quantised once per layer and step at the fixed scale 1/127, element by
  element: a row's logits never depend on the other rows of the batch. (onnxruntime's dynamic
  quantisation uses one activation scale for the whole batch, which makes a request's text
  depend on its neighbours; scales per row, as before, cost more passes over the data (|x|
  and its row maxima before each product, one more multiply after it) and bought nothing:
  the largest |h| of a row is 0.86 to 1.0, median 0.98 to 1.0, on the shipped models' real
  text.) Each product is one onnxruntime MatMulIntegerToFloat (com.microsoft, in every
  onnxruntime's CPU provider): the integer product, one multiply per column (activation and
  weight scales folded together) and the bias, written out at once. The first layer's input
  projection of every character, its biases included, is a table of int8 rows with one scale
  each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bot.engine.bundle import state_names

OPSET = 17
IR_VERSION = 8
GATES = {"lstm": 4, "gru": 3, "peephole": 4, "coupled": 3}
FORMS = ("operator", "matmul")
# The faster form of each cell's step on this project's CPU (benchmarks/results/step_forms.md).
STEP_FORMS = {"lstm": "operator", "gru": "matmul", "peephole": "operator", "coupled": "matmul"}
CONTRIB = "com.microsoft"  # onnxruntime's own operators (the int8 graph's products)
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

    def as_coupled(self) -> Layer | None:
        """The coupled layer an LSTM layer computes, if its input gate is its forget gate
        negated (as `as_lstm` writes it); None otherwise."""
        if self.p is not None:
            return None
        parts = [np.split(m, 4) for m in (self.w, self.r, *np.split(self.b, 2))]
        if not parts[0][2].any() or not all(np.array_equal(i, -f) for i, _, f, _ in parts):
            return None
        w, r, wb, rb = (np.concatenate([o, f, c]) for _, o, f, c in parts)
        return Layer(w, r, np.concatenate([wb, rb]))

    @property
    def biases(self) -> tuple[np.ndarray, np.ndarray]:
        """(input bias, recurrent bias), each [gates * units]."""
        wb, rb = np.split(self.b, 2)
        return wb, rb


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

    def matmul_shapes(self, form: str = "operator") -> list[tuple[int, int]]:
        """(inner, outer) of every matrix multiply of one fp32 step in `form`, in order: the
        operator multiplies x and h apart, the matmul form [x, h] at once (a GRU: apart)."""
        shapes = []
        for layer in self.layers:
            (outer, inner), units = layer.w.shape, layer.r.shape[1]
            apart = form == "operator" or self.cell == "gru"
            shapes += [(inner, outer), (units, outer)] if apart else [(inner + units, outer)]
        return [*shapes, self.dense_w.shape]

    def int8_shapes(self) -> list[tuple[int, int]]:
        """(inner, outer) of every integer product of one int8 step: the first layer's input
        projection is a table, so only its recurrent product remains there."""
        shapes = []
        for i, layer in enumerate(self.layers):
            (outer, inner), units = layer.w.shape, layer.r.shape[1]
            if i == 0:
                shapes.append((units, outer))
            elif self.cell == "gru":
                shapes += [(inner, outer), (units, outer)]
            else:
                shapes.append((inner + units, outer))
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
    bias: float = 0.0,
) -> StepWeights:
    """Random weights of the given shape: tests and benchmarks that need no trained model
    (`bias`: the spread of random biases, 0 for none)."""
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    gates = GATES[cell]
    stack, width = [], embedding
    for _ in range(layers):
        b = (rng.standard_normal(2 * gates * units) * bias).astype(np.float32)
        stack.append(Layer(weight(gates * units, width), weight(gates * units, units), b))
        if cell == "peephole":
            # Diagonal: one weight per unit, the size of one recurrent weight.
            stack[-1].p = weight(3 * units, units)[:, 0]
        width = units
    return StepWeights(
        cell,
        weight(vocab_size, embedding),
        stack,
        weight(units, vocab_size),
        (rng.standard_normal(vocab_size) * bias).astype(np.float32),
        ids_type,
    )


_MATMUL_LAYER = re.compile(r"^(lstm|gru|peephole|coupled)(\d+)_W$")


def read_weights(model: onnx.ModelProto) -> StepWeights:
    """The weights of a one-step graph that keeps the bundle contract."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    recurrent = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    matmul = {m.group(1) for m in map(_MATMUL_LAYER.match, inits) if m}
    if not recurrent and len(matmul) == 1:
        cell = matmul.pop()
        layers = _matmul_layers(cell, inits)
    elif recurrent and not matmul and len({n.op_type for n in recurrent}) == 1:
        cell, layers = _recurrent_layers(recurrent, inits)
    else:
        raise GraphError(
            "the graph needs one kind of recurrent layer: ONNX LSTM or GRU operators, or "
            "layers of one cell in plain arithmetic built by export.graphs"
        )
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    if len(gathers) != 1 or inits[gathers[0].input[0]].ndim != 2:
        raise GraphError("the graph needs exactly one embedding lookup (Gather on a weight)")
    top = producer[graph.output[0].name]
    while top.op_type == "Identity":  # tf2onnx names its outputs so
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


def form_of(model: onnx.ModelProto) -> str:
    """The form of a one-step graph's layers: `operator` where it has ONNX LSTM/GRU operators,
    else `matmul`."""
    ops = {node.op_type for node in model.graph.node}
    return "operator" if ops & {"LSTM", "GRU"} else "matmul"


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
    coupled = [layer.as_coupled() for layer in layers] if op == "LSTM" else [None]
    if all(coupled):
        return "coupled", coupled
    return ("peephole" if peepholes == {True} else op.lower()), layers


def _matmul_layers(cell: str, inits) -> list[Layer]:
    """The layers of a step in the matmul form, from its named initializers."""
    layers = []
    while f"{cell}{len(layers)}_W" in inits:
        name = f"{cell}{len(layers)}"
        bias = inits[f"{name}_B"].astype(np.float32)
        recurrent_bias = inits.get(f"{name}_RB", np.zeros_like(bias)).astype(np.float32)
        peephole = inits.get(f"{name}_P")
        layers.append(
            Layer(
                inits[f"{name}_W"].astype(np.float32),
                inits[f"{name}_R"].astype(np.float32),
                np.concatenate([bias, recurrent_bias]),
                None if peephole is None else peephole.astype(np.float32),
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
    """Nodes and initializers of one graph, with fresh names (or the name asked for: a graph
    output is written by the node that computes it, not copied by an Identity)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        self._n += 1
        name = name or f"const{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, names=None, **attrs) -> list[str]:
        self._n += 1
        names = names or [f"{op_type.lower()}{self._n}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names

    def one(self, op_type: str, *inputs: str, name: str | None = None, **attrs) -> str:
        return self.op(op_type, *inputs, names=[name] if name else None, **attrs)[0]

    def model(self, name: str, inputs, outputs) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if any(node.domain == CONTRIB for node in self.nodes):
            opsets.append(helper.make_opsetid(CONTRIB, 1))
        model = helper.make_model(graph, opset_imports=opsets)
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


def _outputs(w: StepWeights, layer: int) -> list[str]:
    """The graph output names of one layer's new states."""
    per = w.per_layer
    return [f"{s}_out" for s in w.state_names[layer * per : (layer + 1) * per]]


def _recurrent(g: _Builder, w: StepWeights, x: str, lengths: str | None) -> list[str]:
    """Every layer's LSTM/GRU operator over x [time, batch, features] (without `lengths`,
    one step: time 1); the new states [batch, units] in contract order, written to the
    graph's state outputs."""
    axis0, axis1 = g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64))
    per = w.per_layer
    new_states: list[str] = []
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
        if i + 1 < len(w.layers):  # the next layer's input: [time, batch, units]
            # One step (no lengths): the final hidden state [1, batch, units] is all of y.
            x = g.one("Squeeze", y, axis1) if lengths else finals[0]
        outs = _outputs(w, i)
        new_states += [
            g.one("Squeeze", f, axis0, name=o) for f, o in zip(finals, outs, strict=True)
        ]
    return new_states


def step_graph(w: StepWeights, form: str | None = None) -> onnx.ModelProto:
    """The bundle contract's one-step graph, its layers in `form` (default: the cell's
    faster one, STEP_FORMS)."""
    form = form or STEP_FORMS[w.cell]
    if form not in FORMS:
        raise GraphError(f"form must be one of {FORMS}, not {form!r}")
    g = _Builder()
    x = g.one("Gather", g.const(w.embedding), "ids")  # [batch, embedding]
    if form == "operator":
        x = g.one("Unsqueeze", x, g.const(np.array([0], np.int64)))  # [1, batch, embedding]
        top = _recurrent(g, w, x, None)[-w.per_layer]
    else:
        for i, layer in enumerate(w.layers):
            x = _matmul_layer(g, w, i, layer, x)
        top = x
    _dense_fp32(g, w, top)
    return g.model(f"step_{w.cell}", *_io(w, ["batch"]))


def prefill_graph(w: StepWeights) -> onnx.ModelProto:
    """Many characters per row in one run: ids [batch, time], lengths [batch] (>= 1)."""
    g = _Builder()
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])
    x = g.one("Gather", g.const(w.embedding), "ids")  # [batch, time, embedding]
    x = g.one("Transpose", x, perm=[1, 0, 2])
    _dense_fp32(g, w, _recurrent(g, w, x, "lengths")[-w.per_layer])
    return g.model(f"prefill_{w.cell}", *_io(w, ["batch", "time"], [lengths]))


def _matmul_layer(g: _Builder, w: StepWeights, i: int, layer: Layer, x: str) -> str:
    """One layer of the matmul form: its new states written to the graph's outputs; returns
    its new h. The initializers keep the layer's own weights (read back by read_weights); the
    products' transposed and stacked weights are constants onnxruntime folds when it loads."""
    name = f"{w.cell}{i}"
    per = w.per_layer
    state = w.state_names[i * per : (i + 1) * per]
    outs = _outputs(w, i)
    weights = g.one("Transpose", g.const(layer.w, f"{name}_W"))
    recurrent = g.one("Transpose", g.const(layer.r, f"{name}_R"))
    wb, rb = layer.biases
    if w.cell == "gru":  # x and h apart: the reset gate multiplies h's part alone
        xz = g.one("Add", g.one("MatMul", x, weights), g.const(wb, f"{name}_B"))
        hz = g.one("Add", g.one("MatMul", state[0], recurrent), g.const(rb, f"{name}_RB"))
        return _gru_update(g, w, xz, hz, state[0], outs[0])
    stacked = g.one("Concat", weights, recurrent, axis=0)
    z = g.one("MatMul", g.one("Concat", x, state[0], axis=1), stacked)
    z = g.one("Add", z, g.const(wb + rb, f"{name}_B"))
    return _lstm_update(g, w, layer, z, state[1], outs, f"{name}_P")[0]


def _lstm_update(
    g: _Builder,
    w: StepWeights,
    layer: Layer,
    z: str,
    c: str,
    names: list[str],
    peephole: str | None = None,
) -> list[str]:
    """[h, c] after one step of an LSTM-family layer, written to `names`, from its gates'
    pre-activations z [batch, gates * units] (blocks in Layer order) and the old cell state c
    (`peephole`: what to name the peephole weights' initializer)."""
    units = w.units
    sigmoid, tanh = (lambda t: g.one("Sigmoid", t)), (lambda t: g.one("Tanh", t))
    if w.cell == "coupled":
        go, gf, gc = g.op("Split", z, g.const(np.full(3, units, np.int64)), axis=1, outputs=3)
        f, candidate = sigmoid(gf), tanh(gc)
        # f * c + (1 - f) * candidate = candidate + f * (c - candidate)
        new_c = g.one("Add", candidate, g.one("Mul", f, g.one("Sub", c, candidate)), name=names[1])
        return [g.one("Mul", sigmoid(go), tanh(new_c), name=names[0]), new_c]
    gi, go, gf, gc = g.op("Split", z, g.const(np.full(4, units, np.int64)), axis=1, outputs=4)
    if layer.p is not None:  # peepholes: i and f read the old cell state, o the new one
        parts = g.const(np.full(3, units, np.int64))
        pi, po, pf = g.op("Split", g.const(layer.p, peephole), parts, axis=0, outputs=3)
        gi = g.one("Add", gi, g.one("Mul", pi, c))
        gf = g.one("Add", gf, g.one("Mul", pf, c))
    new_c = g.one(
        "Add",
        g.one("Mul", sigmoid(gf), c),
        g.one("Mul", sigmoid(gi), tanh(gc)),
        name=names[1],
    )
    if layer.p is not None:
        go = g.one("Add", go, g.one("Mul", po, new_c))
    return [g.one("Mul", sigmoid(go), tanh(new_c), name=names[0]), new_c]


def _gru_update(g: _Builder, w: StepWeights, xz: str, hz: str, h: str, name: str) -> str:
    """A GRU layer's new h (linear_before_reset) from the input's and the state's parts of its
    gates [batch, 3 * units] (z r h, each with its bias) and the old h."""
    split = g.const(np.full(3, w.units, np.int64))
    xz_, xr, xh = g.op("Split", xz, split, axis=1, outputs=3)
    hz_, hr, hh = g.op("Split", hz, split, axis=1, outputs=3)
    update = g.one("Sigmoid", g.one("Add", xz_, hz_))
    reset = g.one("Sigmoid", g.one("Add", xr, hr))
    candidate = g.one("Tanh", g.one("Add", xh, g.one("Mul", reset, hh)))
    # h' = (1 - z) * candidate + z * h = candidate + z * (h - candidate)
    return g.one("Add", candidate, g.one("Mul", update, g.one("Sub", h, candidate)), name=name)


def _dense_fp32(g: _Builder, w: StepWeights, x: str) -> str:
    product = g.one("MatMul", x, g.const(w.dense_w))
    return g.one("Add", product, g.const(w.dense_b), name="logits")


WEIGHT_LEVELS = 63  # 7-bit weights: see _quantize_columns
STATE_SCALE = 1 / 127  # activations in (-1, 1) as uint8 codes round(127 x) + 128
TABLE_LEVELS = 127  # the first layer's input table: int8 rows, one scale each
TABLE_BYTES = 4 << 20  # the largest such table of the first layer's projections


def _quantize_columns(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m [inner, outer] -> (int8 [inner, outer], step [outer]): symmetric per column, `step`
    the value of one unit of the product with codes at STATE_SCALE.

    Weights use 7 bits (-63..63): x86 kernels without VNNI add pairs of uint8 x int8
    products in int16, which 8-bit weights can overflow (255 * 127 * 2 > 32767).
    """
    scale = np.abs(m).max(axis=0) / WEIGHT_LEVELS
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(m / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return q, (scale * np.float32(STATE_SCALE)).astype(np.float32)


class _Int8:
    """Integer products of activations in (-1, 1) with int8 weights."""

    def __init__(self, g: _Builder) -> None:
        self.g = g
        self.scale = g.const(np.array(STATE_SCALE, np.float32))
        self.zero_point = g.const(np.array(128, np.uint8))
        self.one = g.const(np.array(1.0, np.float32))  # the product's steps carry the scale

    def codes(self, x: str) -> str:
        """x in (-1, 1) -> uint8 round(127 x) + 128, each element on its own."""
        return self.g.one("QuantizeLinear", x, self.scale, self.zero_point)

    def product(
        self, codes: str, m: np.ndarray, bias: np.ndarray | None, name: str | None = None
    ) -> str:
        """codes @ m (+ bias) in float32: onnxruntime's MatMulIntegerToFloat applies the one
        multiply (activation scale times column scale) and adds the bias as it writes the
        integer product out, instead of three more passes (Cast, Mul, Add) over it."""
        g = self.g
        q, step = _quantize_columns(m)
        inputs = [codes, g.const(q), self.one, g.const(step), self.zero_point, ""]
        inputs += [] if bias is None else [g.const(bias)]
        return g.one("MatMulIntegerToFloat", *inputs, name=name, domain=CONTRIB)

    def table(self, w: StepWeights, bias: np.ndarray) -> str:
        """The first layer's input projection of each row's character, `bias` included: a
        table of int8 rows with one scale per character, looked up and scaled. Where that
        table would hold more than TABLE_BYTES (a Chinese vocabulary: 7,586 characters x
        2,048 gates is 15.5 MB, half again the rest of the graph), the embedding is the table
        and its rows are multiplied out at each step (in float32: [batch, 128] x [128, 2,048]
        is a small product beside the layers')."""
        g = self.g
        projection = w.layers[0].w.T  # [embedding, gates * units]
        if w.embedding.shape[0] * projection.shape[1] <= TABLE_BYTES:
            return self._lookup(w.embedding @ projection + bias)
        rows = g.one("MatMul", self._lookup(w.embedding), g.const(projection.astype(np.float32)))
        return g.one("Add", rows, g.const(bias.astype(np.float32)))

    def _lookup(self, values: np.ndarray) -> str:
        """Each row's row of `values` [vocab, width], kept as int8 with one scale a row."""
        g = self.g
        scale = np.abs(values).max(axis=1, keepdims=True) / TABLE_LEVELS
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.rint(values / scale).astype(np.int8)
        rows = g.one("Cast", g.one("Gather", g.const(q), "ids"), to=TensorProto.FLOAT)
        return g.one("Mul", rows, g.one("Gather", g.const(scale), "ids"))


def int8_step_graph(w: StepWeights) -> onnx.ModelProto:
    """The one-step graph with int8 products; the cells are written out as gate arithmetic."""
    g = _Builder()
    q = _Int8(g)
    per = w.per_layer
    x = ""
    for i, layer in enumerate(w.layers):
        state = w.state_names[i * per : (i + 1) * per]
        outs = _outputs(w, i)
        wb, rb = layer.biases
        if w.cell == "gru":
            xz = q.table(w, wb) if i == 0 else q.product(q.codes(x), layer.w.T, wb)
            hz = q.product(q.codes(state[0]), layer.r.T, rb)
            x = _gru_update(g, w, xz, hz, state[0], outs[0])
            continue
        if i == 0:
            recurrent = q.product(q.codes(state[0]), layer.r.T, None)
            z = g.one("Add", q.table(w, wb + rb), recurrent)
        else:  # one product for input and state: [x, h] @ [W; R]^T
            both = q.codes(g.one("Concat", x, state[0], axis=1))
            z = q.product(both, np.concatenate([layer.w.T, layer.r.T]), wb + rb)
        x = _lstm_update(g, w, layer, z, state[1], outs)[0]
    q.product(q.codes(x), w.dense_w, w.dense_b, name="logits")
    return g.model(f"step_{w.cell}_int8", *_io(w, ["batch"]))
