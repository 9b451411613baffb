"""The Discord client: start-up (models, operators, command sync) and an orderly close.

It holds what the composition root built and hands nothing out: the commands were given what
they need when they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import discord
import yarl
from discord import app_commands

from bot.discord_app.authority import Operators
from bot.discord_app.errors import answer_error
from bot.discord_app.gate import AnswerGate
from bot.discord_app.job_messages import follow_job_messages
from bot.discord_app.replies import NO_MENTIONS
from bot.discord_app.translator import PoemTranslator
from bot.engine.heap import LoopCollector
from bot.engine.registry import Registry
from bot.stores.job_queue import JobQueue
from bot.stores.settings_cache import ChannelSettingsCache
from bot.worker import Worker

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 60

Command = app_commands.Command | app_commands.Group


class PoemBot(discord.Client):
    def __init__(
        self,
        *,
        registry: Registry,
        store: ChannelSettingsCache,
        jobs: JobQueue,
        worker: Worker | None,
        operators: Operators,
        gate: AnswerGate,
        commands: Sequence[Command | app_commands.ContextMenu],
        items: Sequence[type[discord.ui.DynamicItem]] = (),
        guild_ids: frozenset[int] = frozenset(),
        heap: LoopCollector | None = None,
        **client_options,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **client_options)
        self.registry = registry
        self.store = store
        self.jobs = jobs
        self.worker = worker  # None: `python -m bot worker`s run the jobs
        self._job_messages: asyncio.Task | None = None
        self.operators = operators
        self.gate = gate
        self.guild_ids = guild_ids
        self.items = tuple(items)
        self.heap = heap  # the process's collector (python -m bot), started once models load
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = answer_error
        for command in commands:
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        for note in await self.registry.reload():
            log.info("models: %s", note)
        for style in self.registry.styles():
            live = self.registry.live(style)
            log.info("style %s: live %s on %s", style, live.version, live.provider)
        if not self.registry.styles():
            log.warning("no style could be loaded from %s", self.registry.models_dir)
        if self.worker is not None:  # first, so that it adopts its jobs before any is reaped
            await self.worker.start()
        self._job_messages = asyncio.create_task(
            follow_job_messages(self, self.jobs), name="job-messages"
        )
        self.operators.learn(await self.application_info())
        # Buttons under poems sent by any earlier run keep working: matched by custom_id.
        self.add_dynamic_items(*self.items)
        await self.tree.set_translator(PoemTranslator())
        if self.guild_ids:
            for guild_id in self.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (they may take a while to appear)", len(synced))
        if self.heap is not None:
            self.heap.start()

    async def serve(self, token: str) -> int:
        """Log in and serve until SIGTERM or SIGINT, then close in order; the exit status (2
        when Discord refuses the token)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(self.start(token))
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
        await self.close()
        runner.cancel()
        return 0

    async def close(self) -> None:
        """Finish the answers being written (bounded), then stop jobs (a job running is
        resumed at the next start), models and the stores."""
        await self.gate.drain(SHUTDOWN_GRACE_SECONDS)
        if self.worker is not None:
            await self.worker.stop()
        if self._job_messages is not None:
            self._job_messages.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job_messages
        await self.registry.close()
        await self.store.close()
        await self.jobs.close()
        if self.heap is not None:
            await self.heap.stop()
        await super().close()


def point_at(api_base_url: str, gateway_url: str) -> None:
    """Send REST and Gateway traffic to a proxy (or a test server). discord.py reads both
    class attributes on every request and connection."""
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
