"""`python -m bot` as an operator runs it: configured only by environment variables (the two
Discord URLs point it at the loopback), answering /poem, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from .botworld import TOKEN, asynchronous, footer, make_models
from .loopback import LoopbackDiscord

ROOT = Path(__file__).resolve().parent.parent


@asynchronous
async def test_the_bot_process_serves_poems_and_exits_cleanly_on_sigterm(tmp_path):
    models = make_models(tmp_path)
    async with LoopbackDiscord(token=TOKEN) as discord:
        guild = discord.add_guild("Poets")
        member = guild.add_member(discord.add_user("reader"))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DISCORD")},
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_BASE_URL": discord.rest_url,
            "DISCORD_GATEWAY_URL": discord.gateway_url,
            "DISCORD_GUILD_IDS": str(guild.id),
            "MODELS_DIR": str(models),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'settings.sqlite3'}",
            "ORT_PROVIDERS": "cpu",
            "DEFAULT_STYLE": "verse",
            "USER_COOLDOWN_SECONDS": "0",
            "LOG_LEVEL": "DEBUG",  # the token must not appear even here
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        # Read the log while the bot runs: a full pipe would block its logging at DEBUG.
        output = asyncio.create_task(process.stdout.read())
        try:
            await discord.wait_until_connected(timeout=60)
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
            process.send_signal(signal.SIGTERM)
            # The poem being written when the signal came is still delivered.
            finished = await in_flight.final(timeout=60)
            assert "seed 6" in footer(finished)
            code = await asyncio.wait_for(process.wait(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        log = (await output).decode()
        assert code == 0, log
        assert "verse: now v1" in log or "style verse: live v1 on CPUExecutionProvider" in log
        assert "style tang: live v1 on CPUExecutionProvider" in log
        assert TOKEN not in log
        assert discord.violations == []
