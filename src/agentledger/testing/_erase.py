"""Conformance: erasing event payloads (`erase_events`) and dropping a ledger's prefix
(`truncate_before`), with `compact()`: what reads, the projection and `verify_session`
see afterwards, and that bad calls change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.core.events import EventType, NewEvent
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    InvalidEventError,
    SessionNotFoundError,
)
from agentledger.manager import SessionManager
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["EraseConformance"]


class EraseConformance(ConformanceBase):
    """Erase and truncate on every store: payloads gone for good, history verifiable."""

    def _session(self, store: SessionStore) -> tuple[str, str]:
        """A session of 6 events: created (seq 1), a secret message with a state change (2),
        a tool call in a turn (3), two plain messages (4, 5), a state operation (6)."""
        app = self.unique("app")
        sid = store.create_session(
            app_name=app, user_id="ada", state={"k": 0, "user:lang": "en"}, title="t"
        ).id
        store.append(
            sid,
            [
                msg("my card is card-xyzzy-secret", state_delta={"k": 1, "app:seen": True}),
                NewEvent(
                    type="tool_call",
                    author="agent",
                    data={"name": "lookup", "args": {"card": "card-xyzzy-secret"}},
                    invocation_id="turn-1",
                ),
            ],
        )
        store.append(sid, [msg("four"), msg("five")])
        store.append(
            sid, [msg("six", state_ops=[{"op": "increment", "path": "/k", "value": 2}])]
        )
        return sid, app

    # -- erase --------------------------------------------------------------------------

    def test_erase_removes_the_payload_and_keeps_the_header(self, store: SessionStore) -> None:
        sid, app = self._session(store)
        before_events = store.read_events(sid)
        before = store.get_session(sid)
        recorded = store.erase_events(sid, [3, 2, 3], "the user asked us to forget the card")
        assert recorded.type == "events_erased" and EventType.EVENTS_ERASED.value == recorded.type
        assert (recorded.seq, recorded.author, recorded.erased) == (7, "system", False)
        assert recorded.data == {"seqs": [2, 3], "reason": "the user asked us to forget the card"}
        after_events = store.read_events(sid)
        assert self.seqs(after_events) == [1, 2, 3, 4, 5, 6, 7]
        for old, new in zip(before_events, after_events, strict=False):
            header = ("id", "seq", "type", "author", "timestamp", "invocation_id")
            assert {k: getattr(new, k) for k in header} == {k: getattr(old, k) for k in header}
            if new.seq in (2, 3):
                assert (new.erased, new.data, new.state_delta, new.state_ops) == (True, {}, {}, [])
            else:
                assert new == old and not new.erased
        assert after_events[-1] == recorded
        # The projection does not change: only the version and last activity move on.
        after = store.get_session(sid)
        assert after.state == before.state == {"k": 3, "user:lang": "en", "app:seen": True}
        assert after.model_dump(exclude={"version", "updated_at"}) == before.model_dump(
            exclude={"version", "updated_at"}
        )
        assert after.version == 7 and after.updated_at == recorded.timestamp
        assert store.read_events(sid, types=["tool_call"])[0].data == {}
        report = store.verify_session(sid)
        assert report.ok, report
        assert (report.events, report.erased, report.first_seq) == (7, 2, 1)
        assert "xyzzy" not in str([e.model_dump() for e in store.read_events(sid)])

    def test_a_session_goes_on_after_an_erase(self, make_store: StoreFactory) -> None:
        store = make_store()
        sid, _ = self._session(store)
        store.erase_events(sid, [2], "privacy")
        store.append(sid, [msg("seven", state_delta={"k": 10})], expected_version=7)
        store.erase_events(sid, [1, 8], "again, the creation too")
        store.append(sid, [msg("ten", state_ops=[{"op": "increment", "path": "/k", "value": 1}])])
        session = store.get_session(sid)
        assert session.state["k"] == 11 and session.version == 10 and session.title == "t"
        events = store.read_events(sid)
        assert [e.seq for e in events if e.erased] == [1, 2, 8]
        report = store.verify_session(sid)
        assert report.ok and report.erased == 3, report
        if store.capabilities.persistent:
            reopened = make_store()
            assert reopened.get_session(sid) == session
            assert reopened.read_events(sid) == events
            assert reopened.verify_session(sid).ok

    def test_erase_works_on_a_terminated_session(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        SessionManager(store).finalize_session(sid, "completed", "done")
        recorded = store.erase_events(sid, [2], "privacy")
        assert store.get_session(sid).status == "terminated"
        assert recorded.seq == store.get_session(sid).version
        assert store.verify_session(sid).ok

    def test_bad_erases_change_nothing(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        store.erase_events(sid, [2], "first")  # seq 7 is an events_erased event
        before = self.record(store, sid)
        bad: list[tuple[Any, type[Exception]]] = [
            (([], "why"), ConfigurationError),
            (([0], "why"), ConfigurationError),
            (([8], "why"), ConfigurationError),
            (([2, 99], "why"), ConfigurationError),
            ((["2"], "why"), ConfigurationError),
            (([True], "why"), ConfigurationError),
            (("2", "why"), ConfigurationError),
            (([2], ""), ConfigurationError),
            (([2], None), ConfigurationError),
            (([7], "erase the record"), ConfigurationError),
        ]
        for (seqs, reason), error in bad:
            with pytest.raises(error):
                store.erase_events(sid, seqs, reason)
        with pytest.raises(ConcurrencyError):
            store.erase_events(sid, [3], "why", expected_version=6)
        with pytest.raises(SessionNotFoundError):
            store.erase_events("nope", [1], "why")
        assert self.record(store, sid) == before
        assert store.verify_session(sid).ok

    def test_events_erased_is_written_by_erase_only(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        with pytest.raises(InvalidEventError):
            store.append(sid, [NewEvent(type="events_erased", data={"seqs": [2], "reason": "x"})])
        assert store.get_session(sid).version == 6

    # -- truncate -----------------------------------------------------------------------

    def test_truncate_drops_a_prefix_and_keeps_the_session(self, make_store: StoreFactory) -> None:
        store = make_store()
        sid, app = self._session(store)
        before = store.get_session(sid)
        kept = store.read_events(sid, after=3)
        assert store.truncate_before(sid, 4) == 3
        assert store.get_session(sid) == before
        assert store.read_events(sid) == kept
        assert self.seqs(store.read_events(sid, after=1)) == [4, 5, 6]
        assert self.seqs(store.read_events(sid, after=4, limit=1)) == [5]
        assert self.seqs(store.read_events(sid, last=2)) == [5, 6]
        assert store.read_events(sid, types=["tool_call", "session_created"]) == []
        report = store.verify_session(sid)
        assert report.ok, report
        assert (report.events, report.first_seq) == (3, 4)
        assert store.truncate_before(sid, 2) == 0  # nothing stored before seq 4
        store.append(sid, [msg("seven", state_delta={"k": 7})])
        assert store.truncate_before(sid, 6) == 2
        assert self.seqs(store.read_events(sid)) == [6, 7]
        assert store.get_session(sid).state == {"k": 7, "user:lang": "en", "app:seen": True}
        assert store.verify_session(sid).ok
        if store.capabilities.persistent:
            reopened = make_store()
            assert self.seqs(reopened.read_events(sid)) == [6, 7]
            assert reopened.verify_session(sid).first_seq == 6

    def test_truncate_after_an_erase(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        store.erase_events(sid, [2, 3], "privacy")  # seq 7
        store.append(sid, [msg("eight", state_delta={"k": 8})])
        assert store.truncate_before(sid, 3) == 2  # erased seq 3 stays, its record too
        report = store.verify_session(sid)
        assert report.ok and report.erased == 1 and report.first_seq == 3, report
        assert store.truncate_before(sid, 8) == 5  # the erased events and their record go
        report = store.verify_session(sid)
        assert report.ok and report.erased == 0 and report.events == 1, report
        store.append(sid, [msg("nine", state_delta={"k": 9})])
        assert store.get_session(sid).state["k"] == 9
        assert store.verify_session(sid).ok
        store.erase_events(sid, [9], "the last one too")
        assert store.verify_session(sid).ok

    def test_keyed_retries_after_a_truncation(self, store: SessionStore) -> None:
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        store.append(sid, [msg("one", key="k:1"), msg("two", key="k:2")])  # seqs 2, 3
        store.append(sid, [msg("three", key="k:3")])  # seq 4
        assert store.truncate_before(sid, 3) == 2
        (again,) = store.append(sid, [msg("three", key="k:3")])  # a retry: the stored event
        assert again.seq == 4 and store.get_session(sid).version == 4
        kept = store.get_event(sid, "k:2")
        assert kept is not None and kept.seq == 3
        (new,) = store.append(sid, [msg("one", key="k:1")])  # its event was dropped: new
        assert new.seq == 5 and store.verify_session(sid).ok

    def test_rewind_of_an_erased_and_truncated_session(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        store.erase_events(sid, [2, 3], "privacy")  # seq 7, the projection base at 6
        store.append(sid, [msg("eight", state_delta={"k": 8})])
        store.append(sid, [msg("nine", state_delta={"k": 9}, invocation_id="turn-9")])
        assert store.truncate_before(sid, 3) == 2
        with pytest.raises(InvalidEventError, match="to_seq must be from 6"):
            store.rewind(sid, to_seq=5)
        assert store.get_session(sid).version == 9
        (marker,) = store.rewind(sid, before_invocation="turn-9")  # back to seq 8
        assert marker.seq == 10 and marker.data["to_seq"] == 8
        assert store.get_session(sid).state["k"] == 8
        store.rewind(sid, to_seq=6)  # the projection base itself
        assert store.get_session(sid).state["k"] == 3
        store.append(sid, [msg("twelve", state_delta={"k": 12})])
        report = store.verify_session(sid)
        assert report.ok and (report.first_seq, report.erased) == (3, 1), report
        assert store.get_session(sid).state["k"] == 12
        effective = [e.seq for e in store.read_events(sid, effective=True)]
        assert effective == [3, 4, 5, 6, 12]

    def test_truncate_after_a_rewind_keeps_the_session_rebuildable(self, store: SessionStore) -> None:
        sid, _ = self._session(store)  # k: 0, 1 at seq 2, 3 at seq 6
        store.append(sid, [msg("seven", state_delta={"k": 7})])
        store.rewind(sid, to_seq=3)  # seq 8: back to k 1
        store.append(sid, [msg("nine", state_delta={"k": 9})])
        store.rewind(sid, to_seq=5)  # seq 10: back before the first rewind's marker
        assert store.truncate_before(sid, 6) == 5
        report = store.verify_session(sid)
        assert report.ok and report.first_seq == 6, report
        assert store.get_session(sid).state["k"] == 1
        with pytest.raises(InvalidEventError, match="to_seq must be from 10"):
            store.rewind(sid, to_seq=7)
        store.append(sid, [msg("eleven", state_delta={"k": 11})])
        assert store.verify_session(sid).ok and store.get_session(sid).state["k"] == 11

    def test_fork_of_an_erased_and_truncated_session(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        store.erase_events(sid, [2, 3], "privacy")  # seq 7, the projection base at 6
        store.append(sid, [msg("eight", state_delta={"k": 8}), msg("nine")])
        assert store.truncate_before(sid, 3) == 2
        source = store.verify_session(sid)
        events = store.read_events(sid)
        for at_seq, length in ((None, 7), (8, 6), (7, 5)):
            fork = store.fork_session(sid, at_seq=at_seq)
            report = store.verify_session(fork.id)
            assert report.ok, report.problem
            assert (report.first_seq, report.erased, report.events) == (3, 1, length + 1)
            copied = store.read_events(fork.id)
            assert [(e.seq, e.type, e.timestamp, e.data, e.erased) for e in copied[:-1]] == [
                (e.seq, e.type, e.timestamp, e.data, e.erased) for e in events[:length]
            ]
            assert copied[-1].type == EventType.SESSION_FORKED
            assert {e.session_id for e in copied} == {fork.id}
            assert fork.state["k"] == (3 if at_seq == 7 else 8)
            assert fork.forked_from is not None and fork.forked_from.session_id == sid
            assert fork.forked_from.seq == (at_seq or 9)
            store.append(fork.id, [msg("ten", state_delta={"k": 10})])
            assert store.verify_session(fork.id).ok
            assert store.get_session(fork.id).state["k"] == 10
        for early in (5, 6):  # before the projection base, or before the erasure's record
            with pytest.raises(InvalidEventError, match="at_seq must be from 7"):
                store.fork_session(sid, at_seq=early)
        assert store.verify_session(sid) == source

    def test_bad_truncations_change_nothing(self, store: SessionStore) -> None:
        sid, _ = self._session(store)
        before = self.record(store, sid)
        for seq in (0, -1, 7, 2**70, "3", 3.0, True, None):
            with pytest.raises(ConfigurationError):
                store.truncate_before(sid, seq)  # type: ignore[arg-type]
        with pytest.raises(ConcurrencyError):
            store.truncate_before(sid, 3, expected_version=5)
        with pytest.raises(SessionNotFoundError):
            store.truncate_before("nope", 2)
        assert self.record(store, sid) == before
        assert store.truncate_before(sid, 6, expected_version=6) == 5  # the last one stays
        assert self.seqs(store.read_events(sid)) == [6]

    def test_compact_keeps_everything_readable(self, store: SessionStore) -> None:
        sid, app = self._session(store)
        other = store.create_session(app_name=app, user_id="bob").id
        store.erase_events(sid, [2], "privacy")
        store.truncate_before(sid, 3)
        store.delete_session(other)
        before = self.record(store, sid)
        store.compact()
        store.compact()
        assert self.record(store, sid) == before
        assert store.verify_session(sid).ok
        assert store.get_scoped_state(app, "ada") == {"user:lang": "en"}
