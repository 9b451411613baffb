"""`/poem`, for everyone: acknowledged at once, then options checked, the channel's defaults
and the throttle applied, the poem written by the live model and streamed into the reply, with
Again and Continue buttons under it; and the message menu "Write a poem from this"."""

# No `from __future__ import annotations`: discord.py reads the option annotations, and the
# bounds in them come from the settings, read when `PoemCommand.command` builds it.
import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.config import Settings
from bot.discord_app.errors import UserError, refuse_after_defer
from bot.discord_app.gate import CUTOFF_SECONDS, AnswerGate
from bot.discord_app.live_reply import LiveReply
from bot.discord_app.replies import (
    escape,
    poem_reply,
    quoted,
    text_reply,
    writing_embed,
    writing_text,
)
from bot.discord_app.styles import default_style, style_choices
from bot.discord_app.words import say
from bot.engine.registry import Live, Registry, UnknownStyle
from bot.engine.scheduler import Busy, Generation, Request
from bot.forms import catalog, themes
from bot.forms.rules import FormError
from bot.poems import MAX_SEED, PoemOptions, plan_poem, plan_request
from bot.stores.channel_settings import ChannelSettings, PoemRecord, SettingsUnavailable
from bot.stores.settings_cache import ChannelSettingsCache
from bot.throttle import Slot, Throttle, Throttled

log = logging.getLogger(__name__)

MAX_TEMPERATURE = 2.0
REMEMBER_SECONDS = 10.0  # a poem whose buttons' record takes longer to save loses its buttons
RECALL_SECONDS = 2.0  # a press whose poem takes longer to find is told to try again
MENU_NAME = "Write a poem from this"


class PoemCommand:
    """`/poem`, bound to what it writes with: the settings' limits and defaults, the registry
    of live models, the channel settings, the throttle and the shutdown gate."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ChannelSettingsCache,
        throttle: Throttle,
        gate: AnswerGate,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.throttle = throttle
        self.gate = gate
        self._buttons = (
            _poem_button(self, "again", "🔁", again=True),
            _poem_button(self, "more", "➡️", again=False),
        )

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
            about="what the poem is about: up to 5 words or 12 Chinese characters; - for none",
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
            about: app_commands.Range[str, 1, themes.MAX_TYPED] | None = None,
        ) -> None:
            """Write a poem or lyrics in one of the bot's styles."""
            options = PoemOptions(
                style, prompt or "", length, temperature, seed, form, acrostic, script, about=about
            )
            await self.serve(interaction, lambda: self.write(interaction, options))

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

    def menu(self) -> app_commands.ContextMenu:
        """The message menu "Write a poem from this": the message's text, what the style knows
        of it, begins the poem (or, too long for the form's opening, is read before it)."""

        async def from_message(interaction: discord.Interaction, message: discord.Message):
            await self.serve(interaction, lambda: self.write_from(interaction, message))

        return app_commands.ContextMenu(name=MENU_NAME, callback=from_message)

    def buttons(self) -> tuple[type[discord.ui.DynamicItem], ...]:
        """The Again and Continue buttons, as dynamic items: discord.py matches a press by its
        custom_id, so they work on any poem ever sent, across restarts."""
        return self._buttons

    def _view(self, poem_id: int, locale: discord.Locale) -> discord.ui.View:
        view = discord.ui.View(timeout=None)
        for button, key in zip(self._buttons, ("again", "continue"), strict=True):
            view.add_item(button(poem_id, say(locale, key)))
        # Presses are matched by the dynamic items' templates, not by this view: stopped, it is
        # not kept in discord.py's view store for every poem ever sent.
        view.stop()
        return view

    async def serve(
        self, interaction: discord.Interaction, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Do `work` for a request of a poem: refused at once, privately and with one call,
        when the throttle refuses it (a check in memory, before anything that may wait: no
        public "thinking…" that comes and goes); else acknowledged publicly first."""
        try:
            self.throttle.check(interaction.user.id, interaction.channel_id or 0)
        except Throttled as err:
            text = _throttled(err).text(interaction.locale)
            await interaction.response.send_message(text, ephemeral=True)
            return
        async with acknowledged(interaction), self.gate.answering():
            await work()

    async def press(self, interaction: discord.Interaction, poem_id: int, again: bool) -> None:
        """Again (a new seed, the same options) or Continue (a new poem after this one's end),
        as a reply to the poem; errors reach the presser privately, in their language."""
        await self.serve(interaction, lambda: self._pressed(interaction, poem_id, again))

    async def _pressed(self, interaction: discord.Interaction, poem_id: int, again: bool) -> None:
        try:
            try:
                record = await asyncio.wait_for(self.store.recall_poem(poem_id), RECALL_SECONDS)
            except (SettingsUnavailable, asyncio.TimeoutError):
                raise UserError("poem-unavailable") from None
            if record is None:
                raise UserError("poem-forgotten")
            options = PoemOptions.from_json(record.options)
            if again:
                options = dataclasses.replace(options, seed=None)
            else:
                cap = self.settings.limits.max_length + self.settings.limits.max_prompt
                context = f"{options.context}{record.text}"[-cap:]
                options = dataclasses.replace(
                    options, prompt="", acrostic=None, seed=None, context=context
                )
            options = dataclasses.replace(options, style=record.style)
            note = None
            live = (
                self.registry.live(record.style) if record.style in self.registry.styles() else None
            )
            if live is not None and live.version != record.version:
                note = say(interaction.locale, "not-live", live=live.version, old=record.version)
            heading = None if again else say(interaction.locale, "continued")
            await self.write(interaction, options, note=note, heading=heading)
        except UserError:
            raise
        except Exception:
            log.exception("button %s on poem %d failed", "again" if again else "more", poem_id)
            raise UserError("went-wrong") from None

    async def write_from(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message menu: the channel's style and temperature; the message's text (what
        the style knows of it) as the prompt, or read before the poem when it does not fit."""
        saved = await self.store.current(interaction.channel_id or 0)
        chosen = self._style(saved.style)
        live = self.registry.live(chosen)
        text = catalog.known_text(live.bundle.vocab.chars, message.content or "")
        if not text.strip():
            raise UserError("empty-message", style=chosen)
        limits = self.settings.limits
        note = say(interaction.locale, "from-message", author=escape(message.author.display_name))
        prompt = text[: limits.max_prompt]
        try:
            plan_request(self.settings, live, prompt=prompt)
            options = PoemOptions(style=chosen, prompt=prompt)
        except FormError:
            # Too long (or the wrong shape) to begin the form: the model reads it first.
            context = text[-(limits.max_length + limits.max_prompt) :]
            options = PoemOptions(style=chosen, context=context)
        await self.write(interaction, options, heading=note)

    def _style(self, asked: str | None) -> str:
        chosen = asked or default_style(self.registry, self.settings.default_style)
        if chosen is None:
            raise UserError("no-styles")
        if chosen not in self.registry.styles():
            known = ", ".join(self.registry.styles())
            raise UserError("no-such-style", name=quoted(chosen), known=known)
        return chosen

    async def write(
        self,
        interaction: discord.Interaction,
        options: PoemOptions,
        note: str | None = None,
        heading: str | None = None,
    ) -> None:
        """Check the options (UserError if they are unusable), write, reply; the interaction
        is acknowledged already."""
        settings, registry = self.settings, self.registry
        limits = settings.limits
        saved = await self.store.current(interaction.channel_id or 0)
        chosen = self._style(options.style or saved.style)
        temperature = options.temperature
        if temperature is None:
            temperature = saved.temperature
        if temperature is None:
            temperature = settings.default_temperature
        prompt, length, seed = options.prompt, options.length, options.seed
        if prompt and len(prompt) > limits.max_prompt:
            raise UserError("prompt-too-long", limit=limits.max_prompt)
        if length is not None and not 1 <= length <= limits.max_length:
            raise UserError("bad-length", limit=limits.max_length)
        live = registry.live(chosen)
        try:
            poem, request = plan_poem(
                settings, live, dataclasses.replace(options, temperature=temperature)
            )
        except FormError as err:
            raise UserError("form-refused", reason=escape(str(err))) from None
        if not 1 <= request.length <= limits.max_length:
            raise UserError("bad-length", limit=limits.max_length)
        if not 0.0 <= request.temperature <= MAX_TEMPERATURE:
            raise UserError("bad-temperature", limit=f"{MAX_TEMPERATURE:g}")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise UserError("bad-seed", limit=MAX_SEED)
        scheduler = live.scheduler
        if scheduler.queued >= limits.max_queue:
            raise UserError("busy", seconds=f"{scheduler.retry_after():.0f}")
        try:
            slot = self.throttle.take(
                interaction.user.id, interaction.channel_id or 0, scheduler.estimate(request)
            )
        except Throttled as err:
            raise _throttled(err) from None
        with slot:
            # A theme the bot chose is kept as the user's would be: Again and Continue write
            # about it too.
            theme = poem.theme.typed if poem.theme is not None and options.about is None else None
            asked = dataclasses.replace(options, style=chosen, about=options.about or theme)
            await self.reply(interaction, live, asked, request, poem, saved, note, heading, slot)

    async def reply(
        self,
        interaction: discord.Interaction,
        live: Live,
        asked: PoemOptions,
        request: Request,
        poem: catalog.PoemPlan,
        saved: ChannelSettings,
        note: str | None = None,
        heading: str | None = None,
        slot: Slot | None = None,
    ) -> None:
        """Write (showing the poem as it grows), and put the finished poem, or why there is
        none, in the deferred reply. The channel's `slot` is freed once the poem is written,
        before it is shown: a poem a user sees finished no longer fills the channel."""
        chosen, locale = asked.style, interaction.locale
        title = str(live.bundle.card.get("display_name", chosen))
        if heading:
            title = f"{title} · {heading}"
        as_text = saved.format == "text"

        def render(text: str) -> dict[str, Any] | None:
            if as_text:
                content = writing_text(text, locale)
                return None if content is None else {"content": content}
            embed = writing_embed(title, text, locale)
            return None if embed is None else {"embed": embed}

        stream = LiveReply(
            interaction, render, poem.present, self.settings.stream_edit_seconds, request.prompt
        )
        failure: Exception | None = None
        try:
            result = await self.registry.generate(chosen, request, listener=stream.heard)
        except (Busy, ValueError, UnknownStyle) as err:
            failure = err
        finally:
            if slot is not None:
                slot.release()
            await stream.close()  # no edit in flight from here on
        if failure is not None:
            if isinstance(failure, Busy):
                text = say(locale, "busy", seconds=f"{failure.retry_after:.0f}")
            elif isinstance(failure, UnknownStyle):
                text = say(locale, "style-removed", name=chosen)
            else:
                text = say(locale, "cannot-write", reason=failure)
            # After a public defer the answer cannot turn ephemeral: say it in the reply.
            await interaction.edit_original_response(content=text, embed=None)
            return
        # The buttons go out with the poem while what they need is saved; should saving fail,
        # they are taken off again (a press in the meantime waits behind the save: the store
        # answers in order).
        poem_id = secrets.randbits(62)
        saving = asyncio.ensure_future(self._remember(poem_id, interaction, asked, result))
        view = self._view(poem_id, locale)
        shown = poem.present(result.text)
        if as_text:
            parts, attachment = text_reply(
                result, title, shown, poem.script, locale, note, poem.about(result.text)
            )
            last = len(parts) - 1
            sent = await interaction.edit_original_response(
                content=parts[0],
                embed=None,
                attachments=[attachment] if attachment and last == 0 else [],
                view=view if last == 0 else None,
            )
            for i, part in enumerate(parts[1:], start=1):
                sent = await interaction.followup.send(
                    part,
                    file=attachment if attachment and i == last else discord.utils.MISSING,
                    view=view if i == last else discord.utils.MISSING,
                    wait=True,
                )
        else:
            embed, attachment = poem_reply(
                result, title, shown, poem.script, locale, note, poem.about(result.text)
            )
            sent = await interaction.edit_original_response(
                content=None, embed=embed, attachments=[attachment] if attachment else [], view=view
            )
        if not await saving:
            with contextlib.suppress(discord.HTTPException):
                await sent.edit(view=None)

    async def _remember(
        self,
        poem_id: int,
        interaction: discord.Interaction,
        asked: PoemOptions,
        result: Generation,
    ) -> bool:
        """Keep what the poem's buttons need; False (logged) when it cannot be kept."""
        record = PoemRecord(
            id=poem_id,
            channel_id=interaction.channel_id or 0,
            user_id=interaction.user.id,
            style=result.style,
            version=result.version,
            options=dataclasses.asdict(dataclasses.replace(asked, seed=result.seed)),
            text=result.text,
        )
        try:
            await asyncio.wait_for(self.store.remember_poem(record), REMEMBER_SECONDS)
        except (SettingsUnavailable, asyncio.TimeoutError) as err:
            log.warning("a poem's buttons were taken off: its options could not be saved (%s)", err)
            return False
        return True


def _throttled(err: Throttled) -> UserError:
    """What the user is told when the throttle refuses them."""
    if err.kind == "channel":
        return UserError("channel-full", count=err.count, seconds=err.seconds)
    return UserError("cooldown", seconds=err.seconds)


@contextlib.asynccontextmanager
async def acknowledged(interaction: discord.Interaction) -> AsyncIterator[None]:
    """Defer at once, publicly (the poem fills the reply), before anything that may wait (the
    channel's settings, a poem's record); a UserError raised inside, before the poem shows,
    is answered to the user alone instead. Cancelled (the bot stopping, the poem unfinished
    after the grace), the reply says so in place of the poem it was writing."""
    await interaction.response.defer(thinking=True)
    try:
        yield
    except UserError as err:
        await refuse_after_defer(interaction, err.text(interaction.locale))
    except asyncio.CancelledError:
        text = say(interaction.locale, "cut-by-restart")
        try:
            await asyncio.wait_for(
                interaction.edit_original_response(content=text, embed=None, view=None),
                CUTOFF_SECONDS,
            )
        except (discord.HTTPException, TimeoutError):
            log.warning("could not tell a user their poem was cut off", exc_info=True)
        raise


def _poem_button(
    command: PoemCommand, action: str, emoji: str, again: bool
) -> type[discord.ui.DynamicItem]:
    """A button class whose custom_id is `poem:<action>:<poem id>`, pressed for `command`."""

    class PoemButton(
        discord.ui.DynamicItem[discord.ui.Button], template=rf"poem:{action}:(?P<id>\d{{1,19}})"
    ):
        def __init__(self, poem_id: int, label: str = action) -> None:
            super().__init__(
                discord.ui.Button(
                    label=label,
                    emoji=emoji,
                    style=discord.ButtonStyle.secondary,
                    custom_id=f"poem:{action}:{poem_id}",
                )
            )
            self.poem_id = poem_id

        @classmethod
        async def from_custom_id(cls, interaction, item, match):
            return cls(int(match["id"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            await command.press(interaction, self.poem_id, again=again)

    PoemButton.__name__ = PoemButton.__qualname__ = f"PoemButton_{action}"
    return PoemButton
