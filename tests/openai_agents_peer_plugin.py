"""A pytest plugin that runs the OpenAI Agents SDK's own session tests on `LedgerSession`.

Loaded with `-p openai_agents_peer_plugin` in a pytest run inside the SDK's unpacked sdist
(`tests/test_integration_openai_agents.py` starts it). It swaps the SDK's `SQLiteSession`
for `SwappedSession`, a `LedgerSession` taking `SQLiteSession`'s arguments: each database
path (`db_path`, or each `":memory:"` session) becomes one agentledger store, on SQLite
(`sqlite:///<db_path>`) or on PostgreSQL (a fresh schema), as
`$AGENTLEDGER_PEER_BACKEND` says ("sqlite" or "postgresql", with
`$AGENTLEDGER_TEST_POSTGRES_URL`). Tests of SQLite's own internals are skipped, each with
its reason (`EXCLUDED`).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentledger.integrations.openai_agents import LedgerSession
from agentledger.stores.base import SessionStore, open_store

_INTERNALS = "tests SQLiteSession's own connections, locks or tables (sqlite3 internals)"
EXCLUDED: dict[str, str] = {
    "test_sqlite_session_close_closes_worker_thread_connections": _INTERNALS,
    "test_sqlite_session_reaps_connections_from_exited_worker_threads": _INTERNALS,
    "test_sqlite_session_closes_retired_connections_before_the_next_allocation": _INTERNALS,
    "test_sqlite_session_keeps_connections_of_live_worker_threads": _INTERNALS,
    "test_sqlite_session_file_lock_is_shared_across_instances": _INTERNALS,
    "test_sqlite_session_failed_add_items_releases_write_lock": _INTERNALS,
    "test_sqlite_session_failed_clear_session_rolls_back": _INTERNALS,
    "test_sqlite_session_failed_pop_item_releases_write_lock": _INTERNALS,
    "test_sqlite_session_rollback_failure_evicts_connection": _INTERNALS,
    "test_sqlite_session_close_retries_quarantined_connection": _INTERNALS,
    "test_sqlite_session_post_commit_cancellation_propagates_after_known_outcome": _INTERNALS,
    "test_sqlite_session_pop_item_skips_corrupt_most_recent": (
        "writes a corrupt row into SQLiteSession's table by hand; our ledger refuses "
        "invalid JSON at append and detects damage by its hash chain"
    ),
    "test_sqlite_session_pop_item_returns_none_after_dropping_only_corrupt_rows": (
        "writes corrupt rows into SQLiteSession's table by hand (as above)"
    ),
    "test_sqlite_session_get_items_limit_skips_corrupt_newest_rows": (
        "writes corrupt rows into SQLiteSession's table by hand (as above)"
    ),
    "test_sqlite_session_get_items_session_settings_limit_skips_corrupt_rows": (
        "writes corrupt rows into SQLiteSession's table by hand (as above)"
    ),
    "test_sqlite_session_closed_rejects_empty_add_items": (
        "expects the message 'SQLiteSession is closed'; a closed LedgerSession's store "
        "refuses instead"
    ),
}

_BACKEND = os.environ.get("AGENTLEDGER_PEER_BACKEND", "sqlite")
_stores: dict[str, SessionStore] = {}
_schemas: list[str] = []
_postgres: SessionStore | None = None


def _store_for(db_path: str | Path) -> SessionStore:
    key = str(db_path)
    if key != ":memory:" and key in _stores:
        return _stores[key]
    if _BACKEND == "postgresql":
        # One schema for the run (a schema per test is most of the run's time); every
        # session is deleted after each test, so each test starts from an empty store.
        global _postgres
        if _postgres is None:
            base = os.environ["AGENTLEDGER_TEST_POSTGRES_URL"]
            schema = f"peer_{uuid.uuid4().hex[:16]}"
            _schemas.append(schema)
            _postgres = open_store(f"{base}{'&' if '?' in base else '?'}schema={schema}")
        return _postgres
    path = tempfile.mktemp(suffix=".db") if key == ":memory:" else key
    store = open_store(f"sqlite:///{path}")
    _stores[key if key != ":memory:" else f":memory:{uuid.uuid4().hex}"] = store
    return store


class SwappedSession(LedgerSession):
    """`LedgerSession` with `SQLiteSession`'s constructor."""

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        super().__init__(session_id, _store_for(db_path), session_settings=session_settings)
        self.db_path = db_path


def pytest_configure(config: pytest.Config) -> None:
    import agents
    import agents.memory
    import agents.memory.sqlite_session

    agents.SQLiteSession = SwappedSession  # type: ignore[misc]
    agents.memory.SQLiteSession = SwappedSession  # type: ignore[misc]
    agents.memory.sqlite_session.SQLiteSession = SwappedSession  # type: ignore[misc]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if name in EXCLUDED:
            item.add_marker(pytest.mark.skip(reason=f"agentledger: {EXCLUDED[name]}"))


@pytest.fixture(autouse=True)
def _close_ledger_stores() -> Iterator[None]:
    yield
    while _stores:
        _, store = _stores.popitem()
        store.close()
    if _postgres is not None:
        for page in _postgres.iter_sessions():
            for session in page.sessions:
                _postgres.delete_session(session.id)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _postgres is not None:
        _postgres.close()
    if not _schemas:
        return
    import psycopg
    from psycopg.sql import SQL, Identifier

    with psycopg.connect(os.environ["AGENTLEDGER_TEST_POSTGRES_URL"], autocommit=True) as conn:
        for schema in _schemas:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
