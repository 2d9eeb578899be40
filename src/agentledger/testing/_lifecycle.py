"""Conformance: the session lifecycle (statuses, phases, resume policy, finalize, retention)
through `SessionManager`, on the store under test.

Each check opens the store with a `FakeClock`, so event timestamps, idle times and durations
are exact and nothing sleeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.core.lifecycle import Lifecycle, ResumeReason
from agentledger.core.session import Session
from agentledger.errors import (
    InvalidEventError,
    InvalidTransitionError,
    SessionNotFoundError,
)
from agentledger.manager import SessionManager
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["FakeClock", "LifecycleConformance"]


class FakeClock:
    """A clock for tests: returns `now` (aware, UTC) until `advance` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 8, 18, 5, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward by `timedelta(**delta)` (`advance(minutes=10)`); return the new now."""
        self.now += timedelta(**delta)
        return self.now


class LifecycleConformance(ConformanceBase):
    """Lifecycle rules hold on the store, whoever writes, and nothing is written when not."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def manager(self, make_store: StoreFactory, clock: FakeClock) -> SessionManager:
        self.require_injectable_clock(make_store)
        return SessionManager(make_store(clock=clock), clock=clock, app_name=self.unique("app"))

    def _new(self, manager: SessionManager, **kwargs: Any) -> Session:
        return manager.create_session(kwargs.pop("agent_name", "terraform-architect"), **kwargs)

    # -- one clock stamps and decides ---------------------------------------------------------

    def _approval_pause(self, manager: SessionManager, clock: FakeClock) -> Session:
        session = self._new(manager, purpose="approval_workflow")
        clock.advance(minutes=1)
        manager.update_state(session.id, phase="planning")
        clock.advance(minutes=1)
        return manager.update_state(session.id, phase="approval")

    def _assert_on_clock(
        self, manager: SessionManager, clock: FakeClock, session: Session, start: datetime
    ) -> None:
        """Events stamped by `clock`, and the resume decision measured on it."""
        stamps = [e.timestamp for e in manager.store.read_events(session.id)]
        assert stamps == [start, start + timedelta(minutes=1), start + timedelta(minutes=2)]
        assert (session.created_at, session.updated_at) == (stamps[0], stamps[-1])
        clock.advance(minutes=10)
        decision = manager.should_resume(session.id)
        assert decision.resume, decision.detail
        assert decision.idle_seconds == 600
        clock.advance(minutes=21)
        late = manager.should_resume(session.id)
        assert late.reason == ResumeReason.TIMEOUT_EXCEEDED
        assert late.idle_seconds == 31 * 60
        done = manager.finalize_session(session.id, "completed")
        assert done.finalized_at == clock.now
        assert done.duration_seconds == (clock.now - start).total_seconds()

    def test_the_manager_uses_the_stores_clock(self, make_store: StoreFactory) -> None:
        clock = FakeClock()
        self.require_injectable_clock(make_store)
        manager = SessionManager(make_store(clock=clock), app_name=self.unique("app"))
        start = clock.now
        self._assert_on_clock(manager, clock, self._approval_pause(manager, clock), start)

    def test_a_clock_given_to_the_manager_decides_but_never_stamps(
        self, make_store: StoreFactory
    ) -> None:
        """The store keeps the real time and stamps every event; the manager's own clock
        (here years in the past) only measures idle times and cut-offs, so it cannot make
        a live session look old to retention."""
        clock = FakeClock(datetime(2023, 1, 1, tzinfo=timezone.utc))
        manager = SessionManager(make_store(), clock=clock, app_name=self.unique("app"))
        before = datetime.now(timezone.utc) - timedelta(minutes=5)
        session = manager.create_session("helper", "approval_workflow")
        manager.update_state(session.id, phase="approval")
        events = manager.store.read_events(session.id)
        assert all(e.timestamp > before and "timestamp" not in e.data for e in events)
        assert manager.get_session(session.id).created_at > before
        assert manager.cleanup(timedelta(hours=1)).session_ids == []

    # -- two example workflows -------------------------------------------------------------

    def test_approval_workflow(self, manager: SessionManager, clock: FakeClock) -> None:
        """Example 1: plan, pause for approval, resume, execute, finalize."""
        session = manager.create_session(
            "terraform-architect", "approval_workflow", {"task_id": "T001", "workspace": "prod"}
        )
        assert (session.status, session.phase, session.version) == ("active", "initializing", 1)
        assert manager.should_resume(session.id).reason == ResumeReason.PHASE_NOT_RESUMABLE

        clock.advance(minutes=1)
        manager.update_state(session.id, phase="planning", metadata={"plan_file": "plan.json"})
        assert manager.should_resume(session.id).reason == ResumeReason.SESSION_RESUMABLE
        clock.advance(minutes=1)
        manager.update_state(session.id, phase="approval")

        clock.advance(minutes=10)  # the user approves ten minutes later
        decision = manager.should_resume(session.id)
        assert decision.resume and bool(decision)
        assert decision.reason == ResumeReason.SESSION_RESUMABLE
        assert decision.previous_phase == "approval"
        assert decision.idle_seconds == 600
        assert decision.created_at == session.created_at
        assert decision.metadata == {"task_id": "T001", "workspace": "prod", "plan_file": "plan.json"}
        assert [(t.from_phase, t.to_phase) for t in decision.phase_history] == [
            ("initializing", "planning"),
            ("planning", "approval"),
        ]
        manager.resume(session.id)

        manager.update_state(session.id, phase="executing")
        assert manager.should_resume(session.id).reason == ResumeReason.PHASE_NOT_RESUMABLE
        clock.advance(minutes=3)
        done = manager.finalize_session(session.id, "completed", "Terraform applied successfully")
        assert (done.status, done.phase, done.outcome) == ("terminated", "completed", "completed")
        assert done.summary == "Terraform applied successfully"
        assert done.finalized_at == clock.now
        assert done.duration_seconds == 15 * 60
        assert done.resume_count == 1
        assert [t.to_phase for t in done.phase_history] == [
            "planning", "approval", "executing", "completed"
        ]
        assert manager.should_resume(session.id).reason == ResumeReason.TERMINATED

    def test_multi_turn_investigation(self, manager: SessionManager, clock: FakeClock) -> None:
        """Example 2: findings accumulate across turns, then plan and execute."""
        sid = manager.create_session(
            "gitops-operator", "investigation", {"issue": "pod-crash-loop"}
        ).id
        manager.update_state(
            sid, phase="investigating", metadata={"findings": ["OOMKilled", "resource limits"]}
        )
        for turn in range(2):
            clock.advance(minutes=5)
            decision = manager.should_resume(sid)
            assert decision.reason == ResumeReason.SESSION_RESUMABLE, turn
            previous = manager.get_session(sid).metadata["findings"]
            manager.update_state(sid, metadata={"findings": [*previous, f"finding {turn}"]})
        clock.advance(minutes=5)
        manager.update_state(sid, phase="planning", metadata={"solution": "increase memory limits"})
        manager.update_state(sid, phase="executing")
        done = manager.finalize_session(sid, "completed", "Fixed pod crash loop")
        assert done.metadata == {
            "issue": "pod-crash-loop",
            "findings": ["OOMKilled", "resource limits", "finding 0", "finding 1"],
            "solution": "increase memory limits",
        }
        assert done.duration_seconds == 15 * 60
        assert [t.to_phase for t in done.phase_history] == [
            "investigating", "planning", "executing", "completed"
        ]

    # -- resume reasons -----------------------------------------------------------------

    def test_timeout_exceeded(self, manager: SessionManager, clock: FakeClock) -> None:
        sid = self._new(manager, phase="approval").id
        clock.advance(minutes=30)
        assert manager.should_resume(sid).reason == ResumeReason.SESSION_RESUMABLE
        clock.advance(seconds=1)
        decision = manager.should_resume(sid)
        assert (decision.resume, decision.reason) == (False, ResumeReason.TIMEOUT_EXCEEDED)
        assert decision.idle_seconds == 30 * 60 + 1

    def test_too_many_errors(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="investigating").id
        for n in (1, 2):
            session = manager.update_state(sid, error=f"boom {n}")
            assert manager.should_resume(sid).resume
        session = manager.update_state(sid, error="boom 3")
        assert (session.error_count, session.last_error) == (3, "boom 3")
        decision = manager.should_resume(sid)
        assert (decision.resume, decision.reason) == (False, ResumeReason.TOO_MANY_ERRORS)
        assert decision.error_count == 3

    def test_not_resume_ready(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="approval").id
        manager.update_state(sid, resume_ready=False)
        assert manager.should_resume(sid).reason == ResumeReason.NOT_RESUME_READY
        manager.update_state(sid, phase="planning", resume_ready=True)
        assert manager.should_resume(sid).reason == ResumeReason.SESSION_RESUMABLE

    def test_not_found(self, manager: SessionManager) -> None:
        decision = manager.should_resume("no-such-session")
        assert (decision.resume, decision.reason) == (False, ResumeReason.NOT_FOUND)

    def test_suspended_session_may_resume(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="approval").id
        manager.suspend(sid, reason="waiting for approval")
        decision = manager.should_resume(sid)
        assert (decision.resume, decision.status) == (True, "suspended")
        assert manager.resume(sid).status == "active"

    # -- transition rules: refused, and nothing written -------------------------------------

    def _refused(self, manager: SessionManager, sid: str, call: Any, match: str) -> None:
        before = self.record(manager.store, sid)
        with pytest.raises(InvalidTransitionError, match=match):
            call()
        assert self.record(manager.store, sid) == before

    def test_unknown_phase_lists_the_valid_ones(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        self._refused(
            manager,
            sid,
            lambda: manager.update_state(sid, phase="dreaming", metadata={"x": 1}),
            "valid phases: initializing, investigating, planning, approval",
        )

    def test_disallowed_phase_move(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="approval").id
        self._refused(
            manager,
            sid,
            lambda: manager.update_state(sid, phase="validating", error="late"),
            "'approval' cannot move to 'validating'; allowed: planning, executing",
        )
        self._refused(
            manager, sid, lambda: manager.update_state(sid, phase="initializing"), "cannot move"
        )

    def test_same_phase_is_a_no_op(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="planning").id
        assert manager.update_state(sid, phase="planning").version == 1

    def test_final_phase_finalizes(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="executing").id
        session = manager.update_state(sid, phase="failed", summary="apply failed")
        assert (session.status, session.outcome, session.summary) == (
            "terminated", "failed", "apply failed"
        )
        assert session.finalized_at is not None

    def test_final_phase_needs_session_finalized(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        self._refused(
            manager,
            sid,
            lambda: manager.store.append(sid, [NewEvent(type="phase_changed", data={"to": "completed"})]),
            "session_finalized",
        )
        self._refused(
            manager,
            sid,
            lambda: manager.store.append(
                sid, [NewEvent(type="session_finalized", data={"outcome": "completed"})]
            ),
            "phase_changed",
        )

    def test_invalid_outcome(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        self._refused(
            manager,
            sid,
            lambda: manager.finalize_session(sid, "success"),
            "valid outcomes: completed, failed, abandoned",
        )

    def test_terminated_session_refuses_everything(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        manager.finalize_session(sid, "abandoned")
        for call in (
            lambda: manager.resume(sid),
            lambda: manager.suspend(sid),
            lambda: manager.terminate(sid),
            lambda: manager.finalize_session(sid, "completed"),
            lambda: manager.update_state(sid, metadata={"late": True}),
            lambda: manager.update_state(sid, error="late"),
            lambda: manager.store.append(sid, [msg("a user turn")]),
        ):
            self._refused(manager, sid, call, "terminated")

    def test_terminate_without_outcome(self, manager: SessionManager) -> None:
        sid = self._new(manager, phase="planning").id
        session = manager.terminate(sid, reason="user quit")
        assert (session.status, session.phase, session.outcome) == ("terminated", "planning", None)
        self._refused(manager, sid, lambda: manager.resume(sid), "terminated")

    def test_suspended_session_refuses_a_new_turn(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        manager.suspend(sid)
        self._refused(manager, sid, lambda: manager.store.append(sid, [msg()]), "suspended")
        self._refused(manager, sid, lambda: manager.suspend(sid), "cannot become suspended")
        # Other events (an in-flight turn's results, metadata) are still recorded.
        manager.update_state(sid, metadata={"note": "kept"})
        manager.resume(sid)
        assert manager.store.append(sid, [msg()])[0].seq == 5

    def test_unknown_status(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        self._refused(
            manager,
            sid,
            lambda: manager.store.append(sid, [NewEvent(type="status_changed", data={"to": "paused"})]),
            "valid statuses: active, suspended, terminated",
        )

    def test_unknown_or_final_initial_phase(self, manager: SessionManager) -> None:
        for phase, match in (("dreaming", "valid phases"), ("completed", "final phase")):
            with pytest.raises(InvalidTransitionError, match=match):
                self._new(manager, phase=phase)
        assert manager.list_sessions().sessions == []

    def test_a_custom_lifecycle(self, make_store: StoreFactory, clock: FakeClock) -> None:
        review = Lifecycle(
            phases=("draft", "review", "published", "rejected"),
            final_phases=frozenset({"published", "rejected"}),
            initial_phase="draft",
            transitions={"draft": frozenset({"review"}), "review": frozenset({"draft"})},
        )
        self.require_injectable_clock(make_store)
        manager = SessionManager(make_store(clock=clock, lifecycle=review), clock=clock)
        sid = manager.create_session("editor").id
        assert manager.get_session(sid).phase == "draft"  # the lifecycle's initial phase
        assert manager.update_state(sid, phase="review").phase == "review"
        self._refused(
            manager, sid, lambda: manager.update_state(sid, phase="planning"),
            "valid phases: draft, review, published, rejected",
        )
        assert manager.finalize_session(sid, "published").status == "terminated"

    def test_resume_counts(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        manager.suspend(sid)
        manager.resume(sid)
        assert manager.resume(sid).resume_count == 2

    # -- metadata and errors ------------------------------------------------------------

    def test_metadata_merges(self, manager: SessionManager) -> None:
        sid = self._new(manager, metadata={"a": {"x": 1, "y": 2}, "tags": ["t"]}).id
        session = manager.update_state(sid, metadata={"a": {"y": 3, "z": 4}, "b": 5})
        assert session.metadata == {"a": {"x": 1, "y": 3, "z": 4}, "tags": ["t"], "b": 5}
        session = manager.update_state(sid, metadata={"a": {"x": None}, "tags": ["u"]})
        assert session.metadata == {"a": {"y": 3, "z": 4}, "tags": ["u"], "b": 5}

    def test_update_is_one_append(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        manager.update_state(sid, phase="investigating", metadata={"m": 1}, error="oops")
        events = manager.store.read_events(sid)
        assert [e.type for e in events] == [
            "session_created", "metadata_updated", "error", "phase_changed"
        ]
        assert len({e.timestamp for e in events[1:]}) == 1

    def test_bad_update_values(self, manager: SessionManager) -> None:
        sid = self._new(manager).id
        before = self.record(manager.store, sid)
        for kwargs in ({"metadata": ["not", "an", "object"]}, {"error": 5}, {"summary": "s"}):
            with pytest.raises(InvalidEventError):
                manager.update_state(sid, **kwargs)
        with pytest.raises(InvalidEventError):
            manager.create_session("")
        assert self.record(manager.store, sid) == before

    def test_unknown_session(self, manager: SessionManager) -> None:
        with pytest.raises(SessionNotFoundError):
            manager.update_state("nope", phase="planning")
        with pytest.raises(SessionNotFoundError):
            manager.finalize_session("nope", "completed")
        with pytest.raises(SessionNotFoundError):
            manager.suspend("nope")

    # -- listing, retention, stats ------------------------------------------------------

    def test_listing_filters(self, manager: SessionManager, clock: FakeClock) -> None:
        a = self._new(manager, agent_name="alpha").id
        clock.advance(seconds=1)
        b = self._new(manager, agent_name="beta").id
        clock.advance(seconds=1)
        c = self._new(manager, agent_name="alpha").id
        manager.suspend(b)
        manager.finalize_session(c, "completed")

        def ids(**filters: Any) -> list[str]:
            return [s.id for p in manager.iter_sessions(page_size=1, **filters) for s in p.sessions]

        assert ids() == [c, b, a]
        assert ids(active_only=True) == [a]
        assert ids(agent_name="alpha") == [c, a]
        assert ids(active_only=True, agent_name="beta") == []
        assert ids(status="suspended") == [b]
        assert ids(phase="completed") == [c]

    def test_cleanup(self, manager: SessionManager, clock: FakeClock) -> None:
        old = [self._new(manager).id for _ in range(5)]
        manager.finalize_session(old[0], "completed")
        manager.terminate(old[1])
        clock.advance(hours=25)
        recent = self._new(manager).id

        dry = manager.cleanup(timedelta(hours=24), dry_run=True)
        assert (sorted(dry.session_ids), dry.dry_run) == (sorted(old), True)
        assert len(manager.list_sessions().sessions) == 6

        finalized = manager.cleanup(timedelta(hours=24), only_finalized=True, batch_size=1)
        assert sorted(finalized.session_ids) == sorted(old[:2])
        progress: list[int] = []
        rest = manager.cleanup(timedelta(hours=24), batch_size=2, on_progress=progress.append)
        assert sorted(rest.session_ids) == sorted(old[2:])
        assert progress == [1, 2, 3]
        assert [s.id for s in manager.list_sessions().sessions] == [recent]
        assert manager.cleanup(timedelta(hours=24)).count == 0

    def test_cleanup_keeps_a_session_that_changes_after_it_was_listed(
        self, manager: SessionManager, clock: FakeClock
    ) -> None:
        """Retention lists, then deletes: an append landing in between is never lost."""
        old = [self._new(manager).id for _ in range(3)]
        clock.advance(hours=25)
        listed = manager.iter_sessions

        def list_then_someone_appends(**filters: Any) -> Any:
            for page in listed(**filters):
                manager.store.append(old[1], [msg("just in time")])
                yield page

        manager.iter_sessions = list_then_someone_appends  # type: ignore[method-assign]
        result = manager.cleanup(timedelta(hours=24))
        assert sorted(result.session_ids) == sorted([old[0], old[2]])
        assert result.skipped_changed == [old[1]]
        assert manager.get_session(old[1]).version == 2

    def test_stats(self, manager: SessionManager, clock: FakeClock) -> None:
        durations = {"a": 60, "b": 120, "c": 600}
        for agent, seconds in durations.items():
            sid = self._new(manager, agent_name=agent).id
            clock.advance(seconds=seconds)
            manager.finalize_session(sid, "completed" if agent != "c" else "failed")
        sid = self._new(manager, agent_name="a", phase="approval").id
        manager.update_state(sid, error="boom")
        manager.suspend(sid)
        manager.resume(sid)
        stats = manager.stats()
        assert stats.total == 4
        assert stats.by_status == {"terminated": 3, "active": 1}
        assert stats.by_phase == {"completed": 2, "failed": 1, "approval": 1}
        assert stats.by_agent == {"a": 2, "b": 1, "c": 1}
        assert (stats.resume_rate, stats.error_rate) == (0.25, 0.25)
        assert (stats.median_duration_seconds, stats.p95_duration_seconds) == (120, 600)
        assert stats.finalized == 3
