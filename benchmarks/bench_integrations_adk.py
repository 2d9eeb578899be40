"""Google ADK: `LedgerSessionService` beside ADK's own `DatabaseSessionService`, on SQLite.

Run it from the project root (needs `pip install 'agentledger[adk]' 'google-adk[db]'`):

    .venv/bin/python benchmarks/bench_integrations_adk.py            # 100/1,000/5,000 events
    .venv/bin/python benchmarks/bench_integrations_adk.py --json
    .venv/bin/python benchmarks/bench_integrations_adk.py --quick    # smoke run, seconds

Both services run in one process on the same machine, each on its own SQLite file
(ours: `sqlite:///…`; ADK's: `sqlite+aiosqlite:///…`), through ADK's API only:

- append_event: events/s of `append_event` on one session (a user text of ~100 bytes and
  a 2-key state delta each), each append read-modify-written as ADK's runner does (the
  session object carries on), over `--appends` events.
- get_session: ms per `get_session` of a session holding 100, 1,000 and 5,000 events, the
  whole session (`config=None`) and the last 20 (`num_recent_events=20`); median of
  `--rounds`.

Goals: append_event ≥ 5× DatabaseSessionService; get_session at 5,000 events ≥ 20× and
flat in history length. The result says met or missed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.adk.events import Event, EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.genai import types

from agentledger.integrations.adk import LedgerSessionService

TEXT = "Please summarise the incident report from last night and list the follow-ups #"


def event(i: int) -> Event:
    return Event(
        author="user",
        invocation_id=f"inv-{i // 4}",
        content=types.Content(role="user", parts=[types.Part(text=f"{TEXT}{i}")]),
        actions=EventActions(state_delta={"turns": i, "topic": "incident review"}),
    )


async def fill(service: BaseSessionService, session_id: str, count: int) -> float:
    session = await service.create_session(app_name="bench", user_id="u", session_id=session_id)
    started = time.perf_counter()
    for i in range(count):
        await service.append_event(session, event(i))
    return time.perf_counter() - started


async def time_get(
    service: BaseSessionService, session_id: str, config: GetSessionConfig | None, rounds: int
) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        got = await service.get_session(
            app_name="bench", user_id="u", session_id=session_id, config=config
        )
        times.append(time.perf_counter() - started)
        assert got is not None
    return statistics.median(times) * 1000


async def measure(sizes: Sequence[int], appends: int, rounds: int, folder: Path) -> dict[str, Any]:
    ours = LedgerSessionService(f"sqlite:///{folder / 'ours.db'}")
    theirs = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{folder / 'adk.db'}")
    services: dict[str, BaseSessionService] = {"ours": ours, "adk": theirs}
    results: dict[str, Any] = {"append_event": {}, "get_session": {}}
    for name, service in services.items():
        seconds = await fill(service, "appends", appends)
        results["append_event"][name] = appends / seconds
    ratio = results["append_event"]["ours"] / results["append_event"]["adk"]
    results["append_event"]["ratio"] = ratio
    for size in sizes:
        row: dict[str, Any] = {}
        for name, service in services.items():
            await fill(service, f"s{size}", size)
            row[f"{name}_full_ms"] = await time_get(service, f"s{size}", None, rounds)
            row[f"{name}_recent20_ms"] = await time_get(
                service, f"s{size}", GetSessionConfig(num_recent_events=20), rounds
            )
        row["full_ratio"] = row["adk_full_ms"] / row["ours_full_ms"]
        row["recent20_ratio"] = row["adk_recent20_ms"] / row["ours_recent20_ms"]
        results["get_session"][str(size)] = row
    await ours.close()
    await theirs.close()
    largest = results["get_session"][str(max(sizes))]
    smallest = results["get_session"][str(min(sizes))]
    flat = largest["ours_recent20_ms"] <= 2 * smallest["ours_recent20_ms"]
    results["goals"] = {
        "append_event >= 5x": {"ratio": ratio, "met": ratio >= 5},
        f"get_session(num_recent_events=20) at {max(sizes)} >= 20x and flat": {
            "ratio": largest["recent20_ratio"], "flat": flat,
            "met": largest["recent20_ratio"] >= 20 and flat,
        },
        f"get_session(full) at {max(sizes)} >= 20x": {
            "ratio": largest["full_ratio"], "met": largest["full_ratio"] >= 20,
        },
    }
    return results


def print_report(results: dict[str, Any]) -> None:
    a = results["append_event"]
    print(f"append_event: ours {a['ours']:,.0f}/s, DatabaseSessionService {a['adk']:,.0f}/s "
          f"({a['ratio']:.1f}x)")
    print(f"{'events':>7} {'ours full':>10} {'adk full':>10} {'x':>6} "
          f"{'ours last20':>12} {'adk last20':>11} {'x':>6}")
    for size, row in results["get_session"].items():
        print(f"{int(size):>7,} {row['ours_full_ms']:>8.2f}ms {row['adk_full_ms']:>8.2f}ms "
              f"{row['full_ratio']:>5.1f}x {row['ours_recent20_ms']:>10.2f}ms "
              f"{row['adk_recent20_ms']:>9.2f}ms {row['recent20_ratio']:>5.1f}x")
    for goal, verdict in results["goals"].items():
        print(f"goal {goal}: {'met' if verdict['met'] else 'missed'} "
              f"({verdict['ratio']:.1f}x)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--appends", type=int, default=2000, help="events in the append run")
    parser.add_argument("--rounds", type=int, default=7, help="get_session runs per figure")
    args = parser.parse_args(argv)
    sizes = [100, 1000, 5000]
    appends, rounds = args.appends, args.rounds
    if args.quick:
        sizes, appends, rounds = [10, 30], 20, 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-adk-") as folder:
        results = asyncio.run(measure(sizes, appends, rounds, Path(folder)))
    results["meta"] = {"seconds": time.perf_counter() - started, "quick": args.quick,
                       "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    else:
        print_report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
