"""PostgreSQL-specific behaviour: schema versions and migrations, setup races, connection
failures, URL options, values JSONB cannot hold as they are, rows damaged behind our back.

The shared contract is checked by the conformance suite (test_conformance.py, backend
"postgresql"). Every test here gets a fresh schema from `$AGENTLEDGER_TEST_POSTGRES_URL`
(the `postgres_url` fixture in conftest.py) and skips without it (fails when `CI=true`).
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from migration_support import (
    V1_EVENT_COLUMNS,
    check_reopening_does_not_rerun_migrations,
    check_v1_store_upgraded,
    check_version_1_data_after_upgrade,
    v1_rows,
    version_1_rows,
)

from agentledger import (
    ConfigurationError,
    CorruptedSessionError,
    MissingDependencyError,
    NewEvent,
    ReadOnlyStoreError,
    SchemaVersionError,
    SessionExistsError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    open_store,
)
from agentledger.testing import StoreFactory, msg
from agentledger.testing._processes import create_worker, run_processes

psycopg = pytest.importorskip("psycopg")
postgres_module = pytest.importorskip("agentledger.stores.postgres")
PostgresStore = postgres_module.PostgresStore
MIGRATIONS = postgres_module.MIGRATIONS
SCHEMA_VERSION = postgres_module.SCHEMA_VERSION


def _schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


def _base(url: str) -> str:
    """The URL without agentledger's `schema` option: what psycopg itself accepts."""
    return url.rsplit("schema=", 1)[0].rstrip("?&")


@pytest.fixture
def make(postgres_url: str) -> Iterator[StoreFactory]:
    factory = StoreFactory(postgres_url)
    yield factory
    factory.close_all()


@pytest.fixture
def sql(postgres_url: str) -> Iterator[Any]:
    """Run SQL in the test's schema directly, as something other than agentledger would."""
    conn = psycopg.connect(_base(postgres_url), autocommit=True)
    schema = psycopg.sql.Identifier(_schema(postgres_url))
    conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(schema))

    def run(query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- schema versions and migrations ---------------------------------------------------------


def test_new_schema_gets_the_current_version(make: StoreFactory, sql: Any) -> None:
    store = make()
    assert isinstance(store, PostgresStore)
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS) - 1
    assert MIGRATIONS[0] == []
    assert sql("SELECT version FROM agentledger_schema_version ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]
    tables = {
        r[0] for r in sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    }
    assert tables == {
        "agentledger_schema_version", "sessions", "events", "session_state", "session_activity",
        "scoped_state",
    }
    types = dict(
        sql(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
    )
    for column in ("events.data", "events.state_delta", "scoped_state.state"):
        assert types[column] == "jsonb"
    for column in ("sessions.snapshot", "session_state.value"):  # JSON text, as written
        assert types[column] == "text"
    for column in ("events.timestamp", "sessions.created_at", "sessions.updated_at"):
        assert types[column] == "timestamp with time zone"


def test_newer_schema_is_refused(make: StoreFactory, sql: Any, postgres_url: str) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    newer = SCHEMA_VERSION + 1
    sql("INSERT INTO agentledger_schema_version (version) VALUES (%s)", (newer,))
    with pytest.raises(SchemaVersionError) as info:
        make()
    message = str(info.value)
    assert f"schema version {newer}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert repr(_schema(postgres_url)) in message
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(newer,)]
    assert sql("SELECT id FROM sessions") == [("kept",)]


def test_reopening_does_not_rerun_migrations(
    make: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_reopening_does_not_rerun_migrations(make, postgres_module, monkeypatch)


def test_a_version_1_schema_is_upgraded_to_take_state_operations(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 adds `events.state_ops`; a schema written by version 1 keeps its data."""
    with monkeypatch.context() as patched:
        patched.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:2])
        patched.setattr(postgres_module, "SCHEMA_VERSION", 1)
        make().close()
    session_row, events, scoped = version_1_rows()
    sql(
        "INSERT INTO sessions VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz,"
        " %s::timestamptz, %s, %s::jsonb)",
        tuple(session_row),
    )
    for row in events:
        sql(
            f"INSERT INTO events ({', '.join(V1_EVENT_COLUMNS)}) VALUES (%s, %s, %s, %s, %s,"
            " %s::timestamptz, %s, %s::jsonb, %s::jsonb)",
            row,
        )
    for row in scoped:
        sql("INSERT INTO scoped_state VALUES (%s, %s, %s::jsonb)", row)
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(1,)]
    store = make()
    assert store.schema_version() == SCHEMA_VERSION
    check_version_1_data_after_upgrade(store)
    store.close()
    assert make().get_session("old").version == 3


def test_a_schema_of_the_previous_version_is_migrated(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make()  # written at SCHEMA_VERSION, the previous version of the patched library
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    upgraded = [
        *MIGRATIONS,
        ["CREATE TABLE {schema}.extra (x integer)", "INSERT INTO {schema}.extra VALUES (7)"],
    ]
    monkeypatch.setattr(postgres_module, "MIGRATIONS", upgraded)
    monkeypatch.setattr(postgres_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    reopened = make()
    assert reopened.schema_version() == SCHEMA_VERSION + 1
    assert sql("SELECT x FROM extra") == [(7,)]
    assert reopened.get_session("kept").version == 1
    reopened.close()
    make().close()
    assert sql("SELECT x FROM extra") == [(7,)]  # applied once


def test_a_read_only_open_does_not_migrate_or_create(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    for options in ({"read_only": True}, {"create": False}):
        with pytest.raises(StoreNotFoundError, match="holds no agentledger store"):
            make(**options)
    schema = _schema(postgres_url)
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)) == []
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    upgraded = [*MIGRATIONS, ["CREATE TABLE {schema}.extra (x integer)"]]
    monkeypatch.setattr(postgres_module, "MIGRATIONS", upgraded)
    monkeypatch.setattr(postgres_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match="does not migrate"):
        make(read_only=True)
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(SCHEMA_VERSION,)]
    reopened = make(create=False)  # a writer migrates
    assert reopened.schema_version() == SCHEMA_VERSION + 1
    ro = make(read_only=True)
    assert ro.get_session("kept").version == 1
    with pytest.raises(ReadOnlyStoreError):
        ro.append("kept", [msg()])


def test_failed_migration_changes_nothing(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make().close()
    broken = [*MIGRATIONS, ["CREATE TABLE {schema}.extra (x integer)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(postgres_module, "MIGRATIONS", broken)
    monkeypatch.setattr(postgres_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="nothing was changed"):
        make()
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(SCHEMA_VERSION,)]
    assert sql("SELECT to_regclass('extra')") == [(None,)]


def test_failed_first_setup_leaves_no_schema(
    postgres_url: str, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [[], ["CREATE TABLE {schema}.sessions (id text)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(postgres_module, "MIGRATIONS", broken)
    with pytest.raises(StoreError):
        open_store(postgres_url)
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = %s", (_schema(postgres_url),)) == []


def test_processes_creating_the_schema_at_once(postgres_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = 4
    barrier = ctx.Barrier(workers)
    run_processes(
        ctx, create_worker, [(postgres_url, (), barrier, "demo", w) for w in range(workers)]
    )
    with open_store(postgres_url) as store:
        listed = store.list_sessions(app_name="demo").sessions
        assert sorted(s.user_id for s in listed) == [f"user-{w}" for w in range(workers)]
        assert isinstance(store, PostgresStore) and store.schema_version() == SCHEMA_VERSION


# -- connections ----------------------------------------------------------------------------


def test_unreachable_server(postgres_url: str) -> None:
    port = _closed_port()
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"postgresql://postgres@127.0.0.1:{port}/agentledger_test")
    assert f"127.0.0.1:{port}/agentledger_test" in str(info.value)
    assert "cannot connect" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def test_connections_killed_by_the_server_are_replaced(postgres_url: str, sql: Any) -> None:
    name = f"agentledger-{_schema(postgres_url)}"  # only this test's connections
    store = open_store(f"{postgres_url}&application_name={name}&pool_min_size=2")
    sid = store.create_session(app_name="demo", user_id="ada").id
    killed = sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )
    assert killed  # at least the connection that created the session
    failures = 0
    for _ in range(20):  # each broken connection fails one call, then leaves the pool
        try:
            store.append(sid, [msg()])
            break
        except StoreUnavailableError:
            failures += 1
    else:
        pytest.fail("the store never recovered")
    assert failures <= len(killed)  # each killed connection fails one call at most
    assert store.get_session(sid).version == 2
    store.close()


def test_closed_store_refuses_work(make: StoreFactory) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="s")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.get_session("s")
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.append("s", [msg()])


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    monkeypatch.delitem(sys.modules, "agentledger.stores.postgres")
    with pytest.raises(MissingDependencyError) as info:
        open_store("postgresql://postgres@127.0.0.1/agentledger_test")
    assert info.value.extra == "postgres"
    assert "agentledger[postgres]" in str(info.value)


# -- URL options ----------------------------------------------------------------------------


def test_schemas_isolate_stores(postgres_url: str) -> None:
    other = postgres_url.replace("schema=", "schema=other_")
    try:
        with open_store(postgres_url) as a, open_store(other) as b:
            a.create_session(app_name="demo", user_id="ada", session_id="s", state={"app:k": 1})
            assert b.list_sessions().sessions == []
            assert b.create_session(app_name="demo", user_id="ada", session_id="s").state == {}
    finally:
        with psycopg.connect(_base(postgres_url), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(_schema(other))
                )
            )


def test_options_from_the_url_and_keywords(postgres_url: str) -> None:
    url = f"{postgres_url}&pool_min_size=0&pool_max_size=3&pool_timeout=5&application_name=al"
    with open_store(url, max_event_bytes=4096) as store:
        assert isinstance(store, PostgresStore)
        assert (store._pool.min_size, store._pool.max_size) == (0, 3)
        assert store.max_event_bytes == 4096
        assert store.schema == _schema(postgres_url)
        assert store.url == url
        sid = store.create_session(app_name="demo", user_id="ada").id
        with store._connection() as conn:  # libpq parameters reach the server
            assert conn.execute("SHOW application_name").fetchone() == ("al",)
        assert store.get_session(sid).version == 1
    with open_store(postgres_url.replace("postgresql://", "postgres://", 1)) as store:
        assert store.get_session(sid).version == 1


def test_percent_encoded_libpq_options_reach_the_server(postgres_url: str) -> None:
    # A space must stay a space (%20), not become "+", which libpq does not decode.
    url = f"{postgres_url}&options=-c%20statement_timeout%3D12345&application_name=a%20b"
    with open_store(url) as store, store._connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("12345ms",)
        assert conn.execute("SHOW application_name").fetchone() == ("a b",)


@pytest.mark.parametrize(
    "query",
    [
        "pool_max_size=0",
        "pool_min_size=5&pool_max_size=2",
        "pool_max_size=many",
        "pool_timeout=soon",
        "max_event_bytes=10",
        "not_a_libpq_parameter=1",
    ],
)
def test_bad_options(postgres_url: str, query: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(f"{postgres_url}&{query}")


def test_unknown_keyword_option(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="pool_szie"):
        open_store(postgres_url, pool_szie=3)


@pytest.mark.parametrize("schema", ["", "x" * 64])
def test_bad_schema_name(postgres_url: str, schema: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(postgres_url, schema=schema)


def test_odd_schema_names_are_quoted(postgres_url: str) -> None:
    odd = f'{_schema(postgres_url)}-Odd "name"; DROP TABLE x'
    try:
        with open_store(postgres_url, schema=odd) as store:
            store.create_session(app_name="demo", user_id="ada", session_id="s")
            assert store.get_session("s").version == 1
    finally:
        with psycopg.connect(_base(postgres_url), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(odd)
                )
            )


def test_password_is_not_shown(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@", 1)
    with open_store(url) as store:
        assert "s3cret" not in repr(store)
        assert "***" in repr(store)
        assert store.url == url  # other processes reopen it by URL


# -- values JSONB and text columns cannot hold as they are ----------------------------------

ODD_STRINGS = ["nul\x00inside", "\x00", "pua\ue000", "\ue0000", "\ue0001\x00", "\\u0000", "\\\x00"]
ODD_NUMBERS = [1e23, -1e300, 1.7976931348623157e308, 5e-324, 1e16, 2.5e-7, 10**40, 0.1]


def test_odd_strings_and_numbers_round_trip(make: StoreFactory, sql: Any) -> None:
    store = make()
    name = "app\x00\ue000"
    session = store.create_session(
        app_name=name,
        user_id=name,
        agent_name=name,
        title=name,
        state={s: s for s in ODD_STRINGS} | {"app:n": ODD_NUMBERS, "user:\x00": "\x00"},
        session_id="odd",
    )
    event = NewEvent(
        type="plugin\x00.x\ue000",
        author="\x00",
        invocation_id="\ue000\x00",
        data={"strings": ODD_STRINGS, "numbers": ODD_NUMBERS, **{s: s for s in ODD_STRINGS}},
        state_delta={"n": ODD_NUMBERS},
    )
    (stored,) = store.append(session.id, [event])
    reopened = make()
    (back,) = reopened.read_events("odd", after=1)
    assert back == stored
    assert [type(n) for n in back.data["numbers"]] == [type(n) for n in ODD_NUMBERS]
    assert reopened.read_events("odd", types=["plugin\x00.x\ue000"]) == [back]
    got = reopened.get_session("odd")
    assert got.state["n"] == ODD_NUMBERS and got.state["app:n"] == ODD_NUMBERS
    assert got.state["user:\x00"] == "\x00" and got.title == name
    listed = reopened.list_sessions(app_name=name, user_id=name, agent_name=name).sessions
    assert [s.id for s in listed] == ["odd"]
    # What SQL sees: NUL escaped, big floats written out in full.
    (row,) = sql("SELECT data->'strings'->>0, data->'numbers'->>0 FROM events WHERE seq = 2")
    assert row == ("nul\ue0000inside", "99999999999999991611392.0")


# -- rows changed behind the store's back ---------------------------------------------------


def _populated(make: StoreFactory) -> tuple[Any, str, str]:
    store = make()
    a = store.create_session(app_name="demo", user_id="ada", state={"k": 1}, session_id="aaa")
    b = store.create_session(app_name="demo", user_id="bob", session_id="bbb")
    store.append(a.id, [msg("one", state_delta={"k": 2}), msg("two")])
    store.append(b.id, [msg("three")])
    return store, a.id, b.id


def test_unreadable_snapshot_is_rebuilt_from_the_ledger(make: StoreFactory, sql: Any) -> None:
    store, a, b = _populated(make)
    good = store.get_session(a)
    for garbage in ("[]", '{"id": 5}', "null", "{not json", ""):
        sql("UPDATE sessions SET snapshot = %s WHERE id = %s", (garbage, a))
        assert store.get_session(a) == good
    sql("UPDATE session_state SET value = '{not json' WHERE session_id = %s", (a,))
    assert store.get_session(a) == good
    store.append(a, [msg("four")])  # the append stores a readable snapshot and state again
    assert sql("SELECT snapshot::jsonb->>'version' FROM sessions WHERE id = %s", (a,)) == [("4",)]
    assert sql("SELECT key, value FROM session_state WHERE session_id = %s", (a,)) == [("k", "2")]


def test_unreadable_event_row_corrupts_only_its_session(make: StoreFactory, sql: Any) -> None:
    store, a, b = _populated(make)
    b_events = store.read_events(b)
    sql("UPDATE events SET data = '[1, 2]' WHERE session_id = %s AND seq = 2", (a,))
    with pytest.raises(CorruptedSessionError) as info:
        store.read_events(a)
    assert info.value.session_id == a
    assert store.read_events(b) == b_events
    sql("UPDATE sessions SET snapshot = 'null' WHERE id = %s", (a,))  # and a rebuild fails
    page = store.list_sessions()
    assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]


# -- the database enforces the contract -----------------------------------------------------


def test_creating_one_id_from_threads_at_once(make: StoreFactory) -> None:
    stores = [make() for _ in range(6)]  # one pool each: truly concurrent transactions
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def create(store: Any, i: int) -> None:
        barrier.wait()
        try:
            store.create_session(
                app_name="demo", user_id=f"u{i}", session_id="same", state={"k": i}
            )
            outcomes.append("created")
        except SessionExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=create, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * (len(stores) - 1)
    session = stores[0].get_session("same")
    assert [e.seq for e in stores[0].read_events("same")] == [1]
    assert session.state == {"k": int(session.user_id[1:])}


def test_a_duplicate_seq_cannot_be_committed(make: StoreFactory, sql: Any) -> None:
    store, a, _ = _populated(make)
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql(
            "INSERT INTO events SELECT session_id, seq, id || 'x', type, author, timestamp,"
            " invocation_id, data, state_delta FROM events WHERE session_id = %s AND seq = 2",
            (a,),
        )


def _append_in_forked_child(store: Any, session_id: str, backend_pids: Any) -> None:
    store.append(session_id, [msg("from the child")])
    with store._connection() as conn:
        backend_pids.put(conn.info.backend_pid)


def test_a_forked_child_uses_connections_of_its_own(postgres_url: str) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    ctx = multiprocessing.get_context("fork")
    store = open_store(postgres_url, pool_min_size=1, pool_max_size=1)
    sid = store.create_session(app_name="demo", user_id="ada").id
    with store._connection() as conn:
        parent_pid = conn.info.backend_pid
    backend_pids = ctx.Queue()
    child = ctx.Process(target=_append_in_forked_child, args=(store, sid, backend_pids))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert backend_pids.get(timeout=5) != parent_pid  # not the parent's inherited socket
    store.append(sid, [msg("after the fork")])  # the parent's connection still works
    with store._connection() as conn:
        assert conn.info.backend_pid == parent_pid
    texts = [e.data.get("text") for e in store.read_events(sid)[1:]]
    assert texts == ["from the child", "after the fork"]
    store.close()


def _close_in_forked_child(store: Any) -> None:
    store.close()


def test_a_forked_child_closing_the_store_leaves_the_parents_connections(
    postgres_url: str,
) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    store = open_store(postgres_url, pool_min_size=1, pool_max_size=1)
    sid = store.create_session(app_name="demo", user_id="ada").id
    child = multiprocessing.get_context("fork").Process(target=_close_in_forked_child, args=(store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    store.append(sid, [msg("after the child closed its copy")])
    assert store.get_session(sid).version == 2
    store.close()


def test_constructed_directly(postgres_url: str) -> None:
    schema = _schema(postgres_url)
    with PostgresStore(_base(postgres_url), schema=schema, pool_max_size=2) as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s")
        assert store.url == postgres_url
        with open_store(store.url) as reopened:  # how another process reopens it
            assert reopened.get_session("s").version == 1
    with pytest.raises(ConfigurationError):
        PostgresStore(postgres_url)  # agentledger's options are not libpq's


# -- the hash chain: schema version 2 and rows damaged behind our back -----------------------


def test_a_version_1_schema_is_upgraded_with_its_events_chained(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # a schema of version 1, as that library made it
        patch.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:2])
        patch.setattr(postgres_module, "SCHEMA_VERSION", 1)
        make().close()
    rows = v1_rows()
    jsonb = {"snapshot", "data", "state_delta", "state"}
    for table in ("sessions", "events", "scoped_state"):
        names = rows["columns"][table]
        marks = ", ".join("%s::jsonb" if n in jsonb else "%s" for n in names)
        for row in rows[table]:
            values = tuple(
                postgres_module._pg_json(v) if n in jsonb else v
                for n, v in zip(names, row, strict=True)
            )
            sql(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values)
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(1,)]
    store = make()
    assert store.schema_version() == SCHEMA_VERSION
    assert sql("SELECT count(*) FROM events WHERE hash = '' OR payload_hash = ''") == [(0,)]
    check_v1_store_upgraded(store)


def test_a_deleted_event_row_is_detected_as_a_gap(make: StoreFactory, sql: Any) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("a"), msg("b"), msg("c")])
    sql("DELETE FROM events WHERE session_id = %s AND seq = 3", (sid,))
    with pytest.raises(CorruptedSessionError, match="event 3 is missing"):
        store.read_events(sid)
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    sql("DELETE FROM events WHERE session_id = %s AND seq >= 3", (sid,))
    report = store.verify_session(sid)  # the last rows gone: the session row says 4
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "3 to 4 are missing" in (report.problem or "")


def test_a_changed_event_row_fails_verification(make: StoreFactory, sql: Any) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("pay 100"), msg("b")])
    sql(
        "UPDATE events SET data = jsonb_set(data, '{text}', '\"pay 900\"')"
        " WHERE session_id = %s AND seq = 2",
        (sid,),
    )
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "payload hash mismatch" in (report.problem or "")
    sql("UPDATE events SET author = 'mallory' WHERE session_id = %s AND seq = 3", (sid,))
    with pytest.raises(CorruptedSessionError, match="event 3"):
        store.read_events(sid)  # a full read checks the headers' chain


def test_the_event_format_and_removals_are_columns_the_chain_covers(
    make: StoreFactory, sql: Any
) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada", state={"k": 1, "j": 2}).id
    store.append(sid, [msg(state_delta={"k": None}, state_remove=["j\x00"])])
    rows = sql("SELECT seq, format, state_remove::text FROM events WHERE session_id = %s"
               " ORDER BY seq", (sid,))
    assert [tuple(r) for r in rows] == [(1, 2, "[]"), (2, 2, '["j\ue0000"]')]  # NUL escaped
    assert store.read_events(sid)[-1].state_remove == ["j\x00"]
    assert store.get_session(sid).state == {"k": None, "j": 2}
    assert store.verify_session(sid).ok
    sql("UPDATE events SET format = 1 WHERE session_id = %s AND seq = 2", (sid,))
    with pytest.raises(CorruptedSessionError, match="event 2"):
        store.read_events(sid)  # the format is part of the chained header
    sql("UPDATE events SET format = 2, state_remove = '[\"k\"]' WHERE session_id = %s"
        " AND seq = 2", (sid,))
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "payload hash mismatch" in (report.problem or "")


# -- a schema of version 2, as the version-2 library wrote it ---------------------------------


def _write_v2_schema(make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A schema of version 2, as that library made it, holding the rows it wrote; its event
    rows."""
    from migration_support import v2_rows

    with monkeypatch.context() as patch:
        patch.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:3])
        patch.setattr(postgres_module, "SCHEMA_VERSION", 2)
        make().close()
    rows = v2_rows()
    jsonb = {"snapshot", "data", "state_delta", "state_ops", "state"}
    for table in ("sessions", "events", "scoped_state"):
        names = rows["columns"][table]
        marks = ", ".join("%s::jsonb" if n in jsonb else "%s" for n in names)
        for row in rows[table]:
            values = tuple(
                postgres_module._pg_json(v) if n in jsonb else v
                for n, v in zip(names, row, strict=True)
            )
            sql(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values)
    return list(rows["events"])


def test_a_version_2_schema_opens_and_reads_back_as_it_was(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_support import check_v2_store_upgraded

    _write_v2_schema(make, sql, monkeypatch)
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(2,)]
    store = make()
    assert store.schema_version() == SCHEMA_VERSION
    check_v2_store_upgraded(store)


# -- the event feed: commit order when transactions commit out of order ---------------------


def test_the_feed_follows_commit_order_when_transactions_commit_out_of_order(
    make: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A inserts its event first and commits last; writer B (another session)
    inserts and commits in between. A reader following the feed meanwhile must see A's
    event before B's, never B's alone and then A's at a lower position (which a reader
    past B's position would skip)."""
    store = make()
    a = store.create_session(app_name="demo", user_id="ada")
    b = store.create_session(app_name="demo", user_id="bob")
    start = store.feed_position()
    inserted, release = threading.Event(), threading.Event()
    commit = postgres_module._PgTransaction.commit

    def slow_commit(tx: Any) -> None:
        if threading.current_thread().name == "writer-a":
            tx._send([])  # the event's INSERT (with its position) runs; no COMMIT yet
            inserted.set()
            assert release.wait(30)
        commit(tx)

    monkeypatch.setattr(postgres_module._PgTransaction, "commit", slow_commit)
    errors: list[BaseException] = []

    def write(session_id: str) -> None:
        try:
            store.append(session_id, [msg(threading.current_thread().name)])
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    writer_a = threading.Thread(target=write, args=(a.id,), name="writer-a")
    writer_b = threading.Thread(target=write, args=(b.id,), name="writer-b")
    writer_a.start()
    assert inserted.wait(30)
    writer_b.start()
    writer_b.join(1.0)  # B's commit waits for A's: positions are handed out in commit order
    assert store.read_feed(start) == []  # nothing committed yet; nothing half-visible
    release.set()
    writer_a.join(30)
    writer_b.join(30)
    assert not errors, errors
    feed = store.read_feed(start)
    assert [f.event.data["text"] for f in feed] == ["writer-a", "writer-b"]
    assert feed[0].position < feed[1].position


def test_a_version_2_schema_gets_feed_positions_in_write_order(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_support import check_v2_feed

    events = _write_v2_schema(make, sql, monkeypatch)
    check_v2_feed(make(), [(r[5], r[2]) for r in events])  # (timestamp, id)


def test_keyed_and_ordered_reads_can_use_their_indexes(make: StoreFactory, sql: Any) -> None:
    """Schema version 3's indexes serve what they are for (EXPLAIN, sequential scans
    off so that a small table does not hide the plan): a key, a key prefix (a range of
    the "C"-collated key index), a time window, and sessions by creation."""
    store = make()
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg(str(i), key=f"ckpt:{i:04d}") for i in range(300)])
    sql("ANALYZE events")
    sql("ANALYZE sessions")
    sql("SET enable_seqscan = off")

    def plan(query: str, params: tuple[Any, ...] = ()) -> str:
        return " | ".join(row[0] for row in sql("EXPLAIN " + query, params))

    sid = session.id
    assert "events_by_key" in plan(
        "SELECT * FROM events WHERE session_id = %s AND key = ANY(%s)", (sid, ["ckpt:0001"])
    )
    assert "events_by_key" in plan(
        "SELECT * FROM events WHERE session_id = %s AND key >= %s AND key < %s",
        (sid, "ckpt:000", "ckpt:001"),
    )
    assert "events_by_timestamp" in plan(
        "SELECT * FROM events WHERE session_id = %s AND timestamp > now() - interval '1 day'"
        " AND timestamp < now() - interval '1 hour'",
        (sid,),
    )
    assert "sessions_by_created" in plan(
        "SELECT * FROM sessions ORDER BY created_at DESC, id DESC LIMIT 5"
    )
    assert sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'events_by_key'"
        " AND schemaname = current_schema()"
    )[0][0].endswith("WHERE (key IS NOT NULL)")


# -- a schema of version 3: state inside a JSONB snapshot -----------------------------------


def _write_v3_schema(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch, damage: str | None = None
) -> None:
    """A schema of version 3, as that library made it, holding the rows the version-3
    library wrote (with the snapshot of session `damage`, if any, replaced by a JSON value
    that is no session)."""
    from migration_support import v3_rows

    with monkeypatch.context() as patch:
        patch.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:4])
        patch.setattr(postgres_module, "SCHEMA_VERSION", 3)
        make().close()
    rows = v3_rows()
    jsonb = {"snapshot", "data", "state_delta", "state_ops", "state_remove", "state"}
    for table in ("sessions", "events", "scoped_state"):
        names = rows["columns"][table]
        marks = ", ".join("%s::jsonb" if n in jsonb else "%s" for n in names)
        for row in rows[table]:
            values = tuple(
                postgres_module._pg_json(v) if n in jsonb else bool(v) if n == "erased" else v
                for n, v in zip(names, row, strict=True)
            )
            sql(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values)
    (last,) = rows["feed_counter"][0]
    sql("SELECT setval('feed_position', %s)", (last,))
    if damage is not None:
        sql("UPDATE sessions SET snapshot = '[\"no session\"]' WHERE id = %s", (damage,))
    assert sql("SELECT max(version) FROM agentledger_schema_version") == [(3,)]


def test_a_version_3_schema_keeps_each_state_key_apart_and_reads_back_as_it_was(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from migration_support import check_v3_store_upgraded, v3_rows

    _write_v3_schema(make, sql, monkeypatch)
    store = make()
    assert store.schema_version() == SCHEMA_VERSION
    # The upgrade moved every own state key out of the snapshots, into a row each, and
    # the snapshot is text now.
    for sid, snapshot in sql("SELECT id, snapshot FROM sessions"):
        assert "state" not in json.loads(snapshot), sid
    stored = dict(sql("SELECT key, value FROM session_state WHERE session_id = 's-state'"))
    own = {k: v for k, v in v3_rows()["sessions_read"]["s-state"]["state"].items() if ":" not in k}
    assert {k: json.loads(v) for k, v in stored.items()} == own
    check_v3_store_upgraded(store)


def test_a_version_3_schema_with_an_unreadable_snapshot_is_upgraded_and_rebuilt(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_support import v3_rows

    _write_v3_schema(make, sql, monkeypatch, damage="s-fork")
    store = make()
    assert sql("SELECT snapshot FROM sessions WHERE id = 's-fork'") == [('["no session"]',)]
    assert store.get_session("s-fork").model_dump(mode="json") == v3_rows()["sessions_read"]["s-fork"]
    assert sql("SELECT count(*) FROM session_state WHERE session_id = 's-fork'") == [(0,)]
    store.append("s-fork", [NewEvent(type="state_updated", state_delta={"fork": 2})])
    assert store.get_session("s-fork").state["fork"] == 2
    assert store.verify_session("s-fork").ok
    assert sql("SELECT value FROM session_state WHERE session_id = 's-fork' AND key = 'fork'") == [
        ("2",)
    ]


def test_a_version_3_schema_with_odd_strings_in_its_state_is_upgraded(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strings JSONB held escaped (NUL, U+E000) and floats written out in full come out of
    the migration as the values they were, in state keys and values and in the rest of the
    snapshot."""
    import json

    from migration_support import v3_rows

    _write_v3_schema(make, sql, monkeypatch)
    odd = {s: [s, ODD_NUMBERS] for s in ODD_STRINGS}
    snapshots = {row[0]: row[9] for row in v3_rows()["sessions"]}  # id, snapshot
    snapshot = json.loads(snapshots["s-empty"])
    snapshot["state"] = odd
    snapshot["title"] = "".join(ODD_STRINGS)
    text = json.dumps(snapshot, ensure_ascii=False)  # as pydantic writes it: no \u escapes
    sql(
        "UPDATE sessions SET snapshot = %s::jsonb WHERE id = 's-empty'",
        (postgres_module._pg_json(text),),
    )
    store = make()
    got = store.get_session("s-empty")
    assert got.state == {**odd, "app:motd": "hi"} and got.title == "".join(ODD_STRINGS)
    assert [type(n) for n in got.state["\x00"][1]] == [type(n) for n in ODD_NUMBERS]
    keys = sql("SELECT key FROM session_state WHERE session_id = 's-empty'")
    assert sorted(k for (k,) in keys) == sorted(postgres_module._pg_text(k) for k in odd)
    store.append("s-empty", [NewEvent(type="state_updated", state_remove=["\x00"])])
    after = store.get_session("s-empty")
    assert after.state == {**{k: v for k, v in odd.items() if k != "\x00"}, "app:motd": "hi"}
    assert make().get_session("s-empty") == after


def test_an_append_writes_only_the_state_keys_it_touches(make: StoreFactory, sql: Any) -> None:
    """The cost of an append does not depend on the size of the state: the session's row
    keeps no state, and only the keys an event sets or removes are written."""
    store = make()
    big = {f"k{i}": "v" * 1000 for i in range(100)}
    sid = store.create_session(app_name="a", user_id="u", state=big).id
    ((snapshot,),) = sql("SELECT snapshot FROM sessions WHERE id = %s", (sid,))
    assert len(snapshot) < 2000 and "vvvv" not in snapshot
    sql("CREATE TABLE state_writes (key text)")
    sql(
        "CREATE FUNCTION count_state_write() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        " INSERT INTO state_writes VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.key"
        " ELSE NEW.key END); RETURN NULL; END $$"
    )
    sql(
        "CREATE TRIGGER count_state_writes AFTER INSERT OR UPDATE OR DELETE ON session_state"
        " FOR EACH ROW EXECUTE FUNCTION count_state_write()"
    )
    store.append(sid, [msg("no state change")])
    store.append(sid, [NewEvent(type="state_updated", state_delta={"k5": 1, "new": 2})])
    store.append(sid, [NewEvent(type="state_updated", state_remove=["k7"])])
    written = sorted(k for (k,) in sql("SELECT key FROM state_writes"))
    assert written == ["k5", "k7", "new"]
    expected = {**big, "k5": 1, "new": 2}
    del expected["k7"]
    assert store.get_session(sid).state == expected
    assert store.verify_session(sid).ok
    store.delete_session(sid)
    assert sql("SELECT count(*) FROM session_state") == [(0,)]


def test_an_append_skips_parsing_the_snapshot_it_wrote_last(
    make: StoreFactory, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot is kept as the text written, so the store's cache of the snapshot it
    wrote last is used; a snapshot changed behind its back is parsed again."""
    from agentledger.core.session import Session

    store = make()
    sid = store.create_session(app_name="a", user_id="u", state={"k": 1}).id
    store.append(sid, [msg("one")])
    parsed: list[str] = []
    validate = Session.model_validate_json

    def counting(text: Any, *args: Any, **kwargs: Any) -> Session:
        parsed.append(text)
        return validate(text, *args, **kwargs)

    monkeypatch.setattr(Session, "model_validate_json", counting)
    store.append(sid, [msg("two")])
    store.append(sid, [NewEvent(type="state_updated", state_delta={"k": 2})])
    assert parsed == []
    ((snapshot,),) = sql("SELECT snapshot FROM sessions WHERE id = %s", (sid,))
    sql("UPDATE sessions SET snapshot = %s WHERE id = %s", (snapshot.replace(",", ", "), sid))
    store.append(sid, [msg("three")])
    assert len(parsed) == 1
    assert store.get_session(sid).state == {"k": 2} and store.get_session(sid).version == 5


def test_an_append_updates_the_session_row_in_place(make: StoreFactory, sql: Any) -> None:
    """No index on the session row covers a column an append changes, so PostgreSQL can
    update it without new index entries (a HOT update); listings still come back in order,
    by last activity through session_activity."""
    store = make()
    sids = [store.create_session(app_name="a", user_id=f"u{i % 2}").id for i in range(4)]
    for sid in reversed(sids):
        store.append(sid, [msg("x")])
    indexed = {
        column
        for (column,) in sql(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'sessions'::regclass"
        )
    }
    assert indexed == {"id", "app_name", "user_id", "status", "created_at"}
    assert [s.id for s in store.list_sessions().sessions] == sids
    assert [s.id for s in store.list_sessions(order="updated_asc").sessions] == sids[::-1]
    assert [s.id for s in store.list_sessions(app_name="a", user_id="u1").sessions] == [
        sids[1], sids[3]
    ]
    first = store.list_sessions(limit=2)
    rest = store.list_sessions(limit=2, cursor=first.next_cursor)
    assert [s.id for s in first.sessions + rest.sessions] == sids
    later = store.list_sessions(updated_after=store.get_session(sids[2]).updated_at)
    assert [s.id for s in later.sessions] == sids[:2]
    # Last activity is ordered by the narrow session_activity table's index.
    sql("ANALYZE")
    sql("SET enable_seqscan = off")
    plan = " | ".join(
        row[0] for row in sql("EXPLAIN " + store._sql.session_by_activity
                              + " ORDER BY act.updated_at DESC, act.id DESC LIMIT 5")
    )
    assert "session_activity_by_updated" in plan
    store.delete_session(sids[0])
    assert sql("SELECT count(*) FROM session_activity WHERE id = %s", (sids[0],)) == [(0,)]
    assert [s.id for s in store.list_sessions().sessions] == sids[1:]
