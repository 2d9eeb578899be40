"""The `agentledger` command line: read commands, errors, JSON output and help text.

Each test fills a SQLite store through the Python API and reads it back through the CLI
(`typer.testing.CliRunner`); one test runs the installed console script in a subprocess.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from cli_support import console_script
from typer.testing import CliRunner, Result

from agentledger import Event, NewEvent, SessionStore, open_store
from agentledger.cli import app, main
from agentledger.cli import sessions as sessions_cli
from agentledger.cli.render import format_age, short_id, summarize_event

WIDE = {"COLUMNS": "200"}  # so no table column is left out


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture()
def store(url: str) -> Iterator[SessionStore]:
    """The store the CLI reads, filled with four sessions.

    `s-plan` (demo/ada, agent helper, 8 events, suspended, phase approval), `s-a`
    (demo/bob), `s-b` (demo/bob, terminated), `s-c` (other/ada, agent helper).
    """
    s = open_store(url)
    try:
        s.create_session(app_name="demo", user_id="bob", session_id="s-a", title="first")
        s.create_session(app_name="demo", user_id="bob", session_id="s-b", purpose="cleanup")
        terminate = NewEvent(type="status_changed", data={"from": "active", "to": "terminated"})
        s.append("s-b", [terminate])
        s.create_session(
            app_name="other",
            user_id="ada",
            agent_name="helper",
            session_id="s-c",
            title="Plan the [red]trip[/red]",
        )
        s.create_session(
            app_name="demo",
            user_id="ada",
            agent_name="helper",
            session_id="s-plan",
            title="Reminders",
            state={"count": 0},
            metadata={"team": "core"},
        )
        inv = "01JH8Z4K5WQ4X7QZABCDEF0123"
        s.append(
            "s-plan",
            [
                NewEvent(
                    type="user_message",
                    author="user",
                    data={"text": "Add 'buy milk'"},
                    invocation_id=inv,
                ),
                NewEvent(
                    type="tool_call",
                    author="agent",
                    data={"name": "add_reminder", "args": {"text": "buy milk"}},
                    invocation_id=inv,
                ),
                NewEvent(
                    type="tool_result",
                    author="tool",
                    data={"name": "add_reminder", "result": {"count": 1}},
                    state_delta={"count": 1, "reminders": ["buy milk"]},
                    invocation_id=inv,
                ),
                NewEvent(
                    type="final_output",
                    author="agent",
                    data={"text": "Done: 1 reminder."},
                    invocation_id=inv,
                ),
                NewEvent(type="phase_changed", data={"from": "initializing", "to": "approval"}),
                NewEvent(type="error", data={"message": "model timed out"}),
                NewEvent(type="status_changed", data={"from": "active", "to": "suspended"}),
            ],
        )
        yield s
    finally:
        s.close()


def run(
    url: str | None,
    *args: str,
    input: str | None = None,
    env: dict[str, str | None] | None = None,
) -> Result:
    """Invoke the CLI in-process with `--store url` (none when `url` is None)."""
    argv = ["--store", url, *args] if url is not None else list(args)
    return CliRunner().invoke(app, argv, input=input, env={**WIDE, **(env or {})})


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def dump(models: Sequence[Any]) -> list[Any]:
    return [m.model_dump(mode="json") for m in models]


# -- root ---------------------------------------------------------------------------------


def test_version() -> None:
    result = ok(run(None, "--version"))
    assert result.stdout.startswith("agentledger 0.1.0")


@pytest.mark.parametrize(
    "args", [["--help"], [], ["sessions", "--help"], ["sessions", "list", "--help"]]
)
def test_help_does_not_open_the_store(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "sub" / "never.db"
    result = run(f"sqlite:///{db}", *args)
    assert result.exit_code in (0, 2)  # bare `agentledger` prints help and exits 2, as click does
    assert "Usage" in result.output
    assert not db.exists() and not db.parent.exists()
    # an unknown scheme is only an error once a command opens the store
    assert run("bogus://x", *args).exit_code in (0, 2)


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))


def test_every_command_and_option_has_help_text() -> None:
    root = typer.main.get_command(app)
    seen = []
    for path, command in walk(root):
        seen.append(" ".join(path))
        assert (command.help or "").strip(), f"command {path} has no help"
        for param in command.params:
            text = getattr(param, "help", None)
            assert text and text.strip(), f"{path}: parameter {param.name} has no help"
    expected = ["", "sessions", "sessions list", "sessions show", "sessions events", "sessions delete"]
    assert set(expected) <= set(seen)


def test_every_command_help_renders() -> None:
    root = typer.main.get_command(app)
    for path, _ in walk(root):
        result = ok(run(None, *path, "--help"))
        assert "Usage" in result.stdout


# -- sessions list ------------------------------------------------------------------------


def test_list_table(store: SessionStore, url: str) -> None:
    out = ok(run(url, "sessions", "list")).stdout
    for sid in ("s-plan", "s-a", "s-b", "s-c"):
        assert sid in out
    for word in ("suspended", "terminated", "active", "approval", "Reminders", "helper"):
        assert word in out
    assert "More sessions" not in out
    # user text is printed as written, never as Rich markup
    assert "Plan the [red]trip[/red]" in out
    # newest activity first
    assert out.index("s-plan") < out.index("s-c") < out.index("s-b")


def test_list_table_fits_a_narrow_terminal(store: SessionStore, url: str) -> None:
    result = ok(run(url, "sessions", "list", env={"COLUMNS": "40"}))
    lines = result.stdout.splitlines()
    assert all(len(line) <= 40 for line in lines), lines
    assert "s-plan" in result.stdout and "suspended" in result.stdout


def test_a_long_id_wraps_and_keeps_the_other_columns(store: SessionStore, url: str) -> None:
    long_id = "L" * 300 + "-end"
    store.create_session(app_name="demo", user_id="ada", session_id=long_id)
    result = ok(run(url, "sessions", "list", "--app", "demo", env={"COLUMNS": "80"}))
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "status" in lines[0] and "suspended" in result.stdout  # s-plan's row
    assert long_id in "".join(line.split(" ")[0] for line in lines)  # whole, over lines


def test_list_json_matches_the_store(store: SessionStore, url: str) -> None:
    result = ok(run(url, "sessions", "list", "--json"))
    data = json.loads(result.stdout)
    page = store.list_sessions()
    assert data == {"sessions": dump(page.sessions), "next_cursor": None, "corrupted": []}
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--app", "demo"], {"s-plan", "s-a", "s-b"}),
        (["--user", "ada"], {"s-plan", "s-c"}),
        (["--app", "demo", "--user", "bob"], {"s-a", "s-b"}),
        (["--agent", "helper"], {"s-plan", "s-c"}),
        (["--status", "terminated"], {"s-b"}),
        (["--status", "SUSPENDED"], {"s-plan"}),
        (["--status", "active"], {"s-a", "s-c"}),
        (["--phase", "approval"], {"s-plan"}),
        (["--app", "nothing"], set()),
    ],
)
def test_list_filters(store: SessionStore, url: str, args: list[str], expected: set[str]) -> None:
    data = json.loads(ok(run(url, "sessions", "list", "--json", *args)).stdout)
    assert {s["id"] for s in data["sessions"]} == expected


def test_list_empty_table(store: SessionStore, url: str) -> None:
    assert "No sessions." in ok(run(url, "sessions", "list", "--app", "nothing")).stdout


def test_list_pagination_with_cursor(store: SessionStore, url: str) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["sessions", "list", "--json", "--limit", "3"]
        args += ["--cursor", cursor] if cursor else []
        data = json.loads(ok(run(url, *args)).stdout)
        pages += 1
        assert len(data["sessions"]) <= 3
        seen += [s["id"] for s in data["sessions"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == [s.id for s in store.list_sessions().sessions]


def test_list_table_prints_the_next_page_command(store: SessionStore, url: str) -> None:
    out = ok(run(url, "sessions", "list", "--app", "demo", "--limit", "2")).stdout
    cursor = store.list_sessions(app_name="demo", limit=2).next_cursor
    assert cursor is not None
    assert f"agentledger sessions list --app demo --limit 2 --cursor {cursor}" in out
    last = ok(run(url, "sessions", "list", "--app", "demo", "--limit", "2", "--cursor", cursor))
    assert "s-a" in last.stdout and "More sessions" not in last.stdout


@pytest.mark.parametrize("args", [["--limit", "0"], ["--limit", "1001"], ["--status", "weird"]])
def test_list_bad_options_are_usage_errors(store: SessionStore, url: str, args: list[str]) -> None:
    result = run(url, "sessions", "list", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("order", "store_order"),
    [
        ("newest", "updated_desc"),
        ("oldest", "updated_asc"),
        ("created-newest", "created_desc"),
        ("CREATED-OLDEST", "created_asc"),
    ],
)
def test_list_order(store: SessionStore, url: str, order: str, store_order: str) -> None:
    expected = [s.id for s in store.list_sessions(order=store_order).sessions]
    assert len(set(expected)) == 4
    data = json.loads(ok(run(url, "sessions", "list", "--json", "--order", order)).stdout)
    assert [s["id"] for s in data["sessions"]] == expected
    out = ok(run(url, "sessions", "list", "--order", order, "--limit", "1")).stdout
    assert out.index(expected[0]) >= 0 and expected[1] not in out
    hint = f"--order {order.lower()} " if order != "newest" else ""
    assert f"agentledger sessions list --limit 1 {hint}--cursor " in out


def test_list_bad_order_is_a_usage_error(store: SessionStore, url: str) -> None:
    result = run(url, "sessions", "list", "--order", "updated_desc")
    assert result.exit_code == 2 and "created-newest" in result.output


@pytest.mark.parametrize("sid", ["user/42", "t/1 x", " padded ", "日本/語", "it's"])
def test_any_session_id_is_accepted_and_printed_unambiguously(
    store: SessionStore, url: str, sid: str
) -> None:
    store.create_session(app_name="ids", user_id="ada", session_id=sid, title="odd")
    shown = shlex.quote(sid) if sid != sid.strip() or " " in sid or "'" in sid else sid
    data = json.loads(ok(run(url, "sessions", "show", sid, "--json")).stdout)
    assert data["id"] == sid
    table = ok(run(url, "sessions", "list", "--app", "ids")).stdout
    assert shown in table
    listed = json.loads(ok(run(url, "sessions", "list", "--app", "ids", "--json")).stdout)
    assert [s["id"] for s in listed["sessions"]] == [sid]
    assert shlex.split(shown) == [sid]  # what is printed pastes back as the exact id
    events = ok(run(url, "sessions", "events", sid)).stdout
    assert shown in events
    deleted = ok(run(url, "sessions", "delete", sid, "--yes")).stdout
    assert f"Deleted session {shown}." in deleted


def test_list_bad_cursor(store: SessionStore, url: str) -> None:
    assert_one_line_error(run(url, "sessions", "list", "--cursor", "garbage"), "invalid cursor")


# -- sessions show ------------------------------------------------------------------------


def test_show_json_matches_the_store(store: SessionStore, url: str) -> None:
    data = json.loads(ok(run(url, "sessions", "show", "s-plan", "--json")).stdout)
    assert data == store.get_session("s-plan").model_dump(mode="json")
    assert data["state"] == {"count": 1, "reminders": ["buy milk"]}
    assert data["version"] == 8


def test_show_panel(store: SessionStore, url: str) -> None:
    out = ok(run(url, "sessions", "show", "s-plan")).stdout
    expected = [
        "s-plan", "demo", "ada", "helper", "Reminders", "suspended", "approval", "8 events",
        "model timed out", "initializing → approval", '"reminders"', '"buy milk"', '"team": "core"',
    ]
    for text in expected:
        assert text in out, text


# -- sessions events ----------------------------------------------------------------------


def events_json(url: str, *args: str) -> list[dict[str, Any]]:
    data = json.loads(ok(run(url, "sessions", "events", "s-plan", "--json", *args)).stdout)
    assert isinstance(data, list)
    return data


def test_events_json_matches_the_ledger(store: SessionStore, url: str) -> None:
    data = events_json(url)
    assert data == dump(store.read_events("s-plan"))
    assert [e["seq"] for e in data] == list(range(1, 9))
    assert data[3]["state_delta"] == {"count": 1, "reminders": ["buy milk"]}


@pytest.mark.parametrize(
    ("args", "seqs"),
    [
        (["--after", "5"], [6, 7, 8]),
        (["--limit", "2"], [1, 2]),
        (["--after", "2", "--limit", "2"], [3, 4]),
        (["--last", "2"], [7, 8]),
        (["--type", "tool_call"], [3]),
        (["--type", "tool_call", "-t", "error"], [3, 7]),
        (["--type", "no.such"], []),
    ],
)
def test_events_filters(store: SessionStore, url: str, args: list[str], seqs: list[int]) -> None:
    assert [e["seq"] for e in events_json(url, *args)] == seqs


def test_events_limit_and_last_together_is_a_usage_error(store: SessionStore, url: str) -> None:
    result = run(url, "sessions", "events", "s-plan", "--limit", "1", "--last", "1")
    assert result.exit_code == 2
    assert "--last" in result.stderr


def test_events_table(store: SessionStore, url: str) -> None:
    out = ok(run(url, "sessions", "events", "s-plan")).stdout
    for text in (
        "session_created",
        "Add 'buy milk'",
        "add_reminder(text=buy milk)",
        'add_reminder → {"count":1}',
        'Δ count=1, reminders=["buy milk"]',
        "initializing → approval",
        "model timed out",
        "…CDEF0123",  # shortened invocation id
    ):
        assert text in out, text
    assert "No events." in ok(run(url, "sessions", "events", "s-plan", "--after", "8")).stdout


def test_events_with_keys(store: SessionStore, url: str) -> None:
    store.append("s-plan", [
        NewEvent(type="graph.checkpoint", data={"text": "a"}, key="ckpt:0001"),
        NewEvent(type="graph.checkpoint", data={"text": "b"}, key="ckpt:0002"),
        NewEvent(type="graph.checkpoint", data={"text": "c"}, key="w:0001"),
    ])
    out = ok(run(url, "sessions", "events", "s-plan")).stdout
    assert "key" in out and "ckpt:0002" in out and "w:0001" in out
    assert [e["key"] for e in events_json(url, "--key-prefix", "ckpt:")] == [
        "ckpt:0001", "ckpt:0002"
    ]
    assert [e["seq"] for e in events_json(url, "--key-prefix", "ckpt:", "--last", "1")] == [10]
    assert [e["key"] for e in events_json(url, "--key", "w:0001", "-k", "nope")] == ["w:0001"]


# -- sessions delete ----------------------------------------------------------------------


def test_delete_with_yes(store: SessionStore, url: str) -> None:
    result = ok(run(url, "sessions", "delete", "s-a", "--yes"))
    assert "Deleted session s-a" in result.stdout
    assert "s-a" not in {s.id for s in store.list_sessions().sessions}


def test_delete_asks_first(
    store: SessionStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions_cli, "_stdin_is_terminal", lambda: True)
    declined = run(url, "sessions", "delete", "s-a", input="n\n")
    assert declined.exit_code == 1
    assert "Delete session s-a (1 event)?" in declined.stdout
    assert store.get_session("s-a").id == "s-a"

    ok(run(url, "sessions", "delete", "s-a", input="y\n"))
    assert "s-a" not in {s.id for s in store.list_sessions().sessions}


@pytest.mark.parametrize("answer", ["y\n", ""])
def test_delete_without_yes_or_a_terminal_refuses(
    store: SessionStore, url: str, answer: str
) -> None:
    # A "y" piped in is not a person's answer: without --yes nothing is deleted.
    result = run(url, "sessions", "delete", "s-a", input=answer)
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not deleting session s-a"), lines
    assert "stdin is not a terminal" in lines[0] and "pass --yes" in lines[0]
    assert store.get_session("s-a").id == "s-a"


# -- errors and configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sessions", "show", "nope"], "no session with id 'nope'"),
        (["sessions", "show", "nope", "--json"], "no session with id 'nope'"),
        (["sessions", "events", "nope", "--json"], "no session with id 'nope'"),
        (["sessions", "delete", "nope", "--yes"], "no session with id 'nope'"),
        (["sessions", "delete", "nope"], "no session with id 'nope'"),
        (["sessions", "show", "a\nb"], "invalid session id 'a\\nb'"),
        (["sessions", "events", "a\nb"], "invalid session id 'a\\nb'"),
        (["sessions", "delete", "a\nb", "--yes"], "invalid session id 'a\\nb'"),
    ],
)
def test_errors_are_one_line_on_stderr(
    store: SessionStore, url: str, args: list[str], needle: str
) -> None:
    assert_one_line_error(run(url, *args), needle)


def test_unknown_store_scheme(tmp_path: Path) -> None:
    result = run("bogus://x", "sessions", "list")
    assert_one_line_error(result, "unknown store URL scheme", "bogus://x")


def test_unopenable_store_names_the_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    bad = f"sqlite:///{blocker}/x.db"
    create = ["sessions", "create", "--agent", "a", "--purpose", "p"]
    assert_one_line_error(run(bad, *create), str(blocker))
    folder = tmp_path / "x.db"  # a folder where the database file should be
    folder.mkdir()
    assert_one_line_error(run(f"sqlite:///{folder}", "sessions", "list", "--json"), str(folder))


def test_store_env_var_is_honoured(store: SessionStore, url: str) -> None:
    result = ok(run(None, "sessions", "list", "--json", env={"AGENTLEDGER_STORE": url}))
    assert len(json.loads(result.stdout)["sessions"]) == 4
    # --store wins over the environment
    result = ok(run("memory://", "sessions", "list", "--json", env={"AGENTLEDGER_STORE": url}))
    assert json.loads(result.stdout)["sessions"] == []


def test_default_store_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = ok(run(None, "sessions", "list", "--json", env={"AGENTLEDGER_STORE": None}))
    assert json.loads(result.stdout) == {"sessions": [], "next_cursor": None, "corrupted": []}
    assert "sqlite:///agentledger.db does not exist" in result.stderr
    assert not (tmp_path / "agentledger.db").exists()  # a read creates nothing
    env = {"AGENTLEDGER_STORE": None}
    ok(run(None, "sessions", "create", "--agent", "a", "--purpose", "p", env=env))
    assert (tmp_path / "agentledger.db").exists()


# -- render helpers -----------------------------------------------------------------------


def make_event(
    type: str,
    data: dict[str, Any],
    state_delta: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    return Event(
        **fields,
        id="01JH8Z4K5WQ4X7QZABCDEF0123",
        session_id="s",
        seq=2,
        type=type,
        author="agent",
        timestamp=datetime(2026, 1, 8, 18, 5, 30, tzinfo=timezone.utc),
        data=data,
        state_delta=state_delta or {},
    )


@pytest.mark.parametrize(
    ("type", "data", "delta", "expected"),
    [
        ("user_message", {"text": "hello\n  there"}, None, "hello there"),
        ("agent_message", {"content": {"parts": [{"text": "a"}, {"text": "b"}]}}, None, "a b"),
        ("tool_call", {"name": "add", "args": {"a": 1, "b": "x"}}, None, "add(a=1, b=x)"),
        ("tool_result", {"name": "add", "result": 3}, {"total": 3}, "add → 3 Δ total=3"),
        ("tool_result", {"name": "add", "error": "bad args"}, None, "add ✗ bad args"),
        ("phase_changed", {"from": "planning", "to": "approval"}, None, "planning → approval"),
        ("session_finalized", {"outcome": "completed", "summary": "done"}, None, "completed: done"),
        ("state_updated", {}, {"k": None, "j": [None]}, "Δ k=null, j=[null]"),
        ("myplugin.tick", {"n": 1}, None, '{"n":1}'),
        ("openai_agents.item", {"item": {"role": "user", "content": "hi"}}, None, "hi"),
        (
            "openai_agents.item",
            {"item": {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}},
            None,
            "ok",
        ),
        (
            "openai_agents.item",
            {"item": {"type": "function_call", "name": "note", "arguments": '{"a": 1}'}},
            None,
            "note(a=1)",
        ),
        (
            "openai_agents.item",
            {"item": {"type": "function_call_output", "call_id": "c1", "output": "saved"}},
            None,
            "c1 → saved",
        ),
        (
            "langgraph.checkpoint",
            {
                "id": "1f1",
                "checkpoint": {"t": "msgpack", "json": {"updated_channels": ["messages", "step"]}},
                "metadata": {"t": "msgpack", "json": {"step": 2}},
            },
            None,
            "step 2: messages, step (checkpoint 1f1)",
        ),
        ("langgraph.checkpoint", {"id": "1f2", "checkpoint": {"t": "x", "b64": "AA=="}}, None,
         "checkpoint 1f2"),
        ("langgraph.write", {"channel": "n", "value": {"t": "msgpack", "json": 3}}, None,
         "write n = 3"),
        ("langgraph.write", {"channel": "m", "value": {"t": "pickle", "b64": "AA=="}}, None,
         "write m"),
    ],
)
def test_summarize_event(
    type: str, data: dict[str, Any], delta: dict[str, Any] | None, expected: str
) -> None:
    assert summarize_event(make_event(type, data, delta)) == expected


def test_summarize_event_shows_removals_by_event_format() -> None:
    removal = make_event("state_updated", {}, {"k": None}, state_remove=["user:x"])
    assert summarize_event(removal) == "Δ k=null, del user:x"
    old = make_event("state_updated", {}, {"k": None, "n": 1}, format=1)  # None deleted then
    assert summarize_event(old) == "Δ n=1, del k"


def test_summarize_event_is_one_short_line() -> None:
    summary = summarize_event(make_event("user_message", {"text": "word\n" * 100}), width=30)
    assert len(summary) == 30 and "\n" not in summary and summary.endswith("…")


def test_short_id_and_format_age() -> None:
    assert short_id("01JH8Z4K5WQ4X7QZABCDEF0123") == "…CDEF0123"
    assert short_id("inv-1") == "inv-1"
    assert short_id(None) == ""
    now = datetime(2026, 1, 8, 18, 0, tzinfo=timezone.utc)
    assert format_age(now, now=now) == "now"
    assert format_age(now - timedelta(seconds=42), now=now) == "42s ago"
    assert format_age(now - timedelta(minutes=5, seconds=3), now=now) == "5m ago"
    assert format_age(now - timedelta(hours=3), now=now) == "3h ago"
    assert format_age(now - timedelta(days=12), now=now) == "12d ago"
    assert format_age(now - timedelta(days=90), now=now) == "2025-10-10"


# -- the installed console script ---------------------------------------------------------


def cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60)


def test_console_script_in_a_subprocess(store: SessionStore, url: str, tmp_path: Path) -> None:
    exe = console_script()
    env = {"PATH": "/usr/bin:/bin", "AGENTLEDGER_STORE": url, "COLUMNS": "200"}
    listed = cli(exe, "sessions", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    ids = [s["id"] for s in json.loads(listed.stdout)["sessions"]]
    assert ids == [s.id for s in store.list_sessions().sessions]

    events = cli(exe, "--store", url, "sessions", "events", "s-plan", "--json", "--last", "1", env=env)
    assert events.returncode == 0, events.stderr
    assert json.loads(events.stdout) == dump(store.read_events("s-plan", last=1))

    missing = cli(exe, "sessions", "show", "nope", env=env)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.strip().splitlines() == ["error: no session with id 'nope'"]

    usage = cli(exe, "sessions", "list", "--limit", "x", env=env)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr


def test_main_runs_the_app(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["agentledger", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert capsys.readouterr().out.startswith("agentledger ")


@pytest.mark.parametrize("module", ["agentledger", "agentledger.cli"])
def test_python_dash_m_runs_the_command_line(
    store: SessionStore, url: str, module: str
) -> None:
    env = {"PATH": "/usr/bin:/bin", "AGENTLEDGER_STORE": url, "COLUMNS": "200"}
    version = cli(sys.executable, "-m", module, "--version", env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("agentledger ")
    listed = cli(sys.executable, "-m", module, "sessions", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    ids = [s["id"] for s in json.loads(listed.stdout)["sessions"]]
    assert ids == [s.id for s in store.list_sessions().sessions]
    missing = cli(sys.executable, "-m", module, "sessions", "show", "nope", env=env)
    assert (missing.returncode, missing.stderr) == (1, "error: no session with id 'nope'\n")
    usage = cli(sys.executable, "-m", module, "--help", env=env)
    assert usage.returncode == 0 and "Usage: agentledger " in usage.stdout


# -- typed errors, never a traceback --------------------------------------------------------


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-10:00"])
def test_a_clock_out_of_range_in_utc_is_one_error_line(url: str, now: str) -> None:
    result = run(url, "run", "hi", env={"AGENTLEDGER_NOW": now})
    assert_one_line_error(result, "AGENTLEDGER_NOW", "out of range")


def test_events_after_a_huge_seq_is_empty(store: SessionStore, url: str) -> None:
    sid = store.list_sessions().sessions[0].id
    result = ok(run(url, "sessions", "events", sid, "--after", "99999999999999999999999",
                    "--json"))
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("command", [["sessions", "create", "--agent", "a", "--purpose", "p"],
                                     ["sessions", "update", "ID"]])
def test_metadata_nested_too_deep_is_a_usage_error(
    store: SessionStore, url: str, command: list[str]
) -> None:
    sid = store.list_sessions().sessions[0].id
    before = store.list_sessions().sessions
    argv = [sid if a == "ID" else a for a in command]
    result = run(url, *argv, "--metadata", _deep(300))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "levels" in lines[0]
    assert store.list_sessions().sessions == before


def test_summarize_event_shows_state_operations() -> None:
    event = make_event("tool_result", {"name": "add_reminder", "result": "ok"}).model_copy(
        update={"state_ops": [{"op": "add", "path": "/user:reminders/-", "value": "x"},
                              {"op": "remove", "path": "/user:reminders/0"}]}
    )
    assert summarize_event(event) == (
        "add_reminder → ok Δ add /user:reminders/-=x, remove /user:reminders/0"
    )


def test_events_show_nulls_and_removals(store: SessionStore, url: str) -> None:
    sid = store.create_session(app_name="demo", user_id="ada", state={"k": 1, "old": 2}).id
    store.append(sid, [NewEvent(type="state_updated", state_delta={"k": None},
                                state_remove=["old"])])
    shown = ok(run(url, "sessions", "events", sid)).stdout
    assert "Δ k=null, del old" in shown
    (event,) = json.loads(ok(run(url, "sessions", "events", sid, "--json", "--last", "1")).stdout)
    assert event["state_delta"] == {"k": None} and event["state_remove"] == ["old"]
    assert event["format"] == 2
    state = json.loads(ok(run(url, "sessions", "show", sid, "--json")).stdout)["state"]
    assert state == {"k": None}
