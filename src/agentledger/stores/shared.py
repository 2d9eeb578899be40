"""The store contract implemented once: `BaseStore` and the rows backends keep.

`BaseStore` implements `SessionStore` on top of a few primitives a backend provides (a write
transaction that loads and saves rows, and a handful of reads), so validation, seq
assignment, the projection and scoped state behave the same on every store. Rows are plain
JSON text: the memory store keeps exactly what SQLite keeps.
"""

from __future__ import annotations

import base64
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from itertools import chain
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from pydantic import ValidationError

from agentledger._ids import new_id
from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash
from agentledger.core.events import Event, EventType, NewEvent
from agentledger.core.lifecycle import DEFAULT_LIFECYCLE, Lifecycle, check_append, check_create
from agentledger.core.projection import project
from agentledger.core.session import Session, Status, validate_session_id
from agentledger.core.state import (
    APP_PREFIX,
    TEMP_PREFIX,
    USER_PREFIX,
    apply_delta,
    merge_scoped_state,
    split_delta,
    strip_temp,
)
from agentledger.core.state_ops import apply_ops, split_ops
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    EventTooLargeError,
    InvalidEventError,
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
    "SessionRow",
    "StoreTransaction",
    "check_scope",
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


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
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


def _encode_payload(event: NewEvent) -> tuple[str, str, str, int]:
    """Return the event's `data`, `state_delta` and `state_ops` (without `temp:` keys) as
    canonical JSON text (keys sorted, so the payload hash is the same on every store), and
    its size (`event_size`)."""
    try:
        data = canonical_json(event.data)
        delta = canonical_json(strip_temp(event.state_delta))
        ops = canonical_json([op for op in event.state_ops if not _is_temp_op(op)])
        # UTF-8 sizes; encoding also refuses lone surrogates, which JSON text cannot hold.
        size = sum(
            len(text.encode())
            for text in (data, delta, event.type, event.author, event.invocation_id or "")
        ) + (len(ops.encode()) if ops != "[]" else 0)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"{event.type} event holds a value JSON cannot hold: {exc}") from exc
    return data, delta, ops, size


def event_size(event: NewEvent) -> int:
    """The size of an event as the built-in stores count it against `max_event_bytes`.

    Args:
        event: The event, before it is appended.

    Returns:
        Bytes: the UTF-8 length of its `data`, `state_delta` and `state_ops` (without
        `temp:` keys; no operations count 0) as compact JSON, plus its type, author and
        invocation id.

    Raises:
        InvalidEventError: A value JSON cannot hold (NaN, an object that is not JSON) or
            text that is not valid Unicode (a lone surrogate).
    """
    return _encode_payload(event)[3]


class EventRow(NamedTuple):
    """An event as a store keeps it: scalar columns plus `data`, `state_delta` and
    `state_ops` as JSON text (canonical: keys sorted, compact; `state_ops` is `"[]"` for an
    event without operations), and its `payload_hash` and chain `hash`
    (`agentledger.core.chain`)."""

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

    @abstractmethod
    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        """Return the app's (`user_id=None`) or the user's shared state as JSON, or `None`."""

    @abstractmethod
    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        """Replace the app's or user's shared state with `state` (JSON)."""

    @abstractmethod
    def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Add event rows to the ledger."""

    @abstractmethod
    def save_session(self, row: SessionRow, *, new: bool) -> None:
        """Insert (`new=True`) or replace the session's snapshot row."""


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


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BaseStore(SessionStore, ABC):
    """The store contract implemented once over a backend's primitives.

    Args:
        max_event_bytes: The largest event accepted, in bytes: the UTF-8 size of its
            `data` and `state_delta` JSON plus its type, author and invocation id.
        clock: Returns the current UTC time; stamps every event written without a
            timestamp (public as `clock`; `SessionManager` uses it for idle times and
            cut-offs, so one clock stamps and decides). A time earlier than the session's
            last event (a clock that went backwards, or a caller's timestamp) is raised to
            that event's time.
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

    def use_plugins(self, host: PluginHost | None) -> None:
        """Run these plugins' hooks around every write from now on (`open_store` calls it
        with the plugins it was given).

        Args:
            host: The plugins (`agentledger.plugins.resolve_plugins`); `None` for none.
        """
        self.plugins = host

    @property
    def clock(self) -> Callable[[], datetime]:
        """The store's clock (UTC): it stamps every event written without a timestamp."""
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
    ) -> list[EventRow]:
        """Return matching event rows in `seq` order (see `read_events`); `after_ts` and
        `before_ts` (formatted by `format_timestamp`) bound `timestamp` strictly, and
        `limit`/`last` count the rows within them."""

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

    def _encode(self, session_id: str, seq: int, event: NewEvent, now: datetime) -> EventRow:
        check_nesting(event.data, f"{event.type} event data")
        check_nesting(event.state_delta, f"{event.type} event state_delta")
        check_nesting(event.state_ops, f"{event.type} event state_ops")
        data, delta, ops, size = _encode_payload(event)
        try:
            timestamp = format_timestamp(event.timestamp or now)
        except OverflowError as exc:
            raise InvalidEventError(
                f"{event.type} event timestamp is out of range once converted to UTC: {exc}"
            ) from exc
        if size > self.max_event_bytes:
            raise EventTooLargeError(size, self.max_event_bytes)
        return EventRow(
            new_id(),
            session_id,
            seq,
            event.type,
            event.author,
            timestamp,
            event.invocation_id,
            data,
            delta,
            state_ops=ops,
        )

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
            payload = payload_hash(row.data, row.state_delta, row.state_ops)
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
            )
            chained.append(row._replace(timestamp=stamp, payload_hash=payload, hash=digest))
            previous, floor = digest, stamp
        return chained

    def _chain_problem(
        self, rows: Sequence[EventRow | Sequence[Any]], previous: str | None, *, payloads: bool
    ) -> tuple[int, str] | None:
        """The first event of a contiguous run of rows that breaks the chain, and why.

        Args:
            rows: Event rows (`EventRow` or tuples in its order) in `seq` order, without
                gaps (checked by the caller).
            previous: The hash the first row chains from; `None` checks only the links
                between the rows.
            payloads: Also recompute each payload hash from `data`, `state_delta` and
                `state_ops`.
        """
        canonical = self._payload_is_canonical
        for row in rows:
            # By position (EventRow order), as SQL rows come as plain tuples.
            if payloads:
                data, delta = row[7], row[8]
                ops = row[11] if len(row) > 11 else "[]"
                if not canonical:
                    try:
                        data, delta, ops = (
                            canonical_json(json.loads(data)),
                            canonical_json(json.loads(delta)),
                            canonical_json(json.loads(ops)),
                        )
                    except (TypeError, ValueError):
                        return row[2], "its data, state_delta or state_ops is not JSON"
                if payload_hash(data, delta, ops) != row[9]:
                    return row[2], (
                        "its data, state_delta or state_ops was changed (payload hash mismatch)"
                    )
            if previous is not None:
                expected = event_hash(
                    previous, row[1], row[2], row[0], row[3], row[4], row[5], row[6], row[9]
                )
                if expected != row[10]:
                    return row[2], "its header or the chain before it was changed (hash mismatch)"
            previous = row[10]
        return None

    def _check_read(self, session_id: str, rows: Sequence[EventRow], first: int | None) -> None:
        """Check rows read back: no gap in `seq` (starting at `first` when given), and the
        chain between them (from `GENESIS` when they start at seq 1).

        Raises:
            CorruptedSessionError: A gap, or an event whose hash does not match.
        """
        if not rows:
            return
        start = rows[0][2] if first is None else first
        for i, row in enumerate(rows):
            if row[2] != start + i:
                raise CorruptedSessionError(
                    session_id,
                    f"event {start + i} is missing (found seq {row[2]} instead)",
                    seq=start + i,
                )
        problem = self._chain_problem(
            rows, GENESIS if start == 1 else None, payloads=self._payload_is_canonical
        )
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
    ) -> Event:
        try:
            timestamp = parse_timestamp(row[5])
            if data is _UNPARSED:
                data = json.loads(row[7])
                state_delta = json.loads(row[8])
                state_ops = json.loads(row[11]) if len(row) > 11 else []
            if timestamp.tzinfo is None:
                raise ValueError(f"timestamp {row[5]!r} has no UTC offset")
            if type(data) is not dict or type(state_delta) is not dict:
                raise ValueError("data and state_delta must be JSON objects")
            if type(state_ops) is not list or any(type(op) is not dict for op in state_ops):
                raise ValueError("state_ops must be a JSON array of objects")
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
                    "invocation_id": row[6],
                }
            )
        except (TypeError, ValueError, IndexError, RecursionError) as exc:
            raise CorruptedSessionError(str(row[1]), f"event {row[2]} cannot be read: {exc}") from exc

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
                            (r[7], r[8], r[11] if len(r) > 11 else "[]") for r in rows
                        )
                    )
                    + "]"
                )
            except (TypeError, ValueError, RecursionError):
                values = None
            if values is not None and len(values) == 3 * len(rows):
                return [
                    decode(row, values[3 * i], values[3 * i + 1], values[3 * i + 2])
                    for i, row in enumerate(rows)
                ]
        return [decode(row) for row in rows]

    @staticmethod
    def _session_row(
        session: Session, created_at: str | None = None, last_hash: str = ""
    ) -> SessionRow:
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
            session.model_dump_json(),
            last_hash,
        )

    def _parse_session(self, row: SessionRow, rebuild: Callable[[], list[EventRow]]) -> Session:
        try:
            return Session.model_validate_json(row.snapshot)
        except ValidationError:
            pass
        # A snapshot that cannot be read is rebuilt from the ledger, the source of truth.
        try:
            rows = rebuild()
            self._check_read(row.id, rows, 1)
            return project(self._decode_events(rows))
        except CorruptedSessionError:
            raise
        except ValueError as exc:
            raise CorruptedSessionError(row.id, f"snapshot and ledger unreadable: {exc}") from exc

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
    ) -> tuple[Session, list[Event]]:
        events = self._decode_events(rows)
        try:
            updated = project(events, current)
        except CorruptedSessionError as exc:
            if isinstance(exc.__cause__, StateOperationError):
                raise exc.__cause__ from None
            raise InvalidEventError(exc.detail) from exc
        app_name, user_id = updated.app_name, updated.user_id
        # Shared state: each event's delta, then its operations, in ledger order, applied
        # to the scope's state as it is inside this transaction (under the write lock).
        scoped_state: dict[str | None, dict[str, Any]] = {}
        for event in events:
            if not event.state_delta and not event.state_ops:
                continue
            deltas = split_delta(event.state_delta)
            ops = split_ops(event.state_ops)
            for prefix, scope_user, delta, scope_ops in (
                (APP_PREFIX, None, deltas.app, ops.app),
                (USER_PREFIX, user_id, deltas.user, ops.user),
            ):
                if not delta and not scope_ops:
                    continue
                state = scoped_state.get(scope_user)
                if state is None:
                    state = self._decode_scoped(
                        session_id, tx.load_scoped_state(app_name, scope_user)
                    )
                state = apply_delta(state, delta)
                if scope_ops:
                    state = apply_ops(state, scope_ops, prefix=prefix)
                    check_nesting(state, f"{prefix} state after the state operations")
                scoped_state[scope_user] = state
        for scope_user, state in scoped_state.items():
            tx.save_scoped_state(app_name, scope_user, _dumps(state))
        if any(event.state_ops for event in events):
            check_nesting(updated.state, "session state after the state operations")
        tx.insert_events(rows)
        tx.save_session(
            self._session_row(updated, created_at, rows[-1].hash), new=current is None
        )
        return updated, events

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
            if event.type == EventType.SESSION_CREATED:
                raise InvalidEventError("session_created is written by create_session only")
        plugins = self.plugins
        if plugins is not None and plugins.has_before_append and events:
            before = self.get_session(session_id) if plugins.before_append_wants_session else None
            events = plugins.run_before_append(before, events, self, creating=False)
        now = self._clock()
        # Encode (and size-check) everything before touching the store; seq is fixed later.
        encoded = [self._encode(session_id, 0, event, now) for event in events]
        with self._transaction() as tx:
            row = tx.load_session(session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            if expected_version is not None and expected_version != row.version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            if not encoded:
                return []
            current = self._parse_session(row, lambda: tx.load_event_rows(session_id))
            check_append(current, events, self.lifecycle)
            if expected_state:
                self._check_expected_state(tx, current, expected_state)
            previous = row.last_hash or self._last_hash(tx, session_id, current.version)
            rows = self._chained(
                [r._replace(seq=current.version + i) for i, r in enumerate(encoded, 1)],
                previous,
                format_timestamp(current.updated_at),
            )
            updated, stored = self._write(tx, current, session_id, rows, row.created_at)
        if plugins is not None and plugins.has_after_hooks:
            plugins.run_after_append(updated, stored, self)
        return stored

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
    ) -> list[Event]:
        validate_session_id(session_id)
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
        rows = self._fetch_event_rows(
            session_id,
            after=after,
            limit=limit,
            last=last,
            types=list(types) if types else None,
            **({"after_ts": bounds[0], "before_ts": bounds[1]} if windowed else {}),
        )
        if not rows and not self._session_exists(session_id):
            raise SessionNotFoundError(session_id)
        if not types:  # checked where cheap: no gap, and the chain between the rows
            # (a time window starts anywhere: time never runs backwards, so it is contiguous)
            unbounded = last is None and not windowed and isinstance(after, int)
            first = max(after, 0) + 1 if unbounded else None
            self._check_read(session_id, rows, first)
        return self._decode_events(rows)

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
            rows = [
                r if isinstance(r, EventRow) else EventRow(*r)
                for r in self._fetch_event_rows(
                    session_id, after=0, limit=None, last=None, types=None
                )
            ]
        except CorruptedSessionError as exc:
            return bad(exc.seq, exc.detail)
        for i, row in enumerate(rows, 1):
            if row.seq != i:
                return bad(i, f"event {i} is missing (found seq {row.seq} instead)", len(rows))
        problem = self._chain_problem(rows, GENESIS, payloads=True)
        if problem is not None:
            return bad(problem[0], problem[1], len(rows))
        if snapshot_error is not None:
            return bad(snapshot_error.seq, snapshot_error.detail, len(rows))
        if found is None:
            return bad(None, "the session disappeared while it was verified", len(rows))
        snapshot = found[0]
        version = snapshot.version
        if version > len(rows):
            return bad(
                len(rows) + 1,
                (
                    f"acknowledged event {version} is missing"
                    if version == len(rows) + 1
                    else f"acknowledged events {len(rows) + 1} to {version} are missing"
                )
                + f" (the ledger ends at seq {len(rows)})",
                len(rows),
            )
        committed = rows[:version]
        if committed and snapshot.last_hash not in ("", committed[-1].hash):
            return bad(
                version, "the last event is not the one the session's last commit recorded", len(rows)
            )
        try:
            projected = project(self._decode_events(committed))
            stored = Session.model_validate_json(snapshot.snapshot)
        except (ValueError, CorruptedSessionError) as exc:
            return bad(None, f"the session cannot be rebuilt from its ledger: {exc}", len(rows))
        if stored.model_dump() != projected.model_dump():
            return bad(None, "the session's snapshot does not match its ledger", len(rows))
        last_hash = rows[-1].hash if rows else ""
        return VerifyReport(session_id=session_id, ok=True, events=len(rows), last_hash=last_hash)

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
        expected_state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._check_writable()
        check_scope(app_name, user_id)
        app_delta, user_delta = self._scoped_keys("delta", delta, user_id)
        plugins = self.plugins
        if plugins is not None and plugins.has_before_state_update:
            delta = plugins.run_before_state_update(app_name, user_id, dict(delta), self)
            app_delta, user_delta = self._scoped_keys("delta", delta, user_id)
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
            new_app = apply_delta(app, app_delta) if app_delta else app
            new_user = apply_delta(user, user_delta) if user_delta else user
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
        if not (app_delta or user_delta or wanted_app or wanted_user):
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
