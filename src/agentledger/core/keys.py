"""Event keys and equality filters on event data: the rules every store shares.

Pure: no I/O.

An event key (`NewEvent(key=...)`) is a string of 1 to `MAX_KEY_LENGTH` characters, any
Unicode except control characters (U+0000-U+001F, U+007F-U+009F) and lone surrogates. It
is unique within its session. Keys compare and sort by code point (as UTF-8 bytes do), so a
key prefix is a range of keys: `prefix_range("ckpt:")` is `("ckpt:", "ckpt;")`.

A data filter (`read_events(data_match={"metadata.source": "input"})`) maps dotted paths
to values. A path's parts are object keys (non-empty, without `.`) walked from the event's
`data`; there is no indexing into arrays. An event matches when, for every path, the value
there exists and equals the filter's value: a string equals the same string, a number the
same number (`1` equals `1.0`), `true`/`false` only booleans, and `None` only a stored
`null` (a missing key never matches). Filter values are JSON scalars (string, number,
boolean, `None`; integers within 64 bits); a list or an object is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agentledger.errors import ConfigurationError

__all__ = [
    "MAX_KEY_LENGTH",
    "check_data_match",
    "check_key",
    "data_matches",
    "prefix_range",
]

MAX_KEY_LENGTH = 512
"""The longest event key, in characters."""

MAX_DATA_MATCH = 16
"""The most paths one data filter may hold."""

_SURROGATES = range(0xD800, 0xE000)


def _bad_char(text: str) -> str | None:
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or code in _SURROGATES:
            return char
    return None


def check_key(value: Any, what: str = "event key") -> str:
    """Check an event key (or a key prefix).

    Args:
        value: The key.
        what: What it is, for the message.

    Returns:
        The key, unchanged.

    Raises:
        ValueError: Not a string, empty, longer than `MAX_KEY_LENGTH` characters, or
            holding a control character or a lone surrogate.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_KEY_LENGTH}")
    bad = _bad_char(value)
    if bad is not None:
        raise ValueError(f"{what} {value!r} holds the character U+{ord(bad):04X}, which keys may not hold")
    return value


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The keys starting with `prefix`, as a half-open range `[low, high)` in code point
    order; `high` is `None` when no key is above the range.

    Args:
        prefix: A checked key prefix (`check_key`).
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code in _SURROGATES:
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return prefix, "".join(chars)
        chars.pop()
    return prefix, None


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def check_data_match(value: Any) -> dict[tuple[str, ...], Any]:
    """Check a `data_match` filter and split its paths.

    Args:
        value: A mapping of dotted paths (`"metadata.source"`) to JSON scalars.

    Returns:
        Each path as a tuple of its parts, mapped to its value.

    Raises:
        ConfigurationError: Not a mapping, empty, more than 16 paths, a path with an empty
            part or a control character, or a value that is not a JSON scalar.
    """
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(f"data_match must be a non-empty mapping of paths to values, not {value!r}")
    if len(value) > MAX_DATA_MATCH:
        raise ConfigurationError(f"data_match holds {len(value)} paths; the limit is {MAX_DATA_MATCH}")
    parsed: dict[tuple[str, ...], Any] = {}
    for path, wanted in value.items():
        if not isinstance(path, str) or not path:
            raise ConfigurationError(f"a data_match path must be a non-empty string, not {path!r}")
        parts = tuple(path.split("."))
        if any(not part for part in parts) or _bad_char(path) is not None or '"' in path:
            raise ConfigurationError(
                f"bad data_match path {path!r}: dotted object keys, none empty, without "
                "control characters or double quotes"
            )
        if not _scalar(wanted):
            raise ConfigurationError(
                f"data_match value for {path!r} must be a string, a finite number, a boolean "
                f"or None, not {wanted!r}"
            )
        parsed[parts] = wanted
    return parsed


_MISSING: Any = object()


def _equal(stored: Any, wanted: Any) -> bool:
    if wanted is None or isinstance(wanted, bool):
        return stored is wanted
    if isinstance(wanted, str):
        return type(stored) is str and stored == wanted
    return type(stored) in (int, float) and stored == wanted


def data_matches(data: Mapping[str, Any], match: Mapping[tuple[str, ...], Any]) -> bool:
    """Whether an event's `data` matches a checked filter (`check_data_match`)."""
    for parts, wanted in match.items():
        node: Any = data
        for part in parts:
            if type(node) is not dict:
                return False
            node = node.get(part, _MISSING)
            if node is _MISSING:
                return False
        if not _equal(node, wanted):
            return False
    return True
