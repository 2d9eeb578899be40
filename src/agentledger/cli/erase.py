"""`agentledger sessions erase`, `agentledger sessions truncate` and `agentledger compact`:
remove stored data for good (privacy, pruning).

Erase and truncate are destructive, as `sessions delete` is: without `--yes` they ask on a
terminal and refuse (exit 1, one `error:` line, nothing changed) when stdin is not one.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentledger.cli.app import StoreMode, app, cli_state, store_from
from agentledger.cli.render import make_console, print_json, shown_id
from agentledger.cli.sessions import (
    JsonOpt,
    SessionIdArg,
    confirm_or_refuse,
    sessions_app,
    usage_error,
)

__all__ = ["compact_command", "erase_command", "truncate_command"]

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
CompactOpt = Annotated[
    bool,
    typer.Option(
        "--compact",
        help="Then compact the store (agentledger compact), so the bytes leave its files now.",
    ),
]


def _say(text: str) -> None:
    make_console().print(text, markup=False, highlight=False, soft_wrap=True)


@sessions_app.command("erase")
def erase_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    seqs: Annotated[
        list[int],
        typer.Option("--seq", metavar="N", help="An event to erase (repeat for more)."),
    ],
    reason: Annotated[
        str,
        typer.Option("--reason", metavar="TEXT", help="Why, recorded in the events_erased event."),
    ],
    yes: YesOpt = False,
    compact: CompactOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Erase the payload of some events of a session for good. This cannot be undone.

    Each event's data and state changes are removed; its seq, type, author, time and
    invocation id stay, and an events_erased event records the seqs and the reason. The
    session's state does not change (remove a value from the state first, with an
    update, to have it gone from there too). The session still verifies
    (agentledger verify). The old bytes leave the store's files once it is compacted
    (--compact, or agentledger compact). With --json, prints the events_erased event.
    """
    if not seqs:
        usage_error("give at least one --seq")
    store = store_from(ctx, StoreMode.WRITE)
    if not yes:
        listed = ", ".join(str(s) for s in sorted(set(seqs)))
        what = (
            f"the payload of event{'s' if len(set(seqs)) > 1 else ''} {listed} "
            f"of session {shown_id(session_id)}"
        )
        confirm_or_refuse(
            f"Erase {what} for good?",
            f"not erasing {what} without confirmation, and stdin is not a terminal to ask "
            "on: pass --yes to erase it",
        )
    recorded = store.erase_events(session_id, seqs, reason)
    if compact:
        store.compact()
    if json_output:
        print_json(recorded.model_dump(mode="json"))
        return
    erased = ", ".join(str(s) for s in recorded.data["seqs"])
    noun = "event" if len(recorded.data["seqs"]) == 1 else "events"
    _say(
        f"Erased {noun} {erased} of session {shown_id(session_id)} "
        f"(recorded as event {recorded.seq})."
    )


@sessions_app.command("truncate")
def truncate_command(
    ctx: typer.Context,
    session_id: SessionIdArg,
    before: Annotated[
        int,
        typer.Option("--before", metavar="SEQ", help="The first event to keep.", min=1),
    ],
    yes: YesOpt = False,
    compact: CompactOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Drop the events before seq SEQ from a session's ledger for good. This cannot be undone.

    The session itself (state, status, version) does not change, and its ledger still
    verifies from the first event kept. SEQ is at most the session's last event, which
    always stays. The old bytes leave the store's files once it is compacted (--compact,
    or agentledger compact). With --json, prints {"session_id", "dropped"}.
    """
    store = store_from(ctx, StoreMode.WRITE)
    if not yes:
        what = f"the events before seq {before} of session {shown_id(session_id)}"
        confirm_or_refuse(
            f"Drop {what} for good?",
            f"not dropping {what} without confirmation, and stdin is not a terminal to ask "
            "on: pass --yes to drop them",
        )
    dropped = store.truncate_before(session_id, before)
    if compact:
        store.compact()
    if json_output:
        print_json({"session_id": session_id, "dropped": dropped})
        return
    _say(f"Dropped {dropped} event{'' if dropped == 1 else 's'} of session {shown_id(session_id)}.")


@app.command("compact")
def compact_command(ctx: typer.Context) -> None:
    """Reclaim the space of erased payloads, dropped events and deleted sessions.

    Afterwards their bytes are no longer in the store's files: SQLite rebuilds its file
    (VACUUM: it shrinks to what it holds), merges its write-ahead log into it and empties
    the log (freed content is zeroed);
    PostgreSQL runs VACUUM FULL on the store's tables (they are locked while it runs);
    the file store removes leftovers of deleted sessions. A store that does not exist is
    left alone (nothing to compact).
    """
    store = store_from(ctx, StoreMode.WRITE)
    if cli_state(ctx).missing_store is not None:
        _say("Nothing to compact.")
        return
    store.compact()
    _say("Compacted the store.")
