"""Export, import and copy throughput, in events per second, and a SQLite → PostgreSQL copy.

Run it from the project root:

    .venv/bin/python benchmarks/bench_transfer.py              # 100,000 events
    .venv/bin/python benchmarks/bench_transfer.py --quick      # smoke run, 2,000 events
    .venv/bin/python benchmarks/bench_transfer.py --json

What is measured (`time.perf_counter`, one run each):

- export: `export_sessions` of the whole store to a JSON Lines file, per store kind;
- import: `import_sessions` of that file into an empty store of the same kind;
- copy SQLite → PostgreSQL: `copy_sessions` of the whole SQLite store into an empty
  PostgreSQL schema, its check included (skipped when PostgreSQL cannot be reached).

The data: sessions of 1,000 events each (a `user_message` of ~100 bytes of text with a
2-key state delta), written with `append` batches of 100 events.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agentledger import NewEvent, open_store
from agentledger.transfer import copy_sessions, export_sessions, import_sessions

PG_DEFAULT = "postgresql://postgres@127.0.0.1/agentledger_test"


def _fill(store: Any, sessions: int, per_session: int) -> int:
    text = "x" * 100
    for s in range(sessions):
        session = store.create_session(app_name="bench", user_id=f"u{s % 10}")
        for start in range(1, per_session, 100):
            count = min(100, per_session - start)
            store.append(
                session.id,
                [
                    NewEvent(type="user_message", author="user", data={"text": text, "i": start + i},
                             state_delta={"n": start + i, "last": text[:10]})
                    for i in range(count)
                ],
            )
    return sessions * per_session


def _pg_url(base: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(base, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 (any failure means: skip, and say why)
        print(f"skipping PostgreSQL: {exc}", file=sys.stderr)
        return None
    return f"{base}{'&' if '?' in base else '?'}schema=bench_{uuid.uuid4().hex[:12]}"


def _drop(url: str) -> None:
    import psycopg
    from psycopg.sql import SQL, Identifier

    base, _, schema = url.rpartition("schema=")
    with psycopg.connect(base.rstrip("?&"), autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 events instead of 100,000")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("AGENTLEDGER_TEST_POSTGRES_URL", PG_DEFAULT)
    )
    args = parser.parse_args()
    sessions, per_session = (2, 1000) if args.quick else (100, 1000)
    results: dict[str, Any] = {"events": sessions * per_session}
    with tempfile.TemporaryDirectory() as tmp:
        kinds = {"sqlite": f"sqlite:///{tmp}/a.db", "file": f"file://{tmp}/a-files"}
        for kind, url in kinds.items():
            with open_store(url) as store:
                events = _fill(store, sessions, per_session)
                path = Path(tmp) / f"{kind}.jsonl"
                started = time.perf_counter()
                with path.open("w") as out:
                    export_sessions(store, out, app_name="bench")
                results[f"{kind} export events/s"] = round(events / (time.perf_counter() - started))
            target = url.replace("/a.db", "/b.db").replace("/a-files", "/b-files")
            with open_store(target) as dest, path.open() as lines:
                started = time.perf_counter()
                import_sessions(dest, lines)
                results[f"{kind} import events/s"] = round(events / (time.perf_counter() - started))
            results[f"{kind} export bytes/event"] = round(path.stat().st_size / events)
        pg = _pg_url(args.postgres_url)
        if pg is not None:
            try:
                with open_store(kinds["sqlite"], read_only=True) as source, open_store(pg) as dest:
                    started = time.perf_counter()
                    report = copy_sessions(source, dest)
                    seconds = time.perf_counter() - started
                assert report.events == results["events"], report
                results["copy sqlite->postgresql seconds"] = round(seconds, 2)
                results["copy sqlite->postgresql events/s"] = round(report.events / seconds)
            finally:
                _drop(pg)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.items():
            print(f"{name:40} {value:>12,}" if isinstance(value, int) else f"{name:40} {value:>12}")


if __name__ == "__main__":
    main()
