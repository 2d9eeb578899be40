"""The session lifecycle over any store: statuses, phases, resume decisions, retention.

`SessionManager` creates, updates, suspends, resumes, terminates, finalizes, lists and
cleans up sessions. It writes nothing but events (`metadata_updated`, `phase_changed`,
`status_changed`, `error`, `session_finalized`) and reads everything back through the
projection; the store checks the lifecycle rules (`core.lifecycle`) inside each append.

The module-level functions are the same API as plain functions, on the default store
(`$AGENTLEDGER_STORE`, else `sqlite:///agentledger.db`):

    >>> agent_id = create_session("terraform-architect", "approval_workflow", {"task_id": "T001"})
    >>> update_state(agent_id, phase="planning", metadata={"plan_file": "plan.json"})
    >>> if should_resume(agent_id): ...
    >>> finalize_session(agent_id, "completed", "Terraform applied successfully")
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from agentledger._ids import new_id
from agentledger.core.events import Author, Event, EventType, NewEvent
from agentledger.core.lifecycle import (
    ResumeDecision,
    ResumePolicy,
    ResumeReason,
    decide_resume,
)
from agentledger.core.session import Session, Status
from agentledger.errors import (
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    InvalidEventError,
    InvalidSessionIdError,
    InvalidTransitionError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.base import SessionPage, SessionStore, open_store

__all__ = [
    "DEFAULT_APP",
    "DEFAULT_USER",
    "CleanupResult",
    "SessionManager",
    "SessionStats",
    "cleanup_old_sessions",
    "continue_or_create_session",
    "create_session",
    "default_manager",
    "default_session_id",
    "finalize_session",
    "get_session",
    "list_sessions",
    "should_resume",
    "update_state",
]

DEFAULT_APP = "agents"
"""The app sessions belong to when the caller names none."""
DEFAULT_USER = "local"
"""The user sessions belong to when the caller names none."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CleanupResult:
    """What `SessionManager.cleanup` did (or, on a dry run, would do).

    Attributes:
        session_ids: The sessions deleted (or that would be deleted), oldest activity last.
        dry_run: Whether nothing was deleted.
        cutoff: Sessions with their last activity before this time (UTC) were selected.
        skipped_corrupted: Old sessions left alone because they cannot be read back (their
            status cannot be checked); delete them by id after a look.
        skipped_changed: Sessions chosen for deletion that got new events before their
            delete: kept, since the delete is conditional on the version listed.
    """

    session_ids: list[str]
    dry_run: bool
    cutoff: datetime
    skipped_corrupted: list[str] = field(default_factory=list)
    skipped_changed: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many sessions were deleted (or would be)."""
        return len(self.session_ids)


@dataclass(frozen=True)
class SessionStats:
    """Session metrics over the sessions listed (see `SessionManager.stats`).

    Attributes:
        total: Sessions counted.
        by_status, by_phase, by_agent: Counts (agent `None` is reported as `"-"`).
        resume_rate: Share of sessions resumed at least once (`resume_count > 0`), 0-1.
        error_rate: Share of sessions with at least one error, 0-1.
        median_duration_seconds, p95_duration_seconds: Over finalized sessions; `None`
            when none is finalized. p95 uses the nearest-rank method.
        finalized: How many sessions have a duration (were finalized).
        corrupted: Ids of sessions that could not be read back.
        model_calls, input_tokens, output_tokens: Totals over the sessions (tokens as
            the providers reported them).
        tokens_per_session: Mean `input_tokens + output_tokens` per session (0 when none).
        tokens_by_agent: Per agent (`"-"` for none): `model_calls`, `input_tokens`,
            `output_tokens`.
    """

    total: int
    by_status: dict[str, int]
    by_phase: dict[str, int]
    by_agent: dict[str, int]
    resume_rate: float
    error_rate: float
    median_duration_seconds: float | None
    p95_duration_seconds: float | None
    finalized: int
    corrupted: list[str]
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_per_session: float = 0.0
    tokens_by_agent: dict[str, dict[str, int]] = field(default_factory=dict)


class SessionManager:
    """The lifecycle API over one store.

    Args:
        store: Any `SessionStore`; the manager does not close it.
        policy: The resume policy (`ResumePolicy()`: approval/investigating/planning,
            30 minutes idle, fewer than 3 errors, `resume_ready`).
        clock: Returns the current time (aware, UTC), for idle times and cleanup
            cut-offs, so tests never sleep. `None` (the default) uses the store's clock
            (`open_store(url, clock=...)`; the real time for a store without one), which
            stamps every event the store writes. Only the store's clock stamps events: a
            clock given here decides but never stamps, so give the store the same clock
            (`open_store(url, clock=c)` and `SessionManager(store, clock=c)`), or none.
        app_name, user_id: Where new sessions go when the caller names none.

    Every write is one append, so it lands whole or not at all, and the store checks the
    lifecycle rules inside its transaction. Errors:
        SessionNotFoundError: The session does not exist.
        CorruptedSessionError: It cannot be read back.
        InvalidTransitionError: The move is not allowed (an unknown phase lists the valid
            ones; a terminated session refuses everything); nothing was written.
        InvalidEventError: A value JSON cannot hold, or metadata that is not an object.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        policy: ResumePolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        app_name: str = DEFAULT_APP,
        user_id: str = DEFAULT_USER,
    ) -> None:
        self.store = store
        self.policy = policy or ResumePolicy()
        store_clock: Callable[[], datetime] | None = getattr(store, "clock", None)
        self.clock: Callable[[], datetime] = clock or store_clock or _utcnow
        self.app_name = app_name
        self.user_id = user_id

    # -- create and read ----------------------------------------------------------------

    def create_session(
        self,
        agent_name: str,
        purpose: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        title: str | None = None,
        phase: str | None = None,
        state: Mapping[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session for an agent; it starts `active` in the lifecycle's initial
        phase.

        Args:
            agent_name: The agent that owns the session; required, non-empty.
            purpose: Why it exists (`"approval_workflow"`).
            metadata: A JSON object; later updates merge into it.
            app_name, user_id: Default to the manager's.
            title, phase, state, session_id: As `SessionStore.create_session`.

        Returns:
            The new session; its `id` is the agent id the hook commands take.

        Raises:
            InvalidEventError: Empty agent name, metadata not an object, or a value JSON
                cannot hold.
            InvalidTransitionError: An unknown or final `phase`.
            SessionExistsError: `session_id` is taken.
        """
        if not isinstance(agent_name, str) or not agent_name.strip():
            raise InvalidEventError(f"agent_name must be a non-empty string, not {agent_name!r}")
        _check_object("metadata", metadata)
        return self.store.create_session(
            app_name=app_name or self.app_name,
            user_id=user_id or self.user_id,
            agent_name=agent_name,
            title=title,
            purpose=purpose,
            metadata=metadata,
            phase=phase,
            state=state,
            session_id=session_id,
        )

    def get_session(self, session_id: str) -> Session:
        """Return the session's projection (a `Session`).

        Raises:
            SessionNotFoundError: No such session.
            InvalidSessionIdError: The id is not a valid session id.
            CorruptedSessionError: It cannot be read back.
        """
        return self.store.get_session(session_id)

    # -- updates ------------------------------------------------------------------------

    def update_state(
        self,
        session_id: str,
        *,
        phase: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        error: str | None = None,
        resume_ready: bool | None = None,
        summary: str | None = None,
    ) -> Session:
        """Record progress (a phase, metadata, an error) in one append.

        Args:
            session_id: The session.
            phase: Move to this phase; the current phase is a no-op. A final phase
                (`completed`, `failed`, `abandoned`) finalizes the session with `summary`.
            metadata: Merged into the metadata: nested objects merge key by key; a key set
                to `None` is removed.
            error: Records an error: `error_count` + 1 and `last_error`.
            resume_ready: Sets the flag the resume policy checks.
            summary: Only with a final `phase` (else `InvalidEventError`).

        Returns:
            The session after the update (unchanged if there was nothing to record).

        Raises:
            InvalidTransitionError: Unknown phase (lists the valid ones), a move the
                lifecycle does not allow, or a terminated session (even for an update that
                would change nothing); nothing was written.
            InvalidEventError: `metadata` is not an object or holds a value JSON cannot.
        """
        _check_object("metadata", metadata)
        if error is not None and not isinstance(error, str):
            raise InvalidEventError(f"error must be a string, not {error!r}")
        session = self.store.get_session(session_id)
        if session.status == Status.TERMINATED:
            raise InvalidTransitionError(
                f"session {session_id!r} is terminated; nothing more can be recorded"
            )
        moves = phase is not None and phase != session.phase
        if summary is not None and not (moves and phase in self.store.lifecycle.final_phases):
            raise InvalidEventError("summary is recorded only with a final phase (finalizing)")
        events: list[NewEvent] = []
        data: dict[str, Any] = {}
        if metadata:
            data["metadata"] = dict(metadata)
        if resume_ready is not None and not moves:
            data.setdefault("metadata", {})
            data["resume_ready"] = resume_ready
        if data:
            events.append(self._event(EventType.METADATA_UPDATED, data))
        if error is not None:
            events.append(self._event(EventType.ERROR, {"message": error}))
        if moves:
            assert phase is not None
            events += self._phase_events(phase, summary, resume_ready)
        if not events:
            return session
        self.store.append(session_id, events)
        return self.store.get_session(session_id)

    def record_interaction(
        self,
        session_id: str,
        query: str,
        response: str,
        *,
        invocation_id: str | None = None,
    ) -> list[Event]:
        """Record one exchange (a question and its answer) as one turn, in one append.

        Writes a `user_message` (`data={"text": query}`, author `user`) and a
        `final_output` (`data={"text": response}`, author `agent`) sharing one
        `invocation_id`, atomically: both land or neither. For an answer made elsewhere
        (another framework, a log being imported); `Runner` records turns it runs itself.

        Args:
            session_id: The session.
            query: What the user asked.
            response: The answer.
            invocation_id: The turn's id; a new one (a ULID) when `None`.

        Returns:
            The two stored events, in order.

        Raises:
            InvalidEventError: `query` or `response` is not a string; nothing was written.
            SessionNotFoundError: No session has this id.
            InvalidTransitionError: The session is terminated or suspended (a new turn is
                refused); nothing was written.
            PluginRejectedError: A plugin refused the append; nothing was written.

        Example:
            >>> from agentledger import SessionManager
            >>> from agentledger import open_store
            >>> manager = SessionManager(open_store("memory://"))
            >>> sid = manager.create_session("assistant").id
            >>> asked, answered = manager.record_interaction(
            ...     sid, "Analyze main.py for errors", "Found 3 potential issues in main.py")
            >>> (asked.type, answered.type, asked.invocation_id == answered.invocation_id)
            ('user_message', 'final_output', True)
        """
        for name, value in (("query", query), ("response", response)):
            if not isinstance(value, str):
                raise InvalidEventError(f"{name} must be a string, not {type(value).__name__}")
        turn = invocation_id or new_id()
        events = [  # the store stamps them
            NewEvent(type=EventType.USER_MESSAGE, author=Author.USER, data={"text": query},
                     invocation_id=turn),
            NewEvent(type=EventType.FINAL_OUTPUT, author=Author.AGENT, data={"text": response},
                     invocation_id=turn),
        ]
        return self.store.append(session_id, events)

    def _event(self, type: EventType, data: dict[str, Any]) -> NewEvent:
        """A system event (the store stamps it)."""
        return NewEvent(type=type, author=Author.SYSTEM, data=data)

    def _phase_events(
        self, phase: str, summary: str | None, resume_ready: bool | None
    ) -> list[NewEvent]:
        data: dict[str, Any] = {"to": phase}
        if resume_ready is not None:
            data["resume_ready"] = resume_ready
        events = [self._event(EventType.PHASE_CHANGED, data)]
        if phase in self.store.lifecycle.final_phases:
            events.append(
                self._event(EventType.SESSION_FINALIZED, {"outcome": phase, "summary": summary})
            )
        return events

    def finalize_session(
        self, session_id: str, outcome: str, summary: str | None = None
    ) -> Session:
        """End a session with an outcome.

        Args:
            session_id: The session.
            outcome: A final phase: `completed`, `failed` or `abandoned` by default.
            summary: What happened, for people.

        Returns:
            The session: phase = outcome, status `terminated`, `finalized_at` and
            `duration_seconds` (from `created_at`, in seconds) set.

        Raises:
            InvalidTransitionError: The outcome is not a final phase (lists the valid ones)
                or the session is already terminated; nothing was written.
        """
        self.store.lifecycle.check_outcome(outcome)
        if summary is not None and not isinstance(summary, str):
            raise InvalidEventError(f"summary must be a string, not {summary!r}")
        self.store.append(session_id, self._phase_events(outcome, summary, None))
        return self.store.get_session(session_id)

    def _status(
        self,
        session_id: str,
        to: Status,
        reason: str | None,
        expected_version: int | None = None,
    ) -> Session:
        data: dict[str, Any] = {"to": to.value}
        if reason is not None:
            data["reason"] = reason
        self.store.append(
            session_id,
            [self._event(EventType.STATUS_CHANGED, data)],
            expected_version=expected_version,
        )
        return self.store.get_session(session_id)

    def suspend(self, session_id: str, reason: str | None = None) -> Session:
        """Pause an active session: it keeps everything but refuses new turns until resumed.

        Raises:
            InvalidTransitionError: The session is not active; nothing was written.
        """
        return self._status(session_id, Status.SUSPENDED, reason)

    def resume(
        self, session_id: str, reason: str | None = None, *, expected_version: int | None = None
    ) -> Session:
        """Pick a session up again: a suspended one becomes active; on an active one the
        resume is recorded (`resume_count` + 1). This does not consult the resume policy;
        ask `should_resume` first and pass its `decision.version` as `expected_version`,
        so two delegations cannot both resume on the same decision.

        Raises:
            InvalidTransitionError: The session is terminated; nothing was written.
            ConcurrencyError: `expected_version` is not the current version (the session
                changed since the decision); nothing was written.
        """
        return self._status(session_id, Status.ACTIVE, reason, expected_version)

    def terminate(self, session_id: str, reason: str | None = None) -> Session:
        """End a session without an outcome; it refuses every
        append from then on. Use `finalize_session` to record an outcome.

        Raises:
            InvalidTransitionError: It is already terminated; nothing was written.
        """
        return self._status(session_id, Status.TERMINATED, reason)

    # -- resume policy ------------------------------------------------------------------

    def should_resume(self, session_id: str) -> ResumeDecision:
        """Decide whether a session may resume (the resume policy).

        Returns:
            A `ResumeDecision` (truthy when it may resume) with a machine-readable `reason`
            (`session_resumable`, `not_found`, `corrupted`, `terminated`,
            `not_resume_ready`, `phase_not_resumable`, `timeout_exceeded`,
            `too_many_errors`) and the context a resumed agent needs, including the
            session's `version` (pass it to `resume(..., expected_version=)` so nothing
            can change between the decision and the resume). Never raises for a missing,
            invalid or corrupted session id: those are reasons (`not_found`, `corrupted`).
        """
        try:
            session = self.store.get_session(session_id)
        except (SessionNotFoundError, InvalidSessionIdError):
            return ResumeDecision(
                session_id=str(session_id),
                resume=False,
                reason=ResumeReason.NOT_FOUND,
                detail=f"no session {session_id!r}",
            )
        except CorruptedSessionError as exc:
            return ResumeDecision(
                session_id=session_id,
                resume=False,
                reason=ResumeReason.CORRUPTED,
                detail=f"the session cannot be read back: {exc.detail}",
            )
        return decide_resume(session, self.policy, self.clock())

    # -- listing ------------------------------------------------------------------------

    def list_sessions(
        self,
        *,
        active_only: bool = False,
        agent_name: str | None = None,
        app_name: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "updated_desc",
    ) -> SessionPage:
        """List sessions, newest activity first unless `order` says otherwise, across
        every agent unless filtered (team-wide listing).

        Args:
            active_only: Only `active` sessions (not suspended, not terminated).
            agent_name, app_name, user_id, status, phase: Exact matches.
            updated_after, updated_before: Last activity bounds (aware datetimes).
            limit: 1-1000 sessions per page.
            cursor: `next_cursor` of the previous page.
            order: `"updated_desc"` (default), `"updated_asc"`, `"created_desc"` or
                `"created_asc"`, as `SessionStore.list_sessions`.

        Raises:
            ConfigurationError: `status` is not a session status (`active`, `suspended`,
                `terminated`), `phase` is not one of the store lifecycle's phases,
                `active_only` with another `status`, a bad limit or an unknown `order`.
        """
        # An unknown status or phase is refused by the store itself (every store does).
        if active_only:
            if status not in (None, Status.ACTIVE.value):
                raise ConfigurationError(f"active_only contradicts status={status!r}")
            status = Status.ACTIVE.value
        return self.store.list_sessions(
            app_name=app_name,
            user_id=user_id,
            agent_name=agent_name,
            status=status,
            phase=phase,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
            order=order,
        )

    def iter_sessions(self, *, page_size: int = 200, **filters: Any) -> Iterator[SessionPage]:
        """Yield every page of `list_sessions(**filters)`, following the cursors.

        Args:
            page_size: Sessions per page, 1-1000.
            **filters: As `list_sessions` (without `limit`/`cursor`), `order` included.

        Yields:
            `SessionPage`s in `order` (newest activity first by default); the last has
            `next_cursor=None`.

        Raises:
            ConfigurationError: A bad page size or contradictory filters.
        """
        cursor: str | None = None
        while True:
            page = self.list_sessions(limit=page_size, cursor=cursor, **filters)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- retention ----------------------------------------------------------------------

    def cleanup(
        self,
        older_than: timedelta,
        *,
        only_finalized: bool = False,
        dry_run: bool = False,
        batch_size: int = 100,
        on_progress: Callable[[int], None] | None = None,
    ) -> CleanupResult:
        """Delete sessions whose last activity is older than a cut-off (retention).

        Args:
            older_than: Age of the last activity, e.g. `timedelta(hours=24)`; must be >= 0.
            only_finalized: Only `terminated` sessions (finalized or terminated).
            dry_run: List what would be deleted; delete nothing.
            batch_size: Sessions listed per page (1-1000). Each session is deleted in its
                own short transaction, so no lock is held across a batch, and only if its
                version is still the one listed (`delete_session(expected_version=)`): a
                session that got an event meanwhile is kept, in `skipped_changed`.
            on_progress: Called with the number of sessions handled so far, after each.

        Returns:
            The ids deleted (or that would be), the cut-off, and old sessions skipped
            because they cannot be read back.

        Raises:
            ConfigurationError: A negative `older_than` or a bad `batch_size`.
        """
        if older_than < timedelta(0):
            raise ConfigurationError(f"older_than must not be negative, not {older_than}")
        try:
            cutoff = self.clock() - older_than
        except OverflowError:  # older than year 1: nothing can be that old
            cutoff = datetime.min.replace(tzinfo=timezone.utc)
        status = Status.TERMINATED.value if only_finalized else None
        ids: list[str] = []
        corrupted: list[str] = []
        changed: list[str] = []
        # The cursor is strictly below the last row seen, so deleting rows already passed
        # does not skip any: walk the pages and delete as we go.
        for page in self.iter_sessions(
            page_size=batch_size, updated_before=cutoff, status=status
        ):
            corrupted += page.corrupted
            for session in page.sessions:
                if not dry_run:
                    try:
                        # Only the version listed: an append since then keeps the session.
                        self.store.delete_session(session.id, expected_version=session.version)
                    except SessionNotFoundError:
                        continue  # deleted by someone else meanwhile
                    except ConcurrencyError:
                        changed.append(session.id)
                        continue
                ids.append(session.id)
                if on_progress is not None:
                    on_progress(len(ids))
        return CleanupResult(
            session_ids=ids,
            dry_run=dry_run,
            cutoff=cutoff,
            skipped_corrupted=corrupted,
            skipped_changed=changed,
        )

    # -- metrics ------------------------------------------------------------------------

    def stats(self, **filters: Any) -> SessionStats:
        """Session metrics over every session matching `list_sessions` filters.

        Reads every matching snapshot once (O(sessions), no events read).

        Returns:
            A `SessionStats`: counts, rates from 0 to 1, durations in seconds.

        Raises:
            ConfigurationError: Contradictory or bad filters.
        """
        by_status: Counter[str] = Counter()
        by_phase: Counter[str] = Counter()
        by_agent: Counter[str] = Counter()
        resumed = errored = 0
        durations: list[float] = []
        corrupted: list[str] = []
        tokens: dict[str, Counter[str]] = {}
        for page in self.iter_sessions(page_size=1000, **filters):
            corrupted += page.corrupted
            for s in page.sessions:
                by_status[s.status] += 1
                by_phase[s.phase] += 1
                by_agent[s.agent_name or "-"] += 1
                resumed += s.resume_count > 0
                errored += s.error_count > 0
                if s.duration_seconds is not None:
                    durations.append(s.duration_seconds)
                agent_tokens = tokens.setdefault(s.agent_name or "-", Counter())
                agent_tokens["model_calls"] += s.model_calls
                agent_tokens["input_tokens"] += s.input_tokens
                agent_tokens["output_tokens"] += s.output_tokens
        total = sum(by_status.values())
        durations.sort()
        return SessionStats(
            total=total,
            by_status=dict(by_status.most_common()),
            by_phase=dict(by_phase.most_common()),
            by_agent=dict(by_agent.most_common()),
            resume_rate=resumed / total if total else 0.0,
            error_rate=errored / total if total else 0.0,
            median_duration_seconds=statistics.median(durations) if durations else None,
            p95_duration_seconds=_nearest_rank(durations, 0.95) if durations else None,
            finalized=len(durations),
            corrupted=corrupted,
            model_calls=sum(c["model_calls"] for c in tokens.values()),
            input_tokens=sum(c["input_tokens"] for c in tokens.values()),
            output_tokens=sum(c["output_tokens"] for c in tokens.values()),
            tokens_per_session=(
                sum(c["input_tokens"] + c["output_tokens"] for c in tokens.values()) / total
                if total else 0.0
            ),
            tokens_by_agent={
                agent: {k: c[k] for k in ("model_calls", "input_tokens", "output_tokens")}
                for agent, c in sorted(tokens.items())
                if c["model_calls"]
            },
        )


def _nearest_rank(ordered: list[float], fraction: float) -> float:
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def _check_object(name: str, value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise InvalidEventError(f"{name} must be a JSON object, not {value!r}")


# -- continuing a user's session ------------------------------------------------------------

_SLOT_ATTEMPTS = 3
"""Reads of one default-session id before moving on, when it vanishes between two reads."""


def default_session_id(app_name: str, user_id: str, agent_name: str, number: int) -> str:
    """The id of a user's `number`-th default session of an agent in an app.

    The same (app, user, agent, number) always gives the same id, so processes that create
    a user's default session at the same moment all name the same one, and the store
    creates it once (`SessionExistsError` for the others).

    Args:
        app_name, user_id, agent_name: Whose session, of which agent, in which app (any
            strings; they are hashed, so the id is always a valid session id).
        number: 1 for the first default session, 2 for the one after it, and so on.

    Returns:
        `default-<24 hex digits>-<number>`, e.g. `default-5c1f0e2a9b7d4c3e8f6a1b2c-1`.
    """
    key = json.dumps([app_name, user_id, agent_name]).encode()
    return f"default-{hashlib.sha256(key).hexdigest()[:24]}-{number}"


def continue_or_create_session(
    store: SessionStore,
    *,
    app_name: str,
    user_id: str,
    agent_name: str,
    title: str | None = None,
) -> tuple[Session, bool]:
    """Continue the user's most recent active session of an agent, or create one; race-free.

    The rule every caller follows (`agentledger run`, `chat` and `demo`):

    1. If the user has `active` sessions of this agent (`agent_name`) in this app, the
       one with the most recent activity is continued, whatever its id and however it was
       made. Sessions of other agents, apps or users are never continued.
    2. Otherwise a session is created under the first free default-session id of
       (app, user, agent): `default_session_id(..., n)` for n = 1, 2, ... An id whose
       session is stored but not active (suspended, terminated, or unreadable), or
       belongs to another app, user or agent, is skipped; a suspended or terminated
       session is never continued here (resume it by id). A deleted session frees its id.

    Concurrent callers for a user with no active session try the same ids in the same
    order and the store creates each id at most once, so they all end on one session: one
    creates it (`created` true), the others find it active and continue it.

    Args:
        store: Any `SessionStore`.
        app_name, user_id: Whose session, in which app.
        agent_name: The agent whose session is continued or created.
        title: The title of a new session; a continued one keeps its own.

    Returns:
        `(session, created)`: `created` is true when this call created the session.

    Raises:
        InvalidEventError: An empty `app_name`, `user_id` or `agent_name`.
        StoreError: The store failed.

    Cost: one `list_sessions`, and when nothing is active one read per stored default
    session of that agent that is no longer active, before the create.
    """
    for name, value in (("app_name", app_name), ("user_id", user_id), ("agent_name", agent_name)):
        if not isinstance(value, str) or not value:
            raise InvalidEventError(f"{name} must be a non-empty string, not {value!r}")
    page = store.list_sessions(
        app_name=app_name, user_id=user_id, agent_name=agent_name, status="active", limit=1
    )
    if page.sessions:
        return page.sessions[0], False
    number = 0
    while True:
        number += 1
        session_id = default_session_id(app_name, user_id, agent_name, number)
        for _ in range(_SLOT_ATTEMPTS):
            try:
                existing = store.get_session(session_id)
            except SessionNotFoundError:
                try:
                    created = store.create_session(
                        app_name=app_name,
                        user_id=user_id,
                        agent_name=agent_name,
                        title=title,
                        session_id=session_id,
                    )
                except SessionExistsError:
                    continue  # another caller created it just now: read it
                return created, True
            except CorruptedSessionError:
                break
            if (
                existing.status == Status.ACTIVE
                and (existing.app_name, existing.user_id, existing.agent_name)
                == (app_name, user_id, agent_name)
            ):
                return existing, False
            break


# -- the same API as plain functions, on the default store -----------------------------------

_default: SessionManager | None = None
_default_lock = threading.Lock()


def default_manager() -> SessionManager:
    """The `SessionManager` the module-level functions use: on `open_store()` (the default
    store: `$AGENTLEDGER_STORE`, else `sqlite:///agentledger.db`), opened on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SessionManager(open_store())
        return _default


def create_session(
    agent_name: str, purpose: str | None = None, metadata: Mapping[str, Any] | None = None
) -> str:
    """Create a session; return its id. See `SessionManager.create_session`."""
    return default_manager().create_session(agent_name, purpose, metadata).id


def update_state(
    agent_id: str,
    phase: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Record a phase, metadata and/or an error; `True` when done. Raises as
    `SessionManager.update_state` (an invalid phase raises `InvalidTransitionError`)."""
    default_manager().update_state(agent_id, phase=phase, metadata=metadata, error=error)
    return True


def should_resume(agent_id: str) -> ResumeDecision:
    """The resume decision; truthy when the session may resume."""
    return default_manager().should_resume(agent_id)


def get_session(agent_id: str) -> dict[str, Any] | None:
    """The session as a JSON-ready dict, or `None` if there is no such session.

    Raises:
        InvalidSessionIdError: The id is not a valid session id.
        CorruptedSessionError: The session cannot be read back.
    """
    try:
        return default_manager().get_session(agent_id).model_dump(mode="json")
    except SessionNotFoundError:
        return None


def finalize_session(agent_id: str, outcome: str, summary: str | None = None) -> bool:
    """Finalize with an outcome; `True` when done. Raises as
    `SessionManager.finalize_session`."""
    default_manager().finalize_session(agent_id, outcome, summary)
    return True


def cleanup_old_sessions(hours: float) -> int:
    """Delete sessions idle for more than `hours` hours; return how many."""
    return default_manager().cleanup(timedelta(hours=hours)).count


def list_sessions(active_only: bool = False, agent_name: str | None = None) -> list[dict[str, Any]]:
    """Every matching session as a JSON-ready dict, newest activity first."""
    return [
        s.model_dump(mode="json")
        for page in default_manager().iter_sessions(active_only=active_only, agent_name=agent_name)
        for s in page.sessions
    ]
