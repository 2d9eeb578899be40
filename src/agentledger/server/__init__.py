"""The HTTP service (`agentledger serve`): a FastAPI app over any store.

`create_app(store, tokens=..., agent=...)` builds the ASGI app; run it with uvicorn or mount
it in your own ASGI stack. Needs the `server` extra: `pip install 'agentledger[server]'`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentledger.errors import MissingDependencyError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from agentledger.stores.base import SessionStore

__all__ = ["create_app", "require_server_extra"]


def require_server_extra() -> None:
    """Check that the `server` extra is installed.

    Raises:
        MissingDependencyError: FastAPI, uvicorn or httpx is missing; the message names
            `pip install 'agentledger[server]'`.
    """
    import importlib.util

    for package in ("fastapi", "uvicorn", "httpx"):
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, "server")


def create_app(store: SessionStore, **options: Any) -> FastAPI:
    """Build the HTTP service over `store`; see `agentledger.server.app.create_app` for the
    options (`tokens`, `agent`, `poll_interval`, `heartbeat_interval`, `max_body_bytes`,
    `close_store`).

    Raises:
        MissingDependencyError: The `server` extra is not installed.
    """
    require_server_extra()
    from agentledger.server.app import create_app as build

    return build(store, **options)
