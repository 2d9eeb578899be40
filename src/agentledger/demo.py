"""The demo: a reminders agent whose memory follows the user across sessions.

Its tools keep the reminders and the user's name under `user:` keys, so every session of
the same user in the demo app sees them. Reminders change through state operations
applied at commit (`tool_context.state.append`, `remove_item`, `patch`), so concurrent
turns of one user never lose a reminder nor retry, and each event stores only its change.
It runs on the offline model: no key, no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from agentledger.core.session import Session
from agentledger.core.state_ops import key_path
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


PAGE = 50
"""How many reminders `view_reminders` lists at once."""


def _reminders(tool_context: ToolContext) -> list[Any]:
    # peek: what the tools change is applied at commit, checked there (`test`), so this
    # read needs no check of its own (which would make concurrent turns retry).
    value = tool_context.state.peek(REMINDERS, [])
    return value if isinstance(value, list) else []


def _count(n: int) -> str:
    return f"{n} reminder" if n == 1 else f"{n} reminders"


ReminderNumber = Annotated[
    int, Field(description="The reminder's number in the list, counting from 1.", ge=1)
]


def add_reminder(
    reminder: Annotated[
        str, Field(description="What to remind the user of, e.g. 'call the dentist'.")
    ],
    tool_context: ToolContext,
) -> dict[str, Any]:
    """Add a reminder to the user's list."""
    # Applied at commit to the list as it is then: concurrent adds are all kept.
    tool_context.state.append(REMINDERS, reminder)
    count = len(_reminders(tool_context))
    return {
        "action": "add_reminder",
        "reminder": reminder,
        "message": f"Added reminder: {reminder}. You now have {_count(count)}.",
    }


def view_reminders(tool_context: ToolContext, start: int = 1) -> dict[str, Any]:
    """List the user's reminders, numbered from 1, up to 50 at a time from number `start`.

    Call it before answering about the list, and to find a reminder's number.
    """
    reminders = [str(r) for r in _reminders(tool_context)]
    name = tool_context.state.get(USER_NAME)
    who = f"{name}, you" if name else "You"
    if not reminders:
        return {"action": "view_reminders", "reminders": [], "message": f"{who} have no reminders."}
    first = min(max(start, 1), len(reminders))
    shown = reminders[first - 1 : first - 1 + PAGE]
    listed = "; ".join(f"{i}. {r}" for i, r in enumerate(shown, first))
    if len(shown) == len(reminders):
        message = f"{who} have {_count(len(reminders))}: {listed}."
    else:
        last = first + len(shown) - 1
        message = f"{who} have {_count(len(reminders))}; {first} to {last}: {listed}."
        if last < len(reminders):
            message += f" Say 'show reminders from {last + 1}' for more."
    return {
        "action": "view_reminders",
        "start": first,
        "total": len(reminders),
        "reminders": shown,
        "message": message,
    }


def _out_of_range(action: str, index: int, reminders: list[str]) -> dict[str, Any] | None:
    if 1 <= index <= len(reminders):
        return None
    return {
        "action": action,
        "status": "error",
        "message": f"There is no reminder {index}; you have {_count(len(reminders))}.",
    }


def update_reminder(
    index: ReminderNumber,
    updated_text: Annotated[str, Field(description="The reminder's new text.")],
    tool_context: ToolContext,
) -> dict[str, Any]:
    """Change the text of a reminder, by its number in the list (from 1)."""
    reminders = _reminders(tool_context)
    error = _out_of_range("update_reminder", index, reminders)
    if error:
        return error
    old = reminders[index - 1]
    path = key_path(REMINDERS, str(index - 1))
    # `test` first: if a concurrent turn moved another reminder to this place, the change
    # is refused at commit and the tool runs again on the fresh list.
    tool_context.state.patch(
        [
            {"op": "test", "path": path, "value": old},
            {"op": "replace", "path": path, "value": updated_text},
        ]
    )
    return {
        "action": "update_reminder",
        "index": index,
        "message": f"Updated reminder {index} from '{old}' to '{updated_text}'.",
    }


def delete_reminder(index: ReminderNumber, tool_context: ToolContext) -> dict[str, Any]:
    """Delete a reminder, by its number in the list (from 1); also when it is done."""
    reminders = _reminders(tool_context)
    error = _out_of_range("delete_reminder", index, reminders)
    if error:
        return error
    removed = reminders.pop(index - 1)
    # With `expected`, a concurrent change that moved another reminder here makes the
    # tool run again on the fresh list rather than delete the wrong one.
    tool_context.state.remove_item(REMINDERS, index - 1, expected=removed)
    return {
        "action": "delete_reminder",
        "index": index,
        "message": f"Deleted reminder {index}: {removed}. You now have {_count(len(reminders))}.",
    }


def update_user_name(
    name: Annotated[str, Field(description="The name the user gave, e.g. 'Ada'.")],
    tool_context: ToolContext,
) -> dict[str, Any]:
    """Remember the user's name (whenever they tell you their name)."""
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
    Rule(r"\b(?:show|view|list|see|what are)\b.*\breminders?\b(?:.*?\bfrom\s+#?(?P<start>\d+))?"
         r"|\bmy reminders\b", "view_reminders"),
    Rule(r"\b(?:my name is|call me)\s+(?P<name>.+?)" + _END, "update_user_name"),
)
"""How the offline model maps the user's words onto the tools."""


def reminders_instructions(state: Mapping[str, Any]) -> str:
    """The reminders agent's system prompt for a session whose state is `state`: what it
    can do, how to use its tools, and what it remembers (the user's name, the reminders)."""
    name = state.get(USER_NAME)
    reminders = state.get(REMINDERS)
    listed = (
        "; ".join(f"{i}. {r}" for i, r in enumerate(reminders, 1))
        if isinstance(reminders, list) and reminders else "none"
    )
    return (
        "You are a friendly reminders assistant with a memory that lasts across "
        "conversations.\n"
        "- When the user asks to be reminded of something, call add_reminder with just the "
        "thing to remember (\"remind me to buy milk\" -> reminder \"buy milk\").\n"
        "- When they ask what their reminders are, call view_reminders and list them, "
        "numbered.\n"
        "- To change or remove a reminder (also when they say it is done), use its number "
        "from the list with update_reminder or delete_reminder; call view_reminders first "
        "if you are not sure of the number.\n"
        "- When they tell you their name, call update_user_name, and use their name when "
        "you greet them.\n"
        "- After a tool, answer in one or two short sentences, saying what changed and how "
        "many reminders they now have.\n"
        f"What you remember: the user's name is {name or 'not known yet'}; "
        f"their reminders: {listed}."
    )


def build_reminders_agent() -> Agent:
    """Return the demo's reminders agent on the offline model.

    Its instructions (`reminders_instructions`) and tool descriptions are written for a
    real model too: give it one with `dataclasses.replace(agent, model=...)` or the CLI's
    `--model`.

    Returns:
        An `Agent` named `"reminders"` with the tools `add_reminder`, `view_reminders`
        (50 at a time), `update_reminder`, `delete_reminder` (1-based indexes) and
        `update_user_name`; its state lives under `user:reminders` and `user:name`.
    """
    return Agent(
        name="reminders",
        instructions=reminders_instructions,
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
