"""State scopes and state deltas, as pure functions.

A key `app:x` is shared by every session of an app, `user:x` by every session of one user
in one app, `temp:x` lives only for the current turn and is never persisted; any other key
belongs to the session. A state delta maps keys to new values; `None` deletes a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "APP_PREFIX",
    "TEMP_PREFIX",
    "USER_PREFIX",
    "ScopedDelta",
    "apply_delta",
    "is_temp_key",
    "merge_scoped_state",
    "split_delta",
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
        delta: Keys to set (`None` deletes), possibly prefixed `app:`, `user:` or `temp:`.

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


def is_temp_key(key: str) -> bool:
    """Whether a state key lives only for the current turn (`temp:`), never persisted."""
    return key.startswith(TEMP_PREFIX)


def strip_temp(delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return `delta` without its `temp:` keys (they are never persisted)."""
    return {k: v for k, v in delta.items() if not is_temp_key(k)}


def apply_delta(state: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new state: `state` with `delta` applied (`None` deletes the key)."""
    result = dict(state)
    for key, value in delta.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
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
