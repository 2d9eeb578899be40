"""Conformance: time never runs backwards in a session, and every stored event is chained
(`agentledger.core.chain`) so that `verify_session` vouches for the whole history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agentledger.core.chain import GENESIS, canonical_json, event_hash, payload_hash
from agentledger.core.events import Event, NewEvent
from agentledger.errors import InvalidSessionIdError, SessionNotFoundError
from agentledger.stores.base import SessionStore
from agentledger.stores.shared import format_timestamp
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._lifecycle import FakeClock

__all__ = ["IntegrityConformance", "chain_of"]


def chain_of(events: list[Event]) -> str:
    """The chain hash of a whole ledger (seq 1 onwards), computed from its events as read
    back: what `verify_session` reports as `last_hash` on every store."""
    previous = GENESIS
    for event in events:
        digest = payload_hash(
            canonical_json(event.data),
            canonical_json(event.state_delta),
            canonical_json(event.state_ops),
        )
        previous = event_hash(
            previous,
            event.session_id,
            event.seq,
            event.id,
            event.type,
            event.author,
            format_timestamp(event.timestamp),
            event.invocation_id,
            digest,
        )
    return previous


class IntegrityConformance(ConformanceBase):
    """Monotonic time per session, and a verifiable hash chain per session."""

    # -- time never runs backwards ----------------------------------------------------

    def test_a_clock_going_backwards_never_stamps_an_earlier_time(
        self, make_store: StoreFactory
    ) -> None:
        clock = FakeClock()
        self.require_injectable_clock(make_store)
        store = make_store(clock=clock)
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        clock.advance(minutes=5)
        (last,) = store.append(sid, [msg("now")])
        clock.advance(days=-2)  # the clock jumps back two days
        late = store.append(sid, [msg("from a slow clock"), msg("again")])
        assert [e.timestamp for e in late] == [last.timestamp, last.timestamp]
        session = store.get_session(sid)
        assert session.updated_at == last.timestamp  # last activity did not move back
        assert [e.timestamp for e in store.read_events(sid)][-3:] == [last.timestamp] * 3
        recent = store.list_sessions(updated_after=last.timestamp - timedelta(seconds=1))
        assert sid in [s.id for s in recent.sessions]
        clock.advance(days=3)  # later again: time moves on as usual
        (after,) = store.append(sid, [msg("later")])
        assert after.timestamp == clock.now

    def test_an_earlier_timestamp_given_by_the_caller_is_raised_to_the_last(
        self, make_store: StoreFactory
    ) -> None:
        clock = FakeClock()
        self.require_injectable_clock(make_store)
        store = make_store(clock=clock)
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        created = store.get_session(sid).created_at
        hour = timedelta(hours=1)
        stored = store.append(
            sid,
            [
                msg("later", timestamp=created + hour),
                msg("earlier than the one before", timestamp=created - hour),
                msg("stamped by the store, whose clock is behind"),
                msg("later still", timestamp=created + 2 * hour),
            ],
        )
        assert [e.timestamp for e in stored] == [
            created + hour,
            created + hour,
            created + hour,
            created + 2 * hour,
        ]
        assert [e.timestamp for e in store.read_events(sid)[1:]] == [e.timestamp for e in stored]
        assert store.get_session(sid).updated_at == created + 2 * hour

    def test_a_duration_is_never_negative(self, make_store: StoreFactory) -> None:
        clock = FakeClock()
        self.require_injectable_clock(make_store)
        store = make_store(clock=clock)
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        created = store.get_session(sid).created_at
        before = created - timedelta(hours=1)
        store.append(
            sid,
            [
                NewEvent(type="phase_changed", data={"to": "completed"}, timestamp=before),
                NewEvent(type="session_finalized", data={"outcome": "completed"}, timestamp=before),
            ],
        )
        session = store.get_session(sid)
        assert session.duration_seconds == 0.0
        assert session.finalized_at == created

    # -- the hash chain -----------------------------------------------------------------

    def test_every_session_verifies_after_normal_use(self, store: SessionStore) -> None:
        app = self.unique("app")
        sid = store.create_session(
            app_name=app, user_id="ada", state={"z": 1, "a": [1.5, None]}, metadata={"k": "v"}
        ).id
        other = store.create_session(app_name=app, user_id="bob").id
        store.append(sid, [msg("héllo ☃ \x00 nul", invocation_id="turn-1")])
        store.append(
            sid,
            [
                NewEvent(
                    type="state_updated",
                    state_delta={"b": {"y": 2, "x": 1}, "user:tier": "gold", "app:n": 1e23,
                                 "z": None, "temp:t": 1, "neg": -0.0},
                ),
                NewEvent(type="tool_call", author="agent", data={"name": "t", "args": {"q": -1}}),
            ],
            expected_version=2,
        )
        store.append(other, [msg("hi")])
        for session_id, count in ((sid, 4), (other, 2)):
            report = store.verify_session(session_id)
            assert report.ok, report
            assert (report.session_id, report.events, report.first_bad_seq) == (
                session_id,
                count,
                None,
            )
            assert report.problem is None
            # The chain is the same function of the events on every store.
            assert report.last_hash == chain_of(store.read_events(session_id))

    def test_the_last_hash_changes_with_every_append(self, store: SessionStore) -> None:
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        first = store.verify_session(sid).last_hash
        assert len(first) == 64 and first != GENESIS
        store.append(sid, [msg("one")])
        second = store.verify_session(sid).last_hash
        assert second not in (first, "")
        assert second == chain_of(store.read_events(sid))

    def test_verify_an_unknown_or_unsafe_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError):
            store.verify_session("nope")
        with pytest.raises(InvalidSessionIdError):
            store.verify_session("../x")

    def test_partial_reads_check_what_they_can(self, store: SessionStore) -> None:
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        store.append(sid, [msg(str(i)) for i in range(6)])
        assert self.seqs(store.read_events(sid, after=2, limit=3)) == [3, 4, 5]
        assert self.seqs(store.read_events(sid, last=2)) == [6, 7]
        assert self.seqs(store.read_events(sid, types=["session_created"])) == [1]
        assert self.seqs(store.read_events(sid, after=99)) == []

    def test_times_at_the_edges_chain_and_verify(self, make_store: StoreFactory) -> None:
        self.require_injectable_clock(make_store)
        store = make_store(clock=lambda: datetime(1, 1, 1, tzinfo=timezone.utc))
        sid = store.create_session(app_name=self.unique("app"), user_id="ada").id
        store.append(
            sid,
            [
                msg(timestamp=datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)),
                msg(timestamp=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)),
            ],
        )
        assert store.verify_session(sid).ok
