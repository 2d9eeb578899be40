"""The benchmark script still runs (a smoke run; speed is never asserted in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_store.py"


def test_bench_store_quick_run_reports_every_metric() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    metrics = " | ".join(row["metric"] for row in rows)
    for expected in ("appends/s", "full", "normal", "state load", "full history",
                     "bytes/event", "creates/s", "list"):
        assert expected in metrics
    for row in rows:
        assert row["ours"] > 0
        if row["raw"] is not None:
            assert row["raw"] > 0 and row["ratio"] > 0
