"""LangGraph checkpoints: our `LedgerSaver` against LangGraph's own `SqliteSaver`, in one run.

Run it from the project root:

    .venv/bin/python benchmarks/bench_integrations_langgraph.py            # 1,000 checkpoints
    .venv/bin/python benchmarks/bench_integrations_langgraph.py --quick --json   # smoke run

Both savers write the same thread, checkpoint by checkpoint and taking turns (so both see
the same load on a busy machine), the way a graph does: each
checkpoint's parent is the one before it, `new_versions` names the channels that changed
(`messages`, the last 10 chat messages as plain dicts, and `step`), and the channels that
did not (`documents`, ~2 KB of retrieved text, and `plan`, set by the first checkpoint) keep
their version. Each checkpoint gets two pending writes (`put_writes`). Both run on SQLite
files in one temporary folder with the same durability (WAL, `synchronous=FULL`: our
`sqlite://` default; SqliteSaver's `journal_mode=WAL` with SQLite's default synchronous).

Measured (median-based where it is per call):
- `put`: checkpoints per second over the whole thread (writes are not timed);
- `get_tuple` latest (no `checkpoint_id`) and by id (the middle checkpoint) on the filled
  thread: median of 200 calls, in ms;
- storage: the database's bytes (main file + WAL after a checkpoint of the WAL, with the
  saver closed) per checkpoint, writes included.

Goals: put and get_tuple ≥ 1x SqliteSaver, storage per checkpoint ≤ SqliteSaver's.
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

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver

from agentledger.integrations.langgraph import LedgerSaver

DOCS = [f"Document {i}: " + "the quarterly incident review found nothing unusual. " * 8
        for i in range(5)]
PLAN = {"goal": "answer the user's question", "steps": ["search", "read", "answer"]}


def _message(i: int) -> dict[str, Any]:
    role = "user" if i % 2 == 0 else "assistant"
    return {"role": role, "content": f"message {i}: please look at the incident report #{i}"}


def _checkpoint(n: int) -> tuple[Any, dict[str, Any]]:
    """Checkpoint `n` of the thread and its `new_versions`."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {
        "messages": [_message(i) for i in range(max(0, n - 9), n + 1)],
        "step": n,
        "documents": DOCS,
        "plan": PLAN,
    }
    checkpoint["channel_versions"] = {"messages": n + 1, "step": n + 1, "documents": 1,
                                      "plan": 1}
    checkpoint["versions_seen"] = {"agent": {"messages": n}}
    new_versions = ({"messages": n + 1, "step": n + 1} if n else
                    dict(checkpoint["channel_versions"]))
    return checkpoint, new_versions


def median_ms(calls: list[Callable[[], Any]], rounds: int) -> list[float]:
    """Median ms of each call, the calls taking turns (so both see the same machine load)."""
    for _ in range(5):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1000 for spent in times]


def db_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def measure(folder: Path, count: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fill one thread in each saver, a checkpoint at a time in turn; then read both."""
    paths = [folder / "ledgersaver.db", folder / "sqlitesaver.db"]
    thread = "bench-thread"
    latest = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    with LedgerSaver(f"sqlite:///{paths[0]}") as ours, \
            SqliteSaver.from_conn_string(str(paths[1])) as theirs:
        savers: list[BaseCheckpointSaver[Any]] = [ours, theirs]
        parents: list[Any] = [None, None]
        put_seconds = [0.0, 0.0]
        middle: list[Any] = [None, None]
        for n in range(count):
            checkpoint, new_versions = _checkpoint(n)
            for k, saver in enumerate(savers):
                config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
                if parents[k]:
                    config["configurable"]["checkpoint_id"] = \
                        parents[k]["configurable"]["checkpoint_id"]
                started = time.perf_counter()
                parents[k] = saver.put(config, dict(checkpoint),
                                       {"source": "loop", "step": n, "parents": {}},
                                       new_versions)
                put_seconds[k] += time.perf_counter() - started
                saver.put_writes(parents[k], [("messages", _message(n + 1)), ("step", n + 1)],
                                 f"task-{n}")
                if n == count // 2:
                    middle[k] = parents[k]
        for k, saver in enumerate(savers):
            loaded = saver.get_tuple(latest)
            assert loaded is not None and loaded.checkpoint["channel_values"]["step"] == count - 1
            assert len(loaded.pending_writes or []) == 2
            got = saver.get_tuple(middle[k])
            assert got is not None and got.checkpoint["channel_values"]["documents"] == DOCS
        latest_ms = median_ms([lambda: ours.get_tuple(latest),
                               lambda: theirs.get_tuple(latest)], rounds)
        by_id_ms = median_ms([lambda: ours.get_tuple(middle[0]),
                              lambda: theirs.get_tuple(middle[1])], rounds)
    results = []
    for k, path in enumerate(paths):
        results.append({
            "put_per_s": count / put_seconds[k],
            "get_tuple_latest_ms": latest_ms[k],
            "get_tuple_by_id_ms": by_id_ms[k],
            "bytes_per_checkpoint": db_bytes(path) / count,
        })
    return results[0], results[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200, help="get_tuple calls timed")
    parser.add_argument("--quick", action="store_true", help="a smoke run (50 checkpoints)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    count, rounds = (50, 20) if args.quick else (args.checkpoints, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-lg-") as tmp:
        folder = Path(tmp)
        ours, theirs = measure(folder, count, rounds)
    ratios = {
        "put": ours["put_per_s"] / theirs["put_per_s"],
        "get_tuple_latest": theirs["get_tuple_latest_ms"] / ours["get_tuple_latest_ms"],
        "get_tuple_by_id": theirs["get_tuple_by_id_ms"] / ours["get_tuple_by_id_ms"],
        "storage": ours["bytes_per_checkpoint"] / theirs["bytes_per_checkpoint"],
    }
    goals = {
        "put >= 1x": ratios["put"] >= 1,
        "get_tuple latest >= 1x": ratios["get_tuple_latest"] >= 1,
        "get_tuple by id >= 1x": ratios["get_tuple_by_id"] >= 1,
        "storage <= SqliteSaver": ratios["storage"] <= 1,
    }
    report = {"checkpoints": count, "ours": ours, "sqlitesaver": theirs, "ratios": ratios,
              "goals_met": goals}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"LangGraph checkpoints: {count} on one thread, SQLite (WAL, synchronous=FULL)")
    print(f"{'':24}{'LedgerSaver':>14}{'SqliteSaver':>14}{'ratio':>9}")
    rows = [("put / s", "put_per_s", "put", "{:,.0f}"),
            ("get_tuple latest (ms)", "get_tuple_latest_ms", "get_tuple_latest", "{:.3f}"),
            ("get_tuple by id (ms)", "get_tuple_by_id_ms", "get_tuple_by_id", "{:.3f}"),
            ("bytes / checkpoint", "bytes_per_checkpoint", "storage", "{:,.0f}")]
    for label, key, ratio, fmt in rows:
        print(f"{label:24}{fmt.format(ours[key]):>14}{fmt.format(theirs[key]):>14}"
              f"{ratios[ratio]:>8.2f}x")
    for goal, met in goals.items():
        print(f"  {'met   ' if met else 'MISSED'} {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
