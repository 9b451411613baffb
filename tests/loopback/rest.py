"""The loopback Discord's REST API under /api/v10, and its CDN route for attachments.

It answers what discord.py calls for a slash-command bot (login, application info, gateway
discovery, command sync, interaction callbacks, webhook followups and edits, channel messages),
enforces Discord's rules and limits on those calls, and records every call, every message and
every violation. Unknown routes get Discord's 404 body and are recorded as violations too.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import hdrs, web

from .limits import (
    ATTACHMENT_SIZE_LIMIT,
    INITIAL_RESPONSE_DEADLINE,
    TOKEN_LIFETIME,
    Problem,
    choice_problems,
    command_problems,
    describe,
    invalid_form_body,
    is_empty_message,
    message_problems,
)
from .model import Permission
from .records import EPHEMERAL, LOADING, Attachment, Callback, InteractionRecord, Message, RestCall
from .state import DiscordState

API_PREFIX = "/api/v10"
FILE_FIELD = re.compile(r"files\[(\d+)\]")
CALL = web.RequestKey("call", RestCall)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer whose Content-Type is exactly `application/json`: discord.py compares
    the header literally and treats anything else (even with a charset) as plain text."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={hdrs.CONTENT_TYPE: "application/json", **(headers or {})},
    )


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"message": message, "code": code}


def too_many_requests(retry_after: float, headers: dict[str, str]) -> web.Response:
    """Discord's 429. discord.py retries it only when it looks like Discord's: a Via header and
    a JSON body with retry_after; the rate-limit headers come as a consistent set."""
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    return json_response(body, 429, {"Via": "1.1 google", **headers})


class Refused(Exception):
    """Ends a handler early with Discord's error answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class RestApi:
    """Route handlers bound to the fake's state."""

    def __init__(self, state: DiscordState) -> None:
        self.state = state

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        p = API_PREFIX
        app.router.add_get(f"{p}/users/@me", self.get_me)
        app.router.add_get(f"{p}/oauth2/applications/@me", self.get_application)
        app.router.add_get(f"{p}/gateway", self.get_gateway)
        app.router.add_get(f"{p}/gateway/bot", self.get_gateway_bot)
        for path in (
            "/applications/{app_id}/commands",
            "/applications/{app_id}/guilds/{guild_id}/commands",
        ):
            app.router.add_put(p + path, self.put_commands)
            app.router.add_get(p + path, self.get_commands)
        app.router.add_post(
            f"{p}/interactions/{{interaction_id}}/{{token}}/callback", self.callback
        )
        app.router.add_post(f"{p}/webhooks/{{app_id}}/{{token}}", self.post_followup)
        message = f"{p}/webhooks/{{app_id}}/{{token}}/messages/{{message_id}}"
        app.router.add_get(message, self.get_webhook_message)
        app.router.add_patch(message, self.patch_webhook_message)
        app.router.add_delete(message, self.delete_webhook_message)
        app.router.add_post(f"{p}/channels/{{channel_id}}/messages", self.post_channel_message)
        message = f"{p}/channels/{{channel_id}}/messages/{{message_id}}"
        app.router.add_get(message, self.get_channel_message)
        app.router.add_patch(message, self.patch_channel_message)
        app.router.add_delete(message, self.delete_channel_message)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.get_file)

    # -- plumbing ---------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        state = self.state
        path = request.path[len(API_PREFIX) :]
        call = RestCall(request.method, path, request.query_string, state.clock.now())
        request[CALL] = call
        state.requests.append(call)
        fault = next((f for f in state.faults if f.matches(request.method, path)), None)
        verdict = None
        try:
            if fault is not None:
                fault.remaining -= 1
                fault.hits += 1
                response: web.StreamResponse = self._fault_response(fault.status, fault.retry_after)
            elif (
                state.rate_limits is not None
                and (verdict := state.rate_limits.take(request.method, path, state.clock.now()))
                is not None
                and verdict.retry_after is not None
            ):
                response = too_many_requests(verdict.retry_after, verdict.headers)
            else:
                response = await handler(request)
        except Refused as refusal:
            response = refusal.response
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            state.violate("unknown-route", "the loopback does not serve this", request.method, path)
            response = json_response(error_body(0, "404: Not Found"), 404)
        if verdict is not None and verdict.retry_after is None:
            response.headers.update(verdict.headers)
        call.status = response.status
        state.signal.fire()
        return response

    @staticmethod
    def _fault_response(status: int, retry_after: float) -> web.Response:
        if status != 429:
            return json_response(error_body(0, f"{status}: Injected failure"), status)
        headers = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "loopback-injected",
            "X-RateLimit-Scope": "user",
        }
        return too_many_requests(retry_after, headers)

    def _refuse(
        self,
        request: web.Request,
        rule: str,
        detail: str,
        status: int,
        body: dict[str, Any],
        interaction_id: int | None = None,
    ) -> NoReturn:
        self.state.violate(rule, detail, request.method, request[CALL].path, interaction_id)
        raise Refused(json_response(body, status))

    def _require_bot(self, request: web.Request) -> None:
        if request.headers.get(hdrs.AUTHORIZATION) != f"Bot {self.state.token}":
            raise Refused(json_response(error_body(0, "401: Unauthorized"), 401))

    async def _read_body(
        self, request: web.Request, channel_id: int
    ) -> tuple[Any, dict[int, Attachment]]:
        """The JSON body (or multipart `payload_json`) and the files, keyed by their index."""
        files: dict[int, Attachment] = {}
        try:
            if request.content_type == "multipart/form-data":
                body: Any = {}
                async for part in await request.multipart():
                    index = FILE_FIELD.fullmatch(part.name or "")
                    if part.name == "payload_json":
                        body = json.loads(await part.text())
                    elif index is not None:
                        data = await part.read(decode=False)
                        ctype = part.headers.get(hdrs.CONTENT_TYPE)
                        files[int(index[1])] = self.state.store_file(
                            channel_id, part.filename or f"file{index[1]}", data, ctype
                        )
            elif request.can_read_body:
                body = await request.json()
            else:
                body = {}
        except ValueError:
            self._refuse(
                request,
                "invalid-json",
                "the body is not JSON",
                400,
                error_body(50109, "The request body contains invalid JSON."),
            )
        request[CALL].body = body
        return body, files

    @staticmethod
    def _message_refusal(
        body: dict[str, Any],
        files: dict[int, Attachment],
        *,
        creating: bool,
        prefix: tuple[str, ...] = (),
    ) -> tuple[str, str, int, dict[str, Any]] | None:
        """Why Discord would refuse this message body: (rule, detail, status, error), or None."""
        problems = message_problems(body)
        if problems:
            return (
                "message-limits",
                describe(problems, prefix),
                400,
                invalid_form_body(problems, prefix),
            )
        if creating and is_empty_message(body, len(files)):
            return (
                "empty-message",
                "no content, embeds, components or files",
                400,
                error_body(50006, "Cannot send an empty message"),
            )
        size = sum(f.size for f in files.values())
        if size > ATTACHMENT_SIZE_LIMIT:
            return (
                "file-too-large",
                f"{size} bytes of files",
                413,
                error_body(40005, "Request entity too large"),
            )
        return None

    def _check_message(
        self,
        request: web.Request,
        body: dict[str, Any],
        files: dict[int, Attachment],
        *,
        creating: bool,
        interaction_id: int | None,
    ) -> None:
        refusal = self._message_refusal(body, files, creating=creating)
        if refusal is not None:
            self._refuse(request, *refusal, interaction_id)

    def _new_message(
        self,
        kind: str,
        record: InteractionRecord | None,
        channel_id: int,
        guild_id: int | None,
        flags: int,
    ) -> Message:
        state = self.state
        message = Message(
            id=state.snowflakes.next(),
            kind=kind,
            channel_id=channel_id,
            guild_id=guild_id,
            author=state.bot,
            created_at=state.clock.now(),
            interaction_id=record.id if record else None,
            application_id=state.application_id if record else None,
            flags=flags,
            # 20 is CHAT_INPUT_COMMAND: what Discord reports for interaction responses.
            type=0 if record is None else 20,
        )
        state.messages.append(message)
        return message

    # -- login and discovery ----------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(
            {**self.state.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
        )

    async def get_application(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response(self.state.application_payload())

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.state.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {
                "url": self.state.gateway_url,
                "shards": self.state.shard_count,
                "session_start_limit": limit,
            }
        )

    # -- application commands ---------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        self._require_bot(request)
        state = self.state
        if request.match_info["app_id"] != str(state.application_id):
            raise Refused(json_response(error_body(10002, "Unknown Application"), 404))
        raw_guild = request.match_info.get("guild_id")
        if raw_guild is None:
            return None
        if not raw_guild.isdigit() or int(raw_guild) not in state.guilds:
            self._refuse(
                request,
                "unknown-guild",
                f"guild {raw_guild}",
                404,
                error_body(10004, "Unknown Guild"),
            )
        return int(raw_guild)

    async def put_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        state = self.state
        commands, _ = await self._read_body(request, 0)
        if not isinstance(commands, list):
            self._refuse(
                request, "invalid-command", "body is not a list", 400, invalid_form_body([])
            )
        problems = [
            p._replace(path=(i, *p.path))
            for i, c in enumerate(commands)
            for p in command_problems(c)
        ]
        keys = [(c.get("type", 1), c.get("name")) for c in commands]
        if len(set(keys)) != len(keys):
            problems.append(
                Problem((), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Command names must be unique")
            )
        if problems:
            self._refuse(
                request, "invalid-command", describe(problems), 400, invalid_form_body(problems)
            )
        stored = {}
        for command, key in zip(commands, keys, strict=True):
            # Discord keeps a command's id across syncs as long as its name and type stay.
            command_id = state.command_ids.setdefault((guild_id, *key), state.snowflakes.next())
            permissions = command.get("default_member_permissions")
            echoed = {
                # Discord answers every command with a description ("" for menu commands).
                "description": "",
                **command,
                "id": str(command_id),
                "application_id": str(state.application_id),
                "version": str(state.snowflakes.next()),
                "type": key[0],
                # discord.py sends an int; Discord stores and answers a string.
                "default_member_permissions": None if permissions is None else str(permissions),
            }
            if guild_id is not None:
                echoed["guild_id"] = str(guild_id)
            stored[key] = echoed
        if guild_id is None:
            state.global_commands = stored
        else:
            state.guild_commands[guild_id] = stored
        state.command_syncs.append((guild_id, state.clock.now()))
        return json_response(list(stored.values()))

    async def get_commands(self, request: web.Request) -> web.Response:
        guild_id = self._command_scope(request)
        return json_response(list(self.state.commands_for(guild_id).values()))

    # -- interactions -----------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        state = self.state
        raw_id = request.match_info["interaction_id"]
        record = state.interactions.get(int(raw_id)) if raw_id.isdigit() else None
        body, files = await self._read_body(request, record.channel_id if record else 0)
        if record is None or record.token != request.match_info["token"]:
            self._refuse(
                request,
                "unknown-interaction",
                f"interaction {raw_id}",
                404,
                error_body(10062, "Unknown interaction"),
            )
        now = state.clock.now()
        latency = now - record.dispatched_at
        kind = body.get("type")
        data = body.get("data") or {}

        def refuse(rule: str, detail: str, status: int, error: dict[str, Any]) -> NoReturn:
            record.callbacks.append(Callback(kind, body, now, latency, False, error))
            self._refuse(request, rule, detail, status, error, record.id)

        if record.acknowledged:
            refuse(
                "already-acknowledged",
                f"second callback (type {kind})",
                400,
                error_body(40060, "Interaction has already been acknowledged."),
            )
        if latency > INITIAL_RESPONSE_DEADLINE:
            refuse(
                "late-first-response",
                f"first response after {latency:.2f} s",
                404,
                error_body(10062, "Unknown interaction"),
            )
        # Components may also update their own message (6: deferred, 7: now).
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,)}[record.type]
        if kind not in allowed:
            refuse(
                "wrong-callback-type",
                f"type {kind} answers interaction type {record.type}",
                400,
                error_body(50035, "Invalid Form Body"),
            )
        if kind in (4, 7):
            refusal = self._message_refusal(data, files, creating=kind == 4, prefix=("data",))
            if refusal is not None:
                refuse(*refusal)
        if kind == 8:
            problems = choice_problems(data.get("choices") or [])
            if problems:
                refuse(
                    "autocomplete-limits",
                    describe(problems, ("data",)),
                    400,
                    invalid_form_body(problems, ("data",)),
                )

        record.callbacks.append(Callback(kind, body, now, latency, True))
        interaction = {"id": str(record.id), "type": record.type}
        answer: dict[str, Any] = {"interaction": interaction}
        if kind in (4, 5):
            ephemeral = int(data.get("flags") or 0) & EPHEMERAL
            message = self._new_message(
                "original",
                record,
                record.channel_id,
                record.guild_id,
                ephemeral | (LOADING if kind == 5 else 0),
            )
            if record.type == 3:
                # An answer to a button is shown as a reply to the button's message.
                message.type, message.reference = 19, record.target
            elif (record.payload.get("data") or {}).get("type") == 3:
                message.type = 23  # CONTEXT_MENU_COMMAND
            if kind == 4:
                message.apply(data, files, now)
            record.original = message
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=kind == 5,
                response_message_ephemeral=bool(ephemeral),
            )
            answer["resource"] = {"type": kind, "message": message.payload()}
        elif kind in (6, 7) and record.target is not None:
            if kind == 7:
                record.target.apply(data, files, now)
            answer["resource"] = {"type": kind, "message": record.target.payload()}
        else:
            answer["resource"] = {"type": kind}
        return json_response(answer)

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        state = self.state
        record = state.interaction_by_token(request.match_info["token"])
        if record is None or request.match_info["app_id"] != str(state.application_id):
            self._refuse(
                request,
                "unknown-webhook",
                "no interaction has this token",
                401,
                error_body(50027, "Invalid Webhook Token"),
            )
        age = state.clock.now() - record.dispatched_at
        if age > TOKEN_LIFETIME:
            self._refuse(
                request,
                "token-expired",
                f"token used {age:.0f} s after the interaction",
                401,
                error_body(50027, "Invalid Webhook Token"),
                record.id,
            )
        return record

    def _webhook_message(self, request: web.Request, record: InteractionRecord) -> Message:
        wanted = request.match_info["message_id"]
        candidates = [record.original] if wanted == "@original" else record.messages
        found = next(
            (m for m in candidates if m and (wanted == "@original" or str(m.id) == wanted)), None
        )
        if found is None or found.deleted:
            self._refuse(
                request,
                "unknown-message",
                f"message {wanted}",
                404,
                error_body(10008, "Unknown Message"),
                record.id,
            )
        return found

    async def post_followup(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        body, files = await self._read_body(request, record.channel_id)
        if not record.acknowledged:
            self._refuse(
                request,
                "followup-before-response",
                "followup to an unanswered interaction",
                404,
                error_body(10015, "Unknown Webhook"),
                record.id,
            )
        self._check_message(request, body, files, creating=True, interaction_id=record.id)
        now = self.state.clock.now()
        original = record.original
        if original is not None and original.loading and not original.deleted:
            # Discord turns the first followup after a defer into the deferred response itself,
            # keeping the defer's ephemerality (unless the bot deleted it: then it is new).
            message = original
        else:
            message = self._new_message(
                "followup",
                record,
                record.channel_id,
                record.guild_id,
                int(body.get("flags") or 0) & EPHEMERAL,
            )
            record.followups.append(message)
        message.apply(body, files, now)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload())
        return web.Response(status=204)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        return json_response(self._webhook_message(request, record).payload())

    async def patch_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        body, files = await self._read_body(request, record.channel_id)
        message = self._webhook_message(request, record)
        self._check_message(request, body, files, creating=False, interaction_id=record.id)
        message.apply(body, files, self.state.clock.now())
        return json_response(message.payload())

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        self._webhook_message(request, record).deleted_at = self.state.clock.now()
        return web.Response(status=204)

    # -- channel messages -------------------------------------------------------------------

    def _channel(self, request: web.Request, needed: int) -> tuple[int, int | None]:
        self._require_bot(request)
        raw = request.match_info["channel_id"]
        channel = self.state.find_channel(int(raw)) if raw.isdigit() else None
        if channel is None:
            self._refuse(
                request,
                "unknown-channel",
                f"channel {raw}",
                404,
                error_body(10003, "Unknown Channel"),
            )
        if self.state.app_permissions(channel) & needed != needed:
            self._refuse(
                request,
                "missing-permissions",
                f"bot lacks {needed:#x} in #{channel.name}",
                403,
                error_body(50013, "Missing Permissions"),
            )
        return channel.id, channel.guild.id if channel.guild else None

    def _channel_message(self, request: web.Request, channel_id: int) -> Message:
        wanted = request.match_info["message_id"]
        found = next(
            (
                m
                for m in self.state.messages
                if str(m.id) == wanted
                and m.channel_id == channel_id
                and not m.ephemeral
                and not m.deleted
            ),
            None,
        )
        if found is None:
            self._refuse(
                request,
                "unknown-message",
                f"message {wanted}",
                404,
                error_body(10008, "Unknown Message"),
            )
        return found

    async def post_channel_message(self, request: web.Request) -> web.Response:
        needed = Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES
        channel_id, guild_id = self._channel(request, needed)
        body, files = await self._read_body(request, channel_id)
        if files:
            self._channel(request, needed | Permission.ATTACH_FILES)
        self._check_message(request, body, files, creating=True, interaction_id=None)
        message = self._new_message("channel", None, channel_id, guild_id, 0)
        message.apply(body, files, self.state.clock.now())
        return json_response(message.payload())

    async def get_channel_message(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(
            request, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY
        )
        return json_response(self._channel_message(request, channel_id).payload())

    async def patch_channel_message(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(request, Permission.VIEW_CHANNEL)
        body, files = await self._read_body(request, channel_id)
        message = self._channel_message(request, channel_id)
        self._check_message(request, body, files, creating=False, interaction_id=None)
        message.apply(body, files, self.state.clock.now())
        return json_response(message.payload())

    async def delete_channel_message(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(request, Permission.VIEW_CHANNEL)
        self._channel_message(request, channel_id).deleted_at = self.state.clock.now()
        return web.Response(status=204)

    # -- CDN --------------------------------------------------------------------------------

    async def get_file(self, request: web.Request) -> web.Response:
        raw = request.match_info["attachment_id"]
        attachment = self.state.files.get(int(raw)) if raw.isdigit() else None
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )
