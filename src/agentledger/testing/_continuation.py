"""Conformance: continuing a user's session, or creating one, without duplicates.

`agentledger.manager.continue_or_create_session` is what `agentledger run`, `chat` and
`demo` use. It relies on two promises of the store contract, checked here on every store:
`list_sessions` filters and orders as documented, and a caller-chosen session id is created
at most once, however many callers race for it (the others get `SessionExistsError`).
The multi-process checks are in `_processes`.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.core.session import Session, Status
from agentledger.errors import InvalidEventError, SessionExistsError
from agentledger.manager import continue_or_create_session, default_session_id
from agentledger.stores.base import SessionStore
from agentledger.testing._appends import _run_threads
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._lifecycle import FakeClock

__all__ = ["ContinuationConformance"]

THREADS = 8


def _status(store: SessionStore, session_id: str, to: str) -> None:
    current = store.get_session(session_id).status
    store.append(session_id, [NewEvent(type="status_changed", data={"from": current, "to": to})])


class ContinuationConformance(ConformanceBase):
    """Continue the most recent active session of (app, user, agent), or create one."""

    def test_continue_or_create_rule(self, make_store: StoreFactory) -> None:
        clock = FakeClock()
        self.require_injectable_clock(make_store)
        store = make_store(clock=clock)
        app, user = self.unique("app"), "ada"

        def go(agent: str = "helper") -> tuple[Session, bool]:
            clock.advance(seconds=1)
            return continue_or_create_session(store, app_name=app, user_id=user, agent_name=agent)

        first, created = go()
        assert created and first.id == default_session_id(app, user, "helper", 1)
        assert (first.app_name, first.user_id, first.agent_name) == (app, user, "helper")
        again, created = go()
        assert (again.id, created) == (first.id, False)

        # Another agent's sessions are its own, never continued for this one.
        other, created = go("shouter")
        assert created and other.id == default_session_id(app, user, "shouter", 1)
        assert go()[0].id == first.id
        assert go("shouter")[0].id == other.id

        # The most recent active session of the agent is continued, whatever its id.
        clock.advance(seconds=1)
        mine = store.create_session(app_name=app, user_id=user, agent_name="helper")
        assert go() == (store.get_session(mine.id), False)
        clock.advance(seconds=1)
        store.append(first.id, [msg("newer activity")])
        assert go()[0].id == first.id

        # Suspended and terminated sessions are never continued: the next free default id.
        _status(store, mine.id, Status.TERMINATED)
        _status(store, first.id, Status.SUSPENDED)
        second, created = go()
        assert created and second.id == default_session_id(app, user, "helper", 2)
        _status(store, second.id, Status.TERMINATED)
        third, created = go()
        assert created and third.id == default_session_id(app, user, "helper", 3)
        # A deleted default session frees its id.
        _status(store, third.id, Status.TERMINATED)
        store.delete_session(second.id)
        reused, created = go()
        assert created and reused.id == second.id and reused.version == 1
        # A resumed session is active again, and the most recent one.
        clock.advance(seconds=1)
        _status(store, first.id, Status.ACTIVE)
        assert go() == (store.get_session(first.id), False)

    def test_continue_or_create_skips_an_id_someone_else_holds(self, store: SessionStore) -> None:
        app = self.unique("app")
        taken = default_session_id(app, "ada", "helper", 1)
        store.create_session(app_name=app, user_id="eve", agent_name="helper", session_id=taken)
        session, created = continue_or_create_session(
            store, app_name=app, user_id="ada", agent_name="helper"
        )
        assert created and session.id == default_session_id(app, "ada", "helper", 2)
        assert session.user_id == "ada" and store.get_session(taken).user_id == "eve"

    def test_a_session_id_is_created_once_by_racing_threads(self, store: SessionStore) -> None:
        app = self.unique("app")
        outcomes: list[str] = []

        def create(i: int) -> None:
            try:
                store.create_session(app_name=app, user_id=f"u{i}", session_id="raced")
                outcomes.append(f"u{i}")
            except SessionExistsError:
                outcomes.append("exists")

        _run_threads(THREADS, create)
        winners = [o for o in outcomes if o != "exists"]
        assert len(winners) == 1 and len(outcomes) == THREADS
        assert store.get_session("raced").user_id == winners[0]
        assert store.read_events("raced")[0].data["user_id"] == winners[0]
        assert [s.id for s in store.list_sessions(app_name=app).sessions] == ["raced"]

    def test_continue_or_create_from_racing_threads_makes_one_session(
        self, store: SessionStore
    ) -> None:
        app = self.unique("app")
        results: list[tuple[str, bool]] = []
        lock = threading.Lock()

        def first_turn(i: int) -> None:
            session, created = continue_or_create_session(
                store, app_name=app, user_id="new", agent_name="helper"
            )
            store.append(session.id, [msg(f"remind me to task {i}")])
            with lock:
                results.append((session.id, created))

        for round_number in (1, 2):
            results.clear()
            _run_threads(THREADS, first_turn)
            assert len({sid for sid, _ in results}) == 1, f"duplicate sessions: {results}"
            assert sum(created for _, created in results) == 1, results
            assert len(store.list_sessions(app_name=app).sessions) == round_number
            expected = default_session_id(app, "new", "helper", round_number)
            assert results[0][0] == expected
            assert store.get_session(expected).version == 1 + THREADS
            # The next round starts with no active session again.
            _status(store, expected, Status.TERMINATED)
        assert len(store.list_sessions(app_name=app).sessions) == 2

    @pytest.mark.parametrize("bad", ["", None])
    def test_continue_or_create_refuses_empty_names(self, store: SessionStore, bad: Any) -> None:
        for names in ({"app_name": bad}, {"user_id": bad}, {"agent_name": bad}):
            arguments = {"app_name": "a", "user_id": "u", "agent_name": "helper", **names}
            with pytest.raises(InvalidEventError):
                continue_or_create_session(store, **arguments)
        assert store.list_sessions().sessions == []
