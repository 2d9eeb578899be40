"""Conformance: properties over random event sequences (hypothesis).

Hypothesis runs many examples inside one test call, so a function-scoped `store` fixture is
shared by all of them: each example works in a fresh session of a fresh app instead of a
fresh store.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger.core.events import Event, NewEvent
from agentledger.core.projection import project
from agentledger.core.session import DEFAULT_PHASES, FINAL_PHASES, Status
from agentledger.errors import InvalidTransitionError
from agentledger.stores.base import SessionStore
from agentledger.stores.shared import format_timestamp
from agentledger.testing._base import ConformanceBase

__all__ = [
    "PropertyConformance",
    "event_batches",
    "json_values",
    "new_events",
    "state_deltas",
    "state_removals",
]

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
"""Any value JSON can hold (numbers that every JSON store keeps exactly)."""

json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)

_STATE_KEYS = st.sampled_from(
    ["a", "b", "c", "app:a", "app:b", "user:a", "user:b", "temp:a", "temp:b", "appx", "user"]
)
state_deltas = st.dictionaries(_STATE_KEYS, json_values, max_size=5)
"""State deltas over a few keys of every scope, so later deltas overwrite (`None`, a value,
among them)."""
state_removals = st.lists(_STATE_KEYS, max_size=3)
"""Keys to remove (`state_remove`), of every scope, present or not."""

_METADATA = st.recursive(
    json_values,
    lambda children: st.dictionaries(st.sampled_from(["m", "n", "o"]), children, max_size=3),
    max_leaves=6,
)
_OFFSETS = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
)
timestamps = (
    st.none()
    | st.datetimes(timezones=st.just(timezone.utc))
    | st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_OFFSETS
    )
)
"""`None` (the store stamps it) or any aware datetime, in UTC or at a fixed offset."""

_PLAIN_TYPES = [
    "user_message",
    "agent_message",
    "tool_call",
    "tool_result",
    "final_output",
    "state_updated",
    "myplugin.something",
]
_TYPES = [*_PLAIN_TYPES, "phase_changed", "status_changed", "error", "metadata_updated"]
_TYPES += ["session_finalized"]


@st.composite
def new_events(draw: st.DrawFn) -> NewEvent:
    """A random standard (or plugin) event with the data shape the projection expects."""
    kind = draw(st.sampled_from(_TYPES))
    data: dict[str, Any] = draw(json_objects)
    if kind == "phase_changed":
        data["to"] = draw(st.sampled_from(DEFAULT_PHASES))
        if draw(st.booleans()):
            data["resume_ready"] = draw(st.booleans())
    elif kind == "status_changed":
        data["to"] = draw(st.sampled_from([s.value for s in Status]))
    elif kind == "error":
        if draw(st.booleans()):
            data["message"] = draw(st.text(max_size=20))
    elif kind == "metadata_updated":
        data["metadata"] = draw(st.dictionaries(st.sampled_from(["m", "n", "o"]), _METADATA))
    elif kind == "session_finalized":
        data["outcome"] = draw(st.sampled_from([*sorted(FINAL_PHASES), "success"]))
        data["summary"] = draw(st.none() | st.text(max_size=20))
    delta = draw(state_deltas)
    return NewEvent(
        type=kind,
        author=draw(st.sampled_from(["user", "agent", "tool", "system", "myplugin"])),
        data=data,
        state_delta=delta,
        state_remove=[k for k in draw(state_removals) if k not in delta],
        invocation_id=draw(st.none() | st.text(min_size=1, max_size=10)),
        timestamp=draw(timestamps),
    )


@st.composite
def _finalize_pairs(draw: st.DrawFn) -> list[NewEvent]:
    outcome = draw(st.sampled_from(sorted(FINAL_PHASES)))
    return [
        NewEvent(type="phase_changed", author="system", data={"to": outcome}),
        NewEvent(type="session_finalized", author="system",
                 data={"outcome": outcome, "summary": draw(st.none() | st.text(max_size=20))}),
    ]


event_batches = st.lists(
    st.lists(new_events(), min_size=1, max_size=4) | _finalize_pairs(), max_size=6
)
"""Events to append, split into batches of random sizes. Some batches break a lifecycle rule
(a disallowed phase move, appending after termination…) and must be refused whole."""


def _apply(
    state: dict[str, Any], delta: dict[str, Any], prefix: str, remove: list[str] | None = None
) -> None:
    for key, value in delta.items():
        if key.startswith(prefix):
            state[key] = value  # None too: null is a value
    for key in remove or []:
        if key.startswith(prefix):
            state.pop(key, None)


def _check_stored(new: NewEvent, stored: Event, floor: datetime) -> None:
    # A caller's time travels in data; the store's clock stamps the event, never earlier
    # than the session's last event (`floor`).
    data = new.data
    if new.timestamp is not None:
        data = {**new.data, "timestamp": format_timestamp(new.timestamp)}
    assert (stored.type, stored.author, stored.data) == (new.type, new.author, data)
    assert stored.invocation_id == new.invocation_id
    assert stored.state_delta == {
        k: v for k, v in new.state_delta.items() if not k.startswith("temp:")
    }
    assert stored.state_remove == [k for k in new.state_remove if not k.startswith("temp:")]
    assert stored.timestamp >= floor


class PropertyConformance(ConformanceBase):
    """The ledger and the snapshot agree, whatever events are appended."""

    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(initial=state_deltas, batches=event_batches)
    def test_projection_of_the_ledger_equals_the_snapshot(
        self, store: SessionStore, initial: dict[str, Any], batches: list[list[NewEvent]]
    ) -> None:
        session = store.create_session(
            app_name=self.unique("app"), user_id="ada", state=initial, phase="investigating"
        )
        shared: dict[str, Any] = {}
        _apply(shared, initial, "app:")
        _apply(shared, initial, "user:")
        appended: list[Event] = []
        floor = session.updated_at
        for batch in batches:
            try:
                stored = store.append(session.id, batch)
            except InvalidTransitionError:
                # A batch breaking a lifecycle rule is refused whole.
                assert store.get_session(session.id).version == len(appended) + 1
                continue
            first = len(appended) + 2
            assert self.seqs(stored) == list(range(first, first + len(batch)))
            for new, event in zip(batch, stored, strict=True):
                _check_stored(new, event, floor)
                floor = event.timestamp
                _apply(shared, new.state_delta, "app:", new.state_remove)
                _apply(shared, new.state_delta, "user:", new.state_remove)
            appended.extend(stored)

        events = store.read_events(session.id)
        assert events[1:] == appended
        assert self.seqs(events) == list(range(1, len(appended) + 2))
        snapshot = store.get_session(session.id)
        assert snapshot.version == len(events)
        own = snapshot.model_copy(update={"state": self.own_state(snapshot.state)})
        assert project(events) == own
        assert {k: v for k, v in snapshot.state.items() if k not in own.state} == shared
        assert not any(k.startswith("temp:") for k in snapshot.state)
        assert not any(k.startswith("temp:") for e in events for k in e.state_delta)
