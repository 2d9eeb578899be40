"""The demo: a reminders agent whose memory follows the user across sessions.

Its tools keep the reminders and the user's name under `user:` keys, so every session of
the same user in the demo app sees them. It runs on the offline model: no key, no network.
"""

from __future__ import annotations

from typing import Any

from agentledger.core.session import Session
from agentledger.manager import continue_or_create_session as _continue_or_create
from agentledger.runner.models import OfflineModel, Rule
from agentledger.runner.runner import Agent
from agentledger.runner.tools import ToolContext
from agentledger.stores.base import SessionStore

__all__ = [
    "DEMO_APP",
    "DEMO_SCRIPT",
    "DEMO_SCRIPT_CONTINUED",
    "DEMO_USER",
    "build_reminders_agent",
    "continue_or_create_session",
]

DEMO_APP = "reminders"
DEMO_USER = "demo-user"
DEMO_SCRIPT = (
    "Show my reminders",
    "My name is Ada",
    "Remind me to call the dentist",
    "Remind me to water the plants",
    "Show my reminders",
)
"""The scripted conversation of `agentledger demo` in a new session."""

DEMO_SCRIPT_CONTINUED = (
    "Show my reminders",
    "Delete reminder 1",
    "Remind me to call the dentist",
    "Show my reminders",
)
"""The script in a continued session: it starts from the reminders stored by earlier runs."""

REMINDERS = "user:reminders"
USER_NAME = "user:name"


def _reminders(tool_context: ToolContext) -> list[str]:
    value = tool_context.state.get(REMINDERS, [])
    return [str(r) for r in value] if isinstance(value, list) else []


def _count(n: int) -> str:
    return f"{n} reminder" if n == 1 else f"{n} reminders"


def add_reminder(reminder: str, tool_context: ToolContext) -> dict[str, Any]:
    """Add a reminder to the user's list."""
    reminders = _reminders(tool_context)
    reminders.append(reminder)
    tool_context.state[REMINDERS] = reminders
    return {
        "action": "add_reminder",
        "reminder": reminder,
        "message": f"Added reminder: {reminder}. You now have {_count(len(reminders))}.",
    }


def view_reminders(tool_context: ToolContext) -> dict[str, Any]:
    """List the user's reminders, numbered from 1."""
    reminders = _reminders(tool_context)
    name = tool_context.state.get(USER_NAME)
    who = f"{name}, you" if name else "You"
    if not reminders:
        return {"action": "view_reminders", "reminders": [], "message": f"{who} have no reminders."}
    listed = "; ".join(f"{i}. {r}" for i, r in enumerate(reminders, 1))
    return {
        "action": "view_reminders",
        "reminders": reminders,
        "message": f"{who} have {_count(len(reminders))}: {listed}.",
    }


def _out_of_range(action: str, index: int, reminders: list[str]) -> dict[str, Any] | None:
    if 1 <= index <= len(reminders):
        return None
    return {
        "action": action,
        "status": "error",
        "message": f"There is no reminder {index}; you have {_count(len(reminders))}.",
    }


def update_reminder(index: int, updated_text: str, tool_context: ToolContext) -> dict[str, Any]:
    """Change the text of a reminder, by its number in the list (from 1)."""
    reminders = _reminders(tool_context)
    error = _out_of_range("update_reminder", index, reminders)
    if error:
        return error
    old = reminders[index - 1]
    reminders[index - 1] = updated_text
    tool_context.state[REMINDERS] = reminders
    return {
        "action": "update_reminder",
        "index": index,
        "message": f"Updated reminder {index} from '{old}' to '{updated_text}'.",
    }


def delete_reminder(index: int, tool_context: ToolContext) -> dict[str, Any]:
    """Delete a reminder, by its number in the list (from 1)."""
    reminders = _reminders(tool_context)
    error = _out_of_range("delete_reminder", index, reminders)
    if error:
        return error
    removed = reminders.pop(index - 1)
    tool_context.state[REMINDERS] = reminders
    return {
        "action": "delete_reminder",
        "index": index,
        "message": f"Deleted reminder {index}: {removed}. You now have {_count(len(reminders))}.",
    }


def update_user_name(name: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember the user's name."""
    old = tool_context.state.get(USER_NAME)
    tool_context.state[USER_NAME] = name
    if old == name:
        message = f"I already know you as {name}."
    elif old:
        message = f"Updated your name from {old} to {name}."
    else:
        message = f"Nice to meet you, {name}."
    return {"action": "update_user_name", "name": name, "message": message}


_END = r"\s*[.!?]*\s*$"
RULES = (
    Rule(r"\b(?:update|change|edit)\s+(?:reminder\s+)?#?(?P<index>\d+)\s+to\s+(?P<updated_text>.+?)" + _END,
         "update_reminder"),
    Rule(r"\b(?:delete|remove)\s+(?:reminder\s+)?#?(?P<index>\d+)\b", "delete_reminder"),
    Rule(r"\b(?:remind me to|add (?:a )?reminder(?: to)?:?)\s+(?P<reminder>.+?)" + _END, "add_reminder"),
    Rule(r"\b(?:show|view|list|see|what are)\b.*\breminders?\b|\bmy reminders\b", "view_reminders"),
    Rule(r"\b(?:my name is|call me)\s+(?P<name>.+?)" + _END, "update_user_name"),
)
"""How the offline model maps the user's words onto the tools."""


def build_reminders_agent() -> Agent:
    """Return the demo's reminders agent on the offline model.

    Returns:
        An `Agent` named `"reminders"` with the tools `add_reminder`, `view_reminders`,
        `update_reminder`, `delete_reminder` (1-based indexes) and `update_user_name`; its
        state lives under `user:reminders` and `user:name`.
    """
    return Agent(
        name="reminders",
        instructions=(
            "You are a friendly reminders assistant. Use the tools to add, view, update and "
            "delete the user's reminders, and to remember their name."
        ),
        model=OfflineModel(RULES, name="offline-rules"),
        tools=[add_reminder, view_reminders, update_reminder, delete_reminder, update_user_name],
    )


def continue_or_create_session(
    store: SessionStore,
    *,
    user_id: str = DEMO_USER,
    app_name: str = DEMO_APP,
    agent_name: str = "reminders",
    title: str | None = "Reminders demo",
) -> tuple[Session, bool]:
    """Continue the user's most recent active session of the demo agent, or create one.

    `agentledger.manager.continue_or_create_session` with the demo's defaults; its
    docstring gives the rule (race-free: parallel first runs make one session).

    Returns:
        `(session, created)`: `created` is true when a new session was made.
    """
    return _continue_or_create(
        store, app_name=app_name, user_id=user_id, agent_name=agent_name, title=title
    )
