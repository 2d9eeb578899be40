"""The web view in a real headless Chromium (Debian's, driven by Playwright for Python)
against a real `agentledger serve` on a loopback port, with tokens: signing in, the sessions
list and its filters, a session's timeline (tool calls paired with their results, the state
as of any event checked against `project()`, across null values, removals, rewinds,
erasures, truncation and forks, j/k), live events from another process, the chat,
lifecycle actions, one user's browser kept out of another's sessions, and the bad states
(unknown or damaged session, a server restart, a revoked token, a 10,000-event session).

One server and one browser serve the whole module; each test gets a fresh browser context
(so a fresh session storage: signed out). Skipped without Playwright or Chromium, except
under `CI=true`, where that fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web view is served by the server extra")

from web_support import Server, agentledger_command, browser_or_skip  # noqa: E402

sync_playwright, CHROMIUM = browser_or_skip()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

from agentledger import NewEvent, SessionStore, open_store  # noqa: E402
from agentledger.cli.agent import load_agent  # noqa: E402
from agentledger.core.events import Event  # noqa: E402
from agentledger.core.projection import effective_ranges, project  # noqa: E402
from agentledger.errors import CorruptedSessionError  # noqa: E402
from agentledger.manager import SessionManager  # noqa: E402
from agentledger.runner import Runner  # noqa: E402
from agentledger.testing import msg  # noqa: E402

expect.set_options(timeout=15_000)

SCREENSHOTS_ENV = "AGENTLEDGER_UPDATE_SCREENSHOTS"
"""Set to 1 to copy the screenshots this module takes into docs/ (the README shows them)."""

DOCS = Path(__file__).resolve().parent.parent / "docs"

TOKENS = {
    "ada": "ada-token-0123456789abcdef",
    "bob": "bob-token-0123456789abcdef",
    "cy": "cy-token-0123456789abcdefgh",
}


@dataclass
class World:
    """The served store and what the module put in it."""

    db: str
    path: Path
    tokens_file: Path
    server: Server
    store: SessionStore
    ids: dict[str, str] = field(default_factory=dict)


def write_tokens(path: Path, users: list[str]) -> None:
    path.write_text(json.dumps({"tokens": [
        {"token": TOKENS[u], "user": u, "role": "user"} for u in users
    ]}))


def turn(store: SessionStore, session_id: str, text: str) -> None:
    list(Runner(load_agent(None), store).run(session_id, text))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("web")
    db_path = folder / "web.db"
    db = f"sqlite:///{db_path}"
    tokens_file = folder / "tokens.json"
    write_tokens(tokens_file, list(TOKENS))
    store = open_store(db)
    server = Server(db, tokens_file, wait=False)  # it starts while the data is written
    ids: dict[str, str] = {}
    for n in range(60):  # older: the "load more" pages
        store.create_session(app_name="bulk", user_id="ada", title=f"bulk {n:02d}")
    ada = SessionManager(store, app_name="reminders", user_id="ada")
    paused = store.create_session(
        app_name="reminders", user_id="ada", agent_name="planner", title="quarterly plan",
        phase="planning",
    )
    ada.update_state(paused.id, phase="approval")
    store.append(paused.id, [NewEvent(type="error", author="agent",
                                      data={"message": "the calendar API timed out"})])
    ada.suspend(paused.id, "waiting for approval")
    ids["paused"] = paused.id
    errands = store.create_session(
        app_name="reminders", user_id="ada", agent_name="reminders", title="errands",
        state={"mood": "calm"},
    )
    ids["errands"] = errands.id
    turn(store, errands.id, "remind me to buy milk")
    store.append(errands.id, [NewEvent(type="state_updated", author="user",
                                       state_delta={"mood": "busy", "temp:scratch": 1})])
    turn(store, errands.id, "list my reminders")
    ada.update_state(errands.id, phase="executing")
    ids["bob"] = store.create_session(
        app_name="reminders", user_id="bob", title="bob's secret plan"
    ).id
    ids["cy"] = store.create_session(app_name="reminders", user_id="cy", title="cy's notes").id
    ids["damaged"] = store.create_session(app_name="reminders", user_id="ada",
                                          title="damaged").id
    store.append(ids["damaged"], [msg("one"), msg("two")])
    try:
        server.wait_ready()
        yield World(db, db_path, tokens_file, server, store, ids)
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], errors  # no uncaught script error on any page


def sign_in(page: Page, base: str, user: str, path: str = "/") -> None:
    page.goto(base + path)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", TOKENS[user])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login")).to_be_hidden()


def listed(page: Page) -> list[str]:
    expect(page.locator("#sessions[aria-busy=false]")).to_have_count(1)
    return page.locator("#session-rows tr:not([hidden])").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )


def session_titles(page: Page) -> list[str]:
    expect(page.locator("#sessions[aria-busy=false]")).to_have_count(1)
    return page.locator("#session-rows tr:not([hidden]) a.title").all_inner_texts()


# -- signing in and the sessions page -------------------------------------------------------


def test_a_token_is_asked_for_kept_in_session_storage_and_never_in_the_url(
    page: Page, world: World
) -> None:
    base = world.server.base
    page.goto(base + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-a-token-at-all-000")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    sign_in(page, base, "ada")
    expect(page.locator("#session-rows tr").first).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('agentledger.token')") == TOKENS["ada"]
    assert TOKENS["ada"] not in page.url
    page.reload()  # the same tab keeps it
    expect(page.locator("#session-rows tr").first).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()


def test_the_list_shows_the_callers_sessions_newest_first_and_filters_them(
    page: Page, world: World
) -> None:
    sign_in(page, world.server.base, "ada")
    expect(page.locator("#session-rows tr")).to_have_count(50)  # one page
    titles = session_titles(page)
    assert titles[:3] == ["damaged", "errands", "quarterly plan"]  # newest activity first
    assert "bob's secret plan" not in titles and "cy's notes" not in titles
    row = page.locator(f"#session-rows tr[data-id='{world.ids['paused']}']")
    expect(row.locator(".badge")).to_have_text("suspended")
    expect(row.locator(".badge")).to_have_class(re.compile("status-suspended"))
    expect(row.locator(".errors")).to_have_text("1")
    expect(row.locator("time")).to_have_text(re.compile(r"just now|\d+ min ago"))

    page.click("#more")  # cursor paging
    expect(page.locator("#session-rows tr")).to_have_count(63)
    expect(page.locator("#more")).to_be_hidden()

    page.select_option("#f-status", "suspended")
    expect(page.locator("#session-rows tr")).to_have_count(1)
    assert session_titles(page) == ["quarterly plan"]
    assert "status=suspended" in page.url
    page.select_option("#f-status", "")
    page.select_option("#f-phase", "approval")
    expect(page.locator("#session-rows tr")).to_have_count(1)
    page.select_option("#f-phase", "")
    expect(page.locator("#sessions[aria-busy=false]")).to_have_count(1)
    page.fill("#f-app", "bulk")
    expect(page.locator("#sessions[aria-busy=true]")).to_have_count(1)
    # the old rows stay until the filtered list replaces them: wait for the load to end
    expect(page.locator("#sessions[aria-busy=false]")).to_have_count(1)
    expect(page.locator("#session-rows tr")).to_have_count(50)
    assert all(t.startswith("bulk") for t in session_titles(page))
    page.fill("#f-app", "")
    page.check("#f-active")
    expect(page.locator("#session-rows tr")).to_have_count(50)
    expect(page.locator(f"#session-rows tr[data-id='{world.ids['paused']}']")).to_have_count(0)
    page.uncheck("#f-active")
    page.fill("#f-agent", "reminders")
    expect(page.locator("#session-rows tr")).to_have_count(1)
    page.fill("#f-agent", "")
    expect(page.locator("#sessions[aria-busy=true]")).to_have_count(1)
    expect(page.locator("#session-rows tr")).to_have_count(50)

    page.fill("#f-q", "errand")  # search by title
    expect(page.locator("#session-rows tr:not([hidden])")).to_have_count(1)
    page.fill("#f-q", world.ids["paused"][-10:])  # by part of an id
    expect(page.locator("#session-rows tr:not([hidden])")).to_have_count(1)
    assert listed(page) == [world.ids["paused"]]


def test_searching_by_a_full_id_finds_a_session_not_loaded_yet(page: Page, world: World) -> None:
    store = world.store
    old = store.list_sessions(app_name="bulk", order="updated_asc", limit=1).sessions[0]
    sign_in(page, world.server.base, "ada")
    expect(page.locator("#session-rows tr")).to_have_count(50)
    page.fill("#f-q", old.id)
    expect(page.locator("#session-rows tr.by-id")).to_have_count(1)
    assert listed(page) == [old.id]
    page.fill("#f-q", world.ids["bob"])  # another user's: not found, not shown
    page.wait_for_timeout(600)
    assert listed(page) == []
    expect(page.locator("#list-note")).to_contain_text("No loaded session")


# -- a session -------------------------------------------------------------------------------


def test_open_a_session_tool_calls_pair_with_results_and_events_show_the_state_as_of_them(
    page: Page, world: World
) -> None:
    sid = world.ids["errands"]
    sign_in(page, world.server.base, "ada")
    page.click("#session-rows a.title >> text=errands")
    expect(page).to_have_url(re.compile(f"/sessions/{sid}$"))
    expect(page.locator("#session-status")).to_have_text("active")
    expect(page.locator("#resume-decision")).to_contain_text("phase_not_resumable")
    events = world.store.read_events(sid)
    expect(page.locator(".event")).to_have_count(len(events))
    expect(page.locator("#live")).to_have_text("live")

    call = next(e for e in events if e.type == "tool_call")
    result = next(e for e in events if e.type == "tool_result")
    call_node = page.locator(f"#seq-{call.seq}")
    expect(call_node).to_have_class(re.compile("paired"))
    expect(call_node.locator(".pair")).to_contain_text(f"result #{result.seq}")
    expect(call_node.locator(".pair")).to_contain_text("Added reminder: buy milk")
    expect(page.locator(f"#seq-{result.seq}")).to_contain_text(f"call #{call.seq}")
    # the events of one turn are grouped under it
    turn_ids = {e.invocation_id for e in events if e.invocation_id}
    expect(page.locator(".turn")).to_have_count(len(turn_ids))
    expect(page.locator(f".turn[data-invocation='{call.invocation_id}'] .event")).to_have_count(
        sum(1 for e in events if e.invocation_id == call.invocation_id)
    )

    # the state as of an event: the projection up to it, and what it changed
    page.click(f"#seq-{result.seq} .event-head .type")
    expect(page.locator("#inspector h2")).to_have_text(f"State as of #{result.seq}")
    state_at = json.loads(page.locator("#state-at pre").inner_text())
    assert state_at == {"mood": "calm", "user:reminders": ["buy milk"]}
    expect(page.locator("#state-diff")).to_contain_text("user:reminders added")
    assert f"#seq-{result.seq}" in page.url

    mood = next(e for e in events if e.type == "state_updated")
    page.click(f"#seq-{mood.seq}")
    state_at = json.loads(page.locator("#state-at pre").inner_text())
    assert state_at == {"mood": "busy", "user:reminders": ["buy milk"]}  # no temp: key
    expect(page.locator("#state-diff")).to_contain_text('mood changed: "calm" → "busy"')
    page.click("#seq-1")
    assert json.loads(page.locator("#state-at pre").inner_text()) == {"mood": "calm"}
    current = json.loads(page.locator("#current-state pre").inner_text())
    assert current == world.store.get_session(sid).state

    # keyboard: j / k move between events
    page.keyboard.press("j")
    expect(page.locator("#seq-2")).to_have_class(re.compile("selected"))
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator("#seq-2")).to_have_class(re.compile("selected"))
    expect(page.locator("#inspector h2")).to_have_text("State as of #2")


def test_a_deep_link_opens_at_its_event(page: Page, world: World) -> None:
    sid = world.ids["errands"]
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}#seq-3")
    expect(page.locator("#seq-3")).to_have_class(re.compile("selected"))
    expect(page.locator("#inspector h2")).to_have_text("State as of #3")


def test_an_event_from_a_separate_agentledger_run_appears_live(page: Page, world: World) -> None:
    sid = world.ids["errands"]
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    expect(page.locator("#live")).to_have_text("live")
    before = world.store.get_session(sid).version
    expect(page.locator(".event")).to_have_count(before)
    subprocess.run(
        [agentledger_command(), "--store", world.db, "run", "remind me to call the plumber",
         "--session", sid, "--user", "ada", "--app", "reminders"],
        check=True, timeout=60, capture_output=True,
    )
    after = world.store.get_session(sid).version
    expect(page.locator(".event")).to_have_count(after)  # each once: no duplicate, no gap
    expect(page.locator(f"#seq-{after}")).to_contain_text("Added reminder: call the plumber")
    expect(page.locator("#session-version")).to_have_text(str(after))
    seqs = page.locator(".event").evaluate_all("nodes => nodes.map(n => +n.dataset.seq)")
    assert seqs == list(range(1, after + 1))


def test_a_chat_message_runs_a_turn_and_its_events_stream_in(page: Page, world: World) -> None:
    sid = world.store.create_session(app_name="reminders", user_id="ada", title="chat").id
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    expect(page.locator("#live")).to_have_text("live")
    page.fill("#chat-input", "remind me to water the plants")
    page.press("#chat-input", "Enter")
    expect(page.locator(".event[data-type=final_output]")).to_contain_text(
        "Added reminder: water the plants"
    )
    expect(page.locator(".event[data-type=user_message]")).to_contain_text("water the plants")
    expect(page.locator(".event")).to_have_count(world.store.get_session(sid).version)
    expect(page.locator("#chat-input")).to_have_value("")


def test_lifecycle_actions_ask_for_confirmation(page: Page, world: World) -> None:
    sid = world.store.create_session(app_name="reminders", user_id="ada", title="to end").id
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    page.click("#action-suspend")
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm button[value=cancel]")
    expect(page.locator("#confirm")).to_be_hidden()
    assert world.store.get_session(sid).status == "active"
    page.click("#action-suspend")
    page.click("#confirm-ok")
    expect(page.locator("#session-status")).to_have_text("suspended")
    expect(page.locator("#action-resume")).to_be_visible()
    page.click("#action-resume")
    page.click("#confirm-ok")
    expect(page.locator("#session-status")).to_have_text("active")
    page.click("#action-finalize")
    page.select_option("#finalize-outcome", "completed")
    page.fill("#finalize-summary", "all done")
    page.click("#confirm-ok")
    expect(page.locator("#session-status")).to_have_text("terminated")
    expect(page.locator("#session-outcome")).to_have_text("completed")
    expect(page.locator("#actions button")).to_have_count(0)
    expect(page.locator("#chat")).to_be_hidden()
    expect(page.locator("#live")).to_have_text("ended")
    session = world.store.get_session(sid)
    assert (session.status, session.outcome, session.summary) == (
        "terminated", "completed", "all done"
    )


def test_the_state_the_page_computes_is_the_stores_projection_at_every_event(
    page: Page, world: World
) -> None:
    """Every state operation, null as a value, removals, escaped keys, all three scopes and
    rewinds (one back into a stretch an earlier rewind undid): the page's state as of each
    event equals `project()` of the events up to it (session keys), and at the end the
    session's state as the store reads it (with its app: and user: keys, which only this
    session writes here; a rewind leaves them as they are)."""
    store = world.store
    sid = store.create_session(
        app_name="projection", user_id="ada", title="every operation",
        state={"a": 1, "list": [1, 2], "obj": {"x": {"y": 1}}, "k/slash": 1,
               "app:tier": "gold", "user:lang": "en", "temp:t": 1},
    ).id

    def ops(*items: dict[str, Any]) -> NewEvent:
        return NewEvent(type="state_updated", author="agent", state_ops=list(items))

    store.append(sid, [
        NewEvent(type="state_updated", state_delta={"a": None, "missing": None,
                                                    "c": {"n": 1}, "temp:x": 5}),
        ops({"op": "add", "path": "/list/-", "value": 3},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "remove", "path": "/list/1"},
            {"op": "replace", "path": "/obj/x/y", "value": 2}),
        ops({"op": "move", "from": "/obj/x", "path": "/obj/z"},
            {"op": "copy", "from": "/list", "path": "/copied"},
            {"op": "test", "path": "/c/n", "value": 1}),
        ops({"op": "increment", "path": "/counter", "value": 2},
            {"op": "increment", "path": "/counter", "value": 0.5},
            {"op": "setdefault", "path": "/list", "value": []},
            {"op": "setdefault", "path": "/new", "value": {"k": 1}},
            {"op": "replace", "path": "/k~1slash", "value": 5}),
        ops({"op": "setdefault", "path": "/user:items", "value": []},
            {"op": "add", "path": "/user:items/-", "value": "x"},
            {"op": "increment", "path": "/app:count", "value": 1},
            {"op": "add", "path": "/temp:gone", "value": 1}),
        NewEvent(type="state_updated", state_delta={"list": None, "user:lang": None},
                 state_ops=[{"op": "add", "path": "/list", "value": ["again"]}]),
        NewEvent(type="state_updated", state_remove=["list", "missing", "temp:t", "user:lang"],
                 state_ops=[{"op": "add", "path": "/list", "value": ["third"]}]),
        NewEvent(type="state_updated", state_delta={"b": 2}, state_remove=["copied"]),
    ])
    store.rewind(sid, to_seq=4, then=[NewEvent(type="state_updated", state_delta={"r": 1})])
    store.append(sid, [NewEvent(type="state_updated", state_remove=["obj"],
                                state_ops=[{"op": "increment", "path": "/app:count",
                                            "value": 1}])])
    store.rewind(sid, to_seq=6)  # back into the stretch the first rewind undid
    events = store.read_events(sid)
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    expect(page.locator(".event")).to_have_count(len(events))
    shown = page.evaluate("(events) => statesOf(events)",
                          [json.loads(e.model_dump_json()) for e in events])
    for k in range(1, len(events) + 1):
        own = {key: v for key, v in shown[k - 1].items() if not key.startswith(("app:", "user:"))}
        assert own == project(events[:k]).state, f"as of #{k}"
    assert shown[-1] == store.get_session(sid).state
    assert shown[1]["a"] is None and "missing" in shown[1]  # null is a value
    page.click(f"#seq-{len(events)}")
    assert json.loads(page.locator("#state-at pre").inner_text()) == shown[-1]
    # what the events undone by the rewinds show
    undone = {e.seq for e in events} - {
        s for first, last in effective_ranges(len(events), {
            e.seq: e.data["to_seq"] for e in events if e.type == "rewound"
        }) for s in range(first, last + 1)
    } - {e.seq for e in events if e.type == "rewound" and e.seq == len(events)}
    assert undone == set(range(7, 13))  # 5 and 6 were undone, then brought back
    expect(page.locator(".event.undone")).to_have_count(len(undone))
    expect(page.locator("#seq-7 .undone-by")).to_have_text("undone by rewind at #13")
    expect(page.locator("#seq-10")).to_contain_text("rewound to #4")
    expect(page.locator("#seq-10 .undone-by")).to_have_text("undone by rewind at #13")
    expect(page.locator("#seq-5")).not_to_have_class(re.compile("undone"))
    expect(page.locator("#seq-13")).to_contain_text("rewound to #6")
    page.click("#seq-11 .event-head .type")  # state as of an undone event: as it happened
    expect(page.locator("#state-undone")).to_contain_text("undone by the rewind at #13")
    assert json.loads(page.locator("#state-at pre").inner_text())["r"] == 1
    page.click("#seq-10 .event-head .type")  # the state a rewind goes back to
    expect(page.locator("#state-diff")).to_contain_text("b removed")
    # a rewind seen live: what it undoes dims, what it brings back is in effect again
    expect(page.locator("#live")).to_have_text("live")
    store.rewind(sid, to_seq=8)
    expect(page.locator(".event")).to_have_count(14)
    expect(page.locator(".event.undone")).to_have_count(5)
    expect(page.locator("#seq-7")).not_to_have_class(re.compile("undone"))
    expect(page.locator("#seq-13 .undone-by")).to_have_text("undone by rewind at #14")
    page.click("#seq-14 .event-head .type")
    events = store.read_events(sid)
    own = {key: value for key, value in json.loads(page.locator("#state-at pre").inner_text())
           .items() if not key.startswith(("app:", "user:"))}
    assert own == project(events).state == project(events[:8]).state
    page.click("#seq-2")
    expect(page.locator("#state-diff")).to_contain_text("a changed: 1 → null")
    expect(page.locator("#state-diff")).to_contain_text("missing added: null")
    page.click("#seq-8 .event-head .type")
    expect(page.locator("#seq-8")).to_contain_text("state_remove")
    expect(page.locator("#state-diff")).to_contain_text("list changed")
    page.click("#seq-9 .event-head .type")
    expect(page.locator("#state-diff")).to_contain_text("copied removed")


def test_events_written_in_the_first_format_delete_a_key_by_null(page: Page, world: World) -> None:
    """Events written before null was a value (format 1): a null in state_delta deletes its
    key, in the page's fold as in `project()`; a later format-2 null is a value."""
    sid = "format-1"
    stamp = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def event(seq: int, fmt: int, **fields: Any) -> Event:
        return Event(id=f"e{seq}", session_id=sid, seq=seq, author="system", timestamp=stamp,
                     format=fmt, **fields)

    events = [
        event(1, 1, type="session_created", data={"app_name": "a", "user_id": "ada"},
              state_delta={"a": 1, "b": 2}),
        event(2, 1, type="state_updated", state_delta={"a": None, "c": 3}),
        event(3, 2, type="state_updated", state_delta={"b": None}, state_remove=["c"]),
    ]
    sign_in(page, world.server.base, "ada", f"/sessions/{world.ids['errands']}")
    expect(page.locator("body[data-loaded=true]")).to_have_count(1)
    shown = page.evaluate("(events) => statesOf(events)",
                          [json.loads(e.model_dump_json()) for e in events])
    assert shown == [project(events[:k]).state for k in (1, 2, 3)]
    assert shown[1:] == [{"b": 2, "c": 3}, {"b": None}]


def test_erased_truncated_and_forked_sessions_show_what_their_ledger_can_tell(
    page: Page, world: World
) -> None:
    """An erasure seen live: the event's payload leaves the page, it shows "(payload
    erased)" with the reason and a link to the erasure, and the state as of it (and after
    it) is a note, not a made-up state, as `project()` refuses it too. Keyed events show
    their key, a handler's event links to its cause. A truncated ledger loads and says
    where its history starts; a fork's header links to its source."""
    store = world.store
    sid = store.create_session(app_name="reminders", user_id="ada", title="private",
                               state={"name": "Ada"}).id
    store.append(sid, [
        msg("my email is ada@example.com", state_delta={"email": "ada@example.com"},
            key="intake-1"),
        NewEvent(type="agent_message", author="mailer",
                 data={"text": "noted", "caused_by": {"seq": 2, "position": 7}}),
        NewEvent(type="state_updated", author="agent", state_remove=["email"],
                 state_delta={"verified": None}),
    ])
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    expect(page.locator(".event")).to_have_count(4)
    expect(page.locator("#seq-2 .event-key")).to_have_text("key intake-1")
    expect(page.locator("#seq-3 .caused-by")).to_have_text("caused by #2")
    expect(page.locator("#live")).to_have_text("live")
    page.click("#seq-3 .event-head .type")
    assert "email" in json.loads(page.locator("#state-at pre").inner_text())
    erasure = store.erase_events(sid, [2], "privacy request")
    expect(page.locator("#state-unknown")).to_be_visible()  # the selection's state, again
    expect(page.locator(".event")).to_have_count(5)
    erased = page.locator("#seq-2")
    expect(erased).to_have_class(re.compile("erased"))
    expect(erased).to_contain_text("(payload erased)")
    expect(erased).to_contain_text("privacy request")
    expect(erased.locator(".erased-note a")).to_have_text(f"erased at #{erasure.seq}")
    assert "ada@example.com" not in page.locator("#timeline").inner_text()
    expect(page.locator(f"#seq-{erasure.seq}")).to_contain_text("erased #2: privacy request")
    page.click("#seq-2 .event-head .type")
    expect(page.locator("#state-unknown")).to_contain_text("cannot be recomputed")
    expect(page.locator("#state-unknown")).to_contain_text(
        f"#2 was erased (privacy request, at #{erasure.seq}), so the change it made is gone"
    )
    expect(page.locator("#state-unknown a")).to_have_count(2)  # to the event, to the erasure
    expect(page.locator("#state-at")).to_have_count(0)
    page.click("#seq-1")
    assert json.loads(page.locator("#state-at pre").inner_text()) == {"name": "Ada"}
    page.click(f"#seq-{erasure.seq} .event-head .type")
    expect(page.locator("#state-unknown")).to_contain_text("current state (below) is still")
    current = json.loads(page.locator("#current-state pre").inner_text())
    assert current == store.get_session(sid).state
    assert current["verified"] is None and "email" not in current
    events = store.read_events(sid)
    shown = page.evaluate("(events) => statesOf(events)",
                          [json.loads(e.model_dump_json()) for e in events])
    for k in range(1, len(events) + 1):
        try:
            expected = project(events[:k]).state
        except CorruptedSessionError:
            expected = None
        assert shown[k - 1] == expected, f"as of #{k}"
    assert shown[1:] == [None] * (len(events) - 1)

    # a truncated ledger
    store.truncate_before(sid, 3)
    page.reload()
    expect(page.locator("body[data-loaded=true]")).to_have_count(1)
    expect(page.locator("#truncated-note")).to_contain_text(
        "history before seq 3 was truncated"
    )
    expect(page.locator(".event")).to_have_count(len(events) - 2)
    expect(page.locator("#seq-1")).to_have_count(0)
    page.click("#seq-3 .event-head .type")
    expect(page.locator("#state-unknown")).to_contain_text("before seq 3 was truncated")
    page.keyboard.press("k")  # j / k stop at the first event there is
    expect(page.locator("#inspector h2")).to_have_text("State as of #3")

    # a fork
    source = world.ids["errands"]
    fork = store.fork_session(source, at_seq=4)
    page.goto(world.server.base + f"/sessions/{fork.id}")
    expect(page.locator("#forked-from")).to_have_text(f"forked from {source} at #4")
    expect(page.locator("#forked-from a")).to_have_attribute(
        "href", f"/sessions/{source}#seq-4"
    )
    expect(page.locator("#seq-5")).to_contain_text(f"forked from {source} at #4")
    page.click("#seq-5 .event-head .type")
    at_fork = json.loads(page.locator("#state-at pre").inner_text())
    own = {key: value for key, value in at_fork.items() if not key.startswith("user:")}
    assert own == project(store.read_events(fork.id)).state == {"mood": "calm"}
    page.click("#forked-from a")
    expect(page).to_have_url(re.compile(f"/sessions/{source}#seq-4$"))
    expect(page.locator("#seq-4")).to_have_class(re.compile("selected"))


# -- isolation and bad states ----------------------------------------------------------------


def test_a_user_cannot_open_another_users_session_even_by_link(page: Page, world: World) -> None:
    bob = world.ids["bob"]
    sign_in(page, world.server.base, "ada", f"/sessions/{bob}")
    expect(page.locator("#session-problem")).to_contain_text("not found")
    expect(page.locator("#session-problem")).to_contain_text("not yours")
    assert "secret" not in page.content()
    expect(page.locator(".event")).to_have_count(0)
    page.goto(world.server.base + f"/sessions/{bob}#seq-1")  # and a deep link
    expect(page.locator("#session-problem")).to_contain_text("not found")
    # bob himself sees it
    page.evaluate("sessionStorage.clear()")
    sign_in(page, world.server.base, "bob", f"/sessions/{bob}")
    expect(page.locator("#session-head h1")).to_have_text("bob's secret plan")


def test_an_unknown_session_says_so(page: Page, world: World) -> None:
    sign_in(page, world.server.base, "ada", "/sessions/no-such-session")
    expect(page.locator("#session-problem")).to_contain_text("No session “no-such-session”")
    page.click("#session-problem a")
    expect(page.locator("#session-rows tr").first).to_be_visible()


def test_a_damaged_ledger_is_reported_on_the_page(page: Page, world: World) -> None:
    sid = world.ids["damaged"]
    with sqlite3.connect(world.path) as conn:
        conn.execute("UPDATE events SET data = '[1, 2]' WHERE session_id = ? AND seq = 2", (sid,))
    conn.close()
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}")
    problem = page.locator("#timeline-problem, #session-problem")
    expect(problem).to_contain_text("cannot be read")
    expect(problem).to_contain_text(sid)


def test_a_revoked_token_sends_the_page_back_to_the_token_prompt(
    page: Page, world: World
) -> None:
    cy = world.ids["cy"]
    sign_in(page, world.server.base, "cy", f"/sessions/{cy}")
    expect(page.locator("#live")).to_have_text("live")
    write_tokens(world.tokens_file, ["ada", "bob"])  # the server re-reads it
    try:
        world.store.append(cy, [msg("written while the token is revoked")])
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#login-error")).to_contain_text("revoked")
        assert page.evaluate("sessionStorage.getItem('agentledger.token')") is None
        expect(page.locator("#main")).to_be_hidden()
    finally:
        write_tokens(world.tokens_file, list(TOKENS))


def test_the_stream_reconnects_after_a_server_restart_without_gaps_or_duplicates(
    page: Page, world: World
) -> None:
    store, server = world.store, world.server
    sid = store.create_session(app_name="reminders", user_id="ada", title="restart").id
    store.append(sid, [msg("before")])
    sign_in(page, server.base, "ada", f"/sessions/{sid}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator(".event")).to_have_count(2)
    try:
        server.stop()
        expect(page.locator("#live")).to_have_text("reconnecting…")
        store.append(sid, [msg("while it was down")])
    finally:
        server.start()  # on the same port
    store.append(sid, [msg("after the restart")])
    expect(page.locator(".event")).to_have_count(4)
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#seq-3")).to_contain_text("while it was down")
    expect(page.locator("#seq-4")).to_contain_text("after the restart")
    expect(page.locator("#login")).to_be_hidden()  # the token still works


def test_a_10000_event_session_is_drawn_in_pages_and_stays_usable(
    page: Page, world: World
) -> None:
    store = world.store
    sid = store.create_session(app_name="reminders", user_id="ada", title="long").id
    for start in range(0, 9_999, 1_111):
        store.append(sid, [
            msg(f"message {n}", state_delta={"count": n}) for n in range(start, start + 1_111)
        ])
    assert store.get_session(sid).version == 10_000
    sign_in(page, world.server.base, "ada", f"/sessions/{sid}#seq-9999")  # far down
    expect(page.locator("#seq-9999")).to_have_class(re.compile("selected"))
    expect(page.locator("body[data-loaded=true]")).to_have_count(1)
    assert json.loads(page.locator("#state-at pre").inner_text()) == {"count": 9997}
    assert 0 < page.locator(".event").count() < 1_000  # a window, not 10,000 nodes
    expect(page.locator("#seq-1")).to_have_count(0)
    expect(page.locator("#timeline-note")).to_contain_text("of 10000 events")
    page.keyboard.press("j")
    expect(page.locator("#inspector h2")).to_have_text("State as of #10000")
    page.click("#earlier")  # the events before the window
    expect(page.locator(f"#seq-{9_949 - 200}")).to_be_visible()
    page.evaluate("location.hash = '#seq-1'")  # a jump back to the start
    expect(page.locator("#seq-1")).to_have_class(re.compile("selected"))
    before = page.locator(".event").count()
    assert before < 1_000
    page.locator(".sentinel").scroll_into_view_if_needed()  # scrolling draws more
    expect(page.locator(".event")).not_to_have_count(before)
    assert page.locator(".event").count() > before
    store.append(sid, [msg("the 10,001st")])  # live, while the window is not at the end
    expect(page.locator("#timeline-note")).to_contain_text("of 10001 events")
    page.click("#to-latest")
    expect(page.locator("#seq-10001")).to_have_class(re.compile("selected"))


# -- layouts and screenshots -----------------------------------------------------------------


def test_phone_width_dark_mode_and_screenshots(
    browser: Browser, world: World, tmp_path: Path
) -> None:
    shots: dict[str, Path] = {}
    for scheme, size in (("light", (1280, 860)), ("dark", (390, 844))):
        context = browser.new_context(
            viewport={"width": size[0], "height": size[1]}, color_scheme=scheme
        )
        page = context.new_page()
        sign_in(page, world.server.base, "ada")
        expect(page.locator("#session-rows tr").first).to_be_visible()
        page.wait_for_timeout(100)
        shots[f"web-sessions-{scheme}"] = tmp_path / f"web-sessions-{scheme}.png"
        page.screenshot(path=shots[f"web-sessions-{scheme}"])
        if scheme == "light":  # tall enough for the header, a paired tool call and the state
            page.set_viewport_size({"width": size[0], "height": 1280})
        page.goto(world.server.base + f"/sessions/{world.ids['errands']}#seq-4")
        expect(page.locator("#seq-4")).to_have_class(re.compile("selected"))
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(100)
        shots[f"web-session-{scheme}"] = tmp_path / f"web-session-{scheme}.png"
        page.screenshot(path=shots[f"web-session-{scheme}"])
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size[0], f"the page scrolls sideways at {size[0]} px"  # fits
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        dark = background not in ("rgb(246, 247, 249)",)
        assert dark == (scheme == "dark"), background
        context.close()
    for path in shots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    if os.environ.get(SCREENSHOTS_ENV) == "1":
        DOCS.mkdir(exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, DOCS / f"{name}.png")
