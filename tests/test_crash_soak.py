"""The crash soak script still runs (a smoke run of a few kills; speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "crash_soak.py"


def test_crash_soak_short_run_reports_every_kill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/soak.db?durability=normal"
    result = subprocess.run(
        [sys.executable, str(SOAK), "--store", url, "--kills", "5", "--seed", "7", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["store"] == url and report["seed"] == 7
    assert report["kills"] == 5
    assert report["events"] >= 1  # at least the session_created of the ledger


def test_crash_soak_refuses_a_store_without_processes_or_persistence() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--store", "memory://", "--kills", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "memory://" in result.stderr
