"""Connections to the PostgreSQL database that several processes share (DATABASE_URL): each
store's tables are made once per process, under an advisory lock so that processes starting
together do not race on CREATE TABLE; database errors come out as the store's own exception.
`listen` follows a NOTIFY channel for as long as the process runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2  # seconds
SCHEMA_LOCK = 0x706F656D  # pg_advisory_xact_lock key while a process makes tables

_made: set[tuple[str, str]] = set()


@contextlib.asynccontextmanager
async def connection(
    url: str, schema: str, unavailable: type[Exception], what: str
) -> AsyncIterator[Any]:
    """An autocommit connection of its own, with `schema` (if any) made; psycopg and socket errors
    raised inside come out as `unavailable("the <what> cannot be reached (...)")`."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="poembot"
        ) as db:
            if schema and (url, schema) not in _made:
                async with db.transaction():
                    await db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await db.execute(schema)
                _made.add((url, schema))
            yield db
    except (psycopg.Error, OSError) as err:
        _made.discard((url, schema))  # a restarted server may be a new one
        raise unavailable(f"the {what} cannot be reached ({str(err).strip()})") from err


async def listen(
    url: str,
    schema: str,
    unavailable: type[Exception],
    what: str,
    channel: str,
    heard: Callable[[Any, str | None], Awaitable[None]],
    poll_seconds: float | None = None,
) -> None:
    """LISTEN on `channel` until cancelled, on a connection of its own that is opened again
    whenever the database goes away. `heard(db, payload)` is called for each notification, and
    `heard(db, None)` (anything may have changed) after each (re)connection, when notifications
    may have been missed, and after `poll_seconds` without one."""
    delay = 0.25
    while True:
        try:
            async with connection(url, schema, unavailable, what) as db:
                await db.execute(f"LISTEN {channel}")
                log.info("following the %s", what)
                delay = 0.25
                await heard(db, None)
                while True:
                    payload = None
                    async for note in db.notifies(timeout=poll_seconds, stop_after=1):
                        payload = note.payload
                    await heard(db, payload)
        except unavailable as err:
            log.warning("%s; retrying", err)
        except Exception:  # a bug must not stop this process from following for good
            log.exception("following the %s failed; retrying", what)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
