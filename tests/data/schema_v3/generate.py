"""How the file beside this one was made: with agentledger at schema version 3 (commit
dc94a3e), `PYTHONPATH=<that checkout>/src python generate.py <out>`. `sql_rows.json` holds the
SQLite tables (the rows a PostgreSQL store of version 3 holds too). Version 3 kept a
session's own state inside its snapshot; version 4 keeps a row per key. The sessions hold
state of several shapes (nested values, unicode keys, a large value, a float, a null, no
state at all), state operations, a rewind, a fork, an erased event and a truncated
ledger, and app- and user-scoped state. Kept for the migration tests; not run by them."""

import json
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

from agentledger import NewEvent, open_store

out = sys.argv[1]
T = datetime(2026, 11, 30, 6, 0, 0, tzinfo=timezone.utc)
clock_now = [T]


def tick(minutes: int) -> None:
    clock_now[0] = T + timedelta(minutes=minutes)


store = open_store(f"sqlite:///{out}/v3.db", clock=lambda: clock_now[0])
a = store.create_session(
    app_name="demo",
    user_id="ada",
    agent_name="helper",
    session_id="s-state",
    state={"z": 1, "nested": {"y": [1, 2.5, None]}, "héllo ☃": "wörld", "big": "x" * 5000},
    metadata={"ticket": "T-3"},
)
tick(1)
store.append(
    a.id,
    [
        NewEvent(type="user_message", author="user", data={"text": "hi"}, invocation_id="i-1"),
        NewEvent(
            type="state_updated",
            state_delta={"user:tier": "gold", "app:motd": "hi", "topic": "x", "n": -0.0, "nul": None},
            invocation_id="i-1",
        ),
    ],
)
tick(2)
store.append(a.id, [NewEvent(type="state_updated", state_remove=["z"])])
store.append(
    a.id,
    [NewEvent(type="state_updated", state_ops=[{"op": "add", "path": "/nested/y/-", "value": 3}])],
)
tick(3)
store.append(
    a.id,
    [NewEvent(type="state_updated", state_delta={"topic": "y"}, invocation_id="i-2")],
)
store.rewind(a.id, before_invocation="i-2")  # topic back to "x"
b = store.create_session(app_name="demo", user_id="bob", session_id="s-empty")
tick(4)
store.append(b.id, [NewEvent(type="user_message", author="user", data={"text": "no state"})])
store.fork_session(a.id, new_session_id="s-fork")
store.append("s-fork", [NewEvent(type="state_updated", state_delta={"fork": True})])
c = store.create_session(
    app_name="demo", user_id="cy", session_id="s-erased", state={"secret": "xyzzy", "keep": 1}
)
tick(5)
store.append(c.id, [NewEvent(type="state_updated", state_delta={"k2": [1, {"a": "b"}]})])
store.append(c.id, [NewEvent(type="user_message", author="user", data={"text": "plugh"})])
store.erase_events(c.id, [3], "test")
store.append(c.id, [NewEvent(type="state_updated", state_delta={"after": "erase"})])
store.truncate_before(c.id, 3)
store.close()
conn = sqlite3.connect(f"{out}/v3.db")
tables = ("sessions", "events", "scoped_state", "feed_counter")
dump: dict[str, object] = {
    t: [list(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables[:3]
}
dump["feed_counter"] = [list(r) for r in conn.execute("SELECT * FROM feed_counter")]
dump["columns"] = {t: [d[1] for d in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
dump["sessions_read"] = {}
conn.close()
store = open_store(f"sqlite:///{out}/v3.db", read_only=True)
for page in [store.list_sessions(limit=100)]:
    for s in page.sessions:
        dump["sessions_read"][s.id] = s.model_dump(mode="json")  # type: ignore[index]
store.close()
with open(f"{out}/sql_rows.json", "w") as f:
    json.dump(dump, f, indent=1, ensure_ascii=False)
