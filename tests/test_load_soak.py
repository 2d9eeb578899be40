"""The load soak script still runs (a smoke run of a few turns; speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "load_soak.py"


def test_load_soak_short_run_keeps_every_reminder() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--stores", "sqlite,file", "--turns", "3", "--rounds", "1",
         "--sessions", "2", "--writers", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = json.loads(result.stdout)["reports"]
    assert [r["store"] for r in reports] == ["sqlite", "file"]
    for report in reports:
        assert report["turns"] == 3 and report["failed_turns"] == 0
        assert report["reminders_found"] == report["reminders_expected"] == 3
        assert report["error_events"] == 0 and report["failures"] == []
        assert report["background_appends"] > 0


def test_load_soak_refuses_unknown_stores() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--stores", "mongodb"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "mongodb" in result.stderr
