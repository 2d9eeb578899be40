"""Keyed reads against reads by seq, on every store, at two ledger lengths.

Run it from the project root:

    .venv/bin/python benchmarks/bench_keys.py                 # sqlite, file, postgresql
    .venv/bin/python benchmarks/bench_keys.py --quick --json  # smoke run, seconds
    .venv/bin/python benchmarks/bench_keys.py --stores sqlite --lengths 1000,10000,100000

For each store and ledger length N (default 1,000 and 10,000), one session holds N keyed
events (`ckpt:000000`, `ckpt:000001`, …, appended 500 per call). Then, median of 200 reads
each (ours against ours: the baseline is the store's cheapest read by position):

- by seq: `read_events(sid, after=N, limit=1)`, the last event by its seq;
- latest of a namespace: `read_events(sid, key_prefix="ckpt:", last=1)`;
- by key: `get_event(sid, key)` of a key in the middle of the ledger.

The ratios (keyed ÷ by seq) are the goal's measure: within 2x, and flat from 1,000 to
10,000 events. On PostgreSQL it also measures what a GIN index on `events.data`
(`jsonb_path_ops`, which `data_match` containment could use) would cost appends: 1,000
single-event appends to a store with it and one without, alternating in chunks of 50
(`--no-gin` skips it).

PostgreSQL runs in a fresh schema of `--postgres-url` (default
`$AGENTLEDGER_TEST_POSTGRES_URL`, else `postgresql://postgres@127.0.0.1/agentledger_test`),
dropped at the end; skipped with the reason when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _bench import default_postgres_url

from agentledger import NewEvent, SessionStore, open_store


def _median_ms(read: Callable[[], Any], rounds: int) -> float:
    for _ in range(5):  # warm caches (the file store's key index is built on first use)
        read()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _fill(store: SessionStore, length: int) -> str:
    session = store.create_session(app_name="bench", user_id="keys")
    for start in range(0, length, 500):
        store.append(
            session.id,
            [
                NewEvent(
                    type="user_message",
                    author="user",
                    data={"text": f"checkpoint {i}", "metadata": {"source": "loop"}},
                    key=f"ckpt:{i:06d}",
                )
                for i in range(start, min(start + 500, length))
            ],
        )
    return session.id


def measure(store: SessionStore, length: int, rounds: int) -> dict[str, Any]:
    """Time the three reads on a session of `length` keyed events."""
    sid = _fill(store, length)
    version = length + 1
    middle = f"ckpt:{length // 2:06d}"
    assert store.read_events(sid, key_prefix="ckpt:", last=1)[0].key == f"ckpt:{length - 1:06d}"
    by_seq = _median_ms(lambda: store.read_events(sid, after=version - 1, limit=1), rounds)
    latest = _median_ms(lambda: store.read_events(sid, key_prefix="ckpt:", last=1), rounds)
    by_key = _median_ms(lambda: store.get_event(sid, middle), rounds)
    return {
        "events": length,
        "by_seq_ms": round(by_seq, 4),
        "latest_in_prefix_ms": round(latest, 4),
        "get_event_ms": round(by_key, 4),
        "latest_ratio": round(latest / by_seq, 2),
        "get_event_ratio": round(by_key / by_seq, 2),
    }


def gin_cost(url: str, appends: int) -> dict[str, Any]:
    """Appends/s on PostgreSQL without and with a GIN index on events.data: two stores
    (schemas) side by side, single-event appends alternating in chunks of 50, so load on
    the machine falls on both alike."""
    import psycopg

    base = url.split("?", 1)[0]
    schemas = {gin: f"bench_keys_gin_{uuid.uuid4().hex[:8]}" for gin in (False, True)}
    stores = {gin: open_store(f"{base}?schema={schema}") for gin, schema in schemas.items()}
    elapsed = {False: 0.0, True: 0.0}
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                f"CREATE INDEX events_data_gin ON {schemas[True]}.events"
                " USING gin (data jsonb_path_ops)"
            )
        sessions = {
            gin: store.create_session(app_name="bench", user_id="gin").id
            for gin, store in stores.items()
        }
        for chunk in range(0, appends, 50):
            for gin in ((False, True) if chunk % 100 == 0 else (True, False)):
                store, sid = stores[gin], sessions[gin]
                start = time.perf_counter()
                for i in range(chunk, min(chunk + 50, appends)):
                    store.append(
                        sid,
                        [NewEvent(type="user_message", data={"text": f"m {i}", "metadata": {"n": i}})],
                    )
                elapsed[gin] += time.perf_counter() - start
    finally:
        for store in stores.values():
            store.close()
        with psycopg.connect(base, autocommit=True) as conn:
            for schema in schemas.values():
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    results: dict[str, Any] = {
        "without_gin": round(appends / elapsed[False], 1),
        "with_gin": round(appends / elapsed[True], 1),
    }
    results["ratio"] = round(results["with_gin"] / results["without_gin"], 3)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,file,postgresql")
    parser.add_argument("--lengths", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100 and 300 events, 20 rounds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--no-gin", action="store_true", help="skip the GIN append cost")
    args = parser.parse_args()
    lengths = [100, 300] if args.quick else [int(n) for n in args.lengths.split(",")]
    rounds = 20 if args.quick else args.rounds
    report: dict[str, Any] = {"results": {}, "skipped": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stores.split(","):
            rows = []
            for length in lengths:
                schema = f"bench_keys_{uuid.uuid4().hex[:8]}"
                url = {
                    "sqlite": f"sqlite:///{Path(tmp) / f'k{length}.db'}?durability=normal",
                    "file": f"file://{Path(tmp) / f'files{length}'}",
                    "postgresql": f"{args.postgres_url.split('?', 1)[0]}?schema={schema}",
                    "memory": "memory://",
                }[name]
                try:
                    store = open_store(url)
                except Exception as exc:  # noqa: BLE001 - an unreachable server is reported
                    report["skipped"][name] = str(exc)
                    print(f"{name}: skipped: {exc}", file=sys.stderr)
                    break
                try:
                    rows.append(measure(store, length, rounds))
                finally:
                    store.close()
                    if name == "postgresql":
                        import psycopg

                        with psycopg.connect(args.postgres_url.split("?", 1)[0], autocommit=True) as c:
                            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            if rows:
                report["results"][name] = rows
            if name == "postgresql" and rows and not args.no_gin:
                report["gin"] = gin_cost(args.postgres_url, 100 if args.quick else 1000)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'store':<11}{'events':>8}{'by seq ms':>11}{'latest ms':>11}{'ratio':>7}"
          f"{'by key ms':>11}{'ratio':>7}")
    for name, rows in report["results"].items():
        for r in rows:
            print(
                f"{name:<11}{r['events']:>8}{r['by_seq_ms']:>11.3f}{r['latest_in_prefix_ms']:>11.3f}"
                f"{r['latest_ratio']:>7.2f}{r['get_event_ms']:>11.3f}{r['get_event_ratio']:>7.2f}"
            )
    if "gin" in report:
        g = report["gin"]
        print(
            f"postgresql appends/s without a GIN index on data: {g['without_gin']}, with: "
            f"{g['with_gin']} ({g['ratio']}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
