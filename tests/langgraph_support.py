"""What the LangGraph adapter tests run in child processes (module-level, so `spawn` can
import them): a small counting graph, a checkpoint writer and a graph runner that reports
each acknowledged turn through a pipe (for the SIGKILL test)."""

from __future__ import annotations

import operator
import struct
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agentledger.integrations.langgraph import LedgerSaver

ACK = struct.Struct("!q")


class CounterState(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _step(state: CounterState) -> dict[str, Any]:
    return {"count": state["count"] + 1, "log": [f"step {state['count'] + 1}"]}


def _review(state: CounterState) -> dict[str, Any]:
    return {"log": [f"reviewed at {state['count']}"]}


def counter_graph(
    saver: BaseCheckpointSaver[Any], *, interrupt: bool = False
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """`step` (adds 1 to `count`) then `review`; with `interrupt`, it stops before `review`."""
    builder = StateGraph(CounterState)
    builder.add_node("step", _step)
    builder.add_node("review", _review)
    builder.add_edge(START, "step")
    builder.add_edge("step", "review")
    builder.add_edge("review", END)
    return builder.compile(
        checkpointer=saver, interrupt_before=["review"] if interrupt else None
    )


def put_worker(url: str, barrier: Barrier, thread_id: str, worker: int, count: int) -> None:
    """Put `count` chained checkpoints (and one write each) on one thread, after the others
    are ready; each checkpoint's values say who wrote it and when."""
    saver = LedgerSaver(url)
    try:
        barrier.wait(timeout=60)
        parent: str | None = None
        for n in range(count):
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"w": worker, "n": n}
            checkpoint["channel_versions"] = {"w": 1, "n": n + 1}
            config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
            if parent:
                config["configurable"]["checkpoint_id"] = parent
            new_versions = {"w": 1, "n": n + 1} if parent is None else {"n": n + 1}
            stored = saver.put(config, checkpoint, {"source": "loop", "step": n,
                                                    "writer": worker}, new_versions)
            saver.put_writes(stored, [("out", f"{worker}/{n}")], f"task-{worker}-{n}")
            parent = stored["configurable"]["checkpoint_id"]
    finally:
        saver.close()


def graph_turns_worker(url: str, thread_id: str, acks: Connection) -> None:
    """Run the counting graph turn after turn on one thread until killed; after each
    `invoke` returns, send the count it reached on `acks` (one 8-byte message)."""
    saver = LedgerSaver(url)
    graph = counter_graph(saver)
    config: Any = {"configurable": {"thread_id": thread_id}}
    state = graph.get_state(config)
    count = state.values.get("count", 0) if state.values else 0
    while True:
        result = graph.invoke({"count": count, "log": []}, config)
        count = result["count"]
        acks.send_bytes(ACK.pack(count))
