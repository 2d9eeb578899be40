"""Agents for the replay tests, importable as `replay_agents:NAME` by `--agent`."""

from __future__ import annotations

import dataclasses
from typing import Any

from agentledger.demo import add_reminder, build_reminders_agent
from agentledger.runner import Agent, Tool, ToolContext


def shouting_add_reminder(reminder: str, tool_context: ToolContext) -> dict[str, Any]:
    """Add a reminder (this version changed: it stores the reminder in capitals)."""
    return add_reminder(reminder.upper(), tool_context)


def changed_reminders_agent() -> Agent:
    """The demo's reminders agent whose add_reminder tool was changed."""
    agent = build_reminders_agent()
    tools = [
        Tool.from_function(shouting_add_reminder, name="add_reminder")
        if isinstance(t, Tool) and t.name == "add_reminder" else t
        for t in agent.tools
    ]
    return dataclasses.replace(agent, tools=tools)
