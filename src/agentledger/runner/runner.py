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
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    ToolError,
)
from agentledger.runner.models import Message, Model, ModelResponse, OfflineModel, ToolCall
from agentledger.runner.tools import State, Tool, ToolContext
from agentledger.stores.base import SessionStore
from agentledger.stores.shared import event_size

__all__ = ["Agent", "Runner", "final_output"]

CONVERSATION_TYPES = (
    EventType.USER_MESSAGE.value,
    EventType.AGENT_MESSAGE.value,
    EventType.TOOL_CALL.value,
    EventType.TOOL_RESULT.value,
    EventType.FINAL_OUTPUT.value,
)


@dataclass
class Agent:
    """An agent: a name, instructions, a model and tools.

    Args:
        name: Recorded as the author's agent on the session (`agent_name`).
        instructions: The system message sent to the model first.
        model: Any `Model`; the offline `OfflineModel()` when omitted.
        tools: Typed functions or `Tool`s; functions are wrapped with `Tool.from_function`.
        max_steps: Model calls allowed in one turn before the turn fails with `RunnerError`.

    Raises:
        ConfigurationError: Two tools share a name, or a tool's signature is not usable.
    """

    name: str
    instructions: str = ""
    model: Model = field(default_factory=OfflineModel)
    tools: Sequence[Tool | Callable[..., Any]] = ()
    max_steps: int = 10

    def __post_init__(self) -> None:
        converted = [t if isinstance(t, Tool) else Tool.from_function(t) for t in self.tools]
        self._tools = {t.name: t for t in converted}
        if len(self._tools) != len(converted):
            raise ConfigurationError(f"agent {self.name!r} has two tools with the same name")
        self.tools = converted

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
class _CallModel:
    messages: list[Message]
    tools: list[dict[str, Any]]


@dataclass
class _CallTool:
    tool: Tool
    kwargs: dict[str, Any]


_Step = _Append | _CallModel | _CallTool | _LoadState
_Turn = Generator[_Step, Any, None]


def final_output(events: Sequence[Event]) -> str | None:
    """Return the text of the last `final_output` event in `events`, or `None`."""
    for event in reversed(events):
        if event.type == EventType.FINAL_OUTPUT:
            return str(event.data.get("text", ""))
    return None


def history_messages(events: Sequence[Event]) -> list[Message]:
    """Turn ledger events into chat messages, oldest first.

    Starts at the first `user_message`. A turn that did not finish (a tool or the model
    failed, or the turn was cancelled) keeps its user message, any text the agent said and
    every tool call that got its `tool_result`; a `tool_call` with no `tool_result` (cut
    short mid-call) is left out, so every assistant tool call in the history is followed by
    its result and the history is always a valid chat transcript. `error` events are not
    part of the conversation.

    Args:
        events: Ledger events of one session, in `seq` order (other types are ignored).

    Returns:
        `user`, `assistant` and `tool` messages in the OpenAI-compatible chat shape.
    """
    answered = {e.data.get("call_id") for e in events if e.type == EventType.TOOL_RESULT}
    messages: list[Message] = []
    for event in events:
        data = event.data
        if event.type == EventType.USER_MESSAGE:
            messages.append(Message(role="user", content=str(data.get("text", ""))))
        elif not messages:
            continue
        elif event.type in (EventType.AGENT_MESSAGE, EventType.FINAL_OUTPUT):
            messages.append(Message(role="assistant", content=str(data.get("text", ""))))
        elif event.type == EventType.TOOL_CALL and data.get("call_id") in answered:
            call = ToolCall(
                id=data["call_id"], name=data["name"], arguments=data.get("arguments") or {}
            )
            messages.append(Message(role="assistant", tool_calls=[call]))
        elif event.type == EventType.TOOL_RESULT:
            messages.append(
                Message(
                    role="tool",
                    content=json.dumps(data.get("result"), ensure_ascii=False),
                    tool_call_id=data.get("call_id"),
                    name=data.get("name"),
                )
            )
    return messages


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


class Runner:
    """Run agent turns inside sessions of a store.

    Args:
        agent: The agent to run.
        store: Where the session and its ledger live.
        history_limit: How many of the latest conversation events are sent to the model.
        max_state_retries: How many times a tool is run again when the state it read was
            changed by another writer before its result was stored (optimistic
            concurrency: the tool's delta is appended with the values it read as
            `expected_state`). Each conflict means another writer's change landed, so
            with the default of 7 the turns of 8 concurrent writers all complete. Tools
            that act outside the session should be idempotent.

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
        history_limit: int = 200,
        max_state_retries: int = 7,
    ) -> None:
        self.agent = agent
        self.store = store
        self.history_limit = history_limit
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
        history = self.store.read_events(
            session_id, types=CONVERSATION_TYPES, last=self.history_limit
        )
        return session, history

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
        yield _Append([_user_message(text, invocation_id)])
        messages = [Message(role="system", content=agent.instructions)] if agent.instructions else []
        messages += history_messages(history)
        messages.append(Message(role="user", content=text))
        state = dict(session.state)
        specs = agent.tool_specs()
        model_name = getattr(agent.model, "name", type(agent.model).__name__)
        for _ in range(agent.max_steps):
            try:
                response = yield _CallModel(list(messages), specs)
                if not isinstance(response, ModelResponse):
                    raise TypeError(f"model returned {type(response).__name__}, not ModelResponse")
            except Exception as exc:
                yield _Append(
                    [_error_event(invocation_id, "model", exc, kind="model", model=model_name)]
                )
                raise ModelError(f"model {model_name!r} failed: {exc}") from exc
            if not response.tool_calls:
                yield _Append(
                    [NewEvent(type=EventType.FINAL_OUTPUT, author=Author.AGENT,
                              invocation_id=invocation_id,
                              data={"text": response.text or "", "model": model_name})]
                )
                return
            if response.text:
                yield _Append(
                    [NewEvent(type=EventType.AGENT_MESSAGE, author=Author.AGENT,
                              invocation_id=invocation_id,
                              data={"text": response.text, "model": model_name})]
                )
                messages.append(Message(role="assistant", content=response.text))
            for call in response.tool_calls:
                state = yield from self._tool_step(session, invocation_id, call, state, messages)
        too_long = RunnerError(f"agent {agent.name!r} took more than {agent.max_steps} model steps")
        yield _Append([_error_event(invocation_id, "runner", too_long, kind="max_steps")])
        raise too_long

    def _tool_step(
        self,
        session: Session,
        invocation_id: str,
        call: ToolCall,
        state: dict[str, Any],
        messages: list[Message],
    ) -> Generator[_Step, Any, dict[str, Any]]:
        yield _Append(
            [NewEvent(type=EventType.TOOL_CALL, author=Author.AGENT, invocation_id=invocation_id,
                      data={"call_id": call.id, "name": call.name, "arguments": call.arguments})]
        )
        for attempt in range(1, self.max_state_retries + 2):
            live = State(state)
            context = ToolContext(session=session, invocation_id=invocation_id, state=live,
                                  tool_call_id=call.id)
            try:
                tool = self.agent.get_tool(call.name)
                if tool is None:
                    raise ToolError(f"unknown tool {call.name!r}")
                result = yield _CallTool(tool, tool.bind(call.arguments, context))
                json.dumps(result, allow_nan=False)
                expected = {k: v for k, v in live.reads.items() if not is_temp_key(k)}
                stored = yield _Append(
                    [NewEvent(type=EventType.TOOL_RESULT, author=Author.TOOL,
                              invocation_id=invocation_id,
                              data={"call_id": call.id, "name": call.name, "result": result},
                              state_delta=live.delta)],
                    expected_state=expected or None,
                )
                break
            except StateConflictError as conflict:
                # Another writer changed what the tool read: run it again on fresh state
                # (optimistic concurrency) rather than overwrite that change.
                if attempt > self.max_state_retries:
                    exc = ToolError(
                        f"tool {call.name!r}: state {', '.join(conflict.keys)} kept changing "
                        f"under it ({attempt} attempts)"
                    )
                    yield _Append([_error_event(invocation_id, "tool", exc,
                                                kind="state_conflict", tool=call.name)])
                    raise exc from conflict
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
        messages.append(Message(role="assistant", tool_calls=[call]))
        messages.append(Message(role="tool", content=json.dumps(result, ensure_ascii=False),
                                tool_call_id=call.id, name=call.name))
        temp = {k: v for k, v in live.delta.items() if is_temp_key(k)}
        return apply_delta(state, {**stored[0].state_delta, **temp})

    # -- drivers --------------------------------------------------------------------------

    def run(self, session_id: str, message: str) -> Iterator[Event]:
        """Run one turn and yield each event once it is durably stored.

        Args:
            session_id: An existing, active session.
            message: The user's words.

        Yields:
            The turn's events in ledger order, each after its append returned.

        Raises:
            SessionNotFoundError: No session has this id.
            InvalidTransitionError: The session is terminated or suspended (resume it
                first); nothing was written. The store checks this again atomically.
            ModelError, ToolError, RunnerError: The turn failed; an `error` event was
                recorded first.
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
                sent = self._execute(session_id, step)
            except (Exception, *_CANCELLED) as exc:  # the turn records a cancellation too
                thrown = exc
                continue
            if isinstance(step, _Append):
                yield from sent

    def _execute(self, session_id: str, step: _Step) -> Any:
        if isinstance(step, _Append):
            return self.store.append(session_id, step.events, expected_state=step.expected_state)
        if isinstance(step, _LoadState):
            return self.store.get_session(session_id).state
        if isinstance(step, _CallModel):
            return self.agent.model.generate(step.messages, step.tools)
        result = step.tool.function(**step.kwargs)
        if inspect.isawaitable(result):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(result))
            raise ToolError(f"tool {step.tool.name!r} is async; inside an event loop use run_async")
        return result

    async def run_async(self, session_id: str, message: str) -> AsyncIterator[Event]:
        """The async twin of `run`: same events, same errors; a cancelled task
        (`asyncio.CancelledError`) is recorded as kind `cancelled`, then re-raised.

        Store calls and sync tools run in worker threads so the event loop never blocks;
        a model with `generate_async` is awaited, any other runs in a thread.
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
                sent = await self._execute_async(session_id, step)
            except (Exception, *_CANCELLED) as exc:  # the turn records a cancellation too
                thrown = exc
                continue
            if isinstance(step, _Append):
                for event in sent:
                    yield event

    async def _execute_async(self, session_id: str, step: _Step) -> Any:
        if isinstance(step, _Append):
            return await asyncio.to_thread(
                self.store.append, session_id, step.events, expected_state=step.expected_state
            )
        if isinstance(step, _LoadState):
            session = await asyncio.to_thread(self.store.get_session, session_id)
            return session.state
        if isinstance(step, _CallModel):
            generate_async = getattr(self.agent.model, "generate_async", None)
            if generate_async is not None:
                return await generate_async(step.messages, step.tools)
            return await asyncio.to_thread(self.agent.model.generate, step.messages, step.tools)
        if step.tool.is_async:
            return await step.tool.function(**step.kwargs)
        return await asyncio.to_thread(step.tool.function, **step.kwargs)


async def _await(awaitable: Any) -> Any:
    return await awaitable

