"""Discord's per-route rate limits, announced and enforced the way Discord does it.

Each limited route belongs to a bucket per top-level resource (an interaction's webhook token,
a channel): a window of `limit` requests that opens with its first request and closes
`window` seconds later. Every answer on a limited route carries the `X-RateLimit-*` headers
(limit, remaining, reset, reset-after, bucket); a request past the limit is answered 429 with
`retry_after` until the window closes, and is remembered in `hits`, because Discord counts
them against the bot (10,000 refused requests in 10 minutes ban its IP for an hour).

Interaction callbacks are not limited (Discord exempts them), nor is anything not listed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """Requests whose `METHOD path` matches `pattern` share one bucket per `key` group."""

    name: str
    pattern: re.Pattern[str]
    limit: int
    window: float


# Discord's documents give no fixed numbers (they are announced per bucket); these are the
# numbers its headers commonly announce for message writes.
DEFAULT_RULES = (
    # Followups, edits and deletes of an interaction's messages: per webhook token.
    Rule("webhook", re.compile(r"^(?:POST|PATCH|DELETE) /webhooks/\d+/(?P<key>[^/]+)"), 5, 5.0),
    Rule("channel-post", re.compile(r"^POST /channels/(?P<key>\d+)/messages$"), 5, 5.0),
    Rule(
        "channel-edit",
        re.compile(r"^(?:PATCH|DELETE) /channels/(?P<key>\d+)/messages/\d+$"),
        5,
        5.0,
    ),
)


@dataclass
class Window:
    opened: float
    used: int = 0


@dataclass(frozen=True)
class Hit:
    """One request refused with 429: which bucket, when, and how long the bot was told to wait."""

    rule: str
    key: str
    method: str
    path: str
    at: float
    retry_after: float


@dataclass(frozen=True)
class Verdict:
    """What the limiter says of one request: the headers to send, and whether it is refused."""

    headers: dict[str, str]
    retry_after: float | None  # None: let it through


@dataclass
class RateLimits:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    windows: dict[tuple[str, str], Window] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def take(self, method: str, path: str, now: float) -> Verdict | None:
        """Count one request (None: the route is not limited)."""
        line = f"{method} {path}"
        for rule in self.rules:
            match = rule.pattern.match(line)
            if match is None:
                continue
            key = match["key"]
            window = self.windows.get((rule.name, key))
            if window is None or now >= window.opened + rule.window:
                window = self.windows[rule.name, key] = Window(now)
            reset_after = max(0.0, window.opened + rule.window - now)
            refused = window.used >= rule.limit
            if not refused:
                window.used += 1
            headers = {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Remaining": str(rule.limit - window.used),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": f"loopback-{rule.name}",
            }
            if refused:
                headers["X-RateLimit-Scope"] = "user"
                self.hits.append(Hit(rule.name, key, method, path, now, reset_after))
                return Verdict(headers, reset_after)
            return Verdict(headers, None)
        return None
