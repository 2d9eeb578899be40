"""Conformance: bad input gets a typed error and leaves the store as it was."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from agentledger.core.events import NewEvent
from agentledger.errors import (
    ConfigurationError,
    EventTooLargeError,
    InvalidEventError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["BadInputConformance"]

SMALL_LIMIT = 1024


class _Opaque:
    pass


def _not_json() -> list[tuple[str, Any]]:
    """Values JSON cannot hold, each with a readable name for the test id."""
    return [
        ("set", {1, 2}),
        ("object", _Opaque()),
        ("nan", float("nan")),
        ("inf", float("inf")),
        ("bytes", b"raw"),
        ("nested-set", {"deep": [1, {"x": frozenset({1})}]}),
        ("lone-surrogate", "\ud800"),
    ]


NOT_JSON = _not_json()
NOT_JSON_IDS = [name for name, _ in NOT_JSON]


class BadInputConformance(ConformanceBase):
    """Values JSON cannot hold, oversized events, bad event types."""

    def _session_with_history(self, store: SessionStore) -> str:
        app = self.unique("app")
        session = store.create_session(
            app_name=app, user_id="ada", state={"k": 1, "app:a": 1, "user:u": 1}
        )
        store.append(session.id, [msg("before")])
        return session.id

    def _assert_shared_state_unchanged(self, store: SessionStore, session_id: str) -> None:
        app = store.get_session(session_id).app_name
        fresh = store.create_session(app_name=app, user_id="ada")
        assert fresh.state == {"app:a": 1, "user:u": 1}

    @pytest.mark.parametrize(("name", "value"), NOT_JSON, ids=NOT_JSON_IDS)
    @pytest.mark.parametrize("where", ["data", "state_delta"])
    def test_value_json_cannot_hold(
        self, store: SessionStore, where: str, name: str, value: Any
    ) -> None:
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        good = msg("good", state_delta={"k": 2, "app:a": 2, "user:u": 2})
        bad = NewEvent(type="tool_result", **{where: {"value": value}})
        with pytest.raises(InvalidEventError):
            store.append(sid, [good, bad])
        with pytest.raises(InvalidEventError):
            store.append(sid, [bad], expected_version=before[0].version)
        assert self.record(store, sid) == before
        self._assert_shared_state_unchanged(store, sid)

    @pytest.mark.parametrize(("name", "value"), NOT_JSON, ids=NOT_JSON_IDS)
    def test_create_session_with_value_json_cannot_hold(
        self, store: SessionStore, name: str, value: Any
    ) -> None:
        app = self.unique("app")
        calls: list[dict[str, Any]] = [
            {"state": {"x": value}},
            {"state": {"app:x": value}},
            {"state": {"ok": 1, "user:x": value}},
            {"metadata": {"x": value}},
            {"title": value},
        ]
        for kwargs in calls:
            with pytest.raises(InvalidEventError):
                store.create_session(app_name=app, user_id="ada", session_id="bad", **kwargs)
        assert store.list_sessions(app_name=app).sessions == []
        assert store.create_session(app_name=app, user_id="ada", session_id="bad").state == {}

    def test_other_bad_values_in_an_event(self, store: SessionStore) -> None:
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        for bad in (
            msg(author="\ud800"),
            msg(invocation_id="\udfff"),
            NewEvent(type="plugin.\ud800"),
            msg(data={"\ud800": 1}),
        ):
            with pytest.raises(InvalidEventError):
                store.append(sid, [msg("first"), bad])
        assert self.record(store, sid) == before

    def test_event_too_large(self, make_store: StoreFactory) -> None:
        store = make_store(max_event_bytes=SMALL_LIMIT)
        assert store.max_event_bytes == SMALL_LIMIT
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        small = msg("x" * 100, state_delta={"k": 2, "app:a": 2})
        for big in (
            msg("x" * 2000),
            msg(state_delta={"k": "y" * 2000}),
            msg(data={"text": "é" * 600}),  # 1,200 bytes of UTF-8 in 600 characters
        ):
            with pytest.raises(EventTooLargeError) as info:
                store.append(sid, [small, small, big])
            assert info.value.limit == SMALL_LIMIT
            assert info.value.size > SMALL_LIMIT
            assert isinstance(info.value, InvalidEventError)
        assert self.record(store, sid) == before
        self._assert_shared_state_unchanged(store, sid)
        (stored,) = store.append(sid, [small])  # an event under the limit still goes in
        assert stored.seq == before[0].version + 1

    def test_temp_keys_do_not_count_toward_the_size_limit(self, make_store: StoreFactory) -> None:
        store = make_store(max_event_bytes=SMALL_LIMIT)
        sid = store.create_session(app_name="demo", user_id="ada").id
        (stored,) = store.append(sid, [msg(state_delta={"temp:big": "z" * 5000, "k": 1})])
        assert stored.state_delta == {"k": 1}

    def test_create_session_too_large(self, make_store: StoreFactory) -> None:
        store = make_store(max_event_bytes=SMALL_LIMIT)
        app = self.unique("app")
        big = "x" * 2000
        calls: list[dict[str, Any]] = [{"state": {"k": big}}, {"metadata": {"k": big}}]
        for kwargs in calls:
            with pytest.raises(EventTooLargeError):
                store.create_session(app_name=app, user_id="ada", session_id="big", **kwargs)
        assert store.list_sessions(app_name=app).sessions == []

    def test_unknown_event_type_is_refused_by_the_model(self) -> None:
        for bad_type in ("not_a_type", "", "plugin.", ".name", "User_Message"):
            with pytest.raises(InvalidEventError, match="unknown event type") as info:
                NewEvent(type=bad_type)
            assert isinstance(info.value, ValueError)
            assert isinstance(info.value.__cause__, ValidationError)

    def test_naive_timestamp_is_refused_by_the_model(self) -> None:
        with pytest.raises(InvalidEventError, match="timezone-aware"):
            NewEvent(type="user_message", timestamp=datetime(2025, 1, 1))

    @pytest.mark.parametrize(
        ("kind", "data"),
        [
            ("phase_changed", {}),
            ("phase_changed", {"to": 5}),
            ("phase_changed", {"to": None}),
            ("status_changed", {}),
            ("status_changed", {"to": 5}),
            ("status_changed", {"to": ["active"]}),
            ("metadata_updated", {"metadata": "not an object"}),
            ("metadata_updated", {"metadata": [1, 2]}),
            ("session_finalized", {"outcome": {"not": "text"}}),
            ("session_finalized", {"summary": 5}),
        ],
    )
    def test_malformed_standard_event_writes_nothing(
        self, store: SessionStore, kind: str, data: dict[str, Any]
    ) -> None:
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        bad = NewEvent(type=kind, data=data)
        for batch in ([bad], [msg("first", state_delta={"app:a": 2, "k": 2}), bad]):
            with pytest.raises(InvalidEventError):
                store.append(sid, batch)
        assert self.record(store, sid) == before
        self._assert_shared_state_unchanged(store, sid)

    def test_session_created_cannot_be_appended(self, store: SessionStore) -> None:
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        created = NewEvent(type="session_created", data={"app_name": "x", "user_id": "y"})
        for batch in ([created], [msg(), created]):
            with pytest.raises(InvalidEventError):
                store.append(sid, batch)
        assert self.record(store, sid) == before

    def test_append_takes_new_events_only(self, store: SessionStore) -> None:
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        stored = store.read_events(sid)[-1]
        for bad in ({"type": "user_message"}, "user_message", stored):
            with pytest.raises(InvalidEventError):
                store.append(sid, [msg(), bad])  # type: ignore[list-item]
        assert self.record(store, sid) == before

    @pytest.mark.parametrize(
        "kwargs",
        [{"app_name": ""}, {"user_id": ""}, {"app_name": None}, {"user_id": 5}],
        ids=["empty-app", "empty-user", "no-app", "int-user"],
    )
    def test_create_session_needs_app_and_user(
        self, store: SessionStore, kwargs: dict[str, Any]
    ) -> None:
        values: dict[str, Any] = {"app_name": "demo", "user_id": "ada"}
        values.update(kwargs)
        with pytest.raises(InvalidEventError):
            store.create_session(**values)
        assert store.list_sessions().sessions == []

    def test_events_keep_their_timestamps_at_the_edges(self, make_store: StoreFactory) -> None:
        # A store clock at the earliest time, then later ones up to the latest.
        self.require_injectable_clock(make_store)
        stamps = [
            datetime(1, 1, 1, tzinfo=timezone.utc),
            datetime(5, 6, 7, 8, 9, 10, 11, tzinfo=timezone.utc),
            datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        ]
        now = [stamps[0]]
        store = make_store(clock=lambda: now[0])
        sid = store.create_session(app_name="demo", user_id="ada").id
        stored = []
        for stamp in stamps:
            now[0] = stamp
            stored += store.append(sid, [msg()])
        assert [e.timestamp for e in stored] == stamps
        assert [e.timestamp for e in store.read_events(sid)[1:]] == stamps
        assert store.get_session(sid).updated_at == stamps[-1]
        # A caller's time at the edges is kept exactly, in data.
        (first, last) = store.append(sid, [msg(timestamp=stamps[0]), msg(timestamp=stamps[-1])])
        assert first.data["timestamp"] == "0001-01-01T00:00:00.000000Z"
        assert last.data["timestamp"] == "9999-12-31T23:59:59.999999Z"
        assert first.timestamp == last.timestamp == stamps[-1]

    # -- nesting, numbers and types no store can take ---------------------------------------

    @pytest.mark.parametrize("where", ["data", "state_delta", "state_ops", "metadata", "state"])
    @pytest.mark.parametrize("levels", [101, 3000])
    def test_values_nested_too_deep_are_refused(
        self, store: SessionStore, where: str, levels: int
    ) -> None:
        """Past 100 levels of objects and arrays a value is refused before anything is
        written (deeper values could not be read back: Python's recursion limit)."""
        sid = self._session_with_history(store)
        before = self.record(store, sid)
        deep = _nested(levels - 1)  # inside the event's data/state_delta object: one more
        with pytest.raises(InvalidEventError, match="100 levels"):
            if where == "metadata":
                store.create_session(app_name="demo", user_id="ada", metadata=deep)
            elif where == "state":
                store.create_session(app_name="demo", user_id="ada", state={"k": deep})
            elif where == "state_ops":
                store.append(sid, [msg(state_ops=[{"op": "add", "path": "/k", "value": deep}])])
            elif where == "data":
                store.append(sid, [msg(data={"k": deep})])
            else:
                store.append(sid, [msg(state_delta={"k": deep})])
        assert self.record(store, sid) == before
        self._assert_shared_state_unchanged(store, sid)
        assert store.list_sessions(limit=1000).corrupted == []

    def test_values_nested_up_to_the_limit_are_kept(self, store: SessionStore) -> None:
        deep = _nested(99)  # 100 levels with the event's data object around it
        session = store.create_session(app_name="demo", user_id="ada", metadata=deep)
        stored = store.append(session.id, [msg(data={"k": deep}, state_delta={"k": deep})])
        assert store.read_events(session.id)[1:] == stored
        assert store.get_session(session.id).state == {"k": deep}
        assert store.get_session(session.id).metadata == deep

    def test_state_operations_cannot_build_state_too_deep(self, store: SessionStore) -> None:
        sid = self._session_with_history(store)
        store.append(sid, [msg(state_delta={"user:d": _nested(99)})])
        before = self.record(store, sid)
        path = "/user:d" + "/a" * 99
        with pytest.raises(InvalidEventError, match="100 levels"):
            store.append(sid, [msg(state_ops=[{"op": "add", "path": path, "value": _nested(5)}])])
        assert self.record(store, sid) == before

    @pytest.mark.parametrize(
        "kwargs",
        [{"state": [1, 2]}, {"metadata": "x"}, {"state": "x"}, {"metadata": [("a", 1)]}],
        ids=["state-list", "metadata-string", "state-string", "metadata-pairs"],
    )
    def test_state_and_metadata_must_be_objects(
        self, store: SessionStore, kwargs: dict[str, Any]
    ) -> None:
        with pytest.raises(InvalidEventError, match="JSON object"):
            store.create_session(app_name="demo", user_id="ada", **kwargs)
        assert store.list_sessions().sessions == []

    def test_read_events_after_a_huge_seq_is_empty(self, store: SessionStore) -> None:
        sid = self._session_with_history(store)
        for huge in (2**63, 2**70, 10**23):
            assert store.read_events(sid, after=huge) == []
            assert store.read_events(sid, after=huge, limit=huge) == []
            assert len(store.read_events(sid, limit=huge)) == 2
            assert len(store.read_events(sid, last=huge)) == 2
        with pytest.raises(SessionNotFoundError):
            store.read_events("missing", after=2**70)

    @pytest.mark.parametrize(
        ("field", "value"), [("status", "weird"), ("status", "ACTIVE"), ("phase", "weird")]
    )
    def test_list_sessions_refuses_an_unknown_status_or_phase(
        self, store: SessionStore, field: str, value: str
    ) -> None:
        """A filter no session can match is a mistake, not an empty page."""
        self._session_with_history(store)
        filters: dict[str, Any] = {field: value}
        with pytest.raises(ConfigurationError, match=field):
            store.list_sessions(**filters)

    @pytest.mark.parametrize("after", ["x", 1.5, None, True, [1]])
    def test_read_events_after_must_be_an_int(self, store: SessionStore, after: Any) -> None:
        sid = self._session_with_history(store)
        with pytest.raises(ConfigurationError, match="after"):
            store.read_events(sid, after=after)

    @pytest.mark.parametrize(
        "when",
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-10))),
        ],
        ids=["year-1-plus-14h", "year-9999-minus-10h"],
    )
    def test_timestamps_out_of_range_in_utc(
        self, make_store: StoreFactory, when: datetime
    ) -> None:
        with pytest.raises(ValueError, match="out of range"):
            NewEvent(type="user_message", timestamp=when)
        # A store clock that gives such a time: a typed error, nothing written.
        self.require_injectable_clock(make_store)
        store = make_store(clock=lambda: when)
        with pytest.raises(InvalidEventError, match="out of range"):
            store.create_session(app_name="demo", user_id="ada")
        assert store.list_sessions().sessions == []


def _nested(levels: int) -> Any:
    """A value with `levels` levels of objects (`_nested(2)` is `{"a": {"a": 1}}`)."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value
