"""Conformance: moving sessions between stores (`agentledger.transfer`: export, import, copy)
and writing stored events exactly (`BaseStore.import_events`)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    InvalidEventError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionStore
from agentledger.stores.memory import MemoryStore
from agentledger.stores.shared import BaseStore
from agentledger.testing._base import ConformanceBase, msg
from agentledger.transfer import (
    ExportFormatError,
    SessionConflictError,
    copy_sessions,
    export_sessions,
    import_sessions,
)

__all__ = ["TransferConformance"]


def _local(store: SessionStore) -> BaseStore:
    if not isinstance(store, BaseStore):
        pytest.skip("imports write through a local store; an http:// store is written by its server")
    return store


class TransferConformance(ConformanceBase):
    """Sessions exported from one store and imported into another read back exactly."""

    def _populate(self, store: SessionStore) -> tuple[str, list[str]]:
        app = self.unique("app")
        one = store.create_session(
            app_name=app, user_id="ada", agent_name="helper", state={"z": 1, "user:tier": "gold"},
            metadata={"ticket": "T-1"},
        )
        store.append(
            one.id,
            [
                NewEvent(type="user_message", author="user", data={"text": "héllo ☃ \u2028"}, invocation_id="i-1"),
                NewEvent(
                    type="agent_message", author="agent", data={"big": 1e23, "neg": -0.0, "n": [1, {"a": None}]},
                    state_delta={"app:motd": "hi", "k": {"deep": [1, 2]}}, invocation_id="i-1",
                ),
            ],
        )
        store.append(one.id, [msg(state_ops=[{"op": "add", "path": "/user:list", "value": ["x"]}])])
        # A keyed event, a null stored as a value, a removal: all travel exactly.
        store.append(one.id, [msg(key="ns:1", state_delta={"nothing": None}, state_remove=["z"])])
        two = store.create_session(app_name=app, user_id="bob")
        store.append(two.id, [msg()])
        store.update_scoped_state(app, "bob", {"user:lang": "fr"})
        return app, [one.id, two.id]

    @staticmethod
    def _same(a: SessionStore, b: SessionStore, ids: list[str]) -> None:
        for session_id in ids:
            assert b.read_events(session_id) == a.read_events(session_id)
            assert b.get_session(session_id) == a.get_session(session_id)
            there, here = a.verify_session(session_id), b.verify_session(session_id)
            assert here.ok and here.last_hash == there.last_hash and here.events == there.events

    def test_export_then_import_elsewhere_is_exact(self, store: SessionStore) -> None:
        app, ids = self._populate(store)
        out = io.StringIO()
        report = export_sessions(store, out, app_name=app)
        assert (report.sessions, report.events) == (2, 7)
        other = MemoryStore()
        got = import_sessions(other, io.StringIO(out.getvalue()))
        assert (got.sessions, got.events) == (2, 7)
        self._same(store, other, ids)
        assert other.get_scoped_state(app, "bob") == {"user:lang": "fr"}
        again = import_sessions(other, io.StringIO(out.getvalue()))
        assert (again.sessions, again.unchanged) == (0, 2)

    def test_import_into_this_store_is_exact(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        app, ids = self._populate(source)
        out = io.StringIO()
        export_sessions(source, out, ids)
        report = import_sessions(local, io.StringIO(out.getvalue()))
        assert (report.sessions, report.events, report.scoped_states) == (2, 7, 3)
        self._same(source, local, ids)
        assert local.get_session(ids[0]).state["user:list"] == ["x"]
        assert local.get_session(ids[0]).state["nothing"] is None
        assert "z" not in local.get_session(ids[0]).state
        assert local.get_event(ids[0], "ns:1") == source.get_event(ids[0], "ns:1")
        # The imported session goes on like any other.
        local.append(ids[0], [msg()])
        assert local.verify_session(ids[0]).ok

    def test_a_conflicting_session_refuses_the_whole_import(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        app, ids = self._populate(source)
        out = io.StringIO()
        export_sessions(source, out, ids)
        # The second session exists here with another history.
        local.create_session(app_name=app, user_id="bob", session_id=ids[1])
        with pytest.raises(SessionConflictError):
            import_sessions(local, io.StringIO(out.getvalue()))
        with pytest.raises(SessionNotFoundError):  # nothing was written
            local.get_session(ids[0])
        report = import_sessions(local, io.StringIO(out.getvalue()), skip_existing=True)
        assert report.skipped == [ids[1]] and report.sessions == 1
        assert local.get_session(ids[1]).version == 1

    def test_a_changed_export_is_refused(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        _, ids = self._populate(source)
        out = io.StringIO()
        export_sessions(source, out, ids)
        text = out.getvalue().replace("héllo", "hallo")
        with pytest.raises(ExportFormatError, match="digest"):
            import_sessions(local, io.StringIO(text))
        cut = "".join(out.getvalue().splitlines(keepends=True)[:-4])
        with pytest.raises(ExportFormatError):
            import_sessions(local, io.StringIO(cut))
        with pytest.raises(SessionNotFoundError):
            local.get_session(ids[0])

    def test_copy_is_resumable_and_continues_grown_sessions(self, store: SessionStore) -> None:
        app, ids = self._populate(store)
        dest = MemoryStore()
        first = copy_sessions(store, dest, app_name=app)
        assert (first.sessions, first.events) == (2, 7)
        store.append(ids[0], [msg(), msg()])
        second = copy_sessions(store, dest, app_name=app)
        assert (second.sessions, second.continued, second.events, second.unchanged) == (1, 1, 2, 1)
        self._same(store, dest, ids)

    def test_import_events_continues_or_refuses(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        session = source.create_session(app_name=self.unique("app"), user_id="ada")
        source.append(session.id, [msg(), msg(), msg()])
        events = source.read_events(session.id)
        with pytest.raises(SessionNotFoundError):
            local.import_events(session.id, events[2:])
        local.import_events(session.id, events[:2])
        with pytest.raises(ConcurrencyError):
            local.import_events(session.id, events[3:])
        with pytest.raises(SessionExistsError):
            local.import_events(session.id, events[:1])
        with pytest.raises(InvalidEventError):
            local.import_events(session.id, [events[2], events[3], events[3]])
        with pytest.raises(InvalidEventError):
            local.import_events("other-" + session.id[:20], events[:1])
        assert local.get_session(session.id).version == 2
        local.import_events(session.id, events[2:])
        assert local.read_events(session.id) == events
        assert local.verify_session(session.id).last_hash == source.verify_session(session.id).last_hash

    def test_import_events_refuses_time_running_backwards(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        session = source.create_session(app_name=self.unique("app"), user_id="ada")
        source.append(session.id, [msg()])
        first, second = source.read_events(session.id)
        earlier: dict[str, Any] = {"timestamp": first.timestamp.replace(year=first.timestamp.year - 1)}
        with pytest.raises(InvalidEventError):
            local.import_events(session.id, [first, second.model_copy(update=earlier)])
        with pytest.raises(SessionNotFoundError):
            local.get_session(session.id)

    # -- erased and truncated history ---------------------------------------------------

    def _populate_erased(self, store: SessionStore) -> tuple[str, list[str]]:
        """An erased session (payloads gone, base re-set) and a truncated one that goes on
        after its truncation."""
        app = self.unique("app")
        erased = store.create_session(app_name=app, user_id="ada", state={"k": 0})
        store.append(
            erased.id, [msg(data={"text": "private words"}, state_delta={"k": 1}), msg(key="ns:e")]
        )
        store.append(erased.id, [msg(state_delta={"k": 2})])
        store.erase_events(erased.id, [2, 3], "a user's request")
        store.append(erased.id, [msg(state_delta={"after": True})])
        cut = store.create_session(app_name=app, user_id="bob")
        store.append(cut.id, [msg(state_delta={"n": i}) for i in range(4)])
        store.truncate_before(cut.id, 4)
        store.erase_events(cut.id, [4], "a user's request")
        store.append(cut.id, [msg(state_delta={"last": 1})])
        return app, [erased.id, cut.id]

    @staticmethod
    def _same_ledger(a: SessionStore, b: SessionStore, ids: list[str]) -> None:
        for session_id in ids:
            assert b.read_events(session_id) == a.read_events(session_id)
            assert b.get_session(session_id) == a.get_session(session_id)
            there, here = a.verify_session(session_id), b.verify_session(session_id)
            assert here.ok, here.problem
            assert (here.last_hash, here.events, here.first_seq, here.erased) == (
                there.last_hash, there.events, there.first_seq, there.erased,
            )

    def test_erased_and_truncated_sessions_export_and_import_exactly(self, store: SessionStore) -> None:
        app, ids = self._populate_erased(store)
        if not isinstance(store, BaseStore):  # an http:// store does not hand out its base
            with pytest.raises(ConfigurationError, match="erased or truncated"):
                export_sessions(store, io.StringIO(), ids)
            return
        out = io.StringIO()
        report = export_sessions(store, out, ids)
        assert report.sessions == 2
        text = out.getvalue()
        assert "private words" not in text and "payload_hash" in text and '"base"' in text
        other = MemoryStore()
        got = import_sessions(other, io.StringIO(text))
        assert got.sessions == 2
        self._same_ledger(store, other, ids)
        assert other.verify_session(ids[0]).erased == 2 and other.verify_session(ids[1]).first_seq == 4
        again = import_sessions(other, io.StringIO(text))
        assert (again.sessions, again.unchanged) == (0, 2)
        other.append(ids[1], [msg()])  # the imported session goes on
        assert other.verify_session(ids[1]).ok

    def test_erased_and_truncated_sessions_import_into_this_store_exactly(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        _, ids = self._populate_erased(source)
        out = io.StringIO()
        export_sessions(source, out, ids)
        import_sessions(local, io.StringIO(out.getvalue()))
        self._same_ledger(source, local, ids)
        for session_id in ids:
            here, there = local.ledger_base(session_id), source.ledger_base(session_id)
            assert here._replace(session="") == there._replace(session="")
            assert json.loads(here.session) == json.loads(there.session)
        local.append(ids[0], [msg(state_delta={"more": 1})])
        assert local.verify_session(ids[0]).ok
        assert local.get_session(ids[0]).state["more"] == 1

    def test_an_altered_erased_event_line_is_refused(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        _, ids = self._populate_erased(source)
        out = io.StringIO()
        export_sessions(source, out, ids[:1])
        lines = out.getvalue().splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if "payload_hash" in line)
        hashed = json.loads(lines[at])
        changes: list[dict[str, Any]] = [
            {**hashed, "payload_hash": "0" * 64},
            {**hashed, "event": {**hashed["event"], "data": {"secret": "back"}}},
            {**hashed, "event": {**hashed["event"], "erased": False}},
            {"event": hashed["event"]},
        ]
        for changed in changes:
            text = "".join(lines[:at] + [json.dumps(changed) + "\n"] + lines[at + 1 :])
            with pytest.raises(ExportFormatError):
                import_sessions(local, io.StringIO(text))
        with pytest.raises(SessionNotFoundError):
            local.get_session(ids[0])

    def test_copy_of_erased_and_truncated_sessions_is_exact_and_resumable(self, store: SessionStore) -> None:
        _, ids = self._populate_erased(store)
        if not isinstance(store, BaseStore):  # an http:// store does not hand out its base
            with pytest.raises(ConfigurationError, match="erased or truncated"):
                copy_sessions(store, MemoryStore(), ids)
            return
        dest = MemoryStore()
        first = copy_sessions(store, dest, ids)
        assert first.sessions == 2
        self._same_ledger(store, dest, ids)
        store.append(ids[0], [msg(), msg()])
        second = copy_sessions(store, dest, ids)
        assert (second.sessions, second.continued, second.events, second.unchanged) == (1, 1, 2, 1)
        self._same_ledger(store, dest, ids)
        # Erased again at the source since the copy: the copy is not continued silently.
        store.erase_events(ids[0], [6], "again")
        with pytest.raises(SessionConflictError, match="erased or truncated"):
            copy_sessions(store, dest, ids)

    def test_import_events_checks_the_base_and_erased_events(self, store: SessionStore) -> None:
        local = _local(store)
        source = MemoryStore()
        _, ids = self._populate_erased(source)
        ledger = source.read_ledger(ids[0])
        with pytest.raises(InvalidEventError):  # erased events need their payload hashes
            local.import_events(ids[0], ledger.events, base=ledger.base)
        with pytest.raises(InvalidEventError):  # and the base
            local.import_events(ids[0], ledger.events, payload_hashes=ledger.payload_hashes)
        wrong = ledger.base._replace(hash="0" * 64)
        with pytest.raises(InvalidEventError):
            local.import_events(ids[0], ledger.events, base=wrong, payload_hashes=ledger.payload_hashes)
        cut = source.read_ledger(ids[1])
        with pytest.raises(InvalidEventError):  # a truncated ledger starts after its base
            local.import_events(ids[1], cut.events[1:], base=cut.base, payload_hashes=cut.payload_hashes)
        with pytest.raises(SessionNotFoundError):
            local.get_session(ids[0])
        local.import_events(ids[0], ledger.events, base=ledger.base, payload_hashes=ledger.payload_hashes)
        self._same_ledger(source, local, ids[:1])
