"""A LangGraph graph whose checkpoints live in agentledger, stopped and resumed across processes.

The graph: `draft` asks a chat model for a plan (a scripted model from langchain-core's
testing helpers, so it runs offline), `approve` waits for a human (`interrupt`), `send`
finishes. Run it in two processes:

    python examples/langgraph_graph.py --store sqlite:///trip.db start    # stops for approval
    python examples/langgraph_graph.py --store sqlite:///trip.db resume   # a new process resumes
    agentledger --store sqlite:///trip.db sessions events trip-1          # the thread's ledger

Needs `pip install 'agentledger[langgraph]'`.
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from agentledger.integrations.langgraph import LedgerSaver

THREAD = "trip-1"


class TripState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool


model = GenericFakeChatModel(
    messages=iter([AIMessage("Day 1: Alfama and the castle. Day 2: Belem and pasteis.")])
)


def draft(state: TripState) -> dict[str, Any]:
    return {"messages": [model.invoke(state["messages"])]}


def approve(state: TripState) -> dict[str, Any]:
    answer = interrupt({"question": "send this plan?", "plan": state["messages"][-1].content})
    return {"approved": answer == "yes"}


def send(state: TripState) -> dict[str, Any]:
    verdict = "approved" if state.get("approved") else "rejected"
    return {"messages": [AIMessage(f"Plan {verdict}.")]}


def build(saver: LedgerSaver) -> Any:
    builder = StateGraph(TripState)
    builder.add_node("draft", draft)
    builder.add_node("approve", approve)
    builder.add_node("send", send)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "approve")
    builder.add_edge("approve", "send")
    builder.add_edge("send", END)
    return builder.compile(checkpointer=saver)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///langgraph_example.db")
    parser.add_argument("step", choices=["start", "resume"])
    parser.add_argument("--answer", default="yes", help="the human's answer on resume")
    args = parser.parse_args(argv)
    config: Any = {"configurable": {"thread_id": THREAD}}
    with LedgerSaver(args.store) as saver:
        graph = build(saver)
        if args.step == "start":
            result = graph.invoke({"messages": [HumanMessage("Plan two days in Lisbon")]}, config)
            question = result["__interrupt__"][0].value
            print(f"waiting for approval: {question['plan']}")
        else:
            state = graph.get_state(config)
            assert state.next == ("approve",), f"nothing to resume (next: {state.next})"
            result = graph.invoke(Command(resume=args.answer), config)
            print(result["messages"][-1].content.lower().rstrip("."))
        print(f"thread {THREAD}: {len(list(saver.list(config)))} checkpoints in {args.store}")


if __name__ == "__main__":
    main()
