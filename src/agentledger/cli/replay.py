"""`agentledger replay`: re-run a recorded session's turns and report the first divergence."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from agentledger.cli.agent import AgentOpt, load_agent
from agentledger.cli.app import StoreMode, app, store_from
from agentledger.cli.render import make_console, print_json, shown_id
from agentledger.runner.replay import replay_session

__all__ = ["replay"]


@app.command()
def replay(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session to replay.")],
    until: Annotated[
        int | None,
        typer.Option("--until", metavar="SEQ", min=1, help="Replay only up to this event seq."),
    ] = None,
    agent_spec: AgentOpt = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON, and nothing else.")
    ] = False,
) -> None:
    """Re-run a session's turns with its recorded model outputs and the real tools, and
    report the first event whose tool result or state delta differs from the ledger.

    Needs no key and no network, whatever model recorded the session: each model call is
    answered from the ledger. The replay runs in memory; the store is only read. Exit code
    0 when the replay matches the ledger, 1 at the first divergence. With --json:
    `session_id`, `turns`, `events_compared`, `until`, `identical`, and `divergence`
    (`seq`, `type`, `field`, `recorded`, `replayed`, `tool`) or null.
    """
    agent = load_agent(agent_spec)
    # The replay runs in memory: the store is only read, never created or migrated.
    report = replay_session(store_from(ctx, StoreMode.READ), session_id, agent, until=until)
    if json_output:
        print_json({**dataclasses.asdict(report), "identical": report.identical})
    else:
        out = make_console()
        scope = f" up to event {until}" if until is not None else ""
        turns = f"{report.turns} turn{'' if report.turns == 1 else 's'}"
        summary = f"replayed {turns} of session {shown_id(session_id)}{scope}"
        if report.divergence is None:
            compared = report.events_compared
            out.print(
                f"{summary}: identical ({compared} event{'' if compared == 1 else 's'} compared)",
                highlight=False, soft_wrap=True,
            )
        else:
            out.print(f"{summary}: first divergence", highlight=False, soft_wrap=True)
            out.print(report.divergence.describe(), markup=False, highlight=False, soft_wrap=True)
    if not report.identical:
        raise typer.Exit(1)
