"""`agentledger sessions fork` and `sessions rewind`, and `sessions events --effective`.

Commands run in-process (`CliRunner`) against a SQLite file; the Python API sets sessions up
and checks the store.
"""

from __future__ import annotations

import json

import cli_support
from cli_support import T0, iso
from typer.testing import CliRunner, Result

from agentledger import NewEvent, SessionStore
from agentledger.cli import app

clock = cli_support.clock
store = cli_support.store
url = cli_support.url


def run(url: str, *args: str) -> Result:
    env = {"COLUMNS": "200", "AGENTLEDGER_NOW": iso(T0)}
    return CliRunner().invoke(app, ["--store", url, *args], env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def _session(store: SessionStore) -> str:
    session = store.create_session(app_name="cli", user_id="ada", state={"n": 0})
    for n in (1, 2, 3):
        store.append(
            session.id,
            [NewEvent(type="user_message", author="user", data={"text": f"m{n}"},
                      state_delta={"n": n}, invocation_id=f"t{n}")],
        )
    return session.id


def test_fork_at_a_seq_with_an_id(url: str, store: SessionStore) -> None:
    sid = _session(store)
    result = ok(run(url, "sessions", "fork", sid, "--at", "2", "--id", "my-fork"))
    assert result.stdout.strip() == f"Forked session {sid} at seq 2 into my-fork (version 3)."
    fork = store.get_session("my-fork")
    assert fork.state == {"n": 1} and fork.forked_from is not None
    assert store.verify_session("my-fork").ok
    shown = ok(run(url, "sessions", "show", "my-fork")).stdout
    assert "forked from" in shown and f"{sid} at seq 2" in shown


def test_fork_json_at_the_head(url: str, store: SessionStore) -> None:
    sid = _session(store)
    fork = json.loads(ok(run(url, "sessions", "fork", sid, "--json")).stdout)
    assert fork["forked_from"] == {"session_id": sid, "seq": 4}
    assert fork["state"] == {"n": 3} and fork["version"] == 5
    listed = json.loads(ok(run(url, "sessions", "list", "--json")).stdout)
    lineage = {s["id"]: s["forked_from"] for s in listed["sessions"]}
    assert lineage == {sid: None, fork["id"]: {"session_id": sid, "seq": 4}}


def test_fork_refusals_are_one_line_errors(url: str, store: SessionStore) -> None:
    sid = _session(store)
    result = run(url, "sessions", "fork", sid, "--at", "9")
    assert result.exit_code != 0 and "at_seq must be from 1 to 4" in result.stderr
    result = run(url, "sessions", "fork", sid, "--id", sid)
    assert result.exit_code != 0 and result.stderr.startswith("error: ")
    assert len(store.list_sessions().sessions) == 1


def test_rewind_and_effective_events(url: str, store: SessionStore) -> None:
    sid = _session(store)
    result = ok(run(url, "sessions", "rewind", sid, "--to", "2"))
    assert result.stdout.strip() == f"Rewound session {sid} to seq 2 (version 5)."
    assert store.get_session(sid).state == {"n": 1}
    events = json.loads(ok(run(url, "sessions", "events", sid, "--json")).stdout)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    kept = json.loads(ok(run(url, "sessions", "events", sid, "--effective", "--json")).stdout)
    assert [e["seq"] for e in kept] == [1, 2]
    table = ok(run(url, "sessions", "events", sid)).stdout
    assert "back to seq 2" in table
    again = json.loads(
        ok(run(url, "sessions", "rewind", sid, "--before-invocation", "t1", "--json")).stdout
    )
    assert again["state"] == {"n": 0} and again["version"] == 6


def test_rewind_needs_one_target(url: str, store: SessionStore) -> None:
    sid = _session(store)
    for args in ([], ["--to", "2", "--before-invocation", "t1"]):
        result = run(url, "sessions", "rewind", sid, *args)
        assert result.exit_code == 2 and "either --to" in result.stderr
    assert store.get_session(sid).version == 4


def test_fork_and_rewind_show_odd_ids_quoted(url: str, store: SessionStore) -> None:
    sid = _session(store)
    forked = ok(run(url, "sessions", "fork", sid, "--at", "2", "--id", "what if"))
    assert forked.stdout.strip() == f"Forked session {sid} at seq 2 into 'what if' (version 3)."
    rewound = ok(run(url, "sessions", "rewind", "what if", "--to", "1"))
    assert rewound.stdout.strip() == "Rewound session 'what if' to seq 1 (version 4)."


def test_messages_stay_one_line_on_a_narrow_terminal(url: str, store: SessionStore) -> None:
    sid = _session(store)
    env = {"COLUMNS": "40", "AGENTLEDGER_NOW": iso(T0)}
    for args in (
        ["sessions", "fork", sid, "--at", "2", "--id", "a-rather-long-fork-id-" + "x" * 40],
        ["sessions", "rewind", sid, "--to", "2"],
        ["sessions", "erase", sid, "--seq", "3", "--reason", "why", "--yes"],
        ["sessions", "truncate", sid, "--before", "3", "--yes"],
    ):
        result = CliRunner().invoke(app, ["--store", url, *args], env=env)
        assert result.exit_code == 0, result.output
        assert len(result.stdout.strip().splitlines()) == 1, result.stdout
