"""`agentledger chat`'s input: line editing and history through the real prompt_toolkit
session (fed keys through a pipe, as a terminal would send them), escape codes kept out of
the ledger, where the history lives, and Ctrl-C during a turn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from typer.testing import CliRunner

from agentledger import open_store
from agentledger.cli import agent as agent_commands
from agentledger.cli import app
from agentledger.cli.lineinput import (
    HISTORY_ENV,
    PlainLineReader,
    PromptLineReader,
    clean_line,
    history_path,
    user_data_dir,
)
from agentledger.core.events import EventType
from agentledger.stores.base import SessionStore

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")

LEFT, RIGHT, UP, DOWN = "\x1b[D", "\x1b[C", "\x1b[A", "\x1b[B"
ENTER, CTRL_D, CTRL_L = "\r", "\x04", "\x0c"


def user_messages(url: str) -> list[str]:
    with open_store(url) as store:
        return [
            e.data["text"]
            for s in store.list_sessions().sessions
            for e in store.read_events(s.id, types=[EventType.USER_MESSAGE])
        ]


def whole_ledger(url: str) -> str:
    with open_store(url) as store:
        return json.dumps(
            [e.model_dump(mode="json") for s in store.list_sessions().sessions
             for e in store.read_events(s.id)]
        )


class TypingReader(PromptLineReader):
    """The chat's terminal reader, on a pipe: at each prompt the user types the next
    line's keys (escape sequences as a terminal sends them)."""

    def __init__(self, store: SessionStore, pipe: PipeInput, lines: list[str]) -> None:
        super().__init__(history_path(store), input=pipe, output=DummyOutput())
        self.pipe, self.lines = pipe, lines

    def read(self, prompt: str) -> str:
        if self.lines:
            self.pipe.send_text(self.lines.pop(0))
        return super().read(prompt)


def chat_with_keys(url: str, lines: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `agentledger chat` in-process with the real prompt_toolkit session it uses on a
    terminal (with the store's history file), the keys of `lines` typed at its prompts."""
    with create_pipe_input() as pipe:
        monkeypatch.setattr(agent_commands, "open_line_reader",
                            lambda store: TypingReader(store, pipe, list(lines)))
        return CliRunner().invoke(app, ["--store", url, "chat"])


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    yield f"sqlite:///{tmp_path}/chat.db"


# -- line editing and history ---------------------------------------------------------------


def test_arrow_keys_edit_the_line_and_up_recalls_it(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        "remind me to buy eggs" + LEFT * 4 + "big " + ENTER,  # ← ← ← ← then type: an edit
        UP + ENTER,  # ↑ recalls the line just sent
        CTRL_L + "show my rem" + LEFT + RIGHT + "inders" + ENTER,
        CTRL_D,
    ]
    result = chat_with_keys(url, lines, monkeypatch)
    assert result.exit_code == 0, (result.output, result.exception)
    assert user_messages(url) == [
        "remind me to buy big eggs", "remind me to buy big eggs", "show my reminders",
    ]
    assert "\\u001b" not in whole_ledger(url) and "\\f" not in whole_ledger(url)
    assert "Added reminder: buy big eggs" in result.stdout
    assert "bye; session" in result.stdout
    # the history is kept beside the SQLite file
    kept = (tmp_path / "chat.db.chat-history").read_text()
    assert "+remind me to buy big eggs" in kept and "+show my reminders" in kept


def test_history_is_kept_across_chats_on_the_same_store(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = chat_with_keys(url, ["remind me to call Bo" + ENTER, "show my reminders" + ENTER,
                                 CTRL_D], monkeypatch)
    assert first.exit_code == 0, first.output
    # a new chat: ↑ ↑ goes back two lines into the first chat's history
    second = chat_with_keys(url, [UP + UP + ENTER, CTRL_D], monkeypatch)
    assert second.exit_code == 0, second.output
    assert user_messages(url) == ["remind me to call Bo", "show my reminders",
                                  "remind me to call Bo"]
    # another store has its own history: ↑ recalls nothing there
    other = f"sqlite:///{tmp_path}/other.db"
    third = chat_with_keys(other, [UP + DOWN + ENTER, "hi" + ENTER, CTRL_D], monkeypatch)
    assert third.exit_code == 0, third.output
    assert user_messages(other) == ["hi"]


def test_the_history_file_is_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines typed are the user's words: 0600, like the store's own files."""
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    url = f"sqlite:///{tmp_path}/x.db"
    old = os.umask(0o022)
    try:
        result = chat_with_keys(url, ["remind me to call Bo" + ENTER, CTRL_D], monkeypatch)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    history = tmp_path / "x.db.chat-history"
    assert "call Bo" in history.read_text()
    assert history.stat().st_mode & 0o777 == 0o600


def test_ctrl_c_at_the_prompt_drops_the_line(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = chat_with_keys(url, ["remind me to forget this\x03",
                                  "remind me to keep this" + ENTER, CTRL_D], monkeypatch)
    assert result.exit_code == 0, result.output
    assert user_messages(url) == ["remind me to keep this"]


def test_a_raw_escape_sequence_piped_in_never_reaches_the_ledger(tmp_path: Path) -> None:
    """Without a terminal the keys are not edits: their escape codes are dropped."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    result = subprocess.run(
        [AGENTLEDGER, "chat"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, input="remind me to buy eggs" + LEFT * 3 + "\n" + UP + CTRL_L + "\n",
    )
    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{tmp_path}/agentledger.db"
    assert user_messages(url) == ["remind me to buy eggs"]
    assert "\\u001b" not in whole_ledger(url)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("buy eggs\x1b[D\x1b[D\x1b[D", "buy eggs"),
        ("\x1b[A", ""),
        ("\x1bOA up in application mode", " up in application mode"),
        ("\x0chello\x7f", "hello"),
        ("\x1b[31mred\x1b[0m text", "red text"),
        ("\x1b]0;title\x07named", "named"),
        ("tab\tstays, ünïcödé and emoji 🙂 stay", "tab\tstays, ünïcödé and emoji 🙂 stay"),
        ("[brackets] and ^[[D typed as text stay", "[brackets] and ^[[D typed as text stay"),
    ],
)
def test_clean_line(raw: str, clean: str) -> None:
    assert clean_line(raw) == clean


# -- where the history lives ----------------------------------------------------------------


def test_history_path_per_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with open_store("sqlite:///data/x.db") as store:
        assert history_path(store) == tmp_path / "data" / "x.db.chat-history"
    with open_store(f"file://{tmp_path}/folder") as store:
        assert history_path(store) == tmp_path / "folder" / "_chat_history"
        store.create_session(app_name="a", user_id="u")
        (tmp_path / "folder" / "_chat_history").write_text("+hi\n")
        assert len(store.list_sessions().sessions) == 1  # the history is not a session
    with open_store("memory://") as store:
        assert history_path(store) is None
    monkeypatch.setenv(HISTORY_ENV, str(tmp_path / "mine"))
    with open_store("memory://") as store:
        assert history_path(store) == tmp_path / "mine"
    monkeypatch.setenv(HISTORY_ENV, "")
    with open_store("sqlite:///data/x.db") as store:
        assert history_path(store) is None


class _RemoteStore:
    """Stands in for a store reached over the network (PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url

        class Capabilities:
            persistent = True

        self.capabilities = Capabilities()


def test_history_of_a_remote_store_is_in_the_user_data_dir_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HISTORY_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    first = history_path(_RemoteStore("postgresql://ada:s3cret@db/x"))  # type: ignore[arg-type]
    same = history_path(_RemoteStore("postgresql://ada:other@db/x"))  # type: ignore[arg-type]
    other = history_path(_RemoteStore("postgresql://ada:s3cret@db/y"))  # type: ignore[arg-type]
    assert first is not None and first.parent == user_data_dir() / "chat-history"
    assert user_data_dir() == tmp_path / "agentledger"
    assert "s3cret" not in str(first)
    assert first == same and first != other


def test_a_history_file_that_cannot_be_written_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with create_pipe_input() as pipe:
        pipe.send_text("hello" + ENTER)
        reader = PromptLineReader(blocked / "history", input=pipe, output=DummyOutput())
        assert reader.read("you> ") == "hello"
    assert "warning: the chat history cannot be kept in" in capsys.readouterr().err


def test_piped_input_is_read_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt: f"{prompt}line")
    reader = PlainLineReader()
    assert (reader.read("you> "), reader.echo, reader.interactive) == ("you> line", True, False)


# -- Ctrl-C during a turn --------------------------------------------------------------------

BLOCKING_AGENT = '''
import os, time
from agentledger.runner import Agent, OfflineModel, Rule

def block(topic: str) -> dict:
    """Work for a long time (until Ctrl-C)."""
    open(os.environ["BLOCK_MARKER"], "w").close()
    time.sleep(120)
    return {"message": "done"}

def shout(text: str) -> dict:
    """Shout the text."""
    return {"message": text.upper() + "!"}

def make() -> Agent:
    return Agent(name="blocker", model=OfflineModel([
        Rule(r"block (?P<topic>.+)", "block"), Rule(r"shout (?P<text>.+)", "shout")]),
        tools=[block, shout])
'''


def _default_sigint() -> None:
    # A background shell starts its jobs with SIGINT ignored; Python then never raises
    # KeyboardInterrupt. Let the child see Ctrl-C as a terminal would deliver it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_blocking(tmp_path: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    (tmp_path / "blocking_agent.py").write_text(BLOCKING_AGENT)
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    env.update(PYTHONPATH=str(tmp_path), BLOCK_MARKER=str(tmp_path / "blocking"))
    return subprocess.Popen(
        [AGENTLEDGER, *args, "--agent", "blocking_agent:make"],
        cwd=tmp_path, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_default_sigint,
    )


def _wait_until_blocked(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not (tmp_path / "blocking").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the tool never started"
        time.sleep(0.05)


def _cancelled_turn(tmp_path: Path) -> list[Any]:
    with open_store(f"sqlite:///{tmp_path}/agentledger.db") as store:
        [session] = store.list_sessions().sessions
        return list(store.read_events(session.id))


def test_ctrl_c_during_run_records_the_cancel_and_exits_130_with_one_line(
    tmp_path: Path,
) -> None:
    proc = _start_blocking(tmp_path, "run", "block everything")
    _wait_until_blocked(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "cancelled" in lines[0]
    events = _cancelled_turn(tmp_path)
    assert [e.type for e in events[-3:]] == ["user_message", "tool_call", "error"]
    assert events[-1].data["kind"] == "cancelled"
    assert events[-1].invocation_id == events[-2].invocation_id


def test_ctrl_c_during_a_chat_turn_returns_to_the_prompt(tmp_path: Path) -> None:
    proc = _start_blocking(tmp_path, "chat", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("block everything\n")
    proc.stdin.flush()
    _wait_until_blocked(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate("shout still here\nquit\n", timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "Traceback" not in err
    assert err.count("cancelled: the turn was interrupted (Ctrl-C)") == 1
    assert "you> shout still here" in out and "STILL HERE!" in out and "bye; session" in out
    events = _cancelled_turn(tmp_path)
    kinds = [(e.type, e.data.get("kind")) for e in events]
    assert ("error", "cancelled") in kinds
    assert kinds[-1] == ("final_output", None)
