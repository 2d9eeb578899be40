"""Model specs, the context policy, history shapes, streaming and token accounting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agentledger import ConfigurationError, ModelError, NewEvent, ToolError, open_store
from agentledger.cli.render import stats_text
from agentledger.core.projection import project
from agentledger.manager import SessionManager
from agentledger.runner import (
    Agent,
    ContextPolicy,
    Message,
    ModelResponse,
    OfflineModel,
    OpenAIChatModel,
    Rule,
    Runner,
    TextDelta,
    ToolCall,
    Usage,
    resolve_model,
)
from agentledger.runner.model_spec import parse_model_spec
from agentledger.runner.runner import history_messages
from agentledger.stores.base import SessionStore


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with open_store("memory://") as s:
        yield s


class Recording:
    """Answers from a script and keeps what it was sent."""

    name = "rec"

    def __init__(self, responses: Sequence[Any]) -> None:
        self.responses = list(responses)
        self.seen: list[list[Message]] = []

    def generate(self, messages: Sequence[Message], tools: Sequence[Any]) -> Any:
        self.seen.append(list(messages))
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


# -- model specs -----------------------------------------------------------------------


def test_specs_parse() -> None:
    spec = parse_model_spec("openrouter/meta-llama/llama-3.1-8b-instruct")
    assert (spec.provider, spec.name) == ("openrouter", "meta-llama/llama-3.1-8b-instruct")
    assert parse_model_spec(" OFFLINE ").provider == "offline"


def test_offline_is_the_given_offline_model() -> None:
    own = OfflineModel([Rule("x", "t")])
    assert resolve_model("offline", offline=own) is own
    assert isinstance(resolve_model(None), OfflineModel)


def test_provider_endpoints_and_keys(tmp_path: Path) -> None:
    env = {"OPENROUTER_API_KEY": "sk-or-secret-1234"}
    model = resolve_model("openrouter/meta-llama/llama-3.1-8b-instruct", environ=env,
                          dotenv_path=None)
    assert isinstance(model, OpenAIChatModel)
    assert (model.provider, model.name) == ("openrouter", "meta-llama/llama-3.1-8b-instruct")
    assert model.base_url == "https://openrouter.ai/api/v1"
    assert "sk-or-secret-1234" not in repr(model) + str(vars(model).get("name"))
    ollama = resolve_model("ollama/llama3.1", environ={}, dotenv_path=None)
    assert isinstance(ollama, OpenAIChatModel)
    assert ollama.base_url == "http://localhost:11434/v1"
    # A base URL of one's own makes the key optional (a local vLLM)...
    local = resolve_model("openai/x", environ={"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"},
                          dotenv_path=None)
    assert isinstance(local, OpenAIChatModel) and local.base_url == "http://127.0.0.1:8000/v1"
    # ...and a key in .env is found when the environment has none.
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPENAI_API_KEY=sk-from-dotenv\n")
    assert isinstance(resolve_model("openai/gpt-4o-mini", environ={}, dotenv_path=dotenv),
                      OpenAIChatModel)
    with pytest.raises(ConfigurationError, match="set OPENAI_API_KEY"):
        resolve_model("openai/gpt-4o-mini", environ={}, dotenv_path=None)


def test_an_agent_takes_a_spec_string(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        Agent(name="a", model="openrouter/meta-llama/llama-3.1-8b-instruct")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-x")
    agent = Agent(name="a", model="openrouter/meta-llama/llama-3.1-8b-instruct")
    assert isinstance(agent.get_model(), OpenAIChatModel)
    with pytest.raises(ConfigurationError, match="max_steps"):
        Agent(name="a", max_steps=0)


# -- history and context -----------------------------------------------------------------


def test_a_ledger_without_steps_keeps_one_assistant_message_per_call(store: SessionStore) -> None:
    """Ledgers written before steps were recorded still give a valid transcript."""
    sid = store.create_session(app_name="a", user_id="u").id
    turn = "inv1"
    store.append(sid, [
        NewEvent(type="user_message", author="user", data={"text": "go"}, invocation_id=turn),
        NewEvent(type="tool_call", data={"call_id": "call_1", "name": "t", "arguments": {}},
                 invocation_id=turn),
        NewEvent(type="tool_result", data={"call_id": "call_1", "name": "t", "result": 1},
                 invocation_id=turn),
        NewEvent(type="tool_call", data={"call_id": "call_1", "name": "t", "arguments": {"a": 1}},
                 invocation_id=turn),
        NewEvent(type="tool_result", data={"call_id": "call_1", "name": "t", "result": 2},
                 invocation_id=turn),
        NewEvent(type="final_output", data={"text": "done"}, invocation_id=turn),
        # a later turn reuses the id "call_1" and fails before its result
        NewEvent(type="user_message", author="user", data={"text": "again"}, invocation_id="inv2"),
        NewEvent(type="tool_call", data={"call_id": "call_1", "name": "t", "arguments": {}},
                 invocation_id="inv2"),
    ])
    messages = history_messages(store.read_events(sid))
    assert [(m.role, len(m.tool_calls), m.content) for m in messages] == [
        ("user", 0, "go"), ("assistant", 1, None), ("tool", 0, "1"), ("assistant", 1, None),
        ("tool", 0, "2"), ("assistant", 0, "done"), ("user", 0, "again"),
    ]


def test_a_token_budget_keeps_the_newest_turns_that_fit(store: SessionStore) -> None:
    model = Recording([ModelResponse(text=f"answer {i}") for i in range(4)])
    sid = store.create_session(app_name="a", user_id="u").id
    for i in range(3):
        list(Runner(Agent(name="a", model=model), store).run(sid, f"{i} " + "x" * 400))
    budget = Runner(Agent(name="a", model=model), store, context=ContextPolicy.token_budget(150))
    list(budget.run(sid, "last"))
    sent = [m.content or "" for m in model.seen[-1]]
    assert [s[:1] for s in sent] == ["2", "a", "l"]  # turn 2 only (~110 tokens), then "last"
    with pytest.raises(ConfigurationError):
        ContextPolicy(max_turns=0)


# -- streaming, failures, tokens ------------------------------------------------------------


def test_a_model_without_streaming_streams_its_text_as_one_delta(store: SessionStore) -> None:
    sid = store.create_session(app_name="a", user_id="u").id
    runner = Runner(Agent(name="a", model=Recording([ModelResponse(text="hi there")] * 2)), store)
    out = list(runner.run(sid, "hello", stream=True))
    assert [type(o).__name__ for o in out] == ["Event", "TextDelta", "Event"]

    async def turn() -> list[Any]:
        return [o async for o in runner.run_async(sid, "again", stream=True)]

    deltas = [o for o in asyncio.run(turn()) if isinstance(o, TextDelta)]
    assert [d.text for d in deltas] == ["hi there"] and deltas[0].step == 1


@pytest.mark.parametrize(
    ("response", "kind"), [(RuntimeError("kaput"), "model"), ("not a response", "bad_response")]
)
def test_model_failure_kinds(store: SessionStore, response: Any, kind: str) -> None:
    sid = store.create_session(app_name="a", user_id="u").id
    with pytest.raises(ModelError) as caught:
        list(Runner(Agent(name="a", model=Recording([response])), store).run(sid, "hi"))
    assert caught.value.kind == kind
    error = store.read_events(sid)[-1]
    assert (error.data["kind"], error.data["source"], error.data["step"]) == (kind, "model", 1)


def test_a_failing_tool_records_kind_tool(store: SessionStore) -> None:
    def explode() -> None:
        """Fail."""
        raise RuntimeError("x")

    model = Recording([ModelResponse(tool_calls=[ToolCall(id="c", name="explode")])])
    sid = store.create_session(app_name="a", user_id="u").id
    with pytest.raises(ToolError):
        list(Runner(Agent(name="a", model=model, tools=[explode]), store).run(sid, "go"))
    assert store.read_events(sid)[-1].data["kind"] == "tool"


def test_tokens_add_up_in_the_session_and_in_stats(store: SessionStore) -> None:
    usage = Usage(input_tokens=100, output_tokens=20)
    model = Recording([ModelResponse(text="a", usage=usage, provider="p", model="m-1")] * 2)
    sid = store.create_session(app_name="a", user_id="u", agent_name="helper").id
    runner = Runner(Agent(name="helper", model=model), store)
    list(runner.run(sid, "one"))
    list(runner.run(sid, "two"))
    # A malformed record on a plugin's event is not counted, and does not break the fold.
    store.append(sid, [NewEvent(type="x.y", data={"model_call": {"input_tokens": "many"}})])
    session = store.get_session(sid)
    assert (session.model_calls, session.input_tokens, session.output_tokens) == (3, 200, 40)
    assert project(store.read_events(sid)).input_tokens == 200
    final = store.read_events(sid, types=["final_output"])[-1].data["model_call"]
    assert (final["provider"], final["model"], final["input_tokens"]) == ("p", "m-1", 100)
    store.create_session(app_name="a", user_id="v", agent_name="other")
    stats = SessionManager(store).stats()
    assert (stats.input_tokens, stats.output_tokens, stats.tokens_per_session) == (200, 40, 120.0)
    assert stats.tokens_by_agent == {
        "helper": {"model_calls": 3, "input_tokens": 200, "output_tokens": 40}
    }
    text = stats_text(stats).plain
    assert "200 in, 40 out over 3 model calls (120 per session)" in text
    assert "helper 200 in / 40 out" in text
