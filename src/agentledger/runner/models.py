"""Models: the `Model` protocol and the offline, deterministic default.

A model takes the conversation (chat messages in the OpenAI-compatible shape) and the tool
specs, and answers with text and/or tool calls. `OfflineModel` needs no key and no network:
it picks a tool by matching the user's words against regex rules, then writes its answer
from the tool results, so everything runs and is tested offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentledger.errors import ConfigurationError

__all__ = [
    "Message",
    "Model",
    "ModelResponse",
    "OfflineModel",
    "Rule",
    "StreamingModel",
    "ToolCall",
    "Usage",
]


class ToolCall(BaseModel):
    """A model's request to call a tool: an id (unique in the turn), a name and arguments.

    Attributes:
        id: The provider's id of the call; the `tool` message answering it repeats it.
        name: The tool's name (it may name no tool the agent has: the call then gets an
            error result).
        arguments: The arguments, decoded from the model's JSON.
        invalid_arguments: The argument text exactly as the model sent it, when it was not
            a JSON object (`arguments` is then empty and the call gets an error result).
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    invalid_arguments: str | None = None


class Message(BaseModel):
    """One chat message, as OpenAI-compatible chat APIs shape them.

    Attributes:
        role: `system`, `user`, `assistant` or `tool`.
        content: The text (for `tool`, the tool's result as JSON text).
        tool_calls: For `assistant`: the tools it asked for.
        tool_call_id: For `tool`: which call this answers.
        name: For `tool`: the tool's name.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class Usage(BaseModel):
    """Tokens one model call used, as the provider counted them."""

    input_tokens: int = 0
    output_tokens: int = 0


class ModelResponse(BaseModel):
    """What a model answers: text, tool calls, or both (text first, then the calls).

    Attributes:
        text: The assistant's text, if any.
        tool_calls: The tools it asks for, in order (several: parallel calls).
        usage: Tokens used by the call, when the provider reports them.
        finish_reason: Why the model stopped (`stop`, `tool_calls`, `length`...), if known.
        model: The model name the provider reports (may be more precise than the one asked).
        provider: Who served it (`openai`, `openrouter`, `ollama`, `offline`...).
    """

    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    provider: str | None = None


@runtime_checkable
class Model(Protocol):
    """Anything that turns a conversation and tool specs into a `ModelResponse`.

    `generate` may raise anything; the runner records it as an `error` event and raises
    `ModelError` (raise `ModelError(..., kind=...)` to choose the recorded `kind`). An
    implementation may also define `async def generate_async(...)` with the same arguments
    (`Runner.run_async` uses it when present), and `generate_stream` /
    `generate_stream_async` (see `StreamingModel`) for `stream=True`. Optional attribute:
    `provider`, recorded on each model call.
    """

    name: str

    def generate(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        """Answer the conversation.

        Args:
            messages: The system instructions, then the session's history, oldest first.
            tools: Tool specs, `{"type": "function", "function": {name, description,
                parameters}}`.
        """
        ...


@runtime_checkable
class StreamingModel(Model, Protocol):
    """A `Model` that can also stream: `generate_stream` yields the text as it arrives
    (`str` deltas), then the complete `ModelResponse` last.

    `Runner.run(..., stream=True)` uses it (and `generate_stream_async`, an async iterator
    of the same, in `run_async` when the model has it).
    """

    def generate_stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> Iterator[str | ModelResponse]:
        """Yield text deltas, then the complete response (text, tool calls, usage)."""
        ...


@dataclass(frozen=True)
class Rule:
    """When the user's message matches `pattern` (a regex, case-insensitive, searched
    anywhere), call `tool` with the pattern's named groups as arguments (plus `arguments`)."""

    pattern: str
    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def match(self, text: str) -> dict[str, Any] | None:
        """Return the call's arguments if `text` matches, else `None`."""
        found = re.search(self.pattern, text, flags=re.IGNORECASE)
        if found is None:
            return None
        groups = {k: v.strip() for k, v in found.groupdict().items() if v is not None}
        return {**self.arguments, **groups}


def _describe(result: Any) -> str:
    if isinstance(result, Mapping):
        for key in ("message", "text", "result", "error"):
            if isinstance(result.get(key), str):
                return str(result[key])
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False)


class OfflineModel:
    """A deterministic, rule-based model: no key, no network.

    On a user message it calls the tool of the first matching `Rule` whose tool the agent
    has; after tool results it answers with what the tools said (a result's `message`
    field, or its JSON); with no matching rule it says what it can do.

    Args:
        rules: Checked in order; the first match wins.
        name: The model's name, recorded on `agent_message`/`final_output` events.

    Example:
        >>> model = OfflineModel([Rule(r"add (?P<a>\\d+) and (?P<b>\\d+)", "add")])
        >>> model.generate([Message(role="user", content="add 2 and 3")],
        ...                [{"function": {"name": "add"}}]).tool_calls[0].arguments
        {'a': '2', 'b': '3'}
    """

    provider = "offline"

    def __init__(self, rules: Sequence[Rule] = (), *, name: str = "offline") -> None:
        for rule in rules:
            try:
                re.compile(rule.pattern)
            except re.error as exc:
                raise ConfigurationError(f"bad rule pattern {rule.pattern!r}: {exc}") from exc
        self.rules = list(rules)
        self.name = name

    def generate(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        """Answer deterministically; see the class docstring."""
        last_user = max(
            (i for i, m in enumerate(messages) if m.role == "user"), default=None
        )
        if last_user is None:
            return ModelResponse(text="Hello! What can I do for you?")
        results = [m for m in messages[last_user + 1 :] if m.role == "tool"]
        if results:
            return ModelResponse(text=" ".join(_describe(_loads(m.content)) for m in results))
        text = messages[last_user].content or ""
        available = {
            str(spec.get("function", {}).get("name")): spec.get("function", {}) for spec in tools
        }
        for rule in self.rules:
            if rule.tool not in available:
                continue
            arguments = rule.match(text)
            if arguments is not None:
                return ModelResponse(
                    tool_calls=[ToolCall(id="call_1", name=rule.tool, arguments=arguments)]
                )
        if not available:
            return ModelResponse(text=f"You said: {text}")
        abilities = "; ".join(
            f"{name} ({str(fn.get('description') or name).rstrip('.')})"
            for name, fn in sorted(available.items())
        )
        return ModelResponse(text=f"I did not understand that. My tools are: {abilities}.")


def _loads(content: str | None) -> Any:
    try:
        return json.loads(content or "null")
    except ValueError:
        return content
