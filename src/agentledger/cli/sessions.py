"""`agentledger sessions …`: list, show, read the ledger of, and delete sessions."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from agentledger.cli.app import store_from
from agentledger.cli.render import (
    make_console,
    print_error,
    print_events_json,
    print_events_table,
    print_json,
    print_session,
    print_session_json,
    print_sessions_table,
)
from agentledger.core.session import Status
from agentledger.errors import CorruptedSessionError

__all__ = ["sessions_app"]

sessions_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="List, inspect and delete sessions.",
)

SessionIdArg = Annotated[
    str, typer.Argument(metavar="ID", help="The session's id.", show_default=False)
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout, and nothing else.")
]


@sessions_app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonOpt = False,
    app_name: Annotated[
        str | None, typer.Option("--app", metavar="APP", help="Only sessions of this app.")
    ] = None,
    user_id: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Only sessions of this user.")
    ] = None,
    agent_name: Annotated[
        str | None, typer.Option("--agent", metavar="NAME", help="Only sessions of this agent.")
    ] = None,
    status: Annotated[
        Status | None,
        typer.Option("--status", case_sensitive=False, help="Only sessions with this status."),
    ] = None,
    phase: Annotated[
        str | None,
        typer.Option(
            "--phase", metavar="PHASE", help="Only sessions in this phase (e.g. approval)."
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=1000, metavar="N", help="Sessions per page (1-1000)."),
    ] = 50,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor", metavar="C", help="Start after this cursor (printed by the previous page)."
        ),
    ] = None,
) -> None:
    """List sessions, most recently active first, one page at a time.

    The table shows each session's status (green active, yellow suspended, red terminated),
    phase, number of events and last activity. When more sessions match, the command that
    prints the next page is shown below the table; with --json, use "next_cursor".
    """
    page = store_from(ctx).list_sessions(
        app_name=app_name,
        user_id=user_id,
        agent_name=agent_name,
        status=status.value if status is not None else None,
        phase=phase,
        limit=limit,
        cursor=cursor,
    )
    if json_output:
        print_json(page.model_dump(mode="json"))
        return
    hint = None
    if page.next_cursor is not None:
        args = ["agentledger", "sessions", "list"]
        for flag, value in (
            ("--app", app_name),
            ("--user", user_id),
            ("--agent", agent_name),
            ("--status", status.value if status is not None else None),
            ("--phase", phase),
            ("--limit", str(limit) if limit != 50 else None),
            ("--cursor", page.next_cursor),
        ):
            if value is not None:
                args += [flag, value]
        hint = shlex.join(args)
    print_sessions_table(page.sessions, next_cursor=page.next_cursor, next_hint=hint)
    for session_id in page.corrupted:
        print_error(f"session {session_id} is corrupted and cannot be read (left out above)")


@sessions_app.command("show")
def show_command(
    ctx: typer.Context, session_id: SessionIdArg, json_output: JsonOpt = False
) -> None:
    """Show one session: its fields, phase history, state and metadata.

    The session is read from its snapshot, so this is fast however long its ledger is.
    """
    session = store_from(ctx).get_session(session_id)
    if json_output:
        print_session_json(session)
    else:
        print_session(session)


@sessions_app.command("events")
def events_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    json_output: JsonOpt = False,
    after: Annotated[
        int, typer.Option("--after", min=0, metavar="N", help="Only events after seq N.")
    ] = 0,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=0, metavar="N", help="At most N events (the first ones)."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=0, metavar="N", help="Only the last N events (not with --limit)."
        ),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", "-t", metavar="TYPE", help="Only events of this type; repeat for several."
        ),
    ] = None,
) -> None:
    """Print a session's ledger: its events in order, one line each.

    Each line shows the event's seq, time, type, author, a one-line summary of its data
    and state changes, and its (shortened) invocation id. With --json, the events are
    printed as a JSON array, in full.
    """
    if limit is not None and last is not None:
        raise typer.BadParameter("use either --limit or --last, not both", param_hint="'--last'")
    events = store_from(ctx).read_events(
        session_id, after=after, limit=limit, last=last, types=types or None
    )
    if json_output:
        print_events_json(events)
    else:
        print_events_table(events, title=f"session {session_id}")


@sessions_app.command("delete")
def delete_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a session and its whole ledger. This cannot be undone.

    The app-wide and user-wide state it shared with other sessions is kept. Asks for
    confirmation unless --yes is given.
    """
    store = store_from(ctx)
    if not yes:
        try:
            session = store.get_session(session_id)
            count = session.version
            what = f"session {session.id} ({count} event{'' if count == 1 else 's'})"
        except CorruptedSessionError:
            what = f"corrupted session {session_id}"
        typer.confirm(f"Delete {what}?", abort=True)
    store.delete_session(session_id)
    make_console().print(f"Deleted session {session_id}.", markup=False, highlight=False)
