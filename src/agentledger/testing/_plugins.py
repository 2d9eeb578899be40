"""Conformance: plugins' `before_append` and `before_state_update` run on every store,
before anything is written.

The checks open the store with `plugins=[CONFORMANCE_PLUGIN]`, a plugin that acts only on
events marked `data={"conformance": ...}`: it refuses (`"reject"`), raises (`"crash"`) or
transforms (`"transform"`: upper-cases `text`, masks the `secret` state key, adds
`data["plugins"]["conformance"]`); and on shared state changed without an event
(`before_state_update`) when its `app:conformance` key says `"reject"` or `"transform"`
(masks `app:secret`). A store served by another process (`http://`) runs
plugins in its server: start that server with the plugin enabled
(`AGENTLEDGER_PLUGINS=agentledger.testing._plugins:ConformancePlugin`).
"""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.errors import PluginError, PluginRejectedError
from agentledger.plugins.specs import hookimpl
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["CONFORMANCE_PLUGIN", "ConformancePlugin", "PluginConformance"]

CONFORMANCE_PLUGIN = "agentledger.testing._plugins:ConformancePlugin"
"""The conformance plugin by `module:attribute`, as `--plugin` and `$AGENTLEDGER_PLUGINS`
take it."""


class ConformancePlugin:
    """The plugin the checks enable (see the module docstring)."""

    name = "conformance"

    @hookimpl
    def before_append(self, session: Any, events: list[NewEvent]) -> None:
        for i, event in enumerate(events):
            marker = event.data.get("conformance")
            if marker is None and event.type == "session_created":
                marker = event.data.get("metadata", {}).get("conformance")
            if marker == "reject":
                raise PluginRejectedError("events marked reject are refused")
            if marker == "crash":
                raise RuntimeError("the conformance plugin crashed on purpose")
            if marker == "transform":
                data = dict(event.data)
                if isinstance(data.get("text"), str):
                    data["text"] = data["text"].upper()
                data["plugins"] = {"conformance": {"seen": True, "had_session": session is not None}}
                delta = dict(event.state_delta)
                if "secret" in delta:
                    delta["secret"] = "[masked]"
                events[i] = event.model_copy(update={"data": data, "state_delta": delta})


    @hookimpl
    def before_state_update(self, delta: dict[str, Any]) -> None:
        if delta.get("app:conformance") == "reject":
            raise PluginRejectedError("state marked reject is refused")
        if delta.get("app:conformance") == "transform" and "app:secret" in delta:
            delta["app:secret"] = "[masked]"


class PluginConformance(ConformanceBase):
    """`before_append` refuses, fails or transforms appends on every store."""

    @staticmethod
    def plugin_store(make_store: StoreFactory) -> SessionStore:
        return make_store(plugins=[CONFORMANCE_PLUGIN])

    def test_before_append_rejection_writes_nothing(self, make_store: StoreFactory) -> None:
        store = self.plugin_store(make_store)
        sid = store.create_session(app_name=self.unique("app"), user_id="u").id
        store.append(sid, [msg("first")])
        before = self.record(store, sid)
        rejected = msg("no", data={"text": "no", "conformance": "reject"}, state_delta={"k": 1})
        with pytest.raises(PluginRejectedError) as caught:
            store.append(sid, [msg("fine"), rejected], expected_version=2)
        assert caught.value.plugin == "conformance"
        assert "reject are refused" in caught.value.reason
        assert "conformance" in str(caught.value)
        assert self.record(store, sid) == before
        assert store.verify_session(sid).ok

    def test_before_append_failure_writes_nothing(self, make_store: StoreFactory) -> None:
        store = self.plugin_store(make_store)
        sid = store.create_session(app_name=self.unique("app"), user_id="u").id
        before = self.record(store, sid)
        with pytest.raises(PluginError) as caught:
            store.append(sid, [msg("x", data={"text": "x", "conformance": "crash"})])
        assert not isinstance(caught.value, PluginRejectedError)
        assert caught.value.plugin == "conformance"
        assert "crashed on purpose" in caught.value.reason
        assert self.record(store, sid) == before

    def test_rejected_create_makes_no_session(self, make_store: StoreFactory) -> None:
        store = self.plugin_store(make_store)
        app = self.unique("app")
        with pytest.raises(PluginRejectedError):
            store.create_session(
                app_name=app, user_id="u", session_id="refused", metadata={"conformance": "reject"}
            )
        assert store.list_sessions(app_name=app).sessions == []
        # the id is still free
        assert store.create_session(app_name=app, user_id="u", session_id="refused").version == 1

    def test_before_append_transformation_is_what_is_stored(
        self, make_store: StoreFactory
    ) -> None:
        store = self.plugin_store(make_store)
        sid = store.create_session(app_name=self.unique("app"), user_id="u").id
        event = msg("hello", data={"text": "hello", "conformance": "transform"},
                    state_delta={"secret": "hunter2", "plain": 1})
        (stored,) = store.append(sid, [event])
        assert stored.data["text"] == "HELLO"
        assert stored.data["plugins"] == {"conformance": {"seen": True, "had_session": True}}
        assert stored.state_delta == {"secret": "[masked]", "plain": 1}
        assert store.read_events(sid, after=1) == [stored]
        session = store.get_session(sid)
        assert self.own_state(session.state) == {"secret": "[masked]", "plain": 1}
        assert store.verify_session(sid).ok
        if store.capabilities.persistent:
            reopened = make_store()
            assert reopened.read_events(sid, after=1) == [stored]
            assert "hunter2" not in repr(reopened.get_session(sid))

    def test_before_append_transforms_a_new_sessions_first_event(
        self, make_store: StoreFactory
    ) -> None:
        store = self.plugin_store(make_store)
        session = store.create_session(
            app_name=self.unique("app"), user_id="u", metadata={"conformance": "transform"},
            state={"secret": "hunter2"},
        )
        assert self.own_state(session.state) == {"secret": "[masked]"}
        (created,) = store.read_events(session.id)
        assert created.data["plugins"] == {"conformance": {"seen": True, "had_session": False}}

    def test_before_state_update_refuses_or_transforms_shared_state(
        self, make_store: StoreFactory
    ) -> None:
        store = self.plugin_store(make_store)
        app = self.unique("app")
        store.update_scoped_state(app, None, {"app:plain": 1})
        with pytest.raises(PluginRejectedError) as caught:
            store.update_scoped_state(app, None, {"app:conformance": "reject", "app:plain": 2})
        assert caught.value.plugin == "conformance"
        assert store.get_scoped_state(app) == {"app:plain": 1}
        after = store.update_scoped_state(
            app, "u", {"app:conformance": "transform", "app:secret": "hunter2", "user:k": 1}
        )
        assert after == {"user:k": 1}
        assert store.get_scoped_state(app) == {
            "app:plain": 1, "app:conformance": "transform", "app:secret": "[masked]"
        }
