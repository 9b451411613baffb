"""The training loop: corpus -> vocabulary -> tf.data windows -> Keras fit -> a run folder.

A run folder holds everything export needs and everything a resumed run needs:
`config.json`, `vocab.json`, `last.keras` (model and optimizer, written every epoch),
`best.weights.h5`, `state.json` (history and early-stopping state), `progress.jsonl` (one
line per epoch, read by the bot's retrain jobs), `samples.txt`, `loss.png` and, once
finished, `metrics.json`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bot.corpus import Corpus, load_corpus, split
from bot.engine.bundle import Vocab, check_name
from training.model import (
    ModelConfig,
    NovelCharLoss,
    build_model,
    count_parameters,
    evaluate_stream,
    sample_text,
    start_at_the_unigram,
)
from training.pretrain import (
    check_no_leak,
    describe,
    drop_leaks,
    pretraining_text,
    pretraining_vocab,
)
from training.speed import resolve_precision, sampled_size
from training.strategy import strategy

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TrainConfig:
    corpus: str
    style: str
    out: str
    epochs: int = 30
    batch_size: int = 64
    seq_len: int = 128
    lr: float = 2e-3
    min_lr_fraction: float = 0.05
    clipnorm: float = 5.0
    patience: int = 3
    seed: int = 1234
    max_minutes: float | None = None
    min_count: int = 1
    unk_rate: float | None = None  # None: estimated from the training split
    init_from: str | None = None  # a finished run whose weights start this one
    sample_chars: int = 200
    select_by: str = "windowed"  # or "full": best epoch by full-context validation loss
    strategy: str = "default"  # training/strategy.py: mirrored (local GPUs), multi-worker
    # training/speed.py; the defaults are what benchmarks/train_throughput.py found fastest.
    sampled_softmax: int = 1024  # candidates a training step; 0: the full softmax
    precision: str = "auto"  # auto, float32, bfloat16
    jit_compile: bool = False  # XLA, on one device (slower here: the benchmark)
    pretrain: tuple[str, ...] = ()  # training/pretrain.py: other corpora to pretrain on
    pretrain_min_count: int = 50  # their characters rarer than this read as unknown
    drop_leaks: bool = False  # leave out their lines holding a validation line, not refuse
    epoch_chars: int | None = None  # an epoch of this many characters (else one pass)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int | None) -> tf.data.Dataset:
    """(input, target) windows of `seq_len` characters.

    With a seed (training) the windows are shuffled every epoch and each is shifted by a random
    offset below `seq_len`, so no pair of neighbouring characters is always split apart. Without
    one (validation) they are the fixed, non-overlapping windows in order.
    """
    data = tf.constant(ids, dtype=tf.int32)
    count = (len(ids) - 1) // seq_len - (1 if seed is not None else 0)
    if count < 1:
        raise ValueError(f"{len(ids)} characters are fewer than one {seq_len}-character window")
    ds = tf.data.Dataset.range(count)
    if seed is not None:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)

        def start(i: tf.Tensor) -> tf.Tensor:
            jitter = tf.random.uniform([], 0, seq_len, dtype=tf.int64)
            return i * seq_len + jitter
    else:

        def start(i: tf.Tensor) -> tf.Tensor:
            return i * seq_len

    def window(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s = start(i)
        return data[s : s + seq_len], data[s + 1 : s + seq_len + 1]

    ds = ds.map(window, num_parallel_calls=tf.data.AUTOTUNE)
    # A partial final batch would retrace the graph; training drops it, validation keeps it.
    ds = ds.batch(batch_size, drop_remainder=seed is not None).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(untuned())


def untuned() -> tf.data.Options:
    """tf.data options without the autotuner. Its thread wakes after 10, 20, 40 ms ... (the
    period doubles), and an iterator's teardown waits for the next wake: a pass over the data
    that took 5.3 s ended at 10.24 s, one of 11.3 s at 20.48 s (a Xeon with AMX, the tang/v3
    shape), once per fit, validation pass and epoch. These windows are slices of one array,
    fed at 2M characters/s untuned, some 150 times what training takes: nothing to tune.
    (benchmarks/results/train_options_amx.md)"""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def float32_model(model_cfg: ModelConfig) -> keras.Model:
    """The model in float32 whatever the global precision policy: what scores the card's
    figures (weights are float32 under mixed precision too, so they load or copy as they are)."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return build_model(model_cfg)
    finally:
        keras.mixed_precision.set_global_policy(policy)


class RunLog(keras.callbacks.Callback):
    """Per epoch: best weights, a resumable checkpoint, history, progress line, a sample,
    early stopping on validation loss and the wall-clock budget."""

    def __init__(
        self,
        run: Path,
        cfg: TrainConfig,
        model_cfg: ModelConfig,
        vocab: Vocab,
        state: dict[str, Any],
        deadline: float | None,
        val_ids: np.ndarray | None = None,
        unk_penalty: float = 0.0,
    ) -> None:
        super().__init__()
        self.run, self.cfg, self.model_cfg, self.vocab = run, cfg, model_cfg, vocab
        self.state = state
        self.deadline = deadline
        self.val_ids, self.unk_penalty = val_ids, unk_penalty
        self.epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = time.monotonic() - self.epoch_started
        st = self.state
        st["training_seconds"] += seconds
        loss, val = float(logs["loss"]), float(logs["val_loss"])
        entry = {
            "epoch": epoch + 1,
            "loss": loss,
            "val_loss": val,
            "val_bpc": val / LN2,
            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "seconds": seconds,
            "chars_per_second": st["train_chars_per_epoch"] / seconds,
        }
        if self.cfg.select_by == "full" and self.val_ids is not None:
            # The figure the card reports: every character predicted from all text before it.
            # In float32 whatever the training precision, as the card's figure is.
            scorer = float32_model(self.model_cfg)
            scorer.set_weights(self.model.get_weights())
            val = evaluate_stream(
                scorer, self.model_cfg, self.val_ids, self.vocab.unk_id, self.unk_penalty
            )
            entry["val_loss_full"] = val
            print(f"epoch {epoch + 1}: full-context validation loss {val:.4f}", flush=True)
        st["history"].append(entry)
        st["epoch"] = epoch + 1
        if val < st["best_val_loss"]:
            st["best_val_loss"], st["best_epoch"], st["bad_epochs"] = val, epoch + 1, 0
            self.model.save_weights(self.run / "best.weights.h5")
        else:
            st["bad_epochs"] += 1
        start = np.array([self.vocab.start_id], dtype=np.int32)
        sample = self.vocab.decode(
            sample_text(self.model, self.model_cfg, start, self.cfg.sample_chars, seed=epoch)
        )
        with open(self.run / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- epoch {epoch + 1} val_loss {val:.4f}\n{sample}\n")
        print(f"\nepoch {epoch + 1} sample:\n{sample}\n", flush=True)
        reason = None
        if st["bad_epochs"] >= self.cfg.patience:
            reason = f"early stop: no better validation loss in {self.cfg.patience} epochs"
        elif self.deadline is not None and time.time() > self.deadline:
            reason = f"stopped at the --max-minutes budget ({self.cfg.max_minutes} min)"
        st["stopped"] = reason
        # Wall time with this callback's own work (scoring, sample, checkpoint): what the
        # run cost; training_seconds above is the fit alone, the basis of chars/s.
        st["wall_seconds"] = st.get("wall_seconds", 0.0) + time.monotonic() - self.epoch_started
        self.model.save(self.run / "last.keras")
        write_json(self.run / "state.json", st)
        with open(self.run / "progress.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        plot_losses(st["history"], self.run / "loss.png", self.cfg.style)
        if reason:
            print(reason, flush=True)
            self.model.stop_training = True


def plot_losses(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title(f"{title}: cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def novelty_rate(train_text: str, vocab: Vocab) -> float:
    """How often new text brings a character the vocabulary lacks, measured inside the
    training split as validation will meet it: its last tenth against the rest (plus the
    characters min_count leaves out, which read as unknown anyway)."""
    head, tail = split(train_text)
    seen = set(head)
    novel = sum(
        1 for c in tail if c not in seen or vocab.index.get(c, vocab.unk_id) == vocab.unk_id
    )
    return novel / max(len(tail), 1)


@functools.cache
def _converters() -> tuple:
    try:
        import opencc
    except ImportError:
        return ()
    return opencc.OpenCC("s2t"), opencc.OpenCC("t2s")


def _script_variants(char: str) -> list[str]:
    """The character itself, then its traditional and simplified forms (when OpenCC is
    installed), so a Traditional-script run can start a Simplified-script one."""
    return [char, *(convert.convert(char) for convert in _converters())]


def warm_start(model: keras.Model, model_cfg: ModelConfig, vocab: Vocab, source: Path) -> str:
    """Copy a finished run's weights into `model`: the recurrent layers whole, and the
    embedding row and output column of every character both vocabularies share."""
    src_json = json.loads((source / "config.json").read_text(encoding="utf-8"))["model"]
    src_cfg = ModelConfig(**src_json)
    for key in ("cell", "layers", "units", "embedding"):
        if getattr(src_cfg, key) != getattr(model_cfg, key):
            raise SystemExit(
                f"--init-from {source}: its {key} is {getattr(src_cfg, key)}, this run's is "
                f"{getattr(model_cfg, key)}; they must match"
            )
    src_vocab = Vocab.load(source / "vocab.json")
    src = build_model(src_cfg)
    src.load_weights(source / "best.weights.h5")
    for i in range(model_cfg.layers):
        model.get_layer(f"rnn_{i}").set_weights(src.get_layer(f"rnn_{i}").get_weights())
    src_emb = src.get_layer("embedding").get_weights()[0]
    src_w, src_b = src.get_layer("logits").get_weights()
    emb = model.get_layer("embedding").get_weights()[0]
    w, b = model.get_layer("logits").get_weights()
    mapped = 0
    for i, char in enumerate(vocab.chars):
        j = next((src_vocab.index[v] for v in _script_variants(char) if v in src_vocab.index), None)
        if j is None:
            continue
        emb[i], w[:, i], b[i] = src_emb[j], src_w[:, j], src_b[j]
        mapped += 1
    model.get_layer("embedding").set_weights([emb])
    model.get_layer("logits").set_weights([w, b])
    return f"warm start from {source}: {mapped} of {len(vocab)} characters carried over"


def init_run_pretraining(source: Path, corpus: Corpus) -> dict[str, Any] | None:
    """The "pretraining" section a fine-tuning run inherits from `source` when `source` was
    pretrained (else None): the corpora, and the characters it trained on. `for_this_corpus`
    says whether it was pretrained for this same corpus (its vocabulary is then this run's);
    for another, its own corpus joins the corpora (its weights carry over character by
    character, `warm_start`)."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if "pretraining" not in config:
        return None
    state = json.loads((source / "state.json").read_text(encoding="utf-8"))
    section = {
        **config["pretraining"],
        "run": str(source),
        "epochs": state["epoch"],
        "characters_seen": state["train_chars_per_epoch"] * state["epoch"],
        "val_loss_windowed": state["best_val_loss"],
        "for_this_corpus": config["corpus"]["sha256"] == corpus.sha256,
    }
    if not section["for_this_corpus"]:
        its = config["corpus"]
        section["corpora"] = [
            *section["corpora"],
            {k: its[k] for k in ("name", "source", "sha256", "characters") if k in its},
        ]
        section["with_target_training_split"] = False
    return section


def check_inherited_leaks(val_text: str, pretraining: dict[str, Any]) -> None:
    """The no-leak check for the corpora a run pretrained for another corpus read: each one
    still at its recorded path is checked (LeakError naming the line); one that is gone is
    said, not silently passed."""
    found = []
    for entry in pretraining["corpora"]:
        if Path(entry["source"]).is_file():
            found.append(load_corpus(entry["source"]))
        else:
            print(f"not checked for leaks (not at {entry['source']}): {entry['name']}", flush=True)
    check_no_leak(val_text, found)


def train(cfg: TrainConfig, model_cfg_args: dict[str, Any], resume: bool = False) -> dict:
    """Train (or resume) a run; returns the final metrics also written to metrics.json."""
    policy, precision = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _train(cfg, model_cfg_args, resume, precision)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _train(cfg: TrainConfig, model_cfg_args: dict[str, Any], resume: bool, precision: str) -> dict:
    check_name(cfg.style, "style")
    if cfg.pretrain and cfg.init_from:
        raise ValueError(
            "--pretrain and --init-from together: pretrain in one run, then fine-tune with "
            "--init-from that run"
        )
    if cfg.select_by not in ("windowed", "full"):
        raise ValueError(f"select_by must be 'windowed' or 'full', not {cfg.select_by!r}")
    run = Path(cfg.out)
    if run.exists() and any(run.iterdir()) and not resume:
        raise SystemExit(f"{run} is not empty: pass --resume to continue it, or choose --out")
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)

    corpus: Corpus = load_corpus(cfg.corpus)
    train_text, val_text = split(corpus.text)
    others = [load_corpus(name) for name in cfg.pretrain]
    dropped = None
    if cfg.drop_leaks:
        others, dropped = drop_leaks(val_text, others)
    check_no_leak(val_text, others)
    pretraining = describe(others, cfg.pretrain_min_count, dropped) if others else None
    init_vocab = None
    if cfg.init_from:
        pretraining = init_run_pretraining(Path(cfg.init_from), corpus)
        if pretraining and pretraining["for_this_corpus"]:
            init_vocab = Vocab.load(Path(cfg.init_from) / "vocab.json")  # every weight carries
        elif pretraining:
            check_inherited_leaks(val_text, pretraining)
    if resume and (run / "vocab.json").exists():
        vocab = Vocab.load(run / "vocab.json")  # never rebuilt: ids must match the checkpoint
    else:
        # From the training split only: validation characters it never saw read as unknown,
        # as they would for a model in service.
        vocab = init_vocab or Vocab.build(train_text, min_count=cfg.min_count)
        if others:
            vocab = pretraining_vocab(vocab, others, cfg.pretrain_min_count)
        vocab.save(run / "vocab.json")
    model_cfg = ModelConfig(vocab_size=len(vocab), **model_cfg_args)
    unk_rate = cfg.unk_rate if cfg.unk_rate is not None else novelty_rate(train_text, vocab)
    fit_text = pretraining_text(train_text, others) if others else train_text
    train_ids, _ = vocab.encode(fit_text)
    counts = np.bincount(train_ids, minlength=len(vocab))  # the unigram start, the sampler
    val_ids, _ = vocab.encode(val_text)
    unk_penalty = vocab.unknown_penalty(corpus.text)

    steps = ((len(train_ids) - 1) // cfg.seq_len - 1) // cfg.batch_size
    if steps < 1:
        raise SystemExit(
            f"the training text ({len(train_ids):,} chars) is smaller than one batch of "
            f"{cfg.batch_size} x {cfg.seq_len} characters: lower --batch-size or --seq-len"
        )
    if cfg.epoch_chars:  # shorter "epochs" on a long text: a checkpoint every epoch_chars
        steps = max(1, cfg.epoch_chars // (cfg.batch_size * cfg.seq_len))
    distribution = strategy(cfg.strategy)
    one_device = distribution.num_replicas_in_sync == 1
    if not one_device:
        print(f"training on {distribution.num_replicas_in_sync} replicas", flush=True)
    sampled = sampled_size(cfg.sampled_softmax, len(vocab))
    jit = cfg.jit_compile and one_device
    speed = {
        "softmax": (
            f"sampled in training ({sampled} of {len(vocab)} characters a step), full in validation"
            if sampled
            else "full"
        ),
        "precision": precision,
        "jit_compile": jit,
    }
    sources = [corpus.sha256, *(other.sha256 for other in others)]
    state_path = run / "state.json"
    if resume and state_path.exists() and (run / "last.keras").exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("corpus_sha256") != corpus.sha256 or state.get("sources", sources) != sources:
            raise SystemExit(f"{run} was trained on other corpora; refusing to resume")
        with distribution.scope():
            model = keras.models.load_model(run / "last.keras")
        model.jit_compile = jit
        print(f"resuming {run} after epoch {state['epoch']}", flush=True)
    else:
        state = {
            "epoch": 0,
            "best_val_loss": float("inf"),
            "best_epoch": 0,
            "bad_epochs": 0,
            "training_seconds": 0.0,
            "history": [],
            "corpus_sha256": corpus.sha256,
            "sources": sources,
        }
        with distribution.scope():
            model = build_model(model_cfg)
        if cfg.init_from:
            print(warm_start(model, model_cfg, vocab, Path(cfg.init_from)), flush=True)
        else:
            start_at_the_unigram(model, counts)
        # Cosine decay per step over the planned epochs, down to lr * min_lr_fraction. It is a
        # function of the optimizer's step count, which the checkpoint keeps, so a resumed run
        # continues the same schedule.
        schedule = keras.optimizers.schedules.CosineDecay(
            cfg.lr, decay_steps=cfg.epochs * steps, alpha=cfg.min_lr_fraction
        )
        with distribution.scope():
            model.compile(
                optimizer=keras.optimizers.Adam(schedule, global_clipnorm=cfg.clipnorm),
                loss=NovelCharLoss(vocab.unk_id, unk_rate),
                jit_compile=jit,
            )
    if sampled:
        model.sample_softmax(sampled, counts, vocab.unk_id, unk_rate, cfg.seed)

    state["train_chars_per_epoch"] = steps * cfg.batch_size * cfg.seq_len
    write_json(
        run / "config.json",
        {
            "train": asdict(cfg),
            "model": model_cfg.to_json(),
            "command": " ".join(["python -m training", *sys.argv[1:]]),
            "corpus": {
                "name": corpus.name,
                "source": corpus.source,
                "sha256": corpus.sha256,
                "characters": len(corpus.text),
                "train_characters": len(train_text),
                "validation_characters": len(val_text),
            },
            "speed": speed,
            **({"pretraining": pretraining} if pretraining else {}),
        },
    )
    print(f"speed: {json.dumps(speed)}", flush=True)
    model.summary(print_fn=lambda line, **_: print(line, flush=True))
    print(
        f"corpus {corpus.name}: {len(corpus.text):,} chars, vocab {len(vocab):,}, "
        f"train {len(train_ids):,} / validation {len(val_ids):,}, unknown rate {unk_rate:.4f}",
        flush=True,
    )
    if others:
        names = ", ".join(f"{o.name} ({len(o.text):,} chars)" for o in others)
        print(f"pretraining on {names} and the training split of {corpus.name}", flush=True)

    already_stopped = state.get("stopped") and "early stop" in str(state.get("stopped"))
    if state["epoch"] < cfg.epochs and not already_stopped:
        deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes else None
        data = windows(train_ids, cfg.seq_len, cfg.batch_size, seed=cfg.seed + state["epoch"])
        model.fit(
            data.repeat() if cfg.epoch_chars else data,
            steps_per_epoch=steps if cfg.epoch_chars else None,
            validation_data=windows(val_ids, cfg.seq_len, cfg.batch_size, seed=None),
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            callbacks=[RunLog(run, cfg, model_cfg, vocab, state, deadline, val_ids, unk_penalty)],
            verbose=1 if sys.stdout.isatty() else 2,
        )
    if not (run / "best.weights.h5").exists():
        raise SystemExit("no epoch finished; nothing to report")

    # Scored in float32 whatever the training precision, as the export will score it.
    model = float32_model(model_cfg)
    model.load_weights(run / "best.weights.h5")
    val_stream = evaluate_stream(model, model_cfg, val_ids, vocab.unk_id, unk_penalty)
    last = state["history"][-1]
    metrics = {
        "val_loss": val_stream,
        "val_bpc": val_stream / LN2,
        "val_loss_windowed": next(
            h["val_loss"] for h in state["history"] if h["epoch"] == state["best_epoch"]
        ),
        "val_unknown_share": float((val_ids == vocab.unk_id).mean()),
        "unk_rate": unk_rate,
        "unknown_penalty": unk_penalty,
        "train_loss": next(
            h["loss"] for h in state["history"] if h["epoch"] == state["best_epoch"]
        ),
        "best_epoch": state["best_epoch"],
        "epochs": state["epoch"],
        "training_seconds": round(state["training_seconds"], 1),
        "wall_seconds": round(state.get("wall_seconds", state["training_seconds"]), 1),
        "chars_per_second": round(
            state["train_chars_per_epoch"] * state["epoch"] / max(state["training_seconds"], 1e-9)
        ),
        "characters_seen": state["train_chars_per_epoch"] * state["epoch"],
        "parameters": count_parameters(model),
        "stopped": state.get("stopped") or "finished the planned epochs",
        "final_lr": last["lr"],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
    write_json(run / "metrics.json", metrics)
    print(
        f"validation loss {val_stream:.4f} nats/char ({val_stream / LN2:.4f} bits/char) "
        f"with full context; best epoch {state['best_epoch']}",
        flush=True,
    )
    return metrics
