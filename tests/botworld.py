"""A bot under test: tiny bundles in a temporary models folder, the real PoemBot, the loopback
Discord with one guild of users in the roles a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.composition import build_client
from bot.config import Settings
from bot.discord_app.client import PoemBot
from bot.discord_app.words import WORDS
from bot.engine.scheduler import Limits
from bot.stores.channel_settings import ChannelSettingsStore

from .bundles import FIXTURES, make_bundle
from .loopback import (
    Channel,
    Guild,
    LoopbackDiscord,
    Member,
    Permission,
    Upload,
    User,
    point_discord_py_at,
    run_bot,
)

T = TypeVar("T")

TOKEN = "MTIz.loopback.token-for-tests"
ROOT = Path(__file__).resolve().parent.parent


def asynchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function in its own event loop."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def make_models(root: Path) -> Path:
    """Two styles: English `verse` (two versions) and Chinese `tang`."""
    models = root / "models"
    make_bundle(models, "verse", "v1", seed=1, val_loss=2.0, scale=2.0)
    make_bundle(models, "verse", "v2", seed=2, val_loss=1.9, scale=2.0)
    (models / "verse" / "ACTIVE").write_text("v1\n")
    tang = (FIXTURES / "tang_excerpt.txt").read_text(encoding="utf-8")
    make_bundle(models, "tang", "v1", text=tang, seed=3, scale=2.0)
    return models


def make_settings(root: Path, models: Path, **changes: Any) -> Settings:
    base = Settings(
        discord_token=TOKEN,
        models_dir=models,
        database_url=f"sqlite:///{root / 'data' / 'settings.sqlite3'}",
        providers="cpu",
        limits=Limits(max_length=5000, max_prompt=500),
        default_style="verse",
        user_cooldown=0.0,
        channel_concurrency=1000,
        retrain_timeout=300.0,
    )
    return dataclasses.replace(base, **changes)


class LoopbackPoemBot(PoemBot):
    """The real bot, minus discord.py's 5-second pause before re-identifying (kept in
    production to respect Discord's identify rate limit; pointless against the loopback)."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


@dataclass
class World:
    discord: LoopbackDiscord
    bot: PoemBot
    guild: Guild
    channel: Channel
    member: Member  # no special permissions
    moderator: Member  # Manage Channels
    admin: Member  # guild Administrator, not a bot operator
    operator: Member  # the application owner
    root: Path

    async def poem(self, options: dict[str, Any] | None = None, user: Member | None = None):
        record = await self.discord.invoke(
            self.guild, self.channel, user or self.member, "poem", options or {}
        )
        return record, await record.final(timeout=30)

    async def add_style(self, name: str, data: bytes, filename: str = "corpus.txt", **options):
        """An operator runs /model add with `data` uploaded as the corpus."""
        return await self.discord.invoke(
            self.guild,
            self.channel,
            self.operator,
            "model",
            {"name": name, "corpus": Upload(filename, data), **options},
            subcommand="add",
        )

    async def run(self, command: str, user: Member, options=None, subcommand=None, **kw):
        timeout = kw.pop("timeout", 30)
        record = await self.discord.invoke(
            self.guild, self.channel, user, command, options or {}, subcommand=subcommand, **kw
        )
        return record, await record.final(timeout=timeout)


WRITING = tuple(WORDS["writing"].values())


def still_writing(message) -> bool:
    """Whether a reply is a poem still being written: its "writing…" marker (any language) as
    an embed's footer or as the subtext line that ends a plain-text reply, never merely inside
    text that quotes it (a refusal naming what the user typed)."""
    footers = [(e.get("footer") or {}).get("text", "") for e in message.embeds]
    last = message.content.rsplit("\n", 1)[-1]
    return any(f == m for f in footers for m in WRITING) or any(last == f"-# {m}" for m in WRITING)


def job_text(record) -> str:
    """Everything the bot has said so far in answer to a /model add or retrain."""
    return " ".join(m.content for m in record.messages)


def buttons(message) -> dict[str, str]:
    """label -> custom_id of the message's buttons."""
    return {
        b["label"]: b["custom_id"]
        for row in message.components
        for b in row.get("components") or []
    }


def footer(message) -> str:
    return message.embeds[0]["footer"]["text"]


def footer_seed(message) -> int:
    return int(re.search(r"seed (\d+)", footer(message)).group(1))


@contextlib.asynccontextmanager
async def bot_world(
    root: Path,
    settings: Settings | None = None,
    discord: LoopbackDiscord | None = None,
    store: ChannelSettingsStore | None = None,
) -> AsyncIterator[World]:
    models = root / "models"
    if not models.exists():
        make_models(root)
    settings = settings or make_settings(root, models)
    async with contextlib.AsyncExitStack() as stack:
        if discord is None:
            discord = await stack.enter_async_context(LoopbackDiscord(token=TOKEN))
        discord.state.signal.in_progress = still_writing  # final(): the poem once finished
        guilds = list(discord.state.guilds.values())
        guild = guilds[0] if guilds else discord.add_guild("Poets")
        world = World(
            discord=discord,
            bot=None,  # type: ignore[arg-type]
            guild=guild,
            channel=guild.channel("general"),
            member=_member(discord, guild, "reader", 0),
            moderator=_member(discord, guild, "moderator", Permission.MANAGE_CHANNELS),
            admin=_member(discord, guild, "admin", Permission.ADMINISTRATOR),
            # The owner administers the guild too: Discord shows /model to administrators only.
            operator=_member(discord, guild, "operator", Permission.ADMINISTRATOR),
            root=root,
        )
        discord.set_owner(world.operator.user)
        stack.enter_context(point_discord_py_at(discord))
        world.bot = build_client(
            settings,
            data_dir=root / "data",
            store=store,
            client_class=LoopbackPoemBot,
            guild_ready_timeout=0.05,
        )
        await stack.enter_async_context(run_bot(world.bot, discord, timeout=20))
        yield world


class WorldThread:
    """A bot world whose event loop runs in a thread of its own, so that synchronous tests
    (hypothesis properties) reuse one world across many examples: `run` waits for a coroutine
    run there."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.world: World = None  # type: ignore[assignment]

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextlib.contextmanager
def world_thread(root: Path, settings: Settings | None = None) -> Iterator[WorldThread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bot-world", daemon=True)
    thread.start()
    running = WorldThread(loop)
    stack = contextlib.AsyncExitStack()
    try:
        running.world = running.run(stack.enter_async_context(bot_world(root, settings)))
        yield running
    finally:
        running.run(stack.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _member(discord: LoopbackDiscord, guild: Guild, name: str, permissions: int) -> Member:
    existing = next((m for m in guild.members.values() if m.user.name == name), None)
    if existing is not None:
        return existing
    user: User = discord.add_user(name)
    roles = [guild.add_role(f"{name}-role", permissions)] if permissions else []
    return guild.add_member(user, roles)


@dataclass
class BotProcess:
    """`python -m bot` running as an operator runs it, its log read while it runs (a full pipe
    would block its logging)."""

    process: asyncio.subprocess.Process
    output: asyncio.Task[bytes]

    async def log(self) -> str:
        """Everything the bot wrote, once it has exited."""
        return (await self.output).decode()


@contextlib.asynccontextmanager
async def bot_process(
    cwd: Path,
    discord: LoopbackDiscord,
    env: dict[str, str],
    timeout: float = 60.0,
    wait: bool = True,
    args: tuple[str, ...] = (),
) -> AsyncIterator[BotProcess]:
    """Start the bot configured only by environment variables (`env` on top of this process's
    own, the two Discord URLs pointing at `discord`), `python -m bot *args`; yield once it is
    connected (every shard, unless not `wait`); kill it on exit if it is still running."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DISCORD")},
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE_URL": discord.rest_url,
        "DISCORD_GATEWAY_URL": discord.gateway_url,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = BotProcess(process, asyncio.create_task(process.stdout.read()))
    try:
        if wait:
            await discord.wait_until_connected(timeout=timeout)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
