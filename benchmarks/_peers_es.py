"""The eventsourcing side of `bench_peers.py`: one aggregate whose events are the benchmark's.

A module of its own because eventsourcing resolves an event's class by its topic
(`module:qualname`) when it reads the event back, so the classes must live at a module's top
level; `_peers.py` imports this only when eventsourcing is installed.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event


class Conversation(Aggregate):
    """A session: created with its initial state, then one `Appended` event per benchmark
    event (data and state delta), its state folded from them as eventsourcing does."""

    @event("Created")
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
        self.count = 0

    @event("Appended")
    def record(self, text: str, lang: str, delta: dict[str, Any]) -> None:
        self.state.update(delta)
        self.count += 1
