"""The root `agentledger` command: global options, the lazily opened store, error handling.

Importing this module opens nothing: the store named by `--store` is opened by the first
command that asks for it (`store_from(ctx, mode)`) and closed when the command line exits, so
`agentledger --help` works without a store. Every `AgentLedgerError` raised by a command
becomes one `error: <message>` line on stderr and exit code 1 (`LedgerGroup`); usage errors
exit with 2 as Typer does; Ctrl-C ends a command with one `error: interrupted` line and exit
code 130. `--help` pages show placeholders as `--user USER` and `agentledger run MESSAGE`:
flags show no type, arguments their name.

Read commands never write: each command says how it uses the store (`READ`, `WRITE` or
`CREATE`, see `StoreMode`). Only `CREATE` commands (those that create sessions) may create
the store, and only the store itself (the SQLite file, the file store's folder), never a
missing folder above it. For the others a missing store reads as an empty one: a listing is
empty and a note on stderr names the store; a command on one session fails with "no
session", naming the missing store.

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
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from agentledger.cli.render import print_error
from agentledger.errors import (
    AgentLedgerError,
    ConfigurationError,
    StoreError,
    StoreNotFoundError,
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
    "StoreMode",
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
        ConfigurationError: The variable is set but not an ISO 8601 time with a timezone,
            or is out of range in UTC.
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
    try:
        now = parsed.astimezone(timezone.utc)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ConfigurationError(
            f"{NOW_ENV}={raw!r} is out of range once converted to UTC "
            "(years 1 to 9999 only)"
        ) from exc
    return lambda: now


class StoreMode(StrEnum):
    """How a command uses the store; it decides how the store is opened.

    `READ`: read-only (SQLite `mode=ro`): nothing is created, migrated or written; a store
        whose schema is older than this agentledger is refused with a message saying so.
    `WRITE`: changes existing sessions; an existing store only (migrated if older).
    `CREATE`: may create sessions, so it creates the store if missing (the SQLite file or
        the file store's folder, never a missing folder above it: that is an error naming
        the folder).

    With `READ` and `WRITE`, a store that does not exist reads as an empty one.
    """

    READ = "read"
    WRITE = "write"
    CREATE = "create"


class CliState:
    """What the commands of one command line share, kept in `ctx.obj`.

    Args:
        store_url: The URL of the store to open (`--store`, `$AGENTLEDGER_STORE`, or the
            default `sqlite:///agentledger.db`).
        plugins: Plugin names from `--plugin`; the store runs those of
            `$AGENTLEDGER_PLUGINS` and then these.
    """

    def plugin_names(self) -> list[str]:
        """The plugins the store is opened with: `$AGENTLEDGER_PLUGINS`, then `--plugin`
        (each name once)."""
        from agentledger.plugins import plugin_names_from_environment

        names: list[str] = []
        for name in [*plugin_names_from_environment(), *self.plugins]:
            if name not in names:
                names.append(name)
        return names

    def __init__(self, store_url: str, plugins: list[str] | None = None) -> None:
        self.store_url = store_url
        self.plugins: list[str] = list(plugins or [])
        """Plugins named with `--plugin`, after those of `$AGENTLEDGER_PLUGINS`."""
        self._store: SessionStore | None = None
        self.missing_store: str | None = None
        """Set when the store does not exist and was read as an empty one: says so."""

    def open(self, mode: StoreMode = StoreMode.CREATE) -> SessionStore:
        """Open the store on first use and return it; later calls return the same store
        (the first call's `mode` holds).

        The store stamps events with `cli_clock()` when `$AGENTLEDGER_NOW` is set, and
        the manager takes its clock from the store.

        Args:
            mode: How the command uses the store (see `StoreMode`).

        Returns:
            The store; with `READ` or `WRITE` and no store there, an empty in-memory
            stand-in (read-only for `READ`; `WRITE` commands only change existing
            sessions, so theirs fail with `SessionNotFoundError`), and `missing_store`
            says which store is missing.

        Raises:
            ConfigurationError: The URL's scheme is unknown, an option is bad, or
                `$AGENTLEDGER_NOW` is not a valid time.
            StoreNotFoundError: `CREATE`, and the store's folder does not exist.
            SchemaVersionError: `READ`, and the store needs a migration first.
            StoreUnavailableError: The store cannot be reached.
        """
        if self._store is None:
            clock = cli_clock()
            options: dict[str, Any] = {} if clock is None else {"clock": clock}
            options["plugins"] = self.plugin_names()
            if mode == StoreMode.READ:
                options["read_only"] = True
            elif mode == StoreMode.WRITE:
                options["create"] = False
            try:
                self._store = open_store(self.store_url, **options)
            except StoreNotFoundError:
                if mode == StoreMode.CREATE:
                    raise
                from agentledger.stores.memory import MemoryStore

                self.missing_store = (
                    f"store {display_url(self.store_url)} does not exist (nothing was created)"
                )
                # An empty stand-in: reads find nothing, and a WRITE command's change to a
                # session fails with SessionNotFoundError (they create none).
                stand_in: dict[str, Any] = {"read_only": mode == StoreMode.READ}
                if clock is not None:
                    stand_in["clock"] = clock
                self._store = MemoryStore(url=self.store_url, **stand_in)
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


def store_from(ctx: typer.Context, mode: StoreMode = StoreMode.CREATE) -> SessionStore:
    """Open (once) and return the store chosen by `--store`; it is closed at exit.

    Args:
        ctx: The context of the running command.
        mode: How the command uses the store: `READ` for commands that only read, `WRITE`
            for commands that change existing sessions, `CREATE` for those that may
            create one (see `StoreMode`).

    Raises:
        ConfigurationError: The store URL is bad.
        StoreNotFoundError: `CREATE`, and the store's folder does not exist.
        SchemaVersionError: `READ`, and the store needs a migration first.
        StoreUnavailableError: The store cannot be reached.
    """
    return cli_state(ctx).open(mode)


class _HelpArgument(TyperArgument):
    """An argument shown in `--help` by its name alone (`MESSAGE`), not `{message}` and
    `<str>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or (self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return [f"{name}..." if self.nargs != 1 else name]


class _HelpOption(TyperOption):
    """An option shown in `--help` without `<bool>` after a flag."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.is_flag else super().display_type_rich(ctx)


def _tidy_params(params: list[Any]) -> None:
    """Give Typer's parameters the classic `--help` placeholders (Typer's own show `<bool>`,
    `<str>` and `{name}`): only how they are displayed changes, parsing stays Typer's."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _HelpArgument
        elif type(param) is TyperOption:
            param.__class__ = _HelpOption


def _tidy_commands(group: TyperGroup, ctx: Any) -> None:
    for command in group.commands.values():
        if isinstance(command, TyperCommand | TyperGroup):
            _tidy_params(command.get_params(ctx))
        if isinstance(command, TyperGroup):
            _tidy_commands(command, ctx)


class LedgerGroup(TyperGroup):
    """The root command group: turns every `AgentLedgerError` into one line on stderr.

    The error is printed as `error: <message>` and the command line exits with code 1,
    without a traceback; Ctrl-C (`KeyboardInterrupt`) prints `error: interrupted` and
    exits with 130. Other exceptions are bugs and keep their traceback. When the
    command read a store that does not exist (as an empty one), the error says so, and a
    command that succeeded prints a `note:` line on stderr naming the store.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        """The root's parameters; every command's `--help` placeholders are tidied on the
        way (see `_tidy_params`)."""
        params = super().get_params(ctx)
        _tidy_params(params)
        _tidy_commands(self, ctx)
        return params

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        """Invoke the command line, reporting agentledger errors as `error: <message>`."""
        try:
            result = super().invoke(ctx)
        except AgentLedgerError as exc:
            missing = _missing_store(ctx)
            print_error(str(exc) if missing is None else f"{exc}; {missing}")
            raise typer.Exit(1) from exc
        except KeyboardInterrupt as exc:
            print_error("interrupted")
            raise typer.Exit(130) from exc
        except typer.Exit:
            _note_missing_store(ctx)
            raise
        _note_missing_store(ctx)
        return result


def _missing_store(ctx: typer.Context) -> str | None:
    state = ctx.obj
    return state.missing_store if isinstance(state, CliState) else None


def _note_missing_store(ctx: typer.Context) -> None:
    missing = _missing_store(ctx)
    if missing is not None:
        typer.echo(f"note: {missing}, so it holds no sessions", err=True)


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
                "file://./folder, postgresql://user@host/db?schema=s, memory://, "
                "http://host:8420 (a server run by agentledger serve). "
                "Opened only by commands that need it."
            ),
        ),
    ] = None,
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            metavar="NAME",
            help=(
                "Run this plugin around every write (repeat for more): a built-in "
                "(redact), an installed plugin's name (agentledger plugins list), or "
                "module:attribute. Added to those in $AGENTLEDGER_PLUGINS."
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
    state = CliState(store or default_store_url(), plugin)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Run the `agentledger` command line: the console script's entry point.

    Variables in a `.env` file in the working directory (API keys, `AGENTLEDGER_MODEL`,
    `AGENTLEDGER_STORE`) are read first; the environment wins over the file.
    """
    from dotenv import load_dotenv

    global _DOTENV_LOADED
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
    _DOTENV_LOADED = True  # read once: model resolution must not parse (and warn) again
    try:
        app(prog_name="agentledger")
    finally:
        _DOTENV_LOADED = False  # an in-process caller's next `app(...)` reads it itself


_DOTENV_LOADED = False
"""Whether `main` has already read `./.env` into the environment."""


def dotenv_loaded() -> bool:
    """Whether the console script has read `./.env` into `os.environ` already (then its
    variables are in the environment and the file need not be parsed again)."""
    return _DOTENV_LOADED
