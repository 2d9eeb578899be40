"""Run the shipped store conformance suite against every backend in `conftest.STORE_URLS`."""

from __future__ import annotations

import multiprocessing

from agentledger.testing import AsyncStoreConformance, StoreConformance


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
