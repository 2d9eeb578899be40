"""Conformance: several processes writing to one store at once (`multi_process`).

Eight processes append 500 events each to one session, with and without `expected_version`;
every event is tagged with its writer and attempt number, and each writer reports back what
`append` returned and which attempts raised `ConcurrencyError`, so the parent checks that
every acknowledged append landed exactly once and every refused one left no trace.

The workers are module-level functions so that the `spawn` start method can import them in
the child; each child reopens the store by URL with `open_store(url)`.
"""

from __future__ import annotations

import importlib
import os
import queue
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from typing import Any, ClassVar

from agentledger.core.events import NewEvent
from agentledger.errors import ConcurrencyError
from agentledger.manager import continue_or_create_session, default_session_id
from agentledger.stores.base import SessionStore, open_store
from agentledger.testing._base import ConformanceBase

__all__ = [
    "AppendReport",
    "ProcessConformance",
    "append_worker",
    "continue_worker",
    "create_worker",
    "open_in_child",
    "run_processes",
]

PROCESSES = 8
APPENDS_PER_PROCESS = 500
PROCESS_TIMEOUT = 600.0
"""Seconds the parent waits for the writers before it kills them and fails."""


def open_in_child(url: str, imports: tuple[str, ...]) -> SessionStore:
    """Import `imports` (modules that register URL schemes), then `open_store(url)`."""
    for module in imports:
        importlib.import_module(module)
    return open_store(url)


@dataclass
class AppendReport:
    """What one writer process saw, sent back to the parent.

    Attributes:
        worker: The writer's number.
        attempts: `append` calls made (each tagged `n` = 0, 1, … in its event's data).
        seqs: The `seq` each successful `append` returned, in call order.
        conflicts: The attempt numbers whose `append` raised `ConcurrencyError`.
    """

    worker: int
    attempts: int = 0
    seqs: list[int] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)


def append_worker(
    url: str,
    imports: tuple[str, ...],
    barrier: Barrier,
    session_id: str,
    worker: int,
    count: int,
    use_expected_version: bool,
    results: Any = None,
) -> None:
    """Make `count` successful single-event appends to a session, then report.

    With `use_expected_version`, each attempt reads the session's version first and passes
    it; an attempt refused with `ConcurrencyError` is counted and retried as a new attempt
    (a new `n`). The `AppendReport` goes on the `results` queue, if given.

    Raises:
        AssertionError: A refused append's error does not carry the version it was given,
            or an accepted one did not land right after the version it was given.
    """
    store = open_in_child(url, imports)
    report = AppendReport(worker)
    try:
        barrier.wait(timeout=60)
        while len(report.seqs) < count:
            version = store.get_session(session_id).version if use_expected_version else None
            attempt = report.attempts
            report.attempts += 1
            event = NewEvent(
                type="user_message",
                author="user",
                data={"w": worker, "n": attempt, "v": version, "pid": os.getpid()},
            )
            try:
                stored = store.append(session_id, [event], expected_version=version)
            except ConcurrencyError as exc:
                if version is None:
                    raise
                if exc.expected_version != version or exc.actual_version <= version:
                    raise AssertionError(
                        f"ConcurrencyError says expected {exc.expected_version}, actual "
                        f"{exc.actual_version}; the append passed {version}"
                    ) from exc
                report.conflicts.append(attempt)
                continue
            if version is not None and stored[0].seq != version + 1:
                raise AssertionError(f"seq {stored[0].seq} after expected version {version}")
            report.seqs.append(stored[0].seq)
    finally:
        store.close()
    if results is not None:
        results.put(report)


def create_worker(
    url: str, imports: tuple[str, ...], barrier: Barrier, app_name: str, worker: int
) -> None:
    """Open the store (maybe creating it) at the same moment as others, then create a session."""
    barrier.wait(timeout=60)
    store = open_in_child(url, imports)
    try:
        store.create_session(app_name=app_name, user_id=f"user-{worker}")
    finally:
        store.close()


def continue_worker(
    url: str,
    imports: tuple[str, ...],
    barrier: Barrier,
    app_name: str,
    worker: int,
    results: Any = None,
) -> None:
    """At the same moment as the others, continue or create the one user's session of an
    agent (`continue_or_create_session`) and append one message to it, as a first
    `agentledger run` does; report `(worker, session id, created)` on `results`."""
    store = open_in_child(url, imports)
    try:
        barrier.wait(timeout=60)
        session, created = continue_or_create_session(
            store, app_name=app_name, user_id="new", agent_name="helper"
        )
        store.append(session.id, [NewEvent(type="user_message", author="user",
                                           data={"text": f"remind me to task {worker}"})])
    finally:
        store.close()
    if results is not None:
        results.put((worker, session.id, created))


def run_processes(
    ctx: Any,
    target: Any,
    args: list[tuple[Any, ...]],
    results: Any = None,
    timeout: float = PROCESS_TIMEOUT,
) -> list[Any]:
    """Start one process per `args` tuple, wait for all, and check they all exited with 0.

    Args:
        ctx: A `multiprocessing` context.
        target: A module-level function.
        args: One argument tuple per process.
        results: A queue of `ctx`, or `None`; when given, it is passed to `target` as one more
            argument and each process must put exactly one result on it.
        timeout: Seconds to wait for all of them.

    Returns:
        The results, in the order they arrived (empty without `results`).
    """
    extra = () if results is None else (results,)
    processes: list[BaseProcess] = [ctx.Process(target=target, args=(*a, *extra)) for a in args]
    for process in processes:
        process.start()
    collected: list[Any] = []
    try:
        # Drain the queue before joining: a child does not exit until its puts are read.
        while results is not None and len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=1.0))
            except queue.Empty:
                if all(p.exitcode is not None for p in processes):
                    break  # someone died without reporting; the exit codes say who
                continue
        for process in processes:
            process.join(timeout=timeout)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    codes = [p.exitcode for p in processes]
    assert codes == [0] * len(processes), f"worker exit codes: {codes}"
    return collected


class ProcessConformance(ConformanceBase):
    """Writers in several processes (`multi_process`).

    Attributes:
        processes: Writer processes in the concurrent-append checks.
        appends_per_process: Successful appends each of them makes.
    """

    processes: ClassVar[int] = PROCESSES
    appends_per_process: ClassVar[int] = APPENDS_PER_PROCESS

    def _concurrent_appends(self, store: SessionStore, *, use_expected_version: bool) -> None:
        self.require_multi_process(store)
        ctx = self.mp_context()
        workers, count = self.processes, self.appends_per_process
        session = store.create_session(app_name="demo", user_id="ada")
        barrier = ctx.Barrier(workers)
        args = [
            (store.url, self.child_imports, barrier, session.id, w, count, use_expected_version)
            for w in range(workers)
        ]
        reports: list[AppendReport] = run_processes(ctx, append_worker, args, ctx.Queue())
        assert sorted(r.worker for r in reports) == list(range(workers))

        total = workers * count
        events = store.read_events(session.id)
        assert self.seqs(events) == list(range(1, total + 2)), "seq is not 1..N without gaps"
        assert store.get_session(session.id).version == total + 1
        written = Counter((e.data["w"], e.data["n"]) for e in events[1:])
        duplicated = sorted(key for key, times in written.items() if times > 1)
        assert not duplicated, f"appends stored twice (worker, attempt): {duplicated[:10]}"
        by_seq = {e.seq: e for e in events}
        for report in reports:
            w = report.worker
            # No append silently dropped: each attempt either raised or returned.
            assert report.attempts == len(report.seqs) + len(report.conflicts)
            assert len(report.seqs) == count
            if not use_expected_version:
                assert report.conflicts == []
            # What returned is what is stored, at the seq it returned, in call order...
            assert report.seqs == sorted(report.seqs)
            assert [by_seq[s].data["w"] for s in report.seqs] == [w] * count
            landed = [by_seq[s].data["n"] for s in report.seqs]
            # ...and a refused attempt left nothing behind.
            refused = set(report.conflicts)
            assert landed == [n for n in range(report.attempts) if n not in refused]
            assert [e.data["n"] for e in events[1:] if e.data["w"] == w] == landed
        if use_expected_version:
            for event in events[1:]:  # each landed append was made against the version before it
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

    def test_parallel_first_turns_from_processes_make_one_session(
        self, store: SessionStore
    ) -> None:
        """Processes continuing a new user's session at once: one creates it, all use it;
        once it is terminated, the next race makes exactly one new session again."""
        self.require_multi_process(store)
        ctx = self.mp_context()
        app = self.unique("app")
        for number in (1, 2):
            barrier = ctx.Barrier(PROCESSES)
            args = [(store.url, self.child_imports, barrier, app, w) for w in range(PROCESSES)]
            reports = run_processes(ctx, continue_worker, args, ctx.Queue())
            assert sorted(w for w, _, _ in reports) == list(range(PROCESSES))
            assert len({sid for _, sid, _ in reports}) == 1, f"duplicate sessions: {reports}"
            assert sum(created for _, _, created in reports) == 1, reports
            assert len(store.list_sessions(app_name=app).sessions) == number
            expected = default_session_id(app, "new", "helper", number)
            assert reports[0][1] == expected
            texts = [e.data["text"] for e in store.read_events(expected, types=["user_message"])]
            assert sorted(texts) == sorted(f"remind me to task {w}" for w in range(PROCESSES))
            status = NewEvent(type="status_changed", data={"from": "active", "to": "terminated"})
            store.append(expected, [status])
        listed = store.list_sessions(app_name=app).sessions
        assert sorted(s.id for s in listed) == [
            default_session_id(app, "new", "helper", n) for n in (1, 2)
        ]
