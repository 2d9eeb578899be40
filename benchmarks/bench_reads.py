"""Read costs against a raw `sqlite3` SELECT of the same rows, in one run.

    .venv/bin/python benchmarks/bench_reads.py            # 5,000 events, 1,000 sessions
    .venv/bin/python benchmarks/bench_reads.py --quick    # smoke run, seconds
    .venv/bin/python benchmarks/bench_reads.py --json

Measures (best of `--repeat` runs each, ours and raw interleaved so a busy machine hits
both alike):

- `read_events` of a whole session of `--events` ~200-byte events on SQLite, against
  `SELECT * FROM events WHERE session_id = ? ORDER BY seq` + `fetchall()` on the same file;
  and where our time goes: the SELECT, the chain check every read makes (each event's
  payload hash and chain hash recomputed: two SHA-256 per event), the decoding into `Event`s.
- `list_sessions(limit=...)` of `--sessions` sessions on SQLite, against
  `SELECT * FROM sessions ORDER BY updated_at DESC, id DESC LIMIT ?`.
- `read_events` of the same history on the file store (no raw baseline: the figure is its
  own, against the SQLite read).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentledger import NewEvent, open_store


def best(steps: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best time in seconds of each step, the steps run in turn `repeat` times."""
    times = {name: float("inf") for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def fill(store: Any, events: int) -> str:
    """A session of `events` ~200-byte user messages, appended in batches of 100."""
    session = store.create_session(app_name="bench", user_id="u")
    for start in range(0, events, 100):
        store.append(
            session.id,
            [
                NewEvent(type="user_message", author="user", data={"text": f"{i:08d}" + "x" * 140})
                for i in range(start, min(start + 100, events))
            ],
        )
    return str(session.id)


def run(events: int, sessions: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reads.db"
        store: Any = open_store(f"sqlite:///{path}")
        session_id = fill(store, events)
        for _ in range(sessions - 1):
            store.create_session(app_name="bench", user_id="u")
        raw = sqlite3.connect(path)
        select = "SELECT * FROM events WHERE session_id = ? ORDER BY seq"
        listing = "SELECT * FROM sessions ORDER BY updated_at DESC, id DESC LIMIT ?"
        rows = store._fetch_event_rows(session_id, after=0, limit=None, last=None, types=None)
        files: Any = open_store(f"file://{Path(folder) / 'files'}")
        file_session = fill(files, events)
        times = best(
            {
                "read": lambda: store.read_events(session_id),
                "read_raw": lambda: raw.execute(select, (session_id,)).fetchall(),
                "read_select": lambda: store._fetch_event_rows(
                    session_id, after=0, limit=None, last=None, types=None
                ),
                "read_check": lambda: store._check_read(session_id, rows, 1),
                "read_decode": lambda: store._decode_events(rows),
                "list": lambda: store.list_sessions(limit=sessions),
                "list_raw": lambda: raw.execute(listing, (sessions,)).fetchall(),
                "file_read": lambda: files.read_events(file_session),
            },
            repeat,
        )
        assert len(store.list_sessions(limit=sessions).sessions) == sessions
        raw.close()
        store.close()
        files.close()
    ms = {name: round(seconds * 1000, 2) for name, seconds in times.items()}
    return {
        "events": events,
        "sessions": sessions,
        "repeat": repeat,
        "ms": ms,
        "ratios": {
            "read_vs_raw": round(times["read"] / times["read_raw"], 2),
            "list_vs_raw": round(times["list"] / times["list_raw"], 2),
            "file_read_vs_sqlite_read": round(times["file_read"] / times["read"], 2),
        },
        "per_event_us": {
            name: round(times[name] / events * 1e6, 2)
            for name in ("read", "read_raw", "read_select", "read_check", "read_decode", "file_read")
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000, help="events in the session read")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions listed (≤ 1000)")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each measure; best kept")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.sessions, args.repeat = 200, 20, 2
    result = run(args.events, min(max(args.sessions, 1), 1000), max(args.repeat, 1))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ms, ratios, per = result["ms"], result["ratios"], result["per_event_us"]
    print(f"SQLite read_events of {args.events} events: {ms['read']} ms, raw SELECT "
          f"{ms['read_raw']} ms: {ratios['read_vs_raw']}x")
    print(f"  per event: SELECT {per['read_select']} us, chain check {per['read_check']} us, "
          f"decode {per['read_decode']} us (raw {per['read_raw']} us)")
    print(f"SQLite list_sessions of {result['sessions']}: {ms['list']} ms, raw SELECT "
          f"{ms['list_raw']} ms: {ratios['list_vs_raw']}x")
    print(f"file read_events of {args.events} events: {ms['file_read']} ms "
          f"({ratios['file_read_vs_sqlite_read']}x the SQLite read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
