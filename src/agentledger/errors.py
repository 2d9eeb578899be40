"""The agentledger error tree.

Every error the library raises on purpose is an `AgentLedgerError`. Driver errors
(`sqlite3`, `psycopg`, `OSError`) are translated at the store boundary and chained
(`raise StoreError(...) from exc`); nothing above `agentledger.stores` sees them.

```
AgentLedgerError
├── ConfigurationError            unknown URL scheme, bad option
│   └── MissingDependencyError    also an ImportError; names `pip install 'agentledger[x]'`
├── StoreError                    a driver error, always `from exc`
│   ├── ConcurrencyError          expected_version mismatch
│   │   └── StateConflictError    expected_state mismatch: state changed under the writer
│   ├── CorruptedSessionError     a record that cannot be read back
│   ├── SchemaVersionError        written by a newer library, or too old for a read-only open
│   └── StoreUnavailableError     connection, lock timeout, disk
│       ├── StoreNotFoundError    no store there, and this open may not create one
│       └── ReadOnlyStoreError    a write on a store opened read-only
├── SessionNotFoundError          (also a KeyError)
├── SessionExistsError            create with an id that is taken
├── SessionAccessError            a session of another user or app, asked for on a user's behalf
├── InvalidSessionIdError         (also a ValueError)
├── InvalidEventError             a value JSON cannot hold, a bad event field (also a ValueError)
│   ├── EventTooLargeError        an event's JSON is over `max_event_bytes`
│   ├── StateOperationError       a state operation does not fit the state at commit
│   └── DuplicateEventKeyError    an event key already stored with other content (or twice in a batch)
├── InvalidTransitionError        a phase/status rule broken (raised in core)
├── PluginError                   a plugin failed before a write; nothing was written
│   └── PluginRejectedError       a plugin refused an append (`before_append`)
└── RunnerError
    ├── ModelError
    └── ToolError
```
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentLedgerError",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptedSessionError",
    "DuplicateEventKeyError",
    "EventTooLargeError",
    "InvalidEventError",
    "InvalidSessionIdError",
    "InvalidTransitionError",
    "MissingDependencyError",
    "ModelError",
    "PluginError",
    "PluginRejectedError",
    "ReadOnlyStoreError",
    "RunnerError",
    "SchemaVersionError",
    "SessionAccessError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StoreError",
    "StoreNotFoundError",
    "StateConflictError",
    "StateOperationError",
    "StoreUnavailableError",
    "ToolError",
]


class AgentLedgerError(Exception):
    """Base class of every error agentledger raises on purpose."""


class ConfigurationError(AgentLedgerError):
    """An unknown store URL scheme, a bad option value or a bad environment setting."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed; install it with: pip install 'agentledger[{extra}]'"
        )


class StoreError(AgentLedgerError):
    """A store could not do what was asked; the driver's error is chained as `__cause__`."""


class ConcurrencyError(StoreError):
    """An append's `expected_version` is not the session's current version; nothing was written.

    Attributes:
        session_id: The session appended to.
        expected_version: The version the caller gave.
        actual_version: The session's version in the store when the append was refused.
    """

    expected_version: int | None

    def __init__(self, session_id: str, expected_version: int, actual_version: int) -> None:
        self.session_id = session_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"session {session_id!r} is at version {actual_version}, "
            f"not the expected version {expected_version}; nothing was written"
        )


class StateConflictError(ConcurrencyError):
    """An append's `expected_state` no longer holds: another writer changed those state keys
    since the caller read them; nothing was written. Re-read the state and retry.

    Attributes:
        session_id: The session appended to.
        keys: The state keys (with their `app:`/`user:` prefixes) whose values changed.
        actual_version: The session's version when the append was refused.
        expected_version: Always `None` (the check was on state, not on the version).

    Raised by `update_scoped_state` too, with `session_id` `""`, `actual_version` 0 and
    `scope` naming the app or user whose state changed (for the message).
    """

    def __init__(
        self, session_id: str, keys: list[str], actual_version: int, *, scope: str | None = None
    ) -> None:
        self.session_id = session_id
        self.keys = keys
        self.expected_version = None
        self.actual_version = actual_version
        where = scope if scope is not None else f"session {session_id!r}"
        StoreError.__init__(
            self,
            f"state keys {', '.join(map(repr, keys))} of {where} changed since "
            "they were read; nothing was written",
        )


class CorruptedSessionError(StoreError):
    """A stored session or event cannot be read back; other sessions are unaffected."""

    def __init__(self, session_id: str, detail: str, *, seq: int | None = None) -> None:
        self.session_id = session_id
        self.detail = detail
        self.seq = seq
        """The first event found missing or changed, when one is known."""
        super().__init__(f"session {session_id!r} is corrupted: {detail}")


class SchemaVersionError(StoreError):
    """The store's schema is newer than this library understands, or older than it and the
    store was opened read-only (a read never migrates); the message names both versions."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached: connection refused, lock timeout, disk full or read-only."""


class StoreNotFoundError(StoreUnavailableError):
    """The store does not exist and this open may not create it: it was opened read-only or
    with `create=False`, or its parent folder is missing (a store creates its own file or
    folder, never the folders above it). The message names the missing path or schema."""


class ReadOnlyStoreError(StoreUnavailableError):
    """A write (create, append, delete) on a store opened with `read_only=True`; nothing was
    written."""


class SessionNotFoundError(AgentLedgerError, KeyError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(session_id)

    def __str__(self) -> str:
        return f"no session with id {self.session_id!r}"


class SessionExistsError(AgentLedgerError):
    """A session was created with an id that is already taken."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"a session with id {session_id!r} already exists")


class SessionAccessError(AgentLedgerError):
    """A command acting for one user (and app) was given a session of another; nothing was
    read or written.

    Attributes:
        session_id: The session asked for.
        owner: `(app_name, user_id)` the session belongs to.
        requested: `(app_name, user_id)` the command acts for.
    """

    def __init__(
        self, session_id: str, owner: tuple[str, str], requested: tuple[str, str]
    ) -> None:
        self.session_id = session_id
        self.owner = owner
        self.requested = requested
        super().__init__(
            f"session {session_id!r} belongs to user {owner[1]!r} of app {owner[0]!r}, not to "
            f"user {requested[1]!r} of app {requested[0]!r}; nothing was read or written"
        )


class InvalidSessionIdError(AgentLedgerError, ValueError):
    """A session id that is not a string of 1-512 characters, or holds a control character
    (NUL, newline, …) or a lone surrogate."""


class InvalidEventError(AgentLedgerError, ValueError):
    """An event that cannot be stored: a value JSON cannot hold, a bad type or author."""


class EventTooLargeError(InvalidEventError):
    """An event's JSON encoding is over the store's `max_event_bytes`.

    Attributes:
        size: The event's size in bytes (UTF-8 JSON).
        limit: The store's `max_event_bytes`.

    Args:
        size, limit: As the attributes.
        what: What is too large, for the message (`"event"`, `"the message"`).
    """

    def __init__(self, size: int, limit: int, what: str = "event") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} bytes of JSON, over the limit of {limit} bytes")


class StateOperationError(InvalidEventError):
    """A state operation (`NewEvent.state_ops`) does not fit the state it was applied to at
    commit: a missing member or index, a failed `test`, an `increment` of something that is
    not a number. The whole append was refused; nothing was written.

    Attributes:
        op: The operation that failed, as given (paths of shared state without their
            `app:`/`user:` prefix).
        index: Its position among the operations applied together.
        detail: Why it failed.
    """

    def __init__(self, op: dict[str, Any], index: int, detail: str) -> None:
        self.op = op
        self.index = index
        self.detail = detail
        super().__init__(f"state operation {op!r} cannot be applied: {detail}; nothing was written")


class DuplicateEventKeyError(InvalidEventError):
    """An append's event keys clash with the session's stored keys; nothing was written.

    Raised when a key is already stored with other content (type, author, data,
    state_delta, state_ops or invocation_id differ), when a batch mixes keys already stored
    with new keys or events without a key (a retry must resend exactly the batch it
    retries), or when two events of one batch carry the same key.

    Attributes:
        session_id: The session appended to.
        keys: The clashing keys, in the batch's order.
        reason: `"different_content"`, `"partial_retry"` or `"repeated_in_batch"`.
    """

    _DETAILS = {
        "different_content": "stored already with other content",
        "partial_retry": (
            "stored already while other events of the batch are new or have no key (a retry "
            "must resend exactly the batch it retries)"
        ),
        "repeated_in_batch": "given to more than one event of the batch",
    }

    def __init__(self, session_id: str, keys: list[str], reason: str) -> None:
        self.session_id = session_id
        self.keys = keys
        self.reason = reason
        many = len(keys) != 1
        super().__init__(
            f"session {session_id!r}: event key{'s' if many else ''} "
            f"{', '.join(map(repr, keys))} {'are' if many else 'is'} "
            f"{self._DETAILS.get(reason, reason)}; nothing was written"
        )


class InvalidTransitionError(AgentLedgerError):
    """A phase or status rule was broken (for example, appending to a terminated session)."""


class PluginError(AgentLedgerError):
    """A plugin's hook raised before a write (a bug in the plugin, or an event it made that
    is not a valid `NewEvent`); nothing was written.

    Attributes:
        plugin: The name the plugin is enabled under (`"redact"`, an entry point's name).
        reason: What went wrong, in words.
    """

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        self.reason = reason
        super().__init__(plugin, reason)

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed: {self.reason}; nothing was written"


class PluginRejectedError(PluginError):
    """A plugin refused an append in its `before_append` hook; nothing was written.

    A plugin raises it with the reason only (`raise PluginRejectedError("too large")`);
    the store fills in `plugin` with the name the plugin is enabled under.

    Attributes:
        plugin: The name of the plugin that refused (`""` until the store fills it in).
        reason: Why, in the plugin's words.
    """

    def __init__(self, reason: str, *, plugin: str = "") -> None:
        super().__init__(plugin, reason)

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} rejected the append: {self.reason}; nothing was written"


class RunnerError(AgentLedgerError):
    """An agent turn failed; the failure is recorded in the ledger as an `error` event."""


class ModelError(RunnerError):
    """The model failed or answered with something the runner cannot use.

    Attributes:
        kind: What went wrong, machine-readable (also the `kind` of the recorded `error`
            event): `auth` (HTTP 401/403), `rate_limited` (429 after the client's
            retries), `server` (5xx after retries), `timeout`, `connection` (the endpoint
            cannot be reached), `bad_request` (another 4xx, e.g. an unknown model),
            `bad_response` (an answer the runner cannot use), or `model` (anything else
            a model raised).
    """

    def __init__(self, message: str, *, kind: str = "model") -> None:
        super().__init__(message)
        self.kind = kind


class ToolError(RunnerError):
    """A tool raised, was unknown, or was called with arguments that do not fit its schema."""
