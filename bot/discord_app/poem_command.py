"""`/poem`, for everyone: options checked, the channel's defaults and the throttle applied,
the poem written by the live model and put in the reply."""

# No `from __future__ import annotations`: discord.py reads the option annotations, and the
# bounds in them come from the settings, read when `PoemCommand.command` builds it.
import logging
from dataclasses import dataclass

import discord
from discord import app_commands

from bot.config import Settings
from bot.discord_app.errors import UserError
from bot.discord_app.gate import AnswerGate
from bot.discord_app.replies import escape, poem_reply, quoted
from bot.discord_app.styles import default_style, style_choices
from bot.engine.registry import Live, Registry, UnknownStyle
from bot.engine.scheduler import Busy, Request
from bot.forms import catalog
from bot.forms.rules import FormError
from bot.poems import MAX_SEED, plan_request
from bot.stores.channel_settings import ChannelSettingsStore, settings_or_defaults
from bot.throttle import Throttle, Throttled

log = logging.getLogger(__name__)

MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Shape:
    """The options that shape a poem: its form, an acrostic, the script it is shown in."""

    form: str | None = None
    acrostic: str | None = None
    script: str | None = None


class PoemCommand:
    """`/poem`, bound to what it writes with: the settings' limits and defaults, the registry
    of live models, the channel settings, the throttle and the shutdown gate."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ChannelSettingsStore,
        throttle: Throttle,
        gate: AnswerGate,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.throttle = throttle
        self.gate = gate

    def command(self) -> app_commands.Command:
        """The application command, its option bounds taken from the settings."""
        limits = self.settings.limits

        @app_commands.command(name="poem")
        @app_commands.describe(
            style="which model writes it (default: this channel's style)",
            prompt="text the poem starts with",
            length="most characters (default: the form's own, else "
            f"{self.settings.default_length}); a poem ends at a whole line",
            temperature="0 = always the likeliest character; higher = wilder (default: channel's)",
            seed="the same seed and options give the same poem",
            form="the poem's form, from what the style offers (default: the style's own)",
            acrostic="藏头 / acrostic: line i starts with its i-th character or letter",
            script="Chinese styles: the script the poem is shown in",
        )
        @app_commands.choices(
            script=[
                app_commands.Choice(name="简体 simplified", value="simplified"),
                app_commands.Choice(name="繁體 traditional", value="traditional"),
            ]
        )
        async def poem(
            interaction: discord.Interaction,
            style: str | None = None,
            prompt: app_commands.Range[str, 1, max(limits.max_prompt, 1)] | None = None,
            length: app_commands.Range[int, 1, limits.max_length] | None = None,
            temperature: app_commands.Range[float, 0.0, MAX_TEMPERATURE] | None = None,
            seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
            form: app_commands.Range[str, 1, 40] | None = None,
            acrostic: app_commands.Range[str, 1, catalog.MAX_ACROSTIC] | None = None,
            script: str | None = None,
        ) -> None:
            """Write a poem or lyrics in one of the bot's styles."""
            async with self.gate.answering():
                await self.write(
                    interaction,
                    style,
                    prompt,
                    length,
                    temperature,
                    seed,
                    Shape(form, acrostic, script),
                )

        @poem.autocomplete("style")
        async def poem_style(interaction: discord.Interaction, current: str):
            return style_choices(self.registry, current)

        @poem.autocomplete("form")
        async def poem_form(interaction: discord.Interaction, current: str):
            return self.form_choices(getattr(interaction.namespace, "style", None), current)

        return poem

    def form_choices(self, style: str | None, typed: str) -> list[app_commands.Choice[str]]:
        """The forms the chosen style (else the default one) offers, named in its language."""
        style = style or default_style(self.registry, self.settings.default_style)
        if style not in self.registry.styles():
            return []
        card = self.registry.live(style).bundle.card
        return [
            app_commands.Choice(name=label[:100], value=name)
            for label, name in catalog.choices(card, typed)[:25]
        ]

    async def write(
        self,
        interaction: discord.Interaction,
        style: str | None,
        prompt: str | None,
        length: int | None,
        temperature: float | None,
        seed: int | None,
        shape: "Shape | None" = None,
    ) -> None:
        """Check the options (answering privately if they are unusable), defer, write, reply."""
        settings, registry = self.settings, self.registry
        limits = settings.limits
        saved = await settings_or_defaults(self.store, interaction.channel_id or 0)
        chosen = style or saved.style or default_style(registry, settings.default_style)
        if chosen is None:
            raise UserError("No styles are loaded right now; ask the bot's operators.")
        if chosen not in registry.styles():
            known = ", ".join(registry.styles())
            raise UserError(f"There is no style named {quoted(chosen)}. Styles: {known}.")
        if temperature is None:
            temperature = saved.temperature
        if temperature is None:
            temperature = settings.default_temperature
        if prompt and len(prompt) > limits.max_prompt:
            raise UserError(f"The prompt can be at most {limits.max_prompt} characters.")
        if length is not None and not 1 <= length <= limits.max_length:
            raise UserError(f"Length must be between 1 and {limits.max_length} characters.")
        shape = shape or Shape()
        live = registry.live(chosen)
        try:
            poem, request = plan_request(
                settings,
                live,
                prompt=prompt or "",
                length=length,
                temperature=temperature,
                seed=seed,
                form=shape.form,
                acrostic=shape.acrostic,
                script=shape.script,
            )
        except FormError as err:
            raise UserError(escape(str(err))) from None
        if not 1 <= request.length <= limits.max_length:
            raise UserError(f"Length must be between 1 and {limits.max_length} characters.")
        if not 0.0 <= request.temperature <= MAX_TEMPERATURE:
            raise UserError(f"Temperature must be between 0 and {MAX_TEMPERATURE:g}.")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise UserError(f"The seed must be between 0 and {MAX_SEED}.")
        scheduler = live.scheduler
        if scheduler.queued >= limits.max_queue:
            raise UserError(
                f"I'm busy writing other poems; try again in {scheduler.retry_after():.0f} s."
            )
        try:
            slot = self.throttle.take(
                interaction.user.id, interaction.channel_id or 0, scheduler.estimate(request)
            )
        except Throttled as err:
            raise UserError(str(err)) from None
        with slot:
            await self.reply(interaction, live, chosen, request, poem)

    async def reply(
        self,
        interaction: discord.Interaction,
        live: Live,
        chosen: str,
        request: Request,
        poem: catalog.PoemPlan,
    ) -> None:
        """Defer, write, and put the poem (or why there is none) in the reply."""
        await interaction.response.defer(thinking=True)
        try:
            result = await self.registry.generate(chosen, request)
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
        embed, attachment = poem_reply(
            result,
            str(live.bundle.card.get("display_name", chosen)),
            text=poem.present(result.text),
            script=poem.script,
        )
        await interaction.edit_original_response(
            embed=embed, attachments=[attachment] if attachment else []
        )
