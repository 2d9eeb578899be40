"""Conformance: opening a store by URL, its options, and the read-only and no-create modes."""

from __future__ import annotations

import pytest

from agentledger.errors import ConfigurationError, ReadOnlyStoreError, StoreNotFoundError
from agentledger.stores.base import SessionStore, open_store
from agentledger.testing._base import ConformanceBase, StoreFactory, msg

__all__ = ["OpeningConformance"]


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


class OpeningConformance(ConformanceBase):
    """Unknown options are refused by name; `read_only=True` and `create=False` never
    create a store, and a read-only store refuses every write."""

    def test_unknown_url_option_names_it_and_lists_the_valid_ones(
        self, make_store: StoreFactory
    ) -> None:
        with pytest.raises(ConfigurationError) as info:
            open_store(_with_query(make_store.url, "bogus=1"))
        text = str(info.value)
        assert "'bogus'" in text
        assert "max_event_bytes" in text and "read_only" in text
        with pytest.raises(ConfigurationError, match="'bogus'"):
            open_store(make_store.url, bogus=1)
        store = make_store()
        if store.capabilities.persistent:
            # The refused opens created nothing: the store is still empty.
            assert store.list_sessions().sessions == []

    def test_refused_open_creates_nothing(self, make_store: StoreFactory) -> None:
        try:
            probe = make_store(read_only=True)
        except StoreNotFoundError:
            pass
        else:
            if not probe.capabilities.persistent:
                pytest.skip(f"{probe.url} is not persistent: it exists once it is opened")
            if not probe.capabilities.injectable_clock:
                pytest.skip(f"{probe.url} is served by another process, which made it")
            raise AssertionError(f"{probe.url} opened read-only before it existed")
        with pytest.raises(StoreNotFoundError):
            make_store(create=False)
        with pytest.raises(ConfigurationError):
            open_store(_with_query(make_store.url, "bogus=1"))
        with pytest.raises(StoreNotFoundError):
            make_store(read_only=True)  # none of the refused opens created it
        store = make_store()
        store.create_session(app_name=self.unique("app"), user_id="ada", session_id="s1")
        assert make_store(create=False).get_session("s1").version == 1
        assert make_store(read_only=True).get_session("s1").version == 1

    def test_read_only_store_reads_and_refuses_every_write(
        self, make_store: StoreFactory
    ) -> None:
        writer = make_store()
        if not writer.capabilities.persistent:
            ro = make_store(read_only=True)
            self._assert_refuses_writes(ro, None)
            return
        app = self.unique("app")
        session = writer.create_session(app_name=app, user_id="ada", state={"k": 1})
        writer.append(session.id, [msg("hello", state_delta={"user:u": 1, "app:a": 2})])
        before = self.record(writer, session.id)
        in_url = open_store(_with_query(make_store.url, "read_only=true"))
        for ro in (make_store(read_only=True), in_url):
            try:
                assert self.record(ro, session.id) == before
                assert [s.id for s in ro.list_sessions(app_name=app).sessions] == [session.id]
                assert ro.get_scoped_state(app, "ada") == {"user:u": 1}
                assert ro.get_scoped_state(app) == {"app:a": 2}
                self._assert_refuses_writes(ro, session.id)
                with pytest.raises(ReadOnlyStoreError):
                    ro.update_scoped_state(app, "ada", {"user:u": 9})
            finally:
                ro.close()
        assert self.record(writer, session.id) == before
        assert writer.get_scoped_state(app, "ada") == {"user:u": 1}
        assert [s.id for s in writer.list_sessions(app_name=app).sessions] == [session.id]

    def _assert_refuses_writes(self, ro: SessionStore, session_id: str | None) -> None:
        with pytest.raises(ReadOnlyStoreError):
            ro.create_session(app_name=self.unique("app"), user_id="ada")
        with pytest.raises(ReadOnlyStoreError):
            ro.append(session_id or "s1", [msg("refused")])
        with pytest.raises(ReadOnlyStoreError):
            ro.delete_session(session_id or "s1")
