"""Load soak: parallel agent turns of one user, under background writes, keep every update.

Each round starts `--turns` processes of the installed console script at once, each running
`agentledger --store URL run "Remind me to <task>" --user soak-user --session S` in one of
`--sessions` sessions of that user (so turns race both inside one session and across the
user's sessions on the shared `user:reminders` list), while `--writers` background processes
append events with state deltas to sessions of other users as fast as they can. After every
round the user's reminders must be exactly the ones added so far, each once, and every turn
must have exited 0 with no `error` event in the ledgers. Run from the project root:

    .venv/bin/python benchmarks/load_soak.py                       # sqlite, file, postgresql
    .venv/bin/python benchmarks/load_soak.py --stores sqlite --rounds 5 --json
    .venv/bin/python benchmarks/load_soak.py --turns 4 --rounds 1 --writers 1   # a smoke run

PostgreSQL uses `--postgres-url` (default `$AGENTLEDGER_TEST_POSTGRES_URL`, else
`postgresql://postgres@127.0.0.1/agentledger_test`) in a fresh schema dropped at the end; it
is skipped, saying why, when the server cannot be reached. Exit status 0 when every check
held, 1 when one did not, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentledger import NewEvent, open_store
from agentledger.demo import DEMO_APP
from agentledger.stores.base import SessionStore

USER = "soak-user"
DEFAULT_PG = "postgresql://postgres@127.0.0.1/agentledger_test"


@dataclass
class StoreReport:
    """What one store's soak did and found."""

    store: str
    rounds: int = 0
    turns: int = 0
    failed_turns: int = 0
    reminders_expected: int = 0
    reminders_found: int = 0
    reminders_missing: int = 0
    reminders_duplicated: int = 0
    error_events: int = 0
    background_appends: int = 0
    seconds: float = 0.0
    turn_seconds_median: float = 0.0
    turn_seconds_max: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def console_script() -> str:
    candidate = Path(sys.executable).parent / "agentledger"
    if candidate.exists():
        return str(candidate)
    raise SystemExit("the agentledger console script is not installed next to this Python")


def background_writer(url: str, worker: int, stop: Any, counts: Any) -> None:
    """Append small events with state deltas (session and `user:` keys of another user)
    to a session of its own until `stop` is set; report the count."""
    n = 0
    try:
        store = open_store(url)
        try:
            session = store.create_session(app_name=DEMO_APP, user_id=f"noise-{worker}")
            while not stop.is_set():
                store.append(
                    session.id,
                    [NewEvent(type="state_updated", data={"n": n},
                              state_delta={"n": n, "user:last": n})],
                )
                n += 1
        finally:
            store.close()
    except Exception as exc:  # reported by the parent as a failure of the soak
        counts.put((n, f"background writer {worker}: {type(exc).__name__}: {exc}"))
        return
    counts.put((n, None))


def _turn(exe: str, url: str, session_id: str, task: str) -> tuple[int, float, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [exe, "--store", url, "run", f"Remind me to {task}", "--user", USER,
         "--session", session_id],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return proc.returncode, time.perf_counter() - started, proc.stderr.strip()[-300:]


def soak_store(url: str, turns: int, rounds: int, sessions: int, writers: int) -> StoreReport:
    """Run the rounds on the store at `url` (fresh and empty) and check it after each."""
    from concurrent.futures import ThreadPoolExecutor

    report = StoreReport(store=url)
    exe = console_script()
    store: SessionStore = open_store(url)
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    started = time.perf_counter()
    try:
        ids = [
            store.create_session(app_name=DEMO_APP, user_id=USER, agent_name="reminders").id
            for _ in range(sessions)
        ]
        expected: list[str] = []
        latencies: list[float] = []
        for r in range(rounds):
            stop = ctx.Event()
            counts = ctx.Queue()
            noise = [ctx.Process(target=background_writer, args=(url, w, stop, counts))
                     for w in range(writers)]
            for p in noise:
                p.start()
            tasks = [f"task {r}-{i}" for i in range(turns)]
            with ThreadPoolExecutor(max_workers=turns) as pool:
                results = list(pool.map(lambda i: _turn(exe, url, ids[i % sessions], tasks[i]),
                                        range(turns)))
            stop.set()
            for _ in noise:
                appended, problem = counts.get(timeout=600)
                report.background_appends += appended
                if problem:
                    report.failures.append(f"round {r}: {problem}")
            for p in noise:
                p.join(timeout=120)
            expected += tasks
            report.rounds += 1
            report.turns += turns
            for code, seconds, stderr in results:
                latencies.append(seconds)
                if code != 0:
                    report.failed_turns += 1
                    report.failures.append(f"round {r}: a turn exited {code}: {stderr}")
            found = store.get_session(ids[0]).state.get("user:reminders", [])
            counted = Counter(found)
            missing = [t for t in expected if counted[t] == 0]
            duplicated = [t for t, c in counted.items() if c > 1]
            if missing or duplicated or len(found) != len(expected):
                report.failures.append(
                    f"round {r}: {len(found)} reminders for {len(expected)} added; "
                    f"missing {missing[:5]}, duplicated {duplicated[:5]}"
                )
            report.reminders_expected = len(expected)
            report.reminders_found = len(found)
            report.reminders_missing = len(missing)
            report.reminders_duplicated = len(duplicated)
        errors = sum(len(store.read_events(sid, types=["error"])) for sid in ids)
        report.error_events = errors
        if errors:
            report.failures.append(f"{errors} error events in the ledgers")
        report.turn_seconds_median = statistics.median(latencies) if latencies else 0.0
        report.turn_seconds_max = max(latencies, default=0.0)
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def _postgres(base: str) -> tuple[str, Any] | str:
    """A fresh schema's URL and a function dropping it, or why PostgreSQL is unusable."""
    try:
        import psycopg
        from psycopg.sql import SQL, Identifier
    except ImportError:
        return "psycopg is not installed (pip install 'agentledger[postgres]')"
    schema = f"load_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        return f"PostgreSQL at {base.split('@')[-1]} cannot be reached: {exc}".splitlines()[0]

    def drop() -> None:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))

    return f"{base}{'&' if '?' in base else '?'}schema={schema}", drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,file,postgresql",
                        help="any of sqlite,file,postgresql (default: all three)")
    parser.add_argument("--turns", type=int, default=32, help="parallel turns per round (32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per store (3)")
    parser.add_argument("--sessions", type=int, default=4,
                        help="sessions of the user the turns spread over (4)")
    parser.add_argument("--writers", type=int, default=2,
                        help="background writer processes during each round (2)")
    parser.add_argument("--postgres-url",
                        default=os.environ.get("AGENTLEDGER_TEST_POSTGRES_URL") or DEFAULT_PG)
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"sqlite", "file", "postgresql"}
    if unknown or not stores:
        parser.error(f"unknown stores: {sorted(unknown)}")
    if min(args.turns, args.rounds, args.sessions) < 1 or args.writers < 0:
        parser.error("--turns, --rounds and --sessions must be at least 1, --writers at least 0")

    reports: list[StoreReport] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="load-soak-") as tmp:
        for name in stores:
            drop = None
            if name == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'soak.db'}"
            elif name == "file":
                url = f"file://{Path(tmp) / 'sessions'}"
            else:
                made = _postgres(args.postgres_url)
                if isinstance(made, str):
                    skipped[name] = made
                    print(f"skipped postgresql: {made}", file=sys.stderr)
                    continue
                url, drop = made
            if not args.json:
                print(f"{name}: {args.rounds} rounds of {args.turns} parallel turns over "
                      f"{args.sessions} sessions, {args.writers} background writers", flush=True)
            try:
                report = soak_store(url, args.turns, args.rounds, args.sessions, args.writers)
            finally:
                if drop is not None:
                    drop()
            report.store = name
            reports.append(report)
            if not args.json:
                status = "ok" if report.ok else "FAILED"
                print(
                    f"  {status}: {report.turns} turns ({report.failed_turns} failed), "
                    f"{report.reminders_found}/{report.reminders_expected} reminders kept "
                    f"({report.reminders_missing} missing, {report.reminders_duplicated} twice), "
                    f"{report.error_events} error events, "
                    f"{report.background_appends} background appends, "
                    f"turn {report.turn_seconds_median:.2f} s median / "
                    f"{report.turn_seconds_max:.2f} s max, {report.seconds:.1f} s in all",
                    flush=True,
                )
                for failure in report.failures[:10]:
                    print(f"    {failure}", flush=True)
    if args.json:
        print(json.dumps({"reports": [asdict(r) for r in reports], "skipped": skipped},
                         indent=2))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
