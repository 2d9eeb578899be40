"""The HTTP service end to end: `agentledger serve` in a subprocess on a random loopback
port; live event streams fed by another process, resumed with `Last-Event-ID`; acknowledged
appends surviving `kill -9` of the server; the `http://` store from the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the HTTP service needs the server extra")
pytest.importorskip("fastapi", reason="the HTTP service needs the server extra")

from cli_support import console_script  # noqa: E402

from agentledger import open_store  # noqa: E402
from agentledger.errors import (  # noqa: E402
    AgentLedgerError,
    ConcurrencyError,
    MissingDependencyError,
)
from agentledger.testing import msg  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """`agentledger serve` on a free loopback port, stopped on exit."""

    def __init__(self, store_url: str, *args: str, options: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [console_script(), "--store", store_url, *options, "serve", "--port", str(self.port),
             *args],
            stdout=self.log,
            stderr=subprocess.PIPE,
            text=True,
        )
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
            time.sleep(0.1)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def served(db: str) -> Iterator[Served]:
    server = Served(db)
    yield server
    server.stop()


def append_from_another_process(db: str, sid: str, *texts: str) -> None:
    code = (
        "import sys; from agentledger import open_store; from agentledger.testing import msg\n"
        "with open_store(sys.argv[1]) as s:\n"
        "    for t in sys.argv[3:]: s.append(sys.argv[2], [msg(t)])\n"
    )
    subprocess.run([sys.executable, "-c", code, db, sid, *texts], check=True, timeout=60)


class StreamReader(threading.Thread):
    """Reads an SSE stream in the background; `events` collects (id, data) pairs."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.ended = threading.Event()
        self.stop_after: int | None = None

    def run(self) -> None:
        fields: dict[str, str] = {}
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=60) as response:
                for line in response.iter_lines():
                    if line == "":
                        if "data" in fields:
                            self.events.append((int(fields["id"]), json.loads(fields["data"])))
                            if self.stop_after and len(self.events) >= self.stop_after:
                                return
                        fields = {}
                    elif not line.startswith(":"):
                        key, _, value = line.partition(": ")
                        fields[key] = value
        finally:
            self.ended.set()

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= count, self.events


def test_stream_sees_another_process_and_resumes_without_gap_or_duplicate(
    served: Served, db: str
) -> None:
    sid = httpx.post(served.base + "/v1/sessions", json={}).json()["id"]
    url = f"{served.base}/v1/sessions/{sid}/events/stream"
    first = StreamReader(url, {})
    first.stop_after = 3
    first.start()
    first.wait_for(1)
    append_from_another_process(db, sid, "a", "b")  # not through the server
    first.ended.wait(30)
    assert [seq for seq, _ in first.events] == [1, 2, 3]
    append_from_another_process(db, sid, "c", "d")  # while nobody is listening
    second = StreamReader(url, {"Last-Event-ID": str(first.events[-1][0])})
    second.start()
    second.wait_for(2)
    append_from_another_process(db, sid, "e")
    second.wait_for(3)
    httpx.post(f"{served.base}/v1/sessions/{sid}/terminate")
    assert second.ended.wait(30)  # the stream ends with the session
    seqs = [seq for seq, _ in first.events + second.events]
    assert seqs == list(range(1, 8))
    assert [e["data"].get("text") for _, e in second.events[:3]] == ["c", "d", "e"]


def test_a_client_leaving_mid_stream_does_not_hurt_the_server(served: Served) -> None:
    sid = httpx.post(served.base + "/v1/sessions", json={}).json()["id"]
    for _ in range(3):
        with httpx.stream("GET", f"{served.base}/v1/sessions/{sid}/events/stream") as response:
            next(response.iter_lines())
    assert httpx.get(f"{served.base}/v1/sessions/{sid}").status_code == 200


def test_http_store_from_the_cli_and_python(served: Served) -> None:
    url = served.base
    out = subprocess.run(
        [console_script(), "--store", url, "run", "remind me to water the plants", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    with open_store(url) as store:
        session = store.get_session(answer["session_id"])
        assert session.state["user:reminders"] == ["water the plants"]
        with pytest.raises(ConcurrencyError) as info:
            store.append(session.id, [msg()], expected_version=1)
        assert info.value.actual_version == session.version
    missing = subprocess.run(
        [console_script(), "--store", url, "sessions", "show", "nope"],
        capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 1 and missing.stderr.startswith("error:")
    assert "Traceback" not in missing.stderr


def test_acknowledged_appends_survive_kill_9_of_the_server(db: str) -> None:
    server = Served(db)
    with open_store(server.base) as store:
        sids = [store.create_session(app_name="kill", user_id=f"u{i}").id for i in range(8)]
    acknowledged: dict[str, list[int]] = {sid: [] for sid in sids}
    stop = threading.Event()

    def writer(sid: str) -> None:
        try:
            with open_store(server.base, retries=0, timeout=5) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    stored = client.append(sid, [msg(f"m{n}")])
                    acknowledged[sid].append(stored[0].seq)
        except AgentLedgerError:
            return  # the server died under us: what was acknowledged must be there

    threads = [threading.Thread(target=writer, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acknowledged.values())) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join(30)
    server.stop()
    assert sum(map(len, acknowledged.values())) >= 8
    with open_store(db) as direct:
        for sid, seqs in acknowledged.items():
            stored = {e.seq for e in direct.read_events(sid)}
            assert set(seqs) <= stored, sid
            assert direct.get_session(sid).version == max(stored)


def test_tokens_and_sighup_reload(tmp_path: Path, db: str) -> None:
    tokens = tmp_path / "tokens.json"
    old, new = "old-token-" + "o" * 20, "new-token-" + "n" * 20
    tokens.write_text(json.dumps({"tokens": [{"token": old, "user": "ada"}]}))
    server = Served(db, "--tokens", str(tokens))
    try:
        assert httpx.get(server.base + "/v1/sessions").status_code == 401
        ok = httpx.get(server.base + "/v1/sessions", headers={"Authorization": f"Bearer {old}"})
        assert ok.status_code == 200
        tokens.write_text(json.dumps({"tokens": [{"token": new, "user": "ada"}]}))
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            refused = httpx.get(server.base + "/v1/sessions",
                                headers={"Authorization": f"Bearer {old}"})
            if refused.status_code == 401:
                break
            time.sleep(0.1)
        assert refused.status_code == 401
        assert httpx.get(server.base + "/v1/sessions",
                         headers={"Authorization": f"Bearer {new}"}).status_code == 200
    finally:
        log = server.stop()
    assert old not in log and new not in log
    assert "GET /v1/sessions 401" in log and "user=ada" in log


def test_serve_refuses_a_public_address_without_tokens(db: str) -> None:
    out = subprocess.run(
        [console_script(), "--store", db, "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("error: refusing to listen on 0.0.0.0 without --tokens")


def test_a_missing_server_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from agentledger.server import require_server_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'agentledger\[server\]'"):
        require_server_extra()


def test_sigterm_ends_open_streams_and_the_server_cleanly(db: str) -> None:
    server = Served(db)
    sid = httpx.post(server.base + "/v1/sessions", json={}).json()["id"]
    reader = StreamReader(f"{server.base}/v1/sessions/{sid}/events/stream", {})
    reader.start()
    reader.wait_for(1)
    server.process.terminate()
    assert reader.ended.wait(30)
    server.process.wait(30)  # uvicorn re-raises SIGTERM once it has shut down
    log = server.stop()
    # The stream was closed by the server, not cancelled when the grace period ran out.
    assert "timeout graceful shutdown exceeded" not in log
    assert "Traceback" not in log


def test_workers_share_one_store_and_streams_see_every_worker(db: str) -> None:
    server = Served(db, "--workers", "2")
    try:
        sid = httpx.post(server.base + "/v1/sessions", json={}).json()["id"]
        reader = StreamReader(f"{server.base}/v1/sessions/{sid}/events/stream", {})
        reader.stop_after = 21
        reader.start()
        reader.wait_for(1)
        for i in range(20):  # new connections: spread over both workers
            with httpx.Client(base_url=server.base) as client:
                response = client.post(f"/v1/sessions/{sid}/events",
                                       json={"events": [{"type": "user_message",
                                                         "data": {"n": i}}]})
                assert response.status_code == 201
        reader.wait_for(21)
        assert [seq for seq, _ in reader.events] == list(range(1, 22))
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_plugins_run_in_the_server_process(db: str, workers: int) -> None:
    """`agentledger --plugin redact serve`: what clients send is redacted before the
    server's store writes it, with one process or several workers; a client asking for a
    plugin the server does not run is refused."""
    from agentledger import ConfigurationError, NewEvent

    server = Served(db, "--workers", str(workers), options=("--plugin", "redact"))
    try:
        with open_store(server.base, plugins=["redact"]) as store:
            assert store.server_plugins == ("redact",)  # type: ignore[attr-defined]
            sid = store.create_session(app_name="a", user_id="u", metadata={"password": "pw1"}).id
            for _ in range(4):  # with workers, several processes answer
                (event,) = store.append(sid, [NewEvent(
                    type="user_message", data={"text": "key sk-proj-Zq81mXa0TbVw9c2LkPfe7RuY4hNd"})])
                assert event.data["text"] == "key [REDACTED:openai_api_key]"
            assert store.get_session(sid).metadata == {"password": "[REDACTED:password]"}
        with pytest.raises(ConfigurationError, match="does not run conformance"):
            open_store(server.base, plugins=["redact", "agentledger.testing._plugins:ConformancePlugin"])
    finally:
        server.stop()
    with open_store(db) as local:
        assert "Zq81mXa0" not in repr(local.read_events(sid))
