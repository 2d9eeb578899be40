"""The file store: `FileStore` vs `RawFiles`, hand-written file I/O doing the same file work.

The raw side keeps the file store's layout and its durability: a folder per session with
`events.jsonl` (one JSON line per event) and `session.json` (an indented snapshot: version,
state, timestamps). An append takes the session's `filelock.FileLock`, reads the snapshot,
appends the batch's lines with one `write` and fsyncs the ledger (the commit point), then
replaces the snapshot atomically (temp file, fsync, `os.replace`); the lock is polled every
millisecond while another process holds it, as ours polls its locks. A create makes the
folder (`mkdir` fails if it exists, so no lock), fsyncs the root, writes and fsyncs the
ledger's first line, fsyncs the folder and writes the snapshot the same way.

Why this baseline rather than a plain append+fsync log: the plain log cannot answer "what
is the session's version and state" without reading every line, and the file store's
design (ledger + snapshot, both fsynced) is the work a human-readable, crash-safe store
must do; matching it makes the ratio the library's overhead (validation, the projection,
pydantic, the torn-tail and pending-state bookkeeping) and not a design choice. The plain
log is measured too, as a second append row ("raw: ledger line only": lock, append the
line, fsync; the line number is the seq, so nothing is read), to show what the snapshot
costs.

Both sides always fsync (the file store has no relaxed durability), so there is one
durability setting. The raw side does not detect or repair a torn last line and keeps no
shared (`app:`/`user:`) state files; the workloads write no shared state, so ours writes
none either.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _bench import Backend, Pair, RawEvent, RawLog, dumps, filesystem, now_text
from filelock import FileLock

from agentledger.stores.file import FileStore


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes, flags: int) -> None:
    fd = os.open(path, os.O_WRONLY | flags, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    _write_durably(temp, text.encode(), os.O_CREAT | os.O_EXCL)
    os.replace(temp, path)


def _line(seq: int | None, kind: str, author: str, now: str, data: Any, delta: Any) -> str:
    event = {"id": secrets.token_hex(13), "type": kind, "author": author, "timestamp": now,
             "invocation_id": None, "data": data, "state_delta": delta}
    return dumps(event if seq is None else {"seq": seq, **event}) + "\n"


class RawFiles:
    """The baseline: the file store one would hand-write (see the module docs).

    Args:
        root: The folder holding the sessions' folders; created if missing.
        snapshot: Keep `session.json` up to date on every append (the same work as ours);
            `False` makes appends a plain lock + append + fsync of the ledger.
    """

    def __init__(self, root: Path | str, snapshot: bool = True) -> None:
        self.root = Path(root)
        self.snapshot = snapshot
        (self.root / "_locks").mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, FileLock] = {}

    def _lock(self, sid: str) -> FileLock:
        lock = self._locks.get(sid)
        if lock is None:
            # Polled every millisecond while another process holds it, as ours does.
            lock = self._locks[sid] = FileLock(self.root / "_locks" / f"{sid}.lock",
                                               poll_interval=0.001)
        return lock

    def create(self, app_name: str, user_id: str, state: dict[str, Any], meta: dict[str, Any]) -> str:
        sid, now = secrets.token_hex(13), now_text()
        folder = self.root / sid
        folder.mkdir()
        _fsync_dir(self.root)
        data = {"app_name": app_name, "user_id": user_id, "metadata": meta}
        line = _line(1, "session_created", "system", now, data, state)
        _write_durably(folder / "events.jsonl", line.encode(), os.O_CREAT | os.O_EXCL)
        _fsync_dir(folder)
        snapshot = {"id": sid, "app_name": app_name, "user_id": user_id, "status": "active",
                    "phase": "initializing", "state": state, "metadata": meta,
                    "created_at": now, "updated_at": now, "version": 1}
        _replace(folder / "session.json", json.dumps(snapshot, ensure_ascii=False, indent=2))
        return sid

    def append(self, sid: str, events: list[RawEvent]) -> None:
        folder, now = self.root / sid, now_text()
        with self._lock(sid):
            if self.snapshot:
                with open(folder / "session.json", "rb") as f:
                    snapshot = json.loads(f.read())
                version = snapshot["version"]
                lines = "".join(_line(version + i, kind, author, now, data, delta)
                                for i, (kind, author, data, delta) in enumerate(events, 1))
            else:  # a plain log: an event's seq is its line number, never read back here
                lines = "".join(_line(None, kind, author, now, data, delta)
                                for kind, author, data, delta in events)
            _write_durably(folder / "events.jsonl", lines.encode(), os.O_APPEND)
            if self.snapshot:
                state = snapshot["state"]
                for _, _, _, delta in events:
                    for key, value in delta.items():
                        if value is None:
                            state.pop(key, None)
                        else:
                            state[key] = value
                snapshot["version"], snapshot["updated_at"] = version + len(events), now
                _replace(folder / "session.json", json.dumps(snapshot, ensure_ascii=False, indent=2))

    def load_state(self, sid: str) -> dict[str, Any]:
        with open(self.root / sid / "session.json", "rb") as f:
            state: dict[str, Any] = json.loads(f.read())["state"]
        return state

    def read_events(self, sid: str) -> list[Any]:
        with open(self.root / sid / "events.jsonl", "rb") as f:
            return [json.loads(line) for line in f]

    def list_sessions(self, limit: int) -> list[Any]:
        found = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith("_") or not entry.is_dir():
                    continue
                with open(os.path.join(entry.path, "session.json"), "rb") as f:
                    found.append(json.loads(f.read()))
        found.sort(key=lambda s: (s["updated_at"], s["id"]), reverse=True)
        return found[:limit]

    def close(self) -> None:
        self._locks.clear()


def tree_bytes(root: Path) -> int:
    """The apparent size of every file under `root` (lock files are empty)."""
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(root) for name in names)


class _FilePair(Pair):
    def __init__(self, ours_root: Path, raw_root: Path, snapshot: bool) -> None:
        self.ours_root, self.raw_root = ours_root, raw_root
        self.ours = FileStore(ours_root)
        self.raw = RawFiles(raw_root, snapshot=snapshot)

    def sizes(self) -> tuple[int, int]:
        self.close()
        return tree_bytes(self.ours_root), tree_bytes(self.raw_root)


class FileBackend(Backend):
    name = "file"
    title = "FileStore vs raw file I/O"
    raw_name = "raw files"
    # Ours is the same in both; the raw side does the same work, or only the ledger line.
    variants = ("log only", "same work")
    variant_labels = {"same work": "fsync (raw: same work)",
                      "log only": "fsync (raw: ledger line only)"}
    state_note = "raw: read snapshot"
    notes = (
        "Both sides fsync every append (ledger) and replace session.json atomically, under a",
        "per-session filelock; 'raw: ledger line only' skips the snapshot (a plain log). Both",
        "sides read session.json for the state. Bytes: apparent size of every file.",
    )

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._n = 0

    @property
    def strict(self) -> str:
        return "same work"

    def _fresh(self, stem: str) -> Path:
        self._n += 1
        return self.folder / f"{self._n:02d}-{stem}"

    def open_pair(self, variant: str, tag: str) -> Pair:
        return _FilePair(self._fresh(f"{tag}-ours"), self._fresh(f"{tag}-raw"),
                         snapshot=variant == "same work")

    def shared(self, variant: str, tag: str) -> tuple[str, Callable[[], RawLog]]:
        ours, raw = self._fresh(f"{tag}-ours"), self._fresh(f"{tag}-raw")
        FileStore(ours).close()
        RawFiles(raw).close()
        return f"file://{ours}", partial(RawFiles, raw, variant == "same work")

    def meta(self) -> dict[str, Any]:
        return {"filesystem": filesystem(self.folder.parent)}
