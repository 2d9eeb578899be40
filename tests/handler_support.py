"""An event handler for the handler tests, and a worker process that runs it (killed at
random points by the crash test): `python handler_support.py STORE_URL`."""

from __future__ import annotations

import sys

from agentledger import Event, NewEvent, Session, open_store
from agentledger.handlers import EventHandler, HandlerRunner


class Echo(EventHandler):
    """Answers every user message with a `plugin.echo` event (two for "double")."""

    handler_name = "echo"
    handled_event_types = ["user_message"]

    def handle_event(self, event: Event, session: Session) -> list[NewEvent]:
        text = event.data.get("text", "")
        echo = NewEvent(type="plugin.echo", data={"echo": text})
        return [echo, echo] if text == "double" else [echo]


def main(url: str) -> None:
    with open_store(url) as store:
        runner = HandlerRunner(store, [Echo()], batch=3)
        print("ready", flush=True)
        while True:
            if runner.run_once() == 0:
                return


if __name__ == "__main__":
    main(sys.argv[1])
