"""The systems `bench_peers.py` runs side by side: the bare raw floor, ours, and the peers.

Each system is driven through its own public API only, one workload step per call, with the
same ~200-byte JSON event (a user message's text and a two-key state delta). Where a peer has
no equivalent of a workload its method raises `NotImplementedError` and the figure reads
"n/a". Peers' libraries are imported when a system is opened, so the script runs with only
our dependencies installed (`missing()` says which peer is absent).

Locations: a SQLite or file system gets its own empty folder; a PostgreSQL system gets its
own empty database (a libpq URL), so sizes are each system's alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sqlite3
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from agentledger.core.events import NewEvent
from agentledger.stores.base import open_store

T = TypeVar("T")

TEXT = ("Please summarise the incident report from last night, list the follow-ups and who "
        "owns each of them, then draft the note #")
APP, USER = "bench", "u1"
STATE = {"topic": "incident review", "turns": 0}


def event_parts(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The benchmark event's (data, state_delta)."""
    return {"text": f"{TEXT}{i:06d}", "lang": "en"}, {"turn": i, "last_author": "user"}


def event_json(i: int) -> str:
    """The benchmark event as the raw floor stores it: ~200 bytes of compact JSON."""
    data, delta = event_parts(i)
    return json.dumps({"type": "user_message", "author": "user", "data": data,
                       "state_delta": delta}, separators=(",", ":"))


def _installed(*modules: str) -> str | None:
    for name in modules:
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return name
    return None


def dir_size(path: Path) -> int:
    """Bytes of every file under `path`, SQLite WAL files checkpointed into their database
    first (a side connection runs `PRAGMA wal_checkpoint(TRUNCATE)`)."""
    for db in path.glob("*.db"):
        try:
            with sqlite3.connect(db, timeout=30) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        except sqlite3.Error:
            pass
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pg_size(url: str) -> int:
    """`pg_total_relation_size` of every table in the database at `url` (no VACUUM)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchone()
    return int(row[0]) if row else 0


def alchemy_url(url: str, driver: str = "psycopg") -> str:
    """A libpq URL as SQLAlchemy takes it for `driver`."""
    return "postgresql+" + driver + "://" + url.split("://", 1)[1]


class System:
    """One system under test. `loc` is a folder (SQLite, files) or a database URL.

    Handles are whatever the system's API keeps for a session; `hid`/`attach` turn one into
    a string and back (in another process, for the concurrency workload).
    """

    backend = "sqlite"
    notes = ""

    def __init__(self, loc: str, setup: bool = True) -> None:
        self.loc = loc

    # Sessions
    def create(self) -> Any:
        """A new, empty session for the append and read workloads (untimed)."""
        raise NotImplementedError

    def create_timed(self) -> Any:
        """One timed create (the creates workload); n/a where sessions are implicit."""
        raise NotImplementedError

    def hid(self, h: Any) -> str:
        return str(h)

    def attach(self, sid: str) -> Any:
        return sid

    # Writes
    def append(self, h: Any, i: int) -> Any:
        raise NotImplementedError

    def append_batch(self, h: Any, i: int, n: int) -> Any:
        raise NotImplementedError

    # Reads
    def read_all(self, h: Any) -> int:
        """Every event of the session, decoded; how many."""
        raise NotImplementedError

    def count(self, h: Any) -> int:
        """How many events the session's history holds (for lost writes)."""
        return self.read_all(h)

    def state(self, h: Any) -> Any:
        raise NotImplementedError

    def list_sessions(self, n: int) -> int:
        raise NotImplementedError

    def size(self) -> int:
        return pg_size(self.loc) if self.backend == "postgresql" else dir_size(Path(self.loc))

    def close(self) -> None:
        return None


class _Async:
    """An event loop of its own, for the async APIs (OpenAI Agents sessions, ADK)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close_loop(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


# -- the raw floor ---------------------------------------------------------------------------

class RawSqlite(System):
    """`sqlite3`, WAL, `synchronous` FULL or NORMAL: per append a plain `INSERT` of the JSON
    event into `events (id INTEGER PRIMARY KEY, session_id, body)` (indexed by
    `(session_id, id)`) and a `COMMIT`; sessions are rows of `sessions (id, updated_at, meta)`."""

    sync = "FULL"

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        self.conn = sqlite3.connect(Path(loc) / "raw.db", isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={self.sync}")
        self.conn.executescript(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY,"
            " session_id TEXT NOT NULL, body TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, id);"
            "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY,"
            " updated_at TEXT NOT NULL, meta TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS sessions_by_updated ON sessions (updated_at, id);")

    def create(self) -> str:
        return uuid.uuid4().hex

    def create_timed(self) -> str:
        sid = uuid.uuid4().hex
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO sessions VALUES (?, strftime('%Y-%m-%dT%H:%M:%f'), ?)",
                          (sid, json.dumps({"app": APP, "user": USER, "state": STATE})))
        self.conn.execute("COMMIT")
        return sid

    def append(self, h: str, i: int) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO events (session_id, body) VALUES (?, ?)",
                          (h, event_json(i)))
        self.conn.execute("COMMIT")

    def append_batch(self, h: str, i: int, n: int) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO events (session_id, body) VALUES (?, ?)",
                              [(h, event_json(i + k)) for k in range(n)])
        self.conn.execute("COMMIT")

    def read_all(self, h: str) -> int:
        rows = self.conn.execute("SELECT body FROM events WHERE session_id = ? ORDER BY id",
                                 (h,)).fetchall()
        return len([json.loads(body) for (body,) in rows])

    def list_sessions(self, n: int) -> int:
        rows = self.conn.execute("SELECT id, updated_at, meta FROM sessions"
                                 " ORDER BY updated_at DESC, id DESC LIMIT ?", (n,)).fetchall()
        return len([(sid, at, json.loads(meta)) for sid, at, meta in rows])

    def close(self) -> None:
        self.conn.close()


class RawSqliteNormal(RawSqlite):
    sync = "NORMAL"


class RawPg(System):
    """psycopg 3, `synchronous_commit=on`: per append one autocommitted `INSERT` of the event
    (JSONB) into `events (id bigserial, session_id, body)` (indexed by `(session_id, id)`)."""

    backend = "postgresql"

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        import psycopg

        self.conn = psycopg.connect(loc, autocommit=True,
                                    options="-c synchronous_commit=on")
        if setup:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS events (id bigserial PRIMARY KEY,"
                " session_id text COLLATE \"C\" NOT NULL, body jsonb NOT NULL)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS events_by_session"
                              " ON events (session_id, id)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS sessions (id text COLLATE \"C\" PRIMARY KEY,"
                " updated_at timestamptz NOT NULL, meta jsonb NOT NULL)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS sessions_by_updated"
                              " ON sessions (updated_at, id)")

    def create(self) -> str:
        return uuid.uuid4().hex

    def create_timed(self) -> str:
        sid = uuid.uuid4().hex
        self.conn.execute("INSERT INTO sessions VALUES (%s, now(), %s::jsonb)",
                          (sid, json.dumps({"app": APP, "user": USER, "state": STATE})))
        return sid

    def append(self, h: str, i: int) -> None:
        self.conn.execute("INSERT INTO events (session_id, body) VALUES (%s, %s::jsonb)",
                          (h, event_json(i)))

    def append_batch(self, h: str, i: int, n: int) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany("INSERT INTO events (session_id, body) VALUES (%s, %s::jsonb)",
                            [(h, event_json(i + k)) for k in range(n)])

    def read_all(self, h: str) -> int:
        rows = self.conn.execute("SELECT body FROM events WHERE session_id = %s ORDER BY id",
                                 (h,)).fetchall()
        return len(rows)

    def list_sessions(self, n: int) -> int:
        rows = self.conn.execute("SELECT id, updated_at, meta FROM sessions"
                                 " ORDER BY updated_at DESC, id DESC LIMIT %s", (n,)).fetchall()
        return len(rows)

    def close(self) -> None:
        self.conn.close()


# -- ours ------------------------------------------------------------------------------------

def ours_event(i: int) -> NewEvent:
    data, delta = event_parts(i)
    return NewEvent(type="user_message", author="user", data=data, state_delta=delta)


class Ours(System):
    """agentledger through `open_store(url)`: `create_session`, `append`, `read_events`,
    `get_session` (the state read), `list_sessions`."""

    def url(self) -> str:
        raise NotImplementedError

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        self.store = open_store(self.url())

    def create(self) -> str:
        return self.store.create_session(app_name=APP, user_id=USER, state=STATE).id

    create_timed = create

    def append(self, h: str, i: int) -> None:
        self.store.append(h, [ours_event(i)])

    def append_batch(self, h: str, i: int, n: int) -> None:
        self.store.append(h, [ours_event(i + k) for k in range(n)])

    def read_all(self, h: str) -> int:
        return len(self.store.read_events(h))

    def state(self, h: str) -> Any:
        return self.store.get_session(h).state

    def list_sessions(self, n: int) -> int:
        return len(self.store.list_sessions(limit=n).sessions)

    def close(self) -> None:
        self.store.close()


class OursSqlite(Ours):
    durability = "full"

    def url(self) -> str:
        return f"sqlite:///{Path(self.loc) / 'ours.db'}?durability={self.durability}"


class OursSqliteNormal(OursSqlite):
    durability = "normal"


class OursFile(Ours):
    def url(self) -> str:
        return f"file://{Path(self.loc) / 'ledger'}"


class OursPg(Ours):
    backend = "postgresql"

    def url(self) -> str:
        return self.loc


# -- eventsourcing ---------------------------------------------------------------------------

class EventSourcing(System):
    """eventsourcing's `Application` with one aggregate per session (`_peers_es.Conversation`):
    an append triggers one aggregate event and `save`s it (a batch: ten events, one `save`);
    the full history is `app.events.get(id)`, the state read `app.repository.get(id)` (a fold
    of every event: snapshotting is off by default); no session listing."""

    def env(self) -> dict[str, str]:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(Path(self.loc) / "es.db")}

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        from eventsourcing.application import Application

        env = self.env()
        if not setup:  # a writer process: 8 creating the tables at once can fail on PostgreSQL
            env["CREATE_TABLE"] = "no"  # ("tuple concurrently updated"), leaving the others waiting
        self.app: Any = Application(env=env)

    def create(self) -> Any:
        from _peers_es import Conversation

        agg = Conversation(state=STATE)
        self.app.save(agg)
        return agg

    create_timed = create

    def hid(self, h: Any) -> str:
        return str(h.id)

    def attach(self, sid: str) -> Any:
        return self.app.repository.get(uuid.UUID(sid))

    def append(self, h: Any, i: int) -> None:
        data, delta = event_parts(i)
        h.record(data["text"], data["lang"], delta)
        self.app.save(h)

    def append_batch(self, h: Any, i: int, n: int) -> None:
        for k in range(n):
            data, delta = event_parts(i + k)
            h.record(data["text"], data["lang"], delta)
        self.app.save(h)

    def read_all(self, h: Any) -> int:
        return len(list(self.app.events.get(h.id)))

    def state(self, h: Any) -> Any:
        return self.app.repository.get(h.id).state

    def close(self) -> None:
        self.app.close()


class EventSourcingPg(EventSourcing):
    backend = "postgresql"

    def env(self) -> dict[str, str]:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.loc)
        return {"PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": str(info.get("dbname", "")),
                "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
                "POSTGRES_PORT": str(info.get("port", "5432")),
                "POSTGRES_USER": str(info.get("user", "postgres")),
                "POSTGRES_PASSWORD": str(info.get("password", ""))}


# -- OpenAI Agents ---------------------------------------------------------------------------

def openai_item(i: int) -> dict[str, Any]:
    data, _ = event_parts(i)
    return {"type": "message", "role": "user", "content": data["text"]}


class OpenAISqlite(System, _Async):
    """OpenAI Agents' `SQLiteSession(session_id, db_path)`: an append is `add_items` of one
    input item (the same text), the full history `get_items()`. Sessions are implicit (made
    by the first `add_items`): no create, no listing, no state."""

    def __init__(self, loc: str, setup: bool = True) -> None:
        System.__init__(self, loc)
        _Async.__init__(self)
        self.sessions: list[Any] = []

    def open_session(self, sid: str) -> Any:
        from agents import SQLiteSession

        session = SQLiteSession(sid, str(Path(self.loc) / "openai.db"))
        self.sessions.append(session)
        return session

    def create(self) -> Any:
        return self.open_session(uuid.uuid4().hex)

    def hid(self, h: Any) -> str:
        return str(h.session_id)

    def attach(self, sid: str) -> Any:
        return self.open_session(sid)

    def append(self, h: Any, i: int) -> None:
        self.run(h.add_items([openai_item(i)]))

    def append_batch(self, h: Any, i: int, n: int) -> None:
        self.run(h.add_items([openai_item(i + k) for k in range(n)]))

    def read_all(self, h: Any) -> int:
        return len(self.run(h.get_items()))

    def close(self) -> None:
        for session in self.sessions:
            closer = getattr(session, "close", None)
            if closer is not None:
                closer()
        self.close_loop()


class OpenAIAlchemy(OpenAISqlite):
    """OpenAI Agents' `SQLAlchemySession` over one async engine (`postgresql+psycopg`)."""

    backend = "postgresql"

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(alchemy_url(loc))
        self.setup = setup

    def open_session(self, sid: str) -> Any:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

        return SQLAlchemySession(sid, engine=self.engine, create_tables=self.setup)

    def close(self) -> None:
        self.run(self.engine.dispose())
        self.close_loop()


# -- Google ADK ------------------------------------------------------------------------------

def adk_event(i: int) -> Any:
    from google.adk.events import Event, EventActions
    from google.genai import types

    data, delta = event_parts(i)
    return Event(invocation_id="inv-1", author="user",
                 content=types.Content(role="user", parts=[types.Part(text=data["text"])]),
                 actions=EventActions(state_delta=delta))


class AdkSqlite(System, _Async):
    """ADK's `SqliteSessionService(db_path)`: `create_session`, `append_event` (one event; a
    batch is ten calls: there is no batch API), `get_session` (the full history; with
    `GetSessionConfig(num_recent_events=0)` the state read), `list_sessions(app, user)`.
    A write through a session object older than the stored session is refused
    (`StaleSessionError`)."""

    def service(self) -> Any:
        from google.adk.sessions.sqlite_session_service import SqliteSessionService

        return SqliteSessionService(str(Path(self.loc) / "adk.db"))

    def __init__(self, loc: str, setup: bool = True) -> None:
        System.__init__(self, loc)
        _Async.__init__(self)
        self.svc = self.service()

    def create(self) -> Any:
        return self.run(self.svc.create_session(app_name=APP, user_id=USER, state=STATE))

    create_timed = create

    def hid(self, h: Any) -> str:
        return str(h.id)

    def attach(self, sid: str) -> Any:
        from google.adk.sessions.base_session_service import GetSessionConfig

        return self.run(self.svc.get_session(app_name=APP, user_id=USER, session_id=sid,
                                             config=GetSessionConfig(num_recent_events=0)))

    def append(self, h: Any, i: int) -> None:
        self.run(self.svc.append_event(h, adk_event(i)))

    def append_batch(self, h: Any, i: int, n: int) -> None:
        async def batch() -> None:
            for k in range(n):
                await self.svc.append_event(h, adk_event(i + k))
        self.run(batch())

    def read_all(self, h: Any) -> int:
        session = self.run(self.svc.get_session(app_name=APP, user_id=USER, session_id=h.id))
        return len(session.events)

    def state(self, h: Any) -> Any:
        from google.adk.sessions.base_session_service import GetSessionConfig

        return self.run(self.svc.get_session(
            app_name=APP, user_id=USER, session_id=h.id,
            config=GetSessionConfig(num_recent_events=0))).state

    def list_sessions(self, n: int) -> int:
        return len(self.run(self.svc.list_sessions(app_name=APP, user_id=USER)).sessions)

    def close(self) -> None:
        closer = getattr(self.svc, "close", None)
        if closer is not None:
            self.run(closer())
        self.close_loop()


class AdkDbSqlite(AdkSqlite):
    """ADK's `DatabaseSessionService(db_url="sqlite+aiosqlite:///…")` (SQLAlchemy)."""

    def service(self) -> Any:
        from google.adk.sessions.database_session_service import DatabaseSessionService

        return DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{Path(self.loc) / 'adk.db'}")


class AdkDbPg(AdkSqlite):
    """ADK's `DatabaseSessionService(db_url="postgresql+psycopg://…")`."""

    backend = "postgresql"

    def service(self) -> Any:
        from google.adk.sessions.database_session_service import DatabaseSessionService

        return DatabaseSessionService(db_url=alchemy_url(self.loc))


# -- LangGraph -------------------------------------------------------------------------------

class _Thread:
    """A LangGraph thread as one writer knows it: the config of its last checkpoint."""

    def __init__(self, thread_id: str, config: dict[str, Any], step: int, version: str) -> None:
        self.thread_id, self.config, self.step, self.version = thread_id, config, step, version


class LangGraphSqlite(System):
    """LangGraph's `SqliteSaver`: an append is one `put` of a checkpoint whose `events`
    channel holds the new event (a batch: one checkpoint holding ten), child of the
    writer's last checkpoint, with a new channel version as LangGraph numbers them. The full
    history is `list(thread)` (every checkpoint, decoded), the state read `get_tuple(thread)`
    (the latest checkpoint). A thread's history is the parent chain of its latest
    checkpoint: a checkpoint written on a stale parent is a branch off it, so its events
    count as lost. No create (a thread is made by its first `put`), no thread listing."""

    def saver(self) -> Any:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(Path(self.loc) / "langgraph.db", check_same_thread=False)
        self.conn: Any = conn
        return SqliteSaver(conn)

    def __init__(self, loc: str, setup: bool = True) -> None:
        super().__init__(loc)
        self.cp = self.saver()
        if setup:
            self.cp.setup()

    def create(self) -> _Thread:
        tid = uuid.uuid4().hex
        return _Thread(tid, {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}, 0,
                       f"{0:032}.{random.random():016}")

    def hid(self, h: _Thread) -> str:
        return h.thread_id

    def attach(self, sid: str) -> _Thread:
        h = self.create()
        h.thread_id = sid
        h.config = {"configurable": {"thread_id": sid, "checkpoint_ns": ""}}
        latest = self.cp.get_tuple(h.config)
        if latest is not None:
            h.config = latest.config
            h.step = int(latest.metadata.get("step", 0))
            h.version = str(latest.checkpoint["channel_versions"].get("events", h.version))
        return h

    def put(self, h: _Thread, events: list[dict[str, Any]]) -> None:
        from langgraph.checkpoint.base import empty_checkpoint
        from langgraph.checkpoint.base.id import uuid6

        h.step += 1
        h.version = f"{int(h.version.split('.')[0]) + 1:032}.{random.random():016}"
        cp = empty_checkpoint()
        cp["id"] = str(uuid6(clock_seq=h.step))
        cp["channel_values"] = {"events": events}
        cp["channel_versions"] = {"events": h.version}
        h.config = self.cp.put(h.config, cp, {"source": "loop", "step": h.step, "parents": {}},
                               {"events": h.version})

    def append(self, h: _Thread, i: int) -> None:
        self.put(h, [json.loads(event_json(i))])

    def append_batch(self, h: _Thread, i: int, n: int) -> None:
        self.put(h, [json.loads(event_json(i + k)) for k in range(n)])

    def thread(self, h: _Thread) -> dict[str, Any]:
        return {"configurable": {"thread_id": h.thread_id, "checkpoint_ns": ""}}

    def read_all(self, h: _Thread) -> int:
        return sum(len(t.checkpoint["channel_values"].get("events", []))
                   for t in self.cp.list(self.thread(h)))

    def count(self, h: _Thread) -> int:
        tuples = list(self.cp.list(self.thread(h)))
        if not tuples:
            return 0
        by_id = {t.config["configurable"]["checkpoint_id"]: t for t in tuples}
        node: Any = max(tuples, key=lambda t: t.config["configurable"]["checkpoint_id"])
        total = 0
        while node is not None:
            total += len(node.checkpoint["channel_values"].get("events", []))
            parent = node.parent_config
            node = by_id.get(parent["configurable"]["checkpoint_id"]) if parent else None
        return total

    def state(self, h: _Thread) -> Any:
        return self.cp.get_tuple(self.thread(h))

    def close(self) -> None:
        self.conn.close()


class LangGraphPg(LangGraphSqlite):
    """LangGraph's `PostgresSaver` on one psycopg connection (autocommit, `dict_row`, as
    `PostgresSaver.from_conn_string` makes it)."""

    backend = "postgresql"

    def saver(self) -> Any:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        self.conn = psycopg.connect(self.loc, autocommit=True, prepare_threshold=0,
                                    row_factory=dict_row)
        return PostgresSaver(self.conn)


# -- the registry ----------------------------------------------------------------------------

Spec = tuple[str, str, str, type[System], tuple[str, ...]]
"""(key, label, group, class, modules it needs)."""

SPECS: list[Spec] = [
    ("raw-full", "raw sqlite3 WAL/FULL", "raw", RawSqlite, ()),
    ("raw-normal", "raw sqlite3 WAL/NORMAL", "raw", RawSqliteNormal, ()),
    ("ours-full", "ours sqlite full", "ours", OursSqlite, ()),
    ("ours-normal", "ours sqlite normal", "ours", OursSqliteNormal, ()),
    ("ours-file", "ours file", "ours", OursFile, ()),
    ("es-sqlite", "eventsourcing SQLite", "eventsourcing", EventSourcing, ("eventsourcing",)),
    ("openai-sqlite", "OpenAI SQLiteSession", "openai", OpenAISqlite, ("agents",)),
    ("adk-sqlite", "ADK SqliteSessionService", "adk", AdkSqlite,
     ("google.adk", "aiosqlite")),
    ("adk-db-sqlite", "ADK DatabaseSessionService", "adk", AdkDbSqlite,
     ("google.adk", "aiosqlite", "sqlalchemy")),
    ("lg-sqlite", "LangGraph SqliteSaver", "langgraph", LangGraphSqlite,
     ("langgraph.checkpoint.sqlite",)),
    ("raw-pg", "raw psycopg", "raw", RawPg, ("psycopg",)),
    ("ours-pg", "ours postgresql", "ours", OursPg, ("psycopg",)),
    ("es-pg", "eventsourcing PostgreSQL", "eventsourcing", EventSourcingPg,
     ("eventsourcing", "psycopg")),
    ("openai-pg", "OpenAI SQLAlchemySession", "openai", OpenAIAlchemy,
     ("agents", "sqlalchemy", "psycopg")),
    ("adk-pg", "ADK DatabaseSessionService", "adk", AdkDbPg,
     ("google.adk", "sqlalchemy", "psycopg")),
    ("lg-pg", "LangGraph PostgresSaver", "langgraph", LangGraphPg,
     ("langgraph.checkpoint.postgres",)),
]

CLASSES: dict[str, Callable[..., System]] = {key: cls for key, _, _, cls, _ in SPECS}


def missing(spec: Spec) -> str | None:
    """Why the system cannot run here (a module that is not installed), or `None`."""
    absent = _installed(*spec[4])
    if absent is None:
        return None
    return (f"{spec[1]} skipped: {absent} is not installed"
            " (pip install -r benchmarks/requirements-peers.txt)")
