"""`memory://` — the reference backend, in process.

A real store, not a mock: it keeps the same JSON rows SQLite keeps and goes through the same
write path, so it raises the same errors and passes the whole conformance suite. Data lives
as long as the store object: nothing is persisted. Thread-safe; one process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from agentledger.errors import ConcurrencyError, StoreUnavailableError
from agentledger.stores.base import Capabilities, SessionFilter
from agentledger.stores.shared import (
    BaseStore,
    EventRow,
    KeyIndex,
    SessionRow,
    StoreTransaction,
    format_timestamp,
    row_filter,
    select_keyed_rows,
    session_order,
)

__all__ = ["MemoryStore"]

_Scope = tuple[str, str | None]


class _MemoryTransaction(StoreTransaction):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.sessions: dict[str, SessionRow] = {}
        self.events: list[EventRow] = []
        self.scoped: dict[_Scope, str] = {}
        self.erased: dict[str, set[int]] = {}
        self.drop_before: dict[str, int] = {}
        self.bases: dict[str, str] = {}

    def load_session(self, session_id: str) -> SessionRow | None:
        return self.sessions.get(session_id) or self._store._sessions.get(session_id)

    def load_event_rows(self, session_id: str) -> list[EventRow]:
        return list(self._store._events.get(session_id, ()))

    def load_scoped_state(self, app_name: str, user_id: str | None) -> str | None:
        key = (app_name, user_id)
        return self.scoped.get(key) or self._store._scoped.get(key)

    def save_scoped_state(self, app_name: str, user_id: str | None, state: str) -> None:
        self.scoped[(app_name, user_id)] = state

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        self.events.extend(rows)

    def load_keyed_rows(self, session_id: str, keys: Sequence[str]) -> list[EventRow]:
        index = self._store._keys.get(session_id)
        if index is None:
            return []
        rows = self._store._events[session_id]
        # A truncated ledger starts past seq 1, and the keys of its dropped events are gone.
        first = rows[0].seq if rows else 1
        found = (index.seqs[k] - first for k in keys if k in index.seqs)
        return [rows[i] for i in found if 0 <= i < len(rows)]

    def save_session(self, row: SessionRow, *, new: bool) -> None:
        existing = None if new else self.load_session(row.id)
        self.sessions[row.id] = row if existing is None else row._replace(base=existing.base)

    def erase_event_rows(self, session_id: str, seqs: Sequence[int]) -> None:
        self.erased.setdefault(session_id, set()).update(seqs)

    def drop_event_rows(self, session_id: str, before: int) -> None:
        self.drop_before[session_id] = before

    def save_base(self, session_id: str, base: str) -> None:
        self.bases[session_id] = base

    def commit(self) -> None:
        store = self._store
        for session_id, seqs in self.erased.items():
            store._events[session_id] = [
                r._replace(
                    data="{}", state_delta="{}", state_ops="[]", state_remove="[]", erased=True
                )
                if r.seq in seqs
                else r
                for r in store._events.get(session_id, [])
            ]
        for session_id, before in self.drop_before.items():
            kept = [r for r in store._events.get(session_id, []) if r.seq >= before]
            store._events[session_id] = kept
            for gone in range(kept[0].seq - 1 if kept else before - 1, 0, -1):
                if store._positions.pop((session_id, gone), None) is None:
                    break  # dropped by an earlier truncation already
            # The keys of dropped events are free again, as in the SQL stores.
            index = store._keys[session_id] = KeyIndex()
            for r in kept:
                if r.key is not None:
                    index.add(r.key, r.seq)
        for row in self.events:
            store._events.setdefault(row.session_id, []).append(row)
            store._feed.append((row.session_id, row.seq))
            store._positions[(row.session_id, row.seq)] = len(store._feed)
            if row.key is not None:
                store._keys.setdefault(row.session_id, KeyIndex()).add(row.key, row.seq)
        store._sessions.update(self.sessions)
        for session_id, base in self.bases.items():
            store._sessions[session_id] = store._sessions[session_id]._replace(base=base)
        store._scoped.update(self.scoped)


class MemoryStore(BaseStore):
    """An in-process store; see `BaseStore` for the options (`max_event_bytes`, `clock`)."""

    scheme = "memory"
    capabilities = Capabilities(persistent=False, multi_process=False)

    def __init__(self, *, url: str = "memory://", **options: Any) -> None:
        super().__init__(url=url, **options)
        self._lock = threading.RLock()
        self._sessions: dict[str, SessionRow] = {}
        self._events: dict[str, list[EventRow]] = {}
        self._keys: dict[str, KeyIndex] = {}  # each session's key index
        self._scoped: dict[_Scope, str] = {}
        self._feed: list[tuple[str, int]] = []  # position p is _feed[p - 1]
        self._positions: dict[tuple[str, int], int] = {}  # (session, seq) -> position
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")

    @contextmanager
    def _transaction(self) -> Iterator[StoreTransaction]:
        self._check_open()
        with self._lock:
            tx = _MemoryTransaction(self)
            yield tx
            tx.commit()

    def _with_scoped_rows(self, row: SessionRow) -> tuple[SessionRow, str | None, str | None]:
        return (
            row,
            self._scoped.get((row.app_name, None)),
            self._scoped.get((row.app_name, row.user_id)),
        )

    def _fetch_session(self, session_id: str) -> tuple[SessionRow, str | None, str | None] | None:
        self._check_open()
        with self._lock:
            row = self._sessions.get(session_id)
            return None if row is None else self._with_scoped_rows(row)

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
        accept = row_filter(
            types=types, after_ts=after_ts, before_ts=before_ts, data_match=data_match
        )
        if keys is not None or key_prefix is not None:
            with self._lock:
                ledger = self._events.get(session_id, [])
                index = self._keys.get(session_id)
                if index is None:
                    return []
                first = ledger[0].seq if ledger else 1  # a truncated ledger starts later
                return select_keyed_rows(
                    index,
                    lambda seq: ledger[seq - first],
                    first - 1 + len(ledger),
                    after=max(after, first - 1),
                    limit=limit,
                    last=last,
                    keys=keys,
                    key_prefix=key_prefix,
                    accept=accept or (lambda row: True),
                )
        with self._lock:
            rows = self._events.get(session_id, [])
            if rows and after > 0:  # a truncated ledger starts past seq 1
                rows = rows[max(after - rows[0].seq + 1, 0) :]
        if data_match:
            assert accept is not None
            rows = [r for r in rows if accept(r)]
        if types:
            wanted = set(types)
            rows = [r for r in rows if r.type in wanted]
        if after_ts is not None or before_ts is not None:
            rows = [
                r
                for r in rows
                if (after_ts is None or r.timestamp > after_ts)
                and (before_ts is None or r.timestamp < before_ts)
            ]
        if last is not None:
            return rows[max(len(rows) - last, 0) :] if last else []
        return rows if limit is None else rows[:limit]

    def _fetch_feed(self, after: int, limit: int) -> list[tuple[int, EventRow]]:
        self._check_open()
        found: list[tuple[int, EventRow]] = []
        with self._lock:
            for position in range(after + 1, len(self._feed) + 1):
                session_id, seq = self._feed[position - 1]
                # Positions of events since gone (a deleted session) are skipped.
                if self._positions.get((session_id, seq)) != position:
                    continue
                rows = self._events.get(session_id) or []
                at = seq - rows[0].seq if rows else -1  # a ledger's seqs are consecutive
                if 0 <= at < len(rows):  # not dropped by a truncation
                    found.append((position, rows[at]))
                    if len(found) == limit:
                        break
        return found

    def _feed_position(self) -> int:
        self._check_open()
        return len(self._feed)

    def _fetch_scoped(self, app_name: str, user_id: str | None) -> str | None:
        self._check_open()
        with self._lock:
            return self._scoped.get((app_name, user_id))

    def _session_exists(self, session_id: str) -> bool:
        self._check_open()
        return session_id in self._sessions

    def _fetch_session_page(
        self, where: SessionFilter, after_key: tuple[str, str] | None, limit: int
    ) -> list[tuple[SessionRow, str | None, str | None]]:
        self._check_open()
        after = format_timestamp(where.updated_after) if where.updated_after else None
        before = format_timestamp(where.updated_before) if where.updated_before else None
        with self._lock:
            rows = [
                r
                for r in self._sessions.values()
                if (where.app_name is None or r.app_name == where.app_name)
                and (where.user_id is None or r.user_id == where.user_id)
                and (where.agent_name is None or r.agent_name == where.agent_name)
                and (where.status is None or r.status == where.status)
                and (where.phase is None or r.phase == where.phase)
                and (after is None or r.updated_at > after)
                and (before is None or r.updated_at < before)
            ]
            column, descending = session_order(where.order)

            def key(r: SessionRow) -> tuple[str, str]:
                return (r.created_at if column == "created_at" else r.updated_at, r.id)

            if after_key is not None:
                rows = [
                    r for r in rows if (key(r) < after_key if descending else key(r) > after_key)
                ]
            rows.sort(key=key, reverse=descending)
            return [self._with_scoped_rows(r) for r in rows[:limit]]

    def _delete_session(self, session_id: str, expected_version: int | None) -> bool:
        self._check_open()
        with self._lock:
            row = self._sessions.get(session_id)
            if row is None:
                return False
            if expected_version is not None and row.version != expected_version:
                raise ConcurrencyError(session_id, expected_version, row.version)
            for gone in self._events.pop(session_id, []):
                self._positions.pop((session_id, gone.seq), None)
            self._keys.pop(session_id, None)
            del self._sessions[session_id]
            return True

    def close(self) -> None:
        """Drop the data; later calls raise `StoreUnavailableError` (as every store's do).
        Closing twice is fine."""
        with self._lock:
            self._closed = True
            self._sessions, self._events, self._scoped, self._keys = {}, {}, {}, {}
            self._feed, self._positions = [], {}
