"""Testing helpers shipped with agentledger: the store conformance suite.

See `agentledger.testing.conformance` for how a store runs it. Importing this package needs
the test extra (`pip install 'agentledger[test]'`).
"""

from agentledger.testing._base import StoreFactory, msg
from agentledger.testing.conformance import StoreConformance

__all__ = ["StoreConformance", "StoreFactory", "msg"]
