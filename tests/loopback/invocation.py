"""Turns "this user runs /poem style:haiku here" into the INTERACTION_CREATE payload Discord
would dispatch, looking option types up in the commands the bot synced.

Whatever the Discord client or Discord itself would not let through (a command the user may not
see, a missing required option, a value outside its choices or bounds) raises
`InvocationRefused` instead, unless the caller asks to skip those checks to play a client that
ignores them.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .limits import ATTACHMENT_SIZE_LIMIT
from .model import Channel, Guild, Member, Permission, User
from .records import Message
from .state import DiscordState

# Discord's JSON integers are doubles on the client side.
MAX_SAFE_INTEGER = 2**53

OPTION_TYPES = {3: "string", 4: "integer", 5: "boolean", 10: "number", 11: "attachment"}
ACCEPTS: dict[int, Callable[[Any], bool]] = {
    3: lambda v: isinstance(v, str),
    4: lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_SAFE_INTEGER,
    5: lambda v: isinstance(v, bool),
    # Discord's JSON has no NaN or infinities.
    10: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    11: lambda v: isinstance(v, Upload),
}
GUILD_CONTEXT, BOT_DM_CONTEXT = 0, 1


class InvocationRefused(Exception):
    """Discord would not deliver this interaction; the message says why."""


@dataclass
class Upload:
    """A file a test attaches to an attachment option, as a user would pick it."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass
class Invocation:
    """A built interaction: the payload to dispatch and who/where it came from."""

    payload: dict[str, Any]
    token: str
    command: str
    channel: Channel
    user: User


def _find_command(
    state: DiscordState, name: str, guild: Guild | None, kind: int = 1
) -> tuple[dict, bool]:
    """The synced command `name` of `kind` (1 chat input, 3 message menu) visible here; True
    when it is a guild command."""
    if guild is not None:
        command = state.commands_for(guild.id).get((kind, name))
        if command is not None:
            return command, True
    command = state.global_commands.get((kind, name))
    if command is None:
        where = f"guild {guild.id}" if guild else "DMs"
        label = f"/{name}" if kind == 1 else f"{name!r} (type {kind})"
        raise InvocationRefused(f"no command {label} is synced for {where}")
    return command, False


def _check_gate(command: dict, member: Member | None, channel: Channel) -> None:
    """Discord's own gate: contexts, USE_APPLICATION_COMMANDS, default_member_permissions."""
    name = command["name"]
    context = GUILD_CONTEXT if member is not None else BOT_DM_CONTEXT
    contexts = command.get("contexts")
    if contexts is not None and context not in contexts:
        raise InvocationRefused(f"/{name} is not available in context {context}")
    if member is None:
        if command.get("dm_permission") is False:
            raise InvocationRefused(f"/{name} is not available in DMs")
        return
    perms = member.permissions_in(channel)
    if perms & Permission.ADMINISTRATOR:
        # Administrators (and the owner, who holds every bit) pass every gate.
        return
    if not perms & Permission.USE_APPLICATION_COMMANDS:
        raise InvocationRefused(f"member {member.id} may not use commands in #{channel.name}")
    required = command.get("default_member_permissions")
    # "0" means nobody but administrators; None means everybody.
    if required is not None and (int(required) == 0 or perms & int(required) != int(required)):
        raise InvocationRefused(
            f"member {member.id} lacks default_member_permissions {required} for /{name}"
        )


def _descend(command: dict, group: str | None, subcommand: str | None) -> list[dict]:
    """The option schemas of the leaf command selected by `group` and `subcommand`."""
    options = command.get("options") or []
    for kind, wanted in ((2, group), (1, subcommand)):
        if wanted is None:
            continue
        match = next((o for o in options if o["type"] == kind and o["name"] == wanted), None)
        if match is None:
            raise InvocationRefused(f"/{command['name']} has no {wanted!r} (type {kind})")
        options = match.get("options") or []
    if any(o["type"] in (1, 2) for o in options):
        raise InvocationRefused(f"/{command['name']} needs a subcommand (and group) to run")
    return options


def _check_value(schema: dict, value: Any) -> None:
    """The Discord client only lets a user submit values of the declared type and bounds."""
    kind, name = schema["type"], schema["name"]
    if not ACCEPTS[kind](value):
        raise InvocationRefused(f"option {name} takes a {OPTION_TYPES[kind]}, not {value!r}")
    choices = schema.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise InvocationRefused(f"option {name}: {value!r} is not one of its choices")
    if kind == 3:
        low, high = schema.get("min_length", 0), schema.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise InvocationRefused(
                f"option {name}: length of {value!r} is outside [{low}, {high}]"
            )
    if kind in (4, 10):
        low, high = schema.get("min_value"), schema.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvocationRefused(f"option {name}: {value!r} is outside [{low}, {high}]")
    if kind == 11 and len(value.data) > ATTACHMENT_SIZE_LIMIT:
        raise InvocationRefused(f"option {name}: file is larger than {ATTACHMENT_SIZE_LIMIT}")


def _build_options(
    state: DiscordState,
    schemas: list[dict],
    values: dict[str, Any],
    channel: Channel,
    focused: str | None,
    check: bool,
) -> tuple[list[dict], dict[str, dict]]:
    """The option list of the leaf command, and resolved attachments for attachment options."""
    by_name = {s["name"]: s for s in schemas}
    unknown = set(values) - set(by_name)
    if unknown:
        raise InvocationRefused(f"unknown options {sorted(unknown)}; declared: {sorted(by_name)}")
    if focused is not None and focused not in values:
        raise InvocationRefused(f"the focused option {focused!r} needs a (partial) value")
    if check and focused is None:
        missing = [s["name"] for s in schemas if s.get("required") and s["name"] not in values]
        if missing:
            raise InvocationRefused(f"required options missing: {missing}")
    built: list[dict] = []
    attachments: dict[str, dict] = {}
    # Options travel in declaration order, whatever order the test wrote them in.
    for schema in schemas:
        name = schema["name"]
        if name not in values:
            continue
        value = values[name]
        option: dict[str, Any] = {"name": name, "type": schema["type"]}
        if name == focused:
            if check and not schema.get("autocomplete"):
                raise InvocationRefused(f"option {name} has no autocomplete")
            option.update(value=value, focused=True)
        elif schema["type"] not in OPTION_TYPES:
            raise ValueError(f"the loopback cannot fill option {name} of type {schema['type']}")
        else:
            if check:
                _check_value(schema, value)
            if isinstance(value, Upload):
                stored = state.store_file(
                    channel.id, value.filename, value.data, value.content_type
                )
                attachments[str(stored.id)] = {**stored.payload(), "ephemeral": True}
                value = str(stored.id)
            option["value"] = value
        built.append(option)
    return built, attachments


def _envelope(
    state: DiscordState,
    kind: int,
    guild: Guild | None,
    channel: Channel,
    member: Member | None,
    user: User,
    locale: str,
    data: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The parts every interaction carries (who, where, which locale) around `data`."""
    token = secrets.token_urlsafe(64)
    payload: dict[str, Any] = {
        "id": str(state.snowflakes.next()),
        "application_id": str(state.application_id),
        "type": kind,
        "token": token,
        "version": 1,
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        "locale": locale,
        "channel_id": str(channel.id),
        "app_permissions": str(state.app_permissions(channel)),
        "entitlements": [],
        "data": data,
    }
    if member is not None:
        payload.update(
            guild_id=str(guild.id),
            guild_locale=guild.locale,
            guild={"id": str(guild.id), "locale": guild.locale, "features": []},
            channel={**channel.payload(), "permissions": str(member.permissions_in(channel))},
            member=member.payload(channel),
            authorizing_integration_owners={"0": str(guild.id)},
            context=GUILD_CONTEXT,
        )
    else:
        payload.update(
            channel=channel.payload(),
            user=user.payload(),
            # A guild-installed app answering in its own DM reports owner "0".
            authorizing_integration_owners={"0": "0"},
            context=BOT_DM_CONTEXT,
        )
    return payload, token


def _where(
    state: DiscordState, guild: Guild | None, channel: Channel | None, user: User | Member
) -> tuple[Channel, Member | None, User]:
    """The channel, the member (None in a DM) and the user of an interaction."""
    if guild is None:
        if isinstance(user, Member):
            raise ValueError("a DM invocation takes a User, not a guild Member")
        return state.dm_channel(user), None, user
    if channel is None or channel.guild is not guild:
        raise ValueError(f"{channel!r} is not a channel of {guild!r}")
    member = guild.member(user)
    return channel, member, member.user


def build_message_command(
    state: DiscordState,
    *,
    guild: Guild | None,
    channel: Channel | None,
    user: User | Member,
    command: str,
    target: Message,
    locale: str,
    check: bool,
) -> Invocation:
    """A message context-menu command (Apps > `command` on `target`), as Discord sends it."""
    channel, member, user = _where(state, guild, channel, user)
    schema, guild_scoped = _find_command(state, command, guild, kind=3)
    if check:
        _check_gate(schema, member, channel)
        if target.channel_id != channel.id or target.deleted:
            raise InvocationRefused(f"message {target.id} is not shown in #{channel.name}")
    data: dict[str, Any] = {
        "id": schema["id"],
        "name": command,
        "type": 3,
        "target_id": str(target.id),
        "resolved": {"messages": {str(target.id): target.payload()}},
    }
    if guild_scoped:
        data["guild_id"] = str(guild.id)
    payload, token = _envelope(state, 2, guild, channel, member, user, locale, data)
    return Invocation(payload, token, command, channel, user)


def _buttons(message: Message) -> list[dict[str, Any]]:
    return [c for row in message.components for c in row.get("components") or []]


def build_component_interaction(
    state: DiscordState,
    *,
    guild: Guild | None,
    channel: Channel | None,
    user: User | Member,
    message: Message,
    custom_id: str,
    locale: str,
    check: bool,
) -> Invocation:
    """A press of the button `custom_id` on `message`, as Discord sends it."""
    channel, member, user = _where(state, guild, channel, user)
    button = next((b for b in _buttons(message) if b.get("custom_id") == custom_id), None)
    if check:
        if message.deleted or message.channel_id != channel.id:
            raise InvocationRefused(f"message {message.id} is not shown in #{channel.name}")
        if button is None:
            shown = [b.get("custom_id") for b in _buttons(message)]
            raise InvocationRefused(f"message {message.id} has no button {custom_id!r}: {shown}")
        if button.get("disabled"):
            raise InvocationRefused(f"button {custom_id!r} is disabled")
    data = {"custom_id": custom_id, "component_type": (button or {}).get("type", 2)}
    payload, token = _envelope(state, 3, guild, channel, member, user, locale, data)
    payload["message"] = message.payload()
    return Invocation(payload, token, f"button {custom_id}", channel, user)


def build_interaction(
    state: DiscordState,
    *,
    kind: int,
    guild: Guild | None,
    channel: Channel | None,
    user: User | Member,
    command: str,
    options: dict[str, Any] | None,
    subcommand: str | None,
    group: str | None,
    focused: str | None,
    locale: str,
    check: bool,
) -> Invocation:
    """The payload of an application command (kind 2) or autocomplete (kind 4) interaction."""
    channel, member, user = _where(state, guild, channel, user)
    schema, guild_scoped = _find_command(state, command, guild)
    if check:
        _check_gate(schema, member, channel)
    leaf_schemas = _descend(schema, group, subcommand)
    leaf, attachments = _build_options(
        state, leaf_schemas, dict(options or {}), channel, focused, check
    )
    nested = leaf
    if subcommand is not None:
        nested = [{"name": subcommand, "type": 1, "options": nested}]
    if group is not None:
        nested = [{"name": group, "type": 2, "options": nested}]
    data: dict[str, Any] = {"id": schema["id"], "name": command, "type": 1, "options": nested}
    if guild_scoped:
        data["guild_id"] = str(guild.id)
    if attachments:
        data["resolved"] = {"attachments": attachments}

    payload, token = _envelope(state, kind, guild, channel, member, user, locale, data)
    path = " ".join(p for p in (command, group, subcommand) if p)
    return Invocation(payload, token, path, channel, user)
