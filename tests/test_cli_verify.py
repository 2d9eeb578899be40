"""`agentledger verify`, and time that never runs backwards, through the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import cli_support
from cli_support import T0, iso
from typer.testing import CliRunner, Result

from agentledger import SessionStore
from agentledger.cli import app
from agentledger.testing import msg

store = cli_support.store
url = cli_support.url
clock = cli_support.clock


def run(url: str, *args: str, now: str | None = iso(T0)) -> Result:
    env = {"COLUMNS": "200", "AGENTLEDGER_NOW": now}
    return CliRunner().invoke(app, ["--store", url, *args], env=env)


def _flip_bit(db: Path, marker: bytes) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    at = data.find(marker)
    assert at >= 0 and data.find(marker, at + 1) < 0
    data[at] ^= 0x01
    db.write_bytes(bytes(data))


def test_a_write_from_a_clock_two_days_behind_does_not_make_a_session_idle(url: str) -> None:
    created = json.loads(
        run(url, "sessions", "create", "--agent", "a", "--purpose", "p", "--json").stdout
    )
    sid = created["id"]
    assert run(url, "sessions", "update", sid, "--phase", "planning").exit_code == 0
    behind = iso(T0 - timedelta(days=2))
    result = run(
        url, "sessions", "update", sid, "--phase", "approval",
        "--metadata", '{"work":"important"}', now=behind,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(run(url, "sessions", "show", sid, "--json").stdout)
    assert shown["updated_at"] == created["updated_at"]  # last activity did not move back
    decision = json.loads(run(url, "sessions", "should-resume", sid, "--json").stdout)
    assert decision["reason"] == "session_resumable", decision
    cleanup = run(url, "sessions", "cleanup", "--hours", "24", "--json")
    assert cleanup.exit_code == 0, cleanup.output
    assert sid not in json.loads(cleanup.stdout)["session_ids"]
    assert run(url, "sessions", "show", sid).exit_code == 0  # still there


def test_verify_reports_intact_sessions(url: str, store: SessionStore) -> None:
    a = store.create_session(app_name="demo", user_id="ada").id
    b = store.create_session(app_name="demo", user_id="bob").id
    store.append(a, [msg("one"), msg("two")])
    result = run(url, "verify", "--all")
    assert result.exit_code == 0, result.output
    assert f"ok   {a}  3 events" in result.stdout and f"ok   {b}  1 event" in result.stdout
    assert "2 sessions verified: all intact" in result.stdout
    data = json.loads(run(url, "verify", a, "--json").stdout)
    assert data["ok"] is True
    assert [(s["session_id"], s["ok"], s["events"]) for s in data["sessions"]] == [(a, True, 3)]
    assert len(data["sessions"][0]["last_hash"]) == 64


def test_verify_names_the_session_and_the_first_bad_seq(
    url: str, store: SessionStore, tmp_path: Path
) -> None:
    good = store.create_session(app_name="demo", user_id="ada").id
    bad = store.create_session(app_name="demo", user_id="bob").id
    store.append(bad, [msg("first"), msg("water the plants"), msg("third")])
    store.close()
    _flip_bit(tmp_path / "x.db", b"water the plants")
    result = run(url, "verify", "--all")
    assert result.exit_code == 1, result.output
    assert f"FAIL {bad}  seq 3: its data, state_delta, state_ops or state_remove was changed" in result.stdout
    assert f"ok   {good}" in result.stdout
    assert "2 sessions verified: 1 damaged" in result.stdout
    data = json.loads(run(url, "verify", bad, good, "--json").stdout)
    assert data["ok"] is False
    first, second = data["sessions"]
    assert (first["session_id"], first["ok"], first["first_bad_seq"]) == (bad, False, 3)
    assert "payload hash mismatch" in first["problem"]
    assert (second["session_id"], second["ok"]) == (good, True)


def test_verify_usage_and_unknown_sessions(url: str, store: SessionStore) -> None:
    for args, message in (
        ((), "error: give session ids to verify, or --all to verify every session"),
        (("x", "--all"), "error: give session ids or --all, not both"),
    ):
        result = run(url, "verify", *args)
        assert result.exit_code == 2
        assert result.stderr.startswith(message)
    result = run(url, "verify", "nope")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "MISSING nope  no session with id 'nope'",
        "0 sessions verified: 1 not found",
    ]
    assert "Traceback" not in result.output
    # A missing id is not counted as damaged beside a session that verifies.
    sid = store.create_session(app_name="demo", user_id="ada").id
    result = run(url, "verify", "nope", sid, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["missing"] == ["nope"]
    assert [s["ok"] for s in report["sessions"]] == [False, True]
    result = run(url, "verify", sid, "nope")
    assert result.stdout.splitlines()[-1] == "1 session verified: all intact, 1 not found"
