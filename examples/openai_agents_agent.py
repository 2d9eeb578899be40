"""An OpenAI Agents SDK agent whose conversation lives in agentledger, offline.

A real `Agent` with a function tool, run by the SDK's `Runner` with a `LedgerSession`; the
model is the SDK's own scripted test model (`agents.testing.ScriptedModel`), so no network
and no key are needed. Run it in two processes:

    python examples/openai_agents_agent.py first  --store sqlite:///agents.db
    python examples/openai_agents_agent.py resume --store sqlite:///agents.db

`first` runs one whole turn (the user gives their name, the agent saves a note with its
tool), then starts a second turn and is killed in the middle of it (`os._exit` inside the
tool, as a crash would). `resume`, in a new process, opens the same session: the first
turn is there, and the agent answers from it. `agentledger --store sqlite:///agents.db
sessions events chat-1` shows every item as an `openai_agents.item` event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from agentledger.integrations.openai_agents import LedgerSession

SESSION_ID = "chat-1"
NOTES: list[str] = []


@function_tool
def save_note(note: str) -> str:
    """Save a note about the user."""
    if os.environ.get("EXAMPLE_CRASH_IN_TOOL") == "1":
        print("crashing in the middle of the turn", flush=True)
        os._exit(17)  # a crash: no cleanup, no flush of anything pending
    NOTES.append(note)
    return f"saved: {note}"


def _remembered_name(call: ModelCall) -> list[Any]:
    """Answer from the history the SDK loaded from the session."""
    texts = [str(item.get("content", "")) for item in call.input if isinstance(item, dict)]
    names = [t.removeprefix("My name is ").rstrip(".") for t in texts if t.startswith("My name is")]
    answer = f"Your name is {names[0]}." if names else "I do not know your name."
    return [assistant_message(answer, item_id="answer-2")]


def agent_with(model: ScriptedModel) -> Agent[Any]:
    return Agent(
        name="assistant",
        instructions="Remember what the user tells you.",
        model=model,
        tools=[save_note],
        model_settings=ModelSettings(),
    )


async def first(store: str) -> None:
    session = LedgerSession(SESSION_ID, store)
    model = ScriptedModel(
        [
            ModelStep(output=[function_call("save_note", {"note": "name: Ada"}, call_id="c1")]),
            ModelStep(output=[assistant_message("Nice to meet you, Ada.", item_id="answer-1")]),
            ModelStep(output=[function_call("save_note", {"note": "likes tea"}, call_id="c2")]),
        ]
    )
    agent = agent_with(model)
    result = await Runner.run(agent, "My name is Ada.", session=session)
    print(f"turn 1: {result.final_output}", flush=True)
    os.environ["EXAMPLE_CRASH_IN_TOOL"] = "1"
    await Runner.run(agent, "I like tea.", session=session)  # never returns
    raise SystemExit("unreachable: the tool crashes the process")


async def resume(store: str) -> None:
    session = LedgerSession(SESSION_ID, store)
    history = await session.get_items()
    print(f"history: {len(history)} items", flush=True)
    model = ScriptedModel([ModelStep(responder=_remembered_name)])
    result = await Runner.run(agent_with(model), "What is my name?", session=session)
    print(f"turn 3: {result.final_output}", flush=True)
    session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["first", "resume"])
    parser.add_argument("--store", default="sqlite:///agents.db")
    args = parser.parse_args(argv)
    set_tracing_disabled(True)  # offline: no trace export
    asyncio.run(first(args.store) if args.step == "first" else resume(args.store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
