"""How the files beside this one were made: with agentledger at schema version 2 (commit
9bcdc8f), `PYTHONPATH=<that checkout>/src python generate.py <out>`. `sql_rows.json` holds the
SQLite tables (the rows a PostgreSQL store of version 2 holds too), `file_store/` the folder
(without its empty `_locks` and `_trash` folders). Written by that version, a `None` in a state
delta deletes the key (`s-one`, event 4); events carry state operations (`s-one`, event 5),
hashes, and app- and user-scoped state. Kept for the migration tests; not run by them."""

import json
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

from agentledger import NewEvent, open_store

out = sys.argv[1]
T = datetime(2026, 11, 29, 18, 5, 30, tzinfo=timezone.utc)
for url in (f"sqlite:///{out}/v2.db", f"file://{out}/file_store"):
    clock_now = [T]
    store = open_store(url, clock=lambda: clock_now[0])  # noqa: B023 (used in this loop only)
    a = store.create_session(
        app_name="demo",
        user_id="ada",
        agent_name="helper",
        session_id="s-one",
        state={"z": 1, "gone": "soon", "a": {"y": [1, 2.5]}},
        metadata={"ticket": "T-2"},
    )
    clock_now[0] = T + timedelta(minutes=1)
    store.append(
        a.id,
        [
            NewEvent(type="user_message", author="user", data={"text": "héllo ☃", "b": 1}),
            NewEvent(
                type="state_updated",
                state_delta={"user:tier": "gold", "app:motd": "hi", "topic": "x", "n": -0.0},
            ),
        ],
    )
    clock_now[0] = T + timedelta(minutes=2)
    store.append(a.id, [NewEvent(type="state_updated", state_delta={"gone": None})])
    store.append(
        a.id,
        [
            NewEvent(
                type="state_updated",
                state_ops=[{"op": "add", "path": "/user:list", "value": ["x"]}],
            )
        ],
    )
    b = store.create_session(app_name="demo", user_id="bob", session_id="s-two")
    clock_now[0] = T + timedelta(minutes=3)
    store.append(
        b.id,
        [
            NewEvent(type="user_message", author="user", data={"text": "hi"}, invocation_id="i-1"),
            NewEvent(type="agent_message", author="agent", data={"big": 1e23}, invocation_id="i-1"),
        ],
    )
    store.close()
c = sqlite3.connect(f"{out}/v2.db")
tables = ("sessions", "events", "scoped_state")
dump: dict[str, object] = {
    t: [list(r) for r in c.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables
}
dump["columns"] = {t: [d[1] for d in c.execute(f"PRAGMA table_info({t})")] for t in tables}
c.close()
with open(f"{out}/sql_rows.json", "w") as f:
    json.dump(dump, f, indent=1, ensure_ascii=False)
