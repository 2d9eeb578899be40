"""`python -m agentledger.cli`: the same as the `agentledger` console script."""

from agentledger.cli import main

main()
