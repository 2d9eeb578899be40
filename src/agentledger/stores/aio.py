"""The async API: `open_async_store(url)` and `AsyncSessionStore`.

An `AsyncSessionStore` has every operation of `SessionStore` as a coroutine, with the same
arguments, results and errors (the contract and its docs live on `SessionStore`):

    >>> async with open_async_store("sqlite:///agentledger.db") as store:
    ...     session = await store.create_session(app_name="demo", user_id="ada")
    ...     await store.append(session.id, [NewEvent(type="user_message", author="user")])

How each store runs:
    - `postgresql://`: natively on the event loop (`AsyncPostgresStore`): psycopg 3's async
      connection pool, no threads; the SQL and the logic are `PostgresStore`'s own.
    - `memory://`, `sqlite://`, `file://`, `http://` and any scheme registered with
      `register_scheme`: the sync store, each call run on a bounded pool of worker threads
      (`ThreadedAsyncStore`), so the event loop never waits on a disk or a socket.

Cancelling a coroutine that awaits an operation never leaves the operation half done:
a write is atomic in the store whichever way it ends. On a thread-backed store the call
runs to its end in its thread (all of it lands) and the caller gets `CancelledError`; on
PostgreSQL the transaction is rolled back unless its `COMMIT` already reached the server.

Adding an operation to the stores (say `fork_session`) gives it an async form thus:
    1. Declare it on `SessionStore` and implement it on the stores, as any operation.
    2. Add one line to `AsyncSessionStore`'s body:
       `fork_session = async_operation(SessionStore.fork_session)`. Type checkers then see
       `async def fork_session(<the protocol's parameters>) -> <its result>`, its docstring
       is the protocol's, and it runs on every async store: on worker threads for the
       thread-backed ones, natively for PostgreSQL as long as `PostgresStore`'s code for it
       borrows connections through `self._connection()`, `self._read()` or
       `self._transaction()` (never `psycopg.connect` or `self._pool` directly).
       `tests/test_async_store.py` fails until this line exists.
    3. Nothing else: `AsyncStoreConformance` runs the operation's conformance checks on the
       async API by itself. Until step 2, `await store.fork_session(...)` already works,
       untyped (`AsyncSessionStore.__getattr__`).
An operation returning an iterator (a stream of pages or lines) needs an async iterator
written by hand instead: its sync iterator would do its I/O outside the async machinery.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from agentledger.core.lifecycle import Lifecycle
from agentledger.errors import AgentLedgerError, ConfigurationError, StoreUnavailableError
from agentledger.stores.base import (
    Capabilities,
    SessionPage,
    SessionStore,
    _mask_exception,
    default_store_url,
    open_store,
    remember_secrets,
)

__all__ = [
    "DEFAULT_MAX_THREADS",
    "AsyncSessionStore",
    "ThreadedAsyncStore",
    "async_operation",
    "open_async_store",
]

DEFAULT_MAX_THREADS = 8
"""Worker threads a thread-backed async store runs calls on at most (`max_threads=`)."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


def async_operation(
    method: Callable[Concatenate[SessionStore, _P], _T],
) -> Callable[Concatenate[AsyncSessionStore, _P], Coroutine[Any, Any, _T]]:
    """Make the async form of a `SessionStore` operation, for `AsyncSessionStore`'s body.

    `append = async_operation(SessionStore.append)` gives `AsyncSessionStore` a method
    `async def append(self, <the same parameters>) -> list[Event]` that runs the store's own
    `append` (`AsyncSessionStore._call`). Type checkers see the sync signature, so the async
    form follows it when the sync one changes.

    Args:
        method: The operation as the `SessionStore` protocol declares it.

    Returns:
        A coroutine function taking the same arguments and returning the same result.
    """
    name = method.__name__

    async def operation(self: AsyncSessionStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return cast(_T, await self._call(name, args, kwargs))

    operation.__name__ = name
    operation.__qualname__ = f"AsyncSessionStore.{name}"
    operation.__doc__ = (
        f"The async form of `SessionStore.{name}`: same arguments, result and errors.\n\n"
        + inspect.cleandoc(method.__doc__ or "")
    )
    operation.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return operation


class AsyncSessionStore(ABC):
    """A store whose operations are coroutines: `SessionStore`'s, one for one.

    Open one with `open_async_store(url)`; close it with `await store.aclose()` or
    `async with`. Each operation takes the arguments of its `SessionStore` namesake and
    returns (or raises) what it does; see there for the contract. An operation a store has
    beyond the protocol (`PostgresStore.schema_version`, or one added to the stores before
    it is declared here) is reachable too, untyped: `await store.schema_version()`.

    A subclass implements `_call`, which runs one operation of the underlying sync store,
    and `aclose`.

    Attributes:
        url: The store URL.
        capabilities: What the store promises beyond the common contract.
        lifecycle: The phase rules appends are checked against.
        max_event_bytes: The largest event accepted, in bytes.
    """

    def __init__(self, sync: SessionStore) -> None:
        self._sync = sync

    # -- what the store is --------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._sync.url

    @property
    def capabilities(self) -> Capabilities:
        return self._sync.capabilities

    @property
    def lifecycle(self) -> Lifecycle:
        return self._sync.lifecycle

    @property
    def max_event_bytes(self) -> int:
        return self._sync.max_event_bytes

    @property
    def clock(self) -> Callable[[], datetime] | None:
        """The store's clock (UTC), or `None` when its clock is its server's (`http://`)."""
        return cast("Callable[[], datetime] | None", getattr(self._sync, "clock", None))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._sync!r}>"

    # -- the operations -----------------------------------------------------------------

    @abstractmethod
    async def _call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run the sync store's operation `name(*args, **kwargs)` and return its result."""

    create_session = async_operation(SessionStore.create_session)
    append = async_operation(SessionStore.append)
    get_session = async_operation(SessionStore.get_session)
    read_events = async_operation(SessionStore.read_events)
    list_sessions = async_operation(SessionStore.list_sessions)
    get_scoped_state = async_operation(SessionStore.get_scoped_state)
    update_scoped_state = async_operation(SessionStore.update_scoped_state)
    delete_session = async_operation(SessionStore.delete_session)
    verify_session = async_operation(SessionStore.verify_session)
    get_event = async_operation(SessionStore.get_event)
    fork_session = async_operation(SessionStore.fork_session)
    rewind = async_operation(SessionStore.rewind)
    read_feed = async_operation(SessionStore.read_feed)
    feed_position = async_operation(SessionStore.feed_position)
    erase_events = async_operation(SessionStore.erase_events)
    truncate_before = async_operation(SessionStore.truncate_before)
    compact = async_operation(SessionStore.compact)

    async def iter_sessions(
        self,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        agent_name: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        order: str = "updated_desc",
        page_size: int = 200,
    ) -> AsyncIterator[SessionPage]:
        """As `SessionStore.iter_sessions`, as an async iterator: `async for page in
        store.iter_sessions(...)`; each page is one awaited `list_sessions` call."""
        cursor: str | None = None
        while True:
            page = await self.list_sessions(
                app_name=app_name,
                user_id=user_id,
                agent_name=agent_name,
                status=status,
                phase=phase,
                updated_after=updated_after,
                updated_before=updated_before,
                limit=page_size,
                cursor=cursor,
                order=order,
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The async form of an operation the sync store has and this class does not
        declare (untyped); `AttributeError` for anything else."""
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._sync, name)
        if not inspect.ismethod(method):
            raise AttributeError(f"{type(self).__name__} has no operation {name!r}")

        async def operation(*args: Any, **kwargs: Any) -> Any:
            return await self._call(name, args, kwargs)

        operation.__name__ = name
        operation.__doc__ = method.__doc__
        return operation

    # -- closing ------------------------------------------------------------------------

    @abstractmethod
    async def aclose(self) -> None:
        """Wait for the calls in flight, then release connections, threads and file
        handles; the store is unusable afterwards. Closing twice does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ThreadedAsyncStore(AsyncSessionStore):
    """Any sync store made async: each call runs on a bounded pool of worker threads.

    Calls wait their turn when every thread is busy, so `max_threads` bounds the threads
    (and SQLite connections) however many coroutines call at once. A call's context
    variables go with it to its thread.

    Args:
        sync: The open sync store; `aclose` closes it.
        max_threads: Worker threads at most, at least 1.

    Raises:
        ConfigurationError: `max_threads` is not an int of at least 1.
    """

    def __init__(self, sync: SessionStore, *, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ConfigurationError(f"max_threads must be an int >= 1, not {max_threads!r}")
        super().__init__(sync)
        self._executor = ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix="agentledger-async"
        )
        self._closed = False

    async def _call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        method = getattr(self._sync, name)
        call = functools.partial(method, *args, **kwargs)
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        return await loop.run_in_executor(self._executor, context.run, call)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Calls in flight finish (a cancelled caller's write still lands whole) first.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        await asyncio.to_thread(self._sync.close)


# -- opening async stores by URL -------------------------------------------------------------


async def _open_postgres(url: str, options: dict[str, Any]) -> AsyncSessionStore:
    from agentledger.stores.postgres_async import AsyncPostgresStore

    return await AsyncPostgresStore.open(url, options)


_ASYNC_SCHEMES: dict[str, Callable[[str, dict[str, Any]], Awaitable[AsyncSessionStore]]] = {
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


async def _open(url: str | None, options: dict[str, Any]) -> AsyncSessionStore:
    url = url or default_store_url()
    max_threads = options.pop("max_threads", None)
    native = None
    if isinstance(url, str) and max_threads is None:
        try:
            native = _ASYNC_SCHEMES.get(urlsplit(url).scheme)
        except ValueError:
            pass  # open_store names the bad URL
    if native is not None:
        remember_secrets(url)
        # As open_store does: the URL's query options, overridden by keyword options.
        merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
        merged.update(options)
        try:
            return await native(url, merged)
        except AgentLedgerError as exc:
            _mask_exception(exc)
            raise
    if max_threads is None:
        max_threads = DEFAULT_MAX_THREADS
    elif isinstance(max_threads, str):
        try:
            max_threads = int(max_threads)
        except ValueError:
            pass  # refused below, by name
    # Checked before the store is opened, so a bad value leaves nothing open.
    if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
        raise ConfigurationError(f"max_threads must be an int >= 1, not {max_threads!r}")
    sync = await asyncio.to_thread(functools.partial(open_store, url, **options))
    return ThreadedAsyncStore(sync, max_threads=max_threads)


class _Opening:
    """What `open_async_store` returns: await it, or use it with `async with`."""

    def __init__(self, url: str | None, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._store: AsyncSessionStore | None = None

    def __await__(self) -> Generator[Any, None, AsyncSessionStore]:
        return _open(self._url, dict(self._options)).__await__()

    async def __aenter__(self) -> AsyncSessionStore:
        self._store = await _open(self._url, dict(self._options))
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.aclose()


def open_async_store(url: str | None = None, **options: Any) -> _Opening:
    """Open a store by URL for use from async code.

    Args:
        url: As `open_store` takes it (`None`: `default_store_url()`).
        **options: As `open_store` takes them, plus `max_threads` (an int, default 8):
            the worker threads of a thread-backed store (every scheme but `postgresql://`;
            given for `postgresql://`, that store runs on threads too). On
            `postgresql://`, `pool_min_size`, `pool_max_size` and `pool_timeout` size the
            async connection pool.

    Returns:
        An awaitable giving the open `AsyncSessionStore` (`store = await
        open_async_store(url)`, then `await store.aclose()`), which is also an async
        context manager that closes it (`async with open_async_store(url) as store:`).

    Raises:
        ConfigurationError, MissingDependencyError, StoreNotFoundError,
        StoreUnavailableError, SchemaVersionError: As `open_store`, when awaited;
        `ConfigurationError` also for a bad `max_threads`.

    Example:
        >>> import asyncio
        >>> async def main() -> None:
        ...     async with open_async_store("memory://") as store:
        ...         session = await store.create_session(app_name="demo", user_id="ada")
        >>> asyncio.run(main())
    """
    return _Opening(url, options)
