"""`agentledger.manager`: seed 003's module-level functions on the default store, and the
manager's configuration. The lifecycle itself is checked on every store by the conformance
suite (`agentledger.testing._lifecycle`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agentledger import manager as api
from agentledger.core.lifecycle import Lifecycle, ResumePolicy, ResumeReason
from agentledger.errors import ConfigurationError, InvalidTransitionError
from agentledger.manager import SessionManager
from agentledger.stores.base import open_store
from agentledger.testing import FakeClock


@pytest.fixture
def default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/default.db"
    monkeypatch.setenv("AGENTLEDGER_STORE", url)
    monkeypatch.setattr(api, "_default", None)
    yield url
    if api._default is not None:
        api._default.store.close()


def test_seed_003_function_api(default_store: str) -> None:
    agent_id = api.create_session(
        agent_name="terraform-architect",
        purpose="approval_workflow",
        metadata={"task_id": "T001", "workspace": "prod"},
    )
    assert api.update_state(agent_id, phase="planning", metadata={"plan_file": "plan.json"})
    assert api.update_state(agent_id, phase="approval")
    decision = api.should_resume(agent_id)
    assert decision and decision.reason == "session_resumable"
    assert decision.metadata["plan_file"] == "plan.json"
    session = api.get_session(agent_id)
    assert session is not None
    assert (session["phase"], session["agent_name"], session["status"]) == (
        "approval", "terraform-architect", "active"
    )
    assert [h["to_phase"] for h in session["phase_history"]] == ["planning", "approval"]
    assert [s["id"] for s in api.list_sessions(active_only=True)] == [agent_id]
    assert api.list_sessions(agent_name="someone-else") == []
    assert api.update_state(agent_id, phase="executing")
    assert api.finalize_session(agent_id, outcome="completed", summary="Terraform applied")
    assert api.list_sessions(active_only=True) == []
    assert api.get_session("agent-missing") is None
    assert not api.should_resume("agent-missing")
    assert api.cleanup_old_sessions(hours=24) == 0
    assert api.cleanup_old_sessions(hours=0) == 1
    # the data is in the default store, where the CLI finds it
    with open_store(default_store) as store:
        assert store.list_sessions().sessions == []


def test_invalid_phase_raises(default_store: str) -> None:
    agent_id = api.create_session("a", "p", {})
    with pytest.raises(InvalidTransitionError, match="valid phases"):
        api.update_state(agent_id, phase="nope")


def test_store_with_a_custom_lifecycle(tmp_path: Path) -> None:
    review = Lifecycle(
        phases=("draft", "review", "published", "rejected"),
        final_phases=frozenset({"published", "rejected"}),
        initial_phase="draft",
        transitions={"draft": frozenset({"review"}), "review": frozenset({"draft"})},
    )
    with open_store(f"sqlite:///{tmp_path}/x.db", lifecycle=review) as store:
        manager = SessionManager(
            store, policy=ResumePolicy(resumable_phases=frozenset({"review"}))
        )
        sid = manager.create_session("editor", phase="draft").id
        manager.update_state(sid, phase="review")
        assert manager.should_resume(sid).reason == ResumeReason.SESSION_RESUMABLE
        with pytest.raises(InvalidTransitionError, match="valid phases: draft, review"):
            manager.update_state(sid, phase="planning")
        assert manager.finalize_session(sid, "published").phase == "published"


def test_bad_manager_arguments() -> None:
    with open_store("memory://") as store:
        manager = SessionManager(store, clock=FakeClock())
        with pytest.raises(ConfigurationError):
            manager.list_sessions(active_only=True, status="terminated")
        with pytest.raises(ConfigurationError):
            manager.cleanup(timedelta(hours=-1))
        with pytest.raises(ConfigurationError):
            open_store("memory://", lifecycle="not a lifecycle")


def test_stats_of_an_empty_store() -> None:
    with open_store("memory://") as store:
        stats = SessionManager(store).stats()
    assert (stats.total, stats.resume_rate, stats.median_duration_seconds) == (0, 0.0, None)


def test_review_fixes_on_the_manager() -> None:
    from agentledger.core.events import NewEvent
    from agentledger.errors import ConcurrencyError, InvalidEventError

    clock = FakeClock()
    with open_store("memory://", clock=clock) as store:
        manager = SessionManager(store, clock=clock)
        sid = manager.create_session("a", phase="approval").id
        # a resume on a stale decision writes nothing
        decision = manager.should_resume(sid)
        manager.update_state(sid, metadata={"x": 1})
        with pytest.raises(ConcurrencyError):
            manager.resume(sid, expected_version=decision.version)
        assert manager.get_session(sid).resume_count == 0
        # resume_ready must be a boolean
        for kind, data in (("metadata_updated", {"metadata": {}, "resume_ready": "no"}),
                           ("phase_changed", {"to": "planning", "resume_ready": 0})):
            with pytest.raises(InvalidEventError, match="resume_ready"):
                store.append(sid, [NewEvent(type=kind, data=data)])
        # an invalid id is a decision, not an error
        assert manager.should_resume("../x").reason == ResumeReason.NOT_FOUND
        # an update that would change nothing is still refused on a terminated session
        manager.finalize_session(sid, "completed")
        for kwargs in ({"phase": "completed"}, {"metadata": {}}):
            with pytest.raises(InvalidTransitionError, match="terminated"):
                manager.update_state(sid, **kwargs)
        # a cut-off older than any date deletes nothing and does not overflow
        assert manager.cleanup(timedelta.max).count == 0
        assert manager.cleanup(timedelta(days=10**6)).count == 0


def test_default_lifecycle_cannot_be_changed_in_place() -> None:
    from agentledger.core.lifecycle import DEFAULT_LIFECYCLE

    with pytest.raises(TypeError):
        DEFAULT_LIFECYCLE.transitions["approval"] = frozenset({"validating"})  # type: ignore[index]
    with pytest.raises(ConfigurationError, match="final phase"):
        Lifecycle(transitions={"completed": frozenset({"planning"})})
