"""Conformance: any string of 1-512 characters is a session id, stored and read back exactly."""

from __future__ import annotations

import pytest

from agentledger.core.events import NewEvent
from agentledger.errors import InvalidSessionIdError, SessionExistsError, SessionNotFoundError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, msg

__all__ = ["SessionIdConformance"]

ODD_SESSION_IDS = [
    "user/42",
    "t/1 x",
    "/",
    "//double//",
    "a/../b",
    "..",
    ".",
    "../x",
    " leading",
    "trailing ",
    " ",
    "a\\b",
    "C:\\x",
    "%2F",
    "100%",
    "?q=1&x#frag",
    "_locks",
    ".git",
    "current",
    "café",
    "日本語/セッション",
    "🦜 parrot",
    "zero\u200bwidth",
    "\u00a0nbsp",
    "x" * 512,
    "é" * 512,
    "🦜" * 512,
]
"""Session ids that look like paths, URLs, padding or other scripts: each is one session,
its id kept to the last character."""


class SessionIdConformance(ConformanceBase):
    """Session ids: `/`, spaces, `..`, Unicode and 512 characters round-trip; ids that
    differ only by case or Unicode normalization are different sessions."""

    @pytest.mark.parametrize("session_id", ODD_SESSION_IDS)
    def test_any_string_is_a_session_id(self, store: SessionStore, session_id: str) -> None:
        other = store.create_session(app_name="ids", user_id="bob", state={"mine": "other"})
        created = store.create_session(
            app_name="ids", user_id="ada", session_id=session_id, state={"mine": session_id}
        )
        assert created.id == session_id
        stored = store.append(session_id, [msg("hello", state_delta={"n": 1})])
        assert [(e.session_id, e.seq) for e in stored] == [(session_id, 2)]
        got = store.get_session(session_id)
        assert (got.id, got.version, got.state) == (session_id, 2, {"mine": session_id, "n": 1})
        assert [e.session_id for e in store.read_events(session_id)] == [session_id] * 2
        assert store.verify_session(session_id).ok
        listed = store.list_sessions(app_name="ids", user_id="ada").sessions
        assert [s.id for s in listed] == [session_id]
        with pytest.raises(SessionExistsError):
            store.create_session(app_name="ids", user_id="ada", session_id=session_id)
        store.delete_session(session_id)
        with pytest.raises(SessionNotFoundError):
            store.get_session(session_id)
        assert store.get_session(other.id).state == {"mine": "other"}

    @pytest.mark.parametrize(
        "ids",
        [
            ("A", "a"),
            ("Session-ABC", "session-abc", "SESSION-abc"),
            ("café", "cafe\u0301"),  # NFC and NFD: look alike, two ids
            ("Å", "\u212b", "å"),  # LATIN CAPITAL A WITH RING, ANGSTROM SIGN, small
            ("straße", "STRASSE", "strasse"),
            ("x" * 511 + "a", "x" * 511 + "A"),
            ("user/42", "user%2F42", "user 42", "user-42", "user_42"),
        ],
    )
    def test_ids_that_differ_only_by_case_or_form_are_different_sessions(
        self, store: SessionStore, ids: tuple[str, ...]
    ) -> None:
        for n, session_id in enumerate(ids):
            store.create_session(
                app_name="ids", user_id="ada", session_id=session_id, state={"n": n}
            )
            store.append(session_id, [NewEvent(type="agent_message", data={"n": n})] * (n + 1))
        for n, session_id in enumerate(ids):
            got = store.get_session(session_id)
            assert (got.id, got.state, got.version) == (session_id, {"n": n}, n + 2)
            assert store.read_events(session_id)[-1].data == {"n": n}
        assert sorted(s.id for s in store.list_sessions(app_name="ids").sessions) == sorted(ids)
        store.delete_session(ids[0])
        assert sorted(s.id for s in store.list_sessions(app_name="ids").sessions) == sorted(
            ids[1:]
        )
        for session_id in ids[1:]:
            assert store.get_session(session_id).id == session_id

    def test_listing_pages_through_odd_ids(self, store: SessionStore) -> None:
        ids = ODD_SESSION_IDS[:12]
        for session_id in ids:
            store.create_session(app_name="pages", user_id="ada", session_id=session_id)
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(len(ids) + 1):
            page = store.list_sessions(app_name="pages", limit=5, cursor=cursor)
            seen += [s.id for s in page.sessions]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)
        walked = [s.id for p in store.iter_sessions(app_name="pages", page_size=5) for s in p.sessions]
        assert sorted(walked) == sorted(ids)

    @pytest.mark.parametrize(
        "bad_id", ["\x00", "a\x00b", "nul\x00/../x", "new\nline", "\x1b[31mred", "x" * 513, ""]
    )
    def test_refused_ids_are_a_typed_error_and_write_nothing(
        self, store: SessionStore, bad_id: str
    ) -> None:
        with pytest.raises(InvalidSessionIdError) as info:
            store.create_session(app_name="ids", user_id="ada", session_id=bad_id)
        assert isinstance(info.value, ValueError)
        assert "invalid session id" in str(info.value)
        assert store.list_sessions().sessions == []
