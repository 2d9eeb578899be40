"""The session: a projection of its ledger. Pure: no I/O, no clock."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentledger.errors import InvalidSessionIdError

__all__ = [
    "DEFAULT_PHASES",
    "FINAL_PHASES",
    "MAX_SESSION_ID_CHARS",
    "RESUMABLE_PHASES",
    "Phase",
    "ForkOrigin",
    "PhaseTransition",
    "Session",
    "Status",
    "validate_session_id",
]


class Status(StrEnum):
    """The coarse lifecycle of a session: active, suspended, terminated."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Phase(StrEnum):
    """The default workflow phases; the phase set is configuration."""

    INITIALIZING = "initializing"
    INVESTIGATING = "investigating"
    PLANNING = "planning"
    APPROVAL = "approval"
    EXECUTING = "executing"
    VALIDATING = "validating"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"


DEFAULT_PHASES: tuple[str, ...] = tuple(p.value for p in Phase)
FINAL_PHASES: frozenset[str] = frozenset({"completed", "failed", "abandoned"})
RESUMABLE_PHASES: frozenset[str] = frozenset({"approval", "investigating", "planning"})


class PhaseTransition(BaseModel):
    """One entry of `Session.phase_history`: a phase change and when it happened (UTC)."""

    model_config = ConfigDict(frozen=True)

    from_phase: str
    to_phase: str
    timestamp: datetime


class ForkOrigin(BaseModel):
    """Where a forked session came from (`Session.forked_from`).

    Attributes:
        session_id: The session it was forked from (which may since have been deleted).
        seq: The last event of that session the fork copied: the fork's history is the
            source's events 1 to `seq`, then its own, starting with `session_forked`.
    """

    model_config = ConfigDict(frozen=True)

    session_id: str
    seq: int


class Session(BaseModel):
    """A session as projected from its ledger.

    `state` holds the session's own keys plus, when read through a store, the `app:` and
    `user:` keys it shares with other sessions (prefixed). `version` is the `seq` of the
    last event; `updated_at` is the last activity (the last event's timestamp).
    `resume_count` counts `status_changed` events to `active` (resumes); `resume_ready` is
    set by `phase_changed` or `metadata_updated` events that carry it, and cleared by
    `session_finalized`. `model_calls`, `input_tokens` and `output_tokens` add up the
    `model_call` records the runner puts on events (`data["model_call"]`).
    `forked_from` is set on a session made by `fork_session` (its `session_forked` event):
    the source session and the seq the fork was taken at; `None` otherwise.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    app_name: str
    user_id: str
    agent_name: str | None = None
    title: str | None = None
    purpose: str | None = None
    status: str = Status.ACTIVE.value
    phase: str = Phase.INITIALIZING.value
    state: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 0
    error_count: int = 0
    last_error: str | None = None
    resume_ready: bool = True
    resume_count: int = 0
    outcome: str | None = None
    summary: str | None = None
    finalized_at: datetime | None = None
    duration_seconds: float | None = None
    phase_history: list[PhaseTransition] = Field(default_factory=list)
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    forked_from: ForkOrigin | None = None


MAX_SESSION_ID_CHARS = 512
"""The longest session id, in characters (Unicode code points)."""

_REFUSED_IN_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (C0, DEL, C1) and lone surrogates: never in a session id."""


def validate_session_id(session_id: object) -> str:
    """Check that a session id can be stored and read back exactly by every store.

    A session id is any string of 1-512 characters (Unicode code points), taken exactly:
    `/`, spaces (leading and trailing too), `..`, `%`, letters of any script and emoji are
    all allowed, and ids that differ only by case (`"A"`, `"a"`) or by Unicode
    normalization are different sessions. Refused: control characters (U+0000-U+001F,
    including NUL, tab and newline; U+007F-U+009F), which would corrupt logs and terminals,
    and lone surrogates (U+D800-U+DFFF), which UTF-8 cannot encode. Stores never use the id
    as a path: the file store derives a safe folder name from it.

    Args:
        session_id: The id to check.

    Returns:
        The id, unchanged.

    Raises:
        InvalidSessionIdError: Not a `str`, empty, longer than 512 characters, or it holds
            a control character or a lone surrogate.
    """
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(
            f"invalid session id {_shown_id(session_id)}: a session id is a string, "
            f"not {type(session_id).__name__}"
        )
    if not 0 < len(session_id) <= MAX_SESSION_ID_CHARS:
        raise InvalidSessionIdError(
            f"invalid session id {_shown_id(session_id)}: use 1-{MAX_SESSION_ID_CHARS} "
            f"characters, not {len(session_id)}"
        )
    bad = _REFUSED_IN_ID.search(session_id)
    if bad is not None:
        kind = "a lone surrogate" if bad.group() >= "\ud800" else "a control character"
        raise InvalidSessionIdError(
            f"invalid session id {_shown_id(session_id)}: it holds {kind} "
            f"(U+{ord(bad.group()):04X} at index {bad.start()}); any other character is allowed"
        )
    return session_id


_SHOWN_ID_CHARS = 80
"""A bad session id longer than this is cut in error messages (it may be megabytes)."""


def _shown_id(session_id: object) -> str:
    """`session_id` as an error message shows it: its repr, cut after 80 characters with
    `…` and the full length, so a huge id never floods a terminal or a log."""
    if isinstance(session_id, str) and len(session_id) > _SHOWN_ID_CHARS:
        return f"{session_id[:_SHOWN_ID_CHARS]!r}… ({len(session_id)} characters)"
    text = repr(session_id)
    return text if len(text) <= _SHOWN_ID_CHARS + 2 else text[:_SHOWN_ID_CHARS] + "…"
