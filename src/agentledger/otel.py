"""OpenTelemetry export of agent turns and ledger metrics, as a durable event handler.

`OTelExporter` is an `agentledger.handlers.EventHandler`: run it with a `HandlerRunner`
(or `agentledger handlers run --handler agentledger.otel:OTelExporter`) and every turn
stored in the ledger becomes a trace, including turns written by other processes and while
the exporter was not running. Traces follow the OpenTelemetry semantic conventions for
generative AI (`gen_ai.*` attributes):

- one span per turn (an `invocation_id`), `invoke_agent {agent}`, from the turn's first
  event to its `final_output` or `error` (status ERROR then), with `gen_ai.operation.name`
  = `invoke_agent`, `gen_ai.agent.name`, `gen_ai.conversation.id` (the session id) and
  `agentledger.invocation_id`;
- a child span per model call, `chat {model}` (`gen_ai.request.model`,
  `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
  `gen_ai.response.finish_reasons`), timed by the call's recorded latency;
- a child span per tool call, `execute_tool {name}` (`gen_ai.tool.name`,
  `gen_ai.tool.call.id`), from the `tool_call` event to its `tool_result` (status ERROR
  for a failed tool).

Metrics: `agentledger.events` (events stored, by `event.type`), `agentledger.errors`
(`error` events, by `error.kind`), `agentledger.resumes` (sessions resumed, by `reason`),
`gen_ai.client.token.usage` (a histogram of tokens per model call, by
`gen_ai.token.type`) and, when the exporter is enabled as a plugin of the writing store
(`--plugin otel`, `open_store(url, plugins=[exporter])`), `agentledger.append.duration`:
a histogram of the wall time of each append in that process, in seconds, from the plugin
hooks before and after the write (plugins included).

Needs the `otel` extra (`pip install 'agentledger[otel]'`, the OpenTelemetry API); the SDK,
exporters and providers are the application's choice (by default the global providers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentledger.core.events import Event, EventType
from agentledger.core.session import Session
from agentledger.errors import MissingDependencyError
from agentledger.handlers import EventHandler
from agentledger.plugins.specs import hookimpl

__all__ = ["OTelExporter"]

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingDependencyError("opentelemetry-api", "otel") from exc

_TURN_WINDOW = 1000  # events looked back over for the start of a turn


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


class OTelExporter(EventHandler):
    """Exports turns as traces and ledger metrics through OpenTelemetry (see the module
    docstring).

    Args:
        tracer_provider: Where spans go; default: the global tracer provider.
        meter_provider: Where metrics go; default: the global meter provider.
        name: The handler's name (its stored position); change it to run two exporters.
    """

    handled_event_types: list[str] = []  # every event: metrics count them all

    def __init__(
        self,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        *,
        name: str = "otel",
    ) -> None:
        self._name = name
        self._store: Any = None
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("agentledger")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("agentledger")
        self.events = meter.create_counter(
            "agentledger.events", unit="{event}", description="Events stored in the ledger."
        )
        self.errors = meter.create_counter(
            "agentledger.errors", unit="{error}", description="Error events, by kind."
        )
        self.resumes = meter.create_counter(
            "agentledger.resumes", unit="{resume}", description="Sessions resumed, by reason."
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per model call."
        )
        self.append_duration = meter.create_histogram(
            "agentledger.append.duration",
            unit="s",
            description="Wall time of an append in the writing process, plugins included.",
        )
        self._started = threading.local()

    @property
    def handler_name(self) -> str:
        return self._name

    # -- as a plugin of the writing store: the append latency histogram ------------------

    @hookimpl(tryfirst=True)
    def before_append(self, events: list[Any]) -> None:
        """Note when an append starts (first of the plugins, so their time counts)."""
        self._started.at = time.perf_counter()

    @hookimpl(trylast=True)
    def after_append(self, events: list[Event]) -> None:
        """Record the append's wall time, in seconds, in `agentledger.append.duration`."""
        started = getattr(self._started, "at", None)
        if started is None:
            return
        self._started.at = None
        self.append_duration.record(
            time.perf_counter() - started, {"agentledger.events": len(events)}
        )

    def handle_event(self, event: Event, session: Session) -> None:
        """Count the event; at the end of a turn, export the turn's trace."""
        self.events.add(1, {"event.type": event.type})
        if event.type == EventType.ERROR:
            self.errors.add(1, {"error.kind": str(event.data.get("kind") or "unknown")})
        if event.type == EventType.STATUS_CHANGED and event.data.get("to") == "active":
            self.resumes.add(1, {"reason": str(event.data.get("reason") or "resumed")})
        call = event.data.get("model_call")
        if isinstance(call, Mapping):
            model = str(call.get("model") or event.data.get("model") or "")
            for kind in ("input", "output"):
                count = call.get(f"{kind}_tokens")
                if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                    self.tokens.record(
                        count, {"gen_ai.token.type": kind, "gen_ai.request.model": model}
                    )
        if event.invocation_id and event.type in (EventType.FINAL_OUTPUT, EventType.ERROR):
            self._export_turn(event, session)

    def _turn_events(self, end: Event) -> list[Event]:
        store = self._store
        if store is None:
            return [end]
        window = store.read_events(end.session_id, after=max(end.seq - _TURN_WINDOW, 0))
        return [e for e in window if e.invocation_id == end.invocation_id and e.seq <= end.seq]

    def bind(self, store: Any) -> OTelExporter:
        """Read turns from `store` (the runner's store); `HandlerRunner` calls it."""
        self._store = store
        return self

    def _export_turn(self, end: Event, session: Session) -> None:
        events = self._turn_events(end)
        first = events[0]
        agent = session.agent_name or "agent"
        root = self.tracer.start_span(
            f"invoke_agent {agent}",
            kind=SpanKind.INTERNAL,
            start_time=_ns(first.timestamp),
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": session.id,
                "session.id": session.id,
                "agentledger.app": session.app_name,
                "agentledger.user": session.user_id,
                "agentledger.invocation_id": str(end.invocation_id),
            },
        )
        context = trace.set_span_in_context(root)
        calls: dict[str, Event] = {}
        for event in events:
            call = event.data.get("model_call")
            if isinstance(call, Mapping) and call:
                self._model_span(event, call, context)
            if event.type == EventType.TOOL_CALL:
                calls[str(event.data.get("call_id"))] = event
            elif event.type == EventType.TOOL_RESULT:
                started = calls.pop(str(event.data.get("call_id")), None)
                self._tool_span(started or event, event, context)
        if end.type == EventType.ERROR:
            message = str(end.data.get("message") or "error")
            root.set_status(Status(StatusCode.ERROR, message))
            root.set_attribute("error.type", str(end.data.get("kind") or end.data.get("error_type") or "error"))
        root.end(end_time=_ns(end.timestamp))

    def _model_span(self, event: Event, call: Mapping[str, Any], context: Any) -> None:
        model = str(call.get("model") or event.data.get("model") or "")
        latency = call.get("latency_ms")
        end = _ns(event.timestamp)
        start = end - int(latency * 1_000_000) if isinstance(latency, (int, float)) else end
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
        for key, name in (("input_tokens", "gen_ai.usage.input_tokens"), ("output_tokens", "gen_ai.usage.output_tokens")):
            if isinstance(call.get(key), int):
                attributes[name] = call[key]
        if call.get("finish_reason"):
            attributes["gen_ai.response.finish_reasons"] = [str(call["finish_reason"])]
        span = self.tracer.start_span(
            f"chat {model}".strip(), context=context, kind=SpanKind.CLIENT,
            start_time=start, attributes=attributes,
        )
        span.end(end_time=end)

    def _tool_span(self, call: Event, result: Event, context: Any) -> None:
        name = str(result.data.get("name") or call.data.get("name") or "tool")
        span = self.tracer.start_span(
            f"execute_tool {name}", context=context, kind=SpanKind.INTERNAL,
            start_time=_ns(call.timestamp),
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": str(result.data.get("call_id") or ""),
            },
        )
        if result.data.get("is_error"):
            span.set_status(Status(StatusCode.ERROR, "the tool failed"))
        span.end(end_time=_ns(result.timestamp))
