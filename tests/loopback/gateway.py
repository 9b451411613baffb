"""The loopback Discord's Gateway: the websocket discord.py keeps open to receive events.

It speaks plain-text JSON frames (discord.py only decompresses binary ones): HELLO, heartbeat
ACKs, IDENTIFY -> READY + one GUILD_CREATE per guild of the shard, RESUME -> replay of missed
dispatches + RESUMED, member chunks on request. Dispatches are numbered per session and kept,
so a client that resumes after a disconnect receives what it missed. Tests inject the faults a
real Gateway produces: closing with a code, dropping the TCP connection, RECONNECT (op 7) and
INVALID SESSION (op 9).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .model import Guild
from .state import DiscordState

log = logging.getLogger("loopback.gateway")

HEARTBEAT_INTERVAL_MS = 41_250
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, REQUEST_MEMBERS = 0, 1, 2, 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
# Close codes Discord uses for a bad token, a bad shard and a repeated IDENTIFY.
AUTHENTICATION_FAILED, INVALID_SHARD, ALREADY_AUTHENTICATED = 4004, 4010, 4005


@dataclass(eq=False)
class GatewayConnection:
    """One websocket the client opened: where, how it authenticated, and how it ended."""

    path: str
    query: dict[str, str]
    opened_at: float
    ws: web.WebSocketResponse = field(repr=False)
    request: web.Request = field(repr=False)
    handshake: str | None = None
    shard: tuple[int, int] | None = None
    intents: int | None = None
    identified_at: float | None = None
    ready: bool = False
    live: bool = True
    closed_at: float | None = None
    close_code: int | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


@dataclass(eq=False)
class GatewaySession:
    """What survives a dropped connection: the sequence and every dispatch sent so far."""

    id: str
    shard: tuple[int, int] | None
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    connection: GatewayConnection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class Gateway:
    """Sessions and connections of the fake Gateway, and the faults tests inject into them."""

    def __init__(self, state: DiscordState) -> None:
        self.state = state
        self.connections: list[GatewayConnection] = []
        self._sessions: dict[str, GatewaySession] = {}
        self._current: dict[int, GatewaySession] = {}

    def install(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self.handle)
        app.router.add_get("/resume", self.handle)

    # -- the socket -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # A short close timeout: the client answers a close frame at once or is gone.
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0)
        await ws.prepare(request)
        connection = GatewayConnection(
            request.path, dict(request.query), self.state.clock.now(), ws, request
        )
        self.connections.append(connection)
        await self._send(
            connection, {"op": HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._receive(connection, json.loads(message.data))
        finally:
            connection.live = False
            connection.closed_at = self.state.clock.now()
            if connection.close_code is None:
                connection.close_code = ws.close_code
            self.state.signal.fire()
        return ws

    async def _send(self, connection: GatewayConnection, frame: dict[str, Any]) -> None:
        frame.setdefault("s", None)
        frame.setdefault("t", None)
        async with connection.send_lock:
            if connection.ws.closed:
                return
            try:
                await connection.ws.send_str(json.dumps(frame))
            except ConnectionError:
                # The client vanished; a dispatch stays in its session for a later RESUME.
                connection.live = False

    async def _close(self, connection: GatewayConnection, code: int) -> None:
        connection.live = False
        connection.close_code = code
        await connection.ws.close(code=code)

    async def _receive(self, connection: GatewayConnection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            await self._send(connection, {"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(connection, data)
        elif op == RESUME:
            await self._resume(connection, data)
        elif op == REQUEST_MEMBERS:
            await self._send_member_chunk(connection, data)
        else:
            log.debug("loopback gateway ignores op %s", op)

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if connection.handshake is not None:
            await self._close(connection, ALREADY_AUTHENTICATED)
            return
        if data.get("token") != self.state.token:
            await self._close(connection, AUTHENTICATION_FAILED)
            return
        shard = tuple(data["shard"]) if data.get("shard") else None
        if shard is not None and not 0 <= shard[0] < shard[1]:
            await self._close(connection, INVALID_SHARD)
            return
        connection.handshake, connection.shard = "identify", shard
        connection.identified_at = self.state.clock.now()
        connection.intents = data.get("intents")
        session = GatewaySession(secrets.token_hex(16), shard)
        index = shard[0] if shard else 0
        stale = self._current.get(index)
        if stale is not None:
            self._sessions.pop(stale.id, None)
        self._sessions[session.id] = session
        self._current[index] = session
        async with session.lock:
            session.connection = connection
            await self._dispatch(session, "READY", self._ready_payload(session))
            for guild in self._guilds_of(shard):
                await self._dispatch(session, "GUILD_CREATE", guild.create_payload())
            connection.ready = True
        self.state.signal.fire()

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.state.token:
            await self._close(connection, AUTHENTICATION_FAILED)
            return
        session = self._sessions.get(data.get("session_id"))
        if session is None:
            await self._send(connection, {"op": INVALID_SESSION, "d": False})
            connection.live = False
            return
        connection.handshake, connection.shard = "resume", session.shard
        async with session.lock:
            previous = session.connection
            if previous is not None and previous is not connection:
                # A resume takes the session over from a connection the client gave up on.
                previous.live = False
            session.connection = connection
            seen = data.get("seq") or 0
            for frame in session.frames:
                if frame["s"] > seen:
                    await self._send(connection, dict(frame))
            await self._dispatch(session, "RESUMED", {})
            connection.ready = True
        self.state.signal.fire()

    async def _send_member_chunk(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = next((s for s in self._sessions.values() if s.connection is connection), None)
        guild = self.state.guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if m.id in wanted]
        elif data.get("query"):
            members = [m for m in members if m.user.name.startswith(data["query"])]
        if data.get("limit"):
            members = members[: data["limit"]]
        chunk = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        async with session.lock:
            await self._dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _guilds_of(self, shard: tuple[int, int] | None) -> list[Guild]:
        guilds = list(self.state.guilds.values())
        if shard is None:
            return guilds
        return [g for g in guilds if (g.id >> 22) % shard[1] == shard[0]]

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        state = self.state
        payload: dict[str, Any] = {
            "v": 10,
            "user": {**state.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [
                {"id": str(g.id), "unavailable": True} for g in self._guilds_of(session.shard)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": state.resume_gateway_url,
            "application": {"id": str(state.application_id), "flags": state.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["loopback"],
        }
        if session.shard is not None:
            payload["shard"] = list(session.shard)
        return payload

    async def _dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        """Number, keep and (when connected) send one dispatch; the caller holds the lock."""
        session.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.frames.append(frame)
        connection = session.connection
        if connection is not None and connection.live:
            await self._send(connection, dict(frame))

    # -- used by LoopbackDiscord ------------------------------------------------------------

    def connected(self) -> bool:
        """Whether every shard has a live connection that has received READY or RESUMED."""
        if not self._current:
            return False
        count = next(iter(self._current.values())).shard
        shards = count[1] if count else 1
        for index in range(shards):
            session = self._current.get(index)
            connection = session.connection if session else None
            if connection is None or not (connection.live and connection.ready):
                return False
        return True

    async def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        """Send an event on the session of the shard that owns `guild_id` (shard 0 for DMs).

        While that session is disconnected the event waits in it for the client's RESUME.
        """
        if not self._current:
            raise RuntimeError("no bot has identified with the loopback Gateway")
        shard = next(iter(self._current.values())).shard
        index = (guild_id >> 22) % shard[1] if shard and guild_id else 0
        session = self._current[index]
        async with session.lock:
            await self._dispatch(session, event, data)

    def _live(self, shard_id: int | None) -> list[GatewayConnection]:
        return [
            c
            for c in self.connections
            if c.live and (shard_id is None or (c.shard or (0, 1))[0] == shard_id)
        ]

    async def close(self, code: int, shard_id: int | None = None) -> None:
        """Close live connections with `code` (4000: resumable; 4004 etc.: fatal)."""
        await asyncio.gather(*(self._close(c, code) for c in self._live(shard_id)))

    def drop(self, shard_id: int | None = None) -> None:
        """Cut live connections without a close frame; the client sees code 1006."""
        for connection in self._live(shard_id):
            connection.live = False
            connection.close_code = 1006
            transport = connection.request.transport
            if transport is not None:
                transport.abort()

    async def request_reconnect(self, shard_id: int | None = None) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        for connection in self._live(shard_id):
            connection.live = False
            await self._send(connection, {"op": RECONNECT, "d": None})

    async def invalidate(self, resumable: bool, shard_id: int | None = None) -> None:
        """Send op 9 INVALID SESSION; when not resumable the session is forgotten, so the
        client must IDENTIFY again and gets a fresh READY."""
        for connection in self._live(shard_id):
            connection.live = False
            if not resumable:
                for session in list(self._sessions.values()):
                    if session.connection is connection:
                        del self._sessions[session.id]
            await self._send(connection, {"op": INVALID_SESSION, "d": resumable})
