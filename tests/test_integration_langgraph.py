"""The LangGraph adapter (`agentledger.integrations.langgraph`) on SQLite and PostgreSQL.

1. LangGraph's own conformance suite for checkpointers (`langgraph-checkpoint-conformance`:
   base and every extended capability) against `LedgerSaver` and `AsyncLedgerSaver`.
2. Ours: 8 processes putting checkpoints on one thread lose nothing; a process killed
   with SIGKILL while a real graph runs leaves a thread LangGraph loads and continues.
3. A real compiled `StateGraph` interrupted before a node and resumed, readable storage,
   idempotent retries, prune freeing the ledger, and the example run end to end.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="needs agentledger[langgraph]")
conformance = pytest.importorskip(
    "langgraph.checkpoint.conformance",
    reason="needs langgraph-checkpoint-conformance (in the test extra)",
)

from conftest import postgres_schema_url  # noqa: E402
from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES  # noqa: E402
from langgraph_support import ACK, counter_graph, graph_turns_worker, put_worker  # noqa: E402

from agentledger import open_store  # noqa: E402
from agentledger.integrations.langgraph import (  # noqa: E402
    CHECKPOINT_TYPE,
    WRITE_TYPE,
    AsyncLedgerSaver,
    LedgerSaver,
)
from agentledger.testing._processes import run_processes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
"""Forked children share the parent's imports (langgraph takes seconds to import: spawning 8
would spend most of the test importing); the children open their own stores."""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lg.db'}"
    else:
        with postgres_schema_url() as made:
            yield made


def _config(thread_id: str, **extra: Any) -> Any:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", **extra}}


# -- 1. LangGraph's conformance suite ------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_langgraph_conformance_suite(url: str, kind: str) -> None:
    """Every capability detected (base and extended) and every one of its tests passes."""

    async def sync_saver() -> AsyncIterator[Any]:
        with LedgerSaver(url) as saver:
            yield saver

    async def async_saver() -> AsyncIterator[Any]:
        async with AsyncLedgerSaver.from_url(url) as saver:
            yield saver

    factory = sync_saver if kind == "sync" else async_saver
    registered = conformance.checkpointer_test(name=f"{kind}-{url.split(':')[0]}")(factory)
    report = asyncio.run(conformance.validate(registered))
    failures = {
        name: result.failures for name, result in report.results.items() if result.failures
    }
    assert not failures, failures
    assert {name for name, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.passed_all()
    passed = sum(r.tests_passed for r in report.results.values())
    assert passed == 81, f"the suite had {passed} tests (update the README if it grew)"


# -- 2. concurrency and crashes -----------------------------------------------------------

WRITERS = 8
PUTS_PER_WRITER = 25


def test_eight_processes_on_one_thread_lose_nothing(url: str) -> None:
    ctx = multiprocessing.get_context(START_METHOD)
    thread_id = f"shared-{uuid.uuid4().hex[:8]}"
    barrier = ctx.Barrier(WRITERS)
    run_processes(
        ctx, put_worker,
        [(url, barrier, thread_id, w, PUTS_PER_WRITER) for w in range(WRITERS)],
    )
    with LedgerSaver(url) as saver:
        found = list(saver.list(_config(thread_id)))
        assert len(found) == WRITERS * PUTS_PER_WRITER
        seen = {(t.checkpoint["channel_values"]["w"], t.checkpoint["channel_values"]["n"])
                for t in found}
        assert seen == {(w, n) for w in range(WRITERS) for n in range(PUTS_PER_WRITER)}
        for tup in found:
            w, n = tup.checkpoint["channel_values"]["w"], tup.checkpoint["channel_values"]["n"]
            assert tup.metadata["writer"] == w
            assert tup.pending_writes == [(f"task-{w}-{n}", "out", f"{w}/{n}")]
        session = saver.store.get_session(thread_id)
        events = saver.store.read_events(thread_id)
        assert [e.seq for e in events] == list(range(1, session.version + 1))
        assert sum(e.type == CHECKPOINT_TYPE for e in events) == WRITERS * PUTS_PER_WRITER
        assert sum(e.type == WRITE_TYPE for e in events) == WRITERS * PUTS_PER_WRITER


CRASH_ROUNDS = 3


def test_sigkill_mid_put_leaves_a_thread_langgraph_loads(url: str) -> None:
    """A graph runs turn after turn in a child killed at a random moment; each round the
    thread loads, holds at least every acknowledged turn, and the graph continues on it."""
    sigkill = getattr(signal, "SIGKILL", None)
    if sigkill is None:
        pytest.skip("this platform has no SIGKILL")
    ctx = multiprocessing.get_context(START_METHOD)
    thread_id = "crashy"
    rng = random.Random(13)
    acked = 0
    for _ in range(CRASH_ROUNDS):
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=graph_turns_worker, args=(url, thread_id, writer))
        child.start()
        writer.close()
        wanted = rng.randint(2, 12)
        for _ in range(wanted):
            assert reader.poll(120), "the graph worker acknowledged nothing for 120 s"
            (acked,) = ACK.unpack(reader.recv_bytes())
        child.kill()  # usually in the middle of the next turn's puts
        child.join(30)
        reader.close()
        assert child.exitcode == -sigkill
        with LedgerSaver(url) as saver:
            graph = counter_graph(saver)
            config = {"configurable": {"thread_id": thread_id}}
            state = graph.get_state(config)
            assert state.values["count"] >= acked
            assert saver.store.verify_session(thread_id).ok
            for tup in saver.list(_config(thread_id), limit=5):  # every one loads
                assert tup.checkpoint["channel_versions"]
            result = graph.invoke({"count": state.values["count"], "log": []}, config)
            assert result["count"] == state.values["count"] + 1


# -- 3. a real graph, storage, retries, prune ----------------------------------------------


def test_state_graph_interrupted_and_resumed(url: str) -> None:
    config = {"configurable": {"thread_id": "review-1"}}
    with LedgerSaver(url) as saver:
        graph = counter_graph(saver, interrupt=True)
        graph.invoke({"count": 41, "log": []}, config)
        state = graph.get_state(config)
        assert state.next == ("review",)
        assert state.values == {"count": 42, "log": ["step 42"]}
    with LedgerSaver(url) as saver:  # a new saver, as a new process would have
        graph = counter_graph(saver, interrupt=True)
        assert graph.get_state(config).next == ("review",)
        result = graph.invoke(None, config)
        assert result == {"count": 42, "log": ["step 42", "reviewed at 42"]}
        assert graph.get_state(config).next == ()
        history = list(graph.get_state_history(config))
        assert len(history) == len(list(saver.list(_config("review-1"))))


def test_async_graph_on_async_saver(url: str) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncLedgerSaver.from_url(url) as saver:
            graph = counter_graph(saver, interrupt=True)
            config: Any = {"configurable": {"thread_id": "async-1"}}
            await graph.ainvoke({"count": 1, "log": []}, config)
            assert (await graph.aget_state(config)).next == ("review",)
            result: dict[str, Any] = await graph.ainvoke(None, config)
            return result

    assert asyncio.run(main()) == {"count": 2, "log": ["step 2", "reviewed at 2"]}


def test_checkpoints_are_readable_events_and_retries_are_harmless(url: str) -> None:
    with LedgerSaver(url) as saver:
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"plan": {"steps": ["a", "b"], "done": 0.5},
                                        "raw": b"\x00\x01"}
        checkpoint["channel_versions"] = {"plan": 1, "raw": 1}
        args = (_config("t"), checkpoint, {"source": "input", "step": -1},
                {"plan": 1, "raw": 1})
        stored = saver.put(*args)
        assert saver.put(*args) == stored  # a retried put writes nothing more
        saver.put_writes(stored, [("plan", {"steps": []})], "task-1")
        saver.put_writes(stored, [("plan", {"steps": []})], "task-1")
        events = saver.store.read_events("t", types=[CHECKPOINT_TYPE, WRITE_TYPE])
        assert [e.type for e in events] == [CHECKPOINT_TYPE, WRITE_TYPE]
        values = events[0].data["values"]
        assert values["plan"] == {"t": "msgpack", "json": {"steps": ["a", "b"], "done": 0.5}}
        assert values["raw"] == {"t": "bytes", "b64": "AAE="}
        assert events[0].key == f"ckpt::{checkpoint['id']}"
        assert events[1].data["value"]["json"] == {"steps": []}
        loaded = saver.get_tuple(stored)
        assert loaded is not None
        assert loaded.checkpoint["channel_values"] == checkpoint["channel_values"]
        assert loaded.pending_writes == [("task-1", "plan", {"steps": []})]


def test_prune_keep_latest_frees_the_ledger(url: str) -> None:
    with LedgerSaver(url) as saver:
        graph = counter_graph(saver)
        config = {"configurable": {"thread_id": "long"}}
        for n in range(10):
            graph.invoke({"count": n * 10, "log": []}, config)
        before = graph.get_state(config).values
        events_before = saver.store.read_events("long")
        saver.prune(["long"])
        assert len(list(saver.list(_config("long")))) == 1
        assert graph.get_state(config).values == before  # kept values are still there
        events = saver.store.read_events("long")
        assert len(events) < len(events_before) / 2
        assert sum(not e.erased and e.type == CHECKPOINT_TYPE for e in events) == 1
        assert saver.store.verify_session("long").ok
        assert graph.invoke({"count": 0, "log": []}, config)["count"] == 1


def test_sessions_stay_first_class(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with LedgerSaver(url) as saver:
        counter_graph(saver).invoke({"count": 0, "log": []},
                                    {"configurable": {"thread_id": "cli-thread"}})
    with open_store(url) as store:
        session = store.get_session("cli-thread")
        assert (session.app_name, session.agent_name) == ("langgraph", "langgraph")
    cli = Path(sys.executable).parent / "agentledger"
    shown = subprocess.run(
        [str(cli), "--store", url, "sessions", "events", "cli-thread", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert '"langgraph.checkpoint"' in shown and '"step 1"' in shown


def test_example_runs_end_to_end(tmp_path: Path) -> None:
    """examples/langgraph_graph.py: a run stops for approval; a new process resumes it."""
    url = f"sqlite:///{tmp_path / 'example.db'}"
    example = str(ROOT / "examples" / "langgraph_graph.py")
    first = subprocess.run([sys.executable, example, "--store", url, "start"],
                           capture_output=True, text=True, check=True, timeout=120)
    assert "waiting for approval" in first.stdout
    second = subprocess.run([sys.executable, example, "--store", url, "resume"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert "approved" in second.stdout


def test_benchmark_quick_run_reports_every_figure() -> None:
    """benchmarks/bench_integrations_langgraph.py --quick (a smoke run; speed is not asserted)."""
    script = ROOT / "benchmarks" / "bench_integrations_langgraph.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--json"],
                          capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(done.stdout)
    for saver in ("ours", "sqlitesaver"):
        assert set(report[saver]) == {"put_per_s", "get_tuple_latest_ms",
                                      "get_tuple_by_id_ms", "bytes_per_checkpoint"}
        assert all(value > 0 for value in report[saver].values())
    assert set(report["goals_met"]) == {"put >= 1x", "get_tuple latest >= 1x",
                                        "get_tuple by id >= 1x", "storage <= SqliteSaver"}


def test_delete_for_runs_keeps_values_later_checkpoints_use_and_copy_is_a_fork(url: str) -> None:
    with LedgerSaver(url) as saver:
        first = empty_checkpoint()
        first["channel_values"] = {"docs": ["a long document"], "turn": 1}
        first["channel_versions"] = {"docs": 1, "turn": 1}
        stored = saver.put(_config("runs"), first, {"run_id": "run-a"}, {"docs": 1, "turn": 1})
        second = empty_checkpoint()
        second["channel_values"] = {"docs": ["a long document"], "turn": 2}
        second["channel_versions"] = {"docs": 1, "turn": 2}
        kept = saver.put(stored, second, {"run_id": "run-b"}, {"turn": 2})  # docs unchanged

        saver.copy_thread("runs", "runs-copy")
        assert saver.store.get_session("runs-copy").forked_from is not None
        saver.delete_for_runs(["run-a"])

        assert [t.metadata["run_id"] for t in saver.list(_config("runs"))] == ["run-b"]
        assert saver.get_tuple(stored) is None
        loaded = saver.get_tuple(kept)
        assert loaded is not None
        assert loaded.checkpoint["channel_values"] == {"docs": ["a long document"], "turn": 2}
        assert saver.store.verify_session("runs").ok
        # a run's checkpoints go from every thread, the copy's too (its values stay)
        copied = list(saver.list(_config("runs-copy")))
        assert [t.checkpoint["channel_values"] for t in copied] == [
            {"docs": ["a long document"], "turn": 2}
        ]
    with LedgerSaver(url) as fresh:  # no values held in memory: read from the ledger
        loaded = fresh.get_tuple(kept)
        assert loaded is not None and loaded.checkpoint["channel_values"]["docs"] == [
            "a long document"
        ]
