"""What the loopback Discord remembers: interactions, their callbacks, messages, REST calls,
rule violations and injected faults, plus the clock they are timed with.

Records are plain objects that tests read directly; the awaitable helpers wait until the bot
has done something, failing with a description of what did arrive when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .model import User, iso_now

T = TypeVar("T")

EPHEMERAL = 1 << 6
LOADING = 1 << 7


class Clock:
    """Monotonic seconds that tests may push forward to reach Discord's deadlines at once."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


class Signal:
    """Wakes everything waiting on records whenever the fake records something new.

    Waiters also re-check every `POLL` seconds, so predicates may look at the bot's own
    state too (which changes without the fake knowing).
    """

    POLL = 0.05
    # How many times its `timeout` a wait lasts before it gives up. A benchmark's waits are
    # bounds it judges by (1); the test suite sets more (tests/conftest.py), where a timeout
    # is what a wait takes on a quiet machine and only a hang should fail.
    PATIENCE = 1.0

    def __init__(self) -> None:
        self._event = asyncio.Event()
        # Whether a message is an answer still being written (a streamed poem, say): tests
        # that know the bot's marker set it, so that `final()` waits for the last edit.
        self.in_progress: Callable[[Message], bool] = lambda message: False

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float, describe: Callable[[], str]
    ) -> T:
        """The first truthy value of `predicate()`, re-evaluated after every change; a
        TimeoutError after PATIENCE x `timeout` seconds without one."""
        timeout *= self.PATIENCE

        async def poll() -> T:
            while True:
                event = self._event
                value = predicate()
                if value:
                    return value
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), self.POLL)

        try:
            return await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"after {timeout} s: {describe()}") from None


@dataclass(eq=False)
class Attachment:
    """A file as the fake stores it: uploaded by a test or sent by the bot."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.description:
            data["description"] = self.description
        return data


@dataclass
class MessageVersion:
    """One write of a message: the body exactly as the bot sent it, and the files with it."""

    received_at: float
    body: dict[str, Any]
    files: list[Attachment]


@dataclass(eq=False)
class Message:
    """A message the bot created: an interaction's original response, a followup, or a plain
    channel message. Fields hold the current state; `versions` holds every write."""

    id: int
    kind: str
    channel_id: int
    guild_id: int | None
    author: User
    created_at: float
    interaction_id: int | None = None
    application_id: int | None = None
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    # 0 a user's message, 20 a slash command's answer, 23 a context menu's, 19 a reply (what
    # Discord makes of an answer to a button on another message).
    type: int = 0
    reference: Message | None = None  # the message this one replies to
    versions: list[MessageVersion] = field(default_factory=list)
    edited_at: float | None = None
    deleted_at: float | None = None
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True for a deferred response that has not been edited yet ("is thinking...")."""
        return bool(self.flags & LOADING)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        """`allowed_mentions` of the latest write, exactly as sent (None when absent)."""
        return self.versions[-1].body.get("allowed_mentions") if self.versions else None

    def apply(self, body: dict[str, Any], files: dict[int, Attachment], at: float) -> None:
        """Take one create or edit body; keys the body leaves out keep their value."""
        # Filling a deferred response is not an edit in Discord's eyes: it shows no "(edited)".
        if self.versions:
            self.edited_at = at
            self.edited_timestamp = iso_now()
        self.versions.append(MessageVersion(at, body, list(files.values())))
        if "content" in body:
            self.content = body["content"] or ""
        if "embeds" in body:
            self.embeds = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            self.components = body["components"] or []
        if "flags" in body and body["flags"] is not None:
            # Ephemerality is fixed at creation; edits may only toggle the other flags.
            self.flags = (self.flags & EPHEMERAL) | (int(body["flags"]) & ~EPHEMERAL)
        self.flags &= ~LOADING
        listed = body.get("attachments")
        if listed is None:
            self.attachments = [*self.attachments, *files.values()]
            return
        ids = [int(a["id"]) for a in listed]
        descriptions = {int(a["id"]): a.get("description") for a in listed}
        kept = [a for a in self.attachments if a.id in ids]
        for index, attachment in files.items():
            attachment.description = descriptions.get(index)
        self.attachments = kept + list(files.values())

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "embeds": self.embeds,
            "attachments": [a.payload() for a in self.attachments],
            "components": self.components,
            "flags": self.flags,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.reference is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(self.reference.id),
                "channel_id": str(self.reference.channel_id),
                **({"guild_id": str(self.guild_id)} if self.guild_id else {}),
            }
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
            data["webhook_id"] = str(self.application_id)
        return data


@dataclass
class Callback:
    """One POST to an interaction's callback route, accepted or refused."""

    type: int
    body: dict[str, Any]
    received_at: float
    latency: float
    accepted: bool
    error: dict[str, Any] | None = None


@dataclass(eq=False)
class InteractionRecord:
    """An interaction the fake dispatched, and everything the bot did in answer to it."""

    id: int
    token: str
    type: int
    command: str
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    dispatched_at: float
    signal: Signal = field(repr=False)
    target: Message | None = None  # the message of a pressed button or a message menu
    callbacks: list[Callback] = field(default_factory=list)
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)

    @property
    def response(self) -> Callback | None:
        """The accepted initial callback, if any."""
        return next((c for c in self.callbacks if c.accepted), None)

    @property
    def acknowledged(self) -> bool:
        return self.response is not None

    @property
    def messages(self) -> list[Message]:
        """The original response (when there is one) followed by the followups."""
        return ([self.original] if self.original else []) + self.followups

    @property
    def shown(self) -> list[Message]:
        """The messages the user sees: `messages` less those the bot deleted."""
        return [m for m in self.messages if not m.deleted]

    @property
    def answer(self) -> Message | None:
        """The message that answers: the original response when sent directly or edited after
        a defer, else the first followup (after a defer the bot deleted, say); None before."""
        original = self.original
        if original is not None and not original.loading and not original.deleted:
            return original
        return next((m for m in self.followups if not m.deleted), None)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The autocomplete choices the bot gave (empty until it answers, or if refused)."""
        response = self.response
        if response is None or response.type != 8:
            return []
        return response.body.get("data", {}).get("choices", [])

    def describe(self) -> str:
        parts = [f"interaction {self.id} /{self.command}"]
        parts += [
            f"callback type {c.type} {'accepted' if c.accepted else f'refused {c.error}'}"
            for c in self.callbacks
        ]
        parts += [
            f"{m.kind} {m.id}: {m.content!r} loading={m.loading} deleted={m.deleted}"
            for m in self.messages
        ]
        return "; ".join(parts) if len(parts) > 1 else parts[0] + ": no answer at all"

    async def wait_for(
        self, predicate: Callable[[InteractionRecord], T], timeout: float = 5.0
    ) -> T:
        """The first truthy `predicate(self)`, re-checked whenever the bot does something."""
        return await self.signal.wait_until(lambda: predicate(self), timeout, self.describe)

    async def first_response(self, timeout: float = 5.0) -> Callback:
        """The first callback the bot posted (check `.accepted` and `.latency`)."""
        return await self.wait_for(lambda r: r.callbacks[0] if r.callbacks else None, timeout)

    async def final(self, timeout: float = 5.0) -> Message:
        """The message a user sees once the bot has really answered: the original response
        when sent directly or edited after a defer, else the first followup; not one the
        signal's `in_progress` test (set by the test harness) says is still being written."""
        in_progress = self.signal.in_progress

        def settled(record: InteractionRecord) -> Message | None:
            answer = record.answer
            return None if answer is None or in_progress(answer) else answer

        return await self.wait_for(settled, timeout)


@dataclass
class Violation:
    """A call Discord would have refused, or a rule of Discord's the bot broke."""

    rule: str
    detail: str
    method: str
    path: str
    interaction_id: int | None
    at: float


@dataclass
class RestCall:
    """One REST request as the fake saw it, with the status it answered."""

    method: str
    path: str
    query: str
    received_at: float
    status: int = 0
    body: Any = None


@dataclass(eq=False)
class RestFault:
    """Makes the next `remaining` requests whose path matches `pattern` fail with `status`."""

    pattern: re.Pattern[str]
    method: str | None
    status: int
    remaining: int
    retry_after: float
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0 or (self.method and self.method != method):
            return False
        return self.pattern.search(path) is not None
