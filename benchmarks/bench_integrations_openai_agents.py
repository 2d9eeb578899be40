"""LedgerSession against the OpenAI Agents SDK's own SQLiteSession (file-backed), in one run.

Measures, for each, on a fresh SQLite file in a temporary folder:
  - `add_items`: calls per second, each call one turn's items (a user message and an
    assistant reply, 2 items), appended to one session;
  - `get_items(limit=20)`: calls per second on a session `--history` items long.
Both sessions use their defaults (ours: the SQLite store's `durability=full`, a synced
commit per write; SQLiteSession: WAL with SQLite's default synchronous=FULL... as it sets).
Runs are interleaved in rounds (ours, theirs, ours, ...) and the median round is reported;
the ratio is ours / theirs (higher is better for us). Goal: ratio >= 1 for both.

    python benchmarks/bench_integrations_openai_agents.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import SQLiteSession

from agentledger.integrations.openai_agents import LedgerSession

GOAL = 1.0


def turn(i: int) -> list[Any]:
    return [
        {"role": "user", "content": f"question {i}: what is the weather like today?"},
        {"role": "assistant", "content": f"answer {i}: sunny, 21 degrees, light wind."},
    ]


async def rate(call: Callable[[int], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await call(i)
    return count / (time.perf_counter() - started)


async def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    sessions: dict[str, Any] = {
        "ours": LedgerSession("bench", f"sqlite:///{folder / 'ledger.db'}"),
        "sqlite_session": SQLiteSession("bench", folder / "sdk.db"),
    }
    long: dict[str, Any] = {
        "ours": LedgerSession("long", f"sqlite:///{folder / 'ledger-long.db'}"),
        "sqlite_session": SQLiteSession("long", folder / "sdk-long.db"),
    }
    for session in long.values():
        for start in range(0, args.history, 500):
            await session.add_items(
                [item for i in range(start, min(start + 500, args.history), 2) for item in turn(i)]
            )
    results: dict[str, dict[str, list[float]]] = {
        name: {"add_items": [], "get_items_20": []} for name in sessions
    }
    for _ in range(args.rounds):
        for name in sessions:
            results[name]["add_items"].append(
                await rate(lambda i: sessions[name].add_items(turn(i)), args.adds)
            )
            results[name]["get_items_20"].append(
                await rate(lambda i: long[name].get_items(limit=20), args.reads)
            )
    for session in [*sessions.values(), *long.values()]:
        session.close()
    report: dict[str, Any] = {"history": args.history, "rounds": args.rounds, "results": {}}
    for op in ("add_items", "get_items_20"):
        ours = statistics.median(results["ours"][op])
        theirs = statistics.median(results["sqlite_session"][op])
        ratio = ours / theirs
        report["results"][op] = {
            "ours_per_s": round(ours, 1),
            "sqlite_session_per_s": round(theirs, 1),
            "ratio": round(ratio, 2),
            "goal": GOAL,
            "met": ratio >= GOAL,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, seconds")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--history", type=int, default=10_000, help="items in the long session")
    parser.add_argument("--adds", type=int, default=300)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.adds, args.reads, args.rounds = 200, 20, 20, 1
    with tempfile.TemporaryDirectory() as folder:
        report = asyncio.run(measure(args, Path(folder)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"LedgerSession vs SQLiteSession (openai-agents), history {args.history} items")
        for op, row in report["results"].items():
            print(
                f"  {op:<14} ours {row['ours_per_s']:>9.1f}/s  SQLiteSession "
                f"{row['sqlite_session_per_s']:>9.1f}/s  ratio {row['ratio']:.2f}x "
                f"(goal >= {GOAL}x: {'met' if row['met'] else 'missed'})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
