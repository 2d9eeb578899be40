"""Power loss, simulated: a writer process appends and reports each acknowledged append,
it is killed, then the file system loses everything that was not fsynced
(`powercut_fs.py`: a FUSE file system that keeps only what `fsync` made durable, file
data and folder entries alike). The store is reopened from what survived.

- SQLite `durability=full` and the file store: every acknowledged append survives, and
  every acknowledged session.
- SQLite `durability=normal`: the store is never damaged, every session's ledger is a
  gapless prefix of what was acknowledged, and what is lost is a tail of the commits since
  the last WAL checkpoint: at most 1,000 commits (a checkpoint runs when the WAL reaches
  1,000 pages, and every commit writes at least one) — which can include a session
  acknowledged as created.

`AGENTLEDGER_POWER_CUTS` sets the number of cuts per store (30 by default; raise it for a
soak). Needs /dev/fuse, libfuse 3 (Debian's `fuse3`), `mfusepy` and the right to mount;
skipped otherwise, except under `CI=true`, where it fails.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from agentledger import NewEvent, open_store

CUTS = int(os.environ.get("AGENTLEDGER_POWER_CUTS", "30"))
MAX_BATCH = 4  # events per append (up to 3 messages and a state update)
NORMAL_LOSS_BOUND = 1000 * MAX_BATCH  # events: 1,000 commits (see the module docs)


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if importlib.util.find_spec("mfusepy") is None:
        return "the mfusepy package is not installed"
    if shutil.which("fusermount3") is None and os.geteuid() != 0:
        return "fusermount3 (Debian's fuse3) is not installed"
    try:
        import mfusepy  # noqa: F401  (loads libfuse)
    except OSError as exc:  # "Unable to find libfuse"
        return f"libfuse cannot be loaded: {exc}"
    return None


class PowerCut:
    """The FUSE server process (`powercut_fs.py`) and its mount point."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("powercut_fs.py")), str(mountpoint)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"the power-cut file system said {line!r}, not {word!r}")

    def _say(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def cut(self) -> None:
        """Lose everything not fsynced (kill the writers first)."""
        self._say("cut")
        self._expect("ready")

    def close(self) -> None:
        try:
            self._say("quit")
            self._expect("bye")
            self.process.wait(30)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self.process.kill()
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=False)


@pytest.fixture()
def power_cut(tmp_path: Path) -> Iterator[PowerCut]:
    reason = _fuse_missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    fs = PowerCut(mountpoint)
    try:
        yield fs
    finally:
        fs.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_the_file_system_keeps_only_what_was_fsynced(power_cut: PowerCut) -> None:
    root = power_cut.mountpoint
    (root / "kept").mkdir()
    (root / "kept" / "f").write_bytes(b"synced")
    _fsync(root / "kept" / "f")
    (root / "kept" / "g").write_bytes(b"g")
    _fsync(root / "kept" / "g")
    _fsync(root / "kept")
    _fsync(root)
    (root / "kept" / "f").write_bytes(b"synced, then more")  # data not fsynced
    (root / "kept" / "new").write_bytes(b"x")  # a name not fsynced...
    _fsync(root / "kept" / "new")  # ...whatever its data
    os.rename(root / "kept" / "g", root / "kept" / "h")  # a rename not fsynced
    os.unlink(root / "kept" / "f")  # an unlink not fsynced
    (root / "gone").mkdir()  # a folder not fsynced into its parent
    (root / "gone" / "x").write_bytes(b"x")
    _fsync(root / "gone" / "x")
    _fsync(root / "gone")
    power_cut.cut()
    assert sorted(os.listdir(root)) == ["kept"]
    assert sorted(os.listdir(root / "kept")) == ["f", "g"]
    assert (root / "kept" / "f").read_bytes() == b"synced"
    assert (root / "kept" / "g").read_bytes() == b"g"


# -- the writer (a forked child) ------------------------------------------------------------


def _writer(url: str, seed: int, acks: Connection) -> None:
    """Create a session, then append batches to it and to older ones, forever; report
    each acknowledged call as ("created", id) or ("appended", id, last seq)."""
    rng = random.Random(seed)
    store = open_store(url)
    sessions: list[str] = list(acks.recv())  # earlier sessions, to append to as well
    created = store.create_session(app_name="power", user_id="cut")
    acks.send(("created", created.id))
    sessions.append(created.id)
    while True:
        session_id = created.id if rng.random() < 0.7 else rng.choice(sessions)
        batch = [
            NewEvent(type="user_message", author="user", data={"pad": "x" * rng.randint(0, 300)})
            for _ in range(rng.randint(1, MAX_BATCH - 1))
        ]
        if rng.random() < 0.3:  # shared and session state too (the file store's pending files)
            n = rng.randrange(1000)
            batch.append(NewEvent(type="state_updated", state_delta={"user:n": n, "own": n}))
        stored = store.append(session_id, batch)
        acks.send(("appended", session_id, stored[-1].seq))


@dataclass
class Ledger:
    """What the test knows of the store: acknowledged versions, and versions seen."""

    acked: dict[str, int] = field(default_factory=dict)  # session -> last acknowledged seq
    seen: dict[str, int] = field(default_factory=dict)  # session -> version after the cut
    lost_events: list[int] = field(default_factory=list)  # per cut (durability=normal)
    lost_sessions: int = 0


def _round(url: str, ledger: Ledger, fs: PowerCut, rng: random.Random) -> list[Any]:
    """One writer, killed after a random number of acknowledgements; then the cut."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    writer = ctx.Process(target=_writer, args=(url, rng.randrange(1 << 30), child), daemon=True)
    writer.start()
    child.close()
    parent.send(sorted(ledger.seen))
    received: list[Any] = []
    # mostly quick cuts; one in ten runs long enough for WAL checkpoints to happen
    wanted = rng.randint(1, 40) if rng.random() < 0.9 else rng.randint(300, 600)
    try:
        while len(received) < wanted:
            received.append(parent.recv())
    except EOFError:  # the writer died: its traceback is on stderr
        pass
    writer.kill()
    writer.join()
    while parent.poll():  # acknowledged before the kill, still in the pipe
        try:
            received.append(parent.recv())
        except EOFError:
            break
    parent.close()
    assert received, "the writer acknowledged nothing"
    fs.cut()
    return received


def _check(url: str, ledger: Ledger, received: list[Any], durable: bool) -> None:
    """Reopen the store from what survived and check it against the acknowledgements."""
    for ack in received:
        if ack[0] == "created":
            ledger.acked.setdefault(ack[1], 1)
        else:
            ledger.acked[ack[1]] = max(ledger.acked.get(ack[1], 1), ack[2])
    with open_store(url) as store:  # opens: the store itself is never damaged
        found = {s.id: s.version for s in store.list_sessions(limit=1000).sessions}
        lost = 0
        for session_id, acked in ledger.acked.items():
            version = found.get(session_id)
            if version is None:
                assert not durable, f"acknowledged session {session_id} lost"
                assert session_id not in ledger.seen, "a session seen after a cut was lost"
                lost += acked
                ledger.lost_sessions += 1
                continue
            events = store.read_events(session_id)
            assert [e.seq for e in events] == list(range(1, version + 1))  # a gapless prefix
            own = [e.state_delta["own"] for e in events if "own" in e.state_delta]
            assert store.get_session(session_id).state.get("own") == (own[-1] if own else None)
            assert version >= ledger.seen.get(session_id, 0), "a surviving event was lost later"
            if durable:
                assert version >= acked, f"session {session_id}: acked {acked}, found {version}"
            lost += max(acked - version, 0)
            ledger.seen[session_id] = version
            ledger.acked[session_id] = version  # a lost tail is forgotten, as by the store
        for session_id in list(ledger.acked):
            if session_id not in found:
                del ledger.acked[session_id]  # never durable: forgotten, like the store did
    ledger.lost_events.append(lost)
    if not durable:
        assert lost <= NORMAL_LOSS_BOUND


@pytest.mark.parametrize(
    ("kind", "durable"),
    [("sqlite-full", True), ("file", True), ("sqlite-normal", False)],
)
def test_power_cuts(power_cut: PowerCut, kind: str, durable: bool) -> None:
    url = {
        "sqlite-full": f"sqlite:///{power_cut.mountpoint}/x.db",
        "sqlite-normal": f"sqlite:///{power_cut.mountpoint}/x.db?durability=normal",
        "file": f"file://{power_cut.mountpoint}/sessions",
    }[kind]
    rng = random.Random(f"{kind}-{CUTS}")
    ledger = Ledger()
    for _ in range(CUTS):
        received = _round(url, ledger, power_cut, rng)
        _check(url, ledger, received, durable)
    if durable:
        assert sum(ledger.lost_events) == 0
    print(f"{kind}: {CUTS} cuts, acknowledged events lost per cut: {ledger.lost_events}, "
          f"acknowledged sessions lost: {ledger.lost_sessions}")
