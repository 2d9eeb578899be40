"""Conformance: `fork_session` and `rewind`.

A fork is a new session whose ledger is a copy of the source's events up to a seq, chained
anew, then its own `session_forked` event: its projection is the source's at that seq, its
lineage is on the session (and in listings), the source is unchanged, `verify_session`
passes on it, and `app:`/`user:` state stays shared. A rewind appends a `rewound` event
after which the projection is the one at the target seq; the undone events stay in the
ledger, `read_events(effective=True)` leaves them out; with `then`, the rewind and the
appends land together or not at all.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentledger.core.events import Event, NewEvent
from agentledger.core.projection import project
from agentledger.core.session import Session
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    EventTooLargeError,
    InvalidEventError,
    InvalidTransitionError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._damage import damage_event
from agentledger.testing._integrity import chain_of

__all__ = ["ForkRewindConformance"]


def _content(events: list[Event]) -> list[dict[str, Any]]:
    """Events as a fork copies them: everything but the id and the session id."""
    return [e.model_dump(exclude={"id", "session_id"}) for e in events]


class ForkRewindConformance(ConformanceBase):
    """Fork (a new session from a prefix of another's history) and rewind (append-only
    undo), on every store."""

    def _history(self, store: SessionStore) -> tuple[Session, dict[int, Session]]:
        """A session of 6 events with state in every scope, a phase, metadata and an
        error, and how `get_session` saw it after each event (seq -> session)."""
        session = store.create_session(
            app_name=self.unique("app"), user_id="ada", state={"n": 0, "user:seen": 0}
        )
        seen = {1: session}
        steps = [
            msg("one 1", state_delta={"n": 1, "user:seen": 1}, invocation_id="t1"),
            NewEvent(type="phase_changed", data={"to": "planning"}, state_delta={"n": 2},
                     invocation_id="t1"),
            NewEvent(type="metadata_updated", data={"metadata": {"m": 1}},
                     state_delta={"n": 3, "k": "x"}, invocation_id="t2"),
            NewEvent(type="error", data={"message": "boom"}, state_delta={"n": 4},
                     invocation_id="t2"),
            msg("five", state_delta={"n": 5, "k": None, "app:hits": 5}, invocation_id="t3"),
        ]
        for step in steps:
            (event,) = store.append(session.id, [step])
            seen[event.seq] = store.get_session(session.id)
        return seen[6], seen

    # -- fork ---------------------------------------------------------------------------

    def test_fork_copies_the_history_up_to_at_seq(self, store: SessionStore) -> None:
        source, seen = self._history(store)
        before = self.record(store, source.id)
        fork = store.fork_session(source.id, at_seq=3, new_session_id="fork-1")
        assert fork.id == "fork-1" and fork.version == 4
        assert fork.forked_from is not None
        assert (fork.forked_from.session_id, fork.forked_from.seq) == (source.id, 3)
        assert self.own_state(fork.state) == self.own_state(seen[3].state) == {"n": 2}
        assert fork.phase == seen[3].phase == "planning"
        assert (fork.app_name, fork.user_id, fork.created_at) == (
            source.app_name, source.user_id, source.created_at
        )
        # Shared scopes are shared, not forked: the fork sees them as they are now.
        assert fork.state["user:seen"] == 1 and fork.state["app:hits"] == 5
        events = store.read_events(fork.id)
        source_events = store.read_events(source.id)
        assert _content(events[:3]) == _content(source_events[:3])
        assert {e.session_id for e in events} == {fork.id}
        assert not {e.id for e in events} & {e.id for e in source_events}, "event ids are unique"
        marker = events[3]
        assert (marker.seq, marker.type, marker.author) == (4, "session_forked", "system")
        assert marker.data == {
            "source_id": source.id,
            "source_seq": 3,
            "source_hash": chain_of(source_events[:3]),
        }
        report = store.verify_session(fork.id)
        assert report.ok and report.events == 4, report
        assert report.last_hash == chain_of(events)
        assert self.record(store, source.id) == before, "the source changed"
        assert store.get_session(fork.id) == fork

    def test_fork_at_the_head_by_default(self, store: SessionStore) -> None:
        source, _ = self._history(store)
        fork = store.fork_session(source.id)
        assert fork.id != source.id and fork.version == source.version + 1
        assert fork.forked_from is not None and fork.forked_from.seq == source.version
        assert fork.state == source.state
        assert (fork.phase, fork.error_count, fork.metadata) == (
            source.phase, source.error_count, source.metadata
        )
        assert fork.updated_at >= source.updated_at
        assert store.verify_session(fork.id).ok

    def test_fork_and_source_go_their_own_ways(self, store: SessionStore) -> None:
        source, _ = self._history(store)
        fork = store.fork_session(source.id, at_seq=2, new_session_id="fork-2")
        store.append(fork.id, [msg("fork only", state_delta={"f": 1, "user:seen": 9})])
        store.append(source.id, [msg("source only", state_delta={"s": 1})])
        assert "s" not in store.get_session(fork.id).state
        assert "f" not in store.get_session(source.id).state
        # ...but user: state is one scope: both see the fork's write.
        assert store.get_session(source.id).state["user:seen"] == 9
        assert store.verify_session(fork.id).ok and store.verify_session(source.id).ok
        # A fork of a fork; then the first source goes away and the forks stay whole.
        grandchild = store.fork_session(fork.id, at_seq=4)
        assert grandchild.forked_from is not None
        assert grandchild.forked_from.session_id == fork.id
        store.delete_session(source.id)
        assert store.verify_session(fork.id).ok and store.verify_session(grandchild.id).ok
        assert self.own_state(store.get_session(grandchild.id).state) == {"n": 1, "f": 1}

    def test_lineage_is_listed(self, store: SessionStore) -> None:
        source, _ = self._history(store)
        fork = store.fork_session(source.id, at_seq=5)
        listed = {s.id: s for s in store.list_sessions(app_name=source.app_name).sessions}
        assert listed.keys() == {source.id, fork.id}
        assert listed[source.id].forked_from is None
        assert listed[fork.id].forked_from == fork.forked_from

    @pytest.mark.parametrize("at_seq", [0, -1, 7, "2", 2.0, True])
    def test_fork_at_a_bad_seq_writes_nothing(self, store: SessionStore, at_seq: Any) -> None:
        source, _ = self._history(store)
        with pytest.raises(InvalidEventError, match="at_seq"):
            store.fork_session(source.id, at_seq=at_seq, new_session_id="nope")
        with pytest.raises(SessionNotFoundError):
            store.get_session("nope")

    def test_fork_refusals_write_nothing(self, store: SessionStore) -> None:
        source, _ = self._history(store)
        other = store.create_session(app_name=source.app_name, user_id="bob")
        before = self.record(store, other.id)
        with pytest.raises(SessionNotFoundError):
            store.fork_session("no-such-session", new_session_id="nope")
        with pytest.raises(SessionExistsError):
            store.fork_session(source.id, new_session_id=other.id)
        with pytest.raises(SessionExistsError):
            store.fork_session(source.id, new_session_id=source.id)
        with pytest.raises(ConcurrencyError):
            store.fork_session(source.id, expected_version=3, new_session_id="nope")
        with pytest.raises(SessionNotFoundError):
            store.get_session("nope")
        assert self.record(store, other.id) == before
        assert len(store.list_sessions(app_name=source.app_name).sessions) == 2
        fork = store.fork_session(source.id, expected_version=6, new_session_id="yes")
        assert fork.version == 7

    @pytest.mark.parametrize("at_seq", [None, 3])
    def test_a_damaged_history_is_never_forked_into_a_sound_one(
        self, store: SessionStore, at_seq: int | None
    ) -> None:
        """A fork checks the source's chain as it copies: it refuses, or (a payload
        changed in place, which the copy keeps with its payload hash) the fork's own
        `verify_session` finds the damage."""
        source, _ = self._history(store)
        damage_event(store, source.id, 2, "changed")
        try:
            fork = store.fork_session(source.id, at_seq=at_seq, new_session_id="damaged")
        except CorruptedSessionError:
            with pytest.raises(SessionNotFoundError):
                store.get_session("damaged")
            return
        report = store.verify_session(fork.id)
        assert not report.ok and report.first_bad_seq == 2, report

    def test_forks_while_the_source_grows(self, store: SessionStore) -> None:
        """Forks at the head taken while other threads append to the source each copy one
        consistent prefix: the fork's state is the source's projection at its seq."""
        source, _ = self._history(store)
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(worker: int) -> None:
            try:
                n = 0
                while not stop.is_set() and n < 200:
                    store.append(source.id, [msg(f"w{worker}-{n}", state_delta={"n": n})])
                    n += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        try:
            forks = [store.fork_session(source.id) for _ in range(5)]
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert errors == []
        events = store.read_events(source.id)
        for fork in forks:
            assert fork.forked_from is not None
            seq = fork.forked_from.seq
            assert self.own_state(fork.state) == self.own_state(
                project(events[:seq]).state
            ), seq
            assert _content(store.read_events(fork.id)[:seq]) == _content(events[:seq])
            assert store.verify_session(fork.id).ok

    def test_fork_survives_reopening(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        source, _ = self._history(store)
        fork = store.fork_session(source.id, at_seq=4)
        reopened = make_store()
        assert reopened.get_session(fork.id) == fork
        assert reopened.verify_session(fork.id).ok

    # -- rewind -------------------------------------------------------------------------

    def test_rewind_restores_the_projection_and_keeps_the_events(
        self, store: SessionStore
    ) -> None:
        session, seen = self._history(store)
        stored = store.rewind(session.id, to_seq=3)
        assert [(e.seq, e.type, e.data) for e in stored] == [(7, "rewound", {"to_seq": 3})]
        now = store.get_session(session.id)
        assert self.own_state(now.state) == self.own_state(seen[3].state) == {"n": 2}
        assert (now.phase, now.error_count, now.metadata, now.last_error) == (
            seen[3].phase, seen[3].error_count, seen[3].metadata, seen[3].last_error
        )
        assert now.version == 7 and now.updated_at >= seen[6].updated_at
        # Shared state is not rewound.
        assert now.state["user:seen"] == 1 and now.state["app:hits"] == 5
        assert self.seqs(store.read_events(session.id)) == [1, 2, 3, 4, 5, 6, 7]
        assert self.seqs(store.read_events(session.id, effective=True)) == [1, 2, 3]
        assert store.verify_session(session.id).ok

    def test_rewind_then_appends_in_one_step(self, store: SessionStore) -> None:
        session, seen = self._history(store)
        stored = store.rewind(
            session.id,
            to_seq=4,
            then=[msg("again", state_delta={"n": 40}), msg("and", state_delta={"z": 1})],
            expected_version=6,
        )
        assert [(e.seq, e.type) for e in stored] == [
            (7, "rewound"), (8, "user_message"), (9, "user_message")
        ]
        now = store.get_session(session.id)
        assert self.own_state(now.state) == {"n": 40, "k": "x", "z": 1}
        assert now.version == 9
        effective = store.read_events(session.id, effective=True)
        assert self.seqs(effective) == [1, 2, 3, 4, 8, 9]
        assert store.verify_session(session.id).ok

    def test_a_refused_rewind_writes_nothing(self, store: SessionStore) -> None:
        session, _ = self._history(store)
        before = self.record(store, session.id)
        too_big = msg("x" * (store.max_event_bytes + 1))
        refusals: list[tuple[type[Exception], dict[str, Any]]] = [
            (EventTooLargeError, {"to_seq": 2, "then": [too_big]}),
            (ConcurrencyError, {"to_seq": 2, "expected_version": 5}),
            (InvalidEventError, {"to_seq": 0}),
            (InvalidEventError, {"to_seq": 7}),
            (InvalidEventError, {"to_seq": "2"}),
            (InvalidEventError, {}),
            (InvalidEventError, {"to_seq": 2, "before_invocation": "t2"}),
            (InvalidEventError, {"before_invocation": "no-such-turn"}),
            (InvalidEventError, {"to_seq": 2, "then": [NewEvent(type="rewound")]}),
            # A lifecycle rule broken from the restored projection: the phase is
            # already planning at seq 3, so a move to planning is refused.
            (InvalidTransitionError, {"to_seq": 3, "then": [
                NewEvent(type="phase_changed", data={"to": "planning"})
            ]}),
        ]
        for error, arguments in refusals:
            with pytest.raises(error):
                store.rewind(session.id, **arguments)
            assert self.record(store, session.id) == before, arguments
        with pytest.raises(SessionNotFoundError):
            store.rewind("no-such-session", to_seq=1)
        for kind in ("rewound", "session_forked"):
            with pytest.raises(InvalidEventError, match="only"):
                store.append(session.id, [NewEvent(type=kind, data={"to_seq": 1})])
        assert self.record(store, session.id) == before

    def test_a_terminated_session_is_not_rewound(self, store: SessionStore) -> None:
        session, _ = self._history(store)
        store.append(session.id, [NewEvent(type="status_changed", data={"to": "terminated"})])
        before = self.record(store, session.id)
        with pytest.raises(InvalidTransitionError, match="terminated"):
            store.rewind(session.id, to_seq=2)
        assert self.record(store, session.id) == before
        # Forking it at an earlier seq is the way back.
        fork = store.fork_session(session.id, at_seq=6)
        assert fork.status == "active"
        store.rewind(fork.id, to_seq=2)

    def test_rewind_before_an_invocation(self, store: SessionStore) -> None:
        session, seen = self._history(store)
        (marker,) = store.rewind(session.id, before_invocation="t2")
        assert marker.data == {"to_seq": 3, "before_invocation": "t2"}
        assert self.own_state(store.get_session(session.id).state) == self.own_state(
            seen[3].state
        )
        # The turn is undone: it is no longer in effect, so it cannot be rewound again.
        with pytest.raises(InvalidEventError, match="t2"):
            store.rewind(session.id, before_invocation="t2")
        store.rewind(session.id, before_invocation="t1")
        assert self.own_state(store.get_session(session.id).state) == {"n": 0}
        assert self.seqs(store.read_events(session.id, effective=True)) == [1]

    def test_rewinds_over_rewinds(self, store: SessionStore) -> None:
        """Seqs keep their meaning: rewinding to a seq inside a stretch an earlier rewind
        undid returns to the projection after that event, and its events are in effect
        again."""
        session, seen = self._history(store)
        store.rewind(session.id, to_seq=2, then=[msg("other", state_delta={"o": 1})])  # 7, 8
        assert self.seqs(store.read_events(session.id, effective=True)) == [1, 2, 8]
        store.rewind(session.id, to_seq=5)  # 9: back into the undone stretch
        now = store.get_session(session.id)
        assert self.own_state(now.state) == self.own_state(seen[5].state)
        assert now.error_count == seen[5].error_count == 1
        assert self.seqs(store.read_events(session.id, effective=True)) == [1, 2, 3, 4, 5]
        store.rewind(session.id, to_seq=8)  # 10: back to just after the first rewind
        assert self.own_state(store.get_session(session.id).state) == {"n": 1, "o": 1}
        assert self.seqs(store.read_events(session.id, effective=True)) == [1, 2, 8]
        store.rewind(session.id, to_seq=10)  # 11: to the head: undoes nothing
        assert self.own_state(store.get_session(session.id).state) == {"n": 1, "o": 1}
        assert self.seqs(store.read_events(session.id, effective=True)) == [1, 2, 8]
        report = store.verify_session(session.id)
        assert report.ok and report.events == 11, report

    def test_effective_reads_take_the_other_filters(self, store: SessionStore) -> None:
        session, _ = self._history(store)
        store.rewind(session.id, to_seq=4, then=[msg("a"), msg("b")])  # 7, 8, 9
        read = store.read_events
        assert self.seqs(read(session.id, effective=True)) == [1, 2, 3, 4, 8, 9]
        assert self.seqs(read(session.id, effective=True, after=3)) == [4, 8, 9]
        assert self.seqs(read(session.id, effective=True, limit=5)) == [1, 2, 3, 4, 8]
        assert self.seqs(read(session.id, effective=True, last=3)) == [4, 8, 9]
        assert self.seqs(read(session.id, effective=True, last=0)) == []
        assert self.seqs(read(session.id, effective=True, types=["user_message"])) == [2, 8, 9]
        assert self.seqs(read(session.id, types=["user_message"])) == [2, 6, 8, 9]
        with pytest.raises(ConfigurationError):
            read(session.id, effective="yes")  # type: ignore[arg-type]
        # Never rewound: every event is in effect.
        other, _ = self._history(store)
        assert read(other.id, effective=True) == read(other.id)
        with pytest.raises(SessionNotFoundError):
            read("no-such-session", effective=True)

    def test_fork_of_a_rewound_session(self, store: SessionStore) -> None:
        session, seen = self._history(store)
        store.rewind(session.id, to_seq=3, then=[msg("x", state_delta={"x": 1})])  # 7, 8
        head = store.fork_session(session.id)
        assert head.state == store.get_session(session.id).state
        assert _content(store.read_events(head.id, effective=True)[:4]) == _content(
            store.read_events(session.id, effective=True)
        )
        middle = store.fork_session(session.id, at_seq=7)  # just after the rewind
        assert self.own_state(middle.state) == self.own_state(seen[3].state)
        for fork in (head, middle):
            assert store.verify_session(fork.id).ok
        # A rewind in the fork goes back into the history it copied.
        store.rewind(middle.id, to_seq=5)
        assert self.own_state(store.get_session(middle.id).state) == self.own_state(
            seen[5].state
        )
        assert store.get_session(middle.id).forked_from == middle.forked_from
        assert store.verify_session(middle.id).ok

    def test_rewind_survives_reopening(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        session, seen = self._history(store)
        store.rewind(session.id, to_seq=2, then=[msg("x")])
        after = self.record(store, session.id)
        reopened = make_store()
        assert self.record(reopened, session.id) == after
        assert reopened.read_events(session.id, effective=True) == store.read_events(
            session.id, effective=True
        )
        assert reopened.verify_session(session.id).ok
