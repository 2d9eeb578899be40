"""SQLite on a full disk: the append that does not fit fails with `StoreUnavailableError`
and writes nothing; once space is freed, the same open store works again and keeps
working (its WAL does not grow back into the freed space and fill the disk again).

The disk is a 4 MiB tmpfs mounted for the test (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger import NewEvent, open_store
from agentledger.errors import StoreUnavailableError


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own, unmounted afterwards."""
    mount = shutil.which("mount")
    reason = None
    if os.geteuid() != 0 or mount is None:
        reason = "mounting a small tmpfs needs root and mount(8)"
    target = tmp_path / "disk"
    target.mkdir()
    if reason is None:
        done = subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(target)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs: {done.stderr.strip()}"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _event(i: int) -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": f"message {i}"})


def test_a_full_disk_fails_typed_and_the_store_recovers_when_space_is_freed(
    small_disk: Path,
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (1024 * 1024))  # someone else's file takes a quarter
    with open_store(f"sqlite:///{small_disk}/x.db") as store:
        session = store.create_session(app_name="app", user_id="ada")
        stored = 1
        with pytest.raises(StoreUnavailableError, match="full") as info:
            for i in range(100_000):
                store.append(session.id, [_event(i)])
                stored += 1
        assert "nothing was written" in str(info.value)
        assert store.get_session(session.id).version == stored
        assert len(store.read_events(session.id)) == stored

        filler.unlink()  # space is freed: no restart, the same store object goes on
        for i in range(400):  # several times what filled the disk the first time
            store.append(session.id, [_event(i)])
        assert store.get_session(session.id).version == stored + 400
        events = store.read_events(session.id)
        assert [e.seq for e in events] == list(range(1, stored + 401))
    with open_store(f"sqlite:///{small_disk}/x.db") as store:  # and it reopens
        assert store.get_session(session.id).version == stored + 400
