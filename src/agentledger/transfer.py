"""Moving sessions between stores: export to JSON Lines, import from it, copy store to store.

The export format (JSON Lines, UTF-8, one JSON object per line):

- a header: `{"agentledger_export": 1, "exported_at": "<UTC ISO 8601>", "source": "<url>"}`;
- per session, a session line `{"session": {...}, "events": N, "digest": "<hex>"}` followed
  by its N event lines `{"event": {...}}` in `seq` order. `session` is the session as its
  ledger projects it (its own state, without shared `app:`/`user:` state), `event` is the
  event exactly as stored (id, seq, timestamp, payload), and `digest` is the chain hash of
  the last event (`VerifyReport.last_hash`), which an import recomputes to detect a
  changed or truncated file;
- for a session whose history was erased or truncated (`erase_events`, `truncate_before`),
  the session line also carries `"base"`, its `LedgerBase` (`chain_seq`, `chain_hash`,
  `seq`, `hash`, `session`): its events start at `chain_seq + 1`, the digest chains from
  `chain_hash`, and the session line is the projection from the base; an erased event's
  line is `{"event": {...}, "payload_hash": "<hex>"}`, the hash its payload had (the
  payload itself is gone);
- shared state lines `{"scoped_state": {"app_name": ..., "user_id": null | ..., "state":
  {...}}}` for the apps and users of the exported sessions.

An import keeps ids, `seq`s and timestamps, so the imported sessions verify with the same
hashes as the originals. A copy (`copy_sessions`) reads one store and writes the other
session by session, skips sessions already copied, continues a session that has grown
since the last copy, and compares event counts and digests at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from pydantic import ValidationError

from agentledger.core.chain import canonical_json
from agentledger.core.events import Event
from agentledger.core.projection import project
from agentledger.core.session import Session
from agentledger.core.state import APP_PREFIX, USER_PREFIX
from agentledger.errors import (
    AgentLedgerError,
    ConfigurationError,
    CorruptedSessionError,
    InvalidEventError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionStore, display_url
from agentledger.stores.shared import (
    NO_BASE,
    BaseStore,
    LedgerBase,
    StoredLedger,
    chain_digest,
)

__all__ = [
    "EXPORT_VERSION",
    "ExportFormatError",
    "SessionConflictError",
    "TransferReport",
    "copy_sessions",
    "export_sessions",
    "import_sessions",
    "iter_session_ids",
    "ParsedExport",
    "read_export",
]

EXPORT_VERSION = 1
"""The version of the export format this library writes and reads."""


class ExportFormatError(AgentLedgerError, ValueError):
    """An export file that cannot be imported: not JSON Lines of this format, a line out of
    place, or a session whose events do not match its digest (a changed or cut file).
    The message names the line."""


class SessionConflictError(SessionExistsError):
    """The destination already holds a session of that id with another history (not the
    same events, nor a beginning of them); nothing of it was written."""

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__(session_id)
        self.why = why
        self.args = (f"session {session_id!r} exists in the destination with another history: {why}",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class TransferReport:
    """What an import or a copy did.

    Attributes:
        sessions: Sessions written (new ones and continued ones).
        events: Events written.
        unchanged: Sessions already in the destination with the same history.
        continued: Sessions of `sessions` that existed and were continued (their
            destination history was a beginning of the source's).
        skipped: Ids of sessions left alone because the destination holds another
            history (`skip_existing=True`).
        scoped_states: Shared states written.
    """

    sessions: int = 0
    events: int = 0
    unchanged: int = 0
    continued: int = 0
    skipped: list[str] = field(default_factory=list)
    scoped_states: int = 0


@dataclass
class _Block:
    session: Session
    digest: str
    events: list[Event]
    line: int = 0
    expected: int = 0
    base: LedgerBase = NO_BASE
    payload_hashes: dict[int, str] = field(default_factory=dict)


def _own_state(session: Session) -> Session:
    state = {k: v for k, v in session.state.items() if not k.startswith((APP_PREFIX, USER_PREFIX))}
    return session.model_copy(update={"state": state})


def iter_session_ids(store: SessionStore, **filters: Any) -> Iterator[str]:
    """Yield the ids of every session `list_sessions(**filters)` would list, walking all
    its pages, oldest session first (`order="created_asc"`)."""
    cursor: str | None = None
    while True:
        page = store.list_sessions(**filters, limit=1000, cursor=cursor, order="created_asc")
        for session in page.sessions:
            yield session.id
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _scopes(sessions: Iterable[Session]) -> list[tuple[str, str | None]]:
    seen: dict[tuple[str, str | None], None] = {}
    for session in sessions:
        seen[(session.app_name, None)] = None
        seen[(session.app_name, session.user_id)] = None
    return list(seen)


def _dump(value: Mapping[str, Any]) -> str:
    # Canonical (keys sorted): the same session exports to the same text from every store.
    return canonical_json(value)


def _read_source(store: SessionStore, session_id: str) -> StoredLedger:
    """A session's ledger as `store` holds it: from a local store with its base and the
    payload hashes of its erased events; from another (`http://`) only when it was never
    erased nor truncated."""
    if isinstance(store, BaseStore):
        return store.read_ledger(session_id)
    events = store.read_events(session_id)
    if not events:
        raise SessionNotFoundError(session_id)
    if events[0].seq != 1 or any(e.erased for e in events):
        raise ConfigurationError(
            f"session {session_id!r} has erased or truncated history (erase_events, "
            f"truncate_before); {display_url(store.url)} does not hand out its ledger base: "
            "export or copy it from the server's own store"
        )
    return StoredLedger(NO_BASE, events, {}, chain_digest(events))


def _project(base: LedgerBase, events: list[Event]) -> Session:
    """The session the events make, from the base's projection base when it has one."""
    if not base.seq:
        return project(events)
    start = Session.model_validate_json(base.session)
    return project([e for e in events if e.seq > base.seq], start)


def _same_base(a: LedgerBase | None, b: LedgerBase) -> bool:
    """Whether two bases are the same (their sessions compared as values, not as text)."""
    if a is None or a._replace(session="") != b._replace(session=""):
        return False
    return bool(json.loads(a.session or "null") == json.loads(b.session or "null"))


def _base_json(base: LedgerBase) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base.to_json())
    return value


def export_sessions(
    store: SessionStore,
    out: IO[str],
    session_ids: Iterable[str] | None = None,
    *,
    on_session: Callable[[Session, int], None] | None = None,
    **filters: Any,
) -> TransferReport:
    """Write sessions, their events and their apps' and users' shared state to `out` as
    JSON Lines (the format in this module's docstring).

    Args:
        store: The store to read (any store, `http://` included; it is not changed).
        out: A text stream open for writing.
        session_ids: The sessions to export; `None` exports every session `list_sessions`
            lists with `filters` (`app_name`, `user_id`, `agent_name`, `status`, `phase`,
            `updated_after`, `updated_before`).
        on_session: Called after each session with it and its number of events.

    Returns:
        A report: `sessions`, `events` and `scoped_states` written to `out`.

    Raises:
        SessionNotFoundError: A listed id does not exist.
        CorruptedSessionError: A session's stored history is damaged (`verify` tells more).
        ConfigurationError: An unknown filter, or a session with erased or truncated
            history read from an `http://` store (which does not hand out its base).
    """
    if session_ids is not None and filters:
        raise ConfigurationError("export takes session ids or filters, not both")
    ids = iter_session_ids(store, **filters) if session_ids is None else iter(session_ids)
    report = TransferReport()
    out.write(
        _dump(
            {
                "agentledger_export": EXPORT_VERSION,
                "exported_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "source": display_url(store.url),
            }
        )
        + "\n"
    )
    exported: list[Session] = []
    for session_id in ids:
        ledger = _read_source(store, session_id)
        events, hashes = ledger.events, ledger.payload_hashes
        session = _project(ledger.base, events)
        head: dict[str, Any] = {
            "session": session.model_dump(mode="json"),
            "events": len(events),
            "digest": ledger.last_hash,
        }
        if ledger.base != NO_BASE:
            head["base"] = _base_json(ledger.base)
        out.write(_dump(head) + "\n")
        for event in events:
            text = canonical_json(event.model_dump(mode="json"))
            if event.erased:  # its payload is gone: the hash it had chains it
                out.write(f'{{"event":{text},"payload_hash":"{hashes[event.seq]}"}}\n')
            else:
                out.write('{"event":' + text + "}\n")
        report.sessions += 1
        report.events += len(events)
        exported.append(session)
        if on_session is not None:
            on_session(session, len(events))
    for app_name, user_id in _scopes(exported):
        state = store.get_scoped_state(app_name, user_id)
        if state:
            out.write(
                _dump({"scoped_state": {"app_name": app_name, "user_id": user_id, "state": state}})
                + "\n"
            )
            report.scoped_states += 1
    return report


@dataclass
class ParsedExport:
    """An export read and checked by `read_export`: its sessions (each with its digest and
    events) and shared states (`(app_name, user_id, state)`)."""

    blocks: list[_Block]
    scoped: list[tuple[str, str | None, dict[str, Any]]]


def read_export(lines: Iterable[str]) -> ParsedExport:
    """Parse and check an export: each session's events against its digest and its
    session line.

    Returns:
        The checked export, for `import_sessions`.

    Raises:
        ExportFormatError: Naming the line: not JSON, not this format, an event that does
            not belong where it is, a session whose events are missing or do not match its
            digest or its session line.
    """
    blocks: list[_Block] = []
    scoped: list[tuple[str, str | None, dict[str, Any]]] = []
    open_block: _Block | None = None
    number = 0
    header = False

    def bad(why: str) -> ExportFormatError:
        return ExportFormatError(f"line {number}: {why}")

    def close_block() -> None:
        nonlocal open_block
        block, open_block = open_block, None
        if block is None:
            return
        where = f"session {block.session.id!r} (line {block.line})"
        if len(block.events) != block.expected:
            raise ExportFormatError(
                f"{where} should have {block.expected} events, the file holds "
                f"{len(block.events)} (a cut or changed file)"
            )
        if block.events[0].seq != block.base.chain_seq + 1:
            raise ExportFormatError(
                f"the events of {where} start at seq {block.events[0].seq}, its ledger at "
                f"{block.base.chain_seq + 1}"
            )
        try:
            digest = chain_digest(block.events, block.base.chain_hash, block.payload_hashes)
        except InvalidEventError as exc:
            raise ExportFormatError(f"the events of {where} cannot be chained: {exc}") from exc
        if digest != block.digest:
            raise ExportFormatError(f"the events of {where} do not match its digest (a changed file)")
        try:
            projected = _project(block.base, block.events)
        except (ValueError, CorruptedSessionError) as exc:
            raise ExportFormatError(f"the events of {where} cannot be projected: {exc}") from exc
        if projected != block.session:
            raise ExportFormatError(f"the events of {where} do not project to its session line")

    for number, line in enumerate(lines, 1):  # noqa: B007 (read by bad())
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise bad(f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise bad("not a JSON object")
        if not header:
            if value.get("agentledger_export") != EXPORT_VERSION:
                raise bad(
                    "not an agentledger export of format version "
                    f"{EXPORT_VERSION} (the first line is its header)"
                )
            header = True
            continue
        try:
            if "event" in value:
                block = open_block
                if block is None or len(block.events) >= block.expected:
                    raise bad("an event line outside its session's block")
                event = Event.model_validate(value["event"])
                if event.session_id != block.session.id:
                    raise bad(f"an event of session {event.session_id!r} in the block of {block.session.id!r}")
                if set(value) - {"event", "payload_hash"}:
                    raise bad(f"unknown keys in an event line: {sorted(set(value) - {'event', 'payload_hash'})}")
                if event.erased != ("payload_hash" in value):
                    raise bad("an erased event's line carries its payload_hash, and only such a line")
                if event.erased:
                    digest = value["payload_hash"]
                    if not isinstance(digest, str) or len(digest) != 64:
                        raise bad("payload_hash must be 64 hex characters")
                    block.payload_hashes[event.seq] = digest
                block.events.append(event)
            elif "session" in value:
                close_block()
                session = Session.model_validate(value["session"])
                expected, digest = value.get("events"), value.get("digest")
                if not isinstance(expected, int) or expected < 1 or not isinstance(digest, str):
                    raise bad("a session line needs `events` (a positive int) and `digest`")
                base = NO_BASE
                if value.get("base") is not None:
                    if not isinstance(value["base"], dict):
                        raise bad("a session line's base is a JSON object")
                    try:
                        base = LedgerBase.parse(session.id, canonical_json(value["base"]))
                    except CorruptedSessionError as exc:
                        raise bad(exc.detail) from exc
                    if base == NO_BASE:
                        raise bad("a session line's base, when present, is not the empty base")
                open_block = _Block(session, digest, [], number, expected, base)
                blocks.append(open_block)
            elif "scoped_state" in value:
                close_block()
                item = value["scoped_state"]
                app_name, user_id, state = item.get("app_name"), item.get("user_id"), item.get("state")
                if not isinstance(app_name, str) or not isinstance(state, dict) or not (
                    user_id is None or isinstance(user_id, str)
                ):
                    raise bad("a scoped_state line needs app_name, user_id and state")
                scoped.append((app_name, user_id, state))
            else:
                raise bad(f"unknown line with keys {sorted(value)}")
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, ExportFormatError):
                raise
            raise bad(str(exc).splitlines()[0]) from exc
    if not header:
        raise ExportFormatError("the file is empty: an export starts with its header line")
    close_block()
    return ParsedExport(blocks, scoped)


def _write_session(
    dest: BaseStore,
    session: Session,
    ledger: StoredLedger,
    *,
    skip_existing: bool,
    report: TransferReport,
    dry_run: bool = False,
) -> None:
    """Write one session's events into `dest`: all of them (with its base), the part it
    lacks, or none."""
    events, digest, base = ledger.events, ledger.last_hash, ledger.base
    try:
        there = dest.verify_session(session.id)
        there_base = dest.ledger_base(session.id) if there.ok else None
    except SessionNotFoundError:
        there, there_base = None, None
    start = 0
    if there is not None:
        same_base = _same_base(there_base, base)
        if same_base and there.ok and there.events == len(events) and there.last_hash == digest:
            report.unchanged += 1
            return
        prefix = (
            same_base
            and there.ok
            and 0 < there.events < len(events)
            and chain_digest(events[: there.events], base.chain_hash, ledger.payload_hashes)
            == there.last_hash
        )
        if not prefix:
            if not there.ok:
                why = f"it does not verify ({there.problem})"
            elif not same_base:
                why = (
                    "its history was erased or truncated differently (events from seq "
                    f"{there.first_seq}, {there.erased} erased; the source: from seq "
                    f"{base.chain_seq + 1}, {sum(e.erased for e in events)} erased); delete "
                    "it from the destination to copy it again"
                )
            else:
                why = (
                    f"it holds {there.events} events, last hash {there.last_hash[:12] or '-'}, "
                    f"the source {len(events)} events, last hash {digest[:12]}"
                )
            if skip_existing:
                report.skipped.append(session.id)
                return
            raise SessionConflictError(session.id, why)
        start = there.events
    if dry_run:
        return
    if start:
        dest.import_events(session.id, events[start:])
    else:
        dest.import_events(
            session.id,
            events,
            base=None if base == NO_BASE else base,
            payload_hashes=ledger.payload_hashes,
        )
    report.sessions += 1
    report.events += len(events) - start
    report.continued += start > 0


def _write_scoped(
    dest: BaseStore,
    scoped: Iterable[tuple[str, str | None, dict[str, Any]]],
    *,
    skip_existing: bool,
    report: TransferReport,
    dry_run: bool = False,
) -> None:
    for app_name, user_id, state in scoped:
        there = dest.get_scoped_state(app_name, user_id)
        if there == state:
            continue
        if there:
            if skip_existing:
                continue
            who = f"app {app_name!r}" + ("" if user_id is None else f", user {user_id!r}")
            raise SessionConflictError(
                f"<shared state of {who}>", "the destination holds other shared state"
            )
        if not dry_run:
            dest.update_scoped_state(app_name, user_id, state)
            report.scoped_states += 1


def _writable(store: SessionStore) -> BaseStore:
    if not isinstance(store, BaseStore):
        raise ConfigurationError(
            f"importing into {display_url(store.url)} is not supported: import on the "
            "server's own store (sqlite://, file://, postgresql:// or memory://)"
        )
    return store


def import_sessions(
    store: SessionStore, lines: Iterable[str] | ParsedExport, *, skip_existing: bool = False
) -> TransferReport:
    """Import an export (`export_sessions`' JSON Lines) into `store`, keeping ids, `seq`s
    and timestamps.

    The whole file is read and checked first; then every session is checked against the
    store before anything is written, so a refused import writes nothing. A session
    already there with the same history is left as it is; one whose history there is a
    beginning of the file's is continued; one with another history is refused, or left
    alone with `skip_existing`.

    Args:
        store: The destination (a local store: SQLite, file, PostgreSQL or memory).
        lines: The export's lines (an open file, `sys.stdin`, a list of strings), or
            the export as `read_export` returned it.
        skip_existing: Leave sessions (and shared states) that exist with another history
            as they are instead of refusing the import.

    Returns:
        What was written (`TransferReport`).

    Raises:
        ExportFormatError: The file is not a valid export (naming the line).
        SessionConflictError: A session (or shared state) exists with another history and
            `skip_existing` is false; nothing was written.
        ConfigurationError: `store` is an `http://` store.
    """
    dest = _writable(store)
    parsed = lines if isinstance(lines, ParsedExport) else read_export(lines)
    blocks, scoped = parsed.blocks, parsed.scoped
    check = TransferReport()
    ledgers = [
        (block.session, StoredLedger(block.base, block.events, block.payload_hashes, block.digest))
        for block in blocks
    ]
    for session, ledger in ledgers:
        _write_session(dest, session, ledger, skip_existing=skip_existing, report=check, dry_run=True)
    _write_scoped(dest, scoped, skip_existing=skip_existing, report=check, dry_run=True)
    report = TransferReport()
    for session, ledger in ledgers:
        _write_session(dest, session, ledger, skip_existing=skip_existing, report=report)
    _write_scoped(dest, scoped, skip_existing=skip_existing, report=report)
    return report


def copy_sessions(
    source: SessionStore,
    dest: SessionStore,
    session_ids: Iterable[str] | None = None,
    *,
    skip_existing: bool = False,
    on_session: Callable[[str, int], None] | None = None,
    **filters: Any,
) -> TransferReport:
    """Copy sessions from one store to another, session by session, then check the copy.

    Resumable: a session already copied (same events, same last hash) is left alone, one
    that grew since is continued with its new events, so running the copy again after an
    interruption finishes it. At the end every copied session's event count and digest
    (`verify_session`'s `last_hash`) are compared on both sides.

    Args:
        source: The store to read (not changed).
        dest: The store to write (SQLite, file, PostgreSQL or memory).
        session_ids: The sessions to copy; `None` copies every session `list_sessions`
            lists with `filters`.
        skip_existing: Leave sessions that exist in `dest` with another history as they
            are (listed in the report's `skipped`) instead of stopping.
        on_session: Called after each session with its id and its number of events.

    Returns:
        What was written (`TransferReport`).

    Raises:
        SessionConflictError: A session exists in `dest` with another history (sessions
            before it are copied; nothing of it is written).
        CorruptedSessionError: A source session's history is damaged, or the copy does not
            match the source when checked.
        ConfigurationError: `dest` is an `http://` store, an unknown filter, or a session
            with erased or truncated history read from an `http://` source.
    """
    writer = _writable(dest)
    if session_ids is not None and filters:
        raise ConfigurationError("copy takes session ids or filters, not both")
    ids = list(iter_session_ids(source, **filters) if session_ids is None else session_ids)
    report = TransferReport()
    copied: list[tuple[Session, StoredLedger]] = []
    for session_id in ids:
        ledger = _read_source(source, session_id)
        session = _project(ledger.base, ledger.events)
        skipped = len(report.skipped)
        _write_session(writer, session, ledger, skip_existing=skip_existing, report=report)
        if len(report.skipped) == skipped:
            copied.append((session, ledger))
        if on_session is not None:
            on_session(session_id, len(ledger.events))
    scoped = [
        (app, user, state)
        for app, user in _scopes(session for session, _ in copied)
        if (state := source.get_scoped_state(app, user))
    ]
    _write_scoped(writer, scoped, skip_existing=skip_existing, report=report)
    for session, ledger in copied:  # the check: what was read is what is stored
        there = writer.verify_session(session.id)
        count, digest = len(ledger.events), ledger.last_hash
        first, erased = ledger.base.chain_seq + 1, len(ledger.payload_hashes)
        if not (
            there.ok
            and there.events == count
            and there.last_hash == digest
            and there.first_seq == first
            and there.erased == erased
        ):
            raise CorruptedSessionError(
                session.id,
                f"the copy does not match the source: {there.events} events from seq "
                f"{there.first_seq}, {there.erased} erased, last hash "
                f"{there.last_hash[:12] or '-'}, vs {count} events from seq {first}, "
                f"{erased} erased, last hash {digest[:12]}",
            )
    return report
