"""Conformance: reading one session, its events, and listing sessions page by page."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.core.session import Session
from agentledger.errors import ConfigurationError, SessionNotFoundError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._lifecycle import FakeClock

__all__ = ["ReadConformance"]

T0 = datetime(2124, 1, 1, tzinfo=timezone.utc)
"""Where `_touch` sets a `timed` store's clock."""
TYPES = ["user_message", "agent_message", "tool_call", "tool_result", "agent_message"]


def _walk(store: SessionStore, limit: int, **filters: Any) -> list[list[Session]]:
    pages: list[list[Session]] = []
    cursor: str | None = None
    while True:
        page = store.list_sessions(limit=limit, cursor=cursor, **filters)
        pages.append(page.sessions)
        if page.next_cursor is None:
            return pages
        assert len(pages) <= 100, "pagination does not end"
        cursor = page.next_cursor


class ReadConformance(ConformanceBase):
    """`get_session`, `read_events` and `list_sessions`."""

    def _with_events(self, store: SessionStore) -> str:
        """A session with events 2..11 of the types in `TYPES`, twice."""
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(
            session.id,
            [NewEvent(type=t, author="agent", data={"i": i}) for i, t in enumerate(TYPES * 2)],
        )
        return session.id

    def test_get_session_returns_the_projection(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada", state={"a": 1})
        store.append(
            session.id,
            [
                msg(state_delta={"b": 2, "n": None}, state_remove=["a"]),
                NewEvent(type="phase_changed", data={"to": "planning"}),
                NewEvent(type="error", data={"message": "boom"}),
                NewEvent(type="metadata_updated", data={"metadata": {"k": {"x": 1}}}),
            ],
        )
        got = store.get_session(session.id)
        assert got.version == 5
        assert got.state == {"b": 2, "n": None}
        assert got.phase == "planning"
        assert [(t.from_phase, t.to_phase) for t in got.phase_history] == [
            ("initializing", "planning")
        ]
        assert (got.error_count, got.last_error) == (1, "boom")
        assert got.metadata == {"k": {"x": 1}}
        assert got.updated_at == store.read_events(session.id)[-1].timestamp
        assert got.created_at == session.created_at

    def test_get_unknown_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError) as info:
            store.get_session("missing")
        assert info.value.session_id == "missing"

    def test_read_events_after_and_limit(self, store: SessionStore) -> None:
        sid = self._with_events(store)
        everything = store.read_events(sid)
        assert self.seqs(everything) == list(range(1, 12))
        assert store.read_events(sid, after=0) == everything
        assert self.seqs(store.read_events(sid, after=4)) == list(range(5, 12))
        assert store.read_events(sid, after=11) == []
        assert store.read_events(sid, after=50) == []
        assert self.seqs(store.read_events(sid, limit=3)) == [1, 2, 3]
        assert self.seqs(store.read_events(sid, after=4, limit=3)) == [5, 6, 7]
        assert self.seqs(store.read_events(sid, after=9, limit=5)) == [10, 11]
        assert store.read_events(sid, limit=0) == []
        assert store.read_events(sid, after=4, limit=3) == everything[4:7]

    def test_read_events_last(self, store: SessionStore) -> None:
        sid = self._with_events(store)
        everything = store.read_events(sid)
        assert store.read_events(sid, last=3) == everything[-3:]
        assert store.read_events(sid, last=11) == everything
        assert store.read_events(sid, last=50) == everything
        assert store.read_events(sid, last=0) == []
        assert self.seqs(store.read_events(sid, after=8, last=5)) == [9, 10, 11]
        assert self.seqs(store.read_events(sid, last=2, limit=5)) == [10, 11]  # last wins

    def test_read_events_by_type(self, store: SessionStore) -> None:
        sid = self._with_events(store)
        # seq 2..11 hold TYPES twice: agent_message at 3, 6, 8, 11.
        assert self.seqs(store.read_events(sid, types=["agent_message"])) == [3, 6, 8, 11]
        assert self.seqs(store.read_events(sid, types=["tool_call", "user_message"])) == [
            2,
            4,
            7,
            9,
        ]
        assert self.seqs(store.read_events(sid, types=["session_created"])) == [1]
        assert store.read_events(sid, types=["final_output"]) == []
        assert store.read_events(sid, types=["tool_result"]) == [
            e for e in store.read_events(sid) if e.type == "tool_result"
        ]

    def test_read_events_filters_combined(self, store: SessionStore) -> None:
        sid = self._with_events(store)
        kinds = ["agent_message", "tool_result"]  # seq 3, 5, 6, 8, 10, 11
        assert self.seqs(store.read_events(sid, types=kinds)) == [3, 5, 6, 8, 10, 11]
        assert self.seqs(store.read_events(sid, types=kinds, after=5)) == [6, 8, 10, 11]
        assert self.seqs(store.read_events(sid, types=kinds, after=5, limit=2)) == [6, 8]
        assert self.seqs(store.read_events(sid, types=kinds, last=2)) == [10, 11]
        assert self.seqs(store.read_events(sid, types=kinds, after=3, last=4)) == [6, 8, 10, 11]
        assert self.seqs(store.read_events(sid, types=kinds, after=9, limit=10)) == [10, 11]

    def test_read_events_of_unknown_session(self, store: SessionStore) -> None:
        calls: list[dict[str, Any]] = [{}, {"after": 3}, {"types": ["user_message"]}, {"last": 2}]
        for kwargs in calls:
            with pytest.raises(SessionNotFoundError):
                store.read_events("missing", **kwargs)

    def test_read_events_bad_limits(self, store: SessionStore) -> None:
        sid = self._with_events(store)
        bad: list[dict[str, Any]] = [{"limit": -1}, {"last": -2}]
        for kwargs in bad:
            with pytest.raises(ConfigurationError):
                store.read_events(sid, **kwargs)

    # -- list_sessions ------------------------------------------------------------------

    @pytest.fixture
    def timed(self, make_store: StoreFactory) -> SessionStore:
        """A store on a clock that `_touch` sets (skipped unless `injectable_clock`: a
        caller's timestamp never moves a session's last activity)."""
        self.require_injectable_clock(make_store)
        self.touch_clock = FakeClock(T0 - timedelta(days=1))
        return make_store(clock=self.touch_clock)

    def _touch(self, store: SessionStore, session_id: str, minutes: int, **fields: Any) -> None:
        """Append an event at `T0 + minutes` by the store's clock (a `timed` store), which
        becomes the session's `updated_at`."""
        values: dict[str, Any] = {"type": "user_message", "author": "user"}
        values.update(fields)
        self.touch_clock.now = T0 + timedelta(minutes=minutes)
        store.append(session_id, [NewEvent(**values)])

    def test_list_sessions_newest_first(self, timed: SessionStore) -> None:
        store = timed
        ids = [store.create_session(app_name="demo", user_id="ada").id for _ in range(5)]
        for minutes, sid in zip([30, 10, 50, 20, 40], ids, strict=True):
            self._touch(store, sid, minutes)
        listed = store.list_sessions().sessions
        assert [s.id for s in listed] == [ids[2], ids[4], ids[0], ids[3], ids[1]]
        assert listed == [store.get_session(s.id) for s in listed]
        assert store.list_sessions().next_cursor is None

    def test_list_sessions_filters(self, timed: SessionStore) -> None:
        store = timed
        def make(app: str, user: str, agent: str | None, minutes: int, **touch: Any) -> str:
            sid = store.create_session(app_name=app, user_id=user, agent_name=agent).id
            self._touch(store, sid, minutes, **touch)
            return sid

        a = make("app1", "ada", "helper", 1)
        b = make("app1", "ada", None, 2, type="phase_changed", data={"to": "planning"})
        c = make("app1", "bob", "helper", 3, type="status_changed", data={"to": "suspended"})
        d = make("app2", "ada", "coder", 4, type="status_changed", data={"to": "terminated"})
        e = make("app2", "bob", "helper", 5, type="phase_changed", data={"to": "planning"})

        def ids(**filters: Any) -> list[str]:
            return [s.id for s in store.list_sessions(**filters).sessions]

        assert ids() == [e, d, c, b, a]
        assert ids(app_name="app1") == [c, b, a]
        assert ids(app_name="app2") == [e, d]
        assert ids(app_name="nope") == []
        assert ids(user_id="ada") == [d, b, a]
        assert ids(app_name="app1", user_id="ada") == [b, a]
        assert ids(agent_name="helper") == [e, c, a]
        assert ids(agent_name="coder", app_name="app2") == [d]
        assert ids(status="suspended") == [c]
        assert ids(status="terminated") == [d]
        assert ids(status="active") == [e, b, a]
        assert ids(phase="planning") == [e, b]
        assert ids(phase="planning", app_name="app1") == [b]
        assert ids(phase="initializing") == [d, c, a]
        assert ids(updated_after=T0 + timedelta(minutes=2)) == [e, d, c]
        assert ids(updated_before=T0 + timedelta(minutes=2)) == [a]
        assert ids(
            updated_after=T0 + timedelta(minutes=1), updated_before=T0 + timedelta(minutes=5)
        ) == [d, c, b]
        assert ids(updated_after=T0 + timedelta(minutes=1), user_id="bob") == [e, c]
        # A non-UTC bound means the same instant.
        plus_two = timezone(timedelta(hours=2))
        assert ids(updated_after=(T0 + timedelta(minutes=4)).astimezone(plus_two)) == [e]

    @pytest.mark.parametrize("distinct_times", [True, False], ids=["distinct", "same-time"])
    def test_list_sessions_pagination(self, timed: SessionStore, distinct_times: bool) -> None:
        store = timed
        made: list[str] = []
        for i in range(25):
            sid = store.create_session(app_name="paged", user_id="ada").id
            self._touch(store, sid, i if distinct_times else 7)
            made.append(sid)
        store.create_session(app_name="other", user_id="ada")  # filtered out
        pages = _walk(store, 7, app_name="paged")
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        walked = [s.id for page in pages for s in page]
        assert sorted(walked) == sorted(made)  # no duplicates, no omissions
        expected = made[::-1] if distinct_times else sorted(made, reverse=True)
        assert walked == expected  # newest first, then by id descending

    def test_list_sessions_exact_pages(self, timed: SessionStore) -> None:
        store = timed
        for i in range(10):
            self._touch(store, store.create_session(app_name="demo", user_id="ada").id, i)
        assert [len(p) for p in _walk(store, 5)] == [5, 5]
        assert [len(p) for p in _walk(store, 10)] == [10]
        assert [len(p) for p in _walk(store, 1)] == [1] * 10
        assert store.list_sessions(limit=1000).next_cursor is None

    def test_list_sessions_of_empty_store(self, store: SessionStore) -> None:
        page = store.list_sessions()
        assert page.sessions == [] and page.next_cursor is None

    def test_list_sessions_cursor_after_new_activity(self, timed: SessionStore) -> None:
        store = timed
        ids = [store.create_session(app_name="demo", user_id="ada").id for _ in range(6)]
        for i, sid in enumerate(ids):
            self._touch(store, sid, i)
        first = store.list_sessions(limit=3)
        assert [s.id for s in first.sessions] == ids[::-1][:3]
        assert first.next_cursor is not None
        store.create_session(app_name="demo", user_id="ada")  # newer, so before the cursor
        rest = store.list_sessions(limit=3, cursor=first.next_cursor)
        assert [s.id for s in rest.sessions] == ids[::-1][3:]

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor",
            "%%%",
            base64.urlsafe_b64encode(b"5").decode(),
            base64.urlsafe_b64encode(b'["only-one"]').decode(),
            base64.urlsafe_b64encode(b"\xff\xfe").decode(),
            base64.urlsafe_b64encode(b'["yesterday", "x"]').decode(),
            base64.urlsafe_b64encode(b'["2026-01-08T18:05:30", "x"]').decode(),
        ],
    )
    def test_list_sessions_invalid_cursor(self, store: SessionStore, cursor: str) -> None:
        store.create_session(app_name="demo", user_id="ada")
        with pytest.raises(ConfigurationError):
            store.list_sessions(cursor=cursor)

    @pytest.mark.parametrize("limit", [0, -1, 1001, "7", 2.5, None])
    def test_list_sessions_invalid_limit(self, store: SessionStore, limit: Any) -> None:
        with pytest.raises(ConfigurationError):
            store.list_sessions(limit=limit)
