"""Bundles for tests: random-weight one-step LSTM/GRU graphs built with onnx.helper.

They follow the bundle contract exactly (ids + states in, logits + states out, ONNX LSTM/GRU
operators), so the engine and the bot can be tested in milliseconds without TensorFlow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

from bot.corpus import split
from bot.engine.bundle import INT8_FILE, MODEL_FILE, NGRAM_FILE, PREFILL_FILE, Vocab, write_bundle
from bot.engine.copyguard import GUARD_FILE, CopyIndex
from bot.engine.ngram import NGram
from bot.forms import catalog
from bot.forms.lines import LINES_FILE, LineIndex
from export import graphs

FIXTURES = Path(__file__).parent / "fixtures"
# 207 詞 of the 20 commonest tunes, each tune's spread over the file so that its training
# split (the first 90%) holds nine: lines of the 全宋詞 in chinese-poetry/chinese-poetry
# (`宋词/ci.song.*.json`, MIT; shared/corpora/song_ci.txt), in its simplified script.
SONG_CI = FIXTURES / "song_ci_excerpt.txt"


def step_graph(vocab_size: int, *args, **kwargs) -> onnx.ModelProto:
    """The bundle contract's one-step graph with random weights (`graphs.random_weights`'s
    arguments)."""
    return graphs.step_graph(graphs.random_weights(vocab_size, *args, **kwargs))


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
    prefill: bool = True,
    int8: bool = False,
    ngram: int = 0,
    ngram_weight: float = 0.5,
    poem: dict | None = None,
    copy_guard: int = 0,
    **graph_args,
) -> Path:
    """A complete bundle at models_dir/style/version with random weights, with the prompt
    prefill graph unless `prefill=False`, the int8 step graph if `int8`, and with `ngram` an
    n-gram model of that order fitted on `text`, mixed in at `ngram_weight` for the network."""
    if text is None:
        text = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
    vocab = Vocab.build(text)
    scratch = Path(models_dir) / f".{style}-{version}"
    scratch.mkdir(parents=True, exist_ok=True)
    weights = graphs.random_weights(len(vocab), cell, layers, units, seed=seed, **graph_args)
    files = {MODEL_FILE: graphs.step_graph(weights)}
    if prefill:
        files[PREFILL_FILE] = graphs.prefill_graph(weights)
    if int8:
        files[INT8_FILE] = graphs.int8_step_graph(weights)
    for name, graph in files.items():
        onnx.save(graph, scratch / name)
    paths = {name: scratch / name for name in files}
    if ngram:
        NGram.fit(vocab.encode(text)[0], len(vocab), ngram).save(scratch / NGRAM_FILE)
        paths[NGRAM_FILE] = scratch / NGRAM_FILE
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
    if int8:
        card["int8"] = {"method": "per-row activation scales (tests)", "file": INT8_FILE}
    if ngram:
        card["ngram"] = {"file": NGRAM_FILE, "order": ngram, "weight": ngram_weight}
    if poem is not None:  # the card's poem section: what a poem is, which forms it offers
        card["poem"] = poem
    if copy_guard:  # no copy_guard consecutive characters of `text` are ever written
        CopyIndex.build(text, vocab.chars, vocab.unk_id, copy_guard).save(scratch / GUARD_FILE)
        paths[GUARD_FILE] = scratch / GUARD_FILE
        card["copy_guard"] = {"k": copy_guard, "file": GUARD_FILE}
    try:
        return write_bundle(models_dir, vocab, card, paths)
    finally:
        shutil.rmtree(scratch)


def make_songci_bundle(models_dir: Path, style: str = "songci", version: str = "v1") -> Path:
    """A random-weight 宋詞 bundle of the SONG_CI excerpt, with what export gives such a
    style: the card's poem section (its tunes), the tune table and the training lines."""
    text = SONG_CI.read_text(encoding="utf-8")
    section = catalog.poem_section("song_ci", text)
    path = make_bundle(models_dir, style, version, text=text, seed=7, poem=section, scale=2.0)
    train = split(text)[0]
    for name, content in catalog.poem_files(section, train).items():
        catalog.write_table(path / name, content)
    LineIndex.build(train).save(path / LINES_FILE)
    return path
