"""What the CLI lifecycle and hook tests share: a fixed clock at seed 003's start time, a
SQLite store in `tmp_path` opened with it, a manager on that store, and the installed console
script. Test modules import the fixtures by name (`from cli_support import clock, ...`),
which overrides conftest's every-backend `store` for them."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agentledger import SessionStore, open_store
from agentledger.manager import SessionManager
from agentledger.testing import FakeClock

__all__ = ["T0", "clock", "console_script", "iso", "manager", "store", "url"]

T0 = datetime(2026, 1, 8, 18, 5, 30, tzinfo=timezone.utc)
"""Seed 003's example start time (UTC)."""


def iso(moment: datetime) -> str:
    """`moment` as the `AGENTLEDGER_NOW` text (`2026-01-08T18:05:30Z`)."""
    return moment.isoformat().replace("+00:00", "Z")


def console_script() -> str:
    """The installed `agentledger` command (skips the test when there is none)."""
    candidate = Path(sys.executable).parent / "agentledger"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("agentledger")
    if found is None:
        pytest.skip("the agentledger console script is not installed")
    return found


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture()
def store(url: str, clock: FakeClock) -> Iterator[SessionStore]:
    s = open_store(url, clock=clock)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def manager(store: SessionStore, clock: FakeClock) -> SessionManager:
    return SessionManager(store, clock=clock)
