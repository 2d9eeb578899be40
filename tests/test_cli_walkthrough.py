"""Small CLI rules: option ranges, flag names in errors, help text, plurals."""

from __future__ import annotations

from pathlib import Path

import pytest
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
