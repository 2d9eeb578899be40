"""How the command line opens its store: read commands never write (nothing created,
migrated or changed), only commands that create sessions create the store, and never a
missing folder; a bad store URL option is one error line."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import agentledger.stores.sqlite as sqlite_module
from agentledger import open_store
from agentledger.cli import app

STORES = {
    "sqlite": lambda folder: f"sqlite:///{folder}/x.db",
    "file": lambda folder: f"file://{folder}/sessions",
}

LISTINGS = [
    ["sessions", "list"],
    ["sessions", "list", "--json"],
    ["stats"],
    ["stats", "--json"],
    ["sessions", "cleanup", "--hours", "1", "--dry-run"],
    ["sessions", "cleanup", "--hours", "0", "--json"],
    ["verify", "--all"],
    ["verify", "--all", "--json"],
]
"""Commands over every session: on a missing store, an empty answer and a note."""

ONE_SESSION = [
    ["sessions", "show", "s1"],
    ["sessions", "get", "s1", "--json"],
    ["sessions", "events", "s1"],
    ["sessions", "update", "s1", "--phase", "planning"],
    ["sessions", "suspend", "s1"],
    ["sessions", "resume", "s1"],
    ["sessions", "finalize", "s1", "completed"],
    ["sessions", "terminate", "s1"],
    ["sessions", "delete", "s1", "--yes"],
    ["replay", "s1"],
]
"""Commands on one session: on a missing store, one error line naming it."""


def run(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--store", url, *args], input=input, env={"COLUMNS": "200"})


def one_error_line(result: Result, *needles: str) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("kind", list(STORES))
@pytest.mark.parametrize("args", LISTINGS, ids=" ".join)
def test_a_listing_of_a_missing_store_is_empty_names_it_and_creates_nothing(
    tmp_path: Path, kind: str, args: list[str]
) -> None:
    url = STORES[kind](tmp_path)
    result = run(url, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert f"note: store {url} does not exist" in result.stderr
    if "--json" in args:
        json.loads(result.stdout)  # stdout stays pure JSON
    assert entries(tmp_path) == []


@pytest.mark.parametrize("kind", list(STORES))
@pytest.mark.parametrize("args", ONE_SESSION, ids=" ".join)
def test_a_command_on_one_session_of_a_missing_store_says_so_and_creates_nothing(
    tmp_path: Path, kind: str, args: list[str]
) -> None:
    url = STORES[kind](tmp_path)
    one_error_line(run(url, *args), "no session with id 's1'", f"store {url} does not exist")
    assert entries(tmp_path) == []


@pytest.mark.parametrize("kind", list(STORES))
def test_should_resume_and_subagent_stop_on_a_missing_store_create_nothing(
    tmp_path: Path, kind: str
) -> None:
    url = STORES[kind](tmp_path)
    result = run(url, "sessions", "should-resume", "s1", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == "not_found"
    assert f"store {url} does not exist" in result.stderr
    result = run(url, "hook", "subagent-stop", input='{"agent_id": "s1", "exit_code": 0}')
    assert result.exit_code == 0
    assert json.loads(result.stdout)["reason"] == "not_found"
    assert entries(tmp_path) == []


@pytest.mark.parametrize("kind", list(STORES))
def test_a_missing_folder_is_never_created(tmp_path: Path, kind: str) -> None:
    """Reads find no store; a command that creates sessions creates the store itself (the
    SQLite file, the file store's folder) but not a missing folder above it: an error
    naming that folder."""
    missing = tmp_path / "nonexistent" / "dir"
    url = STORES[kind](missing)
    result = run(url, "sessions", "list", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["sessions"] == []
    for args in (
        ["sessions", "create", "--agent", "a", "--purpose", "p"],
        ["run", "remind me to buy eggs"],
    ):
        one_error_line(run(url, *args), f"folder {missing} does not exist")
    assert entries(tmp_path) == []
    missing.mkdir(parents=True)
    created = run(url, "sessions", "create", "--agent", "a", "--purpose", "p")
    assert created.exit_code == 0, created.output
    listed = run(url, "sessions", "list", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)["sessions"]] == [created.stdout.strip()]
    assert "note:" not in listed.stderr


def test_a_read_changes_no_byte_of_the_database(tmp_path: Path) -> None:
    """Even a database in rollback-journal mode, which a writer switches to WAL, is left
    exactly as it was by every read command."""
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s1")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    before = db.read_bytes()
    for args in [*LISTINGS[:5], ["sessions", "show", "s1"], ["sessions", "events", "s1"]]:
        result = run(url, *args)
        assert result.exit_code == 0, (args, result.output)
        assert db.read_bytes() == before, args
    assert json.loads(run(url, "sessions", "list", "--json").stdout)["sessions"][0]["id"] == "s1"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_database_can_be_listed(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with open_store(f"sqlite:///{db}") as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s1")
    db.chmod(0o444)
    try:
        result = run(f"sqlite:///{db}", "sessions", "list", "--json")
        assert result.exit_code == 0, result.output
        assert [s["id"] for s in json.loads(result.stdout)["sessions"]] == ["s1"]
    finally:
        db.chmod(0o644)


def _older_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, int]:
    """A SQLite file with session "s1", older than this library once `MIGRATIONS` gains a
    version (patched here): its path, URL and the library's schema version."""
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    with open_store(url) as store:
        store.create_session(app_name="demo", user_id="ada", session_id="s1")
    newer = [*sqlite_module.MIGRATIONS, ["CREATE TABLE later (x INTEGER)"]]
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", newer)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", len(newer) - 1)
    return db, url, len(newer) - 1


def test_a_read_does_not_migrate_an_older_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url, version = _older_store(tmp_path, monkeypatch)
    before = db.read_bytes()
    one_error_line(run(url, "sessions", "list"), "does not migrate", "command that writes")
    assert db.read_bytes() == before
    assert run(url, "sessions", "update", "s1", "--phase", "planning").exit_code == 0
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (version,)


def test_migrate_migrates_an_older_store_once_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url, version = _older_store(tmp_path, monkeypatch)
    result = run(url, "migrate")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Migrated {url} to schema version {version}."
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (version,)
    again = run(url, "migrate", "--json")
    assert json.loads(again.stdout) == {
        "store": url,
        "migrated": False,
        "schema_version": version,
    }
    assert run(url, "sessions", "list", "--json").exit_code == 0


def test_migrate_creates_no_store(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path}/x.db", "migrate")
    one_error_line(result, "does not exist", "nothing to migrate")
    assert entries(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    ["sqlite:///{tmp}/x.db?bogus=1", "file://{tmp}/s?bogus=1", "memory://?bogus=1"],
)
def test_an_unknown_store_url_option_is_one_error_line(url: str, tmp_path: Path) -> None:
    line = one_error_line(run(url.format(tmp=tmp_path), "run", "hi"), "unknown option 'bogus'")
    assert "max_event_bytes" in line
    assert entries(tmp_path) == []
