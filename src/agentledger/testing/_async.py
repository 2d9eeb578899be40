"""The conformance suite run on the async API (`open_async_store`).

Nothing is copied: `AsyncStoreConformance` is `StoreConformance` with its `make_store`
fixture replaced by one that opens the store with `open_async_store` and hands the checks a
`SyncFacade`, a `SessionStore` whose every call runs the async store's coroutine on a
dedicated event loop thread. So every sync check (and every check added later) exercises
the async implementation. `AsyncChecks` adds what only async code can do: many coroutines
appending to one session at once, and appends cancelled while they wait.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import pytest

from agentledger.core.events import Event
from agentledger.errors import ConcurrencyError
from agentledger.stores.aio import AsyncSessionStore, open_async_store
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory, msg
from agentledger.testing._damage import Damage, damage_event
from agentledger.testing.conformance import StoreConformance

__all__ = ["AsyncChecks", "AsyncStoreConformance", "AsyncStoreFactory", "EventLoopThread", "SyncFacade"]

_T = TypeVar("_T")


class EventLoopThread:
    """An asyncio event loop running in a thread of its own, to run coroutines from sync
    code (any thread): `loop_thread.run(coro)` blocks until it is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="agentledger-test-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the loop; return its result or raise its exception."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        """Stop the loop and its thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


class SyncFacade:
    """A `SessionStore` made of an `AsyncSessionStore`: each call runs the coroutine of the
    same name on `loop_thread` and waits for it. Attributes that are not coroutines (`url`,
    `capabilities`, `clock`…) are the async store's.

    Args:
        async_store: The store, opened on `loop_thread`'s loop.
        loop_thread: The loop it runs on.
    """

    def __init__(self, async_store: AsyncSessionStore, loop_thread: EventLoopThread) -> None:
        self.async_store = async_store
        self.loop_thread = loop_thread

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.async_store, name)
        if inspect.isasyncgenfunction(attribute):  # an async iterator: iterated one by one

            def walk(*args: Any, **kwargs: Any) -> Iterator[Any]:
                pages = attribute(*args, **kwargs)
                while True:
                    try:
                        yield self.loop_thread.run(pages.__anext__())
                    except StopAsyncIteration:
                        return

            walk.__name__ = name
            return walk
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.loop_thread.run(attribute(*args, **kwargs))

        call.__name__ = name
        return call

    def close(self) -> None:
        self.loop_thread.run(self.async_store.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncFacade of {self.async_store!r}>"


class AsyncStoreFactory(StoreFactory):
    """A `StoreFactory` opening the store with `open_async_store`, seen through a
    `SyncFacade`; all of a test's stores share one event loop thread, stopped with them."""

    def __init__(self, url: str, **defaults: Any) -> None:
        super().__init__(url, **defaults)
        self.loop_thread = EventLoopThread()

    def open(self, **options: Any) -> SessionStore:
        async def opening() -> AsyncSessionStore:
            return await open_async_store(self.url, **{**self.defaults, **options})

        facade = SyncFacade(self.loop_thread.run(opening()), self.loop_thread)
        return cast(SessionStore, facade)

    def close_all(self) -> None:
        try:
            super().close_all()
        finally:
            self.loop_thread.stop()


def async_of(store: SessionStore) -> tuple[AsyncSessionStore, EventLoopThread]:
    """The async store behind a `SyncFacade`, and the loop it runs on."""
    if not isinstance(store, SyncFacade):
        pytest.skip(f"{store!r} is not an async store seen through a SyncFacade")
    return store.async_store, store.loop_thread


class AsyncChecks(ConformanceBase):
    """What only async callers do: many coroutines at once, and cancelled calls."""

    writers = 8
    appends_per_writer = 5

    def test_concurrent_coroutines_append_each_event_once(self, store: SessionStore) -> None:
        astore, loop = async_of(store)
        sid = store.create_session(app_name="app", user_id="u").id

        async def writer(w: int) -> None:
            for n in range(self.appends_per_writer):
                while True:
                    version = (await astore.get_session(sid)).version
                    try:
                        await astore.append(
                            sid, [msg(f"{w}/{n}", data={"w": w, "n": n})], expected_version=version
                        )
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(0)

        async def plain(i: int) -> list[Event]:
            return await astore.append(sid, [msg(data={"plain": i}), msg(data={"plain": i})])

        async def run() -> list[list[Event]]:
            results = await asyncio.gather(
                *(writer(w) for w in range(self.writers)), *(plain(i) for i in range(20))
            )
            return [r for r in results if r is not None]

        plain_results = loop.run(run())
        events = store.read_events(sid)
        total = 1 + self.writers * self.appends_per_writer + 2 * 20
        assert self.seqs(events) == list(range(1, total + 1))
        assert store.get_session(sid).version == total
        written = Counter((e.data.get("w"), e.data.get("n")) for e in events[1:] if "w" in e.data)
        assert written == Counter(
            {(w, n): 1 for w in range(self.writers) for n in range(self.appends_per_writer)}
        )
        plain_seen = Counter(e.data["plain"] for e in events if "plain" in e.data)
        assert plain_seen == Counter({i: 2 for i in range(20)})
        for batch in plain_results:  # each call's two events are adjacent, as it returned them
            assert [e.seq for e in batch] == [batch[0].seq, batch[0].seq + 1]
            assert events[batch[0].seq - 1].id == batch[0].id

    def test_a_cancelled_append_lands_whole_or_not_at_all(self, store: SessionStore) -> None:
        astore, loop = async_of(store)
        sid = store.create_session(app_name="app", user_id="u").id
        batches = 30

        def check(events: list[Event]) -> None:
            assert self.seqs(events) == list(range(1, len(events) + 1))
            by_batch: dict[int, list[int]] = {}
            for event in events[1:]:
                by_batch.setdefault(event.data["batch"], []).append(event.seq)
            for batch, seqs in by_batch.items():
                assert len(seqs) == 3, f"batch {batch} landed in part: seqs {seqs}"
                assert seqs == list(range(seqs[0], seqs[0] + 3)), f"batch {batch}: {seqs}"

        async def run() -> int:
            tasks = [
                asyncio.create_task(
                    astore.append(sid, [msg(data={"batch": b, "part": p}) for p in range(3)])
                )
                for b in range(batches)
            ]
            for i, task in enumerate(tasks):
                # Cancel at different points: before the call starts, while it waits for a
                # connection, a lock or a thread, and once it may have committed.
                for _ in range(i % 5):
                    await asyncio.sleep(0)
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, asyncio.CancelledError
                ):
                    raise outcome
            return sum(isinstance(o, asyncio.CancelledError) for o in outcomes)

        assert loop.run(run()) >= 1  # the first was cancelled before it could start
        check(store.read_events(sid))

        async def append_after() -> None:
            # The store still works: no lock or connection was left behind.
            for _ in range(50):
                version = (await astore.get_session(sid)).version
                try:
                    await asyncio.wait_for(
                        astore.append(sid, [msg(data={"batch": -1, "part": p}) for p in range(3)],
                                      expected_version=version),
                        timeout=60,
                    )
                    return
                except ConcurrencyError:  # a cancelled call still running in its thread
                    await asyncio.sleep(0.01)
            raise AssertionError("no append succeeded after the cancelled ones")

        loop.run(append_after())
        # A cancelled call on a thread-backed store may still land (whole) after that one:
        # wait until the ledger stops growing, then check everything once more.
        events = store.read_events(sid)
        for _ in range(200):
            time.sleep(0.02)
            again = store.read_events(sid)
            if len(again) == len(events) and store.get_session(sid).version == len(again):
                break
            events = again
        events = store.read_events(sid)
        check(events)
        assert store.get_session(sid).version == len(events)
        assert [e.data["part"] for e in events if e.data.get("batch") == -1] == [0, 1, 2]


class AsyncStoreConformance(StoreConformance, AsyncChecks):
    """The whole store contract on the async API: every check of `StoreConformance`, run
    through `open_async_store` (`AsyncStoreFactory`), plus `AsyncChecks`.

    The multi-process checks are skipped here: their writers are child processes, each
    with a sync store of its own, so they test the sync stores (`StoreConformance` runs
    them). Subclass it and provide a `store_url` fixture, as for `StoreConformance`.
    """

    @pytest.fixture
    def make_store(self, store_url: str) -> Iterator[StoreFactory]:
        """A factory opening async stores on `store_url`, seen through `SyncFacade`s."""
        factory = AsyncStoreFactory(store_url)
        yield factory
        factory.close_all()

    def mp_context(self) -> Any:
        pytest.skip(
            "the writers of the multi-process checks are child processes with sync stores "
            "of their own: StoreConformance runs them"
        )

    def damage_event(self, store: SessionStore, session_id: str, seq: int, how: Damage) -> bool:
        """Damage the storage of the sync store under the async one (see `damage_event`)."""
        if isinstance(store, SyncFacade):
            store = store.async_store._sync
        return damage_event(store, session_id, seq, how)

