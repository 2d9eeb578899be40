"""The web view's speed in a real browser: time to first paint of a session's timeline at
100, 1,000 and 10,000 events, beside the raw API reads the page is built from.

Run it from the project root (needs the server and test extras and Debian's Chromium:
`apt-get install -y chromium`):

    .venv/bin/python benchmarks/bench_web.py            # 100, 1,000, 10,000 events, 5 loads each
    .venv/bin/python benchmarks/bench_web.py --quick    # smoke run: 100 and 1,000, 2 loads
    .venv/bin/python benchmarks/bench_web.py --json

It starts `agentledger serve` (no tokens, loopback) over a SQLite file holding one session per
size (user messages, each with a state delta), launches headless Chromium through Playwright
(`--chromium PATH`, default /usr/bin/chromium) and, for each size, opens `/sessions/{id}` in a
fresh browser context several times and reports medians of:
    - first_paint_ms: navigation start → the first events drawn and painted (the page's
      `agentledger:first-paint` mark: a task after the frame that shows them);
    - all_loaded_ms: navigation start → every event read (`agentledger:all-events`);
    - jump_ms: selecting the last event (draws the window around it and folds the state as
      of it from all the events before it), measured in the page;
    - key_ms: one `j` keypress once the last-but-one event is selected (the same work);
    - nodes: timeline elements in the page after loading (the window, not every event);
and the baseline, with httpx from this process: api_first_page_ms (the first page of 200
events the page reads first) and api_all_ms (every event, in pages of 1,000).
Goal: first_paint_ms < 1,000 at 10,000 events.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agentledger import open_store
from agentledger.testing import msg

GOAL_MS = 1000.0


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


def fill(db: str, sizes: list[int]) -> dict[int, str]:
    ids = {}
    with open_store(db) as store:
        for size in sizes:
            sid = store.create_session(app_name="bench", user_id="local", title=f"{size}").id
            for start in range(1, size, 1000):
                stop = min(size, start + 1000)
                store.append(sid, [msg(f"message {n}", state_delta={"n": n, "last": f"m{n}"})
                                   for n in range(start, stop)])
            ids[size] = sid
    return ids


def api_baseline(base: str, sid: str) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=60) as client:
        t0 = time.perf_counter()
        client.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).raise_for_status()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        after = 0
        while True:
            page = client.get(f"/v1/sessions/{sid}/events", params={"after": after}).json()
            if page["next_after"] is None:
                break
            after = page["next_after"]
        every = time.perf_counter() - t0
    return {"api_first_page_ms": first * 1000, "api_all_ms": every * 1000}


def one_load(browser: Any, base: str, sid: str, size: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/sessions/{sid}")
    page.wait_for_selector("body[data-loaded=true]", timeout=60_000)
    page.wait_for_timeout(50)  # the first-paint mark is set a task after its frame
    marks = page.evaluate(
        "() => Object.fromEntries(performance.getEntriesByType('mark')"
        ".map(m => [m.name, m.startTime]))"
    )
    jump = page.evaluate(
        """(seq) => { const t = performance.now(); location.hash = '#seq-' + seq;
        window.dispatchEvent(new HashChangeEvent('hashchange'));
        return performance.now() - t; }""",
        size - 1,
    )
    key = page.evaluate(
        """() => { const t = performance.now();
        document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));
        return performance.now() - t; }"""
    )
    selected = page.evaluate("document.querySelector('.event.selected')?.dataset.seq")
    assert selected == str(size), f"j did not select #{size}: {selected}"
    nodes = page.evaluate("document.querySelectorAll('.event').length")
    context.close()
    return {
        "first_paint_ms": marks["agentledger:first-paint"],
        "all_loaded_ms": marks["agentledger:all-events"],
        "jump_ms": jump,
        "key_ms": key,
        "nodes": nodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 events, 2 loads")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("needs Playwright: pip install -e '.[test]'") from None
    if not Path(args.chromium).exists():
        raise SystemExit(f"no Chromium at {args.chromium}: apt-get install -y chromium")
    sizes = [100, 1000] if args.quick else [100, 1000, 10_000]
    loads = 2 if args.quick else 5
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{folder}/web.db"
        ids = fill(db, sizes)
        process, base = serve(db)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium)
                one_load(browser, base, ids[sizes[0]], sizes[0])  # warm up
                for size in sizes:
                    runs = [one_load(browser, base, ids[size], size) for _ in range(loads)]
                    row = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
                    row.update({k: round(v, 1) for k, v in api_baseline(base, ids[size]).items()})
                    results[str(size)] = row
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
    if args.json:
        print(json.dumps({"goal_first_paint_ms": GOAL_MS, "results": results}))
        return
    columns = ["first_paint_ms", "all_loaded_ms", "jump_ms", "key_ms", "nodes",
               "api_first_page_ms", "api_all_ms"]
    print(f"{'events':>7}  " + "  ".join(f"{c:>17}" for c in columns))
    for size, row in results.items():
        print(f"{size:>7}  " + "  ".join(f"{row[c]:>17}" for c in columns))
    largest = results[str(sizes[-1])]["first_paint_ms"]
    verdict = "meets" if largest < GOAL_MS else "misses"
    print(f"first paint at {sizes[-1]} events: {largest} ms ({verdict} the goal of "
          f"< {GOAL_MS:.0f} ms)")


if __name__ == "__main__":
    main()
