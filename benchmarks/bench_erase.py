"""Erase and compaction: what `erase_events`, `truncate_before` and `compact()` cost, and
how much storage a pruned session gives back (a LangGraph `prune` must shrink storage).

Per store, one session of N events (~2 KB each, default 10,000; `--quick`: 300): erase 10
events (one call), truncate the first 90 % (one call), then `compact()` (SQLite and
PostgreSQL: also `compact(full=False)` first, which reclaims nothing on disk but makes the
old bytes unreadable). Sizes: SQLite, the database file and its WAL; file store, every file
of the folder; PostgreSQL, `pg_total_relation_size` of the store's tables.

```sh
.venv/bin/python benchmarks/bench_erase.py                  # every store
.venv/bin/python benchmarks/bench_erase.py --stores sqlite --events 100000 --json
```
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import default_postgres_url, run_meta  # noqa: E402

from agentledger import NewEvent, open_store  # noqa: E402
from agentledger.stores.base import SessionStore  # noqa: E402

BATCH = 100
PAD = "x" * 2000


def _fill(store: SessionStore, events: int) -> str:
    sid = store.create_session(app_name="bench", user_id="ada").id
    for start in range(0, events - 1, BATCH):
        count = min(BATCH, events - 1 - start)
        store.append(
            sid,
            [
                NewEvent(type="agent_message", author="agent", data={"n": start + i, "pad": PAD})
                for i in range(count)
            ],
        )
    return sid


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _pg_bytes(url: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
        return int(row[0]) if row else 0


def run_store(name: str, events: int, postgres_url: str) -> dict[str, Any]:
    """One store's measurements (milliseconds and bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-erase-"))
    schema = f"bench_erase_{uuid.uuid4().hex[:10]}"
    if name == "sqlite":
        url = f"sqlite:///{folder}/x.db?durability=normal"
        size: Callable[[], int] = lambda: _folder_bytes(folder)  # noqa: E731
    elif name == "file":
        url = f"file://{folder}/sessions"
        size = lambda: _folder_bytes(folder)  # noqa: E731
    else:
        url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
        size = lambda: _pg_bytes(postgres_url, schema)  # noqa: E731
    try:
        with open_store(url) as store:
            sid = _fill(store, events)
            if name != "file":
                store.compact(full=False)  # type: ignore[call-arg]  # a settled starting point
            result: dict[str, Any] = {"store": name, "events": events, "bytes_before": size()}
            step = max(events // 10, 1)
            result["erase_10_ms"] = _timed(
                lambda: store.erase_events(sid, list(range(2, events, step))[:10], "bench")
            )
            cut = events * 9 // 10
            result["truncate_ms"] = _timed(lambda: store.truncate_before(sid, cut))
            result["dropped"] = cut - 1
            if name != "file":
                result["compact_light_ms"] = _timed(
                    lambda: store.compact(full=False)  # type: ignore[call-arg]
                )
                result["bytes_after_light"] = size()
            result["compact_ms"] = _timed(store.compact)
            result["bytes_after"] = size()
            result["verify_ok"] = store.verify_session(sid).ok
            result["shrink_ratio"] = result["bytes_after"] / max(result["bytes_before"], 1)
            return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if name == "postgresql":
            import psycopg

            with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,file,postgresql")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="300 events: a smoke run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--postgres-url", default=default_postgres_url())
    args = parser.parse_args()
    events = 300 if args.quick else args.events
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in args.stores.split(","):
        try:
            rows.append(run_store(name, events, args.postgres_url))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: say why, go on
            if name != "postgresql":
                raise
            skipped[name] = f"PostgreSQL skipped: {exc}"
            print(skipped[name], file=sys.stderr)
    if args.json:
        print(json.dumps({"meta": run_meta("quick" if args.quick else "full", started),
                          "rows": rows, "skipped": skipped}))
        return
    print(f"erase and compaction, {events:,} events of ~2 KB in one session")
    for row in rows:
        light = (
            f", compact(full=False) {row['compact_light_ms']:.0f} ms -> "
            f"{row['bytes_after_light'] / 1e6:.1f} MB"
            if "compact_light_ms" in row
            else ""
        )
        print(
            f"{row['store']:>10}: erase 10 {row['erase_10_ms']:.0f} ms, truncate "
            f"{row['dropped']:,} {row['truncate_ms']:.0f} ms{light}, compact "
            f"{row['compact_ms']:.0f} ms; {row['bytes_before'] / 1e6:.1f} MB -> "
            f"{row['bytes_after'] / 1e6:.1f} MB ({row['shrink_ratio']:.2f}), "
            f"verify {'ok' if row['verify_ok'] else 'FAILED'}"
        )


if __name__ == "__main__":
    main()
