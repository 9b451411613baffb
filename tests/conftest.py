"""Fixtures shared by several test modules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings

from .postgres import PostgresServer

# Hypothesis's timing checks (a per-example deadline, "input generation is slow") judge the
# machine, not the code: a busy or slow CI machine would fail a property that holds. Off for
# every property; a test's own settings keep these unless they name their own.
settings.register_profile(
    "any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("any-machine")

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
