"""What the stores' schema tests share: a check that reopening a store at the current schema
version runs no migration again, and the data of a store of schema version 1 with the check
that an upgraded one reads back as it was."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentledger import NewEvent, Session, SessionStore, project
from agentledger.stores.shared import parse_timestamp
from agentledger.testing import StoreFactory, msg

__all__ = [
    "V1_DATA",
    "V1_EVENT_COLUMNS",
    "SpyMigrations",
    "check_reopening_does_not_rerun_migrations",
    "check_v1_store_upgraded",
    "check_version_1_data_after_upgrade",
    "v1_rows",
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
    session_row = tuple(memory._sessions[session.id])[:10]  # the version 1 columns
    events = [tuple(row)[: len(V1_EVENT_COLUMNS)] for row in memory._events[session.id]]
    scoped = [(app, user, state) for (app, user), state in memory._scoped.items() if user]
    return session_row, events, scoped


def check_version_1_data_after_upgrade(store: Any) -> None:
    """What version 1 stored reads back after the upgrade, with no state operations, and
    the upgraded store takes state operations."""
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


# -- stores of schema version 1, as the version-1 library wrote them -------------------------

V1_DATA = Path(__file__).parent / "data" / "schema_v1"
"""Stores written by agentledger at schema version 1 (see `generate.py` there)."""


def v1_rows() -> dict[str, Any]:
    """The tables of a version-1 SQL store: `sessions`, `events`, `scoped_state` (lists of
    rows) and `columns` (each table's column names)."""
    rows: dict[str, Any] = json.loads((V1_DATA / "sql_rows.json").read_text())
    return rows


def check_v1_store_upgraded(store: SessionStore) -> None:
    """A store upgraded from the version-1 data: every session reads back as it was, its
    events too (their ids aside: the file store's were other ids), every chain verifies,
    and appending continues the chain."""
    rows = v1_rows()
    for snapshot in (r[9] for r in rows["sessions"]):
        before = Session.model_validate_json(snapshot)
        after = store.get_session(before.id)
        own = after.model_copy(update={"state": {k: v for k, v in after.state.items() if ":" not in k}})
        assert own == before
        report = store.verify_session(before.id)
        assert report.ok, report
        assert report.events == before.version
        events = store.read_events(before.id)
        old = [r for r in rows["events"] if r[0] == before.id]
        assert [(e.seq, e.type, e.timestamp, e.data, e.state_delta) for e in events] == [
            (r[1], r[3], parse_timestamp(r[5]), json.loads(r[7]), json.loads(r[8])) for r in old
        ]
        assert project(events) == before
    assert store.get_session("s-one").state["user:tier"] == "gold"
    store.append("s-one", [NewEvent(type="user_message", author="user", data={"text": "more"})])
    assert store.verify_session("s-one").ok
    assert store.read_events("s-one")[-1].seq == 5
    # Fork and rewind need no schema change: an upgraded store takes both.
    events = store.read_events("s-one")
    fork = store.fork_session("s-one", at_seq=3, new_session_id="s-one-fork")
    assert fork.forked_from is not None and fork.forked_from.seq == 3
    assert fork.model_dump(include={"phase", "metadata"}) == project(events[:3]).model_dump(
        include={"phase", "metadata"}
    )
    assert store.verify_session(fork.id).ok
    store.rewind("s-one", to_seq=2)
    assert store.get_session("s-one").state == {
        **project(events[:2]).state,
        **{k: v for k, v in store.get_session("s-one").state.items() if ":" in k},
    }
    assert [e.seq for e in store.read_events("s-one", effective=True)] == [1, 2]
    assert store.verify_session("s-one").ok
