"""Conformance: idempotency keys (retries harmless, clashes refused) and keyed reads."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.core.events import NewEvent
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventKeyError,
    InvalidEventError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["KeyConformance"]


def _keyed(key: str, text: str = "hi", **fields: Any) -> NewEvent:
    return msg(text, key=key, **fields)


class KeyConformance(ConformanceBase):
    """`NewEvent(key=...)`, `get_event`, `read_events(keys=, key_prefix=, data_match=)`."""

    def test_a_retried_batch_returns_the_stored_events_and_writes_nothing(
        self, store: SessionStore
    ) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        batch = [_keyed("put:1", "a", state_delta={"n": 1}), _keyed("put:2", "b")]
        first = store.append(session.id, batch)
        store.append(session.id, [msg("later")])  # the session moved on
        again = store.append(session.id, batch, expected_version=1)  # a stale version too
        assert again == first
        assert [e.key for e in again] == ["put:1", "put:2"]
        assert store.get_session(session.id).version == 4
        assert len(store.read_events(session.id)) == 4
        assert store.verify_session(session.id).ok

    def test_a_key_stored_with_other_content_is_refused(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [_keyed("k", "a")])
        for other in (
            _keyed("k", "b"),
            _keyed("k", "a", author="agent"),
            _keyed("k", "a", state_delta={"x": 1}),
            _keyed("k", "a", invocation_id="turn-1"),
            NewEvent(type="agent_message", author="user", data={"text": "a"}, key="k"),
        ):
            with pytest.raises(DuplicateEventKeyError) as caught:
                store.append(session.id, [other])
            assert caught.value.keys == ["k"] and caught.value.reason == "different_content"
        assert store.get_session(session.id).version == 2

    def test_a_batch_mixing_stored_and_new_keys_is_refused(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [_keyed("a")])
        for batch in ([_keyed("a"), _keyed("b")], [_keyed("a"), msg("no key")]):
            with pytest.raises(DuplicateEventKeyError) as caught:
                store.append(session.id, batch)
            assert caught.value.reason == "partial_retry" and caught.value.keys == ["a"]
        assert store.get_session(session.id).version == 2
        assert store.get_event(session.id, "b") is None

    def test_a_key_twice_in_one_batch_is_refused(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        with pytest.raises(DuplicateEventKeyError) as caught:
            store.append(session.id, [_keyed("x", "1"), _keyed("x", "1")])
        assert caught.value.reason == "repeated_in_batch"
        assert store.get_session(session.id).version == 1

    def test_keys_are_unique_per_session_not_per_store(self, store: SessionStore) -> None:
        one = store.create_session(app_name="demo", user_id="ada")
        two = store.create_session(app_name="demo", user_id="ada")
        store.append(one.id, [_keyed("same", "1")])
        stored = store.append(two.id, [_keyed("same", "2")])
        assert stored[0].session_id == two.id and stored[0].data == {"text": "2"}
        found = store.get_event(one.id, "same")
        assert found is not None and found.data == {"text": "1"}

    def test_without_a_match_the_version_check_still_applies(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [msg()])
        with pytest.raises(ConcurrencyError):
            store.append(session.id, [_keyed("new")], expected_version=1)
        assert store.get_event(session.id, "new") is None

    def test_bad_keys_are_refused(self, store: SessionStore) -> None:
        for bad in ("", "x" * 513, "a\nb", "nul\x00", 5):
            with pytest.raises(InvalidEventError):
                _keyed(bad)  # type: ignore[arg-type]
        session = store.create_session(app_name="demo", user_id="ada")
        longest = "k/é 🙂" + "x" * 507
        store.append(session.id, [_keyed(longest)])
        found = store.get_event(session.id, longest)
        assert found is not None and found.key == longest
        for bad_read in ("", "a\x01"):
            with pytest.raises(ConfigurationError):
                store.get_event(session.id, bad_read)
            with pytest.raises(ConfigurationError):
                store.read_events(session.id, key_prefix=bad_read)

    def test_get_event_by_key(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        stored = store.append(session.id, [msg(), _keyed("ckpt:1", "one"), msg()])
        found = store.get_event(session.id, "ckpt:1")
        assert found == stored[1]
        assert store.get_event(session.id, "ckpt:2") is None
        with pytest.raises(SessionNotFoundError):
            store.get_event("no-such-session", "ckpt:1")

    def test_read_events_by_keys_in_seq_order(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [_keyed(f"k{i}", str(i)) for i in range(6)])
        found = store.read_events(session.id, keys=["k4", "k1", "missing", "k4"])
        assert [e.key for e in found] == ["k1", "k4"]
        assert [e.seq for e in found] == [3, 6]
        assert store.read_events(session.id, keys=[]) == []
        assert [e.key for e in store.read_events(session.id, keys=["k1", "k4"], after=3)] == ["k4"]
        with pytest.raises(SessionNotFoundError):
            store.read_events("no-such-session", keys=["k1"])

    def test_read_events_by_key_prefix(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        for i in range(5):
            store.append(session.id, [_keyed(f"ckpt:{9 - i}", f"c{i}"), _keyed(f"w:{i}", f"w{i}")])
        store.append(session.id, [_keyed("ckpt", "no colon"), _keyed("ckpt;", "next range")])
        store.append(session.id, [msg("no key")])
        found = store.read_events(session.id, key_prefix="ckpt:")
        assert [e.key for e in found] == [f"ckpt:{9 - i}" for i in range(5)]  # seq order
        latest = store.read_events(session.id, key_prefix="ckpt:", last=1)
        assert [e.key for e in latest] == ["ckpt:5"]
        assert [e.key for e in store.read_events(session.id, key_prefix="ckpt:", last=2)] == [
            "ckpt:6", "ckpt:5"
        ]
        assert [e.key for e in store.read_events(session.id, key_prefix="ckpt:", limit=2)] == [
            "ckpt:9", "ckpt:8"
        ]
        assert store.read_events(session.id, key_prefix="ckpt:", last=0) == []
        assert store.read_events(session.id, key_prefix="none:") == []
        assert [e.key for e in store.read_events(session.id, key_prefix="w:", after=6)] == [
            "w:2", "w:3", "w:4"
        ]
        assert [
            e.key for e in store.read_events(session.id, key_prefix="ckpt:", keys=["ckpt:7", "w:1"])
        ] == ["ckpt:7"]

    def test_key_prefixes_compare_by_code_point(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        keys = ["é:1", "é:2", "éa", "e:1", "E:1", "\U0010ffff:x", "z\U0010ffff", "\ud7ff\U0010ffff"]
        store.append(session.id, [_keyed(k, k) for k in keys])
        assert [e.key for e in store.read_events(session.id, key_prefix="é:")] == ["é:1", "é:2"]
        assert [e.key for e in store.read_events(session.id, key_prefix="e")] == ["e:1"]
        assert [e.key for e in store.read_events(session.id, key_prefix="\U0010ffff")] == [
            "\U0010ffff:x"
        ]
        assert [e.key for e in store.read_events(session.id, key_prefix="z\U0010ffff")] == [
            "z\U0010ffff"
        ]
        assert [e.key for e in store.read_events(session.id, key_prefix="\ud7ff")] == [
            "\ud7ff\U0010ffff"
        ]

    def test_latest_of_a_namespace_far_from_the_end(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [_keyed(f"old:{i:03d}", str(i)) for i in range(300)])
        store.append(session.id, [msg(str(i)) for i in range(200)])
        store.append(session.id, [_keyed("new:1")])
        assert [e.key for e in store.read_events(session.id, key_prefix="old:", last=2)] == [
            "old:298", "old:299"
        ]
        assert [e.key for e in store.read_events(session.id, key_prefix="new:", last=3)] == [
            "new:1"
        ]
        filtered = store.read_events(
            session.id, key_prefix="old:", last=1, data_match={"text": "7"}
        )
        assert [e.key for e in filtered] == ["old:007"]

    def test_data_match(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        values: list[dict[str, Any]] = [
            {"metadata": {"source": "input", "n": 1}},
            {"metadata": {"source": "loop", "n": 1.0}},
            {"metadata": {"source": "input", "n": True, "x": None}},
            {"metadata": [{"source": "input"}]},
            {"metadata": {"source": ["input"]}},
            {"metadata.source": "input"},
            {"other": 1},
        ]
        store.append(session.id, [NewEvent(type="app.thing", data=v) for v in values])

        def seqs(**match: Any) -> list[int]:
            return [e.seq for e in store.read_events(session.id, data_match=match)]

        assert seqs(**{"metadata.source": "input"}) == [2, 4]
        assert seqs(**{"metadata.n": 1}) == [2, 3]  # 1 equals 1.0, not true
        assert seqs(**{"metadata.n": True}) == [4]
        assert seqs(**{"metadata.x": None}) == [4]  # a missing key is not null
        assert seqs(**{"metadata.source": "input", "metadata.n": 1}) == [2]
        assert seqs(other=1) == [8]
        assert seqs(**{"metadata.source": "nothing"}) == []
        last = store.read_events(session.id, data_match={"metadata.source": "input"}, last=1)
        assert [e.seq for e in last] == [4]
        for bad in ({}, {"a..b": 1}, {"a": [1]}, {"a": {"b": 1}}, {"a": float("nan")}, "x"):
            with pytest.raises(ConfigurationError):
                store.read_events(session.id, data_match=bad)  # type: ignore[arg-type]

    def test_keys_survive_reopening(self, make_store: Any) -> None:
        store = make_store()
        if not store.capabilities.persistent:
            pytest.skip("the store does not persist")
        session = store.create_session(app_name="demo", user_id="ada")
        store.append(session.id, [_keyed("ckpt:1"), _keyed("ckpt:2", "x")])
        store.close()
        reopened = make_store()
        found = reopened.read_events(session.id, key_prefix="ckpt:", last=1)
        assert [e.key for e in found] == ["ckpt:2"]
        again = reopened.append(session.id, [_keyed("ckpt:1")])
        assert again[0].seq == 2
        with pytest.raises(DuplicateEventKeyError):
            reopened.append(session.id, [_keyed("ckpt:1", "changed")])
        assert reopened.verify_session(session.id).ok
