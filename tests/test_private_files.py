"""Stores on disk are private by default: files 0600 and folders 0700 whatever the umask,
`file_mode` widens them, and a file rewritten keeps the mode it has."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger import NewEvent, SessionStore, open_store
from agentledger.errors import ConfigurationError

URLS = {
    "sqlite": "sqlite:///{tmp}/deep/x.db",
    "sqlite-normal": "sqlite:///{tmp}/deep/x.db?durability=normal",
    "file": "file://{tmp}/deep/sessions",
}
"""Stores in `deep`, a folder the user made (a store never creates the folders above it)."""


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(params=list(URLS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    (tmp_path / "deep").mkdir()
    return URLS[request.param].format(tmp=tmp_path)


def _use(store: SessionStore) -> None:
    """Create, append with shared state, delete: every kind of file a store makes."""
    kept = store.create_session(app_name="app", user_id="ada", state={"user:x": 1, "app:y": 2})
    store.append(kept.id, [NewEvent(type="state_updated", state_delta={"user:x": 3, "k": 1})])
    gone = store.create_session(app_name="app", user_id="bo")
    store.delete_session(gone.id)


def _modes(top: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Modes of the files and the folders below `top` (which the test made)."""
    files: dict[str, int] = {}
    folders: dict[str, int] = {}
    for folder, dirs, names in os.walk(top):
        for name in dirs:
            folders[os.path.join(folder, name)] = stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
        for name in names:
            files[os.path.join(folder, name)] = stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
    return files, folders


def test_a_new_store_is_private_whatever_the_umask(url: str, tmp_path: Path) -> None:
    with open_store(url) as store:
        _use(store)
        files, folders = _modes(tmp_path / "deep")
        if url.startswith("sqlite"):  # the -wal and -shm files exist while it is open
            assert {Path(f).name for f in files} >= {"x.db", "x.db-wal", "x.db-shm"}
    assert len(files) >= 3
    assert {f: m for f, m in files.items() if m != 0o600} == {}
    assert {f: m for f, m in folders.items() if m != 0o700} == {}
    assert bool(folders) == url.startswith("file")  # the file store's folders, checked


def test_file_mode_widens_the_permissions(url: str, tmp_path: Path) -> None:
    url += ("&" if "?" in url else "?") + "file_mode=0644"
    with open_store(url) as store:
        _use(store)
        files, folders = _modes(tmp_path / "deep")
    assert set(files.values()) == {0o644}
    assert set(folders.values()) == ({0o755} if url.startswith("file") else set())


def test_file_mode_as_an_option(url: str, tmp_path: Path) -> None:
    with open_store(url, file_mode=0o640) as store:
        _use(store)
        files, folders = _modes(tmp_path / "deep")
    assert set(files.values()) == {0o640}
    assert set(folders.values()) == ({0o750} if url.startswith("file") else set())


@pytest.mark.parametrize("bad", ["0400", "abc", "0o1777", "-1", "0o7777", "1000", "0o"])
def test_a_bad_file_mode_is_refused(url: str, bad: str, tmp_path: Path) -> None:
    url += ("&" if "?" in url else "?") + f"file_mode={bad}"
    with pytest.raises(ConfigurationError, match="file_mode"):
        open_store(url)
    assert list((tmp_path / "deep").iterdir()) == []  # nothing created


def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with open_store(f"sqlite:///{path}") as store:
        store.create_session(app_name="a", user_id="u")
    path.chmod(0o640)
    with open_store(f"sqlite:///{path}") as store:
        store.create_session(app_name="a", user_id="u")
        assert stat.S_IMODE(os.stat(f"{path}-wal").st_mode) == 0o640
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_a_file_store_file_keeps_its_mode_when_rewritten(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "sessions"
    with open_store(f"file://{root}") as store:
        session = store.create_session(app_name="app", user_id="ada", state={"user:x": 1})
        rewritten = [
            root / session.id / "session.json",
            root / session.id / "events.jsonl",
            root / "_scoped" / "user" / "app" / "ada.json",
            root / "_agentledger.json",
        ]
        for path in rewritten:
            path.chmod(mode)
        store.append(session.id, [NewEvent(type="state_updated", state_delta={"user:x": 2})])
        assert store.get_session(session.id).state["user:x"] == 2
    with open_store(f"file://{root}") as store:  # reopening rewrites nothing either
        store.append(session.id, [NewEvent(type="state_updated", state_delta={"user:x": 3})])
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in rewritten} == {
        p.name: mode for p in rewritten
    }
