"""Concurrent append throughput: 1, 2, 4 and 8 writer processes, ours and raw, in one run.

Run it from the project root:

    .venv/bin/python benchmarks/bench_concurrency.py             # every store, full run
    .venv/bin/python benchmarks/bench_concurrency.py --quick     # smoke run, seconds
    .venv/bin/python benchmarks/bench_concurrency.py --stores sqlite --writers 1,2,4 --json

The same stores, raw baselines and `--postgres-url` as `bench_store.py` (whose backend
modules say what each raw side does), each at its strictest durability: SQLite `full`,
PostgreSQL `synchronous_commit on`, the file store's fsync per append.

For each store, `max(--writers)` worker processes are started once (spawned, so each opens
its own store by URL and its own raw log, as separate programs would) and given trials:
    - own sessions: each of k writers appends N single-event batches to a session of its
      own (created beforehand, untimed);
    - one shared session: the k writers append N each to the same session, so they queue
      on its lock (ours: the store's per-session lock or row lock; raw: the same).
A trial starts when every worker has passed a `multiprocessing.Barrier`; each writer times
its own loop with `time.perf_counter` (one clock for every process on Linux), and the
trial's throughput is k × N ÷ (last end - first start). Workers outside the trial's k pass
the barrier and idle. Ours and raw trials alternate (which goes first flips every round);
figures are medians over rounds, and ours÷raw is the median of the rounds' ratios. After
each trial the events are counted on both sides.

This machine's core count caps the speed-up: with more writers than cores, writers
compete for CPU as much as for locks or the disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from _bench import (
    Backend,
    RawLog,
    Row,
    default_postgres_url,
    ours_event,
    print_table,
    raw_event,
    run_meta,
)
from bench_store import STORES, open_backend, parse_stores

from agentledger.stores.base import open_store

TIMEOUT = 300.0
"""Seconds the parent waits for a worker at any step before giving up."""


@dataclass(frozen=True)
class Config:
    writers: tuple[int, ...] = (1, 2, 4, 8)
    appends: int = 200  # per writer and trial
    rounds: int = 3


QUICK = Config(writers=(1, 2), appends=20, rounds=1)


@dataclass(frozen=True)
class Task:
    side: str  # "ours" or "raw"
    session_id: str | None  # None: idle this trial
    count: int


def worker(index: int, ours_url: str, open_raw: Callable[[], RawLog], tasks: Any, results: Any,
           barrier: Barrier) -> None:
    """A writer process: opens both sides, reports "ready", then runs `Task`s until `None`.

    Reports ("done", index, start, end) per trial it took part in, or ("error", index,
    traceback) once, after which it aborts the barrier and exits.
    """
    try:
        ours, raw = open_store(ours_url), open_raw()
        results.put(("ready", index))
        while (task := tasks.get()) is not None:
            barrier.wait(timeout=TIMEOUT)
            sid = task.session_id
            if sid is None:
                continue
            start = time.perf_counter()
            if task.side == "ours":
                for i in range(task.count):
                    ours.append(sid, [ours_event(i)])
            else:
                for i in range(task.count):
                    raw.append(sid, [raw_event(i)])
            results.put(("done", index, start, time.perf_counter()))
        ours.close()
        raw.close()
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        barrier.abort()


class Pool:
    """`size` writer processes over one store of ours and one raw log."""

    def __init__(self, size: int, ours_url: str, open_raw: Callable[[], RawLog]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.results: Any = ctx.Queue()
        self.tasks: list[Any] = [ctx.Queue() for _ in range(size)]
        self.barrier = ctx.Barrier(size + 1)
        self.procs = [
            ctx.Process(target=worker, args=(i, ours_url, open_raw, q, self.results, self.barrier),
                        daemon=True)
            for i, q in enumerate(self.tasks)
        ]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            self._get("ready")

    def _get(self, kind: str) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.results.get(timeout=TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"no worker reported within {TIMEOUT} s") from None
        if message[0] == "error":
            raise RuntimeError(f"worker {message[1]} failed:\n{message[2]}")
        assert message[0] == kind, message
        return message

    def trial(self, side: str, session_ids: list[str], count: int) -> float:
        """Events per second of `len(session_ids)` writers, writer i appending `count` events
        to `session_ids[i]`, all starting together."""
        for i, q in enumerate(self.tasks):
            q.put(Task(side, session_ids[i] if i < len(session_ids) else None, count))
        try:
            self.barrier.wait(timeout=TIMEOUT)
        except threading.BrokenBarrierError:
            self._get("done")  # raises with the failed worker's traceback, if it sent one
            raise
        done = [self._get("done") for _ in session_ids]
        start: float = min(d[2] for d in done)
        end: float = max(d[3] for d in done)
        return len(session_ids) * count / (end - start)

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def bench(backend: Backend, cfg: Config) -> list[Row]:
    """The concurrency rows of one backend."""
    variant = backend.strict
    ours_url, open_raw = backend.shared(variant, "concurrency")
    ours, raw = open_store(ours_url), open_raw()
    pool = Pool(max(cfg.writers), ours_url, open_raw)
    rates: dict[tuple[int, str, str], list[float]] = {}
    ratios: dict[tuple[int, str], list[float]] = {}
    try:
        for round_ in range(cfg.rounds):
            for k in cfg.writers:
                for shape in ("own", "shared"):
                    n_sessions = k if shape == "own" else 1
                    got = {}
                    for side in ("ours", "raw") if round_ % 2 == 0 else ("raw", "ours"):
                        if side == "ours":
                            sids = [ours.create_session(app_name="bench", user_id=f"u{i}").id
                                    for i in range(n_sessions)]
                        else:
                            sids = [raw.create("bench", f"u{i}", {}, {}) for i in range(n_sessions)]
                        writers = sids if shape == "own" else sids * k
                        got[side] = pool.trial(side, writers, cfg.appends)
                        rates.setdefault((k, shape, side), []).append(got[side])
                        per_session = 1 + cfg.appends * k // n_sessions
                        for sid in sids:
                            found = (ours.get_session(sid).version if side == "ours"
                                     else len(raw.read_events(sid)))
                            assert found == per_session, (side, sid, found, per_session)
                    ratios.setdefault((k, shape), []).append(got["ours"] / got["raw"])
    finally:
        pool.close()
        ours.close()
        raw.close()
    rows = []
    for shape in ("own", "shared"):
        base = statistics.median(rates[(cfg.writers[0], shape, "ours")])
        for k in cfg.writers:
            o, r = (statistics.median(rates[(k, shape, side)]) for side in ("ours", "raw"))
            what = "own sessions" if shape == "own" else "one shared session"
            rows.append(Row(backend.name, f"appends/s, {k} writer{'s' * (k > 1)}, {what}", "/s",
                            o, r, statistics.median(ratios[(k, shape)]), "higher",
                            extra={"writers": k, "sessions": shape, "variant": variant,
                                   "ours_speedup": o / base}))
    return rows


def parse_writers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        values = ()
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"--writers takes positive integers, not {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stores", type=parse_stores, default=list(STORES),
                        help=f"comma-separated, from {','.join(STORES)} (default: all)")
    parser.add_argument("--postgres-url", default=default_postgres_url(),
                        help="PostgreSQL database to benchmark in (default: "
                             "$AGENTLEDGER_TEST_POSTGRES_URL, else the local agentledger_test)")
    parser.add_argument("--writers", type=parse_writers,
                        help="writer process counts, comma-separated (default 1,2,4,8; quick 1,2)")
    parser.add_argument("--appends", type=int, help="appends per writer and trial")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.writers:
        cfg = Config(args.writers, cfg.appends, cfg.rounds)
    if args.appends:
        cfg = Config(cfg.writers, args.appends, cfg.rounds)
    started = time.perf_counter()
    rows: list[Row] = []
    stores: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="agentledger-bench-") as tmp:
        for name in args.stores:
            try:
                backend = open_backend(name, Path(tmp) / name, args.postgres_url)
            except RuntimeError as exc:
                skipped[name] = str(exc)
                print(exc, file=sys.stderr)
                continue
            try:
                stores[name] = {"title": backend.title, "raw": backend.raw_name,
                                "durability": backend.label(backend.strict), **backend.meta()}
                store_rows = bench(backend, cfg)
            finally:
                backend.close()
            rows += store_rows
            if not args.json:
                notes = ("speed-up of ours over 1 writer: " + ", ".join(
                    f"{r.extra['writers']}:{r.extra['ours_speedup']:.2f}x ({r.extra['sessions']})"
                    for r in store_rows),)
                print_table(f"{backend.title}: concurrent writers, "
                            f"{backend.label(backend.strict)}, {cfg.appends} appends each",
                            backend.raw_name, store_rows, notes)
    meta = {**run_meta("quick" if args.quick else "full", started), "config": asdict(cfg),
            "stores": stores, "cpus": os.cpu_count()}
    if args.json:
        json.dump({"meta": meta, "rows": [asdict(r) for r in rows], "skipped": skipped},
                  sys.stdout, indent=2)
        print()
    else:
        print(f"Python {meta['python']}, {meta['machine']}, {meta['date']}, {meta['mode']} run, "
              f"{meta['seconds']:.0f} s. Events/s over all writers; ours÷raw higher is better.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
