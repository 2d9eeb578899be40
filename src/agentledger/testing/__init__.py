"""Testing helpers shipped with agentledger: the store conformance suite.

See `agentledger.testing.conformance` for how a store runs it. Importing this package needs
the test extra (`pip install 'agentledger[test]'`).
"""

try:
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the test extra
    from agentledger.errors import MissingDependencyError

    raise MissingDependencyError(exc.name or "pytest", "test") from exc

from agentledger.testing._async import AsyncStoreConformance, AsyncStoreFactory, SyncFacade
from agentledger.testing._base import StoreFactory, msg
from agentledger.testing._lifecycle import FakeClock
from agentledger.testing.conformance import StoreConformance

__all__ = [
    "AsyncStoreConformance",
    "AsyncStoreFactory",
    "FakeClock",
    "StoreConformance",
    "StoreFactory",
    "SyncFacade",
    "msg",
]
