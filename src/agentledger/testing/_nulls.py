"""Conformance: null is a value in state; deleting a key is explicit.

A `None` in a state delta is stored as JSON null, in a session's own state and in the
shared `user:` and `app:` state, and read back as `None` with the key present (what a
framework such as ADK expects of its session service). A key is deleted only by naming it
in `state_remove` (an event) or `remove` (`update_scoped_state`); removing a key that is not
there changes nothing and is no error. Events written before null was a value (event format
1) keep their meaning: there a `None` deleted the key.
"""

from __future__ import annotations

import pytest

from agentledger.core.events import EVENT_FORMAT, NewEvent
from agentledger.core.projection import project
from agentledger.errors import InvalidEventError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["NullStateConformance"]


class NullStateConformance(ConformanceBase):
    """`None` is stored as a value in every scope; `state_remove` deletes keys."""

    def test_none_valued_state_delta_is_stored_not_dropped(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="u1", state={"flag": True})
        (stored,) = store.append(session.id, [msg(state_delta={"flag": None})])
        assert stored.state_delta == {"flag": None} and stored.format == EVENT_FORMAT
        reloaded = store.get_session(session.id)
        assert "flag" in reloaded.state and reloaded.state["flag"] is None
        assert store.read_events(session.id)[-1].state_delta == {"flag": None}
        (listed,) = store.list_sessions(app_name=app).sessions
        assert listed.state == {"flag": None}

    def test_user_state_none_valued_delta_is_stored_not_dropped(
        self, store: SessionStore
    ) -> None:
        app = self.unique("app")
        first = store.create_session(app_name=app, user_id="u1", state={"user:pref": "dark"})
        store.append(first.id, [msg(state_delta={"user:pref": None})])
        second = store.create_session(app_name=app, user_id="u1")
        assert "user:pref" in second.state and second.state["user:pref"] is None
        assert store.get_session(first.id).state == {"user:pref": None}
        assert store.get_scoped_state(app, "u1") == {"user:pref": None}

    def test_null_in_every_scope_from_creation_and_appends(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(
            app_name=app, user_id="ada", state={"own": None, "user:u": None, "app:a": None}
        )
        nulls = {"own": None, "user:u": None, "app:a": None}
        assert session.state == nulls
        store.append(session.id, [msg(state_delta={"k": [None], "user:v": None, "app:b": None})])
        expected = nulls | {"k": [None], "user:v": None, "app:b": None}
        assert store.get_session(session.id).state == expected
        other = store.create_session(app_name=app, user_id="ada")
        assert other.state == {"user:u": None, "user:v": None, "app:a": None, "app:b": None}
        assert store.create_session(app_name=app, user_id="bob").state == {
            "app:a": None, "app:b": None
        }
        events = store.read_events(session.id)
        assert project(events).state == {"own": None, "k": [None]}

    def test_null_survives_reopening(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"k": 1})
        store.append(session.id, [msg(state_delta={"k": None, "user:p": None, "app:q": None})])
        store.close()
        again = make_store()
        assert again.get_session(session.id).state == {"k": None, "user:p": None, "app:q": None}
        assert again.read_events(session.id)[-1].state_delta == {
            "app:q": None, "k": None, "user:p": None
        }

    def test_state_remove_deletes_keys_of_every_scope(self, store: SessionStore) -> None:
        app = self.unique("app")
        first = store.create_session(
            app_name=app,
            user_id="ada",
            state={"own": 1, "own2": 2, "app:a": 1, "app:b": 2, "user:u": 1, "user:v": 2},
        )
        second = store.create_session(app_name=app, user_id="ada")
        (stored,) = store.append(
            second.id, [msg(state_remove=["app:a", "user:u", "temp:t", "never-set"])]
        )
        assert stored.state_remove == ["app:a", "user:u", "never-set"]  # temp: keys dropped
        assert store.read_events(second.id)[-1].state_remove == stored.state_remove
        shared = {"app:b": 2, "user:v": 2}
        assert store.get_session(second.id).state == shared
        store.append(first.id, [msg(state_remove=["own"], state_delta={"own2": None})])
        assert store.get_session(first.id).state == shared | {"own2": None}
        events = store.read_events(first.id)
        assert project(events).state == {"own2": None}
        assert store.verify_session(first.id).ok and store.verify_session(second.id).ok

    def test_removing_a_missing_key_changes_nothing(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"k": 1})
        store.append(session.id, [msg(state_remove=["gone", "user:gone", "app:gone"])])
        store.append(session.id, [msg(state_remove=["gone"])])  # twice: still fine
        after = store.get_session(session.id)
        assert after.state == {"k": 1} and after.version == 3
        assert store.get_scoped_state(app) == {} and store.get_scoped_state(app, "ada") == {}

    def test_removal_then_operations_in_one_event(self, store: SessionStore) -> None:
        """An event's delta applies first, then its removals, then its state operations."""
        session = store.create_session(app_name=self.unique("app"), user_id="ada",
                                       state={"list": [1], "n": 5})
        store.append(
            session.id,
            [msg(state_remove=["list", "n"],
                 state_ops=[{"op": "setdefault", "path": "/list", "value": []},
                            {"op": "add", "path": "/list/-", "value": 2},
                            {"op": "increment", "path": "/n", "value": 1}])],
        )
        assert store.get_session(session.id).state == {"list": [2], "n": 1}

    def test_a_key_both_set_and_removed_is_refused(self, store: SessionStore) -> None:
        with pytest.raises(InvalidEventError, match="both set"):
            NewEvent(type="state_updated", state_delta={"k": 1}, state_remove=["k"])
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:k": 1})
        with pytest.raises(InvalidEventError):
            store.update_scoped_state(app, "ada", {"user:k": 2}, remove=["user:k"])
        assert store.get_scoped_state(app, "ada") == {"user:k": 1}

    def test_scoped_updates_store_null_and_remove_explicitly(self, store: SessionStore) -> None:
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:a": 1, "user:b": 2, "app:c": 3})
        assert store.update_scoped_state(app, "ada", {"user:a": None}) == {
            "user:a": None, "user:b": 2
        }
        assert store.update_scoped_state(app, "ada", {}, remove=["user:b", "user:missing"]) == {
            "user:a": None
        }
        assert store.update_scoped_state(app, None, {"app:n": None}, remove=["app:c"]) == {
            "app:n": None
        }
        session = store.create_session(app_name=app, user_id="ada")
        assert session.state == {"user:a": None, "app:n": None}
        assert store.update_scoped_state(app, "ada", {}, remove=["user:a", "app:n"]) == {}
        assert store.get_scoped_state(app) == {}

    @pytest.mark.parametrize(
        ("user_id", "remove"),
        [(None, ["user:x"]), ("ada", ["plain"]), ("ada", ["temp:x"]), ("ada", "user:x"),
         ("ada", [1])],
    )
    def test_bad_scoped_removals_are_refused(
        self, store: SessionStore, user_id: str | None, remove: object
    ) -> None:
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:x": 1, "app:y": 2})
        with pytest.raises(InvalidEventError):
            store.update_scoped_state(app, user_id, {}, remove=remove)  # type: ignore[arg-type]
        assert store.get_scoped_state(app, "ada") == {"user:x": 1}
        assert store.get_scoped_state(app) == {"app:y": 2}

    def test_events_carry_their_format(self, store: SessionStore) -> None:
        """Every event is stored with the current format; a reader interprets an event of
        format 1 (written before null was a value) by it: there a `None` deleted."""
        session = store.create_session(app_name=self.unique("app"), user_id="ada",
                                       state={"a": 1, "b": 2})
        store.append(session.id, [msg(state_delta={"a": None})])
        events = store.read_events(session.id)
        assert [e.format for e in events] == [EVENT_FORMAT, EVENT_FORMAT]
        assert project(events).state == {"a": None, "b": 2}
        old = [e.model_copy(update={"format": 1}) for e in events]
        assert project(old).state == {"b": 2}
