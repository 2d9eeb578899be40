"""Fixtures shared by the tests: every store backend, opened by URL.

`store_url` is parametrized over `STORE_URLS`, so every test that uses `store`,
`make_store` or `store_url` (including the whole conformance suite) runs on every backend.
Adding a backend is one line in `STORE_URLS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentledger.stores.base import SessionStore
from agentledger.testing import StoreFactory

STORE_URLS: dict[str, Callable[[Path], str]] = {
    "memory": lambda tmp: "memory://",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/x.db",
    "sqlite-normal": lambda tmp: f"sqlite:///{tmp}/x.db?durability=normal",
}
"""Backend name -> the URL of a fresh, empty store in a test's `tmp_path`."""


@pytest.fixture(params=list(STORE_URLS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store; one parameter per backend."""
    return STORE_URLS[request.param](tmp_path)


@pytest.fixture
def make_store(store_url: str) -> Iterator[StoreFactory]:
    """Open (or reopen) the store at `store_url`; `make_store(max_event_bytes=1024)`."""
    factory = StoreFactory(store_url)
    yield factory
    factory.close_all()


@pytest.fixture
def store(make_store: StoreFactory) -> SessionStore:
    """An open, empty store, once per backend."""
    return make_store()
