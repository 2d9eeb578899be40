"""The root `agentledger` command: global options, the lazily opened store, error handling.

Importing this module opens nothing: the store named by `--store` is opened by the first
command that asks for it (`store_from(ctx)`) and closed when the command line exits, so
`agentledger --help` works without a store. Every `AgentLedgerError` raised by a command
becomes one `error: <message>` line on stderr and exit code 1 (`LedgerGroup`); usage errors
exit with 2 as Typer does.

Commands added by other modules get all of this by taking a `typer.Context` (and are
registered by importing their module in `agentledger.cli.__init__`):

Example:
    ```python
    import typer
    from agentledger.cli.app import app, store_from

    @app.command()
    def count(ctx: typer.Context) -> None:
        '''Print how many sessions the first page holds.'''
        typer.echo(len(store_from(ctx).list_sessions().sessions))
    ```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from agentledger.cli.render import print_error
from agentledger.errors import (
    AgentLedgerError,
    ConfigurationError,
    StoreError,
    StoreUnavailableError,
)
from agentledger.stores.base import (
    DEFAULT_STORE_URL,
    SessionStore,
    default_store_url,
    display_url,
    open_store,
)

__all__ = [
    "NOW_ENV",
    "CliState",
    "LedgerGroup",
    "app",
    "cli_clock",
    "cli_state",
    "main",
    "store_from",
]

NOW_ENV = "AGENTLEDGER_NOW"
"""Testing aid: an ISO 8601 time with a timezone (`2026-01-08T19:00:00Z`) that the CLI uses
as "now" everywhere: event timestamps, idle times for the resume policy, cleanup cut-offs."""


def cli_clock() -> Callable[[], datetime] | None:
    """The clock fixed by `$AGENTLEDGER_NOW` (a testing aid), or `None` when it is unset.

    Lets a shell script show a session timing out without waiting: run one command with
    `AGENTLEDGER_NOW=2026-01-08T18:05:30Z` and a later one with `...T19:00:00Z`.

    Raises:
        ConfigurationError: The variable is set but not an ISO 8601 time with a timezone.
    """
    raw = os.environ.get(NOW_ENV, "").strip()
    if not raw:
        return None
    problem = ConfigurationError(
        f"{NOW_ENV}={raw!r} is not an ISO 8601 time with a timezone (e.g. 2026-01-08T19:00:00Z)"
    )
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise problem from exc
    if parsed.utcoffset() is None:
        raise problem
    now = parsed.astimezone(timezone.utc)
    return lambda: now


class CliState:
    """What the commands of one command line share, kept in `ctx.obj`.

    Args:
        store_url: The URL of the store to open (`--store`, `$AGENTLEDGER_STORE`, or the
            default `sqlite:///agentledger.db`).
    """

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._store: SessionStore | None = None

    def open(self) -> SessionStore:
        """Open the store on first use and return it; later calls return the same store.

        The store stamps events with `cli_clock()` when `$AGENTLEDGER_NOW` is set.

        Raises:
            ConfigurationError: The URL's scheme is unknown, an option is bad, or
                `$AGENTLEDGER_NOW` is not a valid time.
            StoreUnavailableError: The store cannot be reached.
        """
        if self._store is None:
            clock = cli_clock()
            try:
                if clock is None:
                    self._store = open_store(self.store_url)
                else:
                    self._store = open_store(self.store_url, clock=clock)
            except StoreError as exc:
                if type(exc) not in (StoreError, StoreUnavailableError):
                    raise
                # The driver's message ("unable to open database file") rarely names the store.
                raise type(exc)(f"cannot open store {display_url(self.store_url)}: {exc}") from exc
        return self._store

    def close(self) -> None:
        """Close the store if it was opened; a failure to close is reported, not raised."""
        store, self._store = self._store, None
        if store is None:
            return
        try:
            store.close()
        except AgentLedgerError as exc:
            print_error(f"closing the store: {exc}")


def cli_state(ctx: typer.Context) -> CliState:
    """Return the `CliState` of this command line (set up by the root command).

    Args:
        ctx: The context of any command or sub-command.

    Returns:
        The shared state; a fresh one on the default store when the command runs outside
        the `agentledger` root command (e.g. a sub-app invoked on its own in a test).
    """
    state = ctx.find_object(CliState)
    if state is None:
        state = CliState(default_store_url())
        ctx.find_root().obj = state
        ctx.call_on_close(state.close)
    return state


def store_from(ctx: typer.Context) -> SessionStore:
    """Open (once) and return the store chosen by `--store`; it is closed at exit.

    Args:
        ctx: The context of the running command.

    Raises:
        ConfigurationError: The store URL is bad.
        StoreUnavailableError: The store cannot be reached.
    """
    return cli_state(ctx).open()


class LedgerGroup(TyperGroup):
    """The root command group: turns every `AgentLedgerError` into one line on stderr.

    The error is printed as `error: <message>` and the command line exits with code 1,
    without a traceback. Other exceptions are bugs and keep their traceback.
    """

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        """Invoke the command line, reporting agentledger errors as `error: <message>`."""
        try:
            return super().invoke(ctx)
        except AgentLedgerError as exc:
            print_error(str(exc))
            raise typer.Exit(1) from exc


app = typer.Typer(
    name="agentledger",
    cls=LedgerGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        from agentledger import __version__

        typer.echo(f"agentledger {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="AGENTLEDGER_STORE",
            metavar="URL",
            show_default=DEFAULT_STORE_URL,
            help=(
                "The store to use: sqlite:///relative.db, sqlite:////absolute.db, "
                "file://./folder, postgresql://user@host/db?schema=s, memory://. "
                "Opened only by commands that need it."
            ),
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Durable sessions and an append-only event ledger for AI agents.

    Every session is an append-only ledger of events; its state, status and phase are a
    projection of that ledger. Read commands take --json for machine-readable output.
    """
    state = CliState(store or default_store_url())
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Run the `agentledger` command line: the console script's entry point.

    Variables in a `.env` file in the working directory (API keys, `AGENTLEDGER_MODEL`,
    `AGENTLEDGER_STORE`) are read first; the environment wins over the file.
    """
    from dotenv import load_dotenv

    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
    app(prog_name="agentledger")
