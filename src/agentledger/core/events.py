"""Events: the immutable entries of a session's ledger.

Pure: no I/O and no clock. A `NewEvent` is what a caller asks to append; the store stamps
it (id, session id, seq, and the timestamp when the caller gave none) and returns an `Event`.

Both are pydantic models, but building one from bad values raises `InvalidEventError` (an
`AgentLedgerError` and a `ValueError`), with pydantic's `ValidationError` chained as its
`__cause__` (its `.errors()` list every problem), whether built by calling the class or by
`model_validate` / `model_validate_json`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentledger.core.state_ops import check_ops
from agentledger.errors import InvalidEventError

__all__ = ["Author", "Event", "EventType", "NewEvent", "STANDARD_EVENT_TYPES"]


class EventType(StrEnum):
    """The standard event types; plugins add their own, namespaced (`"myplugin.something"`)."""

    SESSION_CREATED = "session_created"
    USER_MESSAGE = "user_message"
    AGENT_MESSAGE = "agent_message"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    FINAL_OUTPUT = "final_output"
    ERROR = "error"
    STATE_UPDATED = "state_updated"
    METADATA_UPDATED = "metadata_updated"
    PHASE_CHANGED = "phase_changed"
    STATUS_CHANGED = "status_changed"
    SESSION_FINALIZED = "session_finalized"


STANDARD_EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)


class Author(StrEnum):
    """Who wrote an event; a plugin may also author events under its own name."""

    USER = "user"
    AGENT = "agent"
    TOOL = "tool"
    SYSTEM = "system"


def _check_type(value: str) -> str:
    if value in STANDARD_EVENT_TYPES:
        return value
    namespace, dot, name = value.partition(".")
    if dot and namespace and name:
        return value
    raise ValueError(
        f"unknown event type {value!r}: use a standard type "
        f"({', '.join(sorted(STANDARD_EVENT_TYPES))}) or a namespaced one ('plugin.name')"
    )


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from exc


def _invalid(model: str, exc: ValidationError) -> InvalidEventError:
    """One readable line per problem pydantic found, as an `InvalidEventError`; the one
    `__init__` raised already when pydantic validated through it (`model_validate`)."""
    errors = exc.errors(include_url=False)
    if len(errors) == 1 and isinstance(errors[0].get("ctx", {}).get("error"), InvalidEventError):
        inner: InvalidEventError = errors[0]["ctx"]["error"]
        return inner
    problems = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"])
        text = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {text}" if where else text)
    return InvalidEventError(f"invalid {model}: {'; '.join(problems)}")


class _EventModel(BaseModel):
    """A model whose invalid values raise `InvalidEventError` (from pydantic's error)."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _invalid(type(self).__name__, exc) from exc

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate `obj` (a dict or a model) into this model.

        Raises:
            InvalidEventError: A value the model refuses (pydantic's error as `__cause__`).
        """
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            error = _invalid(cls.__name__, exc)
            raise error from error.__cause__ or exc

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate JSON text into this model.

        Raises:
            InvalidEventError: Bad JSON or a value the model refuses (pydantic's error as
                `__cause__`).
        """
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            error = _invalid(cls.__name__, exc)
            raise error from error.__cause__ or exc


class NewEvent(_EventModel):
    """An event to append, before the store gives it an id and a `seq`.

    Attributes:
        type: A standard `EventType` or a namespaced plugin type (`"plugin.name"`).
        author: `user`, `agent`, `tool`, `system`, or a plugin's name.
        data: The event's payload; a JSON object.
        state_delta: State keys to set; a value of `None` deletes the key. Keys prefixed
            `app:` / `user:` change app-wide / user-wide state, `temp:` keys are dropped.
        state_ops: State operations in the JSON Patch shape, applied in order after
            `state_delta` by the store at commit, to the state as it is then (see
            `agentledger.core.state_ops`): e.g. `[{"op": "add", "path":
            "/user:reminders/-", "value": "call the dentist"}]` adds to a list without
            reading it, so concurrent adds never conflict. The event stores the operations,
            not their result.
        invocation_id: Groups the events of one agent turn; `None` outside a turn.
        timestamp: When it happened by the caller's own clock (aware; a framework's
            event time). It is *not* the stored event's `timestamp`: every store stamps
            events with its own clock, so a caller's time can never move a session's last
            activity (`updated_at`, what retention and the resume policy read). The store
            keeps it in the event's `data["timestamp"]` as fixed-width UTC ISO 8601
            (`"2023-05-01T12:00:00.000000Z"`); giving both this and a different
            `data["timestamp"]` is an `InvalidEventError`.

    Raises:
        InvalidEventError: (a `ValueError`) on an unknown, un-namespaced type, a naive
            timestamp, a malformed state operation, a field of the wrong type or an unknown
            field; pydantic's `ValidationError` is its `__cause__`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    author: str = Author.SYSTEM.value
    data: dict[str, Any] = Field(default_factory=dict)
    state_delta: dict[str, Any] = Field(default_factory=dict)
    state_ops: list[dict[str, Any]] = Field(default_factory=list)
    invocation_id: str | None = None
    timestamp: datetime | None = None

    @field_validator("state_ops")
    @classmethod
    def _check_state_ops(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return check_ops(value)

    @field_validator("type")
    @classmethod
    def _validate_type(cls, value: str) -> str:
        return _check_type(value)

    @field_validator("timestamp")
    @classmethod
    def _check_timestamp(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class Event(_EventModel):
    """A stored, immutable ledger entry.

    Attributes:
        id: Unique and time-sortable (a 26-character ULID).
        session_id: The session whose ledger holds it.
        seq: Its position in that ledger: 1, 2, 3… gapless; the session's version after it.
        type, author, data, state_delta, state_ops, invocation_id: As given in the
            `NewEvent`.
        timestamp: When it happened, UTC (ISO 8601 in JSON).

    Raises:
        InvalidEventError: Built from values of the wrong type or with fields missing;
            pydantic's `ValidationError` is its `__cause__`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    session_id: str
    seq: int
    type: str
    author: str
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    state_delta: dict[str, Any] = Field(default_factory=dict)
    state_ops: list[dict[str, Any]] = Field(default_factory=list)
    invocation_id: str | None = None
