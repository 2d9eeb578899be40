"""Fork and rewind on a long session, beside a raw `sqlite3` copy of the same rows.

Run it from the project root:

    .venv/bin/python benchmarks/bench_fork.py                # 10,000 events, SQLite
    .venv/bin/python benchmarks/bench_fork.py --events 2000 --rounds 3 --stores sqlite,file
    .venv/bin/python benchmarks/bench_fork.py --json
    .venv/bin/python benchmarks/bench_fork.py --quick          # smoke run, seconds

One session of `--events` events (a ~100-byte message and a 2-key state delta each, as in
`bench_store.py`), then, each the median of `--rounds` runs (ms):

- fork at the head: `fork_session(id)`: the snapshot is the projection, no fold.
- fork at the middle: `fork_session(id, at_seq=events // 2)`: the copied half is folded.
- fork near the start: `fork_session(id, at_seq=100)`.
- rewind 10 back + 1 event: `rewind(id, to_seq=version - 10, then=[event])`: folds the
  ledger up to the target (O(target)).
- effective read: `read_events(id, effective=True)` after the rewinds.
- raw copy (SQLite only): one `INSERT … SELECT` of the session's rows under a new session
  id, in one transaction, with nothing rehashed or checked: the floor a copy cannot beat.

The goal for SQLite is a fork of a 10,000-event session under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agentledger import NewEvent, open_store  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog; " * 2


def _event(n: int) -> NewEvent:
    return NewEvent(
        type="user_message",
        author="user",
        data={"text": f"{TEXT}{n}"},
        state_delta={"turn": n, "last": f"m{n % 97}"},
        invocation_id=f"t{n // 4}",
    )


def _median_ms(run: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(url: str, events: int, rounds: int, db_path: Path | None) -> dict[str, float]:
    results: dict[str, float] = {}
    with open_store(url) as store:
        session = store.create_session(app_name="bench", user_id="ada", state={"turn": 0})
        batch = 500
        for start in range(1, events, batch):
            store.append(
                session.id, [_event(n) for n in range(start, min(start + batch, events))]
            )
        version = store.get_session(session.id).version
        assert version == events, version
        results["fork at the head"] = _median_ms(lambda: store.fork_session(session.id), rounds)
        results["fork at the middle"] = _median_ms(
            lambda: store.fork_session(session.id, at_seq=events // 2), rounds
        )
        results["fork near the start"] = _median_ms(
            lambda: store.fork_session(session.id, at_seq=min(100, events)), rounds
        )

        def rewind() -> None:
            head = store.get_session(session.id).version
            store.rewind(session.id, to_seq=head - 10, then=[_event(0)])

        results["rewind 10 back + 1 event"] = _median_ms(rewind, rounds)
        results["effective read"] = _median_ms(
            lambda: store.read_events(session.id, effective=True), rounds
        )
        fork = store.fork_session(session.id)
        assert store.verify_session(fork.id).ok
    if db_path is not None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        columns = (
            "seq, id, type, author, timestamp, invocation_id, data, state_delta,"
            " payload_hash, hash, state_ops"
        )
        copies = iter(range(10**6))

        def raw() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"INSERT INTO events (session_id, {columns}) SELECT ?, {columns}"
                " FROM events WHERE session_id = ? AND seq <= ?",
                (f"raw-{next(copies)}", session.id, events),
            )
            conn.execute("COMMIT")

        results["raw copy (INSERT … SELECT)"] = _median_ms(raw, rounds)
        conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="sqlite", help="sqlite, sqlite-normal, file, memory")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1,000 events, 2 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 1_000, 2
    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stores.split(","):
            db = Path(tmp) / f"{name}.db"
            url = {
                "sqlite": f"sqlite:///{db}",
                "sqlite-normal": f"sqlite:///{db}?durability=normal",
                "file": f"file://{tmp}/{name}",
                "memory": "memory://",
            }[name]
            report[name] = bench(url, args.events, args.rounds, db if "sqlite" in name else None)
    if args.json:
        print(json.dumps({"events": args.events, "ms": report}, indent=2))
        return
    for name, rows in report.items():
        print(f"{name}: {args.events:,} events, median of {args.rounds} (ms)")
        for what, ms in rows.items():
            print(f"  {what:<30} {ms:9.1f}")


if __name__ == "__main__":
    main()
