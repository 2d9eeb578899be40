"""Async appends: N coroutines on `open_async_store` vs the sync store, in one run.

Run it from the project root:

    .venv/bin/python benchmarks/bench_async.py                  # sqlite, file, postgresql
    .venv/bin/python benchmarks/bench_async.py --quick          # smoke run, seconds
    .venv/bin/python benchmarks/bench_async.py --stores postgresql --coroutines 1,8,32 --json

For each store (SQLite at `full` durability, the file store, PostgreSQL at
`$AGENTLEDGER_TEST_POSTGRES_URL` or the local test database), each trial appends
`--events` single-event batches in total, spread over k sessions (created beforehand,
untimed), one writer per session:
    - sync: one thread appends to the k sessions in turn, on `open_store(url)` (what a
      program without concurrency does);
    - threads: k threads, one per session, on one sync store;
    - async: k coroutines, one per session, on one `open_async_store(url)` kept open on one
      event loop (PostgreSQL natively on the loop; the others on the store's worker
      threads, 8 by default).
`--relaxed` drops the fsync per append (SQLite `durability=normal`, PostgreSQL
`synchronous_commit` off), so what is left is the cost of each layer.
Throughput is events ÷ wall time; the ratios are async ÷ sync and async ÷ threads. Trials
alternate between the three; figures are medians over `--rounds`. One machine, one run:
the ratios are what to read, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentledger import NewEvent, open_store
from agentledger.stores.aio import AsyncSessionStore, open_async_store
from agentledger.stores.base import SessionStore

POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1/agentledger_test"


def event(i: int) -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": f"message {i}"})


def sync_trial(store: SessionStore, sessions: list[str], per: int) -> float:
    start = time.perf_counter()
    for i in range(per):
        for sid in sessions:
            store.append(sid, [event(i)])
    return time.perf_counter() - start


def thread_trial(store: SessionStore, sessions: list[str], per: int) -> float:
    def writer(sid: str) -> None:
        for i in range(per):
            store.append(sid, [event(i)])

    threads = [threading.Thread(target=writer, args=(sid,)) for sid in sessions]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


async def async_trial(store: AsyncSessionStore, sessions: list[str], per: int) -> float:
    async def writer(sid: str) -> None:
        for i in range(per):
            await store.append(sid, [event(i)])

    start = time.perf_counter()
    await asyncio.gather(*(writer(sid) for sid in sessions))
    return time.perf_counter() - start


def store_urls(names: list[str], folder: str, postgres: str, relaxed: bool) -> dict[str, str]:
    schema = f"schema=bench_async_{uuid.uuid4().hex[:8]}"
    if relaxed:
        schema += "&options=-c%20synchronous_commit%3Doff"
    urls = {
        "sqlite": f"sqlite:///{folder}/bench.db" + ("?durability=normal" if relaxed else ""),
        "file": f"file://{folder}/sessions",
        "postgresql": postgres + ("&" if "?" in postgres else "?") + schema,
    }
    return {name: urls[name] for name in names}


def drop_schema(url: str) -> None:
    import psycopg
    from psycopg.sql import SQL, Identifier

    base, _, schema = url.partition("schema=")
    schema = schema.split("&")[0]
    with psycopg.connect(base.rstrip("?&"), autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


def bench(url: str, ks: list[int], events: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    loop = asyncio.new_event_loop()  # one loop, one async store, for every async trial
    astore = loop.run_until_complete(open_async_store(url))
    try:
        with open_store(url) as store:
            for k in ks:
                per = max(1, events // k)
                total = per * k
                sessions = [
                    store.create_session(app_name="bench", user_id=f"u{j}").id for j in range(k)
                ]
                times: dict[str, list[float]] = {"sync": [], "threads": [], "async": []}
                trials: dict[str, Callable[[], float]] = {
                    "sync": lambda: sync_trial(store, sessions, per),
                    "threads": lambda: thread_trial(store, sessions, per),
                    "async": lambda: loop.run_until_complete(async_trial(astore, sessions, per)),
                }
                for r in range(rounds):
                    order = list(trials) if r % 2 == 0 else list(reversed(trials))
                    for name in order:
                        times[name].append(trials[name]())
                rate = {name: total / statistics.median(t) for name, t in times.items()}
                rows.append(
                    {
                        "coroutines": k,
                        "events": total,
                        "sync_per_s": round(rate["sync"]),
                        "threads_per_s": round(rate["threads"]),
                        "async_per_s": round(rate["async"]),
                        "async_vs_sync": round(rate["async"] / rate["sync"], 2),
                        "async_vs_threads": round(rate["async"] / rate["threads"], 2),
                    }
                )
    finally:
        loop.run_until_complete(astore.aclose())
        loop.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,file,postgresql")
    parser.add_argument("--coroutines", default="1,8,32")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--relaxed",
        action="store_true",
        help="SQLite durability=normal, PostgreSQL synchronous_commit off: no fsync per "
        "append, so the cost of the async layer itself shows",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few events")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENTLEDGER_TEST_POSTGRES_URL") or POSTGRES_DEFAULT_URL,
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds, args.coroutines = 64, 1, "1,8"
    ks = [int(k) for k in args.coroutines.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, url in store_urls(args.stores.split(","), folder, args.postgres_url, args.relaxed).items():
            try:
                results[name] = bench(url, ks, args.events, args.rounds)
            finally:
                if name == "postgresql":
                    drop_schema(url)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    columns = list(next(iter(results.values()))[0])
    print(f"{'store':<11}" + "".join(f"{c:>17}" for c in columns))
    for name, rows in results.items():
        for row in rows:
            print(f"{name:<11}" + "".join(f"{row[c]:>17}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
