"""`python -m agentledger`: the same as the `agentledger` console script."""

from agentledger.cli import main

main()
