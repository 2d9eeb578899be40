"""`agentledger serve`: the HTTP service over a store (needs the `server` extra)."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
from typing import Annotated

import typer

from agentledger.cli.app import app, cli_state
from agentledger.cli.render import print_error
from agentledger.errors import ConfigurationError
from agentledger.plugins import PLUGINS_ENV
from agentledger.stores.base import display_url

__all__ = ["serve"]

STORE_ENV = "AGENTLEDGER_SERVE_STORE"
TOKENS_ENV = "AGENTLEDGER_SERVE_TOKENS"
AGENT_ENV = "AGENTLEDGER_SERVE_AGENT"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _configure_logging() -> None:
    logger = logging.getLogger("agentledger.server")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", metavar="PORT", min=0, max=65535, help="The TCP port (0-65535).")
    ] = 8420,
    agent_spec: Annotated[
        str | None,
        typer.Option(
            "--agent",
            metavar="MODULE:ATTR",
            help="The Agent that POST /v1/sessions/{id}/turns runs (default: the reminders "
            "demo agent).",
        ),
    ] = None,
    tokens_file: Annotated[
        str | None,
        typer.Option(
            "--tokens",
            metavar="FILE",
            help='Bearer tokens, JSON: {"tokens": [{"token", "user", "apps", "role"}]}; '
            "re-read when it changes or on SIGHUP.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", min=1, help="Worker processes.")
    ] = 1,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback --host without --tokens (anyone who can connect "
            "sees every session).",
        ),
    ] = False,
) -> None:
    """Serve the store over HTTP: sessions, events, live event streams (SSE), lifecycle,
    agent turns, hooks and stats under /v1; the API docs at /docs; the web view (sessions,
    live timelines, state at any event, chat) at /.

    Without --tokens the server serves one local user and listens on loopback only. With
    --tokens, every request needs `Authorization: Bearer <token>`, and a user sees only
    their own sessions (an admin sees all). Logs one line per request on stderr. Needs
    `pip install 'agentledger[server]'`.
    """
    from agentledger.server import require_server_extra

    require_server_extra()
    import uvicorn

    from agentledger.cli.agent import load_agent
    from agentledger.server.app import create_app
    from agentledger.server.auth import TokenTable

    state = cli_state(ctx)
    if tokens_file is None and not _is_loopback(host):
        if not insecure:
            raise ConfigurationError(
                f"refusing to listen on {host} without --tokens: anyone who can connect "
                "would see every session; pass --tokens FILE (or --insecure)"
            )
        print_error(f"warning: listening on {host} without tokens (--insecure)")
    tokens = TokenTable(tokens_file) if tokens_file is not None else None
    agent = load_agent(agent_spec)  # fail now, not on the first turn
    _configure_logging()
    log = logging.getLogger("agentledger.server")
    config_kwargs = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": 5,
    }
    if workers > 1:
        if state.store_url.startswith("memory:"):
            raise ConfigurationError("memory:// cannot be shared by several --workers")
        os.environ[STORE_ENV] = state.store_url
        # Each worker opens its own store, with the plugins of this command line.
        os.environ[PLUGINS_ENV] = ",".join(state.plugin_names())
        if tokens_file is not None:
            os.environ[TOKENS_ENV] = tokens_file
        if agent_spec is not None:
            os.environ[AGENT_ENV] = agent_spec
        log.info("serving %s on http://%s:%d with %d workers",
                 display_url(state.store_url), host, port, workers)
        uvicorn.run(
            "agentledger.cli.serve:app_from_environment",
            factory=True,
            workers=workers,
            **config_kwargs,  # type: ignore[arg-type]
        )
        return
    store = state.open()
    application = create_app(store, tokens=tokens, agent=agent)
    if tokens is not None and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: tokens.reload())
    log.info("serving %s on http://%s:%d", display_url(store.url), host, port)

    class DrainingServer(uvicorn.Server):
        """On SIGINT/SIGTERM, also tell open event streams to end, so the shutdown waits
        only for in-flight requests (appends finish) and streams close cleanly."""

        def handle_exit(self, sig: int, frame: object) -> None:
            application.state.draining = True
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    DrainingServer(uvicorn.Config(application, **config_kwargs)).run()  # type: ignore[arg-type]


def app_from_environment() -> object:
    """The app of one `--workers` worker process, configured by the serving command through
    environment variables (store URL, tokens file, agent)."""
    from agentledger.cli.agent import load_agent
    from agentledger.server.app import create_app
    from agentledger.server.auth import TokenTable
    from agentledger.stores.base import open_store

    _configure_logging()
    tokens_file = os.environ.get(TOKENS_ENV)
    tokens = TokenTable(tokens_file) if tokens_file else None
    if tokens is not None and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: tokens.reload())
    return create_app(
        open_store(os.environ[STORE_ENV]),
        tokens=tokens,
        agent=load_agent(os.environ.get(AGENT_ENV)),
        close_store=True,
    )
