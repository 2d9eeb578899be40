"""The benchmark scripts still run (smoke runs of `--quick`; speed is never asserted in tests).

The PostgreSQL runs use `$AGENTLEDGER_TEST_POSTGRES_URL`; without it they skip, or fail when
`CI=true` (as the conformance suite does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
BENCH_STORE = BENCHMARKS / "bench_store.py"
BENCH_CONCURRENCY = BENCHMARKS / "bench_concurrency.py"
POSTGRES_URL_ENV = "AGENTLEDGER_TEST_POSTGRES_URL"
STORES = ["sqlite", "file", "postgresql"]


def postgres_url() -> str:
    """The test database's URL; skips without it, fails under `CI=true`."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        reason = f"set {POSTGRES_URL_ENV} to run the PostgreSQL benchmark smoke runs"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_URL_ENV} is not set; {reason}")
        pytest.skip(reason)
    return url


def run_quick(script: Path, *args: str) -> dict[str, Any]:
    """Run `script --quick --json *args`; its parsed output."""
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def store_args(store: str) -> list[str]:
    args = ["--stores", store]
    if store == "postgresql":
        args += ["--postgres-url", postgres_url()]
    return args


def bench_schemas(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench%'")
        return {name for (name,) in rows.fetchall()}


def check_rows(rows: list[dict[str, Any]], store: str) -> None:
    assert rows and {row["store"] for row in rows} == {store}
    for row in rows:
        assert row["ours"] > 0, row
        if row["raw"] is not None:
            assert row["raw"] > 0 and row["ratio"] > 0, row


@pytest.mark.parametrize("store", STORES)
def test_bench_store_quick_run_reports_every_metric(store: str) -> None:
    args = store_args(store)
    before = bench_schemas(args[-1]) if store == "postgresql" else set()
    output = run_quick(BENCH_STORE, *args)
    assert output["skipped"] == {}
    rows = output["rows"]
    check_rows(rows, store)
    metrics = " | ".join(row["metric"] for row in rows)
    for expected in ("appends/s", "state load", "full history", "state load growth",
                     "bytes/event", "creates/s", "list"):
        assert expected in metrics, expected
    if store == "sqlite":
        assert "full" in metrics and "normal" in metrics
        assert all(row["met"] is not None for row in rows if "full history" in row["metric"])
    if store == "postgresql":
        assert "synchronous_commit on" in metrics and "synchronous_commit off" in metrics
        # Every schema the run made is dropped again.
        assert bench_schemas(args[-1]) <= before


@pytest.mark.parametrize("store", STORES)
def test_bench_concurrency_quick_run_reports_each_writer_count(store: str) -> None:
    output = run_quick(BENCH_CONCURRENCY, *store_args(store))
    assert output["skipped"] == {}
    rows = output["rows"]
    check_rows(rows, store)
    shapes = {(row["extra"]["writers"], row["extra"]["sessions"]) for row in rows}
    assert shapes == {(1, "own"), (2, "own"), (1, "shared"), (2, "shared")}


@pytest.mark.parametrize("script", [BENCH_STORE, BENCH_CONCURRENCY])
def test_unreachable_postgresql_is_skipped_with_the_reason(script: Path) -> None:
    # Port 1 refuses connections at once: the run skips PostgreSQL instead of failing.
    output = run_quick(script, "--stores", "postgresql",
                       "--postgres-url", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert output["rows"] == []
    assert "PostgreSQL skipped" in output["skipped"]["postgresql"]
    assert "127.0.0.1:1" in output["skipped"]["postgresql"]


def test_bench_runner_quick_run_reports_every_store() -> None:
    output = run_quick(BENCHMARKS / "bench_runner.py")
    assert set(output["results"]) == {"sqlite", "sqlite-normal", "memory"}
    for result in output["results"].values():
        assert result["model_ms"] > 0 and result["overhead_ms"] > 0
        assert result["turn_ms"] >= result["model_ms"]


def test_bench_http_quick() -> None:
    """`bench_http.py --quick` serves a store, appends over HTTP and streams (smoke run)."""
    pytest.importorskip("fastapi", reason="bench_http.py needs the server extra")
    output = run_quick(BENCHMARKS / "bench_http.py")
    assert output["direct"]["appends_per_s"] > 0
    assert set(output["http"]) == {"1", "8"}
    assert all(row["deliveries"] > 0 for row in output["sse"].values())


def test_bench_web_quick() -> None:
    """`bench_web.py --quick` opens sessions in Chromium and reports first paint (smoke run)."""
    pytest.importorskip("fastapi", reason="bench_web.py needs the server extra")
    from web_support import browser_or_skip

    browser_or_skip()
    output = run_quick(BENCHMARKS / "bench_web.py")
    assert set(output["results"]) == {"100", "1000"}
    for row in output["results"].values():
        assert row["first_paint_ms"] > 0 and row["all_loaded_ms"] > 0
        assert row["api_all_ms"] > 0 and row["jump_ms"] > 0
    assert output["results"]["1000"]["nodes"] < 1000  # a window, not every event


@pytest.mark.parametrize("store", STORES)
def test_bench_erase_quick_run_shrinks_and_verifies(store: str) -> None:
    output = run_quick(BENCHMARKS / "bench_erase.py", *store_args(store))
    assert output["skipped"] == {}
    (row,) = output["rows"]
    assert row["store"] == store and row["verify_ok"]
    assert row["bytes_after"] < row["bytes_before"]


@pytest.mark.parametrize("store", STORES)
def test_bench_keys_quick_run_reports_each_length(store: str) -> None:
    args = store_args(store)
    before = bench_schemas(args[-1]) if store == "postgresql" else set()
    output = run_quick(BENCHMARKS / "bench_keys.py", *args)
    assert output["skipped"] == {}
    rows = output["results"][store]
    assert [row["events"] for row in rows] == [100, 300]
    for row in rows:
        assert row["by_seq_ms"] > 0 and row["latest_in_prefix_ms"] > 0 and row["get_event_ms"] > 0
    if store == "postgresql":
        assert output["gin"]["with_gin"] > 0 and output["gin"]["without_gin"] > 0
        assert bench_schemas(args[-1]) <= before


def test_bench_fork_quick_runs() -> None:
    """The fork benchmark runs on every local store and keeps its figures apart."""
    report = run_quick(BENCHMARKS / "bench_fork.py", "--stores", "sqlite,file,memory")
    assert report["events"] == 1_000
    assert set(report["ms"]) == {"sqlite", "file", "memory"}
    assert "raw copy (INSERT … SELECT)" in report["ms"]["sqlite"]
    assert all(ms > 0 for rows in report["ms"].values() for ms in rows.values())


def test_bench_plugins_quick_run_reports_ratios() -> None:
    output = run_quick(BENCHMARKS / "bench_plugins.py", "--stores", "sqlite-normal,memory")
    assert set(output["stores"]) == {"sqlite-normal", "memory"}
    for row in output["stores"].values():
        assert row["none"]["ratio"] == 1.0
        for name in ("observer", "redact", "redact+secret"):
            assert row[name]["appends_per_s"] > 0 and row[name]["ratio"] > 0
        assert isinstance(row["redact_goal_met"], bool)


@pytest.mark.parametrize("store", STORES)
def test_bench_async_quick_run_reports_each_coroutine_count(store: str) -> None:
    args = ["--stores", store]
    if store == "postgresql":
        args += ["--postgres-url", postgres_url()]
    output = run_quick(BENCHMARKS / "bench_async.py", *args)
    rows = output[store]
    assert [row["coroutines"] for row in rows] == [1, 8]
    for row in rows:
        assert row["async_per_s"] > 0 and row["sync_per_s"] > 0
        assert row["async_vs_sync"] == pytest.approx(row["async_per_s"] / row["sync_per_s"], rel=0.05)


def test_bench_transfer_quick_reports_throughput() -> None:
    """`bench_transfer.py --quick` exports, imports and copies (smoke run; PostgreSQL part
    skipped when none is reachable)."""
    output = run_quick(BENCHMARKS / "bench_transfer.py")
    assert output["events"] == 2000
    for kind in ("sqlite", "file"):
        assert output[f"{kind} export events/s"] > 0 and output[f"{kind} import events/s"] > 0


def test_bench_feed_quick_reports_throughput() -> None:
    """`bench_feed.py --quick` reads the feed and runs handlers (smoke run)."""
    output = run_quick(BENCHMARKS / "bench_feed.py")
    assert output["events"] == 5000 and output["feed read events/s"] > 0
    assert 0 < output["inline handler ratio"]



def test_bench_append_floor_quick_reports_floor_state_and_threads() -> None:
    """`bench_append_floor.py --quick` compares our SQLite append with the bare floor, by
    state size and by writer threads (smoke run)."""
    output = run_quick(BENCHMARKS / "bench_append_floor.py")
    assert [row["durability"] for row in output["floor"]] == ["full", "normal"]
    assert all(row["ours_per_s"] > 0 and row["floor_per_s"] > 0 for row in output["floor"])
    assert [row["state"] for row in output["state"]] == ["0", "100KB", "1MB"]
    assert [row["threads"] for row in output["threads"]] == [1, 4]
    assert all(row["per_s"] > 0 for row in output["threads"])


def test_bench_reads_quick_reports_ratios_and_breakdown() -> None:
    """`bench_reads.py --quick` compares our full-history read and listing with raw SQLite
    SELECTs, and splits the read into SELECT, chain check and decoding (smoke run)."""
    output = run_quick(BENCHMARKS / "bench_reads.py")
    assert output["events"] == 200 and output["sessions"] == 20
    assert set(output["ratios"]) == {"read_vs_raw", "list_vs_raw", "file_read_vs_sqlite_read"}
    assert all(value > 0 for value in output["ratios"].values())
    assert all(value > 0 for value in output["per_event_us"].values())
