"""Fixtures shared by the tests: every store backend, opened by URL.

`store_url` is parametrized over `STORE_URLS`, so every test that uses `store`,
`make_store` or `store_url` (including the whole conformance suite) runs on every backend.
Adding a backend is one line in `STORE_URLS`.

PostgreSQL: the "postgresql" backend and `postgres_url` use `$AGENTLEDGER_TEST_POSTGRES_URL`
(a plain libpq URL, e.g. `postgresql://postgres@127.0.0.1/agentledger_test`), one fresh schema
per test, dropped afterwards. Without the variable those tests skip, or fail when `CI=true`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agentledger.stores.base import SessionStore
from agentledger.testing import StoreFactory

POSTGRES_URL_ENV = "AGENTLEDGER_TEST_POSTGRES_URL"


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """`$AGENTLEDGER_TEST_POSTGRES_URL` with a fresh `?schema=`, dropped on exit.

    Skips the test without the variable, or fails it when `CI=true`.
    """
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        reason = (
            f"set {POSTGRES_URL_ENV} to run the PostgreSQL tests "
            "(e.g. postgresql://postgres@127.0.0.1/agentledger_test)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_URL_ENV} is not set; {reason}")
        pytest.skip(reason)
    import psycopg
    from psycopg.sql import SQL, Identifier

    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SET lock_timeout = '60s'")
            conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


STORE_URLS: dict[str, Callable[[Path], str | AbstractContextManager[str]]] = {
    "memory": lambda tmp: "memory://",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/x.db",
    "sqlite-normal": lambda tmp: f"sqlite:///{tmp}/x.db?durability=normal",
    "file": lambda tmp: f"file://{tmp}/sessions",
    "postgresql": lambda tmp: postgres_schema_url(),
}
"""Backend name -> the URL of a fresh, empty store in a test's `tmp_path`, or a context
manager giving one and removing it afterwards."""


# -- the http:// store: a real uvicorn server in a subprocess, one per backend it serves ----

_SERVERS: dict[str, object] = {}


def _http_root() -> Path:
    """The folder of the SQLite files the http:// test server serves (removed at the end)."""
    import tempfile

    root = Path(tempfile.gettempdir()) / f"agentledger-http-{os.getpid()}"
    root.mkdir(exist_ok=True)
    return root


def _served(backend: str, template: str) -> object:
    from http_support import ServedStores

    from agentledger.plugins import PLUGINS_ENV
    from agentledger.testing.conformance import CONFORMANCE_PLUGIN

    if backend not in _SERVERS:
        # Plugins run in the server: it runs the conformance suite's plugin (which acts only
        # on events marked for it) so the plugin checks run over http:// too.
        _SERVERS[backend] = ServedStores(template, env={PLUGINS_ENV: CONFORMANCE_PLUGIN})
    return _SERVERS[backend]


@contextmanager
def http_store_url(backend: str, tmp: Path) -> Iterator[str]:
    """An `http://` store URL served (over `backend`: `sqlite` or `postgresql`) by a test
    server subprocess; the store is closed afterwards. Skips without the server extra."""
    pytest.importorskip("fastapi", reason="the http:// store tests need the server extra")
    if backend == "postgresql":
        with postgres_schema_url() as pg_url:
            base, _, schema = pg_url.rpartition("schema=")
            server: Any = _served(backend, base + "schema=test_{name}")
            url = server.url(schema.removeprefix("test_"))
            try:
                yield url
            finally:
                server.release(url)
        return
    root = _http_root()
    server = _served(backend, f"sqlite:///{root}/{{name}}.db?durability=normal")
    url = server.url()
    try:
        yield url
    finally:
        server.release(url)


STORE_URLS["http-sqlite"] = lambda tmp: http_store_url("sqlite", tmp)
STORE_URLS["http-postgresql"] = lambda tmp: http_store_url("postgresql", tmp)


def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a fresh, empty store of `backend` (a key of `STORE_URLS`), then
    remove it; for fixtures that run on a subset of the backends."""
    made = STORE_URLS[backend](tmp_path)
    if isinstance(made, str):
        yield made
    else:
        with made as url:
            yield url


@pytest.fixture(params=list(STORE_URLS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store; one parameter per backend."""
    yield from backend_url(request.param, tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL store's URL (see `postgres_schema_url`)."""
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def make_store(store_url: str) -> Iterator[StoreFactory]:
    """Open (or reopen) the store at `store_url`; `make_store(max_event_bytes=1024)`."""
    factory = StoreFactory(store_url)
    yield factory
    factory.close_all()


@pytest.fixture
def store(make_store: StoreFactory) -> SessionStore:
    """An open, empty store, once per backend."""
    return make_store()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the http:// test servers."""
    import shutil

    for server in _SERVERS.values():
        server.stop()  # type: ignore[attr-defined]
    if "sqlite" in _SERVERS:
        shutil.rmtree(_http_root(), ignore_errors=True)
    _SERVERS.clear()
