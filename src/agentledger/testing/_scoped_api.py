"""Conformance: reading and changing `app:`/`user:` state without a session
(`get_scoped_state`, `update_scoped_state`)."""

from __future__ import annotations

import threading

import pytest

from agentledger.errors import InvalidEventError, StateConflictError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["ScopedStateApiConformance"]


class ScopedStateApiConformance(ConformanceBase):
    """Shared state read and written by app and user, with no session involved."""

    def test_empty_scopes_read_empty(self, store: SessionStore) -> None:
        app = self.unique("app")
        assert store.get_scoped_state(app) == {}
        assert store.get_scoped_state(app, "ada") == {}

    def test_update_without_a_session_is_seen_by_sessions(self, store: SessionStore) -> None:
        app = self.unique("app")
        assert store.update_scoped_state(app, None, {"app:theme": "dark"}) == {"app:theme": "dark"}
        got = store.update_scoped_state(app, "ada", {"user:lang": "en", "app:size": 2})
        assert got == {"user:lang": "en"}
        assert store.get_scoped_state(app) == {"app:theme": "dark", "app:size": 2}
        assert store.get_scoped_state(app, "ada") == {"user:lang": "en"}
        assert store.get_scoped_state(app, "bob") == {}
        assert store.get_scoped_state(self.unique("app"), "ada") == {}
        ada = store.create_session(app_name=app, user_id="ada")
        bob = store.create_session(app_name=app, user_id="bob")
        assert ada.state == {"app:theme": "dark", "app:size": 2, "user:lang": "en"}
        assert bob.state == {"app:theme": "dark", "app:size": 2}
        # A change made afterwards shows on the sessions' next read, without a ledger event.
        store.update_scoped_state(app, "ada", {"user:lang": "fr"}, remove=["app:theme"])
        assert store.get_session(ada.id).state == {"app:size": 2, "user:lang": "fr"}
        assert store.get_session(ada.id).version == 1
        assert store.get_session(bob.id).state == {"app:size": 2}

    def test_session_writes_are_seen_without_a_session(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"own": 1})
        store.append(session.id, [msg(state_delta={"app:x": 1, "user:y": [1, 2], "temp:z": 3})])
        assert store.get_scoped_state(app) == {"app:x": 1}
        assert store.get_scoped_state(app, "ada") == {"user:y": [1, 2]}

    def test_user_state_outlives_the_users_last_session(self, store: SessionStore) -> None:
        app = self.unique("app")
        first = store.create_session(app_name=app, user_id="ada", state={"user:name": "Ada"})
        store.update_scoped_state(app, "ada", {"user:plan": "pro"})
        store.delete_session(first.id)
        assert store.get_scoped_state(app, "ada") == {"user:name": "Ada", "user:plan": "pro"}
        again = store.create_session(app_name=app, user_id="ada")
        assert again.state == {"user:name": "Ada", "user:plan": "pro"}

    def test_remove_deletes_and_an_empty_delta_changes_nothing(self, store: SessionStore) -> None:
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:a": 1, "user:b": 2})
        assert store.update_scoped_state(app, "ada", {}, remove=["user:a"]) == {"user:b": 2}
        assert store.update_scoped_state(app, "ada", {}) == {"user:b": 2}
        assert store.update_scoped_state(app, "ada", {}, remove=[]) == {"user:b": 2}
        assert store.update_scoped_state(app, None, {}) == {}

    @pytest.mark.parametrize(
        ("user_id", "delta"),
        [
            (None, {"x": 1}),
            ("ada", {"user:ok": 1, "plain": 1}),
            ("ada", {"temp:x": 1}),
            (None, {"user:x": 1}),  # a user: key needs a user
        ],
    )
    def test_other_keys_are_refused_and_nothing_is_written(
        self, store: SessionStore, user_id: str | None, delta: dict[str, int]
    ) -> None:
        app = self.unique("app")
        with pytest.raises(InvalidEventError):
            store.update_scoped_state(app, user_id, delta)
        assert store.get_scoped_state(app) == {}
        assert store.get_scoped_state(app, "ada") == {}

    def test_bad_values_and_scopes_are_refused(self, store: SessionStore) -> None:
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:keep": 1})
        for delta in ({"user:x": object()}, {"user:x": float("nan")}, ["user:x"]):
            with pytest.raises(InvalidEventError):
                store.update_scoped_state(app, "ada", delta)  # type: ignore[arg-type]
        for bad_app, bad_user in (("", None), (app, ""), (None, None), (app, 7)):
            with pytest.raises(InvalidEventError):
                store.update_scoped_state(bad_app, bad_user, {"app:x": 1})  # type: ignore[arg-type]
            with pytest.raises(InvalidEventError):
                store.get_scoped_state(bad_app, bad_user)  # type: ignore[arg-type]
        assert store.get_scoped_state(app, "ada") == {"user:keep": 1}
        assert store.get_scoped_state(app) == {}

    def test_expected_state_refuses_a_changed_key(self, store: SessionStore) -> None:
        app = self.unique("app")
        store.update_scoped_state(app, "ada", {"user:n": 1, "app:m": 1})
        got = store.update_scoped_state(
            app, "ada", {"user:n": 2}, expected_state={"user:n": 1, "app:m": 1, "user:gone": None}
        )
        assert got == {"user:n": 2}
        with pytest.raises(StateConflictError) as caught:
            store.update_scoped_state(
                app, "ada", {"user:n": 3, "app:m": 3}, expected_state={"user:n": 1, "app:m": 1}
            )
        assert caught.value.keys == ["user:n"]
        assert store.get_scoped_state(app, "ada") == {"user:n": 2}
        assert store.get_scoped_state(app) == {"app:m": 1}
        # A change made through a session conflicts too.
        session = store.create_session(app_name=app, user_id="ada")
        store.append(session.id, [msg(state_delta={"app:m": 5})])
        with pytest.raises(StateConflictError):
            store.update_scoped_state(app, None, {"app:m": 6}, expected_state={"app:m": 1})
        assert store.get_scoped_state(app) == {"app:m": 5}
        with pytest.raises(InvalidEventError):
            store.update_scoped_state(app, None, {"app:m": 6}, expected_state={"m": 5})
        assert store.get_scoped_state(app) == {"app:m": 5}

    def test_a_sessions_expected_state_sees_scoped_updates(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"user:n": 1})
        store.update_scoped_state(app, "ada", {"user:n": 2})
        with pytest.raises(StateConflictError):
            store.append(session.id, [msg(state_delta={"user:n": 3})], expected_state={"user:n": 1})
        assert store.get_session(session.id).state == {"user:n": 2}

    def test_threads_with_expected_state_lose_no_update(self, store: SessionStore) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada")

        def add(times: int, through_session: bool) -> None:
            for _ in range(times):
                while True:
                    seen = store.get_scoped_state(app, "ada").get("user:n")
                    new = {"user:n": (seen or 0) + 1}
                    try:
                        if through_session:
                            store.append(
                                session.id, [msg(state_delta=new)], expected_state={"user:n": seen}
                            )
                        else:
                            store.update_scoped_state(
                                app, "ada", new, expected_state={"user:n": seen}
                            )
                        break
                    except StateConflictError:
                        continue

        threads = [
            threading.Thread(target=add, args=(10, i % 2 == 0)) for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get_scoped_state(app, "ada") == {"user:n": 40}
