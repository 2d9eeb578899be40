"""`SqliteStore.append` against the physical floor: a bare `sqlite3` INSERT + COMMIT.

Run it from the project root:

    .venv/bin/python benchmarks/bench_append_floor.py           # full run (a minute or two)
    .venv/bin/python benchmarks/bench_append_floor.py --quick   # smoke run, seconds
    .venv/bin/python benchmarks/bench_append_floor.py --json    # machine-readable

What is measured (appends per second, the median of several interleaved rounds):

- floor: one ~200-byte JSON event per transaction, `INSERT INTO events … ; COMMIT` on a
  bare table `(session_id, seq, …) WITHOUT ROWID`, WAL mode, `synchronous` FULL and NORMAL;
  nothing else (no session row, no hash, no index).
- ours: `store.append(sid, [NewEvent(...)])` with the same event, one per call, on a
  `SqliteStore` at durability `full` and `normal`. Ratio = ours ÷ floor (higher is better).
- state size: ours at `normal` on sessions holding 0, 100 KB and 1 MB of state; ratio = the
  empty session's rate ÷ this one's (the cost multiplier; 1.0 = independent of state size).
- threads: N writer threads (1, 4, 16, 64), each appending to its own session of one
  `SqliteStore` at `full`; total appends/s and the ratio to one writer.

Speed is never asserted in tests: `tests/test_benchmarks.py` only smoke-runs `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentledger.core.events import NewEvent
from agentledger.stores.sqlite import SqliteStore

TEXT = "Please summarise the incident report from last night and list the follow-ups. " * 2
"""With the type, author and ids, an event of about 200 bytes."""
STATE_SIZES = {"0": 0, "100KB": 100_000, "1MB": 1_000_000}
THREADS = (1, 4, 16, 64)


def event() -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": TEXT})


def state_of(size: int) -> dict[str, Any]:
    """A state of about `size` bytes of JSON: 1 KB string values under 100 keys."""
    if size == 0:
        return {}
    value = "x" * 1000
    return {f"k{i:05d}": value for i in range(max(1, size // 1012))}


class Floor:
    """The bare floor: an event table and nothing else, one transaction per append."""

    def __init__(self, path: Path, sync: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={sync}")
        self.conn.execute(
            "CREATE TABLE events (session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " id TEXT NOT NULL, type TEXT NOT NULL, author TEXT NOT NULL,"
            " timestamp TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (session_id, seq))"
            " WITHOUT ROWID"
        )
        self.data = json.dumps({"text": TEXT}, separators=(",", ":"))
        self.seq = 0

    def append(self) -> None:
        self.seq += 1
        conn = self.conn
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("01JDZ8Q0S5M3V7X9B2C4D6F8GH", self.seq, f"{self.seq:026d}", "user_message",
             "user", "2026-11-30T02:00:00.000000Z", self.data),
        )
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def rate(fn: Callable[[], None], n: int) -> float:
    """Calls per second of `fn`, over `n` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def interleaved(fns: dict[str, Callable[[], None]], n: int, rounds: int) -> dict[str, float]:
    """Median calls/s of each of `fns`, run alternately in `rounds` chunks of `n` calls."""
    seen: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm up
        rate(fn, max(5, n // 10))
    for _ in range(rounds):
        for name, fn in fns.items():
            seen[name].append(rate(fn, n))
    return {name: statistics.median(values) for name, values in seen.items()}


def bench_floor(folder: Path, n: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for durability, sync in (("full", "FULL"), ("normal", "NORMAL")):
        floor = Floor(folder / f"floor-{durability}.db", sync)
        store = SqliteStore(folder / f"ours-{durability}.db", durability=durability)
        sid = store.create_session(app_name="bench", user_id="u").id
        ev = event()
        result = interleaved(
            {"floor": floor.append, "ours": lambda: store.append(sid, [ev])}, n, rounds
        )
        floor.close()
        store.close()
        rows.append({"durability": durability, "floor_per_s": round(result["floor"], 1),
                     "ours_per_s": round(result["ours"], 1),
                     "ratio": round(result["ours"] / result["floor"], 3)})
    return rows


def bench_state(folder: Path, n: int, rounds: int) -> list[dict[str, Any]]:
    store = SqliteStore(folder / "state.db", durability="normal")
    ev = event()
    fns: dict[str, Callable[[], None]] = {}
    for name, size in STATE_SIZES.items():
        sid = store.create_session(app_name="bench", user_id="u", state=state_of(size)).id
        fns[name] = lambda sid=sid: store.append(sid, [ev])  # type: ignore[misc]
    result = interleaved(fns, n, rounds)
    store.close()
    empty = result["0"]
    return [{"state": name, "ours_per_s": round(per_s, 1), "cost_vs_empty": round(empty / per_s, 3)}
            for name, per_s in result.items()]


def _threads_round(store: SqliteStore, sids: list[str], per_thread: int) -> float:
    """Appends/s of one thread per session, `per_thread` appends each, started at once."""
    count = len(sids)
    barrier = threading.Barrier(count + 1)
    errors: list[BaseException] = []
    ev = event()

    def work(sid: str) -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                store.append(sid, [ev])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(sid,)) for sid in sids]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return count * per_thread / elapsed


def bench_threads(folder: Path, n: int, counts: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    """Each writer count on its own store at `full`, the counts taking turns for `rounds`
    rounds (the VM's fsync rate drifts); medians."""
    stores = {c: SqliteStore(folder / f"threads-{c}.db", durability="full") for c in counts}
    sids = {c: [stores[c].create_session(app_name="bench", user_id="u").id for _ in range(c)]
            for c in counts}
    seen: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(rounds):
        for c in counts:
            seen[c].append(_threads_round(stores[c], sids[c], max(5, n // c)))
    for store in stores.values():
        store.close()
    single = statistics.median(seen[counts[0]])
    return [{"threads": c, "appends": max(5, n // c) * c, "per_s": round(statistics.median(v), 1),
             "vs_one": round(statistics.median(v) / single, 2)} for c, v in seen.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: floor,state,threads")
    args = parser.parse_args(argv)
    n, rounds = (20, 2) if args.quick else (300, 5)
    thread_n, thread_rounds = (40, 1) if args.quick else (640, 3)
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, Any] = {"meta": {"python": platform.python_version(),
                                    "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
                                    "mode": "quick" if args.quick else "full"}}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        folder = Path(tmp)
        if "floor" not in skip:
            out["floor"] = bench_floor(folder, n, rounds)
        if "state" not in skip:
            out["state"] = bench_state(folder, n, rounds)
        if "threads" not in skip:
            out["threads"] = bench_threads(
                folder, thread_n, (1, 4) if args.quick else THREADS, thread_rounds
            )
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(f"SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, {out['meta']['mode']} run")
    for row in out.get("floor", []):
        print(f"append {row['durability']:>6}: ours {row['ours_per_s']:>9.1f}/s  floor "
              f"{row['floor_per_s']:>9.1f}/s  ratio {row['ratio']:.3f}")
    for row in out.get("state", []):
        print(f"state {row['state']:>6}: ours {row['ours_per_s']:>9.1f}/s  cost x{row['cost_vs_empty']:.3f} of empty")
    for row in out.get("threads", []):
        print(f"threads {row['threads']:>3}: {row['per_s']:>9.1f} appends/s  x{row['vs_one']:.2f} of one writer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
