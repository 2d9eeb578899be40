"""The runner on every store: what a turn records, in what order, and how it fails."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest

from agentledger import (
    ConfigurationError,
    EventTooLargeError,
    InvalidEventError,
    InvalidTransitionError,
    ModelError,
    NewEvent,
    RunnerError,
    SessionNotFoundError,
    ToolError,
)
from agentledger.demo import build_reminders_agent
from agentledger.runner import (
    Agent,
    ContextPolicy,
    Message,
    ModelResponse,
    OfflineModel,
    Rule,
    Runner,
    ToolCall,
    ToolContext,
    final_output,
    tool,
)
from agentledger.runner.runner import history_messages
from agentledger.stores.base import SessionStore
from agentledger.testing import StoreFactory


def new_session(store: SessionStore, user: str = "ada", app: str = "reminders") -> str:
    return store.create_session(app_name=app, user_id=user).id


class ScriptedModel:
    """A model that answers from a fixed script and records what it was sent."""

    name = "scripted"

    def __init__(self, responses: Sequence[ModelResponse | BaseException]) -> None:
        self.responses = list(responses)
        self.seen: list[list[Message]] = []

    def generate(self, messages: Sequence[Message], tools: Sequence[Any]) -> ModelResponse:
        self.seen.append(list(messages))
        response = self.responses.pop(0)
        if isinstance(response, BaseException):
            raise response
        return response


def call(name: str, call_id: str = "c1", **arguments: Any) -> ModelResponse:
    return ModelResponse(tool_calls=[ToolCall(id=call_id, name=name, arguments=arguments)])


def test_turn_records_every_step_before_yielding_it(store: SessionStore) -> None:
    sid = new_session(store)
    runner = Runner(build_reminders_agent(), store)
    seen = []
    for event in runner.run(sid, "Remind me to call the dentist"):
        # durably stored before the caller sees it: it is the ledger's last entry
        assert store.read_events(sid, last=1)[0].id == event.id
        seen.append(event)
    assert [e.type for e in seen] == ["user_message", "tool_call", "tool_result", "final_output"]
    assert len({e.invocation_id for e in seen}) == 1 and seen[0].invocation_id
    assert [e.seq for e in seen] == [2, 3, 4, 5]
    assert seen[0].author == "user" and seen[2].author == "tool"
    assert seen[1].data["name"] == "add_reminder"
    assert seen[1].data["arguments"] == {"reminder": "call the dentist"}
    # the reminder is an operation applied at commit, not the whole list
    assert seen[2].state_delta == {}
    assert seen[2].state_ops == [
        {"op": "setdefault", "path": "/user:reminders", "value": []},
        {"op": "add", "path": "/user:reminders/-", "value": "call the dentist"},
    ]
    assert final_output(seen) == "Added reminder: call the dentist. You now have 1 reminder."
    assert store.get_session(sid).state["user:reminders"] == ["call the dentist"]


def test_user_state_follows_the_user_across_sessions_only(store: SessionStore) -> None:
    runner = Runner(build_reminders_agent(), store)
    first, second, other = new_session(store), new_session(store), new_session(store, user="bob")
    list(runner.run(first, "remind me to buy milk"))
    answer = final_output(list(runner.run(second, "show my reminders")))
    assert answer == "You have 1 reminder: 1. buy milk."
    assert final_output(list(runner.run(other, "show my reminders"))) == "You have no reminders."


def test_demo_tools_update_and_delete_by_one_based_index(store: SessionStore) -> None:
    runner = Runner(build_reminders_agent(), store)
    sid = new_session(store)
    for text in ("remind me to a", "remind me to b", "remind me to c"):
        list(runner.run(sid, text))
    assert "from 'b' to 'bee'" in str(final_output(list(runner.run(sid, "update reminder 2 to bee"))))
    assert "Deleted reminder 1: a" in str(final_output(list(runner.run(sid, "delete reminder 1"))))
    assert "no reminder 7" in str(final_output(list(runner.run(sid, "delete reminder 7"))))
    list(runner.run(sid, "my name is Grace Hopper"))
    state = store.get_session(sid).state
    assert state["user:reminders"] == ["bee", "c"]
    assert state["user:name"] == "Grace Hopper"


def test_history_is_sent_to_the_model(store: SessionStore) -> None:
    model = ScriptedModel([ModelResponse(text="one"), ModelResponse(text="two")])
    runner = Runner(Agent(name="a", instructions="be brief", model=model), store)
    sid = new_session(store)
    list(runner.run(sid, "first"))
    list(runner.run(sid, "second"))
    assert [(m.role, m.content) for m in model.seen[1]] == [
        ("system", "be brief"),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
    ]


@pytest.mark.parametrize("policy", [ContextPolicy(), ContextPolicy.last_turns(5),
                                    ContextPolicy.token_budget(4000)])
def test_a_rewound_turn_is_not_sent_to_the_model(
    store: SessionStore, policy: ContextPolicy
) -> None:
    model = ScriptedModel([ModelResponse(text=t) for t in ("one", "two", "three")])
    runner = Runner(Agent(name="a", model=model), store, context=policy)
    sid = new_session(store)
    list(runner.run(sid, "first"))
    second = list(runner.run(sid, "second"))
    store.rewind(sid, before_invocation=second[0].invocation_id)
    list(runner.run(sid, "third"))
    assert [(m.role, m.content) for m in model.seen[2]] == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "third"),
    ]


def test_text_with_tool_calls_becomes_an_agent_message(store: SessionStore) -> None:
    def ping() -> str:
        """Answer pong."""
        return "pong"

    first = call("ping")
    first.text = "let me check"
    model = ScriptedModel([first, ModelResponse(text="done")])
    sid = new_session(store)
    events = list(Runner(Agent(name="a", model=model, tools=[ping]), store).run(sid, "go"))
    assert [e.type for e in events] == [
        "user_message", "agent_message", "tool_call", "tool_result", "final_output",
    ]
    assert events[3].data["result"] == "pong"
    assert model.seen[1][-1].role == "tool" and model.seen[1][-1].content == '"pong"'


def test_failing_tool_records_an_error_then_raises(store: SessionStore) -> None:
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(f"boom: {reason}")

    sid = new_session(store)
    runner = Runner(Agent(name="a", model=ScriptedModel([call("explode", reason="x")]),
                          tools=[explode]), store)
    with pytest.raises(ToolError, match="boom: x"):
        list(runner.run(sid, "go"))
    events = store.read_events(sid)
    assert [e.type for e in events][-3:] == ["user_message", "tool_call", "error"]
    assert events[-1].data["source"] == "tool" and events[-1].data["tool"] == "explode"
    session = store.get_session(sid)
    assert session.error_count == 1
    assert session.last_error == "boom: x"


@pytest.mark.parametrize(
    "response, match",
    [
        (call("missing"), "there is no tool 'missing'; the tools are: double"),
        (call("double", n="not a number"), "bad arguments"),
        (call("double", n=2, extra=1), "bad arguments"),
        (
            ModelResponse(tool_calls=[ToolCall(id="c1", name="double", invalid_arguments="{n: 2")]),
            "not a JSON object: '{n: 2'",
        ),
    ],
)
def test_bad_tool_calls_go_back_to_the_model_as_error_results(
    store: SessionStore, response: ModelResponse, match: str
) -> None:
    def double(n: int) -> int:
        """Double n."""
        return n * 2

    sid = new_session(store)
    model = ScriptedModel([response, ModelResponse(text="sorry")])
    runner = Runner(Agent(name="a", model=model, tools=[double]), store)
    events = list(runner.run(sid, "go"))
    assert [e.type for e in events] == ["user_message", "tool_call", "tool_result", "final_output"]
    result = events[2]
    assert result.data["is_error"] is True and match in result.data["result"]["error"]
    assert result.state_delta == {}
    # The model saw the error as the call's result, then answered.
    tool_message = model.seen[1][-1]
    assert tool_message.role == "tool" and tool_message.tool_call_id == "c1"
    assert match in (tool_message.content or "")
    assert store.get_session(sid).error_count == 0


def test_tool_result_json_cannot_hold_is_a_tool_error(store: SessionStore) -> None:
    def weird() -> Any:
        """Return something JSON cannot hold."""
        return {1, 2}

    sid = new_session(store)
    runner = Runner(Agent(name="a", model=ScriptedModel([call("weird")]), tools=[weird]), store)
    with pytest.raises(ToolError):
        list(runner.run(sid, "go"))
    assert [e.type for e in store.read_events(sid)][-2:] == ["tool_call", "error"]


def test_failing_model_records_an_error_then_raises(store: SessionStore) -> None:
    sid = new_session(store)
    runner = Runner(Agent(name="a", model=ScriptedModel([TimeoutError("no answer")])), store)
    with pytest.raises(ModelError, match="no answer"):
        list(runner.run(sid, "go"))
    last = store.read_events(sid)[-1]
    assert last.type == "error" and last.data["source"] == "model"
    assert store.get_session(sid).error_count == 1


def test_too_many_steps_is_a_runner_error(store: SessionStore) -> None:
    def ping() -> str:
        """Answer pong."""
        return "pong"

    model = ScriptedModel([call("ping", call_id=f"c{i}") for i in range(3)])
    sid = new_session(store)
    runner = Runner(Agent(name="a", model=model, tools=[ping], max_steps=3), store)
    with pytest.raises(RunnerError, match="after 3 model steps"):
        list(runner.run(sid, "go"))
    last = store.read_events(sid)[-1]
    assert last.type == "error"
    assert last.data["kind"] == last.data["reason"] == "max_steps_exceeded"


def test_temp_state_lasts_for_the_turn_and_is_never_stored(store: SessionStore) -> None:
    def remember(tool_context: ToolContext) -> str:
        """Write temp and session state."""
        tool_context.state["temp:scratch"] = "x"
        tool_context.state["count"] = 1
        return "ok"

    def recall(tool_context: ToolContext) -> Any:
        """Read temp state."""
        return tool_context.state.get("temp:scratch")

    model = ScriptedModel(
        [call("remember"), call("recall", call_id="c2"), ModelResponse(text="bye")]
    )
    sid = new_session(store)
    events = list(Runner(Agent(name="a", model=model, tools=[remember, recall]), store).run(sid, "go"))
    results = [e for e in events if e.type == "tool_result"]
    assert results[0].state_delta == {"count": 1}
    assert results[1].data["result"] == "x"
    stored = store.read_events(sid)
    assert all("temp:scratch" not in e.state_delta for e in stored)
    assert store.get_session(sid).state == {"count": 1}


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            [
                NewEvent(type="phase_changed", data={"to": "completed"}),
                NewEvent(type="session_finalized", data={"outcome": "completed"}),
            ],
            "terminated",
        ),
        ([NewEvent(type="status_changed", data={"to": "terminated"})], "terminated"),
        ([NewEvent(type="status_changed", data={"to": "suspended"})], "resume it"),
    ],
)
def test_closed_session_refuses_a_turn_and_writes_nothing(
    store: SessionStore, events: list[NewEvent], message: str
) -> None:
    sid = new_session(store)
    store.append(sid, events)
    version = store.get_session(sid).version
    with pytest.raises(InvalidTransitionError, match=message):
        list(Runner(build_reminders_agent(), store).run(sid, "remind me to x"))
    assert store.get_session(sid).version == version


@pytest.mark.parametrize(
    ("message", "error", "needle"),
    [
        ("remind me to caf\udce9", InvalidEventError, "character 17 is the byte 0xe9"),
        ("remind me to \ud800", InvalidEventError, "a lone surrogate '\\ud800'"),
        ("x" * 3000, EventTooLargeError, "the message is 30"),
    ],
)
def test_a_message_the_store_cannot_hold_is_refused_before_any_write(
    make_store: StoreFactory, message: str, error: type[Exception], needle: str
) -> None:
    store = make_store(max_event_bytes=2000)
    sid = new_session(store)
    runner = Runner(build_reminders_agent(), store)
    with pytest.raises(error, match=re.escape(needle)):
        runner.check_message(message)
    for run in (lambda: list(runner.run(sid, message)), lambda: asyncio.run(collect(runner, sid, message))):
        with pytest.raises(error, match=re.escape(needle)):
            run()
        assert store.get_session(sid).version == 1
    runner.check_message("x" * 1900)


async def collect(runner: Runner, sid: str, message: str) -> list[Any]:
    return [event async for event in runner.run_async(sid, message)]


def test_unknown_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        list(Runner(build_reminders_agent(), store).run("nope", "hi"))


def test_run_async_records_the_same_turn(store: SessionStore) -> None:
    async def slow_add(a: int, b: int) -> int:
        """Add, asynchronously."""
        await asyncio.sleep(0)
        return a + b

    model = ScriptedModel([call("slow_add", a=2, b=3), ModelResponse(text="5")])
    runner = Runner(Agent(name="a", model=model, tools=[slow_add]), store)
    sid = new_session(store)

    async def collect() -> list[Any]:
        return [event async for event in runner.run_async(sid, "add")]

    events = asyncio.run(collect())
    assert [e.type for e in events] == ["user_message", "tool_call", "tool_result", "final_output"]
    assert events[2].data["result"] == 5
    assert [e.id for e in store.read_events(sid)[1:]] == [e.id for e in events]


def test_run_async_failure_matches_run(store: SessionStore) -> None:
    sid = new_session(store)
    runner = Runner(Agent(name="a", model=ScriptedModel([ValueError("bad")])), store)

    async def collect() -> None:
        async for _ in runner.run_async(sid, "go"):
            pass

    with pytest.raises(ModelError):
        asyncio.run(collect())
    assert store.get_session(sid).error_count == 1


def test_tool_schema_comes_from_the_signature() -> None:
    @tool
    def update(index: int, text: str, tool_context: ToolContext, urgent: bool = False) -> None:
        """Change a reminder.

        More words that are not part of the description.
        """

    spec = update.spec()["function"]
    assert spec["name"] == "update"
    assert spec["description"] == "Change a reminder."
    params = spec["parameters"]
    assert set(params["properties"]) == {"index", "text", "urgent"}
    assert params["properties"]["index"]["type"] == "integer"
    assert params["required"] == ["index", "text"]
    assert update.context_parameter == "tool_context"


def test_tool_needs_annotations_and_unique_names() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ConfigurationError, match="annotation"):
        tool(untyped)
    with pytest.raises(ConfigurationError, match="same name"):
        Agent(name="a", tools=[_t(), _t()])


def _t() -> Any:
    def t() -> int:
        """One."""
        return 1

    return t


def test_offline_model_is_deterministic_and_explains_itself() -> None:
    model = OfflineModel([Rule(r"add (?P<a>\d+) and (?P<b>\d+)", "add")])
    specs = [{"type": "function", "function": {"name": "add", "description": "Add."}}]
    ask = [Message(role="user", content="please add 2 and 3")]
    assert model.generate(ask, specs) == model.generate(ask, specs)
    assert model.generate(ask, specs).tool_calls[0].arguments == {"a": "2", "b": "3"}
    answered = ask + [
        Message(role="assistant", tool_calls=[ToolCall(id="c", name="add")]),
        Message(role="tool", content='{"message": "5"}', tool_call_id="c"),
    ]
    assert model.generate(answered, specs).text == "5"
    confused = model.generate([Message(role="user", content="sing")], specs).text
    assert confused is not None and "add (Add)" in confused
    # a rule whose tool the agent lacks is skipped
    assert model.generate(ask, []).tool_calls == []


def test_history_leaves_out_unanswered_tool_calls(store: SessionStore) -> None:
    def explode() -> None:
        """Fail."""
        raise RuntimeError("x")

    sid = new_session(store)
    runner = Runner(Agent(name="a", model=ScriptedModel([call("explode")]), tools=[explode]), store)
    with pytest.raises(ToolError):
        list(runner.run(sid, "go"))
    messages = history_messages(store.read_events(sid))
    assert [(m.role, m.content) for m in messages] == [("user", "go")]


def test_tool_runs_again_when_its_state_changed_concurrently(store: SessionStore) -> None:
    """A concurrent writer changes what the tool read: no lost update, the tool reruns."""
    sid = new_session(store)
    other = new_session(store)  # the same user's other session
    runs = []

    def add_item(item: str, tool_context: ToolContext) -> str:
        """Add an item."""
        items = tool_context.state.get("user:items", [])
        if not runs:  # between this read and the result's append, another writer adds one
            store.append(other, [NewEvent(type="state_updated",
                                          state_delta={"user:items": ["theirs"]})])
        runs.append(list(items))
        tool_context.state["user:items"] = [*items, item]
        return f"added {item}"

    model = ScriptedModel([call("add_item", item="mine"), ModelResponse(text="ok")])
    events = list(Runner(Agent(name="a", model=model, tools=[add_item]), store).run(sid, "go"))
    assert runs == [[], ["theirs"]]
    assert store.get_session(sid).state["user:items"] == ["theirs", "mine"]
    assert [e.type for e in events] == ["user_message", "tool_call", "tool_result", "final_output"]
    assert events[2].state_delta == {"user:items": ["theirs", "mine"]}
    assert store.get_session(sid).error_count == 0


def test_tool_whose_state_keeps_changing_fails_after_retries(store: SessionStore) -> None:
    sid = new_session(store)
    runs = []

    def bump(tool_context: ToolContext) -> int:
        """Increment a counter, while someone else always increments it first."""
        count = tool_context.state.get("count", 0)
        store.append(sid, [NewEvent(type="state_updated", state_delta={"count": count + 100})])
        runs.append(count)
        tool_context.state["count"] = count + 1
        return count + 1

    model = ScriptedModel([call("bump")])
    runner = Runner(Agent(name="a", model=model, tools=[bump]), store, max_state_retries=2)
    with pytest.raises(ToolError, match="kept changing"):
        list(runner.run(sid, "go"))
    assert len(runs) == 3
    last = store.read_events(sid)[-1]
    assert last.type == "error" and "count" in last.data["message"]
    assert [e.type for e in store.read_events(sid)].count("tool_result") == 0


# -- error kinds and cancelled turns -------------------------------------------------------


def ping() -> str:
    """Answer pong."""
    return "pong"


def explode() -> str:
    """Fail."""
    raise RuntimeError("boom")


def interrupted() -> str:
    """Ctrl-C arrives while the tool runs."""
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("responses", "raised", "kind", "source"),
    [
        ([call("explode")], ToolError, "tool", "tool"),
        ([TimeoutError("no answer")], ModelError, "model", "model"),
        ([call("ping", call_id=f"c{i}") for i in range(2)], RunnerError, "max_steps_exceeded", "runner"),
    ],
)
def test_error_events_carry_a_machine_readable_kind(
    store: SessionStore,
    responses: list[Any],
    raised: type[Exception],
    kind: str,
    source: str,
) -> None:
    sid = new_session(store)
    agent = Agent(name="a", model=ScriptedModel(responses), tools=[ping, explode], max_steps=2)
    with pytest.raises(raised):
        list(Runner(agent, store).run(sid, "go"))
    error = store.read_events(sid)[-1]
    assert error.type == "error"
    assert error.data["kind"] == kind and error.data["source"] == source
    assert {"message", "error_type"} <= set(error.data)


@pytest.mark.parametrize("where", ["tool", "model"])
def test_ctrl_c_during_a_turn_records_it_as_cancelled_then_re_raises(
    store: SessionStore, where: str
) -> None:
    responses: list[Any] = [call("interrupted")] if where == "tool" else [KeyboardInterrupt()]
    agent = Agent(name="a", model=ScriptedModel(responses), tools=[interrupted])
    sid = new_session(store)
    with pytest.raises(KeyboardInterrupt):
        list(Runner(agent, store).run(sid, "go"))
    events = store.read_events(sid)
    error = events[-1]
    assert error.type == "error" and error.data["kind"] == "cancelled"
    assert error.data["error_type"] == "KeyboardInterrupt"
    user_message = next(e for e in events if e.type == "user_message")
    assert error.invocation_id == user_message.invocation_id
    expected = ["user_message", "tool_call", "error"] if where == "tool" else [
        "user_message", "error"
    ]
    assert [e.type for e in events[1:]] == expected
    # the session takes the next turn
    assert store.get_session(sid).status == "active"


def test_a_cancelled_async_turn_is_recorded_as_cancelled(store: SessionStore) -> None:
    async def main() -> list[str]:
        started = asyncio.Event()

        async def wait_forever() -> str:
            """Block until cancelled."""
            started.set()
            await asyncio.Event().wait()
            return "never"

        agent = Agent(name="a", model=ScriptedModel([call("wait_forever")]), tools=[wait_forever])
        seen: list[str] = []

        async def consume() -> None:
            async for event in Runner(agent, store).run_async(sid, "go"):
                seen.append(event.type)

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    sid = new_session(store)
    assert asyncio.run(main()) == ["user_message", "tool_call", "error"]
    last = store.read_events(sid)[-1]
    assert last.type == "error" and last.data["kind"] == "cancelled"
    assert last.data["error_type"] == "CancelledError"


def test_history_after_a_cancelled_turn_is_a_valid_transcript(store: SessionStore) -> None:
    """The cancelled turn keeps its user message and its answered tool calls; the call
    that was cut short is left out, so no assistant tool call goes without its result."""
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=[ToolCall(id="c1", name="ping", arguments={}),
                                      ToolCall(id="c2", name="interrupted", arguments={})]),
            ModelResponse(text="hello again"),
        ]
    )
    agent = Agent(name="a", model=model, tools=[ping, interrupted])
    sid = new_session(store)
    with pytest.raises(KeyboardInterrupt):
        list(Runner(agent, store).run(sid, "first"))
    list(Runner(agent, store).run(sid, "second"))
    sent = model.seen[-1]
    assert [(m.role, m.content) for m in sent if m.role == "user"] == [
        ("user", "first"), ("user", "second"),
    ]
    called = [c.id for m in sent for c in m.tool_calls or []]
    answered = [m.tool_call_id for m in sent if m.role == "tool"]
    assert called == answered == ["c1"]


def test_retries_continue_past_a_few_conflicts_until_the_deadline(store: SessionStore) -> None:
    """Conflicts that end converge: the retry is bounded by time, not by a small count."""
    sid = new_session(store)
    runs = []

    def bump(tool_context: ToolContext) -> int:
        """Increment a counter while another writer changes it the first 6 times."""
        count = tool_context.state.get("count", 0)
        if len(runs) < 6:
            store.append(sid, [NewEvent(type="state_updated", state_delta={"count": count + 10})])
        runs.append(count)
        tool_context.state["count"] = count + 1
        return count + 1

    model = ScriptedModel([call("bump"), ModelResponse(text="done")])
    list(Runner(Agent(name="a", model=model, tools=[bump]), store).run(sid, "go"))
    assert runs == [0, 10, 20, 30, 40, 50, 60]
    assert store.get_session(sid).state["count"] == 61
    assert store.get_session(sid).error_count == 0


def test_retries_stop_at_the_deadline(store: SessionStore) -> None:
    sid = new_session(store)
    runs = []

    def bump(tool_context: ToolContext) -> int:
        """Someone else always increments the counter first."""
        count = tool_context.state.get("count", 0)
        store.append(sid, [NewEvent(type="state_updated", state_delta={"count": count + 100})])
        runs.append(count)
        tool_context.state["count"] = count + 1
        return count + 1

    model = ScriptedModel([call("bump")])
    runner = Runner(Agent(name="a", model=model, tools=[bump]), store, state_retry_seconds=0)
    with pytest.raises(ToolError, match="kept changing"):
        list(runner.run(sid, "go"))
    assert len(runs) == 1
    with pytest.raises(ConfigurationError):
        Runner(Agent(name="a"), store, state_retry_seconds=-1)
    with pytest.raises(ConfigurationError):
        Runner(Agent(name="a"), store, max_state_retries=-1)


def test_tool_state_operations_are_stored_and_seen_by_the_tool() -> None:
    from agentledger.runner.tools import State

    state = State({"user:items": ["a"], "n": 1, "other": 0})
    state.append("user:items", "b")
    state.append("user:new", 1)
    state.increment("n", 2)
    state.remove_item("user:items", 0, expected="a")
    state.append("temp:scratch", "t")  # temp keys change in the delta, never as operations
    assert state["user:items"] == ["b"] and state["user:new"] == [1] and state["n"] == 3
    assert state.peek("user:items") == ["b"] and "user:new" in state
    assert state.reads == {}  # operations and peeks are not reads checked at commit
    assert state.delta == {"temp:scratch": ["t"]}
    assert [op["op"] for op in state.ops] == [
        "setdefault", "add", "setdefault", "add", "increment", "test", "remove"
    ]
    from agentledger import StateOperationError

    with pytest.raises(StateOperationError):
        state.remove_item("user:items", 5)  # does not fit what the tool sees: nothing recorded
    assert len(state.ops) == 7
    # Assigning a key turns the pending operations into plain writes (checked reads).
    state["other"] = 1
    assert state.ops == []
    assert state.delta["user:items"] == ["b"] and state.delta["n"] == 3
    assert state.reads["user:items"] == ["a"]
    # Operations on a key already assigned change the delta.
    state.append("other_list", 1)
    assert state.ops[-1]["op"] == "add"
    state["l"] = [1]
    state.append("l", 2)
    assert state.delta["l"] == [1, 2]


def test_concurrent_turns_adding_reminders_never_conflict(store: SessionStore) -> None:
    """Reminders added by parallel turns of one user are all kept, with no retry."""
    import threading

    agent = build_reminders_agent()
    runs: list[str] = []
    add = agent.get_tool("add_reminder")
    assert add is not None
    original = add.function

    def counting(reminder: str, tool_context: ToolContext) -> Any:
        runs.append(reminder)
        return original(reminder, tool_context)

    object.__setattr__(add, "function", counting)
    sessions = [new_session(store) for _ in range(4)]
    errors: list[BaseException] = []

    def turn(i: int) -> None:
        try:
            list(Runner(agent, store).run(sessions[i % 4], f"Remind me to do thing {i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reminders = store.get_session(sessions[0]).state["user:reminders"]
    assert sorted(reminders) == sorted(f"do thing {i}" for i in range(8))
    assert len(runs) == 8  # each tool ran once: operations never conflict


def test_a_failed_test_operation_at_commit_runs_the_tool_again(store: SessionStore) -> None:
    sid = new_session(store)
    store.append(sid, [NewEvent(type="state_updated", state_delta={"user:reminders": ["a", "b"]})])
    agent = build_reminders_agent()
    tool_ = agent.get_tool("delete_reminder")
    assert tool_ is not None
    original = tool_.function
    runs = []

    def racing(index: int, tool_context: ToolContext) -> Any:
        if not runs:  # another turn deletes "a" between this read and the commit
            store.append(sid, [NewEvent(type="state_updated",
                                        state_ops=[{"op": "remove", "path": "/user:reminders/0"}])])
        runs.append(tool_context.state.peek("user:reminders"))
        return original(index, tool_context)

    object.__setattr__(tool_, "function", racing)
    events = list(Runner(agent, store).run(sid, "Delete reminder 1"))
    # The first run would have removed "b" (now at 1) had its test not stopped it.
    assert runs == [["a", "b"], ["b"]]
    assert store.get_session(sid).state["user:reminders"] == []
    assert "Deleted reminder 1: b" in (final_output(events) or "")


def test_a_user_with_a_megabyte_of_reminders_can_add_and_list_them(
    store: SessionStore,
) -> None:
    sid = new_session(store)
    item = "water the plants in the garden and the ones on the balcony " * 5
    for _ in range(4):
        store.append(sid, [NewEvent(type="state_updated", state_ops=[
            {"op": "setdefault", "path": "/user:reminders", "value": []},
            *[{"op": "add", "path": "/user:reminders/-", "value": item}] * 1000,
        ])])
    runner = Runner(build_reminders_agent(), store)
    added = list(runner.run(sid, "Remind me to call the dentist"))
    assert "You now have 4001 reminders" in (final_output(added) or "")
    reminders = store.get_session(sid).state["user:reminders"]
    assert len(reminders) == 4001 and sum(map(len, reminders)) > 1_100_000
    listed = final_output(list(runner.run(sid, "Show my reminders")))
    assert listed is not None and "You have 4001 reminders; 1 to 50" in listed
    assert "show reminders from 51" in listed
    tail = final_output(list(runner.run(sid, "Show my reminders from 4000")))
    assert tail is not None and "4000 to 4001" in tail and "4001. call the dentist" in tail


def test_a_tool_stores_null_and_deletes_keys_explicitly(store: SessionStore) -> None:
    def look(tool_context: ToolContext) -> Any:
        """Read what the first tool left."""
        state = tool_context.state
        return [state.get("flag", "absent"), "old" in state, "temp:scratch" in state]

    sid = store.create_session(
        app_name="demo", user_id="ada",
        state={"flag": True, "old": 1, "user:gone": 2, "app:gone": 3, "user:pref": "dark"},
    ).id

    def tidy_ok(tool_context: ToolContext) -> Any:
        """Set keys to null and delete others."""
        state = tool_context.state
        state["flag"] = None
        state["user:pref"] = None
        del state["old"]
        del state["user:gone"]
        state.pop("app:gone")
        state["temp:scratch"] = None
        return ["flag" in state, state.get("flag", "absent"), "old" in state]

    model = ScriptedModel([call("tidy_ok"), call("look", call_id="c2"), ModelResponse(text="ok")])
    agent = Agent(name="a", model=model, tools=[tidy_ok, look])
    events = list(Runner(agent, store).run(sid, "go"))
    results = [e for e in events if e.type == "tool_result" and "is_error" not in e.data]
    assert results[0].data["result"] == [True, None, False]
    assert results[0].state_delta == {"flag": None, "user:pref": None}
    assert results[0].state_remove == ["old", "user:gone", "app:gone"]
    assert results[1].data["result"] == [None, False, True]  # temp:scratch lasts the turn
    assert store.get_session(sid).state == {"flag": None, "user:pref": None}
    other = store.create_session(app_name="demo", user_id="ada")
    assert other.state == {"user:pref": None}


def test_tool_state_null_and_delete() -> None:
    from agentledger.runner.tools import State

    state = State({"a": 1, "b": None})
    assert "b" in state and state["b"] is None and state.peek("b", "x") is None
    state["c"] = None
    del state["a"]
    assert "c" in state and "a" not in state and sorted(state) == ["b", "c"]
    assert state.delta == {"c": None} and state.removed == ["a"]
    state["a"] = 2  # set again: no longer removed
    assert state.delta == {"c": None, "a": 2} and state.removed == []
    del state["c"]
    assert state.removed == ["c"] and state.to_dict() == {"a": 2, "b": None}
    with pytest.raises(KeyError):
        del state["c"]
    state.append("l", 1)
    del state["l"]  # settles the operations, then removes
    assert state.ops == [] and "l" in state.removed


def test_history_leaves_out_erased_events(store: SessionStore) -> None:
    def lookup(card: str) -> str:
        """Look a card up."""
        return "valid"

    sid = new_session(store)
    model = ScriptedModel([call("lookup", card="xyzzy-card"), ModelResponse(text="it is valid")])
    runner = Runner(Agent(name="a", model=model, tools=[lookup]), store)
    list(runner.run(sid, "check my card xyzzy-card"))
    list(Runner(Agent(name="a", model=ScriptedModel([ModelResponse(text="hi")])), store).run(
        sid, "hello"
    ))
    events = store.read_events(sid)
    kinds = {e.type: e.seq for e in events if e.type in ("user_message", "tool_call")}
    store.erase_events(sid, [events[1].seq, kinds["tool_call"]], "privacy")
    messages = history_messages(store.read_events(sid))
    assert [(m.role, m.content) for m in messages] == [
        ("user", "hello"),
        ("assistant", "hi"),
    ]
    assert "xyzzy" not in str([m.model_dump() for m in messages])
