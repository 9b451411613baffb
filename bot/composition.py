"""The composition root: builds the Discord client and everything it serves from the settings,
and runs it until a signal stops it. Nothing imports this module but `python -m bot`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.config import Settings
from bot.discord_app.authority import Operators
from bot.discord_app.client import PoemBot, point_at
from bot.discord_app.gate import AnswerGate
from bot.discord_app.model_command import ModelGroup
from bot.discord_app.poem_command import PoemCommand
from bot.discord_app.settings_command import SettingsGroup
from bot.discord_app.throttle import Throttle
from bot.engine.registry import Registry
from bot.jobs import JobRunner
from bot.stores.channel_settings import ChannelSettingsStore, open_store
from bot.stores.corpora import CorpusStore

DATA_DIR = Path("data")

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


def build_client(
    settings: Settings,
    data_dir: Path = DATA_DIR,
    *,
    store: ChannelSettingsStore | None = None,
    client_class: type[PoemBot] = PoemBot,
    **client_options,
) -> PoemBot:
    """The bot as `settings` describe it: the registry of models, the channel settings store
    (`store`, or the one DATABASE_URL names), the job runner, the throttle, the operators, and
    the three command groups, each given what it uses."""
    data_dir = Path(data_dir)
    registry = Registry(
        settings.models_dir, settings.providers, settings.limits, settings.precision
    )
    store = store if store is not None else open_store(settings.database_url)
    jobs = JobRunner(registry, data_dir / "runs", settings.retrain_timeout)
    corpora = CorpusStore(data_dir / "corpora", settings.max_corpus_bytes)
    throttle = Throttle(settings.user_cooldown, settings.channel_concurrency)
    operators = Operators(settings.admin_ids)
    gate = AnswerGate()
    commands = [
        PoemCommand(settings, registry, store, throttle, gate).command(),
        SettingsGroup(settings, registry, store),
        ModelGroup(registry, jobs, operators, corpora),
    ]
    return client_class(
        registry=registry,
        store=store,
        jobs=jobs,
        operators=operators,
        gate=gate,
        commands=commands,
        guild_ids=settings.guild_ids,
        **client_options,
    )


def run(settings: Settings) -> int:
    """`python -m bot`: log in with the token and serve until SIGTERM or SIGINT."""
    if not settings.discord_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    point_at(settings.api_base_url, settings.gateway_url)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    return await build_client(settings).serve(settings.discord_token)
