"""Fixtures shared by several test modules."""

from __future__ import annotations

import itertools

import pytest

from .postgres import PostgresServer

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for the run (started when a test first asks)."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh settings database of each kind DATABASE_URL can name."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'settings.sqlite3'}"
    return request.getfixturevalue("postgres").new_database(f"test_{next(_databases)}")
