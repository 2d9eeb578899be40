"""`agentledger demo`, `run` and `chat`, through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentledger import open_store

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def cli(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    full_env.update(env or {})
    return subprocess.run(
        [AGENTLEDGER, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def ledger_of(output: str) -> list[dict[str, object]]:
    """The JSON ledger the demo prints after its `ledger of session …` line."""
    _, _, tail = output.partition("events):\n")
    events: list[dict[str, object]] = json.loads(tail)
    return events


def test_demo_on_the_default_store_persists_across_runs(tmp_path: Path) -> None:
    first = cli(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "agentledger.db").exists()
    session_line = first.stdout.splitlines()[0]
    assert session_line.startswith("session: ") and "(new)" in session_line
    session_id = session_line.split()[1]
    assert "agent: Added reminder: call the dentist. You now have 1 reminder." in first.stdout
    types = {e["type"] for e in ledger_of(first.stdout)}
    assert {"user_message", "tool_call", "tool_result", "final_output"} <= types

    second = cli(tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].split()[1] == session_id
    # the first answer of the second run lists the first run's reminders
    assert (
        "agent: Ada, you have 2 reminders: 1. call the dentist; 2. water the plants."
        in second.stdout
    )
    assert len(ledger_of(second.stdout)) > len(ledger_of(first.stdout))


def test_run_then_show_has_the_reminder_in_state(tmp_path: Path) -> None:
    result = cli(tmp_path, "run", "remind me to call the dentist")
    assert result.returncode == 0, result.stderr
    session_id = result.stdout.splitlines()[0].split()[1]
    assert "Added reminder: call the dentist" in result.stdout
    shown = cli(tmp_path, "sessions", "show", session_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"]["user:reminders"] == ["call the dentist"]


def test_run_json_and_events(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/s.db"
    result = cli(tmp_path, "--store", store_url, "run", "my name is Grace", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"] == "Nice to meet you, Grace."
    assert [e["type"] for e in payload["events"]] == [
        "user_message", "tool_call", "tool_result", "final_output",
    ]
    with open_store(store_url) as store:
        stored = store.read_events(payload["session_id"], after=1)
        assert [e.id for e in stored] == [e["id"] for e in payload["events"]]

    verbose = cli(tmp_path, "--store", store_url, "run", "show my reminders", "--events",
                  "--session", payload["session_id"])
    assert verbose.returncode == 0, verbose.stderr
    assert "tool_call" in verbose.stdout and "view_reminders" in verbose.stdout


def test_run_other_user_gets_own_session_and_state(tmp_path: Path) -> None:
    a = cli(tmp_path, "run", "remind me to feed the cat", "--user", "ann")
    b = cli(tmp_path, "run", "show my reminders", "--user", "bo")
    assert a.returncode == b.returncode == 0
    assert a.stdout.splitlines()[0] != b.stdout.splitlines()[0]
    assert "You have no reminders." in b.stdout


def test_chat_loop_shows_state_and_exits(tmp_path: Path) -> None:
    result = cli(
        tmp_path,
        "chat",
        stdin="remind me to stretch\n\nfrobnicate the widget\nshow my reminders\nquit\n",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state before" not in out and "state after" not in out
    assert out.count("state changes") == 1  # only the turn that changed something
    assert '+ user:reminders = ["stretch"]' in out
    assert "Added reminder: stretch" in out
    assert "I did not understand that." in out
    assert "You have 1 reminder: 1. stretch." in out
    assert "bye; session" in out


def test_chat_ends_on_end_of_input(tmp_path: Path) -> None:
    result = cli(tmp_path, "chat", stdin="remind me to nap\n")
    assert result.returncode == 0, result.stderr
    assert "Added reminder: nap" in result.stdout


CUSTOM_AGENT = '''
from agentledger.runner import Agent, OfflineModel, Rule

def shout(text: str) -> dict:
    """Shout the text."""
    return {"message": text.upper() + "!"}

def make() -> Agent:
    return Agent(name="shouter", model=OfflineModel([Rule(r"shout (?P<text>.+)", "shout")]),
                 tools=[shout])

not_an_agent = 42
'''


def test_run_with_a_custom_agent(tmp_path: Path) -> None:
    (tmp_path / "my_agents.py").write_text(CUSTOM_AGENT)
    env = {"PYTHONPATH": str(tmp_path)}
    result = cli(tmp_path, "run", "shout hello", "--agent", "my_agents:make", "--app", "loud",
                 env=env)
    assert result.returncode == 0, result.stderr
    assert "HELLO!" in result.stdout
    listed = json.loads(cli(tmp_path, "sessions", "list", "--json").stdout)
    assert listed["sessions"][0]["agent_name"] == "shouter"
    assert listed["sessions"][0]["app_name"] == "loud"


@pytest.mark.parametrize("spec", ["my_agents:not_an_agent", "my_agents:missing", "nomodule:x", "bad"])
def test_bad_agent_spec_is_one_line_error(tmp_path: Path, spec: str) -> None:
    (tmp_path / "my_agents.py").write_text(CUSTOM_AGENT)
    result = cli(tmp_path, "run", "hi", "--agent", spec, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_run_on_unknown_session_is_one_line_error(tmp_path: Path) -> None:
    result = cli(tmp_path, "run", "hi", "--session", "does-not-exist")
    assert result.returncode == 1
    assert "no session with id 'does-not-exist'" in result.stderr


def test_run_refuses_an_empty_message_and_writes_nothing(tmp_path: Path) -> None:
    result = cli(tmp_path, "run", "   ")
    assert result.returncode == 2
    assert "message is empty" in result.stderr
    assert not (tmp_path / "agentledger.db").exists()


def test_long_answers_are_not_wrapped_when_piped(tmp_path: Path) -> None:
    long = "reminder " + "x" * 150
    result = cli(tmp_path, "run", f"remind me to {long}")
    assert result.returncode == 0, result.stderr
    answer_lines = [line for line in result.stdout.splitlines() if line.startswith("agent: ")]
    assert answer_lines == [f"agent: Added reminder: {long}. You now have 1 reminder."]


def test_run_stores_no_escape_sequence_or_control_character(tmp_path: Path) -> None:
    result = cli(tmp_path, "run", "remind me to a\x1b[31mred\x07 bell")
    assert result.returncode == 0, result.stderr
    shown = cli(tmp_path, "sessions", "list", "--json")
    sid = json.loads(shown.stdout)["sessions"][0]["id"]
    state = json.loads(cli(tmp_path, "sessions", "show", sid, "--json").stdout)["state"]
    assert state["user:reminders"] == ["ared bell"]
    events = cli(tmp_path, "sessions", "events", sid, "--json").stdout
    assert "\\u001b" not in events and "\\u0007" not in events


def test_concurrent_runs_lose_no_reminder(tmp_path: Path) -> None:
    """Six `agentledger run` processes add reminders to one user's list at once."""
    first = cli(tmp_path, "run", "remind me to start")
    assert first.returncode == 0, first.stderr
    session_id = first.stdout.splitlines()[0].split()[1]
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    procs = [
        subprocess.Popen(
            [AGENTLEDGER, "run", f"remind me to task {i}", "--session", session_id],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    shown = json.loads(cli(tmp_path, "sessions", "show", session_id, "--json").stdout)
    assert sorted(shown["state"]["user:reminders"]) == sorted(
        ["start", *(f"task {i}" for i in range(6))]
    )


def test_a_password_in_the_store_url_is_never_printed(tmp_path: Path) -> None:
    from agentledger.stores.base import display_url

    assert display_url("postgresql://ada:s3cret@db:5432/x?schema=a") == (
        "postgresql://ada:***@db:5432/x?schema=a"
    )
    assert display_url("sqlite:///x.db") == "sqlite:///x.db"
    result = cli(tmp_path, "--store", "postgresql://ada:s3cret@127.0.0.1:1/x", "run", "hi")
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert "ada:***@127.0.0.1:1" in result.stderr


@pytest.mark.parametrize("scheme", ["sqlite", "file", "postgresql"])
def test_parallel_first_runs_of_a_new_user_make_one_session(
    tmp_path: Path, scheme: str, request: pytest.FixtureRequest
) -> None:
    """Eight `agentledger run` processes at once for a user with no session yet."""
    store_url = {
        "sqlite": lambda: f"sqlite:///{tmp_path}/x.db",
        "file": lambda: f"file://{tmp_path}/s",
        "postgresql": lambda: str(request.getfixturevalue("postgres_url")),
    }[scheme]()
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    procs = [
        subprocess.Popen(
            [AGENTLEDGER, "--store", store_url, "run", f"remind me to task {i}", "--user", "new"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(8)
    ]
    first_lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        first_lines.append(out.splitlines()[0])
    with open_store(store_url) as store:
        sessions = store.list_sessions(user_id="new").sessions
        assert len(sessions) == 1, [s.id for s in sessions]
        assert sorted(sessions[0].state["user:reminders"]) == [f"task {i}" for i in range(8)]
    assert {line.split()[1] for line in first_lines} == {sessions[0].id}
    assert sum("(new)" in line for line in first_lines) == 1


def test_run_with_an_agent_from_the_working_directory_continues_only_its_sessions(
    tmp_path: Path,
) -> None:
    """`--agent` finds a module in the working directory (as `python -m` does), and
    `run` continues that agent's session, never the reminders agent's."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "agents.py").write_text(CUSTOM_AGENT)
    reminders = cli(tmp_path, "run", "remind me to water the plants")
    assert reminders.returncode == 0, reminders.stderr
    reminders_id = reminders.stdout.splitlines()[0].split()[1]

    shouted = cli(tmp_path, "run", "shout hello", "--agent", "mypkg.agents:make")
    assert shouted.returncode == 0, shouted.stderr
    assert "HELLO!" in shouted.stdout
    shouter_id = shouted.stdout.splitlines()[0].split()[1]
    assert shouter_id != reminders_id and "(new)" in shouted.stdout

    again = cli(tmp_path, "run", "shout again", "--agent", "mypkg.agents:make", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["session_id"] == shouter_id
    back = cli(tmp_path, "run", "show my reminders", "--json")
    assert json.loads(back.stdout)["session_id"] == reminders_id
    with open_store(f"sqlite:///{tmp_path}/agentledger.db") as store:
        assert store.get_session(shouter_id).agent_name == "shouter"
        texts = [e.data["text"] for e in store.read_events(reminders_id, types=["user_message"])]
        assert texts == ["remind me to water the plants", "show my reminders"]


def _sessions_in(store_url: str) -> list[str]:
    with open_store(store_url) as store:
        return [s.id for s in store.list_sessions().sessions]


def test_run_with_undecodable_bytes_fails_before_creating_a_session(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/x.db"
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    result = subprocess.run(
        [AGENTLEDGER.encode(), b"--store", store_url.encode(), b"run", b"remind me to caf\xe9"],
        cwd=tmp_path, capture_output=True, env=env, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == b""  # no "session: ... (new)"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the message is not valid UTF-8"), lines
    assert "byte 0xe9" in lines[0] and "Traceback" not in lines[0]
    assert _sessions_in(store_url) == []


def test_run_with_a_message_over_the_event_limit_fails_before_creating_a_session(
    tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path}/x.db?max_event_bytes=2000"
    result = cli(tmp_path, "--store", store_url, "run", "remind me to " + "x" * 3000)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: the message is ") and "over the limit of 2000" in (
        result.stderr
    )
    assert len(result.stderr.splitlines()) == 1
    assert _sessions_in(store_url) == []
    # A message within the limit still runs, in a new session.
    ok = cli(tmp_path, "--store", store_url, "run", "remind me to " + "x" * 100)
    assert ok.returncode == 0, ok.stderr
    assert len(_sessions_in(store_url)) == 1


def test_run_with_a_1_mb_message_fails_before_creating_a_session(tmp_path: Path) -> None:
    # One argument of a real command line is limited to 128 KiB on Linux: run in-process.
    from typer.testing import CliRunner

    from agentledger.cli import app

    store_url = f"sqlite:///{tmp_path}/x.db"
    result = CliRunner().invoke(app, ["--store", store_url, "run", "y" * 1_100_000])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "over the limit of 1048576 bytes" in result.stderr
    assert _sessions_in(store_url) == []
