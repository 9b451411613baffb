"""The two things tests do to discord.py itself: point it at the fake, and run a bot there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

import discord
import discord.gateway
import discord.http
import yarl

from .fake import LoopbackDiscord


class DiscordPyTarget:
    """Where discord.py pointed before `point_discord_py_at`; `restore()` (or leaving a `with`
    block) puts it back. Both URLs are process-global class attributes."""

    def __init__(self, rest_base: str, gateway: yarl.URL) -> None:
        self.rest_base = rest_base
        self.gateway = gateway

    def restore(self) -> None:
        discord.http.Route.BASE = self.rest_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self.gateway

    def __enter__(self) -> DiscordPyTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def point_discord_py_at(fake: LoopbackDiscord) -> DiscordPyTarget:
    """Send discord.py's REST calls and Gateway connections to `fake`. The attributes are
    set, not subclassed: discord.py's webhook code imports `Route` by name."""
    previous = DiscordPyTarget(
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    )
    discord.http.Route.BASE = fake.rest_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    return previous


@contextlib.asynccontextmanager
async def run_bot(
    bot: discord.Client, fake: LoopbackDiscord, *, timeout: float = 10.0
) -> AsyncIterator[discord.Client]:
    """Start `bot` with the fake's token, wait for its on_ready, and close it on exit.

    A bot that dies before it is ready raises its own error here; one that dies during the
    block (a KeyError in the Gateway loop, say) raises it when the block ends.
    """
    task = asyncio.create_task(bot.start(fake.token), name="loopback-bot")

    async def ready() -> None:
        await fake.wait_until_connected(timeout)
        await bot.wait_until_ready()

    waiter = asyncio.ensure_future(ready())
    done, _ = await asyncio.wait(
        {waiter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    try:
        if task in done:
            task.result()
            raise RuntimeError("the bot stopped before it was ready")
        if waiter not in done:
            raise TimeoutError(f"the bot was not ready after {timeout} s")
        waiter.result()
        yield bot
    finally:
        waiter.cancel()
        await bot.close()
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()
