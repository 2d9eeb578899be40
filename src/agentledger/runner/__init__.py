"""Run agent turns inside sessions: agents, tools, models and the runner."""

from agentledger.runner.models import Message, Model, ModelResponse, OfflineModel, Rule, ToolCall
from agentledger.runner.runner import Agent, Runner, final_output
from agentledger.runner.tools import State, Tool, ToolContext, tool

__all__ = [
    "Agent",
    "Message",
    "Model",
    "ModelResponse",
    "OfflineModel",
    "Rule",
    "Runner",
    "State",
    "Tool",
    "ToolCall",
    "ToolContext",
    "final_output",
    "tool",
]
