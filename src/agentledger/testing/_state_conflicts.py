"""Conformance: `append(..., expected_state=...)`, optimistic concurrency on state keys."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentledger.errors import ConcurrencyError, StateConflictError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["StateConflictConformance"]


class StateConflictConformance(ConformanceBase):
    """A state delta appended with the values it was based on never overwrites a newer one."""

    def _two_sessions_of_one_user(self, store: SessionStore) -> tuple[str, str]:
        app = self.unique("app")
        state = {"own": 1, "app:flag": "on", "user:items": ["a"]}
        first = store.create_session(app_name=app, user_id="ada", state=state)
        second = store.create_session(app_name=app, user_id="ada")
        return first.id, second.id

    def test_expected_state_that_holds_appends(self, store: SessionStore) -> None:
        sid, _ = self._two_sessions_of_one_user(store)
        stored = store.append(
            sid,
            [msg(state_delta={"user:items": ["a", "b"], "new": 1})],
            expected_state={
                "own": 1, "app:flag": "on", "user:items": ["a"], "new": None, "temp:x": "?",
            },
        )
        assert stored[0].seq == 2
        assert store.get_session(sid).state["user:items"] == ["a", "b"]

    @pytest.mark.parametrize(
        ("changed", "expected"),
        [
            ({"own": 2}, {"own": 1}),
            ({"app:flag": "off"}, {"app:flag": "on"}),
            ({"user:items": ["a", "x"]}, {"user:items": ["a"]}),
            ({"own": None}, {"own": 1}),  # set to null since it was read
            ({"fresh": 1}, {"fresh": None}),  # created since it was read as absent
        ],
    )
    def test_changed_state_is_a_conflict_and_writes_nothing(
        self, store: SessionStore, changed: dict[str, Any], expected: dict[str, Any]
    ) -> None:
        sid, other = self._two_sessions_of_one_user(store)
        writer = sid if not any(k.startswith(("app:", "user:")) for k in changed) else other
        store.append(writer, [msg(state_delta=changed)])
        before = self.record(store, sid)
        with pytest.raises(StateConflictError) as info:
            store.append(
                sid,
                [msg("a"), msg("b", state_delta={k: "mine" for k in expected})],
                expected_state=expected,
            )
        error = info.value
        assert isinstance(error, ConcurrencyError)
        assert error.keys == list(expected) and error.session_id == sid
        assert error.actual_version == before[0].version
        assert self.record(store, sid) == before

    def test_read_modify_write_from_threads_loses_nothing(self, store: SessionStore) -> None:
        app = self.unique("app")
        sessions = [store.create_session(app_name=app, user_id="ada").id for _ in range(4)]
        conflicts = []

        def add(sid: str, worker: int) -> None:
            for n in range(10):
                while True:
                    seen = store.get_session(sid).state.get("user:items")
                    items = [*(seen or []), f"{worker}-{n}"]
                    try:
                        store.append(
                            sid,
                            [msg(state_delta={"user:items": items})],
                            expected_state={"user:items": seen},
                        )
                        break
                    except StateConflictError:
                        conflicts.append(worker)

        threads = [threading.Thread(target=add, args=(sid, i)) for i, sid in enumerate(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        items = store.get_session(sessions[0]).state["user:items"]
        assert sorted(items) == sorted(f"{w}-{n}" for w in range(4) for n in range(10))
