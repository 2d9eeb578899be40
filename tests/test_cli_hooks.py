"""`agentledger hook pre-delegate` and `agentledger hook subagent-stop` (issue 3, part 3).

JSON is piped into the REAL command, the installed console script run as a subprocess;
sessions are set up and checked through the Python API on the same SQLite file. The last
tests run `examples/lifecycle_cli.sh`, the two lifecycle workflows through the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cli_support
import pytest
from cli_support import T0, console_script, iso
from typer.testing import CliRunner

from agentledger import InvalidTransitionError, open_store
from agentledger.cli import app
from agentledger.cli import hooks as hooks_module
from agentledger.manager import SessionManager
from agentledger.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent

# The CLI tests' fixtures (a SQLite store at a fixed clock): cli_support.
clock = cli_support.clock
manager = cli_support.manager
store = cli_support.store
url = cli_support.url


class Hook:
    """The outcome of one hook run: exit code, parsed stdout, raw stderr."""

    def __init__(self, code: int, stdout: bytes, stderr: bytes) -> None:
        self.code = code
        self.stderr = stderr.decode("utf-8", "replace")
        assert "Traceback" not in self.stderr, self.stderr
        self.out: dict[str, Any] = json.loads(stdout)  # stdout is exactly one JSON object


def hook(
    name: str, stdin: Any, url: str, *, now: datetime | None = T0, in_process: bool = False
) -> Hook:
    """Pipe `stdin` (an object, dumped as JSON; str/bytes as given) into `agentledger hook
    <name>` on the store `url`, its clock fixed at `now`: in a subprocess running the
    installed console script, or (`in_process`, for the many small input checks, faster)
    through `CliRunner`."""
    if isinstance(stdin, bytes):
        data = stdin
    elif isinstance(stdin, str):
        data = stdin.encode()
    else:
        data = json.dumps(stdin).encode()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AGENTLEDGER_STORE": url}
    if now is not None:
        env["AGENTLEDGER_NOW"] = iso(now)
    if in_process:
        result = CliRunner().invoke(app, ["hook", name], input=data, env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return Hook(result.exit_code, result.stdout_bytes, result.stderr_bytes)
    proc = subprocess.run(
        [console_script(), "hook", name], input=data, capture_output=True, env=env, timeout=60
    )
    return Hook(proc.returncode, proc.stdout, proc.stderr)


def approval_session(manager: SessionManager, clock: FakeClock) -> str:
    """Seed 003's example 1 up to the approval pause (T0+2m), the agent paused (suspended)."""
    session = manager.create_session(
        "terraform-architect", "approval_workflow", {"task_id": "T001", "workspace": "prod"}
    )
    clock.advance(minutes=1)
    manager.update_state(session.id, phase="planning", metadata={"plan_file": "plan.json"})
    clock.advance(minutes=1)
    manager.update_state(session.id, phase="approval")
    manager.suspend(session.id, "waiting for approval")
    return session.id


# -- pre-delegate -----------------------------------------------------------------------------


def test_pre_delegate_resumes_a_resumable_session(
    url: str, manager: SessionManager, clock: FakeClock
) -> None:
    session_id = approval_session(manager, clock)
    request = {
        "agent_name": "terraform-architect",
        "task_id": "T001",
        "agent_id": session_id,
        "task_description": "apply the approved plan",
        "metadata": {"approved_by": "ada"},
    }
    result = hook("pre-delegate", request, url, now=T0 + timedelta(minutes=12))
    assert result.code == 0, result.out
    assert result.out == {
        "should_resume": True,
        "reason": "session_resumable",
        "detail": "phase 'approval', idle 10m 00s, 0 errors",
        "agent_id": session_id,
        "previous_agent_id": session_id,
        "resume_metadata": {
            "previous_phase": "approval",
            "created_at": iso(T0),
            "history": [
                {"from_phase": "initializing", "to_phase": "planning",
                 "timestamp": iso(T0 + timedelta(minutes=1))},
                {"from_phase": "planning", "to_phase": "approval",
                 "timestamp": iso(T0 + timedelta(minutes=2))},
            ],
            "session_metadata": {"task_id": "T001", "workspace": "prod", "plan_file": "plan.json"},
        },
        "original_context": request,
    }
    after = manager.get_session(session_id)
    assert (after.status, after.resume_count) == ("active", 1)  # the resume is recorded
    assert len(manager.list_sessions().sessions) == 1  # nothing created


def test_pre_delegate_without_agent_id_creates_a_session(
    url: str, manager: SessionManager
) -> None:
    request = {
        "agent_name": "gitops-operator",
        "task_id": "T002",
        "task_description": "investigate the pod crash loop",
        "metadata": {"issue": "pod-crash-loop"},
    }
    result = hook("pre-delegate", request, url)
    assert result.code == 0
    out = result.out
    assert (out["should_resume"], out["reason"], out["resume_metadata"]) == (
        False, "no_agent_id", None
    )
    assert out["previous_agent_id"] is None and out["original_context"] == request
    created = manager.get_session(out["agent_id"])
    assert (created.agent_name, created.purpose) == ("gitops-operator", request["task_description"])
    assert created.metadata == {"issue": "pod-crash-loop", "task_id": "T002"}
    assert (created.status, created.phase, created.created_at) == ("active", "initializing", T0)


def test_pre_delegate_creates_a_new_session_when_not_resumable(
    url: str, manager: SessionManager, clock: FakeClock
) -> None:
    old = approval_session(manager, clock)
    request = {"agent_name": "terraform-architect", "task_id": 7, "agent_id": old}
    result = hook("pre-delegate", request, url, now=T0 + timedelta(hours=1))  # idle 58m
    assert result.code == 0
    out = result.out
    assert (out["should_resume"], out["reason"]) == (False, "timeout_exceeded")
    assert out["previous_agent_id"] == old and out["agent_id"] != old
    assert "longer than max_idle 30m 00s; created a new session" in out["detail"]
    new = manager.get_session(out["agent_id"])
    assert (new.purpose, new.metadata) == ("7", {"task_id": 7})  # purpose falls back to task_id
    assert manager.get_session(old).resume_count == 0  # the old one is left as it was


@pytest.mark.parametrize(
    ("agent_id", "reason"), [("no-such-session", "not_found"), ("../escape", "not_found")]
)
def test_pre_delegate_unknown_id_creates_a_session(
    url: str, manager: SessionManager, agent_id: str, reason: str
) -> None:
    result = hook("pre-delegate", {"agent_name": "a", "agent_id": agent_id}, url)
    assert result.code == 0
    assert (result.out["should_resume"], result.out["reason"]) == (False, reason)
    assert result.out["previous_agent_id"] == agent_id
    assert manager.get_session(result.out["agent_id"]).agent_name == "a"


def test_pre_delegate_refuses_another_agents_session(
    url: str, manager: SessionManager, clock: FakeClock
) -> None:
    theirs = approval_session(manager, clock)
    result = hook("pre-delegate", {"agent_name": "gitops-operator", "agent_id": theirs}, url)
    assert (result.code, result.out["reason"]) == (0, "agent_mismatch")
    assert result.out["agent_id"] != theirs
    assert manager.get_session(theirs).resume_count == 0


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        ({"task_id": "T1"}, "agent_name is required"),
        ({"agent_name": "  "}, "agent_name is required"),
        ({"agent_name": 3}, "agent_name must be a string"),
        ({"agent_name": "a", "metadata": [1]}, "metadata must be a JSON object"),
        ({"agent_name": "a", "task_id": {"x": 1}}, "task_id must be a string or an integer"),
        ([1, 2], "stdin must hold a JSON object"),
    ],
)
def test_pre_delegate_bad_input(
    url: str, manager: SessionManager, request_: Any, needle: str
) -> None:
    result = hook("pre-delegate", request_, url, in_process=request_ != {"task_id": "T1"})
    assert result.code == 2
    assert result.out["error"] == "invalid_input" and needle in result.out["message"]
    assert manager.list_sessions().sessions == []  # nothing created


# -- subagent-stop ----------------------------------------------------------------------------


def test_subagent_stop_completes_on_exit_code_0(url: str, manager: SessionManager) -> None:
    session = manager.create_session("terraform-architect", "apply", phase="executing")
    later = T0 + timedelta(minutes=3)
    request = {"agent_id": session.id, "exit_code": 0, "summary": "Terraform applied"}
    result = hook("subagent-stop", request, url, now=later)
    assert result.code == 0
    assert result.out == {
        "finalized": True,
        "reason": None,
        "agent_id": session.id,
        "outcome": "completed",
        "summary": "Terraform applied",
        "duration_seconds": 180.0,
        "finalized_at": iso(later),
    }
    after = manager.get_session(session.id)
    assert (after.status, after.phase, after.outcome) == ("terminated", "completed", "completed")


def test_subagent_stop_fails_on_a_non_zero_exit_code(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p")
    result = hook("subagent-stop", {"agent_id": session.id, "exit_code": 3}, url)
    assert (result.code, result.out["finalized"], result.out["outcome"]) == (0, True, "failed")
    assert result.out["summary"] is None
    assert manager.get_session(session.id).outcome == "failed"


def test_subagent_stop_claude_code_payload(url: str, manager: SessionManager) -> None:
    """A Claude Code SubagentStop payload: no exit_code (completed), the summary from
    last_assistant_message; its agent_id matches a session created with that id."""
    session = manager.create_session("code-reviewer", "review", session_id="a7f3c2e1b9d04f6e")
    payload = {
        "session_id": "5c1a8f7e-2b4d-4e9a-9f3c-1d2e3f4a5b6c",
        "transcript_path": "/home/ada/.claude/projects/demo/5c1a8f7e.jsonl",
        "cwd": "/home/ada/demo",
        "permission_mode": "default",
        "hook_event_name": "SubagentStop",
        "stop_hook_active": False,
        "agent_id": "a7f3c2e1b9d04f6e",
        "agent_type": "code-reviewer",
        "agent_transcript_path": "/home/ada/.claude/projects/demo/agent-a7f3c2e1b9d04f6e.jsonl",
        "last_assistant_message": "Reviewed 3 files: " + "x" * 3000,
    }
    result = hook("subagent-stop", payload, url)
    assert result.code == 0
    assert (result.out["finalized"], result.out["outcome"]) == (True, "completed")
    summary = manager.get_session(session.id).summary
    assert summary is not None and summary.startswith("Reviewed 3 files: xxx")
    assert len(summary) == hooks_module.SUMMARY_MAX_CHARS and summary.endswith("…")

    # Claude Code's own agent_id names no session here: the wrapper passes ours in metadata
    other = manager.create_session("code-reviewer", "review again")
    payload |= {"agent_id": "b0b0b0b0", "metadata": {"agent_id": other.id}}
    result = hook("subagent-stop", payload, url)
    assert (result.code, result.out["finalized"], result.out["agent_id"]) == (0, True, other.id)

    # a stop_hook_active repeat of the same stop: already terminated, still exit code 0
    result = hook("subagent-stop", payload | {"stop_hook_active": True}, url)
    assert (result.code, result.out["finalized"], result.out["reason"]) == (0, False, "terminated")


@pytest.mark.parametrize(
    ("request_", "reason", "agent_id", "in_process"),
    [
        ({"exit_code": 0}, "no_agent_id", None, False),
        ({"agent_id": "", "exit_code": 0}, "no_agent_id", None, True),
        ({"agent_id": "no-such-session", "exit_code": 0}, "not_found", "no-such-session", False),
        ({"agent_id": "../escape"}, "not_found", "../escape", True),
        (
            {"hook_event_name": "SubagentStop", "session_id": "s", "transcript_path": "/t",
             "stop_hook_active": False, "agent_id": "unknown-claude-agent"},
            "not_found",
            "unknown-claude-agent",
            True,
        ),
    ],
)
def test_subagent_stop_missing_or_unknown_id_is_reported(
    url: str, request_: dict[str, Any], reason: str, agent_id: str | None, in_process: bool
) -> None:
    result = hook("subagent-stop", request_, url, in_process=in_process)
    assert result.code == 0
    assert (result.out["finalized"], result.out["reason"]) == (False, reason)
    assert result.out["agent_id"] == agent_id


def test_subagent_stop_on_a_terminated_session(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p")
    manager.terminate(session.id)
    result = hook("subagent-stop", {"agent_id": session.id, "exit_code": 0}, url)
    assert result.code == 0
    assert result.out == {
        "finalized": False,
        "reason": "terminated",
        "agent_id": session.id,
        "detail": "the session is already terminated (no outcome)",
    }
    assert manager.get_session(session.id).outcome is None


@pytest.mark.parametrize("exit_code", ["0", True, 1.5])
def test_subagent_stop_bad_exit_code(url: str, manager: SessionManager, exit_code: Any) -> None:
    session = manager.create_session("a", "p")
    request = {"agent_id": session.id, "exit_code": exit_code}
    result = hook("subagent-stop", request, url, in_process=True)
    assert (result.code, result.out["error"]) == (2, "invalid_input")
    assert manager.get_session(session.id).status == "active"


# -- both hooks: malformed input and failures -------------------------------------------------


@pytest.mark.parametrize("name", ["pre-delegate", "subagent-stop"])
@pytest.mark.parametrize(
    ("stdin", "in_process"),
    [
        ('{"agent_name": "a",', False),
        ("", False),
        (b"\xff\xfe{", False),
        ("   \n", True),
        ("not json", True),
        ('{"agent_name": "a", "metadata": {"x": NaN}}', True),
    ],
)
def test_malformed_json_is_a_json_error(
    url: str, name: str, stdin: str | bytes, in_process: bool
) -> None:
    result = hook(name, stdin, url, in_process=in_process)
    assert result.code == 2
    assert result.out["error"] == "invalid_json"
    assert isinstance(result.out["message"], str) and result.out["message"]


@pytest.mark.parametrize("name", ["pre-delegate", "subagent-stop"])
def test_store_errors_are_json_errors(tmp_path: Path, name: str) -> None:
    request = {"agent_name": "a", "agent_id": "x"}
    bad_scheme = hook(name, request, "bogus://x")
    assert (bad_scheme.code, bad_scheme.out["error"]) == (1, "configuration_error")
    assert "unknown store URL scheme" in bad_scheme.out["message"]

    folder = tmp_path / "x.db"  # a folder where the database file should be
    folder.mkdir()
    unreachable = hook(name, request, f"sqlite:///{folder}")
    assert unreachable.code == 1
    assert unreachable.out["error"] == "store_error"


def test_an_unexpected_exception_is_a_json_error(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: a bug inside a hook still answers in JSON, exit code 1."""

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(hooks_module, "subagent_stop", broken)
    result = CliRunner().invoke(
        app, ["--store", url, "hook", "subagent-stop"], input='{"agent_id": "x"}'
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": "internal_error",
        "message": "boom",
        "type": "RuntimeError",
    }


def _raise(error: Exception) -> Any:
    def handler(*_: Any) -> Any:
        raise error

    return handler


ERROR_CASES: dict[str, dict[str, Any]] = {
    "invalid_json": {"stdin": "not json"},
    "invalid_input": {"stdin": '{"agent_id": 123}'},
    "configuration_error": {"store": "bogus://x"},
    "store_error": {"store": "folder"},
    "agentledger_error": {"handler": _raise(InvalidTransitionError("not allowed"))},
    "internal_error": {"handler": _raise(RuntimeError("boom"))},
}
"""One way to reach each hook error code (see `test_every_error_code_...`)."""


def test_every_error_code_has_a_case_here() -> None:
    assert set(ERROR_CASES) == set(hooks_module.ERROR_CODES)


@pytest.mark.parametrize("code", list(ERROR_CASES))
def test_every_error_code_is_reachable_and_documented(
    code: str, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each code of the stable set comes out with its exit code, and the README lists it."""
    case = ERROR_CASES[code]
    store_url = case.get("store", url)
    if store_url == "folder":  # a folder where the database file should be
        (tmp_path / "x.db").mkdir()
        store_url = f"sqlite:///{tmp_path / 'x.db'}"
    if "handler" in case:
        monkeypatch.setattr(hooks_module, "subagent_stop", case["handler"])
    result = CliRunner().invoke(
        app,
        ["--store", store_url, "hook", "subagent-stop"],
        input=case.get("stdin", '{"agent_id": "x"}'),
    )
    out = json.loads(result.stdout)
    assert (out["error"], result.exit_code) == (code, hooks_module.ERROR_CODES[code]), out
    assert isinstance(out["message"], str) and out["message"]
    readme = (ROOT / "README.md").read_text()
    assert f"| `{code}` | {hooks_module.ERROR_CODES[code]} |" in readme


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"agent_id": 123}, "agent_id must be a string, not 123"),
        ({"agent_id": ["x"]}, 'agent_id must be a string, not ["x"]'),
        ({"metadata": {"agent_id": 7}}, "metadata.agent_id must be a string, not 7"),
        ({"tool_input": {"agent_id": True}}, "tool_input.agent_id must be a string, not true"),
    ],
)
def test_an_agent_id_that_is_not_a_string_is_invalid_input(
    url: str, payload: dict[str, Any], needle: str
) -> None:
    result = hook("subagent-stop", payload, url, in_process=True)
    assert (result.code, result.out["error"]) == (2, "invalid_input")
    assert result.out["message"] == needle


def test_python_m_agentledger_cli_runs_the_hooks(url: str, manager: SessionManager) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agentledger.cli", "--store", url, "hook", "pre-delegate"],
        input=b'{"agent_name": "a"}',
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert manager.get_session(json.loads(proc.stdout)["agent_id"]).agent_name == "a"


# -- the lifecycle through the CLI: examples/lifecycle_cli.sh ---------------------------------


def test_lifecycle_cli_script(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    exe = Path(console_script())
    env = {
        "PATH": f"{exe.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "AGENTLEDGER": str(exe),
    }
    url = f"sqlite:///{tmp_path / 'seed003.db'}"
    proc = subprocess.run(
        [bash, str(ROOT / "examples" / "lifecycle_cli.sh"), url],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the lifecycle through the CLI: all checks passed" in proc.stdout
    with open_store(url) as store:
        sessions = store.list_sessions(limit=100).sessions
    outcomes = {s.purpose: (s.status, s.outcome) for s in sessions}
    assert outcomes["approval_workflow"] == ("terminated", "completed")
    assert outcomes["investigation"] == ("terminated", "completed")


# -- review fixes ---------------------------------------------------------------------------


def test_text_that_is_not_unicode_is_refused_before_anything_is_written(
    url: str, manager: SessionManager
) -> None:
    raw = b'{"agent_name": "a", "task_id": "T1", "note": "\\ud800"}'
    result = hook("pre-delegate", raw, url)
    assert result.code == 2 and result.out["error"] == "invalid_json"
    assert manager.list_sessions().sessions == []


def test_pre_delegate_resumes_only_on_the_version_it_decided_on(
    manager: SessionManager, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two delegations racing for one session: the second sees a changed session and gets a
    new one instead of resuming the same session twice."""
    sid = approval_session(manager, clock)
    decide = manager.should_resume

    def decide_then_lose_the_race(session_id: str) -> Any:
        decision = decide(session_id)
        manager.resume(session_id, reason="the other delegation")  # lands in between
        return decision

    monkeypatch.setattr(manager, "should_resume", decide_then_lose_the_race)
    out = hooks_module.pre_delegate(
        manager, {"agent_name": "terraform-architect", "agent_id": sid, "task_id": "T1"}
    )
    assert (out["should_resume"], out["reason"]) == (False, "resumed_elsewhere")
    assert out["agent_id"] != sid
    assert manager.get_session(sid).resume_count == 1  # only the other delegation's resume
