"""Conformance: `app:`, `user:` and `temp:` state scopes."""

from __future__ import annotations

from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["ScopedStateConformance"]


class ScopedStateConformance(ConformanceBase):
    """Shared `app:` / `user:` state and never-stored `temp:` keys."""

    def test_app_keys_are_shared_by_the_app(self, store: SessionStore) -> None:
        app, other_app = self.unique("app"), self.unique("app")
        s1 = store.create_session(
            app_name=app, user_id="ada", state={"app:theme": "dark", "own": 1}
        )
        s2 = store.create_session(app_name=app, user_id="bob")
        s3 = store.create_session(app_name=other_app, user_id="ada")
        assert s1.state == {"app:theme": "dark", "own": 1}
        assert s2.state == {"app:theme": "dark"}
        assert s3.state == {}

        store.append(s2.id, [msg(state_delta={"app:theme": "light", "app:lang": "en"})])
        shared = {"app:theme": "light", "app:lang": "en"}
        assert store.get_session(s1.id).state == shared | {"own": 1}
        assert store.get_session(s2.id).state == shared
        assert store.get_session(s3.id).state == {}
        assert store.get_session(s1.id).version == 1  # another session's change is not s1's event
        listed = {s.id: s.state for s in store.list_sessions(app_name=app).sessions}
        assert listed == {s1.id: shared | {"own": 1}, s2.id: shared}

    def test_user_keys_are_shared_by_the_user_within_the_app(self, store: SessionStore) -> None:
        app, other_app = self.unique("app"), self.unique("app")
        a1 = store.create_session(app_name=app, user_id="ada", state={"user:name": "Ada"})
        a2 = store.create_session(app_name=app, user_id="ada")
        bob = store.create_session(app_name=app, user_id="bob")
        ada_elsewhere = store.create_session(app_name=other_app, user_id="ada")
        assert a2.state == {"user:name": "Ada"}
        assert bob.state == {} and ada_elsewhere.state == {}

        store.append(a2.id, [msg(state_delta={"user:name": "Ada L.", "user:age": 36})])
        store.append(bob.id, [msg(state_delta={"user:name": "Bob"})])
        ada_state = {"user:name": "Ada L.", "user:age": 36}
        assert store.get_session(a1.id).state == ada_state
        assert store.get_session(a2.id).state == ada_state
        assert store.get_session(bob.id).state == {"user:name": "Bob"}
        assert store.get_session(ada_elsewhere.id).state == {}

    def test_scopes_do_not_mix(self, store: SessionStore) -> None:
        app = self.unique("app")
        s1 = store.create_session(
            app_name=app, user_id="ada", state={"x": "own", "app:x": "app", "user:x": "user"}
        )
        s2 = store.create_session(app_name=app, user_id="ada", state={"x": "other own"})
        assert store.get_session(s1.id).state == {"x": "own", "app:x": "app", "user:x": "user"}
        shared = {"app:x": "app", "user:x": "user"}
        assert store.get_session(s2.id).state == {"x": "other own"} | shared

    def test_temp_keys_are_never_stored(self, store: SessionStore) -> None:
        session = store.create_session(
            app_name="demo", user_id="ada", state={"temp:scratch": 1, "keep": 1}
        )
        assert session.state == {"keep": 1}
        (stored,) = store.append(
            session.id, [msg(state_delta={"temp:x": {"big": True}, "temp:y": None, "keep": 2})]
        )
        assert stored.state_delta == {"keep": 2}
        assert store.get_session(session.id).state == {"keep": 2}
        for event in store.read_events(session.id):
            assert not any(key.startswith("temp:") for key in event.state_delta)
        (only_temp,) = store.append(session.id, [msg(state_delta={"temp:z": 1})])
        assert only_temp.state_delta == {}
        assert store.get_session(session.id).state == {"keep": 2}

    def test_scoped_keys_are_recorded_in_the_ledger(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada", state={"app:a": 1})
        (stored,) = store.append(session.id, [msg(state_delta={"user:u": 2, "own": 3})])
        events = store.read_events(session.id)
        assert events[0].state_delta == {"app:a": 1}
        assert events[1].state_delta == stored.state_delta == {"user:u": 2, "own": 3}

    def test_deleting_keys_with_state_remove(self, store: SessionStore) -> None:
        app = self.unique("app")
        s1 = store.create_session(
            app_name=app,
            user_id="ada",
            state={"app:a": 1, "app:b": 2, "user:u": 1, "user:v": 2, "own": 1, "own2": 2},
        )
        s2 = store.create_session(app_name=app, user_id="ada")
        store.append(s2.id, [msg(state_remove=["app:a", "user:u"])])
        store.append(s1.id, [msg(state_remove=["own", "never-set", "app:zz"])])
        expected_shared = {"app:b": 2, "user:v": 2}
        assert store.get_session(s1.id).state == expected_shared | {"own2": 2}
        assert store.get_session(s2.id).state == expected_shared
        store.append(s1.id, [msg(state_remove=["app:b", "user:v"])])
        assert store.get_session(s2.id).state == {}
        assert store.get_session(s1.id).state == {"own2": 2}

    def test_none_in_initial_state_is_a_value(self, store: SessionStore) -> None:
        app = self.unique("app")
        store.create_session(app_name=app, user_id="ada", state={"app:a": 1, "user:u": 1})
        session = store.create_session(
            app_name=app, user_id="ada", state={"own": None, "app:a": None, "user:u": None, "k": 0}
        )
        expected = {"own": None, "app:a": None, "user:u": None, "k": 0}
        assert session.state == expected
        assert store.get_session(session.id).state == expected

    def test_later_keys_in_one_append_win(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada")
        store.append(
            session.id,
            [
                msg(state_delta={"app:a": 1, "user:u": 1, "k": 1, "n": 1}),
                msg(state_delta={"app:a": 2, "n": None}, state_remove=["user:u", "k"]),
                msg(state_delta={"app:a": 3, "k": 3}),
            ],
        )
        assert store.get_session(session.id).state == {"app:a": 3, "k": 3, "n": None}
