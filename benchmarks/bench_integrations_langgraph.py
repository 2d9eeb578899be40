"""LangGraph checkpoints: our `LedgerSaver` against LangGraph's own `SqliteSaver`, in one run.

Run it from the project root:

    .venv/bin/python benchmarks/bench_integrations_langgraph.py            # 1,000 checkpoints
    .venv/bin/python benchmarks/bench_integrations_langgraph.py --quick --json   # smoke run

Both savers write the same thread, checkpoint by checkpoint, the way a graph does: each
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


def fill(saver: BaseCheckpointSaver[Any], thread_id: str, count: int) -> tuple[float, list[Any]]:
    """Put `count` chained checkpoints (and 2 writes each); the seconds spent in `put`."""
    parent: Any = None
    spent = 0.0
    configs = []
    for n in range(count):
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
        new_versions = ({"messages": n + 1, "step": n + 1} if parent else
                        dict(checkpoint["channel_versions"]))
        config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        if parent:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        start = time.perf_counter()
        parent = saver.put(config, checkpoint, {"source": "loop", "step": n, "parents": {}},
                           new_versions)
        spent += time.perf_counter() - start
        saver.put_writes(parent, [("messages", _message(n + 1)), ("step", n + 1)], f"task-{n}")
        configs.append(parent)
    return spent, configs


def median_ms(call: Callable[[], Any], rounds: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def db_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def measure(name: str, make: Callable[[Path], Any], folder: Path, count: int, rounds: int
            ) -> dict[str, Any]:
    path = folder / f"{name}.db"
    with make(path) as saver:
        put_seconds, configs = fill(saver, "bench-thread", count)
        latest = {"configurable": {"thread_id": "bench-thread", "checkpoint_ns": ""}}
        middle = configs[len(configs) // 2]
        loaded = saver.get_tuple(latest)
        assert loaded is not None and loaded.checkpoint["channel_values"]["step"] == count - 1
        assert len(loaded.pending_writes or []) == 2
        got = saver.get_tuple(middle)
        assert got is not None and got.checkpoint["channel_values"]["documents"] == DOCS
        latest_ms = median_ms(lambda: saver.get_tuple(latest), rounds)
        by_id_ms = median_ms(lambda: saver.get_tuple(middle), rounds)
    size = db_bytes(path)
    return {
        "put_per_s": count / put_seconds,
        "get_tuple_latest_ms": latest_ms,
        "get_tuple_by_id_ms": by_id_ms,
        "bytes_per_checkpoint": size / count,
    }


def _ours(path: Path) -> LedgerSaver:
    return LedgerSaver(f"sqlite:///{path}")


def _theirs(path: Path) -> Any:
    return SqliteSaver.from_conn_string(str(path))


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
        theirs = measure("sqlitesaver", _theirs, folder, count, rounds)
        ours = measure("ledgersaver", _ours, folder, count, rounds)
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
