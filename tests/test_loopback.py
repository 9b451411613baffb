"""Proves the loopback Discord against the real discord.py: a tiny bot logs in, syncs, answers
slash commands, and survives the faults later end-to-end tests of poembot will inject."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from .loopback import (
    Channel,
    Guild,
    InvocationRefused,
    LoopbackDiscord,
    Member,
    Permission,
    Upload,
    point_discord_py_at,
    run_bot,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "loopback-test-token"
STYLES = ["haiku", "limerick", "sonnet", "villanelle"]


def asynchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class RecordingTree(app_commands.CommandTree):
    """Answers permission failures the way a bot should and keeps every other error."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.MissingPermissions):
            await interaction.response.send_message("You need Manage Channels.", ephemeral=True)
            return
        self.client.errors.append(error)


def install_commands(bot: TinyBotMixin) -> None:
    """The tiny bot's commands, one per way of answering an interaction."""

    @app_commands.command()
    @app_commands.describe(style="Poem style", length="Number of lines")
    async def poem(
        interaction: discord.Interaction,
        style: str,
        length: app_commands.Range[int, 1, 12] = 4,
        temperature: app_commands.Range[float, 0.1, 2.0] = 1.0,
        rhyme: bool = False,
    ) -> None:
        """Write a poem (defers, then edits)."""
        await interaction.response.defer()
        await interaction.edit_original_response(
            content=f"{style}: {length} lines at {temperature} rhyme={rhyme}"
        )

    @poem.autocomplete("style")
    async def style_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if current == "*":
            # Deliberately more than Discord accepts.
            return [app_commands.Choice(name=f"style {i}", value=f"s{i}") for i in range(30)]
        return [app_commands.Choice(name=s, value=s) for s in STYLES if s.startswith(current)]

    @app_commands.command()
    async def ping(interaction: discord.Interaction) -> None:
        """Answer at once, privately, then follow up."""
        await interaction.response.send_message("pong", ephemeral=True)
        await interaction.followup.send("pong again")

    @app_commands.command()
    async def slow(interaction: discord.Interaction, defer: bool = False) -> None:
        """Answer only when the test releases the bot."""
        if defer:
            await interaction.response.defer()
        await bot.release.wait()
        if defer:
            await interaction.edit_original_response(content="late")
        else:
            await interaction.response.send_message("late")

    @app_commands.command()
    async def long(interaction: discord.Interaction) -> None:
        """Try to say too much, then say why it failed."""
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as error:
            await interaction.response.send_message(f"refused {error.code}")

    settings = app_commands.Group(
        name="settings",
        description="Channel settings",
        default_permissions=discord.Permissions(manage_channels=True),
        guild_only=True,
    )

    @settings.command()
    @app_commands.checks.has_permissions(manage_channels=True)
    async def temperature(
        interaction: discord.Interaction, value: app_commands.Range[float, 0.1, 2.0]
    ) -> None:
        """Set this channel's temperature."""
        await interaction.response.send_message(f"temperature set to {value}")

    @app_commands.command()
    @app_commands.guilds(bot.guild_id)
    async def verse(interaction: discord.Interaction, text: discord.Attachment) -> None:
        """Send an uploaded text back, shouted."""
        data = await text.read()
        shouted = discord.File(io.BytesIO(data.upper()), filename="verse.txt")
        await interaction.response.send_message(file=shouted)

    @app_commands.command()
    async def notice(interaction: discord.Interaction, oversized: bool = False) -> None:
        """Post a notice in the channel, then report back privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        embed = discord.Embed(title="Notice", description="y" * (4097 if oversized else 10))
        attached = discord.File(io.BytesIO(b"notice"), filename="notice.txt")
        try:
            posted = await interaction.channel.send(embed=embed, file=attached)
        except discord.HTTPException as error:
            await interaction.followup.send(f"refused {error.code}")
            return
        await posted.edit(content="edited")
        await interaction.followup.send("posted")
        extra = await interaction.followup.send("extra", wait=True)
        await extra.edit(content="extra edited")
        original = await interaction.original_response()
        await interaction.followup.send(f"original says {original.content}")
        await extra.delete()

    @app_commands.command()
    async def burst(interaction: discord.Interaction, edits: int = 8) -> None:
        """Edit the reply as fast as the library lets it."""
        await interaction.response.defer()
        for i in range(edits):
            await interaction.edit_original_response(content=f"edit {i + 1}")

    for command in (poem, ping, slow, long, notice, settings, verse, burst):
        bot.tree.add_command(command)


class TinyBotMixin:
    """What both tiny bots share: commands synced in setup_hook, no pause before IDENTIFY."""

    tree: app_commands.CommandTree

    def __init__(self, guild_id: int, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.members = True  # so the client asks for member chunks (op 8)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            guild_ready_timeout=0.1,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=RecordingTree,
            **options,
        )
        self.guild_id = guild_id
        self.release = asyncio.Event()
        self.errors: list[Exception] = []

    async def setup_hook(self) -> None:
        install_commands(self)
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every IDENTIFY but the first; Discord is local here.
        return None


class TinyBot(TinyBotMixin, commands.Bot):
    pass


class ShardedTinyBot(TinyBotMixin, commands.AutoShardedBot):
    pass


@dataclass
class Scene:
    """A running tiny bot in a guild with a reader, a moderator and an administrator."""

    fake: LoopbackDiscord
    bot: TinyBot
    guild: Guild
    reader: Member
    mod: Member
    admin: Member

    @property
    def general(self) -> Channel:
        return self.guild.channel("general")


@contextlib.asynccontextmanager
async def scene() -> AsyncIterator[Scene]:
    async with LoopbackDiscord(token=TOKEN) as fake:
        guild = fake.add_guild("Poets")
        mods = guild.add_role("mods", Permission.MANAGE_CHANNELS)
        admins = guild.add_role("admins", Permission.ADMINISTRATOR)
        reader = guild.add_member(fake.add_user("reader"))
        mod = guild.add_member(fake.add_user("mod"), [mods])
        admin = guild.add_member(fake.add_user("admin"), [admins])
        bot = TinyBot(guild.id)
        with point_discord_py_at(fake):
            async with run_bot(bot, fake):
                yield Scene(fake, bot, guild, reader, mod, admin)


@asynchronous
async def test_login_ready_and_owner_team() -> None:
    async with LoopbackDiscord(token=TOKEN) as fake:
        guild = fake.add_guild("Poets")
        alice, bob, carol = (fake.add_user(n) for n in ("alice", "bob", "carol"))
        guild.add_member(carol)
        fake.set_team([alice, bob])
        bot = TinyBot(guild.id)
        started = time.monotonic()
        with point_discord_py_at(fake):
            async with run_bot(bot, fake):
                ready_after = time.monotonic() - started
                assert bot.user.id == fake.bot.id
                assert bot.application_id == fake.application_id
                # READY, GUILD_CREATE and the member chunk (nonce echoed) all arrived.
                assert bot.get_guild(guild.id).get_member(carol.id) is not None
                assert await bot.is_owner(discord.Object(bob.id))
                assert not await bot.is_owner(discord.Object(carol.id))
        assert ready_after < 3, "on_ready stalled: chunk or guild wait not satisfied"
        (connection,) = fake.connections
        assert connection.handshake == "identify"
        assert connection.intents == bot.intents.value
        assert connection.query["v"] == "10"
        assert fake.violations == []


@asynchronous
async def test_wrong_token_is_refused() -> None:
    async with LoopbackDiscord(token=TOKEN) as fake:
        bot = TinyBot(0)
        with point_discord_py_at(fake):
            with pytest.raises(discord.LoginFailure):
                await bot.login("not-the-token")
            await bot.close()
        assert fake.requests[0].path == "/users/@me"
        assert fake.requests[0].status == 401


@asynchronous
async def test_point_discord_py_at_restores() -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    async with LoopbackDiscord() as fake:
        with point_discord_py_at(fake):
            assert fake.rest_url == discord.http.Route.BASE
            assert fake.rest_url.startswith("http://127.0.0.1:")
            assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    after = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert after == before


@asynchronous
async def test_sync_stores_schemas() -> None:
    async with scene() as s:
        fake = s.fake
        assert [g for g, _ in fake.command_syncs] == [None, s.guild.id]
        assert {c["name"] for c in fake.global_commands()} == {
            "poem",
            "ping",
            "slow",
            "long",
            "notice",
            "settings",
            "burst",
        }
        poem = fake.command("poem")
        assert poem["application_id"] == str(fake.application_id) and poem["id"] and poem["version"]
        options = {o["name"]: o for o in poem["options"]}
        assert options["style"]["type"] == 3 and options["style"]["autocomplete"]
        assert options["style"]["required"] and not options["length"]["required"]
        assert (options["length"]["type"], options["length"]["min_value"]) == (4, 1)
        assert options["length"]["max_value"] == 12
        assert (options["temperature"]["type"], options["temperature"]["max_value"]) == (10, 2.0)
        settings = fake.command("settings")
        assert settings["default_member_permissions"] == str(int(Permission.MANAGE_CHANNELS))
        assert settings["options"][0]["type"] == 1
        (verse,) = fake.guild_commands(s.guild)
        assert verse["name"] == "verse" and verse["guild_id"] == str(s.guild.id)
        assert verse["options"][0]["type"] == 11


@asynchronous
async def test_defer_then_edit_end_to_end() -> None:
    async with scene() as s:
        record = await s.fake.invoke(
            s.guild, s.general, s.reader, "poem", {"style": "haiku", "length": 3, "rhyme": True}
        )
        first = await record.first_response()
        assert first.accepted and first.type == 5
        assert 0 <= first.latency < 1.0
        message = await record.final()
        assert message.content == "haiku: 3 lines at 1.0 rhyme=True"
        assert not message.loading and not message.ephemeral and message.edited_at is None
        assert message.allowed_mentions == {"parse": []}
        payload = record.payload
        assert payload["member"]["permissions"] == str(s.reader.permissions_in(s.general))
        assert "guild_id" not in payload["data"]
        assert s.fake.violations == [] and s.bot.errors == []


@asynchronous
async def test_direct_ephemeral_response_then_followup() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "ping")
        assert (await record.final()).content == "pong"
        assert record.original.ephemeral
        await record.wait_for(lambda r: r.followups)
        assert record.followups[0].content == "pong again"
        assert not record.followups[0].ephemeral
        assert all(
            v.body.get("allowed_mentions") == {"parse": []}
            for m in s.fake.messages
            for v in m.versions
        )
        assert s.fake.violations == []


@asynchronous
async def test_second_initial_callback_is_refused() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "ping")
        await record.final()
        url = f"{s.fake.rest_url}/interactions/{record.id}/{record.token}/callback"
        again = {"type": 4, "data": {"content": "again"}}
        async with aiohttp.ClientSession() as http, http.post(url, json=again) as answer:
            assert answer.status == 400
            assert answer.headers["Content-Type"] == "application/json"
            assert (await answer.json())["code"] == 40060
        assert [v.rule for v in s.fake.violations] == ["already-acknowledged"]


@asynchronous
async def test_channel_message_and_followup_edits() -> None:
    async with scene() as s:
        failure = s.fake.fail_next(r"^/channels/\d+/messages$", 500, method="POST")
        record = await s.fake.invoke(s.guild, s.general, s.reader, "notice")
        await record.wait_for(lambda r: len(r.followups) == 2 and r.followups[0].deleted)
        assert failure.hits == 1  # discord.py retried the 500 after its 1 s pause
        assert (record.original.content, record.original.ephemeral) == ("posted", True)
        extra, report = record.followups
        assert extra.content == "extra edited" and len(extra.versions) == 2
        assert report.content == "original says posted"
        (posted,) = [m for m in s.fake.messages if m.kind == "channel"]
        assert posted.channel_id == s.general.id and posted.content == "edited"
        assert posted.embeds[0]["title"] == "Notice"
        assert posted.attachments[0].data == b"notice"
        # Every write (sends, edits, the channel message) carried the client-wide "ping nobody".
        bodies = [v.body for m in s.fake.messages for v in m.versions]
        assert len(bodies) == 6
        assert all(b.get("allowed_mentions") == {"parse": []} for b in bodies)
        assert s.fake.violations == [] and s.bot.errors == []


@asynchronous
async def test_oversized_embed_is_refused() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "notice", {"oversized": True})
        assert (await record.final()).content == "refused 50035"
        (violation,) = s.fake.violations
        assert violation.rule == "message-limits" and "embeds.0.description" in violation.detail


@asynchronous
async def test_default_member_permissions_gate() -> None:
    async with scene() as s:
        fake, options = s.fake, {"value": 0.7}
        with pytest.raises(InvocationRefused, match="default_member_permissions"):
            await fake.invoke(
                s.guild, s.general, s.reader, "settings", options, subcommand="temperature"
            )
        for member in (s.mod, s.admin):
            record = await fake.invoke(
                s.guild, s.general, member, "settings", options, subcommand="temperature"
            )
            assert (await record.final()).content == "temperature set to 0.7"
        # A client ignoring Discord's gate reaches the bot, which must check on its own.
        record = await fake.invoke(
            s.guild,
            s.general,
            s.reader,
            "settings",
            options,
            subcommand="temperature",
            skip_client_checks=True,
        )
        refusal = await record.final()
        assert refusal.content == "You need Manage Channels." and refusal.ephemeral
        assert fake.violations == []


@asynchronous
async def test_invalid_option_values_are_not_delivered() -> None:
    async with scene() as s:
        with pytest.raises(InvocationRefused, match="outside"):
            await s.fake.invoke(s.guild, s.general, s.reader, "poem", {"style": "x", "length": 13})
        with pytest.raises(InvocationRefused, match="required"):
            await s.fake.invoke(s.guild, s.general, s.reader, "poem", {"length": 2})
        for number in (math.nan, math.inf):  # Discord's JSON carries neither
            with pytest.raises(InvocationRefused, match="takes a number"):
                options = {"style": "x", "temperature": number}
                await s.fake.invoke(s.guild, s.general, s.reader, "poem", options)
        assert s.fake.interactions == []


@asynchronous
async def test_autocomplete_and_its_limits() -> None:
    async with scene() as s:
        fake = s.fake
        choices = await fake.autocomplete(
            s.guild, s.general, s.reader, "poem", {"style": "s"}, focused="style"
        )
        assert choices == [{"name": "sonnet", "value": "sonnet"}]
        assert fake.violations == []
        assert (
            await fake.autocomplete(
                s.guild, s.general, s.reader, "poem", {"style": "*"}, focused="style"
            )
            == []
        )
        assert [v.rule for v in fake.violations] == ["autocomplete-limits"]


@asynchronous
async def test_late_first_response_is_flagged() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "slow")
        s.fake.advance_clock(3.5)
        s.bot.release.set()
        first = await record.first_response()
        assert not first.accepted and first.latency > 3
        assert first.error["code"] == 10062
        assert [v.rule for v in s.fake.violations] == ["late-first-response"]
        await s.fake.wait_for(lambda: s.bot.errors, what="bot error")
        assert isinstance(s.bot.errors[0].original, discord.NotFound)


@asynchronous
async def test_expired_token_is_refused() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "slow", {"defer": True})
        assert (await record.first_response()).accepted
        s.fake.advance_clock(15 * 60 + 1)
        s.bot.release.set()
        await s.fake.wait_for(lambda: s.bot.errors, what="bot error")
        assert s.bot.errors[0].original.status == 401
        assert [v.rule for v in s.fake.violations] == ["token-expired"]
        assert record.original.loading


@asynchronous
async def test_content_over_2000_is_refused() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "long")
        assert (await record.final()).content == "refused 50035"
        (violation,) = s.fake.violations
        assert violation.rule == "message-limits" and "data.content" in violation.detail
        assert [c.accepted for c in record.callbacks] == [False, True]


@asynchronous
async def test_attachment_in_and_file_out() -> None:
    async with scene() as s:
        upload = Upload("draft.txt", b"roses are red", "text/plain")
        record = await s.fake.invoke(s.guild, s.general, s.reader, "verse", {"text": upload})
        assert record.payload["data"]["guild_id"] == str(s.guild.id)
        message = await record.final()
        (attachment,) = message.attachments
        assert (attachment.filename, attachment.data) == ("verse.txt", b"ROSES ARE RED")
        assert s.fake.violations == [] and s.bot.errors == []


@asynchronous
async def test_direct_message_invocation() -> None:
    async with scene() as s:
        stranger = s.fake.add_user("stranger")
        record = await s.fake.invoke(None, None, stranger, "ping")
        assert (await record.final()).content == "pong"
        assert "guild_id" not in record.payload and record.payload["user"]["id"] == str(stranger.id)
        with pytest.raises(InvocationRefused):
            await s.fake.invoke(
                None, None, stranger, "settings", {"value": 1.0}, subcommand="temperature"
            )
        with pytest.raises(InvocationRefused, match="no command /verse"):
            await s.fake.invoke(None, None, stranger, "verse", {"text": Upload("a", b"a")})


@pytest.mark.parametrize("fault", ["close 4000", "drop", "op 7", "op 9 resumable", "op 9"])
@asynchronous
async def test_gateway_faults_are_survived(fault: str) -> None:
    async with scene() as s:
        fake = s.fake
        if fault == "close 4000":
            await fake.close_gateway(4000)
            # Dispatched while the client is away: it must arrive with the RESUME replay.
            record = await fake.invoke(s.guild, s.general, s.reader, "ping")
        elif fault == "drop":
            fake.drop_gateway()
        elif fault == "op 7":
            await fake.request_reconnect()
        else:
            await fake.invalidate_session(resumable=fault == "op 9 resumable")
        await fake.wait_until_connected()
        if fault != "close 4000":
            record = await fake.invoke(s.guild, s.general, s.reader, "ping")
        assert (await record.final()).content == "pong"
        latest = fake.connections[-1]
        if fault == "op 9":
            assert (latest.handshake, latest.path) == ("identify", "/gateway")
        else:
            assert (latest.handshake, latest.path) == ("resume", "/resume")
        assert len(fake.connections) == 2
        assert fake.violations == [] and s.bot.errors == []


@asynchronous
async def test_rate_limited_followup_is_retried() -> None:
    async with scene() as s:
        fault = s.fake.fail_next(r"^/webhooks/", 429, method="POST", retry_after=0.1)
        record = await s.fake.invoke(s.guild, s.general, s.reader, "ping")
        await record.wait_for(lambda r: r.followups)
        assert record.followups[0].content == "pong again"
        assert fault.hits == 1
        statuses = [c.status for c in s.fake.requests if c.path.startswith("/webhooks/")]
        assert statuses == [429, 200]
        assert s.fake.violations == [] and s.bot.errors == []


@asynchronous
async def test_unknown_route_is_recorded() -> None:
    async with scene() as s:
        with pytest.raises(discord.NotFound):
            await s.bot.http.request(
                discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=1)
            )
        assert [v.rule for v in s.fake.violations] == ["unknown-route"]


@asynchronous
async def test_sharded_bot_gets_each_guild_on_its_shard() -> None:
    async with LoopbackDiscord(token=TOKEN, shard_count=2) as fake:
        even = fake.add_guild("Even", guild_id=1000 << 22)
        odd = fake.add_guild("Odd", guild_id=1001 << 22)
        members = [g.add_member(fake.add_user(f"{g.name} reader")) for g in (even, odd)]
        bot = ShardedTinyBot(even.id)
        with point_discord_py_at(fake):
            async with run_bot(bot, fake):
                assert sorted(c.shard for c in fake.connections) == [(0, 2), (1, 2)]
                assert bot.get_guild(odd.id).shard_id == 1
                for guild, member in zip((even, odd), members, strict=True):
                    record = await fake.invoke(guild, guild.channel("general"), member, "ping")
                    assert (await record.final()).content == "pong"
        assert fake.violations == []


@asynchronous
async def test_rate_limits_are_announced_and_discord_py_waits_them_out() -> None:
    async with scene() as s:
        record = await s.fake.invoke(s.guild, s.general, s.reader, "burst", {"edits": 7})
        message = await record.wait_for(
            lambda r: r.original and r.original.content == "edit 7" and r.original, timeout=20
        )
        times = [v.received_at for v in message.versions]
        # Five writes per interaction per 5 s: the sixth waited for the window to reopen,
        # because the fifth answer said none remained; nothing was refused.
        assert len(times) == 7
        assert times[4] - times[0] < 2.0 and times[5] - times[0] >= 4.9
        assert s.fake.rate_limit_hits == [] and s.fake.violations == []
        edit = next(c for c in s.fake.requests if c.method == "PATCH")
        assert edit.status == 200


@asynchronous
async def test_a_client_that_ignores_the_headers_gets_429_with_retry_after() -> None:
    async with scene() as s:
        url = f"{s.fake.rest_url}/channels/{s.general.id}/messages"
        headers = {"Authorization": f"Bot {TOKEN}"}
        answers = []
        async with aiohttp.ClientSession() as session:
            for i in range(6):
                async with session.post(url, json={"content": f"m{i}"}, headers=headers) as r:
                    answers.append((r.status, dict(r.headers), await r.json()))
        statuses = [a[0] for a in answers]
        assert statuses == [200] * 5 + [429]
        remaining = [a[1]["X-RateLimit-Remaining"] for a in answers[:5]]
        assert remaining == ["4", "3", "2", "1", "0"]
        _, head, body = answers[5]
        assert 0 < body["retry_after"] <= 5.0 and body["global"] is False
        assert head["Via"] and float(head["X-RateLimit-Reset-After"]) == pytest.approx(
            body["retry_after"], abs=0.01
        )
        (hit,) = s.fake.rate_limit_hits
        assert hit.rule == "channel-post" and hit.key == str(s.general.id)
        assert [m.content for m in s.fake.messages] == [f"m{i}" for i in range(5)]
