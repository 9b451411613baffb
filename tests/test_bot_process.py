"""`python -m bot` as an operator runs it: configured only by environment variables (the two
Discord URLs point it at the loopback), answering /poem, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket

import aiohttp

from .botworld import TOKEN, asynchronous, bot_process, footer, make_models
from .loopback import LoopbackDiscord


@asynchronous
async def test_the_bot_process_serves_poems_and_exits_cleanly_on_sigterm(tmp_path):
    models = make_models(tmp_path)
    async with LoopbackDiscord(token=TOKEN) as discord:
        guild = discord.add_guild("Poets")
        member = guild.add_member(discord.add_user("reader"))
        env = {
            "DISCORD_GUILD_IDS": str(guild.id),
            "MODELS_DIR": str(models),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'settings.sqlite3'}",
            "ORT_PROVIDERS": "cpu",
            "DEFAULT_STYLE": "verse",
            "USER_COOLDOWN_SECONDS": "0",
            "LOG_LEVEL": "DEBUG",  # the token must not appear even here
        }
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
