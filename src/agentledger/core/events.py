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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentledger.core.keys import check_key
from agentledger.core.state_ops import check_ops
from agentledger.errors import InvalidEventError

__all__ = ["EVENT_FORMAT", "Author", "Event", "EventType", "NewEvent", "STANDARD_EVENT_TYPES"]

EVENT_FORMAT = 2
"""The format every store writes new events in; `Event.format` says which one an event has.

- 1: events written before null was a value: a `None` in `state_delta` deletes the key.
- 2: `None` in `state_delta` is stored as a value (JSON null); a key is deleted only by
  naming it in `state_remove`.
"""


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
    EVENTS_ERASED = "events_erased"
    SESSION_FORKED = "session_forked"
    REWOUND = "rewound"


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
        state_delta: State keys to set. A value of `None` is stored as a value (JSON
            null); it does not delete the key (use `state_remove`). Keys prefixed `app:` /
            `user:` change app-wide / user-wide state, `temp:` keys are dropped.
        state_remove: State keys to delete (same prefixes), applied after `state_delta`
            and before `state_ops`; a key that is not there is no error (nothing to do).
            A key may not be both set in `state_delta` and removed.
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
        key: An idempotency key, unique within the session (`None`: no key): 1 to 512
            characters, no control characters (`agentledger.core.keys`). Appending a batch
            whose keys are all stored already, with the same content, writes nothing and
            returns the stored events, so a retried request is harmless; the key also reads
            the event back (`get_event`, `read_events(keys=..., key_prefix=...)`).

    Raises:
        InvalidEventError: (a `ValueError`) on an unknown, un-namespaced type, a naive
            timestamp, a malformed state operation, a bad key, a `state_remove` entry that
            is not a non-empty string or that `state_delta` also sets, a field of the wrong
            type or an unknown field; pydantic's `ValidationError` is its `__cause__`.

    Example:
        >>> NewEvent(type="state_updated", state_delta={"draft": None},
        ...          state_remove=["user:cart"]).state_remove
        ['user:cart']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    author: str = Author.SYSTEM.value
    data: dict[str, Any] = Field(default_factory=dict)
    state_delta: dict[str, Any] = Field(default_factory=dict)
    state_ops: list[dict[str, Any]] = Field(default_factory=list)
    state_remove: list[str] = Field(default_factory=list)
    invocation_id: str | None = None
    timestamp: datetime | None = None
    key: str | None = None

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        return None if value is None else check_key(value)

    @field_validator("state_remove")
    @classmethod
    def _check_state_remove(cls, value: list[str]) -> list[str]:
        bad = [key for key in value if not key]
        if bad:
            raise ValueError("state_remove takes non-empty state keys")
        return value

    @model_validator(mode="after")
    def _check_remove_not_set(self) -> Self:
        both = sorted(set(self.state_remove) & set(self.state_delta))
        if both:
            raise ValueError(
                f"state keys {both} are both set in state_delta and removed in state_remove; "
                "set a key or remove it"
            )
        return self

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
        type, author, data, state_delta, state_ops, state_remove, invocation_id, key: As
            given in the `NewEvent` (without `temp:` keys).
        timestamp: When it happened, UTC (ISO 8601 in JSON).
        format: The event format it was written in (see `EVENT_FORMAT`); what a reader
            needs to interpret `state_delta`. In format 1 (events written by agentledger
            before null became a value) a `None` value in `state_delta` deletes the key and
            `state_remove` is empty; in format 2 a `None` value is stored as null and only
            `state_remove` deletes. `agentledger.core.state.state_change` applies the
            rule for any format. Stores set it on every event they return; an `Event`
            built without it gets the current `EVENT_FORMAT`.
        erased: Whether its payload was erased for good (`erase_events`): `data` and
            `state_delta` are then `{}` and `state_ops` `[]`; its seq, type, author,
            timestamp and invocation id are kept, and an `events_erased` event later in the
            ledger records the erasure.

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
    state_remove: list[str] = Field(default_factory=list)
    invocation_id: str | None = None
    format: int = Field(default=EVENT_FORMAT, ge=1)
    key: str | None = None
    erased: bool = False
