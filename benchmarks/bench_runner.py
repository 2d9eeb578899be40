"""The runner's own overhead per agent turn, excluding the model's latency.

Run it from the project root:

    .venv/bin/python benchmarks/bench_runner.py            # 300 turns per store
    .venv/bin/python benchmarks/bench_runner.py --quick    # smoke run, seconds
    .venv/bin/python benchmarks/bench_runner.py --json

Each turn is a tool-calling turn through `Runner.run` against the fake OpenAI-compatible
server of the tests (real HTTP on 127.0.0.1, the official client): the model asks for one
tool call, the tool changes the state, the model answers. That is 2 model calls and 4
appended events (`user_message`, `tool_call`, `tool_result` with its state delta,
`final_output`), plus reading the history (the last 20 turns, the default) and the session.

What is measured (time.perf_counter, median over turns):

- turn: the whole `list(runner.run(...))`.
- model: the time inside the model's two `generate` calls (HTTP round trip to the fake
  server, which runs in its own process, and the client's request building and parsing).
- overhead = turn - model: ours (the store's appends and reads, the history rebuilt from
  the ledger, tool schemas and validation, the tool itself). The goal is <= 2 ms per
  tool-calling turn on SQLite.

Stores: `sqlite` (durability=full: every append fsynced), `sqlite-normal`, `memory`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_openai import FakeOpenAI, Recorded, Reply, completion, tool_call  # noqa: E402

from agentledger import open_store  # noqa: E402
from agentledger.runner import Agent, Message, ModelResponse, Runner, ToolContext  # noqa: E402
from agentledger.runner.models_openai import OpenAIChatModel  # noqa: E402

GOAL_MS = 2.0


def add_reminder(reminder: str, tool_context: ToolContext) -> dict[str, Any]:
    """Add a reminder to the user's list."""
    reminders = tool_context.state.get("user:reminders", [])
    reminders.append(reminder)
    tool_context.state["user:reminders"] = reminders[-20:]
    return {"message": f"Added {reminder}."}


class TimedModel:
    """Delegates to a model and adds up the time spent inside it."""

    def __init__(self, model: OpenAIChatModel) -> None:
        self.model = model
        self.name = model.name
        self.provider = model.provider
        self.spent = 0.0

    def generate(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        started = time.perf_counter()
        try:
            return self.model.generate(messages, tools)
        finally:
            self.spent += time.perf_counter() - started


def scripted(request: Recorded) -> Reply:
    """Call the tool for a user message; answer after its result."""
    if request.messages[-1]["role"] == "tool":
        return Reply(completion("Added it."))
    n = len(request.messages)
    return Reply(completion(tool_calls=[
        tool_call(f"call_{n}", "add_reminder", {"reminder": f"thing {n}"})
    ]))


def serve(port: Any, stop: Any) -> None:
    """The fake server, in its own process so it never competes with ours for the GIL."""
    with FakeOpenAI() as fake:
        fake.default = scripted
        port.put(fake.port)
        stop.wait()


def measure(url: str, base_url: str, turns: int) -> dict[str, float]:
    model = TimedModel(OpenAIChatModel("bench", base_url=base_url, max_retries=0))
    agent = Agent(name="bench", instructions="Add reminders.", model=model, tools=[add_reminder])
    with open_store(url) as store:
        sid = store.create_session(app_name="bench", user_id="u").id
        runner = Runner(agent, store)
        for _ in range(5):  # warm-up: connections, caches
            list(runner.run(sid, "remind me"))
        totals, models, overheads = [], [], []
        for _ in range(turns):
            model.spent = 0.0
            started = time.perf_counter()
            events = list(runner.run(sid, "remind me of a thing"))
            total = time.perf_counter() - started
            assert [e.type for e in events] == [
                "user_message", "tool_call", "tool_result", "final_output"
            ]
            totals.append(total * 1000)
            models.append(model.spent * 1000)
            overheads.append((total - model.spent) * 1000)
    return {
        "turn_ms": statistics.median(totals),
        "model_ms": statistics.median(models),
        "overhead_ms": statistics.median(overheads),
        "overhead_p95_ms": sorted(overheads)[int(len(overheads) * 0.95) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 turns per store")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    turns = 20 if args.quick else args.turns
    results: dict[str, dict[str, float]] = {}
    port: Any = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, stop), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port.get(timeout=30)}/v1"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {
                "sqlite": f"sqlite:///{Path(tmp) / 'full.db'}",
                "sqlite-normal": f"sqlite:///{Path(tmp) / 'normal.db'}?durability=normal",
                "memory": "memory://",
            }
            for name, url in stores.items():
                results[name] = measure(url, base_url, turns)
    finally:
        stop.set()
        server.join(timeout=10)
    if args.json:
        print(json.dumps({"turns": turns, "goal_ms": GOAL_MS, "results": results}, indent=2))
        return
    print(f"runner overhead per tool-calling turn ({turns} turns, medians; goal <= {GOAL_MS} ms)")
    print(f"{'store':<15}{'turn ms':>10}{'model ms':>10}{'ours ms':>10}{'ours p95':>10}")
    for name, r in results.items():
        print(f"{name:<15}{r['turn_ms']:>10.2f}{r['model_ms']:>10.2f}"
              f"{r['overhead_ms']:>10.2f}{r['overhead_p95_ms']:>10.2f}")


if __name__ == "__main__":
    main()
