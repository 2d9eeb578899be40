"""A real `agentledger serve`-style uvicorn server in a subprocess, for the tests.

`ServedStores(template)` starts one subprocess on a random loopback port that serves many
stores at once: `http://127.0.0.1:PORT/t/NAME` is `create_app(open_store(template % NAME))`,
opened on first use, so each test gets a fresh, empty store without starting a server per
test (the conformance suite runs hundreds of tests per backend). `release(name)` closes one.

Run as a script, it is that server: `python http_support.py TEMPLATE` prints the port on
its first line of stdout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent


class ServedStores:
    """The parent's handle on the server subprocess (see the module docstring).

    Args:
        template: A store URL with `{name}` where each store's name goes.
        env: Extra environment variables for the server.
    """

    def __init__(self, template: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "http_support.py"), template],
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the test server did not start: {line!r}")
        self.port = int(line)
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, name: str | None = None) -> str:
        """The `http://` store URL of store `name` (a new one when `None`)."""
        return f"{self.base}/t/{name or uuid.uuid4().hex[:16]}"

    def release(self, url: str) -> None:
        """Close the store served at `url` (its data stays)."""
        try:
            httpx.delete(url + "/_close", timeout=30)
        except httpx.HTTPError:
            pass

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _serve(template: str) -> None:
    import uvicorn

    from agentledger.server import create_app
    from agentledger.stores.base import open_store

    apps: dict[str, Any] = {}

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    for app in apps.values():
                        app.state.store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        _, first, name, *rest = scope["path"].split("/", 3) + [""]
        if first != "t" or not name:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        path = "/" + (rest[0] if rest else "")
        if path == "/_close" and scope.get("method") == "DELETE":
            app = apps.pop(name, None)
            if app is not None:
                app.state.store.close()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        app = apps.get(name)
        if app is None:
            app = apps[name] = create_app(open_store(template.replace("{name}", name)))
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_path = b"/" + (raw.split(b"/", 3) + [b"", b""])[3]  # still percent-encoded
        await app({**scope, "path": path, "raw_path": raw_path}, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    config = uvicorn.Config(dispatch, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    _serve(sys.argv[1])
