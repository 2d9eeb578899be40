"""`--agent MODULE:ATTRIBUTE` specs that cannot be loaded are one clear `error:` line."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentledger.cli import app
from agentledger.cli.agent import load_agent
from agentledger.errors import ConfigurationError


@pytest.fixture
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory on the import path; its modules are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def _module(directory: Path, source: str) -> str:
    name = f"agentmod_{uuid.uuid4().hex[:12]}"
    (directory / f"{name}.py").write_text(source)
    return name


@pytest.mark.parametrize(
    ("source", "attribute", "needles"),
    [
        ("raise RuntimeError('no config here')\n", "agent",
         ["importing", "RuntimeError: no config here"]),
        ("def broken(:\n    pass\n", "agent", ["importing", "SyntaxError"]),
        ("def factory(name):\n    return name\n", "factory",
         ["calling factory()", "TypeError", "name"]),
        ("def factory():\n    raise ValueError('bad key')\n", "factory",
         ["calling factory()", "ValueError: bad key"]),
    ],
)
def test_failures_in_the_agent_module_are_configuration_errors(
    agent_dir: Path, source: str, attribute: str, needles: list[str]
) -> None:
    spec = f"{_module(agent_dir, source)}:{attribute}"
    with pytest.raises(ConfigurationError) as raised:
        load_agent(spec)
    message = str(raised.value)
    assert spec in message and "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    "spec", [".slowagent:agent", "../x/slowagent.py:agent", "slowagent.py:agent"]
)
def test_relative_names_and_paths_are_configuration_errors(agent_dir: Path, spec: str) -> None:
    with pytest.raises(ConfigurationError, match="not an importable module name"):
        load_agent(spec)


def test_a_function_that_needs_arguments_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"calling sleep\(\) raised TypeError"):
        load_agent("time:sleep")


def test_a_non_agent_is_named_by_its_type(agent_dir: Path) -> None:
    spec = _module(agent_dir, "x = 5\n") + ":x"
    with pytest.raises(ConfigurationError) as raised:
        load_agent(spec)
    assert str(raised.value) == f"{spec!r} is an object of type int, not an Agent"


def test_the_cli_prints_one_error_line_not_a_traceback(agent_dir: Path) -> None:
    spec = _module(agent_dir, "raise RuntimeError('boom')\n") + ":agent"
    result = CliRunner().invoke(
        app, ["--store", f"sqlite:///{agent_dir}/s.db", "run", "hi", "--agent", spec]
    )
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot load agent"), result.stderr
    assert "RuntimeError: boom" in lines[0]
