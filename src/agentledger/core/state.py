"""State scopes and state deltas, as pure functions.

A key `app:x` is shared by every session of an app, `user:x` by every session of one user
in one app, `temp:x` lives only for the current turn and is never persisted; any other key
belongs to the session. A state delta maps keys to new values (`None` is a value: JSON
null); a removal list names keys to delete. Events written in format 1 (before null was a
value) meant "delete" by a `None` value: `state_change` reads any event's delta and removal
list by its format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "APP_PREFIX",
    "TEMP_PREFIX",
    "USER_PREFIX",
    "ScopedDelta",
    "ScopedKeys",
    "StateChange",
    "apply_delta",
    "is_temp_key",
    "merge_scoped_state",
    "split_delta",
    "split_keys",
    "state_change",
    "strip_temp",
]

APP_PREFIX = "app:"
USER_PREFIX = "user:"
TEMP_PREFIX = "temp:"


class ScopedDelta(NamedTuple):
    """A state delta split by scope; `app` and `user` keys have their prefix removed."""

    session: dict[str, Any]
    app: dict[str, Any]
    user: dict[str, Any]


def split_delta(delta: Mapping[str, Any]) -> ScopedDelta:
    """Split a state delta by scope, dropping `temp:` keys.

    Args:
        delta: Keys to set (`None` is a value), possibly prefixed `app:`, `user:` or `temp:`.

    Returns:
        The session part (keys as given), the app part and the user part (prefix removed).
    """
    session: dict[str, Any] = {}
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for key, value in delta.items():
        if key.startswith(APP_PREFIX):
            app[key[len(APP_PREFIX) :]] = value
        elif key.startswith(USER_PREFIX):
            user[key[len(USER_PREFIX) :]] = value
        elif not key.startswith(TEMP_PREFIX):
            session[key] = value
    return ScopedDelta(session, app, user)


class ScopedKeys(NamedTuple):
    """State keys split by scope; `app` and `user` keys have their prefix removed."""

    session: list[str]
    app: list[str]
    user: list[str]


def split_keys(keys: Iterable[str]) -> ScopedKeys:
    """Split state keys (a removal list) by scope, dropping `temp:` keys.

    Returns:
        The session keys (as given), the app keys and the user keys (prefix removed), each
        in the given order.
    """
    parts = ScopedKeys([], [], [])
    for key in keys:
        if key.startswith(APP_PREFIX):
            parts.app.append(key[len(APP_PREFIX) :])
        elif key.startswith(USER_PREFIX):
            parts.user.append(key[len(USER_PREFIX) :])
        elif not key.startswith(TEMP_PREFIX):
            parts.session.append(key)
    return parts


class StateChange(NamedTuple):
    """What one event does to state: keys set (`None` is a value) and keys removed."""

    set: dict[str, Any]
    remove: list[str]


def state_change(
    delta: Mapping[str, Any], remove: Iterable[str] = (), format: int = 2
) -> StateChange:
    """Read an event's `state_delta` and `state_remove` by its event format.

    Args:
        delta: The event's `state_delta`.
        remove: The event's `state_remove` (keys to delete).
        format: The event's `format`: in format 1 (events written before null was a
            value) a `None` value in `delta` deletes its key; from format 2 on it is
            stored as null.

    Returns:
        The keys to set and the keys to remove; apply them with `apply_delta`.
    """
    if format == 1 and any(value is None for value in delta.values()):
        return StateChange(
            {k: v for k, v in delta.items() if v is not None},
            [k for k, v in delta.items() if v is None] + list(remove),
        )
    return StateChange(dict(delta), list(remove))


def is_temp_key(key: str) -> bool:
    """Whether a state key lives only for the current turn (`temp:`), never persisted."""
    return key.startswith(TEMP_PREFIX)


def strip_temp(delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return `delta` without its `temp:` keys (they are never persisted)."""
    return {k: v for k, v in delta.items() if not is_temp_key(k)}


def apply_delta(
    state: Mapping[str, Any], delta: Mapping[str, Any], remove: Iterable[str] = ()
) -> dict[str, Any]:
    """Return a new state: `state` with `delta`'s keys set, then the `remove` keys deleted.

    Args:
        state: The state before (not modified).
        delta: Keys to set; `None` is a value like any other (stored as JSON null).
        remove: Keys to delete; a key that is not in the state is skipped.

    Returns:
        The new state.
    """
    result = dict(state)
    result.update(delta)
    for key in remove:
        result.pop(key, None)
    return result


def merge_scoped_state(
    session_state: Mapping[str, Any],
    app_state: Mapping[str, Any],
    user_state: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the state a session sees: its own keys plus `app:` and `user:` keys, prefixed."""
    merged = dict(session_state)
    merged.update({APP_PREFIX + k: v for k, v in app_state.items()})
    merged.update({USER_PREFIX + k: v for k, v in user_state.items()})
    return merged
