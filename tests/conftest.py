"""Fixtures shared by several test modules."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .loopback.records import Signal
from .postgres import PostgresServer

# Hypothesis's timing checks (a per-example deadline, "input generation is slow") judge the
# machine, not the code: a busy or slow CI machine would fail a property that holds. Off for
# every property; a test's own settings keep these unless they name their own.
settings.register_profile(
    "any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("any-machine")

# The loopback's waits (a reply's `final`, `wait_for`, ...) check what the bot does, never how
# fast: a timeout written at a call is what it takes on a quiet machine, and the wait gives up
# only after five times that. With both cores busy, or on one core, the suite runs 2.5-3x
# slower, and a test beside a heavy one on the other worker slower still: a sonnet's 30 s
# wait ran out so on a Xeon whose two cores two busy processes held. A hang still fails, there
# or at pytest-timeout's limit.
Signal.PATIENCE = 5.0

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


# --- Heavy modules first ------------------------------------------------------------------
# `make test` runs the modules on two workers, each module whole on one (`--dist loadscope`,
# its fixtures are module-scoped). A long module handed out last leaves the other worker
# idle while it runs, so the modules go out longest first (the longest-processing-time
# order): `module_seconds.json` holds each module's seconds from a recorded run (`pytest
# --record-module-seconds` updates the modules it ran); a module it does not name runs after
# those it does. An order, not a test: a stale file costs time, never a result. xdist's own
# reordering (by the number of tests in a module, which put the long single-test end-to-end
# modules last) is off in `make test` (`--no-loadscope-reorder`).

_MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-module-seconds",
        action="store_true",
        help=f"write each test module's seconds (setup, call, teardown) to {_MODULE_SECONDS}",
    )


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        seconds = json.loads(_MODULE_SECONDS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(_module(item.nodeid), i)
    items.sort(
        key=lambda it: (-float(seconds.get(_module(it.nodeid), 0)), first[_module(it.nodeid)])
    )


_recorded: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _recorded[_module(report.nodeid)] = _recorded.get(_module(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("--record-module-seconds") or hasattr(config, "workerinput"):
        return  # recorded once, where every report arrives (the controller under xdist)
    try:  # the modules this run did not run keep their figures
        seconds = json.loads(_MODULE_SECONDS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        seconds = {}
    seconds.update({name: round(s, 1) for name, s in _recorded.items()})
    ordered = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
    _MODULE_SECONDS.write_text(json.dumps(ordered, indent=1) + "\n", encoding="utf-8")
