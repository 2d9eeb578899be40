"""What plugins cost an append: the same appends with no plugin, with a no-op observer, with
`redact`, and with an inline durable event handler, side by side in one run, as ratios to
plain appends.

Run it from the project root:

    .venv/bin/python benchmarks/bench_plugins.py             # sqlite (full, normal), memory
    .venv/bin/python benchmarks/bench_plugins.py --quick     # smoke run, seconds
    .venv/bin/python benchmarks/bench_plugins.py --stores sqlite-normal --json

Each configuration is a store of its own (fresh, same URL shape) with one session; an append
is one `user_message` of ~100 bytes with a 2-key state delta (as `bench_store.py`). The
configurations take turns in chunks of 50 appends, so drift in disk latency (fsync) hits
them alike; rates are the median of several rounds. Ratios are appends/s ÷ appends/s with
no plugin: higher is better, 1.0 is free. Configurations:

- `none`: no plugin (`store.plugins is None`: the write path tests one attribute).
- `observer`: a plugin with a no-op `after_append` (the cost of the hook machinery).
- `redact`: the built-in `redact` plugin, on text without secrets (the common case).
- `redact+secret`: `redact` on events that each hold an API key and a password key.
- `handler`: a durable event handler plugin run inline after each append (it handles each
  user message and derives nothing: the cost is reading the feed past its position and
  storing its new position, in the appending call).
- `handler+derive`: the same handler deriving one event per user message (so each append
  also writes the derived event and the handler's position before it returns).

Goal: `redact` at 0.8x plain appends or better.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from typing import Any

from agentledger import Event, NewEvent, Session, hookimpl, open_store
from agentledger.handlers import EventHandler
from agentledger.stores.base import SessionStore

TEXT = "Please summarise the incident report from last night and list the follow-ups #"
SECRET_TEXT = "use key sk-proj-Zq81mXa0TbVw9c2LkPfe7RuY4hNd for the report #"
STORES = {
    "sqlite-full": "sqlite:///{dir}/{name}.db",
    "sqlite-normal": "sqlite:///{dir}/{name}.db?durability=normal",
    "memory": "memory://",
}
GOAL = 0.8


class Observer:
    """A plugin that observes every append and does nothing."""

    name = "observer"

    @hookimpl
    def after_append(self, events: list[Any]) -> None:
        pass


class Quiet(EventHandler):
    """A durable handler that looks at every user message and derives nothing."""

    handler_name = "quiet"
    handled_event_types = ["user_message"]

    def handle_event(self, event: Event, session: Session) -> None:
        return None


class Deriving(EventHandler):
    """A durable handler that answers every user message with one derived event."""

    handler_name = "deriving"
    handled_event_types = ["user_message"]

    def handle_event(self, event: Event, session: Session) -> NewEvent:
        return NewEvent(type="plugin.ack", data={"seen": event.seq})


CONFIGS: dict[str, tuple[list[Any], bool]] = {
    "none": ([], False),
    "observer": ([Observer()], False),
    "redact": (["redact"], False),
    "redact+secret": (["redact"], True),
    "handler": ([Quiet()], False),
    "handler+derive": ([Deriving()], False),
}


def event(i: int, secret: bool) -> NewEvent:
    data: dict[str, Any] = {"text": (SECRET_TEXT if secret else TEXT) + str(i)}
    if secret:
        data["password"] = f"pw-{i}"
    return NewEvent(type="user_message", author="user", data=data,
                    state_delta={"topic": "incident review", "turns": i})


def bench_store(url_shape: str, appends: int, rounds: int, chunk: int = 50) -> dict[str, float]:
    """Median appends/s of each configuration on fresh stores of `url_shape`."""
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="bench-plugins-") as folder:
        for r in range(rounds):
            stores: dict[str, SessionStore] = {}
            sessions: dict[str, str] = {}
            for name, (plugins, _) in CONFIGS.items():
                url = url_shape.format(dir=folder, name=f"{name}-{r}".replace("+", "_"))
                stores[name] = open_store(url, plugins=plugins)
                sessions[name] = stores[name].create_session(app_name="bench", user_id="u").id
            elapsed = dict.fromkeys(CONFIGS, 0.0)
            gc.collect()
            for first in range(0, appends, chunk):
                for name, (_, secret) in CONFIGS.items():
                    store, sid = stores[name], sessions[name]
                    batch = [event(i, secret) for i in range(first, min(first + chunk, appends))]
                    start = time.perf_counter()
                    for e in batch:
                        store.append(sid, [e])
                    elapsed[name] += time.perf_counter() - start
            for name, store in stores.items():
                rates[name].append(appends / elapsed[name])
                store.close()
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default=",".join(STORES),
                        help=f"comma-separated, of: {', '.join(STORES)}")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    names = [s for s in args.stores.split(",") if s]
    unknown = [s for s in names if s not in STORES]
    if unknown:
        parser.error(f"unknown store(s): {', '.join(unknown)}")
    appends, rounds = (100, 1) if args.quick else (2_000, 5)
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "appends": appends,
                               "rounds": rounds, "goal_redact_ratio": GOAL, "stores": {}}
    for store in names:
        appends_here = appends * (5 if store == "memory" and not args.quick else 1)
        rates = bench_store(STORES[store], appends_here, rounds)
        base = rates["none"]
        results["stores"][store] = {
            name: {"appends_per_s": round(rate, 1), "ratio": round(rate / base, 3)}
            for name, rate in rates.items()
        }
        results["stores"][store]["redact_goal_met"] = rates["redact"] / base >= GOAL
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"append throughput with plugins, ratios to no plugin ({results['mode']}: "
          f"{appends} appends x {rounds} rounds, medians)")
    print(f"{'store':<14} {'plugins':<15} {'appends/s':>10} {'ratio':>7}")
    for store, row in results["stores"].items():
        for name in CONFIGS:
            cell = row[name]
            print(f"{store:<14} {name:<15} {cell['appends_per_s']:>10.0f} {cell['ratio']:>6.2f}x")
        print(f"{store:<14} redact goal {GOAL}x: {'met' if row['redact_goal_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
