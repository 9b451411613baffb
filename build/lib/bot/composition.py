"""The composition root: builds the Discord client, the local page and everything they serve
from the settings, and runs them until a signal stops them. Nothing imports this module but
`python -m bot`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from bot.config import Settings
from bot.discord_app.authority import Operators
from bot.discord_app.client import PoemBot, point_at
from bot.discord_app.gate import AnswerGate
from bot.discord_app.model_command import ModelGroup
from bot.discord_app.poem_command import PoemCommand
from bot.discord_app.settings_command import SettingsGroup
from bot.discord_app.sharding import client_options
from bot.engine.heap import LoopCollector
from bot.engine.registry import Registry
from bot.engine.sessions import set_thread_pool_size
from bot.forms import catalog
from bot.jobs import JobRunner
from bot.stores.channel_settings import ChannelSettingsStore, open_store
from bot.stores.corpora import CorpusStore
from bot.stores.job_queue import JobQueue
from bot.stores.live_versions import SharedModels
from bot.stores.settings_cache import ChannelSettingsCache
from bot.throttle import Throttle
from bot.web.server import PoemPage, serve
from bot.worker import Worker

log = logging.getLogger(__name__)

DATA_DIR = Path("data")

DEFAULT_WEB_PORT = 8000

NO_TOKEN = """\
1. Open https://discord.com/developers/applications and create an application (New
   Application), then on its Bot page press Reset Token and copy the token.
2. Put it in a file named .env next to the Makefile:   DISCORD_TOKEN=your-token
   (see .env.example for every other setting).
3. The bot needs no privileged intents. Invite it with the OAuth2 URL generator: scopes
   `bot` and `applications.commands`; bot permissions Send Messages, Embed Links and
   Attach Files.
4. Optional: DISCORD_GUILD_IDS=<your server id> makes the commands appear there at once.
"""


def build_registry(settings: Settings) -> Registry:
    """The registry of live models the settings name (nothing loaded until `reload`); with
    PostgreSQL, its live versions and bundles are shared with every process."""
    set_thread_pool_size(settings.ort_threads)
    shared = (
        SharedModels(settings.database_url, settings.live_poll_seconds) if settings.shared else None
    )
    return Registry(
        settings.models_dir,
        settings.providers,
        settings.limits,
        settings.precision,
        shared,
        prepare=lambda bundle: catalog.prepare(bundle.card, bundle.vocab.chars, bundle.path),
    )


def build_client(
    settings: Settings,
    data_dir: Path = DATA_DIR,
    *,
    store: ChannelSettingsStore | None = None,
    client_class: type[PoemBot] = PoemBot,
    **client_options,
) -> PoemBot:
    """The bot as `settings` describe it: the registry of models, the channel settings store
    (`store`, or the one DATABASE_URL names) behind this process's cache of them (following
    the other processes' changes on PostgreSQL), the job queue in the same database and, with
    RETRAIN_WORKER=local, the worker that runs its jobs in this process, the throttle, the
    operators, and the three command groups, each given what it uses."""
    data_dir = Path(data_dir)
    registry = build_registry(settings)
    cache = ChannelSettingsCache(
        store if store is not None else open_store(settings.database_url),
        settings.database_url if settings.shared else None,
    )
    jobs = JobQueue(settings.database_url, settings.worker_heartbeat)
    worker = None  # RETRAIN_WORKER=queue: `python -m bot worker`s run the jobs
    if settings.retrain_worker == "local":
        runner = JobRunner(registry, data_dir / "runs", settings.retrain_timeout)
        worker = Worker(jobs, runner)
    corpora = CorpusStore(data_dir / "corpora", settings.max_corpus_bytes)
    throttle = Throttle(settings.user_cooldown, settings.channel_concurrency)
    operators = Operators(settings.admin_ids)
    gate = AnswerGate()
    poems = PoemCommand(settings, registry, cache, throttle, gate)
    commands = [
        poems.command(),
        poems.menu(),
        SettingsGroup(settings, registry, cache),
        ModelGroup(registry, jobs, operators, corpora),
    ]
    return client_class(
        registry=registry,
        store=cache,
        jobs=jobs,
        worker=worker,
        operators=operators,
        gate=gate,
        commands=commands,
        items=poems.buttons(),
        guild_ids=settings.guild_ids,
        **client_options,
    )


def build_page(settings: Settings, registry: Registry) -> PoemPage:
    """The local page over `registry`, with a throttle of its own (keyed by address)."""
    return PoemPage(
        settings, registry, Throttle(settings.user_cooldown, settings.channel_concurrency)
    )


def run(settings: Settings) -> int:
    """`python -m bot`: with a token, log in and serve Discord (and the page when WEB_PORT is
    set); without one, serve the page alone; until SIGTERM or SIGINT."""
    if not settings.discord_token:
        return asyncio.run(_serve_page(settings))
    point_at(settings.api_base_url, settings.gateway_url)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    heap = LoopCollector(settings.gc_seconds)
    bot = build_client(settings, heap=heap, **client_options(settings))
    runner = None
    if settings.web_port is not None:
        page = build_page(settings, bot.registry).app()
        runner = await serve(page, settings.web_host, settings.web_port)
        log.info("the poem page is at http://%s:%d/", settings.web_host, settings.web_port)
    try:
        return await bot.serve(settings.discord_token)
    finally:
        if runner is not None:
            await runner.cleanup()


async def _serve_page(settings: Settings) -> int:
    """No token: the page alone, on WEB_PORT (8000 by default)."""
    registry = build_registry(settings)
    for note in await registry.reload():
        log.info("models: %s", note)
    registry.start_following()
    port = settings.web_port or DEFAULT_WEB_PORT
    try:
        runner = await serve(build_page(settings, registry).app(), settings.web_host, port)
    except OSError as err:
        print(
            f"error: cannot serve the page on {settings.web_host}:{port} ({err}); "
            "set WEB_PORT to a free port",
            file=sys.stderr,
        )
        await registry.close()
        return 2
    heap = LoopCollector(settings.gc_seconds)
    heap.start()
    host = settings.web_host if settings.web_host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"poembot is writing poems at http://{host}:{port}/", flush=True)
    print(f"(no DISCORD_TOKEN, so Discord is off; to connect it:)\n\n{NO_TOKEN}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping the page")
    await runner.cleanup()
    await registry.close()
    await heap.stop()
    return 0
