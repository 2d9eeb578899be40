"""The per-session hash chain that makes any change to stored history detectable.

Every event stores two SHA-256 hex digests:

- `payload_hash`: over its payload, `data` and `state_delta` as canonical JSON (keys
  sorted, no spaces, non-ASCII kept, UTF-8), joined by a newline (which compact JSON
  never holds): `sha256(data + "\\n" + state_delta)`; an event with state operations
  appends them too: `sha256(data + "\\n" + state_delta + "\\n" + state_ops)`; an event
  with a removal list (`state_remove`) appends its operations and the list: `sha256(data +
  "\\n" + state_delta + "\\n" + state_ops + "\\n" + state_remove)`; an event with an
  idempotency key appends operations, removals (`[]` when none) and the key as a JSON
  string: `sha256(data + "\\n" + state_delta + "\\n" + state_ops + "\\n" + state_remove +
  "\\n" + key)` (the number of lines tells the forms apart; events without operations,
  removals or key hash as they always did).
- `hash`: over the previous event's `hash`, the event's header and its `payload_hash`,
  as the compact JSON array `[previous, session_id, seq, id, type, author, timestamp,
  invocation_id, payload_hash]` (`timestamp` in the fixed-width UTC form the stores keep,
  `2026-01-08T18:05:30.000000Z`); an event whose format is not 1 (see
  `agentledger.core.events.EVENT_FORMAT`) appends its format number to the array, so the
  format, which says how its payload reads, is part of the header. The event of seq 1
  chains from `GENESIS`.

Parts added after the first release enter the hashes only when they differ from their
default, so the hashes of events written before stay valid.

The header and the payload are hashed apart so that a payload can later be erased (its
bytes really gone) while the event keeps its `payload_hash` and the chain still verifies;
a ledger whose first events are cut off keeps the `hash` of its last dropped event as the
base its first kept event chains from. The chain detects accidental or careless changes
(bit flips, hand edits, lost rows or lines); it is not a signature: whoever can rewrite
the whole store can recompute it.

Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["GENESIS", "canonical_json", "event_hash", "payload_hash"]

GENESIS = "0" * 64
"""The hash the first event of a session (seq 1) chains from."""

_canonical = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
).encode
_string: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string literal, non-ASCII kept (what `json.dumps(..., ensure_ascii=False)` writes)."""


def _positive_zero(value: Any) -> Any:
    if type(value) is float:
        return 0.0 if value == 0.0 else value
    if type(value) is dict:
        return {k: _positive_zero(v) for k, v in value.items()}
    if type(value) is list:
        return [_positive_zero(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Encode a JSON value canonically: keys sorted, compact, non-ASCII kept.

    `-0.0` is written as `0.0` (equal values, and not every database keeps the sign).

    Args:
        value: Any JSON value (dict, list, str, int, float, bool, None).

    Returns:
        The canonical JSON text.

    Raises:
        ValueError: NaN, an infinity or a cycle. TypeError: a value JSON cannot hold.
    """
    text = _canonical(value)
    if "-0.0" in text or "-0e" in text:  # rare: only then look for a negative zero
        text = _canonical(_positive_zero(value))
    return text


def payload_hash(
    data: str,
    state_delta: str,
    state_ops: str = "[]",
    state_remove: str = "[]",
    key: str | None = None,
) -> str:
    """Return the SHA-256 hex digest of an event's payload.

    Args:
        data: The event's `data`, as canonical JSON text.
        state_delta: The event's `state_delta`, as canonical JSON text.
        state_ops: The event's state operations, as canonical JSON text; `"[]"` (none)
            leaves them out of the digest (unless a removal list or a key follows).
        state_remove: The event's removal list, as canonical JSON text; `"[]"` (none)
            leaves it out of the digest (unless a key follows).
        key: The event's idempotency key; `None` (none) leaves it out of the digest.
    """
    if key is not None:
        text = f"{data}\n{state_delta}\n{state_ops}\n{state_remove}\n{_string(key)}"
    elif state_remove != "[]":
        text = f"{data}\n{state_delta}\n{state_ops}\n{state_remove}"
    elif state_ops != "[]":
        text = f"{data}\n{state_delta}\n{state_ops}"
    else:
        text = f"{data}\n{state_delta}"
    return hashlib.sha256(text.encode()).hexdigest()


def event_hash(
    previous: str,
    session_id: str,
    seq: int,
    event_id: str,
    type: str,
    author: str,
    timestamp: str,
    invocation_id: str | None,
    payload: str,
    format: int = 1,
) -> str:
    """Return the SHA-256 hex digest chaining one event to the one before it.

    Args:
        previous: The previous event's hash (`GENESIS` for seq 1).
        session_id, seq, event_id, type, author, invocation_id: The event's header.
        timestamp: The event's time as the stores keep it (`2026-01-08T18:05:30.000000Z`).
        payload: The event's `payload_hash`.
        format: The event's format number; 1 leaves it out of the digest.
    """
    # The compact JSON array, written out by hand: the same text as `json.dumps([...],
    # ensure_ascii=False, separators=(",", ":"))`, at a third of its cost.
    q = _string
    header = (
        f"[{q(previous)},{q(session_id)},{int(seq)},{q(event_id)},{q(type)},{q(author)},"
        f"{q(timestamp)},{'null' if invocation_id is None else q(invocation_id)},{q(payload)}"
        + ("]" if format == 1 else f",{int(format)}]")
    )
    return hashlib.sha256(header.encode()).hexdigest()
