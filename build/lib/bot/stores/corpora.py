"""The corpora operators upload for new styles, kept under the data folder, one per style.

A retrain reads the uploaded corpus when there is one, else the known corpus its card names.
"""

from __future__ import annotations

from pathlib import Path

from bot.corpus import KNOWN_CORPORA, CorpusError, decode_text
from bot.engine.bundle import check_name

MIN_CORPUS_CHARS = 2000


class CorpusRefused(ValueError):
    """An upload the store will not keep; the message says why, in words for the operator."""


class CorpusStore:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def path(self, style: str) -> Path:
        return self.folder / f"{check_name(style, 'style')}.txt"

    def check_size(self, size: int) -> None:
        """CorpusRefused when a file of `size` bytes is over the limit."""
        if size > self.max_bytes:
            raise CorpusRefused(f"The file is {size:,} bytes; the limit is {self.max_bytes:,}.")

    def source_for(self, style: str, card: dict) -> str:
        """The corpus a retrain of `style` reads: an uploaded one, else the known corpus its
        card names; CorpusRefused when neither is here."""
        uploaded = self.path(style)
        if uploaded.is_file():
            return str(uploaded)
        name = card.get("corpus", {}).get("name", "")
        if name in KNOWN_CORPORA:
            return name
        raise CorpusRefused(
            f"The corpus of {style} is not on this machine; use /model add instead."
        )

    def save(self, style: str, data: bytes, shown_name: str) -> Path:
        """Keep `data` as the corpus of `style` if it is usable text (written whole, then
        renamed into place); CorpusRefused saying why not. `shown_name` names the file in the
        message, already made safe to show."""
        self.check_size(len(data))
        try:
            text = decode_text(data, shown_name)
        except CorpusError as err:
            raise CorpusRefused(str(err)) from None
        if len(text.strip()) < MIN_CORPUS_CHARS:
            raise CorpusRefused(
                f"The file holds {len(text.strip()):,} characters; a style needs at least "
                f"{MIN_CORPUS_CHARS:,} to learn from."
            )
        path = self.path(style)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path
