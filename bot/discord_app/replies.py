"""What the bot posts: poem embeds and attachments, kept inside Discord's limits and unable to
break out of their formatting or ping anyone."""

from __future__ import annotations

import io
import re
import unicodedata

import discord

from bot.engine.scheduler import Generation

EMBED_DESCRIPTION_LIMIT = 4096
EMBED_TITLE_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
NO_MENTIONS = discord.AllowedMentions.none()

# Every character Discord's markdown gives a meaning to, plus '<' and '@' (mention syntax) and
# ':' (emoji and timestamp syntax). A backslash before ASCII punctuation renders as nothing.
_MARKDOWN = re.compile(r"([\\*_`~|>#\-\[\]()<@:!.+=])")
# Characters that reorder or hide text: bidi controls, zero-width marks, other controls.
_INVISIBLE = {"Cc", "Cf"}


def visible(text: str) -> str:
    """Text with bidi overrides, zero-width and control characters removed (newlines kept)."""
    return "".join(c for c in text if c == "\n" or unicodedata.category(c) not in _INVISIBLE)


def escape(text: str) -> str:
    """Text that Discord shows literally: no markdown, mentions, links or custom emoji."""
    return _MARKDOWN.sub(r"\\\1", visible(text))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(text: str, limit: int = 100) -> str:
    """What a user typed, echoed in a reply: shortened (a reply that Discord refuses for its
    length reaches nobody) and shown literally."""
    return escape(_shorten(text, limit))


def poem_reply(
    result: Generation,
    display_name: str,
    text: str | None = None,
    script: str | None = None,
) -> tuple[discord.Embed, discord.File | None]:
    """The embed for a poem (`text`: the poem as shown, e.g. in another script), and a .txt
    attachment when the poem does not fit in it."""
    text = result.text if text is None else text
    body = escape(text)
    form = f" · {result.form}" if result.form else ""
    shown = f" · {script}" if script else ""
    footer = (
        f"{result.style} {result.version}{form}{shown} · temperature {result.temperature:g} · "
        f"seed {result.seed}"
    )
    if result.top_k:
        footer += f" · top-k {result.top_k}"
    if result.top_p < 1.0:
        footer += f" · top-p {result.top_p:g}"
    attachment = None
    if len(body) > EMBED_DESCRIPTION_LIMIT:
        name = f"{result.style}-{result.seed}.txt"
        attachment = discord.File(io.BytesIO(text.encode("utf-8")), filename=name)
        preview = escape(text[:600])
        body = (
            f"{preview}…\n\n*The whole poem ({len(text):,} characters) is attached as "
            f"{escape(name)}.*"
        )
    embed = discord.Embed(
        title=_shorten(display_name, EMBED_TITLE_LIMIT), description=body, colour=0x7A5CFA
    )
    if result.unknown:
        shown = " ".join(escape(c) if visible(c) else f"U+{ord(c):04X}" for c in result.unknown)
        embed.add_field(
            name="Not in this style's alphabet",
            value=_shorten(f"{shown} (left out of what the model read)", FIELD_VALUE_LIMIT),
            inline=False,
        )
    if result.relaxed:
        embed.add_field(
            name="Rules bent to finish it",
            value=_shorten("; ".join(result.relaxed), FIELD_VALUE_LIMIT),
            inline=False,
        )
    embed.set_footer(text=footer)
    return embed, attachment
