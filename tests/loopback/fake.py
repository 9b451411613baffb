"""`LoopbackDiscord`: the test-facing handle on the fake Discord (server, world, users' actions,
records and fault injection)."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .gateway import Gateway, GatewayConnection
from .invocation import (
    Invocation,
    build_component_interaction,
    build_interaction,
    build_message_command,
)
from .model import DEFAULT_BOT_PERMISSIONS, Channel, Guild, Member, User
from .ratelimits import Hit
from .records import InteractionRecord, Message, RestCall, RestFault, Violation
from .rest import RestApi
from .state import DiscordState

T = TypeVar("T")


class LoopbackDiscord:
    """A Discord of one application, served on 127.0.0.1 while the `async with` block runs.

    Build the world (users, guilds, roles, channels, members) before the bot connects: the
    bot learns guilds from READY/GUILD_CREATE, while every interaction carries fresh member
    data, so roles changed later still reach the bot through `invoke`.
    """

    def __init__(
        self,
        token: str = "loopback-token",
        *,
        bot_name: str = "poembot",
        shard_count: int = 1,
        rate_limits: bool = True,
    ) -> None:
        """`rate_limits`: announce and enforce Discord's per-route limits (see ratelimits.py)."""
        self.state = DiscordState(token, bot_name)
        self.state.shard_count = shard_count
        if not rate_limits:
            self.state.rate_limits = None
        self.gateway = Gateway(self.state)
        self._rest = RestApi(self.state)
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> LoopbackDiscord:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._rest.install(app)
        self.gateway.install(app)
        # A short shutdown: a client still connected at the end must not hold the test up.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.state.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.gateway.close(1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- where it lives ---------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The one bot token the fake accepts."""
        return self.state.token

    @property
    def rest_url(self) -> str:
        """What `discord.http.Route.BASE` must be, e.g. http://127.0.0.1:PORT/api/v10."""
        return self.state.rest_url

    @property
    def gateway_url(self) -> str:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` must be, e.g. ws://127.0.0.1:PORT/gateway."""
        return self.state.gateway_url

    # -- the world --------------------------------------------------------------------------

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def bot(self) -> User:
        """The bot's own user (its id is the application id)."""
        return self.state.bot

    @property
    def owner(self) -> User:
        """The application's owner (a user created with the fake unless `set_owner` is used)."""
        return self.state.owner

    def add_user(self, name: str) -> User:
        user = User(self.state.snowflakes.next(), name)
        self.state.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        guild_id: int | None = None,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> Guild:
        """A guild with a #general channel, its owner as a member, and the bot as a member
        holding a managed role with `bot_permissions`. Pass `guild_id` to pick its shard."""
        owner = owner or self.add_user(f"{name}-owner")
        guild = Guild(guild_id or self.state.snowflakes.next(), name, owner, self.state.snowflakes)
        guild.add_text_channel("general")
        guild.add_member(owner)
        bot_role = guild.add_role(self.bot.name, bot_permissions, managed=True)
        guild.add_member(self.bot, [bot_role])
        self.state.guilds[guild.id] = guild
        return guild

    def set_owner(self, user: User) -> None:
        """Make `user` the application's owner (and drop any team)."""
        self.state.owner = user
        self.state.team = None

    def set_team(self, members: list[User], owner: User | None = None) -> None:
        """Let a team own the application; `owner` (default: the first member) leads it."""
        self.state.team = list(members)
        self.state.owner = owner or members[0]

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock forward, e.g. past the 3 s or 15 min interaction deadlines."""
        self.state.clock.advance(seconds)

    # -- what the bot did -------------------------------------------------------------------

    @property
    def violations(self) -> list[Violation]:
        """Every refusal and broken rule, in order. Tests normally assert it is empty."""
        return self.state.violations

    @property
    def requests(self) -> list[RestCall]:
        return self.state.requests

    @property
    def rate_limit_hits(self) -> list[Hit]:
        """Every request refused with 429 because the bot went past an announced limit."""
        return self.state.rate_limits.hits if self.state.rate_limits else []

    @property
    def messages(self) -> list[Message]:
        """Every message the bot created (responses, followups, channel messages), in order."""
        return self.state.messages

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.state.interactions.values())

    @property
    def connections(self) -> list[GatewayConnection]:
        """Every Gateway connection the client opened, in order."""
        return self.gateway.connections

    @property
    def command_syncs(self) -> list[tuple[int | None, float]]:
        """(guild id or None for global, time) for every bulk overwrite of commands."""
        return self.state.command_syncs

    def global_commands(self) -> list[dict[str, Any]]:
        """The global commands as the bot last synced them (Discord's echo, with ids)."""
        return list(self.state.global_commands.values())

    def guild_commands(self, guild: Guild) -> list[dict[str, Any]]:
        return list(self.state.commands_for(guild.id).values())

    def command(self, name: str, guild: Guild | None = None) -> dict[str, Any]:
        """The synced slash command `name`: the guild's own first, else the global one."""
        for scope in ([guild.id] if guild else []) + [None]:
            found = self.state.commands_for(scope).get((1, name))
            if found is not None:
                return found
        raise KeyError(f"/{name} is not synced")

    def command_as_seen(
        self, name: str, locale: str, guild: Guild | None = None, kind: int = 1
    ) -> dict[str, Any]:
        """The command `name` (its English name) as a client in `locale` shows it: every name,
        description and choice name in that locale's translation where the bot gave one."""
        for scope in ([guild.id] if guild else []) + [None]:
            found = self.state.commands_for(scope).get((kind, name))
            if found is not None:
                return _as_seen(found, locale)
        raise KeyError(f"{name!r} (type {kind}) is not synced")

    async def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition"
    ) -> T:
        """The first truthy `predicate()`, re-checked whenever the fake records something
        and every 50 ms (so it may also watch the bot)."""
        return await self.state.signal.wait_until(predicate, timeout, lambda: f"no {what}")

    # -- what users do ----------------------------------------------------------------------

    async def wait_until_connected(self, timeout: float = 10.0) -> None:
        """Until every shard has a live Gateway connection past READY or RESUMED."""
        await self.wait_for(self.gateway.connected, timeout, "ready Gateway connection")

    async def invoke(
        self,
        guild: Guild | None,
        channel: Channel | None,
        user: User | Member,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
        skip_client_checks: bool = False,
        edit_payload: Callable[[dict[str, Any]], None] | None = None,
    ) -> InteractionRecord:
        """`user` runs /command in `channel` of `guild` (both None: in a DM with the bot).

        Option types come from the synced schema; pass `Upload` objects for attachment
        options. Raises `InvocationRefused` where Discord would not deliver the command
        (unless `skip_client_checks`, which plays a client that ignores Discord's gate).
        `edit_payload` changes the INTERACTION_CREATE payload in place before it is sent, to
        deliver what Discord's documents allow but the fake does not build (an optional field
        left out, say). Returns as soon as the interaction is dispatched.
        """
        return await self._deliver(
            edit_payload,
            kind=2,
            guild=guild,
            channel=channel,
            user=user,
            command=command,
            options=options,
            subcommand=subcommand,
            group=group,
            focused=None,
            locale=locale,
            check=not skip_client_checks,
        )

    async def autocomplete(
        self,
        guild: Guild | None,
        channel: Channel | None,
        user: User | Member,
        command: str,
        options: dict[str, Any],
        *,
        focused: str,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """`user` types into option `focused`; returns the choices the bot offered (empty if
        Discord refused the answer, which is then recorded as a violation)."""
        record = await self._deliver(
            None,
            kind=4,
            guild=guild,
            channel=channel,
            user=user,
            command=command,
            options=options,
            subcommand=subcommand,
            group=group,
            focused=focused,
            locale=locale,
            check=True,
        )
        await record.first_response(timeout)
        return record.choices

    def post_message(self, channel: Channel, user: User | Member, content: str) -> Message:
        """`user` writes `content` in `channel` (the bot, lacking the message intent, is not
        told; it sees the message when a menu command or a payload carries it)."""
        author = user.user if isinstance(user, Member) else user
        guild = channel.guild
        message = Message(
            id=self.state.snowflakes.next(),
            kind="user",
            channel_id=channel.id,
            guild_id=guild.id if guild else None,
            author=author,
            created_at=self.state.clock.now(),
            content=content,
        )
        self.state.messages.append(message)
        return message

    async def invoke_message_command(
        self,
        guild: Guild | None,
        channel: Channel | None,
        user: User | Member,
        command: str,
        target: Message,
        *,
        locale: str = "en-US",
        skip_client_checks: bool = False,
    ) -> InteractionRecord:
        """`user` picks Apps > `command` on the message `target` (a message context menu)."""
        invocation = build_message_command(
            self.state,
            guild=guild,
            channel=channel,
            user=user,
            command=command,
            target=target,
            locale=locale,
            check=not skip_client_checks,
        )
        return await self._dispatch(invocation, 2, guild, target)

    async def press(
        self,
        message: Message,
        custom_id: str,
        user: User | Member,
        *,
        locale: str = "en-US",
        skip_client_checks: bool = False,
    ) -> InteractionRecord:
        """`user` presses the button `custom_id` on `message` (refused if it has none)."""
        channel = self.state.find_channel(message.channel_id)
        if channel is None:
            raise ValueError(f"message {message.id} is in no channel the fake knows")
        invocation = build_component_interaction(
            self.state,
            guild=channel.guild,
            channel=channel if channel.guild else None,
            user=user,
            message=message,
            custom_id=custom_id,
            locale=locale,
            check=not skip_client_checks,
        )
        return await self._dispatch(invocation, 3, channel.guild, message)

    async def _deliver(
        self, edit_payload: Callable[[dict[str, Any]], None] | None, **spec: Any
    ) -> InteractionRecord:
        invocation = build_interaction(self.state, **spec)
        if edit_payload is not None:
            edit_payload(invocation.payload)
        return await self._dispatch(invocation, spec["kind"], spec["guild"])

    async def _dispatch(
        self,
        invocation: Invocation,
        kind: int,
        guild: Guild | None,
        target: Message | None = None,
    ) -> InteractionRecord:
        state = self.state
        record = InteractionRecord(
            id=int(invocation.payload["id"]),
            token=invocation.token,
            type=kind,
            target=target,
            command=invocation.command,
            guild_id=guild.id if guild else None,
            channel_id=invocation.channel.id,
            user_id=invocation.user.id,
            payload=invocation.payload,
            dispatched_at=state.clock.now(),
            signal=state.signal,
        )
        state.interactions[record.id] = record
        # Timed before sending: the bot shares this event loop and may answer before we resume.
        await self.gateway.dispatch("INTERACTION_CREATE", invocation.payload, record.guild_id)
        return record

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        path_pattern: str,
        status: int = 429,
        *,
        times: int = 1,
        method: str | None = None,
        retry_after: float = 0.05,
    ) -> RestFault:
        """Answer the next `times` REST calls whose path (after /api/v10) matches the regex
        `path_pattern` with `status`: 429 as Discord's retryable rate limit, anything else as
        a plain error (discord.py sleeps 1 + 2n s before retrying a 5xx)."""
        fault = RestFault(re.compile(path_pattern), method, status, times, retry_after)
        self.state.faults.append(fault)
        return fault

    async def close_gateway(self, code: int = 4000, shard_id: int | None = None) -> None:
        """Close the Gateway connection(s) with `code`; 4000 lets the client resume."""
        await self.gateway.close(code, shard_id)

    def drop_gateway(self, shard_id: int | None = None) -> None:
        """Cut the TCP connection(s) with no close frame (the client sees 1006)."""
        self.gateway.drop(shard_id)

    async def request_reconnect(self, shard_id: int | None = None) -> None:
        """Send op 7 RECONNECT."""
        await self.gateway.request_reconnect(shard_id)

    async def invalidate_session(
        self, resumable: bool = False, shard_id: int | None = None
    ) -> None:
        """Send op 9 INVALID SESSION with d=`resumable`."""
        await self.gateway.invalidate(resumable, shard_id)


def _as_seen(thing: dict[str, Any], locale: str) -> dict[str, Any]:
    seen = dict(thing)
    for key in ("name", "description"):
        translated = (thing.get(f"{key}_localizations") or {}).get(locale)
        if translated:
            seen[key] = translated
    for key in ("options", "choices"):
        if thing.get(key):
            seen[key] = [_as_seen(part, locale) for part in thing[key]]
    return seen
