"""`AsyncPostgresStore`: the `postgresql://` store, natively async.

Every operation runs `PostgresStore`'s own code (its SQL, its transactions, its error
translation, and the contract `BaseStore` implements once), unchanged, on the event loop:
the code runs in a greenlet (`agentledger.stores._bridge`), and each time it waits on the
server (a connection from the pool, a query, a pipeline sync, a commit) the wait is an
`await` on psycopg 3's async connection (`psycopg_pool.AsyncConnectionPool`). No thread
is involved and nothing is re-implemented: an operation added to `PostgresStore` is async
here as soon as it borrows its connections through `PostgresStore._connection` or
`PostgresStore._read` (as every operation does). Only opening the store (creating or
migrating its schema) runs once on a worker thread.

Options are `PostgresStore`'s (see `agentledger.stores.postgres`); `pool_min_size`,
`pool_max_size` and `pool_timeout` size the async pool. The pool checks a connection
before handing it out as the sync store's does (a connection the server closed is replaced,
without a round trip); a read whose connection dies in flight is retried once.

Cancellation: a cancelled call rolls its transaction back (the pool discards or resets the
connection) unless the `COMMIT` already reached the server, in which case it is committed
whole: an append is all or nothing either way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

try:
    import psycopg
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError as exc:  # pragma: no cover - only without the postgres extra
    from agentledger.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "psycopg", "postgres") from exc

from agentledger.errors import StoreUnavailableError
from agentledger.stores._bridge import await_only, bridge_context, run_bridged
from agentledger.stores.aio import AsyncSessionStore
from agentledger.stores.base import display_url
from agentledger.stores.postgres import PostgresStore, _check_idle_connection

__all__ = ["AsyncPostgresStore"]

_AsyncPool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


def _bridged(attribute: Any) -> Any:
    """A coroutine method made sync inside the bridge; anything else as it is."""
    if not inspect.iscoroutinefunction(attribute):
        return attribute

    def call(*args: Any, **kwargs: Any) -> Any:
        return await_only(attribute(*args, **kwargs))

    return call


class _CursorBridge:
    """A psycopg `AsyncCursor` with the sync `Cursor`'s API, inside the bridge."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._cursor = cursor

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _CursorBridge:
        await_only(self._cursor.execute(query, params, **kwargs))
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        await_only(self._cursor.executemany(query, params_seq, **kwargs))

    def fetchone(self) -> Any:
        return await_only(self._cursor.fetchone())

    def fetchmany(self, size: int = 0) -> list[Any]:
        return await_only(self._cursor.fetchmany(size))

    def fetchall(self) -> list[Any]:
        return await_only(self._cursor.fetchall())

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row

    def __enter__(self) -> _CursorBridge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        await_only(self._cursor.close())

    def __getattr__(self, name: str) -> Any:
        return _bridged(getattr(self._cursor, name))


class _ConnectionBridge:
    """A psycopg `AsyncConnection` with the sync `Connection`'s API, inside the bridge."""

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        self._conn = conn

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _CursorBridge:
        return _CursorBridge(await_only(self._conn.execute(query, params, **kwargs)))

    def cursor(self, *args: Any, **kwargs: Any) -> _CursorBridge:
        return _CursorBridge(self._conn.cursor(*args, **kwargs))

    def pipeline(self) -> AbstractContextManager[Any]:
        return bridge_context(self._conn.pipeline())

    def transaction(self, *args: Any, **kwargs: Any) -> AbstractContextManager[Any]:
        return bridge_context(self._conn.transaction(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return _bridged(getattr(self._conn, name))


class _PoolBridge:
    """The async pool with the sync `ConnectionPool`'s API, inside the bridge."""

    def __init__(self, pool: _AsyncPool) -> None:
        self._pool = pool

    @property
    def max_size(self) -> int:
        return self._pool.max_size

    @contextmanager
    def connection(self) -> Iterator[_ConnectionBridge]:
        with bridge_context(self._pool.connection()) as conn:
            yield _ConnectionBridge(conn)

    def check(self) -> None:
        await_only(self._pool.check())


class _BridgedPostgresStore(PostgresStore):
    """`PostgresStore` borrowing its connections from an async pool through the bridge:
    its methods run only inside `run_bridged` (`AsyncPostgresStore._call`)."""

    _apool: _AsyncPool | None = None

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        # Never opened (no connection, no thread): the async pool serves every connection.
        return ConnectionPool(
            self._conninfo, min_size=0, max_size=self._pool_sizes[1], open=False
        )

    def _pool_here(self) -> ConnectionPool[psycopg.Connection[TupleRow]]:
        if self._apool is None:  # pragma: no cover - set before the store is handed out
            raise StoreUnavailableError(f"{self!r} is not open")
        # Duck-typed: what `_connection`, `_read` and `_check_pooled` use of a pool.
        return cast("ConnectionPool[psycopg.Connection[TupleRow]]", _PoolBridge(self._apool))


class AsyncPostgresStore(AsyncSessionStore):
    """The `postgresql://` store with coroutine operations, native on the event loop.

    Open it with `await open_async_store("postgresql://...")` (or `AsyncPostgresStore.open`).
    Each operation is `PostgresStore`'s, run on the loop (see the module docs).
    """

    def __init__(self, store: _BridgedPostgresStore, pool: _AsyncPool) -> None:
        super().__init__(store)
        self._store = store
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, url: str, options: Mapping[str, Any]) -> AsyncPostgresStore:
        """Open the store at `url` with `options` (as `open_store` passes them).

        Raises:
            As `PostgresStore.from_url`.
        """
        from agentledger.plugins.host import resolve_plugins

        from_url: Callable[..., PostgresStore] = _BridgedPostgresStore.from_url
        options = dict(options)
        # Plugins are loaded before the store is opened (as `open_store` does): a bad name
        # creates nothing.
        host = resolve_plugins(
            options.pop("plugins", None), inline_handlers=options.pop("inline_handlers", True)
        )
        # Creating or migrating the schema is sync (psycopg.connect): once, on a thread.
        store = cast(_BridgedPostgresStore, await asyncio.to_thread(from_url, url, options))
        store.use_plugins(host)

        async def check(conn: psycopg.AsyncConnection[Any]) -> None:
            _check_idle_connection(cast("psycopg.Connection[Any]", conn))

        min_size, max_size = store._pool_sizes
        pool: _AsyncPool = AsyncConnectionPool(
            store._conninfo,
            kwargs=store._connect_kwargs,
            min_size=min_size,
            max_size=max_size,
            timeout=store._pool_timeout,
            name=f"agentledger async {store._where}",
            check=check,
            open=False,
        )
        try:
            await pool.open()
        except psycopg.Error as exc:
            store.close()
            raise store._translate(exc) from exc
        store._apool = pool
        return cls(store, pool)

    async def _call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        return await run_bridged(getattr(self._store, name), *args, **kwargs)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._store.close()  # later calls raise StoreUnavailableError
        await self._pool.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {display_url(self.url)} schema={self._store.schema!r}>"
