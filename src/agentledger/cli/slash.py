"""Slash commands inside `agentledger chat`: manage sessions without leaving it.

A line that starts with `/` is a command, not a message for the agent:

| Command | What it does |
|---|---|
| `/sessions`, `/sessions list [agent]` | List this app's and user's sessions, or every session of an agent |
| `/sessions create <name> [description]` | Create a session (title, purpose) and switch to it |
| `/session load <id>` | Switch to a session; a suspended one is resumed, a terminated one refused |
| `/session save` | Show what is stored: every event is durable before it is shown |
| `/session current` | Show the current session |
| `/session suspend [reason]` | Suspend the current session (new messages are refused until loaded) |
| `/session terminate [reason]` | Terminate the current session (for good) |
| `/help` | The command list |
| `/exit`, `/quit` | Leave the chat |

Arguments are split like a shell does (`shlex`), so `/sessions create "my work" "long
description"` gives the title `my work` and the purpose `long description`; without quotes,
every word after the name is the description.

A suspended session refuses new turns (the store enforces it); the chat does not resume it
behind the user's back: it prints how to (`/session load <id>`). A terminated session
refuses everything; the chat says to create or load another session.

The module is two halves, both usable without a terminal:
    - `parse_slash(line)` is pure: it returns a command object and never raises; bad forms
      come back as `BadUsage` or `UnknownCommand`.
    - `dispatch(command, chat)` runs a command against a `ChatContext` (the manager, the
      console and the current session id, which it may change). `handle_line` does both
      and turns any `AgentLedgerError` into one printed line.

Example:
    >>> parse_slash('/sessions create "my work" "long description"')
    CreateSession(title='my work', purpose='long description')
    >>> parse_slash("/session load")
    BadUsage(message='/session load needs a session id', usage='/session load <id>')
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentledger.cli.access import check_session_owner
from agentledger.cli.render import (
    format_age,
    format_time,
    make_console,
    plural,
    shown_id,
    status_text,
)
from agentledger.core.session import Session, Status
from agentledger.errors import AgentLedgerError
from agentledger.manager import SessionManager

__all__ = [
    "COMMANDS",
    "BadUsage",
    "ChatContext",
    "CreateSession",
    "ListSessions",
    "LoadSession",
    "Quit",
    "SaveSession",
    "ShowCurrent",
    "ShowHelp",
    "SlashCommand",
    "SuspendSession",
    "TerminateSession",
    "UnknownCommand",
    "current_table",
    "dispatch",
    "handle_line",
    "parse_slash",
    "print_help",
    "sessions_table",
    "turn_allowed",
]

LIST_LIMIT = 20
"""The most sessions `/sessions` shows (the most recently active first)."""


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShowHelp:
    """`/help`: print the command list."""


@dataclass(frozen=True)
class Quit:
    """`/exit`, `/quit`: leave the chat."""


@dataclass(frozen=True)
class ListSessions:
    """`/sessions`, `/sessions list [agent]`: `agent_name` `None` lists this app's and
    user's sessions; a name lists that agent's sessions, whatever their app or user."""

    agent_name: str | None = None


@dataclass(frozen=True)
class CreateSession:
    """`/sessions create <name> [description]`: a new session titled `title`."""

    title: str
    purpose: str | None = None


@dataclass(frozen=True)
class LoadSession:
    """`/session load <id>`: switch to this session."""

    session_id: str


@dataclass(frozen=True)
class SaveSession:
    """`/session save`: report what is stored (nothing is left to write)."""


@dataclass(frozen=True)
class ShowCurrent:
    """`/session current`: show the current session."""


@dataclass(frozen=True)
class SuspendSession:
    """`/session suspend [reason]`: suspend the current session."""

    reason: str | None = None


@dataclass(frozen=True)
class TerminateSession:
    """`/session terminate [reason]`: terminate the current session."""

    reason: str | None = None


@dataclass(frozen=True)
class UnknownCommand:
    """A `/word` that is no command; `name` is the word as typed (`/foo`)."""

    name: str


@dataclass(frozen=True)
class BadUsage:
    """A known command in a wrong form: what is wrong, and the right form."""

    message: str
    usage: str


SlashCommand = (
    ShowHelp
    | Quit
    | ListSessions
    | CreateSession
    | LoadSession
    | SaveSession
    | ShowCurrent
    | SuspendSession
    | TerminateSession
    | UnknownCommand
    | BadUsage
)
"""Everything `parse_slash` returns."""

COMMANDS: tuple[tuple[str, str], ...] = (
    ("/sessions", "list your sessions (* = the current one)"),
    ("/sessions list [agent]", "list an agent's sessions (all users)"),
    ("/sessions create <name> [description]", "create a session and switch to it"),
    ("/session load <id>", "load a session (resumes it if suspended)"),
    ("/session save", "every turn is already saved: show it"),
    ("/session current", "show the current session"),
    ("/session suspend [reason]", "pause the current session"),
    ("/session terminate [reason]", "end the current session for good"),
    ("/help", "show these commands"),
    ("/exit, /quit", "leave the chat (so do exit and quit)"),
)
"""The usage line and description of every command, as `/help` prints them."""

_SESSIONS_USAGE = "/sessions [list [agent]] | /sessions create <name> [description]"
_SESSION_USAGE = "/session load <id> | save | current | suspend [reason] | terminate [reason]"


# -- the parser -------------------------------------------------------------------------------


def parse_slash(line: str) -> SlashCommand:
    """Parse one chat line that starts with `/` into a command.

    Command words are case-insensitive; arguments keep their case and are split with
    `shlex` (quotes group words).

    Args:
        line: The line as typed; leading and trailing spaces are ignored.

    Returns:
        The command; `BadUsage` for a known command in a wrong form (missing or extra
        arguments, an unknown sub-command, unbalanced quotes, a line without `/`) and
        `UnknownCommand` for an unknown `/word`. Never raises.
    """
    text = line.strip()
    if not text.startswith("/"):
        return BadUsage(f"not a command: {text!r}", "/help")
    try:
        words = shlex.split(text)
    except ValueError as exc:  # unbalanced quotes
        return BadUsage(f"cannot read the command: {str(exc).lower()}", "/help")
    name, args = words[0].lower(), words[1:]
    if name in ("/help", "/?", "/h"):
        return ShowHelp()
    if name in ("/exit", "/quit"):
        return Quit()
    if name == "/sessions":
        return _parse_sessions(args)
    if name == "/session":
        return _parse_session(args)
    return UnknownCommand(words[0])


def _parse_sessions(args: list[str]) -> SlashCommand:
    if not args:
        return ListSessions()
    sub, rest = args[0].lower(), args[1:]
    if sub == "list":
        if len(rest) > 1:
            return BadUsage("/sessions list takes at most one agent name", "/sessions list [agent]")
        return ListSessions(rest[0] if rest and rest[0].strip() else None)
    if sub == "create":
        usage = "/sessions create <name> [description]"
        if not rest or not rest[0].strip():
            return BadUsage("/sessions create needs a name", usage)
        purpose = " ".join(rest[1:]).strip() or None
        return CreateSession(rest[0].strip(), purpose)
    return BadUsage(f"unknown /sessions command {args[0]!r}", _SESSIONS_USAGE)


def _parse_session(args: list[str]) -> SlashCommand:
    if not args:
        return BadUsage("/session needs a command", _SESSION_USAGE)
    sub, rest = args[0].lower(), args[1:]
    if sub == "load":
        if len(rest) != 1 or not rest[0].strip():
            problem = "takes one session id" if len(rest) > 1 else "needs a session id"
            return BadUsage(f"/session load {problem}", "/session load <id>")
        return LoadSession(rest[0].strip())
    if sub in ("save", "current"):
        if rest:
            return BadUsage(f"/session {sub} takes no arguments", f"/session {sub}")
        return SaveSession() if sub == "save" else ShowCurrent()
    if sub in ("suspend", "terminate"):
        reason = " ".join(rest).strip() or None
        return SuspendSession(reason) if sub == "suspend" else TerminateSession(reason)
    return BadUsage(f"unknown /session command {args[0]!r}", _SESSION_USAGE)


# -- the dispatcher ---------------------------------------------------------------------------


@dataclass
class ChatContext:
    """What slash commands work on: the chat's manager, console and current session.

    Attributes:
        manager: The lifecycle API over the chat's store.
        console: Where commands print.
        errors: Where errors are printed (stderr unless given).
        session_id: The current session; `/sessions create` and `/session load` change it.
        agent_name: The chat's agent, given to the sessions it creates.
        app_name, user_id: Whose sessions `/sessions` lists and `/sessions create` makes;
            `/session load` refuses a session of another user or app
            (`agentledger.cli.access`).
        any_user: The operator override (`--any-user`): `/session load` takes any session.
    """

    manager: SessionManager
    console: Console
    session_id: str
    agent_name: str
    app_name: str
    user_id: str
    errors: Console = field(default_factory=lambda: make_console(stderr=True))
    any_user: bool = False


def handle_line(line: str, chat: ChatContext) -> bool:
    """Parse and run one slash command; any `AgentLedgerError` becomes one printed line.

    Args:
        line: A chat line starting with `/`.
        chat: The chat; its `session_id` may change.

    Returns:
        `False` when the chat should end (`/exit`, `/quit`), else `True`.
    """
    try:
        return dispatch(parse_slash(line), chat)
    except AgentLedgerError as exc:
        _say(chat.errors, ("error: ", "bold red"), " ".join(str(exc).split()))
        return True


def dispatch(command: SlashCommand, chat: ChatContext) -> bool:
    """Run a parsed command, printing its outcome on `chat.console`.

    Args:
        command: What `parse_slash` returned.
        chat: The chat; `CreateSession` and a successful `LoadSession` switch
            `chat.session_id` (a refused load leaves it).

    Returns:
        `False` for `Quit`, else `True`.

    Raises:
        AgentLedgerError: From the store or the manager, for example
            `SessionNotFoundError` (an unknown id, or the current session deleted
            meanwhile), `InvalidSessionIdError` (a malformed id), `InvalidTransitionError`
            (suspending a session that is not active, terminating a terminated one),
            `StoreError`; nothing was written. `handle_line` prints them.
    """
    out = chat.console
    match command:
        case Quit():
            return False
        case ShowHelp():
            print_help(out)
        case UnknownCommand(name=name):
            _say(out, (f"unknown command {name}; the commands are:", "yellow"))
            print_help(out)
        case BadUsage(message=message, usage=usage):
            _say(out, (message, "yellow"))
            _say(out, ("usage: ", "dim"), usage)
        case ListSessions(agent_name=agent_name):
            _list(chat, agent_name)
        case CreateSession(title=title, purpose=purpose):
            _create(chat, title, purpose)
        case LoadSession(session_id=session_id):
            _load(chat, session_id)
        case SaveSession():
            _save(chat)
        case ShowCurrent():
            out.print(current_table(chat.manager.get_session(chat.session_id)))
        case SuspendSession(reason=reason):
            session = chat.manager.suspend(chat.session_id, reason)
            _say(out, *_is(session), ".")
            _say(out, (f"New messages are refused until you resume it: "
                       f"/session load {shown_id(session.id)}", "dim"))
        case TerminateSession(reason=reason):
            session = chat.manager.terminate(chat.session_id, reason)
            _say(out, *_is(session), "; it takes no more turns.")
            _say(out, (_START_ANOTHER, "dim"))
    return True


_START_ANOTHER = "Start another with /sessions create <name>, or /session load <id> (see /sessions)."


def turn_allowed(chat: ChatContext, *, refusing: bool = True) -> bool:
    """Check that the current session takes a new turn; print why not if it does not.

    A suspended session is not resumed here: the user suspended it on purpose, so a typed
    message is refused with the command that resumes it (`/session load <id>`). A
    terminated session is refused with how to start or load another one.

    Args:
        chat: The chat.
        refusing: A message is being refused (the notice says it was not sent); `False`
            when only warning, e.g. when the chat starts on such a session.

    Returns:
        `True` when the current session is active.

    Raises:
        AgentLedgerError: The current session cannot be read (deleted meanwhile,
            corrupted, store down).
    """
    session = chat.manager.get_session(chat.session_id)
    if session.status == Status.ACTIVE:
        return True
    _say(chat.console, *_is(session), "; the message was not sent." if refusing else ".")
    if session.status == Status.SUSPENDED:
        _say(chat.console, (f"Resume it with /session load {shown_id(session.id)}, or start another "
                            "with /sessions create <name>.", "dim"))
    else:
        _say(chat.console, (_START_ANOTHER, "dim"))
    return False


def print_help(console: Console) -> None:
    """Print the slash commands, one per line with what it does."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for usage, description in COMMANDS:
        grid.add_row(Text(usage, style="bold"), Text(description))
    console.print(grid)


def _say(console: Console, *parts: str | tuple[str, str] | Text) -> None:
    """Print one line assembled from plain parts (never markup); long lines are not
    hard-wrapped, so piped output keeps one line per message."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def _is(session: Session) -> tuple[str | tuple[str, str] | Text, ...]:
    """The parts of `session <id> is <status>`, the status coloured."""
    return ("session ", (shown_id(session.id), "bold"), " is ", status_text(session.status))


def _list(chat: ChatContext, agent_name: str | None) -> None:
    manager = chat.manager
    if agent_name is None:
        page = manager.list_sessions(
            app_name=chat.app_name, user_id=chat.user_id, limit=LIST_LIMIT
        )
        scope = f"app {chat.app_name!r}, user {chat.user_id!r}"
    else:
        page = manager.list_sessions(agent_name=agent_name, limit=LIST_LIMIT)
        scope = f"agent {agent_name!r}"
    out = chat.console
    if page.sessions:
        _say(out, (f"sessions of {scope}", "bold"), (" (* = current)", "dim"))
        out.print(
            sessions_table(
                page.sessions,
                current=chat.session_id,
                width=out.width,
                show_agent=agent_name is None,
            )
        )
    else:
        _say(out, (f"No sessions of {scope}.", "dim"))
    if page.next_cursor is not None:
        _say(out, (f"Showing the {LIST_LIMIT} most recently active; "
                   "`agentledger sessions list` shows them all.", "dim"))
    if page.corrupted:
        _say(out, (f"Unreadable (corrupted) sessions: {', '.join(page.corrupted)}", "red"))


_GAP = 2
_TITLE_MIN = 8


def sessions_table(
    sessions: Sequence[Session],
    *,
    current: str | None,
    width: int = 80,
    show_agent: bool = True,
) -> Table:
    """A table of sessions with coloured statuses; the `current` one is marked `*`.

    Ids and statuses are never shortened. When the table would be wider than `width`,
    the agent, events, updated and phase columns are left out, in that order, and the
    title is shortened with an ellipsis (or left out last).

    Args:
        sessions: The sessions, in the order shown.
        current: The current session's id (marked), or `None`.
        width: The width to fit, in characters (pass `console.width`).
        show_agent: Include the agent column (leave it out when listing one agent).
    """
    now = datetime.now(timezone.utc)
    columns: list[tuple[str, list[Text], int]] = [  # header, cells, drop rank (0: never)
        ("", [Text("*" if s.id == current else "", style="bold") for s in sessions], 0),
        ("id", [Text(shown_id(s.id), style="bold" if s.id == current else "") for s in sessions], 0),
        ("status", [status_text(s.status) for s in sessions], 0),
        ("phase", [Text(s.phase) for s in sessions], 4),
        ("events", [Text(str(s.version)) for s in sessions], 2),
        ("updated", [Text(format_age(s.updated_at, now=now)) for s in sessions], 3),
    ]
    if show_agent:
        columns.append(("agent", [Text(s.agent_name or "") for s in sessions], 1))
    titles = [Text(" ".join((s.title or s.purpose or "").split())) for s in sessions]

    def natural(column: tuple[str, list[Text], int]) -> int:
        return max([len(column[0]), *(cell.cell_len for cell in column[1])])

    def fixed_width(cols: list[tuple[str, list[Text], int]]) -> int:
        return sum(natural(c) for c in cols) + _GAP * len(cols)  # + the gap before the title

    for rank in (1, 2, 3, 4):
        if fixed_width(columns) + _TITLE_MIN <= width:
            break
        columns = [c for c in columns if c[2] != rank]
    room = width - fixed_width(columns)
    show_title = room >= _TITLE_MIN and any(titles)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, _GAP // 2))
    for header, _, _ in columns:
        table.add_column(header, no_wrap=True, justify="right" if header == "events" else "left")
    if show_title:
        table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=room)
    for i in range(len(sessions)):
        row = [c[1][i] for c in columns]
        table.add_row(*row, *([titles[i]] if show_title else []))
    return table


def current_table(session: Session) -> Table:
    """The fields `/session current` shows: id, title, purpose, agent, app and user,
    status (coloured), phase, events, created and last activity (UTC), state keys; errors
    and outcome when there are any."""
    now = datetime.now(timezone.utc)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    keys = sorted(session.state)
    rows: list[tuple[str, Text | str | None]] = [
        ("session", Text(shown_id(session.id), style="bold")),
        ("title", session.title),
        ("purpose", session.purpose),
        ("agent", session.agent_name),
        ("app / user", f"{session.app_name} / {session.user_id}"),
        ("status", status_text(session.status)),
        ("phase", session.phase),
        ("events", str(session.version)),
        ("created", f"{format_time(session.created_at)} UTC"),
        (
            "last activity",
            f"{format_time(session.updated_at)} UTC ({format_age(session.updated_at, now=now)})",
        ),
        ("state keys", ", ".join(keys) if keys else "none"),
    ]
    if session.error_count:
        rows.append(("errors", f"{session.error_count} (last: {session.last_error})"))
    if session.outcome:
        rows.append(("outcome", session.outcome))
    for name, value in rows:
        if value is None or value == "":
            continue
        grid.add_row(name, value if isinstance(value, Text) else Text(" ".join(value.split())))
    return grid


def _create(chat: ChatContext, title: str, purpose: str | None) -> None:
    session = chat.manager.create_session(
        chat.agent_name,
        purpose,
        title=title,
        app_name=chat.app_name,
        user_id=chat.user_id,
    )
    chat.session_id = session.id
    _say(chat.console, "created session ", (shown_id(session.id), "bold"), f" ({title}); now on it")


def _load(chat: ChatContext, session_id: str) -> None:
    out = chat.console
    session = chat.manager.get_session(session_id)
    check_session_owner(
        session, user_id=chat.user_id, app_name=chat.app_name, any_user=chat.any_user
    )
    if session.status == Status.TERMINATED:
        where = (
            "" if session.id == chat.session_id else f"; still on session {shown_id(chat.session_id)}"
        )
        _say(out, *_is(session), f" and cannot be continued{where}.")
        return
    resumed = session.status == Status.SUSPENDED
    if resumed:
        session = chat.manager.resume(session.id, "loaded in chat")
    chat.session_id = session.id
    _say(
        out,
        "resumed and loaded session " if resumed else "loaded session ",
        (session.id, "bold"),
        f" ({session.title})" if session.title else "",
        ": ",
        status_text(session.status),
        f", phase {session.phase}, {plural(session.version, 'event')}",
    )
    if session.agent_name and session.agent_name != chat.agent_name:
        _say(out, (f"note: it was created by agent {session.agent_name!r}; "
                   f"this chat runs {chat.agent_name!r}", "yellow"))


def _save(chat: ChatContext) -> None:
    session = chat.manager.get_session(chat.session_id)
    _say(chat.console, *_is(session),
         f" and saved: {plural(session.version, 'event')}, the last at "
         f"{format_time(session.updated_at)} UTC.")
    _say(chat.console, ("Every event is written to the store before it is shown, so there is "
                        "nothing left to save.", "dim"))
