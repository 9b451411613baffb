"""Errors the user can fix, and how any command error reaches the user: privately, in words."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

log = logging.getLogger(__name__)


class UserError(app_commands.AppCommandError):
    """Something the user can fix; the message, shown to them alone, says how. An
    AppCommandError, so discord.py routes it to the tree's error handler from checks too."""


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer, whether or not the interaction was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def answer_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """The command tree's error handler: a UserError's own words, a short note for a value
    Discord let through that does not fit, and for anything else an apology (and the log)."""
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(cause, UserError):
        text = str(cause)
    elif isinstance(cause, app_commands.TransformerError):
        text = f"That value doesn't fit the option: {cause.value!r:.100}"
    elif isinstance(cause, app_commands.CheckFailure):
        text = "You can't use this command here."
    else:
        log.error(
            "command %s failed",
            interaction.command and interaction.command.name,
            exc_info=cause,
        )
        text = "Something went wrong on my side; the operators can see it in the log."
    try:
        await send_private(interaction, text)
    except discord.HTTPException:
        log.warning("could not send the error reply", exc_info=True)
