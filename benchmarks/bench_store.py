"""agentledger's stores side by side with a raw baseline doing the same work on the same backend.

Run it from the project root:

    .venv/bin/python benchmarks/bench_store.py                 # every store, full run
    .venv/bin/python benchmarks/bench_store.py --quick         # smoke run, seconds
    .venv/bin/python benchmarks/bench_store.py --stores sqlite,postgresql --json
    .venv/bin/python benchmarks/bench_store.py --postgres-url postgresql://me@db/bench

Stores (`--stores`, default all three):
    sqlite      `SqliteStore` vs a hand-written `sqlite3` event log (`_sqlite.py`).
    file        `FileStore` vs hand-written file I/O doing the same file work (`_file.py`).
    postgresql  `PostgresStore` vs a hand-written psycopg 3 event log (`_postgres.py`), in
                fresh schemas of the database at `--postgres-url` (default
                `$AGENTLEDGER_TEST_POSTGRES_URL`, else
                `postgresql://postgres@127.0.0.1/agentledger_test`; the database is created
                if missing), dropped afterwards. Skipped, with the reason on stderr and in
                `--json`'s "skipped", when the server cannot be reached.

Each backend module's docstring says what its raw side does and how it differs from ours.
Ratios are always ours ÷ raw: higher is better for throughput (per second), lower is better
for times and bytes.

What is measured (timings are `time.perf_counter`, the median of several rounds):

- appends/s: one `user_message` event (~100 bytes of text, a 2-key state delta) per call,
  to one session, at each durability setting of the backend. Ours builds a `NewEvent` and
  calls `store.append`; raw locks the session, reads its version, writes the event, updates
  the session's version/updated_at, commits. Ours and raw alternate in chunks of 50 calls.
- session load at several ledger lengths: (a) state only, ours = `get_session`, raw = the
  cheapest way its layout allows (SQL stores: fold every state_delta, having no snapshot);
  (b) full history, ours = `read_events` (pydantic `Event`s), raw = the rows with data and
  state_delta parsed.
- creates/s: `create_session` vs writing a session (row or files) and its
  `session_created` event in one transaction.
- list 1,000 sessions: `list_sessions(limit=1000)` vs the 1,000 most recently updated
  sessions with their snapshots parsed.
- bytes per event: what the store occupies (files, or PostgreSQL relations) ÷ events.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _bench import (
    META,
    QUICK,
    STATE,
    Backend,
    Config,
    Row,
    default_postgres_url,
    interleaved,
    judged,
    ours_event,
    paired,
    print_table,
    raw_event,
    run_meta,
)

STORES = ("sqlite", "file", "postgresql")


class Bench:
    """The workloads, run on one backend; results accumulate in `rows`."""

    def __init__(self, backend: Backend, cfg: Config) -> None:
        self.backend, self.cfg = backend, cfg
        self.rows: list[Row] = []

    def add(self, kind: str, metric: str, unit: str, ours: float, raw: float | None,
            ratio: float, better: str) -> None:
        self.rows.append(Row(self.backend.name, metric, unit, ours, raw, ratio, better,
                             **judged(self.backend, kind, ratio)))

    def run(self) -> list[Row]:
        for variant in self.backend.variants:
            self.appends(variant)
        self.loads()
        self.creates()
        self.listing()
        return self.rows

    def appends(self, variant: str) -> None:
        n, ratios, ours_rates, raw_rates = self.cfg.appends, [], [], []
        sizes = None
        for round_ in range(self.cfg.write_rounds):
            pair = self.backend.open_pair(variant, f"append_{variant}")
            try:
                store, raw = pair.ours, pair.raw
                sid = store.create_session(app_name="bench", user_id="u1").id
                rsid = raw.create("bench", "u1", {}, {})

                def ours_step(i: int) -> None:
                    store.append(sid, [ours_event(i)])

                def raw_step(i: int) -> None:
                    raw.append(rsid, [raw_event(i)])

                ours_rate, raw_rate = interleaved(ours_step, raw_step, n)
                if variant == self.backend.relaxed and round_ == self.cfg.write_rounds - 1:
                    sizes = pair.sizes()
            finally:
                pair.close()
            ours_rates.append(ours_rate)
            raw_rates.append(raw_rate)
            ratios.append(ours_rate / raw_rate)
        ratio = statistics.median(ratios)
        self.add(f"append:{variant}", f"appends/s, 1 event/call, {self.backend.label(variant)}",
                 "/s", statistics.median(ours_rates), statistics.median(raw_rates), ratio, "higher")
        if sizes is not None:
            ob, rb = sizes[0] / (n + 1), sizes[1] / (n + 1)
            self.add("bytes", f"bytes/event after {n:,} single appends", "B", ob, rb, ob / rb,
                     "lower")

    def loads(self) -> None:
        cfg, pairs, sids = self.cfg, [], []
        try:
            for size in cfg.load_sizes:
                pair = self.backend.open_pair(self.backend.relaxed, f"load{size}")
                pairs.append(pair)
                store, raw = pair.ours, pair.raw
                sid = store.create_session(app_name="bench", user_id="u1").id
                rsid = raw.create("bench", "u1", {}, {})
                for first in range(1, size, 100):  # setup, untimed: batches of up to 100 events
                    batch = range(first, min(first + 100, size))
                    store.append(sid, [ours_event(i) for i in batch])
                    raw.append(rsid, [raw_event(i) for i in batch])
                assert store.get_session(sid).version == size == len(raw.read_events(rsid))
                assert store.get_session(sid).state == raw.load_state(rsid)
                t_ours, t_raw = paired(lambda: store.get_session(sid),
                                       lambda: raw.load_state(rsid), cfg.round_time, cfg.rounds)
                self.add("state", f"state load, {size:,} events ({self.backend.state_note})",
                         "ms", t_ours * 1e3, t_raw * 1e3, t_ours / t_raw, "lower")
                t_ours, t_raw = paired(lambda: store.read_events(sid),
                                       lambda: raw.read_events(rsid), cfg.round_time, cfg.rounds)
                self.add("history", f"full history, {size:,} events", "ms", t_ours * 1e3,
                         t_raw * 1e3, t_ours / t_raw, "lower")
                sids.append(sid)
            # Flatness: the smallest and the largest ledger measured side by side, alternating.
            (small, big), (small_sid, big_sid) = (pairs[0], pairs[-1]), (sids[0], sids[-1])
            t_big, t_small = paired(lambda: big.ours.get_session(big_sid),
                                    lambda: small.ours.get_session(small_sid),
                                    cfg.round_time, cfg.rounds)
            growth = t_big / t_small
            self.add("growth", f"state load growth, ours {cfg.load_sizes[-1]:,} / ours "
                     f"{cfg.load_sizes[0]:,} events", "x", growth, None, growth, "lower")
            ob, rb = (size / cfg.load_sizes[-1] for size in big.sizes())
            self.add("bytes", f"bytes/event, {cfg.load_sizes[-1]:,} events (batches of 100)", "B",
                     ob, rb, ob / rb, "lower")
        finally:
            for pair in pairs:
                pair.close()

    def creates(self) -> None:
        n, ratios, ours_rates, raw_rates = self.cfg.creates, [], [], []
        for _ in range(self.cfg.write_rounds):
            pair = self.backend.open_pair(self.backend.relaxed, "create")
            try:
                store, raw = pair.ours, pair.raw

                def ours_step(i: int) -> None:
                    store.create_session(app_name="bench", user_id=f"u{i % 10}", state=STATE,
                                         metadata=META)

                def raw_step(i: int) -> None:
                    raw.create("bench", f"u{i % 10}", STATE, META)

                ours_rate, raw_rate = interleaved(ours_step, raw_step, n)
            finally:
                pair.close()
            ours_rates.append(ours_rate)
            raw_rates.append(raw_rate)
            ratios.append(ours_rate / raw_rate)
        self.add("create", f"creates/s, {self.backend.label(self.backend.relaxed)}", "/s",
                 statistics.median(ours_rates), statistics.median(raw_rates),
                 statistics.median(ratios), "higher")

    def listing(self) -> None:
        cfg, n = self.cfg, self.cfg.listed
        pair = self.backend.open_pair(self.backend.relaxed, "list")
        try:
            store, raw = pair.ours, pair.raw
            for i in range(n):
                store.create_session(app_name="bench", user_id=f"u{i % 10}", title=f"Session {i}",
                                     state=STATE, metadata=META)
                raw.create("bench", f"u{i % 10}", STATE, META)
            assert len(store.list_sessions(limit=n).sessions) == n == len(raw.list_sessions(n))
            t_ours, t_raw = paired(lambda: store.list_sessions(limit=n),
                                   lambda: raw.list_sessions(n), cfg.round_time, cfg.rounds)
            self.add("list", f"list {n:,} sessions", "ms", t_ours * 1e3, t_raw * 1e3,
                     t_ours / t_raw, "lower")
        finally:
            pair.close()


def open_backend(name: str, folder: Path, postgres_url: str) -> Backend:
    """The backend called `name`; raises `RuntimeError` with the reason it cannot run."""
    folder.mkdir(parents=True, exist_ok=True)  # stores create their file, not their folder
    if name == "sqlite":
        from _sqlite import SqliteBackend

        return SqliteBackend(folder)
    if name == "file":
        from _file import FileBackend

        return FileBackend(folder)
    try:
            from _postgres import PostgresBackend, check_server
    except ImportError as exc:  # psycopg missing: the `postgres` extra is not installed
        raise RuntimeError(f"PostgreSQL skipped: {exc}") from exc
    problem = check_server(postgres_url)
    if problem is not None:
        raise RuntimeError(f"PostgreSQL skipped: {problem}")
    return PostgresBackend(postgres_url)


def parse_stores(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STORES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown store {', '.join(unknown) or text!r}; choose from {', '.join(STORES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stores", type=parse_stores, default=list(STORES),
                        help=f"comma-separated, from {','.join(STORES)} (default: all)")
    parser.add_argument("--postgres-url", default=default_postgres_url(),
                        help="PostgreSQL database to benchmark in (default: "
                             "$AGENTLEDGER_TEST_POSTGRES_URL, else the local agentledger_test)")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
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
                                "notes": list(backend.notes), **backend.meta()}
                store_rows = Bench(backend, cfg).run()
            finally:
                backend.close()
            rows += store_rows
            if not args.json:
                print_table(f"{backend.title}", backend.raw_name, store_rows, backend.notes)
    meta = {**run_meta("quick" if args.quick else "full", started), "config": asdict(cfg),
            "stores": stores}
    if args.json:
        json.dump({"meta": meta, "rows": [asdict(r) for r in rows], "skipped": skipped},
                  sys.stdout, indent=2)
        print()
    else:
        print(f"Python {meta['python']}, {meta['machine']}, {meta['date']}, {meta['mode']} run, "
              f"{meta['seconds']:.0f} s. ours÷raw: for /s higher is better; for ms and B lower."
              "\nReads: time per call, median of rounds, ours and raw alternating round by round."
              "\nWrites: ours and raw alternate in chunks of 50 calls on fresh stores; the ratio"
              "\nis the median over rounds.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
