"""The lifecycle rules in core, pure: every phase and status move, every resume reason.

The same rules run inside every store's append; `agentledger.testing._lifecycle` checks them
there on every backend.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import product
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.core.lifecycle import (
    DEFAULT_LIFECYCLE,
    DEFAULT_TRANSITIONS,
    STATUS_TRANSITIONS,
    Lifecycle,
    ResumePolicy,
    ResumeReason,
    check_append,
    check_create,
    decide_resume,
)
from agentledger.core.session import DEFAULT_PHASES, FINAL_PHASES, Session
from agentledger.errors import ConfigurationError, InvalidEventError, InvalidTransitionError

T0 = datetime(2026, 1, 8, 18, 5, 30, tzinfo=timezone.utc)
NON_FINAL = [p for p in DEFAULT_PHASES if p not in FINAL_PHASES]


def session(**fields: Any) -> Session:
    values: dict[str, Any] = {
        "id": "s1",
        "app_name": "a",
        "user_id": "u",
        "created_at": T0,
        "updated_at": T0,
        "version": 3,
    }
    values.update(fields)
    return Session(**values)


def ev(kind: str, **data: Any) -> NewEvent:
    return NewEvent(type=kind, data=data)


def phase(to: str) -> NewEvent:
    return ev("phase_changed", to=to)


def finalized(outcome: str) -> NewEvent:
    return ev("session_finalized", outcome=outcome)


# -- phases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), list(product(NON_FINAL, DEFAULT_PHASES)))
def test_every_default_phase_move(source: str, target: str) -> None:
    allowed = target in DEFAULT_TRANSITIONS[source] or target in FINAL_PHASES
    batch = [phase(target), finalized(target)] if target in FINAL_PHASES else [phase(target)]
    if allowed:
        check_append(session(phase=source), batch)
    else:
        with pytest.raises(InvalidTransitionError):
            check_append(session(phase=source), batch)


def test_seed_003_workflows_are_allowed() -> None:
    for path in (
        ["planning", "approval", "executing", "completed"],
        ["investigating", "planning", "executing", "validating", "completed"],
        ["approval", "planning", "approval", "executing", "failed"],
    ):
        current = "initializing"
        for to in path:
            batch = [phase(to), finalized(to)] if to in FINAL_PHASES else [phase(to)]
            check_append(session(phase=current), batch)
            current = to


def test_unknown_phase_message_lists_the_valid_phases() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        check_append(session(), [phase("dreaming")])
    assert str(info.value) == (
        "unknown phase 'dreaming'; valid phases: initializing, investigating, planning, "
        "approval, executing, validating, completed, failed, abandoned"
    )


def test_disallowed_move_message_lists_the_allowed_ones() -> None:
    with pytest.raises(InvalidTransitionError, match="allowed: planning, executing, completed"):
        check_append(session(phase="approval"), [phase("investigating")])


def test_same_phase_is_refused() -> None:
    with pytest.raises(InvalidTransitionError, match="already in phase 'planning'"):
        check_append(session(phase="planning"), [phase("planning")])


def test_moves_are_checked_in_order_within_one_append() -> None:
    check_append(session(), [phase("planning"), phase("approval"), phase("executing")])
    with pytest.raises(InvalidTransitionError):
        check_append(session(), [phase("planning"), phase("validating")])


def test_final_phase_needs_session_finalized_right_after() -> None:
    for batch in (
        [phase("completed")],
        [phase("completed"), ev("user_message"), finalized("completed")],
        [finalized("completed")],
        [phase("completed"), finalized("failed")],
    ):
        with pytest.raises(InvalidTransitionError):
            check_append(session(), batch)


def test_outcome_must_be_a_final_phase() -> None:
    with pytest.raises(InvalidTransitionError, match="valid outcomes: completed, failed, abandoned"):
        check_append(session(), [phase("planning"), finalized("planning")])


@pytest.mark.parametrize(
    "event",
    [
        ev("phase_changed"),
        ev("phase_changed", to=5),
        ev("status_changed", to=None),
        ev("session_finalized"),
        ev("session_finalized", outcome="completed", summary=5),
    ],
)
def test_malformed_lifecycle_events_are_invalid_events(event: NewEvent) -> None:
    with pytest.raises(InvalidEventError):
        check_append(session(), [event])


def test_create_phase() -> None:
    check_create(None)
    check_create("approval")
    with pytest.raises(InvalidTransitionError, match="valid phases"):
        check_create("dreaming")
    with pytest.raises(InvalidTransitionError, match="final"):
        check_create("completed")


# -- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"), list(product(STATUS_TRANSITIONS, STATUS_TRANSITIONS))
)
def test_every_status_move(source: str, target: str) -> None:
    batch = [ev("status_changed", to=target)]
    expected = {
        ("active", "active"), ("active", "suspended"), ("active", "terminated"),
        ("suspended", "active"), ("suspended", "terminated"),
    }
    if (source, target) in expected:
        check_append(session(status=source), batch)
    else:
        with pytest.raises(InvalidTransitionError):
            check_append(session(status=source), batch)


def test_unknown_status() -> None:
    with pytest.raises(InvalidTransitionError, match="valid statuses: active, suspended, terminated"):
        check_append(session(), [ev("status_changed", to="paused")])


@pytest.mark.parametrize(
    "event",
    [ev("user_message"), ev("error", message="x"), ev("metadata_updated", metadata={}),
     ev("myplugin.note"), phase("planning")],
)
def test_terminated_refuses_everything(event: NewEvent) -> None:
    with pytest.raises(InvalidTransitionError, match="terminated"):
        check_append(session(status="terminated"), [event])


def test_nothing_may_follow_termination_in_the_same_append() -> None:
    with pytest.raises(InvalidTransitionError, match="terminated"):
        check_append(session(), [ev("status_changed", to="terminated"), ev("user_message")])
    with pytest.raises(InvalidTransitionError, match="terminated"):
        check_append(session(), [phase("failed"), finalized("failed"), ev("error")])


def test_suspended_refuses_only_a_new_turn() -> None:
    suspended = session(status="suspended")
    with pytest.raises(InvalidTransitionError, match="resume it"):
        check_append(suspended, [ev("user_message")])
    check_append(suspended, [ev("tool_result"), ev("agent_message"), phase("planning")])
    check_append(suspended, [ev("status_changed", to="active"), ev("user_message")])


# -- configuration ----------------------------------------------------------------------------


def test_custom_lifecycle() -> None:
    custom = Lifecycle(
        phases=("draft", "review", "published", "rejected"),
        final_phases=frozenset({"published", "rejected"}),
        initial_phase="draft",
        transitions={"draft": frozenset({"review"}), "review": frozenset({"draft"})},
    )
    check_append(session(phase="draft"), [phase("review")], custom)
    check_append(session(phase="review"), [phase("published"), finalized("published")], custom)
    with pytest.raises(InvalidTransitionError, match="valid phases: draft, review"):
        check_append(session(phase="draft"), [phase("planning")], custom)
    assert custom.next_phases("draft") == ("review", "published", "rejected")


def test_free_transitions() -> None:
    free = Lifecycle(transitions=None)
    assert "initializing" not in free.next_phases("approval")
    assert "validating" in free.next_phases("approval")
    assert free.next_phases("completed") == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"final_phases": frozenset({"nope"})},
        {"final_phases": frozenset()},
        {"initial_phase": "completed"},
        {"initial_phase": "nope"},
        {"transitions": {"planning": frozenset({"nope"})}},
    ],
)
def test_bad_lifecycle_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Lifecycle(**kwargs)


def test_default_lifecycle_is_the_design() -> None:
    assert DEFAULT_LIFECYCLE.phases == DEFAULT_PHASES
    assert DEFAULT_LIFECYCLE.final_phases == FINAL_PHASES


# -- resume policy ----------------------------------------------------------------------------

POLICY = ResumePolicy()


@pytest.mark.parametrize(
    ("fields", "idle", "reason"),
    [
        ({"phase": "approval"}, timedelta(minutes=10), ResumeReason.SESSION_RESUMABLE),
        ({"phase": "investigating"}, timedelta(0), ResumeReason.SESSION_RESUMABLE),
        ({"phase": "planning", "status": "suspended"}, timedelta(0), ResumeReason.SESSION_RESUMABLE),
        ({"phase": "approval"}, timedelta(minutes=30), ResumeReason.SESSION_RESUMABLE),
        ({"phase": "approval"}, timedelta(minutes=30, microseconds=1), ResumeReason.TIMEOUT_EXCEEDED),
        ({"phase": "executing"}, timedelta(0), ResumeReason.PHASE_NOT_RESUMABLE),
        ({"phase": "initializing"}, timedelta(0), ResumeReason.PHASE_NOT_RESUMABLE),
        ({"phase": "approval", "resume_ready": False}, timedelta(0), ResumeReason.NOT_RESUME_READY),
        ({"phase": "approval", "error_count": 2}, timedelta(0), ResumeReason.SESSION_RESUMABLE),
        ({"phase": "approval", "error_count": 3}, timedelta(0), ResumeReason.TOO_MANY_ERRORS),
        ({"phase": "completed", "status": "terminated"}, timedelta(0), ResumeReason.TERMINATED),
        ({"phase": "approval", "status": "terminated"}, timedelta(0), ResumeReason.TERMINATED),
        # criteria are checked in seed 003's order: the first failing one is the reason
        ({"phase": "executing", "error_count": 5}, timedelta(hours=2), ResumeReason.PHASE_NOT_RESUMABLE),
        ({"phase": "approval", "error_count": 5}, timedelta(hours=2), ResumeReason.TIMEOUT_EXCEEDED),
    ],
)
def test_resume_reasons(fields: dict[str, Any], idle: timedelta, reason: ResumeReason) -> None:
    decision = decide_resume(session(**fields), POLICY, T0 + idle)
    assert decision.reason == reason
    assert decision.resume is bool(decision) is (reason == ResumeReason.SESSION_RESUMABLE)
    assert decision.idle_seconds == idle.total_seconds()
    assert decision.previous_phase == fields["phase"]


def test_custom_policy() -> None:
    policy = ResumePolicy(
        resumable_phases=frozenset({"executing"}),
        max_idle=timedelta(hours=2),
        max_errors=1,
        require_resume_ready=False,
    )
    s = session(phase="executing", resume_ready=False)
    assert decide_resume(s, policy, T0 + timedelta(hours=1)).resume
    assert decide_resume(s.model_copy(update={"error_count": 1}), policy, T0).reason == (
        ResumeReason.TOO_MANY_ERRORS
    )


@pytest.mark.parametrize("kwargs", [{"max_idle": timedelta(seconds=-1)}, {"max_errors": 0}])
def test_bad_policy(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ResumePolicy(**kwargs)


def test_decision_carries_the_resume_context() -> None:
    s = session(phase="approval", metadata={"plan_file": "plan.json"}, error_count=1)
    decision = decide_resume(s, POLICY, T0 + timedelta(minutes=5))
    dumped = decision.model_dump(mode="json")
    assert dumped["reason"] == "session_resumable"
    assert dumped["metadata"] == {"plan_file": "plan.json"}
    assert dumped["created_at"] == "2026-01-08T18:05:30Z"
    assert (dumped["error_count"], dumped["idle_seconds"]) == (1, 300.0)
