"""Per-user isolation: a view of a store limited to one caller's sessions.

`scoped_store(store, principal)` returns the store itself for an admin, else a
`ScopedStore`: the caller sees, reads, appends to, deletes and lists only the sessions of
their own user id in the apps they may use. Another user's session is reported as not found
(`SessionNotFoundError`), exactly like a session that does not exist, so its existence is
never confirmed. Everything above it (the lifecycle manager, the runner, the hooks) works
unchanged on the view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from agentledger.core.events import Event, NewEvent
from agentledger.core.session import Session
from agentledger.errors import AgentLedgerError, SessionNotFoundError
from agentledger.server.auth import Principal
from agentledger.stores.base import FeedEvent, SessionPage, SessionStore, VerifyReport

__all__ = ["AccessDeniedError", "ScopedStore", "scoped_store"]


class AccessDeniedError(AgentLedgerError):
    """The caller may not create a session for another user or in an app not theirs (403)."""


class ScopedStore:
    """`store` as one non-admin caller may see it (see the module docstring).

    Args:
        store: The shared store; closing the view does not close it.
        principal: The caller.
    """

    def __init__(self, store: SessionStore, principal: Principal) -> None:
        self.inner = store
        self.principal = principal
        self.url = store.url
        self.capabilities = store.capabilities
        self.lifecycle = store.lifecycle
        self.max_event_bytes = store.max_event_bytes

    def _visible(self, session: Session) -> bool:
        return session.user_id == self.principal.user_id and self.principal.may_use_app(
            session.app_name
        )

    def _own(self, session_id: str) -> Session:
        session = self.inner.get_session(session_id)
        if not self._visible(session):
            raise SessionNotFoundError(session_id)
        return session

    def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        agent_name: str | None = None,
        title: str | None = None,
        purpose: str | None = None,
        state: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        phase: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> Session:
        """As `SessionStore.create_session`, for the caller's own user and apps only.

        Raises:
            AccessDeniedError: `user_id` is not the caller's, or `app_name` not one of theirs.
        """
        if user_id != self.principal.user_id:
            raise AccessDeniedError(f"you may only create sessions for user {self.principal.user_id!r}")
        if not self.principal.may_use_app(app_name):
            raise AccessDeniedError(f"your token does not allow app {app_name!r}")
        return self.inner.create_session(
            app_name=app_name,
            user_id=user_id,
            agent_name=agent_name,
            title=title,
            purpose=purpose,
            state=state,
            metadata=metadata,
            phase=phase,
            session_id=session_id,
            created_at=created_at,
        )

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """As `SessionStore.append`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)  # a session's owner never changes, so checking first is safe
        return self.inner.append(
            session_id, events, expected_version=expected_version, expected_state=expected_state
        )

    def get_session(self, session_id: str) -> Session:
        """As `SessionStore.get_session`; another user's session is `SessionNotFoundError`."""
        return self._own(session_id)

    def read_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        last: int | None = None,
        types: Sequence[str] | None = None,
        after_timestamp: datetime | None = None,
        before_timestamp: datetime | None = None,
        keys: Sequence[str] | None = None,
        key_prefix: str | None = None,
        data_match: Mapping[str, Any] | None = None,
        effective: bool = False,
    ) -> list[Event]:
        """As `SessionStore.read_events`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.read_events(
            session_id,
            after=after,
            limit=limit,
            last=last,
            types=types,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
            keys=keys,
            key_prefix=key_prefix,
            data_match=data_match,
            effective=effective,
        )

    def fork_session(
        self,
        source_id: str,
        *,
        at_seq: int | None = None,
        new_session_id: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """As `SessionStore.fork_session`, of the caller's own sessions only (the fork
        belongs to the same user and app); another user's session is
        `SessionNotFoundError`."""
        self._own(source_id)  # a session's owner never changes: the fork is theirs too
        return self.inner.fork_session(
            source_id,
            at_seq=at_seq,
            new_session_id=new_session_id,
            expected_version=expected_version,
        )

    def rewind(
        self,
        session_id: str,
        *,
        to_seq: int | None = None,
        before_invocation: str | None = None,
        then: Sequence[NewEvent] = (),
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """As `SessionStore.rewind`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.rewind(
            session_id,
            to_seq=to_seq,
            before_invocation=before_invocation,
            then=then,
            expected_version=expected_version,
            expected_state=expected_state,
        )

    def get_event(self, session_id: str, key: str) -> Event | None:
        """As `SessionStore.get_event`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.get_event(session_id, key)

    def list_sessions(
        self,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        agent_name: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "updated_desc",
    ) -> SessionPage:
        """As `SessionStore.list_sessions`, over the caller's own sessions only: a filter on
        another user or an app not theirs gives an empty page. When the caller may use
        several apps and names none, a page may hold fewer than `limit` sessions."""
        own = self.principal.user_id
        if (user_id is not None and user_id != own) or (
            app_name is not None and not self.principal.may_use_app(app_name)
        ):
            # still checks the arguments
            self.inner.list_sessions(limit=limit, cursor=cursor, order=order)
            return SessionPage(sessions=[])
        apps = self.principal.apps
        if app_name is None and apps is not None and len(apps) == 1:
            app_name = next(iter(apps))
        page = self.inner.list_sessions(
            app_name=app_name,
            user_id=own,
            agent_name=agent_name,
            status=status,
            phase=phase,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
            order=order,
        )
        if apps is None or app_name is not None:
            return page
        return SessionPage(
            sessions=[s for s in page.sessions if self._visible(s)],
            next_cursor=page.next_cursor,
            corrupted=[],
        )

    def _own_scope(self, app_name: str, user_id: str | None) -> None:
        if user_id is not None and user_id != self.principal.user_id:
            raise AccessDeniedError(f"you may only use the state of user {self.principal.user_id!r}")
        if not self.principal.may_use_app(app_name):
            raise AccessDeniedError(f"your token does not allow app {app_name!r}")

    iter_sessions = SessionStore.iter_sessions
    """Every page of `list_sessions` as this caller may see it."""

    def get_scoped_state(self, app_name: str, user_id: str | None = None) -> dict[str, Any]:
        """As `SessionStore.get_scoped_state`, for the caller's own user and apps only.

        Raises:
            AccessDeniedError: `user_id` is not the caller's, or `app_name` not one of theirs.
        """
        self._own_scope(app_name, user_id)
        return self.inner.get_scoped_state(app_name, user_id)

    def update_scoped_state(
        self,
        app_name: str,
        user_id: str | None,
        delta: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        expected_state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """As `SessionStore.update_scoped_state`, for the caller's own user and apps only.

        Raises:
            AccessDeniedError: `user_id` is not the caller's, or `app_name` not one of theirs.
        """
        self._own_scope(app_name, user_id)
        return self.inner.update_scoped_state(
            app_name, user_id, delta, remove=remove, expected_state=expected_state
        )

    def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """As `SessionStore.delete_session`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        self.inner.delete_session(session_id, expected_version=expected_version)

    def read_feed(self, after: int = 0, limit: int = 1000) -> list[FeedEvent]:
        """The store's feed with only the events of the caller's sessions (positions keep
        their store-wide values, so they have gaps)."""
        found: list[FeedEvent] = []
        visible: dict[str, bool] = {}
        while len(found) < limit:
            page = self.inner.read_feed(after, limit)
            if not page:
                break
            for item in page:
                sid = item.event.session_id
                if sid not in visible:
                    try:
                        visible[sid] = self._visible(self.inner.get_session(sid))
                    except SessionNotFoundError:
                        visible[sid] = False
                if visible[sid]:
                    found.append(item)
                    if len(found) == limit:
                        break
            after = page[-1].position
        return found

    def feed_position(self) -> int:
        return self.inner.feed_position()

    def verify_session(self, session_id: str) -> VerifyReport:
        """As `SessionStore.verify_session`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.verify_session(session_id)

    def erase_events(
        self,
        session_id: str,
        seqs: Sequence[int],
        reason: str,
        *,
        expected_version: int | None = None,
    ) -> Event:
        """As `SessionStore.erase_events`; another user's session is `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.erase_events(
            session_id, seqs, reason, expected_version=expected_version
        )

    def truncate_before(
        self, session_id: str, seq: int, *, expected_version: int | None = None
    ) -> int:
        """As `SessionStore.truncate_before`; another user's session is
        `SessionNotFoundError`."""
        self._own(session_id)
        return self.inner.truncate_before(session_id, seq, expected_version=expected_version)

    def compact(self) -> None:
        """Refused: compaction works on the whole store, which only an admin may do.

        Raises:
            AccessDeniedError: Always.
        """
        raise AccessDeniedError("only an admin may compact the store")

    def close(self) -> None:
        """Nothing to release: the shared store stays open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def scoped_store(store: SessionStore, principal: Principal) -> SessionStore:
    """The store as `principal` may see it: the store itself for an admin, else a
    `ScopedStore`."""
    if principal.admin:
        return store
    return ScopedStore(store, principal)
