"""`agentledger sessions erase`, `sessions truncate` and `compact` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cli_support
import pytest
from cli_support import T0, iso
from typer.testing import CliRunner, Result

from agentledger import SessionStore
from agentledger.cli import app
from agentledger.cli import sessions as sessions_cli
from agentledger.testing import msg

store = cli_support.store
url = cli_support.url
clock = cli_support.clock


def run(url: str, *args: str, stdin: str | None = None) -> Result:
    env = {"COLUMNS": "200", "AGENTLEDGER_NOW": iso(T0)}
    return CliRunner().invoke(app, ["--store", url, *args], env=env, input=stdin)


def _session(store: SessionStore, secret: str) -> str:
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg(secret), msg("kept")])
    store.append(sid, [msg("three"), msg("four")])
    return sid


def _files_holding(folder: Path, text: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and text.encode() in p.read_bytes())


def test_erase_and_compact(store: SessionStore, url: str, tmp_path: Path) -> None:
    sid = _session(store, "card 4111-2222")
    result = run(
        url, "sessions", "erase", sid, "--seq", "2", "--reason", "user request", "--yes",
        "--compact", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = json.loads(result.stdout)
    assert (recorded["type"], recorded["seq"]) == ("events_erased", 6)
    assert recorded["data"] == {"seqs": [2], "reason": "user request"}
    events = store.read_events(sid)
    assert events[1].erased and events[1].data == {}
    assert _files_holding(tmp_path, "4111-2222") == []
    shown = run(url, "sessions", "events", sid)
    assert "(payload erased)" in shown.stdout and "erased 2: user request" in shown.stdout
    assert run(url, "verify", sid).exit_code == 0


def test_truncate(store: SessionStore, url: str) -> None:
    sid = _session(store, "x")
    result = run(url, "sessions", "truncate", sid, "--before", "4", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Dropped 3 events of session {sid}."
    assert [e.seq for e in store.read_events(sid)] == [4, 5]
    assert run(url, "compact").stdout.strip() == "Compacted the store."
    again = run(url, "sessions", "truncate", sid, "--before", "4", "--yes", "--json")
    assert json.loads(again.stdout) == {"session_id": sid, "dropped": 0}
    past = run(url, "sessions", "truncate", sid, "--before", "9", "--yes")
    assert past.exit_code == 1 and "the last event always stays" in past.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["erase", "{sid}", "--seq", "2", "--reason", "why"],
        ["truncate", "{sid}", "--before", "3"],
    ],
)
def test_destructive_commands_refuse_without_a_terminal(
    store: SessionStore, url: str, args: list[str]
) -> None:
    sid = _session(store, "secret")
    before = store.read_events(sid)
    result = run(url, "sessions", *[a.format(sid=sid) for a in args], stdin="y\n")
    assert result.exit_code == 1
    assert "stdin is not a terminal" in result.stderr and "--yes" in result.stderr
    assert store.read_events(sid) == before


def test_erase_asks_on_a_terminal(
    store: SessionStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = _session(store, "secret")
    monkeypatch.setattr(sessions_cli, "_stdin_is_terminal", lambda: True)
    no = run(url, "sessions", "erase", sid, "--seq", "2", "--reason", "why", stdin="n\n")
    assert no.exit_code == 1 and "Erase the payload of event 2" in no.stdout
    assert not store.read_events(sid)[1].erased
    yes = run(url, "sessions", "erase", sid, "--seq", "2", "--seq", "3", "--reason", "why",
              stdin="y\n")  # fmt: skip
    assert yes.exit_code == 0, yes.output
    assert [e.seq for e in store.read_events(sid) if e.erased] == [2, 3]


def test_bad_erases_are_one_error_line(store: SessionStore, url: str) -> None:
    sid = _session(store, "secret")
    for args in (["--seq", "9", "--reason", "why"], ["--seq", "2", "--reason", " "]):
        result = run(url, "sessions", "erase", sid, *args, "--yes")
        assert result.exit_code == 1 and result.stderr.startswith("error: "), result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert run(url, "sessions", "erase", sid, "--reason", "why", "--yes").exit_code == 2
    assert not any(e.erased for e in store.read_events(sid))


def test_messages_show_odd_ids_quoted_and_count_events(store: SessionStore, url: str) -> None:
    sid = store.create_session(app_name="demo", user_id="ada", session_id="t/1 x").id
    store.append(sid, [msg("a"), msg("b"), msg("c")])
    erased = run(url, "sessions", "erase", sid, "--seq", "2", "--reason", "why", "--yes")
    assert erased.stdout.strip() == "Erased event 2 of session 't/1 x' (recorded as event 5)."
    dropped = run(url, "sessions", "truncate", sid, "--before", "4", "--yes")
    assert dropped.stdout.strip() == "Dropped 3 events of session 't/1 x'."
    refused = run(url, "sessions", "truncate", sid, "--before", "5")
    assert "of session 't/1 x' without confirmation" in refused.stderr


def test_compact_of_a_missing_store_compacts_nothing(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path}/missing.db", "compact")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Nothing to compact."
    assert "does not exist (nothing was created)" in result.stderr
    assert list(tmp_path.iterdir()) == []
