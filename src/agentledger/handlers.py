"""Durable event handlers: code that reacts to stored events, exactly once per derived event.

An `EventHandler` declares the event types it handles (`handled_event_types`) and
`handle_event(event, session)`, which may return derived events (a `NewEvent`, a list of
them, or `None`; it may be `async`). A `HandlerRunner` follows the store-wide feed
(`SessionStore.read_feed`) from each handler's **stored position**, calls the handler for
each matching event, appends what it returns to that event's session, then stores the
handler's new position. So:

- every event of the feed is handled, also those written by other processes or while the
  handler was not running (`agentledger handlers run` catches up);
- each derived event exists exactly once, even if the process dies between its append and
  the position update: derived events carry idempotency keys
  (`handler:<name>:<position>:<n>`), so handling the same event again appends nothing;
- derived events have `author` = the handler's name and `data["caused_by"]` = the `seq`
  and feed `position` of the event that caused them (the handler's own events are not
  handed back to it, nor are events whose payload was erased before the handler reached
  them: their `events_erased` record is handed over instead, to handlers of that type);
- a handler that raises stops at that event: its position stays, the failure count and the
  error are stored (`status`), and the runner retries it with exponential backoff; other
  handlers and appends go on.

Positions live in the store as the shared state of the reserved app `agentledger.handlers`
(one `app:<handler name>` key each), changed with compare-and-set, so two runners of one
handler never both move it. Side effects outside the ledger (calling an API) happen at
least once: a runner killed after `handle_event` and before storing the position calls it
again for that event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from agentledger.core.events import Event, NewEvent
from agentledger.core.session import Session
from agentledger.errors import (
    ConfigurationError,
    DuplicateEventKeyError,
    SessionNotFoundError,
    StateConflictError,
)
from agentledger.stores.base import SessionStore

__all__ = [
    "HANDLERS_APP",
    "EventHandler",
    "HandlerRunner",
    "HandlerStatus",
    "check_handler",
]

_log = logging.getLogger(__name__)

HANDLERS_APP = "agentledger.handlers"
"""The app whose shared `app:` state holds each handler's position (`app:<name>`)."""

HandlerResult = NewEvent | Sequence[NewEvent] | None


class EventHandler(ABC):
    """A durable reaction to stored events (see the module docstring).

    Subclass it and set `handler_name` (unique in the store; it names the stored position,
    so renaming a handler starts it from the beginning of the feed) and
    `handled_event_types` (an empty list handles every type), and implement
    `handle_event`.

    A handler is also a plugin: enable it like one (`open_store(url, plugins=[handler])`,
    an entry point, `--plugin`), or have a plugin return it from its `event_handlers`
    hook. The store then runs it right after each append, in the writing process
    (`inline`), and `agentledger handlers run --plugin NAME` catches it up with whatever
    was written elsewhere.

    Attributes:
        inline: Whether a store whose plugins provide this handler runs it right after
            each append commits (default `True`: derived events exist when `append`
            returns). Set it to `False` for a slow handler (a network export): the
            appends then do not wait for it, and a worker (`agentledger handlers run
            --follow`) handles the events instead.
    """

    inline: bool = True

    @property
    @abstractmethod
    def handler_name(self) -> str:
        """The handler's name: 1 to 100 characters; the `author` of its derived events."""

    @property
    @abstractmethod
    def handled_event_types(self) -> list[str]:
        """The event types it handles; `[]` for every type."""

    @abstractmethod
    def handle_event(
        self, event: Event, session: Session
    ) -> HandlerResult | Awaitable[HandlerResult]:
        """Handle one stored event.

        Args:
            event: The event, as stored.
            session: Its session as it is now (it may have moved past the event), with
                the events this handler derived from earlier events already in it.

        Returns:
            Derived events to append to the event's session (a `NewEvent`, a list, or
            `None`); may be a coroutine. Their `author` becomes the handler's name.

        Raises:
            Exception: Anything: the handler stops at this event and is retried later.
        """


@dataclass(frozen=True)
class HandlerStatus:
    """Where a handler is.

    Attributes:
        name: The handler's name.
        position: The feed position it has handled up to (0: nothing yet).
        feed_position: The feed's last position when asked.
        lag: `feed_position - position`: events of the feed not yet looked at.
        failures: Consecutive failures at the next event (0 when healthy).
        last_error: The last failure, as `Type: message`; `None` once it succeeds again.
        updated_at: When its stored state last changed (UTC ISO 8601), or `None`.
    """

    name: str
    position: int
    feed_position: int
    lag: int
    failures: int
    last_error: str | None
    updated_at: str | None

    @property
    def failing(self) -> bool:
        """Whether the handler is stopped at a failing event."""
        return self.failures > 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def check_handler(handler: Any) -> EventHandler:
    """Return `handler` if it has what a durable event handler needs.

    Raises:
        ConfigurationError: No `handler_name` of 1 to 100 characters, no list of strings
            as `handled_event_types`, or no callable `handle_event`.
    """
    name = getattr(handler, "handler_name", None)
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.strip():
        raise ConfigurationError(f"an event handler needs a handler_name of 1-100 characters, not {name!r}")
    types = getattr(handler, "handled_event_types", None)
    if not isinstance(types, (list, tuple, set, frozenset)) or not all(isinstance(t, str) for t in types):
        raise ConfigurationError(f"handler {name!r}: handled_event_types must be a list of strings")
    if not callable(getattr(handler, "handle_event", None)):
        raise ConfigurationError(f"handler {name!r} has no handle_event method")
    return handler  # type: ignore[no-any-return]


def _resolve(value: Any) -> HandlerResult:
    """The result of `handle_event`, awaited if it is a coroutine (in a fresh event loop,
    on a worker thread when this thread already runs one)."""
    if not inspect.isawaitable(value):
        return value  # type: ignore[no-any-return]

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())  # type: ignore[no-any-return]
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()  # type: ignore[no-any-return]


class HandlerRunner:
    """Runs durable event handlers over a store's feed.

    Args:
        store: The store whose feed the handlers follow and whose sessions get the derived
            events.
        handlers: `EventHandler`s (or objects with the same three members); names unique.
            A handler with a `bind(store)` method is given the store first.
        batch: Feed events read per page (1 to 10,000).
        max_backoff: The longest wait between retries of a failing handler, in seconds;
            retries start at 1 s and double.

    Raises:
        ConfigurationError: A handler without a valid name, types or `handle_event`, two
            handlers of one name, or a bad `batch`/`max_backoff`.
    """

    def __init__(
        self,
        store: SessionStore,
        handlers: Iterable[EventHandler],
        *,
        batch: int = 500,
        max_backoff: float = 60.0,
    ) -> None:
        self.store = store
        self.handlers = [check_handler(h) for h in handlers]
        for handler in self.handlers:  # a handler that reads the store is given it
            bind = getattr(handler, "bind", None)
            if callable(bind):
                bind(store)
        names = [h.handler_name for h in self.handlers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"handler names must be unique: {names}")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10_000:
            raise ConfigurationError(f"batch must be an int from 1 to 10000, not {batch!r}")
        if not isinstance(max_backoff, (int, float)) or not 0 < max_backoff < float("inf"):
            raise ConfigurationError(f"max_backoff must be a positive number, not {max_backoff!r}")
        self.batch = batch
        self.max_backoff = float(max_backoff)
        self._locks = {name: threading.Lock() for name in names}
        self._retry_at: dict[str, float] = {}
        self._again: set[str] = set()

    # -- stored state ---------------------------------------------------------------------

    def _state(self, name: str) -> dict[str, Any]:
        stored = self.store.get_scoped_state(HANDLERS_APP).get(f"app:{name}")
        return dict(stored) if isinstance(stored, dict) else {}

    def _save(self, name: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """Compare-and-set the handler's state; False when another runner moved it."""
        key = f"app:{name}"
        try:
            self.store.update_scoped_state(
                HANDLERS_APP, None, {key: after}, expected_state={key: before or None}
            )
        except StateConflictError:
            return False
        return True

    def status(self) -> list[HandlerStatus]:
        """Every handler's position, lag and failures, as stored."""
        head = self.store.feed_position()
        stored = self.store.get_scoped_state(HANDLERS_APP)
        found = []
        for handler in self.handlers:
            state = stored.get(f"app:{handler.handler_name}") or {}
            position = int(state.get("position", 0))
            found.append(
                HandlerStatus(
                    name=handler.handler_name,
                    position=position,
                    feed_position=head,
                    lag=max(head - position, 0),
                    failures=int(state.get("failures", 0)),
                    last_error=state.get("last_error"),
                    updated_at=state.get("updated_at"),
                )
            )
        return found

    # -- running ----------------------------------------------------------------------------

    def run_once(self, max_pages: int | None = None) -> int:
        """Catch every handler up with the feed, now (a failing handler whose retry is not
        due yet is skipped).

        A handler already running in another call of this runner (another thread, or a
        derived event's own append calling back here) is not run twice: the call returns
        at once for it, and the running call reads the feed once more before it stops,
        so an event committed meanwhile is not left waiting.

        Args:
            max_pages: Read at most this many feed pages (`batch` events each) per
                handler and pass, then stop (the rest waits for the next call); `None`
                for no limit. Inline runs use it so that the first append after a long
                pause does not wait for the whole backlog. (A pass asked for by another
                caller meanwhile gets the same allowance.)

        Returns:
            How many events the handlers handled (called `handle_event` for). Never
            raises for a handler's failure: it is stored.
        """
        handled = 0
        for handler in self.handlers:
            handled += self._catch_up(handler, max_pages)
        return handled

    def follow(
        self, stop: threading.Event | None = None, poll_interval: float = 0.5
    ) -> None:
        """Keep handlers caught up until `stop` is set (or forever): `run_once`, then wait
        `poll_interval` seconds when there was nothing to do."""
        stop = stop or threading.Event()
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(poll_interval)

    def _catch_up(self, handler: EventHandler, max_pages: int | None = None) -> int:
        name = handler.handler_name
        lock = self._locks[name]
        handled = 0
        while True:
            if self._retry_at.get(name, 0.0) > time.monotonic():
                return handled
            if not lock.acquire(blocking=False):
                # Another call is at it: ask it to look once more after it is done
                # (what this caller committed may be past the page it read last).
                self._again.add(name)
                if lock.locked():
                    return handled
                continue  # it let go meanwhile: take over
            try:
                self._again.discard(name)
                handled += self._run(handler, max_pages)
            finally:
                lock.release()
            if name not in self._again:
                return handled

    def _run(self, handler: EventHandler, max_pages: int | None = None) -> int:
        """Handle the feed past the handler's stored position, a page at a time: derived
        events are appended per session once per page (one transaction each; earlier when
        the handler is about to see the same session again, so that it sees them), then
        the position is stored once per page. A crash in between repeats the page: its derived
        events are found by their keys and not stored again. At most `max_pages` pages are
        read when it is not `None`."""
        name = handler.handler_name
        wanted = frozenset(handler.handled_event_types)
        state = self._state(name)
        position = int(state.get("position", 0))
        handled = 0
        while True:
            if max_pages is not None:
                if max_pages <= 0:
                    return handled
                max_pages -= 1
            page = self.store.read_feed(position, self.batch)
            if not page:
                return handled
            pending: dict[str, list[list[NewEvent]]] = {}
            failure: tuple[int, Exception] | None = None
            for item in page:
                event = item.event
                # An erased event's payload is gone: nothing to handle (its events_erased
                # record is an event of its own, for handlers that follow erasures).
                skip = event.erased or (wanted and event.type not in wanted)
                if skip or event.author == name:
                    position = item.position
                    continue
                if event.session_id in pending:
                    # The handler sees the session with what it derived before (its own
                    # state in the metadata, say): store that first.
                    self._flush({event.session_id: pending.pop(event.session_id)})
                try:
                    derived = self._handle(handler, item.position, event)
                except Exception as exc:  # noqa: BLE001 (a handler's failure is stored)
                    failure = (item.position, exc)
                    break
                if derived:
                    pending.setdefault(event.session_id, []).append(derived)
                handled += 1
                position = item.position
            self._flush(pending)
            if failure is not None:
                at, error = failure
                failures = int(state.get("failures", 0)) + 1
                failed = {
                    "position": position,
                    "failures": failures,
                    "last_error": f"{type(error).__name__}: {error}"[:2000],
                    "failed_at_position": at,
                    "updated_at": _now(),
                }
                self._save(name, state, failed)
                delay = min(2.0 ** (failures - 1), self.max_backoff)
                self._retry_at[name] = time.monotonic() + delay
                _log.warning(
                    "event handler %s failed at feed position %d (retry in %.0f s): %s",
                    name, at, delay, error,
                )
                return handled
            after = {"position": position, "failures": 0, "last_error": None, "updated_at": _now()}
            if not self._save(name, state, after):
                return handled  # another runner moved it: it goes on from there
            state = after
            self._retry_at.pop(name, None)

    def _flush(self, pending: dict[str, list[list[NewEvent]]]) -> None:
        """Append each session's derived events of a page in one transaction; when some of
        them were stored before (a repeated page), event by event instead, each batch of
        one source event all or nothing."""
        for session_id, groups in pending.items():
            try:
                self.store.append(session_id, [e for group in groups for e in group])
                continue
            except DuplicateEventKeyError:
                pass  # some were stored by an earlier run of this page
            except SessionNotFoundError:
                continue  # deleted since
            for group in groups:
                try:
                    self.store.append(session_id, group)
                except (DuplicateEventKeyError, SessionNotFoundError):
                    pass  # stored before (with other content if the handler varies)

    def _handle(self, handler: EventHandler, position: int, event: Event) -> list[NewEvent]:
        """Call the handler; return its derived events, ready to append (keys, author,
        `caused_by`)."""
        try:
            session = self.store.get_session(event.session_id)
        except SessionNotFoundError:
            return []  # deleted since: nothing to add to
        result = _resolve(handler.handle_event(event, session))
        if result is None:
            return []
        derived = [result] if isinstance(result, NewEvent) else list(result)
        name = handler.handler_name
        events = []
        for n, new in enumerate(derived):
            if not isinstance(new, NewEvent):
                raise TypeError(f"handle_event returned {type(new).__name__}, not NewEvent")
            events.append(
                NewEvent.model_validate(
                    {
                        **new.model_dump(),
                        "author": name,
                        "key": f"handler:{name}:{position}:{n}",
                        "data": {**new.data, "caused_by": {"seq": event.seq, "position": position}},
                        "invocation_id": new.invocation_id or event.invocation_id,
                    }
                )
            )
        return events
