"""The README as a newcomer reads it: every ```python block runs as written, and no text a
user reads (README, `--help`) points at documents the user does not have.

Each Python block runs on its own, in a fresh interpreter, in an empty working directory
(so `sqlite:///agentledger.db` is a new file there) with `$AGENTLEDGER_STORE` pointing at
a store in that folder. Every block runs: none is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from agentledger.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    """Each ```python block of the README, with the line it starts on."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in _BLOCK.finditer(text)
    ]


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize(("line", "code"), python_blocks(), ids=lambda v: str(v)[:8])
def test_readme_python_block_runs_as_written(tmp_path: Path, line: int, code: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    env["AGENTLEDGER_STORE"] = f"sqlite:///{tmp_path / 'default.db'}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"README.md line {line}:\n{result.stderr}"


FORBIDDEN = re.compile(r"\bseeds?\b|DESIGN\.md", re.IGNORECASE)
"""Words that point at documents a user of agentledger does not have."""


def test_the_readme_names_no_internal_documents() -> None:
    found = [
        f"{number}: {line}"
        for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert found == []


def _help_texts() -> dict[str, str]:
    """The `--help` text of every command and sub-command."""
    from typer.testing import CliRunner

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():  # a group's commands
            walk(sub, [*path, name])

    walk(root, [])
    runner = CliRunner()
    texts = {}
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        texts[" ".join(path) or "agentledger"] = result.stdout
    return texts


def test_no_help_text_names_internal_documents() -> None:
    texts = _help_texts()
    assert {"agentledger", "sessions cleanup", "hook pre-delegate", "chat"} <= set(texts)
    found = {name: FORBIDDEN.findall(text) for name, text in texts.items()}
    assert {name: words for name, words in found.items() if words} == {}
