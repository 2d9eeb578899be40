"""Conformance: creating, deleting and reopening sessions."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from agentledger.core.events import EventType, NewEvent
from agentledger.errors import (
    ConcurrencyError,
    InvalidSessionIdError,
    SessionExistsError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["SessionConformance"]

UNSAFE_SESSION_IDS = [
    "",
    "\x00",
    "a\x00b",
    "line\nbreak",
    "tab\t",
    "\x1b[2J",
    "del\x7f",
    "lone\ud800",
    "x" * 513,
]
"""Session ids every store refuses: empty, over 512 characters, control characters, lone
surrogates (any other string is a session id: see `_ids.py`)."""


class SessionConformance(ConformanceBase):
    """`create_session`, `delete_session`, and data surviving a reopen."""

    def test_create_session_fields(self, store: SessionStore) -> None:
        before = datetime.now(timezone.utc) - timedelta(seconds=5)
        session = store.create_session(
            app_name="demo",
            user_id="ada",
            agent_name="helper",
            title="A title",
            purpose="testing",
            state={"topic": "ledgers", "count": 3},
            metadata={"source": "cli", "tags": ["a", "b"]},
            phase="investigating",
        )
        assert len(session.id) == 26  # a ULID
        assert (session.app_name, session.user_id) == ("demo", "ada")
        assert session.agent_name == "helper"
        assert (session.title, session.purpose) == ("A title", "testing")
        assert session.state == {"topic": "ledgers", "count": 3}
        assert session.metadata == {"source": "cli", "tags": ["a", "b"]}
        assert session.phase == "investigating"
        assert session.status == "active"
        assert session.version == 1
        assert session.error_count == 0 and session.last_error is None
        assert session.resume_ready is True
        assert session.phase_history == []
        assert session.outcome is None and session.finalized_at is None
        assert session.created_at == session.updated_at
        assert session.created_at.utcoffset() == timedelta(0)
        assert before <= session.created_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
        assert store.get_session(session.id) == session

    def test_create_session_defaults(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        assert session.phase == "initializing"
        assert session.status == "active"
        assert session.state == {} and session.metadata == {}
        assert session.agent_name is None and session.title is None and session.purpose is None

    def test_new_session_ids_are_unique_and_sortable(self, store: SessionStore) -> None:
        ids = [store.create_session(app_name="demo", user_id="ada").id for _ in range(20)]
        assert len(set(ids)) == 20
        assert ids == sorted(ids)

    def test_first_event_is_session_created(self, store: SessionStore) -> None:
        session = store.create_session(
            app_name="demo", user_id="ada", agent_name="helper", state={"k": 1}, metadata={"m": 2}
        )
        events = store.read_events(session.id)
        assert len(events) == 1
        (created,) = events
        assert created.type == EventType.SESSION_CREATED
        assert created.seq == 1
        assert created.session_id == session.id
        assert created.author == "system"
        assert created.data["app_name"] == "demo"
        assert created.data["user_id"] == "ada"
        assert created.data["agent_name"] == "helper"
        assert created.data["metadata"] == {"m": 2}
        assert created.state_delta == {"k": 1}
        assert created.timestamp == session.created_at

    def test_caller_given_session_id(self, store: SessionStore) -> None:
        for sid in ["my-session", "a", "A.b_c:d@e-1", "9" * 128]:
            session = store.create_session(app_name="demo", user_id="ada", session_id=sid)
            assert session.id == sid
            assert store.get_session(sid).id == sid
            assert store.read_events(sid)[0].session_id == sid

    def test_duplicate_session_id_changes_nothing(self, store: SessionStore) -> None:
        app = self.unique("app")
        first = store.create_session(
            app_name=app, user_id="ada", session_id="taken", state={"k": 1, "app:shared": "old"}
        )
        store.append("taken", [msg("one")])
        before = self.record(store, "taken")
        with pytest.raises(SessionExistsError) as info:
            store.create_session(
                app_name=app,
                user_id="bob",
                session_id="taken",
                state={"k": 2, "app:shared": "new"},
                metadata={"x": 1},
            )
        assert info.value.session_id == "taken"
        assert self.record(store, "taken") == before
        assert before[0].app_name == first.app_name and before[0].user_id == "ada"
        assert store.get_session("taken").state["app:shared"] == "old"
        assert len(store.list_sessions(app_name=app).sessions) == 1

    def test_concurrent_creates_of_one_id(self, store: SessionStore) -> None:
        """Six threads create the same id at once: one wins, the others get
        `SessionExistsError`, and the session has exactly one `session_created`."""
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def create(i: int) -> None:
            barrier.wait(timeout=30)
            try:
                store.create_session(app_name="demo", user_id=f"u{i}", session_id="same-id")
                outcomes.append("created")
            except SessionExistsError:
                outcomes.append("exists")
            except BaseException as exc:  # reported below
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["created"] + ["exists"] * 5
        assert [e.type for e in store.read_events("same-id")] == ["session_created"]

    @pytest.mark.parametrize("bad_id", UNSAFE_SESSION_IDS)
    def test_unsafe_session_id_is_refused(self, store: SessionStore, bad_id: str) -> None:
        with pytest.raises(InvalidSessionIdError):
            store.create_session(app_name="demo", user_id="ada", session_id=bad_id)
        assert store.list_sessions().sessions == []
        for call in (
            lambda: store.get_session(bad_id),
            lambda: store.read_events(bad_id),
            lambda: store.append(bad_id, [msg()]),
            lambda: store.delete_session(bad_id),
        ):
            with pytest.raises(InvalidSessionIdError):
                call()

    def test_invalid_session_id_error_is_a_value_error(self, store: SessionStore) -> None:
        with pytest.raises(ValueError):
            store.create_session(app_name="demo", user_id="ada", session_id="nul\x00")

    def test_delete_session(self, store: SessionStore) -> None:
        keep = store.create_session(app_name="demo", user_id="ada")
        gone = store.create_session(app_name="demo", user_id="ada")
        store.append(gone.id, [msg("a"), msg("b")])
        store.append(keep.id, [msg("c")])
        kept_before = self.record(store, keep.id)
        store.delete_session(gone.id)
        with pytest.raises(SessionNotFoundError):
            store.get_session(gone.id)
        with pytest.raises(SessionNotFoundError):
            store.read_events(gone.id)
        with pytest.raises(SessionNotFoundError):
            store.append(gone.id, [msg()])
        with pytest.raises(SessionNotFoundError):
            store.delete_session(gone.id)
        assert [s.id for s in store.list_sessions().sessions] == [keep.id]
        assert self.record(store, keep.id) == kept_before

    def test_delete_only_at_the_expected_version(self, store: SessionStore) -> None:
        sid = store.create_session(app_name="demo", user_id="ada").id
        store.append(sid, [msg("after the version was read")])
        before = self.record(store, sid)
        with pytest.raises(ConcurrencyError) as info:
            store.delete_session(sid, expected_version=1)
        assert (info.value.expected_version, info.value.actual_version) == (1, 2)
        assert self.record(store, sid) == before  # nothing deleted
        store.delete_session(sid, expected_version=2)
        with pytest.raises(SessionNotFoundError):
            store.get_session(sid)
        with pytest.raises(SessionNotFoundError):
            store.delete_session(sid, expected_version=2)

    def test_closed_store_refuses_work(self, make_store: StoreFactory) -> None:
        """After `close()` every call raises `StoreUnavailableError`; closing twice is fine."""
        store = make_store()
        sid = store.create_session(app_name="demo", user_id="ada").id
        store.close()
        store.close()
        for call in (
            lambda: store.get_session(sid),
            lambda: store.append(sid, [msg()]),
            lambda: store.read_events(sid),
            lambda: store.list_sessions(),
            lambda: store.create_session(app_name="demo", user_id="ada"),
            lambda: store.delete_session(sid),
        ):
            with pytest.raises(StoreUnavailableError):
                call()

    def test_delete_unknown_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError) as info:
            store.delete_session("no-such-session")
        assert info.value.session_id == "no-such-session"
        assert isinstance(info.value, KeyError)

    def test_deleted_id_can_be_reused_with_a_fresh_ledger(self, store: SessionStore) -> None:
        store.create_session(app_name="demo", user_id="ada", session_id="again", state={"old": 1})
        store.append("again", [msg("old")])
        store.delete_session("again")
        session = store.create_session(app_name="demo", user_id="bob", session_id="again")
        assert session.version == 1 and session.user_id == "bob" and session.state == {}
        assert self.seqs(store.read_events("again")) == [1]
        store.append("again", [msg("new")])
        assert [e.data.get("text") for e in store.read_events("again")] == [None, "new"]

    def test_delete_keeps_shared_state(self, store: SessionStore) -> None:
        app = self.unique("app")
        gone = store.create_session(
            app_name=app, user_id="ada", state={"app:a": 1, "user:u": 2, "own": 3}
        )
        store.delete_session(gone.id)
        other = store.create_session(app_name=app, user_id="ada")
        assert other.state == {"app:a": 1, "user:u": 2}

    # -- persistence --------------------------------------------------------------------

    def test_data_survives_close_and_reopen(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        app = self.unique("app")
        first = store.create_session(
            app_name=app, user_id="ada", agent_name="helper", state={"k": 1, "app:a": "x"}
        )
        second = store.create_session(app_name=app, user_id="bob", session_id="second")
        store.append(first.id, [msg("a"), NewEvent(type="phase_changed", data={"to": "planning"})])
        store.append(second.id, [msg("b", state_delta={"user:u": 5})])
        records = {sid: self.record(store, sid) for sid in (first.id, second.id)}
        listed = store.list_sessions(app_name=app)
        store.close()

        reopened = make_store()
        assert {sid: self.record(reopened, sid) for sid in records} == records
        assert reopened.list_sessions(app_name=app) == listed
        stored = reopened.append(first.id, [msg("after reopen")])
        assert self.seqs(stored) == [4]
        reopened.close()

        again = make_store()
        assert self.seqs(again.read_events(first.id)) == [1, 2, 3, 4]
        assert again.get_session(first.id).phase == "planning"
