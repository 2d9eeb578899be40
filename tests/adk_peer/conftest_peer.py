"""Copied next to ADK's own session tests at test time (never run from here): swaps ADK's
session services for agentledger's `LedgerSessionService` and runs `async def` tests."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agentledger.integrations.adk import LedgerSessionService

BACKEND = os.environ["AGENTLEDGER_ADK_PEER_BACKEND"]  # "sqlite" or a postgresql:// URL
_services: list[LedgerSessionService] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "asyncio: an async test (run by this conftest)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture(autouse=True)
def _ledger_service(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    schemas: list[str] = []

    def make(*args: Any, **kwargs: Any) -> LedgerSessionService:
        if BACKEND == "sqlite":
            url = f"sqlite:///{tmp_path / f'adk-{uuid.uuid4().hex[:8]}.db'}"
        else:
            schema = f"adk_{uuid.uuid4().hex[:16]}"
            schemas.append(schema)
            url = f"{BACKEND}{'&' if '?' in BACKEND else '?'}schema={schema}"
        service = LedgerSessionService(url, max_threads=2)
        _services.append(service)
        return service

    import test_session_service as peer  # the module under test

    monkeypatch.setattr(peer, "get_session_service", make)
    yield
    for service in _services:
        asyncio.run(service.close())
    _services.clear()
    if schemas:
        import psycopg
        from psycopg.sql import SQL, Identifier

        with psycopg.connect(BACKEND, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
