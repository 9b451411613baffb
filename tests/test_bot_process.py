"""`python -m bot` as an operator runs it: configured only by environment variables (the two
Discord URLs point it at the loopback), answering /poem, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket

import aiohttp

from .botworld import (
    TOKEN,
    asynchronous,
    bot_process,
    footer,
    footer_seed,
    make_models,
    still_writing,
)
from .loopback import LoopbackDiscord


def process_env(root, guild, models, **extra: str) -> dict[str, str]:
    """The bot's settings for a process serving `guild` from `models`, settings in `root`."""
    return {
        "DISCORD_GUILD_IDS": str(guild.id),
        "MODELS_DIR": str(models),
        "DATABASE_URL": f"sqlite:///{root / 'settings.sqlite3'}",
        "ORT_PROVIDERS": "cpu",
        "DEFAULT_STYLE": "verse",
        **extra,
    }


@asynchronous
async def test_the_bot_process_serves_poems_and_exits_cleanly_on_sigterm(tmp_path):
    models = make_models(tmp_path)
    async with LoopbackDiscord(token=TOKEN) as discord:
        # final(): the poem once finished, not a streamed edit (seen first on a slow machine).
        discord.state.signal.in_progress = still_writing
        guild = discord.add_guild("Poets")
        member = guild.add_member(discord.add_user("reader"))
        env = process_env(
            tmp_path,
            guild,
            models,
            USER_COOLDOWN_SECONDS="0",
            LOG_LEVEL="DEBUG",  # the token must not appear even here
        )
        async with bot_process(tmp_path, discord, env) as bot:
            await discord.wait_for(
                lambda: discord.guild_commands(guild),
                timeout=30,
                what="commands synced to the guild",
            )
            record = await discord.invoke(
                guild, guild.channel("general"), member, "poem", {"length": 300, "seed": 5}
            )
            message = await record.final(timeout=30)
            assert "verse v1" in footer(message)
            in_flight = await discord.invoke(
                guild, guild.channel("general"), member, "poem", {"length": 2000, "seed": 6}
            )
            await in_flight.first_response(timeout=10)
            bot.process.send_signal(signal.SIGTERM)
            # The poem being written when the signal came is still delivered.
            finished = await in_flight.final(timeout=60)
            assert "seed 6" in footer(finished)
            code = await asyncio.wait_for(bot.process.wait(), 60)
        log = await bot.log()
        assert code == 0, log
        assert "verse: now v1" in log or "style verse: live v1 on CPUExecutionProvider" in log
        assert "style tang: live v1 on CPUExecutionProvider" in log
        assert TOKEN not in log
        assert discord.violations == []


@asynchronous
async def test_with_a_token_and_web_port_the_bot_serves_discord_and_the_page(tmp_path):
    models = make_models(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with LoopbackDiscord(token=TOKEN) as discord:
        # final(): the poem once finished, not a streamed edit (seen first on a slow machine).
        discord.state.signal.in_progress = still_writing
        guild = discord.add_guild("Poets")
        member = guild.add_member(discord.add_user("reader"))
        env = {
            "DISCORD_GUILD_IDS": str(guild.id),
            "MODELS_DIR": str(models),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'settings.sqlite3'}",
            "ORT_PROVIDERS": "cpu",
            "DEFAULT_STYLE": "verse",
            "USER_COOLDOWN_SECONDS": "0",
            "WEB_PORT": str(port),
        }
        async with bot_process(tmp_path, discord, env) as bot:
            await discord.wait_for(lambda: discord.guild_commands(guild), timeout=30)
            async with aiohttp.ClientSession() as http:
                answer = await http.post(
                    f"http://127.0.0.1:{port}/api/poems",
                    json={"style": "verse", "length": 80, "seed": 5},
                    headers={"Accept": "application/json"},
                )
                from_page = (await answer.json())["text"]
            record = await discord.invoke(
                guild, guild.channel("general"), member, "poem", {"length": 80, "seed": 5}
            )
            message = await record.final(timeout=30)
            # One engine behind both: the same seed and options, the same poem.
            assert message.embeds[0]["description"].replace("\\", "") == from_page
            bot.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(bot.process.wait(), 60)
        assert code == 0, await bot.log()


@asynchronous
async def test_a_poems_buttons_work_in_the_next_bot_process_a_week_later(tmp_path):
    models = make_models(tmp_path)
    async with LoopbackDiscord(token=TOKEN) as discord:
        discord.state.signal.in_progress = still_writing
        guild = discord.add_guild("Poets")
        member = guild.add_member(discord.add_user("reader"))
        other = guild.add_member(discord.add_user("another reader"))
        env = process_env(tmp_path, guild, models)
        channel = guild.channel("general")
        async with bot_process(tmp_path, discord, env) as bot:
            await discord.wait_for(lambda: discord.guild_commands(guild), 30, "synced commands")
            record = await discord.invoke(guild, channel, member, "poem", {"length": 50})
            poem = await record.final(timeout=30)
            bot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.process.wait(), 60) == 0
        assert poem.components, await bot.log()
        discord.advance_clock(7 * 24 * 3600)
        async with bot_process(tmp_path, discord, env):
            await discord.wait_until_connected(timeout=30)
            again, more = (b["custom_id"] for b in poem.components[0]["components"])
            answer = await (await discord.press(poem, again, member)).final(timeout=30)
            assert answer.reference is poem and "verse v1" in footer(answer)
            assert footer_seed(answer) != footer_seed(poem)
            # The presser's cooldown (3 s here) applies: another reader presses Continue.
            written = await (await discord.press(poem, more, other)).final(timeout=30)
            assert written.embeds, written.content
            assert written.reference is poem and "Continued" in written.embeds[0]["title"]
        assert discord.violations == []
