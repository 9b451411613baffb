"""Connections to the PostgreSQL database that several processes share (DATABASE_URL): each
store's tables are made once per process, under an advisory lock so that processes starting
together do not race on CREATE TABLE; database errors come out as the store's own exception."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

CONNECT_TIMEOUT = 2  # seconds
SCHEMA_LOCK = 0x706F656D  # pg_advisory_xact_lock key while a process makes tables

_made: set[tuple[str, str]] = set()


@contextlib.asynccontextmanager
async def connection(
    url: str, schema: str, unavailable: type[Exception], what: str
) -> AsyncIterator[Any]:
    """An autocommit connection of its own, with `schema` made; psycopg and socket errors
    raised inside come out as `unavailable("the <what> cannot be reached (...)")`."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="poembot"
        ) as db:
            if (url, schema) not in _made:
                async with db.transaction():
                    await db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await db.execute(schema)
                _made.add((url, schema))
            yield db
    except (psycopg.Error, OSError) as err:
        _made.discard((url, schema))  # a restarted server may be a new one
        raise unavailable(f"the {what} cannot be reached ({str(err).strip()})") from err
