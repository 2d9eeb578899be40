"""`agentledger demo`, `run` and `chat`: agent turns from the command line.

Every turn goes through the `Runner`, so each step is in the session's ledger before it is
printed. The agent is the reminders demo agent unless `--agent module:attribute` names
another `Agent` (or a function that returns one).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from agentledger.cli.access import AnyUserOpt, owned_session
from agentledger.cli.app import app, store_from
from agentledger.cli.lineinput import LineReader, clean_line, clean_text, open_line_reader
from agentledger.cli.model_options import (
    ApiKeyEnvOpt,
    BaseUrlOpt,
    ModelOpt,
    stream_turn,
    with_model,
)
from agentledger.cli.render import (
    make_console,
    plural,
    print_answer,
    print_error,
    print_event,
    print_events_json,
    print_json,
    print_state,
    print_state_changes,
    session_note,
    shown_id,
)
from agentledger.cli.slash import ChatContext, handle_line, turn_allowed
from agentledger.core.session import Session, Status
from agentledger.demo import (
    DEMO_APP,
    DEMO_SCRIPT,
    DEMO_SCRIPT_CONTINUED,
    DEMO_USER,
    build_reminders_agent,
    continue_or_create_session,
)
from agentledger.errors import AgentLedgerError, ConfigurationError, RunnerError
from agentledger.manager import SessionManager
from agentledger.runner import Agent, Runner, final_output
from agentledger.stores.base import SessionStore, display_url

__all__ = ["chat", "demo", "load_agent", "run"]

UserOpt = Annotated[
    str, typer.Option("--user", "-u", metavar="USER", help="The user the session belongs to.")
]
AppOpt = Annotated[
    str, typer.Option("--app", metavar="APP", help="The app the session belongs to.")
]
SessionOpt = Annotated[
    str | None,
    typer.Option(
        "--session",
        "-s",
        metavar="ID",
        help="Continue this session (default: the user's most recent active one, or a new one).",
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent",
        metavar="MODULE:ATTR",
        help=(
            "An Agent (or a function returning one) to run instead of the reminders demo "
            "agent; MODULE is looked up in the working directory first, as `python -m` does."
        ),
    ),
]


def load_agent(spec: str | None) -> Agent:
    """Return the agent named by `module:attribute`, or the reminders demo agent for `None`.

    The module is looked up in the working directory first, then on the usual import
    path, as `python -m` does: `mypkg.agents:build_agent` finds `./mypkg/agents.py`
    without `PYTHONPATH`. A function is called with no arguments to build the agent.

    Args:
        spec: `module:attribute` (e.g. `mypkg.agents:build_agent`), or `None`.

    Returns:
        The `Agent`.

    Raises:
        ConfigurationError: The spec is not `module:attribute` with a dotted module name
            (not a relative name or a file path), importing the module fails (not found,
            or its code raises, e.g. a SyntaxError), the attribute is missing, calling the
            factory fails (e.g. it needs arguments), or the result is not an `Agent`.
    """
    if spec is None:
        return build_reminders_agent()
    target = import_target(spec, "agent", "--agent", Agent)
    if not isinstance(target, Agent):
        raise ConfigurationError(
            f"{spec!r} is an object of type {type(target).__name__}, not an Agent"
        )
    return target


def import_target(spec: str, what: str, option: str, kind: type | None = None) -> Any:
    """Import `module:attribute` and return the attribute; a callable that is not an
    instance of `kind` is called with no arguments (a factory) and its result returned.

    The module is looked up in the working directory first, then on the usual import
    path, as `python -m` does.

    Raises:
        ConfigurationError: The spec is not `module:attribute` with a dotted module name,
            importing the module fails, the attribute is missing, or calling it fails;
            the message names `what` (e.g. "agent") and `option` (e.g. "--agent").
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"{option} takes MODULE:ATTRIBUTE, not {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # kept: the module may import its siblings later
    if module_name.startswith(".") or "/" in module_name or module_name.endswith(".py"):
        raise ConfigurationError(
            f"cannot load {what} {spec!r}: {module_name!r} is not an importable module name; "
            "give a dotted module name (e.g. mypkg.agents:build_agent, not a relative name "
            "or a file path) and run from the directory that holds it"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot load {what} {spec!r}: {_one_line(exc)}") from exc
    except Exception as exc:  # the module's own code failed: a SyntaxError, a raise, ...
        raise ConfigurationError(
            f"cannot load {what} {spec!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    try:
        target: Any = getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(f"cannot load {what} {spec!r}: {_one_line(exc)}") from exc
    if callable(target) and not (kind is not None and isinstance(target, kind)):
        try:
            target = target()
        except Exception as exc:  # not a no-argument factory, or the factory failed
            raise ConfigurationError(
                f"cannot build {what} {spec!r}: calling {attribute}() raised "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    return target


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (whitespace runs collapsed), for `error:`."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _session_for(
    ctx: typer.Context,
    store: SessionStore,
    session_id: str | None,
    *,
    user: str,
    app_name: str,
    agent: Agent,
    any_user: bool = False,
) -> tuple[Session, bool, str, str]:
    """The session to work in, whether it is new, and the user and app acting in it
    (`--session` is checked against `--user`/`--app`: `agentledger.cli.access`)."""
    if session_id is not None:
        session, user, app_name = owned_session(
            ctx, store, session_id, user_id=user, app_name=app_name, any_user=any_user
        )
        return session, False, user, app_name
    session, created = continue_or_create_session(
        store, user_id=user, app_name=app_name, agent_name=agent.name, title=None
    )
    return session, created, user, app_name


@app.command()
def demo(
    ctx: typer.Context,
    user: UserOpt = DEMO_USER,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
) -> None:
    """Run the reminders demo: a scripted conversation recorded in a durable session.

    Continues the user's most recent demo session (or creates one), runs the script through
    the runner, then prints the session id, the agent's answers and the session's ledger
    as JSON. Run it twice: the second run still knows the first run's reminders. With
    --model, the same script runs on a real model.
    """
    agent = with_model(build_reminders_agent(), model, base_url, api_key_env)
    store = store_from(ctx)
    session, created = continue_or_create_session(store, user_id=user)
    runner = Runner(agent, store)
    out = make_console()
    out.print(
        f"session: {shown_id(session.id)} ({session_note(session, created)}) on {display_url(store.url)}",
        soft_wrap=True,
        highlight=False,
    )
    for message in DEMO_SCRIPT if created else DEMO_SCRIPT_CONTINUED:
        answer = final_output(list(runner.run(session.id, message)))
        out.print(f"[bold]you:[/] {message}", highlight=False)
        print_answer(answer, console=out)
    events = store.read_events(session.id)
    out.print(f"ledger of session {shown_id(session.id)} ({plural(len(events), 'event')}):")
    print_events_json(events)


@app.command()
def run(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Argument(metavar="MESSAGE", help="What the user says.", show_default=False)
    ],
    session_id: SessionOpt = None,
    user: UserOpt = DEMO_USER,
    app_name: AppOpt = DEMO_APP,
    agent_spec: AgentOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    any_user: AnyUserOpt = False,
    events: Annotated[
        bool, typer.Option("--events", help="Also print the turn's events as they are stored.")
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print {session_id, answer, events} as JSON, and nothing else."),
    ] = False,
) -> None:
    """Run one agent turn with the user's own words and print the answer (as it streams).

    Prints the session's id, marked (new) or (continued), then the answer. Ctrl-C during
    the turn records it as cancelled in the session and exits with code 130. Terminal
    escape sequences and control characters (but tabs and newlines) are removed from the
    message before it is stored.
    """
    message = clean_text(message)
    if not message.strip():
        raise typer.BadParameter("say something: the message is empty", param_hint="MESSAGE")
    agent = with_model(load_agent(agent_spec), model, base_url, api_key_env)
    store = store_from(ctx)
    runner = Runner(agent, store)
    runner.check_message(message)  # before a session is made for it
    session, created, user, app_name = _session_for(
        ctx, store, session_id, user=user, app_name=app_name, agent=agent, any_user=any_user
    )
    out = make_console()
    if not json_output:
        out.print(f"session: {shown_id(session.id)} ({session_note(session, created)})", highlight=False)
    stored = []
    try:
        if not (events or json_output):
            stream_turn(runner, session.id, message, out)
            return
        for event in runner.run(session.id, message):
            stored.append(event)
            if events and not json_output:
                print_event(event, console=out)
    except KeyboardInterrupt as exc:
        _after_ctrl_c(make_console(stderr=True))
        print_error(f"the turn was cancelled (Ctrl-C); session {shown_id(session.id)} records it")
        raise typer.Exit(130) from exc
    answer = final_output(stored)
    if json_output:
        print_json(
            {
                "session_id": session.id,
                "answer": answer,
                "events": [e.model_dump(mode="json") for e in stored],
            }
        )
    else:
        print_answer(answer, console=out)


_EXIT_WORDS = {"exit", "quit", ":q"}


def _after_ctrl_c(console: Console) -> None:
    """End the line a terminal echoed `^C` on, so what follows starts a line of its own."""
    if console.is_terminal:
        console.print()


def _problem(console: Console, label: str, message: str, *, style: str = "bold red") -> None:
    """One line: a coloured label, then the message (never markup) folded onto one line."""
    console.print(Text.assemble((label, style), " ", " ".join(message.split())), soft_wrap=True)


def _chat_turn(chat: ChatContext, runner: Runner, message: str) -> None:
    """One turn: the answer, then what the turn changed in the state (nothing when nothing
    changed). A failure or Ctrl-C is one line on stderr, then the chat goes on."""
    out, err = chat.console, chat.errors
    try:
        before = runner.store.get_session(chat.session_id).state
        try:
            stream_turn(runner, chat.session_id, message, out)
        except RunnerError as exc:  # the error event is stored; show the state it left
            _problem(err, "agent failed:", str(exc))
        except KeyboardInterrupt:
            _after_ctrl_c(err)
            _problem(err, "cancelled:", "the turn was interrupted (Ctrl-C); the session records "
                     "it as cancelled", style="bold yellow")
        after = runner.store.get_session(chat.session_id).state
        print_state_changes(before, after, console=out)
    except AgentLedgerError as exc:
        # e.g. another process suspended or deleted the session since the check
        _problem(err, "error:", str(exc))
    except KeyboardInterrupt:  # Ctrl-C outside the runner: nothing of the turn was stored
        _after_ctrl_c(err)
        _problem(err, "cancelled:", "interrupted (Ctrl-C)", style="bold yellow")


def _chat_loop(chat: ChatContext, runner: Runner, reader: LineReader) -> None:
    """Read lines until `exit`, `quit`, `/quit` or the end of input; run each message as a
    turn and each `/command` as a slash command."""
    out = chat.console
    while True:
        try:
            line = reader.read("you> ")
        except EOFError:
            out.print()
            break
        except KeyboardInterrupt:
            if reader.interactive:
                continue  # Ctrl-C at the prompt drops the line, as a shell does
            out.print()
            break
        message = clean_line(line).strip()
        if reader.echo:  # what is stored, not the raw escape codes
            out.print(clean_line(line), markup=False, highlight=False, soft_wrap=True)
        if not message:
            continue
        if message.lower() in _EXIT_WORDS:
            break
        if message.startswith("/"):
            if not handle_line(message, chat):
                break
            continue
        try:
            allowed = turn_allowed(chat)
        except AgentLedgerError as exc:
            _problem(chat.errors, "error:", str(exc))
            continue
        if allowed:
            _chat_turn(chat, runner, message)


@app.command()
def chat(
    ctx: typer.Context,
    session_id: SessionOpt = None,
    user: UserOpt = DEMO_USER,
    app_name: AppOpt = DEMO_APP,
    agent_spec: AgentOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    any_user: AnyUserOpt = False,
) -> None:
    """Chat with the agent in a loop; type `exit` or `quit` (or Ctrl-D) to leave.

    The session's state is shown when the chat starts, then after each turn what the turn
    changed in it. Lines starting with `/` are session commands (`/help` lists them):
    `/sessions`, `/sessions list [agent]`, `/sessions create <name> [description]`,
    `/session load <id>`, `/session save`, `/session current`, `/session suspend`,
    `/session terminate`. A suspended session refuses new messages until
    `/session load <id>` resumes it; a terminated one refuses them for good.

    On a terminal, ←/→ edit the line, ↑/↓ recall earlier lines, Ctrl-L clears the screen,
    Ctrl-C during a turn cancels it (recorded in the session) and returns to the prompt.
    The lines typed are kept per store: beside a SQLite file (`<file>.chat-history`), in a
    file store's folder (`_chat_history`), for other stores in the user's data folder
    (`~/.local/share/agentledger/chat-history/`); none for `memory://`. Set
    `AGENTLEDGER_CHAT_HISTORY` to a file to keep them there instead, or to an empty value
    to keep none. When input is piped (not a terminal), each line read is echoed after the
    prompt, so the output reads as a transcript. Errors go to stderr.
    """
    agent = with_model(load_agent(agent_spec), model, base_url, api_key_env)
    store = store_from(ctx)
    session, created, user, app_name = _session_for(
        ctx, store, session_id, user=user, app_name=app_name, agent=agent, any_user=any_user
    )
    runner = Runner(agent, store)
    out = make_console()
    chat_ctx = ChatContext(
        manager=SessionManager(store, app_name=app_name, user_id=user),
        console=out,
        session_id=session.id,
        agent_name=agent.name,
        app_name=app_name,
        user_id=user,
        any_user=any_user,
    )
    out.print(
        f"session: {shown_id(session.id)} ({session_note(session, created)}); "
        "type /help for session commands, exit or quit to leave",
        highlight=False,
        soft_wrap=True,
    )
    if session.status != Status.ACTIVE:
        turn_allowed(chat_ctx, refusing=False)  # says why turns are refused, and what to do
    else:
        print_state(session, title="state", console=out)
    _chat_loop(chat_ctx, runner, open_line_reader(store))
    out.print(f"bye; session {shown_id(chat_ctx.session_id)} is saved", highlight=False, soft_wrap=True)
