"""`agentledger stats`: session metrics (counts, resume and error rates, durations) over a store."""

from __future__ import annotations

import dataclasses

import typer

from agentledger.cli.app import StoreMode, app
from agentledger.cli.render import print_json, print_stats
from agentledger.cli.sessions import (
    AgentFilterOpt,
    AppFilterOpt,
    JsonOpt,
    UserFilterOpt,
    manager_from,
)

__all__ = ["stats_command"]


@app.command("stats")
def stats_command(
    ctx: typer.Context,
    json_output: JsonOpt = False,
    agent_name: AgentFilterOpt = None,
    app_name: AppFilterOpt = None,
    user_id: UserFilterOpt = None,
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
    stats = manager_from(ctx, StoreMode.READ).stats(agent_name=agent_name, app_name=app_name, user_id=user_id)
    if json_output:
        print_json(dataclasses.asdict(stats))
    else:
        print_stats(stats)
