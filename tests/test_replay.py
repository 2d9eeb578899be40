"""Session replay: recorded model outputs, real tools, the first divergence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from replay_agents import changed_reminders_agent
from typer.testing import CliRunner

from agentledger import open_store
from agentledger.cli import app
from agentledger.demo import DEMO_SCRIPT, build_reminders_agent, continue_or_create_session
from agentledger.errors import ConfigurationError
from agentledger.runner import Agent, ModelResponse, Runner, ToolCall, ToolContext
from agentledger.runner.replay import ReplayModel, recorded_responses, replay_session
from agentledger.stores.base import SessionStore


def demo_session(store: SessionStore) -> str:
    session, _ = continue_or_create_session(store)
    runner = Runner(build_reminders_agent(), store)
    for message in DEMO_SCRIPT:
        list(runner.run(session.id, message))
    return session.id


def test_the_demo_session_replays_identically() -> None:
    with open_store("memory://") as store:
        sid = demo_session(store)
        version = store.get_session(sid).version
        report = replay_session(store, sid, build_reminders_agent())
        assert report.identical and report.turns == len(DEMO_SCRIPT)
        assert report.events_compared == version - 1
        assert store.get_session(sid).version == version  # the store was only read


def test_a_changed_tool_is_reported_at_its_first_divergence() -> None:
    with open_store("memory://") as store:
        sid = demo_session(store)
        first_add = next(
            e for e in store.read_events(sid)
            if e.type == "tool_result" and e.data["name"] == "add_reminder"
        )
        report = replay_session(store, sid, changed_reminders_agent())
        d = report.divergence
        assert d is not None and not report.identical
        assert (d.seq, d.type, d.tool, d.field) == (first_add.seq, "tool_result", "add_reminder",
                                                     "result")
        assert d.recorded["reminder"] == "call the dentist"
        assert d.replayed["reminder"] == "CALL THE DENTIST"
        # Up to just before that event, the replay matches.
        assert replay_session(store, sid, changed_reminders_agent(), until=first_add.seq - 1).identical


def test_replay_answers_from_the_recording_whatever_model_recorded_it() -> None:
    def add(a: int, b: int, tool_context: ToolContext) -> int:
        """Add two numbers and remember the total."""
        tool_context.state["total"] = a + b
        return a + b

    class RecordedRemoteModel:
        name = "remote"
        provider = "somewhere"

        def __init__(self) -> None:
            self.script = [
                ModelResponse(text="Adding.", tool_calls=[
                    ToolCall(id="call_p", name="add", arguments={"a": 1, "b": 2}),
                    ToolCall(id="call_q", name="add", arguments={"a": 3, "b": 4}),
                ]),
                ModelResponse(text="3 and 7."),
            ]

        def generate(self, messages: object, tools: object) -> ModelResponse:
            return self.script.pop(0)

    with open_store("memory://") as store:
        sid = store.create_session(app_name="calc", user_id="ada").id
        list(Runner(Agent(name="calc", model=RecordedRemoteModel(), tools=[add]), store).run(sid, "go"))
        turn = store.read_events(sid)[1:]
        responses = recorded_responses(turn)
        assert [r.text for r in responses if isinstance(r, ModelResponse)] == ["Adding.", "3 and 7."]
        first = responses[0]
        assert isinstance(first, ModelResponse)
        assert [c.id for c in first.tool_calls] == ["call_p", "call_q"]
        assert replay_session(store, sid, Agent(name="calc", tools=[add])).identical


def test_a_replay_model_that_runs_out_says_so() -> None:
    model = ReplayModel([])
    with pytest.raises(Exception, match="no further model output"):
        model.generate([], [])


def test_replay_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()
    demo = runner.invoke(app, ["--store", url, "demo"])
    assert demo.exit_code == 0, demo.output
    sid = demo.output.split()[1]
    same = runner.invoke(app, ["--store", url, "replay", sid])
    assert same.exit_code == 0, same.output
    assert "identical (20 events compared)" in same.output
    changed = runner.invoke(
        app, ["--store", url, "replay", sid, "--agent", "replay_agents:changed_reminders_agent"]
    )
    assert changed.exit_code == 1
    assert "first divergence" in changed.output
    assert "(tool_result of add_reminder) differs in result" in changed.output
    as_json = runner.invoke(
        app,
        ["--store", url, "replay", sid, "--json", "--agent", "replay_agents:changed_reminders_agent"],
    )
    report = json.loads(as_json.stdout)
    assert report["identical"] is False and report["divergence"]["tool"] == "add_reminder"
    missing = runner.invoke(app, ["--store", url, "replay", "nope"])
    assert missing.exit_code == 1 and missing.output.startswith("error: ")


def test_tool_state_changes_compare_by_meaning_across_event_formats() -> None:
    from datetime import datetime, timezone

    from agentledger import Event
    from agentledger.runner.replay import _compare

    def result(format: int, **fields: Any) -> Event:
        return Event(id="e", session_id="s", seq=3, type="tool_result", author="tool",
                     timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
                     data={"name": "tidy", "result": "ok"}, format=format, **fields)

    old = result(1, state_delta={"k": None, "n": 1})  # written when None deleted
    assert _compare(old, result(2, state_delta={"n": 1}, state_remove=["k"])) is None
    found = _compare(old, result(2, state_delta={"n": 1, "k": None}))
    assert found is not None and found.field == "state_delta"
    found = _compare(result(2, state_remove=["a"]), result(2, state_remove=["b"]))
    assert found is not None and found.field == "state_remove"


@pytest.mark.parametrize("cut", ["erase", "truncate"])
def test_a_session_with_erased_or_dropped_events_is_refused(cut: str) -> None:
    with open_store("memory://") as store:
        sid = demo_session(store)
        if cut == "erase":
            store.erase_events(sid, [2], "asked")
        else:
            store.truncate_before(sid, 3)
        version = store.get_session(sid).version
        with pytest.raises(ConfigurationError, match="erased or truncated history"):
            replay_session(store, sid, build_reminders_agent())
        assert store.get_session(sid).version == version
        # before the erased event there is nothing missing: that much replays
        if cut == "erase":
            assert replay_session(store, sid, build_reminders_agent(), until=1).identical
        else:  # nothing at all is left up to seq 1
            with pytest.raises(ConfigurationError, match="erased or truncated history"):
                replay_session(store, sid, build_reminders_agent(), until=1)
