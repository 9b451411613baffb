"""A retrain in progress when the bot stops is not forgotten, on the embedded default (SQLite,
one `python -m bot` that runs its jobs itself): the job is a row, and the next start resumes it
from its last checkpoint, editing its Discord message to the end."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from .botworld import TOKEN, asynchronous, bot_process, footer, make_models, still_writing
from .bundles import FIXTURES
from .loopback import LoopbackDiscord, Permission, Upload
from .test_bot_process import process_env

pytest.importorskip("tensorflow", reason="retraining needs the train extra")
pytestmark = pytest.mark.timeout(400)

CORPUS = (FIXTURES / "shakespeare_excerpt.txt").read_bytes()
EPOCHS = 4  # early stopping (patience 3) cannot end it before the last


def children(pid: int, word: str) -> list[int]:
    """The processes whose parent is `pid` and whose command line holds `word` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and word.encode() in argv:
            found.append(int(entry.name))
    return found


def said(record) -> list[str]:
    """Every text the job's message showed, in order."""
    return [v.body.get("content", "") for m in record.messages for v in m.versions]


@asynchronous
async def test_a_job_in_progress_survives_sigterm_and_finishes_after_the_restart(tmp_path):
    models = make_models(tmp_path)
    runs = tmp_path / "data" / "runs"

    def checkpointed() -> Path | None:
        """The job's run folder once its first epoch is saved (checkpoint, then progress)."""
        for progress in runs.glob("bard-job1-*/progress.jsonl"):
            if progress.read_text(encoding="utf-8").strip():
                return progress.parent
        return None

    async with LoopbackDiscord(token=TOKEN) as discord:
        discord.state.signal.in_progress = still_writing
        guild = discord.add_guild("Poets")
        owner = discord.add_user("operator")
        discord.set_owner(owner)
        operator = guild.add_member(owner, [guild.add_role("ops", Permission.ADMINISTRATOR)])
        channel = guild.channel("general")
        env = process_env(tmp_path, guild, models, USER_COOLDOWN_SECONDS="0")
        async with bot_process(tmp_path, discord, env) as bot:
            await discord.wait_for(lambda: discord.guild_commands(guild), 30, "synced commands")
            record = await discord.invoke(
                guild,
                channel,
                operator,
                "model",
                {
                    "name": "bard",
                    "corpus": Upload("bard.txt", CORPUS),
                    "epochs": EPOCHS,
                    "size": "small",
                },
                subcommand="add",
            )
            run = await discord.wait_for(checkpointed, 240, "a first checkpoint")
            # Held there (SIGSTOP), so that the stop always comes in the middle of the job.
            (training,) = children(bot.process.pid, "training")
            os.kill(training, signal.SIGSTOP)
            await record.wait_for(lambda r: f"epoch 1/{EPOCHS}" in r.messages[0].content, 30)
            bot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.process.wait(), 60) == 0, await bot.log()
        assert not Path(f"/proc/{training}").exists()  # the child went with the bot
        assert "succeeded" not in " ".join(said(record))

        async with bot_process(tmp_path, discord, env) as bot:
            done = await record.wait_for(
                lambda r: "succeeded" in r.messages[0].content and r.messages[0].content, 240
            )
            assert "v1 is live" in done, said(record)
            # One message, edited throughout: the restart said so, and every epoch shows once.
            assert len(record.messages) == 1
            assert any("resumed after the bot restarted" in text for text in said(record))
            for epoch in range(1, EPOCHS + 1):
                assert done.count(f"epoch {epoch}/{EPOCHS} ") == 1, done
            log = run.with_suffix(".log").read_text(encoding="utf-8")
            assert "resuming" in log and "after epoch" in log  # from the checkpoint
            poem = await discord.invoke(guild, channel, operator, "poem", {"style": "bard"})
            assert "bard v1" in footer(await poem.final(timeout=30))
            bot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.process.wait(), 60) == 0
        assert discord.violations == []
