"""`agentledger export`, `import` and `copy`: exact round trips on every pair of stores, and
the commands as a user runs them."""

from __future__ import annotations

import io
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest
from cli_support import console_script
from conftest import postgres_schema_url

from agentledger import NewEvent, open_store
from agentledger.stores.base import SessionStore
from agentledger.transfer import copy_sessions, export_sessions, import_sessions

KINDS = ("memory", "sqlite", "file", "postgresql")


def _pg(stack: ExitStack) -> str:
    return stack.enter_context(postgres_schema_url())


def _populate(store: SessionStore) -> list[str]:
    one = store.create_session(
        app_name="demo", user_id="ada", agent_name="helper", state={"n": 1, "user:tier": "gold"}
    )
    store.append(
        one.id,
        [
            NewEvent(type="user_message", author="user", data={"text": "héllo ☃"}, invocation_id="i1"),
            NewEvent(
                type="tool_call", author="agent", data={"name": "add", "args": {"a": 1e23, "b": -0.0}},
                invocation_id="i1",
            ),
            NewEvent(type="tool_result", author="tool", data={"value": [1, None, "x"]}, invocation_id="i1",
                     state_delta={"app:motd": "hi", "deep": {"k": [1, 2]}}),
        ],
    )
    store.append(one.id, [NewEvent(type="state_updated", state_ops=[{"op": "increment", "path": "/n", "value": 2}])])
    two = store.create_session(app_name="demo", user_id="bob", session_id="chosen-id")
    store.append(two.id, [NewEvent(type="user_message", author="user", data={"text": "hi"})])
    return [one.id, two.id]


def _export(store: SessionStore) -> list[str]:
    out = io.StringIO()
    export_sessions(store, out, app_name="demo")
    return out.getvalue().splitlines()[1:]  # without the header (its time and source differ)


@pytest.mark.parametrize("source", KINDS)
@pytest.mark.parametrize("dest", KINDS)
def test_a_round_trip_between_any_two_stores_is_exact(
    source: str, dest: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        def url(kind: str, side: str) -> str:
            if kind == "postgresql":
                return _pg(stack)
            return {
                "memory": "memory://",
                "sqlite": f"sqlite:///{tmp_path}/{side}.db",
                "file": f"file://{tmp_path}/{side}-files",
            }[kind]

        a = stack.enter_context(open_store(url(source, "a")))
        b = stack.enter_context(open_store(url(dest, "b")))
        ids = _populate(a)
        exported = _export(a)
        out = io.StringIO()
        export_sessions(a, out, ids)
        report = import_sessions(b, io.StringIO(out.getvalue()))
        assert (report.sessions, report.events) == (2, 7)
        assert _export(b) == exported  # line for line: sessions, events, digests, shared state
        for session_id in ids:
            assert b.read_events(session_id) == a.read_events(session_id)
            assert b.get_session(session_id) == a.get_session(session_id)
            assert b.verify_session(session_id) == a.verify_session(session_id)


def _run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_the_commands_as_a_user_runs_them(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        ids = _populate(store)
    exported = _run("--store", "sqlite:///a.db", "export", "--all", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 sessions (7 events)" in exported.stderr
    header = json.loads(exported.stdout.splitlines()[0])
    assert header["agentledger_export"] == 1 and header["source"] == "sqlite:///a.db"
    (tmp_path / "all.jsonl").write_text(exported.stdout)

    imported = _run("--store", "file://files", "import", "all.jsonl", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 sessions (7 events)" in imported.stderr
    again = _run("--store", "file://files", "import", "-", "--json", cwd=tmp_path, stdin=exported.stdout)
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] == 2

    copied = _run("copy", "--from", "file://files", "--to", "sqlite:///c.db", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert "2 sessions (7 events)" in copied.stderr
    listed = _run("--store", "sqlite:///c.db", "sessions", "list", "--json", cwd=tmp_path)
    assert sorted(s["id"] for s in json.loads(listed.stdout)["sessions"]) == sorted(ids)
    verified = _run("--store", "sqlite:///c.db", "verify", "--all", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout

    one = _run("--store", "sqlite:///a.db", "export", "chosen-id", "-o", "one.jsonl", cwd=tmp_path)
    assert one.returncode == 0 and one.stdout == ""
    assert one.stderr.strip() == "exported 1 session (2 events); 1 shared state"  # the app's
    assert sum(1 for line in (tmp_path / "one.jsonl").read_text().splitlines() if '"event"' in line) == 2


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        _populate(store)
    # A read never creates a store.
    missing = _run("--store", "sqlite:///missing.db", "export", "--all", cwd=tmp_path)
    assert not (tmp_path / "missing.db").exists()
    assert missing.returncode == 0 and len(missing.stdout.splitlines()) == 1
    nothing = _run("--store", "sqlite:///a.db", "export", cwd=tmp_path)
    assert nothing.returncode == 2 and "give session ids" in nothing.stderr
    # A damaged file is refused before any store is created.
    text = _run("--store", "sqlite:///a.db", "export", "--all", cwd=tmp_path).stdout
    (tmp_path / "changed.jsonl").write_text(text.replace("héllo", "hello"))
    bad = _run("--store", "sqlite:///new.db", "import", "changed.jsonl", cwd=tmp_path)
    assert bad.returncode == 1 and "digest" in bad.stderr
    assert not (tmp_path / "new.db").exists()
    (tmp_path / "not.jsonl").write_text("hello\n")
    assert _run("--store", "sqlite:///new.db", "import", "not.jsonl", cwd=tmp_path).returncode == 1
    assert not (tmp_path / "new.db").exists()
    # A session with another history in the destination stops the import; nothing written.
    with open_store(f"sqlite:///{tmp_path}/d.db") as store:
        store.create_session(app_name="demo", user_id="bob", session_id="chosen-id")
    (tmp_path / "all.jsonl").write_text(text)
    refused = _run("--store", "sqlite:///d.db", "import", "all.jsonl", cwd=tmp_path)
    assert refused.returncode == 1 and "chosen-id" in refused.stderr
    with open_store(f"sqlite:///{tmp_path}/d.db") as store:
        assert [s.id for s in store.list_sessions().sessions] == ["chosen-id"]
    skipped = _run("--store", "sqlite:///d.db", "import", "all.jsonl", "--skip-existing", cwd=tmp_path)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stderr
    same = _run("copy", "--from", "sqlite:///a.db", "--to", "sqlite:///a.db", cwd=tmp_path)
    assert same.returncode == 2


def test_export_to_a_file_is_all_or_nothing(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        _populate(store)
    nowhere = _run("--store", "sqlite:///a.db", "export", "--all", "-o", "no/such/dir.jsonl", cwd=tmp_path)
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("error: "), nowhere.stderr
    assert len(nowhere.stderr.strip().splitlines()) == 1 and "Traceback" not in nowhere.stderr
    (tmp_path / "kept.jsonl").write_text("before\n")
    (tmp_path / "kept.jsonl").chmod(0o600)
    missing = _run("--store", "sqlite:///a.db", "export", "chosen-id", "nope", "-o", "kept.jsonl", cwd=tmp_path)
    assert missing.returncode == 1 and "no session with id 'nope'" in missing.stderr
    assert (tmp_path / "kept.jsonl").read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "kept" in p.name) == ["kept.jsonl"]
    made = _run("--store", "sqlite:///a.db", "export", "chosen-id", "-o", "kept.jsonl", cwd=tmp_path)
    assert made.returncode == 0 and '"chosen-id"' in (tmp_path / "kept.jsonl").read_text()
    assert (tmp_path / "kept.jsonl").stat().st_mode & 0o777 == 0o600


def _populate_erased(store: SessionStore) -> list[str]:
    """A session with erased events and one truncated (and erased) that went on after."""
    one = store.create_session(app_name="demo", user_id="ada", state={"n": 1})
    store.append(one.id, [
        NewEvent(type="user_message", author="user", data={"text": "my card is secret-xyzzy"}, state_delta={"n": 2}),
        NewEvent(type="user_message", author="user", data={"text": "ok"}, key="k-1"),
    ])
    store.erase_events(one.id, [2], "the user asked")
    store.append(one.id, [NewEvent(type="user_message", author="user", data={"text": "after"})])
    two = store.create_session(app_name="demo", user_id="bob", session_id="cut-id")
    store.append(two.id, [NewEvent(type="state_updated", state_delta={"i": i}) for i in range(5)])
    store.truncate_before(two.id, 4)
    store.erase_events(two.id, [5], "the user asked")
    return [one.id, two.id]


@pytest.mark.parametrize("source", KINDS)
@pytest.mark.parametrize("dest", KINDS)
def test_erased_and_truncated_sessions_move_exactly_between_any_two_stores(
    source: str, dest: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        def url(kind: str, side: str) -> str:
            if kind == "postgresql":
                return _pg(stack)
            return {
                "memory": "memory://",
                "sqlite": f"sqlite:///{tmp_path}/{side}.db",
                "file": f"file://{tmp_path}/{side}-files",
            }[kind]

        a = stack.enter_context(open_store(url(source, "a")))
        b = stack.enter_context(open_store(url(dest, "b")))
        c = stack.enter_context(open_store(url(dest, "c")))
        ids = _populate_erased(a)
        exported = _export(a)
        # a word no hash (hex) or id (Crockford base32, upper case) can contain
        assert "secret-xyzzy" not in "".join(exported)
        report = import_sessions(b, io.StringIO("\n".join([_header(), *exported])))
        assert report.sessions == 2
        copied = copy_sessions(a, c, ids)
        assert copied.sessions == 2
        for there in (b, c):
            assert _export(there) == exported
            for session_id in ids:
                assert there.read_events(session_id) == a.read_events(session_id)
                assert there.get_session(session_id) == a.get_session(session_id)
                assert there.verify_session(session_id) == a.verify_session(session_id)
        assert a.verify_session("cut-id").first_seq == 4 and a.verify_session(ids[0]).erased == 1
        # The copy resumes: grown at the source, continued in the destination.
        a.append("cut-id", [NewEvent(type="user_message", author="user", data={"text": "more"})])
        again = copy_sessions(a, c, ids)
        assert (again.continued, again.unchanged, again.events) == (1, 1, 1)
        assert c.verify_session("cut-id") == a.verify_session("cut-id")


def _header() -> str:
    return json.dumps({"agentledger_export": 1})
