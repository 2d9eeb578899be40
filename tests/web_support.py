"""What the web view's browser tests and benchmark share: `agentledger serve` in a subprocess
on a loopback port (restartable on the same port), and Debian's Chromium driven by
Playwright for Python (never a downloaded browser).

`browser_or_skip()` returns the Playwright module's `sync_playwright` and the Chromium path,
or skips (fails under `CI=true`) with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM_ENV = "AGENTLEDGER_TEST_CHROMIUM"
"""Overrides the Chromium the tests launch (default: Debian's /usr/bin/chromium)."""


def chromium_path() -> str | None:
    """The Chromium to launch, or `None` when there is none."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given if Path(given).exists() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def browser_or_skip() -> tuple[Any, str]:
    """`(sync_playwright, chromium_path)`; skips the module without them (fails under CI)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is missing: pip install -e '.[test]'"
        sync_playwright = None
    chromium = chromium_path()
    if reason is None and chromium is None:
        reason = (
            "Chromium is missing: apt-get install -y chromium "
            f"(or point {CHROMIUM_ENV} at a Chromium binary)"
        )
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return sync_playwright, str(chromium)


def agentledger_command() -> str:
    """The installed `agentledger` console script."""
    candidate = Path(sys.executable).parent / "agentledger"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("agentledger")
    if found is None:
        pytest.skip("the agentledger console script is not installed")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`agentledger --store STORE serve` on a loopback port; `restart()` keeps the port.

    Args:
        store_url: The store the server serves.
        tokens: A tokens file, or `None` for the tokenless local mode.
    """

    def __init__(self, store_url: str, tokens: Path | None = None, *, wait: bool = True) -> None:
        self.store_url = store_url
        self.tokens = tokens
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start(wait=wait)

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with `wait`, until `/healthz` answers (see `wait_ready`)."""
        args = [agentledger_command(), "--store", self.store_url, "serve", "--port", str(self.port)]
        if self.tokens is not None:
            args += ["--tokens", str(self.tokens)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until `/healthz` answers (60 s at most).

        Raises:
            RuntimeError: The server exited or did not answer in time.
        """
        assert self.process is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()
