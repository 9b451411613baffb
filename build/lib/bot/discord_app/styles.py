"""Choosing a style: the autocomplete of the live styles, and the default one."""

from __future__ import annotations

from discord import app_commands

from bot.engine.registry import Registry


def style_choices(registry: Registry, typed: str) -> list[app_commands.Choice[str]]:
    """Live styles whose name or display name contains what the user typed (Discord shows 25)."""
    typed = typed.casefold().strip()
    choices = []
    for style in registry.styles():
        name = str(registry.live(style).bundle.card.get("display_name", style))
        if typed in style or typed in name.casefold():
            label = name if name == style else f"{name} ({style})"
            choices.append(app_commands.Choice(name=label[:100], value=style))
    return choices[:25]


def default_style(registry: Registry, preferred: str) -> str | None:
    """`preferred` (DEFAULT_STYLE) when it is live, else the first live style, else None."""
    live = registry.styles()
    if preferred in live:
        return preferred
    return live[0] if live else None
