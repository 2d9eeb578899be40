"""Stores: one `SessionStore` protocol, one module per backend, opened by URL."""

from __future__ import annotations

from typing import Any

from agentledger.stores.aio import AsyncSessionStore, open_async_store
from agentledger.stores.base import (
    Capabilities,
    SessionPage,
    SessionStore,
    VerifyReport,
    default_store_url,
    open_store,
    register_scheme,
)
from agentledger.stores.shared import BaseStore

__all__ = [
    "AsyncSessionStore",
    "BaseStore",
    "Capabilities",
    "SessionPage",
    "SessionStore",
    "VerifyReport",
    "default_store_url",
    "open_async_store",
    "open_store",
    "register_scheme",
]


def _open_memory(url: str, options: dict[str, Any]) -> SessionStore:
    from agentledger.stores.memory import MemoryStore
    from agentledger.stores.shared import store_options

    return MemoryStore(url=url, **store_options(url, options, {}))


def _open_sqlite(url: str, options: dict[str, Any]) -> SessionStore:
    from agentledger.stores.sqlite import SqliteStore

    return SqliteStore.from_url(url, options)


def _open_postgres(url: str, options: dict[str, Any]) -> SessionStore:
    # Raises MissingDependencyError (naming the `postgres` extra) without psycopg.
    from agentledger.stores.postgres import PostgresStore

    return PostgresStore.from_url(url, options)


def _open_file(url: str, options: dict[str, Any]) -> SessionStore:
    from agentledger.stores.file import FileStore

    return FileStore.from_url(url, options)


def _open_http(url: str, options: dict[str, Any]) -> SessionStore:
    # Raises MissingDependencyError (naming the `server` extra) without httpx.
    from agentledger.stores.http import HttpStore

    return HttpStore.from_url(url, options)


_BUILTIN = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "file": _open_file,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
    "http": _open_http,
    "https": _open_http,
}


def _register_builtin_schemes() -> None:
    from agentledger.stores.base import _SCHEMES

    for scheme, factory in _BUILTIN.items():
        _SCHEMES.setdefault(scheme, factory)
