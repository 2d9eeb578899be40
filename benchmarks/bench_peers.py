"""Side by side with peers: the bare raw floor, ours and the systems users would pick instead,
the same workloads in one run (`_peers.py` says how each system does each workload).

    .venv/bin/pip install -r benchmarks/requirements-peers.txt   # the peers (optional)
    .venv/bin/python benchmarks/bench_peers.py                   # everything, ~15-20 min
    .venv/bin/python benchmarks/bench_peers.py --quick --json    # smoke run, < 60 s
    .venv/bin/python benchmarks/bench_peers.py --only sqlite --skip adk --runs 3

Workloads, per system: single appends (one ~200-byte event per call, to one session: appends/s)
and batches of ten (events/s), on fresh stores, `--runs` times (medians), every system open
at once and taking turns every 50 appends (5 batches) so that drift in the load of a shared
machine hits them alike; bytes per event over the single appends (SQLite: every file after a
WAL checkpoint; PostgreSQL: `pg_total_relation_size` of every table, no VACUUM); full-history
read of a session of 1,000 and of 5,000 events (filled by batches); the state read on the
5,000-event session; creates/s; listing 1,000 sessions. On PostgreSQL, 8 writer processes
append single events to their own sessions, then all to ONE shared session: events/s over
the whole trial, writes refused (the call raised) and lost (acknowledged but missing from
the session's history at the end). A writer keeps the handle its API gives it (ADK's
session object, an eventsourcing aggregate, LangGraph's last checkpoint config) and reloads
it after a refused write, as an agent loop would.

Ratios: each figure ÷ the raw floor's (SQLite systems at FULL ÷ raw WAL/FULL; ours at
normal ÷ raw WAL/NORMAL; PostgreSQL ÷ raw psycopg), and ours ÷ each peer. Higher is better for
rates, lower for times and bytes. "n/a": the peer has no such operation.

`--workloads` picks among `writes` (appends, batches, bytes), `reads` (history, state,
creates, list) and `concurrency` (default: all three). `--only`/`--skip` take system keys (`raw-full`, `ours-pg`, …), groups (`raw`, `ours`,
`eventsourcing`, `openai`, `adk`, `langgraph`) or backends (`sqlite`, `postgresql`). A peer
that is not installed is skipped with a line saying so; PostgreSQL is skipped with the reason
when unreachable. Each PostgreSQL system gets a fresh database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import CLASSES, SPECS, Spec, System, missing  # noqa: E402

POSTGRES_URL_ENV = "AGENTLEDGER_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class Config:
    appends: int = 1_000
    batches: int = 100
    histories: tuple[int, ...] = (1_000, 5_000)
    reads: int = 5
    creates: int = 1_000
    writers: int = 8
    writes: int = 200
    runs: int = 2


QUICK = Config(appends=30, batches=5, histories=(100, 300), reads=2, creates=30, writers=2,
               writes=10, runs=1)

METRICS: list[tuple[str, str, str]] = [
    ("appends/s", "/s", "single appends"),
    ("batch events/s", "/s", "batches of 10"),
    ("read {0}", "ms", "full history"),
    ("read {1}", "ms", "full history"),
    ("state read", "ms", "state on the longer session"),
    ("creates/s", "/s", "creates"),
    ("list {c}", "ms", "list sessions"),
    ("B/event", "B", "bytes per event"),
]
CONCURRENCY = [("own {w}w", "/s"), ("shared {w}w", "/s"), ("refused", "n"), ("lost", "n")]


def floor_of(key: str, backend: str) -> str:
    if backend == "postgresql":
        return "raw-pg"
    return "raw-normal" if key.endswith("normal") else "raw-full"


def ours_of(key: str, backend: str) -> str:
    return "ours-pg" if backend == "postgresql" else "ours-full"


def median_time(fn: Callable[[], object], n: int) -> float:
    """Median seconds of `n` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def na(fn: Callable[[], float]) -> float | None:
    """The figure, or `None` where the system has no such operation."""
    try:
        return fn()
    except NotImplementedError:
        return None


# -- PostgreSQL databases ---------------------------------------------------------------------

class Databases:
    """Fresh databases on the server of `url`, dropped by `close`."""

    def __init__(self, url: str) -> None:
        self.url, self.made = url, []  # type: tuple[str, list[str]]
        self.tag = secrets.token_hex(3)

    def check(self) -> str | None:
        import psycopg

        try:
            with psycopg.connect(self.admin(), autocommit=True, connect_timeout=5):
                return None
        except psycopg.Error as exc:
            return f"PostgreSQL skipped: cannot connect to {self.url}: {str(exc).strip()}"

    def admin(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self.url, dbname="postgres")

    def fresh(self, key: str) -> str:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        name = f"bench_peers_{self.tag}_{len(self.made)}_{key.replace('-', '_')}"
        with psycopg.connect(self.admin(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        info = conninfo_to_dict(self.url)
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        return (f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:"
                f"{info.get('port', '5432')}/{name}")

    def close(self) -> None:
        import psycopg

        with psycopg.connect(self.admin(), autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made = []


# -- workloads --------------------------------------------------------------------------------

def timed_in_turns(steps: dict[str, Callable[[int], object]], n: int, chunk: int) -> dict[str, float]:
    """Seconds each system's `n` steps took, the systems taking turns every `chunk` steps so
    that drift in machine load and disk latency hits them all alike."""
    spent = dict.fromkeys(steps, 0.0)
    for first in range(0, n, chunk):
        for key, step in steps.items():
            start = time.perf_counter()
            for i in range(first, min(first + chunk, n)):
                step(i)
            spent[key] += time.perf_counter() - start
    return spent


def writes(systems: dict[str, System], cfg: Config, first: bool,
           out: dict[str, dict[str, list[float]]]) -> None:
    """Single appends (with bytes per event on the first run), then batches of ten, every
    system on a fresh session, the systems taking turns (50 appends, 5 batches)."""
    single = {k: s.create() for k, s in systems.items()}
    for k, s in systems.items():
        s.append(single[k], 0)  # OpenAI Agents' and LangGraph's sessions appear here
    before = {k: s.size() for k, s in systems.items()} if first else {}
    spent = timed_in_turns({k: (lambda i, s=s, h=single[k]: s.append(h, i + 1))
                            for k, s in systems.items()}, cfg.appends, 50)
    for k, s in systems.items():
        out[k].setdefault("appends/s", []).append(cfg.appends / spent[k])
        if first:
            out[k]["B/event"] = [(s.size() - before[k]) / cfg.appends]
    batch = {k: s.create() for k, s in systems.items()}
    spent = timed_in_turns({k: (lambda b, s=s, h=batch[k]: s.append_batch(h, b * 10, 10))
                            for k, s in systems.items()}, cfg.batches, 5)
    for k in systems:
        out[k].setdefault("batch events/s", []).append(cfg.batches * 10 / spent[k])


def reads(sys_: System, cfg: Config) -> dict[str, float | None]:
    """Full-history reads, the state read, creates and the listing, on one store."""
    got: dict[str, float | None] = {}
    longest = None
    for n in cfg.histories:
        h = sys_.create()
        for b in range(0, n - 10, 10):
            sys_.append_batch(h, b, 10)
        while sys_.count(h) < n:
            sys_.append(h, n)
        got[f"read {n}"] = median_time(lambda: sys_.read_all(h), cfg.reads) * 1000
        longest = h
    got["state read"] = na(lambda: median_time(lambda: sys_.state(longest), cfg.reads) * 1000)

    def creates() -> float:
        sys_.create_timed()  # n/a raises before the loop
        start = time.perf_counter()
        for _ in range(cfg.creates - 1):
            sys_.create_timed()
        return (cfg.creates - 1) / (time.perf_counter() - start)

    got["creates/s"] = na(creates)
    got[f"list {cfg.creates}"] = na(
        lambda: median_time(lambda: sys_.list_sessions(cfg.creates), cfg.reads) * 1000)
    return got


def _writer(key: str, loc: str, own: str, shared: str, n: int, barrier: Any, queue: Any) -> None:
    """One writer process: `n` single appends to its own session, then `n` to the shared one."""
    sys_ = CLASSES[key](loc, setup=False)
    try:
        for phase, sid in (("own", own), ("shared", shared)):
            h = sys_.attach(sid)
            barrier.wait()
            ok = refused = 0
            errors: dict[str, int] = {}
            start = time.time()
            for i in range(n):
                try:
                    sys_.append(h, i)
                    ok += 1
                except Exception as exc:  # a refused write: count it, reload the handle
                    refused += 1
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    try:
                        h = sys_.attach(sid)
                    except Exception:
                        pass
            queue.put((phase, ok, refused, start, time.time(), errors))
    finally:
        sys_.close()


def concurrency(key: str, loc: str, cfg: Config) -> dict[str, Any]:
    """`cfg.writers` processes on their own sessions, then on one shared session."""
    sys_ = CLASSES[key](loc)
    own = [sys_.create() for _ in range(cfg.writers)]
    shared = sys_.create()
    for h in [*own, shared]:
        sys_.append(h, 0)  # so every session exists however its system makes them
    ids = [sys_.hid(h) for h in own]
    base_own = [sys_.count(sys_.attach(s)) for s in ids]
    base_shared = sys_.count(sys_.attach(sys_.hid(shared)))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(cfg.writers, timeout=600)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(key, loc, ids[w], sys_.hid(shared), cfg.writes,
                                               barrier, queue)) for w in range(cfg.writers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in range(2 * cfg.writers)]
    for p in procs:
        p.join(timeout=60)
    out: dict[str, Any] = {}
    for phase in ("own", "shared"):
        rows = [r for r in results if r[0] == phase]
        ok = sum(r[1] for r in rows)
        refused = sum(r[2] for r in rows)
        span = max(r[4] for r in rows) - min(r[3] for r in rows)
        if phase == "own":
            kept = sum(sys_.count(sys_.attach(s)) - b for s, b in zip(ids, base_own))
        else:
            kept = sys_.count(sys_.attach(sys_.hid(shared))) - base_shared
        errors: dict[str, int] = {}
        for r in rows:
            for name, k in r[5].items():
                errors[name] = errors.get(name, 0) + k
        out[phase] = {"events/s": ok / span, "acknowledged": ok, "refused": refused,
                      "lost": ok - kept, "errors": errors}
    sys_.close()
    return out


# -- the run ----------------------------------------------------------------------------------

def selected(args: argparse.Namespace) -> tuple[list[Spec], dict[str, str]]:
    def matches(spec: Spec, words: list[str]) -> bool:
        backend = CLASSES[spec[0]].backend
        return any(w in (spec[0], spec[2], backend) for w in words)

    only = [w for w in (args.only or "").split(",") if w]
    skip = [w for w in (args.skip or "").split(",") if w]
    chosen, skipped = [], {}
    for spec in SPECS:
        if only and not matches(spec, only) or matches(spec, skip):
            continue
        reason = missing(spec)
        if reason:
            skipped[spec[0]] = reason
            print(reason, file=sys.stderr)
        else:
            chosen.append(spec)
    return chosen, skipped


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = QUICK if args.quick else Config()
    if args.runs:
        cfg = Config(**{**asdict(cfg), "runs": args.runs})
    started = time.perf_counter()
    specs, skipped = selected(args)
    dbs = Databases(args.postgres_url)
    if any(CLASSES[s[0]].backend == "postgresql" for s in specs):
        reason = dbs.check()
        if reason:
            print(reason, file=sys.stderr)
            for s in [s for s in specs if CLASSES[s[0]].backend == "postgresql"]:
                skipped[s[0]] = reason
            specs = [s for s in specs if CLASSES[s[0]].backend != "postgresql"]
    tmp = tempfile.TemporaryDirectory(prefix="bench_peers_", dir=args.tmpdir)
    figures: dict[str, dict[str, Any]] = {s[0]: {} for s in specs}
    conc: dict[str, Any] = {}
    try:
        def fresh(key: str) -> str:
            if CLASSES[key].backend == "postgresql":
                return dbs.fresh(key)
            path = Path(tmp.name) / f"{key}-{secrets.token_hex(3)}"
            path.mkdir()
            return str(path)

        samples: dict[str, dict[str, list[float]]] = {s[0]: {} for s in specs}
        kept: dict[str, System] = {}
        workloads = set(args.workloads.split(","))
        for r in range(cfg.runs if "writes" in workloads else 1):
            log(args, f"run {r + 1}/{cfg.runs}: single appends and batches, systems taking turns")
            opened = {key: CLASSES[key](fresh(key)) for key, *_ in specs}
            if "writes" in workloads:
                writes(opened, cfg, r == 0, samples)
            for key, sys_ in opened.items():
                if r == cfg.runs - 1 or "writes" not in workloads:
                    kept[key] = sys_
                else:
                    sys_.close()
        for key, label, *_ in specs:
            figures[key].update({m: statistics.median(v) for m, v in samples[key].items()})
            if "reads" in workloads:
                log(args, f"reads, creates, list: {label}")
                figures[key].update(reads(kept[key], cfg))
            kept.pop(key).close()
        for key, label, *_ in specs:
            if CLASSES[key].backend == "postgresql" and "concurrency" in workloads:
                log(args, f"{cfg.writers} writer processes: {label}")
                conc[key] = concurrency(key, fresh(key), cfg)
    finally:
        if dbs.made:
            dbs.close()
        tmp.cleanup()
    return report(specs, skipped, figures, conc, cfg, started)


def log(args: argparse.Namespace, line: str) -> None:
    if not args.json:
        print(f"... {line}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"sqlite": sqlite3.sqlite_version}
    for dist in ("agentledger", "psycopg", "eventsourcing", "openai-agents", "google-adk",
                 "SQLAlchemy", "aiosqlite", "langgraph-checkpoint-sqlite",
                 "langgraph-checkpoint-postgres"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def report(specs: list[Spec], skipped: dict[str, str], figures: dict[str, dict[str, Any]],
           conc: dict[str, Any], cfg: Config, started: float) -> dict[str, Any]:
    names = [m.format(*cfg.histories, c=cfg.creates) for m, _, _ in METRICS]
    units = {m.format(*cfg.histories, c=cfg.creates): u for m, u, _ in METRICS}
    for key, c in conc.items():
        figures[key][f"own {cfg.writers}w"] = c["own"]["events/s"]
        figures[key][f"shared {cfg.writers}w"] = c["shared"]["events/s"]
        figures[key]["refused"] = c["own"]["refused"] + c["shared"]["refused"]
        figures[key]["lost"] = c["own"]["lost"] + c["shared"]["lost"]
    for m, u in CONCURRENCY:
        name = m.format(w=cfg.writers)
        units[name] = u
        if conc:
            names.append(name)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    systems: dict[str, Any] = {}
    for key, label, group, cls, _ in specs:
        floor, ours = floor_of(key, cls.backend), ours_of(key, cls.backend)
        f = figures[key]
        systems[key] = {
            "label": label, "group": group, "backend": cls.backend, "floor": floor,
            "figures": {m: f.get(m) for m in names},
            "vs_floor": {m: ratio(f.get(m), figures.get(floor, {}).get(m))
                         for m in names if units[m] != "n"},
            "ours_vs_this": {m: ratio(figures.get(ours, {}).get(m), f.get(m))
                             for m in names if units[m] != "n"} if group != "ours" else {},
        }
        if key in conc:
            systems[key]["concurrency"] = conc[key]
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "load average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "mode": "quick" if cfg is QUICK else "full", "seconds": time.perf_counter() - started,
            "config": asdict(cfg), "versions": versions()}
    return {"meta": meta, "metrics": {m: units[m] for m in names}, "systems": systems,
            "skipped": skipped}


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def print_tables(result: dict[str, Any]) -> None:
    units: dict[str, str] = result["metrics"]
    meta = result["meta"]
    print(f"bench_peers.py ({meta['mode']}), {meta['date']}, {meta['machine']}, "
          f"Python {meta['python']}, SQLite {meta['versions']['sqlite']}")
    print("figures, each with its ratio to the raw floor (x); /s: higher is better; "
          "ms and B: lower is better")
    for backend in ("sqlite", "postgresql"):
        keys = [k for k, s in result["systems"].items() if s["backend"] == backend]
        if not keys:
            continue
        metrics = [m for m in units if any(result["systems"][k]["figures"].get(m) is not None
                                           for k in keys)]
        head = ["system", *[f"{m} ({units[m]})" if units[m] != "n" else m for m in metrics]]
        rows = [head]
        for k in keys:
            s = result["systems"][k]
            row = [s["label"]]
            for m in metrics:
                v, x = s["figures"].get(m), s["vs_floor"].get(m)
                row.append(cell(v, units[m]) + (f" {x:.2f}x" if x is not None else ""))
            rows.append(row)
        print_rows(f"\n{backend}", rows)
        peers = [k for k in keys if result["systems"][k]["ours_vs_this"]
                 and result["systems"][k]["group"] != "raw"]
        if peers:
            rated = [m for m in metrics if units[m] != "n"]
            rows = [["ours ÷ peer", *rated]]
            for k in peers:
                s = result["systems"][k]
                rows.append([s["label"], *[
                    f"{x:.2f}x" if (x := s["ours_vs_this"].get(m)) is not None else "n/a"
                    for m in rated]])
            ours = "ours postgresql" if backend == "postgresql" else "ours sqlite full"
            print_rows(f"{ours} ÷ each peer (rates: >1 ours faster; ms, B: <1 ours better)",
                       rows)
    for key, reason in result["skipped"].items():
        print(f"skipped {key}: {reason}")


def print_rows(title: str, rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(title)
    for n, r in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 60 s")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--postgres-url",
                        default=os.environ.get(POSTGRES_URL_ENV)
                        or "postgresql://postgres@127.0.0.1:5432/bench_peers",
                        help="a server to make fresh databases on (default "
                             f"${POSTGRES_URL_ENV}, else postgresql://postgres@127.0.0.1/bench_peers)")
    parser.add_argument("--only", help="comma-separated systems, groups or backends to run")
    parser.add_argument("--skip", help="comma-separated systems, groups or backends to skip")
    parser.add_argument("--workloads", default="writes,reads,concurrency",
                        help="comma-separated: writes, reads, concurrency (default: all)")
    parser.add_argument("--runs", type=int, help="runs of the write workloads (medians)")
    parser.add_argument("--tmpdir", help="where the SQLite and file stores go")
    parser.add_argument("--save", help="also write the JSON results to this file")
    parser.add_argument("--from-json", help="print the tables of saved JSON results, run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        print_tables(json.loads(Path(args.from_json).read_text()))
        return 0
    result = run(args)
    if args.save:
        Path(args.save).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
