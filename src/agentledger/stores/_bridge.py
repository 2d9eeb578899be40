"""Run sync code on an event loop, its waits done by awaiting: a greenlet bridge.

`run_bridged(fn, ...)` runs `fn` in a greenlet; wherever `fn` (however deep) calls
`await_only(awaitable)`, the greenlet switches back to the coroutine, which awaits the
awaitable on the event loop and switches back in with its result (or its exception). So
one body of sync logic (`PostgresStore`'s) does its I/O natively on the loop, without a
thread. SQLAlchemy's asyncio extension is built the same way.

`bridge_context(acm)` turns an async context manager into a sync one inside the bridge.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar

try:
    import greenlet  # type: ignore[import-untyped]  # no type hints shipped
except ImportError as exc:  # pragma: no cover - only without the postgres extra
    from agentledger.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "greenlet", "postgres") from exc

from agentledger.errors import StoreError

__all__ = ["await_only", "bridge_context", "run_bridged"]

_T = TypeVar("_T")


class _Bridged(greenlet.greenlet):  # type: ignore[misc]  # greenlet ships no type hints
    """A greenlet running sync code for `run_bridged`; `driver` awaits for it."""

    def __init__(self, fn: Callable[..., Any], driver: Any) -> None:
        super().__init__(fn, driver)
        self.driver = driver


def await_only(awaitable: Awaitable[_T]) -> _T:
    """Await `awaitable` on the event loop from sync code run by `run_bridged`.

    Raises:
        StoreError: Called outside `run_bridged` (from another thread, or from sync code
            the loop runs directly): the sync logic of an async store may run only there.
        Whatever the awaitable raises.
    """
    current = greenlet.getcurrent()
    if not isinstance(current, _Bridged):
        if hasattr(awaitable, "close"):
            awaitable.close()  # a coroutine never awaited: no warning
        raise StoreError(
            "an async store's operation ran outside its event loop; call it with await"
        )
    return current.driver.switch(awaitable)  # type: ignore[no-any-return]


async def run_bridged(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Run `fn(*args, **kwargs)`, awaiting here every awaitable it hands to `await_only`.

    An exception in an awaitable (a cancellation included) is raised inside `fn` at its
    `await_only`, so its `with` blocks and `except` clauses run as they would in sync code.

    Returns:
        What `fn` returns.

    Raises:
        Whatever `fn` raises.
    """
    bridged = _Bridged(fn, greenlet.getcurrent())
    bridged.gr_context = contextvars.copy_context()  # the caller's context variables
    result: Any = bridged.switch(*args, **kwargs)
    while not bridged.dead:
        try:
            value = await result
        except BaseException:  # into the sync code, cancellation included
            result = bridged.throw(*sys.exc_info())
        else:
            result = bridged.switch(value)
    return result  # type: ignore[no-any-return]


@contextmanager
def bridge_context(manager: AbstractAsyncContextManager[_T]) -> Iterator[_T]:
    """An async context manager used as a sync one, inside `run_bridged`."""
    value = await_only(manager.__aenter__())
    try:
        yield value
    except BaseException as exc:
        if not await_only(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        await_only(manager.__aexit__(None, None, None))
