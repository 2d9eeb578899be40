"""Slash commands inside `agentledger chat` (seed 001): the parser, the dispatcher on a real
store, and whole chats through the command line."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agentledger import open_store
from agentledger.cli import app
from agentledger.cli.slash import (
    COMMANDS,
    BadUsage,
    ChatContext,
    CreateSession,
    ListSessions,
    LoadSession,
    Quit,
    SaveSession,
    ShowCurrent,
    ShowHelp,
    SlashCommand,
    SuspendSession,
    TerminateSession,
    UnknownCommand,
    dispatch,
    handle_line,
    parse_slash,
    turn_allowed,
)
from agentledger.core.events import Author, EventType, NewEvent
from agentledger.manager import SessionManager
from agentledger.stores.base import SessionStore

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")

# -- the parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/help", ShowHelp()),
        ("/HELP", ShowHelp()),
        ("  /help  ", ShowHelp()),
        ("/?", ShowHelp()),
        ("/exit", Quit()),
        ("/quit", Quit()),
        ("/sessions", ListSessions()),
        ("/sessions list", ListSessions()),
        ("/Sessions LIST", ListSessions()),
        ("/sessions list reminders", ListSessions("reminders")),
        ("/sessions list 'terraform architect'", ListSessions("terraform architect")),
        ("/sessions create work", CreateSession("work")),
        ('/sessions create "my work" "long description"', CreateSession("my work", "long description")),
        ("/sessions create 'my work' 'long description'", CreateSession("my work", "long description")),
        ("/sessions create work Development work on X", CreateSession("work", "Development work on X")),
        ('/sessions create "my work" ""', CreateSession("my work")),
        ("/sessions create Work", CreateSession("Work")),
        ("/session load 01ABC", LoadSession("01ABC")),
        ("/SESSION Load 01abc", LoadSession("01abc")),
        ("/session save", SaveSession()),
        ("/session current", ShowCurrent()),
        ("/session suspend", SuspendSession()),
        ("/session suspend waiting for approval", SuspendSession("waiting for approval")),
        ("/session terminate", TerminateSession()),
        ("/session terminate 'done, thanks'", TerminateSession("done, thanks")),
    ],
)
def test_parse_every_command(line: str, expected: SlashCommand) -> None:
    assert parse_slash(line) == expected


@pytest.mark.parametrize(
    ("line", "message", "usage"),
    [
        ("/session", "/session needs a command", "/session load <id>"),
        ("/session load", "/session load needs a session id", "/session load <id>"),
        ("/session load a b", "/session load takes one session id", "/session load <id>"),
        ("/session load ''", "/session load needs a session id", "/session load <id>"),
        ("/session save now", "/session save takes no arguments", "/session save"),
        ("/session current x", "/session current takes no arguments", "/session current"),
        ("/session frobnicate", "unknown /session command 'frobnicate'", "/session load <id>"),
        ("/sessions create", "/sessions create needs a name", "/sessions create <name>"),
        ("/sessions create '  '", "/sessions create needs a name", "/sessions create <name>"),
        ("/sessions list a b", "/sessions list takes at most one agent name", "/sessions list"),
        ("/sessions delete x", "unknown /sessions command 'delete'", "/sessions create <name>"),
        ('/sessions create "my work', "cannot read the command: no closing quotation", "/help"),
        ("hello", "not a command: 'hello'", "/help"),
    ],
)
def test_parse_bad_forms_give_usage(line: str, message: str, usage: str) -> None:
    command = parse_slash(line)
    assert isinstance(command, BadUsage)
    assert command.message == message
    assert usage in command.usage


@pytest.mark.parametrize("line", ["/foo", "/", "/sessionz", "/Foo bar baz", "//session current"])
def test_parse_unknown_commands(line: str) -> None:
    command = parse_slash(line)
    assert isinstance(command, UnknownCommand)
    assert command.name == line.split()[0]


def test_help_lists_every_command_of_seed_001() -> None:
    usages = " ".join(usage for usage, _ in COMMANDS)
    for command in ("/sessions", "/sessions list [agent]", "/sessions create <name>",
                    "/session load <id>", "/session save", "/session current",
                    "/session suspend", "/session terminate", "/help"):
        assert command in usages
    # every usage line shown in the help parses to a real command once filled in
    for usage, _ in COMMANDS:
        filled = usage.split(",")[0].replace("<name>", "n").replace("<id>", "i")
        filled = re.sub(r" \[[a-z]+\]", "", filled)
        assert not isinstance(parse_slash(filled), (BadUsage, UnknownCommand)), usage


# -- the dispatcher, on a real store ------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with open_store(f"sqlite:///{tmp_path}/chat.db") as opened:
        yield opened


class Chat:
    """A chat context on a real store, printing (errors too) into a buffer with colours
    (ANSI)."""

    def __init__(self, store: SessionStore) -> None:
        self.manager = SessionManager(store, app_name="reminders", user_id="ann")
        self.buffer = io.StringIO()
        console = Console(file=self.buffer, force_terminal=True, color_system="standard",
                          width=120, emoji=False, highlight=False)
        first = self.manager.create_session("reminders", title="first")
        self.ctx = ChatContext(manager=self.manager, console=console, session_id=first.id,
                               agent_name="reminders", app_name="reminders", user_id="ann",
                               errors=console)
        self.first = first.id

    def run(self, line: str) -> str:
        """Run one line; return what it printed, without colour codes."""
        self.buffer.seek(0)
        self.buffer.truncate()
        assert handle_line(line, self.ctx) is True
        return self.raw_text()

    def raw_text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.buffer.getvalue())

    def status(self, session_id: str) -> str:
        return self.manager.get_session(session_id).status


GREEN, YELLOW, RED = "\x1b[32m", "\x1b[33m", "\x1b[31m"


@pytest.fixture
def chat(store: SessionStore) -> Chat:
    return Chat(store)


def test_create_switches_to_the_new_session(chat: Chat, store: SessionStore) -> None:
    out = chat.run('/sessions create "my work" "long description"')
    new_id = chat.ctx.session_id
    assert new_id != chat.first
    assert f"created session {new_id} (my work); now on it" in out
    session = store.get_session(new_id)
    assert (session.title, session.purpose, session.agent_name) == (
        "my work", "long description", "reminders")
    assert (session.app_name, session.user_id, session.status) == ("reminders", "ann", "active")
    assert chat.status(chat.first) == "active"  # the old one is left as it was


def test_list_marks_the_current_session_and_colours_statuses(chat: Chat) -> None:
    chat.run("/sessions create second")
    second = chat.ctx.session_id
    chat.manager.suspend(second)
    third = chat.manager.create_session("reminders", title="third")
    chat.manager.terminate(third.id)
    chat.manager.create_session("reminders", user_id="bo", title="not ann's")
    out = chat.run("/sessions")
    assert "sessions of app 'reminders', user 'ann'" in out
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines()[2:]}
    assert set(rows) == {chat.first, second, third.id}  # bo's session is not listed
    assert rows[second].startswith("*") and not rows[chat.first].startswith("*")
    assert "suspended" in rows[second] and "terminated" in rows[third.id]
    coloured = chat.buffer.getvalue()
    assert f"{GREEN}active" in coloured
    assert f"{YELLOW}suspended" in coloured
    assert f"{RED}terminated" in coloured


def test_list_by_agent_crosses_users_and_says_when_empty(chat: Chat) -> None:
    other = chat.manager.create_session("terraform", user_id="bo", app_name="infra")
    out = chat.run("/sessions list terraform")
    assert "sessions of agent 'terraform'" in out and other.id in out
    assert chat.first not in out
    assert "No sessions of agent 'nobody'." in chat.run("/sessions list nobody")


def test_list_says_when_there_are_more(chat: Chat) -> None:
    for i in range(20):
        chat.manager.create_session("reminders", title=f"s{i}")
    out = chat.run("/sessions")
    assert "Showing the 20 most recently active" in out


def test_list_fits_a_narrow_console_without_cutting_ids(chat: Chat) -> None:
    chat.run('/sessions create "a very long title that cannot fit in a narrow console"')
    chat.ctx.console.width = 60
    out = chat.run("/sessions")
    assert chat.first in out and chat.ctx.session_id in out
    assert all(len(line) <= 60 for line in out.splitlines())


def test_load_switches_and_resumes_a_suspended_session(chat: Chat) -> None:
    chat.run("/sessions create other")
    other = chat.ctx.session_id
    chat.manager.suspend(chat.first)

    out = chat.run(f"/session load {chat.first}")
    assert chat.ctx.session_id == chat.first
    assert f"resumed and loaded session {chat.first} (first): active" in out
    session = chat.manager.get_session(chat.first)
    assert (session.status, session.resume_count) == ("active", 1)

    out = chat.run(f"/session load {other}")
    assert chat.ctx.session_id == other
    assert out.startswith(f"loaded session {other} (other): active")
    assert chat.manager.get_session(other).resume_count == 0  # loading an active one writes nothing


def test_load_refuses_a_terminated_session_and_stays(chat: Chat) -> None:
    done = chat.manager.create_session("reminders", title="done")
    chat.manager.terminate(done.id)
    version = chat.manager.get_session(done.id).version
    out = chat.run(f"/session load {done.id}")
    assert f"session {done.id} is terminated and cannot be continued; still on session {chat.first}" in out
    assert chat.ctx.session_id == chat.first
    assert chat.manager.get_session(done.id).version == version


@pytest.mark.parametrize(
    ("session_id", "message"),
    [
        ("nope", "error: no session with id 'nope'"),
        ("x" * 513, "error: invalid session id '" + "x" * 80 + "'… (513 characters)"),
    ],
)
def test_load_unknown_or_bad_id_is_one_line(chat: Chat, session_id: str, message: str) -> None:
    out = chat.run(f"/session load {session_id}")
    assert out.startswith(message) and out.count("\n") == 1
    assert chat.ctx.session_id == chat.first


def test_load_of_another_agents_session_warns(chat: Chat) -> None:
    other = chat.manager.create_session("terraform")
    out = chat.run(f"/session load {other.id}")
    assert "note: it was created by agent 'terraform'; this chat runs 'reminders'" in out
    assert chat.ctx.session_id == other.id


def test_save_reports_what_is_stored_and_writes_nothing(chat: Chat, store: SessionStore) -> None:
    before = store.get_session(chat.first).version
    assert before == 1
    out = chat.run("/session save")
    assert f"session {chat.first} is active and saved: 1 event, the last at" in out
    assert "nothing left to save" in out
    assert store.get_session(chat.first).version == before


def test_current_shows_the_session(chat: Chat, store: SessionStore) -> None:
    chat.run('/sessions create "my work" "long description"')
    store.append(chat.ctx.session_id, [NewEvent(type=EventType.STATE_UPDATED,
                                                author=Author.SYSTEM,
                                                state_delta={"topic": "x", "user:name": "Ann"})])
    out = chat.run("/session current")
    session = store.get_session(chat.ctx.session_id)
    for expected in (f"session        {session.id}", "title          my work",
                     "purpose        long description", "status         active",
                     "phase          initializing", f"events         {session.version}",
                     "created", "last activity", "state keys     topic, user:name"):
        assert expected in out, expected
    assert f"{GREEN}active" in chat.buffer.getvalue()


def test_suspend_then_a_turn_is_refused_with_a_hint(chat: Chat) -> None:
    out = chat.run("/session suspend waiting for Bo")
    assert f"session {chat.first} is suspended." in out
    assert f"/session load {chat.first}" in out
    assert chat.status(chat.first) == "suspended"
    events = chat.manager.store.read_events(chat.first, types=[EventType.STATUS_CHANGED])
    assert events[-1].data == {"to": "suspended", "reason": "waiting for Bo"}
    chat.buffer.seek(0)
    chat.buffer.truncate()
    assert turn_allowed(chat.ctx) is False
    assert "is suspended; the message was not sent" in chat.raw_text()
    assert f"Resume it with /session load {chat.first}" in chat.raw_text()
    # suspending twice is a one-line error, not a crash
    assert chat.run("/session suspend").startswith("error: ")


def test_terminate_then_turns_are_refused(chat: Chat) -> None:
    out = chat.run("/session terminate")
    assert f"session {chat.first} is terminated; it takes no more turns." in out
    assert "/sessions create <name>" in out and "/session load <id>" in out
    assert chat.status(chat.first) == "terminated"
    chat.buffer.seek(0)
    assert turn_allowed(chat.ctx) is False
    assert "is terminated; the message was not sent" in chat.raw_text()
    assert chat.run("/session terminate").startswith("error: ")
    assert chat.run("/session suspend").startswith("error: ")
    assert chat.run(f"/session load {chat.first}") == (
        f"session {chat.first} is terminated and cannot be continued.\n")
    # the way out: create another one
    chat.run("/sessions create next")
    assert turn_allowed(chat.ctx) is True


def test_help_unknown_and_bad_usage_print_and_continue(chat: Chat) -> None:
    out = chat.run("/help")
    assert all(usage in out for usage, _ in COMMANDS)
    out = chat.run("/foo")
    assert out.startswith("unknown command /foo; the commands are:")
    assert "/session load <id>" in out
    out = chat.run("/session load")
    assert out == "/session load needs a session id\nusage: /session load <id>\n"


def test_quit_ends_and_errors_do_not(chat: Chat) -> None:
    assert dispatch(Quit(), chat.ctx) is False
    assert handle_line("/quit", chat.ctx) is False
    chat.manager.store.delete_session(chat.first)
    assert chat.run("/session current").startswith(f"error: no session with id '{chat.first}'")


# -- whole chats --------------------------------------------------------------------------------


def _chat_input(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def test_chat_creates_suspends_loads_terminates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    with open_store(url) as store:
        manager = SessionManager(store, app_name="reminders", user_id="demo-user")
        parked = manager.create_session("reminders", title="parked")
        manager.suspend(parked.id)
        start = manager.create_session("reminders", title="start")
    result = CliRunner().invoke(app, ["--store", url, "chat", "--session", start.id], input=_chat_input(
        "remind me to stretch",
        '/sessions create "my work" "long description"',
        "remind me to read",
        "/session suspend",
        "remind me to nap",
        f"/session load {parked.id}",
        "remind me to walk",
        "/session terminate",
        "remind me to run",
        f"/session load {parked.id}",
        "/session current",
        "/sessions",
        "/foo",
        "/session",
        "/session load",
        "/session save",
        "quit",
    ))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Added reminder: stretch" in out and "Added reminder: read" in out
    assert "Added reminder: walk" in out
    assert "Added reminder: nap" not in out and "Added reminder: run" not in out
    assert "the message was not sent" in out
    assert f"resumed and loaded session {parked.id} (parked): active" in out
    assert f"session {parked.id} is terminated and cannot be continued" in out
    assert "unknown command /foo" in out and "usage: /session load <id>" in out
    assert f"bye; session {parked.id} is saved" in out
    with open_store(url) as store:
        listed = store.list_sessions(app_name="reminders", user_id="demo-user").sessions
        by_title = {s.title: s for s in listed}
        assert set(by_title) == {"start", "my work", "parked"}
        assert by_title["start"].status == "active"
        work = by_title["my work"]
        assert (work.status, work.purpose, work.agent_name) == (
            "suspended", "long description", "reminders")
        assert (by_title["parked"].status, by_title["parked"].resume_count) == ("terminated", 1)
        said = {e.data["text"]: s.title for s in listed
                for e in store.read_events(s.id, types=[EventType.USER_MESSAGE])}
        assert said == {"remind me to stretch": "start", "remind me to read": "my work",
                        "remind me to walk": "parked"}
        assert store.get_session(start.id).state["user:reminders"] == ["stretch", "read", "walk"]


def test_chat_on_a_terminated_session_says_so_and_refuses_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chat.db"
    with open_store(url) as store:
        done = SessionManager(store).create_session("reminders")
        SessionManager(store).terminate(done.id)
        version = store.get_session(done.id).version
    result = CliRunner().invoke(app, ["--store", url, "chat", "--session", done.id],
                                input=_chat_input("remind me to nap", "/quit"))
    assert result.exit_code == 0, result.output
    assert f"session: {done.id} (terminated);" in result.output
    assert "(continued)" not in result.output
    assert f"session {done.id} is terminated.\nStart another with" in result.output  # at start
    assert result.output.count("is terminated; the message was not sent") == 1
    with open_store(url) as store:
        assert store.get_session(done.id).version == version


def test_chat_through_the_console_script(tmp_path: Path) -> None:
    """The real `agentledger chat` process, stdin piped: lines are echoed as a transcript."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    result = subprocess.run(
        [AGENTLEDGER, "chat"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        input=_chat_input("/sessions create work", "remind me to stretch", "/session suspend",
                          "remind me to nap", "/session terminate", "/session current"),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "you> /sessions create work\ncreated session " in out
    work_id = out.split("you> /sessions create work\ncreated session ")[1].split()[0]
    assert f"session {work_id} is suspended; the message was not sent." in out
    assert f"session {work_id} is terminated; it takes no more turns." in out
    assert "status         terminated" in out
    with open_store(f"sqlite:///{tmp_path}/agentledger.db") as store:
        assert store.get_session(work_id).status == "terminated"
        texts = [e.data["text"] for e in store.read_events(work_id, types=[EventType.USER_MESSAGE])]
        assert texts == ["remind me to stretch"]
