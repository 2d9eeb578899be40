"""PostgreSQL restarting or dropping connections, on a server the tests start themselves
(`pg_cluster_support.ThrowawayCluster`, never a shared one): pooled connections recover
without failing a call, and a write cut off in flight fails once with
`StoreUnavailableError`, writing nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pg_cluster_support import ThrowawayCluster, throwaway_cluster

from agentledger import NewEvent, SessionStore, open_store
from agentledger.errors import StoreUnavailableError

__all__ = ["throwaway_cluster"]  # the fixture, imported for pytest


def _msg(text: str) -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": text})


@pytest.fixture()
def url(throwaway_cluster: ThrowawayCluster) -> str:
    return f"{throwaway_cluster.url}&schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture()
def store(url: str) -> Iterator[SessionStore]:
    # Several pooled connections, all idle and stale after a restart.
    s = open_store(url, pool_min_size=3, pool_max_size=3, pool_timeout=60)
    try:
        yield s
    finally:
        s.close()


def _warm(store: SessionStore) -> str:
    """A session, and every pooled connection used at least once."""
    session = store.create_session(app_name="app", user_id="ada")
    barrier = threading.Barrier(3)

    def read() -> None:
        barrier.wait()
        store.get_session(session.id)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return session.id


def _every_call(store: SessionStore, session_id: str) -> None:
    assert store.get_session(session_id).id == session_id
    store.read_events(session_id)
    store.list_sessions(app_name="app")
    store.append(session_id, [_msg("after")])


def test_every_call_works_after_a_restart(
    store: SessionStore, throwaway_cluster: ThrowawayCluster
) -> None:
    session_id = _warm(store)
    version = store.get_session(session_id).version
    throwaway_cluster.restart()
    for _ in range(3):  # each pooled connection is stale once
        _every_call(store, session_id)
    assert store.get_session(session_id).version == version + 3


def test_reads_work_after_connections_are_dropped(
    store: SessionStore, throwaway_cluster: ThrowawayCluster
) -> None:
    import psycopg

    session_id = _warm(store)
    with psycopg.connect(throwaway_cluster.url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 3
    for _ in range(3):
        _every_call(store, session_id)


def test_a_read_cut_off_in_flight_is_retried(
    store: SessionStore, throwaway_cluster: ThrowawayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that dies after the pool handed it out (between its check and its use):
    a read is retried once on a fresh connection."""
    import psycopg

    session_id = _warm(store)
    pool: Any = store._pool  # type: ignore[attr-defined]
    real_getconn = pool.getconn
    killed: list[int] = []

    def getconn_then_drop(*args: Any, **kwargs: Any) -> Any:
        conn = real_getconn(*args, **kwargs)
        if not killed:  # the first connection handed out dies before it is used
            killed.append(conn.info.backend_pid)
            with psycopg.connect(throwaway_cluster.url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (killed[0],))
        return conn

    monkeypatch.setattr(pool, "getconn", getconn_then_drop)
    assert store.get_session(session_id).id == session_id
    assert killed


def test_a_write_cut_off_in_flight_fails_once_and_writes_nothing(
    store: SessionStore, throwaway_cluster: ThrowawayCluster
) -> None:
    import psycopg

    session_id = _warm(store)
    version = store.get_session(session_id).version
    failure: list[BaseException] = []
    with psycopg.connect(throwaway_cluster.url, autocommit=True) as admin:
        schema = store.schema  # type: ignore[attr-defined]
        with admin.transaction():  # hold the session's row: the append waits on it
            admin.execute(
                f'SELECT 1 FROM "{schema}".sessions WHERE id = %s FOR UPDATE', (session_id,)
            )

            def append() -> None:
                try:
                    store.append(session_id, [_msg("in flight")])
                except BaseException as exc:  # noqa: BLE001 - checked below
                    failure.append(exc)

            writer = threading.Thread(target=append)
            writer.start()
            waiting: Any = None
            for _ in range(600):  # wait (up to a minute) until the append is blocked
                with psycopg.connect(throwaway_cluster.url, autocommit=True) as probe:
                    waiting = probe.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    ).fetchone()
                if waiting is not None:
                    break
                time.sleep(0.1)
            assert waiting is not None, "the append never waited on the row lock"
            with psycopg.connect(throwaway_cluster.url, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
            writer.join(60)
    assert len(failure) == 1 and isinstance(failure[0], StoreUnavailableError), failure
    assert store.get_session(session_id).version == version  # nothing written
    store.append(session_id, [_msg("next")])  # the next write works
    assert store.get_session(session_id).version == version + 1


def test_a_stopped_server_is_unavailable_then_recovers(
    url: str, throwaway_cluster: ThrowawayCluster
) -> None:
    with open_store(url, pool_min_size=1, pool_max_size=4, pool_timeout=3) as store:
        session_id = _warm(store)
        throwaway_cluster.stop()
        try:
            with pytest.raises(StoreUnavailableError):
                store.get_session(session_id)
            with pytest.raises(StoreUnavailableError):
                store.append(session_id, [_msg("while down")])
        finally:
            throwaway_cluster.start()
        _every_call(store, session_id)
        assert [e.data.get("text") for e in store.read_events(session_id, after=1)] == ["after"]
