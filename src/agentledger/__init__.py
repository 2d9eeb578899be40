"""agentledger: durable sessions and an append-only event ledger for AI agents.

Every session is a ledger of events; the session (state, status, phase, errors, history) is a
projection of that ledger, kept as a snapshot beside it by the store.

Example:
    >>> from agentledger import NewEvent, open_store
    >>> with open_store("memory://") as store:
    ...     session = store.create_session(app_name="demo", user_id="ada")
    ...     _ = store.append(session.id, [NewEvent(type="user_message", author="user",
    ...                                            data={"text": "hi"})])
    ...     store.get_session(session.id).version
    2
"""

from agentledger.core.events import Author, Event, EventType, NewEvent
from agentledger.core.lifecycle import Lifecycle, ResumeDecision, ResumePolicy, ResumeReason
from agentledger.core.projection import project
from agentledger.core.session import ForkOrigin, Phase, PhaseTransition, Session, Status
from agentledger.errors import (
    AgentLedgerError,
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    DuplicateEventKeyError,
    EventTooLargeError,
    InvalidEventError,
    InvalidSessionIdError,
    InvalidTransitionError,
    MissingDependencyError,
    ModelError,
    PluginError,
    PluginRejectedError,
    ReadOnlyStoreError,
    RunnerError,
    SchemaVersionError,
    SessionAccessError,
    SessionExistsError,
    SessionNotFoundError,
    StateConflictError,
    StateOperationError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    ToolError,
)
from agentledger.manager import SessionManager
from agentledger.plugins import hookimpl
from agentledger.stores.aio import AsyncSessionStore, open_async_store
from agentledger.stores.base import (
    Capabilities,
    SessionPage,
    SessionStore,
    VerifyReport,
    default_store_url,
    open_store,
)
from agentledger.stores.memory import MemoryStore
from agentledger.stores.sqlite import SqliteStore

__version__ = "0.1.0"

__all__ = [
    "AgentLedgerError",
    "AsyncSessionStore",
    "Author",
    "Capabilities",
    "ConcurrencyError",
    "ConfigurationError",
    "CorruptedSessionError",
    "DuplicateEventKeyError",
    "Event",
    "EventTooLargeError",
    "EventType",
    "ForkOrigin",
    "InvalidEventError",
    "InvalidSessionIdError",
    "InvalidTransitionError",
    "Lifecycle",
    "MemoryStore",
    "MissingDependencyError",
    "ModelError",
    "NewEvent",
    "Phase",
    "PhaseTransition",
    "PluginError",
    "PluginRejectedError",
    "ReadOnlyStoreError",
    "ResumeDecision",
    "ResumePolicy",
    "ResumeReason",
    "RunnerError",
    "SchemaVersionError",
    "Session",
    "SessionAccessError",
    "SessionExistsError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStore",
    "SqliteStore",
    "StateConflictError",
    "StateOperationError",
    "Status",
    "StoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "ToolError",
    "VerifyReport",
    "default_store_url",
    "hookimpl",
    "open_async_store",
    "open_store",
    "project",
]
