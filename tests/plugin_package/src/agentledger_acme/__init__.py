"""A third-party plugin: stamps every user message and refuses the word "forbidden".

Enabled by its entry point's name: `agentledger --plugin acme ...`. It writes what it sees
after each append to the file named by `$ACME_LOG`, so a test can check it ran.
"""

from __future__ import annotations

import json
import os
from typing import Any

from agentledger import PluginRejectedError, hookimpl
from agentledger.plugins import enhance


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
