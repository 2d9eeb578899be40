"""Conformance: atomic appends, optimistic concurrency and concurrent writers (threads)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from agentledger.core.events import NewEvent
from agentledger.errors import ConcurrencyError, SessionNotFoundError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["AppendConformance"]

TS_2125 = "2125-03-04T05:06:07.891011Z"

THREADS = 8
APPENDS_PER_THREAD = 50


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run `target(i)` in `count` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread did not finish"
    if errors:
        raise errors[0]


class AppendConformance(ConformanceBase):
    """`append`: atomicity, seq assignment, `expected_version`, many threads."""

    def test_append_assigns_gapless_seq(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        # A caller's time never stamps the event: it travels in data["timestamp"].
        stamp = datetime(2125, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
        batch = [
            msg("one", invocation_id="inv-1"),
            NewEvent(type="agent_message", author="agent", data={"text": "two"}, timestamp=stamp),
            NewEvent(type="tool_call", author="agent", data={"name": "t", "args": {"x": [1, 2.5]}}),
        ]
        stored = store.append(session.id, batch)
        assert self.seqs(stored) == [2, 3, 4]
        for new, event in zip(batch, stored, strict=True):
            assert event.session_id == session.id
            data = new.data if new.timestamp is None else {**new.data, "timestamp": TS_2125}
            assert (event.type, event.author, event.data) == (new.type, new.author, data)
            assert event.invocation_id == new.invocation_id
            assert event.timestamp.utcoffset() is not None
        assert stored[0].timestamp <= stored[1].timestamp < stamp
        assert len({e.id for e in stored}) == 3
        more = store.append(session.id, [msg("five")])
        assert self.seqs(more) == [5]
        events = store.read_events(session.id)
        assert events[1:] == [*stored, *more]
        assert self.seqs(events) == [1, 2, 3, 4, 5]
        ids = [e.id for e in events]
        assert len(set(ids)) == 5 and ids == sorted(ids)
        assert store.get_session(session.id).version == 5
        assert store.get_session(session.id).updated_at == more[0].timestamp

    def test_append_nothing(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        assert store.append(session.id, []) == []
        assert store.get_session(session.id) == session
        assert self.seqs(store.read_events(session.id)) == [1]

    def test_plugin_event_types_are_stored(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        event = NewEvent(type="myplugin.metric", author="myplugin", data={"value": 1})
        (stored,) = store.append(session.id, [event])
        assert (stored.type, stored.author) == ("myplugin.metric", "myplugin")
        assert store.read_events(session.id, types=["myplugin.metric"]) == [stored]

    def test_expected_version_matches(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        stored = store.append(session.id, [msg("a"), msg("b")], expected_version=1)
        assert self.seqs(stored) == [2, 3]
        stored = store.append(session.id, [msg("c")], expected_version=3)
        assert self.seqs(stored) == [4]
        assert store.get_session(session.id).version == 4

    @pytest.mark.parametrize("stale", [0, 1, 2, 4, 99])
    def test_stale_expected_version_writes_nothing(self, store: SessionStore, stale: int) -> None:
        app = self.unique("app")
        session = store.create_session(app_name=app, user_id="ada", state={"k": 0})
        store.append(session.id, [msg("a"), msg("b")])  # version 3
        before = self.record(store, session.id)
        with pytest.raises(ConcurrencyError) as info:
            store.append(
                session.id,
                [msg("x", state_delta={"k": 1, "app:a": 1, "user:u": 1})],
                expected_version=stale,
            )
        error = info.value
        assert (error.session_id, error.expected_version, error.actual_version) == (
            session.id,
            stale,
            3,
        )
        assert self.record(store, session.id) == before
        other = store.create_session(app_name=app, user_id="ada")
        assert other.state == {}, "a refused append changed shared state"

    def test_append_to_unknown_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError) as info:
            store.append("nobody-here", [msg()])
        assert info.value.session_id == "nobody-here"
        with pytest.raises(SessionNotFoundError):
            store.append("nobody-here", [msg()], expected_version=1)
        assert store.list_sessions().sessions == []

    def test_concurrent_appends_from_threads(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        returned: list[list[int]] = [[] for _ in range(THREADS)]

        def writer(i: int) -> None:
            for n in range(APPENDS_PER_THREAD):
                (event,) = store.append(session.id, [msg(f"{i}:{n}", data={"w": i, "n": n})])
                returned[i].append(event.seq)

        _run_threads(THREADS, writer)
        total = THREADS * APPENDS_PER_THREAD
        events = store.read_events(session.id)
        assert self.seqs(events) == list(range(1, total + 2))
        assert store.get_session(session.id).version == total + 1
        assert sorted(s for seqs in returned for s in seqs) == list(range(2, total + 2))
        written = Counter((e.data["w"], e.data["n"]) for e in events[1:])
        assert set(written.values()) == {1} and len(written) == total
        for i in range(THREADS):  # each writer's appends land in its own order
            assert returned[i] == sorted(returned[i])
            own = [e.data["n"] for e in events[1:] if e.data["w"] == i]
            assert own == list(range(APPENDS_PER_THREAD))

    def test_concurrent_multi_event_appends_stay_contiguous(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")

        def writer(i: int) -> None:
            for n in range(10):
                batch = [msg(data={"w": i, "n": n, "k": k}) for k in range(3)]
                stored = store.append(session.id, batch)
                assert self.seqs(stored) == list(range(stored[0].seq, stored[0].seq + 3))

        _run_threads(4, writer)
        events = store.read_events(session.id)
        assert self.seqs(events) == list(range(1, 4 * 10 * 3 + 2))
        for start in range(1, len(events), 3):  # every batch landed as one block
            block = events[start : start + 3]
            assert {(e.data["w"], e.data["n"]) for e in block} == {
                (block[0].data["w"], block[0].data["n"])
            }
            assert [e.data["k"] for e in block] == [0, 1, 2]

    def test_concurrent_appends_with_expected_version(self, store: SessionStore) -> None:
        session = store.create_session(app_name="demo", user_id="ada")
        successes = [0] * THREADS
        conflicts = [0] * THREADS
        per_thread = APPENDS_PER_THREAD

        def writer(i: int) -> None:
            while successes[i] < per_thread:
                version = store.get_session(session.id).version
                try:
                    stored = store.append(
                        session.id, [msg(data={"w": i, "v": version})], expected_version=version
                    )
                except ConcurrencyError as exc:
                    assert exc.expected_version == version
                    assert exc.actual_version > version
                    conflicts[i] += 1
                    continue
                assert self.seqs(stored) == [version + 1]
                successes[i] += 1

        _run_threads(THREADS, writer)
        events = store.read_events(session.id)
        assert len(events) == sum(successes) + 1 == THREADS * per_thread + 1
        assert self.seqs(events) == list(range(1, len(events) + 1))
        for event in events[1:]:  # each landed append was made against the version before it
            assert event.data["v"] == event.seq - 1
        assert store.get_session(session.id).version == len(events)

    def test_concurrent_shared_state_updates_are_not_lost(self, store: SessionStore) -> None:
        app = self.unique("app")
        sessions = [store.create_session(app_name=app, user_id="ada") for _ in range(4)]

        def writer(i: int) -> None:
            for n in range(20):
                store.append(
                    sessions[i].id,
                    [msg(state_delta={f"app:w{i}": n, f"user:w{i}": n, "own": n})],
                )

        _run_threads(4, writer)
        expected = {f"app:w{i}": 19 for i in range(4)} | {f"user:w{i}": 19 for i in range(4)}
        for session in sessions:
            assert store.get_session(session.id).state == expected | {"own": 19}

    def test_readers_never_see_part_of_an_append(self, store: SessionStore) -> None:
        """An append that sets a session key, an `app:` key and a `user:` key is seen whole
        or not at all by `get_session`, while it is being written."""
        sid = store.create_session(
            app_name=self.unique("app"), user_id="ada", state={"k": 0, "app:k": 0, "user:k": 0}
        ).id
        done = threading.Event()
        mixed: list[dict[str, object]] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for n in range(1, 151):
                    store.append(sid, [msg(state_delta={"k": n, "app:k": n, "user:k": n})])
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        reads = 0
        while not done.is_set() or reads == 0:
            state = store.get_session(sid).state
            reads += 1
            if not state["k"] == state["app:k"] == state["user:k"]:
                mixed.append({k: state[k] for k in ("k", "app:k", "user:k")})
        thread.join()
        assert not errors, errors
        assert not mixed, f"{len(mixed)} of {reads} reads saw part of an append: {mixed[:3]}"
        assert store.get_session(sid).state == {"k": 150, "app:k": 150, "user:k": 150}
