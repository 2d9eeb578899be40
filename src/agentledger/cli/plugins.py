"""`agentledger plugins list`: the plugins that can be enabled, which are, and their hooks."""

from __future__ import annotations

from typing import Any

import typer

from agentledger.cli.app import cli_state
from agentledger.cli.render import print_json
from agentledger.cli.sessions import JsonOpt
from agentledger.errors import ConfigurationError, MissingDependencyError

__all__ = ["plugins_app"]

plugins_app = typer.Typer(
    name="plugins",
    help="The plugins run around every write: built-in, installed (entry points), enabled.",
    no_args_is_help=True,
)


@plugins_app.command("list")
def list_plugins(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """List the plugins (and the event handlers they provide): the built-in ones, those installed packages declare (entry-point
    group agentledger.plugins), and those enabled here (--plugin, $AGENTLEDGER_PLUGINS), each
    with the hooks it implements.

    Enabled plugins run in the order shown, around every write of every command (hooks
    marked tryfirst or trylast run first or last). With --json: a list of objects with
    `name`, `source`, `target`, `enabled` (bool), `order` (1, 2... among enabled; null),
    `hooks` (names) and `handlers` (the names of the durable event handlers it provides,
    which run after each append and in `agentledger handlers run --plugin NAME`), plus
    `error` when a plugin cannot be loaded. Opens no store.
    """
    from agentledger.plugins import PluginHost, available_plugins

    enabled = cli_state(ctx).plugin_names()
    host = PluginHost(enabled)  # a bad enabled plugin is an error, as it is for any command
    rows: list[dict[str, Any]] = []
    spec_of = dict(zip(host.names, enabled, strict=True))
    for found in available_plugins():
        row: dict[str, Any] = {
            "name": found.name,
            "source": found.source,
            "target": found.target,
            "enabled": found.name in host.names,
            "order": host.names.index(found.name) + 1 if found.name in host.names else None,
            "hooks": [],
            "handlers": [],
        }
        if row["enabled"]:
            row["hooks"] = host.hooks_of(found.name)
            row["handlers"] = host.handler_plugins.get(found.name, [])
        else:
            try:
                alone = PluginHost([found.name])
                row["hooks"] = alone.hooks_of(found.name)
                row["handlers"] = alone.handler_plugins.get(found.name, [])
            except ConfigurationError as exc:
                row["error"] = str(exc)
                missing = exc.__cause__
                if isinstance(missing, MissingDependencyError):  # e.g. otel without its extra
                    row["needs"] = f"pip install 'agentledger[{missing.extra}]'"
        rows.append(row)
    listed = {row["name"] for row in rows}
    for name in host.names:  # enabled by module:attribute or as an object
        if name not in listed:
            rows.append({
                "name": name,
                "source": "module",
                "target": spec_of[name],
                "enabled": True,
                "order": host.names.index(name) + 1,
                "hooks": host.hooks_of(name),
                "handlers": host.handler_plugins.get(name, []),
            })
    if json_output:
        print_json(rows)
        return
    headers = ("NAME", "ENABLED", "SOURCE", "HOOKS", "HANDLERS")
    table = [
        (
            row["name"],
            f"yes ({row['order']})" if row["enabled"] else "no",
            row["source"],
            ", ".join(row["hooks"])
            if "error" not in row
            else f"(needs {row['needs']})" if "needs" in row
            else f"error: {row['error']}",
            ", ".join(row["handlers"]),
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(headers)]
    for line in [headers, *table]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
