"""State operations: changes to state applied at commit, in the JSON Patch shape (RFC 6902).

A state delta says "key K is now V": two writers that read a list, add an item and write
the list back race, and one must retry. A state operation says "add V to the end of the
list at K": the store applies it, in the append's transaction, to the state as it is then,
so writers whose changes commute (adding to a list, removing one item, incrementing a
counter) never conflict and never retry. The event stores the operations themselves, not
the value they produce, so a long list does not make every event that changes it long.

An operation is a JSON Patch operation (`add`, `remove`, `replace`, `move`, `copy`,
`test`) whose `path` starts with the state key (JSON Pointer escaped: `~1` for `/`, `~0`
for `~`), then points into the key's value:

    {"op": "add", "path": "/user:reminders/-", "value": "call the dentist"}
    {"op": "remove", "path": "/user:reminders/0"}
    {"op": "test", "path": "/user:reminders/0", "value": "call the dentist"}

Two more operations extend the standard (they are not part of RFC 6902):

    {"op": "increment", "path": "/user:visits", "value": 1}
        adds a number to the number at `path`; a missing member counts as 0.
    {"op": "setdefault", "path": "/user:reminders", "value": []}
        adds `value` at `path` unless something is there already.

Keys keep their scopes: `user:`/`app:` operations change the shared state of the user/app,
`temp:` operations are dropped (never persisted), other keys are the session's. `move` and
`copy` must stay within one scope. An event's `state_delta` is applied first, then its
`state_ops`, in order. All operations of an append apply, or none: an operation that does not
fit the state at commit (removing a missing index, a failed `test`) refuses the whole append
with `StateOperationError` and nothing is written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import jsonpatch

# jsonpointer comes with jsonpatch (its dependency), which addresses values with it.
from jsonpointer import JsonPointer, JsonPointerException, escape, unescape

from agentledger.core.state import APP_PREFIX, TEMP_PREFIX, USER_PREFIX
from agentledger.errors import StateOperationError

__all__ = [
    "OPERATIONS",
    "ScopedOps",
    "apply_ops",
    "check_ops",
    "key_path",
    "op_keys",
    "split_ops",
]

OPERATIONS = frozenset(
    ("add", "remove", "replace", "move", "copy", "test", "increment", "setdefault")
)
"""The operation names: RFC 6902's six plus the `increment` and `setdefault` extensions."""

_NEEDS_VALUE = frozenset(("add", "replace", "test", "increment", "setdefault"))
_NEEDS_FROM = frozenset(("move", "copy"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _IncrementOperation(jsonpatch.PatchOperation):
    """`increment`: add `value` to the number at `path`; a missing member counts as 0."""

    def apply(self, obj: Any) -> Any:
        amount = self.operation["value"]
        try:
            parent, part = self.pointer.to_last(obj)
        except JsonPointerException as exc:
            raise jsonpatch.JsonPatchConflict(str(exc)) from exc
        if isinstance(parent, MutableMapping):
            current = parent.get(part, 0)
        elif isinstance(parent, MutableSequence) and isinstance(part, int) and part < len(parent):
            current = parent[part]
        else:
            raise jsonpatch.JsonPatchConflict(f"no number at {self.location!r}")
        if not _is_number(current):
            raise jsonpatch.JsonPatchConflict(f"{self.location!r} holds {current!r}, not a number")
        parent[part] = current + amount
        return obj


class _SetDefaultOperation(jsonpatch.PatchOperation):
    """`setdefault`: add `value` at `path` unless a value is there already."""

    def apply(self, obj: Any) -> Any:
        try:
            parent, part = self.pointer.to_last(obj)
        except JsonPointerException as exc:
            raise jsonpatch.JsonPatchConflict(str(exc)) from exc
        if isinstance(parent, MutableMapping):
            if part not in parent:
                parent[part] = copy.deepcopy(self.operation["value"])
            return obj
        if isinstance(parent, MutableSequence) and isinstance(part, int) and part < len(parent):
            return obj
        raise jsonpatch.JsonPatchConflict(f"cannot set a default at {self.location!r}")


class _Patch(jsonpatch.JsonPatch):
    operations = MappingProxyType(
        {
            **jsonpatch.JsonPatch.operations,
            "increment": _IncrementOperation,
            "setdefault": _SetDefaultOperation,
        }
    )


def key_path(key: str, *parts: str) -> str:
    """The JSON Pointer of a state key, or of a member inside its value.

    Example:
        >>> key_path("user:reminders", "-")
        '/user:reminders/-'
        >>> key_path("a/b")
        '/a~1b'
    """
    return "".join("/" + escape(part) for part in (key, *parts))


def _first_key(path: Any, what: str) -> tuple[str, str]:
    """Split a path into its state key (unescaped) and the rest (still a JSON Pointer)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"state operation {what} must be a JSON Pointer starting with '/'")
    head, sep, rest = path[1:].partition("/")
    key = unescape(head)
    if not key:
        raise ValueError(f"state operation {what} {path!r} names no state key")
    return key, sep + rest


def _scope(key: str) -> str:
    for prefix in (APP_PREFIX, USER_PREFIX, TEMP_PREFIX):
        if key.startswith(prefix):
            return prefix
    return ""


def check_ops(ops: Any) -> list[dict[str, Any]]:
    """Check the shape of state operations (not whether they fit any state).

    Args:
        ops: A list of operation objects (see the module docstring).

    Returns:
        The operations, as a new list of new dicts.

    Raises:
        ValueError: Not a list of objects; an unknown `op`; a `path` (or `from`) that is
            not a JSON Pointer naming a state key; a missing `value` or `from`; an
            `increment` by something other than a number; a `move`/`copy` across scopes.
    """
    if not isinstance(ops, Sequence) or isinstance(ops, str | bytes):
        raise ValueError("state_ops must be a list of operation objects")
    checked: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise ValueError(f"state_ops[{i}] must be an object, not {op!r}")
        name = op.get("op")
        if name not in OPERATIONS:
            raise ValueError(
                f"state_ops[{i}]: unknown op {name!r}; use one of {', '.join(sorted(OPERATIONS))}"
            )
        allowed = {"op", "path"} | ({"value"} if name in _NEEDS_VALUE else set())
        allowed |= {"from"} if name in _NEEDS_FROM else set()
        extra = set(op) - allowed
        if extra:
            raise ValueError(f"state_ops[{i}]: unexpected members {sorted(extra)}")
        key, _ = _first_key(op.get("path"), "path")
        try:
            JsonPointer(op["path"])
        except JsonPointerException as exc:
            raise ValueError(f"state_ops[{i}]: bad path {op['path']!r}: {exc}") from exc
        if name in _NEEDS_VALUE and "value" not in op:
            raise ValueError(f"state_ops[{i}]: {name} needs a 'value'")
        if name == "increment" and not _is_number(op["value"]):
            raise ValueError(f"state_ops[{i}]: increment needs a number, not {op['value']!r}")
        if name in _NEEDS_FROM:
            source, _ = _first_key(op.get("from"), "from")
            if _scope(source) != _scope(key):
                raise ValueError(f"state_ops[{i}]: {name} must stay within one state scope")
        checked.append(dict(op))
    return checked


class ScopedOps(NamedTuple):
    """State operations split by scope; `app` and `user` paths have their prefix removed."""

    session: list[dict[str, Any]]
    app: list[dict[str, Any]]
    user: list[dict[str, Any]]


def _strip(path: str, prefix: str) -> str:
    key, rest = _first_key(path, "path")
    return "/" + escape(key[len(prefix) :]) + rest


def split_ops(ops: Sequence[Mapping[str, Any]]) -> ScopedOps:
    """Split state operations by scope, dropping `temp:` ones.

    Returns:
        The session part (paths as given), the app part and the user part (the `app:` /
        `user:` prefix removed from `path` and `from`), each in the given order.
    """
    parts = ScopedOps([], [], [])
    for op in ops:
        key, _ = _first_key(op["path"], "path")
        prefix = _scope(key)
        if prefix == TEMP_PREFIX:
            continue
        target = parts.app if prefix == APP_PREFIX else parts.user if prefix == USER_PREFIX else None
        if target is None:
            parts.session.append(dict(op))
            continue
        stripped = dict(op, path=_strip(op["path"], prefix))
        if "from" in op:
            stripped["from"] = _strip(op["from"], prefix)
        target.append(stripped)
    return parts


def op_keys(ops: Sequence[Mapping[str, Any]]) -> set[str]:
    """The top-level state keys that operations read or write."""
    keys = {_first_key(op["path"], "path")[0] for op in ops}
    keys |= {_first_key(op["from"], "from")[0] for op in ops if "from" in op}
    return keys


def _shown(op: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The operation as its writer gave it: `prefix` put back on its state keys."""
    if not prefix:
        return dict(op)
    shown = dict(op, path="/" + escape(prefix) + str(op["path"])[1:])
    if "from" in op:
        shown["from"] = "/" + escape(prefix) + str(op["from"])[1:]
    return shown


def apply_ops(
    state: Mapping[str, Any], ops: Sequence[Mapping[str, Any]], *, prefix: str = ""
) -> dict[str, Any]:
    """Return a new state: `state` with the operations applied, all or none.

    Only the keys the operations touch are copied; `state` is not modified.

    Args:
        state: A state (one scope's keys, without prefixes when `ops` came from
            `split_ops`).
        ops: Operations whose paths address `state`'s keys.
        prefix: The scope prefix (`"user:"`, `"app:"`) `split_ops` removed, put back in
            the error's `op` so it reads as the writer wrote it.

    Returns:
        The new state.

    Raises:
        StateOperationError: An operation does not fit the state (a missing member or
            index, a failed `test`, an `increment` of something that is not a number).
    """
    if not ops:
        return dict(state)
    keys = op_keys(ops)
    doc = {k: copy.deepcopy(state[k]) for k in keys if k in state}
    for i, op in enumerate(ops):
        try:
            doc = _Patch([copy.deepcopy(op)]).apply(doc, in_place=True)
        except (jsonpatch.JsonPatchException, JsonPointerException) as exc:
            raise StateOperationError(_shown(op, prefix), i, str(exc) or type(exc).__name__) from exc
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise StateOperationError(_shown(op, prefix), i, str(exc) or type(exc).__name__) from exc
    result = {k: v for k, v in state.items() if k not in keys}
    result.update(doc)
    return result
