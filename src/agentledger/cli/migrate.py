"""`agentledger migrate`: bring a store's schema up to this agentledger's version.

Opening a store for writing migrates it; read commands never do (they refuse a store whose
schema is older, and say so). This command is the explicit way: it opens the store for
writing and says whether it was migrated.
"""

from __future__ import annotations

import typer

from agentledger.cli.app import StoreMode, app, cli_state, store_from
from agentledger.cli.render import make_console, print_error, print_json
from agentledger.cli.sessions import JsonOpt
from agentledger.errors import SchemaVersionError, StoreNotFoundError
from agentledger.stores.base import SessionStore, display_url, open_store

__all__ = ["migrate_command"]


def _schema_version(store: SessionStore) -> int | None:
    """The store's schema version, or None for a store without one (memory, HTTP)."""
    version = getattr(store, "schema_version", None)
    return int(version()) if callable(version) else None


@app.command("migrate")
def migrate_command(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Migrate the store to this agentledger's schema version (SQLite, PostgreSQL, files).

    A store written by an earlier agentledger is migrated the first time it is opened for
    writing; read commands (sessions list, verify, stats, ...) never migrate, and refuse
    such a store until it is. On SQLite the whole migration is one transaction: one that
    fails leaves the file as it was. Afterwards an earlier agentledger cannot open the
    store. A store that does not exist is not created (exit code 1). --json prints
    {"store", "migrated", "schema_version"}.
    """
    state = cli_state(ctx)
    shown = display_url(state.store_url)
    try:
        with open_store(state.store_url, read_only=True) as probe:
            current = _schema_version(probe)
    except SchemaVersionError:
        current = None  # older: opening it for writing migrates it (newer: that raises)
    except StoreNotFoundError:
        current = None
    store = store_from(ctx, StoreMode.WRITE)
    if state.missing_store is not None:
        print_error(f"{state.missing_store}: nothing to migrate")
        state.missing_store = None  # said here, not again as a note
        raise typer.Exit(1)
    version = _schema_version(store)
    migrated = version is not None and current != version
    if json_output:
        print_json({"store": shown, "migrated": migrated, "schema_version": version})
        return
    console = make_console()
    if version is None:
        text = f"{shown} has no schema of its own: nothing to migrate."
    elif migrated:
        text = f"Migrated {shown} to schema version {version}."
    else:
        text = f"{shown} is at schema version {version}: nothing to migrate."
    console.print(text, markup=False, highlight=False, soft_wrap=True)
