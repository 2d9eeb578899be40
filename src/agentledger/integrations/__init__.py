"""Adapters that make agentledger the session backend of other agent frameworks."""
