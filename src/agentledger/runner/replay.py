"""Session replay for debugging: run a recorded session's turns again and find where the
tools now behave differently.

`replay_session` re-runs every turn of a session in a scratch in-memory store, with a
`ReplayModel` that answers each model call with what the model answered when the turn was
recorded (so it needs no key and no network, whatever model recorded it), and with the
agent's real tools. It compares each new event with the recorded one and reports the first
whose tool call, tool result, state delta, text or error kind differs.

The replay starts from the state the session was created with, and applies the state
changes recorded outside turns (`state_updated` events) where they happened. State shared
with other sessions (`app:`/`user:` keys) that another session changed meanwhile is not in
this ledger: a tool that reads it may then diverge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentledger.core.events import Event, EventType, NewEvent
from agentledger.core.state import state_change
from agentledger.errors import ConfigurationError, ModelError, RunnerError
from agentledger.runner.context import ContextPolicy
from agentledger.runner.models import Message, ModelResponse, ToolCall
from agentledger.runner.runner import Agent, Runner
from agentledger.stores.base import SessionStore
from agentledger.stores.memory import MemoryStore

__all__ = ["Divergence", "ReplayModel", "ReplayReport", "recorded_responses", "replay_session"]

_TURN_TYPES = {
    EventType.USER_MESSAGE.value,
    EventType.AGENT_MESSAGE.value,
    EventType.TOOL_CALL.value,
    EventType.TOOL_RESULT.value,
    EventType.FINAL_OUTPUT.value,
    EventType.ERROR.value,
}


class ReplayModel:
    """A model that answers from a recording: each call returns the next recorded response
    (or raises the recorded model failure), whatever it is sent.

    Args:
        responses: In call order; a `ModelError` is raised instead of answered.
        name, provider: Reported like the recorded model's.

    Raises (from `generate`):
        ModelError: The recorded failure, or kind `replay_exhausted` when the turn asks
            for more model calls than were recorded.
    """

    def __init__(
        self,
        responses: Sequence[ModelResponse | ModelError],
        *,
        name: str = "replay",
        provider: str = "replay",
    ) -> None:
        self.responses = list(responses)
        self.name = name
        self.provider = provider

    def generate(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        """Return (or raise) the next recorded response."""
        if not self.responses:
            raise ModelError(
                "replay: the recording has no further model output for this turn",
                kind="replay_exhausted",
            )
        response = self.responses.pop(0)
        if isinstance(response, ModelError):
            raise response
        return response


def recorded_responses(turn: Sequence[Event]) -> list[ModelResponse | ModelError]:
    """Rebuild the model's responses, in call order, from one turn's recorded events.

    The text and tool calls of one model call share a `step`; in ledgers written before
    steps were recorded, each tool call is taken as its own call.
    """
    responses: list[ModelResponse | ModelError] = []
    current: ModelResponse | None = None
    current_step: Any = None
    for event in turn:
        data = event.data
        if event.type in (EventType.AGENT_MESSAGE, EventType.TOOL_CALL):
            step = data.get("step")
            if step is not None:
                starts_new = current is None or step != current_step
            elif event.type == EventType.AGENT_MESSAGE:
                starts_new = True
            else:  # an old ledger: a call joins only the text that came just before it
                starts_new = current is None or bool(current.tool_calls) or current.text is None
            if starts_new or current is None:
                if current is not None:
                    responses.append(current)
                current = ModelResponse(model=_text(data.get("model")))
                current_step = step
            if event.type == EventType.AGENT_MESSAGE:
                current.text = str(data.get("text", ""))
            else:
                raw = data.get("raw_arguments")
                current.tool_calls.append(
                    ToolCall(
                        id=str(data.get("call_id", "")),
                        name=str(data.get("name", "")),
                        arguments=dict(data.get("arguments") or {}),
                        invalid_arguments=raw if isinstance(raw, str) else None,
                    )
                )
        elif event.type == EventType.FINAL_OUTPUT:
            if current is not None:
                responses.append(current)
                current = None
            responses.append(ModelResponse(text=str(data.get("text", ""))))
        elif event.type == EventType.ERROR and data.get("source") == "model":
            if current is not None:
                responses.append(current)
                current = None
            responses.append(
                ModelError(str(data.get("message", "model failed")), kind=str(data.get("kind", "model")))
            )
    if current is not None:
        responses.append(current)
    return responses


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Divergence:
    """The first difference between the ledger and the replay.

    Attributes:
        seq: The recorded event that differs (for an event only the replay produced: the
            `seq` it would have had).
        type: That event's type (the replayed one's when the ledger has none).
        field: What differs: `type`, `name`, `arguments`, `result`, `state_delta`, `state_remove`,
            `text`, `kind`, `missing` (the replay stopped short) or `extra` (it went on).
        recorded, replayed: The two values.
        tool: The tool's name, for tool events.
    """

    seq: int
    type: str
    field: str
    recorded: Any
    replayed: Any
    tool: str | None = None

    def describe(self) -> str:
        """A one-line description of the difference."""
        what = f"{self.type} of {self.tool}" if self.tool else self.type
        return (
            f"event {self.seq} ({what}) differs in {self.field}: "
            f"recorded {_short(self.recorded)}, replayed {_short(self.replayed)}"
        )


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ReplayReport:
    """What a replay found.

    Attributes:
        session_id: The session replayed.
        turns: Turns run again.
        events_compared: Recorded events compared with the replay's.
        until: The last `seq` considered (`None`: the whole ledger).
        divergence: The first difference, or `None` when the replay matches the ledger.
    """

    session_id: str
    turns: int
    events_compared: int
    until: int | None
    divergence: Divergence | None

    @property
    def identical(self) -> bool:
        """Whether every compared event matched."""
        return self.divergence is None


def _compare(recorded: Event, replayed: Event) -> Divergence | None:
    def diff(field: str, a: Any, b: Any) -> Divergence | None:
        if a == b:
            return None
        tool = recorded.data.get("name") if recorded.type in ("tool_call", "tool_result") else None
        return Divergence(recorded.seq, recorded.type, field, a, b, tool=tool)

    if recorded.type != replayed.type:
        return Divergence(recorded.seq, recorded.type, "type", recorded.type, replayed.type)
    r, p = recorded.data, replayed.data
    if recorded.type == EventType.TOOL_CALL:
        return diff("name", r.get("name"), p.get("name")) or diff(
            "arguments", r.get("arguments"), p.get("arguments")
        )
    if recorded.type == EventType.TOOL_RESULT:
        # State changes compared by meaning: an event of format 1 deleted a key with None.
        was = state_change(recorded.state_delta, recorded.state_remove, recorded.format)
        now = state_change(replayed.state_delta, replayed.state_remove, replayed.format)
        return (
            diff("name", r.get("name"), p.get("name"))
            or diff("result", r.get("result"), p.get("result"))
            or diff("state_delta", was.set, now.set)
            or diff("state_remove", was.remove, now.remove)
        )
    if recorded.type in (EventType.AGENT_MESSAGE, EventType.FINAL_OUTPUT, EventType.USER_MESSAGE):
        return diff("text", r.get("text"), p.get("text"))
    if recorded.type == EventType.ERROR:
        return diff("kind", r.get("kind", r.get("source")), p.get("kind", p.get("source")))
    return None


def replay_session(
    store: SessionStore, session_id: str, agent: Agent, *, until: int | None = None
) -> ReplayReport:
    """Re-run a recorded session's turns and compare them with its ledger.

    Args:
        store: Where the session is; it is only read.
        session_id: The session to replay.
        agent: Whose tools run again (its model is replaced by the recording; its
            `max_steps` should be the recording's).
        until: Consider only events up to this `seq` (turns starting after it are not run).

    Returns:
        A `ReplayReport`; `divergence` is the first event that differs.

    Raises:
        SessionNotFoundError: No such session.
        ConfigurationError: `until` is below 1; or the events to replay include erased
            ones, or the ledger was truncated (their payloads are gone, so their turns
            cannot be run again).
    """
    if until is not None and until < 1:
        raise ConfigurationError(f"--until must be a seq of 1 or more, not {until}")
    events = store.read_events(session_id)
    if until is not None:
        events = [e for e in events if e.seq <= until]
    if not events or events[0].seq != 1 or any(e.erased for e in events):
        raise ConfigurationError(
            f"session {session_id!r} has erased or truncated history (erase_events, "
            "truncate_before); its turns cannot be replayed: their payloads are gone"
        )
    created = events[0]
    scratch = MemoryStore()
    try:
        copy = scratch.create_session(
            app_name=str(created.data.get("app_name", "replay")),
            user_id=str(created.data.get("user_id", "replay")),
            agent_name=_text(created.data.get("agent_name")),
            state=state_change(created.state_delta, (), created.format).set,
        )
        turns = 0
        compared = 0
        i = 1
        while i < len(events):
            event = events[i]
            if event.type != EventType.USER_MESSAGE or event.invocation_id is None:
                if (event.state_delta or event.state_remove) and event.type not in _TURN_TYPES:
                    change = state_change(event.state_delta, event.state_remove, event.format)
                    scratch.append(copy.id, [NewEvent(
                        type=EventType.STATE_UPDATED, state_delta=change.set,
                        state_remove=change.remove,
                    )])
                i += 1
                continue
            turn = [event]
            i += 1
            while i < len(events) and events[i].invocation_id == event.invocation_id:
                turn.append(events[i])
                i += 1
            turns += 1
            model = ReplayModel(recorded_responses(turn))
            runner = Runner(dataclasses.replace(agent, model=model), scratch,
                            context=ContextPolicy(max_turns=1))
            replayed: list[Event] = []
            try:
                for new in runner.run(copy.id, str(event.data.get("text", ""))):
                    replayed.append(new)
            except RunnerError:
                pass  # recorded as an error event, compared below
            complete = turn[-1].type in (EventType.FINAL_OUTPUT, EventType.ERROR)
            for n, recorded in enumerate(turn):
                if n >= len(replayed):
                    return ReplayReport(session_id, turns, compared, until, Divergence(
                        recorded.seq, recorded.type, "missing", recorded.type, None,
                        tool=recorded.data.get("name") if "tool" in recorded.type else None,
                    ))
                compared += 1
                found = _compare(recorded, replayed[n])
                if found is not None:
                    return ReplayReport(session_id, turns, compared, until, found)
            if complete and len(replayed) > len(turn):
                extra = replayed[len(turn)]
                return ReplayReport(session_id, turns, compared, until, Divergence(
                    turn[-1].seq + 1, extra.type, "extra", None, extra.type,
                    tool=extra.data.get("name") if "tool" in extra.type else None,
                ))
        return ReplayReport(session_id, turns, compared, until, None)
    finally:
        scratch.close()
