"""The char-RNN: Embedding -> N x recurrent layers with dropout -> Dense logits, and its stateful
forward. The cells: Keras's LSTM and GRU, and two LSTM variants Keras lacks, written here:
peephole connections and coupled input and forget gates.

The training graph (`build_model`) and the stateful `forward` share the same layer objects, so
sampling during training, the export's parity reference and the TensorFlow serving benchmark
all run exactly the weights that were trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from bot.engine.bundle import CELLS, state_names


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    units: int = 512
    embedding: int = 64
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {self.cell!r}")
        if self.layers < 1 or self.units < 1 or self.embedding < 1:
            raise ValueError("layers, units and embedding must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def state_names(self) -> list[str]:
        return state_names(self.cell, self.layers)


def _forget_bias_one(units: int, gates: int, forget: int):
    """A bias initializer that starts gate block `forget` at 1 (Keras's unit_forget_bias): the
    cell keeps its state at first, so gradients reach back further early in training."""

    def init(shape, dtype=None):
        return keras.ops.concatenate(
            [
                keras.ops.zeros([forget * units], dtype),
                keras.ops.ones([units], dtype),
                keras.ops.zeros([(gates - forget - 1) * units], dtype),
            ]
        )

    return init


class _GatedCell(keras.layers.Layer):
    """What both LSTM variants share: state (h, c), one kernel over the input and one over h,
    `GATES` blocks of `units` each, the forget block's bias starting at 1."""

    GATES = 4
    FORGET = 1  # index of the forget block in the kernels

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape) -> None:
        width = self.GATES * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(
            shape=(width,),
            initializer=_forget_bias_one(self.units, self.GATES, self.FORGET),
            name="bias",
        )

    def gates(self, inputs, h):
        z = keras.ops.matmul(inputs, self.kernel) + keras.ops.matmul(h, self.recurrent_kernel)
        return keras.ops.split(z + self.bias, self.GATES, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="poembot")
class PeepholeLSTMCell(_GatedCell):
    """LSTM with peephole connections (Gers and Schmidhuber, 2000): the input and forget gates
    read the previous cell state, the output gate the new one, each through a diagonal weight.
    Kernel blocks i, f, c, o as Keras's LSTM; `peephole` rows i, f, o, starting at zero (a
    plain LSTM)."""

    def build(self, input_shape) -> None:
        super().build(input_shape)
        self.peephole = self.add_weight(shape=(3, self.units), initializer="zeros", name="peephole")

    def call(self, inputs, states, training=False):
        h, c = states
        zi, zf, zc, zo = self.gates(inputs, h)
        i = keras.ops.sigmoid(zi + self.peephole[0] * c)
        f = keras.ops.sigmoid(zf + self.peephole[1] * c)
        c = f * c + i * keras.ops.tanh(zc)
        h = keras.ops.sigmoid(zo + self.peephole[2] * c) * keras.ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="poembot")
class CoupledLSTMCell(_GatedCell):
    """LSTM whose input gate is 1 - its forget gate (Greff et al.'s CIFG, without peepholes):
    what the cell forgets it replaces, one gate fewer. Kernel blocks f, c, o."""

    GATES = 3
    FORGET = 0

    def call(self, inputs, states, training=False):
        h, c = states
        zf, zc, zo = self.gates(inputs, h)
        f = keras.ops.sigmoid(zf)
        c = f * c + (1.0 - f) * keras.ops.tanh(zc)
        h = keras.ops.sigmoid(zo) * keras.ops.tanh(c)
        return h, [h, c]


def recurrent_layer(cell: str, units: int, name: str) -> keras.layers.Layer:
    """One recurrent layer of the given cell, returning its sequence and its final state."""
    # return_state lets `forward` reuse the layer with a carried state; reset_after (the GRU
    # default) is the variant ONNX's GRU computes with linear_before_reset=1.
    if cell == "lstm":
        return keras.layers.LSTM(units, return_sequences=True, return_state=True, name=name)
    if cell == "gru":
        return keras.layers.GRU(units, return_sequences=True, return_state=True, name=name)
    variant = {"peephole": PeepholeLSTMCell, "coupled": CoupledLSTMCell}[cell]
    return keras.layers.RNN(variant(units), return_sequences=True, return_state=True, name=name)


def start_at_the_unigram(model: keras.Model, counts: np.ndarray) -> None:
    """Set the logits' bias to the log frequency of each character in the training text (+1
    smoothing), so that training starts from the unigram model instead of from uniform. The
    sampled softmax needs it most: a rare character is seldom among a step's candidates, so its
    logit barely moves, and the full softmax at validation spread its mass over thousands of
    them (2 x 256 on the 宋詞, 64 steps: sampled 7.47 nats/char, full 6.66, unigram 6.46)."""
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    prior = np.asarray(counts, np.float64) + 1.0
    layer.set_weights([kernel, np.log(prior / prior.sum()).astype(bias.dtype)])


def build_model(config: ModelConfig) -> CharModel:
    """The training graph: ids [batch, time] -> logits [batch, time, vocab]."""
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(config.vocab_size, config.embedding, name="embedding")(ids)
    x = keras.layers.Dropout(config.dropout, name="dropout_in")(x)
    for i in range(config.layers):
        x = recurrent_layer(config.cell, config.units, f"rnn_{i}")(x)[0]
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(config.vocab_size, name="logits")(x)
    return CharModel(ids, logits, name=f"char_{config.cell}")


def hidden_states(model: keras.Model, ids: tf.Tensor, training: bool) -> tf.Tensor:
    """What the logits layer reads: embedding, recurrent layers and their dropout."""
    x = model.get_layer("dropout_in")(model.get_layer("embedding")(ids), training=training)
    layers = sum(1 for layer in model.layers if layer.name.startswith("rnn_"))
    for i in range(layers):
        x = model.get_layer(f"rnn_{i}")(x, training=training)[0]
        x = model.get_layer(f"dropout_{i}")(x, training=training)
    return x


@keras.saving.register_keras_serializable(package="poembot")
class CharModel(keras.Model):
    """The functional char-RNN. After `sample_softmax`, its training step scores each target
    against a sample of the vocabulary (sampled softmax, Jean et al. 2015) instead of all of
    it: the output layer's cost, most of a step's on a large vocabulary, falls by vocab /
    sample. Validation (`evaluate`, `fit`'s validation data), `forward` and the export always
    compute the full softmax."""

    def sample_softmax(
        self, sampled: int, counts: np.ndarray, unk_id: int, unk_rate: float, seed: int = 0
    ) -> None:
        """Train with `sampled` candidates a step, drawn in proportion to counts ** 0.75 (the
        training split's character counts, smoothed so a rare character is drawn at all),
        with the unknown id given `unk_rate` of every target as NovelCharLoss does."""
        q = (np.asarray(counts, np.float64) + 1.0) ** 0.75
        self._log_q = tf.constant(np.log(q / q.sum()), tf.float32)
        self._sampled, self._unk_id, self._unk_rate = sampled, unk_id, unk_rate
        self._seed = seed

    def train_step(self, data):
        if not getattr(self, "_sampled", 0):
            return super().train_step(data)
        ids, targets = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self._sampled_loss(ids, targets)
            # Each replica's share: the optimizer sums the replicas' gradients.
            share = loss / replicas
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(share, variables), variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def _sampled_loss(self, ids: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """Mean sampled-softmax loss: the logits of the target, of the unknown id and of the
        sampled candidates, each corrected by its log expected count (minus log Q), and the
        candidates that are the target or the unknown id left out."""
        hidden = hidden_states(self, ids, training=True)
        kernel, bias = self.get_layer("logits").kernel, self.get_layer("logits").bias
        h = tf.cast(tf.reshape(hidden, [-1, kernel.shape[0]]), tf.float32)
        y = tf.reshape(tf.cast(targets, tf.int32), [-1])
        unk = tf.fill(tf.shape(y), self._unk_id)
        # Seeded by the step count: a new sample every step, the same one again on resume.
        # int32: XLA has no StatelessMultinomial with int64 seeds.
        step = tf.cast(self.optimizer.iterations.value, tf.int32)
        seed = tf.stack([tf.constant(self._seed, tf.int32), step])
        drawn = tf.random.stateless_categorical(self._log_q[None, :], self._sampled, seed)
        drawn = tf.cast(drawn[0], tf.int32)
        expected = np.log(self._sampled) + self._log_q
        columns = tf.transpose(kernel)  # gathered rows get sparse gradients

        def true_logit(c: tf.Tensor) -> tf.Tensor:
            w = tf.gather(columns, c)
            return tf.reduce_sum(h * w, -1) + tf.gather(bias, c) - tf.gather(expected, c)

        t_y, t_unk = true_logit(y), true_logit(unk)
        drawn_logits = (
            tf.matmul(h, tf.gather(columns, drawn), transpose_b=True)
            + tf.gather(bias, drawn)
            - tf.gather(expected, drawn)
        )
        hit = (drawn[None, :] == y[:, None]) | (drawn[None, :] == self._unk_id)
        drawn_logits = tf.where(hit, -1e9, drawn_logits)
        # A target that is the unknown id is counted once, in its own column.
        t_unk_col = tf.where(y == self._unk_id, -1e9, t_unk)
        lse = tf.reduce_logsumexp(
            tf.concat([t_y[:, None], t_unk_col[:, None], drawn_logits], -1), -1
        )
        nll = (1.0 - self._unk_rate) * (lse - t_y) + self._unk_rate * (lse - t_unk)
        return tf.reduce_mean(nll)


@keras.saving.register_keras_serializable(package="poembot")
class NovelCharLoss(keras.losses.Loss):
    """Cross-entropy with a share `unk_rate` of every target given to the unknown id, so the
    model learns how often text brings a character it has never seen (and predicts one with
    a calibrated probability instead of an untrained, vanishing one)."""

    def __init__(
        self,
        unk_id: int = 0,
        unk_rate: float = 0.0,
        name: str = "novel_char_crossentropy",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.unk_id = unk_id
        self.unk_rate = unk_rate

    def call(self, y_true, y_pred):
        log_p = tf.nn.log_softmax(y_pred, axis=-1)
        labels = tf.cast(y_true, tf.int32)
        nll = -tf.gather(log_p, labels, axis=-1, batch_dims=labels.shape.rank)
        if not self.unk_rate:
            return nll
        return (1.0 - self.unk_rate) * nll - self.unk_rate * log_p[..., self.unk_id]

    def get_config(self) -> dict:
        return {**super().get_config(), "unk_id": self.unk_id, "unk_rate": self.unk_rate}


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights if w.trainable))


def forward(
    model: keras.Model, config: ModelConfig, ids: tf.Tensor, states: list[tf.Tensor]
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Inference through the trained layers with a carried state.

    ids [batch, time] int32; states in bundle order (h, c per LSTM layer of any kind; h per
    GRU layer). Returns logits [batch, time, vocab] and the new states.
    """
    per_layer = len(config.state_names) // config.layers
    x = model.get_layer("embedding")(ids)
    new_states: list[tf.Tensor] = []
    for i in range(config.layers):
        layer_state = list(states[i * per_layer : (i + 1) * per_layer])
        out = model.get_layer(f"rnn_{i}")(x, initial_state=layer_state)
        x = out[0]
        new_states.extend(out[1:])
    return model.get_layer("logits")(x), new_states


def zero_states(config: ModelConfig, batch: int) -> list[tf.Tensor]:
    return [tf.zeros([batch, config.units]) for _ in config.state_names]


def sample_text(
    model: keras.Model,
    config: ModelConfig,
    start_ids: np.ndarray,
    length: int,
    temperature: float = 0.8,
    seed: int = 0,
) -> list[int]:
    """A short sample for the training log (TensorFlow; the bot has its own engine)."""
    rng = np.random.default_rng(seed)
    states = zero_states(config, 1)
    logits, states = forward(model, config, tf.constant(start_ids[None, :], tf.int32), states)
    # One step as a graph, traced once a sample: an eager step costs about ten times as much.
    step = tf.function(
        lambda ids, states: forward(model, config, ids, states), reduce_retracing=True
    )
    out: list[int] = []
    for _ in range(length):
        z = logits[0, -1].numpy().astype(np.float64) / temperature
        z[0] = -np.inf  # id 0 is the unknown character: never emit it
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        logits, states = step(tf.constant([[nxt]], tf.int32), states)
    return out


STREAM_CHARS = 8192


def eval_streams(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets [streams, n] for scoring `ids` with context: contiguous pieces of at
    least STREAM_CHARS characters (one piece for a short text), read in parallel for speed."""
    streams = max(1, (len(ids) - 1) // STREAM_CHARS)
    n = (len(ids) - 1) // streams
    if n < 2:
        raise ValueError(f"{len(ids)} characters are too few to evaluate")
    x = np.stack([ids[s * n : s * n + n] for s in range(streams)])
    y = np.stack([ids[s * n + 1 : s * n + n + 1] for s in range(streams)])
    return x, y


def evaluate_stream(
    model: keras.Model,
    config: ModelConfig,
    ids: np.ndarray,
    unk_id: int = 0,
    unk_penalty: float = 0.0,
    chunk: int = 256,
) -> float:
    """Mean nats/char over `ids` read as contiguous pieces with the state carried across
    chunks: every character is predicted from all the text before it in its piece, as the
    served model sees text (and as an n-gram model is scored). A target that is the
    unknown id costs `unk_penalty` more (see Vocab.unknown_penalty)."""
    x, y = eval_streams(ids)
    streams, n = x.shape
    states = zero_states(config, streams)
    total = 0.0
    # Traced once per chunk shape: run eagerly, the recurrent layers step in Python, ~10x slower.
    step = tf.function(lambda ids, states: forward(model, config, ids, states))
    for t in range(0, n, chunk):
        logits, states = step(tf.constant(x[:, t : t + chunk]), states)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y[:, t : t + chunk], logits)
        total += float(tf.reduce_sum(tf.cast(loss, tf.float64)))
        total += unk_penalty * int((y[:, t : t + chunk] == unk_id).sum())
    return total / (streams * n)
