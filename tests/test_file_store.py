"""File-store-specific behaviour: the readable layout, torn tails, stale and corrupted
snapshots, corrupted ledgers, shared state committed with its batch, schema versions and
migrations, unsafe ids and stray entries, and writers killed mid-append.

The shared contract is checked by the conformance suite (test_conformance.py); these tests
reach into the folder, which only a file store test can do.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from migration_support import V1_DATA, check_v1_store_upgraded

import agentledger.stores.file as file_module
from agentledger import (
    ConfigurationError,
    CorruptedSessionError,
    InvalidSessionIdError,
    NewEvent,
    SchemaVersionError,
    SessionNotFoundError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    open_store,
)
from agentledger.stores.base import SessionStore
from agentledger.stores.file import FORMAT, MIGRATIONS, SCHEMA_VERSION, FileStore, _folder_name
from agentledger.testing import StoreFactory, msg

LEDGER = "events.jsonl"
SNAPSHOT = "session.json"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def make(root: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(f"file://{root}")
    yield factory
    factory.close_all()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def _populated(make: StoreFactory) -> tuple[SessionStore, str, str]:
    store = make()
    store.create_session(app_name="demo", user_id="ada", state={"k": 1}, session_id="AAA")
    store.create_session(app_name="demo", user_id="bob", session_id="BBB")
    store.append(
        "AAA",
        [msg("one", state_delta={"k": 2}), NewEvent(type="phase_changed", data={"to": "planning"})],
    )
    store.append("BBB", [msg("two")])
    return store, "AAA", "BBB"


def _record(store: SessionStore, session_id: str) -> tuple[Any, Any]:
    return store.get_session(session_id), store.read_events(session_id)


# -- URLs -----------------------------------------------------------------------------------


def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").mkdir()  # a store creates its own folder, not the ones above it
    for url, folder in [
        ("file://./rel", tmp_path / "rel"),
        ("file://plain/sub", tmp_path / "plain" / "sub"),
        ("file://./with%20space", tmp_path / "with space"),
        (f"file://{tmp_path}/abs", tmp_path / "abs"),
    ]:
        with open_store(url) as store:
            assert isinstance(store, FileStore)
            assert store.root == folder and store.url == url
            store.create_session(app_name="demo", user_id="ada", session_id="S")
        assert (folder / "S" / LEDGER).is_file()
    # A relative root is resolved once: changing directory later does not move the store.
    store = FileStore("./moving")
    monkeypatch.chdir(tmp_path / "rel")
    store.create_session(app_name="demo", user_id="ada", session_id="S")
    assert (tmp_path / "moving" / "S" / SNAPSHOT).is_file()


def test_a_store_folder_is_created_only_by_a_write_and_never_its_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for options in ({"read_only": True}, {"create": False}):
        with pytest.raises(StoreNotFoundError, match="does not exist"):
            open_store("file://./s", **options)
    assert not (tmp_path / "s").exists()
    with pytest.raises(StoreNotFoundError, match=f"folder {tmp_path / 'missing'} does not exist"):
        open_store("file://./missing/s")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()  # a folder that is not a store is not read as one
    with pytest.raises(StoreNotFoundError, match="holds no agentledger file store"):
        open_store("file://./empty", read_only=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_read_only_open_does_not_migrate_an_older_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(f"file://{tmp_path}/s") as store:
        store.create_session(app_name="demo", user_id="ada", session_id="KEPT")
    format_file = tmp_path / "s" / "_agentledger.json"
    before = format_file.read_text()
    later = SCHEMA_VERSION + 1
    monkeypatch.setattr(file_module, "MIGRATIONS", {**MIGRATIONS, later: lambda root: None})
    monkeypatch.setattr(file_module, "SCHEMA_VERSION", later)
    with pytest.raises(SchemaVersionError, match="does not migrate"):
        open_store(f"file://{tmp_path}/s", read_only=True)
    assert format_file.read_text() == before
    with open_store(f"file://{tmp_path}/s") as store:  # a write migrates
        assert store.get_session("KEPT").version == 1
    assert json.loads(format_file.read_text())["schema_version"] == later


@pytest.mark.parametrize(
    "url",
    [
        "file://",
        "file://?max_event_bytes=1000",
        "file://./x?max_event_bytes=lots",
        "file://./x?max_event_bytes=10",
        "file://./x?lock_timeout=soon",
        "file://./x?lock_timeout=-1",
        "file://./a%00b",
    ],
)
def test_bad_file_urls(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_url_options(root: Path) -> None:
    with open_store(f"file://{root}?max_event_bytes=2048&lock_timeout=0.5") as store:
        assert isinstance(store, FileStore)
        assert (store.max_event_bytes, store.lock_timeout) == (2048, 0.5)


# -- the readable layout --------------------------------------------------------------------


def test_layout_is_readable_json(make: StoreFactory, root: Path) -> None:
    store = make()
    session = store.create_session(
        app_name="demo", user_id="ada", state={"k": 1, "app:a": "x", "user:u": [1, 2]}
    )
    store.append(session.id, [msg("héllo \u2028 line"), msg("two", state_delta={"k": 2})])
    folder = root / session.id
    assert sorted(os.listdir(folder)) == [LEDGER, SNAPSHOT]
    lines = _lines(folder / LEDGER)
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert [line["batch_end"] for line in lines] == [1, 3, 3]
    assert lines[1]["data"] == {"text": "héllo \u2028 line"}
    assert lines[0]["type"] == "session_created" and lines[2]["state_delta"] == {"k": 2}
    assert (folder / LEDGER).read_bytes().count(b"\n") == 3  # U+2028 does not split a line
    snapshot = json.loads((folder / SNAPSHOT).read_text())
    assert snapshot["version"] == 3 and snapshot["state"] == {"k": 2}
    assert snapshot["ledger_bytes"] == (folder / LEDGER).stat().st_size
    assert (folder / SNAPSHOT).read_text().startswith('{\n  "id"')  # indented for people
    assert json.loads((root / "_agentledger.json").read_text()) == {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
    }
    app_state = json.loads((root / "_scoped" / "app" / "demo.json").read_text())
    assert app_state == {"app_name": "demo", "state": {"a": "x"}}
    user_state = json.loads((root / "_scoped" / "user" / "demo" / "ada.json").read_text())
    assert user_state == {"app_name": "demo", "user_id": "ada", "state": {"u": [1, 2]}}
    assert not [p for p in root.rglob("*.tmp")]


def test_unsafe_app_and_user_names_stay_inside_the_scoped_folder(
    make: StoreFactory, root: Path, tmp_path: Path
) -> None:
    store = make()
    for app, user in [("../../escape", "a/b"), (".", ".."), ("x" * 300, "~" + "y" * 300)]:
        first = store.create_session(app_name=app, user_id=user, state={"app:n": 1, "user:m": 2})
        second = store.create_session(app_name=app, user_id=user)
        assert first.state == second.state == {"app:n": 1, "user:m": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions"]
    for path in (root / "_scoped").rglob("*.json"):
        assert path.resolve().is_relative_to((root / "_scoped").resolve())
        assert not path.name.startswith(".") and len(path.name) <= 125
    other = store.create_session(app_name="x" * 300, user_id="~" + "y" * 299 + "z")
    assert other.state == {"app:n": 1}  # a different long user name: a different file


# -- torn tails and stale snapshots ---------------------------------------------------------


def test_torn_last_line_is_ignored_then_repaired(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    before = _record(store, a)
    ledger = root / a / LEDGER
    good_size = ledger.stat().st_size
    line = json.dumps(_lines(ledger)[-1]).encode()
    with open(ledger, "ab") as f:
        f.write(line[: len(line) // 2])  # killed mid-write: no newline
    assert _record(store, a) == before
    assert _record(make(), a) == before
    assert [s.id for s in store.list_sessions().sessions] == [b, a]
    (after,) = store.append(a, [msg("three")])
    assert after.seq == 4
    assert [e.seq for e in store.read_events(a)] == [1, 2, 3, 4]
    assert [line["seq"] for line in _lines(ledger)] == [1, 2, 3, 4]  # torn bytes gone
    assert ledger.read_bytes().endswith(b"\n") and ledger.stat().st_size > good_size


def test_unfinished_batch_is_invisible_then_repaired(make: StoreFactory, root: Path) -> None:
    store, a, _ = _populated(make)
    before = _record(store, a)
    ledger = root / a / LEDGER
    template = _lines(ledger)[-1]
    # Two complete lines of a three-event batch (seq 4-6), the third never written.
    torn = b"".join(
        json.dumps({**template, "seq": seq, "id": f"x{seq}", "batch_end": 6}).encode() + b"\n"
        for seq in (4, 5)
    )
    with open(ledger, "ab") as f:
        f.write(torn)
    assert _record(store, a) == before
    assert store.get_session(a).version == 3
    stored = store.append(a, [msg("x"), msg("y")])
    assert [e.seq for e in stored] == [4, 5]
    assert [line["id"] for line in _lines(ledger)][3:] == [e.id for e in stored]


def test_ledger_ahead_of_the_snapshot(make: StoreFactory, root: Path) -> None:
    """Killed after the ledger commit, before the snapshot: the ledger is the truth."""
    store, a, _ = _populated(make)
    snapshot = root / a / SNAPSHOT
    stale = snapshot.read_bytes()
    store.append(a, [msg("x", state_delta={"k": 3}), NewEvent(type="error", data={"message": "e"})])
    store.append(a, [NewEvent(type="phase_changed", data={"to": "approval"})])
    fresh = _record(store, a)
    snapshot.write_bytes(stale)
    for reader in (store, make()):
        assert _record(reader, a) == fresh
        assert {s.id: s for s in reader.list_sessions().sessions}[a] == fresh[0]
    assert json.loads(snapshot.read_bytes())["version"] == 3  # readers do not write
    store.append(a, [msg("y")])
    repaired = json.loads(snapshot.read_bytes())
    assert repaired["version"] == 7 and repaired["state"] == {"k": 3}
    assert repaired["phase"] == "approval" and repaired["error_count"] == 1


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"id": 5}', b"null", b"", b"\xff\xfe"])
def test_corrupted_snapshot_is_rebuilt_from_the_ledger(
    make: StoreFactory, root: Path, garbage: bytes
) -> None:
    store, a, b = _populated(make)
    good = _record(store, a)
    (root / a / SNAPSHOT).write_bytes(garbage)
    assert _record(store, a) == good
    assert {s.id: s for s in store.list_sessions().sessions}[a] == good[0]
    assert store.list_sessions().corrupted == []
    store.append(a, [msg("three")])
    snapshot = json.loads((root / a / SNAPSHOT).read_text())
    assert snapshot["version"] == 4 and snapshot["state"] == {"k": 2}


def test_missing_snapshot_is_rebuilt(make: StoreFactory, root: Path) -> None:
    store, a, _ = _populated(make)
    good = _record(store, a)
    (root / a / SNAPSHOT).unlink()
    assert _record(store, a) == good
    assert a in [s.id for s in store.list_sessions().sessions]
    store.append(a, [msg()])
    assert json.loads((root / a / SNAPSHOT).read_text())["version"] == 4


def test_create_killed_before_its_ledger_commit_is_no_session(
    make: StoreFactory, root: Path
) -> None:
    store = make()
    (root / "HALF").mkdir()
    (root / "HALF" / LEDGER).write_bytes(b'{"seq":1,"id":"x","type":"session_cr')
    with pytest.raises(SessionNotFoundError):
        store.get_session("HALF")
    with pytest.raises(SessionNotFoundError):
        store.read_events("HALF")
    with pytest.raises(SessionNotFoundError):
        store.delete_session("HALF")
    assert store.list_sessions().sessions == [] and store.list_sessions().corrupted == []
    session = store.create_session(app_name="demo", user_id="ada", session_id="HALF")
    assert session.version == 1 and [e.seq for e in store.read_events("HALF")] == [1]
    assert [line["seq"] for line in _lines(root / "HALF" / LEDGER)] == [1]


# -- corrupted ledgers ----------------------------------------------------------------------


def _replace_line(ledger: Path, index: int, new: bytes) -> None:
    lines = ledger.read_bytes().split(b"\n")
    lines[index] = new
    ledger.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    "garbage",
    [
        b"{garbage",
        b"",
        b'{"seq": 2}',
        b"[1, 2]",
        b"\x00\x00\x00",
    ],
)
def test_garbage_in_the_ledger_corrupts_only_its_session(
    make: StoreFactory, root: Path, garbage: bytes
) -> None:
    store, a, b = _populated(make)
    b_before = _record(store, b)
    _replace_line(root / a / LEDGER, 1, garbage)
    for reader in (store, make()):
        with pytest.raises(CorruptedSessionError) as info:
            reader.get_session(a)
        assert info.value.session_id == a and isinstance(info.value, StoreError)
        with pytest.raises(CorruptedSessionError):
            reader.read_events(a)
        with pytest.raises(CorruptedSessionError):
            reader.read_events(a, after=3)
        page = reader.list_sessions()
        assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]
        assert reader.list_sessions(app_name="demo").corrupted == [a]
        assert reader.list_sessions(app_name="other").corrupted == []
        assert _record(reader, b) == b_before
    with pytest.raises(CorruptedSessionError):
        store.append(a, [msg()])
    store.append(b, [msg()])
    assert store.get_session(b).version == 3
    store.delete_session(a)  # a corrupted session can still be deleted
    assert store.list_sessions().corrupted == []


def _damage(root: Path, session_id: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage one session's files as a person or a failing disk could."""
    folder = root / session_id
    if how == "ledger-is-a-folder":
        (folder / LEDGER).unlink()
        (folder / LEDGER).mkdir()
    elif how == "snapshot-is-a-folder":
        (folder / SNAPSHOT).unlink()
        (folder / SNAPSHOT).mkdir()
    elif how in ("snapshot-is-a-fifo", "ledger-is-a-fifo"):  # opening it would block forever
        path = folder / (SNAPSHOT if how == "snapshot-is-a-fifo" else LEDGER)
        path.unlink()
        os.mkfifo(path)
    else:  # "snapshot-unreadable": as chmod 000 would for a user other than root
        path = os.fspath(folder / SNAPSHOT)
        real_open = os.open

        def refusing(name: Any, *args: Any, **kwargs: Any) -> int:
            if os.fspath(name) == path:
                raise PermissionError(13, "Permission denied", path)
            return real_open(name, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize(
    "how",
    ["ledger-is-a-folder", "snapshot-is-a-folder", "snapshot-is-a-fifo", "ledger-is-a-fifo",
     "snapshot-unreadable"],
)
def test_a_session_whose_files_cannot_be_read_is_corrupted_alone(
    make: StoreFactory, root: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing, stats, clean-up and the other sessions keep working around it."""
    from datetime import timedelta

    from agentledger.manager import SessionManager

    store, a, b = _populated(make)
    b_before = _record(store, b)
    _damage(root, a, how, monkeypatch)
    for reader in (store, make()):
        with pytest.raises(CorruptedSessionError) as info:
            reader.get_session(a)
        assert info.value.session_id == a
        if how.startswith("ledger"):
            with pytest.raises(CorruptedSessionError):
                reader.read_events(a)
        else:  # the ledger itself is intact
            assert [e.seq for e in reader.read_events(a)] == [1, 2, 3]
        with pytest.raises(CorruptedSessionError):
            reader.append(a, [msg()])
        page = reader.list_sessions()
        assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]
        assert _record(reader, b) == b_before
        manager = SessionManager(reader)
        assert manager.stats().total == 1
        result = manager.cleanup(timedelta(0), dry_run=True)
        assert result.session_ids == [b] and result.skipped_corrupted == [a]
    store.append(b, [msg()])
    store.delete_session(a)  # a damaged session can still be deleted
    assert store.list_sessions().corrupted == []


def test_a_deleted_trash_folder_is_made_again(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    store.close()
    (root / "_trash").rmdir()
    reopened = make()
    assert reopened.get_session(a).version == 3
    reopened.delete_session(a)
    assert [s.id for s in reopened.list_sessions().sessions] == [b]
    assert (root / "_trash").is_dir()


def test_same_size_garbage_with_a_bad_snapshot(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    ledger = root / a / LEDGER
    lines = ledger.read_bytes().split(b"\n")
    _replace_line(ledger, 1, b"#" * len(lines[1]))
    assert store.get_session(a).version == 3  # the snapshot still answers, as the contract says
    with pytest.raises(CorruptedSessionError):
        store.read_events(a)
    (root / a / SNAPSHOT).write_text("oops")
    with pytest.raises(CorruptedSessionError):
        store.get_session(a)
    page = store.list_sessions()
    assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]


@pytest.mark.parametrize(
    "change",
    ["gap", "repeat", "batch_interrupted", "missing_ledger", "extra_key", "nan"],
)
def test_malformed_ledgers_are_corruption(make: StoreFactory, root: Path, change: str) -> None:
    store, a, b = _populated(make)
    ledger = root / a / LEDGER
    lines = _lines(ledger)
    (root / a / SNAPSHOT).write_text("x")
    if change == "missing_ledger":
        ledger.unlink()
    else:
        if change == "gap":
            del lines[1]
        elif change == "repeat":
            lines.insert(2, lines[1])
        elif change == "batch_interrupted":  # seq 2 says its batch ends at 3, seq 3 says 4
            lines[2]["batch_end"] = 4
            lines.append({**lines[2], "seq": 4, "id": "z"})
        elif change == "extra_key":
            lines[1]["surprise"] = True
        text = "\n".join(json.dumps(line) for line in lines) + "\n"
        if change == "nan":
            text = text.replace('"text": "one"', '"text": NaN')
        ledger.write_text(text)
    with pytest.raises(CorruptedSessionError):
        store.get_session(a)
    with pytest.raises(CorruptedSessionError):
        store.read_events(a)
    assert store.list_sessions().corrupted == [a]
    assert store.get_session(b).version == 2


def test_unreadable_shared_state_file(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    store.append(a, [msg(state_delta={"user:x": 1})])
    (root / "_scoped" / "user" / "demo" / "ada.json").write_text("{broken")
    with pytest.raises(CorruptedSessionError):
        store.get_session(a)
    assert store.list_sessions().corrupted == [a]
    assert store.get_session(b).version == 2  # bob's state file is fine


# -- shared state commits with its batch ----------------------------------------------------


def test_shared_state_follows_a_failed_ledger_write(
    make: StoreFactory, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose ledger write fails leaves its `pending` shared state uncommitted."""
    store, a, b = _populated(make)
    store.append(a, [msg(state_delta={"app:v": "old", "user:w": "old"})])
    before = _record(store, a)
    real_write = file_module._write_all

    def failing(fd: int, data: bytes) -> None:
        if b'"batch_end"' not in data:  # a shared state file: let it through
            return real_write(fd, data)
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_module, "_write_all", failing)
    with pytest.raises(StoreUnavailableError):
        store.append(a, [msg(state_delta={"app:v": "new"}), msg(state_delta={"user:w": "new"})])
    monkeypatch.setattr(file_module, "_write_all", real_write)
    app_file = json.loads((root / "_scoped" / "app" / "demo.json").read_text())
    assert app_file["state"] == {"v": "new"} and app_file["pending"]["previous"] == {"v": "old"}
    assert _record(store, a) == before
    assert store.get_session(b).state == {"app:v": "old"}
    fresh = store.create_session(app_name="demo", user_id="ada")
    assert fresh.state == {"app:v": "old", "user:w": "old"}
    assert store.append(a, [msg(state_delta={"app:z": 1})])[0].seq == 5
    assert store.get_session(b).state == {"app:v": "old", "app:z": 1}
    assert "pending" not in json.loads((root / "_scoped" / "app" / "demo.json").read_text())


def test_shared_state_of_a_batch_killed_after_its_commit(
    make: StoreFactory, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the ledger commit, before the scope files lose `pending`: committed."""
    store, a, b = _populated(make)
    real_replace = file_module._replace_file

    def crash_after_commit(path: str, text: str, new_mode: int) -> None:
        if os.path.basename(path) == SNAPSHOT or "pending" not in text:
            raise OSError(5, "simulated crash")
        real_replace(path, text, new_mode)

    monkeypatch.setattr(file_module, "_replace_file", crash_after_commit)
    (stored,) = store.append(a, [msg(state_delta={"app:v": 1, "user:w": 2})])
    monkeypatch.setattr(file_module, "_replace_file", real_replace)
    assert stored.seq == 4
    app_path = root / "_scoped" / "app" / "demo.json"
    assert json.loads(app_path.read_text())["pending"]["seq"] == 4
    for reader in (store, make()):
        assert reader.get_session(a).state == {"k": 2, "app:v": 1, "user:w": 2}
        assert reader.get_session(a).version == 4
        assert reader.get_session(b).state == {"app:v": 1}
    # Deleting the session settles the pending record before its ledger goes away.
    store.delete_session(a)
    assert json.loads(app_path.read_text()) == {"app_name": "demo", "state": {"v": 1}}
    assert store.get_session(b).state == {"app:v": 1}
    again = store.create_session(app_name="demo", user_id="ada", session_id=a)
    assert again.state == {"app:v": 1, "user:w": 2}


# -- schema versions and migrations ---------------------------------------------------------


def test_new_folder_gets_the_current_schema(make: StoreFactory, root: Path) -> None:
    store = make()
    assert isinstance(store, FileStore)
    assert store.schema_version() == SCHEMA_VERSION == max(MIGRATIONS)
    assert sorted(p.name for p in root.iterdir()) == [
        "_agentledger.json",
        "_locks",
        "_scoped",
        "_trash",
    ]


def test_newer_schema_is_refused(make: StoreFactory, root: Path) -> None:
    make().create_session(app_name="demo", user_id="ada", session_id="KEPT")
    newer = SCHEMA_VERSION + 1
    text = json.dumps({"format": FORMAT, "schema_version": newer})
    (root / "_agentledger.json").write_text(text)
    with pytest.raises(SchemaVersionError) as info:
        make()
    message = str(info.value)
    assert f"schema version {newer}" in message and f"up to {SCHEMA_VERSION}" in message
    assert str(root) in message
    assert (root / "_agentledger.json").read_text() == text
    assert (root / "KEPT" / LEDGER).is_file()


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "{}",
        '{"format": "other", "schema_version": 1}',
        '{"format": "agentledger-file", "schema_version": "1"}',
    ],
)
def test_foreign_format_file_is_refused(root: Path, text: str) -> None:
    root.mkdir()
    (root / "_agentledger.json").write_text(text)
    with pytest.raises(StoreError, match="not an agentledger file store"):
        FileStore(root)


def test_a_new_migration_upgrades_an_existing_folder(
    make: StoreFactory, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make().create_session(app_name="demo", user_id="ada", session_id="KEPT")
    applied: list[Path] = []

    def add_readme(folder: Path) -> None:
        applied.append(folder)
        (folder / "_README.txt").write_text("v2")

    monkeypatch.setattr(file_module, "MIGRATIONS", {**MIGRATIONS, SCHEMA_VERSION + 1: add_readme})
    monkeypatch.setattr(file_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    reopened = make()
    assert isinstance(reopened, FileStore)
    assert applied == [root] and (root / "_README.txt").read_text() == "v2"
    assert reopened.schema_version() == SCHEMA_VERSION + 1
    assert (
        json.loads((root / "_agentledger.json").read_text())["schema_version"] == SCHEMA_VERSION + 1
    )
    assert reopened.get_session("KEPT").version == 1
    make()
    assert applied == [root]  # not again


def test_a_failed_migration_keeps_the_old_version(
    make: StoreFactory, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make()

    def broken(folder: Path) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(file_module, "MIGRATIONS", {**MIGRATIONS, SCHEMA_VERSION + 1: broken})
    monkeypatch.setattr(file_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreUnavailableError, match="migrate"):
        make()
    assert json.loads((root / "_agentledger.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_processes_opening_a_new_folder_at_once(root: Path) -> None:
    from agentledger.testing._processes import create_worker, run_processes

    url = f"file://{root}"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    run_processes(ctx, create_worker, [(url, (), barrier, "demo", w) for w in range(4)])
    with open_store(url) as store:
        listed = store.list_sessions(app_name="demo").sessions
        assert sorted(s.user_id for s in listed) == [f"user-{w}" for w in range(4)]


# -- unsafe ids and stray entries -----------------------------------------------------------


@pytest.mark.parametrize(
    "odd_id",
    ["..", "../x", "a/../../b", "a/b", "/etc/passwd", "/tmp/x", "_locks", ".git", "a\\..\\b"],
)
def test_ids_that_look_like_paths_stay_inside_the_root(
    make: StoreFactory, root: Path, tmp_path: Path, odd_id: str
) -> None:
    store = make()
    outside = sorted(str(p) for p in tmp_path.rglob("*") if not p.is_relative_to(root))
    store.create_session(app_name="demo", user_id="ada", session_id=odd_id)
    store.append(odd_id, [msg("hi")])
    assert [s.id for s in store.list_sessions().sessions] == [odd_id]
    assert sorted(str(p) for p in tmp_path.rglob("*") if not p.is_relative_to(root)) == outside
    folder = root / _folder_name(odd_id)
    assert folder.parent == root and "~" in folder.name and not folder.name.startswith(("_", "."))
    assert (folder / "session_id").read_bytes() == odd_id.encode()
    assert [e.seq for e in store.read_events(odd_id)] == [1, 2]
    store.delete_session(odd_id)
    assert not folder.exists()


@pytest.mark.parametrize("bad_id", ["\x00", "a\x00b", "line\nbreak", "", "x" * 513])
def test_refused_ids_touch_nothing(
    make: StoreFactory, root: Path, tmp_path: Path, bad_id: str
) -> None:
    store = make()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for call in (
        lambda: store.create_session(app_name="demo", user_id="ada", session_id=bad_id),
        lambda: store.get_session(bad_id),
        lambda: store.read_events(bad_id),
        lambda: store.append(bad_id, [msg()]),
        lambda: store.delete_session(bad_id),
    ):
        with pytest.raises(InvalidSessionIdError):
            call()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_folder_names_are_safe_and_never_shared() -> None:
    ids = [
        "ULID01JD5KXYZ",
        "A",
        "a",
        "Ab",
        "aB",
        "caf\u00e9",
        "cafe\u0301",
        "x" * 512,
        "x" * 511 + "y",
        "user/42",
        "user 42",
        "user-42",
        "user~42",
        "\u65e5\u672c",
        " ",
        "  ",
        "%2F",
    ]
    names = [_folder_name(i) for i in ids]
    assert names[0] == "ULID01JD5KXYZ" and names[1] == "A"  # plain ids keep their name
    folded = {unicodedata.normalize("NFC", n).casefold() for n in names}
    assert len(folded) == len(ids)  # no two share a folder, even folding case
    for name in names:
        assert len(name.encode()) <= 81 and name.isascii() and "/" not in name
        assert not name.startswith(("_", ".")) and name not in (".", "..")


def test_a_stray_or_forged_hashed_folder_is_not_listed(make: StoreFactory, root: Path) -> None:
    store = make()
    store.create_session(app_name="demo", user_id="ada", session_id="user/42")
    folder = root / _folder_name("user/42")
    (root / "x~0123").mkdir()  # no session_id file
    (root / "y~0123").mkdir()
    (root / "y~0123" / "session_id").write_text("user/42")  # not this id's folder
    assert [s.id for s in store.list_sessions().sessions] == ["user/42"]
    (folder / "session_id").write_text("user/43")  # a forged id file hides the folder only
    assert store.list_sessions().sessions == []
    assert store.get_session("user/42").id == "user/42"


def test_listing_ignores_stray_entries(make: StoreFactory, root: Path, tmp_path: Path) -> None:
    store, a, b = _populated(make)
    (root / "notes.txt").write_text("not a session")
    (root / "STRAY").mkdir()  # a plain id, but no ledger
    (root / "STRAY" / "readme").write_text("x")
    (root / "lower").mkdir()  # a plain id of schema version 2, not of 3
    (root / ".hidden").mkdir()
    (root / "with space").mkdir()
    (root / "_mine").mkdir()
    (root / "link").symlink_to(root / a)
    (root / ".session.json.123.tmp").write_text("{")
    (root / a / ".session.json.abc.tmp").write_text("{")  # a temp file left by a crash
    page = store.list_sessions()
    assert sorted(s.id for s in page.sessions) == [a, b] and page.corrupted == []
    with pytest.raises(SessionNotFoundError):
        store.get_session("STRAY")
    assert store.get_session(a).version == 3


def test_delete_removes_the_folder(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    store.delete_session(a)
    assert not (root / a).exists()
    assert list((root / "_trash").iterdir()) == []
    assert (root / b / LEDGER).is_file()


def test_leftovers_of_killed_writers_are_cleaned(make: StoreFactory, root: Path) -> None:
    store, a, _ = _populated(make)
    stale = (root / a / SNAPSHOT).read_bytes()
    store.append(a, [msg()])
    (root / a / SNAPSHOT).write_bytes(stale)  # killed between the ledger and the snapshot
    (root / a / f".{SNAPSHOT}.0123abcd.tmp").write_text('{"HALF": ')  # while writing it
    (root / "_trash" / "gone.0123").mkdir()  # and a delete killed before its rmtree
    (root / "_trash" / "gone.0123" / LEDGER).write_text("x")
    reopened = make()
    assert list((root / "_trash").iterdir()) == []
    reopened.append(a, [msg()])
    assert sorted(os.listdir(root / a)) == [LEDGER, SNAPSHOT]
    assert json.loads((root / a / SNAPSHOT).read_text())["version"] == 5


def test_transactions_lock_the_session_first(make: StoreFactory) -> None:
    store = make()
    assert isinstance(store, FileStore)
    with pytest.raises(StoreError, match="load_session must come first"):
        with store._transaction() as tx:
            tx.load_scoped_state("demo", None)


# -- locks ----------------------------------------------------------------------------------


def test_writers_wait_for_the_session_lock(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    impatient = make(lock_timeout=0.2)
    before = _record(store, a)
    held = FileLock(root / "_locks" / "sessions" / f"{a}.lock")
    with held:
        with pytest.raises(StoreUnavailableError, match="lock"):
            impatient.append(a, [msg()])
        assert _record(impatient, a) == before  # readers take no lock
        impatient.append(b, [msg()])  # other sessions are not blocked
    impatient.append(a, [msg()])
    assert store.get_session(a).version == 4


def test_writers_wait_for_the_shared_state_lock(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    impatient = make(lock_timeout=0.2)
    with FileLock(root / "_locks" / "app" / "demo.lock"):
        with pytest.raises(StoreUnavailableError):
            impatient.append(a, [msg(state_delta={"app:x": 1})])
        impatient.append(a, [msg(state_delta={"x": 1})])  # own state needs no app lock
    assert store.get_session(b).state == {}
    assert store.get_session(a).version == 4


def test_closed_store_refuses_work(make: StoreFactory) -> None:
    store, a, _ = _populated(make)
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.get_session(a)
    with pytest.raises(StoreUnavailableError):
        store.append(a, [msg()])


# -- writers killed mid-append --------------------------------------------------------------

BATCH = 3
KILLS = 60


def _batch(n: int) -> list[NewEvent]:
    """Batch n: three events; the last sets `last` in the session, app and user state."""
    delta = {"last": n, "app:last": n, "user:last": n}
    return [
        NewEvent(
            type="user_message", data={"b": n, "i": i}, state_delta=delta if i == BATCH - 1 else {}
        )
        for i in range(BATCH)
    ]


def _kill_writer(url: str, session_id: str, first: int, acks: Any) -> None:
    """Append batches first, first + 1, … forever, sending each number once it returned."""
    store = open_store(url)
    n = first
    while True:
        store.append(session_id, _batch(n))
        acks.send(n)
        n += 1


def _evidence(root: Path, session_id: str) -> bool:
    """Whether the last kill left work for a reader to recover (a torn or uncommitted tail,
    a snapshot behind its ledger, or a pending shared state record)."""
    size = (root / session_id / LEDGER).stat().st_size
    snapshot = json.loads((root / session_id / SNAPSHOT).read_text())
    scoped = [json.loads(p.read_text()) for p in (root / "_scoped").rglob("*.json")]
    return snapshot["ledger_bytes"] != size or any("pending" in doc for doc in scoped)


def test_sigkill_mid_append_loses_nothing_acknowledged(root: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    ctx = multiprocessing.get_context("fork")
    url = f"file://{root}"
    with open_store(url) as setup:
        session_id = setup.create_session(app_name="crash", user_id="ada").id
    acknowledged: set[int] = set()
    rng = random.Random(4)
    recovered = 0
    next_batch = 0
    for _ in range(KILLS):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_kill_writer, args=(url, session_id, next_batch, send))
        child.start()
        send.close()
        try:
            assert receive.poll(60), "the writer acknowledged nothing"
            acknowledged.add(receive.recv())
            time.sleep(rng.uniform(0, 0.008))
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()
        while receive.poll():
            try:
                acknowledged.add(receive.recv())
            except EOFError:
                break
        receive.close()
        recovered += _evidence(root, session_id)

        with open_store(url) as store:
            events = store.read_events(session_id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            body = events[1:]
            assert len(body) % BATCH == 0, "a partial batch is visible"
            batches = [e.data["b"] for e in body[::BATCH]]
            assert batches == list(range(len(batches)))
            for k, event in enumerate(body):
                assert event.data == {"b": k // BATCH, "i": k % BATCH}
            assert acknowledged <= set(batches), "an acknowledged append was lost"
            last = batches[-1]
            session = store.get_session(session_id)
            assert session.version == len(events)
            assert session.state == {"last": last, "app:last": last, "user:last": last}
            assert store.list_sessions(app_name="crash").sessions == [session]
            next_batch = last + 1
    assert recovered > 0  # some kills landed inside an append, not only between appends
    with open_store(url) as store:
        (after,) = store.append(session_id, [msg()])
        assert after.seq == 1 + BATCH * next_batch + 1


def test_an_emptied_ledger_is_corruption_for_every_read(make: StoreFactory, root: Path) -> None:
    store, a, b = _populated(make)
    (root / a / LEDGER).write_bytes(b"")
    with pytest.raises(CorruptedSessionError):
        store.read_events(a)
    with pytest.raises(CorruptedSessionError):
        store.append(a, [msg()])
    assert store.read_events(b)[0].seq == 1


def test_a_ledger_line_nested_too_deep_corrupts_only_its_session(
    make: StoreFactory, root: Path
) -> None:
    """Written before the nesting limit (or by hand): read back, it is corruption of its
    session, never a RecursionError for the store."""
    store, a, b = _populated(make)
    b_before = _record(store, b)
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    line = _lines(root / a / LEDGER)[-1]
    line.update(seq=4, batch_end=4, id="01M8MJ44FKNFZBN2FP4TYJ5W6Z", data="DEEP")
    with open(root / a / LEDGER, "a") as ledger:
        ledger.write(json.dumps(line).replace('"DEEP"', deep) + "\n")
    for reader in (store, make()):
        with pytest.raises(CorruptedSessionError):
            reader.get_session(a)
        with pytest.raises(CorruptedSessionError):
            reader.read_events(a)
        page = reader.list_sessions()
        assert [s.id for s in page.sessions] == [b] and page.corrupted == [a]
        assert _record(reader, b) == b_before


# -- the hash chain and the snapshot as a cache that is checked ------------------------------


def _four_events(make: StoreFactory) -> tuple[SessionStore, str]:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada", session_id="FOUR").id
    store.append(sid, [msg("count 12345", state_delta={"n": 12345})])
    store.append(sid, [msg("two"), NewEvent(type="phase_changed", data={"to": "planning"})])
    return store, sid


def test_an_edited_version_in_the_snapshot_is_not_trusted(make: StoreFactory, root: Path) -> None:
    """`version` edited, `ledger_bytes` still matching: seq still comes from the ledger."""
    store, sid = _four_events(make)
    path = root / sid / SNAPSHOT
    snapshot = json.loads(path.read_text())
    assert snapshot["ledger_bytes"] == (root / sid / LEDGER).stat().st_size
    snapshot["version"] = 100
    path.write_text(json.dumps(snapshot, indent=2))
    for reader in (store, make()):
        assert reader.get_session(sid).version == 4
    (stored,) = store.append(sid, [msg("five")])
    assert stored.seq == 5
    assert [e.seq for e in store.read_events(sid)] == [1, 2, 3, 4, 5]
    assert json.loads(path.read_text())["version"] == 5  # the writer stored a good snapshot
    assert store.verify_session(sid).ok


@pytest.mark.parametrize(
    ("key", "value"), [("state", {"n": 1, "admin": True}), ("status", "terminated"), ("phase", "x")]
)
def test_an_edited_snapshot_is_rebuilt_not_served(
    make: StoreFactory, root: Path, key: str, value: Any
) -> None:
    store, sid = _four_events(make)
    good = store.get_session(sid)
    path = root / sid / SNAPSHOT
    snapshot = json.loads(path.read_text())
    snapshot[key] = value
    path.write_text(json.dumps(snapshot, indent=2))
    assert store.get_session(sid) == good
    assert {s.id: s for s in store.list_sessions().sessions}[sid] == good
    assert store.append(sid, [msg("more")])[0].seq == 5
    assert store.verify_session(sid).ok


def test_a_snapshot_of_another_ledger_is_not_trusted(make: StoreFactory, root: Path) -> None:
    """A snapshot whose checksum holds but whose recorded commit (seq, hash) is not the
    ledger's at its `ledger_bytes`: the ledger wins."""
    store, sid = _four_events(make)
    old = (root / sid / SNAPSHOT).read_bytes()
    ledger = root / sid / LEDGER
    lines = ledger.read_bytes().split(b"\n")
    store.delete_session(sid)
    store.create_session(app_name="demo", user_id="ada", session_id=sid)
    store.append(sid, [msg("x" * 2000)])
    assert ledger.stat().st_size > json.loads(old)["ledger_bytes"]
    (root / sid / SNAPSHOT).write_bytes(old)  # says version 4, at a byte inside the ledger
    assert store.get_session(sid).version == 2
    assert store.append(sid, [msg()])[0].seq == 3
    assert len(lines) == 5
    assert store.verify_session(sid).ok


def test_an_edited_digit_in_the_ledger_is_detected(make: StoreFactory, root: Path) -> None:
    store, sid = _four_events(make)
    ledger = root / sid / LEDGER
    data = ledger.read_bytes()
    assert data.count(b"12345") == 2  # in the message and in the state delta of seq 2
    ledger.write_bytes(data.replace(b"12345", b"12346", 1))
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "payload hash mismatch" in (report.problem or "")
    with pytest.raises(CorruptedSessionError, match="event 2"):
        store.read_events(sid)


@pytest.mark.parametrize(("keep", "first_missing"), [(1, 2), (2, 3), (3, 3)])
def test_a_lost_tail_is_damage_not_a_torn_write(
    make: StoreFactory, root: Path, keep: int, first_missing: int
) -> None:
    """The last lines removed: the snapshot recorded them as acknowledged, so this is
    reported, and the next append neither truncates nor writes over the gap. (Keeping 3
    lines keeps half of the batch of seqs 3 and 4, which does not count.)"""
    store, sid = _four_events(make)
    ledger = root / sid / LEDGER
    lines = ledger.read_bytes().split(b"\n")[:-1]
    ledger.write_bytes(b"".join(line + b"\n" for line in lines[:keep]))
    damaged = ledger.read_bytes()
    for call in (
        lambda: store.get_session(sid),
        lambda: store.read_events(sid),
        lambda: store.append(sid, [msg("after")]),
    ):
        with pytest.raises(CorruptedSessionError, match="missing"):
            call()
    assert ledger.read_bytes() == damaged  # nothing truncated, nothing appended
    report = store.verify_session(sid)
    assert (report.ok, report.first_bad_seq) == (False, first_missing)
    assert f"{first_missing} to 4 are missing" in (report.problem or "")
    assert store.list_sessions().corrupted == [sid]


def test_a_torn_tail_is_still_only_ignored(make: StoreFactory, root: Path) -> None:
    """Half of a line that was never acknowledged: not damage (the snapshot never saw it)."""
    store, sid = _four_events(make)
    ledger = root / sid / LEDGER
    with ledger.open("ab") as f:
        f.write(b'{"seq":5,"id":"x","ty')
    assert store.get_session(sid).version == 4
    assert store.verify_session(sid).ok
    assert store.append(sid, [msg()])[0].seq == 5
    assert store.verify_session(sid).ok


def test_a_version_1_folder_is_upgraded_with_its_events_chained(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    shutil.copytree(V1_DATA / "file_store", root)
    for sub in ("_locks", "_trash", "_scoped/app"):  # empty folders, which git does not keep
        (root / sub).mkdir(parents=True, exist_ok=True)
    factory = StoreFactory(f"file://{root}")
    try:
        store = factory()
        assert isinstance(store, FileStore) and store.schema_version() == SCHEMA_VERSION == 3
        for line in _lines(root / _folder_name("s-one") / LEDGER):
            assert len(line["hash"]) == len(line["payload_hash"]) == 64
        check_v1_store_upgraded(store)
    finally:
        factory.close_all()


def test_the_version_2_migration_can_run_again(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    shutil.copytree(V1_DATA / "file_store", root)
    for sub in ("_locks", "_trash", "_scoped/app"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    MIGRATIONS[2](root)
    chained = (root / "s-one" / LEDGER).read_bytes()
    MIGRATIONS[2](root)  # as after a migration killed before it recorded its version
    assert (root / "s-one" / LEDGER).read_bytes() == chained
    (root / "_agentledger.json").write_text(json.dumps({"format": FORMAT, "schema_version": 2}))
    factory = StoreFactory(f"file://{root}")
    try:
        check_v1_store_upgraded(factory())
    finally:
        factory.close_all()


# -- schema version 3: session ids --------------------------------------------------------


def _version_2_folder(tmp_path: Path) -> Path:
    """A store folder of schema version 2 as the released library leaves it: the version 1
    data upgraded by migrations 1 and 2, plus sessions whose ids have lowercase letters,
    uppercase ones only (a ULID), and a `pending` shared state record naming a session."""
    root = tmp_path / "v2"
    shutil.copytree(V1_DATA / "file_store", root)
    for version in (1, 2):
        MIGRATIONS[version](root)
    (root / "_agentledger.json").write_text(json.dumps({"format": FORMAT, "schema_version": 2}))
    return root


def test_a_version_2_folder_is_upgraded_with_session_folders_renamed(tmp_path: Path) -> None:
    root = _version_2_folder(tmp_path)
    ulid = "01JD5KXYZABCDEFGHJKMNPQRST"
    other = StoreFactory(f"file://{tmp_path / 'other'}")
    try:  # a plain id's folder is the same in versions 2 and 3: it is kept
        other().create_session(app_name="demo", user_id="ada", session_id=ulid)
    finally:
        other.close_all()
    shutil.copytree(tmp_path / "other" / ulid, root / ulid)
    ledger_before = (root / "s-two" / LEDGER).read_bytes()
    factory = StoreFactory(f"file://{root}")
    try:
        store = factory()
        assert isinstance(store, FileStore) and store.schema_version() == SCHEMA_VERSION
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("_"))
        assert names == sorted([ulid, _folder_name("s-one"), _folder_name("s-two")])
        assert (root / _folder_name("s-two") / LEDGER).read_bytes() == ledger_before
        assert (root / _folder_name("s-two") / "session_id").read_text() == "s-two"
        assert sorted(s.id for s in store.list_sessions().sessions) == sorted(
            [ulid, "s-one", "s-two"]
        )
        assert store.verify_session("s-two").ok and store.verify_session(ulid).ok
        store.delete_session(ulid)
        check_v1_store_upgraded(store)
        store.create_session(app_name="demo", user_id="ada", session_id="S-ONE")
        assert store.get_session("s-one").id == "s-one"  # case: two sessions, two folders
    finally:
        factory.close_all()


def test_the_session_ids_migration_can_run_again(tmp_path: Path) -> None:
    root = _version_2_folder(tmp_path)
    (root / "s-two" / "session_id").write_text("s-two")  # killed before its rename
    MIGRATIONS[3](root)
    after = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    MIGRATIONS[3](root)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == after
    assert not (root / "s-one").exists() and (root / _folder_name("s-one") / LEDGER).is_file()
    factory = StoreFactory(f"file://{root}")
    try:
        check_v1_store_upgraded(factory())
    finally:
        factory.close_all()


# -- a folder of schema version 2, as the version-2 library wrote it --------------------------


def test_a_version_2_folder_opens_and_reads_back_as_it_was(tmp_path: Path) -> None:
    from migration_support import V2_DATA, check_v2_store_upgraded

    root = tmp_path / "v2"
    shutil.copytree(V2_DATA / "file_store", root)
    for sub in ("_locks", "_trash"):  # empty folders, which git does not keep
        (root / sub).mkdir(parents=True, exist_ok=True)
    factory = StoreFactory(f"file://{root}")
    try:
        store = factory()
        assert isinstance(store, FileStore) and store.schema_version() == SCHEMA_VERSION
        check_v2_store_upgraded(store)
    finally:
        factory.close_all()


def test_a_version_2_folder_gets_a_feed_in_write_order(tmp_path: Path) -> None:
    from migration_support import V2_DATA, check_v2_feed

    root = tmp_path / "v2"
    shutil.copytree(V2_DATA / "file_store", root)
    for sub in ("_locks", "_trash"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    factory = StoreFactory(f"file://{root}")
    try:
        store = factory()
        written = [
            (line["timestamp"], line["id"])
            for sid in ("s-one", "s-two")
            for line in _lines(root / _folder_name(sid) / LEDGER)
        ]
        check_v2_feed(store, written)
    finally:
        factory.close_all()


def test_a_torn_feed_entry_is_dropped_by_the_next_writer(tmp_path: Path) -> None:
    factory = StoreFactory(f"file://{tmp_path}/s")
    try:
        store = factory()
        session = store.create_session(app_name="demo", user_id="ada")
        feed_file = tmp_path / "s" / "_feed.jsonl"
        with feed_file.open("ab") as feed:  # a writer killed while writing its entry
            feed.write(b'{"position":2,"session_id":"x","se')
        assert [f.event.seq for f in store.read_feed()] == [1]
        store.append(session.id, [msg()])
        assert [(f.position, f.event.seq) for f in store.read_feed()] == [(1, 1), (2, 2)]
        # An entry whose batch never committed (killed between the entry and the ledger).
        with feed_file.open("ab") as feed:
            feed.write(b'{"position":3,"session_id":"%s","seq":3,"id":"never"}\n' % session.id.encode())
        assert [f.position for f in store.read_feed()] == [1, 2]
        store.append(session.id, [msg()])
        assert [(f.position, f.event.seq) for f in store.read_feed()] == [(1, 1), (2, 2), (4, 3)]
    finally:
        factory.close_all()


def test_ledger_lines_carry_the_event_format_and_removals(make: StoreFactory, root: Path) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada", state={"k": 1, "j": 2}).id
    store.append(sid, [msg(state_delta={"k": None}, state_remove=["j"]), msg("plain")])
    ledger = root / sid / LEDGER
    lines = _lines(ledger)
    assert [line["format"] for line in lines] == [2, 2, 2]
    assert lines[1]["state_remove"] == ["j"] and "state_remove" not in lines[2]
    assert store.get_session(sid).state == {"k": None}
    # A line without "format" is of format 1: taking it away changes the event's meaning,
    # which the chain catches.
    text = ledger.read_bytes()
    ledger.write_bytes(text.replace(b'"format":2,', b"", 1))
    report = store.verify_session(sid)
    assert not report.ok and report.first_bad_seq == 1
# -- erase and truncate: a rewrite killed midway leaves a readable session -------------------


def _fail_on_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next ledger replacement fail, as a process killed after writing the new
    base and before replacing the ledger would leave the folder."""
    real = file_module._replace_file

    def replace(path: str, text: str, mode: int) -> None:
        if path.endswith(file_module.LEDGER):
            raise OSError("killed")
        real(path, text, mode)

    monkeypatch.setattr(file_module, "_replace_file", replace)


@pytest.mark.parametrize("operation", ["erase", "truncate"])
def test_a_rewrite_killed_before_the_ledger_is_replaced(
    make: StoreFactory, root: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada", state={"k": 0}).id
    store.append(sid, [msg(str(i), state_delta={"k": i}) for i in range(1, 6)])
    before = store.get_session(sid)
    with monkeypatch.context() as patch:
        _fail_on_ledger(patch)
        with pytest.raises(StoreUnavailableError):
            if operation == "erase":
                store.erase_events(sid, [2], "privacy")
            else:
                store.truncate_before(sid, 4)
    assert (root / sid / file_module.BASE).exists()  # the base was written first
    (root / sid / file_module.SNAPSHOT).unlink()  # rebuilt from the ledger and its base
    reopened = make()
    assert reopened.get_session(sid) == before
    assert reopened.verify_session(sid).ok
    expected = [1, 2, 3, 4, 5, 6] if operation == "erase" else [4, 5, 6]
    assert [e.seq for e in reopened.read_events(sid)] == expected
    assert not any(e.erased for e in reopened.read_events(sid))
    # The next rewrite finishes the job.
    reopened.truncate_before(sid, 5)
    assert [e.seq for e in reopened.read_events(sid)] == [5, 6]
    assert reopened.verify_session(sid).ok
    (root / sid / file_module.SNAPSHOT).unlink()
    assert make().get_session(sid) == before


def test_a_damaged_base_is_a_corrupted_session(make: StoreFactory, root: Path) -> None:
    store = make()
    sid = store.create_session(app_name="demo", user_id="ada").id
    other = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("a"), msg("b")])
    store.truncate_before(sid, 2)
    (root / sid / file_module.BASE).write_text("{not json")
    (root / sid / file_module.SNAPSHOT).unlink()
    with pytest.raises(CorruptedSessionError):
        store.get_session(sid)
    assert not store.verify_session(sid).ok
    assert store.get_session(other).version == 1
    assert store.list_sessions().corrupted == [sid]


def test_the_key_index_follows_the_ledger_file(make: StoreFactory, root: Path) -> None:
    """The in-memory key index is checked against the ledger on every use: appends by
    another store object are picked up, and a ledger replaced under the same session id
    (deleted and created again) is indexed again, never answered from the old index."""
    from agentledger import NewEvent

    reader, writer = make(), make()
    writer.create_session(app_name="demo", user_id="ada", session_id="s")
    writer.append("s", [NewEvent(type="user_message", data={"v": 1}, key="ckpt:1")])
    found = reader.get_event("s", "ckpt:1")
    assert found is not None and found.data == {"v": 1}
    writer.append("s", [NewEvent(type="user_message", data={"v": 2}, key="ckpt:2")])
    assert [e.key for e in reader.read_events("s", key_prefix="ckpt:", last=1)] == ["ckpt:2"]
    writer.delete_session("s")
    writer.create_session(app_name="demo", user_id="ada", session_id="s")
    writer.append("s", [NewEvent(type="user_message", data={"v": 3}), NewEvent(
        type="user_message", data={"v": 4}, key="ckpt:1")])
    again = reader.get_event("s", "ckpt:1")
    assert again is not None and again.data == {"v": 4} and again.seq == 3
    assert reader.get_event("s", "ckpt:2") is None
    assert (root / _folder_name("s") / "events.jsonl").read_text().count('"key":"ckpt:1"') == 1


def test_read_events_decodes_the_lines_parsed_once(tmp_path: Path) -> None:
    """A read decodes the events from the ledger lines it parsed (their payload text is
    not parsed again), equal to decoding that text, and the events share nothing with a
    later read."""
    from agentledger import open_store

    store: Any = open_store(f"file://{tmp_path / 'files'}")
    session = store.create_session(app_name="app", user_id="u")
    store.append(
        session.id,
        [NewEvent(type="user_message", author="user", data={"text": f"é {i}", "n": [i, 0.5]},
                  key=f"k{i}" if i % 2 else None) for i in range(12)]
        + [NewEvent(type="state_updated", author="agent", state_delta={"a": {"b": 1}},
                    state_ops=[{"op": "add", "path": "/a/c", "value": 2}], state_remove=["z"])],
    )
    rows = store._fetch_event_rows(session.id, after=0, limit=None, last=None, types=None)
    assert isinstance(rows, file_module._ParsedRows)
    events = store.read_events(session.id)
    assert events == [store._decode_event(row) for row in rows]
    assert events == store._decode_events(list(rows))  # the general path: the same events
    events[1].data["text"] = "changed"
    assert store.read_events(session.id)[1].data["text"] == "é 0"
    store.close()
