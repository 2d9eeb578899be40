"""The runner: one agent turn inside a session, every step recorded before it is yielded.

A turn appends `user_message`, then for each model step an optional `agent_message` (text
that comes with tool calls), each `tool_call`, the tool's `tool_result` (carrying the state
delta the tool wrote), and finally `final_output`. All events of a turn share one
`invocation_id`. A failing model or tool becomes an `error` event (counted in the
session's `error_count`) and then a `ModelError` / `ToolError` for the caller.

Every `error` event the runner writes has `data` with `message`, `error_type` (the
exception's class), `source` (`model`, `tool` or `runner`) and a machine-readable `kind`:

- `tool`: a tool raised, or was called with bad arguments or an unknown name;
- `model`: the model failed or returned something that is not a `ModelResponse`;
- `state_conflict`: the state a tool read kept changing under it (retries used up);
- `max_steps`: the agent took more than `max_steps` model calls;
- `cancelled`: the turn was interrupted while the runner ran one of its steps
  (`KeyboardInterrupt`, i.e. Ctrl-C, in `run`; `asyncio.CancelledError` in `run_async`);
  the exception is re-raised once the event is stored.

A cancelled turn ends where it was cut: what was stored stays (its `user_message`, the tool
results that landed, with their state changes), and a `tool_call` whose tool was interrupted
keeps no result. Later turns see it as any unfinished turn (see `history_messages`).

The turn itself is written once, as a generator of steps (append, call the model, call a
tool) that a sync driver (`run`) and an async driver (`run_async`) execute, so both behave
the same.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from agentledger._ids import new_id
from agentledger.core.events import Author, Event, EventType, NewEvent
from agentledger.core.session import Session, Status
from agentledger.core.state import apply_delta, is_temp_key
from agentledger.errors import (
    AgentLedgerError,
    ConfigurationError,
    EventTooLargeError,
    InvalidEventError,
    InvalidTransitionError,
    ModelError,
    RunnerError,
    StateConflictError,
    StateOperationError,
    ToolError,
)
from agentledger.runner.context import CONVERSATION_TYPES, ContextPolicy
from agentledger.runner.model_spec import resolve_model
from agentledger.runner.models import Message, Model, ModelResponse, OfflineModel, ToolCall
from agentledger.runner.tools import State, Tool, ToolContext
from agentledger.stores.base import SessionStore
from agentledger.stores.shared import event_size

__all__ = ["CONVERSATION_TYPES", "Agent", "Runner", "TextDelta", "final_output", "history_messages"]

DEFAULT_CONTEXT = ContextPolicy(max_turns=20)
"""What the runner sends the model by default: the session's last 20 turns."""


@dataclass
class Agent:
    """An agent: a name, instructions, a model and tools.

    Args:
        name: Recorded as the author's agent on the session (`agent_name`).
        instructions: The system message sent to the model first: a string, or a function
            of the session's state (a mapping, `user:`/`app:` keys included) returning one,
            so the model can be told what the session remembers.
        model: Any `Model`, or a model spec string (`"offline"`,
            `"openrouter/meta-llama/llama-3.1-8b-instruct"`, `"openai/gpt-4o-mini"`,
            `"ollama/llama3.1"`; see `agentledger.runner.model_spec`); the offline
            `OfflineModel()` when omitted.
        tools: Typed functions or `Tool`s; functions are wrapped with `Tool.from_function`.
        max_steps: Model calls allowed in one turn; one more records an `error` event of
            kind `max_steps_exceeded` and raises `RunnerError`.

    Raises:
        ConfigurationError: Two tools share a name, a tool's signature is not usable, the
            model spec is unknown or its API key is not set.
        MissingDependencyError: The model spec needs the `openai` extra.
    """

    name: str
    instructions: str | Callable[[Mapping[str, Any]], str] = ""
    model: Model | str = field(default_factory=OfflineModel)
    tools: Sequence[Tool | Callable[..., Any]] = ()
    max_steps: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = resolve_model(self.model)
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ConfigurationError(f"max_steps must be a positive int, not {self.max_steps!r}")
        converted = [t if isinstance(t, Tool) else Tool.from_function(t) for t in self.tools]
        self._tools = {t.name: t for t in converted}
        if len(self._tools) != len(converted):
            raise ConfigurationError(f"agent {self.name!r} has two tools with the same name")
        self.tools = converted

    def get_model(self) -> Model:
        """Return the agent's model (a spec string given at construction is resolved)."""
        if isinstance(self.model, str):
            self.model = resolve_model(self.model)
        return self.model

    def system_prompt(self, state: Mapping[str, Any]) -> str:
        """Return the instructions for a turn whose session state is `state`."""
        if callable(self.instructions):
            return str(self.instructions(state))
        return self.instructions

    def get_tool(self, name: str) -> Tool | None:
        """Return the tool called `name`, or `None`."""
        return self._tools.get(name)

    def tool_specs(self) -> list[dict[str, Any]]:
        """Return the OpenAI-compatible specs of every tool."""
        return [t.spec() for t in self._tools.values()]


# -- the steps a turn asks its driver to run ------------------------------------------------


@dataclass
class _Append:
    events: list[NewEvent]
    expected_state: dict[str, Any] | None = None


@dataclass
class _LoadState:
    """Re-read the session's state (after a state conflict)."""


@dataclass
class _Sleep:
    """Wait before a retry (backoff)."""

    seconds: float


@dataclass
class _CallModel:
    messages: list[Message]
    tools: list[dict[str, Any]]
    invocation_id: str
    step: int


@dataclass
class _CallTool:
    tool: Tool
    kwargs: dict[str, Any]


_Step = _Append | _CallModel | _CallTool | _LoadState | _Sleep
_Turn = Generator[_Step, Any, None]


@dataclass(frozen=True)
class TextDelta:
    """A piece of the model's text as it streams (`Runner.run(..., stream=True)`).

    Deltas are not stored: the complete text is, in the `agent_message` or `final_output`
    event that follows them.

    Attributes:
        text: The new characters.
        invocation_id: The turn's id (shared by its events).
        step: Which model call of the turn (from 1).
    """

    text: str
    invocation_id: str
    step: int


def final_output(events: Sequence[Event]) -> str | None:
    """Return the text of the last `final_output` event in `events`, or `None`."""
    for event in reversed(events):
        if event.type == EventType.FINAL_OUTPUT:
            return str(event.data.get("text", ""))
    return None


def history_messages(events: Sequence[Event]) -> list[Message]:
    """Turn ledger events into chat messages in the OpenAI shape, oldest first.

    Starts at the first `user_message`. The text and tool calls of one model call (one
    `step` of a turn) become one assistant message with every call and its provider id,
    followed by one `tool` message per result, so the history is what the model saw. A
    `tool_call` with no `tool_result` (a turn that failed mid-call) is left out, so the
    history is always a valid chat transcript. `error` events are not part of the
    conversation; a turn that was cancelled or failed keeps its user message, any text the
    agent said and every answered tool call. Events whose payload was erased
    (`Event.erased`) are left out, and so is the result of an erased tool call.

    Args:
        events: Ledger events of one session, in `seq` order (other types are ignored).

    Returns:
        `user`, `assistant` and `tool` messages in the OpenAI-compatible chat shape.
    """
    if any(e.erased for e in events):
        events = [e for e in events if not e.erased]
        calls = {
            (e.invocation_id, e.data.get("call_id"))
            for e in events
            if e.type == EventType.TOOL_CALL
        }
        events = [
            e
            for e in events
            if e.type != EventType.TOOL_RESULT or (e.invocation_id, e.data.get("call_id")) in calls
        ]
    answered = {
        (e.invocation_id, e.data.get("call_id")) for e in events if e.type == EventType.TOOL_RESULT
    }
    messages: list[Message] = []
    open_step: tuple[str | None, Any] | None = None
    assistant: Message | None = None
    for event in events:
        data = event.data
        if event.type == EventType.USER_MESSAGE:
            messages.append(Message(role="user", content=str(data.get("text", ""))))
            open_step, assistant = None, None
            continue
        if not messages:
            continue
        if event.type in (EventType.AGENT_MESSAGE, EventType.TOOL_CALL):
            # One model call (same turn, same step) is one assistant message; ledgers
            # written before steps were recorded get one message per event.
            key = (event.invocation_id, data.get("step"))
            if assistant is None or data.get("step") is None or key != open_step:
                assistant = Message(role="assistant")
                messages.append(assistant)
                open_step = key
            if event.type == EventType.AGENT_MESSAGE:
                assistant.content = str(data.get("text", ""))
            elif (event.invocation_id, data.get("call_id")) in answered:
                raw = data.get("raw_arguments")
                assistant.tool_calls.append(
                    ToolCall(
                        id=data["call_id"],
                        name=data["name"],
                        arguments=data.get("arguments") or {},
                        invalid_arguments=raw if isinstance(raw, str) else None,
                    )
                )
        elif event.type == EventType.FINAL_OUTPUT:
            messages.append(Message(role="assistant", content=str(data.get("text", ""))))
            open_step, assistant = None, None
        elif event.type == EventType.TOOL_RESULT:
            messages.append(
                Message(
                    role="tool",
                    content=json.dumps(data.get("result"), ensure_ascii=False),
                    tool_call_id=data.get("call_id"),
                    name=data.get("name"),
                )
            )
    return [m for m in messages if m.role != "assistant" or m.content is not None or m.tool_calls]


def _user_message(text: str, invocation_id: str) -> NewEvent:
    return NewEvent(type=EventType.USER_MESSAGE, author=Author.USER, data={"text": text},
                    invocation_id=invocation_id)


def _not_utf8(text: str, index: int) -> str:
    code = ord(text[index])
    if 0xDC80 <= code <= 0xDCFF:  # how Python keeps an undecodable byte (surrogateescape)
        what = f"the byte 0x{code - 0xDC00:02x}, which is not UTF-8"
    else:
        what = f"a lone surrogate {ascii(text[index])}"
    return (
        f"the message is not valid UTF-8 text: character {index + 1} is {what} "
        "(is the terminal or file in another encoding?); nothing was stored"
    )



_CANCELLED = (KeyboardInterrupt, asyncio.CancelledError)
"""What interrupts a turn (Ctrl-C, a cancelled task): recorded as kind `cancelled`, then
re-raised."""


def _error_event(
    invocation_id: str, source: str, exc: BaseException, *, kind: str, **extra: Any
) -> NewEvent:
    """The `error` event of a failed turn step.

    Args:
        invocation_id: The turn's invocation id.
        source: What failed: `model`, `tool` or `runner`.
        exc: The exception; its text (or class name) becomes `message`, its class
            `error_type`.
        kind: The machine-readable kind (`tool`, `model`, `cancelled`, ...; see the module
            docstring).
        **extra: More `data` fields (e.g. `tool`, `model`).
    """
    return NewEvent(
        type=EventType.ERROR,
        author=Author.SYSTEM,
        invocation_id=invocation_id,
        data={"message": str(exc) or type(exc).__name__, "error_type": type(exc).__name__,
              "source": source, "kind": kind, **extra},
    )


def _tool_error_result(call: ToolCall) -> str | None:
    """Why a call cannot run as asked (it then gets an error result), or `None`."""
    if call.invalid_arguments is not None:
        return (
            f"the arguments of {call.name!r} are not a JSON object: {call.invalid_arguments!r}; "
            "call it again with valid JSON arguments"
        )
    return None


class Runner:
    """Run agent turns inside sessions of a store.

    Args:
        agent: The agent to run.
        store: Where the session and its ledger live.
        context: Which past turns of the session are rebuilt from the ledger and sent to
            the model (default: the last 20 turns; `ContextPolicy()` sends all).
        state_retry_seconds: How long, in seconds, a tool is run again when the state it
            read was changed by another writer before its result was stored (optimistic
            concurrency: the tool's delta is appended with the values it read as
            `expected_state`; a failed `test` state operation counts the same), waiting a
            random, growing pause (exponential backoff with full jitter, 5 ms doubling up
            to 0.5 s) between runs. Past it, the tool fails with `ToolError`. Tools that
            act outside the session should be idempotent. Changes recorded as state
            operations (`tool_context.state.append(...)`) never conflict and never retry.
        max_state_retries: At most this many runs again, whatever the time left; `None`
            (the default) for no limit but `state_retry_seconds`.

    Every model call is recorded on the first event it produces (its `agent_message`,
    first `tool_call`, or `final_output`) as `data["model_call"]`: `provider`, `model`,
    `input_tokens`, `output_tokens`, `latency_ms`, `finish_reason`, `step`.

    Example:
        >>> from agentledger import open_store
        >>> store = open_store("memory://")
        >>> session = store.create_session(app_name="demo", user_id="ada")
        >>> runner = Runner(Agent(name="echo"), store)
        >>> [e.type for e in runner.run(session.id, "hi")]
        ['user_message', 'final_output']
    """

    def __init__(
        self,
        agent: Agent,
        store: SessionStore,
        *,
        context: ContextPolicy = DEFAULT_CONTEXT,
        state_retry_seconds: float = 30.0,
        max_state_retries: int | None = None,
    ) -> None:
        if isinstance(state_retry_seconds, bool) or not isinstance(
            state_retry_seconds, int | float
        ) or not state_retry_seconds >= 0:
            raise ConfigurationError(
                f"state_retry_seconds must be a number >= 0, not {state_retry_seconds!r}"
            )
        if max_state_retries is not None and (
            isinstance(max_state_retries, bool)
            or not isinstance(max_state_retries, int)
            or max_state_retries < 0
        ):
            raise ConfigurationError(
                f"max_state_retries must be None or an int >= 0, not {max_state_retries!r}"
            )
        self.agent = agent
        self.store = store
        self.context = context
        self.state_retry_seconds = float(state_retry_seconds)
        self.max_state_retries = max_state_retries

    def check_message(self, message: str) -> None:
        """Check that `message` can be stored as a turn's `user_message`; write nothing.

        `run` checks it before its first write too; call it first to refuse a message
        before creating a session for it.

        Args:
            message: The user's words.

        Raises:
            InvalidEventError: Not a string, or not valid UTF-8 text (such as the lone
                surrogates Python makes of undecodable bytes in a command line).
            EventTooLargeError: Its `user_message` event would be over the store's
                `max_event_bytes`.
        """
        if not isinstance(message, str):
            raise InvalidEventError(f"the message must be a string, not {type(message).__name__}")
        try:
            message.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(_not_utf8(message, exc.start)) from exc
        size = event_size(_user_message(message, new_id()))
        if size > self.store.max_event_bytes:
            raise EventTooLargeError(size, self.store.max_event_bytes, "the message")

    # -- the turn, written once ---------------------------------------------------------

    def _start(self, session_id: str) -> tuple[Session, list[Event]]:
        session = self.store.get_session(session_id)
        if session.status == Status.TERMINATED:
            raise InvalidTransitionError(
                f"session {session_id!r} is terminated; start a new session to continue"
            )
        if session.status == Status.SUSPENDED:
            raise InvalidTransitionError(
                f"session {session_id!r} is suspended; resume it before starting a new turn"
            )
        return session, self.context.load(self.store, session_id)

    def _turn(self, session: Session, history: list[Event], text: str) -> _Turn:
        """The turn; an interruption (`_CANCELLED`) is recorded as a `cancelled` error for
        the invocation, then re-raised as it was."""
        self.check_message(text)
        invocation_id = new_id()
        try:
            yield from self._steps(session, history, text, invocation_id)
        except _CANCELLED as cancelled:
            event = _error_event(invocation_id, "runner", cancelled, kind="cancelled",
                                 message="the turn was cancelled")
            try:
                yield _Append([event])
            except Exception:  # the turn is cancelled whether or not this landed
                pass
            raise

    def _steps(
        self, session: Session, history: list[Event], text: str, invocation_id: str
    ) -> _Turn:
        agent = self.agent
        model = agent.get_model()
        yield _Append([_user_message(text, invocation_id)])
        state = dict(session.state)
        instructions = agent.system_prompt(state)
        messages = [Message(role="system", content=instructions)] if instructions else []
        messages += history_messages(history)
        messages.append(Message(role="user", content=text))
        specs = agent.tool_specs()
        model_name = getattr(model, "name", type(model).__name__)
        provider = getattr(model, "provider", None)
        for step in range(1, agent.max_steps + 1):
            started = time.perf_counter()
            try:
                response = yield _CallModel(list(messages), specs, invocation_id, step)
                if not isinstance(response, ModelResponse):
                    raise ModelError(
                        f"model {model_name!r} returned {type(response).__name__}, "
                        "not ModelResponse",
                        kind="bad_response",
                    )
            except Exception as exc:
                kind = exc.kind if isinstance(exc, ModelError) else "model"
                yield _Append([_error_event(
                    invocation_id, "model", exc, kind=kind, model=model_name, provider=provider,
                    step=step, latency_ms=_ms_since(started),
                )])
                if isinstance(exc, ModelError):
                    raise
                raise ModelError(f"model {model_name!r} failed: {exc}") from exc
            call_info = {
                "provider": response.provider or provider,
                "model": response.model or model_name,
                "input_tokens": response.usage.input_tokens if response.usage else None,
                "output_tokens": response.usage.output_tokens if response.usage else None,
                "latency_ms": _ms_since(started),
                "finish_reason": response.finish_reason,
                "step": step,
            }
            if not response.tool_calls:
                yield _Append(
                    [NewEvent(type=EventType.FINAL_OUTPUT, author=Author.AGENT,
                              invocation_id=invocation_id,
                              data={"text": response.text or "", "model": model_name,
                                    "step": step, "model_call": call_info})]
                )
                return
            assistant = Message(role="assistant", content=response.text or None,
                                tool_calls=list(response.tool_calls))
            messages.append(assistant)
            if response.text:
                yield _Append(
                    [NewEvent(type=EventType.AGENT_MESSAGE, author=Author.AGENT,
                              invocation_id=invocation_id,
                              data={"text": response.text, "model": model_name, "step": step,
                                    "model_call": call_info})]
                )
                call_info = {}
            for call in response.tool_calls:
                state = yield from self._tool_step(
                    session, invocation_id, call, state, messages, step, call_info
                )
                call_info = {}
        too_long = RunnerError(
            f"agent {agent.name!r} was still calling tools after {agent.max_steps} model steps"
        )
        yield _Append([_error_event(invocation_id, "runner", too_long, kind="max_steps_exceeded",
                                    reason="max_steps_exceeded", max_steps=agent.max_steps)])
        raise too_long

    def _tool_step(
        self,
        session: Session,
        invocation_id: str,
        call: ToolCall,
        state: dict[str, Any],
        messages: list[Message],
        step: int,
        call_info: dict[str, Any],
    ) -> Generator[_Step, Any, dict[str, Any]]:
        data: dict[str, Any] = {"call_id": call.id, "name": call.name,
                                "arguments": call.arguments, "step": step}
        if call.invalid_arguments is not None:
            data["raw_arguments"] = call.invalid_arguments
        if call_info:
            data["model_call"] = call_info
        yield _Append([NewEvent(type=EventType.TOOL_CALL, author=Author.AGENT,
                                invocation_id=invocation_id, data=data)])
        tool = self.agent.get_tool(call.name)
        refused = _tool_error_result(call)
        if tool is None:
            known = ", ".join(sorted(t.name for t in self.agent.tools if isinstance(t, Tool)))
            refused = f"there is no tool {call.name!r}; the tools are: {known or 'none'}"
        live = State(state)
        context = ToolContext(session=session, invocation_id=invocation_id, state=live,
                              tool_call_id=call.id)
        if tool is not None and refused is None:
            try:
                tool.bind(call.arguments, context)  # arguments that fit the schema?
            except ToolError as bad:
                refused = str(bad)
        if refused is not None or tool is None:
            # The model's mistake, not the tool's: it gets the error as the call's result
            # and may try again; nothing is counted as a session error.
            result: Any = {"error": refused}
            yield _Append([NewEvent(
                type=EventType.TOOL_RESULT, author=Author.TOOL, invocation_id=invocation_id,
                data={"call_id": call.id, "name": call.name, "result": result, "is_error": True},
            )])
            messages.append(Message(role="tool", content=json.dumps(result, ensure_ascii=False),
                                    tool_call_id=call.id, name=call.name))
            return state
        deadline = time.monotonic() + self.state_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            committing = False  # a failed `test` operation is a conflict only at commit
            live = State(state)
            context = ToolContext(session=session, invocation_id=invocation_id, state=live,
                                  tool_call_id=call.id)
            try:
                result = yield _CallTool(tool, tool.bind(call.arguments, context))
                json.dumps(result, allow_nan=False)
                # What the tool read matters only if it wrote: a read-only result cannot
                # lose anyone's update, so it is stored whatever changed meanwhile.
                writes = (
                    any(not is_temp_key(k) for k in [*live.delta, *live.removed]) or live.ops
                )
                expected = {
                    k: v for k, v in live.reads.items() if writes and not is_temp_key(k)
                }
                committing = True
                stored = yield _Append(
                    [NewEvent(type=EventType.TOOL_RESULT, author=Author.TOOL,
                              invocation_id=invocation_id,
                              data={"call_id": call.id, "name": call.name, "result": result},
                              state_delta=live.delta, state_remove=live.removed,
                              state_ops=live.ops)],
                    expected_state=expected or None,
                )
                break
            except (StateConflictError, StateOperationError) as conflict:
                if isinstance(conflict, StateOperationError) and (
                    not committing or conflict.op.get("op") != "test"
                ):
                    yield _Append([_error_event(invocation_id, "tool", conflict, kind="tool",
                                                tool=call.name)])
                    raise ToolError(f"tool {call.name!r} failed: {conflict}") from conflict
                # Another writer changed what the tool read (or what its `test` operation
                # expected): run it again on fresh state (optimistic concurrency) rather
                # than overwrite that change, after a random, growing pause.
                pause = random.uniform(0, min(0.5, 0.005 * 2 ** min(attempt, 20)))
                out_of_runs = (
                    self.max_state_retries is not None and attempt > self.max_state_retries
                )
                if out_of_runs or time.monotonic() + pause > deadline:
                    keys = (
                        ", ".join(conflict.keys)
                        if isinstance(conflict, StateConflictError)
                        else str(conflict.op.get("path"))
                    )
                    exc = ToolError(
                        f"tool {call.name!r}: state {keys} kept changing under it "
                        f"({attempt} attempts in {self.state_retry_seconds:g} s)"
                    )
                    yield _Append([_error_event(invocation_id, "tool", exc,
                                                kind="state_conflict", tool=call.name)])
                    raise exc from conflict
                yield _Sleep(pause)
                fresh = yield _LoadState()
                state = {**fresh, **{k: v for k, v in state.items() if is_temp_key(k)}}
            except Exception as exc:
                if isinstance(exc, AgentLedgerError) and not isinstance(
                    exc, (ToolError, InvalidEventError)
                ):
                    raise  # the store failed, not the tool
                yield _Append([_error_event(invocation_id, "tool", exc, kind="tool",
                                            tool=call.name)])
                if isinstance(exc, ToolError):
                    raise
                raise ToolError(f"tool {call.name!r} failed: {exc}") from exc
        messages.append(Message(role="tool", content=json.dumps(result, ensure_ascii=False),
                                tool_call_id=call.id, name=call.name))
        temp = {k: v for k, v in live.delta.items() if is_temp_key(k)}
        temp_removed = [k for k in live.removed if is_temp_key(k)]
        if stored[0].state_ops:
            # Applied at commit to the state as it was then: read back what they made.
            fresh = yield _LoadState()
            return apply_delta({**fresh, **{k: v for k, v in state.items() if is_temp_key(k)}},
                               temp, temp_removed)
        return apply_delta(
            state, {**stored[0].state_delta, **temp}, [*stored[0].state_remove, *temp_removed]
        )

    # -- drivers --------------------------------------------------------------------------

    @overload
    def run(
        self, session_id: str, message: str, *, stream: Literal[False] = False
    ) -> Iterator[Event]: ...

    @overload
    def run(
        self, session_id: str, message: str, *, stream: bool
    ) -> Iterator[Event | TextDelta]: ...

    def run(
        self, session_id: str, message: str, *, stream: bool = False
    ) -> Iterator[Event | TextDelta]:
        """Run one turn and yield each event once it is durably stored.

        Args:
            session_id: An existing, active session.
            message: The user's words.
            stream: Also yield the model's text as it arrives, as `TextDelta`s (not
                stored), before the event that stores the complete text. A model without
                `generate_stream` gives its text as one delta.

        Yields:
            The turn's events in ledger order, each after its append returned (and, with
            `stream`, `TextDelta`s).

        Raises:
            SessionNotFoundError: No session has this id.
            InvalidTransitionError: The session is terminated or suspended (resume it
                first); nothing was written. The store checks this again atomically.
            ModelError, ToolError, RunnerError: The turn failed; an `error` event was
                recorded first (`ModelError.kind` says how the model failed).
            KeyboardInterrupt: Ctrl-C while a step ran; an `error` event of kind
                `cancelled` was recorded (and yielded) first.
            StoreError: The store failed; what was yielded before is stored.
        """
        session, history = self._start(session_id)
        turn = self._turn(session, history, message)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                step = turn.throw(thrown) if thrown is not None else turn.send(sent)
            except StopIteration:
                return
            thrown = None
            try:
                if stream and isinstance(step, _CallModel):
                    for part in self._stream_model(step):
                        if isinstance(part, TextDelta):
                            yield part
                        else:
                            sent = part
                    continue
                sent = self._execute(session_id, step)
            except (Exception, *_CANCELLED) as exc:  # the turn records a cancellation too
                thrown = exc
                continue
            if isinstance(step, _Append):
                yield from sent

    def _stream_model(self, step: _CallModel) -> Iterator[TextDelta | ModelResponse]:
        model = self.agent.get_model()
        generate_stream = getattr(model, "generate_stream", None)
        if generate_stream is None:
            response = model.generate(step.messages, step.tools)
            if isinstance(response, ModelResponse) and response.text:
                yield TextDelta(response.text, step.invocation_id, step.step)
            yield response
            return
        final: Any = None
        for part in generate_stream(step.messages, step.tools):
            if isinstance(part, str):
                yield TextDelta(part, step.invocation_id, step.step)
            else:
                final = part
        yield final

    def _execute(self, session_id: str, step: _Step) -> Any:
        if isinstance(step, _Append):
            return self.store.append(session_id, step.events, expected_state=step.expected_state)
        if isinstance(step, _LoadState):
            return self.store.get_session(session_id).state
        if isinstance(step, _Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, _CallModel):
            return self.agent.get_model().generate(step.messages, step.tools)
        result = step.tool.function(**step.kwargs)
        if inspect.isawaitable(result):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(result))
            raise ToolError(f"tool {step.tool.name!r} is async; inside an event loop use run_async")
        return result

    @overload
    def run_async(
        self, session_id: str, message: str, *, stream: Literal[False] = False
    ) -> AsyncIterator[Event]: ...

    @overload
    def run_async(
        self, session_id: str, message: str, *, stream: bool
    ) -> AsyncIterator[Event | TextDelta]: ...

    async def run_async(
        self, session_id: str, message: str, *, stream: bool = False
    ) -> AsyncIterator[Event | TextDelta]:
        """The async twin of `run`: same events, same errors, same `stream` option; a
        cancelled task (`asyncio.CancelledError`) is recorded as kind `cancelled`, then
        re-raised.

        Store calls and sync tools run in worker threads so the event loop never blocks;
        a model with `generate_async` (`generate_stream_async` when streaming) is awaited,
        any other runs in a thread.
        """
        session, history = await asyncio.to_thread(self._start, session_id)
        turn = self._turn(session, history, message)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                step = turn.throw(thrown) if thrown is not None else turn.send(sent)
            except StopIteration:
                return
            thrown = None
            try:
                if stream and isinstance(step, _CallModel):
                    async for part in self._stream_model_async(step):
                        if isinstance(part, TextDelta):
                            yield part
                        else:
                            sent = part
                    continue
                sent = await self._execute_async(session_id, step)
            except (Exception, *_CANCELLED) as exc:  # the turn records a cancellation too
                thrown = exc
                continue
            if isinstance(step, _Append):
                for event in sent:
                    yield event

    async def _stream_model_async(self, step: _CallModel) -> AsyncIterator[TextDelta | ModelResponse]:
        model = self.agent.get_model()
        generate_stream_async = getattr(model, "generate_stream_async", None)
        if generate_stream_async is None:
            response = await self._execute_async("", step)
            if isinstance(response, ModelResponse) and response.text:
                yield TextDelta(response.text, step.invocation_id, step.step)
            yield response
            return
        final: Any = None
        async for part in generate_stream_async(step.messages, step.tools):
            if isinstance(part, str):
                yield TextDelta(part, step.invocation_id, step.step)
            else:
                final = part
        yield final

    async def _execute_async(self, session_id: str, step: _Step) -> Any:
        if isinstance(step, _Append):
            return await asyncio.to_thread(
                self.store.append, session_id, step.events, expected_state=step.expected_state
            )
        if isinstance(step, _LoadState):
            session = await asyncio.to_thread(self.store.get_session, session_id)
            return session.state
        if isinstance(step, _Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, _CallModel):
            model = self.agent.get_model()
            generate_async = getattr(model, "generate_async", None)
            if generate_async is not None:
                return await generate_async(step.messages, step.tools)
            return await asyncio.to_thread(model.generate, step.messages, step.tools)
        if step.tool.is_async:
            return await step.tool.function(**step.kwargs)
        return await asyncio.to_thread(step.tool.function, **step.kwargs)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def _await(awaitable: Any) -> Any:
    return await awaitable

