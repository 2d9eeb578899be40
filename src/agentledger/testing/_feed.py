"""Conformance: the store-wide event feed (`read_feed`, `feed_position`): every committed
event once, in commit order, none of a failed write, none of a deleted session; a follower
that reads while writers write never skips an event."""

from __future__ import annotations

import threading

import pytest

from agentledger.errors import ConcurrencyError, ConfigurationError, InvalidEventError
from agentledger.stores.base import FeedEvent, SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["FeedConformance"]


def _follow(store: SessionStore, after: int, limit: int = 1000) -> list[FeedEvent]:
    """Every feed event past `after`, read page by page."""
    found: list[FeedEvent] = []
    while page := store.read_feed(after, limit):
        found += page
        after = page[-1].position
    return found


class FeedConformance(ConformanceBase):
    """The store-wide feed, on a store other tests may write to at the same time (so each
    check looks only at its own sessions, from the position it started at)."""

    def test_events_of_every_session_in_commit_order(self, store: SessionStore) -> None:
        start = store.feed_position()
        app = self.unique("app")
        a = store.create_session(app_name=app, user_id="ada")
        b = store.create_session(app_name=app, user_id="bob")
        store.append(a.id, [msg("a1"), msg("a2")])
        store.append(b.id, [msg("b1")])
        store.append(a.id, [msg("a3")])
        mine = {a.id, b.id}
        feed = [f for f in _follow(store, start) if f.event.session_id in mine]
        assert [(f.event.session_id, f.event.seq) for f in feed] == [
            (a.id, 1), (b.id, 1), (a.id, 2), (a.id, 3), (b.id, 2), (a.id, 4),
        ]
        positions = [f.position for f in feed]
        assert positions == sorted(set(positions)) and positions[0] > start
        assert feed[-1].position <= store.feed_position()
        assert [f.event for f in feed if f.event.session_id == a.id] == store.read_events(a.id)

    def test_pages_of_one_give_the_same_feed(self, store: SessionStore) -> None:
        start = store.feed_position()
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        store.append(session.id, [msg(str(i)) for i in range(5)])
        whole = [f for f in _follow(store, start) if f.event.session_id == session.id]
        paged = [f for f in _follow(store, start, limit=1) if f.event.session_id == session.id]
        assert paged == whole and len(whole) == 6

    def test_failed_writes_never_appear(self, store: SessionStore) -> None:
        start = store.feed_position()
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        with pytest.raises(ConcurrencyError):
            store.append(session.id, [msg("stale")], expected_version=7)
        with pytest.raises(InvalidEventError):
            store.append(session.id, [msg("ok"), msg("bad", data={"x": float("nan")})])
        store.append(session.id, [msg("kept")])
        texts = [
            f.event.data.get("text")
            for f in _follow(store, start)
            if f.event.session_id == session.id
        ]
        assert texts == [None, "kept"]

    def test_a_deleted_sessions_events_leave_the_feed(self, store: SessionStore) -> None:
        start = store.feed_position()
        app = self.unique("app")
        gone = store.create_session(app_name=app, user_id="ada")
        kept = store.create_session(app_name=app, user_id="ada")
        store.append(gone.id, [msg()])
        store.delete_session(gone.id)
        again = store.create_session(app_name=app, user_id="ada", session_id=gone.id)
        assert again.id == gone.id
        feed = [f for f in _follow(store, start) if f.event.session_id in (gone.id, kept.id)]
        assert [(f.event.session_id, f.event.seq) for f in feed] == [(kept.id, 1), (gone.id, 1)]
        assert feed[-1].event == store.read_events(gone.id)[0]

    def test_erasures_and_truncations_show_in_the_feed(self, store: SessionStore) -> None:
        start = store.feed_position()
        session = store.create_session(app_name=self.unique("app"), user_id="ada")
        store.append(session.id, [msg("a"), msg("b"), msg("c")])
        store.erase_events(session.id, [2], "privacy")
        store.truncate_before(session.id, 3)
        feed = [f.event for f in _follow(store, start) if f.event.session_id == session.id]
        assert [(e.seq, e.type) for e in feed] == [
            (3, "user_message"), (4, "user_message"), (5, "events_erased"),
        ]
        assert feed == store.read_events(session.id)

    def test_a_follower_never_skips_an_event_of_concurrent_writers(
        self, store: SessionStore
    ) -> None:
        start = store.feed_position()
        app = self.unique("app")
        sessions = [store.create_session(app_name=app, user_id=f"u{i}").id for i in range(4)]
        writes = 15
        done = threading.Event()
        seen: list[FeedEvent] = []
        errors: list[BaseException] = []

        def follow() -> None:
            after = start
            try:
                while True:
                    finished = done.is_set()  # read before the page: a last page after it
                    page = store.read_feed(after, 7)
                    seen.extend(page)
                    if page:
                        after = page[-1].position
                    elif finished:
                        return
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        def write(session_id: str) -> None:
            try:
                for i in range(writes):
                    store.append(session_id, [msg(str(i))])
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        follower = threading.Thread(target=follow)
        writers = [threading.Thread(target=write, args=(sid,)) for sid in sessions]
        follower.start()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        done.set()
        follower.join(timeout=120)
        assert not errors, errors
        mine = [f for f in seen if f.event.session_id in sessions]
        assert len({(f.event.session_id, f.event.seq) for f in mine}) == len(mine)  # no repeat
        for sid in sessions:  # every event of the session, in seq order
            seqs = [f.event.seq for f in mine if f.event.session_id == sid]
            assert seqs == sorted(seqs)
            assert seqs == list(range(1, writes + 2))
        assert mine == [f for f in _follow(store, start) if f.event.session_id in sessions]

    def test_bad_arguments_are_refused(self, store: SessionStore) -> None:
        for after, limit in ((-1, 10), (0, 0), (0, 10_001), (True, 10)):
            with pytest.raises(ConfigurationError):
                store.read_feed(after, limit)
