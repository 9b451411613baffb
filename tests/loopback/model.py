"""What the loopback Discord knows about: users, guilds, roles, channels and members.

Each object renders itself the way Discord puts it on the wire, and members work out their
permissions the way Discord does (owner, Administrator, roles, then channel overwrites).
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000


class Permission(IntFlag):
    """The permission bits tests are likely to need (Discord's numbering)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31


# Discord answers "every permission" for owners and administrators; discord.py's
# Permissions.all() is the same 53-bit mask.
ALL_PERMISSIONS = (1 << 53) - 1

# What @everyone gets in a freshly created guild, close enough for the bot's purposes.
DEFAULT_EVERYONE_PERMISSIONS = (
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_APPLICATION_COMMANDS
)

# What an invite link usually grants a bot: enough to talk and post files in text channels.
DEFAULT_BOT_PERMISSIONS = (
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_APPLICATION_COMMANDS
)


class ChannelType(IntEnum):
    """Channel kinds the fake can create."""

    TEXT = 0
    DM = 1
    VOICE = 2
    CATEGORY = 4


class Snowflakes:
    """Mints Discord-shaped ids: milliseconds since the Discord epoch shifted left 22 bits.

    Ids minted in the same millisecond are bumped by one so they stay unique and increasing.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """The current UTC time in the ISO 8601 form Discord uses for timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass(eq=False)
class User:
    """A Discord account: a person, or the bot itself."""

    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": None if self.bot else self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(eq=False)
class Role:
    """A guild role; the role whose id equals the guild id is @everyone."""

    id: int
    name: str
    permissions: int
    position: int
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(int(self.permissions)),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(eq=False)
class Overwrite:
    """A channel permission overwrite for one role or one member."""

    target_id: int
    is_member: bool
    allow: int
    deny: int

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.target_id),
            "type": 1 if self.is_member else 0,
            "allow": str(int(self.allow)),
            "deny": str(int(self.deny)),
        }


@dataclass(eq=False)
class Channel:
    """A guild channel, or a DM channel when `guild` is None."""

    id: int
    name: str
    type: ChannelType
    guild: Guild | None
    position: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)
    recipient: User | None = None

    def overwrite(self, target: Role | Member, *, allow: int = 0, deny: int = 0) -> None:
        """Set this channel's overwrite for a role or a member (replacing any previous one)."""
        is_member = isinstance(target, Member)
        self.overwrites = [o for o in self.overwrites if o.target_id != target.id]
        self.overwrites.append(Overwrite(target.id, is_member, int(allow), int(deny)))

    def payload(self) -> dict[str, Any]:
        if self.guild is None:
            return {
                "id": str(self.id),
                "type": int(ChannelType.DM),
                "last_message_id": None,
                "recipients": [self.recipient.payload()] if self.recipient else [],
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": int(self.type),
            "name": self.name,
            "position": self.position,
            "guild_id": str(self.guild.id),
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "nsfw": False,
            "parent_id": None,
        }
        if self.type == ChannelType.TEXT:
            data.update(topic=None, last_message_id=None, rate_limit_per_user=0)
        elif self.type == ChannelType.VOICE:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        return data


@dataclass(eq=False)
class Member:
    """A user's membership of one guild."""

    user: User
    guild: Guild
    roles: list[Role]
    joined_at: str
    nick: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    def guild_permissions(self) -> int:
        """Permissions from the owner flag, @everyone and the member's roles."""
        if self.guild.owner_id == self.user.id:
            return ALL_PERMISSIONS
        bits = self.guild.everyone.permissions
        for role in self.roles:
            bits |= role.permissions
        return ALL_PERMISSIONS if bits & Permission.ADMINISTRATOR else int(bits)

    def permissions_in(self, channel: Channel) -> int:
        """Guild permissions adjusted by the channel's overwrites, in Discord's order."""
        bits = self.guild_permissions()
        if bits == ALL_PERMISSIONS:
            return bits
        by_target = {o.target_id: o for o in channel.overwrites}
        everyone = by_target.get(self.guild.id)
        if everyone is not None:
            bits = (bits & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role in self.roles:
            overwrite = by_target.get(role.id)
            if overwrite is not None and not overwrite.is_member:
                allow |= overwrite.allow
                deny |= overwrite.deny
        bits = (bits & ~deny) | allow
        own = by_target.get(self.user.id)
        if own is not None and own.is_member:
            bits = (bits & ~own.deny) | own.allow
        return bits

    def payload(self, channel: Channel | None = None) -> dict[str, Any]:
        """The member object; with a channel it carries `permissions` as interactions do."""
        data: dict[str, Any] = {
            "user": self.user.payload(),
            "roles": [str(r.id) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if channel is not None:
            data["permissions"] = str(self.permissions_in(channel))
        return data


class Guild:
    """A guild with its @everyone role, other roles, channels and members.

    Create guilds through `LoopbackDiscord.add_guild`, which also adds the owner and the bot.
    """

    def __init__(self, guild_id: int, name: str, owner: User, snowflakes: Snowflakes) -> None:
        self.id = guild_id
        self.name = name
        self.owner_id = owner.id
        self.locale = "en-US"
        self._snowflakes = snowflakes
        self.everyone = Role(guild_id, "@everyone", int(DEFAULT_EVERYONE_PERMISSIONS), 0)
        self.roles: list[Role] = [self.everyone]
        self.channels: list[Channel] = []
        self.members: dict[int, Member] = {}

    def __repr__(self) -> str:
        return f"<Guild {self.id} {self.name!r}>"

    def add_role(self, name: str, permissions: int = 0, *, managed: bool = False) -> Role:
        """A new role above the existing ones."""
        role = Role(self._snowflakes.next(), name, int(permissions), len(self.roles), managed)
        self.roles.append(role)
        return role

    def add_channel(self, name: str, kind: ChannelType = ChannelType.TEXT) -> Channel:
        """A new channel at the bottom of the list."""
        channel = Channel(self._snowflakes.next(), name, kind, self, position=len(self.channels))
        self.channels.append(channel)
        return channel

    def add_text_channel(self, name: str) -> Channel:
        return self.add_channel(name, ChannelType.TEXT)

    def add_member(self, user: User, roles: list[Role] | tuple[Role, ...] = ()) -> Member:
        """Make `user` a member holding `roles` (plus @everyone, implicitly)."""
        foreign = [r for r in roles if r not in self.roles]
        if foreign:
            raise ValueError(f"roles {foreign} do not belong to {self!r}")
        member = Member(user, self, list(roles), iso_now())
        self.members[user.id] = member
        return member

    def member(self, user: User | Member) -> Member:
        """The membership of `user`; KeyError if the user is not in this guild."""
        return self.members[user.id]

    def channel(self, name: str) -> Channel:
        """The channel called `name`."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    def create_payload(self) -> dict[str, Any]:
        """The GUILD_CREATE body for a guild that has just become available."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "preferred_locale": self.locale,
            "unavailable": False,
            "large": False,
            "member_count": len(self.members),
            "joined_at": iso_now(),
            "features": [],
            "roles": [r.payload() for r in self.roles],
            "channels": [c.payload() for c in self.channels],
            "members": [m.payload() for m in self.members.values()],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "emojis": [],
            "stickers": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
        }
