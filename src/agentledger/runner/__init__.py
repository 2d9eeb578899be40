"""Run agent turns inside sessions: agents, tools, models and the runner."""

from agentledger.runner.context import ContextPolicy
from agentledger.runner.model_spec import resolve_model
from agentledger.runner.models import (
    Message,
    Model,
    ModelResponse,
    OfflineModel,
    Rule,
    StreamingModel,
    ToolCall,
    Usage,
)
from agentledger.runner.models_openai import OpenAIChatModel
from agentledger.runner.runner import Agent, Runner, TextDelta, final_output
from agentledger.runner.tools import State, Tool, ToolContext, tool

__all__ = [
    "Agent",
    "ContextPolicy",
    "Message",
    "Model",
    "ModelResponse",
    "OfflineModel",
    "OpenAIChatModel",
    "Rule",
    "Runner",
    "State",
    "StreamingModel",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolContext",
    "Usage",
    "final_output",
    "resolve_model",
    "tool",
]
