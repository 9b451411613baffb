"""Each channel's settings kept in this process, so that a /poem seldom reads the database and
never waits long for it.

A cached value is trusted ("fresh") until something may have changed it: a write this process
makes (whose result is kept at once: a write acknowledged to a user is what the next /poem
here uses), a NOTIFY from another process that changed the channel (PostgreSQL: a LISTEN of
its own, bot/stores/postgres.py's `listen`), or a reconnection of that listener, after which
nothing cached is trusted (notifications may have been missed). An untrusted value is read
again, waiting at most `wait` seconds; a database that cannot answer in time leaves the
channel's last known settings in use (the defaults if it was never read), and says so in the
log. The store is expected to answer in the order it is asked (SQLChannelSettings does: one
worker thread), so that a read begun after a write sees it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.stores.channel_settings import (
    CHANGED,
    ChannelSettings,
    ChannelSettingsStore,
    PoemRecord,
    SettingsUnavailable,
)
from bot.stores.postgres import listen

log = logging.getLogger(__name__)

WAIT = 0.5  # seconds a /poem waits for settings it must read before using the last known ones


class ChannelSettingsCache:
    """`store` with each channel's settings cached; `listen_url` (PostgreSQL) is the database
    whose notifications say which channel another process changed."""

    def __init__(
        self, store: ChannelSettingsStore, listen_url: str | None = None, wait: float = WAIT
    ) -> None:
        self.store = store
        self.listen_url = listen_url
        self.wait = wait
        # Every change that may make a cached value wrong counts one: a read that began before
        # a change is not trusted, and a value is never replaced by one read before it.
        self._changes = 0
        self._known: dict[int, tuple[ChannelSettings, int]] = {}  # value, count it began at
        self._fresh: set[int] = set()
        self._reading: dict[int, asyncio.Future[ChannelSettings]] = {}
        self._following: asyncio.Task[None] | None = None

    async def current(self, channel_id: int) -> ChannelSettings:
        """The channel's settings: the cached ones while nothing may have changed them, else
        read (one read per channel at a time), else the last known ones or the defaults."""
        self._follow()
        if channel_id in self._fresh:
            return self._known[channel_id][0]
        try:
            return await asyncio.wait_for(asyncio.shield(self._read(channel_id)), self.wait)
        except (SettingsUnavailable, asyncio.TimeoutError) as err:
            reason = str(err) or f"no answer within {self.wait:g} s"
            known = self._known.get(channel_id)
            using = "the defaults" if known is None else "the last known ones"
            log.warning(
                "channel %d: settings unavailable (%s); using %s", channel_id, reason, using
            )
            return ChannelSettings() if known is None else known[0]

    async def update(
        self, channel_id: int, guild_id: int, **changes: float | str | None
    ) -> ChannelSettings:
        """Write through: once this returns, `current` gives what was written (or newer)."""
        begun = self._forget(channel_id)
        written = await self.store.update(channel_id, guild_id, **changes)
        self._keep(channel_id, written, begun)
        return written

    async def reset(self, channel_id: int) -> None:
        begun = self._forget(channel_id)
        await self.store.reset(channel_id)
        self._keep(channel_id, ChannelSettings(), begun)

    async def remember_poem(self, poem: PoemRecord) -> None:
        await self.store.remember_poem(poem)

    async def recall_poem(self, poem_id: int) -> PoemRecord | None:
        return await self.store.recall_poem(poem_id)

    async def close(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        await self.store.close()

    # Inside --------------------------------------------------------------------------------
    def _read(self, channel_id: int) -> asyncio.Future[ChannelSettings]:
        reading = self._reading.get(channel_id)
        if reading is None:
            reading = asyncio.ensure_future(self._fetch(channel_id))
            self._reading[channel_id] = reading
            reading.add_done_callback(lambda done: self._finished(channel_id, done))
        return reading

    async def _fetch(self, channel_id: int) -> ChannelSettings:
        begun = self._changes
        settings = await self.store.get(channel_id)
        self._keep(channel_id, settings, begun)
        return settings

    def _finished(self, channel_id: int, done: asyncio.Future[ChannelSettings]) -> None:
        if self._reading.get(channel_id) is done:
            del self._reading[channel_id]
        if not done.cancelled():
            done.exception()  # retrieved: a read every caller stopped waiting for may fail

    def _keep(self, channel_id: int, settings: ChannelSettings, begun: int) -> None:
        """Remember `settings`, as the database held them when the change count was `begun`;
        trusted only if nothing changed since."""
        known = self._known.get(channel_id)
        if known is not None and known[1] > begun:
            return  # what is known was read after this began
        self._known[channel_id] = (settings, begun)
        if begun == self._changes:
            self._fresh.add(channel_id)

    def _forget(self, channel_id: int | None = None) -> int:
        """Stop trusting one channel's cached settings (every channel's: None), and reads of
        them in flight; the change count from now on."""
        self._changes += 1
        if channel_id is None:
            self._fresh.clear()
            self._reading.clear()
        else:
            self._fresh.discard(channel_id)
            self._reading.pop(channel_id, None)
        return self._changes

    def _follow(self) -> None:
        """Start following other processes' changes, once (PostgreSQL only)."""
        if self.listen_url is None or self._following is not None:
            return
        self._following = asyncio.create_task(
            listen(
                self.listen_url,
                "",
                SettingsUnavailable,
                "channel settings' changes",
                CHANGED,
                self._heard,
            ),
            name="settings-changes",
        )

    async def _heard(self, _db: Any, payload: str | None) -> None:
        if payload is None:  # (re)connected: what changed meanwhile is unknown
            self._forget()
        elif payload.isdigit():
            self._forget(int(payload))
