"""Fixtures and helpers shared by every part of the conformance suite."""

from __future__ import annotations

import multiprocessing
import signal
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from agentledger.core.events import Event, NewEvent
from agentledger.core.session import Session
from agentledger.stores.base import SessionStore, open_store

__all__ = ["ConformanceBase", "StoreFactory", "msg"]


class StoreFactory:
    """Open stores on one URL and close them all at the end of a test.

    Calling it opens a new store object on the same URL, so a persistent store is reopened
    (same data) and `memory://` gives a fresh, empty store. Keyword options override the
    URL's query options (`factory(max_event_bytes=1024)`).

    Args:
        url: The store URL, as `open_store` takes it; child processes reopen it by URL.
        **defaults: Options passed to every `open_store` call.
    """

    def __init__(self, url: str, **defaults: Any) -> None:
        self.url = url
        self.defaults = defaults
        self._opened: list[SessionStore] = []

    def open(self, **options: Any) -> SessionStore:
        """Open the store; override to build a store `open_store` cannot build."""
        return open_store(self.url, **{**self.defaults, **options})

    def __call__(self, **options: Any) -> SessionStore:
        store = self.open(**options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        """Close every store this factory opened (errors on close are the store's bug)."""
        opened, self._opened = self._opened, []
        for store in reversed(opened):
            store.close()


def msg(text: str = "hi", **fields: Any) -> NewEvent:
    """Return a plain `user_message` event; `fields` override `NewEvent` fields."""
    values: dict[str, Any] = {"type": "user_message", "author": "user", "data": {"text": text}}
    values.update(fields)
    return NewEvent(**values)


class ConformanceBase:
    """The fixtures and helpers every conformance mixin uses.

    Attributes:
        start_method: The `multiprocessing` start method for the multi-process checks.
        child_imports: Modules a child process imports before `open_store(url)`, for stores
            whose URL scheme is registered on import (`register_scheme`).
    """

    start_method: ClassVar[str] = "spawn"
    child_imports: ClassVar[tuple[str, ...]] = ()

    @pytest.fixture
    def make_store(self, store_url: str) -> Iterator[StoreFactory]:
        """A factory opening stores on `store_url` (a fixture the subclass provides)."""
        factory = StoreFactory(store_url)
        yield factory
        factory.close_all()

    @pytest.fixture
    def store(self, make_store: StoreFactory) -> SessionStore:
        """An open, empty store."""
        return make_store()

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def require_persistent(store: SessionStore) -> None:
        if not store.capabilities.persistent:
            pytest.skip(f"{store.url} does not declare the 'persistent' capability")

    @staticmethod
    def require_multi_process(store: SessionStore) -> None:
        if not store.capabilities.multi_process:
            pytest.skip(f"{store.url} does not declare the 'multi_process' capability")

    @staticmethod
    def require_injectable_clock(make_store: StoreFactory) -> None:
        """Skip unless the store takes `clock=` and `lifecycle=` options (probes a store)."""
        probe = make_store()
        if not probe.capabilities.injectable_clock:
            pytest.skip(
                f"{probe.url} does not declare the 'injectable_clock' capability: its clock "
                "and phases are its server's"
            )

    def mp_context(self) -> Any:
        """Return the `multiprocessing` context of `start_method` (every context has the same
        API; typeshed only gives `Process` to the concrete ones, hence `Any`)."""
        if self.start_method not in multiprocessing.get_all_start_methods():
            pytest.skip(f"multiprocessing start method {self.start_method!r} is not available")
        return multiprocessing.get_context(self.start_method)

    @staticmethod
    def require_sigkill() -> int:
        sigkill = getattr(signal, "SIGKILL", None)
        if sigkill is None:
            pytest.skip("this platform has no SIGKILL")
        return int(sigkill)

    @staticmethod
    def unique(prefix: str) -> str:
        """Return a name no other test uses (apps and users are shared across a store)."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    @staticmethod
    def record(store: SessionStore, session_id: str) -> tuple[Session, list[Event]]:
        """Return everything a reader can see of a session, to check it did not change."""
        return store.get_session(session_id), store.read_events(session_id)

    @staticmethod
    def seqs(events: list[Event]) -> list[int]:
        return [event.seq for event in events]

    @staticmethod
    def own_state(state: Mapping[str, Any]) -> dict[str, Any]:
        """Return a session state without the shared `app:` and `user:` keys."""
        return {k: v for k, v in state.items() if not k.startswith(("app:", "user:"))}
