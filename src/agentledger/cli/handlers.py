"""`agentledger handlers status` and `agentledger handlers run [--follow]`: durable event
handlers over the store-wide feed."""

from __future__ import annotations

import threading
from typing import Annotated

import typer
from rich.table import Table

from agentledger.cli.agent import import_target
from agentledger.cli.app import StoreMode, cli_state, store_from
from agentledger.cli.render import make_console, print_json
from agentledger.cli.sessions import JsonOpt, usage_error
from agentledger.handlers import EventHandler, HandlerRunner
from agentledger.stores.base import SessionStore

__all__ = ["handlers_app"]

handlers_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Run durable event handlers over the store's event feed, and see where they are.",
)

HandlerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--handler",
        metavar="MODULE:ATTR",
        help="An event handler (an EventHandler, a class or a factory); repeat for more. "
        "The handlers of enabled plugins (--plugin) run too.",
    ),
]


def _handlers(ctx: typer.Context, store: SessionStore, specs: list[str] | None) -> list[EventHandler]:
    """The handlers of the enabled plugins (`--plugin`, `$AGENTLEDGER_PLUGINS`), then those
    named with `--handler`. The store's own inline runs are turned off: this command runs
    the handlers itself."""
    from agentledger.plugins import PluginHost

    host = getattr(store, "plugins", None)
    if not isinstance(host, PluginHost):  # an http:// store: its plugins run in the server
        names = cli_state(ctx).plugin_names()
        host = PluginHost(names, inline_handlers=False) if names else None
    found: list[EventHandler] = []
    if host is not None:
        host.inline_handlers = False
        found.extend(host.event_handlers)
    for spec in specs or []:
        target = import_target(spec, "event handler", "--handler", EventHandler)
        if isinstance(target, type):
            target = target()
        found.append(target)
    if not found:
        usage_error(
            "no event handler: give --handler MODULE:ATTR, or --plugin NAME of a plugin that "
            "provides handlers (agentledger plugins list shows them)"
        )
    return found


@handlers_app.command("status")
def status_command(ctx: typer.Context, handler: HandlerOpt = None, json_output: JsonOpt = False) -> None:
    """Show each handler's position in the feed, its lag, and its last failure.

    Exit code 1 when a handler is failing (stopped at an event that raised).
    """
    store = store_from(ctx, StoreMode.READ)
    runner = HandlerRunner(store, _handlers(ctx, store, handler))
    statuses = runner.status()
    if json_output:
        print_json(
            [
                {
                    "name": s.name,
                    "position": s.position,
                    "feed_position": s.feed_position,
                    "lag": s.lag,
                    "failures": s.failures,
                    "last_error": s.last_error,
                    "updated_at": s.updated_at,
                }
                for s in statuses
            ]
        )
    else:
        table = Table(box=None)
        for column in ("handler", "position", "lag", "state", "last error"):
            table.add_column(column)
        for s in statuses:
            state = f"[red]failing ({s.failures}x)[/red]" if s.failing else "[green]ok[/green]"
            table.add_row(s.name, str(s.position), str(s.lag), state, s.last_error or "")
        make_console().print(table)
    if any(s.failing for s in statuses):
        raise typer.Exit(1)


@handlers_app.command("run")
def run_command(
    ctx: typer.Context,
    handler: HandlerOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep running and handle new events as they come.")
    ] = False,
    poll: Annotated[
        float,
        typer.Option("--poll", min=0.05, metavar="SECONDS", help="With --follow: how often to look for new events."),
    ] = 0.5,
) -> None:
    """Catch handlers up with the feed: every event written since each handler's stored
    position (by any process, also while no handler ran) is handled, and each derived
    event is appended exactly once. A handler that fails stops at that event and is
    retried (with --follow, with growing waits); the others go on. Ctrl-C stops --follow.
    """
    store = store_from(ctx, StoreMode.WRITE)
    runner = HandlerRunner(store, _handlers(ctx, store, handler))
    console = make_console(stderr=True)
    if follow:
        stop = threading.Event()
        try:
            runner.follow(stop, poll)
        except KeyboardInterrupt:
            stop.set()
    else:
        handled = 0
        while True:
            step = runner.run_once()
            handled += step
            if step == 0:
                break
        console.print(f"handled {handled} event{'' if handled == 1 else 's'}", highlight=False)
    failing = [s for s in runner.status() if s.failing]
    for s in failing:
        console.print(f"[red]{s.name}[/red] is failing at position {s.position + 1}: {s.last_error}")
    if failing:
        raise typer.Exit(1)
