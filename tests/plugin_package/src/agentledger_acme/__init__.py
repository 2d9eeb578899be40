"""A third-party plugin: stamps every user message, refuses the word "forbidden", and
counts each session's user messages in its own session state with a durable event handler.

Enabled by its entry point's name: `agentledger --plugin acme ...`. It writes what it sees
after each append to the file named by `$ACME_LOG`, so a test can check it ran.
"""

from __future__ import annotations

import json
import os
from typing import Any

from agentledger import Event, NewEvent, PluginRejectedError, Session, hookimpl
from agentledger.handlers import EventHandler
from agentledger.plugins import enhance, plugin_state, plugin_state_event


class MessageCounter(EventHandler):
    """Keeps `metadata["plugins"]["acme"]["messages"]`: the session's user messages."""

    handler_name = "acme"
    handled_event_types = ["user_message"]

    def handle_event(self, event: Event, session: Session) -> NewEvent:
        seen = plugin_state(session, "acme").get("messages", 0)
        return plugin_state_event("acme", {"messages": seen + 1, "last_seq": event.seq})


@hookimpl
def event_handlers() -> list[EventHandler]:
    return [MessageCounter()]


@hookimpl
def before_append(events: list[Any]) -> None:
    for i, event in enumerate(events):
        if "forbidden" in json.dumps(event.data):
            raise PluginRejectedError("acme refuses the word 'forbidden'")
        if event.type == "user_message":
            events[i] = enhance(event, "acme", {"stamped": True})


@hookimpl
def after_append(events: list[Any]) -> None:
    path = os.environ.get("ACME_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            for event in events:
                log.write(f"{event.session_id} {event.seq} {event.type}\n")
