"""SQLite-specific behaviour: corrupted rows, schema versions and migrations, durability.

The shared contract is checked by the conformance suite (test_conformance.py); these tests
need to reach into the file, which only a SQLite test can do.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from migration_support import (
    V1_EVENT_COLUMNS,
    check_reopening_does_not_rerun_migrations,
    check_v1_store_upgraded,
    check_version_1_data_after_upgrade,
    v1_rows,
    version_1_rows,
)

import agentledger.stores.sqlite as sqlite_module
from agentledger import (
    ConfigurationError,
    CorruptedSessionError,
    NewEvent,
    ReadOnlyStoreError,
    SchemaVersionError,
    SqliteStore,
    StoreError,
    StoreNotFoundError,
    open_store,
)
from agentledger.stores.sqlite import MIGRATIONS, SCHEMA_VERSION
from agentledger.testing import StoreFactory, msg
from agentledger.testing._processes import create_worker, run_processes


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


@pytest.fixture
def make(db_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(f"sqlite:///{db_path}")
    yield factory
    factory.close_all()


def _execute(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL on the file directly, as something other than agentledger would."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _corrupt_event(db_path: Path, session_id: str, seq: int, column: str, value: str) -> None:
    _execute(
        db_path,
        f"UPDATE events SET {column} = ? WHERE session_id = ? AND seq = ?",
        (value, session_id, seq),
    )


def _populated(make: StoreFactory) -> tuple[Any, str, str]:
    store = make()
    a = store.create_session(app_name="demo", user_id="ada", state={"k": 1}, session_id="aaa")
    b = store.create_session(app_name="demo", user_id="bob", session_id="bbb")
    store.append(
        a.id,
        [msg("one", state_delta={"k": 2}), NewEvent(type="phase_changed", data={"to": "planning"})],
    )
    store.append(b.id, [msg("two")])
    return store, a.id, b.id


# -- corrupted rows -------------------------------------------------------------------------


def test_garbage_snapshot_is_rebuilt_from_the_ledger(make: StoreFactory, db_path: Path) -> None:
    store, a, b = _populated(make)
    good = store.get_session(a)
    _execute(db_path, "UPDATE sessions SET snapshot = ? WHERE id = ?", ("{not json", a))
    assert store.get_session(a) == good
    assert {s.id: s for s in store.list_sessions().sessions}[a] == good
    # The next append rebuilds the snapshot and stores a readable one again.
    store.append(a, [msg("three")])
    (snapshot,) = _execute(db_path, "SELECT snapshot FROM sessions WHERE id = ?", (a,))[0]
    assert snapshot.startswith("{") and '"version":4' in snapshot
    assert store.get_session(a).version == 4
    assert store.get_session(a).state == {"k": 2}


def test_snapshot_of_the_wrong_shape_is_rebuilt(make: StoreFactory, db_path: Path) -> None:
    store, a, _ = _populated(make)
    good = store.get_session(a)
    for garbage in ("[]", '{"id": 5}', "null", ""):
        _execute(db_path, "UPDATE sessions SET snapshot = ? WHERE id = ?", (garbage, a))
        assert store.get_session(a) == good


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", "{oops"),
        ("data", "[1, 2]"),
        ("state_delta", "5"),
        ("state_delta", "null"),
        ("timestamp", "2025-13-45"),
        ("timestamp", "2025-01-01T00:00:00"),
    ],
)
def test_garbage_event_row_corrupts_only_its_session(
    make: StoreFactory, db_path: Path, column: str, value: str
) -> None:
    store, a, b = _populated(make)
    b_events = store.read_events(b)
    b_session = store.get_session(b)
    _corrupt_event(db_path, a, 2, column, value)
    with pytest.raises(CorruptedSessionError) as info:
        store.read_events(a)
    assert info.value.session_id == a
    assert isinstance(info.value, StoreError)
    with pytest.raises(CorruptedSessionError):
        store.read_events(a, after=1, limit=1)
    assert [e.seq for e in store.read_events(a, after=2)] == [3]  # rows after the bad one
    assert store.read_events(b) == b_events
    assert store.get_session(b) == b_session
    assert store.get_session(a).version == 3  # the snapshot is still good
    assert sorted(s.id for s in store.list_sessions().sessions) == [a, b]
    reopened = make()
    assert reopened.read_events(b) == b_events
    with pytest.raises(CorruptedSessionError):
        reopened.read_events(a)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("timestamp", "yesterday"),
        ("state_delta", "[1, 2"),
        ("data", ""),
        ("data", "[]"),
        ("state_delta", '"text"'),
    ],
)
def test_garbage_snapshot_and_ledger(
    make: StoreFactory, db_path: Path, column: str, value: str
) -> None:
    store, a, b = _populated(make)
    _execute(db_path, "UPDATE sessions SET snapshot = 'x' WHERE id = ?", (a,))
    _corrupt_event(db_path, a, 2, column, value)
    with pytest.raises(CorruptedSessionError) as info:
        store.get_session(a)
    assert info.value.session_id == a
    page = store.list_sessions()
    assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]
    with pytest.raises(CorruptedSessionError):
        store.append(a, [msg()])
    assert store.get_session(b).version == 2
    store.append(b, [msg()])
    assert store.get_session(b).version == 3


def test_gap_in_the_ledger_is_corruption(make: StoreFactory, db_path: Path) -> None:
    store, a, b = _populated(make)
    _execute(db_path, "UPDATE sessions SET snapshot = 'x' WHERE id = ?", (a,))
    _execute(db_path, "DELETE FROM events WHERE session_id = ? AND seq = 2", (a,))
    with pytest.raises(CorruptedSessionError, match="seq"):
        store.get_session(a)
    assert store.get_session(b).version == 2


# -- schema versions and migrations ---------------------------------------------------------


def test_new_file_gets_the_current_schema(make: StoreFactory, db_path: Path) -> None:
    store = make()
    assert isinstance(store, SqliteStore)
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS) - 1
    assert _execute(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in _execute(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "events", "scoped_state"} <= tables
    assert MIGRATIONS[0] == []


def test_newer_schema_is_refused(make: StoreFactory, db_path: Path) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    newer = SCHEMA_VERSION + 1
    _execute(db_path, f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaVersionError) as info:
        make()
    message = str(info.value)
    assert f"schema version {newer}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert str(db_path) in message
    assert _execute(db_path, "PRAGMA user_version") == [(newer,)]  # left as it was
    assert _execute(db_path, "SELECT id FROM sessions") == [("kept",)]


def test_reopening_does_not_rerun_migrations(
    make: StoreFactory, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_reopening_does_not_rerun_migrations(make, sqlite_module, monkeypatch)


def test_a_version_1_file_is_upgraded_to_take_state_operations(
    make: StoreFactory, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 adds `events.state_ops`; a file written by version 1 keeps its data."""
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:2])
        patched.setattr(sqlite_module, "SCHEMA_VERSION", 1)
        make().close()
    session_row, events, scoped = version_1_rows()
    columns = ", ".join(V1_EVENT_COLUMNS)
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(f"INSERT INTO sessions VALUES ({', '.join('?' * len(session_row))})",
                     tuple(session_row))
        conn.executemany(
            f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(columns.split(',')))})",
            events,
        )
        conn.executemany("INSERT INTO scoped_state VALUES (?, ?, ?)", scoped)
    conn.close()
    assert _execute(db_path, "PRAGMA user_version") == [(1,)]
    store = make()
    assert _execute(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    check_version_1_data_after_upgrade(store)
    store.close()
    assert make().get_session("old").version == 3


def test_a_new_migration_upgrades_an_existing_file(
    make: StoreFactory, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    upgraded = [*MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (7)"]]
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", upgraded)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    reopened = make()
    assert isinstance(reopened, SqliteStore)
    assert reopened.schema_version() == SCHEMA_VERSION + 1
    assert _execute(db_path, "SELECT x FROM extra") == [(7,)]  # applied once
    assert reopened.get_session("kept").version == 1
    reopened.close()
    make().close()
    assert _execute(db_path, "SELECT x FROM extra") == [(7,)]  # and not again


def test_failed_migration_changes_nothing(
    make: StoreFactory, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make().close()
    broken = [*MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", broken)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError):
        make()
    assert _execute(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in _execute(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "extra" not in tables


def test_processes_opening_a_new_file_at_once(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    ctx = multiprocessing.get_context("spawn")
    workers = 4
    barrier = ctx.Barrier(workers)
    run_processes(ctx, create_worker, [(url, (), barrier, "demo", w) for w in range(workers)])
    with open_store(url) as store:
        listed = store.list_sessions(app_name="demo").sessions
        assert sorted(s.user_id for s in listed) == [f"user-{w}" for w in range(workers)]
        assert isinstance(store, SqliteStore) and store.schema_version() == SCHEMA_VERSION


def _write_v1_file(db_path: Path) -> None:
    """A database of schema version 1 holding the rows the version-1 library wrote."""
    rows = v1_rows()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            for statement in MIGRATIONS[1]:
                assert isinstance(statement, str)
                conn.execute(statement)
            for table in ("sessions", "events", "scoped_state"):
                names = rows["columns"][table]
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(names)})"
                    f" VALUES ({', '.join('?' * len(names))})",
                    rows[table],
                )
            conn.execute("PRAGMA user_version = 1")
    finally:
        conn.close()


def test_a_version_1_file_is_upgraded_with_its_events_chained(
    make: StoreFactory, db_path: Path
) -> None:
    _write_v1_file(db_path)
    store = make()
    assert isinstance(store, SqliteStore) and store.schema_version() == SCHEMA_VERSION
    assert _execute(db_path, "SELECT count(*) FROM events WHERE hash = '' OR payload_hash = ''") == [
        (0,)
    ]
    check_v1_store_upgraded(store)


# -- the hash chain: damage in the file is detected -----------------------------------------


def _flip_bit(db_path: Path, marker: bytes) -> None:
    """Flip the lowest bit of the first byte of `marker` where it is in the database file
    (after a checkpoint, so the whole database is in that file)."""
    _execute(db_path, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path.read_bytes())
    at = data.find(marker)
    assert at >= 0 and data.find(marker, at + 1) < 0, "the marker must be in the file once"
    data[at] ^= 0x01
    db_path.write_bytes(bytes(data))


def test_a_bit_flip_in_an_event_row_is_detected(make: StoreFactory, db_path: Path) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("first"), msg("water the plants at 7"), msg("third")])
    store.close()
    _flip_bit(db_path, b"water the plants at 7")
    store = make()
    report = store.verify_session(sid)
    assert not report.ok
    assert report.first_bad_seq == 3
    assert "payload hash mismatch" in (report.problem or "")
    with pytest.raises(CorruptedSessionError, match="event 3"):
        store.read_events(sid)
    assert [e.seq for e in store.read_events(sid, types=["session_created"])] == [1]


def test_a_changed_timestamp_breaks_the_chain(make: StoreFactory, db_path: Path) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    stored = store.append(sid, [msg("a"), msg("b")])
    _execute(
        db_path,
        "UPDATE events SET timestamp = '2020-01-01T00:00:00.000000Z' WHERE session_id = ? AND seq = 2",
        (sid,),
    )
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "hash mismatch" in (report.problem or "")
    with pytest.raises(CorruptedSessionError, match="event 2"):
        store.read_events(sid)
    assert stored[1].seq == 3


def test_deleted_event_rows_are_detected(make: StoreFactory, db_path: Path) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("a"), msg("b"), msg("c")])
    _execute(db_path, "DELETE FROM events WHERE session_id = ? AND seq IN (2, 4)", (sid,))
    with pytest.raises(CorruptedSessionError, match="event 2 is missing"):
        store.read_events(sid)
    with pytest.raises(CorruptedSessionError, match="event 2 is missing"):
        store.read_events(sid, after=1)
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    _execute(db_path, "DELETE FROM events WHERE session_id = ? AND seq = 3", (sid,))
    report = store.verify_session(sid)  # only seq 1 left: the tail is missing
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "2 to 4 are missing" in (report.problem or "")


# -- options and durability -----------------------------------------------------------------


@pytest.mark.parametrize(("durability", "pragma"), [("full", 2), ("normal", 1)])
def test_durability_sets_synchronous(db_path: Path, durability: str, pragma: int) -> None:
    with open_store(f"sqlite:///{db_path}?durability={durability}") as store:
        assert isinstance(store, SqliteStore) and store.durability == durability
        assert store._conn().execute("PRAGMA synchronous").fetchone() == (pragma,)
        assert store._conn().execute("PRAGMA journal_mode").fetchone() == ("wal",)
        store.create_session(app_name="demo", user_id="ada", session_id="s")
    with open_store(f"sqlite:///{db_path}") as store:
        assert store.get_session("s").version == 1


def test_default_durability_is_full(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        assert store.durability == "full"
        assert store.url == f"sqlite:///{db_path}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/x.db",
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///x.db?durability=sometimes",
        "sqlite:///x.db?max_event_bytes=lots",
        "sqlite:///x.db?max_event_bytes=10",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?busy_timeout=-5",
        "sqlite:///x.db?busy_timeout=nan",
        "sqlite:///x.db?busy_timeout=inf",
    ],
)
def test_bad_sqlite_urls(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        open_store(url)
    assert not (tmp_path / "x.db").exists()  # refused before anything is created


def test_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    with open_store("sqlite:///sub/dir/rel.db") as store:
        store.create_session(app_name="demo", user_id="ada")
    assert (tmp_path / "sub" / "dir" / "rel.db").is_file()


def test_a_missing_folder_is_an_error_naming_it_and_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    for options in ({}, {"create": False}, {"read_only": True}):
        with pytest.raises(StoreNotFoundError, match=re.escape(str(missing))):
            open_store(f"sqlite:///{missing}/x.db", **options)
    assert not (tmp_path / "nonexistent").exists()


def test_read_only_open_leaves_the_file_as_it_was(db_path: Path) -> None:
    """A read changes no byte of the database, even one in rollback-journal mode, which a
    writer would switch to WAL."""
    with open_store(f"sqlite:///{db_path}") as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s")
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    conn.close()
    before = db_path.read_bytes()
    with open_store(f"sqlite:///{db_path}", read_only=True) as ro:
        assert [s.id for s in ro.list_sessions().sessions] == ["s"]
        assert ro.get_session("s").version == 1
        with pytest.raises(ReadOnlyStoreError):
            ro.append("s", [msg()])
    assert db_path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_file_can_be_read(db_path: Path) -> None:
    with open_store(f"sqlite:///{db_path}") as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s")
    db_path.chmod(0o444)
    try:
        with open_store(f"sqlite:///{db_path}", read_only=True) as ro:
            assert [s.id for s in ro.list_sessions().sessions] == ["s"]
        db_path.parent.chmod(0o555)  # no -shm can be created beside it: read as immutable
        with open_store(f"sqlite:///{db_path}", read_only=True) as ro:
            assert ro.get_session("s").version == 1
    finally:
        db_path.parent.chmod(0o755)
        db_path.chmod(0o644)


def test_a_read_only_open_does_not_migrate_an_older_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(f"sqlite:///{db_path}") as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s")
    newer = [*MIGRATIONS, ["CREATE TABLE later (x INTEGER)"]]
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", newer)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", len(newer) - 1)
    with pytest.raises(SchemaVersionError, match="does not migrate") as info:
        open_store(f"sqlite:///{db_path}", read_only=True)
    assert f"version {SCHEMA_VERSION}" in str(info.value)
    assert sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    with open_store(f"sqlite:///{db_path}") as store:  # a write migrates
        assert store.get_session("s").version == 1
    assert sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone() == (len(newer) - 1,)


def test_closed_store_refuses_work(make: StoreFactory) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="s")
    store.close()
    with pytest.raises(StoreError):
        store.get_session("s")


def test_in_memory_sqlite_is_refused_by_the_store_itself() -> None:
    """Each thread's connection would get its own empty database: refuse it at any entry."""
    from agentledger.stores.sqlite import SqliteStore

    with pytest.raises(ConfigurationError, match="memory://"):
        SqliteStore(":memory:")


def test_a_row_nested_too_deep_corrupts_only_its_session(make: StoreFactory, db_path: Path) -> None:
    """Written before the nesting limit (or by hand): read back, it is corruption of its
    session, never a RecursionError for the store."""
    store, a, b = _populated(make)
    _corrupt_event(db_path, a, 2, "data", '{"a":' * 5000 + "1" + "}" * 5000)
    _execute(db_path, "UPDATE sessions SET snapshot = 'x' WHERE id = ?", (a,))
    with pytest.raises(CorruptedSessionError):
        store.get_session(a)
    with pytest.raises(CorruptedSessionError):
        store.read_events(a)
    page = store.list_sessions()
    assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]


# -- a store of schema version 2, as the version-2 library wrote it ---------------------------


def _write_v2_file(db_path: Path) -> list[Any]:
    """A database of schema version 2 holding the rows the version-2 library wrote; its
    event rows."""
    from migration_support import v2_rows

    rows = v2_rows()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            for version in (1, 2):
                for step in MIGRATIONS[version]:
                    if isinstance(step, str):
                        conn.execute(step)
            for table in ("sessions", "events", "scoped_state"):
                names = rows["columns"][table]
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(names)})"
                    f" VALUES ({', '.join('?' * len(names))})",
                    rows[table],
                )
            conn.execute("PRAGMA user_version = 2")
    finally:
        conn.close()
    return list(rows["events"])


def test_a_version_2_file_opens_and_reads_back_as_it_was(make: StoreFactory, db_path: Path) -> None:
    from migration_support import check_v2_store_upgraded

    _write_v2_file(db_path)
    store = make()
    assert isinstance(store, SqliteStore) and store.schema_version() == SCHEMA_VERSION
    check_v2_store_upgraded(store)


def test_a_version_2_file_gets_feed_positions_in_write_order(make: StoreFactory, db_path: Path) -> None:
    from migration_support import check_v2_feed

    events = _write_v2_file(db_path)
    check_v2_feed(make(), [(r[5], r[2]) for r in events])  # (timestamp, id)


# -- a store of schema version 3: state inside the snapshot ----------------------------------


def _write_v3_file(db_path: Path, damage: str | None = None) -> None:
    """A database of schema version 3 holding the rows the version-3 library wrote (with
    the snapshot of session `damage` replaced by text that is not JSON)."""
    from migration_support import v3_rows

    rows = v3_rows()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            for version in (1, 2, 3):
                for step in MIGRATIONS[version]:
                    if isinstance(step, str):
                        conn.execute(step)
            conn.execute("DELETE FROM feed_counter")
            for table in ("sessions", "events", "scoped_state", "feed_counter"):
                names = rows["columns"][table]
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(names)})"
                    f" VALUES ({', '.join('?' * len(names))})",
                    rows[table],
                )
            if damage is not None:
                conn.execute("UPDATE sessions SET snapshot = '{not json' WHERE id = ?", (damage,))
            conn.execute("PRAGMA user_version = 3")
    finally:
        conn.close()


def test_a_version_3_file_keeps_each_state_key_apart_and_reads_back_as_it_was(
    make: StoreFactory, db_path: Path
) -> None:
    from migration_support import check_v3_store_upgraded, v3_rows

    _write_v3_file(db_path)
    store = make()
    assert isinstance(store, SqliteStore) and store.schema_version() == SCHEMA_VERSION == 4
    # The upgrade moved every own state key out of the snapshots, into a row each.
    for sid, snapshot in _execute(db_path, "SELECT id, snapshot FROM sessions"):
        assert "state" not in json.loads(snapshot), sid
    stored = dict(
        _execute(db_path, "SELECT key, value FROM session_state WHERE session_id = 's-state'")
    )
    own = {k: v for k, v in v3_rows()["sessions_read"]["s-state"]["state"].items() if ":" not in k}
    assert {k: json.loads(v) for k, v in stored.items()} == own
    check_v3_store_upgraded(store)


def test_a_version_3_file_with_an_unreadable_snapshot_is_upgraded_and_rebuilt(
    make: StoreFactory, db_path: Path
) -> None:
    from migration_support import v3_rows

    _write_v3_file(db_path, damage="s-fork")
    store = make()
    assert store.get_session("s-fork").model_dump(mode="json") == v3_rows()["sessions_read"]["s-fork"]
    assert _execute(db_path, "SELECT count(*) FROM session_state WHERE session_id = 's-fork'") == [(0,)]
    store.append("s-fork", [NewEvent(type="state_updated", state_delta={"fork": 2})])
    assert store.get_session("s-fork").state["fork"] == 2
    assert store.verify_session("s-fork").ok


def test_an_append_writes_only_the_state_keys_it_touches(make: StoreFactory, db_path: Path) -> None:
    """The cost of an append does not depend on the size of the state: the session's row
    keeps no state, and only the keys an event sets or removes are written."""
    store = make()
    big = {f"k{i}": "v" * 1000 for i in range(100)}
    sid = store.create_session(app_name="a", user_id="u", state=big).id
    (snapshot,) = _execute(db_path, "SELECT snapshot FROM sessions WHERE id = ?", (sid,))[0]
    assert len(snapshot) < 2000 and "vvvv" not in snapshot
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(
            "CREATE TABLE state_writes (key TEXT)"
        )
        for action in ("INSERT", "UPDATE", "DELETE"):
            row = "old" if action == "DELETE" else "new"
            conn.execute(
                f"CREATE TRIGGER count_{action.lower()} AFTER {action} ON session_state"
                f" BEGIN INSERT INTO state_writes VALUES ({row}.key); END"
            )
        conn.commit()
    finally:
        conn.close()
    store.append(sid, [msg("no state change")])
    store.append(sid, [NewEvent(type="state_updated", state_delta={"k5": 1, "new": 2})])
    store.append(sid, [NewEvent(type="state_updated", state_remove=["k7"])])
    written = sorted(k for (k,) in _execute(db_path, "SELECT key FROM state_writes"))
    assert written == ["k5", "k7", "new"]
    expected = {**big, "k5": 1, "new": 2}
    del expected["k7"]
    assert store.get_session(sid).state == expected
    assert store.verify_session(sid).ok


def test_a_damaged_state_value_is_rebuilt_on_read_reported_by_verify_and_rewritten(
    make: StoreFactory, db_path: Path
) -> None:
    store = make()
    sid = store.create_session(app_name="a", user_id="u", state={"n": 1, "m": [2]}).id
    store.append(sid, [NewEvent(type="state_updated", state_delta={"n": 3})])
    _execute(db_path, "UPDATE session_state SET value = '{broken' WHERE key = 'n'")
    assert make().get_session(sid).state == {"n": 3, "m": [2]}  # rebuilt from the ledger
    report = make().verify_session(sid)
    assert not report.ok and report.problem is not None
    assert report.problem.startswith("the session's stored snapshot or state cannot be read")
    # The next write stores the whole state again, not only the key it touches.
    make().append(sid, [NewEvent(type="state_updated", state_delta={"k": 0})])
    assert make().verify_session(sid).ok
    stored = dict(_execute(db_path, "SELECT key, value FROM session_state WHERE session_id = ?", (sid,)))
    assert stored == {"n": "3", "m": "[2]", "k": "0"}


def test_the_event_format_and_removals_are_columns_the_chain_covers(
    make: StoreFactory, db_path: Path
) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada", state={"k": 1, "j": 2}).id
    store.append(sid, [msg(state_delta={"k": None}, state_remove=["j"])])
    rows = _execute(db_path, "SELECT seq, format, state_remove FROM events WHERE session_id = ?"
                    " ORDER BY seq", (sid,))
    assert rows == [(1, 2, "[]"), (2, 2, '["j"]')]
    assert store.verify_session(sid).ok
    # A format changed behind the store's back (2 -> 1 would turn the null into a delete)
    # breaks the chain; so does a changed removal list.
    _corrupt_event(db_path, sid, 2, "format", "1")
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 2
    _corrupt_event(db_path, sid, 2, "format", "2")
    assert store.verify_session(sid).ok
    _corrupt_event(db_path, sid, 2, "state_remove", '["k"]')
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 2 and "payload hash" in str(report.problem)
# -- erase and truncate: damage around them is still detected ---------------------------------


def _erased_and_truncated(make: StoreFactory) -> tuple[Any, str]:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg(str(i)) for i in range(6)])  # seqs 2..7
    store.erase_events(sid, [5], "privacy")  # seq 8
    assert store.truncate_before(sid, 3) == 2
    assert store.verify_session(sid).ok
    return store, sid


def test_an_erased_mark_without_its_record_is_detected(make: StoreFactory, db_path: Path) -> None:
    store, sid = _erased_and_truncated(make)
    # A payload emptied by hand and marked erased: no events_erased event records it.
    _execute(
        db_path,
        "UPDATE events SET data = '{}', erased = 1 WHERE session_id = ? AND seq = 6",
        (sid,),
    )
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 6
    assert "no events_erased event records" in (report.problem or "")


def test_a_lost_first_event_of_a_truncated_ledger_is_detected(
    make: StoreFactory, db_path: Path
) -> None:
    store, sid = _erased_and_truncated(make)
    _execute(db_path, "DELETE FROM events WHERE session_id = ? AND seq = 3", (sid,))
    with pytest.raises(CorruptedSessionError, match="event 3 is missing"):
        store.read_events(sid)
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 3


def test_a_changed_base_is_detected(make: StoreFactory, db_path: Path) -> None:
    store, sid = _erased_and_truncated(make)
    (base,) = _execute(db_path, "SELECT base FROM sessions WHERE id = ?", (sid,))[0]
    changed = json.loads(base)
    changed["session"]["state"] = {"injected": True}
    _execute(db_path, "UPDATE sessions SET base = ? WHERE id = ?", (json.dumps(changed), sid))
    report = store.verify_session(sid)
    assert not report.ok and report.problem == "the session's snapshot does not match its ledger"
    changed["chain_hash"] = "0" * 64
    _execute(db_path, "UPDATE sessions SET base = ? WHERE id = ?", (json.dumps(changed), sid))
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 3


def test_keyed_and_ordered_reads_are_index_backed(make: StoreFactory) -> None:
    """Every query behind keyed reads, time windows and creation order searches an index
    (EXPLAIN QUERY PLAN of the statements the store runs): none scans a table."""
    store = make()
    assert isinstance(store, SqliteStore)
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg(str(i), key=f"ckpt:{i:04d}") for i in range(300)])
    conn = store._conn()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        store.get_event(session.id, "ckpt:0007")
        store.read_events(session.id, keys=["ckpt:0001", "ckpt:0002"])
        store.read_events(session.id, key_prefix="ckpt:01")
        store.read_events(session.id, key_prefix="ckpt:", last=1)
        store.read_events(session.id, key_prefix="ckpt:", last=1, after=0, data_match={"text": "1"})
        store.read_events(session.id, after_timestamp=session.created_at, limit=5)
        store.list_sessions(order="created_desc")
        store.list_sessions(order="created_asc")
        store.append(session.id, [msg("0", key="ckpt:0000")])  # a retry: the key check
    finally:
        conn.set_trace_callback(None)
    plans: dict[str, str] = {}
    for statement in seen:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
        plans[statement] = " | ".join(str(r[3]) for r in rows)
    assert plans
    for statement, plan in plans.items():
        assert not re.search(r"SCAN (events|s)\b(?! USING (COVERING )?INDEX)", plan), (
            statement,
            plan,
        )
        if "FROM events" in statement and ("key IN" in statement or "key >=" in statement):
            assert "events_by_key" in plan or "PRIMARY KEY" in plan, (statement, plan)
        if "timestamp >" in statement:
            assert "events_by_timestamp" in plan, (statement, plan)
        if "ORDER BY s.created_at" in statement:
            assert "sessions_by_created" in plan, (statement, plan)
    assert any("events_by_key" in p for p in plans.values())


def test_a_key_changed_in_the_file_breaks_the_chain(make: StoreFactory, db_path: Path) -> None:
    """The key is covered by the event's payload hash: editing it is caught by reads of
    the ledger and by `verify_session`."""
    store = make()
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("a", key="ckpt:1"), msg("b")])
    assert store.verify_session(session.id).ok
    _execute(db_path, "UPDATE events SET key = 'ckpt:9' WHERE key = 'ckpt:1'")
    report = store.verify_session(session.id)
    assert not report.ok and report.first_bad_seq == 2
    with pytest.raises(CorruptedSessionError):
        store.read_events(session.id)


# -- group commit and the snapshot cache ------------------------------------------------------


def _append_from_threads(
    store: SqliteStore, sids: list[str], per_thread: int, fail_every: int = 0
) -> tuple[list[list[int]], list[BaseException]]:
    """Append `per_thread` events to each session from its own thread, all released at
    once; every `fail_every`-th append of a thread uses a stale expected_version (it must
    fail alone). The seqs each thread was acknowledged, and the unexpected errors."""
    import threading

    from agentledger import ConcurrencyError

    barrier = threading.Barrier(len(sids))
    acked: list[list[int]] = [[] for _ in sids]
    errors: list[BaseException] = []

    def work(i: int, sid: str) -> None:
        barrier.wait()
        try:
            for n in range(per_thread):
                if fail_every and n % fail_every == fail_every - 1:
                    with pytest.raises(ConcurrencyError):
                        store.append(sid, [msg(f"stale {n}")], expected_version=0)
                    continue
                (event,) = store.append(sid, [msg(f"{i}-{n}")])
                acked[i].append(event.seq)
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, sid)) for i, sid in enumerate(sids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked, errors


@pytest.mark.parametrize("group_commit", [True, False])
def test_appends_from_many_threads_each_land_once_in_order(
    db_path: Path, group_commit: bool
) -> None:
    store = SqliteStore(db_path, group_commit=group_commit)
    sids = [store.create_session(app_name="a", user_id="u").id for _ in range(12)]
    acked, errors = _append_from_threads(store, sids, 15, fail_every=4)
    assert errors == []
    store.close()
    # Every acknowledged append is in the file, once, read by a fresh store.
    again = SqliteStore(db_path)
    for sid, seqs in zip(sids, acked, strict=True):
        events = again.read_events(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert seqs == [e.seq for e in events[1:]]  # the stale appends wrote nothing
        assert again.verify_session(sid).ok
        assert again.get_session(sid).version == len(events)
    again.close()


def test_threads_appending_to_one_session_keep_seq_gapless(db_path: Path) -> None:
    store = SqliteStore(db_path)
    sid = store.create_session(app_name="a", user_id="u").id
    acked, errors = _append_from_threads(store, [sid] * 8, 10)
    assert errors == []
    seqs = sorted(s for thread in acked for s in thread)
    assert seqs == list(range(2, 82))
    assert [e.seq for e in store.read_events(sid)] == list(range(1, 82))
    assert store.verify_session(sid).ok
    store.close()


def test_a_group_commit_that_fails_acknowledges_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(db_path)
    sid = store.create_session(app_name="a", user_id="u").id
    store.append(sid, [msg("kept")])
    group = store._group()
    real = group._conn

    class FailingCommit:
        """The group's connection, whose COMMIT fails as a full disk would."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

    monkeypatch.setattr(group, "_conn", FailingCommit())
    with pytest.raises(StoreError):
        store.append(sid, [msg("lost")])
    monkeypatch.setattr(group, "_conn", real)
    # Nothing of the failed group was written; the store goes on.
    assert [e.data["text"] for e in store.read_events(sid)[1:]] == ["kept"]
    (event,) = store.append(sid, [msg("next")])
    assert event.seq == 3
    store.close()


def test_a_snapshot_changed_by_another_writer_is_not_taken_from_the_cache(
    db_path: Path,
) -> None:
    one, two = SqliteStore(db_path), SqliteStore(db_path)
    sid = one.create_session(app_name="a", user_id="u").id
    one.append(sid, [NewEvent(type="state_updated", author="x", state_delta={"n": 1})])
    two.append(sid, [NewEvent(type="state_updated", author="x", state_delta={"m": 2})])
    one.append(sid, [NewEvent(type="state_updated", author="x", state_delta={"n": 3})])
    assert one.get_session(sid).state == {"n": 3, "m": 2}
    # Deleted and created again with the same id: the cached snapshot is not the row's.
    one.delete_session(sid)
    two.create_session(app_name="a", user_id="u", session_id=sid)
    two.append(sid, [NewEvent(type="state_updated", author="x", state_delta={"z": 0})])
    one.append(sid, [NewEvent(type="state_updated", author="x", state_delta={"y": 1})])
    assert one.get_session(sid).state == {"z": 0, "y": 1}
    assert two.get_session(sid) == one.get_session(sid)
    one.close()
    two.close()


def test_changing_a_returned_event_does_not_change_the_session(make: StoreFactory) -> None:
    store = make()
    sid = store.create_session(app_name="a", user_id="u").id
    (event,) = store.append(
        sid,
        [NewEvent(type="metadata_updated", author="x", data={"metadata": {"tags": ["a"]}},
                  state_delta={"items": [1], "deep": {"k": 1}})],
    )
    event.state_delta["items"].append(2)
    event.state_delta["deep"]["k"] = 5
    event.data["metadata"]["tags"].append("b")
    store.append(sid, [msg("next")])
    session = store.get_session(sid)
    assert session.state == {"items": [1], "deep": {"k": 1}}
    assert session.metadata == {"tags": ["a"]}


def test_reads_take_the_one_loop_chain_check_and_decode(tmp_path: Path) -> None:
    """A full read checks the chain in one loop (`_chain_holds`) and decodes parsed
    payloads in one loop (`_decode_parsed`); both must agree with the general code on
    every kind of event (key, invocation id, operations, removals, non-ASCII), or every
    read falls back to the slower general path. The events decoded equal those the
    general path gives."""
    from agentledger.stores.shared import GENESIS, _chain_holds

    store = open_store(f"sqlite:///{tmp_path / 'fast.db'}")
    session = store.create_session(app_name="app", user_id="u")
    store.append(
        session.id,
        [
            NewEvent(type="user_message", author="user", data={"text": f"é {i} \"q\""},
                     key=f"k/{i}" if i % 2 else None, invocation_id="inv" if i % 3 else None)
            for i in range(10)
        ]
        + [
            NewEvent(type="state_updated", author="agent", state_delta={"a": [1, 2]},
                     state_ops=[{"op": "add", "path": "/a/-", "value": 3}]),
            NewEvent(type="state_updated", author="agent", state_remove=["a"]),
        ],
    )
    rows = store._fetch_event_rows(session.id, after=0, limit=None, last=None, types=None)
    assert len(rows) == 13
    assert _chain_holds(rows, GENESIS)
    assert not _chain_holds(rows, "f" * 64)  # a wrong start: the general check names it
    with pytest.raises(CorruptedSessionError, match="event 1"):
        changed = (*rows[0][:7], '{"text":"x"}', *rows[0][8:])
        store._check_read(session.id, [changed, *rows[1:]], 1)
    events = store.read_events(session.id)
    assert events == [store._decode_event(row) for row in rows]
    assert [e.model_dump() for e in events] == [
        type(e).model_validate(e.model_dump()).model_dump() for e in events
    ]
    store.close()
