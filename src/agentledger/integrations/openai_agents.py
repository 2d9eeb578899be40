"""The OpenAI Agents SDK's `Session` on an agentledger store: `LedgerSession`.

Give it to the SDK's `Runner` as its `session=`, and the conversation history the SDK keeps
for a session lives in an agentledger session, with our guarantees (gapless versions, crash
safety, PostgreSQL, the CLI and the HTTP view):

    >>> from agents import Agent, Runner  # doctest: +SKIP
    >>> session = LedgerSession("chat-42", "sqlite:///agentledger.db")  # doctest: +SKIP
    >>> await Runner.run(agent, "Hello", session=session)  # doctest: +SKIP

How the SDK's concepts map onto ours:
    - An SDK session id is the agentledger session id (any string), in the app
      `app_name` (default `"openai-agents"`) and for the user `user_id` (same default).
      The session is created by its first `add_items` (concurrent first writers all land).
    - Each item (`TResponseInputItem`, a JSON object) is one event of type
      `openai_agents.item` (`ITEM_EVENT`) with `data = {"item": <the item>}`; its author is
      `user` for a user message, `tool` for a tool's output, `system` for a system or
      developer message and `agent` otherwise. `agentledger sessions events <id>` lists them.
    - `add_items(items)` is one atomic `append` of one event per item.
    - `pop_item()` is a `rewind` to the seq before the newest item in effect, with the
      version it read as `expected_version` (retried when another writer moved on), so
      concurrent pops never return the same item twice. Nothing is deleted: the popped
      item stays in the ledger, undone by a `rewound` event.
    - `clear_session()` is a `rewind` to the session's first event (append-only too);
      `replace_items(items)` is that rewind and an append of `items` in one transaction
      (what the SDK's compaction uses, through its `_atomic_replace_items` hook, instead of
      clearing then adding); its bounded compaction (`_get_compaction_snapshot`) replaces
      the newest items by a rewind checked against the version read, so nothing is written
      when the session moved on under it.
    - `get_items(limit)` reads the items in effect (`read_events(effective=True)`); with
      a limit and no rewind among the newest `limit` items, only those are read
      (`read_events(last=limit)`), whatever the history's length.

The store's calls run on a worker thread (`asyncio.to_thread`) for a sync store, or are
awaited on an `AsyncSessionStore`, so the event loop never waits on a disk or a socket.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from agentledger.core.events import Event, EventType, NewEvent
from agentledger.errors import (
    ConcurrencyError,
    MissingDependencyError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.aio import AsyncSessionStore
from agentledger.stores.base import SessionStore, open_store

try:
    from agents.memory.session import SessionABC, _CompactionSnapshot
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependencyError(exc.name or "openai-agents", "openai-agents") from exc

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["DEFAULT_APP_NAME", "ITEM_EVENT", "LedgerSession"]

ITEM_EVENT = "openai_agents.item"
"""The event type of one SDK item; its `data` is `{"item": <the item, a JSON object>}`."""

DEFAULT_APP_NAME = "openai-agents"
"""The app (and default user) SDK sessions are created in."""

_WALK_STEPS = 8

_TAIL_TYPES = [ITEM_EVENT, EventType.REWOUND.value]


def _author(item: Mapping[str, Any]) -> str:
    role = item.get("role")
    if role == "user":
        return "user"
    if role in ("system", "developer"):
        return "system"
    kind = str(item.get("type", ""))
    if kind.endswith("_output"):
        return "tool"
    return "agent"


def _item(event: Event) -> TResponseInputItem:
    return cast("TResponseInputItem", event.data["item"])


class LedgerSession(SessionABC):
    """The SDK's `Session` protocol (`agents.memory.Session`) on an agentledger store.

    Args:
        session_id: The SDK's session id; also the agentledger session id.
        url_or_store: A store URL (`open_store` opens it; `close()` closes it), or an open
            `SessionStore` or `AsyncSessionStore` (shared; the caller closes it).
        app_name: The app new sessions are created in (`"openai-agents"`).
        user_id: Their user (`app_name` when `None`).
        session_settings: The SDK's `SessionSettings` (or a dict of them): its `limit` is
            what `get_items()` returns at most when called without a limit.
        **store_options: Options for `open_store` when a URL is given.

    Raises:
        ConfigurationError: A bad URL or option (`open_store`).
        InvalidSessionIdError: From the first call, when the id is unsafe (empty, over 512
            characters, or holding a control character).

    Example:
        >>> session = LedgerSession("chat-1", "memory://")
        >>> import asyncio
        >>> asyncio.run(session.add_items([{"role": "user", "content": "hi"}]))
        >>> asyncio.run(session.get_items())
        [{'role': 'user', 'content': 'hi'}]
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        url_or_store: str | SessionStore | AsyncSessionStore,
        *,
        app_name: str = DEFAULT_APP_NAME,
        user_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **store_options: Any,
    ) -> None:
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self.app_name = app_name
        self.user_id = user_id if user_id is not None else app_name
        self._owned = isinstance(url_or_store, str)
        self.store: SessionStore | AsyncSessionStore = (
            open_store(url_or_store, **store_options)
            if isinstance(url_or_store, str)
            else url_or_store
        )

    # -- the store, sync or async -------------------------------------------------------

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.store, name)
        if isinstance(self.store, AsyncSessionStore):
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    def _events(self, items: Sequence[TResponseInputItem]) -> list[NewEvent]:
        events = []
        for item in items:
            data = cast("Mapping[str, Any]", item)
            events.append(NewEvent(type=ITEM_EVENT, author=_author(data), data={"item": data}))
        return events

    async def _create(self) -> None:
        """Create the session if it is missing; a concurrent creator winning is fine."""
        try:
            await self._call(
                "create_session",
                app_name=self.app_name,
                user_id=self.user_id,
                session_id=self.session_id,
                title=f"OpenAI Agents session {self.session_id}",
                purpose="openai_agents",
            )
        except SessionExistsError:
            pass

    # -- the Session protocol -----------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the session's items in effect, oldest first.

        Args:
            limit: The newest N items only (still oldest first); `None`: the
                `session_settings.limit`, or every item. 0 or less returns `[]`.

        Returns:
            The items as `add_items` got them; `[]` for a session not written yet.

        Raises:
            CorruptedSessionError: The stored events cannot be read back.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and limit <= 0:
            return []
        try:
            if limit is not None:
                # Fast path: the newest `limit` items, when no rewind is among them, are the
                # newest in effect (no marker after them undid anything).
                tail: list[Event] = await self._call(
                    "read_events", self.session_id, types=_TAIL_TYPES, last=limit
                )
                if all(e.type == ITEM_EVENT for e in tail):
                    return [_item(e) for e in tail]
            events: list[Event] = await self._call(
                "read_events", self.session_id, types=[ITEM_EVENT], effective=True, last=limit
            )
        except SessionNotFoundError:
            return []
        return [_item(e) for e in events]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the session, atomically (all land or none), creating the
        session on its first write.

        Raises:
            InvalidEventError: An item JSON cannot hold.
            EventTooLargeError: An item over the store's `max_event_bytes`.
        """
        if not items:
            return
        events = self._events(items)
        try:
            await self._call("append", self.session_id, events)
        except SessionNotFoundError:
            await self._create()
            await self._call("append", self.session_id, events)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item in effect and return it (`None` when there is none).

        Atomic under concurrency: the rewind that undoes the item is checked against the
        version read with it, and retried when another writer moved on, so each item is
        popped at most once.
        """
        while True:
            try:
                head: list[Event] = await self._call("read_events", self.session_id, last=1)
            except SessionNotFoundError:
                return None
            if not head:
                return None
            version = head[-1].seq
            newest = await self._newest_item(head[-1])
            if newest is None:
                return None
            try:
                await self._call(
                    "rewind", self.session_id, to_seq=newest.seq - 1, expected_version=version
                )
            except ConcurrencyError:
                await asyncio.sleep(random.random() * 0.002)  # back off, then read again
                continue
            return _item(newest)

    async def _newest_item(self, head: Event) -> Event | None:
        """The newest item in effect at `head`, found by following the rewinds back from
        it (a few event reads), or by reading the events in effect after a few steps."""
        event = head
        for _ in range(_WALK_STEPS):
            if event.type == ITEM_EVENT:
                return event  # the newest event in effect at its own seq is itself
            if event.type == EventType.REWOUND.value:
                seq = int(event.data["to_seq"])  # in effect at the marker: as at to_seq
            else:
                seq = event.seq - 1  # a non-item event: the items in effect before it
            if seq < 1:
                return None
            found: list[Event] = await self._call(
                "read_events", self.session_id, after=seq - 1, limit=1
            )
            if not found or found[0].seq != seq:  # a truncated ledger: read it instead
                break
            event = found[0]
        in_effect: list[Event] = await self._call(
            "read_events", self.session_id, types=[ITEM_EVENT], effective=True
        )
        return next((e for e in reversed(in_effect) if e.seq <= head.seq), None)

    async def clear_session(self) -> None:
        """Remove every item: a rewind to the session's first event (the items stay in
        the ledger, undone). Nothing is written for a session with no item in effect."""
        if not await self.get_items(limit=1):
            return
        await self._call("rewind", self.session_id, to_seq=1)

    # -- replacing the history (compaction) ---------------------------------------------

    async def replace_items(self, items: list[TResponseInputItem]) -> None:
        """Replace every item with `items` in one transaction (`rewind(to_seq=1,
        then=...)`): a reader sees the old history or the new one, never a mix or nothing.

        Raises:
            InvalidEventError, EventTooLargeError: As `add_items`; nothing was written.
        """
        events = self._events(items)
        try:
            await self._call("rewind", self.session_id, to_seq=1, then=events)
        except SessionNotFoundError:
            await self._create()
            await self._call("rewind", self.session_id, to_seq=1, then=events)

    async def _tail(self, count: int) -> tuple[int, list[Event]]:
        """The session's version and its newest `count` item events in effect at it
        (`(0, [])` for a session not written yet)."""
        try:
            head: list[Event] = await self._call("read_events", self.session_id, last=1)
            if not head:
                return 0, []
            version = head[-1].seq
            tail: list[Event] = await self._call(
                "read_events", self.session_id, types=_TAIL_TYPES, last=count
            )
            if all(e.type == ITEM_EVENT and e.seq <= version for e in tail):
                return version, tail
            found: list[Event] = await self._call(
                "read_events", self.session_id, types=[ITEM_EVENT], effective=True
            )
        except SessionNotFoundError:
            return 0, []
        in_effect = [e for e in found if e.seq <= version]
        return version, in_effect[max(len(in_effect) - count, 0) :]

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[Any], bool] | None = None
    ) -> _CompactionSnapshot | None:
        """The SDK's hook for compaction on a bounded history (`_CompactionSnapshot`, as
        `SQLiteSession` has it): the newest `limit` items, whether they are all of them,
        and `replace_suffix(start, output)`, which replaces the items from `start` on with
        `output` in one `rewind(..., then=...)` if those items are still the newest (a
        compare-and-set: `False`, nothing written, when the session moved on under them).
        `None` (the SDK then reads the whole history) when asked to prune a prefix."""
        if prune_prefix is not None or limit < 1:
            return None
        version, events = await self._tail(limit + 1)
        complete = len(events) <= limit
        events = events[-limit:]

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            expected = events[start:]
            if not expected:
                return False
            seqs = [e.seq for e in expected]
            at = version
            while True:
                try:
                    await self._call(
                        "rewind",
                        self.session_id,
                        to_seq=seqs[0] - 1,
                        then=self._events(output),
                        expected_version=at,
                    )
                    return True
                except ConcurrencyError:
                    at, now = await self._tail(len(seqs))
                    if [e.seq for e in now] != seqs:
                        return False

        return _CompactionSnapshot([_item(e) for e in events], complete, replace_suffix)

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """The SDK's hook for an atomic replacement during compaction
        (`OpenAIResponsesCompactionSession`): `replace_items`."""
        await self.replace_items(items)
        return True

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this session opened it from a URL (else do nothing)."""
        if self._owned and not isinstance(self.store, AsyncSessionStore):
            self.store.close()

    def __repr__(self) -> str:
        return f"LedgerSession({self.session_id!r}, {self.store.url!r})"
