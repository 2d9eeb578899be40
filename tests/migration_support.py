"""What the SQL stores' schema tests share: a check that reopening a store at the current
schema version runs no migration again."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from agentledger.testing import StoreFactory, msg

__all__ = [
    "V1_EVENT_COLUMNS",
    "SpyMigrations",
    "check_reopening_does_not_rerun_migrations",
    "check_version_1_data_after_upgrade",
    "version_1_rows",
]


class SpyMigrations(list[list[str]]):
    """`MIGRATIONS` that records which versions `setup()` applies."""

    def __init__(self, migrations: list[list[str]]) -> None:
        super().__init__(migrations)
        self.applied: list[int] = []

    def __getitem__(self, index: Any) -> Any:
        self.applied.append(index)
        return super().__getitem__(index)


def check_reopening_does_not_rerun_migrations(
    make: StoreFactory, module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new store applies migrations 1..SCHEMA_VERSION once; reopening applies none and
    keeps the data. `module` holds the store's `MIGRATIONS` and `SCHEMA_VERSION`."""
    spy = SpyMigrations(module.MIGRATIONS)
    monkeypatch.setattr(module, "MIGRATIONS", spy)
    store = make()
    assert spy.applied == list(range(1, module.SCHEMA_VERSION + 1))
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    spy.applied.clear()
    reopened = make()
    assert spy.applied == []
    assert reopened.get_session("kept").version == 1


V1_EVENT_COLUMNS = (
    "id", "session_id", "seq", "type", "author", "timestamp", "invocation_id", "data",
    "state_delta",
)
"""The events columns of schema version 1, as the library of that version wrote them."""


def version_1_rows() -> tuple[Any, list[Any], list[tuple[Any, ...]]]:
    """A session as schema version 1 stored it: its snapshot row, its event rows (the
    version 1 columns only) and its `user:` state row `(app, user, state JSON)`, made on a
    `MemoryStore` (which keeps the rows the SQL stores keep)."""
    from agentledger.stores.memory import MemoryStore

    memory = MemoryStore()
    session = memory.create_session(
        app_name="demo", user_id="ada", session_id="old", state={"k": 1, "user:items": ["a"]}
    )
    memory.append(session.id, [msg("before", state_delta={"k": 2})])
    session_row = memory._sessions[session.id]
    events = [tuple(row)[: len(V1_EVENT_COLUMNS)] for row in memory._events[session.id]]
    scoped = [(app, user, state) for (app, user), state in memory._scoped.items() if user]
    return session_row, events, scoped


def check_version_1_data_after_upgrade(store: Any) -> None:
    """What version 1 stored reads back after the upgrade, with no state operations, and
    the upgraded store takes state operations."""
    from agentledger.core.projection import project

    session = store.get_session("old")
    assert session.version == 2
    assert session.state == {"k": 2, "user:items": ["a"]}
    events = store.read_events("old")
    assert [e.state_ops for e in events] == [[], []]
    assert events[1].state_delta == {"k": 2}
    assert project(events).state == {"k": 2}
    store.append(
        "old",
        [msg("after", state_ops=[{"op": "add", "path": "/user:items/-", "value": "b"},
                                 {"op": "increment", "path": "/k", "value": 1}])],
    )
    assert store.get_session("old").state == {"k": 3, "user:items": ["a", "b"]}
    assert store.read_events("old", after=2)[0].state_ops[0]["value"] == "b"
