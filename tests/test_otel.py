"""`agentledger.otel`: turns stored in the ledger become OpenTelemetry traces (GenAI
semantic conventions) and metrics, through the SDK's in-memory exporter and reader."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentledger import NewEvent, open_store
from agentledger.demo import build_reminders_agent
from agentledger.handlers import HandlerRunner
from agentledger.otel import OTelExporter
from agentledger.runner import Runner


def _exporter() -> tuple[OTelExporter, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return OTelExporter(tracing, MeterProvider(metric_readers=[reader])), spans, reader


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


def test_a_turn_becomes_a_trace_with_model_and_tool_spans(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path}/o.db")
    session = store.create_session(app_name="demo", user_id="ada", agent_name="reminders")
    list(Runner(build_reminders_agent(), store).run(session.id, "remind me to water the plants"))
    exporter, spans, reader = _exporter()
    HandlerRunner(store, [exporter]).run_once()
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name.startswith("invoke_agent")]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.conversation.id"] == session.id
    children = [s for s in finished if s.parent is not None]
    assert {s.parent.span_id for s in children} == {root.context.span_id}
    tools = [s for s in children if s.name.startswith("execute_tool")]
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["add_reminder"]
    chats = [s for s in children if s.name.startswith("chat")]
    assert chats and all(s.attributes["gen_ai.operation.name"] == "chat" for s in chats)
    assert root.start_time <= min(s.start_time for s in children)
    assert root.end_time >= max(s.end_time for s in children)
    counts = {p.attributes["event.type"]: p.value for p in _metrics(reader)["agentledger.events"]}
    assert counts["user_message"] == 1 and counts["final_output"] == 1
    # Run again: nothing is exported twice (the handler's position is stored).
    HandlerRunner(store, [exporter]).run_once()
    assert len(spans.get_finished_spans()) == len(finished)


def test_a_failed_turn_is_an_error_span_and_counted_by_kind() -> None:
    store = open_store("memory://")
    session = store.create_session(app_name="demo", user_id="ada", agent_name="helper")
    store.append(
        session.id,
        [
            NewEvent(type="user_message", author="user", data={"text": "hi"}, invocation_id="t1"),
            NewEvent(type="error", data={"message": "model down", "kind": "model"}, invocation_id="t1"),
        ],
    )
    exporter, spans, reader = _exporter()
    HandlerRunner(store, [exporter]).run_once()
    (root,) = spans.get_finished_spans()
    assert root.name == "invoke_agent helper" and root.status.status_code == StatusCode.ERROR
    errors = _metrics(reader)["agentledger.errors"]
    assert [(p.attributes["error.kind"], p.value) for p in errors] == [("model", 1)]


def test_as_a_plugin_it_records_each_append_s_duration(tmp_path: Any) -> None:
    exporter, _, reader = _exporter()
    store = open_store(f"sqlite:///{tmp_path}/p.db", plugins=[exporter])
    session = store.create_session(app_name="demo", user_id="ada")
    for _ in range(3):
        store.append(session.id, [NewEvent(type="user_message", author="user", data={"text": "hi"})])
    (point,) = _metrics(reader)["agentledger.append.duration"]
    assert point.count == 4 and 0 < point.sum < 60  # the create and the three appends
