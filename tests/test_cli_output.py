"""How the command line prints: `--help` placeholders, counts, durations, how a session was
come to, what a chat turn changed, long answers, and where errors go."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cli_support
import pytest
import typer
from cli_support import iso
from rich.console import Console
from typer.testing import CliRunner, Result

from agentledger import SessionStore
from agentledger.cli import app
from agentledger.cli.render import plural, print_answer, print_state, state_changes
from agentledger.core.lifecycle import format_duration
from agentledger.manager import SessionManager
from agentledger.testing import FakeClock

clock = cli_support.clock
manager = cli_support.manager
store = cli_support.store
url = cli_support.url

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def run(url: str | None, *args: str, input: str | None = None, **env: str) -> Result:
    argv = ["--store", url, *args] if url is not None else list(args)
    return CliRunner().invoke(app, argv, input=input, env={"COLUMNS": "200", **env})


def cli(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    return subprocess.run([AGENTLEDGER, *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60, env=env)


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))


# -- --help ---------------------------------------------------------------------------------


def test_help_shows_plain_placeholders_on_every_command() -> None:
    """No `<bool>` after a flag, no `<str>` after an argument, no `{message}` in usage."""
    paths = list(walk(typer.main.get_command(app)))
    assert ("run",) in paths and ("sessions", "finalize") in paths
    for path in paths:
        result = run(None, *path, "--help")
        assert result.exit_code == 0, (path, result.output)
        text = result.stdout
        assert "<bool>" not in text and "<str>" not in text, (path, text)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, (path, usage)
    usage_of_run = run(None, "run", "--help").stdout
    assert "Usage: agentledger run [OPTIONS] MESSAGE" in usage_of_run
    finalize = run(None, "sessions", "finalize", "--help").stdout
    assert "Usage: agentledger sessions finalize [OPTIONS] ID OUTCOME" in finalize
    assert re.search(r"--summary\s+TEXT", finalize)  # options that take a value keep it


# -- counts and durations -------------------------------------------------------------------


def test_one_event_is_not_one_events(url: str, manager: SessionManager) -> None:
    session = manager.create_session("agent", "purpose")
    assert manager.get_session(session.id).version == 1
    shown = run(url, "sessions", "show", session.id)
    assert shown.exit_code == 0, shown.output
    assert "1 event" in shown.stdout and "1 events" not in shown.stdout
    assert [plural(n, "event") for n in (0, 1, 2)] == ["0 events", "1 event", "2 events"]


def test_the_idle_time_reads_the_same_in_the_detail_and_the_table(
    url: str, manager: SessionManager, clock: FakeClock
) -> None:
    session = manager.create_session("agent", "purpose", phase="planning")
    manager.update_state(session.id, resume_ready=True)
    for idle, shown in ((timedelta(seconds=0.3), "0.3s"), (timedelta(minutes=50), "50m 00s")):
        result = run(url, "sessions", "should-resume", session.id,
                     AGENTLEDGER_NOW=iso(clock() + idle))
        rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
        assert rows["idle"] == shown, result.stdout
        assert f"idle {shown}" in rows["detail"], result.stdout
    assert "idle 0.3s, 0 errors" in run(url, "sessions", "should-resume", session.id,
                                         AGENTLEDGER_NOW=iso(clock() + timedelta(seconds=0.3))
                                         ).stdout
    assert format_duration(0.3) == "0.3s" and format_duration(3000) == "50m 00s"


# -- which session a command is on ----------------------------------------------------------


def test_run_says_whether_the_session_is_new_or_continued(tmp_path: Path) -> None:
    first = cli(tmp_path, "run", "remind me to stretch")
    second = cli(tmp_path, "run", "show my reminders")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    session_id = first.stdout.split()[1]
    assert first.stdout.startswith(f"session: {session_id} (new)\n")
    assert second.stdout.startswith(f"session: {session_id} (continued)\n")


def test_run_on_a_terminated_session_does_not_say_continued(
    url: str, manager: SessionManager
) -> None:
    done = manager.create_session("reminders", "p", app_name="reminders", user_id="demo-user")
    manager.terminate(done.id)
    result = run(url, "run", "hi", "--session", done.id)
    assert result.exit_code == 1
    assert f"session: {done.id} (terminated)" in result.stdout
    assert "continued" not in result.stdout


# -- the chat: what a turn changed, long answers, errors on stderr --------------------------


def test_state_changes_lists_added_changed_and_removed_keys() -> None:
    before = {"user:name": "Ada", "topic": "x", "same": [1]}
    after = {"same": [1], "user:name": "Grace", "user:reminders": ["nap"]}
    changes = state_changes(before, after)
    assert changes is not None
    assert changes.plain.splitlines() == [
        '~ user:name: "Ada" → "Grace"',
        '+ user:reminders = ["nap"]',
        '- topic (was "x")',
    ]
    assert state_changes(after, dict(after)) is None


def test_chat_shows_what_each_turn_changed_and_nothing_when_nothing_did(tmp_path: Path) -> None:
    result = cli(tmp_path, "chat", stdin="remind me to stretch\nshow my reminders\n"
                 "my name is Ada\nquit\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state before" not in out and "state after" not in out
    turns = out.split("you> ")[1:]
    assert len(turns) == 4
    assert "state changes" in turns[0] and '+ user:reminders = ["stretch"]' in turns[0]
    assert "state changes" not in turns[1]  # a read-only turn changes nothing
    assert "state changes" in turns[2] and "Ada" in turns[2]


def test_long_answers_wrap_on_a_terminal_without_losing_a_word() -> None:
    answer = "You have 3 reminders: " + "; ".join(f"{i}. water the plants" for i in range(1, 9))
    answer += " and " + "x" * 70  # a word longer than the terminal is folded, not cut
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=40, color_system=None)
    print_answer(answer, console=console)
    lines = buffer.getvalue().splitlines()
    assert len(lines) > 3 and all(len(line) <= 40 for line in lines)
    assert lines[0].startswith("agent: You have")
    assert all(line.startswith(" " * 7) for line in lines[1:])  # under the answer's start
    words = "".join(line[7:] for line in lines).split()
    assert "".join(words) == "".join(answer.split())  # every character kept, in order
    assert " ".join(lines[0].split()[1:]) in answer  # words wrap whole
    # piped, the answer stays on one line for the reader to wrap
    piped = io.StringIO()
    print_answer(answer, console=Console(file=piped, width=40))
    assert piped.getvalue() == f"agent: {answer}\n"


def test_state_panels_wrap_long_values_instead_of_cutting_them() -> None:
    value = "water the plants in the living room, the kitchen and the balcony on Sunday"
    buffer = io.StringIO()
    print_state({"user:reminders": [value]}, console=Console(
        file=buffer, force_terminal=True, width=40, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= 40 for line in lines)
    inside = "".join(line.strip("│ ") for line in lines)
    assert "".join(value.split()) in "".join(inside.split())


def test_chat_errors_go_to_stderr(tmp_path: Path) -> None:
    result = cli(tmp_path, "chat", stdin="/session load nope\nhi\n/session terminate\n"
                 "/session terminate\nquit\n")
    assert result.returncode == 0, result.stderr
    assert "error: no session with id 'nope'" in result.stderr
    assert "error: " in result.stderr.splitlines()[-1]  # terminating twice
    assert "error:" not in result.stdout
    assert "you> hi" in result.stdout  # the chat went on


def test_a_failed_turn_in_the_chat_goes_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "failing_agent.py").write_text(
        "from agentledger.runner import Agent, OfflineModel, Rule\n"
        "def explode(what: str) -> dict:\n"
        "    '''Fail.'''\n"
        "    raise RuntimeError('the ' + what + ' exploded')\n"
        "def make() -> Agent:\n"
        "    return Agent(name='failing', model=OfflineModel([Rule(r'break (?P<what>.+)', "
        "'explode')]), tools=[explode])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run(f"sqlite:///{tmp_path}/x.db", "chat", "--agent", "failing_agent:make",
                 input="break vase\nquit\n")
    assert result.exit_code == 0, result.output
    assert "agent failed: tool 'explode' failed: the vase exploded" in result.stderr
    assert "agent failed" not in result.stdout


# -- sessions update ------------------------------------------------------------------------


def test_resume_ready_and_not_resume_ready_together_is_a_usage_error(
    url: str, manager: SessionManager, store: SessionStore
) -> None:
    session = manager.create_session("agent", "purpose")
    version = store.get_session(session.id).version
    result = run(url, "sessions", "update", session.id, "--resume-ready", "--not-resume-ready")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not both" in lines[0]
    assert store.get_session(session.id).version == version
    for flag, expected in (("--not-resume-ready", False), ("--resume-ready", True)):
        assert run(url, "sessions", "update", session.id, flag).exit_code == 0
        assert store.get_session(session.id).resume_ready is expected


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentledger.cli import sessions as sessions_module

    def interrupted(ctx: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sessions_module, "manager_from", interrupted)
    result = run(url, "sessions", "list")
    assert result.exit_code == 130
    assert result.stderr == "error: interrupted\n" and result.stdout == ""
