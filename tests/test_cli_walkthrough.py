"""Small CLI rules: option ranges, flag names in errors, help text, plurals."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_support import console_script
from typer.testing import CliRunner

from agentledger import open_store
from agentledger.cli import app


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--port", "70000"], "--port"), (["--port", "-1"], "--port"), (["--workers", "0"], "--workers")],
)
def test_serve_rejects_out_of_range_numbers(tmp_path: Path, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, ["--store", f"sqlite:///{tmp_path}/s.db", "serve", *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert not (tmp_path / "s.db").exists()


def test_replay_of_one_turn_says_turn(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    runner = CliRunner()
    turn = runner.invoke(app, ["--store", url, "run", "remind me to call the dentist"])
    assert turn.exit_code == 0, (turn.stdout, turn.stderr)
    with open_store(url) as store:
        (session,) = store.list_sessions().sessions
    replayed = runner.invoke(app, ["--store", url, "replay", session.id])
    assert replayed.exit_code == 0, (replayed.stdout, replayed.stderr)
    assert f"replayed 1 turn of session {session.id}: identical" in replayed.stdout


def test_a_bad_dotenv_line_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENTLEDGER_TEST_UNUSED=1\nthis is not a variable\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTLEDGER_STORE")}
    done = subprocess.run(
        [console_script(), "--store", "memory://", "run", "hi", "--model", "openai/gpt-4o-mini"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("could not parse statement starting at line 2") == 1, done.stderr
    assert "needs an API key" in done.stderr


def test_store_help_lists_every_scheme() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for scheme in ("sqlite:///", "file://", "postgresql://", "memory://", "http://"):
        assert scheme in text, scheme
