"""Everything the loopback Discord holds in memory, shared by its REST API, its Gateway and the
test-facing `LoopbackDiscord`: the application and its bot, users, guilds, synced commands, and
the records of what the bot did."""

from __future__ import annotations

import logging
from typing import Any

from .model import Channel, ChannelType, Guild, Permission, Snowflakes, User
from .ratelimits import RateLimits
from .records import (
    Attachment,
    Clock,
    InteractionRecord,
    Message,
    RestCall,
    RestFault,
    Signal,
    Violation,
)

log = logging.getLogger("loopback")

# Discord gives a bot these in a DM with a user: it can talk, embed and attach, nothing more.
DM_APP_PERMISSIONS = int(
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ADD_REACTIONS
    | Permission.USE_APPLICATION_COMMANDS
)

CommandKey = tuple[int, str]


class DiscordState:
    """The fake Discord's memory. Tests reach it through `LoopbackDiscord`."""

    def __init__(self, token: str, bot_name: str) -> None:
        self.token = token
        self.clock = Clock()
        self.signal = Signal()
        self.snowflakes = Snowflakes()
        # Modern applications share their id with their bot user.
        self.application_id = self.snowflakes.next()
        self.application_flags = 0
        self.bot = User(self.application_id, bot_name, bot=True)
        self.owner = User(self.snowflakes.next(), f"{bot_name}-owner")
        self.team: list[User] | None = None
        self.team_id = self.snowflakes.next()
        self.users: dict[int, User] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.guilds: dict[int, Guild] = {}
        self.dm_channels: dict[int, Channel] = {}
        self.global_commands: dict[CommandKey, dict[str, Any]] = {}
        self.guild_commands: dict[int, dict[CommandKey, dict[str, Any]]] = {}
        self.command_ids: dict[tuple[int | None, int, str], int] = {}
        self.command_syncs: list[tuple[int | None, float]] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self.messages: list[Message] = []
        self.files: dict[int, Attachment] = {}
        self.violations: list[Violation] = []
        self.requests: list[RestCall] = []
        self.faults: list[RestFault] = []
        self.rate_limits: RateLimits | None = RateLimits()
        self.base_url = ""
        self.shard_count = 1

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/resume"

    def violate(
        self, rule: str, detail: str, method: str, path: str, interaction_id: int | None = None
    ) -> None:
        """Remember that the bot broke one of Discord's rules (tests assert there are none)."""
        log.warning("loopback: %s: %s (%s %s)", rule, detail, method, path)
        self.violations.append(
            Violation(rule, detail, method, path, interaction_id, self.clock.now())
        )
        self.signal.fire()

    def store_file(
        self, channel_id: int, filename: str, data: bytes, content_type: str | None
    ) -> Attachment:
        """Keep a file and give it a URL on the fake's own CDN route."""
        attachment_id = self.snowflakes.next()
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        attachment = Attachment(attachment_id, filename, data, content_type, url)
        self.files[attachment_id] = attachment
        return attachment

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and `user` (created on first use)."""
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = Channel(self.snowflakes.next(), "", ChannelType.DM, None, recipient=user)
            self.dm_channels[user.id] = channel
        return channel

    def find_channel(self, channel_id: int) -> Channel | None:
        for guild in self.guilds.values():
            for channel in guild.channels:
                if channel.id == channel_id:
                    return channel
        return next((c for c in self.dm_channels.values() if c.id == channel_id), None)

    def app_permissions(self, channel: Channel) -> int:
        """What the bot itself may do in `channel`."""
        if channel.guild is None:
            return DM_APP_PERMISSIONS
        return channel.guild.member(self.bot).permissions_in(channel)

    def commands_for(self, guild_id: int | None) -> dict[CommandKey, dict[str, Any]]:
        """The synced commands of one guild, or the global ones when `guild_id` is None."""
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, {})

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return next((r for r in self.interactions.values() if r.token == token), None)

    def application_payload(self) -> dict[str, Any]:
        team = None
        if self.team is not None:
            team = {
                "id": str(self.team_id),
                "name": f"{self.bot.name} team",
                "icon": None,
                "owner_user_id": str(self.owner.id),
                "members": [
                    {
                        "user": u.payload(),
                        "team_id": str(self.team_id),
                        "membership_state": 2,
                        "permissions": ["*"],
                        "role": "admin",
                    }
                    for u in self.team
                ],
            }
        return {
            "id": str(self.application_id),
            "name": self.bot.name,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner.payload(),
            "team": team,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "summary": "",
            "bot": self.bot.payload(),
        }
