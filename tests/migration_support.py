"""What the stores' schema tests share: a check that reopening a store at the current schema
version runs no migration again, and the data of a store of schema version 1 with the check
that an upgraded one reads back as it was, and the same for a store of schema version 2."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentledger import NewEvent, Session, SessionStore, project
from agentledger.core.events import EVENT_FORMAT
from agentledger.stores.shared import parse_timestamp
from agentledger.testing import StoreFactory, msg

__all__ = [
    "V1_DATA",
    "V2_DATA",
    "V3_DATA",
    "V1_EVENT_COLUMNS",
    "SpyMigrations",
    "check_reopening_does_not_rerun_migrations",
    "check_keys_after_upgrade",
    "check_v1_store_upgraded",
    "check_v2_feed",
    "check_v2_store_upgraded",
    "check_v3_store_upgraded",
    "check_erase_after_upgrade",
    "check_version_1_data_after_upgrade",
    "v1_rows",
    "v2_rows",
    "v3_rows",
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
        assert {e.format for e in events} == {1}  # written before event formats
    assert store.get_session("s-one").state["user:tier"] == "gold"
    store.append("s-one", [NewEvent(type="user_message", author="user", data={"text": "more"})])
    assert store.verify_session("s-one").ok
    assert store.read_events("s-one")[-1].seq == 5
    assert store.read_events("s-one")[-1].format == EVENT_FORMAT
    check_keys_after_upgrade(store, "s-one")
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
    check_erase_after_upgrade(store, "s-one")



def check_keys_after_upgrade(store: SessionStore, session_id: str) -> None:
    """An upgraded store's old events have no key, and keyed appends work on it: a retry
    writes nothing, keyed reads find the event, the chain verifies."""
    assert all(e.key is None for e in store.read_events(session_id))
    assert store.read_events(session_id, key_prefix="a") == []
    keyed = NewEvent(type="user_message", author="user", data={"text": "k"}, key="after:1")
    (first,) = store.append(session_id, [keyed])
    assert store.append(session_id, [keyed]) == [first]
    assert store.get_event(session_id, "after:1") == first
    assert store.read_events(session_id, key_prefix="after:", last=1) == [first]
    assert store.verify_session(session_id).ok


# -- stores of schema version 2, as the version-2 library wrote them -------------------------

V2_DATA = Path(__file__).parent / "data" / "schema_v2"
"""Stores written by agentledger at schema version 2 (see `generate.py` there)."""


def v2_rows() -> dict[str, Any]:
    """The tables of a version-2 SQL store: `sessions`, `events`, `scoped_state` (lists of
    rows) and `columns` (each table's column names)."""
    rows: dict[str, Any] = json.loads((V2_DATA / "sql_rows.json").read_text())
    return rows


def check_v2_store_upgraded(store: SessionStore) -> None:
    """A store opened on the version-2 data (upgraded to the current version if that is
    newer): every session reads back as it was, its events too (their ids aside: the file
    store's are other ids), every chain verifies, the `None` that deleted a key in version 2
    still deleted it, and appending continues the chain."""
    rows = v2_rows()
    names = rows["columns"]["events"]
    for snapshot in (r[9] for r in rows["sessions"]):
        before = Session.model_validate_json(snapshot)
        after = store.get_session(before.id)
        own = after.model_copy(update={"state": {k: v for k, v in after.state.items() if ":" not in k}})
        assert own == before
        report = store.verify_session(before.id)
        assert report.ok, report
        assert report.events == before.version
        events = store.read_events(before.id)
        old = [dict(zip(names, r, strict=True)) for r in rows["events"] if r[0] == before.id]
        assert [
            (e.seq, e.type, e.author, e.invocation_id, e.timestamp, e.data, e.state_delta, e.state_ops)
            for e in events
        ] == [
            (
                r["seq"],
                r["type"],
                r["author"],
                r["invocation_id"],
                parse_timestamp(r["timestamp"]),
                json.loads(r["data"]),
                json.loads(r["state_delta"]),
                json.loads(r["state_ops"]),
            )
            for r in old
        ]
        assert project(events) == before
        assert {e.format for e in events} == {1}  # written before event formats
    one = store.get_session("s-one")
    assert "gone" not in one.state  # a None in a version-2 state delta deleted the key
    assert store.read_events("s-one", after=3, limit=1)[0].state_delta == {"gone": None}
    assert one.state["user:tier"] == "gold" and one.state["user:list"] == ["x"]
    assert one.state["app:motd"] == "hi"
    store.append("s-one", [NewEvent(type="user_message", author="user", data={"text": "more"})])
    assert store.verify_session("s-one").ok
    assert store.read_events("s-one")[-1].seq == 6
    # New events are of the current format: a None is now a value, removal is explicit.
    store.append(
        "s-one",
        [NewEvent(type="state_updated", state_delta={"gone": None, "user:tier": None},
                  state_remove=["z", "app:motd"])],
    )
    events = store.read_events("s-one")
    assert [e.format for e in events] == [1] * 5 + [EVENT_FORMAT] * 2
    assert EVENT_FORMAT == 2
    state = store.get_session("s-one").state
    assert state["gone"] is None and state["user:tier"] is None
    assert "z" not in state and "app:motd" not in state
    assert project(events).state == {k: v for k, v in state.items() if ":" not in k}
    assert store.verify_session("s-one").ok
    check_keys_after_upgrade(store, "s-one")
    check_erase_after_upgrade(store, "s-one")


def check_erase_after_upgrade(store: SessionStore, session_id: str) -> None:
    """An upgraded store erases and truncates the events an older version wrote: the
    session reads back as it was, and its history still verifies."""
    before = store.get_session(session_id)
    version = before.version
    recorded = store.erase_events(session_id, [2], "erased after the upgrade")
    assert recorded.seq == version + 1
    events = store.read_events(session_id)
    assert events[1].erased and events[1].data == {} and not events[2].erased
    report = store.verify_session(session_id)
    assert report.ok and report.erased == 1, report
    assert store.truncate_before(session_id, version) == version - 1
    assert [e.seq for e in store.read_events(session_id)] == [version, version + 1]
    after = store.get_session(session_id)
    assert after.state == before.state and after.version == version + 1
    store.compact()
    report = store.verify_session(session_id)
    assert report.ok and report.first_seq == version, report


def check_v2_feed(store: SessionStore, written: list[tuple[str, str]]) -> None:
    """A store upgraded from the version-2 data has a feed of its events in the order they
    were written (`written`: their `(timestamp, id)`), positions 1, 2, 3…, and its next
    event comes after them."""
    stored = sorted(written)
    feed = store.read_feed()
    assert [f.event.id for f in feed] == [event_id for _, event_id in stored]
    assert [f.position for f in feed] == list(range(1, len(stored) + 1))
    assert store.feed_position() == len(stored)
    session = store.create_session(app_name="demo", user_id="cy")
    assert store.read_feed(len(stored))[0].event.session_id == session.id



V3_DATA = Path(__file__).parent / "data" / "schema_v3"
"""A SQL store written by agentledger at schema version 3 (see `generate.py` there)."""


def v3_rows() -> dict[str, Any]:
    """The tables of a version-3 SQL store: `sessions`, `events`, `scoped_state`,
    `feed_counter` (lists of rows), `columns` (each table's column names) and
    `sessions_read` (each session as `get_session` returned it then, as JSON)."""
    rows: dict[str, Any] = json.loads((V3_DATA / "sql_rows.json").read_text())
    return rows


def check_v3_store_upgraded(store: SessionStore) -> None:
    """A store opened on the version-3 data (whose snapshots held each session's state):
    every session reads back exactly as version 3 read it, through `get_session` and
    `list_sessions`; every chain verifies (the snapshot, state keys included, equals the
    projection of the ledger); and appends, state removals, rewinds, forks and deletes go
    on from there."""
    rows = v3_rows()
    expected = rows["sessions_read"]
    assert set(expected) == {"s-state", "s-empty", "s-fork", "s-erased"}
    for session_id, before in expected.items():
        assert store.get_session(session_id).model_dump(mode="json") == before
        report = store.verify_session(session_id)
        assert report.ok, report
    listed = {s.id: s.model_dump(mode="json") for s in store.list_sessions(limit=100).sessions}
    assert listed == expected
    # Appends touch single keys; the rest of the state stays as it was.
    state = store.get_session("s-state").state
    store.append(
        "s-state",
        [
            NewEvent(type="state_updated", state_delta={"topic": "z", "new": {"k": [1]}}),
            NewEvent(type="state_updated", state_remove=["big"]),
        ],
    )
    after = store.get_session("s-state").state
    assert after == {**{k: v for k, v in state.items() if k != "big"}, "topic": "z", "new": {"k": [1]}}
    assert store.verify_session("s-state").ok
    # A state operation and a rewind rewrite the keys they change.
    store.append(
        "s-state",
        [NewEvent(type="state_updated", state_ops=[{"op": "remove", "path": "/nested/y/0"}],
                  invocation_id="i-9")],
    )
    assert store.get_session("s-state").state["nested"] == {"y": [2.5, None, 3]}
    store.rewind("s-state", before_invocation="i-9")
    assert store.get_session("s-state").state == after
    assert store.verify_session("s-state").ok
    fork = store.fork_session("s-state", new_session_id="s-fork-2")
    assert fork.state == after
    store.delete_session("s-fork-2")
    # The erased and truncated session goes on from its base.
    store.append("s-erased", [NewEvent(type="state_updated", state_delta={"keep": 2})])
    erased = store.get_session("s-erased")
    assert erased.state["keep"] == 2 and erased.state["after"] == "erase"
    assert store.verify_session("s-erased").ok
    assert store.get_session("s-empty").state == {"app:motd": "hi"}
