"""The projection: a session is a pure fold over its ledger.

`project(events, session)` continues from a snapshot; `project(all_events)` rebuilds from
scratch. Both give the same `Session`, which is what lets a store keep a snapshot beside the
ledger and still treat the ledger as the single source of truth.

Two event types move the projection other than forward:

- `rewound` (`data: {"to_seq": k}`, written by `SessionStore.rewind`): the projection after
  it is the projection as it was after event `k` (the fold of events 1 to `k`, earlier
  rewinds included), except `version` (the marker's seq), `updated_at` (time never runs
  backwards) and `forked_from` (lineage is a fact about the ledger, not undone). Only the
  session's own state is restored: `app:`/`user:` state is shared with other sessions and
  stays as it is (as ADK's `rewind` does). The fold keeps the projections a rewind in
  `events` goes back to; one that goes back before `session` needs them in `at`.
- `session_forked` (`data: {"source_id", "source_seq", "source_hash"}`, written by
  `SessionStore.fork_session` as a fork's first own event) sets `forked_from`.

`effective_ranges` says which events of a ledger are still in effect after its rewinds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agentledger.core.events import Event, EventType
from agentledger.core.session import ForkOrigin, PhaseTransition, Session, Status
from agentledger.core.state import apply_delta, split_delta, split_keys, state_change
from agentledger.core.state_ops import apply_ops, split_ops
from agentledger.errors import CorruptedSessionError

__all__ = ["deep_merge", "effective_ranges", "project", "rewind_target"]


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `update` merged in; nested objects merge key by key.

    A key set to `None` in `update` is deleted; any other non-object value replaces.
    """
    result = dict(base)
    for key, value in update.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _text(data: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    """Return `data[key]`, checking that it is a string (or absent/`None` if `optional`)."""
    value = data.get(key) if optional else data[key]
    if not isinstance(value, str) and not (optional and value is None):
        raise ValueError(f"{key!r} must be a string, not {value!r}")
    return value


def _created(event: Event) -> Session:
    data = event.data
    return Session(
        id=event.session_id,
        app_name=data["app_name"],
        user_id=data["user_id"],
        agent_name=data.get("agent_name"),
        title=data.get("title"),
        purpose=data.get("purpose"),
        phase=data.get("phase", "initializing"),
        metadata=dict(data.get("metadata") or {}),
        state=apply_ops(_own_state({}, event), split_ops(event.state_ops).session),
        created_at=event.timestamp,
        updated_at=event.timestamp,
        version=event.seq,
    )


def _own_state(state: dict[str, Any], event: Event) -> dict[str, Any]:
    """The session's own keys after the event's delta and removals (by its format)."""
    change = state_change(event.state_delta, event.state_remove, event.format)
    sets = split_delta(change.set).session
    removes = split_keys(change.remove).session
    return apply_delta(state, sets, removes) if sets or removes else state


def _apply(session: Session, event: Event) -> Session:
    # Last activity never moves backwards, even over a ledger written by a clock that did.
    changes: dict[str, Any] = {
        "version": event.seq,
        "updated_at": max(session.updated_at, event.timestamp),
    }
    if event.state_delta or event.state_remove:
        own = _own_state(session.state, event)
        if own is not session.state:
            changes["state"] = own
    if event.state_ops:
        own_ops = split_ops(event.state_ops).session
        if own_ops:
            changes["state"] = apply_ops(changes.get("state", session.state), own_ops)
    data = event.data
    kind = event.type
    call = data.get("model_call")
    if isinstance(call, Mapping) and call:
        changes["model_calls"] = session.model_calls + 1
        for key in ("input_tokens", "output_tokens"):
            tokens = call.get(key)
            if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
                changes[key] = getattr(session, key) + tokens
    if kind == EventType.METADATA_UPDATED:
        update = data.get("metadata") or {}
        if not isinstance(update, Mapping):
            raise ValueError(f"'metadata' must be an object, not {update!r}")
        changes["metadata"] = deep_merge(session.metadata, update)
        if "resume_ready" in data:
            changes["resume_ready"] = bool(data["resume_ready"])
    elif kind == EventType.PHASE_CHANGED:
        to_phase = _text(data, "to")
        changes["phase"] = to_phase
        changes["phase_history"] = [
            *session.phase_history,
            PhaseTransition(from_phase=session.phase, to_phase=to_phase, timestamp=event.timestamp),
        ]
        if "resume_ready" in data:
            changes["resume_ready"] = bool(data["resume_ready"])
    elif kind == EventType.STATUS_CHANGED:
        to_status = _text(data, "to")
        changes["status"] = to_status
        if to_status == Status.ACTIVE:
            changes["resume_count"] = session.resume_count + 1
    elif kind == EventType.ERROR:
        changes["error_count"] = session.error_count + 1
        changes["last_error"] = str(data.get("message", ""))
    elif kind == EventType.SESSION_FINALIZED:
        changes["status"] = Status.TERMINATED.value
        changes["outcome"] = _text(data, "outcome", optional=True)
        changes["summary"] = _text(data, "summary", optional=True)
        changes["finalized_at"] = event.timestamp
        changes["resume_ready"] = False
        # Never negative, even for a finalize stamped before the session's creation.
        changes["duration_seconds"] = max(
            (event.timestamp - session.created_at).total_seconds(), 0.0
        )
    elif kind == EventType.SESSION_FORKED:
        source, seq = data.get("source_id"), data.get("source_seq")
        if not isinstance(source, str) or type(seq) is not int:
            raise ValueError("session_forked needs a string 'source_id' and an int 'source_seq'")
        changes["forked_from"] = ForkOrigin(session_id=source, seq=seq)
    elif kind == EventType.SESSION_CREATED:
        raise ValueError(f"event {event.seq}: session_created may only be the first event")
    return _copied(session, changes)


def _copied(session: Session, changes: dict[str, Any]) -> Session:
    """`session.model_copy(update=changes)` without pydantic's generic copy machinery (the
    fold's hot path): a new `Session`, its fields the old ones with `changes` applied."""
    values = session.__dict__.copy()
    values.update(changes)
    copied = object.__new__(Session)
    object.__setattr__(copied, "__dict__", values)
    object.__setattr__(
        copied, "__pydantic_fields_set__", session.__pydantic_fields_set__ | changes.keys()
    )
    object.__setattr__(copied, "__pydantic_extra__", session.__pydantic_extra__)
    object.__setattr__(copied, "__pydantic_private__", session.__pydantic_private__)
    return copied


def rewind_target(event: Event) -> int:
    """Return the seq a `rewound` event goes back to (`data["to_seq"]`).

    Raises:
        ValueError: `to_seq` is not an int from 1 to the event's seq - 1.
    """
    target = event.data.get("to_seq")
    if type(target) is not int or not 1 <= target < event.seq:
        raise ValueError(
            f"event {event.seq}: rewound needs an int 'to_seq' from 1 to {event.seq - 1}, "
            f"not {target!r}"
        )
    return target


def _rewound(session: Session, event: Event, earlier: Mapping[int, Session]) -> Session:
    target = rewind_target(event)
    base = earlier.get(target)
    if base is None:
        raise ValueError(
            f"event {event.seq}: rewinds to seq {target}, whose projection this fold does "
            "not have (fold from seq 1, or pass it in `at`)"
        )
    return base.model_copy(
        update={
            "version": event.seq,
            "updated_at": max(session.updated_at, event.timestamp),
            "forked_from": session.forked_from,
        }
    )


def effective_ranges(head: int, rewinds: Mapping[int, int]) -> list[tuple[int, int]]:
    """Return the seqs of a ledger still in effect after its rewinds, as ranges.

    The events in effect at seq `n` are those in effect at `k` when event `n` is a
    `rewound` event going back to `k`, else those in effect at `n - 1` plus event `n`. So
    rewound events and the `rewound` markers themselves are left out, and a rewind back to
    a seq inside an earlier rewound stretch brings the events up to that seq back.

    Args:
        head: The session's version (the last seq).
        rewinds: The seq of every `rewound` event up to `head` -> its `to_seq`.

    Returns:
        Inclusive `(first, last)` seq ranges in ascending order, not overlapping.
    """
    markers = sorted(seq for seq in rewinds if seq <= head)
    ranges: list[tuple[int, int]] = []
    upto = head
    while upto >= 1:
        # The last marker at or before `upto`: events after it are in effect.
        while markers and markers[-1] > upto:
            markers.pop()
        if not markers:
            ranges.append((1, upto))
            break
        marker = markers.pop()
        if marker < upto:
            ranges.append((marker + 1, upto))
        upto = rewinds[marker]
    ranges.reverse()
    return ranges


def project(
    events: Iterable[Event],
    session: Session | None = None,
    *,
    at: Mapping[int, Session] | None = None,
) -> Session:
    """Fold events into a session.

    Args:
        events: Ledger entries in `seq` order, continuing `session` (or starting at seq 1
            with `session_created` when `session` is `None`).
        session: A snapshot to continue from; it is not modified.
        at: Projections at earlier seqs (seq -> session) for `rewound` events among
            `events` that go back before `session` (the fold remembers the ones it
            passes itself).

    Returns:
        The new projection. Only the session's own state keys are folded: `app:` and
        `user:` keys live in their shared scopes and `temp:` keys are never persisted.

    Raises:
        CorruptedSessionError: The events do not continue the session (a gap in `seq`, a
            missing or repeated `session_created`, a malformed standard event, or a state
            operation that does not fit the state; the `StateOperationError` is chained);
            a `rewound` event going back to a projection neither folded nor in `at`; or
            an event's payload was erased (`Event.erased`): its change cannot be
            replayed, so a ledger with erased events is projected from its store's base
            (the session as it was at the erase), which `get_session` returns.
    """
    events = events if isinstance(events, list) else list(events)
    targets = {
        e.data.get("to_seq") for e in events if e.type == EventType.REWOUND
    }
    earlier: dict[int, Session] = dict(at or {})
    if session is not None and session.version in targets:
        earlier[session.version] = session
    current = session
    for event in events:
        expected = 1 if current is None else current.version + 1
        if event.erased:
            raise CorruptedSessionError(
                event.session_id,
                f"event {event.seq}: its payload was erased, so its change cannot be replayed;"
                " a session with erased events is projected from its base (get_session)",
            )
        if event.seq != expected:
            raise CorruptedSessionError(
                event.session_id, f"expected seq {expected}, found seq {event.seq}"
            )
        try:
            if current is None:
                if event.type != EventType.SESSION_CREATED:
                    raise ValueError("the first event must be session_created")
                current = _created(event)
            elif event.type == EventType.REWOUND:
                current = _rewound(current, event, earlier)
            else:
                current = _apply(current, event)
            if targets and current.version in targets:
                earlier[current.version] = current
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptedSessionError(event.session_id, f"event {event.seq}: {exc}") from exc
    if current is None:
        raise ValueError("project() needs a session or at least one event")
    return current
