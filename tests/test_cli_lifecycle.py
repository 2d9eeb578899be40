"""The session lifecycle through the CLI: `sessions create/update/should-resume/get/list/
suspend/resume/finalize/terminate/cleanup` and `stats` (issue 3, part 2).

Commands run in-process (`CliRunner`) against a SQLite file; `$AGENTLEDGER_NOW` fixes the
CLI's clock, and the Python API (on a `FakeClock`) sets sessions up and checks the store.
"""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import cli_support
import pytest
from cli_support import T0, iso
from rich.console import Console
from typer.testing import CliRunner, Result

from agentledger import SessionStore
from agentledger.cli import app
from agentledger.cli import sessions as sessions_module
from agentledger.core.lifecycle import ResumeDecision
from agentledger.errors import SessionNotFoundError
from agentledger.manager import SessionManager
from agentledger.testing import FakeClock

PHASES = "initializing, investigating, planning, approval, executing, validating, completed, failed"

# The CLI tests' fixtures (a SQLite store at a fixed clock): cli_support.
clock = cli_support.clock
manager = cli_support.manager
store = cli_support.store
url = cli_support.url


def run(url: str, *args: str, now: datetime | None = T0, input: str | None = None) -> Result:
    """Invoke the CLI with `--store url`, its clock fixed at `now` (`None`: the real clock)."""
    env = {"COLUMNS": "200", "AGENTLEDGER_NOW": iso(now) if now is not None else None}
    return CliRunner().invoke(app, ["--store", url, *args], input=input, env=env)


def ok(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def one_line_error(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def approval_session(manager: SessionManager, clock: FakeClock) -> str:
    """Seed 003's example 1 up to the approval pause; the clock is left at the pause."""
    session = manager.create_session("terraform-architect", "approval_workflow", {"task_id": "T1"})
    clock.advance(minutes=1)
    manager.update_state(session.id, phase="planning", metadata={"plan_file": "plan.json"})
    clock.advance(minutes=1)
    manager.update_state(session.id, phase="approval")
    return session.id


# -- create ---------------------------------------------------------------------------------


def test_create_prints_only_the_id(url: str, store: SessionStore) -> None:
    result = ok(run(url, "sessions", "create", "--agent", "terraform-architect",
                    "--purpose", "approval_workflow",
                    "--metadata", '{"task_id": "T001", "tags": {"env": "prod"}}'))
    session_id = result.stdout.strip()
    assert result.stdout == f"{session_id}\n" and result.stderr == ""
    session = store.get_session(session_id)
    assert (session.agent_name, session.purpose) == ("terraform-architect", "approval_workflow")
    assert (session.app_name, session.user_id) == ("agents", "local")
    assert (session.status, session.phase) == ("active", "initializing")
    assert session.metadata == {"task_id": "T001", "tags": {"env": "prod"}}
    assert session.created_at == T0  # $AGENTLEDGER_NOW stamps the store's events


def test_create_json_with_app_user_and_phase(url: str, store: SessionStore) -> None:
    data = as_json(run(url, "sessions", "create", "--agent", "a", "--purpose", "p",
                       "--app", "ops", "--user", "ada", "--phase", "investigating", "--json"))
    assert data == store.get_session(data["id"]).model_dump(mode="json")
    assert (data["app_name"], data["user_id"], data["phase"]) == ("ops", "ada", "investigating")


@pytest.mark.parametrize("missing", ["--agent", "--purpose"])
def test_create_requires_agent_and_purpose(url: str, missing: str) -> None:
    args = {"--agent": "a", "--purpose": "p"}
    del args[missing]
    result = run(url, "sessions", "create", *[x for kv in args.items() for x in kv])
    assert result.exit_code == 2
    assert missing in result.stderr


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{not json", "--metadata is not valid JSON"),
        ("", "--metadata is not valid JSON"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ("[1, 2]", "--metadata must be a JSON object, not an array"),
        ('"text"', "--metadata must be a JSON object, not a string"),
        ("3", "--metadata must be a JSON object, not a number"),
        ("null", "--metadata must be a JSON object, not null"),
    ],
)
def test_bad_metadata_is_a_one_line_usage_error(
    url: str, manager: SessionManager, value: str, needle: str
) -> None:
    created = run(url, "sessions", "create", "--agent", "a", "--purpose", "p", "--metadata", value)
    one_line_error(created, 2, needle)
    session = manager.create_session("a", "p")
    updated = run(url, "sessions", "update", session.id, "--metadata", value)
    one_line_error(updated, 2, needle)
    assert [s.id for s in manager.list_sessions().sessions] == [session.id]  # nothing written
    assert manager.get_session(session.id).version == 1


def test_create_unknown_phase_lists_the_valid_ones(url: str, manager: SessionManager) -> None:
    result = run(url, "sessions", "create", "--agent", "a", "--purpose", "p", "--phase", "nap")
    one_line_error(result, 1, "unknown phase 'nap'", f"valid phases: {PHASES}")
    assert manager.list_sessions().sessions == []


# -- update ---------------------------------------------------------------------------------


def test_update_records_phase_metadata_error_and_flag(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p", {"tags": {"env": "prod", "team": "core"}})
    out = ok(run(url, "sessions", "update", session.id, "--phase", "investigating",
                 "--metadata", '{"tags": {"env": "dev"}, "findings": ["OOMKilled"]}',
                 "--error", "kubectl timed out")).stdout
    assert out == f"Updated session {session.id}: active, phase investigating, 1 error.\n"
    after = manager.get_session(session.id)
    assert after.phase == "investigating"
    assert after.metadata == {"tags": {"env": "dev", "team": "core"}, "findings": ["OOMKilled"]}
    assert (after.error_count, after.last_error) == (1, "kubectl timed out")
    assert [(h.from_phase, h.to_phase, h.timestamp) for h in after.phase_history] == [
        ("initializing", "investigating", T0)
    ]
    assert after.version == session.version + 3  # metadata_updated, error, phase_changed

    data = as_json(run(url, "sessions", "update", session.id, "--not-resume-ready", "--json"))
    assert data == manager.get_session(session.id).model_dump(mode="json")
    assert data["resume_ready"] is False
    assert as_json(run(url, "sessions", "update", session.id, "--resume-ready", "--json"))[
        "resume_ready"
    ] is True


def test_update_to_a_final_phase_finalizes(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p", phase="executing")
    later = T0 + timedelta(minutes=12)
    out = ok(run(url, "sessions", "update", session.id, "--phase", "completed",
                 "--summary", "applied", now=later)).stdout
    expected = f"Updated session {session.id}: terminated, outcome completed after 12m 00s"
    assert out == f"{expected}, 0 errors.\n"
    after = manager.get_session(session.id)
    assert (after.status, after.outcome, after.summary) == ("terminated", "completed", "applied")
    assert after.duration_seconds == 720


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--phase", "nap"], ["unknown phase 'nap'", f"valid phases: {PHASES}"]),
        (["--phase", "validating"], ["'initializing' cannot move to 'validating'", "allowed:"]),
        (["--summary", "x"], ["summary is recorded only with a final phase"]),
    ],
)
def test_refused_updates_write_nothing(
    url: str, manager: SessionManager, args: list[str], needles: list[str]
) -> None:
    session = manager.create_session("a", "p")
    one_line_error(run(url, "sessions", "update", session.id, *args), 1, *needles)
    assert manager.get_session(session.id) == session


def test_update_with_nothing_to_do_is_a_usage_error(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p")
    one_line_error(run(url, "sessions", "update", session.id), 2, "nothing to update")


def test_update_a_terminated_session_is_refused(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p")
    manager.terminate(session.id)
    one_line_error(run(url, "sessions", "update", session.id, "--error", "x"), 1, "terminated")


# -- should-resume --------------------------------------------------------------------------


def decide(url: str, session_id: str, now: datetime) -> tuple[int, dict[str, Any]]:
    result = run(url, "sessions", "should-resume", session_id, "--json", now=now)
    assert result.exit_code in (0, 1) and result.stderr == "", result.output
    return result.exit_code, json.loads(result.stdout)


def test_should_resume_json_is_the_decision(
    url: str, manager: SessionManager, clock: FakeClock
) -> None:
    session_id = approval_session(manager, clock)
    now = clock.advance(minutes=10)
    code, data = decide(url, session_id, now)
    assert code == 0
    assert data == manager.should_resume(session_id).model_dump(mode="json")
    assert set(data) == set(ResumeDecision.model_fields)
    assert (data["reason"], data["previous_phase"], data["idle_seconds"]) == (
        "session_resumable", "approval", 600.0
    )
    assert data["metadata"] == {"task_id": "T1", "plan_file": "plan.json"}
    assert [h["to_phase"] for h in data["phase_history"]] == ["planning", "approval"]


def test_should_resume_table(url: str, manager: SessionManager, clock: FakeClock) -> None:
    session_id = approval_session(manager, clock)
    yes = ok(run(url, "sessions", "should-resume", session_id, now=clock.advance(minutes=10)))
    lines = yes.stdout.splitlines()
    assert lines[0].split() == ["resume", "yes"]
    assert lines[1].split() == ["reason", "session_resumable"]
    assert ["previous", "phase", "approval"] == lines[4].split()
    assert "10m 00s" in yes.stdout and session_id in yes.stdout
    assert all(line == line.rstrip() for line in lines)  # no trailing padding

    no = ok(run(url, "sessions", "should-resume", session_id, now=clock.advance(minutes=40)), 1)
    assert no.stdout.splitlines()[0].split() == ["resume", "no"]
    assert "timeout_exceeded" in no.stdout
    assert "idle 50m 00s, longer than max_idle 30m 00s" in no.stdout
    assert no.stderr == ""  # a decision, not an error


def test_should_resume_every_reason(url: str, manager: SessionManager, clock: FakeClock) -> None:
    """Each reason through the CLI, with its exit code."""
    fresh = manager.create_session("a", "p")
    code, data = decide(url, fresh.id, T0)
    assert (code, data["reason"]) == (1, "phase_not_resumable")

    resumable = manager.create_session("a", "p", phase="investigating")
    code, data = decide(url, resumable.id, T0)
    assert (code, data["reason"]) == (0, "session_resumable")
    # idle exactly max_idle is still within; one second more is not
    assert decide(url, resumable.id, T0 + timedelta(minutes=30))[0] == 0
    code, data = decide(url, resumable.id, T0 + timedelta(minutes=30, seconds=1))
    assert (code, data["reason"]) == (1, "timeout_exceeded")

    errors = manager.create_session("a", "p", phase="investigating")
    for i in range(3):
        assert decide(url, errors.id, T0)[0] == 0, f"{i} errors"
        ok(run(url, "sessions", "update", errors.id, "--error", f"boom {i}"))
    code, data = decide(url, errors.id, T0)
    assert (code, data["reason"], data["error_count"]) == (1, "too_many_errors", 3)

    not_ready = manager.create_session("a", "p", phase="approval")
    ok(run(url, "sessions", "update", not_ready.id, "--not-resume-ready"))
    code, data = decide(url, not_ready.id, T0)
    assert (code, data["reason"]) == (1, "not_resume_ready")

    ended = manager.create_session("a", "p", phase="approval")
    ok(run(url, "sessions", "terminate", ended.id))
    code, data = decide(url, ended.id, T0)
    assert (code, data["reason"]) == (1, "terminated")

    code, data = decide(url, "nope", T0)
    assert (code, data["reason"], data["status"]) == (1, "not_found", None)
    missing = ok(run(url, "sessions", "should-resume", "nope"), 1)
    assert "not_found" in missing.stdout and "no session 'nope'" in missing.stdout


def test_should_resume_suspended_session(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p", phase="approval")
    ok(run(url, "sessions", "suspend", session.id))
    assert decide(url, session.id, T0)[0] == 0  # a suspended session may resume


# -- get / show / list ----------------------------------------------------------------------


def test_get_is_show(url: str, manager: SessionManager, clock: FakeClock) -> None:
    session_id = approval_session(manager, clock)
    got = as_json(run(url, "sessions", "get", session_id, "--json"))
    assert got == as_json(run(url, "sessions", "show", session_id, "--json"))
    assert got == manager.get_session(session_id).model_dump(mode="json")
    panel = ok(run(url, "sessions", "get", session_id)).stdout
    assert "planning → approval" in panel and "terraform-architect" in panel
    one_line_error(run(url, "sessions", "get", "nope"), 1, "no session with id 'nope'")


@pytest.fixture()
def team(manager: SessionManager, clock: FakeClock) -> dict[str, str]:
    """Five sessions of two agents: active, suspended, terminated, phases varied."""
    ids = {}
    for name, agent, phase in [
        ("t-plan", "terraform-architect", "planning"),
        ("t-wait", "terraform-architect", "approval"),
        ("g-inv", "gitops-operator", "investigating"),
        ("g-done", "gitops-operator", "executing"),
        ("g-new", "gitops-operator", None),
    ]:
        clock.advance(minutes=1)
        ids[name] = manager.create_session(agent, name, phase=phase).id
    manager.suspend(ids["t-wait"])
    manager.finalize_session(ids["g-done"], "completed", "done")
    return ids


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--active-only"], {"t-plan", "g-inv", "g-new"}),
        (["--active-only", "--agent", "gitops-operator"], {"g-inv", "g-new"}),
        (["--agent", "terraform-architect"], {"t-plan", "t-wait"}),
        (["--status", "suspended"], {"t-wait"}),
        (["--status", "terminated"], {"g-done"}),
        (["--phase", "investigating"], {"g-inv"}),
        (["--active-only", "--status", "active"], {"t-plan", "g-inv", "g-new"}),
    ],
)
def test_list_filters(
    url: str, team: dict[str, str], args: list[str], expected: set[str]
) -> None:
    data = as_json(run(url, "sessions", "list", "--json", *args))
    assert {s["purpose"] for s in data["sessions"]} == expected


def test_list_active_only_contradicting_status(url: str, team: dict[str, str]) -> None:
    result = run(url, "sessions", "list", "--active-only", "--status", "suspended")
    line = one_line_error(result, 2, "--active-only contradicts --status suspended")
    assert "active_only" not in line and "status=" not in line


def test_list_pages_keep_active_only(url: str, team: dict[str, str]) -> None:
    out = ok(run(url, "sessions", "list", "--active-only", "--limit", "2")).stdout
    assert "agentledger sessions list --active-only --limit 2 --cursor " in out
    cursor = out.rsplit("--cursor ", 1)[1].split()[0]
    rest = as_json(run(url, "sessions", "list", "--active-only", "--limit", "2",
                       "--cursor", cursor, "--json"))
    assert [s["purpose"] for s in rest["sessions"]] == ["t-plan"]
    assert rest["next_cursor"] is None


def test_list_table_colours_status(url: str, team: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["--store", url, "sessions", "list"],
        env={"COLUMNS": "200", "FORCE_COLOR": "1", "TERM": "xterm-256color"},
    )
    out = ok(result).stdout
    assert "\x1b[32mactive" in out and "\x1b[33msuspended" in out and "\x1b[31mterminated" in out


# -- status changes and finalize ------------------------------------------------------------


def test_suspend_resume_terminate(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p", phase="approval")
    sid = session.id
    out = ok(run(url, "sessions", "suspend", sid, "--reason", "waiting for approval")).stdout
    assert out == f"Suspended session {sid}: suspended, phase approval, 0 errors.\n"
    suspended_again = run(url, "sessions", "suspend", sid)
    one_line_error(suspended_again, 1, "is suspended; it cannot become suspended")

    resumed = as_json(run(url, "sessions", "resume", sid, "--reason", "approved", "--json"))
    assert (resumed["status"], resumed["resume_count"]) == ("active", 1)
    events = manager.store.read_events(sid, types=["status_changed"])
    assert [(e.data["to"], e.data.get("reason")) for e in events] == [
        ("suspended", "waiting for approval"),
        ("active", "approved"),
    ]

    out = ok(run(url, "sessions", "terminate", sid)).stdout
    assert out == f"Terminated session {sid}: terminated, phase approval, 0 errors.\n"
    for command in ("resume", "suspend", "terminate"):
        one_line_error(run(url, "sessions", command, sid), 1, "is terminated")
    assert manager.get_session(sid).version == 4


def test_finalize(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p", phase="executing")
    later = T0 + timedelta(seconds=42)
    data = as_json(run(url, "sessions", "finalize", session.id, "failed",
                       "--summary", "plan rejected", "--json", now=later))
    assert data == manager.get_session(session.id).model_dump(mode="json")
    assert (data["status"], data["phase"], data["outcome"]) == ("terminated", "failed", "failed")
    assert (data["summary"], data["duration_seconds"]) == ("plan rejected", 42.0)
    assert data["finalized_at"] == iso(later)
    again = run(url, "sessions", "finalize", session.id, "completed")
    one_line_error(again, 1, "is terminated")


def test_finalize_plain_output_and_bad_outcome(url: str, manager: SessionManager) -> None:
    session = manager.create_session("a", "p")
    one_line_error(
        run(url, "sessions", "finalize", session.id, "done"),
        1,
        "invalid outcome 'done'; valid outcomes: completed, failed, abandoned",
    )
    later = T0 + timedelta(hours=2, minutes=3)
    out = ok(run(url, "sessions", "finalize", session.id, "abandoned", now=later)).stdout
    expected = f"Finalized session {session.id}: terminated, outcome abandoned after 2h 03m"
    assert out == f"{expected}, 0 errors.\n"


@pytest.mark.parametrize(
    "args",
    [
        ["update", "nope", "--error", "x"],
        ["finalize", "nope", "completed"],
        ["suspend", "nope"],
        ["resume", "nope"],
        ["terminate", "nope"],
    ],
)
def test_unknown_session_is_a_one_line_error(url: str, args: list[str]) -> None:
    one_line_error(run(url, "sessions", *args), 1, "no session with id 'nope'")


# -- cleanup --------------------------------------------------------------------------------


def ids_of(manager: SessionManager) -> set[str]:
    return {s.id for s in manager.list_sessions().sessions}


def test_cleanup_dry_run_then_real(url: str, manager: SessionManager, team: dict[str, str]) -> None:
    # team: created at T0+1..5 min; suspended/finalized at T0+5 min
    now = T0 + timedelta(hours=24, minutes=3, seconds=30)  # cut-off T0+3m30s: t-plan, g-inv
    data = as_json(run(url, "sessions", "cleanup", "--hours", "24", "--dry-run", "--json", now=now))
    assert data["dry_run"] is True and data["count"] == 2
    assert data["cutoff"] == iso(T0 + timedelta(minutes=3, seconds=30))
    assert set(data["session_ids"]) == {team["t-plan"], team["g-inv"]}
    assert [s["id"] for s in data["sessions"]] == data["session_ids"]
    assert data["skipped_corrupted"] == [] and data["skipped_changed"] == []
    assert len(ids_of(manager)) == 5  # a dry run deletes nothing

    table = ok(run(url, "sessions", "cleanup", "--hours", "24", "--dry-run", now=now)).stdout
    assert "Would delete 2 sessions last active before 2026-01-08 18:09:00 UTC:" in table
    assert team["t-plan"] in table and team["g-new"] not in table

    out = ok(run(url, "sessions", "cleanup", "--hours", "24", "--yes", now=now)).stdout
    assert out == "Deleted 2 sessions last active before 2026-01-08 18:09:00 UTC.\n"
    assert ids_of(manager) == {team["t-wait"], team["g-done"], team["g-new"]}
    with pytest.raises(SessionNotFoundError):
        manager.get_session(team["t-plan"])

    nothing = ok(run(url, "sessions", "cleanup", "--hours", "24", "--dry-run", now=now)).stdout
    assert "No sessions last active before" in nothing


def test_cleanup_only_finalized(url: str, manager: SessionManager, team: dict[str, str]) -> None:
    now = T0 + timedelta(days=30)
    data = as_json(run(url, "sessions", "cleanup", "--hours", "1", "--only-finalized", "--json",
                       now=now))
    assert (data["dry_run"], data["session_ids"]) == (False, [team["g-done"]])
    assert "sessions" not in data
    assert len(ids_of(manager)) == 4


@pytest.mark.parametrize("hours", ["-1", "x", "inf", "nan"])
def test_cleanup_bad_hours_is_a_usage_error(url: str, hours: str) -> None:
    result = run(url, "sessions", "cleanup", "--hours", hours)
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize("hours", ["1e8", "1e300"])
def test_cleanup_older_than_any_date_deletes_nothing(
    url: str, manager: SessionManager, team: dict[str, str], hours: str
) -> None:
    result = run(url, "sessions", "cleanup", "--hours", hours)
    assert result.exit_code == 0, result.output
    assert len(ids_of(manager)) == len(team)


def test_cleanup_shows_a_progress_bar_on_a_terminal(
    url: str, manager: SessionManager, team: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    monkeypatch.setattr(sessions_module, "progress_console", lambda: terminal)
    monkeypatch.setattr(sessions_module, "PROGRESS_MIN_SESSIONS", 3)
    now = T0 + timedelta(days=1)
    out = ok(run(url, "sessions", "cleanup", "--hours", "1", "--yes", now=now)).stdout
    assert out.startswith("Deleted 5 sessions")
    assert "Deleting sessions" in screen.getvalue() and "5/5" in screen.getvalue()
    assert ids_of(manager) == set()


def test_cleanup_without_a_terminal_draws_no_bar(
    url: str, team: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(sessions_module, "progress_console", lambda: Console(file=screen))
    monkeypatch.setattr(sessions_module, "PROGRESS_MIN_SESSIONS", 1)
    ok(run(url, "sessions", "cleanup", "--hours", "1", "--yes", now=T0 + timedelta(days=1)))
    assert screen.getvalue() == ""


# -- stats ----------------------------------------------------------------------------------


def test_stats_json_is_the_managers(
    url: str, manager: SessionManager, clock: FakeClock, team: dict[str, str]
) -> None:
    manager.resume(team["t-wait"])
    manager.update_state(team["g-inv"], error="boom")
    clock.advance(minutes=10)
    manager.finalize_session(team["t-plan"], "failed")
    data = as_json(run(url, "stats", "--json"))
    assert data == dataclasses.asdict(manager.stats())
    assert data["total"] == 5 and data["finalized"] == 2
    assert data["by_status"] == {"active": 3, "terminated": 2}
    assert data["by_agent"] == {"gitops-operator": 3, "terraform-architect": 2}
    assert (data["resume_rate"], data["error_rate"]) == (0.2, 0.2)
    # g-done: created T0+4m, finalized T0+5m; t-plan: created T0+1m, finalized T0+15m
    assert data["median_duration_seconds"] == (60 + 840) / 2
    assert data["p95_duration_seconds"] == 840

    only = as_json(run(url, "stats", "--json", "--agent", "terraform-architect"))
    assert only == dataclasses.asdict(manager.stats(agent_name="terraform-architect"))
    assert only["total"] == 2
    assert as_json(run(url, "stats", "--json", "--app", "elsewhere"))["total"] == 0
    assert as_json(run(url, "stats", "--json", "--user", "local"))["total"] == 5


def test_stats_text(url: str, manager: SessionManager, team: dict[str, str]) -> None:
    out = ok(run(url, "stats")).stdout
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert lines["sessions"].split()[1:] == ["5", "(1", "finalized)"]
    assert "0.0% resumed at least once" in lines["resume rate"]
    assert lines["by status"].split()[2:4] == ["active", "3"]
    assert "suspended 1" in lines["by status"] and "terminated 1" in lines["by status"]
    assert "gitops-operator 3 · terraform-architect 2" in lines["by agent"]
    assert lines["median duration"].split()[-2:] == ["1m", "00s"]  # g-done only
    assert lines["p95 duration"].split()[-2:] == ["1m", "00s"]
    empty = ok(run(url, "stats", "--app", "elsewhere")).stdout
    assert "0 (0 finalized)" in empty and "median duration  -" in empty


# -- the CLI clock ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yesterday", "2026-01-08T19:00:00"])
def test_bad_agentledger_now_is_a_one_line_error(url: str, value: str) -> None:
    result = CliRunner().invoke(
        app, ["--store", url, "sessions", "list"], env={"AGENTLEDGER_NOW": value}
    )
    one_line_error(result, 1, "AGENTLEDGER_NOW", "ISO 8601 time with a timezone")


def test_without_agentledger_now_the_real_clock_is_used(url: str, store: SessionStore) -> None:
    before = datetime.now(timezone.utc)
    sid = ok(run(url, "sessions", "create", "--agent", "a", "--purpose", "p", now=None)).stdout
    assert store.get_session(sid.strip()).created_at >= before - timedelta(seconds=1)


# -- cleanup asks before deleting sessions that are not terminated ---------------------------

OLD_ACTIVE = T0 + timedelta(hours=24, minutes=3, seconds=30)  # cut-off selects t-plan, g-inv


def test_cleanup_of_active_sessions_refuses_without_a_terminal_or_yes(
    url: str, manager: SessionManager, team: dict[str, str]
) -> None:
    for json_flag in ([], ["--json"]):
        result = run(url, "sessions", "cleanup", "--hours", "24", *json_flag, now=OLD_ACTIVE)
        line = one_line_error(result, 1, "2 sessions", "not terminated", "--yes", "--dry-run")
        assert "stdin is not a terminal" in line
        assert len(ids_of(manager)) == 5  # nothing deleted
    # --dry-run still lists them without asking
    data = as_json(run(url, "sessions", "cleanup", "--hours", "24", "--dry-run", "--json",
                       now=OLD_ACTIVE))
    assert set(data["session_ids"]) == {team["t-plan"], team["g-inv"]}
    # --yes deletes without asking
    out = ok(run(url, "sessions", "cleanup", "--hours", "24", "--yes", now=OLD_ACTIVE)).stdout
    assert out.startswith("Deleted 2 sessions")
    assert ids_of(manager) == {team["t-wait"], team["g-done"], team["g-new"]}


def test_cleanup_of_terminated_sessions_only_does_not_ask(
    url: str, manager: SessionManager, team: dict[str, str]
) -> None:
    # --only-finalized never deletes a live session, so it never asks
    data = as_json(run(url, "sessions", "cleanup", "--hours", "0", "--only-finalized", "--json",
                       now=T0 + timedelta(days=2)))
    assert data["session_ids"] == [team["g-done"]]
    # Every old session is terminated: nothing live would go, so no question either.
    for name in ("t-plan", "t-wait", "g-inv", "g-new"):
        manager.terminate(team[name])
    out = ok(run(url, "sessions", "cleanup", "--hours", "0", now=T0 + timedelta(days=2))).stdout
    assert out.startswith("Deleted 4 sessions")
    assert ids_of(manager) == set()


def _cleanup_on_a_terminal(url: str, now: datetime, answer: bytes) -> tuple[int, str]:
    """Run the console script with a pseudo-terminal as stdin and answer its question."""
    import os
    import pty
    import subprocess

    master, slave = pty.openpty()
    env = {**os.environ, "AGENTLEDGER_NOW": iso(now), "COLUMNS": "200"}
    env.pop("AGENTLEDGER_STORE", None)
    try:
        proc = subprocess.Popen(
            [cli_support.console_script(), "--store", url, "sessions", "cleanup", "--hours", "24"],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )
        os.write(master, answer)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    return proc.returncode, out.decode()


def test_cleanup_of_active_sessions_asks_on_a_terminal(
    url: str, manager: SessionManager, team: dict[str, str]
) -> None:
    code, out = _cleanup_on_a_terminal(url, OLD_ACTIVE, b"n\n")
    assert code == 1, out
    assert "Delete 2 sessions last active before 2026-01-08 18:09:00 UTC" in out
    assert "2 of them not terminated (active or suspended)" in out
    assert len(ids_of(manager)) == 5
    code, out = _cleanup_on_a_terminal(url, OLD_ACTIVE, b"y\n")
    assert code == 0, out
    assert "Deleted 2 sessions" in out
    assert ids_of(manager) == {team["t-wait"], team["g-done"], team["g-new"]}
