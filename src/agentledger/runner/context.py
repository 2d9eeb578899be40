"""What a turn sends the model of the session's past: `ContextPolicy`.

The ledger always keeps everything; the policy only bounds the history rebuilt from it for
the model: every turn, the last N turns, or the newest turns that fit a token budget. A
turn is a `user_message` and everything that followed it, so a cut never separates a tool
call from its result. Only the events in effect are read: a turn undone by
`SessionStore.rewind` is never sent to the model again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from agentledger.core.events import Event, EventType
from agentledger.errors import ConfigurationError
from agentledger.stores.base import SessionStore

__all__ = ["CONVERSATION_TYPES", "ContextPolicy"]

CONVERSATION_TYPES = (
    EventType.USER_MESSAGE.value,
    EventType.AGENT_MESSAGE.value,
    EventType.TOOL_CALL.value,
    EventType.TOOL_RESULT.value,
    EventType.FINAL_OUTPUT.value,
)
"""The event types a history is rebuilt from."""

CHARS_PER_TOKEN = 4
"""How `max_tokens` estimates tokens: characters of what the model is sent / 4, plus 4."""


@dataclass(frozen=True)
class ContextPolicy:
    """Which of the session's past turns are sent to the model.

    Args:
        max_turns: Keep at most the last N turns (`None`: no limit).
        max_tokens: Keep the newest turns whose estimated size fits this many tokens
            (`None`: no limit); estimated at 4 characters a token.

    Both limits apply when both are set. `ContextPolicy()` sends everything;
    `ContextPolicy.last_turns(5)` and `ContextPolicy.token_budget(4000)` are shorthands.

    Raises:
        ConfigurationError: A limit below 1.
    """

    max_turns: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"ContextPolicy {name} must be a positive int, not {value!r}")

    @classmethod
    def all(cls) -> ContextPolicy:
        """Send every past turn."""
        return cls()

    @classmethod
    def last_turns(cls, n: int) -> ContextPolicy:
        """Send the last `n` turns."""
        return cls(max_turns=n)

    @classmethod
    def token_budget(cls, tokens: int) -> ContextPolicy:
        """Send the newest turns that fit `tokens` (estimated)."""
        return cls(max_tokens=tokens)

    def load(self, store: SessionStore, session_id: str) -> list[Event]:
        """Read the conversation events of the turns this policy keeps, oldest first,
        leaving out those a rewind undid.

        Raises:
            SessionNotFoundError, StoreError: From the store.
        """
        after = 0
        if self.max_turns is not None:
            users = store.read_events(
                session_id,
                types=[EventType.USER_MESSAGE.value],
                last=self.max_turns,
                effective=True,
            )
            if not users:
                return []
            after = users[0].seq - 1
        if self.max_tokens is not None:
            # Each event costs at least one token: the last max_tokens events always suffice.
            events = store.read_events(
                session_id,
                after=after,
                types=CONVERSATION_TYPES,
                last=self.max_tokens,
                effective=True,
            )
            return self.trim(events)
        return store.read_events(
            session_id, after=after, types=CONVERSATION_TYPES, effective=True
        )

    def trim(self, events: Sequence[Event]) -> list[Event]:
        """Apply the policy to conversation events already read (oldest first): drop any
        events before the first `user_message`, then the oldest turns over the limits."""
        turns: list[list[Event]] = []
        for event in events:
            if event.type == EventType.USER_MESSAGE:
                turns.append([event])
            elif turns:
                turns[-1].append(event)
        if self.max_turns is not None:
            turns = turns[-self.max_turns :]
        if self.max_tokens is not None:
            kept: list[list[Event]] = []
            budget = self.max_tokens
            for turn in reversed(turns):
                cost = sum(estimate_tokens(e) for e in turn)
                if cost > budget:
                    break
                budget -= cost
                kept.append(turn)
            turns = kept[::-1]
        return [e for turn in turns for e in turn]


def estimate_tokens(event: Event) -> int:
    """A rough token count of what an event adds to the chat: its text, a tool call's name
    and arguments, or a tool's result as JSON (4 characters a token, plus 4 per message)."""
    data = event.data
    if event.type == EventType.TOOL_CALL:
        sent = f"{data.get('name')}{json.dumps(data.get('arguments'), ensure_ascii=False)}"
    elif event.type == EventType.TOOL_RESULT:
        sent = json.dumps(data.get("result"), ensure_ascii=False)
    else:
        sent = str(data.get("text", ""))
    return len(sent) // CHARS_PER_TOKEN + 4
