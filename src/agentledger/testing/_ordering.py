"""Conformance: events read within a time window, sessions listed in each order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from agentledger.core.session import Session
from agentledger.errors import ConfigurationError, SessionNotFoundError
from agentledger.manager import SessionManager
from agentledger.stores.base import SESSION_ORDERS, SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["OrderingConformance"]


def _expected(sessions: list[Session], order: str) -> list[str]:
    column, _, direction = order.partition("_")

    def key(s: Session) -> tuple[datetime, str]:
        return (s.created_at if column == "created" else s.updated_at, s.id)

    return [s.id for s in sorted(sessions, key=key, reverse=direction == "desc")]


class OrderingConformance(ConformanceBase):
    """`read_events(after_timestamp=, before_timestamp=)` and `list_sessions(order=)`."""

    def test_events_within_a_time_window(self, store: SessionStore) -> None:
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        for i in range(7):
            store.append(session.id, [msg(f"m{i}", type="agent_message" if i % 2 else "user_message")])
        every = store.read_events(session.id)
        low, high = every[2].timestamp, every[6].timestamp

        def within(after: datetime | None, before: datetime | None) -> list[int]:
            return [
                e.seq
                for e in every
                if (after is None or e.timestamp > after) and (before is None or e.timestamp < before)
            ]

        for after, before in ((low, None), (None, high), (low, high), (high, low)):
            got = store.read_events(session.id, after_timestamp=after, before_timestamp=before)
            assert self.seqs(got) == within(after, before)
        middle = within(low, high)
        got = store.read_events(session.id, after_timestamp=low, before_timestamp=high, limit=1)
        assert self.seqs(got) == middle[:1]
        got = store.read_events(session.id, after_timestamp=low, before_timestamp=high, last=1)
        assert self.seqs(got) == middle[-1:]
        notes = store.read_events(session.id, after_timestamp=low, types=["agent_message"])
        assert self.seqs(notes) == [s for s in within(low, None) if every[s - 1].type == "agent_message"]
        got = store.read_events(session.id, after=4, after_timestamp=low)
        assert self.seqs(got) == [s for s in within(low, None) if s > 4]
        # bounds in another timezone mean the same instant
        shifted = low.astimezone(datetime.now().astimezone().tzinfo)
        assert self.seqs(store.read_events(session.id, after_timestamp=shifted)) == within(low, None)
        future = every[-1].timestamp + timedelta(days=1)
        assert store.read_events(session.id, after_timestamp=future) == []

    def test_bad_time_bounds_are_refused(self, store: SessionStore) -> None:
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        for bad in (datetime(2026, 1, 1), "2026-01-01T00:00:00Z", 0):
            with pytest.raises(ConfigurationError):
                store.read_events(session.id, after_timestamp=bad)  # type: ignore[arg-type]
            with pytest.raises(ConfigurationError):
                store.read_events(session.id, before_timestamp=bad)  # type: ignore[arg-type]
        with pytest.raises(SessionNotFoundError):
            store.read_events("no-such-session", after_timestamp=datetime.now().astimezone())

    def test_every_order_lists_every_session_once_across_pages(self, store: SessionStore) -> None:
        app = self.unique("app")
        created = [
            store.create_session(app_name=app, user_id="ada", title=str(i)) for i in range(5)
        ]
        # Activity in another order than creation: the oldest sessions become the newest.
        for session in created[:3]:
            store.append(session.id, [msg("later")])
        sessions = [store.get_session(s.id) for s in created]
        for order in SESSION_ORDERS:
            expected = _expected(sessions, order)
            for size in (1, 2, 5, 10):
                walked: list[str] = []
                cursor = None
                while True:
                    page = store.list_sessions(app_name=app, limit=size, cursor=cursor, order=order)
                    walked += [s.id for s in page.sessions]
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
                assert walked == expected, (order, size)
            manager = SessionManager(store, app_name=app)
            pages = list(manager.iter_sessions(page_size=2, app_name=app, order=order))
            assert [s.id for p in pages for s in p.sessions] == expected
            assert len(pages) == 3
            for size, count in ((1, 5), (2, 3), (5, 1), (1000, 1)):
                pages = list(store.iter_sessions(app_name=app, order=order, page_size=size))
                assert [s.id for p in pages for s in p.sessions] == expected, (order, size)
                assert len(pages) == count and pages[-1].next_cursor is None
                assert all(p.corrupted == [] for p in pages)
        default = store.list_sessions(app_name=app, limit=10).sessions
        assert [s.id for s in default] == _expected(sessions, "updated_desc")
        assert _expected(sessions, "created_desc") != _expected(sessions, "updated_desc")

    def test_iter_sessions_filters_stops_early_and_refuses_bad_options(
        self, store: SessionStore
    ) -> None:
        app = self.unique("app")
        mine = [store.create_session(app_name=app, user_id="ada").id for _ in range(4)]
        store.create_session(app_name=app, user_id="bob")
        store.create_session(app_name=self.unique("other"), user_id="ada")
        walked = [
            s.id
            for p in store.iter_sessions(app_name=app, user_id="ada", order="created_asc",
                                         page_size=3)
            for s in p.sessions
        ]
        assert walked == mine
        walk = store.iter_sessions(app_name=app, page_size=1)
        first = next(walk)
        assert len(first.sessions) == 1 and first.next_cursor is not None
        del walk  # stopping early is fine: one page was read
        bad_options: list[dict[str, Any]] = [
            {"page_size": 0}, {"page_size": 1001}, {"order": "newest"}, {"status": "sleeping"}
        ]
        for bad in bad_options:
            with pytest.raises(ConfigurationError):
                next(store.iter_sessions(app_name=app, **bad))

    def test_unknown_orders_and_foreign_cursors_are_refused(self, store: SessionStore) -> None:
        app = self.unique("app")
        for _ in range(3):
            store.create_session(app_name=app, user_id="ada")
        for bad in ("newest", "", "UPDATED_DESC", None, 1):
            with pytest.raises(ConfigurationError):
                store.list_sessions(app_name=app, order=bad)  # type: ignore[arg-type]
        cursors = {
            order: store.list_sessions(app_name=app, limit=1, order=order).next_cursor
            for order in SESSION_ORDERS
        }
        for made_for, cursor in cursors.items():
            assert cursor is not None
            for order in SESSION_ORDERS:
                if order != made_for:
                    with pytest.raises(ConfigurationError):
                        store.list_sessions(app_name=app, cursor=cursor, order=order)
