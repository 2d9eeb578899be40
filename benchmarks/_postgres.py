"""PostgreSQL: `PostgresStore` vs `RawPg`, a hand-written psycopg 3 event log.

Each pair gets two fresh schemas in the benchmark database (one for ours, one for raw),
dropped when the run ends (`PostgresBackend.close`).

The raw log is what one would write by hand with psycopg 3, idiomatically: one autocommit
connection, `conn.transaction()` per write, schema-qualified statements, `Jsonb(...)` for
the JSONB columns (psycopg's `json.dumps`), `datetime` for the `timestamptz` columns, and
psycopg's own parsing of both on reads. An append is one transaction that locks the
session's row (`SELECT version … FOR UPDATE`), inserts the event rows and updates the
session's version and `updated_at`, pipelined (`BEGIN` with the locking read, the writes
with `COMMIT`): the same statements and the same two round trips as ours.

Indexes: the raw log has the ones the benchmarked workloads use, as on SQLite: the events'
primary key `(session_id, seq)`, the sessions' primary key and `(updated_at, id)` for the
list. Ours also keeps `events (session_id, type, seq)` (reading by type),
`sessions (app_name, updated_at, id)` and `sessions (app_name, user_id, updated_at, id)`
(filtered lists), so those features' cost on writes and bytes counts as our overhead. Text
keys use the "C" collation on both sides, as ours does.

Durability variants: `synchronous_commit` `on` (the server's default: a commit returns once
its WAL is flushed) and `off` (a crash of the server may lose the last commits; it never
loses or corrupts earlier ones), set per connection through libpq's `options` on both sides.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import psycopg
from _bench import Backend, Pair, RawEvent, RawLog, utcnow
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from agentledger.stores.base import display_url, open_store
from agentledger.stores.postgres import PostgresStore

# The server takes `--name=value` in libpq's `options` as it takes `-c name=value`.
_SYNC_OPTION = {"on": "--synchronous_commit=on", "off": "--synchronous_commit=off"}


def check_server(url: str) -> str | None:
    """`None` when the database at `url` answers (it is created if the server lacks it),
    else why PostgreSQL cannot be benchmarked."""
    try:
        with psycopg.connect(url, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return f"cannot connect to PostgreSQL at {display_url(url)}: {str(exc).strip()}"
    except psycopg.Error as exc:
        return f"bad PostgreSQL URL {display_url(url)}: {exc}"
    dbname = str(conninfo_to_dict(url).get("dbname") or "")
    try:
        admin = make_conninfo(url, dbname="postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(SQL("CREATE DATABASE {}").format(Identifier(dbname)))
    except psycopg.errors.DuplicateDatabase:
        pass  # created meanwhile by someone else
    except psycopg.Error as exc:
        return f"PostgreSQL at {display_url(url)}: database {dbname!r} is missing and cannot be created: {exc}"
    return None


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters added."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class RawPg:
    """The baseline: the event log one would hand-write with psycopg 3 (see the module docs).

    Args:
        conninfo: A libpq URL or connection string.
        schema: The schema holding the tables.
        setup: Create the schema and its tables (they must not exist yet).
    """

    def __init__(self, conninfo: str, schema: str, *, setup: bool = True) -> None:
        self.schema = schema
        self.conn = psycopg.connect(conninfo, autocommit=True)
        s = Identifier(schema).as_string(None)
        if setup:
            with self.conn.transaction():
                self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                self.conn.execute(
                    f"""CREATE TABLE {s}.sessions (
                        id text COLLATE "C" PRIMARY KEY, app_name text COLLATE "C" NOT NULL,
                        user_id text COLLATE "C" NOT NULL, created_at timestamptz NOT NULL,
                        updated_at timestamptz NOT NULL, version bigint NOT NULL,
                        snapshot jsonb NOT NULL)""")
                self.conn.execute(f"CREATE INDEX ON {s}.sessions (updated_at, id)")
                self.conn.execute(
                    f"""CREATE TABLE {s}.events (
                        session_id text COLLATE "C" NOT NULL, seq bigint NOT NULL,
                        id text COLLATE "C" NOT NULL, type text COLLATE "C" NOT NULL,
                        author text NOT NULL, timestamp timestamptz NOT NULL,
                        invocation_id text, data jsonb NOT NULL, state_delta jsonb NOT NULL,
                        PRIMARY KEY (session_id, seq))""")
        self._insert_session = f"INSERT INTO {s}.sessions VALUES (%s, %s, %s, %s, %s, 1, %s)"
        self._insert_event = (
            f"INSERT INTO {s}.events (id, session_id, seq, type, author, timestamp,"
            " invocation_id, data, state_delta) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s)")
        self._lock = f"SELECT version FROM {s}.sessions WHERE id = %s FOR UPDATE"
        self._update = f"UPDATE {s}.sessions SET version = %s, updated_at = %s WHERE id = %s"
        self._deltas = f"SELECT state_delta FROM {s}.events WHERE session_id = %s ORDER BY seq"
        self._events = (
            "SELECT id, session_id, seq, type, author, timestamp, invocation_id, data,"
            f" state_delta FROM {s}.events WHERE session_id = %s ORDER BY seq")
        self._list = (
            "SELECT id, app_name, user_id, created_at, updated_at, version, snapshot"
            f" FROM {s}.sessions ORDER BY updated_at DESC, id DESC LIMIT %s")
        self.tables = [f"{s}.sessions", f"{s}.events"]

    def create(self, app_name: str, user_id: str, state: dict[str, Any], meta: dict[str, Any]) -> str:
        sid, now = secrets.token_hex(13), utcnow()  # 26 characters, as long as a ULID
        stamp = now.isoformat()
        snapshot = {"id": sid, "app_name": app_name, "user_id": user_id, "status": "active",
                    "phase": "initializing", "state": state, "metadata": meta,
                    "created_at": stamp, "updated_at": stamp, "version": 1}
        data = {"app_name": app_name, "user_id": user_id, "metadata": meta}
        with self.conn.transaction():
            self.conn.execute(self._insert_session,
                              (sid, app_name, user_id, now, now, Jsonb(snapshot)))
            self.conn.execute(self._insert_event, (secrets.token_hex(13), sid, 1, "session_created",
                                                   "system", now, Jsonb(data), Jsonb(state)))
        return sid

    def append(self, sid: str, events: list[RawEvent]) -> None:
        conn, now = self.conn, utcnow()
        # Pipelined like ours: BEGIN goes with the locking read, the writes with COMMIT, so
        # an append is two round trips on both sides.
        with conn.pipeline(), conn.transaction():
            row = conn.execute(self._lock, (sid,)).fetchone()
            assert row is not None, sid
            version = row[0]
            params = [(secrets.token_hex(13), sid, version + i, kind, author, now, Jsonb(data),
                       Jsonb(delta)) for i, (kind, author, data, delta) in enumerate(events, 1)]
            if len(params) == 1:
                conn.execute(self._insert_event, params[0])
            else:
                with conn.cursor() as cur:
                    cur.executemany(self._insert_event, params)
            conn.execute(self._update, (version + len(events), now, sid))

    def load_state(self, sid: str) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for (delta,) in self.conn.execute(self._deltas, (sid,)):
            for key, value in delta.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state

    def read_events(self, sid: str) -> list[Any]:
        return self.conn.execute(self._events, (sid,)).fetchall()

    def list_sessions(self, limit: int) -> list[Any]:
        return self.conn.execute(self._list, (limit,)).fetchall()

    def close(self) -> None:
        self.conn.close()


def relation_bytes(conninfo: str, tables: list[str]) -> int:
    """`pg_total_relation_size` (heap, indexes, TOAST, free-space and visibility maps) of
    `tables`, summed, after a plain `VACUUM` of each: the size autovacuum would leave."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        total = 0
        for table in tables:
            conn.execute(f"VACUUM {table}")
            row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
            total += int(row[0]) if row else 0
        return total


class _PgPair(Pair):
    def __init__(self, backend: PostgresBackend, variant: str, tag: str) -> None:
        self.conninfo = backend.url
        ours_url, raw_conninfo, raw_schema = backend.urls(variant, tag)
        store = open_store(ours_url)
        assert isinstance(store, PostgresStore)
        self.ours: PostgresStore = store
        self.raw: RawPg = RawPg(raw_conninfo, raw_schema)

    def sizes(self) -> tuple[int, int]:
        s = Identifier(self.ours.schema).as_string(None)
        ours = [
            f"{s}.{table}"
            for table in ("sessions", "session_activity", "events", "session_state", "scoped_state")
        ]
        tables = self.raw.tables
        self.close()
        return relation_bytes(self.conninfo, ours), relation_bytes(self.conninfo, tables)


class PostgresBackend(Backend):
    name = "postgresql"
    title = "PostgresStore vs raw psycopg 3"
    raw_name = "raw psycopg"
    variants = ("on", "off")
    variant_labels = {"on": "synchronous_commit on", "off": "synchronous_commit off"}
    notes = (
        "Appends at synchronous_commit on and off (both sides); loads, creates, list and bytes",
        "at off. Raw state load folds every state_delta row (no snapshot); ours reads the",
        "session's snapshot row and state rows. Bytes: pg_total_relation_size after VACUUM",
        "(ours: sessions, session_activity, events, session_state, scoped_state; raw:",
        "sessions, events). Ours keeps indexes raw does not (events by type, position, key,",
        "time; sessions by app/user, status, creation); last activity is indexed on",
        "session_activity, not on the session row (raw indexes sessions.updated_at).",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.run = secrets.token_hex(3)
        self.schemas: list[str] = []

    def _schema(self, tag: str) -> str:
        name = f"bench_{self.run}_{len(self.schemas):02d}_{tag}"[:63]
        self.schemas.append(name)
        return name

    def urls(self, variant: str, tag: str) -> tuple[str, str, str]:
        """(our store's URL, the raw log's conninfo, the raw log's schema) of a fresh pair
        at `synchronous_commit` = `variant`; both schemas are dropped by `close`."""
        option = _SYNC_OPTION[variant]
        ours = with_params(self.url, schema=self._schema(f"{tag}_ours"), options=option)
        return ours, make_conninfo(self.url, options=option), self._schema(f"{tag}_raw")

    def open_pair(self, variant: str, tag: str) -> Pair:
        return _PgPair(self, variant, tag)

    def shared(self, variant: str, tag: str) -> tuple[str, Callable[[], RawLog]]:
        ours, conninfo, schema = self.urls(variant, tag)
        open_store(ours).close()
        RawPg(conninfo, schema).close()
        return ours, partial(RawPg, conninfo, schema, setup=False)

    def meta(self) -> dict[str, Any]:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            settings: dict[str, str] = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'wal_sync_method', 'shared_buffers', 'full_page_writes')").fetchall())
        return {"server": display_url(self.url), "postgresql": row[0] if row else "?",
                "psycopg": psycopg.__version__, "settings": settings}

    def close(self) -> None:
        """Drop every schema this run made."""
        if not self.schemas:
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '60s'")
            for name in self.schemas:
                conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(name)))
        self.schemas.clear()
