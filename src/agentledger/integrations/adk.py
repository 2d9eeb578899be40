"""Google ADK on agentledger: `LedgerSessionService`, a `BaseSessionService`.

Install with `pip install 'agentledger[adk]'`. ADK agents keep running on ADK's `Runner`;
their sessions live in an agentledger store (SQLite, PostgreSQL, files, memory) where the
CLI, the HTTP view, fork, retention and export see them like any other session.

    >>> from google.adk.runners import Runner  # doctest: +SKIP
    >>> service = LedgerSessionService("sqlite:///agents.db")  # doctest: +SKIP
    >>> runner = Runner(agent=agent, app_name="demo", session_service=service)  # doctest: +SKIP

How ADK's concepts map onto the ledger:

| ADK | agentledger |
|---|---|
| `Session(app_name, user_id, id)` | a session with that `app_name`, `user_id` and id |
| `Session.state`, `app:`/`user:` keys | the session's state; `app:`/`user:` keys are the store's scoped state (`get_scoped_state`); `temp:` keys are never stored |
| a state value `None` | stored as JSON null (ADK's own services store it too); deleting a key is our `state_remove`, which ADK never asks for |
| `Event` | one ledger event: `data` is the ADK event's whole JSON (`Event.model_dump(mode="json", exclude_none=True)`), `author` is the ADK author (`"user"` or the agent's name), `invocation_id` the ADK invocation id, `key` `"adk:<event id>"` (a retried append is harmless) |
| event with a user's text | type `user_message` |
| event with `function_call` parts | type `tool_call` |
| event with `function_response` parts | type `tool_result` |
| event with `error_code` | type `error` (counts in `error_count`) |
| other event with content | type `agent_message` |
| event without content (state only, transfer, escalate, ...) | type `adk.event` |
| event with `actions.rewind_before_invocation_id` (`Runner.rewind_async`) | our `rewind(before_invocation=...)`, then the ADK event (`adk.event`) in the same transaction |
| `Session.last_update_time` | the session's `updated_at` (the store's clock) |
| stale-session check | the session's `version`: `append_event` passes it as `expected_version`; ADK's `StaleSessionError` when another writer got there first |
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from agentledger.core.events import Event as LedgerEvent
from agentledger.core.events import NewEvent
from agentledger.core.session import Session as LedgerSession
from agentledger.errors import (
    ConcurrencyError,
    MissingDependencyError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.aio import AsyncSessionStore, ThreadedAsyncStore
from agentledger.stores.base import SessionStore, open_store

try:
    from google.adk.errors import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import (
        SessionNotFoundError as AdkSessionNotFoundError,
    )
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError(exc.name or "google-adk", "adk") from exc

__all__ = [
    "ADK_EVENT_TYPES",
    "URI_SCHEMES",
    "LedgerSessionService",
    "event_type_of",
    "register_uri_schemes",
]

KEY_PREFIX: Final = "adk:"
"""Ledger keys of ADK events are this prefix and the ADK event's id."""

ADK_EVENT_TYPES: Final[tuple[str, ...]] = (
    "user_message",
    "agent_message",
    "tool_call",
    "tool_result",
    "error",
    "adk.event",
)
"""The ledger event types ADK events are stored as (`event_type_of`)."""

URI_SCHEMES: Final[tuple[str, ...]] = (
    "agentledger+sqlite",
    "agentledger+postgresql",
    "agentledger+file",
    "agentledger+memory",
)
"""The session-service URI schemes `register_uri_schemes` adds to ADK's service registry."""

DEFAULT_TIMESTAMP_MARGIN: Final = 300.0
"""Seconds an ADK event's own time may run ahead of the store's clock (see `get_session`)."""


def event_type_of(event: Event) -> str:
    """Return the ledger event type an ADK event is stored as (the module's mapping table)."""
    if event.error_code:
        return "error"
    content = event.content
    if content is None or not content.parts:
        return "adk.event"
    if any(part.function_response is not None for part in content.parts):
        return "tool_result"
    if any(part.function_call is not None for part in content.parts):
        return "tool_call"
    if event.author == "user":
        return "user_message"
    return "agent_message"


def _json(value: Any) -> Any:
    return to_jsonable_python(value, inf_nan_mode="null")


def _to_new_event(event: Event) -> NewEvent:
    delta = event.actions.state_delta if event.actions else {}
    return NewEvent(
        type=event_type_of(event),
        author=event.author or "agent",
        data=event.model_dump(mode="json", exclude_none=True),
        state_delta=_json(dict(delta)) if delta else {},
        invocation_id=event.invocation_id or None,
        key=KEY_PREFIX + event.id,
    )


def _to_adk_event(stored: LedgerEvent) -> Event:
    return Event.model_validate(stored.data)


def _to_adk_session(session: LedgerSession, events: list[Event]) -> Session:
    adk = Session(
        id=session.id,
        app_name=session.app_name,
        user_id=session.user_id,
        state=dict(session.state),
        events=events,
        last_update_time=session.updated_at.timestamp(),
    )
    adk._storage_update_marker = str(session.version)
    return adk


def _expected_version(session: Session) -> int | None:
    marker = session._storage_update_marker
    if marker is None:
        return None
    try:
        return int(marker)
    except ValueError:
        return None


def _store_url(uri: str) -> str:
    scheme = urlsplit(uri).scheme
    if scheme.startswith("agentledger+"):
        return uri[len("agentledger+") :]
    return uri


class LedgerSessionService(BaseSessionService):
    """ADK's `BaseSessionService` on an agentledger store.

    Args:
        url_or_store: A store URL (`"sqlite:///agents.db"`, `"postgresql://..."`; the
            `agentledger+` forms of `URI_SCHEMES` too), an open `SessionStore`, or an
            open `AsyncSessionStore`. A URL is opened here and closed by `close()`; a
            store given open is left open.
        timestamp_margin: Seconds an ADK event's own `timestamp` may be ahead of the
            store's clock; `get_session(config=GetSessionConfig(after_timestamp=t))` reads
            the events the store stamped after `t - timestamp_margin` through its
            `(session, timestamp)` index, then keeps those whose ADK time is `>= t`.
        **options: Passed to `open_store` with a URL (`max_threads` sizes the worker
            threads the sync store's calls run on, default 8).

    Raises:
        ConfigurationError, MissingDependencyError, StoreUnavailableError: As `open_store`.
    """

    def __init__(
        self,
        url_or_store: str | SessionStore | AsyncSessionStore | None = None,
        *,
        uri: str | None = None,
        timestamp_margin: float = DEFAULT_TIMESTAMP_MARGIN,
        **options: Any,
    ) -> None:
        source = url_or_store if url_or_store is not None else uri
        max_threads = int(options.pop("max_threads", 8))
        options.pop("agents_dir", None)  # ADK's service registry passes it to every factory
        self._owns_store = isinstance(source, str) or source is None
        if isinstance(source, AsyncSessionStore):
            self._store: AsyncSessionStore = source
        elif isinstance(source, str) or source is None:
            sync = open_store(None if source is None else _store_url(source), **options)
            self._store = ThreadedAsyncStore(sync, max_threads=max_threads)
        else:
            self._store = ThreadedAsyncStore(source, max_threads=max_threads)
        self._margin = float(timestamp_margin)

    @property
    def store(self) -> AsyncSessionStore:
        """The async store the service reads and writes."""
        return self._store

    async def close(self) -> None:
        """Close the store if this service opened it (from a URL)."""
        if self._owns_store:
            await self._store.aclose()

    async def __aenter__(self) -> LedgerSessionService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session (ADK's `create_session`): its ledger starts with `session_created`.

        `state`'s `app:`/`user:` keys update the shared scopes, `temp:` keys are dropped,
        `None` values are stored as null.

        Raises:
            AlreadyExistsError: (ADK's) `session_id` is taken.
        """
        session_id = session_id.strip() if session_id else None
        try:
            created = await self._store.create_session(
                app_name=app_name,
                user_id=user_id,
                state=_json(state) if state else None,
                session_id=session_id or None,
                metadata={"framework": "google-adk"},
            )
        except SessionExistsError as exc:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from exc
        return _to_adk_session(created, [])

    async def _load(self, app_name: str, user_id: str, session_id: str) -> LedgerSession | None:
        try:
            found = await self._store.get_session(session_id)
        except SessionNotFoundError:
            return None
        if found.app_name != app_name or found.user_id != user_id:
            return None
        return found

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """Return a session with its events (ADK's `get_session`), or `None` if there is none.

        The session comes from its snapshot (no fold over the ledger); the events from
        index reads: `num_recent_events=N` reads the last N ADK events (`read_events(
        last=N)`), `after_timestamp=t` the events from `t` on (ADK time, inclusive; see
        `timestamp_margin`). Our own events (`session_created`, `rewound`) are not ADK
        events and are left out; rewound ADK events stay in, as ADK's own services keep
        them (ADK's runner skips them).
        """
        found = await self._load(app_name, user_id, session_id.strip())
        if found is None:
            return None
        events = await self._read_events(found.id, config)
        return _to_adk_session(found, events)

    async def _read_events(self, session_id: str, config: GetSessionConfig | None) -> list[Event]:
        last = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        if last == 0:
            return []
        bound: datetime | None = None
        if after is not None and after - self._margin > 0:
            bound = datetime.fromtimestamp(after - self._margin, UTC)
        stored = await self._store.read_events(
            session_id, types=ADK_EVENT_TYPES, last=last, after_timestamp=bound
        )
        events = [_to_adk_event(e) for e in stored]
        if after is not None:
            events = [e for e in events if e.timestamp >= after]
        return events

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """List an app's sessions, of one user or all, least recently active first (ADK's
        `list_sessions`); each with its state, without events."""
        sessions: list[Session] = []
        cursor: str | None = None
        while True:
            page = await self._store.list_sessions(
                app_name=app_name, user_id=user_id, order="updated_asc", limit=1000,
                cursor=cursor,
            )
            sessions.extend(_to_adk_session(s, []) for s in page.sessions)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete a session and its ledger (ADK's `delete_session`); a missing one is no error.
        The app's and user's shared state stays."""
        found = await self._load(app_name, user_id, session_id.strip())
        if found is None:
            return
        try:
            await self._store.delete_session(found.id)
        except SessionNotFoundError:
            return

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """Return the user's shared state with its keys unprefixed (ADK's `get_user_state`)."""
        scoped = await self._store.get_scoped_state(app_name, user_id)
        return {key.removeprefix(State.USER_PREFIX): value for key, value in scoped.items()}

    async def append_event(self, session: Session, event: Event) -> Event:
        """Append an ADK event to the session's ledger (ADK's `append_event`).

        A partial (streaming) event is returned unstored, as ADK's services do. The
        session's version (read with it) is the append's `expected_version`; an event
        with `actions.rewind_before_invocation_id` is our `rewind` plus the event, in one
        transaction. A retry of an event that was stored already (same ADK event id and
        content) writes nothing.

        Raises:
            StaleSessionError: (ADK's) the session was changed by another writer since it
                was read; nothing was written. Read it again and retry.
            SessionNotFoundError: (ADK's) no such session.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        new = _to_new_event(event)
        expected = _expected_version(session)
        rewind_to = event.actions.rewind_before_invocation_id if event.actions else None
        try:
            if rewind_to:
                stored = await self._store.rewind(
                    session.id,
                    before_invocation=rewind_to,
                    then=[new],
                    expected_version=expected,
                )
            else:
                stored = await self._store.append(session.id, [new], expected_version=expected)
        except ConcurrencyError as exc:
            raise StaleSessionError(
                f"Session {session.id} was changed by another writer (version {expected} "
                f"is stale); read it again and retry."
            ) from exc
        except SessionNotFoundError as exc:
            raise AdkSessionNotFoundError(f"Session {session.id} not found.") from exc
        last = stored[-1]
        session.last_update_time = last.timestamp.timestamp()
        session._storage_update_marker = str(last.seq)
        result: Event = self._commit_event_to_session(session, event)
        return result


def _factory(uri: str, **kwargs: Any) -> LedgerSessionService:
    return LedgerSessionService(uri, **kwargs)


def register_uri_schemes(schemes: Sequence[str] = URI_SCHEMES) -> None:
    """Register `LedgerSessionService` in ADK's service registry under `schemes`.

    Then `adk web --session_service_uri agentledger+sqlite:///agents.db` (and `adk run`,
    `adk api_server`) run on agentledger: put `import agentledger.integrations.adk` in a
    `services.py` of the agents directory, which ADK's CLI loads
    (`google.adk.cli.service_registry.load_services_module`). Importing this module
    registers the default schemes already.
    """
    from google.adk.cli.service_registry import get_service_registry

    registry = get_service_registry()
    for scheme in schemes:
        registry.register_session_service(scheme, _factory)



register_uri_schemes()
