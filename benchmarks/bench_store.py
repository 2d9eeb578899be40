"""agentledger's SQLite store side by side with raw `sqlite3` doing the same work.

Run it from the project root:

    .venv/bin/python benchmarks/bench_store.py            # full run, well under a minute
    .venv/bin/python benchmarks/bench_store.py --quick    # smoke run, a few seconds
    .venv/bin/python benchmarks/bench_store.py --json     # machine-readable output

Every workload uses fresh database files in a temporary folder; both sides run at the
same PRAGMAs (WAL, `synchronous` FULL or NORMAL) on this machine's disk. The raw side is
a hand-written event log (`RawLog` below) with the same event columns, so a ratio shows
what the library costs on top of SQLite itself. Ratios are always ours ÷ raw: higher is
better for throughput (per second), lower is better for times and bytes.

What is measured (timings are `time.perf_counter`, the median of several rounds):

- appends/s: one `user_message` event (~100 bytes of text, a 2-key state delta) per call,
  to one session, at durability `full` and `normal`. Ours builds a `NewEvent` and calls
  `store.append`; raw does BEGIN IMMEDIATE, reads the session's version, inserts the
  event row, updates the session's version/updated_at, COMMIT.
- session load at several ledger lengths: (a) state only, ours = `get_session` (reads the
  snapshot), raw = select every state_delta and fold them in Python (no snapshot);
  (b) full history, ours = `read_events` (pydantic `Event`s), raw = select the rows and
  `json.loads` data and state_delta of each.
- creates/s at `normal`: `create_session` vs one transaction inserting a session row
  (with a JSON snapshot) and its `session_created` event.
- list 1,000 sessions at `normal`: `list_sessions(limit=1000)` vs selecting 1,000 session
  rows by updated_at desc and `json.loads` of their snapshot column.
- bytes per event: `page_count * page_size` after `wal_checkpoint(TRUNCATE)`, divided by
  the number of events in the file, for the same events written both ways.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentledger.core.events import NewEvent
from agentledger.stores.sqlite import SqliteStore

_TS = "%Y-%m-%dT%H:%M:%S.%fZ"  # the same fixed-width UTC format the store writes
_SYNC = {"full": "FULL", "normal": "NORMAL"}
_TEXT = "Please summarise the incident report from last night and list the follow-ups #"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _now() -> str:
    return datetime.now(timezone.utc).strftime(_TS)


def _message(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The benchmark event: ~100 bytes of text and a small state delta."""
    return {"text": f"{_TEXT}{i:06d}", "lang": "en"}, {"turn": i, "last_author": "user"}


def _ours_event(i: int) -> NewEvent:
    data, delta = _message(i)
    return NewEvent(type="user_message", author="user", data=data, state_delta=delta)


class RawLog:
    """The baseline: the event log one would hand-write with `sqlite3`."""

    def __init__(self, path: Path, durability: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
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
        sid, now = secrets.token_hex(13), _now()  # 26 characters, as long as a ULID
        snapshot = {"id": sid, "app_name": app_name, "user_id": user_id, "status": "active",
                    "phase": "initializing", "state": state, "metadata": meta,
                    "created_at": now, "updated_at": now, "version": 1}
        data = {"app_name": app_name, "user_id": user_id, "metadata": meta}
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, 1, ?)",
                  (sid, app_name, user_id, now, now, _dumps(snapshot)))
        c.execute("INSERT INTO events (id, session_id, seq, type, author, timestamp, invocation_id,"
                  " data, state_delta) VALUES (?, ?, 1, 'session_created', 'system', ?, NULL, ?, ?)",
                  (secrets.token_hex(13), sid, now, _dumps(data), _dumps(state)))
        c.execute("COMMIT")
        return sid

    def append(self, sid: str, events: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> None:
        """Append (type, author, data, state_delta) events in one transaction."""
        c, now = self.conn, _now()
        c.execute("BEGIN IMMEDIATE")
        (version,) = c.execute("SELECT version FROM sessions WHERE id = ?", (sid,)).fetchone()
        c.executemany(
            "INSERT INTO events (id, session_id, seq, type, author, timestamp, invocation_id,"
            " data, state_delta) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            [(secrets.token_hex(13), sid, version + i, kind, author, now, _dumps(data), _dumps(delta))
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

    def read_events(self, sid: str) -> list[tuple[Any, ...]]:
        loads = json.loads
        cur = self.conn.execute(
            "SELECT id, session_id, seq, type, author, timestamp, invocation_id, data, state_delta"
            " FROM events WHERE session_id = ? ORDER BY seq", (sid,))
        return [(*r[:7], loads(r[7]), loads(r[8])) for r in cur]

    def list_sessions(self, limit: int) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(
            "SELECT id, app_name, user_id, created_at, updated_at, version, snapshot FROM sessions"
            " ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,))
        return [(*r[:6], json.loads(r[6])) for r in cur]


def _file_bytes(path: Path) -> int:
    """Database size after folding the WAL back in (call once every connection is closed)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    finally:
        conn.close()


def _paired(
    ours: Callable[[], object], raw: Callable[[], object], round_time: float, rounds: int
) -> tuple[float, float]:
    """Seconds per call of each function: the median over `rounds` rounds, each a loop sized
    to ~`round_time`, the two sides alternating round by round so that drift in machine
    load hits both alike."""
    gc.collect()  # start from the same heap state whatever ran before
    loops = []
    for fn in (ours, raw):
        start = time.perf_counter()
        fn()
        loops.append(max(1, int(round_time / max(time.perf_counter() - start, 1e-7))))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, n, out in zip((ours, raw), loops, times):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - start) / n)
    return statistics.median(times[0]), statistics.median(times[1])


def _interleaved(
    ours_step: Callable[[int], None], raw_step: Callable[[int], None], n: int, chunk: int = 50
) -> tuple[float, float]:
    """Calls per second of each side over `n` calls, alternating in chunks of `chunk` calls
    so that drift in disk latency (fsync) hits both sides alike."""
    gc.collect()
    t_ours = t_raw = 0.0
    for first in range(0, n, chunk):
        calls = range(first, min(first + chunk, n))
        start = time.perf_counter()
        for i in calls:
            ours_step(i)
        middle = time.perf_counter()
        for i in calls:
            raw_step(i)
        t_ours, t_raw = t_ours + middle - start, t_raw + time.perf_counter() - middle
    return n / t_ours, n / t_raw


@dataclass(frozen=True)
class Config:
    appends: int = 2_000
    load_sizes: tuple[int, ...] = (100, 1_000, 10_000)
    creates: int = 1_000
    listed: int = 1_000
    rounds: int = 5
    write_rounds: int = 5
    round_time: float = 0.3


QUICK = Config(appends=200, load_sizes=(10, 100, 1_000), creates=100, listed=100,
               rounds=3, write_rounds=1, round_time=0.02)


@dataclass
class Row:
    metric: str
    unit: str
    ours: float
    raw: float | None
    ratio: float  # ours ÷ raw, or as the metric says
    better: str  # "higher" or "lower": which direction of `ratio` is better
    target: str = ""
    met: bool | None = None


class Bench:
    def __init__(self, cfg: Config, folder: Path) -> None:
        self.cfg, self.folder = cfg, folder
        self.rows: list[Row] = []
        self._n = 0

    def _fresh(self, stem: str) -> Path:
        self._n += 1
        return self.folder / f"{self._n:02d}-{stem}.db"

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def appends(self, durability: str) -> None:
        n, ratios, ours_rates, raw_rates = self.cfg.appends, [], [], []
        ours_path = raw_path = Path()
        for _ in range(self.cfg.write_rounds):
            ours_path = self._fresh(f"append-{durability}-ours")
            raw_path = self._fresh(f"append-{durability}-raw")
            with SqliteStore(ours_path, durability=durability) as store:
                raw = RawLog(raw_path, durability)
                sid = store.create_session(app_name="bench", user_id="u1").id
                rsid = raw.create("bench", "u1", {}, {})

                def ours_step(i: int) -> None:
                    store.append(sid, [_ours_event(i)])

                def raw_step(i: int) -> None:
                    data, delta = _message(i)
                    raw.append(rsid, [("user_message", "user", data, delta)])

                ours_rate, raw_rate = _interleaved(ours_step, raw_step, n)
                raw.conn.close()
            ours_rates.append(ours_rate)
            raw_rates.append(raw_rate)
            ratios.append(ours_rate / raw_rate)
        ratio, want = statistics.median(ratios), 0.9 if durability == "full" else 0.5
        self.add(Row(f"appends/s, 1 event/call, {durability}", "/s", statistics.median(ours_rates),
                     statistics.median(raw_rates), ratio, "higher", f">= {want}", ratio >= want))
        if durability != "normal":
            return
        ob, rb = _file_bytes(ours_path) / (n + 1), _file_bytes(raw_path) / (n + 1)
        self.add(Row(f"bytes/event after {n:,} single appends", "B", ob, rb, ob / rb,
                     "lower", "<= 1.3", ob / rb <= 1.3))

    def loads(self) -> None:
        cfg, stores = self.cfg, []
        for size in cfg.load_sizes:
            ours_path, raw_path = self._fresh(f"load{size}-ours"), self._fresh(f"load{size}-raw")
            store, raw = SqliteStore(ours_path, durability="normal"), RawLog(raw_path, "normal")
            sid = store.create_session(app_name="bench", user_id="u1").id
            rsid = raw.create("bench", "u1", {}, {})
            for first in range(1, size, 100):  # setup, untimed: batches of up to 100 events
                batch = range(first, min(first + 100, size))
                store.append(sid, [_ours_event(i) for i in batch])
                raw.append(rsid, [("user_message", "user", *_message(i)) for i in batch])
            assert store.get_session(sid).version == size and len(raw.read_events(rsid)) == size
            t_ours, t_raw = _paired(lambda: store.get_session(sid), lambda: raw.load_state(rsid),
                                    cfg.round_time, cfg.rounds)
            self.add(Row(f"state load, {size:,} events (raw: fold deltas)", "ms",
                         t_ours * 1e3, t_raw * 1e3, t_ours / t_raw, "lower"))
            t_ours, t_raw = _paired(lambda: store.read_events(sid), lambda: raw.read_events(rsid),
                                    cfg.round_time, cfg.rounds)
            self.add(Row(f"full history, {size:,} events", "ms", t_ours * 1e3, t_raw * 1e3,
                         t_ours / t_raw, "lower", "<= 1.5", t_ours / t_raw <= 1.5))
            raw.conn.close()
            stores.append((size, store, sid, ours_path, raw_path))
        # Flatness: the smallest and the largest ledger measured side by side, alternating.
        (small, s_store, s_sid, *_), (big, b_store, b_sid, ours_path, raw_path) = stores[0], stores[-1]
        t_big, t_small = _paired(lambda: b_store.get_session(b_sid),
                                 lambda: s_store.get_session(s_sid), cfg.round_time, cfg.rounds)
        growth = t_big / t_small
        self.add(Row(f"state load growth, ours {big:,} / ours {small:,} events", "x",
                     growth, None, growth, "lower", "<= 1.5", growth <= 1.5))
        for _, store, *_ in stores:
            store.close()
        ob, rb = _file_bytes(ours_path) / big, _file_bytes(raw_path) / big
        self.add(Row(f"bytes/event, {big:,} events (batches of 100)", "B", ob, rb, ob / rb,
                     "lower", "<= 1.3", ob / rb <= 1.3))

    def creates(self) -> None:
        n, ratios, ours_rates, raw_rates = self.cfg.creates, [], [], []
        state, meta = {"topic": "incident review", "turns": 0}, {"source": "bench", "tags": ["a", "b"]}
        for _ in range(self.cfg.write_rounds):
            with SqliteStore(self._fresh("create-ours"), durability="normal") as store:
                raw = RawLog(self._fresh("create-raw"), "normal")

                def ours_step(i: int) -> None:
                    store.create_session(app_name="bench", user_id=f"u{i % 10}", state=state, metadata=meta)

                def raw_step(i: int) -> None:
                    raw.create("bench", f"u{i % 10}", state, meta)

                ours_rate, raw_rate = _interleaved(ours_step, raw_step, n)
                raw.conn.close()
            ours_rates.append(ours_rate)
            raw_rates.append(raw_rate)
            ratios.append(ours_rate / raw_rate)
        self.add(Row("creates/s, normal", "/s", statistics.median(ours_rates),
                     statistics.median(raw_rates), statistics.median(ratios), "higher"))

    def listing(self) -> None:
        cfg, n = self.cfg, self.cfg.listed
        state, meta = {"topic": "incident review", "turns": 0}, {"source": "bench", "tags": ["a", "b"]}
        store = SqliteStore(self._fresh("list-ours"), durability="normal")
        raw = RawLog(self._fresh("list-raw"), "normal")
        for i in range(n):
            store.create_session(app_name="bench", user_id=f"u{i % 10}", title=f"Session {i}",
                                 state=state, metadata=meta)
            raw.create("bench", f"u{i % 10}", state, meta)
        assert len(store.list_sessions(limit=n).sessions) == n == len(raw.list_sessions(n))
        t_ours, t_raw = _paired(lambda: store.list_sessions(limit=n), lambda: raw.list_sessions(n),
                                cfg.round_time, cfg.rounds)
        self.add(Row(f"list {n:,} sessions, normal", "ms", t_ours * 1e3, t_raw * 1e3,
                     t_ours / t_raw, "lower"))
        store.close()
        raw.conn.close()


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:.2f}x"


def _print_table(rows: list[Row], meta: dict[str, Any]) -> None:
    header = ("metric", "ours", "raw sqlite3", "ours÷raw", "better", "target", "")
    cells = [header] + [
        (r.metric, _fmt(r.ours, r.unit), _fmt(r.raw, r.unit), f"{r.ratio:.2f}", r.better, r.target,
         "" if r.met is None else ("met" if r.met else "MISSED"))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"agentledger SqliteStore vs raw sqlite3 — Python {meta['python']}, SQLite "
          f"{meta['sqlite']}, {meta['mode']} run, {meta['seconds']:.0f} s")
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "\nours÷raw: for /s higher is better; for ms and bytes lower is better."
        "\nReads: time per call, median of rounds, ours and raw alternating round by round."
        "\nWrites: ours and raw alternate in chunks of 50 calls on fresh files; the ratio is the"
        "\nmedian over rounds. Raw state load folds every state_delta row (no snapshot); ours reads"
        "\nthe session's snapshot row. 'state load growth' is ours at the largest ledger ÷ ours at"
        "\nthe smallest, measured alternately. Creates and list use durability normal."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentledger-bench-") as tmp:
        bench = Bench(QUICK if args.quick else Config(), Path(tmp))
        bench.appends("full")
        bench.appends("normal")
        bench.loads()
        bench.creates()
        bench.listing()
    meta = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "mode": "quick" if args.quick else "full", "seconds": time.perf_counter() - started,
            "config": asdict(bench.cfg)}
    if args.json:
        json.dump({"meta": meta, "rows": [asdict(r) for r in bench.rows]}, sys.stdout, indent=2)
        print()
    else:
        _print_table(bench.rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
