"""Reading the lines of `agentledger chat`: line editing and a history on a terminal, plain
lines otherwise.

On a terminal (stdin and stdout both), lines are read with prompt_toolkit: ←/→ move in the
line, ↑/↓ recall earlier lines, Ctrl-L clears the screen, Ctrl-C drops the line, Ctrl-D on
an empty line ends the chat. The lines are kept in a history file per store, so ↑ recalls
what was typed in earlier chats on the same store, like a shell (`history_path` says
where). Piped input (a script, a test) is read line by line with `input()` and echoed, so
the output reads as a transcript.

Whatever the source, `clean_line` removes terminal escape sequences and control characters
from a line before it is used, so a key the terminal did not turn into an edit (an arrow
key in a plain reader, a pasted colour code) never reaches the ledger.

Example:
    >>> clean_line("buy eggs\\x1b[D\\x1b[D\\x1b[D")
    'buy eggs'
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from agentledger.cli.render import print_warning
from agentledger.stores.base import SessionStore, display_url
from agentledger.stores.file import FileStore
from agentledger.stores.sqlite import SqliteStore

__all__ = [
    "HISTORY_ENV",
    "LineReader",
    "PlainLineReader",
    "PromptLineReader",
    "clean_line",
    "clean_text",
    "history_path",
    "open_line_reader",
    "user_data_dir",
]

HISTORY_ENV = "AGENTLEDGER_CHAT_HISTORY"
"""A file to keep the chat history in instead of the store's; set but empty: keep none."""

SQLITE_HISTORY_SUFFIX = ".chat-history"
"""Appended to a SQLite file's name for its chat history (`agentledger.db.chat-history`)."""

FILE_STORE_HISTORY = "_chat_history"
"""The chat history's file inside a file store's folder (a `_` name is never a session)."""

_ESCAPE = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]             # CSI: arrows, Home/End, colours (ESC [ ... final)
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?  # OSC: window titles, links (ESC ] ... BEL or ST)
    | \x1bO.                              # SS3: arrows and F1-F4 in application mode
    | \x1b[@-_]                           # any other two-character escape
    """,
    re.VERBOSE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 (but tab), DEL and C1


_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps tab and \n


def clean_text(text: str) -> str:
    """`clean_line` for a message that may span lines (`agentledger run "..."`): escape
    sequences and control characters removed, tabs and newlines kept.

    Args:
        text: The message as given.

    Returns:
        The message without ANSI/VT escape sequences and control characters other than tab
        and newline (`\r\n` becomes `\n`).
    """
    return _CONTROL_BUT_NEWLINE.sub("", _ESCAPE.sub("", text.replace("\r\n", "\n")))


def clean_line(line: str) -> str:
    """Remove terminal escape sequences and control characters from a line of input.

    Args:
        line: A line as read (`"buy eggs\\x1b[D"`, `"\\x0c"` for Ctrl-L...).

    Returns:
        The line without ANSI/VT escape sequences (CSI, OSC, SS3 and two-character ones)
        and without control characters other than tab; nothing else changes.
    """
    return _CONTROL.sub("", _ESCAPE.sub("", line))


def user_data_dir() -> Path:
    """The folder agentledger keeps per-user files in: `$XDG_DATA_HOME/agentledger` (by
    default `~/.local/share/agentledger`) on Linux and other Unix systems, the platform's
    application folder on macOS and Windows."""
    if sys.platform.startswith(("win", "darwin")):
        import typer

        return Path(typer.get_app_dir("agentledger"))
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "agentledger"


def history_path(store: SessionStore) -> Path | None:
    """Where the chat keeps the lines typed on `store`, one history per store.

    - `$AGENTLEDGER_CHAT_HISTORY` when set: that file (set but empty: no file at all);
    - a SQLite store: beside its file, `<file>.chat-history`;
    - a file store: `_chat_history` inside its folder;
    - `memory://`: no file (the store itself ends with the process);
    - any other store (PostgreSQL...): `chat-history/<hash>` in `user_data_dir()`, where
      `<hash>` is taken from the store's URL with its password left out.

    Args:
        store: The chat's open store.

    Returns:
        The history file (it may not exist yet), or `None` to keep the history in memory.
    """
    override = os.environ.get(HISTORY_ENV)
    if override is not None:
        return Path(override).expanduser() if override.strip() else None
    if isinstance(store, SqliteStore):
        database = Path(store.path).resolve()
        return database.with_name(database.name + SQLITE_HISTORY_SUFFIX)
    if isinstance(store, FileStore):
        return store.root / FILE_STORE_HISTORY
    if not store.capabilities.persistent:
        return None
    key = hashlib.sha256(display_url(store.url).encode()).hexdigest()[:24]
    return user_data_dir() / "chat-history" / key


class LineReader(Protocol):
    """Reads the chat's lines.

    Attributes:
        echo: The chat prints each line after the prompt (the input is not on screen).
        interactive: Ctrl-C at the prompt drops the line instead of ending the chat.
    """

    echo: bool
    interactive: bool

    def read(self, prompt: str) -> str:
        """Show `prompt` and return the next line, without its line break.

        Raises:
            EOFError: The input ended (Ctrl-D).
            KeyboardInterrupt: Ctrl-C.
        """
        ...


class PlainLineReader:
    """Lines from `input()`, echoed after the prompt: for piped input."""

    echo = True
    interactive = False

    def read(self, prompt: str) -> str:
        """Show `prompt` and return the next line of stdin (`EOFError` at its end)."""
        return input(prompt)


class _QuietFileHistory(FileHistory):
    """A `FileHistory` that warns once, instead of failing the chat, when its file cannot
    be written (a read-only folder, a full disk)."""

    _warned = False

    def store_string(self, string: str) -> None:
        try:
            super().store_string(string)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                print_warning(f"the chat history cannot be saved in {self.filename!r}: {exc}")


class PromptLineReader:
    """Lines from a prompt_toolkit session: line editing and a history.

    Args:
        history_file: Where the history is kept (created on the first line); `None` keeps
            it in memory for this chat only.
        input, output: prompt_toolkit's input and output; the terminal when `None` (tests
            pass a pipe input and a `DummyOutput`).
    """

    echo = False
    interactive = True

    def __init__(
        self,
        history_file: Path | None,
        *,
        input: Input | None = None,
        output: Output | None = None,
    ) -> None:
        history: History = InMemoryHistory()
        if history_file is not None:
            try:
                history_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # The lines typed are the user's words: private to the owner, like the
                # store's own files, whatever the umask (an existing file keeps its mode).
                os.close(os.open(history_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            except OSError as exc:
                print_warning(f"the chat history cannot be kept in {history_file}: {exc}")
            else:
                history = _QuietFileHistory(os.fspath(history_file))
        self.history_file = history_file
        self.session: PromptSession[str] = PromptSession(
            history=history, input=input, output=output
        )

    def read(self, prompt: str) -> str:
        """Show `prompt` and return the edited line (`EOFError` on Ctrl-D,
        `KeyboardInterrupt` on Ctrl-C)."""
        return self.session.prompt(prompt)


def open_line_reader(store: SessionStore) -> LineReader:
    """The reader for a chat on `store`: a `PromptLineReader` with the store's history
    (`history_path`) when stdin and stdout are a terminal, else a `PlainLineReader`."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return PromptLineReader(history_path(store))
    return PlainLineReader()
