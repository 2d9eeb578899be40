"""Run the shipped store conformance suite against every backend in `conftest.STORE_URLS`."""

from __future__ import annotations

from agentledger.testing import StoreConformance


class TestStoreConformance(StoreConformance):
    """Every check of `agentledger.testing`, once per `store_url` parameter (conftest)."""
