"""Erased and truncated data is gone from the bytes a store keeps, once `compact()` ran:
the SQLite file and its write-ahead log, every file of a file store's folder, a `pg_dump`
of a PostgreSQL store."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import POSTGRES_URL_ENV, postgres_schema_url

from agentledger import NewEvent, open_store
from agentledger.stores.base import SessionStore


def _fill(store: SessionStore, erased_text: str, dropped_text: str) -> str:
    """A session whose event 2 holds `erased_text` (to erase: data, state_delta value and
    a state operation) and event 4 `dropped_text` (to truncate away); the state never
    keeps either (the state delta is removed again), so only the ledger held them."""
    sid = store.create_session(app_name="bytes", user_id="ada").id
    store.append(
        sid,
        [
            NewEvent(
                type="user_message",
                author="user",
                data={"text": f"my secret is {erased_text}"},
                state_delta={"scratch": erased_text},
                state_ops=[{"op": "add", "path": "/notes", "value": erased_text}],
            ),
            NewEvent(type="state_updated", state_remove=["scratch", "notes"]),
        ],
    )
    store.append(sid, [NewEvent(type="user_message", author="user", data={"t": dropped_text})])
    for i in range(40):  # enough rows that the erased ones share pages with kept ones
        store.append(sid, [NewEvent(type="agent_message", author="agent", data={"n": i})])
    return sid


def _erase_and_truncate(store: SessionStore, sid: str, *, full: bool | None = None) -> None:
    store.erase_events(sid, [2], "privacy request")
    assert store.truncate_before(sid, 5) == 4
    if full is None:
        store.compact()
    else:
        store.compact(full=full)  # type: ignore[call-arg]
    report = store.verify_session(sid)
    assert report.ok and report.first_seq == 5, report
    assert store.get_session(sid).state == {}


def _files_holding(folder: Path, text: str) -> list[str]:
    needle = text.encode()
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    )


def _texts() -> tuple[str, str]:
    return f"erase-me-{uuid.uuid4().hex}", f"drop-me-{uuid.uuid4().hex}"


@pytest.mark.parametrize(("durability", "full"), [("full", True), ("normal", True), ("full", False)])
def test_sqlite_file_and_wal_hold_no_erased_bytes(
    tmp_path: Path, durability: str, full: bool
) -> None:
    erased, dropped = _texts()
    url = f"sqlite:///{tmp_path}/x.db?durability={durability}"
    with open_store(url) as store:
        sid = _fill(store, erased, dropped)
        assert _files_holding(tmp_path, erased) == ["x.db-wal"]
        store.compact(full=False)  # type: ignore[call-arg]  # into the file, as any checkpoint
        assert _files_holding(tmp_path, erased) == _files_holding(tmp_path, dropped) == ["x.db"]
        _erase_and_truncate(store, sid, full=full)
        assert os.path.getsize(tmp_path / "x.db-wal") == 0
        assert _files_holding(tmp_path, erased) == []
        assert _files_holding(tmp_path, dropped) == []
    assert _files_holding(tmp_path, erased) == _files_holding(tmp_path, dropped) == []


def test_sqlite_deleted_content_is_zeroed(tmp_path: Path) -> None:
    """Without `secure_delete`, rows a truncation deletes stay in the file's free pages:
    every connection of the store turns it on."""
    erased, dropped = _texts()
    with open_store(f"sqlite:///{tmp_path}/x.db") as store:
        sid = _fill(store, erased, dropped)
        store.compact(full=False)  # type: ignore[call-arg]
        store._conn().execute("PRAGMA secure_delete=OFF")  # type: ignore[attr-defined]
        store.truncate_before(sid, 5)
        store.compact(full=False)  # type: ignore[call-arg]
        assert _files_holding(tmp_path, dropped) == ["x.db"]  # what secure_delete prevents
        store.compact()  # a VACUUM rebuilds the file from the live rows only
        assert _files_holding(tmp_path, dropped) == []


def test_sqlite_compact_shrinks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with open_store(f"sqlite:///{db}?durability=normal") as store:
        sid = store.create_session(app_name="bytes", user_id="ada").id
        for i in range(100):
            store.append(sid, [NewEvent(type="agent_message", data={"n": i, "pad": "x" * 2000})])
        store.compact(full=False)  # type: ignore[call-arg]
        before = db.stat().st_size
        store.truncate_before(sid, 100)
        store.compact(full=False)  # type: ignore[call-arg]
        assert db.stat().st_size == before  # freed pages are kept for reuse
        store.compact()
        # What stays: the schema's pages (tables and indexes) and one event.
        assert db.stat().st_size < before / 5


def test_file_store_folder_holds_no_erased_bytes(tmp_path: Path) -> None:
    erased, dropped = _texts()
    root = tmp_path / "sessions"
    with open_store(f"file://{root}") as store:
        sid = _fill(store, erased, dropped)
        assert _files_holding(root, erased) == [f"{sid}/events.jsonl"]
        assert _files_holding(root, dropped) == [f"{sid}/events.jsonl"]
        _erase_and_truncate(store, sid)
        assert _files_holding(root, erased) == _files_holding(root, dropped) == []
        assert not list(root.rglob("*.tmp"))


def _pg_dump() -> Callable[[str], str]:
    """`pg_dump` of one schema, as text; skips without `pg_dump` (fails when `CI=true`)."""
    tool = shutil.which("pg_dump")
    if tool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but pg_dump is not on PATH")
        pytest.skip("pg_dump is not on PATH")
    base = os.environ[POSTGRES_URL_ENV]

    def dump(schema: str) -> str:
        done = subprocess.run(
            [tool, "--schema", schema, "--data-only", base],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout

    return dump


@pytest.mark.parametrize("full", [True, False])
def test_postgres_dump_holds_no_erased_bytes(full: bool) -> None:
    erased, dropped = _texts()
    with postgres_schema_url() as url:
        dump = _pg_dump()
        schema = url.rpartition("schema=")[2]
        with open_store(url) as store:
            sid = _fill(store, erased, dropped)
            before = dump(schema)
            assert erased in before and dropped in before
            store.erase_events(sid, [2], "privacy request")
            assert store.truncate_before(sid, 5) == 4
            store.compact(full=full)  # type: ignore[call-arg]
            after = dump(schema)
            assert erased not in after and dropped not in after
            assert store.verify_session(sid).ok
