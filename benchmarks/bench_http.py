"""The HTTP service's speed: appends over HTTP vs the same store used directly, and live
event stream (SSE) delivery latency, in one run.

Run it from the project root (needs the server extra, which `make test` installs):

    .venv/bin/python benchmarks/bench_http.py            # full run (about a minute)
    .venv/bin/python benchmarks/bench_http.py --quick    # smoke run, seconds
    .venv/bin/python benchmarks/bench_http.py --json

It starts `agentledger serve` in a subprocess on a random loopback port over a SQLite file
(`durability=full`, the default), then measures:
    - direct: one process appending single-event batches to its own session on the same
      SQLite file, through `open_store` (the baseline);
    - http: 1, 8 and 32 concurrent clients (threads of this process, each with its own
      `http://` store, so its own connection), each appending single-event batches to a
      session of its own; throughput = all appends ÷ wall time, and p50/p99 latency of one
      append (request to acknowledged response);
    - sse: 1 and 100 subscribers streaming one session while events are appended through
      the server; the delivery latency of each event to each subscriber (append sent →
      event received, one clock: all in this process).
Goals (ratios, so they hold on any machine): HTTP throughput with 8 clients ≥ 0.5× direct
single-process appends; SSE p99 delivery < 50 ms at 100 subscribers. The clients share this
process's interpreter (and the machine's cores) with nothing else, but with each other.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from agentledger import open_store
from agentledger.testing import msg

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def serve(db: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(Path(sys.executable).parent / "agentledger"), "--store", db, "serve",
               "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def direct_appends(db: str, count: int) -> dict[str, float]:
    with open_store(db) as store:
        sid = store.create_session(app_name="bench", user_id="direct").id
        latencies = []
        start = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            store.append(sid, [msg(f"m{i}")])
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return summary(count / elapsed, latencies)


def summary(rate: float, latencies: list[float]) -> dict[str, float]:
    return {
        "appends_per_s": round(rate, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def http_appends(base: str, clients: int, count: int) -> dict[str, float]:
    stores = [open_store(base) for _ in range(clients)]
    sids = [s.create_session(app_name="bench", user_id=f"c{i}").id for i, s in enumerate(stores)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        barrier.wait()
        for n in range(count):
            t0 = time.perf_counter()
            stores[i].append(sids[i], [msg(f"m{n}")])
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for store in stores:
        store.close()
    return summary(clients * count / elapsed, [x for xs in latencies for x in xs])


def sse_latency(base: str, subscribers: int, events: int) -> dict[str, float]:
    sid = httpx.post(base + "/v1/sessions", json={}).json()["id"]
    sent: dict[int, float] = {}
    delays: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(subscribers + 1)
    last_seq = events + 1

    def subscriber() -> None:
        url = f"{base}/v1/sessions/{sid}/events/stream"
        with httpx.stream("GET", url, headers={"Last-Event-ID": "1"}, timeout=120) as response:
            lines = response.iter_lines()
            next(lines)  # the retry: line: the stream is open
            ready.wait()
            for line in lines:
                if line.startswith("id: "):
                    seq = int(line[4:])
                    now = time.perf_counter()
                    with lock:
                        delays.append(now - sent[seq])
                    if seq >= last_seq:
                        return

    threads = [threading.Thread(target=subscriber, daemon=True) for _ in range(subscribers)]
    for thread in threads:
        thread.start()
    ready.wait()
    with httpx.Client(base_url=base) as client:
        for seq in range(2, last_seq + 1):
            sent[seq] = time.perf_counter()
            client.post(f"/v1/sessions/{sid}/events",
                        json={"events": [{"type": "user_message", "data": {"n": seq}}]})
            time.sleep(0.02)
    for thread in threads:
        thread.join(60)
    return {
        "deliveries": len(delays),
        "p50_ms": round(percentile(delays, 0.50) * 1000, 2),
        "p99_ms": round(percentile(delays, 0.99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A smoke run: few appends.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args()
    appends = 20 if args.quick else 300
    sse_events = 5 if args.quick else 50
    client_counts = [1, 8] if args.quick else [1, 8, 32]
    subscriber_counts = [1, 10] if args.quick else [1, 100]
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        open_store(db).close()
        process, base = serve(db)
        try:
            results: dict[str, Any] = {"direct": direct_appends(db, appends)}
            results["http"] = {
                str(k): http_appends(base, k, max(appends // k, 10)) for k in client_counts
            }
            results["sse"] = {str(k): sse_latency(base, k, sse_events) for k in subscriber_counts}
        finally:
            process.terminate()
            process.wait(15)
    eight = results["http"].get("8")
    results["goals"] = {
        "http8_vs_direct": round(eight["appends_per_s"] / results["direct"]["appends_per_s"], 2)
        if eight else None,
        "sse_p99_ms_at_max_subscribers": results["sse"][str(subscriber_counts[-1])]["p99_ms"],
    }
    if args.json:
        print(json.dumps(results))
        return
    direct = results["direct"]
    print(f"direct (1 process): {direct['appends_per_s']:>8} appends/s  "
          f"p50 {direct['p50_ms']} ms  p99 {direct['p99_ms']} ms")
    for k, row in results["http"].items():
        print(f"http, {k:>2} clients:   {row['appends_per_s']:>8} appends/s  "
              f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms")
    for k, row in results["sse"].items():
        print(f"sse, {k:>3} subscribers: delivery p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms"
              f"  ({row['deliveries']} deliveries)")
    goals = results["goals"]
    print(f"goals: http 8 clients / direct = {goals['http8_vs_direct']} (goal >= 0.5); "
          f"sse p99 = {goals['sse_p99_ms_at_max_subscribers']} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
