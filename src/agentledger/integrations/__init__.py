"""Adapters that let agent frameworks keep their own API and store sessions in agentledger."""
