"""A throwaway PostgreSQL server of the tests' own, to stop, restart and drop connections
of without touching a shared one.

`ThrowawayCluster` runs `initdb` and `pg_ctl` from the server's binaries
(`/usr/lib/postgresql/*/bin`, or `$PATH`) in a temporary folder: a random port, listening
on a Unix socket in that folder only (no TCP). As root, the commands run as the `postgres`
OS user (the server refuses to run as root) and the folder belongs to it. The
`throwaway_cluster` fixture skips the test where the binaries are missing, and fails it
when `CI=true`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["ThrowawayCluster", "throwaway_cluster"]


def _server_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: the newest installed server, else `$PATH`."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL server in a temporary folder; `stop()`/`start()`/`restart()` it at will.

    Args:
        bin_dir: The folder of `initdb`, `pg_ctl` and `postgres`.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self._as: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="agentledger-pg-"))
        if os.geteuid() == 0:  # the server refuses to run as root
            runuser = shutil.which("runuser")
            if runuser is None:
                shutil.rmtree(self.root)
                raise RuntimeError("running as root needs runuser to start PostgreSQL")
            self._as = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = ''\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                "shared_buffers = 16MB\nmax_connections = 40\n"
            )
        self.start()

    @property
    def url(self) -> str:
        """A libpq URL of the `postgres` database over the Unix socket."""
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def _run(self, tool: str, *args: str) -> None:
        # Output to a file, not a pipe: the server pg_ctl starts would inherit the pipe and
        # keep it open, so reading it to its end would wait for the server to exit.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                [*self._as, str(self.bin_dir / tool), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=120, cwd="/",
            )
            if result.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"{tool} {' '.join(args)} failed: {out.read()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, as on a restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Restart the server: every connection to it is dropped."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-m", "fast",
                  "-w", "restart")

    def destroy(self) -> None:
        """Stop the server if it runs and remove its folder."""
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL server of the tests' own (see the module docs), for one test module."""
    pytest.importorskip("psycopg")
    bin_dir = _server_bin()
    reason = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    if bin_dir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    cluster = ThrowawayCluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.destroy()
