"""A loopback Discord for end-to-end tests: an aiohttp server on 127.0.0.1 speaking enough of
Discord's REST API and Gateway that the real, unpatched discord.py logs in, syncs application
commands, receives interactions and answers them. Tests act as Discord's users through it and
read back what the bot did. See docs/discord-wire.md (shared docs) for the protocol facts.

Start it, build a world, point discord.py at it, run a bot::

    async with LoopbackDiscord(token="t0ken") as discord_fake:
        alice = discord_fake.add_user("alice")
        guild = discord_fake.add_guild("Poets")          # has #general, its owner, the bot
        mods = guild.add_role("mods", Permission.MANAGE_CHANNELS)
        member = guild.add_member(alice, [mods])
        channel = guild.channel("general")               # or guild.add_text_channel("poems")
        channel.overwrite(mods, deny=Permission.SEND_MESSAGES)   # optional overwrites
        discord_fake.set_owner(alice)                    # or set_team([alice, bob])

        with point_discord_py_at(discord_fake):          # restores the URLs on exit
            async with run_bot(MyBot(), discord_fake):   # start(), wait for on_ready, close()
                record = await discord_fake.invoke(guild, channel, member, "poem",
                                                   {"style": "haiku", "length": 3})
                first = await record.first_response()    # Callback: .type, .latency, .accepted
                message = await record.final()           # Message: .content, .embeds, ...
                choices = await discord_fake.autocomplete(guild, channel, member, "poem",
                                                          {"style": "ha"}, focused="style")
        assert discord_fake.violations == []

Users' actions: `invoke` (guild commands get `data.guild_id`; `guild=None, channel=None` and a
`User` make a DM invocation; `subcommand=`/`group=` nest options; `Upload(name, bytes)` fills an
attachment option, served back from the fake so the bot can download it) and `autocomplete`.
Option types come from the schema the bot synced; `discord_fake.command(name, guild)`,
`global_commands()`, `guild_commands(guild)` and `command_syncs` show what was synced.
`invoke` raises `InvocationRefused` where Discord would not deliver (default_member_permissions
not met, missing USE_APPLICATION_COMMANDS, wrong context, bad option values);
`skip_client_checks=True` delivers anyway, to prove the bot checks on its own;
`edit_payload=fn` changes the payload before it is sent (an optional field left out, say).

Records: `InteractionRecord` (`callbacks`, `original`, `followups`, `messages`, `choices`,
`await first_response()`, `await final()`, `await wait_for(predicate)`), `Message` (content,
embeds, attachments with bytes, flags/`ephemeral`/`loading`, `allowed_mentions` of the last
write, and `versions` holding every body exactly as sent with its receive time),
`discord_fake.messages`, `requests` (every REST call and its status), `connections` (every
Gateway connection: path, handshake identify/resume, close code) and `violations`.

Rules enforced and recorded as violations (with Discord's error answer to the bot): first
callback within 3 s, one initial callback, token valid 15 min, content <= 2000, embed limits,
<= 10 embeds, autocomplete <= 25 choices of <= 100 characters, no empty messages, followups only
after a response, command definitions valid, unknown routes. `advance_clock(s)` moves the
fake's clock to reach deadlines at once.

Faults: `fail_next(path_regex, 429|500, times=, method=, retry_after=)` for REST;
`close_gateway(code)`, `drop_gateway()`, `request_reconnect()` (op 7) and
`invalidate_session(resumable)` (op 9) for the Gateway, then `await wait_until_connected()`.
A bot re-identifying after op 9 (false) sleeps 5 s in discord.py's default
`before_identify_hook`; test bots override it.

Sharding: `LoopbackDiscord(shard_count=n)` answers /gateway/bot with n shards; each shard's
READY lists the guilds with `(guild_id >> 22) % n == shard`, and interactions go to that shard.
"""

from .discord_py import DiscordPyTarget, point_discord_py_at, run_bot
from .fake import LoopbackDiscord
from .invocation import InvocationRefused, Upload
from .model import (
    ALL_PERMISSIONS,
    Channel,
    ChannelType,
    Guild,
    Member,
    Permission,
    Role,
    User,
)
from .records import Attachment, Callback, InteractionRecord, Message, RestFault, Violation

__all__ = [
    "ALL_PERMISSIONS",
    "Attachment",
    "Callback",
    "Channel",
    "ChannelType",
    "DiscordPyTarget",
    "Guild",
    "InteractionRecord",
    "InvocationRefused",
    "LoopbackDiscord",
    "Member",
    "Message",
    "Permission",
    "RestFault",
    "Role",
    "Upload",
    "User",
    "Violation",
    "point_discord_py_at",
    "run_bot",
]
