"""Lifecycle rules: which statuses and phases a session may move between, and whether it may
resume. Pure: no I/O; the clock is an argument.

Stores call `check_append` inside every append's transaction, so a rule is enforced once,
atomically, whoever writes (the `SessionManager`, the runner, a CLI command or a raw
`store.append`). `decide_resume` is the resume policy as a pure function of a session and
the time now.

Statuses: `active` ⇄ `suspended`; either → `terminated`, which is final. A
`status_changed` to `active` from `active` is allowed: it records that an agent picked the
session up again (a resume), which `Session.resume_count` counts.

Phases: `Lifecycle` holds the phase set, the final phases and the allowed moves.
A final phase is reached only together with `session_finalized` (outcome = that phase) in
the same append, which terminates the session: `SessionManager.finalize_session` and
`update_state(phase="completed")` write both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentledger.core.events import EventType, NewEvent
from agentledger.core.session import (
    DEFAULT_PHASES,
    FINAL_PHASES,
    RESUMABLE_PHASES,
    PhaseTransition,
    Session,
    Status,
)
from agentledger.errors import ConfigurationError, InvalidEventError, InvalidTransitionError

__all__ = [
    "DEFAULT_LIFECYCLE",
    "DEFAULT_TRANSITIONS",
    "STATUS_TRANSITIONS",
    "Lifecycle",
    "ResumeDecision",
    "ResumePolicy",
    "ResumeReason",
    "check_append",
    "check_create",
    "decide_resume",
    "format_duration",
]

DEFAULT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "initializing": frozenset({"investigating", "planning", "approval", "executing"}),
    "investigating": frozenset({"planning", "approval", "executing", "validating"}),
    "planning": frozenset({"investigating", "approval", "executing"}),
    "approval": frozenset({"planning", "executing"}),
    "executing": frozenset({"investigating", "planning", "approval", "validating"}),
    "validating": frozenset({"investigating", "planning", "executing"}),
}
"""The default moves between non-final phases (workflows such as: plan → approve →
execute → validate, investigate across turns, re-plan after a rejected approval). Any
non-final phase may also move to a final phase (by finalizing)."""

STATUS_TRANSITIONS: Mapping[str, frozenset[str]] = {
    Status.ACTIVE.value: frozenset({"active", "suspended", "terminated"}),
    Status.SUSPENDED.value: frozenset({"active", "terminated"}),
    Status.TERMINATED.value: frozenset(),
}
"""Allowed `status_changed` moves; `active` → `active` records a resume."""


@dataclass(frozen=True)
class Lifecycle:
    """The phase configuration a store enforces (defaults: the standard phases and
    `DEFAULT_TRANSITIONS`).

    Args:
        phases: Every valid phase, in display order.
        final_phases: Phases that end the session (each is also a finalize outcome).
        initial_phase: The phase of a new session.
        transitions: Non-final phase → the non-final phases it may move to. `None` allows
            any move between distinct non-final phases except back to `initial_phase`.
            Every non-final phase may always move to a final one.

    Raises:
        ConfigurationError: A final, initial or transition phase is not in `phases`, or the
            initial phase is final.
    """

    phases: tuple[str, ...] = DEFAULT_PHASES
    final_phases: frozenset[str] = FINAL_PHASES
    initial_phase: str = "initializing"
    transitions: Mapping[str, frozenset[str]] | None = field(
        default_factory=lambda: dict(DEFAULT_TRANSITIONS)
    )

    def __post_init__(self) -> None:
        known = set(self.phases)
        if not self.final_phases or not self.final_phases <= known:
            raise ConfigurationError(
                f"final phases {sorted(self.final_phases)} must be a non-empty subset of the "
                f"phases {list(self.phases)}"
            )
        if self.initial_phase not in known or self.initial_phase in self.final_phases:
            raise ConfigurationError(
                f"initial phase {self.initial_phase!r} must be a non-final phase of {list(self.phases)}"
            )
        for source, targets in (self.transitions or {}).items():
            unknown = ({source} | set(targets)) - known
            if unknown:
                raise ConfigurationError(f"transitions name unknown phases {sorted(unknown)}")
            if source in self.final_phases:
                raise ConfigurationError(f"a final phase ({source!r}) cannot move anywhere")
        if self.transitions is not None:
            # Frozen, so a shared lifecycle (DEFAULT_LIFECYCLE) cannot be changed in place.
            frozen = MappingProxyType({k: frozenset(v) for k, v in self.transitions.items()})
            object.__setattr__(self, "transitions", frozen)

    def check_phase(self, phase: object) -> str:
        """Return `phase` if it is valid; raise `InvalidTransitionError` listing the valid ones."""
        if not isinstance(phase, str) or phase not in self.phases:
            raise InvalidTransitionError(
                f"unknown phase {phase!r}; valid phases: {', '.join(self.phases)}"
            )
        return phase

    def check_outcome(self, outcome: object) -> str:
        """Return `outcome` if it is a final phase; raise `InvalidTransitionError` otherwise."""
        if not isinstance(outcome, str) or outcome not in self.final_phases:
            raise InvalidTransitionError(
                f"invalid outcome {outcome!r}; valid outcomes: "
                f"{', '.join(p for p in self.phases if p in self.final_phases)}"
            )
        return outcome

    def next_phases(self, phase: str) -> tuple[str, ...]:
        """The phases `phase` may move to, in `phases` order (final phases included)."""
        if phase in self.final_phases:
            return ()
        if self.transitions is None:
            allowed = {p for p in self.phases if p not in (phase, self.initial_phase)}
        else:
            allowed = set(self.transitions.get(phase, frozenset())) | set(self.final_phases)
        return tuple(p for p in self.phases if p in allowed)

    def check_move(self, from_phase: str, to_phase: object) -> str:
        """Return `to_phase` if the move is allowed.

        Raises:
            InvalidTransitionError: `to_phase` is unknown (the message lists the valid
                phases), equal to `from_phase`, or not an allowed next phase (the message
                lists the allowed ones).
        """
        to = self.check_phase(to_phase)
        if to == from_phase:
            raise InvalidTransitionError(f"the session is already in phase {to!r}")
        allowed = self.next_phases(from_phase)
        if to not in allowed:
            raise InvalidTransitionError(
                f"phase {from_phase!r} cannot move to {to!r}; allowed: "
                f"{', '.join(allowed) or 'none'}"
            )
        return to


DEFAULT_LIFECYCLE = Lifecycle()


def check_create(phase: str | None, lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> None:
    """Check the phase a new session starts in: a known, non-final phase (or `None`).

    Raises:
        InvalidTransitionError: Unknown or final phase.
    """
    if phase is None:
        return
    lifecycle.check_phase(phase)
    if phase in lifecycle.final_phases:
        raise InvalidTransitionError(
            f"a session cannot start in the final phase {phase!r}; finalize it instead"
        )


def check_append(
    session: Session, events: Sequence[NewEvent], lifecycle: Lifecycle = DEFAULT_LIFECYCLE
) -> None:
    """Check that appending `events` to `session` breaks no lifecycle rule.

    Args:
        session: The session as stored now (its status and phase).
        events: The events of one append, in order; each is checked against the status and
            phase the ones before it leave.
        lifecycle: The phase configuration.

    Raises:
        InvalidEventError: A `phase_changed`/`status_changed` without a string `to`, a
            `session_finalized` without a string `outcome` (or with a non-string summary),
            or a `resume_ready` that is not a boolean.
        InvalidTransitionError: Anything appended to a terminated session; a `user_message`
            (a new turn) on a suspended session; a `status_changed` to an unknown status or
            not allowed by `STATUS_TRANSITIONS`; a `phase_changed` to an unknown phase, to the
            current phase or to a phase `lifecycle` does not allow next; a final phase not
            followed by `session_finalized` with that outcome in the same append; a
            `session_finalized` whose outcome is not a final phase or differs from the phase.
    """
    status, phase = session.status, session.phase
    sid = session.id
    for event in events:
        _check_shape(event)
    finalizing: str | None = None
    for event in events:
        kind = event.type
        if status == Status.TERMINATED:
            raise InvalidTransitionError(
                f"session {sid!r} is terminated; nothing more can be appended "
                "(start a new session to continue)"
            )
        data: Mapping[str, Any] = event.data
        if kind == EventType.USER_MESSAGE and status == Status.SUSPENDED:
            raise InvalidTransitionError(
                f"session {sid!r} is suspended; resume it before starting a new turn"
            )
        if finalizing is not None and kind != EventType.SESSION_FINALIZED:
            raise InvalidTransitionError(
                f"phase {finalizing!r} is final: session_finalized must follow it"
            )
        if kind == EventType.PHASE_CHANGED:
            phase = lifecycle.check_move(phase, data.get("to"))
            if phase in lifecycle.final_phases:
                finalizing = phase
        elif kind == EventType.STATUS_CHANGED:
            to = data.get("to")
            if to not in STATUS_TRANSITIONS:
                raise InvalidTransitionError(
                    f"unknown status {to!r}; valid statuses: {', '.join(STATUS_TRANSITIONS)}"
                )
            if to not in STATUS_TRANSITIONS[status]:
                raise InvalidTransitionError(f"session {sid!r} is {status}; it cannot become {to}")
            status = to
        elif kind == EventType.SESSION_FINALIZED:
            outcome = lifecycle.check_outcome(data.get("outcome"))
            if outcome != phase:
                raise InvalidTransitionError(
                    f"finalizing as {outcome!r} needs a phase_changed to {outcome!r} first "
                    "in the same append"
                )
            finalizing = None
            status = Status.TERMINATED.value
    if finalizing is not None:
        raise InvalidTransitionError(
            f"phase {finalizing!r} is final: append session_finalized with it"
        )


_RESUME_READY_TYPES = frozenset({EventType.PHASE_CHANGED, EventType.METADATA_UPDATED})
_TEXT_FIELDS: Mapping[str, tuple[tuple[str, bool], ...]] = {
    EventType.PHASE_CHANGED: (("to", False),),
    EventType.STATUS_CHANGED: (("to", False),),
    EventType.SESSION_FINALIZED: (("outcome", False), ("summary", True)),
}


def _check_shape(event: NewEvent) -> None:
    """Raise `InvalidEventError` if a lifecycle event's fields have the wrong type."""
    for name, optional in _TEXT_FIELDS.get(event.type, ()):
        value = event.data.get(name)
        if not isinstance(value, str) and not (optional and value is None):
            raise InvalidEventError(
                f"{event.type} needs {name!r}: a string{' or null' if optional else ''}, "
                f"not {value!r}"
            )
    if event.type in _RESUME_READY_TYPES and "resume_ready" in event.data:
        if not isinstance(event.data["resume_ready"], bool):
            raise InvalidEventError(
                f"{event.type}: 'resume_ready' must be true or false, "
                f"not {event.data['resume_ready']!r}"
            )


class ResumeReason(StrEnum):
    """Why `should_resume` decided as it did; machine-readable."""

    SESSION_RESUMABLE = "session_resumable"
    NOT_FOUND = "not_found"
    CORRUPTED = "corrupted"
    TERMINATED = "terminated"
    NOT_RESUME_READY = "not_resume_ready"
    PHASE_NOT_RESUMABLE = "phase_not_resumable"
    TIMEOUT_EXCEEDED = "timeout_exceeded"
    TOO_MANY_ERRORS = "too_many_errors"


@dataclass(frozen=True)
class ResumePolicy:
    """When a session may resume (the criteria, in the order they are checked).

    Args:
        resumable_phases: Phases a session may resume in.
        max_idle: The longest time since the last activity (`updated_at`).
        max_errors: A session with this many errors or more does not resume.
        require_resume_ready: Whether `Session.resume_ready` must be true.

    Raises:
        ConfigurationError: A negative `max_idle` or `max_errors` below 1.
    """

    resumable_phases: frozenset[str] = RESUMABLE_PHASES
    max_idle: timedelta = timedelta(minutes=30)
    max_errors: int = 3
    require_resume_ready: bool = True

    def __post_init__(self) -> None:
        if self.max_idle < timedelta(0):
            raise ConfigurationError(f"max_idle must not be negative, not {self.max_idle}")
        if self.max_errors < 1:
            raise ConfigurationError(f"max_errors must be at least 1, not {self.max_errors}")


class ResumeDecision(BaseModel):
    """The answer of `should_resume`: whether, why, and what a resumed agent needs.

    Truthy exactly when `resume` is true, so `if manager.should_resume(id):` reads
    naturally. The context fields are `None`/empty when the session is not found or corrupted.

    Attributes:
        session_id: The session asked about.
        resume: Whether the session may resume.
        reason: The first failed criterion, or `session_resumable`.
        detail: A sentence for people (for example, how long the session has been idle).
        version: The session's version the decision was made on (pass it to
            `SessionManager.resume(expected_version=)`).
        agent_name: The agent the session belongs to.
        status, previous_phase: The session's status and phase now.
        created_at, updated_at: Creation and last activity (UTC).
        idle_seconds: Seconds since the last activity, at decision time.
        error_count: Errors recorded so far.
        phase_history: Every phase transition (from, to, timestamp).
        metadata: The session's merged metadata.
    """

    model_config = ConfigDict(frozen=True)

    session_id: str
    resume: bool
    reason: ResumeReason
    detail: str
    version: int | None = None
    agent_name: str | None = None
    status: str | None = None
    previous_phase: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    idle_seconds: float | None = None
    error_count: int | None = None
    phase_history: list[PhaseTransition] = []
    metadata: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return self.resume


def decide_resume(session: Session, policy: ResumePolicy, now: datetime) -> ResumeDecision:
    """Apply the resume policy to a session that exists and loads cleanly.

    Args:
        session: The session.
        policy: The criteria.
        now: The current time (aware, UTC); injected so tests never sleep.

    Returns:
        The decision. Criteria in order: not terminated, `resume_ready` (if required),
        resumable phase, idle time within `max_idle` (equal is still within), fewer than
        `max_errors` errors. A suspended session that meets them may resume.
    """
    idle = now - session.updated_at
    reason = ResumeReason.SESSION_RESUMABLE
    errors = f"{session.error_count} error{'' if session.error_count == 1 else 's'}"
    detail = f"phase {session.phase!r}, idle {_human(idle)}, {errors}"
    if session.status == Status.TERMINATED:
        reason = ResumeReason.TERMINATED
        detail = f"the session is terminated (outcome {session.outcome or 'none'})"
    elif policy.require_resume_ready and not session.resume_ready:
        reason, detail = ResumeReason.NOT_RESUME_READY, "the session is not marked resume_ready"
    elif session.phase not in policy.resumable_phases:
        reason = ResumeReason.PHASE_NOT_RESUMABLE
        detail = (
            f"phase {session.phase!r} is not resumable (resumable: "
            f"{', '.join(sorted(policy.resumable_phases))})"
        )
    elif idle > policy.max_idle:
        reason = ResumeReason.TIMEOUT_EXCEEDED
        detail = f"idle {_human(idle)}, longer than max_idle {_human(policy.max_idle)}"
    elif session.error_count >= policy.max_errors:
        reason = ResumeReason.TOO_MANY_ERRORS
        detail = f"{errors}, max_errors is {policy.max_errors}"
    return ResumeDecision(
        session_id=session.id,
        resume=reason == ResumeReason.SESSION_RESUMABLE,
        reason=reason,
        detail=detail,
        version=session.version,
        agent_name=session.agent_name,
        status=session.status,
        previous_phase=session.phase,
        created_at=session.created_at,
        updated_at=session.updated_at,
        idle_seconds=idle.total_seconds(),
        error_count=session.error_count,
        phase_history=list(session.phase_history),
        metadata=dict(session.metadata),
    )


def _human(delta: timedelta) -> str:
    return format_duration(delta.total_seconds())


def format_duration(seconds: float | None) -> str:
    """Format a duration: `42.0s`, `12m 05s`, `3h 02m`, `2d 04h`; `-` for `None`.

    The one format of durations everywhere: resume details, the CLI's idle times, session
    durations and metrics.

    Args:
        seconds: The duration in seconds (negative values are shown as 0).
    """
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3_600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3_600}h {whole % 3_600 // 60:02d}m"
    return f"{whole // 86_400}d {whole % 86_400 // 3_600:02d}h"
