"""Pretraining then fine-tuning, and the training speed options (issue 24), on tiny corpora
cut from the shipped Tang excerpt, in seconds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from bot.corpus import split
from bot.engine.bundle import Vocab, load_bundle
from export.__main__ import main as export_main
from training import speed
from training.__main__ import main as train_main
from training.train import windows

from .bundles import FIXTURES
from .test_training_export import TINY

LINES = (FIXTURES / "tang_excerpt.txt").read_text(encoding="utf-8").splitlines(keepends=True)
# Full softmax, float32, no XLA: each test turns on what it is about.
PLAIN = [*TINY, "--sampled-softmax", "0", "--precision", "float32", "--no-jit"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Poems to pretrain on (the excerpt's first half), and the target: the other half's poems
    three times in three orders (the export checks parity on 800 validation characters)."""
    root = tmp_path_factory.mktemp("corpora")
    half = len(LINES) // 2
    other, target = root / "other.txt", root / "target.txt"
    other.write_text("".join(LINES[:half]), encoding="utf-8")
    rng = random.Random(24)
    poems = [line for _ in range(3) for line in rng.sample(LINES[half:], len(LINES) - half)]
    target.write_text("".join(poems), encoding="utf-8")
    return other, target


def train(corpus, out, *extra: str) -> int:
    return train_main(["--corpus", str(corpus), "--style", "tiny", "--out", str(out), *extra])


def test_pretraining_then_fine_tuning_beats_training_from_scratch(corpora, tmp_path):
    other, target = corpora
    pre, tuned, scratch = tmp_path / "pre", tmp_path / "tuned", tmp_path / "scratch"
    args = [*PLAIN, "--pretrain-min-count", "3"]
    assert train(target, pre, "--pretrain", str(other), "--epochs", "4", *args) == 0
    assert train(target, tuned, "--init-from", str(pre), "--epochs", "2", *PLAIN) == 0
    assert train(target, scratch, "--epochs", "2", *PLAIN) == 0

    vocab = Vocab.load(tuned / "vocab.json")
    target_train, _ = split(target.read_text(encoding="utf-8"))
    assert set(target_train) <= set(vocab.chars)
    other_text = other.read_text(encoding="utf-8")
    frequent = {c for c in set(other_text) if other_text.count(c) >= 3}
    rare = set(other_text) - frequent - set(target_train)
    assert frequent <= set(vocab.chars) and rare and not rare & set(vocab.chars)

    def val_loss(run) -> float:
        return json.loads((run / "metrics.json").read_text())["val_loss"]

    assert val_loss(tuned) < val_loss(scratch) - 0.05

    models = tmp_path / "models"
    assert export_main([str(tuned), "--models", str(models)]) == 0
    card = load_bundle(models / "tiny" / "v1").card
    assert card["corpus"]["name"] == "target"
    (pretrained_on,) = card["pretraining"]["corpora"]
    assert pretrained_on["name"] == "other" and len(pretrained_on["sha256"]) == 64
    pre_state = json.loads((pre / "state.json").read_text())
    assert card["pretraining"]["characters_seen"] == pre_state["train_chars_per_epoch"] * 4


def test_a_validation_line_in_the_pretraining_text_is_refused_by_name(corpora, tmp_path, capsys):
    other, target = corpora
    _, val_tail = split(target.read_text(encoding="utf-8"))
    line = next(line for line in val_tail.splitlines()[1:] if len(line) >= 16)
    leaky = tmp_path / "leaky.txt"
    leaky.write_text(other.read_text(encoding="utf-8") + f"前言{line}後記\n", encoding="utf-8")
    assert train(target, tmp_path / "run", "--pretrain", str(leaky), *PLAIN) == 2
    err = capsys.readouterr().err
    assert line in err and "leaky" in err
    assert not (tmp_path / "run" / "best.weights.h5").exists()
    # Asked to, the run leaves the line holding it out and says so in its card.
    args = ["--pretrain", str(leaky), "--drop-leaks", "--epochs", "1", *PLAIN]
    assert train(target, tmp_path / "dropped", *args) == 0
    section = json.loads((tmp_path / "dropped" / "config.json").read_text())["pretraining"]
    (entry,) = section["corpora"]
    assert entry["lines_left_out_for_leaks"] == 1
    assert entry["characters"] == len(other.read_text(encoding="utf-8"))


def test_fine_tuning_another_corpus_names_everything_its_start_read(corpora, tmp_path, capsys):
    """A run started from a run pretrained for another corpus keeps its own vocabulary, its
    card names every corpus the start read (the pretraining ones and the other target), and a
    validation line of its own found in one of them is refused by name."""
    other, target = corpora
    pre = tmp_path / "pre"
    assert train(target, pre, "--pretrain", str(other), "--epochs", "1", *PLAIN) == 0
    # New text of the same characters: the target's poems, each written backwards.
    backwards = [line.rstrip("\n")[::-1] + "\n" for line in LINES[len(LINES) // 2 :]]
    third = tmp_path / "third.txt"
    third.write_text("".join(backwards * 3), encoding="utf-8")
    tuned = tmp_path / "tuned"
    assert train(third, tuned, "--init-from", str(pre), "--epochs", "1", *PLAIN) == 0
    third_train, _ = split(third.read_text(encoding="utf-8"))
    assert set(Vocab.load(tuned / "vocab.json").chars) == set(
        Vocab.build(third_train, min_count=1).chars
    )
    section = json.loads((tuned / "config.json").read_text())["pretraining"]
    assert [c["name"] for c in section["corpora"]] == ["other", "target"]
    assert section["for_this_corpus"] is False and section["with_target_training_split"] is False

    line = next(line for line in LINES[: len(LINES) // 2] if len(line.strip()) >= 16).strip()
    leaky = tmp_path / "leaky.txt"
    leaky.write_text("".join(backwards * 3) + line + "\n", encoding="utf-8")
    capsys.readouterr()
    assert train(leaky, tmp_path / "refused", "--init-from", str(pre), *PLAIN) == 2
    err = capsys.readouterr().err
    assert line in err and "other" in err


def test_epoch_chars_makes_shorter_epochs_each_with_a_checkpoint(corpora, tmp_path):
    other, target = corpora
    run = tmp_path / "run"
    # 16 x 32 characters a step: epochs of 2 steps over a text of ~20 steps.
    args = ["--pretrain", str(other), "--epoch-chars", "1024", *PLAIN]
    assert train(target, run, "--epochs", "2", *args) == 0
    assert train(target, run, "--epochs", "3", "--resume", *args) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["train_chars_per_epoch"] == 1024
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert len((run / "progress.jsonl").read_text().splitlines()) == 3


def test_the_windows_are_the_text_shifted_by_one_without_the_autotuner():
    """Training and validation windows read the text as it is (each target the next
    character of its input), and tf.data's autotuner is off: its thread made every pass
    over the data (a fit, a validation, an epoch) wait for its next wake, 10.24 s for a pass
    of 5.3 s (training/train.py's `untuned`)."""
    ids = np.arange(1000, dtype=np.int32)
    for seed in (1, None):
        data = windows(ids, 8, 4, seed=seed)
        assert data.options().autotune.enabled is False
        batches = list(data.as_numpy_iterator())
        assert batches
        for inputs, targets in batches:
            assert inputs.shape == targets.shape and inputs.shape[1] == 8
            assert (targets == inputs + 1).all()
            assert (np.diff(inputs, axis=1) == 1).all()
    first_inputs = next(windows(ids, 8, 4, seed=None).as_numpy_iterator())[0]
    assert (first_inputs[0] == np.arange(8)).all(), "validation starts at the text's start"


OPTIONS = {
    "sampled softmax": (["--sampled-softmax", "64"], "sampled in training (64 of"),
    "bfloat16": (["--precision", "bfloat16"], "bfloat16 mixed precision"),
    "XLA, with the sampled softmax": (["--jit", "--sampled-softmax", "64"], "sampled in"),
}


@pytest.mark.parametrize("option", OPTIONS)
def test_each_speed_option_trains_and_exports_the_full_softmax_step(corpora, tmp_path, option):
    flags, expected = OPTIONS[option]
    if option == "bfloat16" and speed.bf16_hardware() is None:
        pytest.skip("no native bfloat16 here (the refusal is tested below)")
    _, target = corpora
    run = tmp_path / "run"
    assert train(target, run, "--epochs", "2", *PLAIN, *flags) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["history"][-1]["val_loss"] < state["history"][0]["val_loss"]
    used = json.loads((run / "config.json").read_text())["speed"]
    assert used["jit_compile"] == option.startswith("XLA")
    assert expected in used["softmax"] + used["precision"]
    models = tmp_path / "models"
    assert export_main([str(run), "--models", str(models)]) == 0
    card = load_bundle(models / "tiny" / "v1").card
    assert card["parity"]["max_abs_logit_diff"] <= 1e-4
    assert card["training"]["speed"] == used
    metrics = json.loads((run / "metrics.json").read_text())
    assert card["metrics"]["val_loss"] == pytest.approx(metrics["val_loss"], abs=1e-4)


def test_bfloat16_without_native_support_is_refused_and_auto_falls_back(
    corpora, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr(speed, "bf16_gpu", lambda: None)
    _, target = corpora
    assert train(target, tmp_path / "asked", "--epochs", "1", *TINY, "--precision", "bfloat16") == 2
    assert "no native bfloat16" in capsys.readouterr().err
    assert train(target, tmp_path / "auto", "--epochs", "1", *TINY, "--precision", "auto") == 0
    used = json.loads((tmp_path / "auto" / "config.json").read_text())["speed"]
    assert used["precision"].startswith("float32: no native bfloat16")
    assert "float32: no native bfloat16" in capsys.readouterr().out


def test_an_untrained_model_starts_at_the_unigram_not_at_uniform():
    """Before its first step a new run predicts each character with its training frequency:
    the sampled softmax otherwise left thousands of rarely drawn characters at the uniform
    start, and validation spent its mass on them."""
    import numpy as np
    import tensorflow as tf

    from training.model import ModelConfig, build_model, start_at_the_unigram

    rng = np.random.default_rng(0)
    vocab = 400
    weights = 1.0 / np.arange(1, vocab + 1)  # Zipf, as characters are
    text = rng.choice(vocab, size=(8, 64), p=weights / weights.sum())
    counts = np.bincount(text.ravel(), minlength=vocab)
    seen = counts[counts > 0] / counts.sum()
    entropy = float(-(seen * np.log(seen)).sum())

    def loss(model) -> float:
        logits = model(tf.constant(text[:, :-1]), training=False)
        per_char = tf.keras.losses.sparse_categorical_crossentropy(
            text[:, 1:], logits, from_logits=True
        )
        return float(tf.reduce_mean(per_char))

    model = build_model(ModelConfig(vocab_size=vocab, layers=1, units=16, embedding=8))
    uniform = loss(model)
    start_at_the_unigram(model, counts)
    started = loss(model)
    assert abs(uniform - np.log(vocab)) < 0.1  # the Keras default starts at uniform
    # Nearer the unigram's loss than uniform's (the random kernel adds its own noise).
    assert started < (entropy + uniform) / 2


@pytest.mark.parametrize(
    ("hardware", "vendor", "policy"),
    [
        ("avx512_bf16", "GenuineIntel", "float32"),  # measured 0.48x float32 there
        ("avx512_bf16", "AuthenticAMD", "mixed_bfloat16"),  # measured 1.35x
        ("amx_bf16", "GenuineIntel", "mixed_bfloat16"),
        (None, "GenuineIntel", "float32"),
    ],
)
def test_auto_precision_takes_bfloat16_only_where_it_was_measured_faster(
    monkeypatch, hardware, vendor, policy
):
    monkeypatch.setattr(speed, "bf16_hardware", lambda: hardware)
    monkeypatch.setattr(speed, "cpu_vendor", lambda cpuinfo=None: vendor)
    chosen, why = speed.resolve_precision("auto")
    assert chosen == policy and why
    if hardware:  # asked for by name, native bfloat16 is used wherever the CPU has it
        assert speed.resolve_precision("bfloat16")[0] == "mixed_bfloat16"
