"""`/settings`, for a channel's moderators (Manage Channels): its default temperature, style
and reply format for /poem. Writes that the database is slow to take are deferred, never lost
past Discord's 3 seconds."""

# No `from __future__ import annotations`: discord.py reads the option annotations.
import asyncio
import logging

import discord
from discord import app_commands

from bot.config import Settings
from bot.discord_app.errors import UserError
from bot.discord_app.poem_command import MAX_TEMPERATURE
from bot.discord_app.replies import quoted
from bot.discord_app.styles import default_style, style_choices
from bot.discord_app.words import say
from bot.engine.registry import Registry
from bot.stores.channel_settings import SettingsUnavailable
from bot.stores.settings_cache import ChannelSettingsCache

log = logging.getLogger(__name__)

FORMATS = ("embed", "text")
SAVE_ANSWER_SECONDS = 1.5  # a settings write slower than this is answered by deferring


class SettingsGroup(app_commands.Group):
    """Set this channel's defaults for /poem (needs Manage Channels)."""

    def __init__(self, settings: Settings, registry: Registry, store: ChannelSettingsCache) -> None:
        super().__init__(
            name="settings",
            description="Set this channel's defaults for /poem (needs Manage Channels)",
            default_permissions=discord.Permissions(manage_channels=True),
            guild_only=True,
        )
        self.settings = settings
        self.registry = registry
        self.store = store

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Discord hides the command from members without the permission, but a client may
        # ignore that: the bot checks the member's permissions in this channel itself.
        if interaction.guild_id is None:
            raise UserError("servers-only")
        if not interaction.permissions.manage_channels:
            raise UserError("needs-manage-channels")
        return True

    async def _save(self, interaction: discord.Interaction, done: str, **changes) -> None:
        store = self.store
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
            done = say(interaction.locale, "settings-unavailable")
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
            raise UserError("bad-temperature", limit=f"{MAX_TEMPERATURE:g}")
        value += 0.0  # -0.0 is 0: shown and stored the same way
        await self._save(
            interaction,
            say(interaction.locale, "temperature-set", value=f"{value:g}"),
            temperature=value,
        )

    @app_commands.command(name="style")
    @app_commands.describe(name="the style /poem uses here when none is given")
    async def style(self, interaction: discord.Interaction, name: str) -> None:
        """Set this channel's default style."""
        if name not in self.registry.styles():
            known = ", ".join(self.registry.styles())
            raise UserError("no-such-style", name=quoted(name), known=known)
        await self._save(interaction, say(interaction.locale, "style-set", name=name), style=name)

    @style.autocomplete("name")
    async def style_name(self, interaction: discord.Interaction, current: str):
        return style_choices(self.registry, current)

    @app_commands.command(name="format")
    @app_commands.describe(value="embed: a card with the poem (default); text: plain messages")
    @app_commands.choices(
        value=[
            app_commands.Choice(name="embed", value="embed"),
            app_commands.Choice(name="text", value="text"),
        ]
    )
    async def format(self, interaction: discord.Interaction, value: str) -> None:
        """Send this channel's poems as embeds or as plain text."""
        if value not in FORMATS:
            raise UserError(f"The format must be one of {', '.join(FORMATS)}.")
        done = say(
            interaction.locale, "format-set", format=say(interaction.locale, f"format-{value}")
        )
        await self._save(interaction, done, format=value)

    @app_commands.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this channel's settings."""
        saved = await self.store.current(interaction.channel_id)
        locale = interaction.locale
        default = say(locale, "default")
        temp = (
            f"{saved.temperature:g}"
            if saved.temperature is not None
            else f"{self.settings.default_temperature:g} {default}"
        )
        style = saved.style or (
            f"{default_style(self.registry, self.settings.default_style)} {default}"
        )
        shown = say(locale, f"format-{saved.format or 'embed'}")
        shown = shown if saved.format else f"{shown} {default}"
        await interaction.response.send_message(
            say(locale, "settings-shown", style=style, format=shown, temperature=temp),
            ephemeral=True,
        )

    @app_commands.command(name="reset")
    async def reset(self, interaction: discord.Interaction) -> None:
        """Forget this channel's settings and use the bot's defaults."""
        await self._save(interaction, say(interaction.locale, "settings-reset"))
