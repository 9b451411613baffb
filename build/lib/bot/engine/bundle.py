"""The bundle format and the vocabulary: the one place that reads and writes them.

A bundle is `models/<style>/<version>/` holding `model.onnx` (one step of the network),
`vocab.json`, `card.json` and optionally `model.int8.onnx` (the step with int8 weights),
`prefill.onnx` (many prompt characters per run) and `ngram.npz` (a Kneser-Ney n-gram model
the engine mixes with the network's distribution, with its weight in the card);
`models/<style>/ACTIVE` names the live version. Training, export and the bot all go through
this module. numpy only: no TensorFlow, no onnxruntime.

The card's `cell` is one of CELLS. `lstm`, `peephole` (an LSTM whose input, forget and output
gates also read the cell state through diagonal weights) and `coupled` (an LSTM whose input
gate is 1 - its forget gate) carry h then c per layer; `gru` carries h. In model.onnx an
lstm/gru layer is one ONNX LSTM/GRU operator, a peephole layer one ONNX LSTM with its `P`
input, and a coupled layer plain ONNX arithmetic (MatMul, Sigmoid, Tanh, ...; never Loop or
Scan). The engine needs nothing of this: it reads the state names and runs the graph.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.engine.copyguard import GUARD_FILE, CopyIndex
from bot.engine.ngram import NGram

MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
PREFILL_FILE = "prefill.onnx"
NGRAM_FILE = "ngram.npz"
VOCAB_FILE = "vocab.json"
CARD_FILE = "card.json"
ACTIVE_FILE = "ACTIVE"
VOCAB_FORMAT = 1
UNKNOWN = "\ufffd"
CELLS = ("lstm", "gru", "peephole", "coupled")

# Style and version names become folder names: lowercase ASCII only, so no name can climb out
# of the models folder ('..', '/', NUL) or hide behind a Unicode look-alike.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

CARD_REQUIRED = (
    "style",
    "display_name",
    "language",
    "version",
    "cell",
    "layers",
    "units",
    "embedding",
    "vocab_size",
    "corpus",
    "split",
    "metrics",
)


class BundleError(Exception):
    """A bundle that cannot be served; the message names the file and what is wrong."""


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a valid style or version name, else raise ValueError saying why."""
    if not isinstance(name, str) or not _NAME.match(name):
        shown = name if not isinstance(name, str) or len(name) <= 40 else name[:40] + "…"
        raise ValueError(
            f"{what} {shown!r} is not valid: use 1-32 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Vocab:
    """Characters (Unicode code points) in id order, and the id that stands for unknown input."""

    chars: tuple[str, ...]
    unk_id: int
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("every vocabulary entry must be exactly one code point")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("the vocabulary repeats a character")
        if not 0 <= self.unk_id < len(self.chars):
            raise ValueError(f"unknown id {self.unk_id} is outside the vocabulary")
        object.__setattr__(self, "index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def build(cls, text: str, min_count: int = 1) -> Vocab:
        """The vocabulary of `text`: id 0 is unknown, then characters in code-point order.

        Characters seen fewer than `min_count` times are left out and read as unknown.
        """
        counts = collections.Counter(text)
        counts.pop(UNKNOWN, None)
        kept = sorted(c for c, n in counts.items() if n >= min_count)
        return cls(chars=(UNKNOWN, *kept), unk_id=0)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:
        """Ids of `text` (unknown characters map to the unknown id) and the unknown characters."""
        unknown: list[str] = []
        ids = np.empty(len(text), dtype=np.int32)
        for i, c in enumerate(text):
            j = self.index.get(c)
            if j is None or j == self.unk_id:
                unknown.append(c)
                j = self.unk_id
            ids[i] = j
        return ids, list(dict.fromkeys(unknown))

    def unknown_penalty(self, text: str) -> float:
        """nats to add when the unknown id stands for a character of `text`: its probability
        is spread evenly over the distinct characters of `text` that the vocabulary leaves
        out, so losses are per-character probabilities over the text's whole alphabet."""
        left_out = {c for c in set(text) if self.index.get(c, self.unk_id) == self.unk_id}
        return math.log(max(len(left_out), 1))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    @property
    def start_id(self) -> int:
        """What the model is fed before text with no prompt: a newline, where the corpus has one."""
        return self.index.get("\n", self.unk_id)

    def to_json(self) -> dict[str, Any]:
        return {"format": VOCAB_FORMAT, "chars": list(self.chars), "unk_id": self.unk_id}

    @classmethod
    def from_json(cls, data: Any) -> Vocab:
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"not a version-{VOCAB_FORMAT} vocabulary")
        chars, unk = data.get("chars"), data.get("unk_id")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ValueError("'chars' must be a list of one-character strings")
        if not isinstance(unk, int):
            raise ValueError("'unk_id' must be an integer")
        return cls(chars=tuple(chars), unk_id=unk)

    def save(self, path: Path) -> None:
        _write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls.from_json(_read_json(path))


def state_names(cell: str, layers: int) -> list[str]:
    """The recurrent state tensors in contract order: h then c per layer of an LSTM (plain,
    peephole or coupled), h per GRU layer."""
    parts = ("h",) if cell == "gru" else ("h", "c")
    return [f"{p}{i}" for i in range(layers) for p in parts]


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk whose files were read and checked against each other."""

    path: Path
    vocab: Vocab
    card: dict[str, Any]

    @property
    def style(self) -> str:
        return self.card["style"]

    @property
    def version(self) -> str:
        return self.card["version"]

    @property
    def state_names(self) -> list[str]:
        return state_names(self.card["cell"], self.card["layers"])

    @property
    def units(self) -> int:
        return int(self.card["units"])

    def model_path(self, int8: bool = False) -> Path:
        return self.path / (INT8_FILE if int8 else MODEL_FILE)

    @property
    def prefill_path(self) -> Path | None:
        path = self.path / PREFILL_FILE
        return path if path.is_file() else None

    @property
    def ngram_weight(self) -> float | None:
        """The network's share of the served distribution when the bundle carries an n-gram
        model (the n-gram's is the rest), else None."""
        section = self.card.get("ngram")
        return None if section is None else float(section["weight"])

    def load_ngram(self) -> NGram | None:
        """The bundle's n-gram model, checked against its vocabulary, or None if it has none."""
        if self.ngram_weight is None:
            return None
        path = self.path / NGRAM_FILE
        if not path.is_file():
            raise BundleError(f"{path}: the card's ngram section names it, but it is missing")
        try:
            model = NGram.load(path)
        except ValueError as err:
            raise BundleError(f"{path}: {err}") from err
        if model.size != len(self.vocab):
            raise BundleError(
                f"{path}: it covers {model.size} ids but {VOCAB_FILE} holds {len(self.vocab)}"
            )
        return model

    @property
    def copy_guard(self) -> int | None:
        """k, when the bundle promises that no k consecutive characters of its training text
        (whitespace and punctuation aside) ever appear in what it writes; else None."""
        section = self.card.get("copy_guard")
        return None if section is None else int(section["k"])

    def load_guard(self) -> CopyIndex | None:
        """The bundle's copy-guard index, checked against its card and vocabulary, or None."""
        k = self.copy_guard
        if k is None:
            return None
        path = self.path / GUARD_FILE
        if not path.is_file():
            raise BundleError(f"{path}: the card's copy_guard section names it, but it is missing")
        try:
            index = CopyIndex.load(path, self.vocab.chars)
        except ValueError as err:
            raise BundleError(f"{path}: {err}; refusing to serve without its guard") from err
        if index.k != k:
            raise BundleError(f"{path}: it guards runs of {index.k}, the card says {k}")
        return index

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name} is not readable JSON ({err})") from err


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_bundle(path: Path) -> Bundle:
    """Read a bundle folder and check that its files agree; raise BundleError saying what is off.

    The ONNX graph's inputs and outputs are checked by `check_signature` once a session exists.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle folder")
    for name in (MODEL_FILE, VOCAB_FILE, CARD_FILE):
        if not (path / name).is_file():
            raise BundleError(f"{path}: {name} is missing")
    try:
        vocab = Vocab.load(path / VOCAB_FILE)
    except ValueError as err:
        raise BundleError(f"{path}: {VOCAB_FILE}: {err}") from err
    try:
        card = _read_json(path / CARD_FILE)
    except ValueError as err:
        raise BundleError(f"{path}: {err}") from err
    if not isinstance(card, dict):
        raise BundleError(f"{path}: {CARD_FILE} must hold a JSON object")
    missing = [k for k in CARD_REQUIRED if k not in card]
    if missing:
        raise BundleError(f"{path}: {CARD_FILE} lacks {', '.join(missing)}")
    if card["cell"] not in CELLS:
        raise BundleError(
            f"{path}: cell {card['cell']!r} is not one of {', '.join(CELLS)}; this engine "
            "cannot serve it (a newer poembot may)"
        )
    for key in ("layers", "units", "vocab_size"):
        if not isinstance(card[key], int) or card[key] < 1:
            raise BundleError(f"{path}: {CARD_FILE} {key} must be a positive integer")
    if card["vocab_size"] != len(vocab):
        raise BundleError(
            f"{path}: {CARD_FILE} says vocab_size {card['vocab_size']} but {VOCAB_FILE} "
            f"holds {len(vocab)} characters"
        )
    try:
        check_name(card["style"], "style")
        check_name(card["version"], "version")
    except ValueError as err:
        raise BundleError(f"{path}: {CARD_FILE}: {err}") from err
    ngram = card.get("ngram")
    if ngram is not None:
        weight = ngram.get("weight") if isinstance(ngram, dict) else None
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < 1:
            raise BundleError(f"{path}: {CARD_FILE} ngram weight must be a number in (0, 1)")
        order = ngram.get("order")
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise BundleError(f"{path}: {CARD_FILE} ngram order must be a positive integer")
    guard = card.get("copy_guard")
    if guard is not None:
        k = guard.get("k") if isinstance(guard, dict) else None
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise BundleError(f"{path}: {CARD_FILE} copy_guard k must be an integer >= 2")
    if (path.parent.name, path.name) != (card["style"], card["version"]):
        raise BundleError(
            f"{path}: the card names {card['style']}/{card['version']}, "
            f"but the bundle sits at {path.parent.name}/{path.name}"
        )
    return Bundle(path=path, vocab=vocab, card=card)


def check_signature(
    bundle: Bundle,
    inputs: Sequence[tuple[str, Sequence[Any], str]],
    outputs: Sequence[tuple[str, Sequence[Any], str]],
    file: str = MODEL_FILE,
) -> None:
    """Check a graph's (name, shape, type) inputs and outputs against the contract for `bundle`.

    Inputs: ids [batch] int32/int64, then state tensors [batch, units] float32. Outputs: logits
    [batch, vocab] float32, then the new states in input order. The prefill graph
    (`file=PREFILL_FILE`) takes ids [batch, time] and lengths [batch] int32 before the states.
    """
    n_state = len(bundle.state_names)
    prefill = file == PREFILL_FILE
    n_in = n_state + (2 if prefill else 1)
    where = f"{bundle.path}/{file}"
    if len(inputs) != n_in or len(outputs) != 1 + n_state:
        raise BundleError(
            f"{where}: expected {n_in} inputs and {1 + n_state} outputs for a "
            f"{bundle.card['layers']}-layer {bundle.card['cell']}, found {len(inputs)} inputs "
            f"and {len(outputs)} outputs"
        )

    def fixed(dim: Any) -> int | None:
        return dim if isinstance(dim, int) else None

    def expect(kind: str, item: tuple[str, Sequence[Any], str], dims: list[int | None], types):
        name, shape, dtype = item
        got = [fixed(d) for d in shape]
        if len(shape) != len(dims) or any(
            w is not None and g != w for g, w in zip(got, dims, strict=True)
        ):
            raise BundleError(f"{where}: {kind} {name!r} has shape {list(shape)}, expected {dims}")
        if got[0] not in (None, -1) and len(shape) > 0:
            raise BundleError(f"{where}: {kind} {name!r} must have a dynamic batch dimension")
        if dtype not in types:
            raise BundleError(f"{where}: {kind} {name!r} is {dtype}, expected {' or '.join(types)}")

    float_type = ("tensor(float)",)
    ids_dims: list[int | None] = [None, None] if prefill else [None]
    expect("input", inputs[0], ids_dims, ("tensor(int32)", "tensor(int64)"))
    if prefill:
        expect("input", inputs[1], [None], ("tensor(int32)",))
    expect("output", outputs[0], [None, len(bundle.vocab)], float_type)
    for item in (*inputs[n_in - n_state :], *outputs[1:]):
        expect("state", item, [None, bundle.units], float_type)


def write_bundle(
    models_dir: Path,
    vocab: Vocab,
    card: dict[str, Any],
    files: dict[str, Path],
) -> Path:
    """Write a bundle into models_dir/<style>/<version>/ whole: a temporary folder renamed into
    place, so a reader never sees half a bundle. `files` maps bundle file names to sources."""
    style = check_name(card["style"], "style")
    version = check_name(card["version"], "version")
    style_dir = Path(models_dir) / style
    style_dir.mkdir(parents=True, exist_ok=True)
    target = style_dir / version
    if target.exists():
        raise BundleError(f"{target} already exists; choose another version")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=style_dir))
    try:
        for name, source in files.items():
            shutil.copyfile(source, tmp / name)
        vocab.save(tmp / VOCAB_FILE)
        _write_json(tmp / CARD_FILE, card)
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def update_card(bundle_path: Path, **fields: Any) -> None:
    """Add fields to a bundle's card in place (atomically)."""
    path = Path(bundle_path) / CARD_FILE
    card = _read_json(path)
    card.update(fields)
    tmp = path.with_name(f".{CARD_FILE}.tmp")
    _write_json(tmp, card)
    os.replace(tmp, path)


def styles(models_dir: Path) -> list[str]:
    """Styles with at least one version folder, sorted."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def versions(models_dir: Path, style: str) -> list[str]:
    """Version folders of a style, oldest first (natural order: v2 before v10)."""
    style_dir = Path(models_dir) / check_name(style, "style")
    if not style_dir.is_dir():
        return []
    names = [p.name for p in style_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def next_version(models_dir: Path, style: str) -> str:
    """`v<N+1>` where N is the highest number among the style's `v<N>` versions."""
    numbers = [int(v[1:]) for v in versions(models_dir, style) if re.fullmatch(r"v\d+", v)]
    return f"v{max(numbers, default=0) + 1}"


def active_version(models_dir: Path, style: str) -> str | None:
    """The version `ACTIVE` names, or the newest version when there is no ACTIVE file."""
    path = Path(models_dir) / check_name(style, "style") / ACTIVE_FILE
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        found = versions(models_dir, style)
        return found[-1] if found else None
    return check_name(name, "version")


def set_active(models_dir: Path, style: str, version: str) -> None:
    """Point ACTIVE at `version`, atomically (temporary file, fsync, os.replace)."""
    style_dir = Path(models_dir) / check_name(style, "style")
    if not (style_dir / check_name(version, "version")).is_dir():
        raise BundleError(f"{style}/{version} does not exist")
    tmp = style_dir / f".{ACTIVE_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, style_dir / ACTIVE_FILE)
