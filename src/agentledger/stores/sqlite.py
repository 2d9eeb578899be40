"""`sqlite:///path.db` — the embedded default store.

One SQLite file in WAL mode. Writers take the database's write lock with `BEGIN IMMEDIATE`,
so appends from many threads and processes queue up and `seq` stays gapless; the primary
key `(session_id, seq)` makes a duplicate impossible anyway. Each append writes its events
and the session's snapshot row in one transaction, so loading a session reads one row
whatever the length of its ledger.

Durability (`durability=` option or `?durability=` in the URL):
    `"full"` (default): `PRAGMA synchronous=FULL`; the WAL is fsynced at every commit, so an
        acknowledged append survives power loss.
    `"normal"`: `PRAGMA synchronous=NORMAL`; an acknowledged append survives a process
        crash (`kill -9`) but the last commits may be lost on power loss. Faster.

Each event row keeps its `payload_hash` and chain `hash` (`agentledger.core.chain`), and
each session row the `last_hash` of its last commit, so damage to the file is detected
(`verify_session`; gaps and the chain on reads too).

State keys apart (schema version 4): a session's own state is a row per key in
`session_state` (its value as JSON text), not part of the snapshot, so an append writes
only the keys its events set or remove, whatever the size of the state; reading a session
gathers its keys into one JSON object in the same query.

Event keys (schema version 3) are a `key` column with a partial unique index on
`(session_id, key)`: a retry's key check, `get_event` and `read_events(keys=...)` are
lookups in it, a key prefix a range of it (SQLite compares text as UTF-8 bytes: code point
order); the latest events of a prefix are looked for among the newest events first (see
`_latest_in_prefix`). Creation order and time windows read `(created_at, id)` and
`(session_id, timestamp)` indexes.

Permissions (`file_mode=` option or `?file_mode=` in the URL): a new database file is
created with `file_mode` (default 0600: only its owner can read it), whatever the umask;
SQLite gives its `-wal` and `-shm` files the database's mode. Folders it creates for the
file get the matching folder mode (0700). An existing file keeps its mode.

Erase and truncate: every write connection runs with `PRAGMA secure_delete=ON`, so content
freed by an erased payload, dropped events or a deleted session is overwritten with zeros
in the database file; `compact()` checkpoints the write-ahead log into the file and
truncates the log (`wal_checkpoint(TRUNCATE)`), so no old copy of those pages stays in it.

The schema version is kept in `PRAGMA user_version`; `MIGRATIONS[n]` upgrades version
n - 1 to n and is never edited once released.

Read-only (`read_only=True`): the file is opened with SQLite's `mode=ro`, so nothing can
write it; the schema is checked, never created or migrated, and the journal mode is left as
it is. A WAL file needs its `-shm` index to be read: SQLite creates it beside the file when
the folder is writable; when it cannot (a read-only folder) and no `-wal` file holds
unmerged commits, the file is opened as immutable instead.

Group commit (`group_commit=` option or `?group_commit=` in the URL; on by default):
`append` calls from several threads of one process that arrive together share one
transaction and one commit, so one fsync at `full` serves them all. Each append runs on the
store's group connection under its own `SAVEPOINT` (one at a time), so it is atomic on its
own: one that fails is rolled back alone. Each returns only after the commit that holds it
succeeded; if that commit fails, every append in it raises and nothing of them is written.
A lone writer commits each append at once, as without groups. Other writes (create, fork,
erase, ...) run in their own transactions, as do appends with `group_commit=False`.

Creating: opening for writing creates the database file if it is missing (unless
`create=False`), never the folder it goes in.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from agentledger._ids import new_ids
from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash, rechain
from agentledger.core.keys import prefix_range
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from agentledger.stores.base import Capabilities, SessionFilter
from agentledger.stores.shared import (
    DEFAULT_FILE_MODE,
    BaseStore,
    EventRow,
    SessionRow,
    StoreTransaction,
    compact_json,
    copy_refused,
    format_timestamp,
    fsync_folder,
    parse_file_mode,
    parse_flag,
    session_order,
    store_options,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]



def _chain_existing_events(conn: sqlite3.Connection) -> None:
    """Version 2 (hash chain), for a database of version 1: rewrite every event's `data` and
    `state_delta` as canonical JSON (equal values, keys sorted), compute its payload hash
    and chain hash in `seq` order, and record each session's last hash. So every event of
    an upgraded database is verifiable, as if it had been written by this version."""
    last: dict[str, str] = {}
    rows = conn.execute(
        "SELECT session_id, seq, id, type, author, timestamp, invocation_id, data, state_delta"
        " FROM events ORDER BY session_id, seq"
    ).fetchall()
    for session_id, seq, event_id, kind, author, stamp, invocation_id, data, delta in rows:
        try:
            data, delta = canonical_json(json.loads(data)), canonical_json(json.loads(delta))
        except (TypeError, ValueError):
            pass  # a damaged row stays as it is, and fails verification
        digest = payload_hash(data, delta)
        chained = event_hash(
            last.get(session_id, GENESIS),
            session_id,
            seq,
            event_id,
            kind,
            author,
            stamp,
            invocation_id,
            digest,
        )
        last[session_id] = chained
        conn.execute(
            "UPDATE events SET data = ?, state_delta = ?, payload_hash = ?, hash = ?"
            " WHERE session_id = ? AND seq = ?",
            (data, delta, digest, chained, session_id, seq),
        )
    conn.executemany(
        "UPDATE sessions SET last_hash = ? WHERE id = ?", [(h, sid) for sid, h in last.items()]
    )


def _state_keys_apart(conn: sqlite3.Connection) -> None:
    """Version 4 (state keys apart), for a database of version 3: move each session's own
    state out of its snapshot into `session_state`, a row per key (the value as JSON
    text), and rewrite the snapshot without it. A snapshot that cannot be read stays as it
    is: reading the session rebuilds it from the ledger, as before."""
    rows = conn.execute("SELECT id, snapshot FROM sessions").fetchall()
    for session_id, snapshot in rows:
        try:
            value = json.loads(snapshot)
        except (TypeError, ValueError, RecursionError):
            continue
        if not isinstance(value, dict) or not isinstance(value.get("state"), dict):
            continue
        state = value.pop("state")
        conn.executemany(
            "INSERT INTO session_state (session_id, key, value) VALUES (?, ?, ?)",
            [(session_id, key, compact_json(item)) for key, item in state.items()],
        )
        conn.execute(
            "UPDATE sessions SET snapshot = ? WHERE id = ?", (compact_json(value), session_id)
        )


Migration = str | Callable[[sqlite3.Connection], None]
"""A migration step: an SQL statement, or a function run on the connection (in the
migration's transaction)."""

MIGRATIONS: list[list[Migration]] = [
    [],  # version 0: an empty database
    [  # version 1
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            app_name TEXT NOT NULL,
            user_id TEXT NOT NULL,
            agent_name TEXT,
            status TEXT NOT NULL,
            phase TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            version INTEGER NOT NULL,
            snapshot TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_by_updated ON sessions (updated_at, id)",
        "CREATE INDEX sessions_by_user ON sessions (app_name, user_id, updated_at, id)",
        """CREATE TABLE events (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            id TEXT NOT NULL,
            type TEXT NOT NULL,
            author TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            invocation_id TEXT,
            data TEXT NOT NULL,
            state_delta TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE scoped_state (
            app_name TEXT NOT NULL,
            user_id TEXT NOT NULL,
            state TEXT NOT NULL,
            PRIMARY KEY (app_name, user_id)
        )""",
    ],
    [  # version 2
        # State operations (JSON Patch shape) applied at commit: a JSON array per event,
        # '[]' for events without any (and for every event written before version 2).
        "ALTER TABLE events ADD COLUMN state_ops TEXT NOT NULL DEFAULT '[]'",
        # -- the hash chain: every event's payload hash and chain hash, and each session's
        #    last hash (its last acknowledged commit); see agentledger.core.chain.
        "ALTER TABLE events ADD COLUMN payload_hash TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE sessions ADD COLUMN last_hash TEXT NOT NULL DEFAULT ''",
        _chain_existing_events,
        # -- end of the hash chain
    ],
    [  # version 3
        # -- event feed: every event's position in the store-wide feed (read_feed), from a
        #    one-row counter taken under the write lock, so positions follow commit order;
        #    events already stored get positions in the order they were written.
        "CREATE TABLE feed_counter (position INTEGER NOT NULL)",
        "ALTER TABLE events ADD COLUMN position INTEGER",
        "UPDATE events SET position = ranked.position FROM (SELECT session_id, seq,"
        " row_number() OVER (ORDER BY timestamp, id) AS position FROM events) AS ranked"
        " WHERE events.session_id = ranked.session_id AND events.seq = ranked.seq",
        "INSERT INTO feed_counter (position) SELECT count(*) FROM events",
        "CREATE UNIQUE INDEX events_by_position ON events (position)",
        # -- end of event feed
        # -- event keys: an optional idempotency key per event, unique per session; a
        #    partial unique index (only keyed events), which also serves key prefix reads
        #    as a range.
        "ALTER TABLE events ADD COLUMN key TEXT",
        "CREATE UNIQUE INDEX events_by_key ON events (session_id, key) WHERE key IS NOT NULL",
        # -- end of event keys
        # -- ordering indexes: list_sessions(order="created_desc"/"created_asc"), and
        #    read_events(after_timestamp=, before_timestamp=) on a long ledger.
        "CREATE INDEX sessions_by_created ON sessions (created_at, id)",
        "CREATE INDEX events_by_timestamp ON events (session_id, timestamp)",
        # -- end of ordering indexes
        # -- event format: each event's format number (agentledger.core.events.EVENT_FORMAT;
        #    events written before version 3 are format 1, where a null in state_delta
        #    deletes the key) and its removal list (state_remove, a JSON array of keys).
        "ALTER TABLE events ADD COLUMN state_remove TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1",
        # -- end of event format
        # -- erase and truncate: an event whose payload was erased (`erase_events`) keeps
        #    its row and hashes with `erased` = 1; a session erased or truncated keeps its
        #    `LedgerBase` (JSON: where its ledger and its projection start) in `base`.
        "ALTER TABLE events ADD COLUMN erased INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN base TEXT NOT NULL DEFAULT ''",
        # -- end of erase and truncate
    ],
    [  # version 4
        # -- state keys apart: a session's own state as a row per key (its value as JSON
        #    text), out of the snapshot, so an append writes only the keys it touches and
        #    the cost of an append does not grow with the size of the state. One B-tree
        #    (WITHOUT ROWID): a key written dirties one page, and a session's keys are
        #    read as one range.
        """CREATE TABLE session_state (
            session_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        ) WITHOUT ROWID""",
        _state_keys_apart,
        # -- end of state keys apart
    ],
]
"""Schema migrations; the index of the last entry is `SCHEMA_VERSION`."""

SCHEMA_VERSION = len(MIGRATIONS) - 1

_DURABILITY = {"full": "FULL", "normal": "NORMAL"}
_TIGHT_WAL_PAGES = 100  # WAL checkpoint interval (pages) of a connection after a full disk
_APP_SCOPE = ""  # scoped_state.user_id for app-wide state (user ids are never empty)

_EVENT_COLUMNS = (
    "id, session_id, seq, type, author, timestamp, invocation_id, data, state_delta,"
    " payload_hash, hash, state_ops, state_remove, format, key, erased"
)
_INSERT_EVENT = (
    f"INSERT INTO events ({_EVENT_COLUMNS}, position)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A session's own state as one JSON object, built from its rows (values are stored JSON).
_STATE_OBJECT = (
    "coalesce((SELECT '{' || group_concat(json_quote(key) || ':' || value, ',') || '}'"
    " FROM session_state WHERE session_id = {id}), '{}')"
)
_LOAD_STATE = "SELECT " + _STATE_OBJECT.replace("{id}", "?")
_SESSION_SELECT = (
    "SELECT s.id, s.app_name, s.user_id, s.agent_name, s.status, s.phase, s.created_at,"
    " s.updated_at, s.version, s.snapshot, s.last_hash, s.base, "
    + _STATE_OBJECT.replace("{id}", "s.id")
    + ", a.state, u.state FROM sessions s"
    " LEFT JOIN scoped_state a ON a.app_name = s.app_name AND a.user_id = ''"
    " LEFT JOIN scoped_state u ON u.app_name = s.app_name AND u.user_id = s.user_id"
)


def _json_match(parts: tuple[str, ...], value: Any) -> tuple[str, list[Any]]:
    """The SQL condition (and its parameters) that the value at a `data_match` path equals
    `value`, as `core.keys.data_matches` decides: by JSON type and value."""
    path = "$" + "".join(f'."{part}"' for part in parts)
    kind = "json_type(data, ?)"
    if value is None:
        return f" AND {kind} = 'null'", [path]
    if isinstance(value, bool):
        return f" AND {kind} = ?", [path, "true" if value else "false"]
    if isinstance(value, str):
        return f" AND {kind} = 'text' AND json_extract(data, ?) = ?", [path, path, value]
    return f" AND {kind} IN ('integer', 'real') AND json_extract(data, ?) = ?", [path, path, value]


def _disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` is SQLite's "database or disk is full" (`SQLITE_FULL`)."""
    return (
        isinstance(exc, sqlite3.Error)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def _translate(exc: sqlite3.Error) -> StoreError:
    """The agentledger error for a sqlite3 error (raise it `from exc`)."""
    if _disk_full(exc):
        return StoreUnavailableError(
            f"SQLite: {exc}; nothing was written (the store works again once space is freed)"
        )
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"SQLite: {exc}")
    return StoreError(f"SQLite: {exc}")


@contextmanager
def _translated() -> Iterator[None]:
    """Turn sqlite3 errors into agentledger errors at the store boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


_UPSERT_STATE = (
    "INSERT INTO session_state (session_id, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value"
)


class _SqliteTransaction(StoreTransaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def load_session(self, session_id: str) -> SessionRow | None:
        row = self._conn.execute(
            "SELECT id, app_name, user_id, agent_name, status, phase, created_at, updated_at,"
            " version, snapshot, last_hash, base FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return None if row is None else SessionRow(*row)

    def load_event_rows(self, session_id: str) -> list[EventRow]:
        cur = self._conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [EventRow(*r) for r in cur]

    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        row = self._conn.execute(
            "SELECT state FROM scoped_state WHERE app_name = ? AND user_id = ?",
            (app_name, user_id or _APP_SCOPE),
        ).fetchone()
        return None if row is None else str(row[0])

    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        self._conn.execute(
            "INSERT INTO scoped_state (app_name, user_id, state) VALUES (?, ?, ?)"
            " ON CONFLICT (app_name, user_id) DO UPDATE SET state = excluded.state",
            (app_name, user_id or _APP_SCOPE, state),
        )

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        # Feed positions: the counter is read and moved under the write lock, so they
        # follow commit order.
        (end,) = self._conn.execute(
            "UPDATE feed_counter SET position = position + ? RETURNING position", (len(rows),)
        ).fetchone()
        start = end - len(rows)
        if len(rows) == 1:  # the common case: `execute` costs less than `executemany`
            self._conn.execute(_INSERT_EVENT, (*rows[0], end))
            return
        self._conn.executemany(_INSERT_EVENT, [(*row, start + i) for i, row in enumerate(rows, 1)])

    def load_keyed_rows(self, session_id: str, keys: Sequence[str]) -> list[EventRow]:
        found: list[EventRow] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            cur = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_by_key"
                f" WHERE session_id = ? AND key IN ({', '.join('?' * len(chunk))})",
                (session_id, *chunk),
            )
            found += [EventRow(*r) for r in cur]
        return found

    def copy_events(self, source_id: str, target_id: str, upto: int) -> tuple[str, str]:
        """A fork's copy, set-based: only the headers come into Python (to check the
        source's chain and chain the copy: `rechain`); the new ids and hashes go into a
        temporary table, and one `INSERT … SELECT` joins them with the source's rows, so
        the payloads never leave SQLite."""
        conn = self._conn
        headers = conn.execute(
            "SELECT seq, id, type, author, timestamp, invocation_id, payload_hash, hash, format"
            " FROM events WHERE session_id = ? AND seq <= ? ORDER BY seq",
            (source_id, upto),
        ).fetchall()
        chained, bad = rechain(headers, source_id, target_id, iter(new_ids(len(headers))))
        if bad is not None or len(chained) != upto:
            raise copy_refused(source_id, bad or len(chained) + 1)
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS fork_copy"
            " (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        conn.execute("DELETE FROM temp.fork_copy")
        conn.executemany("INSERT INTO temp.fork_copy (seq, id, hash) VALUES (?, ?, ?)", chained)
        # Feed positions for the copies, in seq order, from the counter (under the lock).
        (end,) = conn.execute(
            "UPDATE feed_counter SET position = position + ? RETURNING position", (upto,)
        ).fetchone()
        conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}, position)"
            " SELECT c.id, ?, e.seq, e.type, e.author, e.timestamp, e.invocation_id, e.data,"
            " e.state_delta, e.payload_hash, c.hash, e.state_ops, e.state_remove, e.format,"
            " e.key, e.erased, ? + c.seq"
            " FROM temp.fork_copy c JOIN events e ON e.session_id = ? AND e.seq = c.seq"
            " ORDER BY c.seq",
            (target_id, end - upto, source_id),
        )
        conn.execute("DELETE FROM temp.fork_copy")
        return str(headers[-1][7]), chained[-1][2]

    def load_state(self, session_id: str) -> str:
        (state,) = self._conn.execute(_LOAD_STATE, (session_id,)).fetchone()
        return str(state)

    def save_state(
        self, session_id: str, values: Mapping[str, str], removed: Sequence[str], *, replace: bool
    ) -> None:
        conn = self._conn
        if replace:
            conn.execute("DELETE FROM session_state WHERE session_id = ?", (session_id,))
        elif removed:
            conn.executemany(
                "DELETE FROM session_state WHERE session_id = ? AND key = ?",
                [(session_id, key) for key in removed],
            )
        if len(values) == 1:
            ((key, value),) = values.items()
            conn.execute(_UPSERT_STATE, (session_id, key, value))
        elif values:
            conn.executemany(_UPSERT_STATE, [(session_id, k, v) for k, v in values.items()])

    def delete_session(self, session_id: str) -> bool:
        self._conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
        self._conn.execute("DELETE FROM session_state WHERE session_id = ?", (session_id,))
        cur = self._conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return cur.rowcount > 0

    def save_session(self, row: SessionRow, *, new: bool) -> None:
        if new:
            self._conn.execute(
                "INSERT INTO sessions (id, app_name, user_id, agent_name, status, phase,"
                " created_at, updated_at, version, snapshot, last_hash, base)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row[:12],
            )
        else:
            self._conn.execute(
                "UPDATE sessions SET agent_name = ?, status = ?, phase = ?, updated_at = ?,"
                " version = ?, snapshot = ?, last_hash = ? WHERE id = ?",
                (
                    row.agent_name,
                    row.status,
                    row.phase,
                    row.updated_at,
                    row.version,
                    row.snapshot,
                    row.last_hash,
                    row.id,
                ),
            )

    def erase_event_rows(self, session_id: str, seqs: Sequence[int]) -> None:
        # With `secure_delete` on (every connection), the old payload's cells are zeroed.
        self._conn.executemany(
            "UPDATE events SET data = '{}', state_delta = '{}', state_ops = '[]',"
            " state_remove = '[]', erased = 1"
            " WHERE session_id = ? AND seq = ?",
            [(session_id, seq) for seq in seqs],
        )

    def drop_event_rows(self, session_id: str, before: int) -> None:
        self._conn.execute(
            "DELETE FROM events WHERE session_id = ? AND seq < ?", (session_id, before)
        )

    def save_base(self, session_id: str, base: str) -> None:
        self._conn.execute("UPDATE sessions SET base = ? WHERE id = ?", (base, session_id))


class _WriteTransaction:
    """`BEGIN IMMEDIATE` … `COMMIT` (or `ROLLBACK` on any exception), errors translated.

    A write that fails for lack of disk space marks the store (`_DiskSpace`), and the next
    write that commits empties the WAL (see `_DiskSpace`).

    A class rather than a generator context manager: it is on the append hot path.
    """

    __slots__ = ("_conn", "_space")

    def __init__(self, conn: sqlite3.Connection, space: _DiskSpace) -> None:
        self._conn = conn
        self._space = space

    def __enter__(self) -> _SqliteTransaction:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return _SqliteTransaction(self._conn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        try:
            if exc_type is None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as commit_error:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if _disk_full(commit_error):
                        self._space.ran_out(conn)
                    raise _translate(commit_error) from commit_error
                if self._space.short:
                    self._space.reclaim(conn)
                return
            conn.execute("ROLLBACK")
        except sqlite3.Error as rollback_error:
            raise _translate(rollback_error) from rollback_error
        if isinstance(exc, sqlite3.Error):
            if _disk_full(exc):
                self._space.ran_out(conn)
            raise _translate(exc) from exc


_MAX_GROUP = 128
"""The most appends one group commit holds; the next ones start a new group."""


class _CommitGroup:
    """Group commit: appends of this process's threads that arrive together share one
    transaction and one commit (one fsync at durability `full`) on one connection.

    Each member runs its append inside the group's transaction under a `SAVEPOINT`, one
    member at a time (the group's lock): an append that fails is rolled back to its
    savepoint alone, and the others go on. A member that finishes while other appends
    wait for the lock leaves the commit to them and waits; the last one, which sees nobody
    waiting (or the group full at `_MAX_GROUP`), commits, and every member's append returns
    only once that commit succeeded, or raises its error (a failed commit writes nothing
    of the group). A lone writer commits at once, as without a group: one append, one
    transaction.
    """

    __slots__ = (
        "_conn", "_space", "pid", "_lock", "_state", "_waiting", "_open", "_members",
        "_generation", "_done", "_failed",
    )

    def __init__(self, conn: sqlite3.Connection, space: _DiskSpace, pid: int) -> None:
        self._conn = conn
        self._space = space
        self.pid = pid
        self._lock = threading.Lock()  # held by the member running, then by the committer
        self._state = threading.Condition()  # guards the counters below
        self._waiting = 0  # members waiting for `_lock`
        self._open = False  # a group transaction is open on `_conn`
        self._members = 0  # appends done in the open transaction
        self._generation = 0  # the open (or last) group transaction
        self._done = 0  # the last generation whose commit ended
        self._failed: dict[int, StoreError] = {}  # generations whose commit failed

    def enter(self) -> tuple[int, bool]:
        """Take the lock and join the group's transaction (begun if none is open), under a
        savepoint when earlier members' appends are in it: the group's generation, and
        whether a savepoint was taken."""
        with self._state:
            self._waiting += 1
        self._lock.acquire()
        with self._state:
            self._waiting -= 1
        conn = self._conn
        try:
            if self._open and not conn.in_transaction:
                # SQLite rolled the group's transaction back by itself (an I/O error, a
                # full disk): its members learn that nothing of theirs was written.
                self._end(StoreUnavailableError("SQLite rolled back a group of appends"))
            if not self._open:
                conn.execute("BEGIN IMMEDIATE")
                self._open, self._members = True, 0
                with self._state:
                    self._generation += 1
            savepoint = self._members > 0
            if savepoint:
                conn.execute("SAVEPOINT append")
        except BaseException as exc:
            self._finish(None)
            if isinstance(exc, sqlite3.Error):
                if _disk_full(exc):
                    self._space.ran_out(conn)
                raise _translate(exc) from exc
            raise
        return self._generation, savepoint

    def leave(self, generation: int, savepoint: bool, failed: bool) -> None:
        """End a member's append: release its savepoint (or roll back to it when it
        `failed`), then commit or wait for the commit of its generation.

        Raises:
            StoreError: The commit of the group failed (a member that did not fail).
        """
        conn = self._conn
        try:
            if failed:
                if savepoint and conn.in_transaction:
                    conn.execute("ROLLBACK TO append")
                    conn.execute("RELEASE append")
                elif not savepoint:  # alone in the transaction: roll all of it back
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._open = False
            else:
                if savepoint:
                    conn.execute("RELEASE append")
                self._members += 1
        except sqlite3.Error as exc:
            self._end(_translate(exc), exc)
            self._lock.release()
            raise _translate(exc) from exc
        # A refused append (a stale expected version, most often) commits the group at
        # once: its writer retries after reading the session again, and would keep
        # reading the version from before the group, never seeing the group commit.
        if not self._finish(None if failed else generation, force=failed) and not failed:
            with self._state:
                while self._done < generation:
                    self._state.wait()
                error = self._failed.get(generation)
            if error is not None:
                raise error

    def _finish(self, generation: int | None, *, force: bool = False) -> bool:
        """Commit the open transaction when no other member waits (or the group is full,
        or `force`), then release the lock. Whether this member's own generation is decided (committed
        here, or `generation` is None: nothing of its own to wait for).

        Raises:
            StoreError: The commit failed (after telling the group's members).
        """
        with self._state:
            others = self._waiting
        if self._open and (force or others == 0 or self._members >= _MAX_GROUP):
            error: StoreError | None = None
            conn = self._conn
            try:
                if self._members:
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as commit_error:
                error = _translate(commit_error)
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if _disk_full(commit_error):
                    self._space.ran_out(conn)
                self._end(error, commit_error)
            else:
                self._end(None)
                if self._space.short:
                    self._space.reclaim(conn)
            self._lock.release()
            if error is not None and generation is not None:
                raise error
            return True
        self._lock.release()
        return generation is None

    def _end(self, error: StoreError | None, cause: BaseException | None = None) -> None:
        """The open transaction is over (committed, or failed with `error`): wake its
        members."""
        if error is not None and cause is not None:
            error.__cause__ = cause
        if self._open and self._conn.in_transaction and error is not None:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        self._open = False
        with self._state:
            if error is not None:
                self._failed[self._generation] = error
                for old in [g for g in self._failed if g < self._generation - 1000]:
                    del self._failed[old]
            self._done = self._generation
            self._state.notify_all()


class _GroupMember:
    """One append in a `_CommitGroup`, as a context manager giving its transaction."""

    __slots__ = ("_group", "_generation", "_savepoint")

    def __init__(self, group: _CommitGroup) -> None:
        self._group = group
        self._generation, self._savepoint = 0, False

    def __enter__(self) -> _SqliteTransaction:
        self._generation, self._savepoint = self._group.enter()
        return _SqliteTransaction(self._group._conn)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._group.leave(self._generation, self._savepoint, exc_type is not None)
        if isinstance(exc, sqlite3.Error):
            if _disk_full(exc):
                self._group._space.ran_out(self._group._conn)
            raise _translate(exc) from exc


class _DiskSpace:
    """Recovery from a full disk, without reopening the store.

    A WAL file is reused from its start only after a checkpoint has copied all of it into
    the database, and SQLite checkpoints on its own only once the WAL holds 1,000 pages.
    After a write failed for lack of space, the WAL would keep growing into whatever space
    is freed and fill the disk again. So after such a failure, the next write that commits
    (there is space again) checkpoints the whole WAL into the database and truncates it to
    zero bytes (`wal_checkpoint(TRUNCATE)`); until that succeeds, every committed write
    tries again. From then on that connection checkpoints every `_TIGHT_WAL_PAGES` pages
    instead of 1,000, so the WAL stays small on a disk that has shown it is short.
    """

    __slots__ = ("short",)

    def __init__(self) -> None:
        self.short = False

    def ran_out(self, conn: sqlite3.Connection) -> None:
        """A write failed with `SQLITE_FULL` and was rolled back: try to reclaim the WAL's
        space now (it works when the WAL, not the data, filled the disk)."""
        self.short = True
        self.reclaim(conn)

    def reclaim(self, conn: sqlite3.Connection) -> None:
        """Checkpoint and truncate the WAL; stay `short` if that could not finish."""
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            conn.execute(f"PRAGMA wal_autocheckpoint={_TIGHT_WAL_PAGES}")
        except sqlite3.Error:
            return  # still no space, or locked: the next commit tries again
        self.short = bool(busy)


def _path_from_url(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc or not path.startswith("/") or len(path) < 2:
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return path[1:]


def _version_problem(path: str, version: int, *, read_only: bool) -> str:
    """The message of a `SchemaVersionError` for a file at `version`."""
    if version > SCHEMA_VERSION:
        return (
            f"{path} has schema version {version}, but this agentledger knows versions up to "
            f"{SCHEMA_VERSION}; upgrade agentledger to open it"
        )
    return (
        f"{path} has schema version {version} and this agentledger reads version "
        f"{SCHEMA_VERSION}; a read-only open does not migrate it: open it for writing once "
        "to migrate it (agentledger migrate, or any command that writes)"
    )


class SqliteStore(BaseStore):
    """A store in one SQLite file.

    Args:
        path: The database file; created if missing (unless `read_only` or
            `create=False`); its folder must exist.
        durability: `"full"` (default) or `"normal"`; see the module docstring.
        busy_timeout: How long a writer waits for the write lock, in seconds, before
            `StoreUnavailableError`.
        file_mode: Permissions of a new database file (and its `-wal`/`-shm` files), an
            int or an octal string (`"0644"`); default 0o600, private to the owner.
        group_commit: Whether appends from several threads of this process that arrive
            together share one transaction and one commit (default `True`; see the module
            docstring). Each append is still atomic on its own and returns only once
            committed.
        url: The URL it was opened with (for display); derived from `path` if omitted.
        **options: `max_event_bytes`, `clock`, `lifecycle`, `read_only`, `create`; see
            `BaseStore`.

    Raises:
        ConfigurationError: A bad option (e.g. a `busy_timeout` that is negative or not
            finite).
        StoreNotFoundError: The file is missing and may not be created, or its folder is
            missing.
        SchemaVersionError: The file was written by a newer agentledger, or is older and
            opened read-only.
        StoreUnavailableError: The file cannot be opened or is locked too long.

    Example:
        >>> with SqliteStore("agentledger.db", durability="normal") as store:
        ...     store.list_sessions(limit=10)
    """

    scheme = "sqlite"
    _copies_in_transaction = True
    _state_apart = True
    capabilities = Capabilities(persistent=True, multi_process=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        busy_timeout: float = 30.0,
        file_mode: int | str = DEFAULT_FILE_MODE,
        group_commit: bool = True,
        url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url=url or f"sqlite:///{os.fspath(path)}", **options)
        self.file_mode = parse_file_mode(file_mode)
        if durability not in _DURABILITY:
            raise ConfigurationError(
                f"durability must be one of {sorted(_DURABILITY)}, not {durability!r}"
            )
        self.path = os.fspath(path)
        if self.path == ":memory:":
            # Each thread's connection would get its own, empty database.
            raise ConfigurationError("SQLite :memory: is not supported; use memory:// instead")
        self.durability = durability
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not 0 <= busy_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"busy_timeout must be a finite number >= 0, not {busy_timeout!r}"
            )
        self._busy_timeout = float(busy_timeout)
        self._space = _DiskSpace()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._immutable = False
        if not isinstance(group_commit, bool):
            raise ConfigurationError(f"group_commit must be True or False, not {group_commit!r}")
        self.group_commit = group_commit
        self._commit_group: _CommitGroup | None = None
        self._check_file()
        if not self.read_only:
            self._create_file()
        self.setup()

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> SqliteStore:
        """Open `sqlite:///path.db?durability=normal&max_event_bytes=N&busy_timeout=S`
        (`&file_mode=0644` to widen the default 0600, `&group_commit=off` to commit each
        append alone)."""
        opts = store_options(
            url,
            options,
            {
                "durability": None,
                "busy_timeout": float,
                "file_mode": parse_file_mode,
                "group_commit": parse_flag,
            },
        )
        return cls(_path_from_url(url), url=url, **opts)

    def _check_file(self) -> None:
        """Refuse a missing file that may not be created, and a missing folder."""
        if os.path.exists(self.path):
            return
        folder = Path(os.path.abspath(self.path)).parent
        if self.read_only or not self.create:
            why = "opened read-only" if self.read_only else "opened with create=False"
            raise StoreNotFoundError(
                f"SQLite store {self.path} does not exist ({why}: nothing was created)"
            )
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "does not exist"
            raise StoreNotFoundError(
                f"cannot create SQLite store {self.path}: folder {folder} {problem} "
                "(agentledger creates the database file, never its folders; create it first)"
            )

    def _create_file(self) -> None:
        """Create the database file, empty, with `file_mode` if it does not exist (SQLite
        would create it with 0644 less the umask, and its `-wal`/`-shm` files the same)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.file_mode)
        except FileExistsError:
            return  # an existing store keeps its mode
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create {self.path}: {exc}") from exc
        try:
            os.fchmod(fd, self.file_mode)  # exactly, whatever the umask
        finally:
            os.close(fd)
        try:  # the new name durable: SQLite fsyncs the folder for its WAL, not for this
            fsync_folder(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create {self.path}: {exc}") from exc

    # -- connections --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        pid = os.getpid()
        if conn is not None and self._local.pid == pid:
            return conn
        with _translated():
            conn = self._connect_read_only() if self.read_only else self._connect_writer()
        self._local.conn, self._local.pid = conn, pid
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        """A new read-write connection: WAL, the store's `synchronous`, `secure_delete`."""
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        self._enable_wal(conn)
        conn.execute(f"PRAGMA synchronous={_DURABILITY[self.durability]}")
        # Freed content (an erased payload, dropped events, deleted sessions) is
        # overwritten with zeros, so `compact()` leaves none of it in the file.
        conn.execute("PRAGMA secure_delete=ON")
        return conn

    def _group(self) -> _CommitGroup:
        """This process's commit group (a child process after `fork` makes its own)."""
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        group = self._commit_group
        pid = os.getpid()
        if group is not None and group.pid == pid:
            return group
        with self._connections_lock:
            group = self._commit_group
            if group is None or group.pid != pid:
                with _translated():
                    conn = self._connect_writer()
                self._connections.append(conn)
                group = self._commit_group = _CommitGroup(conn, self._space, pid)
        return group

    def _append_transaction(self) -> _GroupMember | _WriteTransaction:
        """Appends of this process's threads commit in groups (`_CommitGroup`), unless
        `group_commit=False`."""
        if not self.group_commit:
            return self._transaction()
        return _GroupMember(self._group())

    def _connect_read_only(self) -> sqlite3.Connection:
        """A `mode=ro` connection; immutable when a WAL file's `-shm` cannot be created
        and no `-wal` holds commits (see the module docstring)."""
        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
        if not self._immutable:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self._busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
                if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                    raise
                wal = f"{self.path}-wal"
                if os.path.exists(wal) and os.path.getsize(wal) > 0:
                    raise StoreUnavailableError(
                        f"cannot read {self.path} read-only: its write-ahead log {wal} holds "
                        f"commits and its index {self.path}-shm cannot be created: open it "
                        f"once with write access to merge the log ({exc})"
                    ) from exc
                self._immutable = True
        return sqlite3.connect(
            uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False
        )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY
        # at once, without its busy handler, while another process holds any lock (several
        # processes opening a new file at once). Retry until `busy_timeout`.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def close(self) -> None:
        """Close every connection this store opened (one per thread); later calls fail with
        `StoreUnavailableError`."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def setup(self) -> None:
        """Create or migrate the schema; safe when several processes do it at once. On a
        read-only store, only check it.

        Raises:
            SchemaVersionError: The file's schema is newer than `SCHEMA_VERSION`, or older
                and the store is read-only.
            StoreNotFoundError: Read-only, and the file holds no agentledger schema yet.
        """
        conn = self._conn()
        if self.read_only:
            version = self.schema_version()
            if version == 0:
                raise StoreNotFoundError(
                    f"SQLite file {self.path} holds no agentledger store yet (schema version 0)"
                )
            if version != SCHEMA_VERSION:
                raise SchemaVersionError(_version_problem(self.path, version, read_only=True))
            return
        with _translated():
            conn.execute("BEGIN IMMEDIATE")
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(_version_problem(self.path, version, read_only=False))
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[target]:
                        if isinstance(statement, str):
                            conn.execute(statement)
                        else:
                            statement(conn)
                    conn.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def schema_version(self) -> int:
        """Return the schema version recorded in the file."""
        with _translated():
            return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    # -- primitives ---------------------------------------------------------------------

    def _transaction(self) -> _WriteTransaction:
        return _WriteTransaction(self._conn(), self._space)

    def _fetch_session(self, session_id: str) -> tuple[SessionRow, str | None, str | None] | None:
        with _translated():
            row = self._conn().execute(_SESSION_SELECT + " WHERE s.id = ?", (session_id,)).fetchone()
        return None if row is None else (SessionRow(*row[:13]), row[13], row[14])

    def _fetch_event_rows(
        self,
        session_id: str,
        *,
        after: int,
        limit: int | None,
        last: int | None,
        types: Sequence[str] | None,
        after_ts: str | None = None,
        before_ts: str | None = None,
        keys: Sequence[str] | None = None,
        key_prefix: str | None = None,
        data_match: Mapping[tuple[str, ...], Any] | None = None,
    ) -> list[EventRow]:
        # Which index serves the read: the key index for keys and key prefixes, the
        # timestamp index for a time window, otherwise the primary key (session_id, seq).
        if keys is not None or key_prefix is not None:
            index = "events_by_key"
        elif after_ts is not None or before_ts is not None:
            index = "events_by_timestamp"
        else:
            index = None
        where = "session_id = ? AND seq > ?"
        params: list[Any] = [session_id, after]
        # Keys compare as UTF-8 bytes (code point order): a key prefix is a range.
        if keys is not None:
            where += f" AND key IN ({', '.join('?' * len(keys))})"
            params.extend(keys)
        if key_prefix is not None:
            low, high = prefix_range(key_prefix)
            where += " AND key >= ?" + ("" if high is None else " AND key < ?")
            params += [low] if high is None else [low, high]
        if data_match:
            for parts, value in data_match.items():
                clause, values = _json_match(parts, value)
                where += clause
                params.extend(values)
        if types:
            where += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(types)
        # Timestamps are fixed-width UTC text, so they compare as text.
        if after_ts is not None:
            where += " AND timestamp > ?"
            params.append(after_ts)
        if before_ts is not None:
            where += " AND timestamp < ?"
            params.append(before_ts)
        conn = self._conn()
        with _translated():
            if last is not None and keys is None and key_prefix is not None:
                rows = self._latest_in_prefix(conn, where, params, session_id, key_prefix, last)
            else:
                sql = f"SELECT {_EVENT_COLUMNS} FROM events"
                sql += f" INDEXED BY {index}" if index else ""
                sql += f" WHERE {where}"
                if last is not None:
                    sql += " ORDER BY seq DESC LIMIT ?"
                    params.append(last)
                else:
                    sql += " ORDER BY seq"
                    if limit is not None:
                        sql += " LIMIT ?"
                        params.append(limit)
                rows = conn.execute(sql, params).fetchall()
        if last is not None:
            rows.reverse()
        return rows

    def _fetch_feed(self, after: int, limit: int) -> list[tuple[int, EventRow]]:
        with _translated():
            rows = (
                self._conn()
                .execute(
                    f"SELECT position, {_EVENT_COLUMNS} FROM events WHERE position > ?"
                    " ORDER BY position LIMIT ?",
                    (after, limit),
                )
                .fetchall()
            )
        return [(r[0], EventRow(*r[1:])) for r in rows]

    def _feed_position(self) -> int:
        with _translated():
            row = self._conn().execute("SELECT position FROM feed_counter").fetchone()
        return 0 if row is None else int(row[0])

    _WINDOWS = (64, 4096)

    def _latest_in_prefix(
        self,
        conn: sqlite3.Connection,
        where: str,
        params: list[Any],
        session_id: str,
        key_prefix: str,
        last: int,
    ) -> list[Any]:
        """The last `last` rows matching `where` (a key prefix among its terms), newest
        first. Looked for in the newest 64, then 4,096 events (the primary key walked back
        from the session's last seq, one query each), then in the prefix's whole range of
        the key index: the latest events of a namespace written recently cost the same
        whatever the ledger's length, and an old namespace costs its range."""
        select = f"SELECT {_EVENT_COLUMNS} FROM events"
        for window in self._WINDOWS:
            rows = conn.execute(
                f"{select} NOT INDEXED WHERE {where} AND seq > (SELECT coalesce(max(seq), 0)"
                " FROM events WHERE session_id = ?) - ? ORDER BY seq DESC LIMIT ?",
                [*params, session_id, window, last],
            ).fetchall()
            if len(rows) == last:
                return rows
        return conn.execute(
            f"{select} INDEXED BY events_by_key WHERE {where} ORDER BY seq DESC LIMIT ?",
            [*params, last],
        ).fetchall()

    def _fetch_scoped(self, app_name: str, user_id: str | None) -> str | None:
        with _translated():
            row = (
                self._conn()
                .execute(
                    "SELECT state FROM scoped_state WHERE app_name = ? AND user_id = ?",
                    (app_name, user_id or _APP_SCOPE),
                )
                .fetchone()
            )
        return None if row is None else str(row[0])

    def _session_exists(self, session_id: str) -> bool:
        with _translated():
            return (
                self._conn().execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone()
                is not None
            )

    def _fetch_session_page(
        self, where: SessionFilter, after_key: tuple[str, str] | None, limit: int
    ) -> list[tuple[SessionRow, str | None, str | None]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("app_name", where.app_name),
            ("user_id", where.user_id),
            ("agent_name", where.agent_name),
            ("status", where.status),
            ("phase", where.phase),
        ):
            if value is not None:
                clauses.append(f"s.{column} = ?")
                params.append(value)
        if where.updated_after is not None:
            clauses.append("s.updated_at > ?")
            params.append(format_timestamp(where.updated_after))
        if where.updated_before is not None:
            clauses.append("s.updated_at < ?")
            params.append(format_timestamp(where.updated_before))
        # By last activity the sessions_by_updated index serves either direction, by
        # creation sessions_by_created (schema version 3).
        column, descending = session_order(where.order)
        if after_key is not None:
            clauses.append(f"(s.{column}, s.id) {'<' if descending else '>'} (?, ?)")
            params.extend(after_key)
        sql = _SESSION_SELECT
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        direction = "DESC" if descending else "ASC"
        sql += f" ORDER BY s.{column} {direction}, s.id {direction} LIMIT ?"
        params.append(limit)
        with _translated():
            rows = self._conn().execute(sql, params).fetchall()
        return [(SessionRow(*r[:13]), r[13], r[14]) for r in rows]

    def compact(self, *, full: bool = True) -> None:
        """Reclaim the space of erased payloads, dropped events and deleted sessions.

        Freed content is already zeros in the database (`secure_delete`), but the
        write-ahead log may still hold older copies of its pages, and the file keeps its
        freed pages for reuse.

        Args:
            full: Rebuild the database file first (`VACUUM`), so it shrinks to what it
                holds (default): it needs free disk space for a copy of the live data and
                makes other writers wait while it runs (readers go on). `False` only does
                the second step, which is enough for the old bytes to be gone.

        Then, in both cases, the whole write-ahead log is checkpointed into the database
        file and truncated to zero bytes (`PRAGMA wal_checkpoint(TRUNCATE)`).

        Raises:
            StoreUnavailableError: A reader or writer kept the log in use (busy); nothing
                is lost, try again.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        self._check_writable()
        with _translated():
            conn = self._conn()
            if full:
                conn.execute("VACUUM")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise StoreUnavailableError(
                f"SQLite {self.path}: the write-ahead log is in use by another connection; "
                "it was not truncated, try compact() again"
            )

    def _delete_session(self, session_id: str, expected_version: int | None) -> bool:
        with self._transaction() as tx:
            if expected_version is not None:
                row = tx.load_session(session_id)
                if row is not None and row.version != expected_version:
                    raise ConcurrencyError(session_id, expected_version, row.version)
            return tx.delete_session(session_id)
