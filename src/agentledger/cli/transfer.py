"""`agentledger export`, `import` and `copy`: move sessions between stores."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentledger.cli.app import StoreMode, app, cli_clock, store_from
from agentledger.cli.render import make_console, plural, print_error, print_json
from agentledger.cli.sessions import (
    AgentFilterOpt,
    AppFilterOpt,
    JsonOpt,
    UserFilterOpt,
    usage_error,
)
from agentledger.core.session import Status
from agentledger.stores import open_store
from agentledger.stores.base import SessionStore, display_url
from agentledger.transfer import (
    TransferReport,
    copy_sessions,
    export_sessions,
    import_sessions,
    read_export,
)

__all__ = ["copy_command", "export_command", "import_command"]

StatusOpt = Annotated[
    Status | None,
    typer.Option("--status", case_sensitive=False, help="Only sessions with this status."),
]
PhaseOpt = Annotated[
    str | None, typer.Option("--phase", metavar="PHASE", help="Only sessions in this phase.")
]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--skip-existing",
        help="Leave sessions that exist in the destination with another history as they "
        "are, instead of refusing.",
    ),
]
IdsArg = Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Sessions to move.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every session (of the filters, if any).")]


def _filters(
    ids: list[str] | None, everything: bool, **given: Any
) -> tuple[list[str] | None, dict[str, Any]]:
    filters = {k: (v.value if isinstance(v, Status) else v) for k, v in given.items() if v is not None}
    if ids and (everything or filters):
        usage_error("give session ids, or --all and/or filters (not both)")
    if not ids and not everything and not filters:
        usage_error("give session ids, --all, or filters (--app, --user, --agent, --status, --phase)")
    return (list(ids) if ids else None), filters


def _report(report: TransferReport, json_output: bool, verb: str) -> None:
    if json_output:
        print_json(
            {
                "sessions": report.sessions,
                "events": report.events,
                "unchanged": report.unchanged,
                "continued": report.continued,
                "skipped": report.skipped,
                "scoped_states": report.scoped_states,
            }
        )
        return
    parts = [f"{verb} {plural(report.sessions, 'session')} ({plural(report.events, 'event')})"]
    if report.continued:
        parts.append(f"{report.continued} of them continued")
    if report.unchanged:
        parts.append(f"{report.unchanged} already there")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (another history there): {', '.join(report.skipped)}")
    if report.scoped_states:
        parts.append(plural(report.scoped_states, "shared state"))
    make_console(stderr=True).print("; ".join(parts), soft_wrap=True, highlight=False)


@app.command("export")
def export_command(
    ctx: typer.Context,
    session_ids: IdsArg = None,
    everything: AllOpt = False,
    app_name: AppFilterOpt = None,
    user_id: UserFilterOpt = None,
    agent_name: AgentFilterOpt = None,
    status: StatusOpt = None,
    phase: PhaseOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout (replaced only once the export succeeds)."),
    ] = None,
) -> None:
    """Write sessions with their whole history as JSON Lines, for `agentledger import`.

    Each session's events are written exactly as stored (ids, seqs, timestamps) with a
    digest of its hash chain, so an import elsewhere gives the same history, and a changed
    or cut file is refused. The shared app and user state of the exported sessions
    follows them. The store is only read. A summary goes to stderr.
    """
    ids, filters = _filters(
        session_ids, everything, app_name=app_name, user_id=user_id, agent_name=agent_name, status=status, phase=phase
    )
    store = store_from(ctx, StoreMode.READ)
    if output is None:
        report = export_sessions(store, sys.stdout, ids, **filters)
        sys.stdout.flush()
    elif output.exists() and not output.is_file():  # a FIFO, /dev/stdout: written as it goes
        with _open_for_writing(output) as out:
            report = export_sessions(store, out, ids, **filters)
    else:
        # Written beside it and renamed at the end: a failed export leaves FILE as it was.
        partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
        try:
            with _open_for_writing(partial, shown=output) as out:
                if output.exists():  # FILE keeps its mode
                    os.chmod(out.fileno(), output.stat().st_mode & 0o7777)
                report = export_sessions(store, out, ids, **filters)
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    _report(report, False, "exported")


def _open_for_writing(path: Path, *, shown: Path | None = None) -> TextIO:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        print_error(f"cannot write {shown or path}: {exc.strerror or exc}")
        raise typer.Exit(1) from exc


@app.command("import")
def import_command(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="FILE", help="An export of `agentledger export`; - for stdin.")
    ],
    skip_existing: SkipOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Import sessions written by `agentledger export` into the store.

    Ids, seqs and timestamps are kept. The whole file is checked first (every session
    against its digest) and nothing is written if it is damaged, or if a session exists
    in the store with another history (unless --skip-existing). A session already there
    with the same history is left alone; one whose stored history is a beginning of the
    file's is continued. Creates the store if it does not exist.
    """
    if source == "-":
        parsed = read_export(sys.stdin)
    else:
        path = Path(source)
        if not path.is_file():
            usage_error(f"no such file: {source}")
        with path.open(encoding="utf-8") as lines:
            parsed = read_export(lines)
    # Opened once the file is known to be good: a bad file creates no store.
    store = store_from(ctx, StoreMode.CREATE)
    report = import_sessions(store, parsed, skip_existing=skip_existing)
    _report(report, json_output, "imported")


def _open(url: str, **options: Any) -> SessionStore:
    clock = cli_clock()
    return open_store(url, **options, **({} if clock is None else {"clock": clock}))


@app.command("copy")
def copy_command(
    source_url: Annotated[
        str, typer.Option("--from", metavar="URL", help="The store to copy from (only read).")
    ],
    dest_url: Annotated[
        str, typer.Option("--to", metavar="URL", help="The store to copy to (created if missing).")
    ],
    session_ids: IdsArg = None,
    app_name: AppFilterOpt = None,
    user_id: UserFilterOpt = None,
    agent_name: AgentFilterOpt = None,
    status: StatusOpt = None,
    phase: PhaseOpt = None,
    skip_existing: SkipOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Copy sessions from one store to another, e.g. from SQLite to PostgreSQL.

    Copies every session (or the ids or filters given) with its whole history and the
    shared app and user state, then checks every copied session's event count and
    digest in the destination. Resumable: run it again after an interruption and it
    skips what is there and continues sessions that grew since. A session that exists
    in the destination with another history stops the copy, unless --skip-existing.
    A progress bar goes to stderr on a terminal.
    """
    filters = {
        k: (v.value if isinstance(v, Status) else v)
        for k, v in dict(
            app_name=app_name, user_id=user_id, agent_name=agent_name, status=status, phase=phase
        ).items()
        if v is not None
    }
    if session_ids and filters:
        usage_error("give session ids or filters (not both)")
    if display_url(source_url) == display_url(dest_url):
        usage_error("--from and --to are the same store")
    source = _open(source_url, read_only=True)
    try:
        dest = _open(dest_url)
        try:
            console = make_console(stderr=True)
            with Progress(
                TextColumn("copying"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sessions, {task.fields[events]} events"),
                TimeElapsedColumn(),
                console=console,
                disable=not console.is_terminal,
            ) as progress:
                ids = session_ids or None
                if ids is None:
                    from agentledger.transfer import iter_session_ids

                    ids = list(iter_session_ids(source, **filters))
                task = progress.add_task("copy", total=len(ids), events=0)
                done = [0]

                def step(_: str, events: int) -> None:
                    done[0] += events
                    progress.update(task, advance=1, events=done[0])

                report = copy_sessions(source, dest, ids, skip_existing=skip_existing, on_session=step)
            _report(report, json_output, f"copied to {display_url(dest_url)}:")
        finally:
            dest.close()
    finally:
        source.close()
