"""Models: the `Model` protocol and the offline, deterministic default.

A model takes the conversation (chat messages in the OpenAI-compatible shape) and the tool
specs, and answers with text and/or tool calls. `OfflineModel` needs no key and no network:
it picks a tool by matching the user's words against regex rules, then writes its answer
from the tool results, so everything runs and is tested offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentledger.errors import ConfigurationError

__all__ = ["Message", "Model", "ModelResponse", "OfflineModel", "Rule", "ToolCall"]


class ToolCall(BaseModel):
    """A model's request to call a tool: an id (unique in the turn), a name and arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


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


class ModelResponse(BaseModel):
    """What a model answers: text, tool calls, or both (text first, then the calls)."""

    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


@runtime_checkable
class Model(Protocol):
    """Anything that turns a conversation and tool specs into a `ModelResponse`.

    `generate` may raise anything; the runner records it as an `error` event and raises
    `ModelError`. An implementation may also define `async def generate_async(...)` with
    the same arguments; `Runner.run_async` uses it when present.
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
        for key in ("message", "text", "result"):
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
