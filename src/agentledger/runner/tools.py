"""Tools: plain typed Python functions an agent can call, and the `ToolContext` they get.

A tool's JSON schema comes from its signature (pydantic): every parameter must be
annotated; a parameter annotated `ToolContext` is injected by the runner and left out of
the schema. The description is the first paragraph of the docstring; a parameter gets its
own description with `Annotated[str, Field(description="...")]`.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from agentledger.core.session import Session
from agentledger.core.state import is_temp_key
from agentledger.core.state_ops import apply_ops, check_ops, key_path, op_keys
from agentledger.errors import ConfigurationError, InvalidEventError, ToolError

__all__ = ["State", "Tool", "ToolContext", "tool"]

_MISSING: Any = object()
_ABSENT: Any = object()


class State(MutableMapping[str, Any]):
    """The state a tool sees during a turn, recording every write as a state delta, a key
    removal or state operations applied at commit.

    Reads see the session's state (own, `app:` and `user:` keys), the turn's `temp:` keys,
    and this tool's own writes. Values read are copies: change a list, then assign it back
    (`state["user:reminders"] = reminders`) to record the change. `None` is a value like
    any other: `state["k"] = None` stores null (`"k" in state` stays true). Deleting a key
    (`del state["k"]`, `pop`) records it in `removed`, stored as the event's
    `state_remove`. A key read this way is checked at commit: if a concurrent writer
    changed it, the runner runs the tool again on the fresh state.

    Changes that commute with other writers' (adding to a list, removing an item,
    counting) are better recorded as operations: `append`, `remove_item`, `increment` and
    `patch` apply at commit to the state as it is then, never conflict with concurrent
    writers, and store only the change in the ledger (see `agentledger.core.state_ops`).
    The tool's own reads see their effect at once.
    """

    def __init__(self, base: Mapping[str, Any]) -> None:
        self._base = base
        self._writes: dict[str, Any] = {}  # key -> value assigned, or _ABSENT: deleted
        self.ops: list[dict[str, Any]] = []
        """State operations recorded by `append`, `remove_item`, `increment` and `patch`
        (never on `temp:` keys, which are changed in `delta`); the runner stores them as
        the `tool_result`'s `state_ops`."""
        self._view: dict[str, Any] = {}  # keys changed by `ops`, as this tool sees them
        self.reads: dict[str, Any] = {}
        """Each key read from the base state (not from this tool's own writes), with the
        value seen then (`None`: absent or null); the runner appends with these as
        `expected_state`, so a concurrent change to them is a conflict, not a lost update."""

    @property
    def delta(self) -> dict[str, Any]:
        """The keys this tool assigned, with their values (`None` included): the
        `tool_result`'s `state_delta`. A new dict on every read."""
        return {k: v for k, v in self._writes.items() if v is not _ABSENT}

    @property
    def removed(self) -> list[str]:
        """The keys this tool deleted, in order: the `tool_result`'s `state_remove`."""
        return [k for k, v in self._writes.items() if v is _ABSENT]

    def _read(self, key: str) -> Any:
        if key not in self.reads:
            self.reads[key] = self._base.get(key)
        return self._base[key]

    def __getitem__(self, key: str) -> Any:
        value = self._writes.get(key, _MISSING)
        if value is _MISSING:
            value = self._view[key] if key in self._view else self._read(key)
        if value is _ABSENT:
            raise KeyError(key)
        return copy.deepcopy(value)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"state keys are strings, not {type(key).__name__}")
        self._settle_ops()
        self._writes[key] = copy.deepcopy(value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._settle_ops()
        self._writes[key] = _ABSENT

    def __contains__(self, key: object) -> bool:
        if key in self._writes:
            return self._writes[key] is not _ABSENT
        if key in self._view:
            return self._view[key] is not _ABSENT
        if isinstance(key, str) and key not in self.reads:
            self.reads[key] = self._base.get(key)
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        yield from (
            k for k in self._base if k not in self._writes and self._view.get(k) is not _ABSENT
        )
        yield from (
            k for k, v in self._view.items() if k not in self._base and v is not _ABSENT
        )
        yield from (k for k, v in self._writes.items() if v is not _ABSENT)

    # -- state operations -----------------------------------------------------------------

    def peek(self, key: str, default: Any = None) -> Any:
        """Return a copy of the value of `key` (or `default` when absent) without making
        it a read that is checked at commit: for display only (a count, a greeting), as a
        concurrent writer may change it before the tool's result is stored."""
        if key in self._writes:
            value = self._writes[key]
            return default if value is _ABSENT else copy.deepcopy(value)
        if key in self._view:
            value = self._view[key]
            return default if value is _ABSENT else copy.deepcopy(value)
        return copy.deepcopy(self._base.get(key, default))

    def patch(self, ops: list[dict[str, Any]]) -> None:
        """Record state operations in the JSON Patch shape, applied in order at commit.

        Args:
            ops: Operations such as `{"op": "add", "path": "/user:reminders/-", "value":
                "x"}` (see `agentledger.core.state_ops` for the operations and paths).

        Raises:
            InvalidEventError: An operation is malformed.
            StateOperationError: An operation does not fit the state as this tool sees it
                (nothing is recorded); one that fits now may still fail at commit if a
                concurrent writer changed the state, refusing the tool's result.
        """
        try:
            checked = check_ops(ops)
        except ValueError as exc:
            raise InvalidEventError(str(exc)) from exc
        keys = op_keys(checked)
        if any(k in self._writes or is_temp_key(k) for k in keys):
            # Keys this tool already assigned (or temp keys) change in its delta: every
            # key of these operations is assigned from now on, the operations applied here.
            if self.ops and op_keys(self.ops) & keys:
                self._settle_ops()
            for key in keys - set(self._writes):
                if not is_temp_key(key):
                    self.reads.setdefault(key, self._base.get(key))
                self._writes[key] = self._base.get(key, _ABSENT)
            current = {k: self._writes[k] for k in keys if self._writes[k] is not _ABSENT}
            changed = apply_ops(current, checked)
            for key in keys:
                self._writes[key] = changed.get(key, _ABSENT)
            return
        current = {k: self._view[k] for k in keys if k in self._view}
        current.update({k: self._base[k] for k in keys - set(self._view) if k in self._base})
        current = {k: v for k, v in current.items() if v is not _ABSENT}
        changed = apply_ops(current, checked)
        for key in keys:
            self._view[key] = changed.get(key, _ABSENT)
        self.ops.extend(checked)

    def append(self, key: str, value: Any) -> None:
        """Add `value` to the end of the list at `key` (a new list if `key` is absent), at
        commit: concurrent appends by other writers are all kept, none retries.

        Raises:
            StateOperationError: `key` holds something other than a list.
        """
        self.patch(
            [
                {"op": "setdefault", "path": key_path(key), "value": []},
                {"op": "add", "path": key_path(key, "-"), "value": value},
            ]
        )

    def remove_item(self, key: str, index: int, *, expected: Any = _MISSING) -> None:
        """Remove the item at `index` (0-based) of the list at `key`, at commit.

        Args:
            key: The state key of a list.
            index: The item's position now, from 0.
            expected: The value the caller expects at that position: with it, the removal
                is refused at commit (`StateOperationError`, a failed `test`) if a
                concurrent writer moved another item there, so the wrong item is never
                removed; the runner then runs the tool again on the fresh state.

        Raises:
            StateOperationError: No item `index` in the list as this tool sees it (or
                not the `expected` one).
        """
        path = key_path(key, str(index))
        ops: list[dict[str, Any]] = []
        if expected is not _MISSING:
            ops.append({"op": "test", "path": path, "value": expected})
        ops.append({"op": "remove", "path": path})
        self.patch(ops)

    def increment(self, key: str, amount: int | float = 1) -> None:
        """Add `amount` to the number at `key` (0 when absent), at commit.

        Raises:
            StateOperationError: `key` holds something other than a number.
        """
        self.patch([{"op": "increment", "path": key_path(key), "value": amount}])

    def _settle_ops(self) -> None:
        """Turn every pending operation into delta writes (a plain assignment follows)."""
        if not self.ops:
            return
        for key in op_keys(self.ops):
            self.reads.setdefault(key, self._base.get(key))
            self._writes[key] = self._view.get(key, _ABSENT)
        self.ops.clear()
        self._view.clear()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_dict(self) -> dict[str, Any]:
        """Return a copy of the state as it is now, writes included."""
        return {k: self[k] for k in self}


@dataclass
class ToolContext:
    """What a tool gets besides its arguments.

    Attributes:
        session: The session as it was when the turn started (read-only snapshot).
        invocation_id: The id shared by every event of this turn.
        state: The live state (see `State`); writes become the `state_delta` of the tool's
            `tool_result` event (`None` included, stored as null), deletions its
            `state_remove`, and `state.append(...)`, `state.remove_item(...)`,
            `state.increment(...)` and `state.patch(...)` its `state_ops`, applied at
            commit. `temp:` keys last for the turn and are never stored.
        tool_call_id: The id of the call being answered.
    """

    session: Session
    invocation_id: str
    state: State
    tool_call_id: str = ""


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return text.split("\n\n", 1)[0].replace("\n", " ").strip()


@dataclass(frozen=True)
class Tool:
    """A function an agent can call.

    Attributes:
        name: The name the model calls it by.
        description: What it does, for the model.
        function: The Python callable (sync or async).
        arguments_model: The pydantic model of its arguments (built from the signature).
        context_parameter: The name of its `ToolContext` parameter, if it takes one.
    """

    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[BaseModel]
    context_parameter: str | None = None

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """Build a tool from a typed function.

        Raises:
            ConfigurationError: A parameter has no annotation, or is `*args`/`**kwargs`.
        """
        tool_name = name or function.__name__
        try:
            hints = get_type_hints(function, include_extras=True)
        except (NameError, TypeError) as exc:
            raise ConfigurationError(f"tool {tool_name!r}: cannot resolve annotations: {exc}") from exc
        fields: dict[str, Any] = {}
        context_parameter = None
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(f"tool {tool_name!r}: *args/**kwargs are not supported")
            annotation = hints.get(param.name, _MISSING)
            if annotation is ToolContext:
                context_parameter = param.name
                continue
            if annotation is _MISSING:
                raise ConfigurationError(
                    f"tool {tool_name!r}: parameter {param.name!r} needs a type annotation"
                )
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
        model = create_model(
            f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        return cls(
            name=tool_name,
            description=description or _first_paragraph(function.__doc__) or tool_name,
            function=function,
            arguments_model=model,
            context_parameter=context_parameter,
        )

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments (an object schema; a fresh copy each time)."""
        return copy.deepcopy(self._schema)

    @functools.cached_property
    def _schema(self) -> dict[str, Any]:
        # Built once per tool: pydantic's schema generation costs about a millisecond.
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def spec(self) -> dict[str, Any]:
        """The tool as OpenAI-compatible chat APIs describe functions:
        `{"type": "function", "function": {"name", "description", "parameters"}}`."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    @property
    def is_async(self) -> bool:
        """Whether calling the function returns an awaitable."""
        return inspect.iscoroutinefunction(self.function)

    def bind(self, arguments: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
        """Validate arguments against the schema and add the context parameter.

        Returns:
            Keyword arguments for `function`.

        Raises:
            ToolError: The arguments do not fit the schema.
        """
        try:
            validated = self.arguments_model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolError(f"tool {self.name!r} called with bad arguments: {exc}") from exc
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self.context_parameter:
            kwargs[self.context_parameter] = context
        return kwargs


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Turn a typed function into a `Tool`; usable as `@tool` or `@tool(name=...)`.

    Example:
        >>> @tool
        ... def add(a: int, b: int) -> int:
        ...     '''Add two numbers.'''
        ...     return a + b
        >>> add.parameters["required"]
        ['a', 'b']
    """
    if function is None:
        return lambda f: Tool.from_function(f, name=name, description=description)
    return Tool.from_function(function, name=name, description=description)

