"""`agentledger sessions …`: create, update, list, inspect, suspend, resume, finalize, fork,
rewind, clean up and delete sessions (statuses, phases, resume decisions, retention).

Write commands go through `SessionManager`, so the store checks every lifecycle rule inside
its append and a refused move writes nothing. `should-resume` exits 0 when the session may
resume and 1 when not, so a shell can branch on it. `$AGENTLEDGER_NOW` (a testing aid, see
`agentledger.cli.app.cli_clock`) fixes the time the commands use.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from pydantic import TypeAdapter
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from agentledger.cli.app import StoreMode, store_from
from agentledger.cli.render import (
    format_time,
    make_console,
    print_cleanup,
    print_decision,
    print_error,
    print_events_json,
    print_events_table,
    print_json,
    print_session,
    print_session_change,
    print_session_json,
    print_sessions_table,
    shown_id,
)
from agentledger.core.session import Session, Status
from agentledger.errors import CorruptedSessionError, InvalidEventError, SessionNotFoundError
from agentledger.manager import CleanupResult, SessionManager
from agentledger.stores.shared import MAX_NESTING, check_nesting

__all__ = ["PROGRESS_MIN_SESSIONS", "manager_from", "parse_metadata", "sessions_app"]

sessions_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Create, update, inspect, resume, finalize, clean up and delete sessions.",
)

_TIME = TypeAdapter(datetime)  # times in --json output are written as pydantic writes them

PROGRESS_MIN_SESSIONS = 50
"""`cleanup` shows a progress bar (on a terminal) when it deletes at least this many."""


def manager_from(ctx: typer.Context, mode: StoreMode = StoreMode.CREATE) -> SessionManager:
    """A `SessionManager` over the command line's store (`--store`), opened for `mode`
    (see `StoreMode`). It uses the store's clock: the one fixed by `$AGENTLEDGER_NOW`
    when it is set, so events are stamped and idle times measured on one clock.

    Raises:
        ConfigurationError: A bad store URL or `$AGENTLEDGER_NOW`.
        StoreUnavailableError: The store cannot be reached.
    """
    return SessionManager(store_from(ctx, mode))


def usage_error(message: str) -> NoReturn:
    """Print `error: <message>` on one line on stderr and exit with code 2 (bad usage)."""
    print_error(message)
    raise typer.Exit(2)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_metadata(value: str | None, *, option: str = "--metadata") -> dict[str, Any] | None:
    """Parse a `--metadata` value: a JSON object, or `None` when the option was not given.

    On bad JSON, `NaN`/`Infinity`, JSON that is not an object, or an object nested
    deeper than the stores take, prints a one-line `error: …` and exits with code 2 (like
    every other bad option value).
    """
    if value is None:
        return None
    try:
        data = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        usage_error(f"{option} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        usage_error(f"{option} must be a JSON object, not {_json_type(data)}")
    try:  # stored inside an event's data: one level less than the store's limit
        check_nesting(data, option, MAX_NESTING - 1)
    except InvalidEventError as exc:
        usage_error(str(exc).replace("; nothing was written", ""))
    return data


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


SessionIdArg = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        help="The session's id (any text up to 512 characters; quote it if it has spaces).",
        show_default=False,
    ),
]


class ListOrder(StrEnum):
    """`sessions list --order`: which sessions come first."""

    NEWEST = "newest"
    OLDEST = "oldest"
    CREATED_NEWEST = "created-newest"
    CREATED_OLDEST = "created-oldest"


_STORE_ORDERS = {
    ListOrder.NEWEST: "updated_desc",
    ListOrder.OLDEST: "updated_asc",
    ListOrder.CREATED_NEWEST: "created_desc",
    ListOrder.CREATED_OLDEST: "created_asc",
}
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout, and nothing else.")
]


AppFilterOpt = Annotated[
    str | None, typer.Option("--app", metavar="APP", help="Only sessions of this app.")
]
UserFilterOpt = Annotated[
    str | None, typer.Option("--user", metavar="USER", help="Only sessions of this user.")
]
AgentFilterOpt = Annotated[
    str | None, typer.Option("--agent", metavar="NAME", help="Only sessions of this agent.")
]
MetadataOpt = Annotated[
    str | None,
    typer.Option(
        "--metadata",
        metavar="JSON",
        help="A JSON object, merged into the metadata (nested keys kept unless overwritten).",
    ),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", metavar="TEXT", help="Why, recorded with the status change."),
]


@sessions_app.command("create")
def create_command(
    ctx: typer.Context,
    agent: Annotated[
        str, typer.Option("--agent", metavar="NAME", help="The agent that owns the session.")
    ],
    purpose: Annotated[
        str,
        typer.Option("--purpose", metavar="TEXT", help="Why it exists (e.g. approval_workflow)."),
    ],
    metadata: MetadataOpt = None,
    app_name: Annotated[
        str | None,
        typer.Option("--app", metavar="APP", help="The app it belongs to (default: agents)."),
    ] = None,
    user_id: Annotated[
        str | None,
        typer.Option("--user", metavar="USER", help="The user it belongs to (default: local)."),
    ] = None,
    phase: Annotated[
        str | None,
        typer.Option(
            "--phase", metavar="PHASE", help="Start in this phase (default: initializing)."
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Create an active session for an agent and print its id.

    Only the id is printed, so a shell can keep it: `ID=$(agentledger sessions create
    --agent terraform-architect --purpose approval_workflow)`. With --json, the whole
    session is printed instead. An unknown or final --phase is an error that lists the
    valid phases; --metadata that is not a JSON object is a usage error (exit code 2).
    """
    data = parse_metadata(metadata)
    session = manager_from(ctx).create_session(
        agent, purpose, data, app_name=app_name, user_id=user_id, phase=phase
    )
    if json_output:
        print_session_json(session)
    else:
        typer.echo(session.id)


@sessions_app.command("list")
def list_command(
    ctx: typer.Context,
    json_output: JsonOpt = False,
    app_name: AppFilterOpt = None,
    user_id: UserFilterOpt = None,
    agent_name: AgentFilterOpt = None,
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
    active_only: Annotated[
        bool,
        typer.Option(
            "--active-only", help="Only active sessions (not suspended, not terminated)."
        ),
    ] = False,
    order: Annotated[
        ListOrder,
        typer.Option(
            "--order",
            case_sensitive=False,
            help="newest/oldest: by last activity; created-newest/created-oldest: by "
            "creation time.",
        ),
    ] = ListOrder.NEWEST,
) -> None:
    """List sessions, most recently active first (or in --order), one page at a time,
    across every agent unless filtered.

    The table shows each session's status (green active, yellow suspended, red terminated),
    phase, number of events and last activity. When more sessions match, the command that
    prints the next page is shown below the table; with --json, use "next_cursor".
    --active-only with another --status is a usage error (exit 2).
    """
    if active_only and status is not None and status != Status.ACTIVE:
        usage_error(f"--active-only contradicts --status {status.value}")
    page = manager_from(ctx, StoreMode.READ).list_sessions(
        active_only=active_only,
        app_name=app_name,
        user_id=user_id,
        agent_name=agent_name,
        status=status.value if status is not None else None,
        phase=phase,
        limit=limit,
        cursor=cursor,
        order=_STORE_ORDERS[order],
    )
    if json_output:
        print_json(page.model_dump(mode="json"))
        return
    hint = None
    if page.next_cursor is not None:
        args = ["agentledger", "sessions", "list"]
        args += ["--active-only"] if active_only else []
        for flag, value in (
            ("--app", app_name),
            ("--user", user_id),
            ("--agent", agent_name),
            ("--status", status.value if status is not None else None),
            ("--phase", phase),
            ("--limit", str(limit) if limit != 50 else None),
            ("--order", order.value if order != ListOrder.NEWEST else None),
            ("--cursor", page.next_cursor),
        ):
            if value is not None:
                args += [flag, value]
        hint = shlex.join(args)
    print_sessions_table(page.sessions, next_cursor=page.next_cursor, next_hint=hint)
    for session_id in page.corrupted:
        print_error(f"session {shown_id(session_id)} is corrupted and cannot be read (left out above)")


@sessions_app.command("show")
def show_command(
    ctx: typer.Context, session_id: SessionIdArg, json_output: JsonOpt = False
) -> None:
    """Show one session: its fields, phase history, state and metadata.

    The session is read from its snapshot, so this is fast however long its ledger is.
    """
    session = store_from(ctx, StoreMode.READ).get_session(session_id)
    if json_output:
        print_session_json(session)
    else:
        print_session(session)


sessions_app.command(
    "get",
    help=(
        "Show one session: its fields, phase history, state and metadata (the same as "
        "`show`)."
    ),
)(show_command)


@sessions_app.command("update")
def update_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    phase: Annotated[
        str | None,
        typer.Option(
            "--phase",
            metavar="PHASE",
            help="Move to this phase; a final one (completed, failed, abandoned) finalizes.",
        ),
    ] = None,
    metadata: MetadataOpt = None,
    error: Annotated[
        str | None,
        typer.Option("--error", metavar="TEXT", help="Record an error (error count + 1)."),
    ] = None,
    resume_ready_flag: Annotated[
        bool,
        typer.Option(
            "--resume-ready",
            help="Mark the session as one that may be resumed (the resume policy checks it).",
        ),
    ] = False,
    not_resume_ready: Annotated[
        bool,
        typer.Option("--not-resume-ready", help="Mark the session as one not to resume."),
    ] = False,
    summary: Annotated[
        str | None,
        typer.Option(
            "--summary", metavar="TEXT", help="What happened; only with a final --phase."
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Record progress on a session, in one append: a phase, metadata, an error, the
    resume-ready flag.

    Phases move as the lifecycle allows (e.g. planning → approval → executing); an unknown
    phase is an error that lists the valid ones, a move that is not allowed lists the
    allowed ones, and a terminated session refuses every update. Nothing is written when
    the update is refused. Prints the session's status, phase and error count (with
    --json, the whole session). --resume-ready and --not-resume-ready together are a usage
    error.
    """
    if resume_ready_flag and not_resume_ready:
        usage_error("use either --resume-ready or --not-resume-ready, not both")
    resume_ready = True if resume_ready_flag else False if not_resume_ready else None
    if (phase, metadata, error, resume_ready, summary) == (None,) * 5:
        usage_error(
            "nothing to update: give --phase, --metadata, --error, --resume-ready "
            "or --not-resume-ready"
        )
    data = parse_metadata(metadata)
    session = manager_from(ctx, StoreMode.WRITE).update_state(
        session_id,
        phase=phase,
        metadata=data,
        error=error,
        resume_ready=resume_ready,
        summary=summary,
    )
    _print_changed("Updated", session, json_output)


def _print_changed(verb: str, session: Session, json_output: bool) -> None:
    if json_output:
        print_session_json(session)
    else:
        print_session_change(verb, session)


@sessions_app.command("should-resume")
def should_resume_command(
    ctx: typer.Context, session_id: SessionIdArg, json_output: JsonOpt = False
) -> None:
    """Decide whether a session may resume; exit code 0 when it may, 1 when not.

    Prints the decision: resume yes/no, the machine-readable reason (session_resumable,
    not_found, corrupted, terminated, not_resume_ready, phase_not_resumable,
    timeout_exceeded, too_many_errors), a sentence of detail, the previous phase, the idle
    time and the error count. With --json, the whole decision (including the phase history
    and metadata a resumed agent needs). A missing session is a decision (not_found, exit
    code 1), not an error. The policy: phase approval, investigating or planning; idle at
    most 30 minutes; fewer than 3 errors; marked resume-ready; not terminated.
    """
    decision = manager_from(ctx, StoreMode.READ).should_resume(session_id)
    if json_output:
        print_json(decision.model_dump(mode="json"))
    else:
        print_decision(decision)
    if not decision.resume:
        raise typer.Exit(1)


@sessions_app.command("suspend")
def suspend_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    reason: ReasonOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Pause an active session: it keeps everything but refuses new turns until resumed."""
    _print_changed("Suspended", manager_from(ctx, StoreMode.WRITE).suspend(session_id, reason), json_output)


@sessions_app.command("resume")
def resume_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    reason: ReasonOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Pick a session up again: a suspended one becomes active; on an active one the resume
    is recorded (its resume count goes up).

    This does not consult the resume policy: ask `should-resume` first. A terminated
    session cannot be resumed.
    """
    _print_changed("Resumed", manager_from(ctx, StoreMode.WRITE).resume(session_id, reason), json_output)


@sessions_app.command("finalize")
def finalize_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    outcome: Annotated[
        str,
        typer.Argument(
            metavar="OUTCOME", help="completed, failed or abandoned.", show_default=False
        ),
    ],
    summary: Annotated[
        str | None, typer.Option("--summary", metavar="TEXT", help="What happened.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """End a session with an outcome: its phase becomes the outcome, it is terminated, and
    its duration is recorded.

    An outcome that is not a final phase is an error that lists the valid ones; a session
    that is already terminated cannot be finalized again.
    """
    session = manager_from(ctx, StoreMode.WRITE).finalize_session(session_id, outcome, summary)
    _print_changed("Finalized", session, json_output)


@sessions_app.command("terminate")
def terminate_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    reason: ReasonOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """End a session without an outcome; it refuses every append from then on.

    Use `finalize` to record an outcome (completed, failed, abandoned) instead.
    """
    _print_changed("Terminated", manager_from(ctx, StoreMode.WRITE).terminate(session_id, reason), json_output)


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
    keys: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", metavar="KEY", help="Only the event with this key; repeat for several."),
    ] = None,
    key_prefix: Annotated[
        str | None,
        typer.Option("--key-prefix", metavar="PREFIX", help="Only events whose key starts with PREFIX."),
    ] = None,
    effective: Annotated[
        bool,
        typer.Option(
            "--effective",
            help="Only the events still in effect: leave out those a rewind undid, and the "
            "rewound markers.",
        ),
    ] = False,
) -> None:
    """Print a session's ledger: its events in order, one line each.

    Each line shows the event's seq, time, type, idempotency key (when events have one),
    author, a one-line summary of its data and state changes, and its (shortened)
    invocation id. With --json, the events are printed as a JSON array, in full.
    """
    if limit is not None and last is not None:
        raise typer.BadParameter("use either --limit or --last, not both", param_hint="'--last'")
    events = store_from(ctx, StoreMode.READ).read_events(
        session_id,
        after=after,
        limit=limit,
        last=last,
        types=types or None,
        keys=keys or None,
        key_prefix=key_prefix,
        effective=effective,
    )
    if json_output:
        print_events_json(events)
    else:
        print_events_table(events, title=f"session {shown_id(session_id)}")


@sessions_app.command("fork")
def fork_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    at: Annotated[
        int | None,
        typer.Option(
            "--at", min=1, metavar="SEQ", help="Copy the events up to this seq (default: all)."
        ),
    ] = None,
    new_id: Annotated[
        str | None,
        typer.Option("--id", metavar="NEW", help="The new session's id (default: a new one)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Fork a session: a new session whose history is this one's up to a seq.

    The fork gets a copy of the events (its own ledger and hash chain) and then its own
    `session_forked` event; its state is the session's as it was at that seq. The
    session itself is not changed. App- and user-wide state stays shared by both.
    """
    fork = store_from(ctx, StoreMode.WRITE).fork_session(
        session_id, at_seq=at, new_session_id=new_id
    )
    if json_output:
        print_session_json(fork)
        return
    origin = fork.forked_from
    assert origin is not None
    line = Text("Forked session ")
    line.append(shown_id(origin.session_id), style="bold")
    line.append(f" at seq {origin.seq} into ")
    line.append(shown_id(fork.id), style="bold")
    line.append(f" (version {fork.version}).")
    make_console().print(line, soft_wrap=True)


@sessions_app.command("rewind")
def rewind_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, metavar="SEQ", help="Go back to the state after this seq."),
    ] = None,
    before_invocation: Annotated[
        str | None,
        typer.Option(
            "--before-invocation",
            metavar="ID",
            help="Go back to just before this invocation's first event (instead of --to).",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Rewind a session: undo its events after a seq, keeping them in the ledger.

    Appends a `rewound` event after which the session's own state, phase, status and
    metadata are what they were after that seq. The undone events stay in the ledger
    (`sessions events`; `--effective` leaves them out). App- and user-wide state is
    shared with other sessions and is not rewound. A terminated session cannot be
    rewound: fork it at an earlier seq instead.
    """
    if (to is None) == (before_invocation is None):
        usage_error("give either --to SEQ or --before-invocation ID")
    store = store_from(ctx, StoreMode.WRITE)
    (marker, *_) = store.rewind(session_id, to_seq=to, before_invocation=before_invocation)
    session = store.get_session(session_id)
    if json_output:
        print_session_json(session)
        return
    line = Text("Rewound session ")
    line.append(shown_id(session.id), style="bold")
    line.append(f" to seq {marker.data['to_seq']} (version {session.version}).")
    make_console().print(line, soft_wrap=True)


@sessions_app.command("delete")
def delete_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a session and its whole ledger. This cannot be undone.

    The app-wide and user-wide state it shared with other sessions is kept. Without
    --yes it asks for confirmation on a terminal; when stdin is not a terminal (a pipe
    or a file) it refuses with one error line (exit 1) and deletes nothing.
    """
    store = store_from(ctx, StoreMode.WRITE)
    if not yes:
        try:
            session = store.get_session(session_id)
            count = session.version
            what = f"session {shown_id(session.id)} ({count} event{'' if count == 1 else 's'})"
        except CorruptedSessionError:
            what = f"corrupted session {shown_id(session_id)}"
        confirm_or_refuse(
            f"Delete {what}?",
            f"not deleting {what} without confirmation, and stdin is not a terminal to ask "
            "on: pass --yes to delete it",
        )
    store.delete_session(session_id)
    make_console().print(f"Deleted session {shown_id(session_id)}.", markup=False, highlight=False)


@sessions_app.command("cleanup")
def cleanup_command(
    ctx: typer.Context,
    hours: Annotated[
        float,
        typer.Option(
            "--hours",
            min=0,
            metavar="N",
            help="Delete sessions whose last activity is more than N hours old.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the sessions that would go; delete nothing.")
    ] = False,
    only_finalized: Annotated[
        bool,
        typer.Option("--only-finalized", help="Only terminated (finalized) sessions."),
    ] = False,
    json_output: JsonOpt = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Delete sessions that are not terminated without asking."
        ),
    ] = False,
) -> None:
    """Delete sessions idle for more than --hours hours (retention), with their ledgers.

    Each session is deleted in its own short transaction, so a long clean-up never holds
    a lock. --dry-run lists the sessions that would be deleted (a table, or with --json an
    object with "session_ids" and "sessions"); a real run prints how many were deleted.
    Sessions that cannot be read back are left alone and named on stderr. On a terminal, a
    progress bar shows on stderr when many sessions are deleted.

    When the clean-up would delete sessions that are not terminated (active or
    suspended), it asks first on a terminal; without a terminal it refuses (exit 1)
    unless --yes is given. --only-finalized and --dry-run never ask.
    """
    if not math.isfinite(hours):
        raise typer.BadParameter(f"must be a finite number, not {hours}", param_hint="--hours")
    manager = manager_from(ctx, StoreMode.READ if dry_run else StoreMode.WRITE)
    try:
        older_than = timedelta(hours=hours)
    except OverflowError:  # more hours than a timedelta holds: older than any date
        older_than = timedelta.max
    if not (dry_run or only_finalized or yes):
        older_than = _confirm_cleanup(manager, older_than)
    if dry_run:
        result = manager.cleanup(older_than, only_finalized=only_finalized, dry_run=True)
        sessions = _existing(manager, result.session_ids)
    else:
        result = _delete_with_progress(manager, older_than, only_finalized, json_output)
        sessions = []
    if json_output:
        data: dict[str, Any] = {
            "dry_run": result.dry_run,
            "cutoff": _TIME.dump_python(result.cutoff, mode="json"),
            "count": result.count,
            "session_ids": result.session_ids,
            "skipped_corrupted": result.skipped_corrupted,
            "skipped_changed": result.skipped_changed,
        }
        if dry_run:
            data["sessions"] = [s.model_dump(mode="json") for s in sessions]
        print_json(data)
        return
    print_cleanup(result, sessions)


def _stdin_is_terminal() -> bool:
    """Whether a person can answer a question on stdin (a terminal, not a pipe or file)."""
    return sys.stdin.isatty()


def confirm_or_refuse(question: str, refusal: str) -> None:
    """Ask a yes/no question before a destructive step, on a terminal only.

    The rule every deleting command follows when --yes is not given: a person at a
    terminal is asked; a pipe or file on stdin is never read as the answer.

    Args:
        question: The question shown on the terminal ("Delete ...?").
        refusal: The `error:` line printed when stdin is not a terminal; it should tell
            the user to pass --yes.

    Raises:
        typer.Abort: The answer is no ("Aborted!", exit 1).
        typer.Exit: (code 1, after the one `error:` line) stdin is not a terminal.
    """
    if not _stdin_is_terminal():
        print_error(refusal)
        raise typer.Exit(1)
    typer.confirm(question, abort=True)


def _confirm_cleanup(manager: SessionManager, older_than: timedelta) -> timedelta:
    """Ask before a clean-up deletes sessions that are not terminated.

    Returns:
        The age to clean up with: the cut-off the question named, however long the answer
        took, so a session that became old enough meanwhile is not deleted unasked.

    Raises:
        typer.Abort: The answer is no ("Aborted!", exit 1, as `sessions delete` does).
        typer.Exit: (code 1, after one `error:` line) stdin is not a terminal to ask on.
    """
    preview = manager.cleanup(older_than, dry_run=True)
    live = sum(
        1
        for page in manager.iter_sessions(updated_before=preview.cutoff)
        for session in page.sessions
        if session.status != Status.TERMINATED
    )
    if not live:
        return older_than
    count = preview.count
    what = (
        f"{count} session{'' if count == 1 else 's'} last active before "
        f"{format_time(preview.cutoff)} UTC, {live} of them not terminated (active or suspended)"
    )
    confirm_or_refuse(
        f"Delete {what}?",
        f"not deleting {live} session{'' if live == 1 else 's'} that "
        f"{'is' if live == 1 else 'are'} not terminated (active or suspended) without "
        "confirmation, and stdin is not a terminal to ask on: pass --yes to delete them, "
        "--only-finalized to keep them, or --dry-run to list them",
    )
    return max(manager.clock() - preview.cutoff, timedelta(0))


def _existing(manager: SessionManager, ids: list[str]) -> list[Session]:
    sessions = []
    for session_id in ids:
        try:
            sessions.append(manager.get_session(session_id))
        except (SessionNotFoundError, CorruptedSessionError):
            continue  # deleted or broken since it was listed
    return sessions


def progress_console() -> Console:
    """The console the clean-up progress bar is drawn on (stderr)."""
    return make_console(stderr=True)


def _delete_with_progress(
    manager: SessionManager, older_than: timedelta, only_finalized: bool, json_output: bool
) -> CleanupResult:
    console = progress_console()
    if json_output or not console.is_terminal:
        return manager.cleanup(older_than, only_finalized=only_finalized)
    # On a terminal, count first (a read-only pass) so the bar has a total.
    total = manager.cleanup(older_than, only_finalized=only_finalized, dry_run=True).count
    if total < PROGRESS_MIN_SESSIONS:
        return manager.cleanup(older_than, only_finalized=only_finalized)
    columns = (
        TextColumn("Deleting sessions"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("cleanup", total=total)

        def advance(done: int) -> None:
            progress.update(task, completed=done, total=max(total, done))

        return manager.cleanup(older_than, only_finalized=only_finalized, on_progress=advance)
