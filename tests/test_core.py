"""The pure core: events, sessions, state scopes and the projection (no store involved)."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import agentledger
import agentledger.errors
from agentledger import CorruptedSessionError, Event, NewEvent, Session
from agentledger._ids import new_id, new_ids
from agentledger.core.chain import GENESIS, event_hash, rechain
from agentledger.core.events import STANDARD_EVENT_TYPES, EventType
from agentledger.core.projection import deep_merge, effective_ranges, project
from agentledger.core.session import validate_session_id
from agentledger.core.state import apply_delta, merge_scoped_state, split_delta, strip_temp
from agentledger.errors import AgentLedgerError, InvalidEventError, InvalidSessionIdError

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def ev(
    seq: int,
    type: str = "user_message",
    data: dict[str, Any] | None = None,
    delta: dict[str, Any] | None = None,
    *,
    minutes: float = 0,
    session_id: str = "s1",
    remove: list[str] | None = None,
    format: int = 2,
) -> Event:
    return Event(
        id=f"id-{seq}",
        session_id=session_id,
        seq=seq,
        type=type,
        author="system",
        timestamp=T0 + timedelta(minutes=minutes if minutes else seq),
        data=data or {},
        state_delta=delta or {},
        state_remove=remove or [],
        format=format,
    )


def created(format: int = 2, **data: Any) -> Event:
    values = {"app_name": "demo", "user_id": "ada", **data}
    return ev(1, "session_created", values, values.pop("state", None), minutes=0.5, format=format)


# -- projection of each event type ----------------------------------------------------------


def test_session_created() -> None:
    session = project(
        [
            created(
                agent_name="helper",
                title="T",
                purpose="P",
                phase="planning",
                metadata={"m": 1},
                state={"k": 1, "app:a": 2, "user:u": 3, "temp:t": 4},
            )
        ]
    )
    assert session.id == "s1"
    assert (session.app_name, session.user_id, session.agent_name) == ("demo", "ada", "helper")
    assert (session.title, session.purpose, session.phase) == ("T", "P", "planning")
    assert session.metadata == {"m": 1}
    assert session.state == {"k": 1}  # scoped keys live elsewhere; temp keys nowhere
    assert session.version == 1
    assert session.status == "active"
    assert session.created_at == session.updated_at == T0 + timedelta(minutes=0.5)


def test_session_created_defaults() -> None:
    session = project([created()])
    assert session.phase == "initializing"
    assert session.agent_name is None and session.metadata == {} and session.state == {}
    assert session.resume_ready is True and session.error_count == 0


def test_session_created_state_is_a_delta() -> None:
    assert project([created(state={"null": None, "k": 0})]).state == {"null": None, "k": 0}
    # Format 1 (written before null was a value): a None deleted the key, and still does.
    assert project([created(state={"gone": None, "k": 0}, format=1)]).state == {"k": 0}


def test_every_event_bumps_version_and_updated_at() -> None:
    session = project([created(), ev(2, "user_message"), ev(3, "myplugin.thing", {"x": 1})])
    assert session.version == 3
    assert session.updated_at == T0 + timedelta(minutes=3)
    assert session.created_at == T0 + timedelta(minutes=0.5)


def test_phase_changed() -> None:
    session = project(
        [
            created(),
            ev(2, "phase_changed", {"to": "investigating"}),
            ev(3, "phase_changed", {"to": "approval", "resume_ready": False}),
        ]
    )
    assert session.phase == "approval"
    assert session.resume_ready is False
    history = [(t.from_phase, t.to_phase, t.timestamp) for t in session.phase_history]
    assert history == [
        ("initializing", "investigating", T0 + timedelta(minutes=2)),
        ("investigating", "approval", T0 + timedelta(minutes=3)),
    ]
    back = project([ev(4, "phase_changed", {"to": "planning", "resume_ready": 1})], session)
    assert back.resume_ready is True
    assert len(back.phase_history) == 3


def test_status_changed() -> None:
    session = project([created(), ev(2, "status_changed", {"to": "suspended"})])
    assert session.status == "suspended"
    session = project([ev(3, "status_changed", {"to": "active"})], session)
    assert session.status == "active"


def test_error() -> None:
    session = project([created(), ev(2, "error", {"message": "boom"}), ev(3, "error", {})])
    assert session.error_count == 2
    assert session.last_error == ""
    session = project([ev(4, "error", {"message": 42})], session)
    assert (session.error_count, session.last_error) == (3, "42")


def test_metadata_updated_deep_merges() -> None:
    session = project(
        [
            created(metadata={"a": 1, "nested": {"x": 1, "y": 2}, "drop": True}),
            ev(2, "metadata_updated", {"metadata": {"nested": {"y": 3, "z": 4}, "b": 2}}),
            ev(3, "metadata_updated", {"metadata": {"drop": None, "nested": {"x": None}}}),
            ev(4, "metadata_updated", {}),
        ]
    )
    assert session.metadata == {"a": 1, "nested": {"y": 3, "z": 4}, "b": 2}


def test_session_finalized() -> None:
    session = project(
        [
            created(),
            ev(2, "phase_changed", {"to": "completed"}),
            ev(3, "session_finalized", {"outcome": "success", "summary": "done"}, minutes=90.5),
        ]
    )
    assert session.status == "terminated"
    assert (session.outcome, session.summary) == ("success", "done")
    assert session.finalized_at == T0 + timedelta(minutes=90.5)
    assert session.duration_seconds == 90 * 60
    assert session.resume_ready is False


def test_state_deltas_fold() -> None:
    session = project(
        [
            created(state={"a": 1, "b": 2, "d": 4}),
            ev(2, "tool_result", delta={"b": None, "c": 3, "app:x": 1, "temp:t": 1}),
            ev(3, "state_updated", delta={"a": {"deep": [1]}, "user:y": 2, "n": None},
               remove=["d", "missing", "user:y", "temp:t"]),
        ]
    )
    assert session.state == {"a": {"deep": [1]}, "b": None, "c": 3, "n": None}


def test_format_1_events_delete_on_none() -> None:
    """Events written before null was a value keep their meaning; newer ones store null."""
    session = project(
        [
            created(state={"a": 1, "b": 2, "c": 3}, format=1),
            ev(2, "tool_result", delta={"b": None, "x": 1, "missing": None}, format=1),
            ev(3, "state_updated", delta={"c": None, "y": None}),
            ev(4, "state_updated", remove=["a"]),
        ]
    )
    assert session.state == {"x": 1, "c": None, "y": None}


SPECIAL_TYPES = {
    "session_created",
    "phase_changed",
    "status_changed",
    "error",
    "metadata_updated",
    "session_finalized",
    "session_forked",
    "rewound",
}


@pytest.mark.parametrize("kind", [*sorted(STANDARD_EVENT_TYPES - SPECIAL_TYPES), "plugin.x"])
def test_plain_events_change_only_version_and_time(kind: str) -> None:
    base = project([created(metadata={"m": 1}, state={"k": 1})])
    after = project([ev(2, kind, {"to": "failed", "message": "x", "metadata": {"m": 2}})], base)
    assert (after.version, after.updated_at) == (2, T0 + timedelta(minutes=2))
    assert after.model_copy(update={"version": 1, "updated_at": base.updated_at}) == base


# -- projection integrity -------------------------------------------------------------------


def _history() -> list[Event]:
    return [
        created(state={"k": 0}, metadata={"m": {"a": 1}}),
        ev(2, "user_message", {"text": "hi"}, {"k": 1}),
        ev(3, "phase_changed", {"to": "planning"}),
        ev(4, "metadata_updated", {"metadata": {"m": {"b": 2}}}),
        ev(5, "error", {"message": "oops"}),
        ev(6, "status_changed", {"to": "suspended"}),
        ev(7, "state_updated", delta={"k": None, "j": [1, 2]}, format=1),
        ev(8, "state_updated", delta={"n": None}, remove=["j"]),
        ev(9, "phase_changed", {"to": "completed"}),
        ev(10, "session_finalized", {"outcome": "success"}),
        ev(11, "agent_message", {"text": "late"}),
    ]


@pytest.mark.parametrize("split", range(1, 12))
def test_projecting_from_a_snapshot_equals_from_scratch(split: int) -> None:
    events = _history()
    snapshot = project(events[:split])
    assert project(events[split:], snapshot) == project(events)


def test_snapshot_survives_json_round_trip() -> None:
    full = project(_history())
    restored = Session.model_validate_json(full.model_dump_json())
    assert restored == full
    assert project([ev(12, "user_message")], restored) == project([*_history(), ev(12)])


def test_project_does_not_modify_the_snapshot() -> None:
    snapshot = project(_history()[:3])
    copy = snapshot.model_copy(deep=True)
    project(_history()[3:], snapshot)
    assert snapshot == copy


@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=5, unique=True))
@settings(max_examples=30, deadline=None)
def test_splitting_anywhere_gives_the_same_session(cuts: list[int]) -> None:
    events = _history()
    session = None
    start = 0
    for cut in sorted(cuts):
        session = project(events[start:cut], session)
        start = cut
    assert project(events[start:], session) == project(events)


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ([created(), ev(3)], "expected seq 2, found seq 3"),
        ([created(), ev(2), ev(2)], "expected seq 3, found seq 2"),
        ([ev(2)], "expected seq 1"),
        ([ev(1)], "first event must be session_created"),
        ([created(), created()], "expected seq 2"),
        ([created(), ev(2, "session_created", {"app_name": "a", "user_id": "u"})], "first event"),
        ([created(), ev(2, "phase_changed", {})], "event 2"),
        ([created(), ev(2, "status_changed", {"from": "active"})], "event 2"),
        ([ev(1, "session_created", {"user_id": "u"})], "event 1"),
        ([created(), ev(2, "status_changed", {"to": 5})], "'to' must be a string"),
        ([created(), ev(2, "phase_changed", {"to": None})], "event 2"),
        ([created(), ev(2, "metadata_updated", {"metadata": "x"})], "must be an object"),
        ([created(), ev(2, "session_finalized", {"outcome": 1})], "'outcome' must be a string"),
    ],
    ids=[
        "gap",
        "repeat",
        "no-start",
        "wrong-first",
        "created-twice",
        "created-later",
        "phase-without-to",
        "status-without-to",
        "created-without-app",
        "status-not-text",
        "phase-none",
        "metadata-not-object",
        "outcome-not-text",
    ],
)
def test_bad_ledgers_are_corrupted(events: list[Event], match: str) -> None:
    with pytest.raises(CorruptedSessionError, match=match) as info:
        project(events)
    assert info.value.session_id == "s1"


def test_gap_after_a_snapshot() -> None:
    snapshot = project(_history()[:3])
    with pytest.raises(CorruptedSessionError, match="expected seq 4, found seq 5"):
        project([ev(5)], snapshot)


def test_project_needs_something() -> None:
    with pytest.raises(ValueError):
        project([])
    snapshot = project([created()])
    assert project([], snapshot) == snapshot


# -- state helpers --------------------------------------------------------------------------


def test_split_delta() -> None:
    own, app, user = split_delta(
        {"k": 1, "app:a": 2, "user:u": None, "temp:t": 4, "application": 5, "usr:x": 6}
    )
    assert own == {"k": 1, "application": 5, "usr:x": 6}
    assert app == {"a": 2}
    assert user == {"u": None}
    assert split_delta({}) == ({}, {}, {})


def test_strip_temp() -> None:
    assert strip_temp({"temp:a": 1, "temp:": 2, "a": None, "app:temp:x": 3}) == {
        "a": None,
        "app:temp:x": 3,
    }


def test_apply_delta() -> None:
    state = {"a": 1, "b": 2, "d": 4}
    assert apply_delta(state, {"a": None, "c": 3, "b": [2]}, ["d", "missing"]) == {
        "a": None, "b": [2], "c": 3,
    }
    assert state == {"a": 1, "b": 2, "d": 4}  # not modified
    assert apply_delta({}, {}) == {}


def test_state_change_reads_an_event_by_its_format() -> None:
    from agentledger.core.state import state_change

    delta = {"a": None, "b": 1}
    assert state_change(delta, ["c"], 2) == ({"a": None, "b": 1}, ["c"])
    assert state_change(delta, [], 1) == ({"b": 1}, ["a"])
    assert state_change({"b": 1}, [], 1) == ({"b": 1}, [])


def test_new_event_refuses_a_key_both_set_and_removed() -> None:
    with pytest.raises(InvalidEventError, match="both set"):
        NewEvent(type="state_updated", state_delta={"k": 1}, state_remove=["k"])
    for bad in ([""], [1], "k"):
        with pytest.raises(InvalidEventError):
            NewEvent(type="state_updated", state_remove=bad)


def test_merge_scoped_state() -> None:
    merged = merge_scoped_state({"k": 1}, {"a": 2}, {"u": 3})
    assert merged == {"k": 1, "app:a": 2, "user:u": 3}


def test_deep_merge() -> None:
    base = {"a": {"x": 1, "y": {"z": 1}}, "b": 1, "c": [1]}
    update = {"a": {"y": {"w": 2}, "x": None}, "b": {"now": "object"}, "c": [2], "d": None}
    merged = deep_merge(base, update)
    assert merged == {"a": {"y": {"z": 1, "w": 2}}, "b": {"now": "object"}, "c": [2]}
    assert base == {"a": {"x": 1, "y": {"z": 1}}, "b": 1, "c": [1]}
    assert deep_merge({"a": {"x": 1}}, {"a": 5}) == {"a": 5}


# -- session ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        "a",
        "A",
        "0",
        "abc-DEF_123",
        "a.b",
        "user@example.com",
        "ns:id",
        "x" * 128,
        "x" * 512,
        "user/42",
        "t/1 x",
        " padded ",
        "..",
        "../x",
        "a/../b",
        "/",
        "a\\b",
        "C:\\Windows",
        ".hidden",
        "-flag",
        "_x",
        "%2F",
        "é",
        "e\u0301",
        "日本語/セッション",
        "🦜 parrot",
        "\u00a0nbsp",
        "zero\u200bwidth",
    ],
)
def test_valid_session_ids(good: str) -> None:
    assert validate_session_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 513,
        "\x00",
        "a\x00",
        "tab\t",
        "line\n",
        "cr\r",
        "esc\x1b[31m",
        "del\x7f",
        "c1\x9b",
        "lone\ud800",
        None,
        5,
        b"bytes",
    ],
)
def test_invalid_session_ids(bad: Any) -> None:
    with pytest.raises(InvalidSessionIdError):
        validate_session_id(bad)


def test_a_refused_session_id_says_why() -> None:
    with pytest.raises(InvalidSessionIdError, match=r"control character \(U\+0000 at index 1\)"):
        validate_session_id("a\x00b")
    with pytest.raises(InvalidSessionIdError, match="use 1-512 characters, not 513"):
        validate_session_id("x" * 513)
    with pytest.raises(InvalidSessionIdError, match="lone surrogate"):
        validate_session_id("\udfff")
    with pytest.raises(InvalidSessionIdError, match="not int"):
        validate_session_id(5)


def test_a_huge_bad_session_id_is_cut_in_the_error() -> None:
    huge = "bad id " + "x" * 5000
    with pytest.raises(InvalidSessionIdError) as raised:
        validate_session_id(huge)
    message = str(raised.value)
    assert repr(huge[:80]) + "… (5007 characters)" in message
    assert len(message) < 300
    with pytest.raises(InvalidSessionIdError, match=r"^invalid session id 'a\\nb': "):
        validate_session_id("a\nb")  # a short one is shown whole
    with pytest.raises(InvalidSessionIdError) as raised:
        validate_session_id(["y" * 5000])
    assert len(str(raised.value)) < 300


# -- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [*sorted(STANDARD_EVENT_TYPES), "myplugin.something", "a.b", "ns.deep.name"]
)
def test_event_types_accepted(kind: str) -> None:
    assert NewEvent(type=kind).type == kind


@pytest.mark.parametrize("kind", ["", "custom", "plugin.", ".name", ".", "USER_MESSAGE", "bogus"])
def test_event_types_refused(kind: str) -> None:
    """A typed agentledger error (also a ValueError), pydantic's error chained as its cause."""
    with pytest.raises(InvalidEventError, match="unknown event type") as info:
        NewEvent(type=kind)
    assert isinstance(info.value, AgentLedgerError) and isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, ValidationError)
    assert info.value.__cause__.errors()[0]["loc"] == ("type",)


def test_event_type_enum_matches_the_standard_set() -> None:
    assert {t.value for t in EventType} == STANDARD_EVENT_TYPES
    assert len(STANDARD_EVENT_TYPES) == 15


def test_new_event_timestamps() -> None:
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        NewEvent(type="user_message", timestamp=datetime(2025, 1, 1))
    plus_two = timezone(timedelta(hours=2))
    event = NewEvent(type="user_message", timestamp=datetime(2025, 1, 1, 2, 0, tzinfo=plus_two))
    assert event.timestamp == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert event.timestamp is not None and event.timestamp.utcoffset() == timedelta(0)
    assert NewEvent(type="user_message").timestamp is None


def test_new_event_defaults_and_strictness() -> None:
    event = NewEvent(type="user_message")
    assert (event.author, event.data, event.state_delta, event.invocation_id) == (
        "system",
        {},
        {},
        None,
    )
    with pytest.raises(InvalidEventError, match="unknown_field"):
        NewEvent(type="user_message", unknown_field=1)
    with pytest.raises(ValidationError):
        event.type = "agent_message"  # type: ignore[misc]
    with pytest.raises(InvalidEventError, match="data"):
        NewEvent(type="user_message", data=["not", "an", "object"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: NewEvent.model_validate({"type": "bogus"}), "unknown event type"),
        (lambda: NewEvent.model_validate_json('{"type": "user_message", "data": 1}'), "data"),
        (lambda: NewEvent.model_validate_json("{not json"), "JSON"),
        (lambda: Event.model_validate({"id": "x", "seq": "first"}), "seq"),
        (lambda: Event(id="x", session_id="s", seq=1, type="user_message", author="user",
                       timestamp="yesterday"), "timestamp"),
    ],
)
def test_every_way_of_building_an_event_raises_invalid_event_error(
    build: Any, needle: str
) -> None:
    with pytest.raises(InvalidEventError, match=needle) as info:
        build()
    assert isinstance(info.value.__cause__, ValidationError)


def test_events_and_sessions_are_frozen() -> None:
    event = ev(1)
    with pytest.raises(ValidationError):
        event.seq = 2  # type: ignore[misc]
    session = project([created()])
    with pytest.raises(ValidationError):
        session.version = 5  # type: ignore[misc]


# -- the public API -------------------------------------------------------------------------


def test_all_is_sorted_and_importable() -> None:
    names = agentledger.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(agentledger, name) is not None
    namespace: dict[str, Any] = {}
    exec("from agentledger import *", namespace)  # noqa: S102 - checks the star import
    assert set(names) <= set(namespace)


@pytest.mark.parametrize(
    "module",
    [
        "agentledger.errors",
        "agentledger.core.events",
        "agentledger.core.session",
        "agentledger.core.state",
        "agentledger.core.projection",
        "agentledger.stores",
        "agentledger.stores.base",
        "agentledger.stores.memory",
        "agentledger.stores.sqlite",
        "agentledger.testing",
        "agentledger.plugins",
        "agentledger.plugins.redact",
    ],
)
def test_module_all_is_importable(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which it lacks"


def test_error_tree() -> None:
    errors = agentledger.errors
    assert issubclass(errors.SessionNotFoundError, KeyError)
    assert issubclass(errors.InvalidSessionIdError, ValueError)
    assert issubclass(errors.InvalidEventError, ValueError)
    assert issubclass(errors.EventTooLargeError, errors.InvalidEventError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.MissingDependencyError, errors.ConfigurationError)
    for name in ("ConcurrencyError", "CorruptedSessionError", "SchemaVersionError"):
        assert issubclass(getattr(errors, name), errors.StoreError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AgentLedgerError)
    missing = errors.MissingDependencyError("psycopg", "postgres")
    assert "pip install 'agentledger[postgres]'" in str(missing)
    concurrency = errors.ConcurrencyError("s", 3, 5)
    assert (concurrency.expected_version, concurrency.actual_version) == (3, 5)
    assert "version 5" in str(concurrency) and "expected version 3" in str(concurrency)
    too_large = errors.EventTooLargeError(2000, 1024)
    assert (too_large.size, too_large.limit) == (2000, 1024)
    assert str(errors.SessionNotFoundError("abc")) == "no session with id 'abc'"


def test_events_read_back_from_a_store_are_real_events() -> None:
    """The store's fast constructor builds what validation would build."""
    from datetime import datetime, timezone

    from agentledger.core.events import Event
    from agentledger.stores.shared import _stored_event

    values = {
        "id": "01M7YAS03S7MQQA1VC75EWMRJ2",
        "session_id": "s",
        "seq": 3,
        "type": "tool_result",
        "author": "tool",
        "timestamp": datetime(2026, 1, 8, 18, 5, 30, 5, tzinfo=timezone.utc),
        "data": {"result": [1, {"a": None}]},
        "state_delta": {"k": "v"},
        "state_ops": [{"op": "add", "path": "/user:r/-", "value": 1}],
        "state_remove": ["user:gone"],
        "invocation_id": None,
        "format": 1,
        "key": "ns:1",
        "erased": False,
    }
    fast = _stored_event(dict(values))
    validated = Event.model_validate(values)
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert fast.model_dump_json() == validated.model_dump_json()
    assert fast.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert fast.model_copy(update={"seq": 4}).seq == 4 and fast.seq == 3
    assert repr(fast) == repr(validated)


# -- the hash chain's definition -----------------------------------------------------------


def test_chain_hashes_are_the_documented_functions() -> None:
    import hashlib
    import json

    from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert GENESIS == "0" * 64
    assert canonical_json({"b": [1, {"d": 1, "c": -0.0}], "a": "é\x00"}) == (
        '{"a":"é\\u0000","b":[1,{"c":0.0,"d":1}]}'
    )
    assert canonical_json({"x": -0.05, "y": 1e23}) == '{"x":-0.05,"y":1e+23}'
    assert payload_hash('{"a":1}', "{}") == sha('{"a":1}\n{}')
    assert payload_hash('{"a":1}', "{}", '[{"op":"x"}]') == sha('{"a":1}\n{}\n[{"op":"x"}]')
    assert payload_hash('{"a":1}', "{}", "[]", '["k"]') == sha('{"a":1}\n{}\n[]\n["k"]')
    header2 = [GENESIS, "s", 1, "id", "user_message", "user", "T", None, "p", 2]
    assert event_hash(*header2) == sha(  # type: ignore[arg-type]
        json.dumps(header2, ensure_ascii=False, separators=(",", ":"))
    )
    assert event_hash(*header2[:-1], 1) == event_hash(*header2[:-1])  # type: ignore[arg-type]
    for invocation in (None, 'in"v☃\\'):
        header = [GENESIS, "s\x01", 1, "id", "user_message", "user", "T", invocation, "p"]
        expected = sha(json.dumps(header, ensure_ascii=False, separators=(",", ":")))
        assert event_hash(*header) == expected  # type: ignore[arg-type]


def test_an_erased_event_is_never_replayed() -> None:
    from datetime import datetime, timezone

    from agentledger.core.events import Event
    from agentledger.errors import CorruptedSessionError

    when = datetime(2026, 1, 8, tzinfo=timezone.utc)
    created = Event(
        id="e1", session_id="s", seq=1, type="session_created", author="system", timestamp=when,
        data={"app_name": "a", "user_id": "u"}, state_delta={"k": 1},
    )  # fmt: skip
    erased = Event(
        id="e2", session_id="s", seq=2, type="user_message", author="user", timestamp=when,
        erased=True,
    )  # fmt: skip
    session = project([created])
    with pytest.raises(CorruptedSessionError, match="event 2: its payload was erased"):
        project([erased], session)


# -- rewound and session_forked --------------------------------------------------------------


def _rewind_history() -> list[Event]:
    return [
        created(state={"k": 0}),
        ev(2, "user_message", delta={"k": 1}),
        ev(3, "phase_changed", {"to": "planning"}, {"k": 2}),
        ev(4, "error", {"message": "oops"}, {"k": 3}),
        ev(5, "rewound", {"to_seq": 2}),  # back to k=1, initializing, no error
        ev(6, "state_updated", delta={"j": 1}),
        ev(7, "rewound", {"to_seq": 4}),  # into the undone stretch: k=3, planning, 1 error
    ]


def test_rewound_restores_the_projection_at_its_target() -> None:
    events = _rewind_history()
    at = {n: project(events[:n]) for n in range(1, len(events) + 1)}
    assert (at[5].state, at[5].phase, at[5].error_count, at[5].version) == (
        {"k": 1}, "initializing", 0, 5
    )
    assert at[5].model_copy(update={"version": 2, "updated_at": at[2].updated_at}) == at[2]
    assert at[6].state == {"k": 1, "j": 1}
    assert (at[7].state, at[7].phase, at[7].error_count) == ({"k": 3}, "planning", 1)
    assert at[7].updated_at == events[6].timestamp


def test_rewound_continuing_from_a_snapshot_needs_the_earlier_projection() -> None:
    events = _rewind_history()
    snapshot = project(events[:4])
    with pytest.raises(CorruptedSessionError, match="rewinds to seq 2"):
        project(events[4:5], snapshot)
    given = project(events[4:5], snapshot, at={2: project(events[:2])})
    assert given == project(events[:5])


@pytest.mark.parametrize("target", [0, 5, "2", None, True])
def test_rewound_with_a_bad_target_is_corruption(target: Any) -> None:
    events = [*_rewind_history()[:4], ev(5, "rewound", {"to_seq": target})]
    with pytest.raises(CorruptedSessionError, match="to_seq"):
        project(events)


def test_session_forked_sets_the_lineage_and_a_rewind_keeps_it() -> None:
    events = [
        *_rewind_history()[:3],
        ev(4, "session_forked", {"source_id": "src", "source_seq": 3, "source_hash": "h"}),
        ev(5, "rewound", {"to_seq": 2}),
    ]
    forked = project(events[:4])
    assert forked.forked_from is not None
    assert (forked.forked_from.session_id, forked.forked_from.seq) == ("src", 3)
    assert forked.state == {"k": 2}
    assert project(events).forked_from == forked.forked_from
    with pytest.raises(CorruptedSessionError, match="source_id"):
        project([*events[:3], ev(4, "session_forked", {"source_seq": 3})])


@pytest.mark.parametrize(
    ("head", "rewinds", "expected"),
    [
        (5, {}, [(1, 5)]),
        (7, {5: 2}, [(1, 2), (6, 7)]),
        (7, {5: 2, 7: 4}, [(1, 4)]),  # back into a stretch an earlier rewind undid
        (6, {5: 2, 7: 4}, [(1, 2), (6, 6)]),  # markers after the head are ignored
        (9, {5: 2, 8: 6}, [(1, 2), (6, 6), (9, 9)]),
        (3, {3: 2}, [(1, 2)]),
        (4, {3: 2, 4: 3}, [(1, 2)]),  # a rewind to a marker's seq: what was in effect there
    ],
)
def test_effective_ranges(head: int, rewinds: dict[int, int], expected: list[tuple[int, int]]) -> None:
    assert effective_ranges(head, rewinds) == expected


def test_effective_events_fold_to_the_projection() -> None:
    """The events in effect, folded without the markers, give the same own state."""
    events = _rewind_history()
    for n in range(1, len(events) + 1):
        rewinds = {e.seq: e.data["to_seq"] for e in events[:n] if e.type == "rewound"}
        kept = [
            e for first, last in effective_ranges(n, rewinds) for e in events[first - 1 : last]
        ]
        renumbered = [e.model_copy(update={"seq": i}) for i, e in enumerate(kept, 1)]
        assert project(renumbered).state == project(events[:n]).state, n


# -- rechain (a fork's copy of a chain) and blocks of ids ------------------------------------


def _chained_headers(count: int) -> list[tuple[Any, ...]]:
    previous, headers = GENESIS, []
    for seq in range(1, count + 1):
        values = (seq, f"id-{seq}", "tool_call" if seq % 3 else 'odd "type"', "agent",
                  f"2026-01-08T18:05:{seq % 60:02d}.000000Z", None if seq % 2 else "t{x}",
                  f"{seq:064x}")
        previous = event_hash(previous, "src", *values)
        headers.append((*values, previous))
    return headers


def test_rechain_gives_the_hashes_event_hash_gives() -> None:
    headers = _chained_headers(20)
    ids = new_ids(20)
    copied, bad = rechain(headers, "src", "dst ü", iter(ids))
    assert bad is None and [c[1] for c in copied] == ids
    previous = GENESIS
    for (seq, event_id, digest), header in zip(copied, headers, strict=True):
        previous = event_hash(previous, "dst ü", seq, event_id, *header[2:7])
        assert digest == previous


def test_rechain_stops_at_a_changed_header_or_a_gap() -> None:
    headers = _chained_headers(6)
    changed = [*headers[:3], (*headers[3][:2], "user_message", *headers[3][3:]), *headers[4:]]
    assert rechain(changed, "src", "dst", iter(new_ids(6)))[1] == 4
    assert rechain(headers[:2] + headers[3:], "src", "dst", iter(new_ids(6)))[1] == 3
    assert rechain(headers, "other", "dst", iter(new_ids(6)))[1] == 1


def test_new_ids_is_a_block_of_increasing_ids() -> None:
    before = new_id()
    block = new_ids(2000)
    after = new_id()
    assert before < block[0] and block[-1] < after
    assert block == sorted(block) and len(set(block)) == 2000
    assert all(len(i) == 26 for i in block) and new_ids(0) == []
