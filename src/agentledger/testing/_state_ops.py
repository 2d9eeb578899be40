"""Conformance: state operations (`NewEvent.state_ops`) are applied at commit.

The store applies each event's operations, in the append's transaction, to the state as it
is then: concurrent adds to one list from threads and processes all land with no conflict
and no retry; the event keeps the operations, not the value they made; an operation that
does not fit refuses the whole append and writes nothing.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.core.projection import project
from agentledger.errors import InvalidEventError, StateOperationError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._processes import open_in_child, run_processes

__all__ = ["StateOpsConformance", "add_ops_worker"]


def _add(key: str, value: Any) -> list[dict[str, Any]]:
    return [
        {"op": "setdefault", "path": f"/{key}", "value": []},
        {"op": "add", "path": f"/{key}/-", "value": value},
    ]


def add_ops_worker(
    url: str, imports: tuple[str, ...], barrier: Any, session_id: str, worker: int, count: int
) -> None:
    """Append `count` events, each adding one item to `user:items` by operations; any
    error (a conflict included) fails the process."""
    store = open_in_child(url, imports)
    try:
        barrier.wait(timeout=60)
        for n in range(count):
            store.append(session_id, [msg(state_ops=_add("user:items", f"{worker}-{n}"))])
    finally:
        store.close()


class StateOpsConformance(ConformanceBase):
    """State operations: applied at commit, all or nothing, never lost under concurrency."""

    ops_processes = 4
    ops_per_process = 40

    def test_operations_apply_at_commit_in_every_scope(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(
            app_name=app, user_id="ada", state={"n": 1, "tags": ["a"], "user:items": ["x"]}
        )
        ops = [
            {"op": "increment", "path": "/n", "value": 2},
            {"op": "add", "path": "/tags/-", "value": "b"},
            {"op": "add", "path": "/tags/0", "value": "first"},
            {"op": "add", "path": "/user:items/-", "value": "y"},
            {"op": "increment", "path": "/app:count", "value": 1},
            {"op": "setdefault", "path": "/user:seen", "value": {}},
            {"op": "add", "path": "/user:seen/k", "value": True},
            {"op": "copy", "from": "/tags/0", "path": "/copied"},
            {"op": "move", "from": "/user:items/0", "path": "/user:moved"},
            {"op": "test", "path": "/n", "value": 3},
            {"op": "remove", "path": "/tags/1"},
            {"op": "add", "path": "/temp:scratch", "value": 1},
        ]
        stored = store.append(session.id, [NewEvent(type="state_updated", state_ops=ops)])
        # The event keeps the operations (temp: ones dropped), not the values they made.
        assert stored[0].state_ops == ops[:-1]
        assert stored[0].state_delta == {}
        expected = {
            "n": 3,
            "tags": ["first", "b"],
            "copied": "first",
            "user:items": ["y"],
            "user:moved": "x",
            "user:seen": {"k": True},
            "app:count": 1,
        }
        assert store.get_session(session.id).state == expected
        (event,) = store.read_events(session.id, after=1)
        assert event.state_ops == ops[:-1]
        # The projection replays them: the ledger still rebuilds the session's own state.
        rebuilt = project(store.read_events(session.id))
        assert rebuilt.state == self.own_state(expected)
        # Shared state changed for the user's and the app's other sessions.
        other = store.create_session(app_name=app, user_id="ada")
        assert other.state == {
            "user:items": ["y"], "user:moved": "x", "user:seen": {"k": True}, "app:count": 1
        }

    def test_delta_applies_before_operations_in_each_event(self, store: SessionStore) -> None:
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        store.append(
            session.id,
            [
                msg(state_delta={"user:l": [1]}, state_ops=_add("user:l", 2)),
                msg(state_ops=[{"op": "increment", "path": "/c", "value": 1.5}],
                    state_delta={"c": 1}),
            ],
        )
        assert store.get_session(session.id).state == {"user:l": [1, 2], "c": 2.5}

    @pytest.mark.parametrize(
        "ops",
        [
            [{"op": "remove", "path": "/user:items/5"}],
            [{"op": "test", "path": "/user:items/0", "value": "not this"},
             {"op": "remove", "path": "/user:items/0"}],
            [{"op": "increment", "path": "/user:items", "value": 1}],
            [{"op": "add", "path": "/missing/deep", "value": 1}],
            [{"op": "replace", "path": "/k", "value": 2}],
        ],
        ids=["remove-missing-index", "failed-test", "increment-a-list", "add-under-missing",
             "replace-missing"],
    )
    def test_an_operation_that_does_not_fit_writes_nothing(
        self, store: SessionStore, ops: list[dict[str, Any]]
    ) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"user:items": ["a"]})
        before = self.record(store, session.id)
        batch = [msg(state_delta={"k0": 1}, state_ops=_add("user:items", "b")),
                 msg(state_ops=ops)]
        with pytest.raises(StateOperationError) as caught:
            store.append(session.id, batch)
        assert isinstance(caught.value, InvalidEventError)
        assert caught.value.op in ops
        assert self.record(store, session.id) == before
        assert store.create_session(app_name=app, user_id="ada").state == {"user:items": ["a"]}

    @pytest.mark.parametrize(
        "ops",
        [
            {"op": "add", "path": "/x", "value": 1},
            [{"op": "frobnicate", "path": "/x"}],
            [{"op": "add", "path": "x", "value": 1}],
            [{"op": "add", "path": "/", "value": 1}],
            [{"op": "add", "path": "/x"}],
            [{"op": "increment", "path": "/x", "value": "1"}],
            [{"op": "move", "from": "/user:a", "path": "/b"}],
            [{"op": "add", "path": "/x", "value": 1, "extra": 2}],
            ["add /x"],
        ],
        ids=["not-a-list", "unknown-op", "no-slash", "no-key", "no-value", "increment-string",
             "move-across-scopes", "extra-member", "not-an-object"],
    )
    def test_malformed_operations_are_refused(self, ops: Any) -> None:
        with pytest.raises(ValueError):
            NewEvent(type="state_updated", state_ops=ops)

    def test_concurrent_adds_from_threads_all_land(self, store: SessionStore) -> None:
        app = self.unique("app")
        sessions = [store.create_session(app_name=app, user_id="ada").id for _ in range(4)]
        threads_count, per_thread = 8, 15
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads_count)

        def add(worker: int) -> None:
            try:
                barrier.wait(timeout=60)
                for n in range(per_thread):
                    ops = _add("user:items", f"{worker}-{n}") + [
                        {"op": "increment", "path": "/user:count", "value": 1}
                    ]
                    store.append(sessions[worker % len(sessions)], [msg(state_ops=ops)])
            except BaseException as exc:  # reported below: any error fails the check
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(w,)) for w in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        state = store.get_session(sessions[0]).state
        wanted = {f"{w}-{n}" for w in range(threads_count) for n in range(per_thread)}
        assert sorted(state["user:items"]) == sorted(wanted)
        assert state["user:count"] == threads_count * per_thread

    def test_concurrent_adds_from_processes_all_land(self, store: SessionStore) -> None:
        self.require_multi_process(store)
        ctx = self.mp_context()
        app = self.unique("app")
        workers, count = self.ops_processes, self.ops_per_process
        sessions = [store.create_session(app_name=app, user_id="ada").id for _ in range(workers)]
        barrier = ctx.Barrier(workers)
        args = [(store.url, self.child_imports, barrier, sessions[w], w, count)
                for w in range(workers)]
        run_processes(ctx, add_ops_worker, args)
        items = store.get_session(sessions[0]).state["user:items"]
        assert sorted(items) == sorted(f"{w}-{n}" for w in range(workers) for n in range(count))
        for w, sid in enumerate(sessions):  # each writer's items in its own order
            mine = [i for i in items if i.startswith(f"{w}-")]
            assert mine == [f"{w}-{n}" for n in range(count)]
            assert store.get_session(sid).version == count + 1

    def test_a_list_over_the_event_limit_still_grows(self, store: SessionStore) -> None:
        """Each add stores only the new item, so a list longer than one event may be (the
        default limit is 1 MiB) keeps growing, and reads back whole."""
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        item = "x" * 1000
        chunk = [{"op": "add", "path": "/user:big/-", "value": item}] * 300  # ~310 kB
        store.append(session.id, [msg(state_delta={"user:big": []})])
        for _ in range(4):
            store.append(session.id, [msg(state_ops=chunk)])
        stored = store.append(session.id, [msg(state_ops=_add("user:big", "last"))])
        assert len(stored[0].model_dump_json()) < 1000
        big = store.get_session(session.id).state["user:big"]
        assert len(big) == 1201 and big[-1] == "last"
        assert sum(len(i) for i in big) > store.max_event_bytes

    def test_operations_and_rewinds_keep_each_value_s_json_type(
        self, make_store: StoreFactory
    ) -> None:
        """A state operation or a rewind that changes a value to an equal one of another
        JSON type (1, 1.0 and true are equal in Python, not in JSON) stores the new value,
        and a store opened afresh reads it back with its type."""
        store = make_store()

        def fresh_state(session_id: str) -> dict[str, Any]:
            reader = make_store() if store.capabilities.persistent else store
            return reader.get_session(session_id).state

        sid = store.create_session(
            app_name=self.unique("app"), user_id="ada", state={"x": 1, "y": [1], "z": 0}
        ).id
        ops = [
            {"op": "replace", "path": "/x", "value": True},
            {"op": "replace", "path": "/y/0", "value": 1.0},
        ]
        store.append(sid, [NewEvent(type="state_updated", state_ops=ops, invocation_id="i-1")])
        state = fresh_state(sid)
        assert state == {"x": True, "y": [1.0], "z": 0}
        assert type(state["x"]) is bool and type(state["y"][0]) is float
        store.append(
            sid, [NewEvent(type="state_updated", state_delta={"z": False}, invocation_id="i-2")]
        )
        store.rewind(sid, before_invocation="i-2")
        state = fresh_state(sid)
        assert type(state["z"]) is int and type(state["x"]) is bool
        assert store.verify_session(sid).ok
