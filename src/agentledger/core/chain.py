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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["GENESIS", "canonical_json", "event_hash", "payload_hash", "rechain"]

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


def rechain(
    headers: Iterable[Sequence[Any]],
    source_id: str,
    target_id: str,
    new_ids: Iterator[str],
) -> tuple[list[tuple[int, str, str]], int | None]:
    """Check a ledger's chain from seq 1 and chain a copy of it under another session id.

    What a fork does with the events it copies, in one pass: each event's hash is
    recomputed under `source_id` and compared with the stored one (so a damaged history is
    never laundered into a valid chain), and a new hash is computed under `target_id` with
    a new event id. Payload hashes are kept: the copy's payloads are the same. The same
    digests as `event_hash`, faster (the repeated header fields are encoded once).

    Args:
        headers: One tuple per event from seq 1, in order: `(seq, id, type, author,
            timestamp, invocation_id, payload_hash, hash, format)`, as stored (`format`
            may be left out: 1).
        source_id: The session the events were chained under.
        target_id: The session the copy is chained under.
        new_ids: The copy's event ids, one per event.

    Returns:
        `(seq, new id, new hash)` per event, and the first seq that is missing or whose
        stored hash does not match (`None` when the whole chain verifies from seq 1 with
        no gap; the list is then complete).
    """
    q = _string
    cached: dict[str | None, str] = {None: "null"}
    source, target = q(source_id), q(target_id)
    sha = hashlib.sha256
    previous_source = previous = GENESIS
    copied: list[tuple[int, str, str]] = []
    append = copied.append
    expected = 1
    for header in headers:
        seq, event_id, type_, author, timestamp, invocation_id, payload, stored = header[:8]
        format = header[8] if len(header) > 8 else 1
        if seq != expected:
            return copied, expected
        # The header fields that repeat (type, author, invocation) are encoded once each.
        kind = cached.get(type_) or cached.setdefault(type_, q(type_))
        who = cached.get(author) or cached.setdefault(author, q(author))
        turn = cached.get(invocation_id) or cached.setdefault(invocation_id, q(invocation_id))
        rest = f",{kind},{who},{q(timestamp)},{turn},{q(payload)}" + (
            "]" if format == 1 else f",{int(format)}]"
        )
        if (
            sha(f'["{previous_source}",{source},{seq},{q(event_id)}{rest}'.encode()).hexdigest()
            != stored
        ):
            return copied, expected
        previous_source = stored
        new_id = next(new_ids)
        previous = sha(f'["{previous}",{target},{seq},"{new_id}"{rest}'.encode()).hexdigest()
        append((seq, new_id, previous))
        expected += 1
    return copied, None
