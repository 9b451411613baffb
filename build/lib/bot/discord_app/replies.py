"""What the bot posts: poem embeds and attachments, kept inside Discord's limits and unable to
break out of their formatting or ping anyone."""

from __future__ import annotations

import io
import re

import discord

from bot.discord_app.words import say
from bot.engine.scheduler import Generation
from bot.forms.hidden import visible

CONTENT_LIMIT = 2000
TEXT_PARTS = 5  # a plain-text poem longer than five messages comes as an attachment
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_TITLE_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
NO_MENTIONS = discord.AllowedMentions.none()

# Every character Discord's markdown gives a meaning to, plus '<' and '@' (mention syntax) and
# ':' (emoji and timestamp syntax). A backslash before ASCII punctuation renders as nothing.
_MARKDOWN = re.compile(r"([\\*_`~|>#\-\[\]()<@:!.+=])")


def escape(text: str) -> str:
    """Text that Discord shows literally: no markdown, mentions, links or custom emoji."""
    return _MARKDOWN.sub(r"\\\1", visible(text))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(text: str, limit: int = 100) -> str:
    """What a user typed, echoed in a reply: shortened (a reply that Discord refuses for its
    length reaches nobody) and shown literally."""
    return escape(_shorten(text, limit))


def about_text(
    about: tuple[str, list[str]] | None, locale: discord.Locale | str | None = None
) -> str | None:
    """The line naming a poem's theme and the plan's words it holds, or None without one."""
    if about is None:
        return None
    typed, words = about
    return say(locale, "about-line", theme=typed, plan=" · ".join(words))


def footer_text(
    result: Generation, script: str | None = None, locale: discord.Locale | str | None = None
) -> str:
    """What the poem was written with: style, version, form, script, temperature, seed."""
    footer = say(
        locale,
        "footer",
        style=result.style,
        version=result.version,
        form=f" · {result.form}" if result.form else "",
        script=f" · {script}" if script else "",
        temperature=f"{result.temperature:g}",
        seed=result.seed,
    )
    if result.top_k:
        footer += f" · top-k {result.top_k}"
    if result.top_p < 1.0:
        footer += f" · top-p {result.top_p:g}"
    return footer


def _notes(
    result: Generation, locale: discord.Locale | str | None, note: str | None
) -> list[tuple[str, str]]:
    """(name, value) of what a reader should know beside the poem."""
    notes = []
    if result.unknown:
        shown = " ".join(escape(c) if visible(c) else f"U+{ord(c):04X}" for c in result.unknown)
        notes.append((say(locale, "unknown-field"), say(locale, "unknown-value", chars=shown)))
    if result.relaxed:
        notes.append((say(locale, "relaxed-field"), "; ".join(result.relaxed)))
    if note:
        notes.append(("ℹ️", note))
    return notes


def _attachment(result: Generation, text: str) -> tuple[discord.File, str]:
    name = f"{result.style}-{result.seed}.txt"
    return discord.File(io.BytesIO(text.encode("utf-8")), filename=name), name


def poem_reply(
    result: Generation,
    display_name: str,
    text: str | None = None,
    script: str | None = None,
    locale: discord.Locale | str | None = None,
    note: str | None = None,
    about: tuple[str, list[str]] | None = None,
) -> tuple[discord.Embed, discord.File | None]:
    """The embed for a poem (`text`: the poem as shown, e.g. in another script), and a .txt
    attachment when the poem does not fit in it; `note` (already escaped) is added below,
    and the theme's line (`about`: as typed, the plan's words) above the footer's."""
    text = result.text if text is None else text
    body = escape(text)
    attachment = None
    if len(body) > EMBED_DESCRIPTION_LIMIT:
        attachment, name = _attachment(result, text)
        said = say(locale, "attached", count=len(text), name=escape(name))
        body = f"{escape(text[:600])}…\n\n*{said}*"
    embed = discord.Embed(
        title=_shorten(display_name, EMBED_TITLE_LIMIT), description=body, colour=0x7A5CFA
    )
    for name, value in _notes(result, locale, note):
        embed.add_field(name=name, value=_shorten(value, FIELD_VALUE_LIMIT), inline=False)
    footer = footer_text(result, script, locale)
    theme = about_text(about, locale)
    embed.set_footer(text=_shorten(f"{theme}\n{footer}" if theme else footer, FOOTER_LIMIT))
    return embed, attachment


def writing_embed(
    display_name: str, text: str, locale: discord.Locale | str | None = None
) -> discord.Embed | None:
    """A poem being written, marked so; None once it no longer fits in one embed."""
    body = escape(text)
    if len(body) > EMBED_DESCRIPTION_LIMIT:
        return None
    embed = discord.Embed(
        title=_shorten(display_name, EMBED_TITLE_LIMIT), description=body or "…", colour=0x7A5CFA
    )
    embed.set_footer(text=say(locale, "writing"))
    return embed


def writing_text(text: str, locale: discord.Locale | str | None = None) -> str | None:
    """A poem being written as plain text, marked so; None once it no longer fits."""
    content = f"{escape(text)}\n-# {say(locale, 'writing')}"
    return content if len(content) <= CONTENT_LIMIT else None


def split_message(text: str, limit: int = CONTENT_LIMIT) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line breaks (a line longer than
    that at its last space before the limit, else anywhere)."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:].lstrip(" ")
        joined = f"{current}\n{line}" if current else line
        if len(joined) > limit:
            parts.append(current)
            joined = line
        current = joined
    if current or not parts:
        parts.append(current)
    return parts


def text_reply(
    result: Generation,
    display_name: str,
    text: str | None = None,
    script: str | None = None,
    locale: discord.Locale | str | None = None,
    note: str | None = None,
    about: tuple[str, list[str]] | None = None,
) -> tuple[list[str], discord.File | None]:
    """A poem as plain messages: its title, the poem, what a reader should know, the theme's
    line and the footer in subtext; split at line breaks into at most TEXT_PARTS messages of
    2,000 characters, else a preview with the whole poem attached."""
    text = result.text if text is None else text
    tail = [f"-# {escape(name)}: {value}" for name, value in _notes(result, locale, note)]
    theme = about_text(about, locale)
    if theme:
        tail.append(f"-# {escape(theme)}")
    tail.append(f"-# {escape(footer_text(result, script, locale))}")
    whole = "\n".join([f"**{escape(display_name)}**", escape(text), *tail])
    parts = split_message(whole)
    if len(parts) <= TEXT_PARTS:
        return parts, None
    attachment, name = _attachment(result, text)
    said = say(locale, "attached", count=len(text), name=escape(name))
    preview = "\n".join([f"**{escape(display_name)}**", f"{escape(text[:600])}…", f"*{said}*"])
    return split_message("\n".join([preview, *tail])), attachment
