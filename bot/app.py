"""The Discord client: start-up, command sync, operator checks, error replies, `run`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import yarl
from discord import app_commands

from bot.bundle import check_name
from bot.channel_settings import ChannelSettingsStore, open_store
from bot.config import Settings
from bot.jobs import JobRunner
from bot.model_commands import ModelGroup
from bot.poem_commands import SettingsGroup, UserError, make_poem_command, send_private
from bot.registry import Registry
from bot.replies import NO_MENTIONS, quoted
from bot.throttle import Throttle
from training.corpus import KNOWN_CORPORA, CorpusError, decode_text

log = logging.getLogger(__name__)

DATA_DIR = Path("data")
MIN_CORPUS_CHARS = 2000
SHUTDOWN_GRACE_SECONDS = 60

NO_TOKEN = """\
DISCORD_TOKEN is not set, so the bot cannot log in.

1. Open https://discord.com/developers/applications and create an application (New
   Application), then on its Bot page press Reset Token and copy the token.
2. Put it in a file named .env next to the Makefile:   DISCORD_TOKEN=your-token
   (see .env.example for every other setting).
3. The bot needs no privileged intents. Invite it with the OAuth2 URL generator: scopes
   `bot` and `applications.commands`; bot permissions Send Messages, Embed Links and
   Attach Files.
4. Optional: DISCORD_GUILD_IDS=<your server id> makes the commands appear there at once.
"""


class PoemBot(discord.Client):
    def __init__(self, settings: Settings, data_dir: Path = DATA_DIR, **client_options) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **client_options)
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self.on_command_error
        self.registry = Registry(
            settings.models_dir, settings.providers, settings.limits, settings.precision
        )
        self.jobs = JobRunner(self.registry, self.data_dir / "runs", settings.retrain_timeout)
        self.store: ChannelSettingsStore | None = None
        self.throttle = Throttle(settings.user_cooldown, settings.channel_concurrency)
        self._operators: set[int] = set(settings.admin_ids)
        self.stopping = False
        self._answering = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def setup_hook(self) -> None:
        for note in await self.registry.reload():
            log.info("models: %s", note)
        for style in self.registry.styles():
            live = self.registry.live(style)
            log.info("style %s: live %s on %s", style, live.version, live.provider)
        if not self.registry.styles():
            log.warning("no style could be loaded from %s", self.settings.models_dir)
        self.store = open_store(self.settings.database_url)
        info = await self.application_info()
        if info.team:
            self._operators.update(m.id for m in info.team.members)
        elif info.owner:
            self._operators.add(info.owner.id)
        self.tree.add_command(make_poem_command(self))
        self.tree.add_command(SettingsGroup(self))
        self.tree.add_command(ModelGroup(self))
        if self.settings.guild_ids:
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (they may take a while to appear)", len(synced))

    async def is_operator(self, user: discord.abc.User) -> bool:
        return user.id in self._operators

    def default_style(self) -> str | None:
        live = self.registry.styles()
        if self.settings.default_style in live:
            return self.settings.default_style
        return live[0] if live else None

    def corpus_for(self, style: str, card: dict) -> str:
        """The corpus a retrain of `style` reads: an uploaded one, else the known corpus."""
        uploaded = self.corpus_path(style)
        if uploaded.is_file():
            return str(uploaded)
        name = card.get("corpus", {}).get("name", "")
        if name in KNOWN_CORPORA:
            return name
        raise UserError(f"The corpus of {style} is not on this machine; use /model add instead.")

    def corpus_path(self, style: str) -> Path:
        return self.data_dir / "corpora" / f"{check_name(style, 'style')}.txt"

    async def save_corpus(self, style: str, attachment: discord.Attachment) -> Path:
        """Download an uploaded corpus and keep it if it is usable text; UserError if not."""
        limit = self.settings.max_corpus_bytes
        if attachment.size > limit:
            raise UserError(f"The file is {attachment.size:,} bytes; the limit is {limit:,}.")
        data = await attachment.read()
        if len(data) > limit:
            raise UserError(f"The file is {len(data):,} bytes; the limit is {limit:,}.")
        try:
            text = decode_text(data, quoted(attachment.filename))
        except CorpusError as err:
            raise UserError(str(err)) from None
        if len(text.strip()) < MIN_CORPUS_CHARS:
            raise UserError(
                f"The file holds {len(text.strip()):,} characters; a style needs at least "
                f"{MIN_CORPUS_CHARS:,} to learn from."
            )
        path = self.corpus_path(style)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    async def on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
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

    @contextlib.asynccontextmanager
    async def answering(self) -> AsyncIterator[None]:
        """Around a command that writes: refused once stopping, waited for by `close`."""
        if self.stopping:
            raise UserError("I'm restarting; try again in a minute.")
        self._answering += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                self._idle.set()

    async def close(self) -> None:
        """Finish the answers being written (bounded), then stop jobs, models and the store."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), SHUTDOWN_GRACE_SECONDS)
        except asyncio.TimeoutError:
            log.warning(
                "%d answers still unfinished after %d s; stopping anyway",
                self._answering,
                SHUTDOWN_GRACE_SECONDS,
            )
        await self.jobs.close()
        await self.registry.close()
        if self.store is not None:
            await self.store.close()
        await super().close()


def point_at(api_base_url: str, gateway_url: str) -> None:
    """Send REST and Gateway traffic to a proxy (or a test server). discord.py reads both
    class attributes on every request and connection."""
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def run(settings: Settings) -> int:
    if not settings.discord_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    point_at(settings.api_base_url, settings.gateway_url)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    bot = PoemBot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(bot.start(settings.discord_token))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        stopper.cancel()
        try:
            runner.result()
        except discord.LoginFailure:
            log.error("Discord refused the token: check DISCORD_TOKEN")
            return 2
        return 0
    log.info("stopping: finishing poems in flight")
    await bot.close()
    runner.cancel()
    return 0
