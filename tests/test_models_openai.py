"""OpenAIChatModel and the runner against a fake OpenAI-compatible server over real HTTP.

Every case runs a real turn through `Runner` on a real store, with the official client
talking HTTP to `FakeOpenAI` on 127.0.0.1, and checks the stored events and error kinds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI, Reply, chunk, completion, tool_call

from agentledger import ModelError, RunnerError, open_store
from agentledger.runner import Agent, Runner, ToolContext, final_output
from agentledger.runner.context import ContextPolicy
from agentledger.runner.models_openai import OpenAIChatModel
from agentledger.runner.runner import TextDelta
from agentledger.stores.base import SessionStore

KEY = "sk-test-secret-4f9a"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with open_store("memory://") as s:
        yield s


def add_reminder(reminder: str, tool_context: ToolContext) -> dict[str, Any]:
    """Add a reminder."""
    reminders = tool_context.state.get("user:reminders", [])
    tool_context.state["user:reminders"] = [*reminders, reminder]
    return {"message": f"Added {reminder}."}


def view_reminders(tool_context: ToolContext) -> dict[str, Any]:
    """List the reminders."""
    return {"reminders": tool_context.state.get("user:reminders", [])}


def model(fake: FakeOpenAI, **options: Any) -> OpenAIChatModel:
    options.setdefault("max_retries", 2)
    return OpenAIChatModel(
        "test-model", api_key=KEY, base_url=fake.url, api_key_env="TEST_KEY", **options
    )


def runner(fake: FakeOpenAI, store: SessionStore, **options: Any) -> Runner:
    max_steps = options.pop("max_steps", 10)
    agent = Agent(
        name="reminders",
        instructions="Help with reminders.",
        model=model(fake, **options),
        tools=[add_reminder, view_reminders],
        max_steps=max_steps,
    )
    return Runner(agent, store)


def session(store: SessionStore) -> str:
    return store.create_session(app_name="reminders", user_id="ada").id


def no_key_anywhere(store: SessionStore, sid: str) -> None:
    for event in store.read_events(sid):
        assert KEY not in event.model_dump_json()


def test_plain_answer(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(Reply(completion("Hello Ada!", usage=(21, 4))))
    sid = session(store)
    events = list(runner(fake, store).run(sid, "hi"))
    assert [e.type for e in events] == ["user_message", "final_output"]
    final = events[-1]
    assert final.data["text"] == "Hello Ada!"
    call = final.data["model_call"]
    assert call["provider"] == "openai" and call["model"] == "fake-model-2026"
    assert (call["input_tokens"], call["output_tokens"]) == (21, 4)
    assert call["finish_reason"] == "stop" and call["latency_ms"] >= 0 and call["step"] == 1
    (request,) = fake.requests
    assert request.body["model"] == "test-model"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.messages[1]["content"] == "hi"
    names = [t["function"]["name"] for t in request.body["tools"]]
    assert names == ["add_reminder", "view_reminders"]
    assert request.body["tools"][0]["function"]["parameters"]["required"] == ["reminder"]
    s = store.get_session(sid)
    assert (s.model_calls, s.input_tokens, s.output_tokens) == (1, 21, 4)
    no_key_anywhere(store, sid)


def test_one_tool_call_keeps_the_provider_id(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(
        Reply(completion(tool_calls=[tool_call("call_Xy7", "add_reminder", {"reminder": "milk"})])),
        Reply(completion("Added milk.")),
    )
    sid = session(store)
    events = list(runner(fake, store).run(sid, "remind me to buy milk"))
    assert [e.type for e in events] == ["user_message", "tool_call", "tool_result", "final_output"]
    assert events[1].data["call_id"] == events[2].data["call_id"] == "call_Xy7"
    assert events[1].data["arguments"] == {"reminder": "milk"}
    assert events[1].data["model_call"]["finish_reason"] == "tool_calls"
    assert events[2].state_delta == {"user:reminders": ["milk"]}
    second = fake.requests[1].messages
    assert second[-2]["role"] == "assistant"
    assert second[-2]["tool_calls"][0]["id"] == "call_Xy7"
    assert json.loads(second[-2]["tool_calls"][0]["function"]["arguments"]) == {"reminder": "milk"}
    assert second[-1] == {
        "role": "tool", "tool_call_id": "call_Xy7", "content": json.dumps({"message": "Added milk."})
    }
    assert store.get_session(sid).state["user:reminders"] == ["milk"]


def test_two_parallel_tool_calls(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(
        Reply(completion(
            "On it.",
            tool_calls=[
                tool_call("call_a", "add_reminder", {"reminder": "milk"}),
                tool_call("call_b", "add_reminder", {"reminder": "eggs"}),
            ],
            usage=(30, 12),
        )),
        Reply(completion("Added both.", usage=(50, 5))),
    )
    sid = session(store)
    events = list(runner(fake, store).run(sid, "milk and eggs"))
    assert [e.type for e in events] == [
        "user_message", "agent_message", "tool_call", "tool_result", "tool_call", "tool_result",
        "final_output",
    ]
    assert [e.data.get("call_id") for e in events[2:6]] == ["call_a", "call_a", "call_b", "call_b"]
    # The call's usage is recorded once, on the first event it produced.
    assert events[1].data["model_call"]["input_tokens"] == 30
    assert "model_call" not in events[2].data and "model_call" not in events[4].data
    second = fake.requests[1].messages
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert second[-3]["content"] == "On it."
    assert [c["id"] for c in second[-3]["tool_calls"]] == ["call_a", "call_b"]
    assert [m["tool_call_id"] for m in second[-2:]] == ["call_a", "call_b"]
    s = store.get_session(sid)
    assert s.state["user:reminders"] == ["milk", "eggs"]
    assert (s.model_calls, s.input_tokens, s.output_tokens) == (2, 80, 17)


def test_a_resumed_session_sends_its_history_in_the_same_shape(
    fake: FakeOpenAI, store: SessionStore
) -> None:
    fake.script(
        Reply(completion("On it.", tool_calls=[
            tool_call("call_a", "add_reminder", {"reminder": "milk"}),
            tool_call("call_b", "add_reminder", {"reminder": "eggs"}),
        ])),
        Reply(completion("Added both.")),
    )
    sid = session(store)
    list(runner(fake, store).run(sid, "milk and eggs"))
    seen = fake.requests[1].messages + [{"role": "assistant", "content": "Added both."}]
    fake.script(Reply(completion("You have milk and eggs.")))
    # A new runner (a new process, say): the history is rebuilt from the ledger.
    list(runner(fake, store).run(sid, "what do I have?"))
    resumed = fake.requests[2].messages
    assert resumed[: len(seen)] == seen
    assert resumed[-1] == {"role": "user", "content": "what do I have?"}


def test_context_policy_bounds_what_is_sent(fake: FakeOpenAI, store: SessionStore) -> None:
    sid = session(store)
    for i in range(3):
        fake.script(Reply(completion(f"answer {i}")))
        list(runner(fake, store).run(sid, f"question {i}"))
    fake.script(Reply(completion("last")))
    r = runner(fake, store)
    r.context = ContextPolicy.last_turns(1)
    list(r.run(sid, "question 3"))
    sent = [m["content"] for m in fake.requests[-1].messages]
    assert sent == ["Help with reminders.", "question 2", "answer 2", "question 3"]
    assert len(store.read_events(sid)) == 9  # the ledger keeps everything


def test_streamed_chunks_with_tool_call_deltas_split_across_chunks(
    fake: FakeOpenAI, store: SessionStore
) -> None:
    fake.script(
        Reply(chunks=[
            chunk(content="Let me "),
            chunk(content="add those."),
            chunk(tool_calls=[{"index": 0, "id": "call_s1", "type": "function",
                               "function": {"name": "add_reminder", "arguments": ""}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"remin'}}]),
            chunk(tool_calls=[{"index": 1, "id": "call_s2", "type": "function",
                               "function": {"name": "add_", "arguments": '{"reminder"'}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": 'der": "milk"}'}}]),
            chunk(tool_calls=[{"index": 1, "function": {"name": "reminder",
                                                        "arguments": ': "eggs"}'}}]),
            chunk(finish_reason="tool_calls"),
            chunk(usage=(40, 9)),
        ]),
        Reply(chunks=[chunk(content="Added "), chunk(content="both."),
                      chunk(finish_reason="stop"), chunk(usage=(60, 3))]),
    )
    sid = session(store)
    out = list(runner(fake, store).run(sid, "milk and eggs", stream=True))
    deltas = [o.text for o in out if isinstance(o, TextDelta)]
    assert deltas == ["Let me ", "add those.", "Added ", "both."]
    events = [o for o in out if not isinstance(o, TextDelta)]
    assert [e.type for e in events] == [
        "user_message", "agent_message", "tool_call", "tool_result", "tool_call", "tool_result",
        "final_output",
    ]
    assert events[1].data["text"] == "Let me add those."
    assert events[2].data["arguments"] == {"reminder": "milk"}
    assert (events[4].data["call_id"], events[4].data["name"]) == ("call_s2", "add_reminder")
    assert events[4].data["arguments"] == {"reminder": "eggs"}
    assert events[-1].data["text"] == "Added both."
    assert events[-1].data["model_call"]["output_tokens"] == 3
    stored = store.read_events(sid)
    assert [e.type for e in stored][1:] == [e.type for e in events]  # deltas are not stored
    assert fake.requests[0].body["stream"] is True
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}
    s = store.get_session(sid)
    assert (s.input_tokens, s.output_tokens) == (100, 12)


def test_the_async_runner_plain_and_streamed(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(
        Reply(completion(tool_calls=[tool_call("call_1", "view_reminders")])),
        Reply(completion("None yet.")),
        Reply(chunks=[chunk(content="Still "), chunk(content="none."), chunk(finish_reason="stop")]),
    )
    sid = session(store)

    async def turns() -> tuple[list[Any], list[Any]]:
        r = runner(fake, store)
        plain = [e async for e in r.run_async(sid, "list")]
        streamed = [e async for e in r.run_async(sid, "again", stream=True)]
        return plain, streamed

    plain, streamed = asyncio.run(turns())
    assert [e.type for e in plain] == ["user_message", "tool_call", "tool_result", "final_output"]
    assert final_output(plain) == "None yet."
    assert [o.text for o in streamed if isinstance(o, TextDelta)] == ["Still ", "none."]
    assert final_output([o for o in streamed if not isinstance(o, TextDelta)]) == "Still none."
    assert fake.requests[-1].body.get("stream") is True
    assert "stream" not in fake.requests[0].body


def test_429_then_200_is_retried(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(Reply.error(429, "slow down"), Reply(completion("Done.")))
    sid = session(store)
    events = list(runner(fake, store).run(sid, "hi"))
    assert final_output(events) == "Done."
    assert len(fake.requests) == 2
    assert store.get_session(sid).error_count == 0


def test_429_until_the_retries_run_out_is_rate_limited(
    fake: FakeOpenAI, store: SessionStore
) -> None:
    fake.default = Reply.error(429, "slow down")
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(runner(fake, store, max_retries=2).run(sid, "hi"))
    assert caught.value.kind == "rate_limited"
    assert len(fake.requests) == 3
    error = store.read_events(sid)[-1]
    assert error.type == "error" and error.data["kind"] == "rate_limited"
    assert error.data["source"] == "model" and error.data["provider"] == "openai"


def test_500_is_a_server_error(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.default = Reply.error(500, "upstream exploded")
    sid = session(store)
    with pytest.raises(ModelError, match="upstream exploded") as caught:
        list(runner(fake, store, max_retries=1).run(sid, "hi"))
    assert caught.value.kind == "server"
    assert len(fake.requests) == 2
    error = store.read_events(sid)[-1]
    assert (error.type, error.data["kind"]) == ("error", "server")
    assert store.get_session(sid).error_count == 1


def test_401_is_auth_and_never_shows_the_key(fake: FakeOpenAI, store: SessionStore) -> None:
    # Providers echo (part of) a rejected key: the message must not reach the ledger.
    fake.script(lambda req: Reply.error(401, f"Incorrect API key: {req.headers['authorization']}"))
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(runner(fake, store).run(sid, "hi"))
    assert caught.value.kind == "auth"
    assert KEY not in str(caught.value) and "$TEST_KEY" in str(caught.value)
    assert len(fake.requests) == 1  # not retried
    error = store.read_events(sid)[-1]
    assert error.data["kind"] == "auth"
    no_key_anywhere(store, sid)


def test_a_response_slower_than_the_timeout(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(Reply(completion("too late"), delay=1.5))
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(runner(fake, store, timeout=0.2, max_retries=0).run(sid, "hi"))
    assert caught.value.kind == "timeout"
    assert store.read_events(sid)[-1].data["kind"] == "timeout"


@pytest.mark.parametrize(
    "body", [{"id": "x", "object": "chat.completion", "choices": []}, "{not json"]
)
def test_an_unusable_response_is_bad_response(
    fake: FakeOpenAI, store: SessionStore, body: Any
) -> None:
    fake.script(Reply(body))
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(runner(fake, store, max_retries=0).run(sid, "hi"))
    assert caught.value.kind == "bad_response"
    assert store.read_events(sid)[-1].data["kind"] == "bad_response"


def test_malformed_tool_arguments_go_back_to_the_model(
    fake: FakeOpenAI, store: SessionStore
) -> None:
    fake.script(
        Reply(completion(tool_calls=[tool_call("call_m", "add_reminder", '{"reminder": "mi')])),
        Reply(completion(tool_calls=[tool_call("call_n", "add_reminder", {"reminder": "milk"})])),
        Reply(completion("Added milk.")),
    )
    sid = session(store)
    events = list(runner(fake, store).run(sid, "milk"))
    assert [e.type for e in events] == [
        "user_message", "tool_call", "tool_result", "tool_call", "tool_result", "final_output",
    ]
    bad = events[2]
    assert bad.data["is_error"] is True and "not a JSON object" in bad.data["result"]["error"]
    assert events[1].data["raw_arguments"] == '{"reminder": "mi'
    # The model sees its own malformed arguments and the error, then tries again.
    second = fake.requests[1].messages
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == '{"reminder": "mi'
    assert second[-1]["tool_call_id"] == "call_m" and "not a JSON object" in second[-1]["content"]
    assert store.get_session(sid).state["user:reminders"] == ["milk"]
    assert store.get_session(sid).error_count == 0


def test_an_unknown_tool_goes_back_to_the_model(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(
        Reply(completion(tool_calls=[tool_call("call_u", "launch_rocket", {"to": "moon"})])),
        Reply(completion("I cannot do that.")),
    )
    sid = session(store)
    events = list(runner(fake, store).run(sid, "go to the moon"))
    assert [e.type for e in events][-3:] == ["tool_call", "tool_result", "final_output"]
    assert "there is no tool 'launch_rocket'" in events[2].data["result"]["error"]
    assert "add_reminder, view_reminders" in fake.requests[1].messages[-1]["content"]


def test_a_model_that_never_stops_calling_tools(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.default = Reply(completion(tool_calls=[tool_call("call_v", "view_reminders")]))
    sid = session(store)
    with pytest.raises(RunnerError, match="after 3 model steps"):
        list(runner(fake, store, max_steps=3).run(sid, "loop"))
    assert len(fake.requests) == 3
    events = store.read_events(sid)
    assert [e.type for e in events].count("tool_result") == 3
    last = events[-1]
    assert (last.type, last.data["kind"], last.data["reason"]) == (
        "error", "max_steps_exceeded", "max_steps_exceeded"
    )
    assert store.get_session(sid).error_count == 1


def test_a_refused_connection_is_a_connection_error(store: SessionStore) -> None:
    with FakeOpenAI() as gone:
        url = gone.url
    agent = Agent(name="a", model=OpenAIChatModel("m", base_url=url, max_retries=0))
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(Runner(agent, store).run(sid, "hi"))
    assert caught.value.kind == "connection"


def test_a_failing_stream_records_its_kind(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.default = Reply.error(503, "overloaded")
    sid = session(store)
    with pytest.raises(ModelError) as caught:
        list(runner(fake, store, max_retries=0).run(sid, "hi", stream=True))
    assert caught.value.kind == "server"
    assert [e.type for e in store.read_events(sid)][1:] == ["user_message", "error"]


def test_a_stream_without_usage(fake: FakeOpenAI, store: SessionStore) -> None:
    fake.script(Reply(chunks=[chunk(content="ok"), chunk(finish_reason="stop")]))
    sid = session(store)
    events = [o for o in runner(fake, store, stream_usage=False).run(sid, "hi", stream=True)
              if not isinstance(o, TextDelta)]
    assert "stream_options" not in fake.requests[0].body
    call = events[-1].data["model_call"]
    assert (call["input_tokens"], call["output_tokens"], call["finish_reason"]) == (None, None, "stop")
    assert store.get_session(sid).model_calls == 1
