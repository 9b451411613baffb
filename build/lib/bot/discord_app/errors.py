"""Errors the user can fix, and how any command error reaches the user: privately, in words."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.discord_app.words import say

log = logging.getLogger(__name__)


class UserError(app_commands.AppCommandError):
    """Something the user can fix; the message, shown to them alone, says how. An
    AppCommandError, so discord.py routes it to the tree's error handler from checks too.

    `key` names the words in bot/discord_app/words.py (shown in the user's language, with
    `values` filled in), or is the English text itself."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(say(None, key, **values))
        self.key = key
        self.values = values

    def text(self, locale: discord.Locale | str | None) -> str:
        return say(locale, self.key, **self.values)


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer, whether or not the interaction was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def refuse_after_defer(interaction: discord.Interaction, text: str) -> None:
    """Answer privately an interaction deferred publicly: the "thinking…" message is deleted
    first (Discord would turn a followup into it, public), then the answer is sent to the user
    alone."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        log.warning("could not remove the deferred answer", exc_info=True)
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not send the refusal", exc_info=True)


async def answer_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """The command tree's error handler: a UserError's own words, a short note for a value
    Discord let through that does not fit, and for anything else an apology (and the log)."""
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    locale = interaction.locale
    if isinstance(cause, UserError):
        text = cause.text(locale)
    elif isinstance(cause, app_commands.TransformerError):
        text = say(locale, "bad-value", value=f"{cause.value!r:.100}")
    elif isinstance(cause, app_commands.CheckFailure):
        text = say(locale, "not-here")
    else:
        log.error(
            "command %s failed",
            interaction.command and interaction.command.name,
            exc_info=cause,
        )
        text = say(locale, "went-wrong")
    try:
        await send_private(interaction, text)
    except discord.HTTPException:
        log.warning("could not send the error reply", exc_info=True)
