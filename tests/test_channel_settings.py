"""The channel-settings store: the same behaviour on SQLite and PostgreSQL (one code path), and
what happens when the database goes away."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator

import pytest

from bot.config import ConfigError, Settings
from bot.stores.channel_settings import (
    CHANGED,
    ChannelSettings,
    PoemRecord,
    SettingsUnavailable,
    SQLChannelSettings,
    check_database_url,
    open_store,
    postgres_backend,
    sqlite_backend,
)

from .botworld import asynchronous, bot_world, buttons, footer, make_models, make_settings
from .postgres import PostgresServer

BIG = 2**63 - 1  # Discord ids are 64-bit: PostgreSQL's INTEGER would overflow


@asynchronous
async def test_settings_are_kept_per_channel_and_across_restarts(database_url):
    store = open_store(database_url)
    try:
        assert await store.get(BIG) == ChannelSettings()
        await store.update(BIG, BIG, temperature=0.7)
        await store.update(BIG, BIG, style="tang")
        await store.update(2, 1, temperature=1.3)
        assert await store.get(BIG) == ChannelSettings(0.7, "tang")  # 0.7 exactly, not 0.699…
        await store.update(BIG, BIG, temperature=0.9, style=None)
        assert await store.get(BIG) == ChannelSettings(0.9, None)
    finally:
        await store.close()
    store = open_store(database_url)  # a restart
    try:
        assert await store.get(BIG) == ChannelSettings(0.9, None)
        await store.reset(BIG)
        assert await store.get(BIG) == ChannelSettings()
        assert await store.get(2) == ChannelSettings(1.3, None)
        with pytest.raises(ValueError, match="no channel setting named colour"):
            await store.update(2, 1, colour="red")
    finally:
        await store.close()


@asynchronous
async def test_poems_buttons_records_are_kept_across_restarts_and_forgotten_when_old(
    database_url,
):
    poem = PoemRecord(BIG, BIG, BIG - 1, "tang", "v3", {"form": "qijue", "seed": 2**53 - 1}, "春")
    store = open_store(database_url)
    try:
        await store.update(5, 5, format="text")
        assert (await store.get(5)).format == "text"
        await store.remember_poem(poem)
        assert await store.recall_poem(BIG) == poem
        assert await store.recall_poem(7) is None
        with pytest.raises(SettingsUnavailable):  # one id, one poem
            await store.remember_poem(poem)
    finally:
        await store.close()
    store = open_store(database_url)  # a restart keeps it
    try:
        assert await store.recall_poem(BIG) == poem
    finally:
        await store.close()
    store = SQLChannelSettings(open_store(database_url).backend, poem_days=-1)
    try:  # opened with a retention that every poem is past: deleted when it connects
        assert await store.recall_poem(BIG) is None
        assert (await store.get(5)).format == "text"  # settings are not poems
    finally:
        await store.close()


@asynchronous
async def test_a_settings_file_from_before_the_format_column_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE channel_settings (channel_id INTEGER PRIMARY KEY, guild_id INTEGER "
        "NOT NULL, temperature REAL, style TEXT, updated_at TIMESTAMP NOT NULL DEFAULT "
        "CURRENT_TIMESTAMP)"
    )
    old.execute(
        "INSERT INTO channel_settings (channel_id, guild_id, temperature) VALUES (1, 1, 0.5)"
    )
    old.commit()
    old.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert await store.get(1) == ChannelSettings(0.5, None, None)
        await store.update(1, 1, format="text")
        assert await store.get(1) == ChannelSettings(0.5, None, "text")
    finally:
        await store.close()


@asynchronous
async def test_an_unreachable_postgres_fails_at_once_then_recovers():
    server = PostgresServer()
    try:
        url = server.new_database("faults")
        store = SQLChannelSettings(postgres_backend(url), retry_after=0.5)
        await store.update(5, 1, temperature=1.2)
        server.stop()

        started = time.monotonic()
        with pytest.raises(SettingsUnavailable, match="cannot be read"):
            await store.get(5)  # the open connection is found dead
        with pytest.raises(SettingsUnavailable, match="cannot be reached"):
            await store.get(5)  # reconnecting is refused
        with pytest.raises(SettingsUnavailable, match="a moment ago"):
            await store.update(5, 1, temperature=0.3)  # no new attempt for a while
        assert time.monotonic() - started < 3  # well inside Discord's 3 s, however it fails

        server.start()
        await asyncio.sleep(0.6)
        assert await store.get(5) == ChannelSettings(1.2, None)  # the failed write changed nothing
        await store.close()
    finally:
        server.close()


@asynchronous
async def test_a_sqlite_file_that_cannot_be_made_is_reported_not_raised(tmp_path):
    (tmp_path / "data").write_text("a file where the folder should be")
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'settings.sqlite3'}")
    with pytest.raises(SettingsUnavailable, match="cannot be reached"):
        await store.get(1)
    with pytest.raises(SettingsUnavailable, match="a moment ago"):
        await store.update(1, 1, temperature=0.5)
    await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/poembot.sqlite3",
        "sqlite:////var/lib/poembot/settings.db",
        "postgresql://poembot:secret@db.example:5432/poembot",
        "postgres://db.example/poembot",
        "postgresql:///poembot",
        "postgresql://?host=/var/run/postgresql&dbname=poembot",
    ],
)
def test_database_urls_the_bot_can_use_are_taken(url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url)
    assert Settings.from_env().database_url == url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///",
        "mysql://user@host/db",
        "postgresql://",
        "data/poembot.sqlite3",
        "",
    ],
)
def test_a_database_url_the_bot_cannot_use_is_refused_at_start(url, monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "x")
    monkeypatch.setenv("DATABASE_URL", url or " ")
    if url == "":  # blank means the default
        assert Settings.from_env().database_url == Settings.database_url
        return
    with pytest.raises(ConfigError, match=r"sqlite:///path/to/file\.db"):
        Settings.from_env()
    with pytest.raises(ValueError):
        check_database_url(url)


@asynchronous
async def test_the_bot_answers_when_postgres_is_down(tmp_path):
    server = PostgresServer()
    try:
        url = server.new_database("down")
        settings = make_settings(tmp_path, make_models(tmp_path), database_url=url)
        async with bot_world(tmp_path, settings=settings) as w:
            await w.run("settings", w.moderator, {"value": 1.3}, subcommand="temperature")
            server.stop()
            record, reply = await w.run(
                "settings", w.moderator, {"value": 0.4}, subcommand="temperature"
            )
            assert (await record.first_response()).latency < 3
            assert reply.ephemeral and "can't be saved right now" in reply.content
            _, message = await w.poem({"style": "verse", "length": 30})
            assert "temperature 1.3" in footer(message)  # the last known settings
            # The poem came with its buttons; with nowhere to keep what they need, they are
            # taken off again rather than left to fail when pressed.
            assert message.versions[0].body.get("components")
            await w.discord.wait_for(lambda: not message.components, 15, "buttons taken off")
            assert not w.discord.violations
    finally:
        server.close()


async def poems_until(w, wanted: str, timeout: float = 30.0) -> None:
    """/poem again and again until its footer shows `wanted`; fails after `timeout` seconds
    (generous: what is waited for is a notification, milliseconds on a quiet machine)."""
    deadline = time.monotonic() + timeout
    while True:
        _, message = await w.poem({"style": "verse", "length": 30})
        if wanted in footer(message):
            return
        assert time.monotonic() < deadline, (
            f"{wanted!r} not shown in {timeout} s: {footer(message)}"
        )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@asynchronous
async def test_a_settings_change_is_seen_at_once_here_soon_from_elsewhere_and_after_a_reconnect(
    tmp_path, database_url
):
    """The next /poem here uses a change made here at once; one another process makes, once
    its notification arrives; one nothing announced, once the listener has reconnected."""
    import psycopg

    settings = make_settings(tmp_path, make_models(tmp_path), database_url=database_url)
    async with bot_world(tmp_path, settings=settings) as w:
        for value in (0.5, 1.1):  # the second replaces what the first left in the cache
            await w.run("settings", w.moderator, {"value": value}, subcommand="temperature")
            _, message = await w.poem({"style": "verse", "length": 30})
            assert f"temperature {value:g}" in footer(message)
        other = open_store(database_url)  # what another bot process writes with
        try:
            await other.update(w.channel.id, w.guild.id, temperature=1.7)
            await poems_until(w, "temperature 1.7")
            await other.reset(w.channel.id)
            await poems_until(w, f"temperature {settings.default_temperature:g}")
            await other.update(w.channel.id, w.guild.id, temperature=0.5)
            await poems_until(w, "temperature 0.5")
        finally:
            await other.close()
        await w.poem({"style": "verse", "length": 30})  # read again if need be: now trusted

        def behind_its_back() -> int:
            with psycopg.connect(database_url, autocommit=True) as db:
                # A change no notification announces (made by hand, say), then the bot's
                # listener cut off: it cannot know what it missed.
                db.execute(
                    "UPDATE channel_settings SET temperature = 1.9 WHERE channel_id = %s",
                    (w.channel.id,),
                )
                cut = db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                    (f"LISTEN {CHANGED}",),
                )
                return len(cut.fetchall())

        assert await asyncio.to_thread(behind_its_back) == 1
        await poems_until(w, "temperature 1.9")


STALLS = ["sqlite write lock", "postgresql table lock", "postgresql paused"]


@contextlib.contextmanager
def stalled(stall: str, url: str, server: PostgresServer | None) -> Iterator[None]:
    """The settings database held up: SQLite's write lock taken by another connection,
    PostgreSQL's settings table locked by another session, or the PostgreSQL server stopped."""
    if stall == "sqlite write lock":
        blocker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    elif stall == "postgresql table lock":
        import psycopg

        with psycopg.connect(url) as locker:
            locker.execute("LOCK TABLE channel_settings IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                locker.rollback()
    else:
        server.pause()
        try:
            yield
        finally:
            server.resume()


@pytest.mark.parametrize("stall", STALLS)
@asynchronous
async def test_poems_are_acknowledged_in_time_with_the_last_known_settings_when_the_db_stalls(
    tmp_path, stall, request, caplog
):
    store, server = None, None
    if stall.startswith("sqlite"):
        path = tmp_path / "data" / "settings.sqlite3"
        url = f"sqlite:///{path}"
        store = SQLChannelSettings(sqlite_backend(path, timeout=120))  # waits out any lock
    else:
        server = request.getfixturevalue("postgres")
        url = server.new_database(f"stall_{STALLS.index(stall)}")
    settings = make_settings(tmp_path, make_models(tmp_path), database_url=url)
    async with bot_world(tmp_path, settings=settings, store=store) as w:
        unread = w.guild.add_text_channel("unread")
        await w.run("settings", w.moderator, {"value": 0.5}, subcommand="temperature")
        _, poem = await w.poem({"style": "verse", "length": 30})
        with stalled(stall, url, server):
            # A change under way (or refused): what the cache holds is no longer trusted, and
            # the database is asked, in vain.
            change = await w.discord.invoke(
                w.guild,
                w.channel,
                w.moderator,
                "settings",
                {"value": 1.5},
                subcommand="temperature",
            )
            await change.first_response(timeout=10)
            record, message = await w.poem({"style": "verse", "length": 30})
            first = await record.first_response()
            assert first.type == 5 and first.latency < 3
            assert "temperature 0.5" in footer(message)  # the last known settings
            record = await w.discord.invoke(w.guild, unread, w.member, "poem", {"length": 30})
            message = await record.final(timeout=30)
            assert (await record.first_response()).latency < 3
            assert f"temperature {settings.default_temperature:g}" in footer(message)
            assert f"channel {unread.id}: settings unavailable" in caplog.text
            assert "using the defaults" in caplog.text
            # Again waits for the poem's record (kept beside the settings) after deferring.
            record = await w.discord.press(poem, buttons(poem)["Again"], w.member)
            first = await record.first_response()
            assert first.type == 5 and first.latency < 3
            again = await record.final(timeout=30)
            assert (again.ephemeral and "can't read this poem's options" in again.content) or (
                "temperature 0.5" in footer(again)
            ), again.content
        reply = await change.final(timeout=30)
        saved = "temperature 1.5" in reply.content
        # PostgreSQL's lock_timeout refuses the write; SQLite's (here) and a paused server's
        # connection wait for it. Either way the next /poem keeps to what the moderator was told.
        assert saved == (stall != "postgresql table lock"), reply.content
        _, message = await w.poem({"style": "verse", "length": 30})
        assert f"temperature {1.5 if saved else 0.5}" in footer(message)
        assert not w.discord.violations
