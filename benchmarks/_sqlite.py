"""SQLite: `SqliteStore` vs `RawSqlite`, a hand-written `sqlite3` event log at the same PRAGMAs.

Both sides use WAL and `synchronous` FULL (durability `full`) or NORMAL (`normal`). The raw
log has the same event columns and primary key `(session_id, seq)` WITHOUT ROWID, and the
one session index the workloads use, `(updated_at, id)`; ours also keeps
`(app_name, user_id, updated_at, id)` for filtered lists.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _bench import Backend, Pair, RawEvent, RawLog, dumps, filesystem, now_text

from agentledger.stores.sqlite import SqliteStore

_SYNC = {"full": "FULL", "normal": "NORMAL"}


class RawSqlite:
    """The baseline: the event log one would hand-write with `sqlite3`.

    Args:
        path: The database file; its tables are created if missing.
        durability: `full` or `normal` (`PRAGMA synchronous`).
        timeout: Seconds a writer waits for another process's write lock.
    """

    def __init__(self, path: Path | str, durability: str, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={_SYNC[durability]}")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY, app_name TEXT NOT NULL, user_id TEXT NOT NULL,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                version INTEGER NOT NULL, snapshot TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS sessions_by_updated ON sessions (updated_at, id);
            CREATE TABLE IF NOT EXISTS events (
                session_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
                type TEXT NOT NULL, author TEXT NOT NULL, timestamp TEXT NOT NULL,
                invocation_id TEXT, data TEXT NOT NULL, state_delta TEXT NOT NULL,
                PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
            """
        )

    def create(self, app_name: str, user_id: str, state: dict[str, Any], meta: dict[str, Any]) -> str:
        sid, now = secrets.token_hex(13), now_text()  # 26 characters, as long as a ULID
        snapshot = {"id": sid, "app_name": app_name, "user_id": user_id, "status": "active",
                    "phase": "initializing", "state": state, "metadata": meta,
                    "created_at": now, "updated_at": now, "version": 1}
        data = {"app_name": app_name, "user_id": user_id, "metadata": meta}
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, 1, ?)",
                  (sid, app_name, user_id, now, now, dumps(snapshot)))
        c.execute("INSERT INTO events (id, session_id, seq, type, author, timestamp, invocation_id,"
                  " data, state_delta) VALUES (?, ?, 1, 'session_created', 'system', ?, NULL, ?, ?)",
                  (secrets.token_hex(13), sid, now, dumps(data), dumps(state)))
        c.execute("COMMIT")
        return sid

    def append(self, sid: str, events: list[RawEvent]) -> None:
        c, now = self.conn, now_text()
        c.execute("BEGIN IMMEDIATE")
        (version,) = c.execute("SELECT version FROM sessions WHERE id = ?", (sid,)).fetchone()
        c.executemany(
            "INSERT INTO events (id, session_id, seq, type, author, timestamp, invocation_id,"
            " data, state_delta) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            [(secrets.token_hex(13), sid, version + i, kind, author, now, dumps(data), dumps(delta))
             for i, (kind, author, data, delta) in enumerate(events, 1)],
        )
        c.execute("UPDATE sessions SET version = ?, updated_at = ? WHERE id = ?",
                  (version + len(events), now, sid))
        c.execute("COMMIT")

    def load_state(self, sid: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for (raw,) in self.conn.execute(
            "SELECT state_delta FROM events WHERE session_id = ? ORDER BY seq", (sid,)
        ):
            for key, value in json.loads(raw).items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state

    def read_events(self, sid: str) -> list[Any]:
        loads = json.loads
        cur = self.conn.execute(
            "SELECT id, session_id, seq, type, author, timestamp, invocation_id, data, state_delta"
            " FROM events WHERE session_id = ? ORDER BY seq", (sid,))
        return [(*r[:7], loads(r[7]), loads(r[8])) for r in cur]

    def list_sessions(self, limit: int) -> list[Any]:
        cur = self.conn.execute(
            "SELECT id, app_name, user_id, created_at, updated_at, version, snapshot FROM sessions"
            " ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,))
        return [(*r[:6], json.loads(r[6])) for r in cur]

    def close(self) -> None:
        self.conn.close()


def file_bytes(path: Path | str) -> int:
    """Database size after folding the WAL back in (call once every connection is closed)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    finally:
        conn.close()


class _SqlitePair(Pair):
    def __init__(self, ours_path: Path, raw_path: Path, durability: str) -> None:
        self.ours_path, self.raw_path = ours_path, raw_path
        self.ours = SqliteStore(ours_path, durability=durability)
        self.raw = RawSqlite(raw_path, durability)

    def sizes(self) -> tuple[int, int]:
        self.close()
        return file_bytes(self.ours_path), file_bytes(self.raw_path)


class SqliteBackend(Backend):
    name = "sqlite"
    title = "SqliteStore vs raw sqlite3"
    raw_name = "raw sqlite3"
    variants = ("full", "normal")
    targets = {"append:full": (">=", 0.9), "append:normal": (">=", 0.5), "history": ("<=", 1.5),
               "growth": ("<=", 1.5), "bytes": ("<=", 1.3)}
    notes = (
        "Both sides: WAL, synchronous FULL (full) or NORMAL (normal). Raw state load folds every",
        "state_delta row (no snapshot); ours reads the session's snapshot row.",
    )

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._n = 0

    def _fresh(self, stem: str) -> Path:
        self._n += 1
        return self.folder / f"{self._n:02d}-{stem}.db"

    def open_pair(self, variant: str, tag: str) -> Pair:
        return _SqlitePair(self._fresh(f"{tag}-ours"), self._fresh(f"{tag}-raw"), variant)

    def meta(self) -> dict[str, Any]:
        return {"sqlite": sqlite3.sqlite_version, "filesystem": filesystem(self.folder.parent)}

    def shared(self, variant: str, tag: str) -> tuple[str, Callable[[], RawLog]]:
        ours, raw = self._fresh(f"{tag}-ours"), self._fresh(f"{tag}-raw")
        SqliteStore(ours, durability=variant).close()
        RawSqlite(raw, variant).close()
        return f"sqlite:///{ours}?durability={variant}", partial(RawSqlite, raw, variant)
