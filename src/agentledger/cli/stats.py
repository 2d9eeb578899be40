"""`agentledger stats`: seed 003's metrics over the sessions of a store."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from agentledger.cli.app import app
from agentledger.cli.render import print_json, print_stats
from agentledger.cli.sessions import manager_from

__all__ = ["stats_command"]


@app.command("stats")
def stats_command(
    ctx: typer.Context,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print machine-readable JSON on stdout, and nothing else."),
    ] = False,
    agent_name: Annotated[
        str | None, typer.Option("--agent", metavar="NAME", help="Only sessions of this agent.")
    ] = None,
    app_name: Annotated[
        str | None, typer.Option("--app", metavar="APP", help="Only sessions of this app.")
    ] = None,
    user_id: Annotated[
        str | None, typer.Option("--user", metavar="USER", help="Only sessions of this user.")
    ] = None,
) -> None:
    """Print session metrics: counts by status, phase and agent, resume and error rates,
    median and p95 session duration.

    The resume rate is the share of sessions resumed at least once; the error rate the
    share with at least one error; durations are over finalized sessions (p95 by the
    nearest-rank method). With --json: `total`, `by_status`, `by_phase`, `by_agent`,
    `resume_rate` and `error_rate` (0-1), `median_duration_seconds` and
    `p95_duration_seconds` (null when nothing is finalized), `finalized`, `corrupted`.
    Reads every matching session's snapshot once (no ledger is read).
    """
    stats = manager_from(ctx).stats(agent_name=agent_name, app_name=app_name, user_id=user_id)
    if json_output:
        print_json(dataclasses.asdict(stats))
    else:
        print_stats(stats)
