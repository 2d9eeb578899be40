"""`postgresql://user@host:port/dbname?schema=NAME` — one store shared by many processes and
machines.

Needs the `postgres` extra (`pip install 'agentledger[postgres]'`: psycopg 3 and psycopg-pool).

The contract is enforced by the database, not by a lock in this process:
    - An append runs in one transaction that first locks the session's row
      (`SELECT … FOR UPDATE`), so concurrent writers of one session queue up on the server,
      each sees the version its predecessor committed, and the `expected_version` check
      happens under that lock. `(session_id, seq)` is the events' primary key, so a
      duplicate or a gap cannot be committed even by a writer that skipped the lock.
    - Two `create_session` calls with one id: the second hits the primary key and raises
      `SessionExistsError`.
    - `app:` and `user:` state is read-modified-written under a transaction-scoped advisory
      lock per app and per user (always taken session row → app → user, so writers of
      different sessions of one app cannot deadlock), so concurrent updates of shared state
      from different sessions are never lost.
    - A commit acknowledged by PostgreSQL is as durable as the server's `fsync` and
      `synchronous_commit` settings make it (both on by default: it survives `kill -9` of
      the writer and a server crash).

Server restarts and dropped connections: before the pool hands out a connection, it checks,
without a round trip, that the server has not closed it (an idle connection has nothing to
read); a dead one is replaced, and the pool's other idle connections are checked at once,
so a restart or `pg_terminate_backend` fails no call. A read whose connection dies in
flight is retried once on a fresh connection; a write is never retried (it may have
committed): it fails once with `StoreUnavailableError`. A server that is down makes calls
wait for it up to `pool_timeout`, then fail with `StoreUnavailableError`.

Tables (in the schema chosen with `?schema=`, `public` by default): `sessions` (indexed
columns, `created_at`/`updated_at` as `timestamptz`, the projection without its own state as
the JSON text it was written as in `snapshot`, `last_hash`: the chain hash of its last
event), `session_state` (a session's own state, a row per key: `value` is its JSON text),
`session_activity` (each session's `updated_at`, for last-activity order), `events` (primary key
`(session_id, seq)`, `data`, `state_delta`, `state_ops` and `state_remove` as JSONB, the
event `format`, `payload_hash` and `hash` of the hash chain, see `agentledger.core.chain`,
and `erased` once its payload was erased; a session erased or truncated keeps its
`LedgerBase` as JSON text in `sessions.base`; JSONB keeps values, not their text,
so a read checks the chain over the stored payload hashes and `verify_session` recomputes
those from the values), `scoped_state` (`app:`/`user:` state as JSONB; `user_id = ''` holds the app's) and
`agentledger_schema_version` (one row per applied migration). Text keys use the "C"
collation, so ordering and cursors are byte-wise, as on every other store.

JSONB cannot hold every JSON value exactly, so two things are written in a form it can:
    - The NUL character, which no PostgreSQL string can hold, is stored as U+E000 followed
      by "0", and U+E000 itself as U+E000 followed by "1"; reads turn both back. This applies
      to JSON strings and to the text columns (app, user, agent, event type, author,
      invocation id). So every value every other store keeps is kept here too; SQL that reads
      the tables directly sees the escaped form in strings holding those two characters.
    - JSONB keeps numbers as decimals and prints `1e+23` as the integer
      100000000000000000000000, which would come back as another value of another type;
      floats written with a positive exponent are written as their exact decimal with `.0`
      (`99999999999999991611392.0`) instead, which reads back as the same float. (JSONB has
      no negative zero: `-0.0` reads back as `0.0`, which compares equal.)
JSONB does not keep the order of an object's keys: `data` and `app:`/`user:` state come back
equal, with their keys in JSONB's order (shortest first); a session's own state comes back
equal, its keys in no set order. The snapshot and each own state value are kept as the JSON
text written (no escaping: JSON text holds no NUL character), so they read back exactly;
own state keys are escaped as the text columns are.

URL options (query parameters, or keyword arguments to `open_store`):
    `schema`: The PostgreSQL schema holding the tables (created if missing), so several
        apps or test runs can share one database; default `public`.
    `pool_min_size`, `pool_max_size`: Connections the pool keeps open and may open
        (default 1 and 10). The store is safe to share between threads; each call borrows a
        connection for its duration.
    `pool_timeout`: Seconds a call waits for a free connection (and for the server) before
        `StoreUnavailableError`; default 30.
    `max_event_bytes`, `read_only`, `create`: See `BaseStore`. Read-only, the schema is
        checked, never created or migrated.
    Any other query parameter must be a libpq connection parameter (`sslmode`,
    `connect_timeout` (default 10 s here), `application_name`, …) and goes to the server as
    given; a parameter that is neither is a `ConfigurationError` listing the valid ones.

State keys apart (schema version 4): an append writes only the state keys its events set
or remove (an upsert and a delete, pipelined with the rest of the append), whatever the size
of the state; reading a session gathers its keys into one JSON object in the same query.
The snapshot is text, so a writer recognises the snapshot it wrote last and skips parsing
it. No index on `sessions` covers a column an append changes (`updated_at`, `version`,
`snapshot`, `last_hash`) and the table keeps 30% of each page free (`fillfactor` 70), so
an append updates the session row in place (a HOT update: no new index entries, no dead
ones to vacuum). Last activity is ordered in `session_activity` (`id`, `updated_at`,
indexed by `(updated_at, id)`), a narrow row the append updates in the same statement:
listing by last activity walks that index (joined to the sessions), listing by creation
`sessions_by_created`; the app-and-user and status indexes end in `created_at`, which never
changes.

Event keys (schema version 3) are a `key text COLLATE "C"` column with a partial unique
index on `(session_id, key)`: key lookups and key prefix ranges (code point order) read it;
the latest events of a prefix are looked for among the session's newest 64, then 4,096
events first. `data_match` is JSONB containment (`@>`) plus equality at the path (`#>`),
within the session's events; no GIN index on `data` (see `benchmarks/README.md`).

The schema version is kept in `agentledger_schema_version`; `MIGRATIONS[n]` upgrades version
n - 1 to n and is never edited once released. Opening a store creates or migrates its schema
under a transaction-scoped advisory lock, so processes opening one database at once are safe.
"""

from __future__ import annotations

import json
import os
import re
import select
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    import psycopg.errors
    from psycopg import pq
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import TupleRow, args_row
    from psycopg.sql import Identifier
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - only without the postgres extra
    from agentledger.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "psycopg", "postgres") from exc

from agentledger._ids import new_ids
from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash, rechain
from agentledger.core.keys import prefix_range
from agentledger.errors import (
    AgentLedgerError,
    ConcurrencyError,
    ConfigurationError,
    InvalidEventError,
    SchemaVersionError,
    SessionExistsError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from agentledger.stores.base import (
    Capabilities,
    SessionFilter,
    display_url,
    mask_secrets,
    remember_secrets,
)
from agentledger.stores.shared import (
    COMMON_OPTIONS,
    BaseStore,
    EventRow,
    SessionRow,
    StoreTransaction,
    copy_refused,
    format_timestamp,
    parse_flag,
    session_order,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore"]



def _chain_existing_events(conn: psycopg.Connection[TupleRow], schema: str) -> None:
    """Version 2 (hash chain), for a schema of version 1: compute every event's payload hash
    (over its `data` and `state_delta` as canonical JSON) and chain hash in `seq` order, and
    record each session's last hash. So every event of an upgraded schema is verifiable, as
    if it had been written by this version. Runs in the migration's transaction."""
    rows = conn.execute(
        f"SELECT id, session_id, seq, type, author, {_ts('timestamp')}, invocation_id,"
        f" data::text, state_delta::text, '', '' FROM {schema}.events ORDER BY session_id, seq"
    ).fetchall()
    last: dict[str, str] = {}
    updates = []
    for values in rows:
        row = _event_row(*values)
        try:
            data = canonical_json(json.loads(row.data))
            delta = canonical_json(json.loads(row.state_delta))
        except (TypeError, ValueError):
            data, delta = row.data, row.state_delta
        digest = payload_hash(data, delta)
        chained = event_hash(
            last.get(row.session_id, GENESIS),
            row.session_id,
            row.seq,
            row.id,
            row.type,
            row.author,
            row.timestamp,
            row.invocation_id,
            digest,
        )
        last[row.session_id] = chained
        updates.append((digest, chained, row.session_id, row.seq))
    with conn.cursor() as cur:
        cur.executemany(
            f"UPDATE {schema}.events SET payload_hash = %s, hash = %s"
            " WHERE session_id = %s AND seq = %s",
            updates,
        )
        cur.executemany(
            f"UPDATE {schema}.sessions SET last_hash = %s WHERE id = %s",
            [(h, sid) for sid, h in last.items()],
        )


# SQL turning JSONB text (`{}`: an expression) back into the JSON text that was written:
# `_py_json` in SQL (U+E000 "0" is a NUL, U+E000 "1" a U+E000; see the module docs).
_UNESCAPED = (
    "replace(replace({}, chr(57344) || '0', '\\u0000'), chr(57344) || '1', chr(57344))"
)

Migration = str | Callable[[psycopg.Connection[TupleRow], str], None]
"""A migration step: SQL (`{schema}` is the quoted schema name), or a function given the
connection and the quoted schema name (run in the migration's transaction)."""

MIGRATIONS: list[list[Migration]] = [
    [],  # version 0: an empty schema
    [  # version 1
        """CREATE TABLE {schema}.sessions (
            id text COLLATE "C" PRIMARY KEY,
            app_name text COLLATE "C" NOT NULL,
            user_id text COLLATE "C" NOT NULL,
            agent_name text COLLATE "C",
            status text COLLATE "C" NOT NULL,
            phase text COLLATE "C" NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version bigint NOT NULL,
            snapshot jsonb NOT NULL
        )""",
        # list_sessions: newest first, with or without an app, app-and-user or status
        # filter (a rare status such as "terminated" would otherwise scan most of the
        # table); agent and phase filters are checked on the rows these indexes yield.
        "CREATE INDEX sessions_by_updated ON {schema}.sessions (updated_at, id)",
        "CREATE INDEX sessions_by_app ON {schema}.sessions (app_name, updated_at, id)",
        "CREATE INDEX sessions_by_user ON {schema}.sessions (app_name, user_id, updated_at, id)",
        "CREATE INDEX sessions_by_status ON {schema}.sessions (status, updated_at, id)",
        """CREATE TABLE {schema}.events (
            session_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            id text COLLATE "C" NOT NULL,
            type text COLLATE "C" NOT NULL,
            author text NOT NULL,
            timestamp timestamptz NOT NULL,
            invocation_id text,
            data jsonb NOT NULL,
            state_delta jsonb NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
        # read_events(types=...) on a long ledger reads only the matching events.
        "CREATE INDEX events_by_type ON {schema}.events (session_id, type, seq)",
        """CREATE TABLE {schema}.scoped_state (
            app_name text COLLATE "C" NOT NULL,
            user_id text COLLATE "C" NOT NULL,
            state jsonb NOT NULL,
            PRIMARY KEY (app_name, user_id)
        )""",
    ],
    [  # version 2
        # State operations (JSON Patch shape) applied at commit: a JSON array per event,
        # '[]' for events without any (and for every event written before version 2).
        "ALTER TABLE {schema}.events ADD COLUMN state_ops jsonb NOT NULL DEFAULT '[]'::jsonb",
        # -- the hash chain: every event's payload hash and chain hash, and each session's
        #    last hash (its last acknowledged commit); see agentledger.core.chain.
        "ALTER TABLE {schema}.events ADD COLUMN payload_hash text NOT NULL DEFAULT '',"
        " ADD COLUMN hash text NOT NULL DEFAULT ''",
        "ALTER TABLE {schema}.sessions ADD COLUMN last_hash text NOT NULL DEFAULT ''",
        _chain_existing_events,
        # -- end of the hash chain
    ],
    [  # version 3
        # -- event feed: every event's position in the store-wide feed (read_feed). A
        #    writer takes its positions from a sequence under a transaction-scoped advisory
        #    lock held until its commit, so positions follow commit order even when
        #    transactions commit in another order than they started; events already stored
        #    get positions in the order they were written.
        "CREATE SEQUENCE {schema}.feed_position",
        "ALTER TABLE {schema}.events ADD COLUMN position bigint",
        "UPDATE {schema}.events e SET position = r.position FROM (SELECT session_id, seq,"
        " row_number() OVER (ORDER BY timestamp, id) AS position FROM {schema}.events) r"
        " WHERE e.session_id = r.session_id AND e.seq = r.seq",
        "SELECT setval('{schema}.feed_position', (SELECT count(*) FROM {schema}.events) + 1,"
        " false)",
        "CREATE UNIQUE INDEX events_by_position ON {schema}.events (position)",
        # -- end of event feed
        # -- event keys: an optional idempotency key per event, unique per session; "C"
        #    collation so keys sort by code point and a key prefix is a range of the
        #    (partial: keyed events only) unique index.
        'ALTER TABLE {schema}.events ADD COLUMN key text COLLATE "C"',
        "CREATE UNIQUE INDEX events_by_key ON {schema}.events (session_id, key)"
        " WHERE key IS NOT NULL",
        # -- end of event keys
        # -- ordering indexes: list_sessions(order="created_desc"/"created_asc"), and
        #    read_events(after_timestamp=, before_timestamp=) on a long ledger.
        "CREATE INDEX sessions_by_created ON {schema}.sessions (created_at, id)",
        "CREATE INDEX events_by_timestamp ON {schema}.events (session_id, timestamp)",
        # -- end of ordering indexes
        # -- event format: each event's format number (agentledger.core.events.EVENT_FORMAT;
        #    events written before version 3 are format 1, where a null in state_delta
        #    deletes the key) and its removal list (state_remove, a JSON array of keys).
        "ALTER TABLE {schema}.events ADD COLUMN state_remove jsonb NOT NULL"
        " DEFAULT '[]'::jsonb, ADD COLUMN format integer NOT NULL DEFAULT 1",
        # -- end of event format
        # -- erase and truncate: an event whose payload was erased (`erase_events`) keeps
        #    its row and hashes with `erased` true; a session erased or truncated keeps its
        #    `LedgerBase` (JSON text: where its ledger and its projection start) in `base`.
        "ALTER TABLE {schema}.events ADD COLUMN erased boolean NOT NULL DEFAULT false",
        "ALTER TABLE {schema}.sessions ADD COLUMN base text NOT NULL DEFAULT ''",
        # -- end of erase and truncate
    ],
    [  # version 4
        # -- state keys apart: a session's own state as a row per key (the key as the text
        #    columns keep strings, the value as JSON text), out of the snapshot, so an
        #    append writes only the keys it touches whatever the size of the state.
        """CREATE TABLE {schema}.session_state (
            session_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (session_id, key)
        )""",
        "INSERT INTO {schema}.session_state (session_id, key, value)"
        " SELECT s.id, e.key, " + _UNESCAPED.format("e.value::text")
        + " FROM {schema}.sessions s, jsonb_each(CASE WHEN jsonb_typeof(s.snapshot) = 'object'"
        " AND jsonb_typeof(s.snapshot->'state') = 'object' THEN s.snapshot->'state' END) e",
        # -- end of state keys apart
        # -- a session row every append can update in place (HOT: no index on a column an
        #    append changes, and room on its page). Last activity is ordered in a narrow
        #    table of its own, (id, updated_at) indexed by (updated_at, id): an append moves
        #    that small row's index entries, not those of the wide session row; the app/user
        #    and status indexes order by created_at, which never changes.
        """CREATE TABLE {schema}.session_activity (
            id text COLLATE "C" PRIMARY KEY,
            updated_at timestamptz NOT NULL
        )""",
        "INSERT INTO {schema}.session_activity (id, updated_at)"
        " SELECT id, updated_at FROM {schema}.sessions",
        "CREATE INDEX session_activity_by_updated ON {schema}.session_activity (updated_at, id)",
        "DROP INDEX {schema}.sessions_by_updated, {schema}.sessions_by_app,"
        " {schema}.sessions_by_user, {schema}.sessions_by_status",
        "ALTER TABLE {schema}.sessions SET (fillfactor = 70)",
        # -- the snapshot as the text written (not JSONB), without its state: a writer
        #    recognises the snapshot it wrote last and skips parsing it. Rewrites the table
        #    (with the fillfactor above). A snapshot that is not an object with a state
        #    object stays as it was: reading the session rebuilds it from the ledger.
        "ALTER TABLE {schema}.sessions ALTER COLUMN snapshot TYPE text USING "
        + _UNESCAPED.format(
            "(CASE WHEN jsonb_typeof(snapshot) = 'object'"
            " AND jsonb_typeof(snapshot->'state') = 'object'"
            " THEN snapshot - 'state' ELSE snapshot END)::text"
        ),
        "CREATE INDEX sessions_by_user ON {schema}.sessions (app_name, user_id, created_at, id)",
        "CREATE INDEX sessions_by_status ON {schema}.sessions (status, created_at, id)",
        "ALTER TABLE {schema}.session_state SET (fillfactor = 90)",
        # -- end of the in-place session row
    ],
]
"""Schema migrations; `{schema}` is the quoted schema name; the index of the last entry is
`SCHEMA_VERSION`."""

SCHEMA_VERSION = len(MIGRATIONS) - 1

_VERSION_TABLE = "agentledger_schema_version"
_WALK_BACK = 4096  # events read back from a ledger's end for the latest keys of a prefix
_APP_SCOPE = ""  # scoped_state.user_id for app-wide state (user ids are never empty)
_OPTIONS = ("schema", "pool_min_size", "pool_max_size", "pool_timeout")
_DEFAULT_CONNECT_TIMEOUT = 10

# -- values PostgreSQL cannot hold as they are ----------------------------------------------

_ESC = "\ue000"
_UNESCAPE = re.compile("\ue000([01])")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?[eE]\+?\d+')
_JSON_STRING_PART = re.compile(r"\\\\|\\u0000|\ue000")


def _pg_text(value: str) -> str:
    """A string as a text column keeps it: NUL and U+E000 escaped (see the module docs)."""
    if "\x00" in value or _ESC in value:
        return value.replace(_ESC, _ESC + "1").replace("\x00", _ESC + "0")
    return value


def _unescape(match: re.Match[str]) -> str:
    return "\x00" if match[1] == "0" else _ESC


def _py_text(value: str) -> str:
    """The string `_pg_text` was given."""
    return _UNESCAPE.sub(_unescape, value) if _ESC in value else value


def _string_part(match: re.Match[str]) -> str:
    part = match[0]
    if part == "\\u0000":
        return _ESC + "0"
    return _ESC + "1" if part == _ESC else part


def _json_token(match: re.Match[str]) -> str:
    token = match[0]
    if token[0] == '"':
        if "\\u0000" in token or _ESC in token:
            return _JSON_STRING_PART.sub(_string_part, token)
        return token
    value = float(token)
    # Integral: JSONB would print it without a fraction, and it would read back as an int.
    return f"{int(value)}.0" if value.is_integer() else token


def _pg_json(text: str) -> str:
    """JSON text (from `json` or pydantic) in a form JSONB keeps exactly (see the module docs).

    Both encoders write a positive exponent as `e+`, which is what the fast path looks for.
    """
    if "\\u0000" in text or _ESC in text or "e+" in text:
        return _JSON_TOKEN.sub(_json_token, text)
    return text


def _py_json(text: str) -> str:
    """JSON text read back from JSONB (`col::text`), NUL restored."""
    if _ESC not in text:
        return text
    return _UNESCAPE.sub(lambda m: "\\u0000" if m[1] == "0" else _ESC, text)


def _event_row(
    id: str,
    session_id: str,
    seq: int,
    type: str,
    author: str,
    timestamp: str,
    invocation_id: str | None,
    data: str,
    state_delta: str,
    payload_hash: str,
    hash: str,
    state_ops: str = "[]",
    state_remove: str = "[]",
    format: int = 1,
    key: str | None = None,
    erased: bool = False,
) -> EventRow:
    if any(_ESC in text for text in (data, state_delta, state_ops, state_remove, type, author)) or (
        invocation_id is not None and _ESC in invocation_id
    ):
        type, author, data, state_delta, state_ops, state_remove = (
            _py_text(type),
            _py_text(author),
            _py_json(data),
            _py_json(state_delta),
            _py_json(state_ops),
            _py_json(state_remove),
        )
        invocation_id = None if invocation_id is None else _py_text(invocation_id)
    if key is not None and _ESC in key:
        key = _py_text(key)
    return EventRow(
        id, session_id, seq, type, author, timestamp, invocation_id, data, state_delta,
        payload_hash, hash, state_ops, state_remove, format, key, erased,
    )


def _optional_json(raw: str | None) -> str | None:
    return None if raw is None else _py_json(raw)


def _session_row(*values: Any) -> tuple[SessionRow, str | None, str | None]:
    """A session row as `_Sql.session_with_scopes` reads it (`lock_session` reads no state
    and no scopes: pass `None` for those); the snapshot and the own state are the JSON text
    written, the shared scopes JSONB text."""
    (sid, app, user, agent, status, phase, created, updated, version, snapshot, last, base) = (
        values[:12]
    )
    state, a, u = values[12:]
    row = SessionRow(
        sid,
        _py_text(app),
        _py_text(user),
        None if agent is None else _py_text(agent),
        _py_text(status),
        _py_text(phase),
        created,
        updated,
        version,
        snapshot,
        last,
        base,
        state,
    )
    return row, _optional_json(a), _optional_json(u)


def _ts(column: str) -> str:
    """SQL for a timestamptz column as `format_timestamp` writes it (fixed width, UTC)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


class _Sql:
    """The statements of one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        s = Identifier(schema).as_string(None)
        self.schema = s
        self.version_table = f"{s}.{_VERSION_TABLE}"
        events = (
            f"id, session_id, seq, type, author, {_ts('timestamp')}, invocation_id,"
            " data::text, state_delta::text, payload_hash, hash, state_ops::text,"
            " state_remove::text, format, key, erased"
        )
        self.event_columns = events
        session = (
            f"s.id, s.app_name, s.user_id, s.agent_name, s.status, s.phase, {_ts('s.created_at')},"
            f" {_ts('s.updated_at')}, s.version, s.snapshot, s.last_hash, s.base"
        )
        # A session's own state as one JSON object, from its rows: each key as a JSON
        # string (NUL and U+E000 restored, `_py_json` in SQL), each value as stored.
        key = _UNESCAPED.format("to_json(key)::text")
        state = (
            f"coalesce((SELECT '{{' || string_agg({key} || ':' || value, ',') || '}}'"
            f" FROM {s}.session_state WHERE session_id = <id>), '{{}}')"
        )
        self.lock_session = f"SELECT {session} FROM {s}.sessions s WHERE s.id = %s FOR UPDATE"
        self.load_state = "SELECT " + state.replace("<id>", "%s")
        self.delete_state = f"DELETE FROM {s}.session_state WHERE session_id = %s"
        self.remove_state = f"DELETE FROM {s}.session_state WHERE session_id = %s AND key = ANY(%s)"
        self.save_state = (
            f"INSERT INTO {s}.session_state (session_id, key, value)"
            " SELECT %s, k, v FROM unnest(%s::text[], %s::text[]) AS c (k, v)"
            " ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value"
        )
        scopes = (
            f" LEFT JOIN {s}.scoped_state a ON a.app_name = s.app_name AND a.user_id = ''"
            f" LEFT JOIN {s}.scoped_state u ON u.app_name = s.app_name AND u.user_id = s.user_id"
        )
        columns = f"SELECT {session}, {state.replace('<id>', 's.id')}, a.state::text, u.state::text"
        self.session_with_scopes = f"{columns} FROM {s}.sessions s{scopes}"
        # The same, by last activity: `act` (session_activity) holds the order.
        self.session_by_activity = (
            f"{columns} FROM {s}.session_activity act JOIN {s}.sessions s ON s.id = act.id{scopes}"
        )
        self.all_events = f"SELECT {events} FROM {s}.events WHERE session_id = %s ORDER BY seq"
        self.events = f"SELECT {events} FROM {s}.events WHERE session_id = %s AND seq > %s"
        self.session_exists = f"SELECT 1 FROM {s}.sessions WHERE id = %s"
        self.scoped_state = (
            f"SELECT state::text FROM {s}.scoped_state WHERE app_name = %s AND user_id = %s"
        )
        self.save_scoped_state = (
            f"INSERT INTO {s}.scoped_state (app_name, user_id, state) VALUES (%s, %s, %s::jsonb)"
            " ON CONFLICT (app_name, user_id) DO UPDATE SET state = excluded.state"
        )
        self.insert_event = (
            f"INSERT INTO {s}.events (id, session_id, seq, type, author, timestamp,"
            " invocation_id, data, state_delta, payload_hash, hash, state_ops, state_remove,"
            " format, key, erased, position) VALUES (%s, %s, %s, %s, %s, %s::timestamptz, %s,"
            " %s::jsonb, %s::jsonb, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s,"
            f" nextval('{s}.feed_position'))"
        )
        self.feed = (
            f"SELECT position, {events} FROM {s}.events WHERE position > %s"
            " ORDER BY position LIMIT %s"
        )
        # The last position handed out; a write holding the feed lock may not have
        # committed it yet, so readers may briefly be "behind" by it, never ahead.
        self.feed_position = (
            f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
            f" FROM {s}.feed_position"
        )
        self.keyed_events = (
            f"SELECT {events} FROM {s}.events WHERE session_id = %s AND key = ANY(%s)"
        )
        self.event_headers = (
            f"SELECT seq, id, type, author, {_ts('timestamp')}, invocation_id, payload_hash,"
            f" hash, format FROM {s}.events WHERE session_id = %s AND seq <= %s ORDER BY seq"
        )
        # Positions in the feed for the copies in seq order (under the feed lock, taken
        # before this statement): nextval runs over the rows as the subquery orders them.
        self.copy_events = (
            f"INSERT INTO {s}.events (id, session_id, seq, type, author, timestamp,"
            " invocation_id, data, state_delta, payload_hash, hash, state_ops, state_remove,"
            " format, key, erased, position)"
            " SELECT id, sid, seq, type, author, timestamp, invocation_id, data, state_delta,"
            " payload_hash, hash, state_ops, state_remove, format, key, erased,"
            f" nextval('{s}.feed_position') FROM ("
            " SELECT c.id, %s AS sid, e.seq, e.type, e.author, e.timestamp, e.invocation_id,"
            " e.data, e.state_delta, e.payload_hash, c.hash, e.state_ops, e.state_remove,"
            " e.format, e.key, e.erased"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS c (seq, id, hash)"
            f" JOIN {s}.events e ON e.session_id = %s AND e.seq = c.seq ORDER BY c.seq) AS copy"
        )
        # Each with its session_activity row, in one statement.
        self.insert_session = (
            f"WITH s AS (INSERT INTO {s}.sessions (id, app_name, user_id, agent_name, status,"
            " phase, created_at, updated_at, version, snapshot, last_hash, base) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s, %s, %s)"
            f" RETURNING id, updated_at) INSERT INTO {s}.session_activity (id, updated_at)"
            " SELECT id, updated_at FROM s"
        )
        self.update_session = (
            f"WITH s AS (UPDATE {s}.sessions SET agent_name = %s, status = %s, phase = %s,"
            " updated_at = %s::timestamptz, version = %s, snapshot = %s, last_hash = %s"
            f" WHERE id = %s RETURNING id, updated_at) UPDATE {s}.session_activity act"
            " SET updated_at = s.updated_at FROM s WHERE act.id = s.id"
            " AND act.updated_at <> s.updated_at"
        )
        self.delete_session = f"DELETE FROM {s}.sessions WHERE id = %s RETURNING version"
        self.delete_activity = f"DELETE FROM {s}.session_activity WHERE id = %s"
        self.delete_events = f"DELETE FROM {s}.events WHERE session_id = %s"
        self.erase_event = (
            f"UPDATE {s}.events SET data = '{{}}'::jsonb, state_delta = '{{}}'::jsonb,"
            " state_ops = '[]'::jsonb, state_remove = '[]'::jsonb, erased = true"
            " WHERE session_id = %s AND seq = %s"
        )
        self.drop_events = f"DELETE FROM {s}.events WHERE session_id = %s AND seq < %s"
        self.save_base = f"UPDATE {s}.sessions SET base = %s WHERE id = %s"


def _lock_key(*parts: str) -> str:
    return "\x1f".join(parts)


_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

_T = TypeVar("_T")


def _check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection before it hands it out, without a round trip.

    An idle connection has nothing to read: a server that restarted, or ended the session
    (`pg_terminate_backend`, an idle timeout), has sent its goodbye and closed the socket,
    so a readable socket means the connection is gone. Raising makes the pool discard it
    and hand out another (a fresh one if need be), so a restart fails no call.

    Raises:
        psycopg.OperationalError: The connection is closed or its socket is readable.
    """
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        conn.close()
        raise psycopg.OperationalError("the connection is closed")
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        readable = bool(poller.poll(0))
    else:  # pragma: no cover - Windows
        readable = bool(select.select([fd], [], [], 0)[0])
    if readable:
        conn.close()  # so the pool drops it rather than take it back
        raise psycopg.OperationalError("the server closed the connection while it was idle")


class _PgTransaction(StoreTransaction):
    """The primitives of one write, on one connection, between `BEGIN` and `COMMIT`.

    Round trips are what a writer pays while it holds the session's row lock, so statements
    are pipelined: `BEGIN` goes with the first read, and the writes (which return nothing)
    are queued and sent with `COMMIT` (or before the next read, so reads see them). An
    append costs two round trips, plus one per shared-state scope it touches.
    """

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[TupleRow]) -> None:
        self._sql = store._sql
        self._schema = store.schema
        self._conn = conn
        self._begun = False
        self._creating: str | None = None
        self._locked: set[str] = set()
        self._pending: list[tuple[str, Any]] = []  # (sql, params or a list of them)

    def _send(self, statements: Sequence[tuple[str, Any]]) -> psycopg.Cursor[TupleRow]:
        """Run queued writes, `BEGIN` if not yet sent, then `statements`, in one round trip;
        return the cursor of the last statement."""
        conn = self._conn
        pending, self._pending = self._pending, []
        with self._unique(), conn.pipeline():
            if not self._begun:
                conn.execute("BEGIN")
                self._begun = True
            for sql, params in pending:
                if isinstance(params, list):
                    conn.cursor().executemany(sql, params)
                else:
                    conn.execute(sql, params)
            cur = conn.cursor()
            for sql, params in statements:
                cur = conn.execute(sql, params)
        return cur

    def commit(self) -> None:
        if self._begun or self._pending:
            self._send([("COMMIT", None)])

    def rollback(self) -> None:
        conn = self._conn
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # a broken connection; the pool discards it

    @contextmanager
    def _unique(self) -> Iterator[None]:
        """A unique violation while creating a session: another creator committed first."""
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            if self._creating is not None:
                raise SessionExistsError(self._creating) from exc
            raise

    def load_session(self, session_id: str) -> SessionRow | None:
        # Locks the row until commit: writers of one session queue up here.
        row = self._send([(self._sql.lock_session, (session_id,))]).fetchone()
        if row is None:
            self._creating = session_id
            return None
        return _session_row(*row, None, None, None)[0]

    def load_event_rows(self, session_id: str) -> list[EventRow]:
        rows = self._send([(self._sql.all_events, (session_id,))]).fetchall()
        return [_event_row(*row) for row in rows]

    def _scope_locks(self, app: str, user: str) -> list[tuple[str, Any]]:
        # Lock order: the session row (load_session), then the app, then the user, so two
        # writers never wait for each other in a cycle.
        keys = [_lock_key("agentledger.scope", self._schema, app)]
        if user != _APP_SCOPE:
            keys.append(_lock_key("agentledger.scope", self._schema, app, user))
        locks = [(_LOCK, (key,)) for key in keys if key not in self._locked]
        self._locked.update(keys)
        return locks

    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        app = _pg_text(app_name)
        user = _pg_text(user_id) if user_id else _APP_SCOPE
        read = (self._sql.scoped_state, (app, user))
        row = self._send([*self._scope_locks(app, user), read]).fetchone()
        return None if row is None else _py_json(row[0])

    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        app = _pg_text(app_name)
        user = _pg_text(user_id) if user_id else _APP_SCOPE
        self._pending += self._scope_locks(app, user)
        self._pending.append((self._sql.save_scoped_state, (app, user, _pg_json(state))))

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        params = [
            (
                r.id,
                r.session_id,
                r.seq,
                _pg_text(r.type),
                _pg_text(r.author),
                r.timestamp,
                None if r.invocation_id is None else _pg_text(r.invocation_id),
                _pg_json(r.data),
                _pg_json(r.state_delta),
                r.payload_hash,
                r.hash,
                _pg_json(r.state_ops),
                _pg_json(r.state_remove),
                r.format,
                None if r.key is None else _pg_text(r.key),
                r.erased,  # true only for an event imported as stored (import_events)
            )
            for r in rows
        ]
        if not params:
            return
        # The feed lock, held until commit: positions (nextval in insert_event) are handed
        # out in commit order. Taken last (after the session and scope locks) and only for
        # the commit's round trip, so it is held briefly and never in a cycle.
        self._pending.append((_LOCK, (_lock_key("agentledger.feed", self._schema),)))
        if len(params) == 1:
            self._pending.append((self._sql.insert_event, params[0]))
        else:
            self._pending.append((self._sql.insert_event, params))

    def load_keyed_rows(self, session_id: str, keys: Sequence[str]) -> list[EventRow]:
        wanted = [_pg_text(k) for k in keys]
        rows = self._send([(self._sql.keyed_events, (session_id, wanted))]).fetchall()
        return [_event_row(*row) for row in rows]

    def copy_events(self, source_id: str, target_id: str, upto: int) -> tuple[str, str]:
        """A fork's copy, set-based: only the headers come to the client (to check the
        source's chain and chain the copy: `rechain`); one `INSERT … SELECT` joins the new
        ids and hashes, sent as arrays, with the source's rows, so the payloads never leave
        the server."""
        sql = self._sql
        rows = self._send([(sql.event_headers, (source_id, upto))]).fetchall()
        headers = [
            (seq, event_id, _py_text(kind), _py_text(author), stamp,
             None if turn is None else _py_text(turn), payload, digest, format)
            for seq, event_id, kind, author, stamp, turn, payload, digest, format in rows
        ]
        chained, bad = rechain(headers, source_id, target_id, iter(new_ids(len(headers))))
        if bad is not None or len(chained) != upto:
            raise copy_refused(source_id, bad or len(chained) + 1)
        seqs, ids, hashes = (list(column) for column in zip(*chained, strict=True))
        self._pending.append((_LOCK, (_lock_key("agentledger.feed", self._schema),)))
        self._pending.append((sql.copy_events, (target_id, seqs, ids, hashes, source_id)))
        return str(headers[-1][7]), chained[-1][2]

    def load_state(self, session_id: str) -> str:
        row = self._send([(self._sql.load_state, (session_id,))]).fetchone()
        return "{}" if row is None else str(row[0])

    def save_state(
        self, session_id: str, values: Mapping[str, str], removed: Sequence[str], *, replace: bool
    ) -> None:
        # Values are JSON text as written (a text column holds it exactly: JSON escapes NUL);
        # keys are escaped as the other text columns are.
        pending = self._pending
        if replace:
            pending.append((self._sql.delete_state, (session_id,)))
        elif removed:
            pending.append((self._sql.remove_state, (session_id, [_pg_text(k) for k in removed])))
        if values:
            keys = [_pg_text(k) for k in values]
            pending.append((self._sql.save_state, (session_id, keys, list(values.values()))))

    def save_session(self, row: SessionRow, *, new: bool) -> None:
        text = (_pg_text(row.status), _pg_text(row.phase))
        agent = None if row.agent_name is None else _pg_text(row.agent_name)
        snapshot = row.snapshot  # JSON text (no NUL character): kept as written
        if new:
            names = (row.id, _pg_text(row.app_name), _pg_text(row.user_id), agent, *text)
            times = (row.created_at, row.updated_at, row.version, snapshot, row.last_hash, row.base)
            self._pending.append((self._sql.insert_session, names + times))
        else:
            update = (agent, *text, row.updated_at, row.version, snapshot, row.last_hash, row.id)
            self._pending.append((self._sql.update_session, update))

    def erase_event_rows(self, session_id: str, seqs: Sequence[int]) -> None:
        self._pending.append((self._sql.erase_event, [(session_id, seq) for seq in seqs]))

    def drop_event_rows(self, session_id: str, before: int) -> None:
        self._pending.append((self._sql.drop_events, (session_id, before)))

    def save_base(self, session_id: str, base: str) -> None:
        self._pending.append((self._sql.save_base, (base, session_id)))


def _split_url(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split `url` into a libpq conninfo (our options removed) and our options.

    Raises:
        ConfigurationError: A bad URL, an unknown keyword option, a bad libpq parameter.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_url = {key for key, _ in query}
    ours: dict[str, Any] = {}
    own = sorted((*_OPTIONS, *COMMON_OPTIONS))
    for key, value in options.items():
        if key in own:
            ours[key] = value
        elif key not in in_url:
            raise ConfigurationError(
                f"unknown option {key!r} for {parts.scheme}://; valid options: "
                f"{', '.join(own)} (a libpq parameter goes in the URL)"
            )
    kept = [(key, value) for key, value in query if key not in ours]
    libpq = _libpq_keywords()
    unknown = [key for key, _ in kept if key not in libpq]
    if unknown:
        raise ConfigurationError(
            f"unknown option {unknown[0]!r} in {display_url(url)!r}: neither an agentledger "
            f"option ({', '.join(own)}) nor a libpq connection parameter "
            f"({', '.join(sorted(libpq))})"
        )
    conninfo = urlunsplit(parts._replace(query=urlencode(kept, quote_via=quote)))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        remember_secrets(url)  # libpq may quote the password (a bad percent-escape in it)
        raise ConfigurationError(
            mask_secrets(f"bad PostgreSQL URL {display_url(url)!r}: {exc}")
        ) from exc
    return conninfo, ours


def _libpq_keywords() -> set[str]:
    """The connection parameters the installed libpq knows (`sslmode`, `connect_timeout`…)."""
    return {option.keyword.decode() for option in pq.Conninfo.get_defaults()}


def _number(url: str, name: str, value: Any, kind: type[int] | type[float], low: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name} must be a number, not {value!r} ({url})") from exc
    if not low <= number < float("inf"):  # NaN fails both comparisons
        raise ConfigurationError(
            f"{name} must be a finite number of at least {low}, not {value!r} ({url})"
        )
    return number


class PostgresStore(BaseStore):
    """A store in a PostgreSQL database, shared by any number of processes and machines.

    Args:
        conninfo: A libpq connection string or URL (`postgresql://user:pw@host:5432/db`),
            without agentledger's options.
        schema: The schema holding agentledger's tables; created if missing.
        pool_min_size: Connections kept open (at least 0).
        pool_max_size: Connections opened at most (at least 1 and `pool_min_size`).
        pool_timeout: Seconds to wait for a connection before `StoreUnavailableError`.
        url: The URL it was opened with (for display and for other processes to reopen);
            if omitted, `conninfo` (plus `?schema=` when it is a URL and `schema` is not
            `public`).
        **options: `max_event_bytes`, `clock`, `lifecycle`, `read_only`, `create`; see
            `BaseStore`.

    Raises:
        ConfigurationError: A bad option, or a database whose encoding is not UTF8.
        StoreNotFoundError: The schema holds no store and may not be given one
            (`read_only`, `create=False`).
        SchemaVersionError: The schema was written by a newer agentledger, or is older and
            the store is read-only.
        StoreUnavailableError: The server cannot be reached or refuses the connection.

    Example:
        >>> with open_store("postgresql://app@db.internal/agents?schema=ledger") as store:
        ...     store.list_sessions(limit=10)
    """

    scheme = "postgresql"
    capabilities = Capabilities(persistent=True, multi_process=True)
    _payload_is_canonical = False  # JSONB keeps values, not their text
    _copies_in_transaction = True
    _state_apart = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        pool_timeout: float = 30.0,
        url: str | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(schema, str) or not 0 < len(schema.encode()) < 64 or "\x00" in schema:
            raise ConfigurationError(f"schema must be a name of 1 to 63 bytes, not {schema!r}")
        if url is None:
            url = conninfo
            if schema != "public" and urlsplit(conninfo).scheme in ("postgresql", "postgres"):
                url += ("&" if "?" in conninfo else "?") + urlencode({"schema": schema}, quote_via=quote)
        super().__init__(url=url, **options)
        if pool_max_size < max(1, pool_min_size) or pool_min_size < 0:
            raise ConfigurationError(
                f"need 0 <= pool_min_size <= pool_max_size and pool_max_size >= 1, not "
                f"{pool_min_size} and {pool_max_size}"
            )
        self.schema = schema
        self._sql = _Sql(schema)
        self._pool_timeout = float(pool_timeout)
        self._closed = False
        self._close_lock = threading.Lock()
        remember_secrets(conninfo)  # so driver messages that echo them are masked
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                mask_secrets(f"bad PostgreSQL connection string: {exc}")
            ) from exc
        self._where = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
            f"/{params.get('dbname') or params.get('user') or ''}"
        )
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT
        self._conninfo = conninfo
        self._connect_kwargs = kwargs
        self._pool_sizes = (pool_min_size, pool_max_size)
        self.setup()
        self._pool = self._new_pool()
        self._pid = os.getpid()

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> PostgresStore:
        """Open `postgresql://user@host:port/db?schema=NAME&pool_max_size=N&...` (see the
        module docs for the options)."""
        conninfo, opts = _split_url(url, options)
        display = display_url(url)
        for name, kind, low in (
            ("max_event_bytes", int, 256),
            ("pool_min_size", int, 0),
            ("pool_max_size", int, 1),
            ("pool_timeout", float, 0),
        ):
            if name in opts:
                opts[name] = _number(display, name, opts[name], kind, low)
        for name in ("read_only", "create"):
            if name in opts:
                try:
                    opts[name] = parse_flag(opts[name])
                except ValueError as exc:
                    raise ConfigurationError(f"bad option {name} in {display!r}: {exc}") from exc
        return cls(conninfo, url=url, **opts)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {display_url(self.url)} schema={self.schema!r}>"

    # -- connections --------------------------------------------------------------------

    def _translate(self, exc: psycopg.Error) -> AgentLedgerError:
        """The agentledger error for a psycopg error (raise it `from exc`), its message
        with any secret the driver echoed masked."""
        error = self._translate_unmasked(exc)
        error.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in error.args)
        return error

    def _translate_unmasked(self, exc: psycopg.Error) -> AgentLedgerError:
        if isinstance(exc, PoolClosed) or self._closed:
            return StoreUnavailableError(f"{self!r} is closed")
        if isinstance(exc, PoolTimeout):
            return StoreUnavailableError(
                f"PostgreSQL at {self._where}: no connection within {self._pool_timeout} s "
                f"(server down, or all {self._pool.max_size} connections busy): {exc}"
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailableError(f"PostgreSQL at {self._where} is unavailable: {exc}")
        if isinstance(
            exc, (psycopg.errors.UntranslatableCharacter, psycopg.errors.CharacterNotInRepertoire)
        ):
            return InvalidEventError(f"PostgreSQL cannot store this text: {exc}")
        return StoreError(f"PostgreSQL at {self._where}: {exc}")

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        return ConnectionPool(
            self._conninfo,
            kwargs=self._connect_kwargs,
            min_size=self._pool_sizes[0],
            max_size=self._pool_sizes[1],
            timeout=self._pool_timeout,
            name=f"agentledger {self._where}",
            check=self._check_pooled,
            open=True,
        )

    def _check_pooled(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check before it hands out `conn` (`_check_idle_connection`). A dead
        one means the server restarted or dropped sessions: the pool's other idle
        connections are checked at once too (one round trip each), so the caller waits
        for one fresh connection instead of meeting each dead one in turn.

        Raises:
            psycopg.OperationalError: `conn` is dead (the pool discards it).
        """
        try:
            _check_idle_connection(conn)
        except psycopg.OperationalError:
            self._pool.check()
            raise

    def _pool_here(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        """This process's pool: a child forked from the process that opened the store must
        not use the parent's connections, so it gets a pool of its own on first use."""
        if self._pid != os.getpid():
            with self._close_lock:
                if self._pid != os.getpid():
                    # The parent's pool is left alone: psycopg does not close connections
                    # inherited through fork, which the parent still uses.
                    self._pool, self._pid = self._new_pool(), os.getpid()
        return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """Borrow a pooled connection (autocommit); psycopg errors become ours."""
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        try:
            with self._pool_here().connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._translate(exc) from exc

    def _read(self, query: Callable[[psycopg.Connection[TupleRow]], _T]) -> _T:
        """Run a read-only `query` on a pooled connection; a connection lost meanwhile (the
        server restarted, or ended the session, after the pool checked it) is retried once
        on a fresh one: a read is safe to repeat. Writes are never retried (`_transaction`).

        Raises:
            StoreUnavailableError: The server cannot be reached, or the retry failed too.
        """
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        for attempt in (1, 2):
            try:
                with self._pool_here().connection() as conn:
                    return query(conn)
            except (PoolTimeout, PoolClosed) as exc:  # waiting again would not help
                raise self._translate(exc) from exc
            except psycopg.OperationalError as exc:
                if attempt == 2 or self._closed:
                    raise self._translate(exc) from exc
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection pool (the one this process opened; a forked child leaves
        its parent's alone); later calls fail with `StoreUnavailableError`."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        pool = getattr(self, "_pool", None)
        # A pool inherited through fork() holds the parent's sockets: closing it here would
        # end the parent's sessions on the server. Only the process that made it closes it.
        if pool is not None and getattr(self, "_pid", None) == os.getpid():
            pool.close()

    # -- schema -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create or migrate the schema; safe when several processes do it at once.

        Raises:
            SchemaVersionError: The schema's version is newer than `SCHEMA_VERSION`.
            ConfigurationError: The database's encoding is not UTF8.
            StoreUnavailableError: The server cannot be reached.
            StoreError: A migration failed; nothing was changed.
        """
        sql = self._sql
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                with conn.transaction():
                    conn.execute(_LOCK, (_lock_key("agentledger.setup", self.schema),))
                    (encoding,) = conn.execute("SHOW server_encoding").fetchone() or ("",)
                    if encoding != "UTF8":
                        raise ConfigurationError(
                            f"PostgreSQL database {self._where} has encoding {encoding}; "
                            "agentledger needs a UTF8 database"
                        )
                    schema_exists = conn.execute(
                        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                    ).fetchone()
                    found = conn.execute("SELECT to_regclass(%s)", (sql.version_table,)).fetchone()
                    missing = schema_exists is None or found is None or found[0] is None
                    if missing and not self.create:
                        why = "opened read-only" if self.read_only else "opened with create=False"
                        raise StoreNotFoundError(
                            f"PostgreSQL schema {self.schema!r} at {self._where} holds no "
                            f"agentledger store ({why}: nothing was created)"
                        )
                    if schema_exists is None:
                        conn.execute(f"CREATE SCHEMA {sql.schema}")
                    if found is None or found[0] is None:
                        conn.execute(
                            f"CREATE TABLE {sql.version_table} (version integer PRIMARY KEY,"
                            " applied_at timestamptz NOT NULL DEFAULT now())"
                        )
                    version = self._read_version(conn)
                    if version > SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"PostgreSQL schema {self.schema!r} at {self._where} has agentledger "
                            f"schema version {version}, but this agentledger knows versions up "
                            f"to {SCHEMA_VERSION}; upgrade agentledger to open it"
                        )
                    if self.read_only and version < SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"PostgreSQL schema {self.schema!r} at {self._where} has agentledger "
                            f"schema version {version} and this agentledger reads version "
                            f"{SCHEMA_VERSION}; a read-only open does not migrate it: open it "
                            "for writing once to migrate it (agentledger migrate, or any "
                            "command that writes)"
                        )
                    for target in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in MIGRATIONS[target]:
                            if isinstance(statement, str):
                                conn.execute(statement.format(schema=sql.schema))
                            else:
                                statement(conn, sql.schema)
                        conn.execute(
                            f"INSERT INTO {sql.version_table} (version) VALUES (%s)", (target,)
                        )
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                raise StoreUnavailableError(
                    mask_secrets(f"cannot connect to PostgreSQL at {self._where}: {exc}".strip())
                ) from exc
            raise StoreError(
                mask_secrets(
                    f"PostgreSQL at {self._where}: setting up schema {self.schema!r} failed, "
                    f"nothing was changed: {exc}"
                )
            ) from exc

    def _read_version(self, conn: psycopg.Connection[TupleRow]) -> int:
        sql = f"SELECT coalesce(max(version), 0) FROM {self._sql.version_table}"
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def schema_version(self) -> int:
        """Return the schema version recorded in the database."""
        return self._read(self._read_version)

    # -- primitives ---------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[_PgTransaction]:
        with self._connection() as conn:
            tx = _PgTransaction(self, conn)
            try:
                yield tx
                tx.commit()
            except BaseException:
                tx.rollback()
                raise

    def _fetch_session(self, session_id: str) -> tuple[SessionRow, str | None, str | None] | None:
        sql = self._sql.session_with_scopes + " WHERE s.id = %s"

        def query(
            conn: psycopg.Connection[TupleRow],
        ) -> tuple[SessionRow, str | None, str | None] | None:
            cur = conn.cursor(row_factory=args_row(_session_row))
            return cur.execute(sql, (session_id,)).fetchone()

        return self._read(query)

    def _fetch_feed(self, after: int, limit: int) -> list[tuple[int, EventRow]]:
        sql = self._sql.feed

        def query(conn: psycopg.Connection[TupleRow]) -> list[tuple[int, EventRow]]:
            rows = conn.execute(sql, (after, limit)).fetchall()
            return [(int(r[0]), _event_row(*r[1:])) for r in rows]

        return self._read(query)

    def _feed_position(self) -> int:
        sql = self._sql.feed_position

        def query(conn: psycopg.Connection[TupleRow]) -> int:
            row = conn.execute(sql).fetchone()
            return 0 if row is None else int(row[0])

        return self._read(query)

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
        sql = self._sql.events
        params: list[Any] = [session_id, after]
        # Keyed reads: the events_by_key index ("C" collation: a key prefix is a range).
        if keys is not None:
            sql += " AND key = ANY(%s)"
            params.append([_pg_text(k) for k in keys])
        cut = (len(sql), len(params))
        if key_prefix is not None:
            low, high = prefix_range(_pg_text(key_prefix))
            sql += " AND key >= %s" + ("" if high is None else " AND key < %s")
            params += [low] if high is None else [low, high]
        resume = (len(sql), len(params))
        if data_match:
            # Containment (`@>`, which a GIN index on data could serve) narrows, and
            # the value at the path decides exactly (jsonb equality: 1 = 1.0, and a
            # boolean equals only a boolean).
            for parts, value in data_match.items():
                nested: Any = value
                for part in reversed(parts):
                    nested = {part: nested}
                sql += " AND data @> %s::jsonb AND data #> %s = %s::jsonb"
                params += [
                    _pg_json(canonical_json(nested)),
                    [_pg_text(p) for p in parts],
                    _pg_json(canonical_json(value)),
                ]
        if types:
            sql += " AND type = ANY(%s)"
            params.append([_pg_text(t) for t in types])
        # Within the session's rows (primary key (session_id, seq)).
        if after_ts is not None:
            sql += " AND timestamp > %s::timestamptz"
            params.append(after_ts)
        if before_ts is not None:
            sql += " AND timestamp < %s::timestamptz"
            params.append(before_ts)
        walk_back = last is not None and keys is None and key_prefix is not None
        top_sql = f"SELECT coalesce(max(seq), 0) FROM {self._sql.schema}.events WHERE session_id = %s"
        if last is not None:
            params.append(last)
            tail = " ORDER BY seq DESC LIMIT %s"
        else:
            tail = " ORDER BY seq"
            if limit is not None:
                tail += " LIMIT %s"
                params.append(limit)

        def query(conn: psycopg.Connection[TupleRow]) -> list[EventRow]:
            cur = conn.cursor(row_factory=args_row(_event_row))
            if walk_back:
                # The latest events of a key namespace: looked for in the newest events
                # first (a short walk back the primary key), then in the namespace's
                # whole range of the key index; so a namespace written recently costs
                # the same whatever the ledger's length.
                prefix = _pg_text(key_prefix or "")
                for window in (64, _WALK_BACK):
                    recent = cur.execute(
                        sql[: cut[0]] + " AND left(key, %s) = %s" + sql[resume[0] :]
                        + f" AND seq > ({top_sql}) - %s" + tail,
                        [
                            *params[: cut[1]], len(prefix), prefix, *params[resume[1] : -1],
                            session_id, window, last,
                        ],
                    ).fetchall()
                    if len(recent) == last:
                        return recent
            return cur.execute(sql + tail, params).fetchall()

        rows = self._read(query)
        if last is not None:
            rows.reverse()
        return rows

    def _fetch_scoped(self, app_name: str, user_id: str | None) -> str | None:
        sql = self._sql.scoped_state
        params = (_pg_text(app_name), _pg_text(user_id) if user_id else _APP_SCOPE)
        row = self._read(lambda conn: conn.execute(sql, params).fetchone())
        return None if row is None else _py_json(row[0])

    def _session_exists(self, session_id: str) -> bool:
        sql = self._sql.session_exists
        return self._read(lambda conn: conn.execute(sql, (session_id,)).fetchone() is not None)

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
                clauses.append(f"s.{column} = %s")
                params.append(_pg_text(value))
        # By creation sessions_by_created serves either direction; by last activity
        # session_activity_by_updated (schema version 4: updated_at is indexed there, not
        # on the session row, so an append updates the session row in place).
        column, descending = session_order(where.order)
        table = "act" if column == "updated_at" else "s"
        if where.updated_after is not None:
            clauses.append(f"{table}.updated_at > %s::timestamptz")
            params.append(format_timestamp(where.updated_after))
        if where.updated_before is not None:
            clauses.append(f"{table}.updated_at < %s::timestamptz")
            params.append(format_timestamp(where.updated_before))
        if after_key is not None:
            clauses.append(
                f"({table}.{column}, {table}.id) {'<' if descending else '>'}"
                " (%s::timestamptz, %s)"
            )
            params.extend(after_key)
        sql = self._sql.session_by_activity if table == "act" else self._sql.session_with_scopes
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        direction = "DESC" if descending else "ASC"
        sql += f" ORDER BY {table}.{column} {direction}, {table}.id {direction} LIMIT %s"
        params.append(limit)
        def query(
            conn: psycopg.Connection[TupleRow],
        ) -> list[tuple[SessionRow, str | None, str | None]]:
            cur = conn.cursor(row_factory=args_row(_session_row))
            return cur.execute(sql, params).fetchall()

        return self._read(query)

    def compact(self, *, full: bool = True) -> None:
        """Reclaim the space of erased payloads, dropped events and deleted sessions.

        PostgreSQL keeps an updated or deleted row's old version in the table until a
        vacuum removes it (no query sees it, `pg_dump` does not dump it).

        Args:
            full: `VACUUM FULL` the store's tables (default): they are rewritten into new
                files and the old ones deleted, so no old row version's bytes stay in the
                table files. It locks each table while it runs (reads and writes of the
                store wait), for a time proportional to the table's size. `False` runs a
                plain `VACUUM`: no lock, the space is marked free for reuse, but old
                bytes may stay in the files until overwritten. PostgreSQL's write-ahead
                log, archives and backups keep their copies until they age out.

        Raises:
            StoreUnavailableError: The server cannot be reached.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        self._check_writable()
        command = "VACUUM (FULL)" if full else "VACUUM"
        tables = ", ".join(
            f"{self._sql.schema}.{name}"
            for name in ("events", "sessions", "session_activity", "session_state", "scoped_state")
        )
        with self._connection() as conn:  # autocommit: VACUUM runs outside a transaction
            conn.execute(f"{command} {tables}")

    def _delete_session(self, session_id: str, expected_version: int | None) -> bool:
        with self._connection() as conn, conn.transaction():
            # The session row first: it waits for an append in progress to commit, so the
            # events deleted next include that append's (and the version checked is final).
            found = conn.execute(self._sql.delete_session, (session_id,)).fetchone()
            if found is None:
                return False
            if expected_version is not None and found[0] != expected_version:
                raise ConcurrencyError(session_id, expected_version, found[0])  # rolls back
            conn.execute(self._sql.delete_events, (session_id,))
            conn.execute(self._sql.delete_state, (session_id,))
            conn.execute(self._sql.delete_activity, (session_id,))
            return True
