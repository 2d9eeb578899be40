"""`agentledger verify`: check sessions' stored history against their hash chains."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import typer
from rich.text import Text

from agentledger.cli.app import StoreMode, app, store_from
from agentledger.cli.render import make_console, print_json, shown_id
from agentledger.cli.sessions import JsonOpt, usage_error
from agentledger.errors import SessionNotFoundError
from agentledger.stores.base import SessionStore, VerifyReport

__all__ = ["verify_command"]


def _all_ids(store: SessionStore) -> Iterator[str]:
    """Every session id of the store, including sessions that cannot be read back."""
    cursor: str | None = None
    while True:
        page = store.list_sessions(limit=1000, cursor=cursor)
        yield from (s.id for s in page.sessions)
        yield from page.corrupted
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _verify(store: SessionStore, session_id: str, missing: set[str]) -> VerifyReport:
    """The session's report; a session that does not exist is added to `missing` and
    reported not ok (nothing was verified), never as damaged."""
    try:
        return store.verify_session(session_id)
    except SessionNotFoundError as exc:
        missing.add(session_id)
        return VerifyReport(session_id=session_id, ok=False, problem=str(exc))


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    session_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Sessions to verify.")
    ] = None,
    all_sessions: Annotated[
        bool, typer.Option("--all", help="Verify every session of the store.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check that sessions' stored history has not changed since it was written.

    Reads each session's whole ledger and recomputes its hash chain: every event's hash
    over its header, its payload and the previous event's hash. Reports the first event
    found missing or changed (a bit flip, a hand edit, a deleted row or line, a lost
    tail) and why, and a snapshot that does not match its ledger. An id with no session
    is reported as MISSING, not as damaged. Exit code 0 when every session verifies, 1
    when one does not (or does not exist), 2 on bad usage. With --json: `ok`; `sessions`,
    one object per session with `session_id`, `ok`, `events`, `first_bad_seq`, `problem`,
    `last_hash`, `first_seq` (where a truncated ledger starts) and `erased` (how many
    events have their payload erased); and `missing`, the ids with no session.
    """
    if session_ids and all_sessions:
        usage_error("give session ids or --all, not both")
    if not session_ids and not all_sessions:
        usage_error("give session ids to verify, or --all to verify every session")
    store = store_from(ctx, StoreMode.READ)  # a read: never creates or migrates a store
    ids = list(dict.fromkeys(_all_ids(store))) if all_sessions else list(session_ids or [])
    missing: set[str] = set()
    reports = [_verify(store, sid, missing) for sid in ids]
    ok = all(r.ok for r in reports)
    if json_output:
        print_json(
            {
                "ok": ok,
                "sessions": [r.model_dump(mode="json") for r in reports],
                "missing": [r.session_id for r in reports if r.session_id in missing],
            }
        )
    else:
        console = make_console()
        for report in reports:
            if report.ok:
                events = f"{report.events} event{'' if report.events == 1 else 's'}"
                line = Text.assemble(("ok  ", "green"), f" {shown_id(report.session_id)}  {events}")
            elif report.session_id in missing:
                line = Text.assemble(
                    ("MISSING", "bold yellow"), f" {shown_id(report.session_id)}  {report.problem}"
                )
            else:
                where = "" if report.first_bad_seq is None else f"seq {report.first_bad_seq}: "
                line = Text.assemble(
                    ("FAIL", "bold red"), f" {shown_id(report.session_id)}  {where}{report.problem}"
                )
            console.print(line, soft_wrap=True)
        bad = sum(not r.ok and r.session_id not in missing for r in reports)
        checked = len(reports) - len(missing)
        parts = [f"{bad} damaged" if bad else "all intact"] if checked else []
        if missing:
            parts.append(f"{len(missing)} not found")
        noun = "session" if checked == 1 else "sessions"
        console.print(f"{checked} {noun} verified: {', '.join(parts)}", soft_wrap=True)
    if not ok:
        raise typer.Exit(1)
