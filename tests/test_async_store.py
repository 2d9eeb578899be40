"""The async API beyond the conformance suite: opening, the operation list, threads, and
native PostgreSQL (on the event loop, cancellation while waiting for a lock)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentledger import AsyncSessionStore, NewEvent, open_async_store
from agentledger.errors import ConfigurationError, StoreError, StoreUnavailableError
from agentledger.stores.aio import ThreadedAsyncStore
from agentledger.stores.base import SessionStore
from agentledger.stores.memory import MemoryStore


def msg(text: str = "hi") -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": text})


def test_every_store_operation_has_its_declared_async_form() -> None:
    """A new `SessionStore` operation needs its line in `AsyncSessionStore` (untyped
    delegation works without it, but the typed form is the API)."""
    operations = {
        name
        for name, value in vars(SessionStore).items()
        if inspect.isfunction(value) and not name.startswith("_") and name != "close"
    }
    declared = {
        name
        for name, value in vars(AsyncSessionStore).items()
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
    }
    assert operations <= declared, f"declare in AsyncSessionStore: {sorted(operations - declared)}"
    for name in operations:
        sync = inspect.signature(getattr(SessionStore, name))
        found = inspect.signature(getattr(AsyncSessionStore, name))
        if inspect.isasyncgenfunction(getattr(AsyncSessionStore, name)):  # an iterator's
            sync, found = sync.replace(return_annotation=None), found.replace(return_annotation=None)
        assert found == sync, name
        assert f"SessionStore.{name}" in (getattr(AsyncSessionStore, name).__doc__ or "")


def test_open_by_await_and_by_async_with(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"

    async def main() -> tuple[int, int]:
        store = await open_async_store(url)
        assert isinstance(store, ThreadedAsyncStore)
        session = await store.create_session(app_name="a", user_id="u")
        await store.append(session.id, [msg(), msg()])
        await store.aclose()
        await store.aclose()  # twice is fine
        with pytest.raises(StoreUnavailableError):
            await store.get_session(session.id)
        async with open_async_store(url) as again:
            version = (await again.get_session(session.id)).version
            schema = await again.schema_version()  # beyond the protocol, untyped
        return version, schema

    version, schema = asyncio.run(main())
    assert version == 3 and schema >= 1


@pytest.mark.parametrize("bad", [0, -1, "x", True, 1.5])
def test_a_bad_max_threads_is_refused_before_anything_opens(tmp_path: Path, bad: Any) -> None:
    async def main() -> None:
        await open_async_store(f"sqlite:///{tmp_path}/a.db", max_threads=bad)

    with pytest.raises(ConfigurationError, match="max_threads"):
        asyncio.run(main())
    assert not (tmp_path / "a.db").exists()


def test_an_unknown_option_is_refused_by_name() -> None:
    async def main() -> None:
        await open_async_store("memory://", colour="blue")

    with pytest.raises(ConfigurationError, match="colour"):
        asyncio.run(main())


def test_a_missing_operation_is_an_attribute_error() -> None:
    async def main() -> None:
        async with open_async_store("memory://") as store:
            with pytest.raises(AttributeError):
                store.no_such_operation  # noqa: B018
            with pytest.raises(AttributeError):
                store._sessions  # noqa: B018 - private attributes are not delegated
            assert store.max_event_bytes == 1_048_576 and store.url == "memory://"
            assert callable(store.clock)

    asyncio.run(main())


def test_threads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    get_session = MemoryStore.get_session

    def slow_get_session(self: MemoryStore, session_id: str) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return get_session(self, session_id)

    monkeypatch.setattr(MemoryStore, "get_session", slow_get_session)

    async def main() -> None:
        async with open_async_store("memory://", max_threads=3) as store:
            sid = (await store.create_session(app_name="a", user_id="u")).id
            await asyncio.gather(*(store.get_session(sid) for _ in range(20)))

    asyncio.run(main())
    assert most == 3


def test_context_variables_go_with_the_call_to_its_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []
    get_session = MemoryStore.get_session

    def spy(self: MemoryStore, session_id: str) -> Any:
        seen.append(var.get())
        return get_session(self, session_id)

    monkeypatch.setattr(MemoryStore, "get_session", spy)

    async def main() -> None:
        async with open_async_store("memory://") as store:
            sid = (await store.create_session(app_name="a", user_id="u")).id
            var.set("request-7")
            await store.get_session(sid)

    asyncio.run(main())
    assert seen == ["unset", "request-7"]  # create_session reads back, before the set


# -- PostgreSQL: native ---------------------------------------------------------------------


def test_postgres_runs_on_the_event_loop_thread(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextvars

    from agentledger.stores import postgres
    from agentledger.stores.postgres_async import AsyncPostgresStore

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []
    threads: list[tuple[str, int]] = []
    load_session = postgres._PgTransaction.load_session
    fetch_rows = postgres.PostgresStore._fetch_event_rows

    def spy_load(self: Any, session_id: str) -> Any:
        threads.append(("load_session", threading.get_ident()))
        seen.append(var.get())
        return load_session(self, session_id)

    def spy_fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(("fetch_event_rows", threading.get_ident()))
        return fetch_rows(self, *args, **kwargs)

    monkeypatch.setattr(postgres._PgTransaction, "load_session", spy_load)
    monkeypatch.setattr(postgres.PostgresStore, "_fetch_event_rows", spy_fetch)

    async def main() -> int:
        async with open_async_store(postgres_url) as store:
            assert isinstance(store, AsyncPostgresStore)
            opened = threading.active_count()  # opening (the schema) used a worker thread
            var.set("request-7")  # seen by the store's code, as in a sync call
            sid = (await store.create_session(app_name="a", user_id="u")).id
            await asyncio.gather(*(store.append(sid, [msg(str(i))]) for i in range(10)))
            assert len(await store.read_events(sid)) == 11
            assert threading.active_count() == opened  # no thread started since
            return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert {name for name, _ in threads} == {"load_session", "fetch_event_rows"}
    assert {ident for _, ident in threads} == {loop_thread}
    assert set(seen) == {"request-7"}


def test_postgres_store_code_refuses_to_run_off_the_loop(postgres_url: str) -> None:
    async def main() -> None:
        async with open_async_store(postgres_url) as store:
            sid = (await store.create_session(app_name="a", user_id="u")).id
            bridged = store._sync  # the PostgresStore under it: usable only through await
            with pytest.raises(StoreError, match="outside its event loop"):
                await asyncio.to_thread(bridged.get_session, sid)
            assert (await store.get_session(sid)).version == 1

    asyncio.run(main())


def test_postgres_cancelled_while_waiting_for_the_row_lock_writes_nothing(
    postgres_url: str,
) -> None:
    import psycopg

    from agentledger import open_store

    with open_store(postgres_url) as sync_store:
        sid = sync_store.create_session(app_name="a", user_id="u").id
        schema = sync_store.schema  # type: ignore[attr-defined]
        conninfo = sync_store._conninfo  # type: ignore[attr-defined]

    async def main() -> None:
        async with open_async_store(postgres_url, pool_max_size=2) as store:
            with psycopg.connect(conninfo, autocommit=True) as blocker:
                blocker.execute("BEGIN")
                blocker.execute(
                    f'SELECT 1 FROM "{schema}".sessions WHERE id = %s FOR UPDATE', (sid,)
                )
                task = asyncio.create_task(store.append(sid, [msg("a"), msg("b")]))
                await asyncio.sleep(0.5)  # the append now waits for the row lock
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                blocker.execute("COMMIT")
            assert (await store.get_session(sid)).version == 1
            assert len(await store.read_events(sid)) == 1
            # Nothing left behind: both pooled connections are usable at once.
            await asyncio.gather(store.append(sid, [msg("c")]), store.append(sid, [msg("d")]))
            assert [e.seq for e in await store.read_events(sid)] == [1, 2, 3]

    asyncio.run(asyncio.wait_for(main(), timeout=60))
