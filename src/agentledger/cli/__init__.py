"""The `agentledger` command line (Typer + Rich).

`app` is the root Typer app; `main` runs it (the `agentledger` console script). Sub-apps
and command modules are registered here, once; a module that adds commands imports what it
needs with `from agentledger.cli.app import app, store_from` (note that the attribute
`agentledger.cli.app` is the Typer app, which shadows the module of the same name).

Example:
    >>> from typer.testing import CliRunner
    >>> from agentledger.cli import app
    >>> CliRunner().invoke(app, ["--version"]).stdout.startswith("agentledger ")
    True
"""

from __future__ import annotations

from agentledger.cli import agent as _agent_commands  # noqa: F401  (registers demo/run/chat)
from agentledger.cli import erase as _erase_commands  # noqa: F401  (erase, truncate, compact)
from agentledger.cli import migrate as _migrate_command  # noqa: F401  (registers migrate)
from agentledger.cli import replay as _replay_command  # noqa: F401  (registers replay)
from agentledger.cli import serve as _serve_command  # noqa: F401  (registers serve)
from agentledger.cli import stats as _stats_command  # noqa: F401  (registers stats)
from agentledger.cli import transfer as _transfer_commands  # noqa: F401  (export/import/copy)
from agentledger.cli import verify as _verify_command  # noqa: F401  (registers verify)
from agentledger.cli.app import app, main
from agentledger.cli.handlers import handlers_app
from agentledger.cli.hooks import hook_app
from agentledger.cli.plugins import plugins_app
from agentledger.cli.sessions import sessions_app

__all__ = ["app", "main"]

app.add_typer(sessions_app, name="sessions")
app.add_typer(hook_app, name="hook")
app.add_typer(handlers_app, name="handlers")
app.add_typer(plugins_app, name="plugins")
