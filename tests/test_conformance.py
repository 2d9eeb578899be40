"""Run the shipped store conformance suite against every backend in `conftest.STORE_URLS`."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import backend_url

from agentledger.testing import AsyncStoreConformance, StoreConformance

ASYNC_BACKENDS = ["memory", "sqlite", "postgresql"]
"""The backends the async suite runs on: `open_async_store` has two implementations, the
native one on PostgreSQL and one thread-backed wrapper for every other store (its checks are
the same on each of them, and each store's own code is checked by the sync suite)."""


class TestStoreConformance(StoreConformance):
    """Every check of `agentledger.testing`, once per `store_url` parameter (conftest).

    Child processes are forked where the platform can: the crash checks start 50 writers
    per store, and a forked child starts in milliseconds where a spawned one re-imports
    everything. Every child still opens its own store by URL.
    """

    start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class TestAsyncStoreConformance(AsyncStoreConformance):
    """Every check again, on `open_async_store(url)` through a sync facade (`SyncFacade`),
    plus the checks of concurrent and cancelled coroutines; once per `store_url`."""

    start_method = TestStoreConformance.start_method

    @pytest.fixture(params=ASYNC_BACKENDS)
    def store_url(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
        """A fresh, empty store's URL, once per backend of `ASYNC_BACKENDS`."""
        yield from backend_url(request.param, tmp_path)
