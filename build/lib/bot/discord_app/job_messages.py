"""Edits each queued retrain job's Discord message up to the job's latest state, from the bot
process that holds the job's guild (its shard), whichever process posted it and however often
processes restarted meanwhile. Also fails the jobs whose worker stopped beating.

It looks when the queue says a job changed, and once a heartbeat besides (for silent workers),
on the queue's own connections: an idle bot opens no connection to do it."""

from __future__ import annotations

import logging
import time

import discord

from bot.discord_app.model_command import job_text
from bot.stores.job_queue import JobMessage, JobQueue, QueueUnavailable

log = logging.getLogger(__name__)

TOKEN_SECONDS = 14 * 60  # an interaction token lasts 15 minutes: stop using it a bit before


def holds(client: discord.Client, guild_id: int | None) -> bool:
    """Whether `client` is connected for the shard of `guild_id` (shard 0 for DMs)."""
    count = client.shard_count or 1
    shard = (guild_id >> 22) % count if guild_id else 0
    ids = getattr(client, "shard_ids", None)
    return ids is None or shard in ids  # None: one connection, or every shard


async def _show(client: discord.Client, text: str, where: JobMessage) -> tuple[int, str]:
    """Edit the job's message to `text`; where it is now (id and kind). After the token
    lapses, a new plain message in the channel carries on."""
    if where.kind == "webhook" and time.time() - where.token_at < TOKEN_SECONDS:
        webhook = discord.Webhook.partial(where.application_id, where.token, client=client)
        try:
            await webhook.edit_message(where.message_id, content=text)
            return where.message_id, "webhook"
        except discord.HTTPException:
            pass
    channel = client.get_partial_messageable(where.channel_id)
    if where.kind == "channel":
        await channel.get_partial_message(where.message_id).edit(content=text)
        return where.message_id, "channel"
    message = await channel.send(text)
    return message.id, "channel"


async def follow_job_messages(client: discord.Client, queue: JobQueue) -> None:
    """Until cancelled: whenever a job changes, and every heartbeat, queue again or fail the
    jobs of silent workers and bring the messages of this process's guilds up to date."""
    async for _ in queue.changes(queue.heartbeat):
        try:
            for job_id, status in await queue.reap():
                how = "queued again" if status == "queued" else status
                log.warning("job %s %s: its worker stopped sending heartbeats", job_id, how)
            for job, revision, where in await queue.unshown():
                if not holds(client, where.guild_id):
                    continue
                try:
                    message_id, kind = await _show(client, job_text(job), where)
                except discord.HTTPException as err:
                    log.warning("cannot edit the message of job %s: %s", job.id, err)
                    continue
                await queue.shown(job.id, revision, message_id, kind)
        except QueueUnavailable as err:
            log.warning("job messages: %s", err)
