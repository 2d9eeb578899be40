"""`file://path/to/sessions` — one folder per session, readable by a human.

URL → folder:
    Everything after `file://` up to `?` is the folder, percent-decoded, taken literally:
    `file://./sessions` and `file://sessions` are `./sessions` relative to the working
    directory when the store is opened; `file:///srv/sessions` is the absolute
    `/srv/sessions` (so `file://localhost/x` is the relative `localhost/x`, not `/x`). The
    folder is created if missing when the store is opened for writing (not with
    `read_only=True` or `create=False`); the folder it goes in must exist. Options:
    `?max_event_bytes=N&lock_timeout=S&file_mode=M`. Read-only, nothing is created,
    migrated or cleaned up.

Permissions: files the store creates get `file_mode` (default 0600) and folders the matching
folder mode (0700), whatever the umask; a file rewritten (snapshot, shared state) keeps the
mode it has, so a `chmod` survives appends.

Layout under the root folder (names starting with `_` or `.` belong to the store):

    _agentledger.json                  {"format": "agentledger-file", "schema_version": 3}
    <folder>/events.jsonl              the ledger: one event per line, as JSON
    <folder>/session.json              the projection snapshot, indented JSON
    <folder>/session_id                the exact session id, in a hashed folder only
    <folder>/base.json                 where the ledger and its projection start, once it
                                       was erased or truncated (see below)
    _scoped/app/<app>.json             `app:` state shared by the app's sessions
    _scoped/user/<app>/<user>.json     `user:` state shared by the user's sessions
    _feed.jsonl                        the store-wide event feed: one line per event,
                                       `{"position", "session_id", "seq", "id"}`, in
                                       commit order (see `read_feed`)
    _locks/...                         empty lock files (never deleted)
    _trash/                            folders of deleted sessions, removed right away

A session's folder: a session id of uppercase ASCII letters, digits and `._:@-` (up to 128
characters, starting with a letter or digit, no `..`), such as the default ULIDs, is its
own folder name (`sessions/01JD5K…/`). Any other id (lowercase letters, `/`, spaces, other
scripts, up to 512 characters) gets a hashed name: a lowercase ASCII slug of the id, `~`,
and 32 hex digits of the SHA-256 of its UTF-8 bytes (`"user/42"` → `user-42~5e2b…/`),
with the exact id in the folder's `session_id` file. So a name never
escapes the root, never exceeds 81 bytes, and two ids never share a folder, even on a file
system that folds case (`"A"` and `"a"` are two sessions) or normalizes Unicode.

App and user names are percent-encoded into file names (`/` → `%2F`, a leading `.` →
`%2E`, `~` → `%7E`); a name longer than 120 characters once encoded is cut to 80 and
suffixed with `~` and a hash. On a case-insensitive file system, app and user names that
differ only by case share a file: use case-sensitive storage for those.

Each line of `events.jsonl` is `{"seq": …, "id": …, "type": …, "author": …, "timestamp": …,
"invocation_id": …, "data": {…}, "state_delta": {…}, "payload_hash": …, "hash": …,
"batch_end": N}` (an event with state operations also has `"state_ops": […]`, one that
removes state keys `"state_remove": […]`, one of event format 2 or later `"format": N`
(a line without `"format"` is format 1), and one with an idempotency key `"key": "…"`),
where `data`, `state_delta`, `state_ops` and `state_remove` are canonical JSON (keys
sorted), the two
hashes chain the event to the one before it (`agentledger.core.chain`), and `batch_end` is
the `seq` of the last event of the append that wrote the line. The session id is the
folder's name, or its `session_id` file. `session.json` is the `Session` as JSON plus the commit it was projected
from, `ledger_bytes` (the length of `events.jsonl` then) and `last_hash` (the hash of its
event of seq `version`), and a `checksum` (SHA-256 of all the rest as compact JSON).

Commit point — the ledger is the truth:
    An append takes the session's lock, then writes all its lines with one `write()` and
    fsyncs `events.jsonl`; that is the commit point, and the append returns only after it.
    A batch is *complete* when its line whose `seq` equals its `batch_end` is present and
    ends with a newline. Readers and writers see only complete batches: an incomplete last
    line, or complete lines of a batch whose last line is missing, are a *torn tail* (a
    writer still writing, or killed while writing). Readers ignore it; the next writer,
    under the lock, truncates it before appending. A complete line that is not a valid
    event, a gap in `seq`, or a batch interrupted by another one is *corruption*: that
    session raises `CorruptedSessionError`, the others are unaffected.

    `session.json` is a cache: replaced atomically (temp file in the same folder, fsync,
    `os.replace`) after the ledger commit. It is used only if its checksum holds and the
    ledger's line ending at `ledger_bytes` is the event it records (seq `version`, hash
    `last_hash`), so an edited snapshot is never served and seq always comes from the
    ledger; otherwise the session is rebuilt from the whole ledger, its chain checked. A
    reader trusts it when `ledger_bytes` also equals the ledger's size (the common case:
    one stat and a read of the last line). When the ledger is longer (a writer between its
    commit and the snapshot, or one killed there), the reader projects only the bytes after
    `ledger_bytes` onto the snapshot (O(new events)); when the snapshot is missing or
    unreadable, the session is rebuilt from the whole ledger. A ledger whose committed
    batches end before the commit a good snapshot records lost acknowledged events (a torn
    tail never was acknowledged: the snapshot is written after its commit): that is
    damage, `CorruptedSessionError`, and no writer truncates or appends over it. The next
    writer stores the repaired snapshot. So every append that returned survives `kill -9`,
    and no part of an unfinished multi-event append is ever visible.
    (A reader may see a batch between its `write()` and its fsync, a moment before the
    append returns: like a committed transaction, it survives the writer's crash; only a
    power cut in that moment, or an fsync error, could take it back.)

Scoped state (`app:`/`user:`) commits with the same ledger write:
    An append that changes shared state first replaces the scope's file (atomically, under
    the scope's lock) with the new state plus a `pending` record naming its batch (session,
    last seq and event id, byte range in the ledger) and the `previous` state; then commits
    its ledger batch; then rewrites the scope file without `pending`. Whoever reads a file
    with `pending` (readers, or the next writer after a crash) uses the new state if that
    batch is complete in the ledger and `previous` otherwise, so shared state changes
    exactly when the events that carry it commit. Deleting a session first settles any
    `pending` record it left behind.

Locks (`filelock.FileLock`, across threads and processes): one per session, one per app's
state, one per user's state. A write takes them in that order (session, app, user), so two
writers never wait on each other in a cycle. Reads take no lock.

Durability: the ledger is fsynced before an append returns; a new session's folder and
ledger are fsynced into their parent folders; a `pending` shared state file is fsynced and
its folder too before the ledger write; a delete fsyncs the root after its rename. The
snapshot (fsynced, then renamed) and the final scope rewrite are caches: if a power cut
loses their rename, readers recover from the ledger and the `pending` record. So an
acknowledged append survives a process crash and, where fsync is honoured, power loss.

Keyed reads (`get_event`, `read_events(keys=..., key_prefix=...)`, and the key check of an
append) go through a key index the store keeps in memory per session: each key's seq, the
keys sorted, and each line's byte offset in `events.jsonl`, so a keyed event is one `pread`
of its line. The ledger stays the only truth: the index is built from it on first use and
checked on every use against the file (same inode, not shorter than what was indexed; only
the lines appended since are parsed), and every line read by offset must be the event of
the expected seq and key, or the index is rebuilt. Nothing of it is written to disk, so a
crash can leave it neither stale nor torn. It holds up to 256 sessions per store object.

Costs: `get_session` reads the snapshot and up to two shared state files and stats the
ledger; `append` takes one lock, fsyncs the ledger and rewrites the snapshot (O(size of
the session's state and metadata), a second fsync), plus two more writes per shared scope
it changes; `read_events` reads and parses the whole ledger (O(events)); `list_sessions`
reads every session's snapshot on every page (O(sessions) per page, fine for thousands of
sessions; use SQLite or PostgreSQL for more).

Erase and truncate (`erase_events`, `truncate_before`) rewrite the session's ledger whole,
under its lock: first any `pending` record it left in its scope files is settled (byte
ranges move), then `base.json` (the session's `LedgerBase`: the hash of the last dropped
event, the snapshot the projection continues from) is replaced atomically and fsynced,
then the new ledger replaces the old one (temp file, fsync, rename: the commit point; the
old file, with the old bytes, is deleted), then the snapshot is rewritten. An erased line
keeps its header and hashes, with `"data":{}`, `"state_delta":{}` and `"erased":true`. The
base written first is right for the old ledger too, and readers skip lines before the
ledger's recorded start, so a rewrite killed midway leaves a readable session.

The schema version is in `_agentledger.json`; `MIGRATIONS[n]` upgrades version n - 1 to n
(version 0 is an empty folder), is never edited once released, and must be safe to run
again (a migration killed midway is rerun: the version is recorded after it). A folder with a newer
version is refused with `SchemaVersionError`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from filelock import FileLock, Timeout
from pydantic import ValidationError

from agentledger.core.chain import GENESIS, canonical_json
from agentledger.core.events import Event
from agentledger.core.keys import data_matches
from agentledger.core.projection import project
from agentledger.core.session import MAX_SESSION_ID_CHARS, Session, validate_session_id
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    InvalidSessionIdError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from agentledger.stores.base import Capabilities, SessionFilter
from agentledger.stores.shared import (
    DEFAULT_FILE_MODE,
    BaseStore,
    EventRow,
    KeyIndex,
    LedgerBase,
    SessionRow,
    StoreTransaction,
    compact_json,
    folder_mode,
    format_timestamp,
    make_folders,
    parse_file_mode,
    parse_timestamp,
    row_filter,
    select_keyed_rows,
    session_order,
    store_options,
)

__all__ = ["FORMAT", "MIGRATIONS", "SCHEMA_VERSION", "FileStore"]

_log = logging.getLogger(__name__)

FORMAT = "agentledger-file"
"""The `format` value of `_agentledger.json`."""

FORMAT_FILE = "_agentledger.json"
_CONSISTENT_READ_TRIES = 5
"""Lock-free tries of `_fetch_session` before it reads under the session's lock."""
LEDGER = "events.jsonl"
SNAPSHOT = "session.json"
_SCOPED = "_scoped"
_LOCKS = "_locks"
_TRASH = "_trash"
FEED = "_feed.jsonl"
_FEED_TAIL = 16384  # bytes read from the end of the feed to find its last entry
_LOCK_POLL = 0.001  # seconds between attempts while another writer holds a lock
_LOCK_CACHE_SIZE = 1024  # lock objects kept per store and process


def _create_layout(root: Path) -> None:
    """Version 1: the folders of shared state, locks and deleted sessions."""
    for sub in (Path(_SCOPED, "app"), Path(_SCOPED, "user"), Path(_LOCKS), Path(_TRASH)):
        (root / sub).mkdir(parents=True, exist_ok=True)


MIGRATIONS: dict[int, Callable[[Path], None]] = {}
"""`MIGRATIONS[n](root)` upgrades a store folder from schema version n - 1 to n (filled in
below, once the functions they call are defined)."""

_dumps = compact_json
_V1_EVENT_KEYS = frozenset(
    (
        "seq",
        "batch_end",
        "id",
        "type",
        "author",
        "timestamp",
        "invocation_id",
        "data",
        "state_delta",
    )
)
_EVENT_KEYS = _V1_EVENT_KEYS | {"payload_hash", "hash"}
_OPTIONAL_EVENT_KEYS = frozenset(("state_ops", "state_remove", "format", "key", "erased"))
"""Keys a line has only when they differ from their default: `state_ops` and
`state_remove` (`[]`), `format` (1: lines written before schema version 3), `key`
(none) and `erased` (always `true` when present: its payload was erased)."""
BASE = "base.json"
"""A session's `LedgerBase` (see `agentledger.stores.shared`), when it was erased or
truncated: durable, written before its ledger is rewritten."""


# -- small file helpers -------------------------------------------------------------------


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn `OSError` into `StoreUnavailableError` at the store boundary."""
    try:
        yield
    except OSError as exc:
        raise StoreUnavailableError(f"file store: cannot {what}: {exc}") from exc


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _replace_file(path: str, text: str, new_mode: int) -> None:
    """Replace `path` with `text` atomically: a temp file in the same folder, fsync, rename.

    The file keeps its permissions (a `chmod` of it survives rewrites); a new file gets
    exactly `new_mode`, whatever the umask.
    """
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = new_mode
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


class _NotAFile(OSError):
    """A path that should be a regular file is something else: a folder, a FIFO, a device."""


_UNREADABLE = (_NotAFile, IsADirectoryError, NotADirectoryError, PermissionError)
"""What reading one session's files can raise when those files alone are damaged."""

_DAMAGED = "\x00damaged:"
"""Starts the `snapshot` of a listed row whose session's files cannot be read."""


def _open_file(path: str | Path) -> BinaryIO:
    """Open a regular file for reading. Never blocks: a FIFO (or anything but a regular
    file) in its place raises `_NotAFile` instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotAFile(errno.EINVAL, "not a regular file", os.fspath(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_text(path: str | Path) -> str | None:
    """The file's text, or `None` if it does not exist; undecodable bytes become U+FFFD.

    Raises:
        OSError: The file cannot be read; `_NotAFile` if something else is in its place.
    """
    try:
        with _open_file(path) as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return None


def _read_text_or_none(path: str | Path) -> str | None:
    """`_read_text`, with a damaged file (see `_UNREADABLE`) read as missing."""
    try:
        return _read_text(path)
    except _UNREADABLE:
        return None


def _pretty(value: dict[str, Any]) -> str:
    """A JSON object with one top-level key per line (values compact): easy to read and
    diff, and written by the C encoder (`indent=` would use the slow pure-Python one)."""
    items = ",\n".join(f"  {_dumps(k)}: {_dumps(v)}" for k, v in value.items())
    return "{\n" + items + "\n}\n"


def _safe_name(name: str) -> str:
    """A file name for an app or user name: percent-encoded, never hidden, bounded."""
    safe = quote(name, safe="").replace("~", "%7E")
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > 120:
        safe = f"{safe[:80]}~{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return safe


_PLAIN_FOLDER = re.compile(r"[A-Z0-9][A-Z0-9._:@-]{0,127}")
"""Session ids that are their own folder name: uppercase ASCII letters, digits and `._:@-`,
starting with a letter or digit, without `..`, at most 128 characters (the default ULIDs)."""
_OLD_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
"""Folder names of schema versions 1 and 2: the session id itself (any case)."""
_ID_FILE = "session_id"
"""In a session folder whose name is not the id: the exact id, UTF-8, nothing else."""
_HASH_CHARS = 32


def _folder_name(session_id: str) -> str:
    """The folder of a session (see the module docstring): the id itself when it is plain
    (`_PLAIN_FOLDER`), otherwise a lowercase ASCII slug of it, `~` and 32 hex digits of
    the SHA-256 of its UTF-8 bytes. Plain names never hold `~` and hashed ones always do,
    so two ids never share a folder, even where the file system folds case or normalizes
    Unicode; no name starts with `.` or `_`, holds a separator or is over 81 bytes."""
    if _PLAIN_FOLDER.fullmatch(session_id) and ".." not in session_id:
        return session_id
    slug = re.sub(r"[^a-z0-9]+", "-", session_id.lower()).strip("-")[:48].rstrip("-")
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:_HASH_CHARS]
    return f"{slug or 'id'}~{digest}"


def _folder_session_id(root: str, name: str) -> str | None:
    """The session id whose folder is `name`, or `None` if `name` is no session's folder
    (a stray entry, or a hashed folder whose `session_id` file is missing or wrong)."""
    if "~" not in name:
        return name if _folder_name(name) == name else None
    try:
        with open(os.path.join(root, name, _ID_FILE), "rb") as file:
            session_id = file.read(4 * MAX_SESSION_ID_CHARS + 1).decode()
        validate_session_id(session_id)
    except (OSError, UnicodeDecodeError, InvalidSessionIdError):
        return None
    return session_id if _folder_name(session_id) == name else None


def _write_id_file(folder: str, session_id: str, mode: int) -> None:
    """Write (and fsync) the `session_id` file of a hashed session folder."""
    fd = os.open(os.path.join(folder, _ID_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, session_id.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _path_from_url(url: str) -> str:
    """The folder of a `file://` URL (see the module docstring)."""
    if not url.startswith("file://"):
        raise ConfigurationError(f"not a file store URL: {url!r}")
    path = unquote(url[len("file://") :].split("?", 1)[0].split("#", 1)[0])
    if not path or "\x00" in path:
        raise ConfigurationError(
            f"bad file store URL {url!r}: use file://relative/dir, file://./dir or "
            "file:///absolute/dir"
        )
    return path


# -- the ledger format ----------------------------------------------------------------------


def _event_line(row: EventRow, batch_end: int) -> str:
    """One ledger line; `data` and `state_delta` are already compact JSON."""
    return (
        f'{{"seq":{row.seq},"id":{_dumps(row.id)},"type":{_dumps(row.type)},'
        f'"author":{_dumps(row.author)},"timestamp":{_dumps(row.timestamp)},'
        f'"invocation_id":{_dumps(row.invocation_id)},"data":{row.data},'
        f'"state_delta":{row.state_delta},'
        + (f'"state_ops":{row.state_ops},' if row.state_ops != "[]" else "")
        # -- event format
        + (f'"state_remove":{row.state_remove},' if row.state_remove != "[]" else "")
        + (f'"format":{int(row.format)},' if row.format != 1 else "")
        # -- end of event format
        + (f'"key":{_dumps(row.key)},' if row.key is not None else "")
        + ('"erased":true,' if row.erased else "")
        + f'"payload_hash":"{row.payload_hash}","hash":"{row.hash}","batch_end":{batch_end}}}\n'
    )


def _check_event(
    value: Any, expected_seq: int, open_batch_end: int | None, keys: frozenset[str] = _EVENT_KEYS
) -> str | None:
    """Why a parsed ledger line is not the event expected next, or `None` if it is."""
    if type(value) is not dict or not (
        value.keys() == keys
        or (keys is _EVENT_KEYS and value.keys() - _OPTIONAL_EVENT_KEYS == keys)
    ):
        return "not an event object"
    if value.get("erased", True) is not True:
        return "erased must be true when present"
    if keys is _EVENT_KEYS and not (type(value["hash"]) is type(value["payload_hash"]) is str):
        return "hash and payload_hash must be strings"
    seq, batch_end = value["seq"], value["batch_end"]
    if type(seq) is not int or type(batch_end) is not int:
        return "seq and batch_end must be integers"
    if seq != expected_seq:
        return f"expected seq {expected_seq}, found seq {seq}"
    if batch_end < seq or (open_batch_end is not None and batch_end != open_batch_end):
        return f"batch_end {batch_end} does not continue the batch"
    if not all(type(value[k]) is str for k in ("id", "type", "author", "timestamp")):
        return "id, type, author and timestamp must be strings"
    if value["invocation_id"] is not None and type(value["invocation_id"]) is not str:
        return "invocation_id must be a string or null"
    if type(value["data"]) is not dict or type(value["state_delta"]) is not dict:
        return "data and state_delta must be JSON objects"
    ops = value.get("state_ops", [])
    if type(ops) is not list or any(type(op) is not dict for op in ops):
        return "state_ops must be a JSON array of objects"
    remove = value.get("state_remove", [])
    if type(remove) is not list or any(type(key) is not str for key in remove):
        return "state_remove must be a JSON array of strings"
    format = value.get("format", 1)
    if type(format) is not int or format < 1:
        return "format must be a positive integer"
    if "key" in value and type(value["key"]) is not str:
        return "key must be a string"
    return None


def _parse_ledger(
    session_id: str,
    data: bytes,
    *,
    first_seq: int = 1,
    base: int = 0,
    keys: frozenset[str] = _EVENT_KEYS,
) -> tuple[list[dict[str, Any]], int]:
    """Parse ledger bytes strictly.

    Args:
        session_id: For the error message.
        data: Ledger bytes starting at a line boundary (byte `base` of the file).
        first_seq: The `seq` the first line must have.
        base: Where `data` starts in the file (for messages).

    Returns:
        The events of the complete batches, and the number of bytes they take; what
        follows is a torn tail (an unfinished batch, an unterminated line) to ignore.

    Raises:
        CorruptedSessionError: A complete line that is not the next event.
    """
    lines = data.split(b"\n")
    lines.pop()  # the unterminated rest: empty, or the torn end of a line
    if not lines:
        return [], 0
    try:
        values: list[Any] | None = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):  # some line is not JSON (or has several values): find it below
        values = None
    if values is not None and len(values) != len(lines):
        values = None
    parsed: list[dict[str, Any]] = []
    committed = complete = offset = 0
    open_batch_end: int | None = None
    for i, line in enumerate(lines):
        if values is not None:
            value = values[i]
        else:
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise CorruptedSessionError(
                    session_id,
                    f"{LEDGER} byte {base + offset}: not JSON ({exc})",
                    seq=first_seq + i,
                ) from exc
        problem = _check_event(value, first_seq + i, open_batch_end, keys)
        if problem is not None:
            raise CorruptedSessionError(
                session_id, f"{LEDGER} byte {base + offset}: {problem}", seq=first_seq + i
            )
        parsed.append(value)
        offset += len(line) + 1
        if value["seq"] == value["batch_end"]:
            committed, complete, open_batch_end = offset, i + 1, None
        else:
            open_batch_end = value["batch_end"]
    return parsed[:complete], committed


class _ParsedRows(list[EventRow]):
    """Rows made (`_event_row`) from ledger lines parsed for one read, with those parsed
    values (`values`, one per row, fresh: shared with nothing else)."""

    __slots__ = ("values",)

    def __init__(self, rows: list[EventRow], values: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.values = values


def _event_row(session_id: str, value: dict[str, Any]) -> EventRow:
    try:
        data, delta = _dumps(value["data"]), _dumps(value["state_delta"])
        ops = _dumps(value["state_ops"]) if "state_ops" in value else "[]"
        remove = _dumps(value["state_remove"]) if "state_remove" in value else "[]"
    except (ValueError, RecursionError) as exc:  # NaN or infinity written by hand
        raise CorruptedSessionError(session_id, f"event {value['seq']}: {exc}") from exc
    return EventRow(
        value["id"],
        session_id,
        value["seq"],
        value["type"],
        value["author"],
        value["timestamp"],
        value["invocation_id"],
        data,
        delta,
        value["payload_hash"],
        value["hash"],
        ops,
        remove,
        value.get("format", 1),
        value.get("key"),
        "erased" in value,
    )


def _ledger_events(
    session_id: str, data: bytes, base: LedgerBase
) -> tuple[list[dict[str, Any]], int]:
    """Parse a whole ledger (`_parse_ledger`) that starts where its base says
    (`base.chain_seq + 1`), or earlier: a truncation killed after it recorded its new base
    and before it replaced the ledger leaves lines that are dropped already; they are
    skipped here (and go at the session's next rewrite)."""
    first = base.chain_seq + 1
    if first > 1:
        try:
            head = json.loads(data[: data.index(b"\n")])
            found = head["seq"] if type(head) is dict else None
        except (ValueError, KeyError, RecursionError):
            found = None
        if type(found) is int and 1 <= found < first:
            events, committed = _parse_ledger(session_id, data, first_seq=found)
            return [v for v in events if v["seq"] >= first], committed
    return _parse_ledger(session_id, data, first_seq=first)


def _checksum(value: dict[str, Any]) -> str:
    return hashlib.sha256(_dumps(value).encode()).hexdigest()


def _snapshot_text(snapshot: str, ledger_bytes: int, last_hash: str) -> str:
    """The text of `session.json`: the session's JSON `snapshot` plus the ledger commit it
    was projected from (`ledger_bytes`, `last_hash`) and a `checksum` over all of it."""
    value = json.loads(snapshot)
    value["ledger_bytes"] = ledger_bytes
    value["last_hash"] = last_hash
    value["checksum"] = _checksum(value)
    return _pretty(value)


def _snapshot_fields(session_id: str, value: Any) -> tuple[dict[str, Any], int, str] | None:
    """The session dict, `ledger_bytes` and `last_hash` of a parsed `session.json`, or
    `None` if it is not one, or was changed after it was written (its checksum does not
    match): the session is then rebuilt from its ledger."""
    if type(value) is not dict or value.pop("checksum", None) != _checksum(value):
        return None
    ledger_bytes = value.pop("ledger_bytes", None)
    last_hash = value.pop("last_hash", None)
    if type(ledger_bytes) is not int or value.get("id") != session_id:
        return None
    if type(last_hash) is not str:
        return None
    if type(value.get("version")) is not int or value["version"] < 1:
        return None
    for key in ("app_name", "user_id", "status", "phase", "created_at", "updated_at"):
        if type(value.get(key)) is not str:
            return None
    if value.get("agent_name") is not None and type(value["agent_name"]) is not str:
        return None
    try:
        for key in ("created_at", "updated_at"):
            value[key] = format_timestamp(parse_timestamp(value[key]))
    except (ValueError, TypeError):
        return None
    return value, ledger_bytes, last_hash


def _last_line(ledger: Any, end: int) -> bytes | None:
    """The last line of the ledger's first `end` bytes (without its newline), or `None`
    if those bytes do not end a line."""
    chunk = 4096
    while True:
        start = max(end - chunk, 0)
        ledger.seek(start)
        data = ledger.read(end - start)
        if len(data) != end - start or not data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n", 0, len(data) - 1)
        if cut >= 0:
            return bytes(data[cut + 1 : -1])
        if start == 0:
            return bytes(data[:-1])
        chunk *= 8


def _ends_with(ledger: Any, end: int, seq: int, last_hash: str) -> bool:
    """Whether the ledger's first `end` bytes end with the last event of a batch, of `seq`
    and chain hash `last_hash` (what a snapshot records of the commit it was made from)."""
    line = _last_line(ledger, end)
    if line is None:
        return False
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return (
        type(value) is dict
        and value.get("seq") == seq
        and value.get("batch_end") == seq
        and value.get("hash") == last_hash
    )


def _missing(first: int, last: int) -> str:
    return f"event {first} is missing" if first == last else f"events {first} to {last} are missing"


def _check_acknowledged(
    session_id: str, committed: tuple[int, int], acknowledged: tuple[int, int] | None
) -> None:
    """Raise `CorruptedSessionError` if the ledger's committed part, `(events, bytes)`, is
    shorter than the commit its (checksummed) snapshot records as `acknowledged`, `(version,
    ledger_bytes)`: a lost tail, not a torn one (a torn tail was never acknowledged, and a
    snapshot is written only after its commit). A snapshot that records more events than
    the ledger holds in fewer bytes than the ledger has is another ledger's: not damage."""
    if acknowledged is None:
        return
    (have, have_bytes), (acked, acked_bytes) = committed, acknowledged
    if acked_bytes > have_bytes and acked > have:
        raise CorruptedSessionError(
            session_id,
            f"{LEDGER} ends at seq {have}, but events up to seq {acked} were "
            f"acknowledged: {_missing(have + 1, acked)}",
            seq=have + 1,
        )


def _row(fields: dict[str, Any], snapshot: str, last_hash: str = "", base: str = "") -> SessionRow:
    return SessionRow(
        fields["id"],
        fields["app_name"],
        fields["user_id"],
        fields.get("agent_name"),
        fields["status"],
        fields["phase"],
        fields["created_at"],
        fields["updated_at"],
        fields["version"],
        snapshot,
        last_hash,
        base,
    )


def _batch_committed(root: str, pending: dict[str, Any]) -> bool:
    """Whether the ledger batch a scope file's `pending` record names is complete."""
    try:
        session_id = validate_session_id(pending["session_id"])
        offset, end = int(pending["offset"]), int(pending["end"])
        start = max(offset - 1, 0)
        with _open_file(os.path.join(root, _folder_name(session_id), LEDGER)) as ledger:
            ledger.seek(start)
            data = ledger.read(end - start)
        if len(data) != end - start or not data.endswith(b"\n"):
            return False
        if offset > 0 and not data.startswith(b"\n"):
            return False
        last = json.loads(data[:-1].rsplit(b"\n", 1)[-1])
        return bool(
            last["id"] == pending["event_id"]
            and last["seq"] == last["batch_end"] == pending["seq"]
        )
    except (OSError, ValueError, TypeError, KeyError, InvalidSessionIdError):
        return False


def _resolve_scoped(root: str, text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The committed state of a scope file's text, and its `pending` record if any.

    Raises:
        ValueError: The text is not a scope file.
    """
    doc = json.loads(text)
    if type(doc) is not dict or type(doc.get("state")) is not dict:
        raise ValueError("not a shared state file")
    pending = doc.get("pending")
    if pending is None:
        return doc["state"], None
    if type(pending) is not dict or type(pending.get("previous")) is not dict:
        raise ValueError("bad pending record")
    state = doc["state"] if _batch_committed(root, pending) else pending["previous"]
    return state, pending


# -- the hash chain migration (schema version 2) ---------------------------------------------


def _v1_row(session_id: str, value: dict[str, Any]) -> EventRow:
    """The row of a version 1 ledger line, its payload canonical (not yet hashed)."""
    data, delta = canonical_json(value["data"]), canonical_json(value["state_delta"])
    return EventRow(
        value["id"],
        session_id,
        value["seq"],
        value["type"],
        value["author"],
        value["timestamp"],
        value["invocation_id"],
        data,
        delta,
    )


def _chain_ledgers(root: Path) -> None:
    """Version 2 (hash chain), for a folder of version 1.

    1. Settles every `pending` record of the shared state files (they name byte ranges of
       the ledgers, which change).
    2. Rewrites each session's ledger with every event's `payload_hash` and chain `hash`
       (`agentledger.core.chain`), `data` and `state_delta` as canonical JSON (equal
       values, keys sorted), in `seq` order; a torn tail is dropped (it was never
       acknowledged). A ledger that cannot be read is left as it is (that session
       stays corrupted).
    3. Writes each session's snapshot with the commit it records (`ledger_bytes`,
       `last_hash`) and its checksum.

    Safe to run again: a ledger already chained is kept, its snapshot rewritten.
    """
    base = os.fspath(root)
    for folder, _, names in os.walk(os.path.join(base, _SCOPED)):
        for name in names:
            path = os.path.join(folder, name)
            text = _read_text(path)
            try:
                doc = json.loads(text or "")
                state, pending = _resolve_scoped(base, text or "")
            except ValueError:
                continue
            if pending is not None:
                doc["state"] = state
                del doc["pending"]
                _replace_file(path, _pretty(doc), DEFAULT_FILE_MODE)
    with os.scandir(base) as entries:
        folders = [e.name for e in entries if e.is_dir() and not e.name.startswith(("_", "."))]
    for session_id in folders:
        ledger_path = os.path.join(base, session_id, LEDGER)
        try:
            with open(ledger_path, "rb") as ledger:
                data = ledger.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        try:
            events, committed = _parse_ledger(session_id, data)  # chained already (a rerun)
            rows = [_event_row(session_id, v) for v in events]
            size = committed
        except CorruptedSessionError:
            try:
                events, _ = _parse_ledger(session_id, data, keys=_V1_EVENT_KEYS)
                rows = BaseStore._chained([_v1_row(session_id, v) for v in events], GENESIS, "")
            except (CorruptedSessionError, ValueError, TypeError) as exc:
                _log.warning("file store migration: session %s left as it is: %s", session_id, exc)
                continue
            ends = [v["batch_end"] for v in events]
            text = "".join(_event_line(r, end) for r, end in zip(rows, ends, strict=True))
            _replace_file(ledger_path, text, DEFAULT_FILE_MODE)
            size = len(text.encode())
        if not rows:
            continue
        try:
            session = project([BaseStore._decode_event(r) for r in rows])
        except (ValueError, CorruptedSessionError) as exc:
            _log.warning("file store migration: session %s has no snapshot: %s", session_id, exc)
            continue
        _replace_file(
            os.path.join(base, session_id, SNAPSHOT),
            _snapshot_text(session.model_dump_json(), size, rows[-1].hash),
            DEFAULT_FILE_MODE,  # a file that exists keeps its mode
        )


# -- event format and the event feed (schema version 3) ----------------------------------


def _event_formats(root: Path) -> None:
    """Version 3 (event formats), for a folder of version 2: nothing to rewrite. A ledger
    line without `"format"` is an event of format 1 (a null in its `state_delta` deletes
    the key), which every line written before version 3 is; new lines carry `"format": 2`
    (and `"state_remove"` when they remove keys). The version number changes so that an
    older agentledger, which would read format 2 nulls as deletions, refuses the folder."""
    del root


def _feed_line(position: int, session_id: str, seq: int, event_id: str) -> str:
    return (
        f'{{"position":{position},"session_id":{_dumps(session_id)},"seq":{seq},'
        f'"id":{_dumps(event_id)}}}\n'
    )


def _create_feed(root: Path) -> None:
    """Version 3 (event feed), for a folder of version 2: writes `_feed.jsonl` with an
    entry for every committed event of every session, in the order they were written
    (timestamp, then id). A ledger that cannot be read contributes nothing. Safe to run
    again: the feed is rewritten whole."""
    base = os.fspath(root)
    entries: list[tuple[str, str, str, int]] = []
    with os.scandir(base) as found:
        folders = [e.name for e in found if e.is_dir() and not e.name.startswith(("_", "."))]
    for session_id in folders:
        try:
            with open(os.path.join(base, session_id, LEDGER), "rb") as ledger:
                events, _ = _parse_ledger(session_id, ledger.read())
        except (OSError, CorruptedSessionError) as exc:
            _log.warning("file store migration: session %s has no feed entries: %s", session_id, exc)
            continue
        entries += [(v["timestamp"], v["id"], session_id, v["seq"]) for v in events]
    entries.sort()
    text = "".join(
        _feed_line(position, sid, seq, eid)
        for position, (_, eid, sid, seq) in enumerate(entries, 1)
    )
    if text:  # an empty store's feed is created by its first append, with its file mode
        _replace_file(os.path.join(base, FEED), text, DEFAULT_FILE_MODE)


def _erase_and_truncate(root: Path) -> None:
    """Version 3 (erase and truncate): ledger lines may hold `"erased": true`, and a
    session folder a `base.json`; nothing written before needs a change."""
    del root


def _event_keys(root: Path) -> None:
    """Version 3, event keys: a ledger line may carry `"key"`. Nothing to rewrite (no
    line of an older ledger has a key, and the key index is built from the ledger in
    memory); the version number makes an older agentledger refuse the folder rather than
    report its keyed lines as damage."""
    del root


def _version_3(root: Path) -> None:
    """Version 3, for a folder of version 2: event formats, erasures and keys (nothing
    to rewrite), the event feed (`_create_feed`), then session folders renamed where
    their names must change (`_rename_session_folders`)."""
    _event_formats(root)
    _erase_and_truncate(root)
    _event_keys(root)
    _create_feed(root)  # reads the folders by their old names: the ids themselves
    _rename_session_folders(root)


# -- end of event format and the event feed


# -- session ids ---------------------------------------------------------------------------


def _rename_session_folders(root: Path) -> None:
    """Schema version 3, session ids: give each session folder its name of `_folder_name`.

    Versions 1 and 2 named a session's folder by its id (`[A-Za-z0-9][A-Za-z0-9._:@-]*`),
    so on a file system that folds case `"A"` and `"a"` shared one. A folder whose id is
    plain (no lowercase letter, `_PLAIN_FOLDER`, as the default ULIDs) keeps its name; any
    other (an id with a lowercase letter) gets its `session_id` file written and fsynced,
    then is renamed
    to its hashed name and the root fsynced. Each rename is atomic, so a migration killed
    midway is simply run again; a folder whose new name is taken already is left as it is
    (logged), as are entries that are no session's folder. Shared state files name the
    session of a `pending` record by id, so they need no change; old lock files are left
    (locks are keyed by folder name from now on, and lock files are never deleted).
    """
    base = os.fspath(root)
    with os.scandir(base) as entries:
        names = [e.name for e in entries if e.is_dir() and not e.name.startswith(("_", "."))]
    renamed = False
    for name in names:
        if not _OLD_FOLDER.fullmatch(name) or ".." in name:
            continue  # a hashed folder already (a rerun), or not a session's
        target = _folder_name(name)
        if target == name:
            continue
        if os.path.exists(os.path.join(base, target)):
            _log.warning("file store migration: %s left as it is: %s exists", name, target)
            continue
        _write_id_file(os.path.join(base, name), name, DEFAULT_FILE_MODE)
        os.rename(os.path.join(base, name), os.path.join(base, target))
        renamed = True
    if renamed:
        _fsync_dir(base)


# -- end of session ids ---------------------------------------------------------------------


MIGRATIONS.update({1: _create_layout, 2: _chain_ledgers, 3: _version_3})
SCHEMA_VERSION = max(MIGRATIONS)


class _StaleIndex(Exception):
    """A session's key index no longer matches its ledger file: rebuild it."""


@dataclass(slots=True)
class _LedgerIndex:
    """The key index of one session's ledger file (see the module docstring)."""

    inode: int
    offsets: list[int]  # offsets[i]: where the line of seq first + i starts; last: the end
    keys: KeyIndex
    first: int = 1  # the seq of the ledger's first line (later than 1 once truncated)
    last_hash: str = ""  # the chain hash of the last event indexed

    @property
    def version(self) -> int:
        return self.first - 1 + len(self.offsets) - 1


_INDEX_CACHE_SIZE = 256


@dataclass(slots=True)
class _Current:
    """A session as its committed ledger has it."""

    row: SessionRow  # fields and the projection as compact JSON
    ledger_bytes: int  # length of the committed batches
    ledger_size: int  # the file's size: more than `ledger_bytes` when a tail is torn
    snapshot_fresh: bool  # session.json already says exactly this
    fields: dict[str, Any] | None = None  # see `FileStore._load(lazy=True)`


class _Unreadable(Exception):
    """The snapshot cannot be used; rebuild from the whole ledger."""


# -- the store ------------------------------------------------------------------------------


class FileStore(BaseStore):
    """A store in a folder: one sub-folder per session, JSON files a human can read.

    Args:
        path: The root folder; created if missing (unless `read_only` or `create=False`),
            never its parent. A relative path is resolved against the working directory
            once, here.
        lock_timeout: How long a writer waits for a session's or a scope's lock, in
            seconds, before `StoreUnavailableError`.
        file_mode: Permissions of the files the store creates, an int or an octal string
            (`"0644"`); default 0o600, private to the owner. Folders it creates get the
            matching folder mode (0o700; 0o755 for 0o644). The umask does not apply; a file
            rewritten keeps the mode it has.
        url: The URL it was opened with (for display and for child processes); derived
            from `path` if omitted.
        **options: `max_event_bytes`, `clock`, `lifecycle`, `read_only`, `create`; see
            `BaseStore`.

    Raises:
        ConfigurationError: A bad option.
        StoreNotFoundError: The folder is not a store and may not become one, or its
            parent folder is missing.
        SchemaVersionError: The folder was written by a newer agentledger, or is older and
            opened read-only.
        StoreError: The folder holds a `_agentledger.json` that is not ours.
        StoreUnavailableError: The folder cannot be created or read.

    Example:
        >>> with FileStore("./sessions") as store:
        ...     session = store.create_session(app_name="demo", user_id="ada")
    """

    scheme = "file"
    capabilities = Capabilities(persistent=True, multi_process=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float = 30.0,
        file_mode: int | str = DEFAULT_FILE_MODE,
        url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url=url or f"file://{os.fspath(path)}", **options)
        self.file_mode = parse_file_mode(file_mode)
        self._folder_mode = folder_mode(self.file_mode)
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, (int, float))
            or not 0 <= lock_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"lock_timeout must be a finite number >= 0, not {lock_timeout!r}"
            )
        self.root = Path(os.path.abspath(os.fspath(path)))
        self._root = os.fspath(self.root)  # string paths: pathlib is slow on the hot path
        self.lock_timeout = float(lock_timeout)
        self._closed = False
        self._lock_cache: dict[str, FileLock] = {}
        self._indexes: dict[str, _LedgerIndex] = {}  # key indexes, most recent last
        self._index_lock = threading.Lock()
        self._locks_pid = os.getpid()
        self._feed_offsets: dict[int, int] = {}  # feed position -> offset of the next entry
        if not self.root.is_dir():
            if self.read_only or not self.create:
                why = "opened read-only" if self.read_only else "opened with create=False"
                raise StoreNotFoundError(
                    f"file store {self.root} does not exist ({why}: nothing was created)"
                )
            if not self.root.parent.is_dir():
                problem = "is not a folder" if self.root.parent.exists() else "does not exist"
                raise StoreNotFoundError(
                    f"cannot create file store {self.root}: folder {self.root.parent} "
                    f"{problem} (agentledger creates the store's folder, never the folders "
                    "above it; create it first)"
                )
            with _translated(f"create folder {self.root}"):
                make_folders(self.root, self._folder_mode)
        self.setup()

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> FileStore:
        """Open `file://dir?max_event_bytes=N&lock_timeout=S` (see the module docstring)."""
        opts = store_options(url, options, {"lock_timeout": float, "file_mode": parse_file_mode})
        return cls(_path_from_url(url), url=url, **opts)

    # -- schema ---------------------------------------------------------------------------

    def schema_version(self) -> int:
        """Return the schema version recorded in `_agentledger.json` (0 if there is none).

        Raises:
            StoreError: The file is not an agentledger format file.
        """
        path = self.root / FORMAT_FILE
        with _translated(f"read {path}"):
            text = _read_text(path)
        if text is None:
            return 0
        try:
            value = json.loads(text)
            version = value["schema_version"]
            if value["format"] != FORMAT or type(version) is not int or version < 1:
                raise ValueError(f"expected format {FORMAT!r} and a schema_version >= 1")
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{path} is not an agentledger file store format file: {exc}") from exc
        return int(version)

    def setup(self) -> None:
        """Create or migrate the folder layout; safe when several processes do it at once.
        On a read-only store, only check it.

        Raises:
            SchemaVersionError: The folder's schema is newer than `SCHEMA_VERSION`, or
                older and the store is read-only.
            StoreNotFoundError: Read-only or `create=False`, and the folder holds no store.
            StoreError: `_agentledger.json` is not ours.
        """
        if self.read_only or not self.create:
            version = self.schema_version()
            if version == 0:
                raise StoreNotFoundError(
                    f"folder {self.root} holds no agentledger file store (no {FORMAT_FILE})"
                )
            if self.read_only:
                if version != SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"{self.root} has file store schema version {version}"
                        + (
                            f", but this agentledger knows versions up to {SCHEMA_VERSION}; "
                            "upgrade agentledger to open it"
                            if version > SCHEMA_VERSION
                            else f" and this agentledger reads version {SCHEMA_VERSION}; a "
                            "read-only open does not migrate it: open it for writing once "
                            "to migrate it (agentledger migrate, or any command that writes)"
                        )
                    )
                return
        with self._locked(os.path.join(self._root, _LOCKS, "_store.lock")):
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.root} has file store schema version {version}, but this agentledger "
                    f"knows versions up to {SCHEMA_VERSION}; upgrade agentledger to open it"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with _translated(f"migrate {self.root} to schema version {target}"):
                    if target == 1:  # its folders, with the store's folder mode
                        for sub in (f"{_SCOPED}/app", f"{_SCOPED}/user", _TRASH):
                            make_folders(os.path.join(self._root, sub), self._folder_mode)
                    MIGRATIONS[target](self.root)
                    _replace_file(
                        os.path.join(self._root, FORMAT_FILE),
                        _pretty({"format": FORMAT, "schema_version": target}),
                        self.file_mode,
                    )
                    _fsync_dir(self.root)
        # Folders of deletes killed before they finished removing them.
        trash = os.path.join(self._root, _TRASH)
        with _translated(f"empty {trash}"):
            # A missing trash folder (deleted by hand) is made again: it only holds leftovers.
            os.makedirs(trash, exist_ok=True)
            for name in os.listdir(trash):
                shutil.rmtree(os.path.join(trash, name), ignore_errors=True)

    def close(self) -> None:
        """Mark the store closed (it keeps no file open between calls); later calls fail
        with `StoreUnavailableError`."""
        self._closed = True

    # -- locks ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")

    def _lock(self, path: str) -> FileLock:
        """Acquire the lock file at `path` (waiting up to `lock_timeout`) and return it.

        Lock objects are kept per process and reused (building one costs more than taking
        it); each thread holds its own handle on them (`thread_local`), so threads of one
        process exclude each other as processes do.
        """
        key = path
        pid = os.getpid()
        if self._locks_pid != pid:  # forked: a lock object must not cross a fork
            self._lock_cache, self._locks_pid = {}, pid
        lock = self._lock_cache.get(key)
        if lock is None:
            if len(self._lock_cache) >= _LOCK_CACHE_SIZE:
                self._lock_cache.clear()
            try:  # filelock would create missing folders with the umask's mode
                make_folders(os.path.dirname(path), self._folder_mode)
            except OSError as exc:
                raise StoreUnavailableError(f"file store: cannot lock {path}: {exc}") from exc
            lock = FileLock(
                key, timeout=self.lock_timeout, poll_interval=_LOCK_POLL, mode=self.file_mode
            )
            lock = self._lock_cache.setdefault(key, lock)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StoreUnavailableError(
                f"file store: waited {self.lock_timeout}s for the lock {path}"
            ) from exc
        except OSError as exc:
            raise StoreUnavailableError(f"file store: cannot lock {path}: {exc}") from exc
        return lock

    @contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        lock = self._lock(path)
        try:
            yield
        finally:
            lock.release()

    # -- the event feed: `_feed.jsonl`, one entry per committed event, in commit order ------

    def _feed_lock_path(self) -> str:
        return os.path.join(self._root, _LOCKS, "_feed.lock")

    def _append_feed(self, session_id: str, rows: Sequence[EventRow]) -> None:
        """Add the feed entries of a batch about to be committed (under the feed lock,
        which the writer holds until its ledger commit). Entries whose batch then never
        commits (a writer killed in between) are skipped by readers: their event is not
        in the ledger, or another event (another id) is at that seq."""
        path = os.path.join(self._root, FEED)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, self.file_mode)
        try:
            if os.fstat(fd).st_size == 0:
                os.fchmod(fd, self.file_mode)  # exactly, whatever the umask
            size = os.fstat(fd).st_size
            start = max(size - _FEED_TAIL, 0)
            tail = os.pread(fd, size - start, start)
            cut = tail.rfind(b"\n") + 1
            if cut < len(tail):  # a torn entry: its writer was killed while writing it
                os.ftruncate(fd, start + cut)
            last_line = tail[: cut - 1].rsplit(b"\n", 1)[-1] if cut else b""
            last = json.loads(last_line)["position"] if last_line else 0
            text = "".join(
                _feed_line(last + i, session_id, r.seq, r.id) for i, r in enumerate(rows, 1)
            )
            os.lseek(fd, start + cut, os.SEEK_SET)
            _write_all(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _feed_entries(self, after: int) -> list[tuple[int, str, int, str]]:
        """The complete feed entries past `after` (read under the feed lock, so no entry
        of a commit still in progress is among them)."""
        path = os.path.join(self._root, FEED)
        with self._locked(self._feed_lock_path()):
            offset = 0
            cached = self._feed_offsets.get(after)
            if cached is not None:
                offset = cached
            try:
                with _open_file(path) as feed:
                    feed.seek(offset)
                    data = feed.read()
            except FileNotFoundError:
                return []
        entries = []
        end = offset
        for line in data.split(b"\n")[:-1]:  # the last piece is "" or a torn entry
            end += len(line) + 1
            value = json.loads(line)
            position = value["position"]
            if position > after:
                entries.append((position, value["session_id"], value["seq"], value["id"]))
            if len(self._feed_offsets) > 64:
                self._feed_offsets.clear()
            self._feed_offsets[position] = end
        return entries

    def _fetch_feed(self, after: int, limit: int) -> list[tuple[int, EventRow]]:
        self._check_open()
        found: list[tuple[int, EventRow]] = []
        ledgers: dict[str, dict[int, dict[str, Any]]] = {}
        with _translated("read the event feed"):
            for position, session_id, seq, event_id in self._feed_entries(after):
                ledger = ledgers.get(session_id)
                if ledger is None:
                    try:
                        values = self._read_ledger(session_id) or []
                    except InvalidSessionIdError:
                        values = []
                    ledger = ledgers[session_id] = {v["seq"]: v for v in values}
                value = ledger.get(seq)
                if value is not None and value["id"] == event_id:
                    found.append((position, _event_row(session_id, value)))
                    if len(found) == limit:
                        break
        return found

    def _feed_position(self) -> int:
        self._check_open()
        path = os.path.join(self._root, FEED)
        with _translated("read the event feed"):
            try:
                with _open_file(path) as feed:
                    size = feed.seek(0, os.SEEK_END)
                    start = max(size - _FEED_TAIL, 0)
                    feed.seek(start)
                    tail = feed.read()
            except FileNotFoundError:
                return 0
        lines = tail.split(b"\n")[:-1]
        return int(json.loads(lines[-1])["position"]) if lines and lines[-1] else 0

    def _session_lock_path(self, session_id: str) -> str:
        return os.path.join(self._root, _LOCKS, "sessions", f"{_folder_name(session_id)}.lock")

    def _file(self, session_id: str, name: str) -> str:
        """The path of `events.jsonl` or `session.json` of a session."""
        return os.path.join(self._root, _folder_name(session_id), name)

    def _scope_paths(self, app_name: str, user_id: str | None) -> tuple[str, str]:
        """The state file and the lock file of an app's (`user_id=None`) or a user's scope."""
        app = _safe_name(app_name)
        if user_id is None:
            return (
                os.path.join(self._root, _SCOPED, "app", f"{app}.json"),
                os.path.join(self._root, _LOCKS, "app", f"{app}.lock"),
            )
        user = _safe_name(user_id)
        return (
            os.path.join(self._root, _SCOPED, "user", app, f"{user}.json"),
            os.path.join(self._root, _LOCKS, "user", app, f"{user}.lock"),
        )

    # -- reading a session ----------------------------------------------------------------

    def _load(self, session_id: str, *, lazy: bool = False) -> _Current | None:
        """The session as its committed ledger has it, or `None` if there is none.

        The snapshot is used only if its checksum holds and the ledger's event at the
        recorded `ledger_bytes` is the one it records (seq and hash); otherwise the session
        is rebuilt from the ledger, its hash chain checked. With `lazy`, a fresh snapshot's
        row has an empty `snapshot` and its fields are in `_Current.fields`, to serialize
        only if needed (a listing drops most rows).

        Raises:
            CorruptedSessionError: The ledger cannot be read back, breaks its hash chain,
                lacks events its snapshot recorded as acknowledged, or is missing while the
                snapshot exists; or the session's files cannot be read at all (a folder or a
                FIFO in a file's place, no permission): that session alone is damaged.
        """
        try:
            base_text = self._read_base(session_id)
            current = self._load_files(session_id, lazy, LedgerBase.parse(session_id, base_text))
        except _UNREADABLE as exc:
            raise CorruptedSessionError(session_id, f"its files cannot be read: {exc}") from exc
        if current is not None and base_text:
            current.row = current.row._replace(base=base_text)
        return current

    def _read_base(self, session_id: str) -> str:
        """The text of the session's `base.json` (`""` when it has none).

        Raises:
            OSError: It cannot be read (`_UNREADABLE`: damaged).
        """
        return (_read_text(self._file(session_id, BASE)) or "").strip()

    def _load_files(self, session_id: str, lazy: bool, base: LedgerBase) -> _Current | None:
        snapshot_path = self._file(session_id, SNAPSHOT)
        snapshot_text = _read_text(snapshot_path)
        parsed: tuple[dict[str, Any], int, str] | None = None
        if snapshot_text is not None:
            try:
                parsed = _snapshot_fields(session_id, json.loads(snapshot_text))
            except (ValueError, RecursionError):
                parsed = None
        ledger_path = self._file(session_id, LEDGER)
        try:
            ledger = _open_file(ledger_path)
        except FileNotFoundError:
            if snapshot_text is None or not os.path.exists(snapshot_path):
                return None  # never created, or deleted while we read
            raise CorruptedSessionError(session_id, f"{LEDGER} is missing") from None
        with ledger:
            size = os.fstat(ledger.fileno()).st_size
            if parsed is not None:
                fields, ledger_bytes, last_hash = parsed
                if ledger_bytes <= size and _ends_with(
                    ledger, ledger_bytes, fields["version"], last_hash
                ):
                    if ledger_bytes == size:  # the common case: the snapshot is current
                        if lazy:
                            row = _row(fields, "", last_hash)
                            return _Current(row, size, size, True, fields)
                        return _Current(_row(fields, _dumps(fields), last_hash), size, size, True)
                    try:
                        return self._load_tail(
                            session_id, ledger, fields, ledger_bytes, size, last_hash
                        )
                    except _Unreadable:
                        pass
            ledger.seek(0)
            events, committed = _ledger_events(session_id, ledger.read(), base)
        if not events:
            if snapshot_text is None:
                return None  # a create killed before its ledger write completed
            raise CorruptedSessionError(session_id, f"{LEDGER} holds no complete event")
        rows = [_event_row(session_id, v) for v in events]
        self._check_read(session_id, rows, base.chain_seq + 1, base)
        if parsed is not None:
            _check_acknowledged(
                session_id, (rows[-1].seq, committed), (parsed[0]["version"], parsed[1])
            )
        session = self._project_from(rows, base)
        row = self._session_row(session, last_hash=rows[-1].hash)
        return _Current(row, committed, size, False)

    def _load_tail(
        self,
        session_id: str,
        ledger: Any,
        fields: dict[str, Any],
        ledger_bytes: int,
        size: int,
        last_hash: str,
    ) -> _Current:
        """Project the ledger bytes after `ledger_bytes` onto the snapshot `fields`."""
        if ledger_bytes > size or ledger_bytes < 1:
            raise _Unreadable
        ledger.seek(ledger_bytes - 1)
        tail = ledger.read()
        if not tail.startswith(b"\n"):
            raise _Unreadable
        try:
            events, committed = _parse_ledger(
                session_id, tail[1:], first_seq=fields["version"] + 1, base=ledger_bytes
            )
        except CorruptedSessionError as exc:
            raise _Unreadable from exc
        if not events:  # only torn bytes: the snapshot is right
            return _Current(_row(fields, _dumps(fields), last_hash), ledger_bytes, size, True)
        rows = [_event_row(session_id, v) for v in events]
        if self._chain_problem(rows, last_hash, payloads=True) is not None:
            raise _Unreadable  # rebuilt from the whole ledger, which names the bad event
        try:
            snapshot = Session.model_validate(fields)
        except ValidationError as exc:
            raise _Unreadable from exc
        try:
            session = project(self._decode_events(rows), snapshot)
        except CorruptedSessionError as exc:  # e.g. a rewind to before the snapshot
            raise _Unreadable from exc
        row = self._session_row(session, last_hash=rows[-1].hash)
        return _Current(row, ledger_bytes + committed, size, False)

    def _events(self, session_id: str, values: list[dict[str, Any]]) -> list[Event]:
        return self._decode_events([_event_row(session_id, v) for v in values])

    def _read_ledger(self, session_id: str) -> list[dict[str, Any]] | None:
        """Every committed event of the ledger, or `None` if there is no ledger.

        Raises:
            CorruptedSessionError: A line is not the next event, the ledger lacks events
                its snapshot recorded as acknowledged, or it cannot be read at all (a folder
                or a FIFO in its place, no permission).
        """
        # The snapshot first: it is written after its commit, so the ledger read next
        # holds at least the events it records.
        # An unreadable snapshot is read as missing here: the ledger is the truth.
        base = LedgerBase.parse(session_id, _read_text_or_none(self._file(session_id, BASE)))
        text = _read_text_or_none(self._file(session_id, SNAPSHOT))
        acknowledged = None
        if text is not None:
            try:
                parsed = _snapshot_fields(session_id, json.loads(text))
            except ValueError:
                parsed = None
            if parsed is not None:
                acknowledged = (parsed[0]["version"], parsed[1])
        try:
            with _open_file(self._file(session_id, LEDGER)) as ledger:
                data = ledger.read()
        except FileNotFoundError:
            if os.path.exists(self._file(session_id, SNAPSHOT)):
                raise CorruptedSessionError(session_id, f"{LEDGER} is missing") from None
            return None
        except _UNREADABLE as exc:
            raise CorruptedSessionError(session_id, f"{LEDGER} cannot be read: {exc}") from exc
        events, committed = _ledger_events(session_id, data, base)
        if not events and os.path.exists(self._file(session_id, SNAPSHOT)):
            # as `_load`: a snapshot without a single committed event is corruption
            raise CorruptedSessionError(session_id, f"{LEDGER} holds no complete event")
        _check_acknowledged(session_id, (events[-1]["seq"] if events else 0, committed), acknowledged)
        return events

    # -- shared state ---------------------------------------------------------------------

    def _batch_committed(self, pending: dict[str, Any]) -> bool:
        """Whether the ledger batch a `pending` record names is complete."""
        return _batch_committed(self._root, pending)

    def _resolve_scoped(self, text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The committed state of a scope file's text, and its `pending` record if any.

        Raises:
            ValueError: The text is not a scope file.
        """
        return _resolve_scoped(self._root, text)

    def _read_scoped(self, app_name: str, user_id: str | None) -> str | None:
        """A scope's committed state as JSON, `None` if it has none, or `""` (which the
        base class reports as corruption) if its file cannot be read."""
        path, _ = self._scope_paths(app_name, user_id)
        try:
            text = _read_text(path)
        except _UNREADABLE:
            return ""
        if text is None:
            return None
        try:
            return _dumps(self._resolve_scoped(text)[0])
        except (ValueError, RecursionError):
            return ""

    def _scope_doc(self, app_name: str, user_id: str | None, state: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {"app_name": app_name}
        if user_id is not None:
            doc["user_id"] = user_id
        doc["state"] = state
        return doc

    def _settle_scopes(self, session_id: str, app_name: str, user_id: str) -> None:
        """Rewrite the session's app and user state files without a `pending` record the
        session left behind (before its ledger goes away). Takes the scope locks."""
        locks: list[FileLock] = []
        try:
            for scope_user in (None, user_id):
                path, lock_path = self._scope_paths(app_name, scope_user)
                locks.append(self._lock(lock_path))
                text = _read_text(path)
                if text is None:
                    continue
                try:
                    state, pending = self._resolve_scoped(text)
                except (ValueError, RecursionError):
                    continue
                if pending is not None and pending.get("session_id") == session_id:
                    _replace_file(
                        path,
                        _pretty(self._scope_doc(app_name, scope_user, state)),
                        self.file_mode,
                    )
        finally:
            for lock in reversed(locks):
                lock.release()

    # -- primitives -----------------------------------------------------------------------

    def _transaction(self) -> _FileTransaction:
        self._check_open()
        return _FileTransaction(self)

    def _ledger_signature(self, session_id: str) -> tuple[int, int, int] | None:
        """(inode, size, mtime in ns) of the session's ledger; it changes with every commit."""
        try:
            st = os.stat(self._file(session_id, LEDGER))
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _fetch_session(self, session_id: str) -> tuple[SessionRow, str | None, str | None] | None:
        """Read the snapshot and the app's and user's state as of one commit.

        They are three files read one after another, so a writer committing between the
        reads could show half of its append (its own keys but not yet its `user:` keys).
        Every commit changes the ledger's size and mtime, so the read is repeated until the
        ledger is the same before and after it; after a few tries it is done under the
        session's lock, which the session's writers hold through their whole commit.
        """
        self._check_open()
        with _translated(f"read session {session_id!r}"):
            for _ in range(_CONSISTENT_READ_TRIES):
                before = self._ledger_signature(session_id)
                found = self._read_session_and_scopes(session_id)
                if self._ledger_signature(session_id) == before:
                    return found
            with self._locked(self._session_lock_path(session_id)):
                return self._read_session_and_scopes(session_id)

    def _read_session_and_scopes(
        self, session_id: str
    ) -> tuple[SessionRow, str | None, str | None] | None:
        current = self._load(session_id)
        if current is None:
            return None
        row = current.row
        return (
            row,
            self._read_scoped(row.app_name, None),
            self._read_scoped(row.app_name, row.user_id),
        )

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
        self._check_open()
        if keys is not None or key_prefix is not None:
            accept = row_filter(
                types=types, after_ts=after_ts, before_ts=before_ts, data_match=data_match
            )
            with _translated(f"read the events of session {session_id!r}"):
                return self._with_index(
                    session_id,
                    lambda index, row_at: select_keyed_rows(
                        index.keys,
                        row_at,
                        index.version,
                        after=max(after, 0),
                        limit=limit,
                        last=last,
                        keys=keys,
                        key_prefix=key_prefix,
                        accept=accept or (lambda row: True),
                    ),
                )
        with _translated(f"read the events of session {session_id!r}"):
            values = self._read_ledger(session_id) or []
        first = values[0]["seq"] if values else 1  # a truncated ledger starts later
        selected = values[max(after - first + 1, 0) :]
        if data_match:
            selected = [
                v for v in selected if data_matches(v["data"], data_match)
            ]
        if types:
            wanted = set(types)
            selected = [v for v in selected if v["type"] in wanted]
        if after_ts is not None or before_ts is not None:
            selected = [
                v
                for v in selected
                if (after_ts is None or v["timestamp"] > after_ts)
                and (before_ts is None or v["timestamp"] < before_ts)
            ]
        if last is not None:
            selected = selected[max(len(selected) - last, 0) :] if last else []
        elif limit is not None:
            selected = selected[:limit]
        return _ParsedRows([_event_row(session_id, v) for v in selected], selected)

    def _decode_events(self, rows: Sequence[EventRow | Sequence[Any]]) -> list[Event]:
        # Rows of ledger lines just parsed (`_fetch_event_rows`) are decoded from those
        # values, with the same checks, instead of parsing their payload text again.
        if isinstance(rows, _ParsedRows) and len(rows.values) == len(rows):
            flat: list[Any] = []
            for row, value in zip(rows, rows.values, strict=True):
                if value["id"] is not row[0]:  # not the rows these values made
                    return super()._decode_events(rows)
                flat += (
                    value["data"],
                    value["state_delta"],
                    value.get("state_ops", []),
                    value.get("state_remove", []),
                )
            return self._decode_parsed(rows, flat)
        return super()._decode_events(rows)

    # -- the key index ------------------------------------------------------------------------

    def _with_index(
        self,
        session_id: str,
        read: Callable[[_LedgerIndex, Callable[[int], EventRow]], list[EventRow]],
    ) -> list[EventRow]:
        """Run `read` with the session's key index and a reader of one event by seq (one
        `pread` of its line); rebuild the index once if it turns out stale."""
        path = self._file(session_id, LEDGER)
        for attempt in (0, 1):
            try:
                ledger = _open_file(path)
            except FileNotFoundError:
                return []
            with ledger:
                with self._index_lock:
                    index = self._ledger_index(session_id, ledger, rebuild=attempt == 1)
                fd = ledger.fileno()

                def row_at(seq: int, index: _LedgerIndex = index, fd: int = fd) -> EventRow:
                    at = seq - index.first
                    if not 0 <= at < len(index.offsets) - 1:
                        raise _StaleIndex
                    start, end = index.offsets[at], index.offsets[at + 1]
                    line = os.pread(fd, end - start, start)
                    try:
                        value = json.loads(line)
                    except (ValueError, RecursionError) as exc:
                        raise _StaleIndex from exc
                    if type(value) is not dict or value.get("seq") != seq:
                        raise _StaleIndex  # not the line indexed: the file changed
                    if _check_event(value, seq, None) is not None:
                        raise CorruptedSessionError(session_id, f"event {seq} cannot be read")
                    return _event_row(session_id, value)

                try:
                    rows = read(index, row_at)
                except _StaleIndex:
                    continue
                # Every row found through the index must be the keyed event it indexed
                # (a batch seen, then rolled back by a failed fsync and replaced, is not).
                stale = any(r.key is None or index.keys.seqs.get(r.key) != r.seq for r in rows)
                if not stale:
                    return rows
        raise CorruptedSessionError(session_id, f"{LEDGER} changed while its keys were read")

    def _ledger_index(self, session_id: str, ledger: BinaryIO, *, rebuild: bool) -> _LedgerIndex:
        """The session's key index, brought up to date with the ledger file: the lines
        appended since it was built are parsed; a replaced or shorter file is read again."""
        st = os.fstat(ledger.fileno())
        cache = self._indexes
        index = None if rebuild else cache.get(session_id)
        if (
            index is None
            or index.inode != st.st_ino
            or index.offsets[-1] > st.st_size
            or not self._still_ends(ledger, index)
        ):
            ledger.seek(0)
            head = ledger.readline()
            try:
                first = int(json.loads(head)["seq"]) if head.endswith(b"\n") else 1
            except (ValueError, KeyError, TypeError, RecursionError):
                first = 1  # parsing below reports the damage
            index = _LedgerIndex(st.st_ino, [0], KeyIndex(), first)
        end = index.offsets[-1]
        if st.st_size > end:
            ledger.seek(end)
            data = ledger.read(st.st_size - end)
            values, committed = _parse_ledger(
                session_id, data, first_seq=index.version + 1, base=end
            )
            position = end
            for line, value in zip(data[:committed].split(b"\n"), values, strict=False):
                position += len(line) + 1
                index.offsets.append(position)
                key = value.get("key")
                if key is not None:
                    index.keys.add(key, value["seq"])
                index.last_hash = value["hash"]
        cache.pop(session_id, None)
        cache[session_id] = index
        while len(cache) > _INDEX_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        return index

    @staticmethod
    def _still_ends(ledger: BinaryIO, index: _LedgerIndex) -> bool:
        """Whether the line the index ends with is still the event it indexed (same seq
        and hash): one `pread`; false for a ledger replaced under a reused inode number."""
        if len(index.offsets) < 2:
            return True
        start, end = index.offsets[-2], index.offsets[-1]
        try:
            value = json.loads(os.pread(ledger.fileno(), end - start, start))
        except (ValueError, RecursionError):
            return False
        return (
            type(value) is dict
            and value.get("seq") == index.version
            and value.get("hash") == index.last_hash
        )

    def _fetch_scoped(self, app_name: str, user_id: str | None) -> str | None:
        self._check_open()
        with _translated(f"read the shared state of app {app_name!r}"):
            return self._read_scoped(app_name, user_id)

    def _update_scoped(
        self,
        app_name: str,
        user_id: str | None,
        change: Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:
        # No ledger batch to commit with: each scope file is replaced atomically, under
        # the scope locks (app, then user: the order session transactions take them in).
        self._check_open()
        scopes: list[str | None] = [None] if user_id is None else [None, user_id]
        locks: list[FileLock] = []
        with _translated(f"update the shared state of app {app_name!r}"):
            try:
                states: list[dict[str, Any]] = []
                for scope_user in scopes:
                    path, lock_path = self._scope_paths(app_name, scope_user)
                    make_folders(os.path.dirname(lock_path), self._folder_mode)
                    locks.append(self._lock(lock_path))
                    states.append(self._decode_scoped("", self._read_scoped(app_name, scope_user)))
                before = [*states, {}][:2]
                after = change(before[0], before[1])
                for scope_user, old, new in zip(scopes, before, after, strict=False):
                    if new == old:
                        continue
                    path, _ = self._scope_paths(app_name, scope_user)
                    make_folders(os.path.dirname(path), self._folder_mode)
                    _replace_file(
                        path, _pretty(self._scope_doc(app_name, scope_user, new)), self.file_mode
                    )
                    _fsync_dir(os.path.dirname(path))
            finally:
                for lock in reversed(locks):
                    lock.release()

    def _session_exists(self, session_id: str) -> bool:
        self._check_open()
        with _translated(f"read session {session_id!r}"):
            if os.path.exists(self._file(session_id, SNAPSHOT)):
                return True
            try:
                return bool(self._read_ledger(session_id))
            except CorruptedSessionError:
                return True

    def _session_ids(self) -> Iterator[str]:
        """Names of the root's sub-folders that could be sessions (stray entries skipped)."""
        with os.scandir(self._root) as entries:
            for entry in entries:
                if entry.name.startswith(("_", ".")) or not entry.is_dir(follow_symlinks=False):
                    continue
                session_id = _folder_session_id(self._root, entry.name)
                if session_id is not None:
                    yield session_id

    def _list_row(self, session_id: str) -> tuple[SessionRow, dict[str, Any] | None] | None:
        """The row to list for a session, with the fields to serialize as its snapshot if
        it makes the page; for one that cannot be read, a row the base class reports in
        `SessionPage.corrupted` (see `_damaged_row`)."""
        try:
            current = self._load(session_id, lazy=True)
        except CorruptedSessionError as exc:
            if isinstance(exc.__cause__, _UNREADABLE):
                # Its files cannot be read at all: listed as corrupted whatever the ledger
                # says, as `get_session` reports it (see `_parse_session`).
                damaged = self._damaged_row(session_id, exc.detail)
                return None if damaged is None else (damaged, None)
        else:
            return None if current is None else (current.row, current.fields)
        text = _read_text_or_none(self._file(session_id, SNAPSHOT))
        parsed = None
        if text is not None:
            try:
                parsed = _snapshot_fields(session_id, json.loads(text))
            except (ValueError, RecursionError):
                parsed = None
        if parsed is not None:
            return _row(parsed[0], ""), None
        damaged = self._damaged_row(session_id, "")
        return None if damaged is None else (damaged, None)

    def _damaged_row(self, session_id: str, detail: str) -> SessionRow | None:
        """A row for a session that cannot be read: listed under "any" filters only, at its
        ledger's (or folder's) last change; with `detail`, `_parse_session` reports it
        corrupted without trying the ledger. `None` if the session was deleted meanwhile."""
        snapshot = _DAMAGED + detail if detail else ""
        try:
            mtime = os.stat(self._file(session_id, LEDGER)).st_mtime
        except FileNotFoundError:
            try:
                mtime = os.stat(os.path.join(self._root, _folder_name(session_id))).st_mtime
            except FileNotFoundError:
                return None  # deleted while we listed
        stamp = format_timestamp(datetime.fromtimestamp(mtime, timezone.utc))
        return SessionRow(session_id, "", "", None, "", "", stamp, stamp, 0, snapshot)

    def _parse_session(
        self,
        row: SessionRow,
        rebuild: Callable[[], list[EventRow]],
        load_state: Callable[[], str] | None = None,
    ) -> Session:
        if row.snapshot.startswith(_DAMAGED):
            raise CorruptedSessionError(row.id, row.snapshot[len(_DAMAGED) :])
        return super()._parse_session(row, rebuild, load_state)

    def _fetch_session_page(
        self, where: SessionFilter, after_key: tuple[str, str] | None, limit: int
    ) -> list[tuple[SessionRow, str | None, str | None]]:
        self._check_open()
        after = format_timestamp(where.updated_after) if where.updated_after else None
        before = format_timestamp(where.updated_before) if where.updated_before else None
        rows: list[SessionRow] = []
        lazy: dict[str, dict[str, Any]] = {}
        column, descending = session_order(where.order)

        def key(r: SessionRow) -> tuple[str, str]:
            return (r.created_at if column == "created_at" else r.updated_at, r.id)

        with _translated(f"list {self.root}"):
            for session_id in self._session_ids():
                found = self._list_row(session_id)
                if found is None:
                    continue
                row, fields = found
                if (
                    (where.app_name is not None and row.app_name != where.app_name)
                    or (where.user_id is not None and row.user_id != where.user_id)
                    or (where.agent_name is not None and row.agent_name != where.agent_name)
                    or (where.status is not None and row.status != where.status)
                    or (where.phase is not None and row.phase != where.phase)
                ):
                    continue  # a row without fields (unreadable) only lists unfiltered
                if (after is not None and row.updated_at <= after) or (
                    before is not None and row.updated_at >= before
                ):
                    continue
                if after_key is not None and (
                    key(row) >= after_key if descending else key(row) <= after_key
                ):
                    continue
                rows.append(row)
                if fields is not None:
                    lazy[session_id] = fields
            rows.sort(key=key, reverse=descending)
            scoped: dict[tuple[str, str | None], str | None] = {}

            def read(app: str, user: str | None) -> str | None:
                if (app, user) not in scoped:
                    scoped[(app, user)] = self._read_scoped(app, user) if app else None
                return scoped[(app, user)]

            page = [
                row._replace(snapshot=_dumps(lazy[row.id])) if row.id in lazy else row
                for row in rows[:limit]
            ]
            return [
                (row, read(row.app_name, None), read(row.app_name, row.user_id)) for row in page
            ]

    def compact(self) -> None:
        """Remove what deletes and rewrites left behind: folders of deleted sessions in
        `_trash` and temporary files of killed writes. An erase or a truncation already
        replaced the ledger with one that holds none of the old bytes (the old file is
        deleted), so nothing else is needed.

        Raises:
            StoreUnavailableError: The folder cannot be read.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        self._check_writable()
        self._check_open()
        trash = os.path.join(self._root, _TRASH)
        with _translated(f"compact {self.root}"):
            for name in os.listdir(trash) if os.path.isdir(trash) else ():
                shutil.rmtree(os.path.join(trash, name), ignore_errors=True)
            for session_id in self._session_ids():
                with self._locked(self._session_lock_path(session_id)):
                    folder = os.path.join(self._root, _folder_name(session_id))
                    try:
                        names = os.listdir(folder)
                    except FileNotFoundError:
                        continue
                    for name in names:
                        if name.startswith(".") and name.endswith(".tmp"):
                            os.unlink(os.path.join(folder, name))

    def _delete_session(self, session_id: str, expected_version: int | None) -> bool:
        self._check_open()
        folder = os.path.join(self._root, _folder_name(session_id))
        with (
            _translated(f"delete session {session_id!r}"),
            self._locked(self._session_lock_path(session_id)),
        ):
            owner: tuple[str, str] | None = None
            try:
                current = self._load(session_id)
                if current is None:
                    return False
                owner = (current.row.app_name, current.row.user_id)
                if expected_version is not None and current.row.version != expected_version:
                    raise ConcurrencyError(session_id, expected_version, current.row.version)
            except CorruptedSessionError:
                if expected_version is not None:
                    raise  # its version cannot be checked: keep it
                text = _read_text_or_none(self._file(session_id, SNAPSHOT))
                try:
                    parsed = _snapshot_fields(session_id, json.loads(text or ""))
                except (ValueError, RecursionError):
                    parsed = None
                if parsed is not None:
                    owner = (parsed[0]["app_name"], parsed[0]["user_id"])
            if owner is not None:
                self._settle_scopes(session_id, *owner)
            trash = os.path.join(self._root, _TRASH)
            make_folders(trash, self._folder_mode)
            target = os.path.join(trash, f"{_folder_name(session_id)}.{uuid.uuid4().hex}")
            os.replace(folder, target)
            _fsync_dir(self._root)
            shutil.rmtree(target, ignore_errors=True)
            return True


class _FileTransaction(StoreTransaction):
    """One write: locks taken as the base class asks for rows, files written on exit.

    The session's lock is taken by `load_session` (always the first call), the app's and
    the user's by the first `load_scoped_state`/`save_scoped_state` of each (the app's
    first). Nothing is written until the block exits without an exception; then the scope
    files get a `pending` record, the ledger batch is committed, the snapshot and the scope
    files are rewritten (see the module docstring).
    """

    def __init__(self, store: FileStore) -> None:
        self._store = store
        self._locks: list[FileLock] = []
        self._session_id: str | None = None
        self._current: _Current | None = None
        self._app: str | None = None
        self._users: set[str] = set()
        self._previous: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._saved: dict[tuple[str, str | None], str] = {}
        self._rows: list[EventRow] = []
        self._session_row: SessionRow | None = None
        self._new = False
        self._erase: set[int] = set()
        self._drop_before = 0
        self._base: str | None = None

    def __enter__(self) -> _FileTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                with _translated("write"):
                    self._commit()
        finally:
            for lock in reversed(self._locks):
                lock.release()
            self._locks.clear()

    # -- reads under the locks ------------------------------------------------------------

    def load_session(self, session_id: str) -> SessionRow | None:
        if self._session_id is not None and self._session_id != session_id:
            raise StoreError("a file store transaction writes one session")
        store = self._store
        if self._session_id is None:
            self._locks.append(store._lock(store._session_lock_path(session_id)))
            self._session_id = session_id
            with _translated(f"read session {session_id!r}"):
                self._current = current = store._load(session_id)
                if current is not None:
                    self._repair(session_id, current)
        return None if self._current is None else self._current.row

    def _repair(self, session_id: str, current: _Current) -> None:
        """Truncate a torn tail and store a snapshot that lags the ledger (under the lock)."""
        store = self._store
        if current.ledger_size > current.ledger_bytes:
            fd = os.open(store._file(session_id, LEDGER), os.O_WRONLY)
            try:
                os.ftruncate(fd, current.ledger_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            current.ledger_size = current.ledger_bytes
        if not current.snapshot_fresh:
            # A writer killed while replacing the snapshot may have left its temp file.
            folder = os.path.join(store._root, _folder_name(session_id))
            for name in os.listdir(folder):
                if name.startswith(f".{SNAPSHOT}.") and name.endswith(".tmp"):
                    os.unlink(os.path.join(folder, name))
            self._write_snapshot(
                store._file(session_id, SNAPSHOT), current.row, current.ledger_bytes
            )
            current.snapshot_fresh = True

    def load_event_rows(self, session_id: str) -> list[EventRow]:
        with _translated(f"read the events of session {session_id!r}"):
            values = self._store._read_ledger(session_id) or []
        return [_event_row(session_id, v) for v in values]

    def load_keyed_rows(self, session_id: str, keys: Sequence[str]) -> list[EventRow]:
        with _translated(f"read the events of session {session_id!r}"):
            return self._store._with_index(
                session_id,
                lambda index, row_at: [
                    row_at(index.keys.seqs[k]) for k in keys if k in index.keys.seqs
                ],
            )

    def _lock_scope(self, app_name: str, user_id: str | None) -> None:
        store = self._store
        if self._session_id is None:  # the lock order is session, app, user
            raise StoreError("load_session must come first in a file store transaction")
        if self._app is None:
            self._locks.append(store._lock(store._scope_paths(app_name, None)[1]))
            self._app = app_name
        elif self._app != app_name:
            raise StoreError("a file store transaction writes the state of one app")
        if user_id is not None and user_id not in self._users:
            if self._users:
                raise StoreError("a file store transaction writes the state of one user")
            self._locks.append(store._lock(store._scope_paths(app_name, user_id)[1]))
            self._users.add(user_id)

    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        key = (app_name, user_id)
        if key in self._saved:
            return self._saved[key]
        self._lock_scope(app_name, user_id)
        path, _ = self._store._scope_paths(app_name, user_id)
        with _translated(f"read {path}"):
            text = _read_text(path)
        if text is None:
            self._previous.setdefault(key, {})
            return None
        try:
            state, _ = self._store._resolve_scoped(text)
        except (ValueError, RecursionError):
            return ""  # reported as corruption by the base class
        self._previous.setdefault(key, state)
        return _dumps(state)

    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        key = (app_name, user_id)
        if key not in self._previous:
            self.load_scoped_state(app_name, user_id)
        self._saved[key] = state

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        self._rows.extend(rows)

    def save_session(self, row: SessionRow, *, new: bool) -> None:
        self._session_row = row
        self._new = new

    def erase_event_rows(self, session_id: str, seqs: Sequence[int]) -> None:
        self._erase.update(seqs)

    def drop_event_rows(self, session_id: str, before: int) -> None:
        self._drop_before = max(self._drop_before, before)

    def save_base(self, session_id: str, base: str) -> None:
        self._base = base

    # -- commit ---------------------------------------------------------------------------

    def _write_snapshot(self, path: str, row: SessionRow, ledger_bytes: int) -> None:
        _replace_file(
            path, _snapshot_text(row.snapshot, ledger_bytes, row.last_hash), self._store.file_mode
        )

    def _rewrite(self, session_id: str, current: _Current) -> None:
        """Commit an erase or a truncation: the ledger is rewritten whole, atomically.

        1. Any `pending` record this session left in its scope files is settled (it names
           byte ranges of the ledger, which move).
        2. The new base is written (`base.json`, replaced atomically and fsynced): it is
           consistent with the old ledger as well as the new one (an erase re-bases the
           projection on the session as it is; lines a truncation drops are skipped by
           readers), so a crash at any point leaves a readable session.
        3. The new ledger (erased payloads emptied, dropped lines gone, the new events
           appended) replaces the old one: temp file, fsync, rename, folder fsync; the old
           file's bytes leave the folder with it. That is the commit point.
        4. The snapshot is rewritten (a cache, as after an append).
        """
        store = self._store
        folder = os.path.join(store._root, _folder_name(session_id))
        store._settle_scopes(session_id, current.row.app_name, current.row.user_id)
        values = store._read_ledger(session_id) or []  # read under the old base
        lines = []
        for value in values:
            if value["seq"] < self._drop_before:
                continue
            if value["seq"] in self._erase:
                value = {**value, "data": {}, "state_delta": {}, "erased": True}
                value.pop("state_ops", None)
                value.pop("state_remove", None)
            lines.append(_event_line(_event_row(session_id, value), value["batch_end"]))
        if self._rows:
            end = self._rows[-1].seq
            lines += [_event_line(r, end) for r in self._rows]
        text = "".join(lines)
        if self._base is not None:
            _replace_file(os.path.join(folder, BASE), self._base + "\n", store.file_mode)
            _fsync_dir(folder)
        # The feed entries of the new events (an `events_erased` record), then the new
        # ledger, under the feed lock (as an append does).
        feed_lock = store._lock(store._feed_lock_path()) if self._rows else None
        try:
            if self._rows:
                store._append_feed(session_id, self._rows)
            _replace_file(os.path.join(folder, LEDGER), text, store.file_mode)
            _fsync_dir(folder)
        finally:
            if feed_lock is not None:
                feed_lock.release()
        row = self._session_row or current.row
        try:
            self._write_snapshot(os.path.join(folder, SNAPSHOT), row, len(text.encode()))
        except OSError as exc:
            _log.warning(
                "file store: session %s rewritten, its snapshot not updated: %s", session_id, exc
            )

    def _commit(self) -> None:
        store, session_id, row = self._store, self._session_id, self._session_row
        if session_id is not None and self._current is not None and (
            self._erase or self._drop_before or self._base is not None
        ):
            self._rewrite(session_id, self._current)
            return
        if session_id is None or row is None or not self._rows:
            return
        folder = os.path.join(store._root, _folder_name(session_id))
        ledger = os.path.join(folder, LEDGER)
        last = self._rows[-1]
        batch = "".join(_event_line(r, last.seq) for r in self._rows).encode()
        offset = 0 if self._new or self._current is None else self._current.ledger_bytes
        end = offset + len(batch)
        # 1. Shared state, marked pending until the ledger batch commits.
        pending = {
            "session_id": session_id,
            "seq": last.seq,
            "event_id": last.id,
            "offset": offset,
            "end": end,
        }
        scope_files = []
        for (app_name, user_id), state in self._saved.items():
            path, _ = store._scope_paths(app_name, user_id)
            make_folders(os.path.dirname(path), store._folder_mode)
            doc = store._scope_doc(app_name, user_id, json.loads(state))
            scope_files.append((path, doc))
            previous = self._previous.get((app_name, user_id), {})
            _replace_file(
                path,
                _pretty({**doc, "pending": {**pending, "previous": previous}}),
                store.file_mode,
            )
            _fsync_dir(os.path.dirname(path))  # durable before the commit
        # 2. The feed entries, then the ledger: one write, one fsync, the commit point. The
        #    feed lock is held from the entries to the commit, so readers of the feed see
        #    entries only of batches that committed (or never will).
        feed_lock = store._lock(store._feed_lock_path())
        try:
            store._append_feed(session_id, self._rows)
            self._commit_ledger(folder, ledger, batch, offset)
        finally:
            feed_lock.release()
        # 3. Caches: the snapshot, and the scope files without `pending`. The append is
        #    committed already; a failure here is repaired by the next reader or writer.
        try:
            self._write_snapshot(os.path.join(folder, SNAPSHOT), row, end)
            for path, doc in scope_files:
                _replace_file(path, _pretty(doc), store.file_mode)
        except OSError as exc:
            _log.warning(
                "file store: session %s committed, caches not updated: %s", session_id, exc
            )

    def _commit_ledger(self, folder: str, ledger: str, batch: bytes, offset: int) -> None:
        store, session_id = self._store, self._session_id
        assert session_id is not None
        if self._new:
            try:
                os.mkdir(folder, store._folder_mode)
                os.chmod(folder, store._folder_mode)  # exactly, whatever the umask
                _fsync_dir(store._root)
            except FileExistsError:  # left by a create killed before its ledger commit
                try:  # with the base of that create, if it had one
                    os.unlink(os.path.join(folder, BASE))
                except FileNotFoundError:
                    pass
            if os.path.basename(folder) != session_id:
                _write_id_file(folder, session_id, store.file_mode)
            row = self._session_row
            if row is not None and row.base:  # a session imported with its base
                _replace_file(os.path.join(folder, BASE), row.base + "\n", store.file_mode)
            fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, store.file_mode)
            os.fchmod(fd, store.file_mode)
        else:
            fd = os.open(ledger, os.O_WRONLY | os.O_APPEND)
        try:
            try:
                _write_all(fd, batch)
                os.fsync(fd)
            except BaseException:
                try:  # leave no torn tail behind if we can
                    os.ftruncate(fd, offset)
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)
        if self._new:
            _fsync_dir(folder)
