"""The store-wide event feed and durable handlers: feed read throughput, and what a
handler costs, in one run.

Run it from the project root:

    .venv/bin/python benchmarks/bench_feed.py              # 100,000 events
    .venv/bin/python benchmarks/bench_feed.py --quick      # 5,000 events

What is measured (`time.perf_counter`, one run each, on SQLite at `durability=full` in a
temporary folder):

- feed read: `read_feed(after, 10_000)` pages over the whole store, in events/s (goal
  >= 100,000/s), beside `read_events` of the same events session by session;
- handler catch-up: `HandlerRunner.run_once()` with a handler that derives nothing and
  one that derives one event per `user_message`, in events/s;
- appends with an inline handler: 1,000 one-event appends, each followed by
  `run_once()` in the writing process, as a ratio to plain appends.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from agentledger import Event, NewEvent, Session, open_store
from agentledger.handlers import EventHandler, HandlerRunner


class Count(EventHandler):
    handler_name = "count"
    handled_event_types = ["user_message"]

    def __init__(self) -> None:
        self.seen = 0

    def handle_event(self, event: Event, session: Session) -> None:
        self.seen += 1


class Derive(Count):
    handler_name = "derive"

    def handle_event(self, event: Event, session: Session) -> NewEvent:  # type: ignore[override]
        return NewEvent(type="plugin.seen", data={"seq": event.seq})


def _fill(store: Any, sessions: int, per_session: int) -> list[str]:
    ids = []
    for s in range(sessions):
        session = store.create_session(app_name="bench", user_id=f"u{s}")
        ids.append(session.id)
        for start in range(1, per_session, 100):
            store.append(
                session.id,
                [
                    NewEvent(type="user_message", author="user", data={"text": "x" * 100, "i": i})
                    for i in range(min(100, per_session - start))
                ],
            )
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events instead of 100,000")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    sessions, per_session = (5, 1000) if args.quick else (100, 1000)
    results: dict[str, Any] = {"events": sessions * per_session}
    with tempfile.TemporaryDirectory() as tmp:
        with open_store(f"sqlite:///{tmp}/feed.db") as store:
            ids = _fill(store, sessions, per_session)
            started = time.perf_counter()
            after, read = 0, 0
            while page := store.read_feed(after, 10_000):
                read += len(page)
                after = page[-1].position
            seconds = time.perf_counter() - started
            results["feed read events/s"] = round(read / seconds)
            started = time.perf_counter()
            for sid in ids:
                store.read_events(sid)
            results["read_events events/s"] = round(read / (time.perf_counter() - started))
            for handler in (Count(), Derive()):
                started = time.perf_counter()
                HandlerRunner(store, [handler]).run_once()
                results[f"handler {handler.handler_name} events/s"] = round(
                    read / (time.perf_counter() - started)
                )
        appends = 300 if args.quick else 1000
        with open_store(f"sqlite:///{tmp}/inline.db") as store:
            session = store.create_session(app_name="bench", user_id="ada")
            one = [NewEvent(type="user_message", author="user", data={"text": "x" * 100})]
            started = time.perf_counter()
            for _ in range(appends):
                store.append(session.id, one)
            plain = time.perf_counter() - started
            runner = HandlerRunner(store, [Count()])
            runner.run_once()
            started = time.perf_counter()
            for _ in range(appends):
                store.append(session.id, one)
                runner.run_once()
            inline = time.perf_counter() - started
            results["appends/s plain"] = round(appends / plain)
            results["appends/s with an inline handler"] = round(appends / inline)
            results["inline handler ratio"] = round(plain / inline, 2)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.items():
            print(f"{name:36} {value:>12,}" if isinstance(value, int) else f"{name:36} {value:>12}")


if __name__ == "__main__":
    main()
