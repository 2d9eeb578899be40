"""Choosing a model on the command line: `--model`, `--base-url`, `--api-key-env`, `.env`.

The end-to-end test runs the installed console script in fresh processes against the fake
OpenAI-compatible server over real HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import console_script
from fake_openai import FakeOpenAI, Recorded, Reply, chunk, completion, tool_call
from typer.testing import CliRunner

from agentledger.cli import app

KEY = "sk-e2e-secret-77c1"


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
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No model variables in the environment, and a working directory without `.env`."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY",
                 "OPENROUTER_BASE_URL", "OLLAMA_BASE_URL", "AGENTLEDGER_MODEL",
                 "AGENTLEDGER_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def agentledger(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "OPENROUTER_", "AGENTLEDGER_"))}
    return subprocess.run(
        [console_script(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_run_with_a_real_model_end_to_end(fake: FakeOpenAI, tmp_path: Path) -> None:
    """Two `agentledger run` processes: the second sees the first one's reminder, and the
    model is sent the first turn as history. The key comes from `.env` and is stored nowhere."""
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={KEY}\n")
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    model = ["--model", "openai/test", "--base-url", fake.url]
    fake.script(
        Reply(completion(tool_calls=[
            tool_call("call_f1", "add_reminder", {"reminder": "water the ficus"})
        ])),
        Reply(completion("Added: water the ficus.")),
    )
    first = agentledger(["--store", store, "run", "remind me to water the ficus", *model], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "agent: Added: water the ficus." in first.stdout

    def answer_from_tool(request: Recorded) -> Reply:
        listed = json.loads(request.messages[-1]["content"])
        return Reply(completion(f"You have: {'; '.join(listed['reminders'])}."))

    fake.script(
        Reply(completion(tool_calls=[tool_call("call_v1", "view_reminders")])),
        answer_from_tool,
    )
    second = agentledger(["--store", store, "run", "show my reminders", *model], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "agent: You have: water the ficus." in second.stdout
    assert "(new)" in first.stdout and "(new)" not in second.stdout

    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake.requests)
    history = fake.requests[2].messages
    assert history[1] == {"role": "user", "content": "remind me to water the ficus"}
    assert history[2]["tool_calls"][0]["id"] == "call_f1"
    assert history[3]["role"] == "tool" and history[3]["tool_call_id"] == "call_f1"
    assert history[4] == {"role": "assistant", "content": "Added: water the ficus."}
    assert history[5] == {"role": "user", "content": "show my reminders"}

    for process in (first, second):
        assert KEY not in process.stdout + process.stderr
    assert KEY.encode() not in (tmp_path / "ledger.db").read_bytes()
    stats = agentledger(["--store", store, "stats", "--json"], tmp_path)
    tokens = json.loads(stats.stdout)["tokens_by_agent"]["reminders"]
    assert tokens == {"model_calls": 4, "input_tokens": 44, "output_tokens": 28}


def test_chat_prints_tokens_as_they_stream(
    fake: FakeOpenAI, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake.script(Reply(chunks=[chunk(content="Hello "), chunk(content="Ada!"),
                              chunk(finish_reason="stop")]))
    result = CliRunner().invoke(
        app,
        ["--store", "memory://", "chat", "--model", "openai/test", "--base-url", fake.url],
        input="hi\nexit\n",
    )
    assert result.exit_code == 0, result.output
    assert "agent: Hello Ada!" in result.output
    assert fake.requests[0].body["stream"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "openrouter/meta-llama/llama-3.1-8b-instruct"], "set OPENROUTER_API_KEY"),
        (["--model", "openai/gpt-4o-mini"], "set OPENAI_API_KEY"),
        (["--model", "anthropic/claude"], "unknown model 'anthropic/claude'"),
        (["--model", "openai/"], "names no model"),
        (["--model", "openai/x", "--base-url", "ftp://x"], "must start with http"),
        (["--model", "openai/x", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env",
          "MY_LLM_KEY"], "set MY_LLM_KEY"),
        (["--base-url", "http://127.0.0.1:9/v1"], "need --model"),
    ],
)
def test_a_bad_model_choice_is_one_error_and_writes_nothing(
    clean_env: Path, args: list[str], message: str
) -> None:
    db = clean_env / "ledger.db"
    result = CliRunner().invoke(app, ["--store", f"sqlite:///{db}", "run", "hi", *args])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert result.output.count("\n") == 1
    assert not db.exists()


def test_the_model_can_come_from_the_environment(clean_env: Path) -> None:
    db = clean_env / "ledger.db"
    result = CliRunner().invoke(
        app, ["--store", f"sqlite:///{db}", "run", "hi"], env={"AGENTLEDGER_MODEL": "nope/x"}
    )
    assert result.exit_code == 1 and "unknown model 'nope/x'" in result.output


def test_offline_keeps_the_agents_own_model(clean_env: Path) -> None:
    result = CliRunner().invoke(
        app, ["--store", "memory://", "run", "remind me to stretch", "--model", "offline"]
    )
    assert result.exit_code == 0, result.output
    assert "agent: Added reminder: stretch. You now have 1 reminder." in result.output


def test_without_the_openai_package_the_error_names_the_extra(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # as if it were not installed
    db = clean_env / "ledger.db"
    result = CliRunner().invoke(
        app,
        ["--store", f"sqlite:///{db}", "run", "hi", "--model", "ollama/llama3.1"],
    )
    assert result.exit_code == 1
    assert "pip install 'agentledger[openai]'" in result.output
    assert not db.exists()


def test_the_reminders_agent_chats_with_a_real_model_like_the_transcript(
    fake: FakeOpenAI, clean_env: Path
) -> None:
    """The reminders agent as a real model sees it: described tools and parameters, and a
    system prompt carrying what it remembers, across chat sessions."""
    (clean_env / ".env").write_text(f"OPENROUTER_API_KEY={KEY}\n")
    fake.script(
        Reply(completion(tool_calls=[tool_call("c1", "update_user_name", {"name": "John"})])),
        Reply(completion("Hello John! I've updated your name. How can I help you today?")),
        Reply(completion(tool_calls=[tool_call("c2", "add_reminder", {"reminder": "buy groceries"})])),
        Reply(completion("I've added 'buy groceries' to your reminders. You now have 1 reminder.")),
    )
    db = f"sqlite:///{clean_env / 'ledger.db'}"
    model = ["--model", "openrouter/meta-llama/llama-3.1-8b-instruct", "--base-url", fake.url]
    first = CliRunner().invoke(
        app, ["--store", db, "chat", *model],
        input="Hello, I'm John\nAdd a reminder to buy groceries\nexit\n",
    )
    assert first.exit_code == 0, first.output
    assert "agent: Hello John! I've updated your name." in first.output
    assert "You now have 1 reminder." in first.output
    request = fake.requests[0]
    assert request.body["model"] == "meta-llama/llama-3.1-8b-instruct"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    tools = {t["function"]["name"]: t["function"] for t in request.body["tools"]}
    assert set(tools) == {"add_reminder", "view_reminders", "update_reminder",
                          "delete_reminder", "update_user_name"}
    assert "1" in tools["delete_reminder"]["parameters"]["properties"]["index"]["description"]
    assert tools["delete_reminder"]["parameters"]["properties"]["index"]["minimum"] == 1
    assert "not known yet" in request.messages[0]["content"]

    # A later chat (a new process, a restart): the prompt carries the name and reminders.
    fake.script(
        Reply(completion(tool_calls=[tool_call("c3", "view_reminders")])),
        Reply(completion("Here are your current reminders:\n1. buy groceries")),
    )
    second = CliRunner().invoke(app, ["--store", db, "chat", *model],
                                input="Show my reminders\nexit\n")
    assert second.exit_code == 0, second.output
    assert "1. buy groceries" in second.output
    system = fake.requests[4].messages[0]["content"]
    assert "the user's name is John" in system and "1. buy groceries" in system
