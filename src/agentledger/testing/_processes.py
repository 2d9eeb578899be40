"""Conformance: several processes writing to one store, and appends surviving `kill -9`.

The workers are module-level functions so that the `spawn` start method can import them in
the child; each child reopens the store by URL with `open_store(url)`.
"""

from __future__ import annotations

import importlib
import os
import queue
from collections import Counter
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from typing import Any

from agentledger.core.events import NewEvent
from agentledger.errors import ConcurrencyError
from agentledger.stores.base import SessionStore, open_store
from agentledger.testing._base import ConformanceBase, StoreFactory

__all__ = ["ProcessConformance", "append_worker", "create_worker", "run_processes"]

PROCESSES = 4
APPENDS_PER_PROCESS = 50


def _open(url: str, imports: tuple[str, ...]) -> SessionStore:
    for module in imports:
        importlib.import_module(module)
    return open_store(url)


def append_worker(
    url: str,
    imports: tuple[str, ...],
    barrier: Barrier,
    session_id: str,
    worker: int,
    count: int,
    use_expected_version: bool,
) -> None:
    """Append `count` single-event batches to a session; retry on `ConcurrencyError`."""
    store = _open(url, imports)
    try:
        barrier.wait(timeout=60)
        done = 0
        while done < count:
            version = store.get_session(session_id).version if use_expected_version else None
            event = NewEvent(
                type="user_message",
                author="user",
                data={"w": worker, "n": done, "v": version, "pid": os.getpid()},
            )
            try:
                stored = store.append(session_id, [event], expected_version=version)
            except ConcurrencyError:
                continue
            if version is not None and stored[0].seq != version + 1:
                raise AssertionError(f"seq {stored[0].seq} after expected version {version}")
            done += 1
    finally:
        store.close()


def create_worker(
    url: str, imports: tuple[str, ...], barrier: Barrier, app_name: str, worker: int
) -> None:
    """Open the store (maybe creating it) at the same moment as others, then create a session."""
    barrier.wait(timeout=60)
    store = _open(url, imports)
    try:
        store.create_session(app_name=app_name, user_id=f"user-{worker}")
    finally:
        store.close()


def ack_worker(url: str, imports: tuple[str, ...], session_id: str, acks: Any) -> None:
    """Append forever, putting each acknowledged `seq` on `acks`; the parent kills it."""
    store = _open(url, imports)
    n = 0
    while True:
        (stored,) = store.append(
            session_id, [NewEvent(type="user_message", author="user", data={"n": n})]
        )
        acks.put(stored.seq)
        n += 1


def run_processes(ctx: Any, target: Any, args: list[tuple[Any, ...]]) -> None:
    """Start one process per `args` tuple, wait for all, and check they all exited with 0."""
    processes: list[BaseProcess] = [ctx.Process(target=target, args=a) for a in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    codes = [p.exitcode for p in processes]
    assert codes == [0] * len(processes), f"worker exit codes: {codes}"


class ProcessConformance(ConformanceBase):
    """Writers in several processes (`multi_process`); crash durability (`persistent`)."""

    def _concurrent_appends(self, store: SessionStore, *, use_expected_version: bool) -> None:
        self.require_multi_process(store)
        ctx = self.mp_context()
        session = store.create_session(app_name="demo", user_id="ada")
        barrier = ctx.Barrier(PROCESSES)
        args = [
            (
                store.url,
                self.child_imports,
                barrier,
                session.id,
                w,
                APPENDS_PER_PROCESS,
                use_expected_version,
            )
            for w in range(PROCESSES)
        ]
        run_processes(ctx, append_worker, args)

        total = PROCESSES * APPENDS_PER_PROCESS
        events = store.read_events(session.id)
        assert self.seqs(events) == list(range(1, total + 2))
        assert store.get_session(session.id).version == total + 1
        written = Counter((e.data["w"], e.data["n"]) for e in events[1:])
        assert len(written) == total and set(written.values()) == {1}
        for w in range(PROCESSES):  # each process's appends land in its own order
            own = [e.data["n"] for e in events[1:] if e.data["w"] == w]
            assert own == list(range(APPENDS_PER_PROCESS))
        if use_expected_version:
            for event in events[1:]:
                assert event.data["v"] == event.seq - 1

    def test_concurrent_appends_from_processes(self, store: SessionStore) -> None:
        self._concurrent_appends(store, use_expected_version=False)

    def test_concurrent_expected_version_appends_from_processes(
        self, store: SessionStore
    ) -> None:
        self._concurrent_appends(store, use_expected_version=True)

    def test_sessions_created_from_processes(self, store: SessionStore) -> None:
        self.require_multi_process(store)
        ctx = self.mp_context()
        app = self.unique("app")
        barrier = ctx.Barrier(PROCESSES)
        args = [(store.url, self.child_imports, barrier, app, w) for w in range(PROCESSES)]
        run_processes(ctx, create_worker, args)
        listed = store.list_sessions(app_name=app).sessions
        assert sorted(s.user_id for s in listed) == [f"user-{w}" for w in range(PROCESSES)]

    def test_acknowledged_appends_survive_kill(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        sigkill = self.require_sigkill()
        ctx = self.mp_context()
        session = store.create_session(app_name="demo", user_id="ada")
        acks = ctx.Queue()
        child = ctx.Process(
            target=ack_worker, args=(store.url, self.child_imports, session.id, acks)
        )
        child.start()
        acknowledged: list[int] = []
        try:
            while len(acknowledged) < 25:
                acknowledged.append(acks.get(timeout=60))
            assert child.pid is not None
            os.kill(child.pid, sigkill)
        finally:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()
        while True:  # acks the child sent before it died
            try:
                acknowledged.append(acks.get(timeout=0.5))
            except queue.Empty:
                break
        store.close()

        reopened = make_store()
        events = reopened.read_events(session.id)
        assert self.seqs(events) == list(range(1, len(events) + 1))
        assert set(acknowledged) <= {e.seq for e in events}
        assert [e.data["n"] for e in events[1:]] == list(range(len(events) - 1))
        assert reopened.get_session(session.id).version == len(events)
        (after,) = reopened.append(session.id, [NewEvent(type="user_message")])
        assert after.seq == len(events) + 1
