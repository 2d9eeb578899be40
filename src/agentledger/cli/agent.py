"""`agentledger demo`, `run` and `chat`: agent turns from the command line.

Every turn goes through the `Runner`, so each step is in the session's ledger before it is
printed. The agent is the reminders demo agent unless `--agent module:attribute` names
another `Agent` (or a function that returns one).
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from agentledger.cli.access import AnyUserOpt, owned_session
from agentledger.cli.app import app, store_from
from agentledger.cli.render import (
    make_console,
    print_event,
    print_events_json,
    print_json,
    print_state,
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
        help="An Agent (or a function returning one) to run instead of the reminders demo agent.",
    ),
]


def load_agent(spec: str | None) -> Agent:
    """Return the agent named by `module:attribute`, or the reminders demo agent for `None`.

    Raises:
        ConfigurationError: The module or attribute cannot be found, or is not an `Agent`.
    """
    if spec is None:
        return build_reminders_agent()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--agent takes MODULE:ATTRIBUTE, not {spec!r}")
    try:
        target: Any = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load agent {spec!r}: {exc}") from exc
    if callable(target) and not isinstance(target, Agent):
        target = target()
    if not isinstance(target, Agent):
        raise ConfigurationError(f"{spec!r} is a {type(target).__name__}, not an Agent")
    return target


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
def demo(ctx: typer.Context, user: UserOpt = DEMO_USER) -> None:
    """Run the reminders demo: a scripted conversation recorded in a durable session.

    Continues the user's most recent demo session (or creates one), runs the script through
    the runner, then prints the session id, the agent's answers and the session's ledger
    as JSON. Run it twice: the second run still knows the first run's reminders.
    """
    store = store_from(ctx)
    session, created = continue_or_create_session(store, user_id=user)
    runner = Runner(build_reminders_agent(), store)
    out = make_console()
    out.print(
        f"session: {session.id} ({'new' if created else 'continued'}) on {display_url(store.url)}",
        soft_wrap=True,
        highlight=False,
    )
    for message in DEMO_SCRIPT if created else DEMO_SCRIPT_CONTINUED:
        answer = final_output(list(runner.run(session.id, message)))
        out.print(f"[bold]you:[/] {message}", highlight=False)
        out.print("[bold cyan]agent:[/] ", end="")
        out.print(answer or "", markup=False, highlight=False, soft_wrap=True)
    events = store.read_events(session.id)
    out.print(f"ledger of session {session.id} ({len(events)} events):")
    print_events_json(events)


@app.command()
def run(
    ctx: typer.Context,
    message: Annotated[str, typer.Argument(help="What the user says.", show_default=False)],
    session_id: SessionOpt = None,
    user: UserOpt = DEMO_USER,
    app_name: AppOpt = DEMO_APP,
    agent_spec: AgentOpt = None,
    any_user: AnyUserOpt = False,
    events: Annotated[
        bool, typer.Option("--events", help="Also print the turn's events as they are stored.")
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print {session_id, answer, events} as JSON, and nothing else."),
    ] = False,
) -> None:
    """Run one agent turn with the user's own words and print the answer."""
    if not message.strip():
        raise typer.BadParameter("say something: the message is empty", param_hint="MESSAGE")
    store = store_from(ctx)
    agent = load_agent(agent_spec)
    session, created, user, app_name = _session_for(
        ctx, store, session_id, user=user, app_name=app_name, agent=agent, any_user=any_user
    )
    out = make_console()
    if not json_output:
        out.print(f"session: {session.id}{' (new)' if created else ''}", highlight=False)
    stored = []
    for event in Runner(agent, store).run(session.id, message):
        stored.append(event)
        if events and not json_output:
            print_event(event, console=out)
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
        out.print("[bold cyan]agent:[/] ", end="")
        out.print(answer or "", markup=False, highlight=False, soft_wrap=True)


_EXIT_WORDS = {"exit", "quit", ":q"}


def _chat_turn(runner: Runner, session_id: str, message: str, out: Console) -> None:
    """One turn, with the state before and after; a failure is printed, not raised."""
    try:
        print_state(runner.store.get_session(session_id), title="state before", console=out)
        try:
            answer = final_output(list(runner.run(session_id, message)))
        except RunnerError as exc:  # the error event is stored; show the state it left
            out.print("[bold red]agent failed:[/] ", end="")
            out.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        else:
            out.print("[bold cyan]agent:[/] ", end="")
            out.print(answer or "", markup=False, highlight=False, soft_wrap=True)
        print_state(runner.store.get_session(session_id), title="state after", console=out)
    except AgentLedgerError as exc:
        # e.g. another process suspended or deleted the session since the check
        out.print("[bold red]error:[/] ", end="")
        out.print(str(exc), markup=False, highlight=False, soft_wrap=True)


@app.command()
def chat(
    ctx: typer.Context,
    session_id: SessionOpt = None,
    user: UserOpt = DEMO_USER,
    app_name: AppOpt = DEMO_APP,
    agent_spec: AgentOpt = None,
    any_user: AnyUserOpt = False,
) -> None:
    """Chat with the agent in a loop; type `exit` or `quit` (or Ctrl-D) to leave.

    The session's state is shown before and after each turn (seed 004). Lines starting
    with `/` are session commands (seed 001; `/help` lists them): `/sessions`,
    `/sessions list [agent]`, `/sessions create <name> [description]`, `/session load <id>`,
    `/session save`, `/session current`, `/session suspend`, `/session terminate`.

    A suspended session refuses new messages until `/session load <id>` resumes it; a
    terminated one refuses them for good. When input is piped (not a terminal), each line
    read is echoed after the prompt, so the output reads as a transcript.
    """
    store = store_from(ctx)
    agent = load_agent(agent_spec)
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
        f"session: {session.id} ({'new' if created else 'continued'}); "
        "type /help for session commands, exit or quit to leave",
        highlight=False,
        soft_wrap=True,
    )
    if session.status != Status.ACTIVE:
        turn_allowed(chat_ctx, refusing=False)  # says why turns are refused, and what to do
    echo = not sys.stdin.isatty()
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if echo:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        message = line.strip()
        if not message:
            continue
        if message.lower() in _EXIT_WORDS:
            break
        if message.startswith("/"):
            if not handle_line(message, chat_ctx):
                break
            continue
        try:
            allowed = turn_allowed(chat_ctx)
        except AgentLedgerError as exc:
            out.print("[bold red]error:[/] ", end="")
            out.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            continue
        if allowed:
            _chat_turn(runner, chat_ctx.session_id, message, out)
    out.print(f"bye; session {chat_ctx.session_id} is saved", highlight=False, soft_wrap=True)
