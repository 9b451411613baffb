"""`/poem` for everyone and `/settings` for a channel's moderators."""

# No `from __future__ import annotations`: discord.py reads the option annotations, and the
# bounds in them come from the settings in make_poem_command's closure.
import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.channel_settings import ChannelSettings, SettingsUnavailable
from bot.engine import Busy, Request
from bot.registry import Live, UnknownStyle
from bot.replies import poem_reply, quoted
from bot.throttle import Throttled

if TYPE_CHECKING:
    from bot.app import PoemBot

log = logging.getLogger(__name__)

MAX_TEMPERATURE = 2.0
MAX_SEED = 2**53 - 1  # Discord's integer options stop at 2^53
SAVE_ANSWER_SECONDS = 1.5  # a settings write slower than this is answered by deferring


class UserError(app_commands.AppCommandError):
    """Something the user can fix; the message, shown to them alone, says how. An
    AppCommandError, so discord.py routes it to the tree's error handler from checks too."""


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer, whether or not the interaction was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


def style_choices(bot: "PoemBot", typed: str) -> list[app_commands.Choice[str]]:
    typed = typed.casefold().strip()
    choices = []
    for style in bot.registry.styles():
        name = str(bot.registry.live(style).bundle.card.get("display_name", style))
        if typed in style or typed in name.casefold():
            label = name if name == style else f"{name} ({style})"
            choices.append(app_commands.Choice(name=label[:100], value=style))
    return choices[:25]


async def channel_settings(bot: "PoemBot", channel_id: int) -> ChannelSettings:
    """The channel's settings, or none when the store cannot answer quickly (poems go on)."""
    try:
        return await asyncio.wait_for(bot.store.get(channel_id), 0.5)
    except (SettingsUnavailable, asyncio.TimeoutError) as err:
        log.warning("channel settings unavailable, using defaults: %s", err)
        return ChannelSettings()


def make_poem_command(bot: "PoemBot") -> app_commands.Command:
    limits = bot.settings.limits

    @app_commands.command(name="poem")
    @app_commands.describe(
        style="which model writes it (default: this channel's style)",
        prompt="text the poem starts with",
        length=f"characters to write (default {bot.settings.default_length})",
        temperature="0 = always the likeliest character; higher = wilder (default: channel's)",
        seed="the same seed and options give the same poem",
    )
    async def poem(
        interaction: discord.Interaction,
        style: str | None = None,
        prompt: app_commands.Range[str, 1, max(limits.max_prompt, 1)] | None = None,
        length: app_commands.Range[int, 1, limits.max_length] | None = None,
        temperature: app_commands.Range[float, 0.0, MAX_TEMPERATURE] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    ) -> None:
        """Write a poem or lyrics in one of the bot's styles."""
        async with bot.answering():
            await write_poem(bot, interaction, style, prompt, length, temperature, seed)

    @poem.autocomplete("style")
    async def poem_style(interaction: discord.Interaction, current: str):
        return style_choices(bot, current)

    return poem


async def write_poem(
    bot: "PoemBot",
    interaction: discord.Interaction,
    style: str | None,
    prompt: str | None,
    length: int | None,
    temperature: float | None,
    seed: int | None,
) -> None:
    """Check the options (answering privately if they are unusable), defer, write, reply."""
    limits = bot.settings.limits
    saved = await channel_settings(bot, interaction.channel_id or 0)
    chosen = style or saved.style or bot.default_style()
    if chosen is None:
        raise UserError("No styles are loaded right now; ask the bot's operators.")
    if chosen not in bot.registry.styles():
        known = ", ".join(bot.registry.styles())
        raise UserError(f"There is no style named {quoted(chosen)}. Styles: {known}.")
    if temperature is None:
        temperature = saved.temperature
    if temperature is None:
        temperature = bot.settings.default_temperature
    request = Request(
        prompt=prompt or "",
        length=length if length is not None else bot.settings.default_length,
        temperature=temperature + 0.0,  # -0.0 would show as "-0" in the footer
        # A seed the user can type back into the option (Discord stops at 2^53).
        seed=seed if seed is not None else secrets.randbelow(MAX_SEED + 1),
    )
    if len(request.prompt) > limits.max_prompt:
        raise UserError(f"The prompt can be at most {limits.max_prompt} characters.")
    if not 1 <= request.length <= limits.max_length:
        raise UserError(f"Length must be between 1 and {limits.max_length} characters.")
    if not 0.0 <= request.temperature <= MAX_TEMPERATURE:
        raise UserError(f"Temperature must be between 0 and {MAX_TEMPERATURE:g}.")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"The seed must be between 0 and {MAX_SEED}.")
    live = bot.registry.live(chosen)
    scheduler = live.scheduler
    if scheduler.queued >= limits.max_queue:
        raise UserError(
            f"I'm busy writing other poems; try again in {scheduler.retry_after():.0f} s."
        )
    try:
        slot = bot.throttle.take(
            interaction.user.id, interaction.channel_id or 0, scheduler.estimate(request)
        )
    except Throttled as err:
        raise UserError(str(err)) from None
    with slot:
        await reply_with_poem(bot, interaction, live, chosen, request)


async def reply_with_poem(
    bot: "PoemBot", interaction: discord.Interaction, live: Live, chosen: str, request: Request
) -> None:
    """Defer, write, and put the poem (or why there is none) in the reply."""
    await interaction.response.defer(thinking=True)
    try:
        result = await bot.registry.generate(chosen, request)
    except (Busy, ValueError, UnknownStyle) as err:
        if isinstance(err, Busy):
            text = f"I'm busy writing other poems; try again in {err.retry_after:.0f} s."
        elif isinstance(err, UnknownStyle):
            text = f"The style {chosen} was just removed; pick another."
        else:
            text = f"I can't write that: {err}."
        # After a public defer the answer cannot turn ephemeral: say it in the reply.
        await interaction.edit_original_response(content=text)
        return
    embed, attachment = poem_reply(result, str(live.bundle.card.get("display_name", chosen)))
    await interaction.edit_original_response(
        embed=embed, attachments=[attachment] if attachment else []
    )


class SettingsGroup(app_commands.Group):
    """Set this channel's defaults for /poem (needs Manage Channels)."""

    def __init__(self, bot: "PoemBot") -> None:
        super().__init__(
            name="settings",
            description="Set this channel's defaults for /poem (needs Manage Channels)",
            default_permissions=discord.Permissions(manage_channels=True),
            guild_only=True,
        )
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Discord hides the command from members without the permission, but a client may
        # ignore that: the bot checks the member's permissions in this channel itself.
        if interaction.guild_id is None:
            raise UserError("Channel settings exist only in servers.")
        if not interaction.permissions.manage_channels:
            raise UserError("You need the Manage Channels permission here to change settings.")
        return True

    async def _save(self, interaction: discord.Interaction, done: str, **changes) -> None:
        store = self.bot.store
        write = asyncio.ensure_future(
            store.update(interaction.channel_id, interaction.guild_id, **changes)
            if changes
            else store.reset(interaction.channel_id)
        )
        # A slow database must not cost the answer (Discord drops an interaction left
        # unanswered for 3 s): past SAVE_ANSWER_SECONDS the bot says it is working on it.
        finished, _ = await asyncio.wait({write}, timeout=SAVE_ANSWER_SECONDS)
        if not finished:
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await write
        except SettingsUnavailable as err:
            log.error("settings write failed: %s", err)
            done = (
                "Settings can't be saved right now (the database is unavailable); nothing was "
                "changed. Try again later. /poem keeps working with the defaults."
            )
        if finished:
            await interaction.response.send_message(done, ephemeral=True)
        else:
            await interaction.edit_original_response(content=done)

    @app_commands.command(name="temperature")
    @app_commands.describe(value="0 = always the likeliest character; 1 = as trained; 2 = wild")
    async def temperature(
        self,
        interaction: discord.Interaction,
        value: app_commands.Range[float, 0.0, MAX_TEMPERATURE],
    ) -> None:
        """Set this channel's default temperature."""
        if not 0.0 <= value <= MAX_TEMPERATURE:
            raise UserError(f"Temperature must be between 0 and {MAX_TEMPERATURE:g}.")
        value += 0.0  # -0.0 is 0: shown and stored the same way
        await self._save(
            interaction, f"Poems in this channel now use temperature {value:g}.", temperature=value
        )

    @app_commands.command(name="style")
    @app_commands.describe(name="the style /poem uses here when none is given")
    async def style(self, interaction: discord.Interaction, name: str) -> None:
        """Set this channel's default style."""
        if name not in self.bot.registry.styles():
            known = ", ".join(self.bot.registry.styles())
            raise UserError(f"There is no style named {quoted(name)}. Styles: {known}.")
        await self._save(interaction, f"Poems in this channel now default to {name}.", style=name)

    @style.autocomplete("name")
    async def style_name(self, interaction: discord.Interaction, current: str):
        return style_choices(self.bot, current)

    @app_commands.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this channel's settings."""
        saved = await channel_settings(self.bot, interaction.channel_id)
        temp = (
            f"{saved.temperature:g}"
            if saved.temperature is not None
            else f"{self.bot.settings.default_temperature:g} (default)"
        )
        style = saved.style or f"{self.bot.default_style()} (default)"
        await interaction.response.send_message(
            f"This channel: style {style}, temperature {temp}.", ephemeral=True
        )

    @app_commands.command(name="reset")
    async def reset(self, interaction: discord.Interaction) -> None:
        """Forget this channel's settings and use the bot's defaults."""
        await self._save(interaction, "This channel now uses the bot's defaults.")
