"""`benchmarks/bench_peers.py` still runs: `--quick --json` with whatever is installed (our
stores and the raw floor always; each peer only where benchmarks/requirements-peers.txt was
installed, else reported as skipped). Speed is never asserted.

The PostgreSQL run uses `$AGENTLEDGER_TEST_POSTGRES_URL` (the server it makes its fresh
databases on); without it the test skips, or fails when `CI=true`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_benchmarks import postgres_url

BENCH_PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_peers.py"
SQLITE_KEYS = {"raw-full", "raw-normal", "ours-full", "ours-normal", "ours-file", "es-sqlite",
               "openai-sqlite", "adk-sqlite", "adk-db-sqlite", "lg-sqlite"}
PG_KEYS = {"raw-pg", "ours-pg", "es-pg", "openai-pg", "adk-pg", "lg-pg"}
ALWAYS = {"raw-full", "raw-normal", "ours-full", "ours-normal", "ours-file", "raw-pg", "ours-pg"}


def run_quick(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, str(BENCH_PEERS), "--quick", "--json", *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    # Every absent peer says so on stderr too.
    for reason in output["skipped"].values():
        assert reason in result.stderr
    return output


def check_systems(output: dict[str, Any], keys: set[str]) -> None:
    systems, skipped = output["systems"], output["skipped"]
    # Each system ran or was skipped because its library is not installed; ours and the
    # floor always run.
    assert set(systems) | set(skipped) == keys
    assert not set(skipped) & ALWAYS
    assert all("is not installed" in reason for reason in skipped.values())
    for key, system in systems.items():
        figures = system["figures"]
        for metric in ("appends/s", "batch events/s", "read 100", "read 300"):
            assert figures[metric] is not None and figures[metric] > 0, (key, metric)
        # 30 appends may fit in the pages a PostgreSQL table already has.
        assert figures["B/event"] is not None and figures["B/event"] >= 0, key
        assert system["vs_floor"]["appends/s"] > 0
        if system["group"] in ("ours", "raw"):
            assert figures["creates/s"] > 0 and figures["list 30"] > 0, key
        if system["group"] == "ours":
            assert figures["state read"] > 0, key
        elif system["group"] != "raw":
            assert system["ours_vs_this"]["appends/s"] > 0, key


def test_quick_run_on_sqlite_and_files_reports_every_installed_system() -> None:
    output = run_quick("--only", "sqlite")
    check_systems(output, SQLITE_KEYS)
    assert output["systems"]["ours-normal"]["floor"] == "raw-normal"
    assert output["systems"]["ours-full"]["floor"] == "raw-full"


def databases(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_peers_%'")
        return {name for (name,) in rows.fetchall()}


def test_quick_run_on_postgresql_counts_refused_and_lost_writes() -> None:
    url = postgres_url()
    before = databases(url)
    output = run_quick("--only", "postgresql", "--postgres-url", url)
    check_systems(output, PG_KEYS)
    for key, system in output["systems"].items():
        for phase in ("own", "shared"):
            trial = system["concurrency"][phase]
            assert trial["acknowledged"] + trial["refused"] == 2 * 10, (key, phase)
            assert trial["events/s"] > 0
    # Ours and the floor keep every write, refusing none.
    for key in ("raw-pg", "ours-pg"):
        for phase in ("own", "shared"):
            trial = output["systems"][key]["concurrency"][phase]
            assert trial["refused"] == 0 and trial["lost"] == 0, (key, phase)
    # Every database the run made is dropped again.
    assert databases(url) <= before


def test_unreachable_postgresql_is_skipped_with_the_reason() -> None:
    output = run_quick("--only", "raw-pg,ours-pg",
                       "--postgres-url", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert output["systems"] == {}
    assert set(output["skipped"]) == {"raw-pg", "ours-pg"}
    assert "127.0.0.1:1" in output["skipped"]["ours-pg"]


def test_a_peer_whose_library_is_absent_is_skipped_with_the_install_command() -> None:
    # What CI sees for every peer (they are not our dependencies).
    sys.path.insert(0, str(BENCH_PEERS.parent))
    try:
        from _peers import SPECS, System, missing
    finally:
        sys.path.remove(str(BENCH_PEERS.parent))
    for absent in ("no_such_peer_zz", "no_such_peer_zz.sessions"):
        reason = missing(("x", "Peer X", "x", System, ("json", absent)))
        assert reason == (f"Peer X skipped: {absent} is not installed"
                          " (pip install -r benchmarks/requirements-peers.txt)")
    # Ours and the raw floor need nothing beyond our own dependencies.
    for spec in SPECS:
        if spec[2] in ("ours", "raw"):
            assert missing(spec) is None, spec[0]
