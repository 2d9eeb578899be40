"""Conformance: damage to one session's stored history stays with that session.

A row changed by hand, a failing disk or a bad restore damages one session's ledger. The
store must say so for that session (`CorruptedSessionError`, `verify_session` not ok) and
keep serving every other session: listing, stats, clean-up, reads and appends.

The damage is done at the storage level, bypassing the store's API, by `damage_event`. It
knows the stores shipped with agentledger (memory, SQLite, file, PostgreSQL); for any other
store the check is skipped, unless a subclass overrides `DamageConformance.damage_event`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest

from agentledger.core.chain import canonical_json
from agentledger.errors import CorruptedSessionError, SessionNotFoundError
from agentledger.manager import SessionManager
from agentledger.stores.base import SessionStore
from agentledger.stores.file import LEDGER, FileStore
from agentledger.stores.memory import MemoryStore
from agentledger.stores.sqlite import SqliteStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["Damage", "DamageConformance", "damage_event"]

Damage = Literal["changed", "malformed"]
"""How `damage_event` damages an event's `data`: `"changed"` changes one digit (valid JSON,
so only the hash chain shows it); `"malformed"` makes it `[1, 2]` (JSON, but not an object)."""

_MALFORMED = "[1,2]"


def _damaged(data: str, how: Damage) -> str:
    """The JSON text of an event's `data`, damaged."""
    if how == "malformed":
        return _MALFORMED
    digit = re.search(r"[0-9]", data)
    if digit is None:
        raise AssertionError(f"no digit to change in {data!r}")
    at = digit.start()
    return data[:at] + str((int(data[at]) + 1) % 10) + data[at + 1 :]


def damage_event(store: SessionStore, session_id: str, seq: int, how: Damage = "changed") -> bool:
    """Damage the stored `data` of one event, behind the store's back.

    Args:
        store: An open store: `MemoryStore`, `SqliteStore`, `FileStore` or `PostgresStore`.
        session_id: The session whose ledger to damage.
        seq: The event to damage; with `how="changed"` its `data` must hold a digit.
        how: `"changed"`: one digit of `data` changed (the JSON stays valid, the hash chain
            breaks); `"malformed"`: `data` replaced by `[1, 2]`.

    Returns:
        Whether a read of the whole ledger must see the damage (`CorruptedSessionError`):
        True, except for a `"changed"` payload on PostgreSQL, whose reads check the chain
        over the stored payload hashes (JSONB keeps values, not the hashed text) and leave
        recomputing them to `verify_session`.

    Raises:
        pytest.skip.Exception: The store is of another type (`http://`, a third party's):
            there is no way to reach its storage from here.
        AssertionError: The event is not stored where expected.
    """
    if isinstance(store, MemoryStore):
        with store._lock:
            rows = store._events[session_id]
            row = rows[seq - 1]
            assert row.seq == seq, f"event {seq} of {session_id} is not where expected"
            rows[seq - 1] = row._replace(data=_damaged(row.data, how))
        return True
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            with conn:
                ((data,),) = conn.execute(
                    "SELECT data FROM events WHERE session_id = ? AND seq = ?", (session_id, seq)
                ).fetchall()
                conn.execute(
                    "UPDATE events SET data = ? WHERE session_id = ? AND seq = ?",
                    (_damaged(data, how), session_id, seq),
                )
        finally:
            conn.close()
        return True
    if isinstance(store, FileStore):
        ledger = Path(store._file(session_id, LEDGER))  # the folder named for this id
        lines = ledger.read_bytes().split(b"\n")
        line = lines[seq - 1]
        record = json.loads(line)
        assert record["seq"] == seq, f"event {seq} of {session_id} is not on line {seq}"
        data = f'"data":{canonical_json(record["data"])}'.encode()
        assert line.count(data) == 1, f"cannot find the data of event {seq} in {line!r}"
        lines[seq - 1] = line.replace(data, b'"data":' + _damaged(data.decode()[7:], how).encode())
        ledger.write_bytes(b"\n".join(lines))
        return True
    try:
        from agentledger.stores.postgres import PostgresStore
    except ImportError:  # psycopg is not installed: no store can be a PostgresStore
        PostgresStore = None  # type: ignore[assignment,misc]  # noqa: N806
    if PostgresStore is not None and isinstance(store, PostgresStore):
        import psycopg
        from psycopg import sql

        with psycopg.connect(store._conninfo, **store._connect_kwargs) as pg:
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(store.schema)))
            ((data,),) = pg.execute(
                "SELECT data::text FROM events WHERE session_id = %s AND seq = %s",
                (session_id, seq),
            ).fetchall()
            pg.execute(
                "UPDATE events SET data = %s::jsonb WHERE session_id = %s AND seq = %s",
                (_damaged(canonical_json(json.loads(data)), how), session_id, seq),
            )
        return how != "changed"
    pytest.skip(  # raises
        f"cannot damage the storage of {type(store).__name__} ({store.url}) from the test: "
        "override DamageConformance.damage_event for it"
    )


class DamageConformance(ConformanceBase):
    """One session's damaged history never breaks another session or the whole store."""

    def damage_event(
        self, store: SessionStore, session_id: str, seq: int, how: Damage
    ) -> bool:
        """Damage one stored event's `data` behind the store's back and return whether a
        read of the whole ledger must see it (see `damage_event`); override it for a store
        `damage_event` does not know, or the check skips."""
        return damage_event(store, session_id, seq, how)

    @pytest.mark.parametrize("how", ["changed", "malformed"])
    def test_a_damaged_session_leaves_the_others_working(
        self, make_store: StoreFactory, how: Damage
    ) -> None:
        """What every store guarantees once event 2 of session `a` is damaged:

        - `verify_session` reports event 2 as the first bad one, and reading `a`'s whole
          ledger raises `CorruptedSessionError` (except for a changed payload on
          PostgreSQL, whose reads check the stored payload hashes, not the payloads);
        - `get_session(a)` may still answer from `a`'s snapshot, which is intact (stores
          read the snapshot, not the ledger); if it raises `CorruptedSessionError`,
          `list_sessions` lists `a` in `corrupted`, else among the sessions;
        - session `b`, its events and its `app:`/`user:` state read back unchanged, appends
          to `b` work, `SessionManager.stats` and a dry-run `cleanup` work and count `b`;
        - `a` can be deleted.
        """
        store = make_store()
        app = self.unique("app")
        a = store.create_session(app_name=app, user_id="ada", state={"k": 1}).id
        store.append(a, [msg("pay 100"), msg("then")])
        b = store.create_session(
            app_name=app,
            user_id="bob",
            state={"app:tier": "gold", "user:lang": "en", "own": 1},
        ).id
        store.append(
            b, [msg("hello", state_delta={"app:count": 1, "user:seen": True, "own": 2})]
        )
        b_before = self.record(store, b)
        assert b_before[0].state["app:tier"] == "gold" and b_before[0].state["user:seen"] is True
        reads_see_it = self.damage_event(store, a, 2, how)
        readers = [store]
        if store.capabilities.persistent:
            readers.append(make_store())  # and a store opened after the damage
        for reader in readers:
            if reads_see_it:
                with pytest.raises(CorruptedSessionError) as info:
                    reader.read_events(a)
                assert info.value.session_id == a
            report = reader.verify_session(a)
            assert not report.ok and report.first_bad_seq == 2, report
            try:
                reader.get_session(a)
                a_readable = True
            except CorruptedSessionError as exc:
                assert exc.session_id == a
                a_readable = False
            page = reader.list_sessions()
            listed = [s.id for s in page.sessions]
            assert sorted(listed) == sorted([a, b] if a_readable else [b])
            assert page.corrupted == ([] if a_readable else [a])
            assert self.record(reader, b) == b_before
            manager = SessionManager(reader)
            stats = manager.stats()
            assert stats.total == len(listed) and stats.corrupted == page.corrupted
            result = manager.cleanup(timedelta(0), dry_run=True)
            assert b in result.session_ids
            assert sorted(result.session_ids + result.skipped_corrupted) == sorted([a, b])
            assert self.record(reader, b) == b_before  # a dry run deletes nothing
        (after,) = store.append(b, [msg("after the damage")])
        assert after.seq == b_before[0].version + 1
        assert store.read_events(b) == [*b_before[1], after]
        store.delete_session(a)  # a damaged session can still be deleted
        with pytest.raises(SessionNotFoundError):
            store.get_session(a)
        page = store.list_sessions()
        assert [s.id for s in page.sessions] == [b] and page.corrupted == []
