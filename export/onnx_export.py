"""A finished training run -> a verified bundle: the one-step graph, parity, optional int8.

Every graph of a bundle is built from the trained weights by `export.graphs` (numpy and onnx):
the one-step graph in the form its cell steps fastest in (ONNX LSTM/GRU operators, or one MatMul
of [x, h] per layer and the gate arithmetic; `graphs.STEP_FORMS`), the prefill graph and the
int8 graph. Parity is measured against the trained Keras model itself. `derive` builds them
again from a bundle's own model.onnx, without TensorFlow; as a new version, it replaces the
step graph too, checked against the old one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus import KNOWN_CORPORA, Corpus, load_corpus, split
from bot.engine.bundle import (
    INT8_FILE,
    MODEL_FILE,
    NGRAM_FILE,
    PREFILL_FILE,
    Bundle,
    BundleError,
    Vocab,
    active_version,
    check_name,
    load_bundle,
    next_version,
    set_active,
    update_card,
    write_bundle,
)
from bot.engine.copyguard import GUARD_FILE, CopyIndex
from bot.engine.ngram import BYTES_PER_NGRAM, DEFAULT_WEIGHT, NGram
from bot.engine.scheduler import Request, generate_once
from bot.engine.sessions import StepModel
from bot.forms.catalog import WORDS_FILE, poem_files, poem_section, write_table
from bot.forms.english import words
from bot.forms.lines import LINES_FILE, LineIndex
from export import graphs
from training.model import eval_streams, evaluate_stream

PARITY_STEPS = 200
PARITY_TOLERANCE = 1e-4
RECURRENT_OPS = {"lstm": "LSTM", "gru": "GRU", "peephole": "LSTM", "coupled": "LSTM"}
# An n-gram model is held whole in the serving process: beyond this many (about 90 MB) it would
# crowd out the other styles.
MAX_NGRAMS = 2_000_000
NGRAM_METHOD = (
    "interpolated modified Kneser-Ney over the vocabulary's ids, fitted on the training split; "
    "the engine samples from weight * network + (1 - weight) * n-gram"
)


class ExportError(Exception):
    """The run cannot become a bundle; the message says why."""


def read_run(run: Path) -> dict[str, Any]:
    for name in ("config.json", "vocab.json", "best.weights.h5", "metrics.json"):
        if not (run / name).exists():
            raise ExportError(
                f"{run}/{name} is missing: is this a finished `python -m training` run folder?"
            )
    return {
        "config": json.loads((run / "config.json").read_text(encoding="utf-8")),
        "metrics": json.loads((run / "metrics.json").read_text(encoding="utf-8")),
        "vocab": Vocab.load(run / "vocab.json"),
    }


def load_trained(run: Path, model_cfg_json: dict[str, Any]):
    from training.model import ModelConfig, build_model

    model_cfg = ModelConfig(**model_cfg_json)
    model = build_model(model_cfg)
    model.load_weights(run / "best.weights.h5")
    return model, model_cfg


def check_ops(onnx_model, cell: str, layers: int, form: str, made_by: str) -> None:
    """Refuse a one-step graph whose layers are not what its form says: one LSTM/GRU operator
    per layer in the operator form, none in the matmul form; never a Loop or Scan."""
    ops = [node.op_type for node in onnx_model.graph.node]
    want = RECURRENT_OPS[cell] if form == "operator" else None
    count = layers if want else 0
    recurrent = ops.count("LSTM") + ops.count("GRU")
    if (want and ops.count(want) != count) or recurrent != count or "Loop" in ops or "Scan" in ops:
        raise ExportError(
            f"{made_by} produced {recurrent} LSTM/GRU operators for {layers} {cell} layers in "
            f"the {form} form (and {ops.count('Loop')} Loop, {ops.count('Scan')} Scan); it "
            f"needs {count} {want or 'LSTM/GRU'} and no Loop or Scan"
        )


# Keras keeps gate blocks i f c o (LSTM, peephole), z r h (GRU), f c o (coupled); ONNX and
# export.graphs i o f c, z r h, o f c.
_KERAS_BLOCKS = {
    "lstm": [0, 3, 1, 2],
    "peephole": [0, 3, 1, 2],
    "gru": [0, 1, 2],
    "coupled": [2, 0, 1],
}


def keras_weights(model, model_cfg) -> graphs.StepWeights:
    """The trained weights in export.graphs' layout: Keras's kernels [input, gates * units]
    to [gates * units, input] in ONNX's block order, its bias (a GRU's input and recurrent
    biases, [2, gates * units]) to input bias then recurrent bias, a peephole layer's rows
    i f o to P in i o f."""
    import onnx

    order = _KERAS_BLOCKS[model_cfg.cell]

    def blocks(m: np.ndarray) -> np.ndarray:
        parts = np.split(m, len(order), axis=-1)
        return np.concatenate([parts[k] for k in order], axis=-1)

    layers = []
    for i in range(model_cfg.layers):
        kernel, recurrent, bias, *peephole = model.get_layer(f"rnn_{i}").get_weights()
        bias = blocks(bias.reshape(-1, bias.shape[-1]))  # [1 or 2, gates * units]
        b = np.concatenate([*bias, np.zeros(bias.shape[1] * (2 - len(bias)))]).astype(np.float32)
        p = peephole[0][[0, 2, 1]].reshape(-1).astype(np.float32) if peephole else None
        layers.append(graphs.Layer(blocks(kernel).T.copy(), blocks(recurrent).T.copy(), b, p))
    dense_w, dense_b = model.get_layer("logits").get_weights()
    return graphs.StepWeights(
        model_cfg.cell,
        model.get_layer("embedding").get_weights()[0],
        layers,
        dense_w,
        dense_b,
        onnx.TensorProto.INT32,
    )


def step_section(cell: str, made_from: str) -> dict[str, Any]:
    """The card's account of how the one-step graph was made."""
    import onnx
    import onnxruntime

    form = graphs.STEP_FORMS[cell]
    return {
        "form": form,
        "made_by": f"export.graphs from {made_from} (opset {graphs.OPSET})",
        "forms_measured": "benchmarks/results/step_forms.md",
        "tools": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def write_step(model, model_cfg, path: Path) -> dict[str, Any]:
    """The bundle's one-step graph at `path`, built from the trained weights; the card's
    account of it."""
    import onnx

    onnx_model = graphs.step_graph(keras_weights(model, model_cfg))
    form = graphs.STEP_FORMS[model_cfg.cell]
    check_ops(onnx_model, model_cfg.cell, model_cfg.layers, form, "export.graphs")
    onnx.save(onnx_model, path)
    return step_section(model_cfg.cell, "the trained weights")


def parity(model, model_cfg, session: StepModel, ids: np.ndarray) -> float:
    """Max |logit difference| between the trained Keras model and onnxruntime over `ids`
    [batch, steps]: Keras reads the whole sequence in one call (its recurrent layers carry the
    state from step to step, as in training), onnxruntime steps through it carrying its state.
    One call instead of one eager call a step: a fifth of the time."""
    import tensorflow as tf

    from training.model import forward, zero_states

    tf_logits, _ = forward(model, model_cfg, tf.constant(ids), zero_states(model_cfg, len(ids)))
    expected = tf_logits.numpy()
    ort_states = session.zero_states(ids.shape[0])
    worst = 0.0
    for t in range(ids.shape[1]):
        ort_logits, ort_states = session.step(ids[:, t], ort_states)
        worst = max(worst, float(np.abs(expected[:, t] - ort_logits).max()))
    return worst


Mixture = tuple[NGram, float]  # an n-gram model and the network's weight beside it


def onnx_loss(
    session: StepModel, ids: np.ndarray, unk_penalty: float, mixture: Mixture | None = None
) -> float:
    """nats/char of a session over `ids`: training's evaluate_stream, on onnxruntime; with
    `mixture`, of the distribution the engine serves (network and n-gram mixed), the n-gram
    reading each stream from its start as the network does."""
    x, y = eval_streams(ids)
    streams, n = x.shape
    states = session.zero_states(streams)
    log_p = np.empty((streams, n))
    rows = np.arange(streams)
    for t in range(n):
        logits, states = session.step(x[:, t], states)
        z = logits.astype(np.float64)
        m = z.max(axis=1)
        log_norm = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
        log_p[:, t] = z[rows, y[:, t]] - log_norm
    if mixture is not None:
        ngram, weight = mixture
        log_p = np.logaddexp(np.log(weight) + log_p, np.log1p(-weight) + _counted(ngram, x, y))
    unk_id = session.bundle.vocab.unk_id
    return float(-log_p.sum() + unk_penalty * int((y == unk_id).sum())) / (streams * n)


def _counted(ngram: NGram, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log P(y) [streams, n] under the n-gram model, each stream read from its start."""
    pairs = zip(x, y, strict=True)
    return np.stack([ngram.log_probs(np.append(xs, ys[-1]))[1:] for xs, ys in pairs])


def ngram_loss(ngram: NGram, ids: np.ndarray, unk_id: int, unk_penalty: float) -> float:
    """nats/char of the n-gram model alone over `ids`, read as onnx_loss reads them."""
    x, y = eval_streams(ids)
    return float(-_counted(ngram, x, y).sum() + unk_penalty * int((y == unk_id).sum())) / y.size


def prefill_parity(session: StepModel, ids: np.ndarray) -> float:
    """Max |difference| between the states after reading `ids` [batch, steps] with the prefill
    graph and after stepping the one-step graph through them."""
    states = session.zero_states(ids.shape[0])
    for t in range(ids.shape[1]):
        _, states = session.step(ids[:, t], states)
    prefilled = session.prefill([list(row) for row in ids])
    return max(float(np.abs(a - b).max()) for a, b in zip(states, prefilled, strict=True))


INT8_SERVE_TOLERANCE = 0.002  # nats/char: an int8 graph this near fp32 may serve its style
# A card's poem settings chosen for serving (blind readers against the latency), which a new
# version inherits and a rebuilt poem section keeps.
SERVING_KEYS = ("candidates", "about_candidates", "default_themes")


def serving_kept(old: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """What of an old poem section (`SERVING_KEYS`) a new one keeps: each that is set, its
    default themes only where the new one can plan themes."""
    kept = {}
    for key in SERVING_KEYS:
        value = old.get(key)
        if value is None or (key == "default_themes" and not (value and "themes" in section)):
            continue
        kept[key] = list(value) if isinstance(value, list) else value
    return kept


def inherit_serving(models_dir: Path, style: str, card: dict[str, Any], log=print) -> None:
    """A new version of a style keeps what its live version was chosen to serve with: its
    candidates a line (`poem.candidates` and, for a poem about a theme,
    `poem.about_candidates`: chosen by blind readers against the latency), the themes it
    gives a poem asked without one (`poem.default_themes`, where the new one can plan
    themes), and its int8 graph (`int8.serve`) where the new one has an int8 graph as near
    its fp32 as INT8_SERVE_TOLERANCE; each said in the log."""
    live = active_version(models_dir, style)
    if live is None:
        return
    try:
        old = load_bundle(models_dir / style / live).card
    except (BundleError, OSError, ValueError) as err:
        log(f"the live {style}/{live} could not be read ({err}); nothing inherited")
        return
    if "poem" in card:
        kept = serving_kept(old.get("poem", {}), card["poem"])
        card["poem"].update(kept)
        for key, what in (("candidates", ""), ("about_candidates", " about a theme")):
            if key in kept:
                log(f"{kept[key]} candidates a line{what}, as {style}/{live}")
        if "default_themes" in kept:
            own = kept["default_themes"]
            log(f"its own themes for a poem asked without one ({len(own)}), as {style}/{live}")
    if not old.get("int8", {}).get("serve") or "int8" not in card:
        return
    metrics = card["metrics"]
    gap = abs(metrics["val_loss_int8"] - metrics.get("val_loss_onnx", metrics["val_loss"]))
    card["int8"]["serve"] = gap <= INT8_SERVE_TOLERANCE
    log(
        f"int8 graph {gap:.4f} nats/char from fp32: "
        + ("serves, as " if card["int8"]["serve"] else "fp32 serves, unlike ")
        + f"{style}/{live}"
    )


INT8_METHOD = (
    "int8 weights (7-bit) with one scale per output column; activations, every one a hidden "
    "state in (-1, 1), quantised to uint8 element by element at the fixed scale 1/127, so a "
    "row's logits never depend on the rest of the batch; the first layer's input projection "
    "a table of int8 rows, one scale per character (where that table would pass 4 MB, the "
    "embedding is the table and its rows are multiplied out in float32); products by "
    "onnxruntime's MatMulIntegerToFloat"
)


def add_derived_graphs(
    staged: Path,
    metrics: dict[str, Any],
    val_ids: np.ndarray,
    unk_penalty: float,
    int8: bool,
    log=print,
    mixture: Mixture | None = None,
    prefill: str = "build",
) -> dict[str, Any]:
    """The prefill graph (`prefill`: "build" it, "keep" the one the staged bundle has, or
    "none") and with `int8` the int8 step graph next to the staged bundle's model.onnx,
    checked against it; returns the card fields that describe them (with `metrics`, the
    card's, gaining the int8 graph's validation loss, mixed with the bundle's n-gram model as
    served where `mixture` gives one)."""
    import onnx

    weights = graphs.read_weights(onnx.load(staged / MODEL_FILE))
    fields: dict[str, Any] = {}
    if prefill != "none":
        if prefill == "build":
            onnx.save(graphs.prefill_graph(weights), staged / PREFILL_FILE)
        session = StepModel(load_bundle(staged), providers="cpu")
        real = val_ids[: 4 * PARITY_STEPS].reshape(4, PARITY_STEPS).astype(np.int32)
        worst = prefill_parity(session, real)
        log(f"prefill parity: max |state difference| {worst:.2e} over {PARITY_STEPS} characters")
        if not worst <= PARITY_TOLERANCE:
            raise ExportError(f"prefill parity {worst:.2e} exceeds {PARITY_TOLERANCE:.0e}")
        fields["prefill"] = {
            "max_abs_state_diff": worst,
            "steps": PARITY_STEPS,
            "file": PREFILL_FILE,
        }
    if int8:
        onnx.save(graphs.int8_step_graph(weights), staged / INT8_FILE)
        int8_session = StepModel(load_bundle(staged), providers="cpu", int8=True)
        loss = onnx_loss(int8_session, val_ids, unk_penalty, mixture)
        log(f"int8 validation loss {loss:.4f} nats/char")
        fields["int8"] = {"method": INT8_METHOD, "val_loss": loss, "file": INT8_FILE}
        fields["metrics"] = {**metrics, "val_loss_int8": loss}
    return fields


def trained_on(bundle: Bundle, corpus: str | None = None) -> Corpus:
    """The corpus `bundle` was trained on (the card's, or `corpus`), checked by its sha256."""
    text = load_corpus(corpus or bundle.card["corpus"]["name"])
    if text.sha256 != bundle.card["corpus"]["sha256"]:
        raise ExportError(f"{text.source} is not the corpus {bundle.path} was trained on")
    return text


def step_parity(old: StepModel, new: StepModel, ids: np.ndarray) -> float:
    """Max |logit difference| between two one-step graphs stepping `ids` [batch, steps], each
    carrying its own state."""
    old_states, new_states = old.zero_states(ids.shape[0]), new.zero_states(ids.shape[0])
    worst = 0.0
    for t in range(ids.shape[1]):
        old_logits, old_states = old.step(ids[:, t], old_states)
        new_logits, new_states = new.step(ids[:, t], new_states)
        worst = max(worst, float(np.abs(old_logits - new_logits).max()))
    return worst


@contextlib.contextmanager
def _rebuilt(bundle: Bundle, version: str | None, replaced: tuple[str, ...]) -> Iterator[Path]:
    """A staged copy of `bundle` without the files `replaced`, for the caller to complete;
    then verified with the engine and renamed into place: over the bundle, or as the new
    `version` of its style beside it (the card saying where it came from), the bundle itself
    untouched. Nothing lands if the caller raises."""
    target = bundle.path if version is None else bundle.path.parent / check_name(version, "version")
    if version is not None and target.exists():
        raise ExportError(f"{target} exists already")
    with tempfile.TemporaryDirectory(prefix=".rebuild-", dir=bundle.path.parent) as tmp:
        staged = Path(tmp) / bundle.style / target.name
        staged.mkdir(parents=True)
        for item in bundle.path.iterdir():
            if item.is_file() and item.name not in replaced:
                shutil.copyfile(item, staged / item.name)
        if version is not None:
            update_card(
                staged,
                version=target.name,
                created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                derived_from=f"{bundle.style}/{bundle.version}",
            )
        yield staged
        _verify(load_bundle(staged))
        if version is None:
            os.rename(bundle.path, Path(tmp) / "old")
        os.rename(staged, target)


def derive(
    bundle_path: Path,
    corpus: str | None = None,
    int8: bool = True,
    version: str | None = None,
    log=print,
    command: str | None = None,
    prefill: bool = True,
) -> Bundle:
    """Build a bundle's derived graphs again from its own model.onnx, without its training
    run: the prefill graph and (with `int8`) the int8 step graph, in place. With `version`, a
    new version of the style whose one-step graph is built again instead of the prefill graph
    (the same function of the same weights, kept and checked against the new step), in the
    form its cell steps fastest in, and must give the old one's logits (within
    PARITY_TOLERANCE over PARITY_STEPS characters of the validation text); the bundle itself
    stays as it is. The corpus (the card's, or `corpus`) gives the validation text and scores
    the int8 graph. Without `prefill`, no prefill graph is built (a big network's second copy
    of its weights would take the bundle past its 50 MB)."""
    import onnx

    bundle = load_bundle(bundle_path)
    text = trained_on(bundle, corpus)
    val_ids, _ = bundle.vocab.encode(split(text.text)[1])
    unk_penalty = bundle.vocab.unknown_penalty(text.text)
    first = (PREFILL_FILE,) if prefill else ()
    rebuilt = (first if version is None else (MODEL_FILE,)) + ((INT8_FILE,) if int8 else ())
    if not rebuilt:
        raise ExportError("nothing to derive: neither a prefill nor an int8 graph was asked for")
    with _rebuilt(bundle, version, rebuilt) as staged:
        fields: dict[str, Any] = {}
        if version is not None:
            weights = graphs.read_weights(onnx.load(bundle.model_path()))
            step = graphs.step_graph(weights)
            form = graphs.STEP_FORMS[weights.cell]
            check_ops(step, weights.cell, len(weights.layers), form, "export.graphs")
            onnx.save(step, staged / MODEL_FILE)
            old = StepModel(bundle, providers="cpu")
            new = StepModel(load_bundle(staged), providers="cpu")
            real = val_ids[: 4 * PARITY_STEPS].reshape(4, PARITY_STEPS).astype(np.int32)
            worst = step_parity(old, new, real)
            log(f"step parity against {bundle.style}/{bundle.version}: {worst:.2e}")
            if not worst <= PARITY_TOLERANCE:
                raise ExportError(f"step parity {worst:.2e} exceeds {PARITY_TOLERANCE:.0e}")
            made_from = f"the weights of {bundle.style}/{bundle.version}'s {MODEL_FILE}"
            fields["step_graph"] = step_section(weights.cell, made_from) | {
                "command": command,
                "parity": {
                    "max_abs_logit_diff": worst,
                    "steps": PARITY_STEPS,
                    "against": f"{bundle.style}/{bundle.version}/{MODEL_FILE}",
                    "inputs": "4 validation-text sequences",
                    "tolerance": PARITY_TOLERANCE,
                },
            }
        ngram = bundle.load_ngram()
        mixture = None if ngram is None else (ngram, float(bundle.ngram_weight))
        if not prefill:
            prefill_mode = "none"
        elif version is None or bundle.prefill_path is None:
            prefill_mode = "build"
        else:
            prefill_mode = "keep"
        fields |= add_derived_graphs(
            staged,
            bundle.card["metrics"],
            val_ids,
            unk_penalty,
            int8,
            log,
            mixture,
            prefill=prefill_mode,
        )
        update_card(staged, **fields)
    target = bundle.path if version is None else bundle.path.parent / version
    log(f"{target}: {', '.join(rebuilt)} built from {bundle.style}/{bundle.version}'s weights")
    return load_bundle(target)


DEFAULT_GUARD = 8  # characters: no run this long of a copyrighted corpus is ever written


def write_guard(path: Path, train_text: str, vocab: Vocab, k: int) -> dict[str, Any]:
    """Build and save the copy-guard index of a training split; the card's section for it."""
    index = CopyIndex.build(train_text, vocab.chars, vocab.unk_id, k)
    index.save(path)
    return {
        "k": k,
        "file": GUARD_FILE,
        "grams": index.size,
        "bytes": path.stat().st_size,
        "memory_bytes": index.nbytes,
        "build_seconds": round(index.build_seconds, 3),
        "matching": "whitespace, punctuation and control characters ignored on both sides",
    }


def add_guard(
    bundle_path: Path, k: int, corpus: str | None = None, version: str | None = None, log=print
) -> Bundle:
    """Give a bundle a copy guard of k from the corpus it was trained on: in place, or as a
    new version `version` of the same style (the model and everything else copied), which
    is what a change to what a style writes should be."""
    bundle = load_bundle(bundle_path)
    text = trained_on(bundle, corpus)
    with _rebuilt(bundle, version, (GUARD_FILE,)) as staged:
        section = write_guard(staged / GUARD_FILE, split(text.text)[0], bundle.vocab, k)
        update_card(staged, copy_guard=section)
    target = bundle.path if version is None else bundle.path.parent / version
    log(f"{target}: copy guard of {k} ({section['grams']:,} grams, {section['bytes']:,} bytes)")
    return load_bundle(target)


def fit_ngram(train_text: str, vocab: Vocab, order: int) -> NGram:
    """A Kneser-Ney model of `order` over a training split, refused past MAX_NGRAMS."""
    model = NGram.fit(vocab.encode(train_text)[0], len(vocab), order)
    ngrams = sum(level.ngrams for level in model.levels)
    if ngrams > MAX_NGRAMS:
        raise ExportError(
            f"a {order}-gram model of this corpus holds {ngrams:,} n-grams (about "
            f"{ngrams * BYTES_PER_NGRAM / 1e6:.0f} MB in the bot's memory), over the "
            f"{MAX_NGRAMS:,} limit; use a lower --ngram order"
        )
    return model


def add_ngram(
    bundle_path: Path,
    order: int,
    weight: float = DEFAULT_WEIGHT,
    corpus: str | None = None,
    version: str | None = None,
    log=print,
) -> Bundle:
    """Give a bundle (in place, or as the new version `version`) a Kneser-Ney model of `order`
    fitted on its training split, mixed in with `weight` for the network, replacing any it
    had; the card's losses become the mixture's as served (fp32 and int8), the network's
    own kept as val_loss_network."""
    if order < 1 or not 0 < weight < 1:
        raise ExportError("--ngram must be an order >= 1, --ngram-weight in (0, 1)")
    bundle = load_bundle(bundle_path)
    text = trained_on(bundle, corpus)
    train_text, val_text = split(text.text)
    ngram = fit_ngram(train_text, bundle.vocab, order)
    val_ids, _ = bundle.vocab.encode(val_text)
    unk_penalty = bundle.vocab.unknown_penalty(text.text)
    network = dataclasses.replace(
        bundle, card={k: v for k, v in bundle.card.items() if k != "ngram"}
    )
    metrics = dict(bundle.card["metrics"])
    alone = metrics.get("val_loss_network", metrics["val_loss"])

    with _rebuilt(bundle, version, (NGRAM_FILE,)) as staged:
        ngram.save(staged / NGRAM_FILE)
        served = onnx_loss(
            StepModel(network, providers="cpu"), val_ids, unk_penalty, (ngram, weight)
        )
        metrics.update(
            val_loss_network=alone,
            val_loss=served,
            val_bpc=served / math.log(2.0),
            val_loss_onnx=served,
        )
        if (bundle.path / INT8_FILE).exists():
            int8 = StepModel(network, providers="cpu", int8=True)
            metrics["val_loss_int8"] = onnx_loss(int8, val_ids, unk_penalty, (ngram, weight))
        section = {
            "file": NGRAM_FILE,
            "order": order,
            "weight": weight,
            "method": NGRAM_METHOD,
            "val_loss": ngram_loss(ngram, val_ids, bundle.vocab.unk_id, unk_penalty),
        }
        log(
            f"{order}-gram alone {section['val_loss']:.4f}, network alone {alone:.4f}, mixed "
            f"{served:.4f} nats/char (network weight {weight})"
        )
        update_card(staged, ngram=section, metrics=metrics)
    target = bundle.path if version is None else bundle.path.parent / version
    log(f"{target}: a {order}-gram model mixed in at network weight {weight}")
    return load_bundle(target)


def write_words(path: Path, train_text: str) -> Path:
    """The distinct words of a training split, one a line, sorted: the style's lexicon."""
    path.write_text("".join(f"{w}\n" for w in sorted(set(words(train_text)))), encoding="utf-8")
    return path


def add_poem(
    bundle_path: Path, corpus: str | None = None, unit: str | None = None, log=print
) -> Bundle:
    """Give a bundle made before forms its card's `poem` section (and, for an English style,
    its training split's words; the tables `catalog.poem_files` names), from the corpus it was
    trained on, or bring them up to date; nothing else changes, so it needs no training run
    and no new version."""
    bundle = load_bundle(bundle_path)
    text = trained_on(bundle, corpus)
    section = poem_section(bundle.card["corpus"]["name"], text.text, unit)
    train_text = split(text.text)[0]
    if section.get("words"):
        staged = write_words(bundle.path / f".{WORDS_FILE}.tmp", train_text)
        os.replace(staged, bundle.path / WORDS_FILE)
    staged = bundle.path / f".{LINES_FILE}.tmp"
    LineIndex.build(train_text).save(staged)
    os.replace(staged, bundle.path / LINES_FILE)
    for name, content in poem_files(section, train_text).items():
        staged = bundle.path / f".{name}.tmp"
        write_table(staged, content)
        os.replace(staged, bundle.path / name)
    section.update(serving_kept(bundle.card.get("poem", {}), section))  # as it served
    update_card(bundle.path, poem=section)
    log(f"{bundle.path}: poems are one {section['unit']}; forms {', '.join(section['forms'])}")
    return load_bundle(bundle.path)


def tool_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def export_run(
    run: Path,
    models_dir: Path,
    version: str | None = None,
    activate: bool = False,
    int8: bool = False,
    display_name: str | None = None,
    language: str | None = None,
    log=print,
    ngram: int = 0,
    ngram_weight: float = DEFAULT_WEIGHT,
    command: str | None = None,
    unit: str | None = None,
    copy_guard: int | None = None,
    prefill: bool = True,
) -> Bundle:
    """Export a finished run into models_dir/<style>/<version>/ and verify it; returns it.
    Without `prefill`, the bundle has no prompt prefill graph (a prompt is read a step at a
    time): it holds a second copy of the weights, too much for a big network's bundle.

    The card's `poem` section says what one poem of the style is and which forms it offers
    (`unit` overrides the unit its corpus suggests); an English style also ships the words of
    its training split, the only words its poems may use. `copy_guard` k (default: 8 for a
    corpus known to be copyrighted, else none; 0: none) ships an index of the training split
    with which the engine never writes k consecutive characters of it.

    With `ngram` (an order), the bundle also carries a Kneser-Ney model of that order fitted
    on the training split, which the engine mixes in with `ngram_weight` for the network; the
    card's val_loss is then the mixture's, the network's own kept as val_loss_network."""
    if ngram < 0 or not 0 < ngram_weight < 1:
        raise ExportError("--ngram must be an order >= 1 (0: none), --ngram-weight in (0, 1)")
    run, models_dir = Path(run), Path(models_dir)
    info = read_run(run)
    config, metrics, vocab = info["config"], info["metrics"], info["vocab"]
    style = check_name(config["train"]["style"], "style")
    version = check_name(version, "version") if version else next_version(models_dir, style)
    model, model_cfg = load_trained(run, config["model"])
    if model_cfg.vocab_size != len(vocab):
        raise ExportError(
            f"{run}: the model has {model_cfg.vocab_size} outputs, vocab {len(vocab)}"
        )

    corpus = load_corpus(config["train"]["corpus"])
    if corpus.sha256 != config["corpus"]["sha256"]:
        raise ExportError(f"{config['train']['corpus']} changed since training; cannot verify")
    train_text, val_text = split(corpus.text)
    val_ids, _ = vocab.encode(val_text)
    unk_penalty = vocab.unknown_penalty(corpus.text)
    # Scored again here so the card's figure and the ONNX one follow the same protocol.
    val_loss = evaluate_stream(model, model_cfg, val_ids, vocab.unk_id, unk_penalty)
    known = KNOWN_CORPORA.get(corpus.name)
    mixture = None
    if ngram:
        mixture = (fit_ngram(train_text, vocab, ngram), ngram_weight)

    with tempfile.TemporaryDirectory(prefix="poembot-export-") as tmp_name:
        tmp = Path(tmp_name)
        step = write_step(model, model_cfg, tmp / MODEL_FILE)
        log(f"one-step graph: {step['form']} form, {step['made_by']}")
        card: dict[str, Any] = {
            "style": style,
            "display_name": display_name or (known.display_name if known else style),
            "language": language or (known.language if known else "und"),
            "version": version,
            "cell": model_cfg.cell,
            "layers": model_cfg.layers,
            "units": model_cfg.units,
            "embedding": model_cfg.embedding,
            "dropout": model_cfg.dropout,
            "vocab_size": len(vocab),
            "parameters": metrics["parameters"],
            "corpus": {
                "name": corpus.name,
                "source": known.url if known else Path(corpus.source).name,
                "sha256": corpus.sha256,
                "characters": len(corpus.text),
                "cleaning": known.cleaning if known else "newlines normalised",
            },
            "split": {
                "validation": "the last 10% of the cleaned corpus, one contiguous tail",
                "vocabulary": f"characters seen >= {config['train'].get('min_count', 1)} "
                "time(s) in the training split; validation characters outside it cost "
                "-log(P(unknown) / number of corpus characters outside it)",
                "train_characters": config["corpus"]["train_characters"],
                "validation_characters": config["corpus"]["validation_characters"],
            },
            "metrics": {
                "val_loss": val_loss,
                "val_bpc": val_loss / math.log(2.0),
                "val_loss_windowed": metrics["val_loss_windowed"],
                "val_unknown_share": metrics.get("val_unknown_share", 0.0),
                "train_loss": metrics["train_loss"],
                "epochs": metrics["epochs"],
                "best_epoch": metrics["best_epoch"],
                "training_seconds": metrics["training_seconds"],
                "wall_seconds": metrics.get("wall_seconds", metrics["training_seconds"]),
                "chars_per_second": metrics["chars_per_second"],
            },
            "training": {
                "command": config.get("command"),
                "config": config["train"],
                "speed": config.get("speed", {"softmax": "full", "precision": "float32"}),
            },
            "export": {"command": command},
            "opset": graphs.OPSET,
            "step_graph": step,
            "tools": tool_versions(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if "pretraining" in config:
            # A pretraining run's own characters seen are in its metrics.
            card["pretraining"] = {"characters_seen": metrics["characters_seen"]}
            card["pretraining"].update(config["pretraining"])
        card["poem"] = poem_section(corpus.name, corpus.text, unit)
        files = {MODEL_FILE: tmp / MODEL_FILE}
        if copy_guard is None:
            copy_guard = DEFAULT_GUARD if known is not None and known.copyrighted else 0
        if copy_guard:
            card["copy_guard"] = write_guard(tmp / GUARD_FILE, train_text, vocab, copy_guard)
            files[GUARD_FILE] = tmp / GUARD_FILE
            log(f"copy guard: {card['copy_guard']['grams']:,} {copy_guard}-grams")
        if card["poem"].get("words"):
            files[WORDS_FILE] = write_words(tmp / WORDS_FILE, train_text)
        LineIndex.build(train_text).save(tmp / LINES_FILE)
        files[LINES_FILE] = tmp / LINES_FILE
        for name, content in poem_files(card["poem"], train_text).items():
            write_table(tmp / name, content)
            files[name] = tmp / name
        if (run / "loss.png").exists():
            files["loss.png"] = run / "loss.png"
        # Check the converted graph before anything lands in models/: a staging bundle in tmp
        # read by the bot's own loader and engine.
        staged = write_bundle(tmp / "stage", vocab, card, files)
        session = StepModel(load_bundle(staged), providers="cpu")
        rng = np.random.default_rng(0)
        random_ids = rng.integers(0, len(vocab), size=(8, PARITY_STEPS), dtype=np.int32)
        real = val_ids[: 4 * PARITY_STEPS].reshape(4, PARITY_STEPS).astype(np.int32)
        worst = max(
            parity(model, model_cfg, session, random_ids),
            parity(model, model_cfg, session, real),
        )
        card["parity"] = {
            "max_abs_logit_diff": worst,
            "steps": PARITY_STEPS,
            "inputs": "8 random and 4 validation-text sequences",
            "tolerance": PARITY_TOLERANCE,
        }
        log(f"parity: max |logit difference| {worst:.2e} over {PARITY_STEPS} steps")
        if not worst <= PARITY_TOLERANCE:
            raise ExportError(f"parity {worst:.2e} exceeds {PARITY_TOLERANCE:.0e}; not exported")
        # With an n-gram model, what the engine serves is the mixture: its figure is the card's.
        served = onnx_loss(session, val_ids, unk_penalty, mixture)
        card["metrics"]["val_loss_onnx"] = served
        if mixture is not None:
            mixture[0].save(staged / NGRAM_FILE)
            alone = ngram_loss(mixture[0], val_ids, vocab.unk_id, unk_penalty)
            log(
                f"{ngram}-gram alone {alone:.4f}, network alone {val_loss:.4f}, mixed "
                f"{served:.4f} nats/char (network weight {ngram_weight})"
            )
            card["ngram"] = {
                "file": NGRAM_FILE,
                "order": ngram,
                "weight": ngram_weight,
                "method": NGRAM_METHOD,
                "val_loss": alone,
            }
            card["metrics"].update(
                val_loss_network=val_loss, val_loss=served, val_bpc=served / math.log(2.0)
            )
        card.update(
            add_derived_graphs(
                staged,
                card["metrics"],
                val_ids,
                unk_penalty,
                int8,
                log,
                mixture,
                prefill="build" if prefill else "none",
            )
        )
        inherit_serving(models_dir, style, card, log)
        for name in (PREFILL_FILE, INT8_FILE, NGRAM_FILE):
            if (staged / name).exists():
                files[name] = staged / name
        bundle_path = write_bundle(models_dir, vocab, card, files)

    bundle = load_bundle(bundle_path)
    sample = _verify(bundle)
    log(f"wrote {bundle_path} ({bundle.size_bytes / 1e6:.1f} MB); sample:\n{sample}")
    if activate:
        set_active(models_dir, style, version)
        log(f"{style} now serves {version}")
    return bundle


def _verify(bundle: Bundle) -> str:
    """Load the written bundle with the bot's engine and sample from it: proof it serves."""
    import asyncio

    result = asyncio.run(generate_once(bundle.path, Request(length=120, seed=0), "cpu"))
    if len(result.text) != 120 or not math.isfinite(result.seconds):
        raise ExportError(f"{bundle.path}: the engine produced {len(result.text)} of 120 chars")
    return result.text
