"""The store contract and `open_store(url)`.

`SessionStore` is the protocol every backend meets and the conformance suite in
`agentledger.testing` checks; `open_store` opens a backend by URL through a registry of
schemes. The write path shared by the built-in backends is `agentledger.stores.shared`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from agentledger.core.events import Event, NewEvent
from agentledger.core.lifecycle import Lifecycle
from agentledger.core.session import Session
from agentledger.errors import AgentLedgerError, ConfigurationError

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_STORE_URL",
    "SESSION_ORDERS",
    "Capabilities",
    "SessionFilter",
    "SessionPage",
    "SessionStore",
    "SchemeFactory",
    "FeedEvent",
    "VerifyReport",
    "default_store_url",
    "display_url",
    "mask_secrets",
    "open_store",
    "register_scheme",
    "remember_secrets",
]

DEFAULT_MAX_EVENT_BYTES = 1_048_576
"""The default limit on one event's JSON size, in bytes (1 MiB)."""

DEFAULT_STORE_URL = "sqlite:///agentledger.db"
"""The embedded default: a SQLite file in the working directory."""


SESSION_ORDERS = ("updated_desc", "updated_asc", "created_desc", "created_asc")
"""The orders `list_sessions` takes: by last activity (`updated_at`) or by creation
(`created_at`), newest (`desc`) or oldest (`asc`) first; ties broken by session id in the
same direction. The default is `"updated_desc"`."""


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Filters for `list_sessions`; `None` means "any". Timestamps compare `updated_at`.
    `order` is one of `SESSION_ORDERS`."""

    app_name: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    status: str | None = None
    phase: str | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    order: str = "updated_desc"


class SessionPage(BaseModel):
    """One page of `list_sessions`, in the order asked for (newest activity first by default).

    Attributes:
        sessions: Up to `limit` sessions, ordered by the order's column (`updated_at` or
            `created_at`) then `id`, both descending or both ascending.
        next_cursor: Pass it as `cursor=` to get the next page; `None` on the last page.
        corrupted: Ids of sessions on this page whose snapshot and ledger cannot be read
            back; they are left out of `sessions` so the others still list, and
            `get_session` on them raises `CorruptedSessionError`.
    """

    sessions: list[Session]
    next_cursor: str | None = None
    corrupted: list[str] = Field(default_factory=list)


class FeedEvent(BaseModel):
    """An event as the store-wide feed (`read_feed`) delivers it.

    Attributes:
        position: Its place in the feed: positive, increasing in commit order across all
            sessions of the store (not necessarily consecutive: a rolled-back or
            deleted write leaves a gap that never fills).
        event: The stored event.
    """

    model_config = ConfigDict(frozen=True)

    position: int
    event: Event


class VerifyReport(BaseModel):
    """What `verify_session` found in one session's stored history.

    Attributes:
        session_id: The session verified.
        ok: Whether every event is present (seq 1 to the session's version, no gap), every
            payload and header matches its hash, every hash chains to the one before it,
            and the session's snapshot matches its ledger.
        events: How many events the ledger holds.
        first_bad_seq: The first event found missing or changed (`None` when the ledger
            is fine but its snapshot is not, or the ledger cannot be read at all).
        problem: Why verification failed, in words; `None` when `ok`.
        last_hash: The hash of the last event when `ok` (`""` otherwise): keep it to check
            later that the history up to it has not changed.
        first_seq: The first event the ledger holds when `ok`: 1, or the seq a
            `truncate_before` kept the ledger from (it chains from the recorded hash of the
            last dropped event).
        erased: How many of the events held have their payload erased (`erase_events`),
            each recorded by an `events_erased` event; their payload hashes are kept, so the
            chain still verifies.
    """

    session_id: str
    ok: bool
    events: int = 0
    first_bad_seq: int | None = None
    problem: str | None = None
    last_hash: str = ""
    first_seq: int = 1
    erased: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can promise beyond the common contract; the conformance suite skips the
    checks a store does not declare.

    Attributes:
        persistent: Data outlives the process (and survives `kill -9` once acknowledged).
        multi_process: Several processes may write to the same store at once.
        injectable_clock: `open_store(url, clock=..., lifecycle=...)` takes a clock (event
            timestamps) and a phase configuration; a store served by another process (the
            `http://` store) takes both from its server instead.
    """

    persistent: bool
    multi_process: bool
    injectable_clock: bool = True


@runtime_checkable
class SessionStore(Protocol):
    """The contract every store meets; `agentledger.testing` checks it."""

    url: str
    capabilities: Capabilities
    lifecycle: Lifecycle
    max_event_bytes: int

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
        """Create a session: its ledger starts with one `session_created` event (seq 1).

        Args:
            app_name: The application the session belongs to (scopes `app:` state).
            user_id: The user it belongs to (scopes `user:` state within the app).
            agent_name: The agent that works in it, if any.
            title: A short human label.
            purpose: What the session is for (e.g. `"approval_workflow"`).
            state: Initial state (`None` values are stored as null); `app:`/`user:` keys
                update the shared scopes, `temp:` keys are dropped.
            metadata: Initial metadata, a JSON object.
            phase: The initial phase; `"initializing"` when `None`.
            session_id: A caller-chosen id; a new ULID when `None`.
            created_at: The creator's own time (aware), kept in the `session_created`
                event's `data["timestamp"]` (see `NewEvent.timestamp`); the event, and so
                the session's `created_at` and `updated_at`, are stamped by the store's
                clock whatever is given here.

        Returns:
            The new session (version 1), with its scoped state merged in.

        Raises:
            InvalidSessionIdError: `session_id` is empty, over 512 characters, or holds a
                control character (NUL, newline, …).
            SessionExistsError: `session_id` is taken; nothing was written.
            InvalidEventError: A value JSON cannot hold; nothing was written.
            EventTooLargeError: The initial state and metadata are over `max_event_bytes`.
            InvalidTransitionError: `phase` is unknown or final (`lifecycle`).
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """Append events to a session's ledger atomically.

        Args:
            session_id: The session to append to.
            events: New events, in order; each becomes one ledger entry.
            expected_version: The session's current `version` as the caller last saw it;
                `None` appends whatever the version is.
            expected_state: State keys (session keys, or prefixed `app:`/`user:`) mapped to
                the values the caller read and based its events on; `None` for a key it
                read as absent (it also matches a key whose value is null). Checked in the append's transaction against the current
                state, so a read-modify-write of state never loses a concurrent update,
                even one made from another session of the same app or user. `temp:` keys
                are ignored. Without it, state deltas are last-writer-wins per key.

        Returns:
            The stored events, with `seq` assigned (gapless, starting at version + 1).
            Idempotent with keys: when every event has a key (`NewEvent.key`) and every
            key is stored already with the same content (type, author, data,
            state_delta, state_ops, invocation_id; not the timestamp), nothing is written
            and the stored events are returned, in the batch's order; this is decided
            before `expected_version`, `expected_state` and the lifecycle are checked, so
            a retry of an acknowledged append succeeds even after the session moved on.
            Time never runs backwards in a session: an event whose timestamp (its own, or
            the store's clock when it has none) is earlier than the session's last event
            is stored with the last event's timestamp instead. Each event is chained to the
            one before it by its hash (`verify_session`).

        Raises:
            SessionNotFoundError: No session has this id.
            ConcurrencyError: `expected_version` is not the current version; nothing was
                written.
            StateConflictError: A key of `expected_state` has another value now (a
                `ConcurrencyError`); nothing was written.
            InvalidEventError: A value JSON cannot hold; nothing was written.
            DuplicateEventKeyError: An event key is stored already with other content, the
                batch mixes stored keys with new keys or unkeyed events, or a key appears
                twice in the batch; nothing was written.
            EventTooLargeError: An event's JSON is over `max_event_bytes`; nothing was
                written.
            InvalidTransitionError: The events break a lifecycle rule of `lifecycle`
                (`core.lifecycle.check_append`: appending to a terminated session, a new
                turn on a suspended one, an unknown or disallowed phase or status);
                checked inside the transaction; nothing was written.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def get_session(self, session_id: str) -> Session:
        """Return a session's projection from its snapshot, without reading its ledger.

        Raises:
            SessionNotFoundError: No session has this id.
            CorruptedSessionError: Neither the snapshot nor the ledger can be read back.
        """
        ...

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
        """Return a session's events in `seq` order.

        Args:
            session_id: The session.
            after: Only events with `seq > after`.
            limit: At most this many events (the first ones after `after`).
            last: Only the last N matching events (still in `seq` order); with `limit`,
                `last` wins.
            types: Only events of these types.
            after_timestamp: Only events stored strictly after this time (aware datetime;
                compared with the event's `timestamp`, the store's clock).
            before_timestamp: Only events stored strictly before this time (aware).
                `limit` and `last` count the events within the time window.
            keys: Only the events with these keys (at most 1,000; an empty list finds
                none); keys that are not stored are skipped. Found through the store's
                key index, whatever the ledger's length.
            key_prefix: Only the events whose key starts with this prefix (a range of the
                key index); with `last=1`, the latest event of a namespace
                (`key_prefix="ckpt:", last=1`).
            data_match: Only the events whose `data` holds these values: dotted paths
                (`{"metadata.source": "input"}`) mapped to JSON scalars; a path walks
                object keys only (no array indexing), a missing key never matches, `None`
                matches a stored `null`, numbers compare as numbers and booleans only
                equal booleans (`agentledger.core.keys`). All filters combine (AND);
                `limit` and `last` count the events that pass them all.
            effective: Only the events still in effect after the session's rewinds
                (`rewind`): events a rewind undid and the `rewound` markers themselves
                are left out (they stay in the ledger). The other filters apply on top,
                and `limit`/`last` count events in effect. `False` (default): every event.

        Raises:
            ConfigurationError: A bound that is not an aware datetime, a bad
                `after`/`limit`/`last`, a bad key or key prefix (see `NewEvent.key`), more
                than 1,000 keys, or a bad `data_match` (a path with an empty part, a value
                that is a list or an object).
            SessionNotFoundError: No session has this id.
            CorruptedSessionError: A stored event cannot be read back; or, unless `types`
                filters them, the events read have a gap in `seq`, or one of them does not
                match its chain hash (checked between the events read, and from the start
                of the chain on a read from seq 1; `verify_session` checks everything).
        """
        ...

    def get_event(self, session_id: str, key: str) -> Event | None:
        """Return the session's event with this idempotency key, through the key index.

        Args:
            session_id: The session.
            key: The event's key (`NewEvent.key`).

        Returns:
            The event, or `None` when no event of the session has this key.

        Raises:
            ConfigurationError: `key` is not a valid key.
            SessionNotFoundError: No session has this id.
            CorruptedSessionError: The stored event cannot be read back.
        """
        ...

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
        """List sessions, newest activity first unless `order` says otherwise, one page
        at a time.

        Args:
            app_name, user_id, agent_name, status, phase: Exact-match filters.
            updated_after, updated_before: Last activity strictly after / before (UTC).
            limit: Page size, 1 to 1,000.
            cursor: `next_cursor` of the previous page (of the same `order`).
            order: `"updated_desc"` (newest activity first), `"updated_asc"`,
                `"created_desc"` (newest session first) or `"created_asc"`
                (`SESSION_ORDERS`).

        Raises:
            ConfigurationError: `limit` is out of range, `order` is unknown, `cursor`
                is not one we made for this order, `status` is not a session status
                (`active`, `suspended`, `terminated`), or `phase` is not one of the store
                lifecycle's phases.
        """
        ...

    def iter_sessions(
        self,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        agent_name: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        order: str = "updated_desc",
        page_size: int = 200,
    ) -> Iterator[SessionPage]:
        """Yield every page of `list_sessions`, following the cursors to the last page.

        Each page is fetched when the previous one has been consumed, so a loop may stop
        early and memory holds one page at a time. A session changed while the walk goes
        on may move in the order: it may then be seen twice or not at all (as with
        cursors by hand); the walk always ends.

        Args:
            app_name, user_id, agent_name, status, phase, updated_after, updated_before,
                order: As `list_sessions`.
            page_size: Sessions per page, 1 to 1,000.

        Yields:
            `SessionPage`s in `order`; the last has `next_cursor=None`. Iterate
            `page.sessions` for the sessions, `page.corrupted` for the ids that cannot be
            read back.

        Raises:
            ConfigurationError: As `list_sessions` (bad `page_size`, `order`, `status` or
                `phase`), on the first `next()`.

        Example:
            ```python
            for page in store.iter_sessions(app_name="demo", order="created_asc"):
                for session in page.sessions:
                    print(session.id, session.created_at)
            ```
        """
        cursor: str | None = None
        while True:
            page = self.list_sessions(
                app_name=app_name,
                user_id=user_id,
                agent_name=agent_name,
                status=status,
                phase=phase,
                updated_after=updated_after,
                updated_before=updated_before,
                limit=page_size,
                cursor=cursor,
                order=order,
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_scoped_state(self, app_name: str, user_id: str | None = None) -> dict[str, Any]:
        """Return an app's or a user's shared state, without a session.

        Args:
            app_name: The application.
            user_id: `None` for the app's `app:` state; a user id for that user's `user:`
                state within the app.

        Returns:
            The state with its keys prefixed as sessions see them (`{"app:theme": "dark"}`
            or `{"user:lang": "en"}`); `{}` if the scope holds nothing. The state outlives
            every session: after a user's last session is deleted it is still here, and
            a new session of theirs sees it.

        Raises:
            InvalidEventError: `app_name` is not a non-empty string, or `user_id` is
                neither `None` nor a non-empty string.
            CorruptedSessionError: The stored state cannot be read back.
        """
        ...

    def update_scoped_state(
        self,
        app_name: str,
        user_id: str | None,
        delta: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        expected_state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change an app's or a user's shared state atomically, without a session.

        Args:
            app_name: The application.
            user_id: The user whose `user:` keys `delta` sets; `None` allows `app:` keys only.
            delta: `app:`/`user:` keys mapped to their new values (`None` is stored as
                null); no ledger event is written, sessions see the new values on their
                next read.
            remove: `app:`/`user:` keys to delete, after `delta` is applied; a key that is
                not there is skipped. A key may not be both in `delta` and in `remove`.
            expected_state: `app:`/`user:` keys mapped to the values the caller read
                (`None` for absent or null), checked under the same lock as the write, as
                `append`'s `expected_state`.

        Returns:
            The scope's state afterwards, as `get_scoped_state(app_name, user_id)` returns it.

        Raises:
            InvalidEventError: A key of `delta`, `remove` or `expected_state` without an
                `app:` or `user:` prefix (or a `user:` key with `user_id=None`), `remove`
                not a list of strings, a key both set and removed, a value JSON cannot
                hold, or a bad `app_name`/`user_id`; nothing was written.
            EventTooLargeError: `delta`'s JSON is over `max_event_bytes`.
            StateConflictError: A key of `expected_state` has another value now; nothing
                was written.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """Delete a session and its ledger (its `app:`/`user:` state stays).

        Args:
            session_id: The session.
            expected_version: Delete only if the session's version is still this one,
                checked atomically with the delete (retention uses it, so an append that
                lands after a session was chosen for deletion is never lost with it).

        Raises:
            SessionNotFoundError: No session has this id.
            ConcurrencyError: `expected_version` is not the current version; nothing was
                deleted.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def fork_session(
        self,
        source_id: str,
        *,
        at_seq: int | None = None,
        new_session_id: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """Copy a session's history up to a seq into a new session, atomically.

        The fork gets its own ledger: the source's events 1 to `at_seq`, copied (same
        seqs, types, authors, timestamps and payloads; new event ids, and the fork's own
        hash chain, so `verify_session` checks the fork on its own), then its own first
        event, `session_forked` (seq `at_seq + 1`, data `{"source_id", "source_seq",
        "source_hash"}`: the source's chain hash at `at_seq`). Its projection is the
        source's at `at_seq` (the snapshot itself when `at_seq` is the head) with
        `forked_from` set, `version` `at_seq + 1` and `updated_at` the fork's time; its
        `created_at`, app, user and agent are the source's. The source is unchanged, and
        later changes to either never reach the other. `app:`/`user:` state is shared, not
        forked: the fork sees the scopes as they are now, and the copied events' scoped
        deltas are not applied again.

        A source whose history was erased or truncated (`erase_events`, `truncate_before`)
        forks from where its stored ledger starts: the fork holds the same stored events
        (erased ones erased, with their payload hashes), chained anew from the source's
        hash before its first stored event, and a base like the source's, so it verifies
        with the same `first_seq` and erased events. `at_seq` then cannot be before the
        session's projection base nor before the `events_erased` record of an erased event
        it would copy.

        Args:
            source_id: The session to fork.
            at_seq: The last event to copy, 1 to the source's version (for an erased or
                truncated source, from where it can be rebuilt, see above); `None`: all of
                them (the head).
            new_session_id: The fork's id; a new ULID when `None`.
            expected_version: Fork only if the source's version is still this one.

        Returns:
            The fork (with its scoped state merged in, as `get_session` returns it).

        Raises:
            SessionNotFoundError: No session has `source_id`.
            SessionExistsError: `new_session_id` is taken (or is `source_id`); nothing
                was written.
            ConcurrencyError: `expected_version` is not the source's version.
            InvalidEventError: `at_seq` is not an int from 1 to the source's version (or
                is before where an erased or truncated source can be rebuilt).
            InvalidSessionIdError: An id is unsafe.
            CorruptedSessionError: The source's events to copy do not verify (a gap or a
                hash mismatch): a damaged history is never copied into a valid chain.
            ReadOnlyStoreError: The store was opened with `read_only=True`.

        Example:
            >>> fork = store.fork_session(session.id, at_seq=3)  # doctest: +SKIP
            >>> fork.forked_from.seq  # doctest: +SKIP
            3
        """
        ...

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
        """Undo a session's events after a seq (append-only), then append, atomically.

        Appends a `rewound` event (`data: {"to_seq": k}`, plus `"before_invocation"` when
        given that way) after which the session's projection is its projection as it was
        after event `k` (its own state, phase, status, metadata, counts), except its
        `version`, `updated_at` (time never runs backwards) and `forked_from`; then
        appends `then` on top, in the same transaction, so "replace the last N events" is
        never half done. Nothing is deleted: the undone events stay in the ledger (and
        in `read_events`), `read_events(effective=True)` leaves them and the marker out,
        and the hash chain goes on over all of them. `app:`/`user:` state is shared with
        other sessions and is not rewound (as ADK's `rewind` restores session state only).

        Seqs keep their meaning across rewinds: rewinding to `k` always returns to the
        projection after event `k`, even when `k` is inside a stretch an earlier rewind
        undid (those events up to `k` are in effect again).

        Args:
            session_id: The session.
            to_seq: The seq to go back to, 1 to the session's version (the version
                itself undoes nothing). For a session whose history was erased or
                truncated, from its projection base (the session before it cannot be
                rebuilt: the seq of its last erase's `events_erased` event minus one, or
                the last event a truncation dropped).
            before_invocation: Instead of `to_seq`: go back to just before the first
                event in effect with this `invocation_id` (ADK's
                `rewind_before_invocation_id`).
            then: Events to append after the `rewound` event, checked against the
                restored projection (lifecycle rules as `append`).
            expected_version: As `append`'s: the version before the rewind.
            expected_state: As `append`'s, checked against the state before the rewind.

        Returns:
            The stored events: the `rewound` event, then `then`.

        Raises:
            SessionNotFoundError: No session has this id.
            ConcurrencyError: `expected_version` is not the current version.
            StateConflictError: A key of `expected_state` has another value now.
            InvalidEventError: Neither or both of `to_seq` and `before_invocation`; a
                `to_seq` (or the seq before `before_invocation`) out of range; no event in effect of `before_invocation`; an
                event of `then` `append` would refuse. Nothing was written.
            EventTooLargeError: An event of `then` is over `max_event_bytes`.
            InvalidTransitionError: The session is terminated (fork it instead), or
                `then` breaks a lifecycle rule from the restored projection.
            ReadOnlyStoreError: The store was opened with `read_only=True`.

        Example:
            >>> store.rewind(session.id, to_seq=3, then=[reply])  # doctest: +SKIP
        """
        ...

    def verify_session(self, session_id: str) -> VerifyReport:
        """Check a session's whole stored history against its hash chain.

        Reads every event and recomputes every hash (`agentledger.core.chain`): each
        event's payload hash, each event's hash over its header, its payload hash and the
        previous event's hash; checks that seqs run from 1 to the session's version with no
        gap, that the last hash is the one the session's last commit recorded, and that
        the snapshot equals the projection of the ledger. O(events).

        Args:
            session_id: The session.

        Returns:
            A `VerifyReport`: `ok`, or the first bad seq and why. Damage is reported,
            not raised.

        Raises:
            SessionNotFoundError: No session has this id.
        """
        ...

    def read_feed(self, after: int = 0, limit: int = 1000) -> list[FeedEvent]:
        """Read the store-wide event feed: the events of every session in commit order.

        A reader that calls it again with the last `position` it got (`after=`) never
        skips an event and never sees one twice, whatever the writers do: events are
        delivered in the order their writes committed (also when concurrent transactions
        on PostgreSQL commit in another order than they started), and an event of a write
        that rolled back is never seen. Events of deleted sessions, and events removed by
        truncation, are not delivered once gone. Imported events (`import_events`) enter
        the feed when they are imported.

        Args:
            after: Return events with a position strictly greater (0: from the start).
            limit: At most this many events (1 to 10,000).

        Returns:
            Up to `limit` `FeedEvent`s (`position`, `event`), by increasing position;
            `[]` when the reader is at the end.

        Raises:
            ConfigurationError: `after` is not a non-negative int, or `limit` is out of range.
        """
        ...

    def feed_position(self) -> int:
        """The position of the last event in the feed (0 when it is empty): a reader at
        that position is up to date, and `feed_position() - position` is its lag."""
        ...

    def erase_events(
        self,
        session_id: str,
        seqs: Sequence[int],
        reason: str,
        *,
        expected_version: int | None = None,
    ) -> Event:
        """Erase the payload of some of a session's events for good (privacy).

        In one transaction: each event's `data`, `state_delta` and `state_ops` are removed
        (it reads back with `erased=True` and an empty payload, its seq, type, author,
        timestamp and invocation id kept), and an `events_erased` event recording `seqs` and
        `reason` is appended. The session's projection does not change: the snapshot
        already holds the folded state. To remove a value from the state too, append an
        event that removes it first, then erase the events that carried it.

        Projection and verification: the ledger can no longer reproduce an erased event's
        state change, so the erase re-bases the projection on the session as it is at the
        erase (the store keeps that snapshot as the session's base); the invariant is "the
        projection of the events after the base, continuing the base, equals the
        snapshot". Each erased event keeps its `payload_hash`, so the hash chain still
        verifies; `verify_session` skips the payload check of an erased event only when an
        `events_erased` event records it. The bytes of the old payloads leave the store's
        files once `compact()` has run.

        Args:
            session_id: The session.
            seqs: The seqs to erase (any order, repeats ignored); each must be held by the
                ledger and not be an `events_erased` event. An event erased already may be
                named again.
            reason: Why (kept in the `events_erased` event: never put the erased data here).
            expected_version: Erase only if the session's version is still this one.

        Returns:
            The `events_erased` event (its `data` is `{"seqs": [...], "reason": ...}`).

        Raises:
            SessionNotFoundError: No session has this id.
            ConfigurationError: `seqs` is empty, holds something other than ints >= 1, or
                a seq the ledger does not hold (or an `events_erased` event); `reason` is
                empty; nothing was erased.
            ConcurrencyError: `expected_version` is not the current version; nothing was
                erased.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def truncate_before(
        self, session_id: str, seq: int, *, expected_version: int | None = None
    ) -> int:
        """Drop the events before `seq` from a session's ledger, for good (compaction).

        The session (its snapshot, version and state) does not change. The store keeps
        the hash of the last dropped event, so the ledger left still verifies, and the
        session's projection at the cut as its base: the invariant becomes "the projection
        from the base equals the snapshot". Reads return the events from `seq` on; the
        bytes of the dropped events leave the store's files once `compact()` has run.

        Args:
            session_id: The session.
            seq: The first event to keep, at most the session's version (the last event
                always stays); a `seq` at or before the ledger's first event drops nothing.
            expected_version: Truncate only if the session's version is still this one.

        Returns:
            How many events were dropped.

        Raises:
            SessionNotFoundError: No session has this id.
            ConfigurationError: `seq` is not an int >= 1, or is past the last event; nothing
                was dropped.
            ConcurrencyError: `expected_version` is not the current version.
            CorruptedSessionError: The events to fold into the base cannot be read back.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def compact(self) -> None:
        """Reclaim the space of erased payloads, dropped events and deleted sessions, so
        their bytes are no longer in the store's files.

        What it does depends on the store (the README's "Erase and compaction" lists it):
        SQLite rebuilds its file (`VACUUM`), then checkpoints its write-ahead log into it
        and truncates the log (the database overwrites freed content with zeros:
        `secure_delete`); PostgreSQL runs `VACUUM FULL` on its tables; the file store rewrites a ledger whenever it erases
        or truncates, so it only removes leftovers; memory does nothing.

        Raises:
            StoreUnavailableError: The store is busy (SQLite: a reader holds the old log);
                try again.
            ReadOnlyStoreError: The store was opened with `read_only=True`.
        """
        ...

    def close(self) -> None:
        """Release connections and file handles; the store is unusable afterwards."""
        ...

    def __enter__(self) -> Self:
        """Return the store itself, for `with open_store(url) as store:`."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...

# -- opening stores by URL ----------------------------------------------------------------


SchemeFactory = Callable[[str, dict[str, str]], SessionStore]
_SCHEMES: dict[str, SchemeFactory] = {}


def register_scheme(scheme: str, factory: SchemeFactory) -> None:
    """Make `open_store` open URLs of `scheme` with `factory(url, options)`.

    Args:
        scheme: The URL scheme, e.g. `"sqlite"`.
        factory: Called with the full URL and its query options (`{"durability": "normal"}`).
    """
    _SCHEMES[scheme] = factory


def default_store_url() -> str:
    """Return `$AGENTLEDGER_STORE` if set, else `sqlite:///agentledger.db`."""
    return os.environ.get("AGENTLEDGER_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, **options: Any) -> SessionStore:
    """Open a store by URL.

    Args:
        url: `memory://`, `sqlite:///relative.db`, `sqlite:////absolute.db`; query options
            such as `?durability=normal&max_event_bytes=65536` are passed to the store.
            `None` uses `default_store_url()`.
        **options: More options, overriding the URL's query options. Every built-in store
            takes `max_event_bytes`, `clock`, `lifecycle`, `read_only` and `create` (see
            `BaseStore`), plus its own (the README lists them).
            `read_only=True` opens for reading only: nothing is created, migrated or
            written. `create=False` opens an existing store only. Neither ever creates
            the folders above the store. `plugins=[...]` enables plugins (names, as
            `agentledger.plugins.load_plugin` takes them, or plugin objects; in a URL,
            `?plugins=redact,acme`); without it, those named in `$AGENTLEDGER_PLUGINS`.
            The plugins' durable event handlers run right after each append unless
            `inline_handlers=False` (`?inline_handlers=false`).
            An `http://` store's plugins run in its server: naming one checks that the
            server runs it.

    Returns:
        An open store; use it as a context manager or call `close()`.

    Raises:
        ConfigurationError: A URL that cannot be parsed, an unknown scheme, an option the
            store does not take (the message lists the valid ones), a bad option value,
            or a plugin that cannot be loaded (or that an `http://` server does not run).
        MissingDependencyError: The scheme needs an extra (`postgresql://`: `postgres`).
        StoreNotFoundError: The store does not exist and may not be created
            (`read_only=True`, `create=False`), or its parent folder is missing.
        StoreUnavailableError: The store cannot be reached or opened.
        SchemaVersionError: The store was written by a newer agentledger, or it is older
            and `read_only=True` (a read never migrates).

    Example:
        >>> with open_store("memory://") as store:
        ...     session = store.create_session(app_name="demo", user_id="ada")
    """
    url = url or default_store_url()
    from agentledger.stores import _register_builtin_schemes

    _register_builtin_schemes()
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL is a string, not {url!r}")
    remember_secrets(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unbalanced "["
        raise ConfigurationError(f"bad store URL {display_url(url)!r}: {exc}") from exc
    factory = _SCHEMES.get(parts.scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(
            f"unknown store URL scheme in {display_url(url)!r}; known schemes: {known}"
        )
    merged: dict[str, Any] = dict(parse_qsl(parts.query))
    merged.update(options)
    from agentledger.plugins.host import resolve_plugins

    # Plugins are loaded before the store is opened: a bad name creates nothing.
    host = resolve_plugins(
        merged.pop("plugins", None), inline_handlers=merged.pop("inline_handlers", True)
    )
    try:
        store = factory(url, merged)
    except AgentLedgerError as exc:
        # A factory's message may quote the URL, or a driver may echo part of it (libpq
        # quotes a bad percent-escape whole, password included): mask it here, for every
        # scheme, third-party ones included.
        _mask_exception(exc)
        raise
    use_plugins = getattr(store, "use_plugins", None)
    if callable(use_plugins):
        try:
            use_plugins(host)
        except BaseException:
            store.close()
            raise
    elif host is not None:
        store.close()
        raise ConfigurationError(
            f"the store {display_url(url)} does not run plugins "
            f"(asked for: {', '.join(host.names)})"
        )
    return store


def display_url(url: str) -> str:
    """Return a store URL fit to print or log, every secret replaced by `***`.

    Masked: the password of the user part (`user:pw@host`), and the value of every
    secret-bearing parameter (`password=`, `sslpassword=`, any name containing `password`,
    `passwd`, `secret`, `token` or `apikey`/`api_key`), whether in the query string of a
    URL or in a libpq key=value string (`host=db password='x y'`). A URL that cannot be
    taken apart shows only its scheme (`postgresql://***`).

    Args:
        url: A store URL or a libpq key=value connection string.

    Returns:
        The same text with its secrets masked; unchanged when it has none.
    """
    if "://" not in url:  # a key=value conninfo string, or not a URL at all
        return mask_secrets(url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show nothing after the scheme
        return url.split(":", 1)[0] + "://***"
    hidden = parts
    if password is not None:
        hidden = hidden._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1))
    pairs = parse_qsl(parts.query, True)
    if any(_SECRET_NAME.search(k) for k, _ in pairs):
        query = [(k, "***" if _SECRET_NAME.search(k) else v) for k, v in pairs]
        hidden = hidden._replace(query=urlencode(query, safe="*", quote_via=quote))
    # urlunsplit would drop an empty "//" (sqlite:///x.db), so rebuild only when needed.
    return url if hidden is parts else urlunsplit(hidden)


# -- masking secrets in messages ----------------------------------------------------------

_SECRET_WORDS = r"password|passwd|secret|token|api[_-]?key"
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
_SECRET_PARAM = re.compile(
    # a name holding a secret word, `=`, then a libpq single-quoted value (with `\'`
    # escapes; an unterminated one runs to the end) or a bare value up to a separator
    rf"(?P<name>(?<![\w.-])[\w.-]*(?:{_SECRET_WORDS})[\w.-]*)(?P<eq>\s*=\s*)"
    # (a quote or punctuation inside a bare value is kept, one ending a sentence is not)
    r"(?P<value>'(?:[^'\\]|\\.)*'?"
    r"|(?:[^\s&;#'\"<>:,.)\]}]|['\":,.)\]}](?![\s&;#'\"<>:,.)\]}]|$))*)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(
    # scheme://user:PASSWORD@ (the password runs to the last "@" of the authority)
    r"(?P<head>\b[a-zA-Z][\w+.-]*://[^\s/?#@:]*:)(?P<value>[^\s/?#]*)@"
)
_known_secrets: set[str] = set()
_known_lock = threading.Lock()
_MAX_KNOWN = 256
_MIN_KNOWN_LENGTH = 4


def _url_secrets(url: str) -> set[str]:
    """The secret values a store URL or conninfo string holds, as written and decoded."""
    found: set[str] = set()
    for match in _URL_PASSWORD.finditer(url):
        found.add(match["value"])
    for match in _SECRET_PARAM.finditer(url):
        value = match["value"]
        if value.startswith("'"):
            value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
        found.add(value)
    found |= {unquote(v) for v in found}
    # Masked out of context, a very short value would hide ordinary words too; in context
    # (`password=…`, `user:…@`) every value is masked whatever its length.
    return {v for v in found if len(v) >= _MIN_KNOWN_LENGTH and v != "***"}


def remember_secrets(url: str) -> None:
    """Remember the secrets of a store URL (its password, `password=`/`sslpassword=`…
    values, raw and percent-decoded), so `mask_secrets` masks them wherever they appear,
    even where a driver echoes them out of context (libpq quotes a bad percent-escape
    whole). `open_store` calls it for every URL it opens; the set is process-wide and
    bounded (all are forgotten past 256); values shorter than 4 characters are masked only
    in context.

    Args:
        url: A store URL or a libpq key=value connection string.
    """
    secrets = _url_secrets(url)
    if not secrets:
        return
    with _known_lock:
        if len(_known_secrets) + len(secrets) > _MAX_KNOWN:
            _known_secrets.clear()
        _known_secrets.update(secrets)


def mask_secrets(text: str) -> str:
    """Return `text` with every secret masked as `***`: passwords in URLs
    (`scheme://user:pw@`), values of secret-bearing parameters (`password=…`,
    `sslpassword=…`, `password='quoted value'`, any name containing `password`, `passwd`,
    `secret`, `token` or `apikey`), and every secret value `remember_secrets` was given,
    wherever it appears. Every error message that can quote a store URL, a connection
    string or a driver's words goes through it before it is shown.

    Args:
        text: A message, a URL or a connection string.

    Returns:
        The text with its secrets replaced by `***`.
    """
    with _known_lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:  # as a whole token: a short password never masks a word
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}{m['eq']}***", text)


def _mask_exception(exc: BaseException) -> None:
    """Mask the secrets in an exception's message in place (its `args`, when they make
    its text), keeping its type and attributes."""
    masked = tuple(mask_secrets(a) if isinstance(a, str) else a for a in exc.args)
    if masked != exc.args:
        exc.args = masked
