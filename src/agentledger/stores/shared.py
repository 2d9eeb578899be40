"""The store contract implemented once: `BaseStore` and the rows backends keep.

`BaseStore` implements `SessionStore` on top of a few primitives a backend provides (a write
transaction that loads and saves rows, and a handful of reads), so validation, seq
assignment, the projection and scoped state behave the same on every store. Rows are plain
JSON text: the memory store keeps exactly what SQLite keeps.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import threading
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from itertools import chain
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from agentledger._ids import new_id, new_ids
from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash, rechain
from agentledger.core.events import EVENT_FORMAT, Event, EventType, NewEvent
from agentledger.core.keys import check_data_match, check_key, data_matches, prefix_range
from agentledger.core.lifecycle import DEFAULT_LIFECYCLE, Lifecycle, check_append, check_create
from agentledger.core.projection import effective_ranges, project
from agentledger.core.session import Session, Status, validate_session_id
from agentledger.core.state import (
    APP_PREFIX,
    TEMP_PREFIX,
    USER_PREFIX,
    apply_delta,
    merge_scoped_state,
    split_delta,
    split_keys,
    state_change,
    strip_temp,
)
from agentledger.core.state_ops import apply_ops, split_ops
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    DuplicateEventKeyError,
    EventTooLargeError,
    InvalidEventError,
    InvalidTransitionError,
    ReadOnlyStoreError,
    SessionExistsError,
    SessionNotFoundError,
    StateConflictError,
    StateOperationError,
)
from agentledger.plugins.host import PluginHost
from agentledger.stores.base import (
    DEFAULT_MAX_EVENT_BYTES,
    SESSION_ORDERS,
    Capabilities,
    FeedEvent,
    SessionFilter,
    SessionPage,
    SessionStore,
    VerifyReport,
    display_url,
)

__all__ = [
    "COMMON_OPTIONS",
    "BaseStore",
    "EventRow",
    "StoredLedger",
    "KeyIndex",
    "SessionRow",
    "StoreTransaction",
    "LedgerBase",
    "NO_BASE",
    "check_erase_args",
    "compact_json",
    "check_scope",
    "check_seq_argument",
    "copy_refused",
    "session_order",
    "DEFAULT_FILE_MODE",
    "convert_options",
    "event_size",
    "folder_mode",
    "format_timestamp",
    "fsync_folder",
    "make_folders",
    "parse_file_mode",
    "parse_flag",
    "parse_timestamp",
    "row_filter",
    "select_keyed_rows",
    "store_options",
]

# Fixed-width UTC timestamps sort as strings, so stores can index and compare them as text.
# The year is padded by hand: `%Y` gives "999", not "0999", on glibc.
_TS_FORMAT = "-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(value: datetime) -> str:
    """Format an aware datetime as fixed-width UTC ISO 8601 (`2026-01-08T18:05:30.000000Z`)."""
    if value.tzinfo is timezone.utc:  # the common case, twice as fast as strftime
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    utc = value.astimezone(timezone.utc)
    return f"{utc.year:04d}{utc.strftime(_TS_FORMAT)}"


def convert_options(
    url: str, options: Mapping[str, Any], kinds: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Convert a store's URL query options (strings) to the types its constructor takes.

    Args:
        url: The store URL, for the error message.
        options: Option name -> value, as `open_store` passes them.
        kinds: Option name -> converter (`int`, `float`); other options pass unchanged.

    Returns:
        A new dict with the named options converted.

    Raises:
        ConfigurationError: A value the converter refuses.
    """
    converted = dict(options)
    for name, kind in kinds.items():
        if name in converted:
            try:
                converted[name] = kind(converted[name])
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"bad option {name} in {url!r}: {exc}") from exc
    return converted


_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def parse_flag(value: Any) -> bool:
    """A yes/no option: a `bool`, or the URL text `1`/`true`/`yes`/`on` or
    `0`/`false`/`no`/`off` (any case).

    Raises:
        ValueError: Anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, not {value!r}")


COMMON_OPTIONS: Mapping[str, Callable[[Any], Any] | None] = {
    "max_event_bytes": int,
    "read_only": parse_flag,
    "create": parse_flag,
    "clock": None,
    "lifecycle": None,
}
"""The options every built-in store takes (see `BaseStore`), each with the converter of its
URL query value (`None`: passed as given)."""


def store_options(
    url: str, options: Mapping[str, Any], own: Mapping[str, Callable[[Any], Any] | None]
) -> dict[str, Any]:
    """Check a store's options by name and convert their URL query values.

    Args:
        url: The store URL, for the error message (its password hidden).
        options: Option name -> value, as `open_store` passes them (URL values are strings).
        own: The store's own options beyond `COMMON_OPTIONS`, each with its converter
            (`int`, `float`; `None`: passed as given).

    Returns:
        A new dict with the options converted.

    Raises:
        ConfigurationError: An option the store does not take (the message names it and
            lists the valid ones), or a value its converter refuses.
    """
    known = {**COMMON_OPTIONS, **own}
    unknown = [name for name in options if name not in known]
    if unknown:
        scheme = url.split(":", 1)[0]
        names = ", ".join(repr(name) for name in unknown)
        raise ConfigurationError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {names} in "
            f"{display_url(url)!r}; valid options for {scheme}://: {', '.join(sorted(known))}"
        )
    kinds = {name: kind for name, kind in known.items() if kind is not None}
    return convert_options(url, options, kinds)


def parse_timestamp(value: str) -> datetime:
    """Parse a timestamp written by `format_timestamp` (or any ISO 8601 with an offset)."""
    return datetime.fromisoformat(value)


DEFAULT_FILE_MODE = 0o600
"""Permissions of the files a store creates (folders get `folder_mode(mode)`, 0o700):
private to the owner, whatever the umask."""


def parse_file_mode(value: Any) -> int:
    """Parse a `file_mode` option: permission bits as an int (`0o644`) or an octal string
    (`"0644"`, `"644"`, `"0o644"`).

    Returns:
        The mode, 0o600 to 0o777: the owner must be able to read and write.

    Raises:
        ConfigurationError: Not octal permission bits, or without owner read and write.
    """
    if isinstance(value, bool):
        mode = -1
    elif isinstance(value, int):
        mode = value
    else:
        text = str(value).strip().lower().removeprefix("0o")
        try:
            mode = int(text, 8) if text else -1
        except ValueError:
            mode = -1
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600:
        raise ConfigurationError(
            f"file_mode must be octal permission bits with owner read and write (0600 to "
            f"0777, e.g. 0644), not {value!r}"
        )
    return mode


def folder_mode(file_mode: int) -> int:
    """The permissions of folders that go with files of `file_mode`: search (x) wherever
    read is allowed (0o600 -> 0o700, 0o640 -> 0o750, 0o644 -> 0o755)."""
    return file_mode | ((file_mode & 0o444) >> 2)


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries durable (its new, renamed and removed names): fsync it.
    Does nothing where folders cannot be opened (Windows).

    Raises:
        OSError: The fsync failed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(path: str | os.PathLike[str], mode: int) -> None:
    """Create `path` and its missing parents with exactly `mode` (the umask is not
    applied), each made durable in its parent (fsynced) so a power cut cannot take a
    folder away from under files fsynced into it; folders that exist are left as they are.

    Raises:
        OSError: A folder cannot be created.
    """
    path = os.path.abspath(os.fspath(path))
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
            continue  # made by another process meanwhile: leave it as it is
        os.chmod(folder, mode)
        fsync_folder(os.path.dirname(folder))


_UNPARSED: Any = object()
_EVENT_FIELDS = frozenset(Event.model_fields)


def _stored_event(values: dict[str, Any]) -> Event:
    """Build an `Event` from values read back from a store, skipping validation.

    What `Event.model_construct` does, minus its per-field default handling (every field is
    given), which is most of the cost of loading a long ledger. `tests/test_core.py` checks
    that the result is indistinguishable from a validated `Event`.
    """
    event = object.__new__(Event)
    object.__setattr__(event, "__dict__", values)
    object.__setattr__(event, "__pydantic_fields_set__", set(_EVENT_FIELDS))
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


def _chain_holds(rows: Sequence[EventRow | Sequence[Any]], previous: str | None) -> bool:
    """Whether every row of a contiguous run holds its payload hash (recomputed from its
    canonical payload text) and chains from the one before it (from `previous` when
    given): the checks `BaseStore._chain_problem` makes with `payloads=True`, with the
    same `payload_hash` and `event_hash`, in one loop over positional fields. `False` on
    any doubt (a mismatch, an erased or short row, a value of the wrong type): the caller
    then runs the full check, which names the row and the problem."""
    try:
        session_id = rows[0][1] if rows else None
        for row in rows:
            if len(row) != 16 or row[15] or row[1] != session_id:
                return False
            payload = payload_hash(row[7], row[8], row[11], row[12], row[14])
            if payload != row[9]:
                return False
            if previous is not None:
                digest = event_hash(
                    previous, row[1], row[2], row[0], row[3], row[4], row[5], row[6],
                    payload, row[13],
                )
                if digest != row[10]:
                    return False
            previous = row[10]
    except (TypeError, ValueError, AttributeError):
        return False
    return True


_ABSENT = object()  # a key not in a mapping (`dict.get` default)
_NO_STATE = {"state"}  # a snapshot's fields without its state (kept apart by some stores)
compact_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""`compact_json(value) -> str`: a JSON value as compact text (RFC 8259), keys in their
order, non-ASCII kept; raises `ValueError` on NaN or an infinity and `TypeError` on a value
JSON cannot hold. The form stores write snapshots, state values and shared state in."""
_dumps = compact_json
"""Compact JSON text; raises ValueError (NaN, infinity, cycles) or TypeError (not JSON)."""

MAX_SEQ = 2**63 - 1
"""The largest 64-bit signed integer: no `seq` is larger."""
_MAX_SEQ = MAX_SEQ

MAX_NESTING = 100
"""The deepest nesting of objects and arrays a stored value may have (`{"a": [1]}` is 2)."""


def check_nesting(value: Any, what: str, limit: int = MAX_NESTING) -> None:
    """Refuse a value nested deeper than `limit` levels of objects and arrays.

    Deeper values cannot be read back safely (Python's recursion limit), so they are
    refused before anything is written. Iterative: any depth is checked without recursion.
    A container met twice on one path (a cycle) counts as too deep.

    Args:
        value: A JSON-like value (dicts, lists, tuples, scalars).
        what: What the value is, for the message.
        limit: The largest depth allowed.

    Raises:
        InvalidEventError: The value is nested deeper than `limit`.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidEventError(
                f"{what} nests objects and arrays deeper than {limit} levels; "
                "nothing was written"
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))


def _is_temp_op(op: Mapping[str, Any]) -> bool:
    path = op.get("path")
    return isinstance(path, str) and path[1:].startswith(TEMP_PREFIX)


def _encode_payload(event: NewEvent) -> tuple[str, str, str, str, int]:
    """Return the event's `data`, `state_delta`, `state_ops` and `state_remove` (without
    `temp:` keys) as canonical JSON text (keys sorted, so the payload hash is the same on
    every store), and its size (`event_size`)."""
    try:
        data = canonical_json(event.data)
        # Most events change no state: their empty columns need no encoder.
        delta = canonical_json(strip_temp(event.state_delta)) if event.state_delta else "{}"
        ops = (
            canonical_json([op for op in event.state_ops if not _is_temp_op(op)])
            if event.state_ops
            else "[]"
        )
        remove = (
            canonical_json([k for k in event.state_remove if not k.startswith(TEMP_PREFIX)])
            if event.state_remove
            else "[]"
        )
        # UTF-8 sizes; encoding also refuses lone surrogates, which JSON text cannot hold.
        size = (
            sum(
                len(text.encode())
                for text in (data, delta, event.type, event.author, event.invocation_id or "")
            )
            + (len(ops.encode()) if ops != "[]" else 0)
            + (len(remove.encode()) if remove != "[]" else 0)
            + len((event.key or "").encode())
        )
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"{event.type} event holds a value JSON cannot hold: {exc}") from exc
    return data, delta, ops, remove, size


def event_size(event: NewEvent) -> int:
    """The size of an event as the built-in stores count it against `max_event_bytes`.

    Args:
        event: The event, before it is appended.

    Returns:
        Bytes: the UTF-8 length of its `data`, `state_delta`, `state_ops` and
        `state_remove` (without `temp:` keys; no operations or removals count 0) as compact
        JSON, plus its type, author, invocation id and key.

    Raises:
        InvalidEventError: A value JSON cannot hold (NaN, an object that is not JSON) or
            text that is not valid Unicode (a lone surrogate).
    """
    return _encode_payload(event)[4]


class EventRow(NamedTuple):
    """An event as a store keeps it: scalar columns plus `data`, `state_delta`,
    `state_ops` and `state_remove` as JSON text (canonical: keys sorted, compact;
    `state_ops` and `state_remove` are `"[]"` for an event without them), its
    `payload_hash` and chain `hash` (`agentledger.core.chain`), its event `format`
    (`agentledger.core.events.EVENT_FORMAT`; 1 for rows written before formats were
    recorded), and its idempotency `key` (`None`: none)."""

    id: str
    session_id: str
    seq: int
    type: str
    author: str
    timestamp: str
    invocation_id: str | None
    data: str
    state_delta: str
    payload_hash: str = ""
    hash: str = ""
    state_ops: str = "[]"
    # -- event format
    state_remove: str = "[]"
    format: int = 1
    # -- end of event format
    key: str | None = None
    erased: bool = False
    """Whether the payload was erased (`erase_events`): `data` and `state_delta` are then
    `"{}"` and `state_ops` and `state_remove` `"[]"`, while `payload_hash` keeps the digest
    of what was there."""


class KeyIndex:
    """The key index of one session's ledger, for stores that keep it in memory (the
    memory store, and the file store's cache over its ledger file): key -> seq, and the
    keys in code point order, so a key prefix is a range found by bisection."""

    __slots__ = ("seqs", "_sorted", "_unsorted")

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self._sorted: list[str] = []
        self._unsorted: list[str] = []

    def add(self, key: str, seq: int) -> None:
        """Index `key` as the key of event `seq`."""
        self.seqs[key] = seq
        self._unsorted.append(key)

    def _keys(self) -> list[str]:
        if self._unsorted:  # sorted lazily: appends stay O(1), a read sorts once
            if len(self._unsorted) < 64:
                for key in self._unsorted:
                    bisect.insort(self._sorted, key)
            else:
                self._sorted = sorted(self._sorted + self._unsorted)
            self._unsorted = []
        return self._sorted

    def prefix_bounds(self, prefix: str) -> tuple[int, int]:
        """The positions `[lo, hi)` of the keys starting with `prefix` in key order."""
        keys = self._keys()
        low, high = prefix_range(prefix)
        lo = bisect.bisect_left(keys, low)
        hi = len(keys) if high is None else bisect.bisect_left(keys, high, lo)
        return lo, hi

    def prefix_seqs(self, prefix: str) -> list[int]:
        """The seqs of the events whose key starts with `prefix`, ascending."""
        lo, hi = self.prefix_bounds(prefix)
        seqs = self.seqs
        return sorted(seqs[k] for k in self._sorted[lo:hi])


def select_keyed_rows(
    index: KeyIndex,
    row_at: Callable[[int], EventRow],
    version: int,
    *,
    after: int,
    limit: int | None,
    last: int | None,
    keys: Sequence[str] | None,
    key_prefix: str | None,
    accept: Callable[[EventRow], bool],
) -> list[EventRow]:
    """The rows a keyed read selects, in `seq` order, through a `KeyIndex`.

    Args:
        index: The session's key index.
        row_at: Returns the row of a seq (1 to `version`).
        version: The session's last seq.
        after, limit, last: As `read_events`.
        keys, key_prefix: As `read_events` (at least one given).
        accept: The other filters (types, time window, data), on one row.

    With `key_prefix` and `last`, the ledger is walked back from its end for at most as
    many events as the prefix's range holds, then the range is read instead: the latest
    events of a namespace cost O(min(distance from the end, size of the namespace)).
    """
    if keys is not None:
        wanted = [k for k in keys if key_prefix is None or k.startswith(key_prefix)]
        seqs = sorted({index.seqs[k] for k in wanted if k in index.seqs})
    else:
        assert key_prefix is not None
        if last is not None:
            lo, hi = index.prefix_bounds(key_prefix)
            total, seen, steps, seq = hi - lo, 0, 0, version
            found: list[EventRow] = []
            while last and seq > after and seen < total and steps < max(total, 32):
                row = row_at(seq)
                steps += 1
                if row.key is not None and row.key.startswith(key_prefix):
                    seen += 1
                    if accept(row):
                        found.append(row)
                        if len(found) == last:
                            break
                seq -= 1
            if not last or len(found) == last or seq <= after or seen == total:
                found.reverse()
                return found
        seqs = index.prefix_seqs(key_prefix)
    seqs = seqs[bisect.bisect_right(seqs, after):]
    if last is not None:
        picked: list[EventRow] = []
        for seq in reversed(seqs):
            if len(picked) >= last:
                break
            row = row_at(seq)
            if accept(row):
                picked.append(row)
        picked.reverse()
        return picked
    rows: list[EventRow] = []
    for seq in seqs:
        if limit is not None and len(rows) >= limit:
            break
        row = row_at(seq)
        if accept(row):
            rows.append(row)
    return rows


def row_filter(
    *,
    types: Sequence[str] | None,
    after_ts: str | None,
    before_ts: str | None,
    data_match: Mapping[tuple[str, ...], Any] | None,
) -> Callable[[EventRow], bool] | None:
    """One predicate for the filters of `read_events` a store applies row by row (types,
    the time window, `data_match`); `None` when there are none."""
    wanted = set(types) if types else None
    if wanted is None and after_ts is None and before_ts is None and not data_match:
        return None

    def accept(row: EventRow) -> bool:
        if wanted is not None and row.type not in wanted:
            return False
        if after_ts is not None and not row.timestamp > after_ts:
            return False
        if before_ts is not None and not row.timestamp < before_ts:
            return False
        if data_match:
            try:
                data = json.loads(row.data)
            except (ValueError, RecursionError):
                return True  # kept: reading it back reports the damage
            return type(data) is dict and data_matches(data, data_match)
        return True

    return accept


def encode_stored_event(event: Event, payload_hash: str = "") -> EventRow:
    """Encode a stored event (of any store) as a row, keeping its id, timestamp and
    `erased` flag; its `hash` (and `payload_hash`, but for an erased event) is left empty
    for `BaseStore._chained` to stamp.

    Args:
        event: The event as a store returned it.
        payload_hash: For an erased event (whose payload is gone), the payload hash its
            store kept (64 hex characters); ignored for any other event.

    Raises:
        InvalidEventError: A value JSON cannot hold, a timestamp out of range, or an erased
            event without its payload hash or still holding a payload.
    """
    if event.erased:
        if not _is_digest(payload_hash):
            raise InvalidEventError(
                f"event {event.seq} is erased: its stored payload hash (64 hex characters) "
                "is needed to chain it"
            )
        if event.data or event.state_delta or event.state_ops or event.state_remove:
            raise InvalidEventError(f"event {event.seq} is marked erased, but it holds a payload")
    try:
        data = canonical_json(event.data)
        delta = canonical_json(event.state_delta)
        ops = canonical_json(event.state_ops)
        remove = canonical_json(event.state_remove)
        timestamp = format_timestamp(event.timestamp)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEventError(f"event {event.seq} cannot be stored: {exc}") from exc
    return EventRow(
        event.id,
        event.session_id,
        event.seq,
        event.type,
        event.author,
        timestamp,
        event.invocation_id,
        data,
        delta,
        state_ops=ops,
        state_remove=remove,
        format=event.format,
        key=event.key,
        payload_hash=payload_hash if event.erased else "",
        erased=event.erased,
    )


def _is_digest(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def chain_digest(
    events: Sequence[Event],
    previous: str = GENESIS,
    payload_hashes: Mapping[int, str] | None = None,
) -> str:
    """The chain hash of the last of `events` (consecutive events of one session), as the
    store that holds them recorded it: `VerifyReport.last_hash` of an intact session equals
    `chain_digest` of all its events (from its `LedgerBase.chain_hash` when its ledger was
    truncated).

    Args:
        events: Consecutive events of one session, in `seq` order.
        previous: The chain hash of the event before the first one (`GENESIS` for seq 1).
        payload_hashes: The stored payload hash of each erased event, by `seq`
            (`StoredLedger.payload_hashes`): an erased event's payload is gone.

    Returns:
        A 64-character hex SHA-256 digest; `previous` when `events` is empty.

    Raises:
        InvalidEventError: An event that cannot be encoded, or an erased event without its
            payload hash.
    """
    hashes = payload_hashes or {}
    rows = BaseStore._chained(
        [encode_stored_event(e, hashes.get(e.seq, "")) for e in events], previous, ""
    )
    return rows[-1].hash if rows else previous


class StoredLedger(NamedTuple):
    """A session's ledger exactly as a store holds it (`BaseStore.read_ledger`).

    Attributes:
        base: Where the ledger and its projection start (`NO_BASE`: at seq 1).
        events: Every stored event, in `seq` order, from `base.chain_seq + 1`.
        payload_hashes: The stored payload hash of each erased event, by `seq`.
        last_hash: The chain hash of the last event.
    """

    base: LedgerBase
    events: list[Event]
    payload_hashes: dict[int, str]
    last_hash: str


class SessionRow(NamedTuple):
    """A session snapshot as a store keeps it: indexed columns plus the projection as JSON."""

    id: str
    app_name: str
    user_id: str
    agent_name: str | None
    status: str
    phase: str
    created_at: str
    updated_at: str
    version: int
    snapshot: str
    last_hash: str = ""
    """The chain hash of the event of seq `version`, recorded with the snapshot: the last
    acknowledged commit, so a lost tail of the ledger is told from one never written."""
    base: str = ""
    """The session's `LedgerBase` as JSON (`""`: none; see `LedgerBase`). `save_session`
    writes it for a new row only; `StoreTransaction.save_base` changes it."""
    state: str | None = None
    """For a store that keeps each state key apart (`BaseStore._state_apart`): the
    session's own state as one JSON object, when the row was read with it; `snapshot` then
    has no `state`. `None`: not read (`StoreTransaction.load_state` reads it), or the
    store keeps the state inside `snapshot`."""


# -- erase and truncate --------------------------------------------------------------------


class LedgerBase(NamedTuple):
    """Where a session's stored ledger and its projection start, once events were erased
    (`erase_events`) or a prefix of the ledger dropped (`truncate_before`).

    Attributes:
        chain_seq: The last dropped seq (0: nothing dropped): the stored ledger starts at
            `chain_seq + 1`.
        chain_hash: The chain hash of event `chain_seq` (`GENESIS` when nothing was
            dropped): the first stored event chains from it.
        seq: The projection base (0: none, the projection starts from the first event):
            the snapshot equals the projection of the events after `seq` continuing
            `session`. An erase moves it to the session's version at the erase, so no
            erased event is ever folded again; a truncation to at least `chain_seq`.
        hash: The chain hash of event `seq` (`""` when `seq` is 0).
        session: The `Session` (its own state, as snapshots keep it) at `seq`, as JSON
            (`""` when `seq` is 0).
    """

    chain_seq: int = 0
    chain_hash: str = GENESIS
    seq: int = 0
    hash: str = ""
    session: str = ""

    def to_json(self) -> str:
        """The base as stored (`SessionRow.base`): compact JSON, `""` for no base."""
        if self == NO_BASE:
            return ""
        return _dumps(
            {
                "chain_seq": self.chain_seq,
                "chain_hash": self.chain_hash,
                "seq": self.seq,
                "hash": self.hash,
                "session": json.loads(self.session) if self.session else None,
            }
        )

    @classmethod
    def parse(cls, session_id: str, text: str | None) -> LedgerBase:
        """Read a stored base (`""` or `None`: `NO_BASE`).

        Raises:
            CorruptedSessionError: The text is not a base.
        """
        if not text:
            return NO_BASE
        try:
            value = json.loads(text)
            session = value["session"]
            base = cls(
                int(value["chain_seq"]),
                str(value["chain_hash"]),
                int(value["seq"]),
                str(value["hash"]),
                "" if session is None else _dumps(session),
            )
            if base.chain_seq < 0 or (base.seq and base.seq < base.chain_seq):
                raise ValueError("the projection base is before the first stored event")
            if bool(base.seq) != bool(base.session):
                raise ValueError("a projection base needs its session")
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise CorruptedSessionError(
                session_id, f"the session's ledger base cannot be read: {exc}"
            ) from exc
        return base


NO_BASE = LedgerBase()
"""A session whose ledger was never erased nor truncated: it starts at seq 1 (from
`GENESIS`) and projects from its first event."""


class StoreTransaction(ABC):
    """One atomic write, as a backend provides it to `BaseStore`.

    Everything saved through it lands together when the transaction's context exits
    without an exception, or not at all.
    """

    @abstractmethod
    def load_session(self, session_id: str) -> SessionRow | None:
        """Return the session's snapshot row, locked for this write, or `None`."""

    @abstractmethod
    def load_event_rows(self, session_id: str) -> list[EventRow]:
        """Return every event row of the session in `seq` order (to rebuild a snapshot)."""

    def copy_events(self, source_id: str, target_id: str, upto: int) -> tuple[str, str]:
        """Copy the source's events of seq 1 to `upto` into the target's ledger, as
        `BaseStore._copied` makes them (new ids, chained anew under the target, the source's
        chain checked on the way), for a backend that sets `_copies_in_transaction`.

        Returns:
            The source's chain hash at `upto` and the copy's.

        Raises:
            CorruptedSessionError: An event is missing or does not verify.
        """
        raise NotImplementedError

    @abstractmethod
    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        """Return the app's (`user_id=None`) or the user's shared state as JSON, or `None`."""

    @abstractmethod
    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        """Replace the app's or user's shared state with `state` (JSON)."""

    @abstractmethod
    def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Add event rows to the ledger, and to the store-wide feed (`read_feed`) with
        positions that increase in commit order."""

    @abstractmethod
    def load_keyed_rows(self, session_id: str, keys: Sequence[str]) -> list[EventRow]:
        """Return the session's event rows whose `key` is one of `keys` (any order), found
        through the store's key index, never by reading the whole ledger."""

    @abstractmethod
    def save_session(self, row: SessionRow, *, new: bool) -> None:
        """Insert (`new=True`, with `row.base`) or replace the session's snapshot row
        (keeping its stored base)."""

    def load_state(self, session_id: str) -> str:
        """Return the session's own state as one JSON object (`"{}"` for none), for a
        backend that keeps each state key apart (`BaseStore._state_apart`)."""
        raise NotImplementedError

    def save_state(
        self, session_id: str, values: Mapping[str, str], removed: Sequence[str], *, replace: bool
    ) -> None:
        """Write the session's own state keys, for a backend that keeps each key apart
        (`BaseStore._state_apart`): `values` maps each key set to its value as JSON text,
        `removed` lists keys deleted; with `replace=True` every other key of the session
        is deleted too (a new session, a rewind)."""
        raise NotImplementedError

    @abstractmethod
    def erase_event_rows(self, session_id: str, seqs: Sequence[int]) -> None:
        """Erase the payload of the session's events of these seqs for good: `data` and
        `state_delta` become `"{}"`, `state_ops` `"[]"`, `erased` true; every other column
        (the hashes too) is kept. The old payload bytes must not survive the store's
        `compact()`."""

    @abstractmethod
    def drop_event_rows(self, session_id: str, before: int) -> None:
        """Delete the session's events of seq lower than `before`, for good."""

    @abstractmethod
    def save_base(self, session_id: str, base: str) -> None:
        """Replace the session's stored `LedgerBase` (JSON, see `LedgerBase.to_json`)."""


def session_order(order: str) -> tuple[str, bool]:
    """The sort column (`"updated_at"` or `"created_at"`) of a `list_sessions` order and
    whether it runs descending.

    Raises:
        ConfigurationError: `order` is not one of `SESSION_ORDERS`.
    """
    if not isinstance(order, str) or order not in SESSION_ORDERS:
        raise ConfigurationError(
            f"order must be one of {', '.join(SESSION_ORDERS)}, not {order!r}"
        )
    column, _, direction = order.partition("_")
    return f"{column}_at", direction == "desc"


def _encode_cursor(row_key: tuple[str, str], order: str = "updated_desc") -> str:
    # The default order's cursors keep their original form: [timestamp, id].
    key = list(row_key) if order == "updated_desc" else [*row_key, order]
    raw = _dumps(key).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str = "updated_desc") -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
        if not isinstance(key, list) or len(key) not in (2, 3):
            raise ValueError(cursor)
        stamp, session_id = key[0], key[1]
        made_for = key[2] if len(key) == 3 else "updated_desc"
        if not isinstance(stamp, str) or not isinstance(session_id, str):
            raise ValueError(cursor)
        # Checked and normalized here, so every store reads the same cursor the same way.
        moment = parse_timestamp(stamp)
        if moment.tzinfo is None:
            raise ValueError(f"{stamp!r} has no UTC offset")
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid cursor {cursor!r}") from exc
    if made_for != order:
        raise ConfigurationError(
            f"cursor {cursor!r} was made for order {made_for!r}, not {order!r}"
        )
    return format_timestamp(moment), session_id


def check_version_arg(expected_version: Any) -> None:
    """Check the `expected_version` of `erase_events` and `truncate_before`.

    Raises:
        ConfigurationError: It is neither `None` nor an int.
    """
    if expected_version is not None and (
        isinstance(expected_version, bool) or not isinstance(expected_version, int)
    ):
        raise ConfigurationError(f"expected_version must be an int, not {expected_version!r}")


def check_erase_args(seqs: Any, reason: Any) -> list[int]:
    """Check the arguments of `erase_events`.

    Returns:
        The seqs, sorted, each once.

    Raises:
        ConfigurationError: `seqs` is not a non-empty list of ints >= 1, or `reason` is not
            a non-empty string.
    """
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, Sequence | set | frozenset):
        raise ConfigurationError(f"seqs must be a list of ints, not {seqs!r}")
    if not seqs or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in seqs):
        raise ConfigurationError(f"seqs must be a non-empty list of ints >= 1, not {seqs!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigurationError(f"reason must be a non-empty string, not {reason!r}")
    return sorted(set(seqs))


def check_scope(app_name: Any, user_id: Any) -> None:
    """Check the scope of `get_scoped_state`/`update_scoped_state`.

    Raises:
        InvalidEventError: `app_name` is not a non-empty string, or `user_id` is neither
            `None` nor a non-empty string.
    """
    if not isinstance(app_name, str) or not app_name:
        raise InvalidEventError(f"app_name must be a non-empty string, not {app_name!r}")
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise InvalidEventError(f"user_id must be a non-empty string or None, not {user_id!r}")

_WRITTEN_BY_STORE = {
    EventType.SESSION_CREATED.value: "create_session",
    EventType.SESSION_FORKED.value: "fork_session",
    EventType.REWOUND.value: "rewind",
    EventType.EVENTS_ERASED.value: "erase_events",
}
"""Event types only the store writes, each by its own call."""

_NOT_ERASABLE = frozenset((EventType.REWOUND.value, EventType.SESSION_FORKED.value))
"""Event types `erase_events` refuses: the projection reads their data."""


def _check_appendable(event: Any) -> None:
    """Refuse what `append` (and `rewind`'s `then`) may not append: not a `NewEvent`, or
    a type the store writes itself."""
    if not isinstance(event, NewEvent):
        raise InvalidEventError(f"append takes NewEvent objects, not {type(event).__name__}")
    writer = _WRITTEN_BY_STORE.get(event.type)
    if writer is not None:
        raise InvalidEventError(f"{event.type} is written by {writer} only")


def check_seq_argument(name: str, value: Any, *, optional: bool = True) -> int | None:
    """Check a seq given as an argument (`at_seq`, `to_seq`, `expected_version`).

    Raises:
        InvalidEventError: Not an int (or `None` when `optional`).
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(f"{name} must be an int, not {value!r}; nothing was written")
    return value


def copy_refused(source_id: str, seq: int) -> CorruptedSessionError:
    """The error of a fork whose source's event `seq` is missing or does not verify."""
    return CorruptedSessionError(
        source_id,
        f"event {seq} is missing or does not match its chain hash; the session was not "
        "forked (verify_session tells more)",
        seq=seq,
    )


MAX_READ_KEYS = 1000
"""The most keys one `read_events(keys=...)` may ask for."""


def _read_key(value: Any, what: str) -> str:
    """A key (or key prefix) given to a read, checked as `NewEvent.key` is.

    Raises:
        ConfigurationError: Not a key (`core.keys.check_key`).
    """
    try:
        return check_key(value, what)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _caller_time_in_data(event: NewEvent) -> NewEvent:
    """`event` with the caller's `timestamp` moved to `data["timestamp"]` (see
    `NewEvent.timestamp`): the store's clock stamps the event.

    Raises:
        InvalidEventError: The time is out of range once converted to UTC, or `data`
            already holds a different `"timestamp"`.
    """
    assert event.timestamp is not None
    try:
        stamp = format_timestamp(event.timestamp)
    except OverflowError as exc:
        raise InvalidEventError(
            f"{event.type} event timestamp is out of range once converted to UTC: {exc}"
        ) from exc
    given = event.data.get("timestamp", stamp)
    if given != stamp:
        raise InvalidEventError(
            f"{event.type} event has a timestamp ({stamp}) and a different data['timestamp'] "
            f"({given!r}); the caller's time is kept in data['timestamp']: give one of them"
        )
    return event.model_copy(update={"data": {**event.data, "timestamp": stamp}, "timestamp": None})


class _SnapshotCache:
    """The snapshot (own state, as stored) each recently appended session had after this
    store object's last append to it, so the next append skips parsing the stored one.

    An entry is used only while the stored row still has the version, the last chain hash
    and the very snapshot text the entry was written with: any other write (another store
    object, another process, a delete and a re-create), a commit that failed after the
    entry was made, and a snapshot changed or damaged in the store all miss, and the stored
    snapshot is parsed (or rebuilt) as before. A store that kept snapshots in another form
    than the text it wrote would always miss (every built-in store reads back its text).
    Holds the `size` sessions appended to last.
    """

    __slots__ = ("_entries", "_lock", "size")

    def __init__(self, size: int = 256) -> None:
        self._entries: OrderedDict[str, tuple[int, str, str, Session]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, row: SessionRow) -> Session | None:
        """The cached snapshot of `row`'s session if it is the one `row` holds, else None."""
        entry = self._entries.get(row.id)
        if entry is None or not row.last_hash:
            return None
        version, last_hash, snapshot, session = entry
        if version != row.version or last_hash != row.last_hash or snapshot != row.snapshot:
            return None
        return session

    def put(self, session: Session, last_hash: str, snapshot: str) -> None:
        """Remember `session` (committed, with the chain hash of its last event and the
        snapshot text saved)."""
        with self._lock:
            entries = self._entries
            entries[session.id] = (session.version, last_hash, snapshot, session)
            entries.move_to_end(session.id)
            while len(entries) > self.size:
                entries.popitem(last=False)


class BaseStore(SessionStore, ABC):
    """The store contract implemented once over a backend's primitives.

    Args:
        max_event_bytes: The largest event accepted, in bytes: the UTF-8 size of its
            `data` and `state_delta` JSON plus its type, author and invocation id.
        clock: Returns the current UTC time; stamps every event written (public as
            `clock`; `SessionManager` uses it for idle times and cut-offs, so one clock
            stamps and decides). A caller's `NewEvent.timestamp` (or `created_at`) never
            stamps an event: it is kept in the event's `data["timestamp"]`, so it cannot
            move a session's last activity. A time earlier than the session's last event
            (a clock that went backwards) is raised to that event's time.
        lifecycle: The phase rules every append is checked against, inside its
            transaction (`core.lifecycle.check_append`); default: the standard phases.
        read_only: Open for reading only: nothing is created or migrated, and
            `create_session`, `append` and `delete_session` raise `ReadOnlyStoreError`.
            A store that does not exist raises `StoreNotFoundError`; one whose schema is
            older than this library's raises `SchemaVersionError` (a read never migrates).
        create: Whether opening may create the store (a SQLite file, a file store's
            folder, a PostgreSQL schema) when it does not exist; `False` raises
            `StoreNotFoundError` instead. Never creates the folders above the store.

    Raises:
        ConfigurationError: A bad option value.
    """

    scheme: ClassVar[str]
    capabilities: Capabilities
    _copies_in_transaction: ClassVar[bool] = False
    """Whether the backend's transaction copies a fork's events itself
    (`StoreTransaction.copy_events`, set-based) instead of `BaseStore` reading, rechaining
    and inserting them row by row."""

    _state_apart: ClassVar[bool] = False
    """Whether the backend keeps each of a session's own state keys apart from its snapshot
    row (`StoreTransaction.save_state`/`load_state`, `SessionRow.state`), so an append
    writes only the keys its events touch and never rewrites the whole state."""

    plugins: PluginHost | None = None
    """The plugins whose hooks run around every write (`use_plugins`); with `None` (or
    plugins without such hooks) a write skips the hooks at the cost of one test."""
    _payload_is_canonical: ClassVar[bool] = True
    """Whether rows read back hold `data` and `state_delta` exactly as hashed (canonical
    text); a store that keeps them in another form (JSONB) sets it to False, and its payload
    hashes are then recomputed by `verify_session` only."""

    def __init__(
        self,
        *,
        url: str,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        clock: Callable[[], datetime] = _utcnow,
        lifecycle: Lifecycle = DEFAULT_LIFECYCLE,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        if not isinstance(max_event_bytes, int) or max_event_bytes < 256:
            raise ConfigurationError(f"max_event_bytes must be an int >= 256, not {max_event_bytes!r}")
        if not isinstance(lifecycle, Lifecycle):
            raise ConfigurationError(f"lifecycle must be a Lifecycle, not {lifecycle!r}")
        if not callable(clock):
            raise ConfigurationError(f"clock must be a function returning a datetime, not {clock!r}")
        for name, flag in (("read_only", read_only), ("create", create)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be True or False, not {flag!r}")
        self.url = url
        self.read_only = read_only
        self.create = create and not read_only
        self.max_event_bytes = max_event_bytes
        self.lifecycle = lifecycle
        self._clock = clock
        self._snapshots = _SnapshotCache()

    def use_plugins(self, host: PluginHost | None) -> None:
        """Run these plugins' hooks around every write from now on (`open_store` calls it
        with the plugins it was given).

        Args:
            host: The plugins (`agentledger.plugins.resolve_plugins`); `None` for none.
        """
        self.plugins = host

    @property
    def clock(self) -> Callable[[], datetime]:
        """The store's clock (UTC): it stamps every event written."""
        return self._clock

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"store {display_url(self.url)} is open read-only; nothing was written"
            )

    # -- backend primitives -------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[StoreTransaction]:
        """Open one atomic write; writers are serialized (per session at least)."""

    @abstractmethod
    def _fetch_session(self, session_id: str) -> tuple[SessionRow, str | None, str | None] | None:
        """Return the snapshot row with the app's and user's shared state JSON, or `None`."""

    @abstractmethod
    def _fetch_event_rows(
        self,
        session_id: str,
        *,
        after: int,
        limit: int | None,
        last: int | None,
        types: Sequence[str] | None,
        after_ts: str | None = None,
        before_ts: str | None = None,
        keys: Sequence[str] | None = None,
        key_prefix: str | None = None,
        data_match: Mapping[tuple[str, ...], Any] | None = None,
    ) -> list[EventRow]:
        """Return matching event rows in `seq` order (see `read_events`); `after_ts` and
        `before_ts` (formatted by `format_timestamp`) bound `timestamp` strictly; `keys`
        (non-empty) and `key_prefix` select keyed events through the key index;
        `data_match` (checked by `core.keys.check_data_match`) filters on `data` as
        `core.keys.data_matches` does; `limit`/`last` count the rows within all filters."""

    @abstractmethod
    def _fetch_feed(self, after: int, limit: int) -> list[tuple[int, EventRow]]:
        """Return up to `limit` (position, row) pairs of the feed past `after`, by position,
        skipping entries whose event is gone (a deleted session, a truncated prefix)."""

    @abstractmethod
    def _feed_position(self) -> int:
        """The last position of the feed (0 if empty)."""

    @abstractmethod
    def _session_exists(self, session_id: str) -> bool:
        """Whether a session with this id exists."""

    @abstractmethod
    def _fetch_session_page(
        self, where: SessionFilter, after_key: tuple[str, str] | None, limit: int
    ) -> list[tuple[SessionRow, str | None, str | None]]:
        """Return up to `limit` rows ordered by (column, id) of `where.order` (see
        `session_order`), strictly past `after_key` in that order, each with the app's
        and user's shared state JSON."""

    def _fetch_scoped(self, app_name: str, user_id: str | None) -> str | None:
        """Return the app's (`user_id=None`) or the user's shared state as JSON, or `None`.
        By default read in a write transaction; a backend overrides it with a plain read."""
        with self._transaction() as tx:
            return tx.load_scoped_state(app_name, user_id)

    def _update_scoped(
        self,
        app_name: str,
        user_id: str | None,
        change: Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:
        """Replace the app's and (with `user_id`) the user's shared state atomically with
        `change(app_state, user_state)`, read and written under the scopes' write locks.
        By default one `StoreTransaction` (`load_scoped_state`/`save_scoped_state`)."""
        with self._transaction() as tx:
            app = self._decode_scoped("", tx.load_scoped_state(app_name, None))
            user = (
                {} if user_id is None else self._decode_scoped("", tx.load_scoped_state(app_name, user_id))
            )
            new_app, new_user = change(app, user)
            if new_app != app:
                tx.save_scoped_state(app_name, None, _dumps(new_app))
            if user_id is not None and new_user != user:
                tx.save_scoped_state(app_name, user_id, _dumps(new_user))

    @abstractmethod
    def _delete_session(self, session_id: str, expected_version: int | None) -> bool:
        """Delete the session and its events; whether it existed. With `expected_version`,
        raise `ConcurrencyError` (deleting nothing) unless the stored version is that one,
        checked under the same lock or transaction as the delete."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and file handles."""

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {display_url(self.url)}>"

    # -- encoding -----------------------------------------------------------------------

    def _encode(
        self,
        session_id: str,
        seq: int,
        event: NewEvent,
        now: datetime,
        stamp: str | None = None,
        event_id: str | None = None,
    ) -> EventRow:
        """Encode and check one new event. `stamp` is `now` formatted (`_stamp`) and
        `event_id` its new id, when the caller made them once for a whole batch."""
        if event.data:
            check_nesting(event.data, f"{event.type} event data")
        if event.state_delta:
            check_nesting(event.state_delta, f"{event.type} event state_delta")
        if event.state_ops:
            check_nesting(event.state_ops, f"{event.type} event state_ops")
        if event.timestamp is not None:
            event = _caller_time_in_data(event)
        data, delta, ops, remove, size = _encode_payload(event)
        timestamp = stamp if stamp is not None else self._stamp(now, event.type)
        if size > self.max_event_bytes:
            raise EventTooLargeError(size, self.max_event_bytes)
        return EventRow(
            event_id or new_id(),
            session_id,
            seq,
            event.type,
            event.author,
            timestamp,
            event.invocation_id,
            data,
            delta,
            state_ops=ops,
            state_remove=remove,
            format=EVENT_FORMAT,
            key=event.key,
        )

    @staticmethod
    def _stamp(now: datetime, kind: str = "the") -> str:
        """`now` as stored (`format_timestamp`).

        Raises:
            InvalidEventError: `now` is out of range once converted to UTC.
        """
        try:
            return format_timestamp(now)
        except OverflowError as exc:
            raise InvalidEventError(
                f"{kind} event timestamp is out of range once converted to UTC: {exc}"
            ) from exc

    @staticmethod
    def _chained(rows: Sequence[EventRow], previous: str, floor: str) -> list[EventRow]:
        """Stamp encoded rows with their final timestamps, payload hashes and chain hashes.

        Call it last, inside the write transaction, once each row's `seq`, `data` and
        `state_delta` are final: the hashes cover them.

        Args:
            rows: Encoded rows with their `seq` assigned, in order.
            previous: The hash of the event before the first row (`GENESIS` for seq 1).
            floor: The session's last event's timestamp (`""` for a new session). A row
                stamped earlier (a clock that went backwards, or a caller's timestamp) is
                stamped with the latest time before it instead, so a session's time never
                runs backwards.
        """
        chained = []
        for row in rows:
            stamp = row.timestamp if row.timestamp >= floor else floor  # fixed width: sorts
            # An erased row (imported as stored) keeps the hash of the payload it had.
            payload = row.payload_hash if row.erased else payload_hash(
                row.data, row.state_delta, row.state_ops, row.state_remove, row.key
            )
            digest = event_hash(
                previous,
                row.session_id,
                row.seq,
                row.id,
                row.type,
                row.author,
                stamp,
                row.invocation_id,
                payload,
                row.format,
            )
            chained.append(row._replace(timestamp=stamp, payload_hash=payload, hash=digest))
            previous, floor = digest, stamp
        return chained

    def _chain_problem(
        self,
        rows: Sequence[EventRow | Sequence[Any]],
        previous: str | None,
        *,
        payloads: bool,
        erasures: set[int] | None = None,
    ) -> tuple[int, str] | None:
        """The first event of a contiguous run of rows that breaks the chain, and why.

        Args:
            rows: Event rows (`EventRow` or tuples in its order) in `seq` order, without
                gaps (checked by the caller).
            previous: The hash the first row chains from; `None` checks only the links
                between the rows.
            payloads: Also recompute each payload hash from `data`, `state_delta`,
                `state_ops` and `state_remove`; an erased event's payload is gone, so its
                stored `payload_hash` is taken as it is.
            erasures: The seqs the ledger's `events_erased` events record; when given, an
                erased event must be one of them and hold an empty payload.
        """
        canonical = self._payload_is_canonical
        if payloads and canonical and erasures is None and _chain_holds(rows, previous):
            return None  # the common case, checked the same way in one tight loop
        for row in rows:
            # By position (EventRow order), as SQL rows come as plain tuples.
            if len(row) > 15 and row[15]:
                if erasures is not None:
                    if row[2] not in erasures:
                        return row[2], (
                            "it is marked erased, but no events_erased event records its erasure"
                        )
                    if (row[7], row[8], row[11], row[12]) != ("{}", "{}", "[]", "[]"):
                        return row[2], "it is marked erased, but it still holds a payload"
            elif payloads:
                data, delta = row[7], row[8]
                ops = row[11] if len(row) > 11 else "[]"
                remove = row[12] if len(row) > 12 else "[]"
                key = row[14] if len(row) > 14 else None
                if not canonical:
                    try:
                        data, delta, ops, remove = (
                            canonical_json(json.loads(data)),
                            canonical_json(json.loads(delta)),
                            canonical_json(json.loads(ops)),
                            canonical_json(json.loads(remove)),
                        )
                    except (TypeError, ValueError):
                        return row[2], "its data, state_delta, state_ops or state_remove is not JSON"
                if payload_hash(data, delta, ops, remove, key) != row[9]:
                    return row[2], (
                        "its data, state_delta, state_ops or state_remove was changed "
                        "(payload hash mismatch)"
                    )
            if previous is not None:
                expected = event_hash(
                    previous,
                    row[1],
                    row[2],
                    row[0],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    row[9],
                    row[13] if len(row) > 13 else 1,
                )
                if expected != row[10]:
                    return row[2], "its header or the chain before it was changed (hash mismatch)"
            previous = row[10]
        return None

    def _check_read(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        first: int | None,
        base: LedgerBase | None = None,
    ) -> None:
        """Check rows read back: no gap in `seq` (starting at `first` when given), and the
        chain between them (from `GENESIS` when they start at seq 1, from the base's hash
        when they start where a truncated ledger starts).

        Args:
            session_id: The session.
            rows: The rows read, in `seq` order.
            first: The seq the rows must start at; `None`: wherever they start. A read
                that starts past `first` is checked against the session's `LedgerBase`
                (`base`, fetched when not given): the ledger may start later.
            base: The session's base, when the caller has it.

        Raises:
            CorruptedSessionError: A gap, or an event whose hash does not match.
        """
        if not rows:
            return
        start = rows[0][2] if first is None else first
        previous: str | None = GENESIS if start == 1 else None
        if first is not None and rows[0][2] > first:
            if base is None:
                found = self._fetch_session(session_id)
                base = NO_BASE if found is None else LedgerBase.parse(session_id, found[0].base)
            if base.chain_seq >= first:  # the ledger starts after the events dropped
                start, previous = base.chain_seq + 1, base.chain_hash
        for i, row in enumerate(rows):
            if row[2] != start + i:
                raise CorruptedSessionError(
                    session_id,
                    f"event {start + i} is missing (found seq {row[2]} instead)",
                    seq=start + i,
                )
        problem = self._chain_problem(rows, previous, payloads=self._payload_is_canonical)
        if problem is not None:
            raise CorruptedSessionError(
                session_id, f"event {problem[0]}: {problem[1]}", seq=problem[0]
            )

    @staticmethod
    def _decode_event(
        row: EventRow | Sequence[Any],
        data: Any = _UNPARSED,
        state_delta: Any = _UNPARSED,
        state_ops: Any = _UNPARSED,
        state_remove: Any = _UNPARSED,
    ) -> Event:
        try:
            timestamp = parse_timestamp(row[5])
            if data is _UNPARSED:
                data = json.loads(row[7])
                state_delta = json.loads(row[8])
                state_ops = json.loads(row[11]) if len(row) > 11 else []
                state_remove = json.loads(row[12]) if len(row) > 12 else []
            if timestamp.tzinfo is None:
                raise ValueError(f"timestamp {row[5]!r} has no UTC offset")
            if type(data) is not dict or type(state_delta) is not dict:
                raise ValueError("data and state_delta must be JSON objects")
            # (the `and` first: most events have no operations and no removals)
            if type(state_ops) is not list or (
                state_ops and any(type(op) is not dict for op in state_ops)
            ):
                raise ValueError("state_ops must be a JSON array of objects")
            if type(state_remove) is not list or (
                state_remove and any(type(k) is not str for k in state_remove)
            ):
                raise ValueError("state_remove must be a JSON array of strings")
            format = row[13] if len(row) > 13 else 1
            if type(format) is not int or format < 1:
                raise ValueError(f"event format {format!r} is not a positive integer")
            return _stored_event(
                {
                    "id": row[0],
                    "session_id": row[1],
                    "seq": row[2],
                    "type": row[3],
                    "author": row[4],
                    "timestamp": timestamp,
                    "data": data,
                    "state_delta": state_delta,
                    "state_ops": state_ops,
                    "state_remove": state_remove,
                    "invocation_id": row[6],
                    "format": format,
                    "key": row[14] if len(row) > 14 else None,
                    "erased": bool(row[15]) if len(row) > 15 else False,
                }
            )
        except (TypeError, ValueError, IndexError, RecursionError) as exc:
            raise CorruptedSessionError(str(row[1]), f"event {row[2]} cannot be read: {exc}") from exc

    @staticmethod
    def _fresh_events(rows: Sequence[EventRow]) -> list[Event]:
        """The `Event`s of rows this store has just encoded (`_encode`, `_chained`,
        `encode_stored_event`), equal to what `_decode_events` gives once they are stored.
        Their JSON is ours (canonical, checked when encoded), so it is parsed without the
        checks `_decode_event` makes of rows read back, each distinct timestamp once per
        batch, and an empty payload part not at all."""
        events = []
        parsed: dict[str, datetime] = {}
        loads = json.loads
        for row in rows:
            stamp = parsed.get(row.timestamp)
            if stamp is None:
                stamp = parsed[row.timestamp] = parse_timestamp(row.timestamp)
            events.append(
                _stored_event(
                    {
                        "id": row.id,
                        "session_id": row.session_id,
                        "seq": row.seq,
                        "type": row.type,
                        "author": row.author,
                        "timestamp": stamp,
                        "data": {} if row.data == "{}" else loads(row.data),
                        "state_delta": {} if row.state_delta == "{}" else loads(row.state_delta),
                        "state_ops": [] if row.state_ops == "[]" else loads(row.state_ops),
                        "state_remove": (
                            [] if row.state_remove == "[]" else loads(row.state_remove)
                        ),
                        "invocation_id": row.invocation_id,
                        "format": row.format,
                        "key": row.key,
                        "erased": bool(row.erased),
                    }
                )
            )
        return events

    def _unshared(self, events: list[Event], rows: Sequence[EventRow]) -> list[Event]:
        """`events` (of `rows`, just folded into a snapshot this store caches), each that
        may share a mutable value with the snapshot replaced by a fresh copy: what a caller
        does to a returned event must never change the cached snapshot."""
        shared = (EventType.METADATA_UPDATED, EventType.SESSION_CREATED)
        out = events
        for i, event in enumerate(events):
            if (
                event.state_ops
                or event.type in shared
                or any(type(v) is dict or type(v) is list for v in event.state_delta.values())
            ):
                if out is events:
                    out = list(events)
                out[i] = self._fresh_events([rows[i]])[0]
        return out

    def _decode_events(self, rows: Sequence[EventRow | Sequence[Any]]) -> list[Event]:
        decode = self._decode_event
        if len(rows) >= 8:
            # One json.loads for the whole batch; on any doubt, decode row by row below,
            # which names the bad row.
            try:
                values = json.loads(
                    "["
                    + ",".join(
                        chain.from_iterable(
                            (
                                r[7],
                                r[8],
                                r[11] if len(r) > 11 else "[]",
                                r[12] if len(r) > 12 else "[]",
                            )
                            for r in rows
                        )
                    )
                    + "]"
                )
            except (TypeError, ValueError, RecursionError):
                values = None
            if values is not None and len(values) == 4 * len(rows):
                return self._decode_parsed(rows, values)
        return [decode(row) for row in rows]

    def _decode_parsed(self, rows: Sequence[EventRow | Sequence[Any]], values: list[Any]) -> list[Event]:
        """`_decode_event` of each row with its four payload parts already parsed
        (`values`, four per row), the same checks in one loop; a row in doubt goes through
        `_decode_event`, which raises naming it."""
        decode = self._decode_event
        new = object.__new__
        put = object.__setattr__
        fields = _EVENT_FIELDS
        stamps: dict[Any, datetime] = {}
        events: list[Event] = []
        add = events.append
        for j, row in zip(range(0, len(values), 4), rows, strict=True):
            data, delta, ops, remove = values[j], values[j + 1], values[j + 2], values[j + 3]
            stamp = stamps.get(row[5]) if type(row[5]) is str else None
            if stamp is None and type(row[5]) is str:
                try:
                    stamp = datetime.fromisoformat(row[5])
                except ValueError:
                    stamp = None
                if stamp is not None and stamp.tzinfo is not None:
                    stamps[row[5]] = stamp
            if (
                len(row) != 16
                or stamp is None
                or stamp.tzinfo is None
                or type(data) is not dict
                or type(delta) is not dict
                or type(ops) is not list
                or type(remove) is not list
                or (ops and any(type(op) is not dict for op in ops))
                or (remove and any(type(k) is not str for k in remove))
                or type(row[13]) is not int
                or row[13] < 1
            ):
                add(decode(row, data, delta, ops, remove))
                continue
            event = new(Event)
            put(
                event,
                "__dict__",
                {
                    "id": row[0],
                    "session_id": row[1],
                    "seq": row[2],
                    "type": row[3],
                    "author": row[4],
                    "timestamp": stamp,
                    "data": data,
                    "state_delta": delta,
                    "state_ops": ops,
                    "state_remove": remove,
                    "invocation_id": row[6],
                    "format": row[13],
                    "key": row[14],
                    "erased": bool(row[15]),
                },
            )
            put(event, "__pydantic_fields_set__", set(fields))
            put(event, "__pydantic_extra__", None)
            put(event, "__pydantic_private__", None)
            add(event)
        return events

    def _session_row(
        self, session: Session, created_at: str | None = None, last_hash: str = ""
    ) -> SessionRow:
        """The snapshot row of `session` (without its state when the store keeps each state
        key apart: `_save_session` writes those)."""
        return SessionRow(
            session.id,
            session.app_name,
            session.user_id,
            session.agent_name,
            session.status,
            session.phase,
            created_at or format_timestamp(session.created_at),
            format_timestamp(session.updated_at),
            session.version,
            session.model_dump_json(exclude=_NO_STATE) if self._state_apart else session.model_dump_json(),
            last_hash,
        )

    def _parse_session(
        self,
        row: SessionRow,
        rebuild: Callable[[], list[EventRow]],
        load_state: Callable[[], str] | None = None,
    ) -> Session:
        """The session `row` holds: its snapshot (with its state keys, read from the row or
        with `load_state`, when the store keeps them apart), or, when that cannot be read,
        the projection of its ledger (`rebuild` reads it).

        Raises:
            CorruptedSessionError: Neither the snapshot nor the ledger can be read.
        """
        return self._parse_or_rebuild(row, rebuild, load_state)[0]

    def _parse_or_rebuild(
        self,
        row: SessionRow,
        rebuild: Callable[[], list[EventRow]],
        load_state: Callable[[], str] | None = None,
    ) -> tuple[Session, bool]:
        """`_parse_session`, also saying whether the session was rebuilt from its ledger
        (then what the store holds of its state is not to be trusted: a write replaces it)."""
        try:
            return self._stored_session(row, load_state), False
        except (ValueError, RecursionError):
            pass
        # A snapshot that cannot be read is rebuilt from the ledger, the source of truth,
        # from its base when it has one.
        try:
            base = LedgerBase.parse(row.id, row.base)
            rows = [r for r in rebuild() if r[2] > base.chain_seq]
            self._check_read(row.id, rows, base.chain_seq + 1, base)
            return self._project_from(rows, base), True
        except CorruptedSessionError:
            raise
        except ValueError as exc:
            raise CorruptedSessionError(row.id, f"snapshot and ledger unreadable: {exc}") from exc

    def _stored_session(self, row: SessionRow, load_state: Callable[[], str] | None = None) -> Session:
        """The session `row`'s snapshot holds, with its state keys when the store keeps them
        apart (from `row.state`, else `load_state`).

        Raises:
            ValueError: The snapshot or the state cannot be read (pydantic's
                `ValidationError` is one).
        """
        session = Session.model_validate_json(row.snapshot)
        if not self._state_apart:
            return session
        raw = row.state
        if raw is None:
            if load_state is None:
                raise ValueError("the session's state was not read")
            raw = load_state()
        if raw == "{}":
            return session
        state = json.loads(raw)
        if not isinstance(state, dict):
            raise ValueError("the session's state is not a JSON object")
        # The session was just made here and nobody else holds it: its (frozen) state
        # field is set in place, without model_copy's copy of every field.
        session.__dict__["state"] = state
        return session

    def _save_session(
        self,
        tx: StoreTransaction,
        session: Session,
        row: SessionRow,
        *,
        new: bool,
        changed: tuple[dict[str, str], list[str]] | None = None,
    ) -> None:
        """Save `row` (`session`'s snapshot row) and, when the store keeps each state key
        apart, the state: only the `changed` keys (values as JSON text, removed keys), or
        all of `session.state` in place of what was stored (`changed=None`)."""
        tx.save_session(row, new=new)
        if not self._state_apart:
            return
        if changed is None:
            values = {key: _dumps(value) for key, value in session.state.items()}
            tx.save_state(session.id, values, (), replace=True)
        elif changed[0] or changed[1]:
            tx.save_state(session.id, changed[0], changed[1], replace=False)

    @staticmethod
    def _state_changes(
        before: Mapping[str, Any], after: Mapping[str, Any], touched: set[str], compare: bool
    ) -> tuple[dict[str, str], list[str]]:
        """The own state keys changed from `before` to `after`: the values set (as JSON
        text) and the keys removed. `touched`: the keys the events' deltas and removals
        name; `compare`: the events also held state operations or a rewind, so every key
        is compared instead."""
        if compare:
            # By identity, not equality: 1 == 1.0 == True in Python, but not in JSON. The
            # fold keeps the values it does not change, so only changed keys differ.
            touched = {key for key, value in after.items() if before.get(key, _ABSENT) is not value}
            touched.update(key for key in before if key not in after)
        values = {key: _dumps(after[key]) for key in touched if key in after}
        removed = [key for key in touched if key not in after]
        return values, removed

    def _project_from(self, rows: Sequence[EventRow | Sequence[Any]], base: LedgerBase) -> Session:
        """The projection of a session's stored rows from its base: the events after
        `base.seq` continuing the base's session, or all of them from the first.

        Raises:
            CorruptedSessionError: The events do not continue the base.
            ValueError: No base and no rows.
        """
        if not base.seq:
            return project(self._decode_events(rows))
        start = Session.model_validate_json(base.session)
        return project(self._decode_events([r for r in rows if r[2] > base.seq]), start)

    @staticmethod
    def _decode_scoped(session_id: str, raw: str | None) -> dict[str, Any]:
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CorruptedSessionError(session_id, f"shared state cannot be read: {exc}") from exc
        if not isinstance(value, dict):
            raise CorruptedSessionError(session_id, "shared state is not a JSON object")
        return value

    def _with_scoped(self, session: Session, app_raw: str | None, user_raw: str | None) -> Session:
        if app_raw is None and user_raw is None:
            return session
        state = merge_scoped_state(
            session.state, self._decode_scoped(session.id, app_raw), self._decode_scoped(session.id, user_raw)
        )
        return session.model_copy(update={"state": state})

    # -- writes -------------------------------------------------------------------------

    def _check_expected_state(
        self, tx: StoreTransaction, current: Session, expected: Mapping[str, Any]
    ) -> None:
        """Raise `StateConflictError` unless every expected key still has the expected value."""
        parts = split_delta(expected)
        changed = [k for k, v in parts.session.items() if current.state.get(k) != v]
        for prefix, scope_user, wanted in (
            (APP_PREFIX, None, parts.app),
            (USER_PREFIX, current.user_id, parts.user),
        ):
            if wanted:
                now = self._decode_scoped(
                    current.id, tx.load_scoped_state(current.app_name, scope_user)
                )
                changed += [prefix + k for k, v in wanted.items() if now.get(k) != v]
        if changed:
            raise StateConflictError(current.id, changed, current.version)

    def _write(
        self,
        tx: StoreTransaction,
        current: Session | None,
        session_id: str,
        rows: list[EventRow],
        created_at: str | None = None,
        at: Mapping[int, Session] | None = None,
        *,
        replace_state: bool = False,
    ) -> tuple[Session, list[Event]]:
        updated, events, _ = self._write_rows(
            tx, current, session_id, rows, created_at, at, replace_state=replace_state
        )
        return updated, events

    def _write_rows(
        self,
        tx: StoreTransaction,
        current: Session | None,
        session_id: str,
        rows: list[EventRow],
        created_at: str | None = None,
        at: Mapping[int, Session] | None = None,
        *,
        replace_state: bool = False,
    ) -> tuple[Session, list[Event], str]:
        """`_write`, also returning the snapshot text saved. `replace_state`: `current` was
        rebuilt from the ledger, so the whole state is written, not only what changed."""
        events = self._fresh_events(rows)
        try:
            updated = project(events, current, at=at)
        except CorruptedSessionError as exc:
            if isinstance(exc.__cause__, StateOperationError):
                raise exc.__cause__ from None
            raise InvalidEventError(exc.detail) from exc
        app_name, user_id = updated.app_name, updated.user_id
        # Shared state: each event's delta, then its operations, in ledger order, applied
        # to the scope's state as it is inside this transaction (under the write lock).
        # Own state: the keys the events' deltas and removals name, or a comparison key by
        # key after state operations and rewinds (see `_state_changes`).
        scoped_state: dict[str | None, dict[str, Any]] = {}
        touched: set[str] = set()
        compare = False
        for event in events:
            if event.type == EventType.REWOUND:
                compare = True
            if not event.state_delta and not event.state_ops and not event.state_remove:
                continue
            change = state_change(event.state_delta, event.state_remove, event.format)
            deltas = split_delta(change.set)
            removes = split_keys(change.remove)
            ops = split_ops(event.state_ops)
            touched.update(deltas.session)
            touched.update(removes.session)
            if ops.session:
                compare = True
            for prefix, scope_user, delta, remove, scope_ops in (
                (APP_PREFIX, None, deltas.app, removes.app, ops.app),
                (USER_PREFIX, user_id, deltas.user, removes.user, ops.user),
            ):
                if not delta and not remove and not scope_ops:
                    continue
                state = scoped_state.get(scope_user)
                if state is None:
                    state = self._decode_scoped(
                        session_id, tx.load_scoped_state(app_name, scope_user)
                    )
                state = apply_delta(state, delta, remove)
                if scope_ops:
                    state = apply_ops(state, scope_ops, prefix=prefix)
                    check_nesting(state, f"{prefix} state after the state operations")
                scoped_state[scope_user] = state
        for scope_user, state in scoped_state.items():
            tx.save_scoped_state(app_name, scope_user, _dumps(state))
        if any(event.state_ops for event in events):
            check_nesting(updated.state, "session state after the state operations")
        tx.insert_events(rows)
        session_row = self._session_row(updated, created_at, rows[-1].hash)
        changed = None
        if self._state_apart and current is not None and not replace_state:
            changed = self._state_changes(current.state, updated.state, touched, compare)
        self._save_session(tx, updated, session_row, new=current is None, changed=changed)
        return updated, events, session_row.snapshot

    def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        agent_name: str | None = None,
        title: str | None = None,
        purpose: str | None = None,
        state: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        phase: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> Session:
        self._check_writable()
        sid = new_id() if session_id is None else validate_session_id(session_id)
        for name, required in (("app_name", app_name), ("user_id", user_id)):
            if not isinstance(required, str) or not required:
                raise InvalidEventError(f"{name} must be a non-empty string, not {required!r}")
        check_create(phase, self.lifecycle)
        data: dict[str, Any] = {"app_name": app_name, "user_id": user_id}
        for key, value in (
            ("agent_name", agent_name),
            ("title", title),
            ("purpose", purpose),
            ("phase", phase or self.lifecycle.initial_phase),
        ):
            if value is not None:
                data[key] = value
        if state is not None and not isinstance(state, Mapping):
            raise InvalidEventError(f"state must be a JSON object (a mapping), not {state!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidEventError(f"metadata must be a JSON object (a mapping), not {metadata!r}")
        data["metadata"] = dict(metadata or {})
        # Raises InvalidEventError (a naive created_at, a state that is not a dict).
        event = NewEvent(
            type=EventType.SESSION_CREATED,
            author="system",
            data=data,
            state_delta=dict(state or {}),
            timestamp=created_at,
        )
        plugins = self.plugins
        if plugins is not None and plugins.has_before_append:
            (event,) = plugins.run_before_append(None, [event], self, creating=True)
        (row,) = self._chained([self._encode(sid, 1, event, self._clock())], GENESIS, "")
        with self._transaction() as tx:
            if tx.load_session(sid) is not None:
                raise SessionExistsError(sid)
            _, stored = self._write(tx, None, sid, [row])
        session = self.get_session(sid)
        if plugins is not None and plugins.has_after_hooks:
            plugins.run_after_append(session, stored, self, created=True)
        return session

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        self._check_writable()
        validate_session_id(session_id)
        events = list(events)
        for event in events:
            if not isinstance(event, NewEvent):
                raise InvalidEventError(f"append takes NewEvent objects, not {type(event).__name__}")
            _check_appendable(event)
        plugins = self.plugins
        if plugins is not None and plugins.has_before_append and events:
            before = self.get_session(session_id) if plugins.before_append_wants_session else None
            events = plugins.run_before_append(before, events, self, creating=False)
        now = self._clock()
        # Encode (and size-check) everything before touching the store; seq is fixed later.
        # The time is formatted and the ids made once for the whole batch.
        if events:
            stamp = self._stamp(now, events[0].type)
            encoded = [
                self._encode(session_id, 0, event, now, stamp, event_id)
                for event, event_id in zip(events, new_ids(len(events)), strict=True)
            ]
        else:
            encoded = []
        keys = [r.key for r in encoded if r.key is not None]
        if len(set(keys)) != len(keys):
            repeated = [k for k, n in Counter(keys).items() if n > 1]
            raise DuplicateEventKeyError(session_id, repeated, "repeated_in_batch")
        with self._append_transaction() as tx:
            row = tx.load_session(session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            if keys:  # a retry of a stored batch is answered before any other check
                replayed = self._replayed(tx, session_id, encoded, keys)
                if replayed is not None:
                    return replayed
            if expected_version is not None and expected_version != row.version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            if not encoded:
                return []
            # The snapshot this store wrote last, while the row still names it; else the
            # stored one, parsed.
            current, rebuilt = self._snapshots.get(row), False
            if current is None:
                current, rebuilt = self._parse_or_rebuild(
                    row, lambda: tx.load_event_rows(session_id), lambda: tx.load_state(session_id)
                )
            check_append(current, events, self.lifecycle)
            if expected_state:
                self._check_expected_state(tx, current, expected_state)
            previous = row.last_hash or self._last_hash(tx, session_id, current.version)
            rows = self._chained(
                [r._replace(seq=current.version + i) for i, r in enumerate(encoded, 1)],
                previous,
                format_timestamp(current.updated_at),
            )
            updated, stored, snapshot = self._write_rows(
                tx, current, session_id, rows, row.created_at, replace_state=rebuilt
            )
        if plugins is not None and plugins.has_after_hooks:
            plugins.run_after_append(updated, stored, self)
            return stored
        # Committed, and no hook saw `updated`: it is the session's snapshot now.
        self._snapshots.put(updated, rows[-1].hash, snapshot)
        return self._unshared(stored, rows)

    def import_events(
        self,
        session_id: str,
        events: Sequence[Event],
        *,
        base: LedgerBase | None = None,
        payload_hashes: Mapping[int, str] | None = None,
    ) -> Session:
        """Write events exactly as another store holds them: their ids, `seq`s, timestamps
        and payloads are kept, and their chain hashes come out the same as there.

        For moving sessions between stores (`agentledger export`/`import`/`copy`). The
        events either start the session (the session must not exist; the first is its
        `session_created` of `seq` 1, or, with a `base`, the event of seq
        `base.chain_seq + 1`) or continue it (the first `seq` is the session's version
        plus one), so a copy that was cut short continues where it stopped. Shared
        (`app:`/`user:`) state is not changed: the ledger's deltas were applied to it where
        the events were first written; copy it with `update_scoped_state`.

        Args:
            session_id: The session the events belong to.
            events: Consecutive events of that session, in `seq` order.
            base: For a new session whose history was erased or truncated, its
                `LedgerBase` as the source holds it (`read_ledger`): where its ledger and
                its projection start. The imported session verifies with the same
                `first_seq`, erased events and last hash.
            payload_hashes: The stored payload hash of each erased event (`erased=True`,
                its payload gone), by `seq`.

        Returns:
            The session after the events (its own state, without shared state).

        Raises:
            SessionExistsError: The events start a session that already exists.
            SessionNotFoundError: The events continue a session that does not exist.
            ConcurrencyError: They continue a session whose version is not the one
                before their first `seq`.
            InvalidEventError: They are not consecutive, belong to another session, do not
                start where the session starts (`session_created` at `seq` 1, or
                `base.chain_seq + 1`), run backwards in time, do not match `base`, hold an
                erased event without its payload hash, not recorded by an
                `events_erased` event or after the projection base, or do not project to
                a valid session.
            ReadOnlyStoreError: The store was opened read-only.
        """
        self._check_writable()
        validate_session_id(session_id)
        events = list(events)
        if not events:
            raise InvalidEventError("import_events takes at least one event")
        if base is not None and not isinstance(base, LedgerBase):
            raise InvalidEventError(f"base must be a LedgerBase, not {type(base).__name__}")
        first = events[0].seq
        for offset, event in enumerate(events):
            if not isinstance(event, Event):
                raise InvalidEventError(f"import_events takes Event objects, not {type(event).__name__}")
            if event.session_id != session_id:
                raise InvalidEventError(
                    f"event {event.seq} belongs to session {event.session_id!r}, not {session_id!r}"
                )
            if event.seq != first + offset:
                raise InvalidEventError(f"events must be consecutive: seq {event.seq} follows {first + offset - 1}")
            if (event.type == EventType.SESSION_CREATED) != (event.seq == 1):
                raise InvalidEventError("session_created is the event of seq 1, and only it")
        hashes = payload_hashes or {}
        encoded = [encode_stored_event(event, hashes.get(event.seq, "")) for event in events]
        for before, after in zip(encoded, encoded[1:], strict=False):
            if after.timestamp < before.timestamp:
                raise InvalidEventError(f"event {after.seq} is earlier than event {before.seq}")
        new = first == 1 or base is not None
        start = NO_BASE if base is None else base
        if new and first != start.chain_seq + 1:
            raise InvalidEventError(
                f"the session's ledger starts at seq {start.chain_seq + 1}, the events at {first}"
            )
        erased = [r.seq for r in encoded if r.erased]
        if erased:
            recorded: set[int] = set()
            for event in events:
                if event.type == EventType.EVENTS_ERASED and not event.erased:
                    seqs = event.data.get("seqs")
                    if isinstance(seqs, list):
                        recorded.update(s for s in seqs if isinstance(s, int) and s < event.seq)
            if not new or erased[-1] > start.seq or not set(erased) <= recorded:
                raise InvalidEventError(
                    f"event {erased[0]} is erased: an erased event is imported with the "
                    "session's base, before its projection base, and recorded by a later "
                    "events_erased event"
                )
        with self._transaction() as tx:
            row = tx.load_session(session_id)
            if new:
                if row is not None:
                    raise SessionExistsError(session_id)
                current, previous, floor, created_at = None, start.chain_hash, "", None
            else:
                if row is None:
                    raise SessionNotFoundError(session_id)
                if row.version != first - 1:
                    raise ConcurrencyError(session_id, first - 1, row.version)
                current = self._parse_session(
                    row, lambda: tx.load_event_rows(session_id), lambda: tx.load_state(session_id)
                )
                previous = row.last_hash or self._last_hash(tx, session_id, current.version)
                floor, created_at = format_timestamp(current.updated_at), row.created_at
            if encoded[0].timestamp < floor:
                raise InvalidEventError(f"event {first} is earlier than the session's last event")
            rows = self._chained(encoded, previous, floor)
            if start.seq:
                last = rows[-1].seq
                anchor = (
                    start.chain_hash
                    if start.seq == start.chain_seq
                    else rows[start.seq - first].hash
                    if start.seq <= last
                    else None
                )
                if anchor != start.hash:
                    raise InvalidEventError(
                        f"the base's projection base (seq {start.seq}) is not an event imported"
                    )
            try:
                if current is None:
                    updated = self._project_from(rows, start)
                else:
                    updated = project(self._decode_events(rows), current)
            except (CorruptedSessionError, ValueError) as exc:
                detail = exc.detail if isinstance(exc, CorruptedSessionError) else str(exc)
                raise InvalidEventError(f"the events do not make a valid session: {detail}") from exc
            tx.insert_events(rows)
            session_row = self._session_row(updated, created_at, rows[-1].hash)
            self._save_session(
                tx, updated, session_row._replace(base=start.to_json()), new=current is None
            )
        return updated

    def ledger_base(self, session_id: str) -> LedgerBase:
        """The session's `LedgerBase`: where its stored ledger and its projection start
        (`NO_BASE` for a session never erased nor truncated).

        Raises:
            SessionNotFoundError: No such session.
            CorruptedSessionError: The stored base cannot be read.
        """
        validate_session_id(session_id)
        found = self._fetch_session(session_id)
        if found is None:
            raise SessionNotFoundError(session_id)
        return LedgerBase.parse(session_id, found[0].base)

    def read_ledger(self, session_id: str) -> StoredLedger:
        """Read a session's ledger exactly as stored, for moving it to another store:
        its base, every stored event (erased ones too), each erased event's stored payload
        hash, and the last chain hash.

        Raises:
            SessionNotFoundError: No such session.
            CorruptedSessionError: A gap, an event whose hash does not match, or a ledger
                that changed (erased or truncated) while it was read.
        """
        base = self.ledger_base(session_id)
        rows = [
            r if isinstance(r, EventRow) else EventRow(*r)
            for r in self._fetch_event_rows(session_id, after=0, limit=None, last=None, types=None)
        ]
        if not rows:
            raise SessionNotFoundError(session_id)
        self._check_read(session_id, rows, base.chain_seq + 1, base)
        events = self._decode_events(rows)
        hashes = {r.seq: r.payload_hash for r in rows if r.erased}
        if chain_digest(events, base.chain_hash, hashes) != rows[-1].hash:
            raise CorruptedSessionError(
                session_id, "the ledger does not chain from its base (changed while read?)"
            )
        return StoredLedger(base, events, hashes, rows[-1].hash)

    def _replayed(
        self, tx: StoreTransaction, session_id: str, encoded: list[EventRow], keys: list[str]
    ) -> list[Event] | None:
        """The stored events of a batch whose keys are all stored already with the same
        content (a retry), or `None` when none of its keys is stored.

        Raises:
            DuplicateEventKeyError: Some keys are stored and others are new (or some events
                have no key), or a stored key has other content.
        """
        found = {r.key: r for r in tx.load_keyed_rows(session_id, keys)}
        if not found:
            return None
        if len(found) != len(keys) or len(keys) != len(encoded):
            raise DuplicateEventKeyError(
                session_id, [k for k in keys if k in found], "partial_retry"
            )
        different = [
            r.key
            for r in encoded
            if r.key is not None and not self._same_content(r, found[r.key])
        ]
        if different:
            raise DuplicateEventKeyError(session_id, different, "different_content")
        return self._decode_events([found[k] for k in keys])

    @staticmethod
    def _same_content(new: EventRow, stored: EventRow) -> bool:
        """Whether an encoded event is the stored one again: the same type, author,
        invocation id and payload (`data`, `state_delta`, `state_ops`, compared by payload
        hash, which also covers the key); the timestamp is not compared."""
        return (
            new.type == stored.type
            and new.author == stored.author
            and new.invocation_id == stored.invocation_id
            and new.format == stored.format
            and payload_hash(new.data, new.state_delta, new.state_ops, new.state_remove, new.key)
            == stored.payload_hash
        )

    @staticmethod
    def _last_hash(tx: StoreTransaction, session_id: str, version: int) -> str:
        """The chain hash of the session's last event, read from its ledger (when the
        snapshot row does not record it)."""
        rows = tx.load_event_rows(session_id)
        if not rows or rows[-1].seq != version or not rows[-1].hash:
            raise CorruptedSessionError(
                session_id, f"the ledger does not end at seq {version} with a chained event"
            )
        return rows[-1].hash


    # -- fork and rewind ----------------------------------------------------------------

    def fork_session(
        self,
        source_id: str,
        *,
        at_seq: int | None = None,
        new_session_id: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        self._check_writable()
        validate_session_id(source_id)
        check_seq_argument("at_seq", at_seq)
        check_seq_argument("expected_version", expected_version)
        new = new_id() if new_session_id is None else validate_session_id(new_session_id)
        if new == source_id:
            raise SessionExistsError(new)
        now = self._clock()
        # The source is read first, outside the write: a prefix of a ledger never changes
        # (events are only ever added after it), and the write is the new session's alone.
        found = self._fetch_session(source_id)
        if found is None:
            raise SessionNotFoundError(source_id)
        row = found[0]
        if expected_version is not None and expected_version != row.version:
            raise ConcurrencyError(source_id, expected_version, row.version)
        if row.base:
            return self._fork_based(row, at_seq, new, now)
        upto = row.version if at_seq is None else at_seq
        if not 1 <= upto <= row.version:
            raise InvalidEventError(
                f"at_seq must be from 1 to {row.version} (the version of session "
                f"{source_id!r}), not {upto}; nothing was written"
            )
        source_rows: list[EventRow] = []
        if upto < row.version or not self._copies_in_transaction:
            source_rows = [
                r if isinstance(r, EventRow) else EventRow(*r)
                for r in self._fetch_event_rows(
                    source_id, after=0, limit=upto, last=None, types=None
                )
            ]
        if upto == row.version:  # the head: the snapshot is the projection
            base = self._parse_session(row, lambda: source_rows or self._fetch_event_rows(
                source_id, after=0, limit=None, last=None, types=None
            ))
        else:
            base = project(self._decode_events(source_rows))
        base = base.model_copy(update={"id": new})
        copied: list[EventRow] = []
        if not self._copies_in_transaction:
            copied = self._copied(source_id, source_rows, new)
        with self._transaction() as tx:
            if tx.load_session(new) is not None:
                raise SessionExistsError(new)
            if self._copies_in_transaction:
                source_hash, last_hash = tx.copy_events(source_id, new, upto)
            else:
                tx.insert_events(copied)
                source_hash, last_hash = source_rows[-1].hash, copied[-1].hash
            marker = NewEvent(
                type=EventType.SESSION_FORKED,
                author="system",
                data={"source_id": source_id, "source_seq": upto, "source_hash": source_hash},
            )
            (forked,) = self._chained(
                [self._encode(new, upto + 1, marker, now)],
                last_hash,
                format_timestamp(base.updated_at),
            )
            updated = project(self._decode_events([forked]), base)
            tx.insert_events([forked])
            self._save_session(
                tx, updated, self._session_row(updated, row.created_at, forked.hash), new=True
            )
        return self.get_session(new)

    def _fork_based(self, row: SessionRow, at_seq: int | None, new: str, now: datetime) -> Session:
        """Fork a session whose history was erased or truncated: the fork holds the same
        stored events (erased ones erased, keeping their payload hashes) from the source's
        `chain_seq + 1` to `at_seq`, under new ids, chained anew from the source's
        `chain_hash`, and a base of its own (the source's, with the fork's id and hashes).

        Raises:
            InvalidEventError: `at_seq` before the source's projection base or where its
                ledger starts (the session there cannot be rebuilt).
            CorruptedSessionError: The source's events do not verify.
        """
        source_id = row.id
        base = LedgerBase.parse(source_id, row.base)
        upto = row.version if at_seq is None else at_seq
        rows = [
            r if isinstance(r, EventRow) else EventRow(*r)
            for r in self._fetch_event_rows(
                source_id, after=base.chain_seq, limit=row.version - base.chain_seq, last=None,
                types=None,
            )
        ]
        # The fork starts where the session can be rebuilt (the projection base), and holds
        # the events_erased records of the erased events it copies.
        low = max(base.seq, base.chain_seq + 1)
        for r in rows:
            if r.type == EventType.EVENTS_ERASED and not r.erased and r.seq > low:
                low = r.seq
        if not low <= upto <= row.version:
            raise InvalidEventError(
                f"at_seq must be from {low} to {row.version} for session {source_id!r} (its "
                f"history up to seq {low} was erased or truncated), not {upto}; nothing was "
                "written"
            )
        rows = rows[: upto - base.chain_seq]
        problem: tuple[int, str] | None = None
        for i, r in enumerate(rows, base.chain_seq + 1):
            if r.seq != i:
                problem = (i, f"event {i} is missing (found seq {r.seq} instead)")
                break
        if problem is None and len(rows) != upto - base.chain_seq:
            problem = (base.chain_seq + len(rows) + 1, "an event is missing")
        problem = problem or self._chain_problem(
            rows, base.chain_hash, payloads=self._payload_is_canonical
        )
        if problem is not None:
            raise CorruptedSessionError(source_id, f"event {problem[0]}: {problem[1]}", seq=problem[0])
        ids = iter(new_ids(len(rows)))
        copied: list[EventRow] = []
        previous = base.chain_hash
        for r in rows:
            event_id = next(ids)
            digest = event_hash(
                previous, new, r.seq, event_id, r.type, r.author, r.timestamp,
                r.invocation_id, r.payload_hash, r.format,
            )
            copied.append(r._replace(id=event_id, session_id=new, hash=digest))
            previous = digest
        start = None
        if base.seq:
            start = Session.model_validate_json(base.session).model_copy(update={"id": new})
        fork_base = LedgerBase(
            base.chain_seq,
            base.chain_hash,
            base.seq,
            ""
            if not base.seq
            else base.chain_hash
            if base.seq == base.chain_seq
            else copied[base.seq - base.chain_seq - 1].hash,
            "" if start is None else start.model_dump_json(),
        )
        at_upto = self._project_from(copied, fork_base)
        with self._transaction() as tx:
            if tx.load_session(new) is not None:
                raise SessionExistsError(new)
            marker = NewEvent(
                type=EventType.SESSION_FORKED,
                author="system",
                data={"source_id": source_id, "source_seq": upto, "source_hash": rows[-1].hash},
            )
            (forked,) = self._chained(
                [self._encode(new, upto + 1, marker, now)],
                copied[-1].hash,
                format_timestamp(at_upto.updated_at),
            )
            updated = project(self._decode_events([forked]), at_upto)
            tx.insert_events([*copied, forked])
            session_row = self._session_row(updated, row.created_at, forked.hash)
            self._save_session(tx, updated, session_row._replace(base=fork_base.to_json()), new=True)
        return self.get_session(new)

    @staticmethod
    def _copied(source_id: str, rows: Sequence[EventRow], session_id: str) -> list[EventRow]:
        """The rows as a fork's copy: the fork's session id, new event ids, the same seqs,
        timestamps and payloads (so the same payload hashes), chained anew from `GENESIS`.

        Raises:
            CorruptedSessionError: The rows do not run from seq 1 without a gap, or one
                does not match its chain hash: a damaged history is never copied.
        """
        headers = (
            (
                r.seq, r.id, r.type, r.author, r.timestamp, r.invocation_id, r.payload_hash,
                r.hash, r.format,
            )
            for r in rows
        )
        chained, bad = rechain(headers, source_id, session_id, iter(new_ids(len(rows))))
        if bad is not None or not chained:
            raise copy_refused(source_id, bad or 1)
        return [
            row._replace(id=event_id, session_id=session_id, hash=digest)
            for row, (_, event_id, digest) in zip(rows, chained, strict=True)
        ]

    def rewind(
        self,
        session_id: str,
        *,
        to_seq: int | None = None,
        before_invocation: str | None = None,
        then: Sequence[NewEvent] = (),
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        self._check_writable()
        validate_session_id(session_id)
        check_seq_argument("to_seq", to_seq)
        check_seq_argument("expected_version", expected_version)
        if (to_seq is None) == (before_invocation is None):
            raise InvalidEventError(
                "rewind takes either to_seq or before_invocation (one of them); nothing was written"
            )
        if before_invocation is not None and (
            not isinstance(before_invocation, str) or not before_invocation
        ):
            raise InvalidEventError(
                f"before_invocation must be a non-empty string, not {before_invocation!r}"
            )
        then = list(then)
        for event in then:
            _check_appendable(event)
        plugins = self.plugins
        if plugins is not None and plugins.has_before_append and then:
            before = self.get_session(session_id) if plugins.before_append_wants_session else None
            then = plugins.run_before_append(before, then, self, creating=False)
        now = self._clock()
        encoded = [self._encode(session_id, 0, event, now) for event in then]
        with self._transaction() as tx:
            row = tx.load_session(session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            if expected_version is not None and expected_version != row.version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            ledger = tx.load_event_rows(session_id)
            current, rebuilt = self._parse_or_rebuild(
                row, lambda: ledger, lambda: tx.load_state(session_id)
            )
            if current.status == Status.TERMINATED:
                raise InvalidTransitionError(
                    f"session {session_id!r} is terminated; it cannot be rewound "
                    "(fork it at an earlier seq instead)"
                )
            # An erased or truncated session is rewound from its base: to its projection
            # base at the earliest (the session before it cannot be rebuilt).
            base = LedgerBase.parse(session_id, row.base)
            ledger = [r for r in ledger if r[2] > base.chain_seq]
            self._check_read(session_id, ledger, base.chain_seq + 1, base)
            committed = ledger[: current.version - base.chain_seq]
            events = self._decode_events(committed)
            if before_invocation is not None:
                target = self._invocation_start(events, before_invocation) - 1
            else:
                assert to_seq is not None
                target = to_seq
            low = base.seq or 1
            if not low <= target <= current.version:
                raise InvalidEventError(
                    f"to_seq must be from {low} to {current.version} (the session's version"
                    + (
                        f"; its history before seq {low} was erased or truncated"
                        if base.seq
                        else ""
                    )
                    + f"), not {target}; nothing was written"
                )
            restored = (
                current
                if target == current.version
                else self._project_from(committed[: target - base.chain_seq], base)
            )
            check_append(restored, then, self.lifecycle)
            if expected_state:
                self._check_expected_state(tx, current, expected_state)
            data: dict[str, Any] = {"to_seq": target}
            if before_invocation is not None:
                data["before_invocation"] = before_invocation
            marker = self._encode(
                session_id, 0, NewEvent(type=EventType.REWOUND, author="system", data=data), now
            )
            rows = self._chained(
                [r._replace(seq=current.version + i) for i, r in enumerate([marker, *encoded], 1)],
                row.last_hash or self._last_hash(tx, session_id, current.version),
                format_timestamp(current.updated_at),
            )
            _, stored = self._write(
                tx,
                current,
                session_id,
                rows,
                row.created_at,
                at={target: restored},
                replace_state=rebuilt,
            )
        if plugins is not None and plugins.has_after_hooks:
            plugins.run_after_append(self.get_session(session_id), stored, self)
        return stored

    @staticmethod
    def _invocation_start(events: Sequence[Event], invocation_id: str) -> int:
        """The seq of the first event in effect of an invocation.

        Raises:
            InvalidEventError: No event in effect belongs to it.
        """
        rewinds = {
            e.seq: int(e.data["to_seq"]) for e in events if e.type == EventType.REWOUND
        }
        head = events[-1].seq if events else 0
        offset = events[0].seq if events else 1  # a truncated ledger starts past seq 1
        for first, last in effective_ranges(head, rewinds):
            for event in events[max(first - offset, 0) : max(last - offset + 1, 0)]:
                if event.invocation_id == invocation_id:
                    return event.seq
        raise InvalidEventError(
            f"no event in effect belongs to invocation {invocation_id!r}; nothing was written"
        )

    # -- reads --------------------------------------------------------------------------

    def get_session(self, session_id: str) -> Session:
        validate_session_id(session_id)
        found = self._fetch_session(session_id)
        if found is None:
            raise SessionNotFoundError(session_id)
        row, app_raw, user_raw = found
        session = self._parse_session(
            row,
            lambda: self._fetch_event_rows(session_id, after=0, limit=None, last=None, types=None),
        )
        return self._with_scoped(session, app_raw, user_raw)

    def read_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        last: int | None = None,
        types: Sequence[str] | None = None,
        after_timestamp: datetime | None = None,
        before_timestamp: datetime | None = None,
        keys: Sequence[str] | None = None,
        key_prefix: str | None = None,
        data_match: Mapping[str, Any] | None = None,
        effective: bool = False,
    ) -> list[Event]:
        validate_session_id(session_id)
        if not isinstance(effective, bool):
            raise ConfigurationError(f"effective must be True or False, not {effective!r}")
        selection: dict[str, Any] = {}
        if keys is not None:
            if isinstance(keys, str) or not isinstance(keys, Sequence):
                raise ConfigurationError(f"keys must be a list of strings, not {keys!r}")
            if len(keys) > MAX_READ_KEYS:
                raise ConfigurationError(
                    f"keys holds {len(keys)} keys; the limit is {MAX_READ_KEYS} per read"
                )
            selection["keys"] = list(dict.fromkeys(_read_key(k, "a key of keys") for k in keys))
        if key_prefix is not None:
            selection["key_prefix"] = _read_key(key_prefix, "key_prefix")
        if data_match is not None:
            selection["data_match"] = check_data_match(data_match)
        if effective and selection:
            raise ConfigurationError(
                "effective=True reads the events in effect in order; it does not combine "
                "with keys, key_prefix or data_match"
            )
        bounds: list[str | None] = []
        for name, moment in (
            ("after_timestamp", after_timestamp),
            ("before_timestamp", before_timestamp),
        ):
            if moment is not None and (
                not isinstance(moment, datetime) or moment.utcoffset() is None
            ):
                raise ConfigurationError(f"{name} must be an aware datetime, not {moment!r}")
            bounds.append(None if moment is None else format_timestamp(moment))
        if isinstance(after, bool) or not isinstance(after, int):
            raise ConfigurationError(f"after must be an int, not {after!r}")
        for name, value in (("limit", limit), ("last", last)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigurationError(f"{name} must be a non-negative int, not {value!r}")
        # No seq is that large: clamp so every driver takes the number (SQLite and
        # PostgreSQL integers are 64-bit), with the same answer.
        after = min(after, _MAX_SEQ)
        limit = None if limit is None else min(limit, _MAX_SEQ)
        last = None if last is None else min(last, _MAX_SEQ)
        if isinstance(types, str):
            types = [types]
        windowed = bounds != [None, None]
        if selection.get("keys") == []:  # none asked for: none found
            if not self._session_exists(session_id):
                raise SessionNotFoundError(session_id)
            return []
        if effective:
            found = self._effective_rows(session_id, after, bounds, types)
            if found is not None:
                if last is not None:
                    found = found[max(len(found) - last, 0) :] if last else []
                elif limit is not None:
                    found = found[:limit]
                return self._decode_events(found)
        rows = self._fetch_event_rows(
            session_id,
            after=after,
            limit=limit,
            last=last,
            types=list(types) if types else None,
            **({"after_ts": bounds[0], "before_ts": bounds[1]} if windowed else {}),  # type: ignore[arg-type]
            **selection,
        )
        if not rows and not self._session_exists(session_id):
            raise SessionNotFoundError(session_id)
        if not types and not selection:  # checked where cheap: no gap, and the chain between the rows
            # (a time window starts anywhere: time never runs backwards, so it is contiguous)
            unbounded = last is None and not windowed and isinstance(after, int)
            first = max(after, 0) + 1 if unbounded else None
            self._check_read(session_id, rows, first)
        return self._decode_events(rows)

    def read_feed(self, after: int = 0, limit: int = 1000) -> list[FeedEvent]:
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigurationError(f"after must be a non-negative int, not {after!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigurationError(f"limit must be an int from 1 to 10000, not {limit!r}")
        pairs = self._fetch_feed(min(after, _MAX_SEQ), limit)
        events = self._decode_events([row for _, row in pairs])
        # Built without validation: positions are ints from the store, events are decoded.
        return [
            FeedEvent.model_construct(position=p, event=e)
            for (p, _), e in zip(pairs, events, strict=True)
        ]

    def feed_position(self) -> int:
        return self._feed_position()

    def get_event(self, session_id: str, key: str) -> Event | None:
        validate_session_id(session_id)
        found = self.read_events(session_id, keys=[_read_key(key, "key")])
        return found[0] if found else None

    def _effective_rows(
        self,
        session_id: str,
        after: int,
        bounds: list[str | None],
        types: Sequence[str] | None,
    ) -> list[EventRow] | None:
        """The rows of `read_events(effective=True)` before `limit`/`last`, or `None` when
        the session was never rewound (every event is in effect: read as usual)."""
        found = self._fetch_session(session_id)
        if found is None:
            raise SessionNotFoundError(session_id)
        head = found[0].version  # read first: later commits only add rows after it
        markers = [
            m
            for m in self._fetch_event_rows(
                session_id, after=0, limit=None, last=None, types=[EventType.REWOUND.value]
            )
            if m[2] <= head
        ]
        if not markers:
            return None
        rewinds: dict[int, int] = {}
        for marker in self._decode_events(markers):
            target = marker.data.get("to_seq")
            if type(target) is not int:
                raise CorruptedSessionError(
                    session_id, f"event {marker.seq}: rewound has no int to_seq", seq=marker.seq
                )
            rewinds[marker.seq] = target
        ranges = effective_ranges(head, rewinds)
        # Read whole, so the usual checks (no gap, the chain) run, then keep what is in effect.
        rows = self._fetch_event_rows(
            session_id,
            after=after,
            limit=None,
            last=None,
            types=None,
            after_ts=bounds[0],
            before_ts=bounds[1],
        )
        self._check_read(session_id, rows, max(after, 0) + 1 if bounds == [None, None] else None)
        wanted = set(types) if types else None
        kept: list[EventRow] = []
        index = 0
        for row in rows:
            seq = row[2]
            while index < len(ranges) and ranges[index][1] < seq:
                index += 1
            if index == len(ranges):
                break
            if ranges[index][0] <= seq and (wanted is None or row[3] in wanted):
                kept.append(row)
        return kept

    def verify_session(self, session_id: str) -> VerifyReport:
        validate_session_id(session_id)
        if not self._session_exists(session_id):
            raise SessionNotFoundError(session_id)

        def bad(seq: int | None, problem: str, events: int = 0) -> VerifyReport:
            return VerifyReport(
                session_id=session_id, ok=False, events=events, first_bad_seq=seq, problem=problem
            )

        # The session's row first: a commit landing meanwhile only adds events after it.
        try:
            found = self._fetch_session(session_id)
            snapshot_error = None
        except CorruptedSessionError as exc:
            found, snapshot_error = None, exc
        try:
            base = NO_BASE if found is None else LedgerBase.parse(session_id, found[0].base)
        except CorruptedSessionError as exc:
            return bad(None, exc.detail)
        try:
            rows = [
                r if isinstance(r, EventRow) else EventRow(*r)
                for r in self._fetch_event_rows(
                    session_id, after=0, limit=None, last=None, types=None
                )
            ]
        except CorruptedSessionError as exc:
            return bad(exc.seq, exc.detail)
        for i, row in enumerate(rows, base.chain_seq + 1):
            if row.seq != i:
                return bad(i, f"event {i} is missing (found seq {row.seq} instead)", len(rows))
        erasures: set[int] = set()
        for row in rows:
            if row.type == EventType.EVENTS_ERASED and not row.erased:
                try:
                    erasures.update(s for s in json.loads(row.data)["seqs"] if s < row.seq)
                except (ValueError, TypeError, KeyError):
                    pass  # its payload hash does not match, or it cannot be read: below
        problem = self._chain_problem(rows, base.chain_hash, payloads=True, erasures=erasures)
        if problem is not None:
            return bad(problem[0], problem[1], len(rows))
        if snapshot_error is not None:
            return bad(snapshot_error.seq, snapshot_error.detail, len(rows))
        if found is None:
            return bad(None, "the session disappeared while it was verified", len(rows))
        snapshot = found[0]
        version = snapshot.version
        end = base.chain_seq + len(rows)
        if version > end:
            return bad(
                end + 1,
                (
                    f"acknowledged event {version} is missing"
                    if version == end + 1
                    else f"acknowledged events {end + 1} to {version} are missing"
                )
                + f" (the ledger ends at seq {end})",
                len(rows),
            )
        committed = rows[: version - base.chain_seq]
        if committed and snapshot.last_hash not in ("", committed[-1].hash):
            return bad(
                version, "the last event is not the one the session's last commit recorded", len(rows)
            )
        if base.seq:
            anchor = (
                base.chain_hash
                if base.seq == base.chain_seq
                else committed[base.seq - base.chain_seq - 1].hash
                if base.seq <= version
                else None
            )
            if anchor != base.hash:
                return bad(base.seq, "the projection base is not the event the ledger holds", len(rows))
        late = [r.seq for r in committed if r.erased and r.seq > base.seq]
        if late:
            return bad(late[0], "an erased event comes after the projection base", len(rows))
        try:
            projected = self._project_from(committed, base)
        except (ValueError, CorruptedSessionError) as exc:
            return bad(None, f"the session cannot be rebuilt from its ledger: {exc}", len(rows))
        try:
            stored = self._stored_session(snapshot)
        except (ValueError, RecursionError) as exc:
            # Reads rebuild such a session from its ledger; its next write stores it anew.
            return bad(
                None, f"the session's stored snapshot or state cannot be read: {exc}", len(rows)
            )
        if stored.model_dump() != projected.model_dump():
            return bad(None, "the session's snapshot does not match its ledger", len(rows))
        last_hash = rows[-1].hash if rows else ""
        return VerifyReport(
            session_id=session_id,
            ok=True,
            events=len(rows),
            last_hash=last_hash,
            first_seq=base.chain_seq + 1,
            erased=sum(1 for r in rows if r.erased),
        )

    def list_sessions(
        self,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        agent_name: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "updated_desc",
    ) -> SessionPage:
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ConfigurationError(f"limit must be an int from 1 to 1000, not {limit!r}")
        statuses = [s.value for s in Status]
        if status is not None and status not in statuses:
            raise ConfigurationError(f"status must be one of {', '.join(statuses)}, not {status!r}")
        phases = self.lifecycle.phases
        if phase is not None and phase not in phases:
            raise ConfigurationError(f"phase must be one of {', '.join(phases)}, not {phase!r}")
        column, _ = session_order(order)
        where = SessionFilter(
            app_name, user_id, agent_name, status, phase, updated_after, updated_before, order
        )
        after_key = _decode_cursor(cursor, order) if cursor else None
        found = self._fetch_session_page(where, after_key, limit + 1)
        sessions: list[Session] = []
        corrupted: list[str] = []
        for row, app_raw, user_raw in found[:limit]:
            try:
                session = self._parse_session(
                    row,
                    lambda sid=row.id: self._fetch_event_rows(  # type: ignore[misc]
                        sid, after=0, limit=None, last=None, types=None
                    ),
                )
                sessions.append(self._with_scoped(session, app_raw, user_raw))
            except CorruptedSessionError:
                corrupted.append(row.id)
        next_cursor = None
        if len(found) > limit:
            last_row = found[limit - 1][0]
            stamp = last_row.created_at if column == "created_at" else last_row.updated_at
            next_cursor = _encode_cursor((stamp, last_row.id), order)
        return SessionPage(sessions=sessions, next_cursor=next_cursor, corrupted=corrupted)

    # -- shared state without a session --------------------------------------------------

    @staticmethod
    def _scoped_keys(what: str, values: Any, user_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a mapping of `app:`/`user:` keys into the app part and the user part
        (prefixes removed); any other key is an `InvalidEventError`."""
        if not isinstance(values, Mapping):
            raise InvalidEventError(f"{what} must be a JSON object (a mapping), not {values!r}")
        allowed = (APP_PREFIX,) if user_id is None else (APP_PREFIX, USER_PREFIX)
        bad = [k for k in values if not isinstance(k, str) or not k.startswith(allowed)]
        if bad:
            scopes = " or ".join(f"{p!r}" for p in allowed)
            why = "" if user_id is not None else " (user: keys need a user_id)"
            raise InvalidEventError(
                f"{what} takes keys starting with {scopes} only{why}, not "
                f"{', '.join(map(repr, bad))}; nothing was written"
            )
        parts = split_delta(values)
        return parts.app, parts.user

    def get_scoped_state(self, app_name: str, user_id: str | None = None) -> dict[str, Any]:
        check_scope(app_name, user_id)
        raw = self._fetch_scoped(app_name, user_id)
        prefix = APP_PREFIX if user_id is None else USER_PREFIX
        state = self._decode_scoped("", raw)
        return {prefix + k: v for k, v in state.items()}

    def update_scoped_state(
        self,
        app_name: str,
        user_id: str | None,
        delta: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        expected_state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._check_writable()
        check_scope(app_name, user_id)
        app_delta, user_delta = self._scoped_keys("delta", delta, user_id)
        plugins = self.plugins
        if plugins is not None and plugins.has_before_state_update:
            delta = plugins.run_before_state_update(app_name, user_id, dict(delta), self)
            app_delta, user_delta = self._scoped_keys("delta", delta, user_id)
        if isinstance(remove, str) or not isinstance(remove, Sequence):
            raise InvalidEventError(f"remove must be a list of state keys, not {remove!r}")
        app_remove, user_remove = self._scoped_keys("remove", dict.fromkeys(remove), user_id)
        both = sorted(set(remove) & set(delta))
        if both:
            raise InvalidEventError(
                f"state keys {both} are both set in delta and removed; nothing was written"
            )
        wanted_app, wanted_user = (
            self._scoped_keys("expected_state", expected_state, user_id)
            if expected_state is not None
            else ({}, {})
        )
        check_nesting(dict(delta), "scoped state delta")
        try:
            size = len(canonical_json(dict(delta)).encode())
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(f"the scoped state delta is not JSON: {exc}") from exc
        if size > self.max_event_bytes:
            raise EventTooLargeError(size, self.max_event_bytes, "the scoped state delta")
        scope = f"app {app_name!r}" + ("" if user_id is None else f" user {user_id!r}")

        def change(
            app: dict[str, Any], user: dict[str, Any]
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            changed = [APP_PREFIX + k for k, v in wanted_app.items() if app.get(k) != v]
            changed += [USER_PREFIX + k for k, v in wanted_user.items() if user.get(k) != v]
            if changed:
                raise StateConflictError("", changed, 0, scope=scope)
            new_app = apply_delta(app, app_delta, app_remove) if app_delta or app_remove else app
            new_user = (
                apply_delta(user, user_delta, user_remove) if user_delta or user_remove else user
            )
            check_nesting(new_app, "app: state")
            check_nesting(new_user, "user: state")
            result.clear()
            result.update(
                {APP_PREFIX + k: v for k, v in new_app.items()}
                if user_id is None
                else {USER_PREFIX + k: v for k, v in new_user.items()}
            )
            return new_app, new_user

        result: dict[str, Any] = {}
        if not (app_delta or user_delta or app_remove or user_remove or wanted_app or wanted_user):
            return self.get_scoped_state(app_name, user_id)
        self._update_scoped(app_name, user_id, change)
        return result

    def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        self._check_writable()
        validate_session_id(session_id)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ConfigurationError(f"expected_version must be an int, not {expected_version!r}")
        if not self._delete_session(session_id, expected_version):
            raise SessionNotFoundError(session_id)

    # -- erase and truncate --------------------------------------------------------------

    def _append_transaction(self) -> AbstractContextManager[StoreTransaction]:
        """The write transaction of `append`; a backend that commits concurrent appends
        together (SQLite's group commit) overrides it. Everything `append` reads inside it
        goes through the transaction."""
        return self._transaction()

    def _erase_transaction(self) -> AbstractContextManager[StoreTransaction]:
        """The write transaction of `erase_events` and `truncate_before`; a backend that
        must prepare its connection for them (SQLite's `secure_delete`) overrides it."""
        return self._transaction()

    def erase_events(
        self,
        session_id: str,
        seqs: Sequence[int],
        reason: str,
        *,
        expected_version: int | None = None,
    ) -> Event:
        self._check_writable()
        validate_session_id(session_id)
        wanted = check_erase_args(seqs, reason)
        check_version_arg(expected_version)
        event = NewEvent(
            type=EventType.EVENTS_ERASED, author="system", data={"seqs": wanted, "reason": reason}
        )
        encoded = self._encode(session_id, 0, event, self._clock())
        with self._erase_transaction() as tx:
            row = tx.load_session(session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            if expected_version is not None and expected_version != row.version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            current, rebuilt = self._parse_or_rebuild(
                row, lambda: tx.load_event_rows(session_id), lambda: tx.load_state(session_id)
            )
            base = LedgerBase.parse(session_id, row.base)
            outside = [s for s in wanted if not base.chain_seq < s <= current.version]
            if outside:
                raise ConfigurationError(
                    f"cannot erase event{'s' if len(outside) > 1 else ''} "
                    f"{', '.join(map(str, outside))} of session {session_id!r}: its ledger holds "
                    f"seqs {base.chain_seq + 1} to {current.version}; nothing was erased"
                )
            kinds = {r[2]: r[3] for r in tx.load_event_rows(session_id) if r[2] in set(wanted)}
            records = [s for s in wanted if kinds.get(s) == EventType.EVENTS_ERASED]
            if records:
                raise ConfigurationError(
                    f"event {records[0]} of session {session_id!r} is an events_erased event: "
                    "it records erasures and cannot be erased itself (truncate the ledger "
                    "before it instead); nothing was erased"
                )
            # A rewind's target and a fork's lineage drive the projection: they stay.
            kept = [s for s in wanted if kinds.get(s) in _NOT_ERASABLE]
            if kept:
                raise ConfigurationError(
                    f"event {kept[0]} of session {session_id!r} is a {kinds[kept[0]]} event: "
                    "the session's projection reads its data, so it cannot be erased "
                    "(truncate the ledger before it instead); nothing was erased"
                )
            previous = row.last_hash or self._last_hash(tx, session_id, current.version)
            # The projection is re-based on the session as it is now, so no erased event is
            # ever folded again and the snapshot still equals the projection from the base.
            new_base = base._replace(
                seq=current.version, hash=previous, session=current.model_dump_json()
            )
            tx.erase_event_rows(session_id, wanted)
            tx.save_base(session_id, new_base.to_json())
            rows = self._chained(
                [encoded._replace(seq=current.version + 1)],
                previous,
                format_timestamp(current.updated_at),
            )
            _, stored = self._write(
                tx, current, session_id, rows, row.created_at, replace_state=rebuilt
            )
        return stored[0]

    def truncate_before(
        self, session_id: str, seq: int, *, expected_version: int | None = None
    ) -> int:
        self._check_writable()
        validate_session_id(session_id)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ConfigurationError(f"seq must be an int >= 1, not {seq!r}")
        check_version_arg(expected_version)
        with self._erase_transaction() as tx:
            row = tx.load_session(session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            if expected_version is not None and expected_version != row.version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            if seq > row.version:
                raise ConfigurationError(
                    f"cannot truncate session {session_id!r} before seq {seq}: its last event "
                    f"is seq {row.version}, and the last event always stays; nothing was dropped"
                )
            base = LedgerBase.parse(session_id, row.base)
            if seq <= base.chain_seq + 1:
                return 0  # nothing stored before it
            rows = [r for r in tx.load_event_rows(session_id) if r[2] > base.chain_seq]
            self._check_read(session_id, rows, base.chain_seq + 1, base)
            cut = seq - 1  # the last dropped event
            chain_hash = rows[cut - base.chain_seq - 1][10]
            if base.seq >= cut:
                new_base = base._replace(chain_seq=cut, chain_hash=chain_hash)
            else:
                # The projection base: the cut, or later when a `rewound` event after it goes
                # back before it (a fold from the base could not rebuild that session).
                at = cut
                rewinds = self._rewind_targets(rows)
                while moved := [r for r, to in rewinds.items() if r > at and to < at]:
                    at = max(moved)
                at_base = self._project_from(rows[: at - base.chain_seq], base)
                last = rows[at - base.chain_seq - 1][10]
                new_base = LedgerBase(cut, chain_hash, at, last, at_base.model_dump_json())
            tx.save_base(session_id, new_base.to_json())
            tx.drop_event_rows(session_id, seq)
        return cut - base.chain_seq

    @staticmethod
    def _rewind_targets(rows: Sequence[EventRow]) -> dict[int, int]:
        """The seq of each `rewound` event among the rows -> the seq it goes back to."""
        targets: dict[int, int] = {}
        for row in rows:
            if row[3] == EventType.REWOUND:
                try:
                    targets[row[2]] = int(json.loads(row[7])["to_seq"])
                except (ValueError, TypeError, KeyError):
                    pass  # an erased one (at or before the base), or damage verify reports
        return targets

    def compact(self) -> None:
        self._check_writable()
