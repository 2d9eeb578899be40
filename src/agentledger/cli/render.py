"""Rendering helpers shared by every CLI command: tables, panels, JSON and error lines.

Human output goes through Rich; machine output (`--json`) is plain `json.dumps` text on
stdout with nothing else around it, so it can be piped to `jq` or `json.loads`. Errors are
one line on stderr. User-provided strings are always rendered as `rich.text.Text`, never
as markup, so a title like `"[red]x"` prints as written.

Example:
    >>> from agentledger.cli.render import print_events_json
    >>> print_events_json([])
    []
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentledger.core.events import Event
from agentledger.core.lifecycle import format_duration
from agentledger.core.session import Session, Status
from agentledger.core.state import state_change
from agentledger.stores.base import mask_secrets

if TYPE_CHECKING:
    from agentledger.core.lifecycle import ResumeDecision
    from agentledger.manager import CleanupResult, SessionStats

__all__ = [
    "EVENT_TYPE_STYLES",
    "STATUS_STYLES",
    "event_line",
    "event_type_style",
    "events_table",
    "decision_text",
    "format_age",
    "format_duration",
    "format_time",
    "make_console",
    "one_line",
    "plural",
    "print_answer",
    "print_cleanup",
    "print_decision",
    "print_error",
    "print_event",
    "print_events_json",
    "print_events_table",
    "print_json",
    "print_session",
    "print_session_change",
    "print_session_json",
    "print_sessions_table",
    "print_state",
    "print_state_changes",
    "print_stats",
    "print_warning",
    "session_note",
    "session_panel",
    "state_changes",
    "stats_text",
    "sessions_table",
    "short_id",
    "shown_id",
    "status_style",
    "status_text",
    "summarize_event",
]

STATUS_STYLES: dict[str, str] = {
    Status.ACTIVE.value: "green",
    Status.SUSPENDED.value: "yellow",
    Status.TERMINATED.value: "red",
}
"""The Rich style of each session status."""

EVENT_TYPE_STYLES: dict[str, str] = {
    "session_created": "bold",
    "user_message": "cyan",
    "agent_message": "magenta",
    "tool_call": "blue",
    "tool_result": "blue",
    "final_output": "bold magenta",
    "error": "bold red",
    "state_updated": "yellow",
    "metadata_updated": "yellow",
    "phase_changed": "bold yellow",
    "status_changed": "bold yellow",
    "session_finalized": "bold",
    "session_forked": "bold",
    "rewound": "bold yellow",
}
"""The Rich style of each standard event type; plugin types are dim."""

_SUMMARY_WIDTH = 120
_TEXT_KEYS = ("text", "content", "message", "output", "result", "summary")


# -- consoles and plain output --------------------------------------------------------------


def make_console(*, stderr: bool = False) -> Console:
    """Return a Rich console on stdout (or stderr) for one command's human output.

    Args:
        stderr: Write to stderr instead of stdout.

    Returns:
        A console that renders no emoji codes and highlights nothing by itself; colours are
        dropped when the stream is not a terminal.
    """
    return Console(stderr=stderr, emoji=False, highlight=False)


def print_json(data: Any) -> None:
    """Print a JSON document on stdout, indented, and nothing else.

    Args:
        data: Anything `json.dumps` accepts (use `model_dump(mode="json")` for models).
    """
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_error(message: str) -> None:
    """Print `error: <message>` on stderr, on one line.

    Args:
        message: The error message; line breaks in it are folded into spaces, and secrets
            (passwords of store URLs, `password=` values) are masked.
    """
    label = typer.style("error:", fg="red", bold=True)
    typer.echo(f"{label} {one_line(mask_secrets(message), width=None)}", err=True)


# -- small formatting helpers ---------------------------------------------------------------


def one_line(value: Any, *, width: int | None = _SUMMARY_WIDTH) -> str:
    """Fold a value into one line, shortened with an ellipsis past `width` characters.

    Args:
        value: A string, or anything else (rendered as compact JSON).
        width: The longest result, in characters; `None` for no limit.

    Returns:
        The value on one line: whitespace runs become single spaces.
    """
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = " ".join(value.split())
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text


def plural(count: int, noun: str) -> str:
    """`1 event`, `2 events`, `0 events`: a count with its noun, plural unless it is 1.

    Args:
        count: How many.
        noun: The singular noun; its plural adds `s`.
    """
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_time(value: datetime | None, *, date: bool = True) -> str:
    """Format a timestamp in UTC for tables: `2026-01-08 18:05:30` (or `18:05:30`).

    Args:
        value: An aware datetime, or `None` (rendered as an empty string).
        date: Include the date.
    """
    if value is None:
        return ""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


_PLAIN_ID = re.compile(r"[^\s'\"\\`$!*?\[\]{}()<>|&;#~]+")


def shown_id(session_id: str) -> str:
    """A session id as the CLI prints it for people: as it is when it reads unambiguously
    (`01JD5K…`, `user/42`, `café`), else quoted the way a shell reads it back (`'t/1 x'`,
    `' padded '`, `'it'"'"'s'`), so it can be pasted into the next command (or a chat
    `/session load`) and leading, trailing or invisible characters show.

    Args:
        session_id: The exact id.

    Returns:
        The id, or its `shlex.quote` form when it holds whitespace, a quote, a shell
        special character or a character that does not print.
    """
    if _PLAIN_ID.fullmatch(session_id) and session_id.isprintable():
        return session_id
    return shlex.quote(session_id)


def short_id(value: str | None, *, keep: int = 8) -> str:
    """Shorten a long id to its last `keep` characters (`…5WQ4X7QZ`).

    The tail is kept because ULIDs share their leading (time) characters within a session.

    Args:
        value: The id, or `None` (rendered as an empty string).
        keep: Characters kept.
    """
    if not value:
        return ""
    if len(value) <= keep + 2:
        return value
    return f"…{value[-keep:]}"


def format_age(value: datetime, *, now: datetime | None = None) -> str:
    """Format how long ago a timestamp was: `now`, `42s ago`, `5m ago`, `3h ago`, `12d ago`.

    Past 60 days the UTC date is shown instead (`2026-01-08`).

    Args:
        value: An aware datetime.
        now: The current time; the system clock (UTC) when `None`.
    """
    now = now or datetime.now(timezone.utc)
    seconds = (now - value).total_seconds()
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            if unit == "d" and seconds >= 60 * 86_400:
                return value.astimezone(timezone.utc).strftime("%Y-%m-%d")
            return f"{int(seconds // size)}{unit} ago"
    return "now"  # pragma: no cover - unreachable


def status_style(status: str) -> str:
    """Return the Rich style of a status: green active, yellow suspended, red terminated."""
    return STATUS_STYLES.get(status, "")


def status_text(status: str) -> Text:
    """Return a status as colour-coded Rich text."""
    return Text(status, style=status_style(status))


def event_type_style(event_type: str) -> str:
    """Return the Rich style of an event type (plugin types are dim)."""
    return EVENT_TYPE_STYLES.get(event_type, "dim")


# -- tables that fit the terminal -----------------------------------------------------------

_FLEX_MIN = 12
_FOLD_MIN = 40
_GAP = 2


@dataclass
class _Column:
    """A table column: `drop` ranks which columns go first on a narrow terminal (0 never)."""

    header: str
    cells: list[Text]
    drop: int
    flex: bool = False
    justify: JustifyMethod = "left"
    fold: bool = False  # never shortened: wrapped over lines when nothing else makes it fit

    @property
    def natural(self) -> int:
        return max([len(self.header), *(c.cell_len for c in self.cells)])


def _fit_table(columns: list[_Column], width: int, *, title: str | None = None) -> Table:
    """Build a table no wider than `width`: drop the most droppable columns until the fixed
    columns fit (a folding column counting at most `_FOLD_MIN`), wrap a folding column that
    is still too wide over lines, then give the flexible column (shortened with an
    ellipsis) what is left."""
    kept = list(columns)

    def needed(cols: list[_Column]) -> int:
        fixed = sum(
            min(c.natural, _FLEX_MIN) if c.flex else min(c.natural, _FOLD_MIN) if c.fold else c.natural
            for c in cols
        )
        return fixed + _GAP * (len(cols) - 1)

    while needed(kept) > width:
        droppable = [c for c in kept if c.drop > 0]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda c: c.drop))
    sizes = {id(c): c.natural for c in kept}
    flex_min = sum(min(c.natural, _FLEX_MIN) for c in kept if c.flex)
    over = sum(c.natural for c in kept if not c.flex) + flex_min + _GAP * (len(kept) - 1) - width
    for column in kept:
        if over > 0 and column.fold:
            sizes[id(column)] = max(column.natural - over, _FOLD_MIN)
            over -= column.natural - sizes[id(column)]
    spare = width - sum(sizes[id(c)] for c in kept if not c.flex) - _GAP * (len(kept) - 1)
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        padding=(0, 1),
        pad_edge=False,
        header_style="bold dim",
    )
    for column in kept:
        size = max(min(column.natural, spare), 1) if column.flex else sizes[id(column)]
        folded = size < column.natural and column.fold
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not folded,
            overflow="fold" if folded else "ellipsis",
            min_width=size,
            max_width=size,
        )
    for row in zip(*(c.cells for c in kept), strict=True):
        table.add_row(*row)
    return table


# -- events ---------------------------------------------------------------------------------


def _text_of(data: Mapping[str, Any]) -> str | None:
    for key in _TEXT_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):  # ADK-like {"parts": [{"text": ...}]}
            parts = value.get("parts")
            if isinstance(parts, list):
                texts = [
                    part["text"]
                    for part in parts
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str)
                ]
                if texts:
                    return " ".join(texts)
    return None


def _adk_part(data: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    """The first `function_call`/`function_response` of an ADK event's JSON, else `data`."""
    content = data.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    for part in parts if isinstance(parts, list) else []:
        found = part.get(field) if isinstance(part, Mapping) else None
        if isinstance(found, Mapping):
            return found
    return data


def _call(data: Mapping[str, Any]) -> str:
    data = _adk_part(data, "function_call")
    name = data.get("name") or data.get("tool") or "?"
    args = data.get("args", data.get("arguments"))
    if isinstance(args, Mapping):
        inner = ", ".join(f"{k}={one_line(v, width=None)}" for k, v in args.items())
    elif args is None:
        inner = ""
    else:
        inner = one_line(args, width=None)
    return f"{name}({inner})"


def _openai_item(item: Mapping[str, Any]) -> str:
    """An OpenAI Agents SDK item (a Responses API input item): a message's text, a
    function call `name(arg=value)`, a call's output `call_id → output`."""
    kind = item.get("type")
    if kind == "function_call":
        arguments = item.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        return _call({"name": item.get("name"), "args": arguments})
    if kind == "function_call_output":
        return f"{item.get('call_id', '?')} → {one_line(item.get('output'), width=None)}"
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
        if texts:
            return " ".join(texts)
    return one_line(item, width=None)


def _langgraph(kind: str, data: Mapping[str, Any]) -> str:
    """A LangGraph checkpoint `step N: updated channels (checkpoint <id>)`, or a pending write
    `write <channel>[ = value]` (the value when stored as JSON)."""
    if kind == "langgraph.write":
        value = data.get("value")
        shown = value.get("json") if isinstance(value, Mapping) and "json" in value else None
        suffix = f" = {one_line(shown, width=None)}" if shown is not None else ""
        return f"write {data.get('channel', '?')}{suffix}"
    checkpoint = data.get("checkpoint")
    body = checkpoint.get("json") if isinstance(checkpoint, Mapping) else None
    metadata = data.get("metadata")
    meta = metadata.get("json") if isinstance(metadata, Mapping) else None
    parts = [f"step {meta['step']}"] if isinstance(meta, Mapping) and "step" in meta else []
    updated = body.get("updated_channels") if isinstance(body, Mapping) else None
    if isinstance(updated, list) and updated:
        parts.append(", ".join(str(c) for c in updated))
    checkpoint_id = data.get("id", "?")
    if not parts:
        return f"checkpoint {checkpoint_id}"
    return f"{': '.join(parts)} (checkpoint {checkpoint_id})"


def _data_summary(event: Event) -> str:
    data = event.data
    kind = event.type
    if event.erased:
        return "(payload erased)"
    if kind == "events_erased" and isinstance(data.get("seqs"), list):
        seqs = ", ".join(str(s) for s in data["seqs"])
        return f"erased {seqs}: {one_line(data.get('reason'), width=None)}"
    if kind == "session_created":
        who = f"{data.get('app_name', '?')}/{data.get('user_id', '?')}"
        extra = [f"agent={data['agent_name']}"] if data.get("agent_name") else []
        extra += [repr(data["title"])] if data.get("title") else []
        return " ".join([who, *extra])
    if kind == "tool_call":
        return _call(data)
    if kind == "openai_agents.item" and isinstance(data.get("item"), Mapping):
        return _openai_item(data["item"])
    if kind in ("langgraph.checkpoint", "langgraph.write"):
        return _langgraph(kind, data)
    if kind == "tool_result":
        call = _adk_part(data, "function_response")
        name = call.get("name") or call.get("tool") or "?"
        if "error" in call and call["error"]:
            return f"{name} ✗ {one_line(call['error'], width=None)}"
        result = call.get("result", call.get("output", call.get("content", call.get("response"))))
        return f"{name} → {one_line(result, width=None)}"
    if kind in ("phase_changed", "status_changed"):
        change = f"{data.get('from', '?')} → {data.get('to', '?')}"
        reason = data.get("reason")
        return f"{change} ({reason})" if reason else change
    if kind == "session_forked":
        return f"from {data.get('source_id', '?')} at seq {data.get('source_seq', '?')}"
    if kind == "rewound":
        back = f"back to seq {data.get('to_seq', '?')}"
        turn = data.get("before_invocation")
        return f"{back} (before invocation {turn})" if turn else back
    if kind == "session_finalized":
        outcome = str(data.get("outcome") or "")
        summary = data.get("summary")
        return f"{outcome}: {summary}" if summary else outcome
    if kind == "metadata_updated" and isinstance(data.get("metadata"), Mapping):
        return one_line(data["metadata"], width=None)
    if kind == "error":
        message = data.get("message")
        kind_name = data.get("error_type") or data.get("type")
        if isinstance(message, str):
            return f"{kind_name}: {message}" if isinstance(kind_name, str) else message
    found = _text_of(data)
    if found is not None:
        return found
    return one_line(data, width=None) if data else ""


def summarize_event(event: Event, *, width: int | None = _SUMMARY_WIDTH) -> str:
    """Summarize an event's `data`, `state_delta` and `state_ops` on one line.

    Messages show their text, tool calls `name(arg=value)`, tool results `name → result`,
    phase and status changes `from → to`; other events their data as compact JSON. A
    non-empty state delta is appended as `Δ key=value` (`key=null`: set to null), removed
    keys as `del key` (read by the event's format: in format 1 a `None` removed the key),
    state operations as `Δ op /path=value`.

    Args:
        event: The event.
        width: The longest summary, in characters; `None` for no limit.

    Returns:
        One line of text (possibly empty).
    """
    parts = [_data_summary(event)]
    if event.state_delta or event.state_remove:
        change = state_change(event.state_delta, event.state_remove, event.format)
        delta = ", ".join(
            [f"{key}={one_line(value, width=None)}" for key, value in change.set.items()]
            + [f"del {key}" for key in change.remove]
        )
        parts.append(f"Δ {delta}")
    if event.state_ops:
        ops = ", ".join(
            f"{op.get('op')} {op.get('path')}"
            + (f"={one_line(op['value'], width=None)}" if "value" in op else "")
            for op in event.state_ops
        )
        parts.append(f"Δ {ops}")
    return one_line("  ".join(p for p in parts if p), width=width)


def event_line(event: Event, *, width: int | None = _SUMMARY_WIDTH) -> Text:
    """Render one event as a colour-coded line: `#seq time type author summary`.

    Meant for streaming the steps of a turn as they are recorded (`run`, `chat`).

    Args:
        event: The event.
        width: The longest summary, in characters; `None` for no limit.
    """
    line = Text()
    line.append(f"#{event.seq:<4} ", style="dim")
    line.append(f"{format_time(event.timestamp, date=False)} ", style="dim")
    line.append(f"{event.type:<17}", style=event_type_style(event.type))
    line.append(f" {event.author:<7} ", style="dim")
    line.append(summarize_event(event, width=width))
    return line


def print_event(event: Event, *, console: Console | None = None) -> None:
    """Print one event as a colour-coded line (see `event_line`).

    Args:
        event: The event.
        console: Where to print; a new stdout console when `None`.
    """
    (console or make_console()).print(event_line(event), soft_wrap=True)


def events_table(
    events: Sequence[Event], *, title: str | None = None, width: int | None = None
) -> Table:
    """Build a table of events: seq, time, type, key (when an event has one), author,
    summary, invocation.

    Times show the date only when the events span more than one day (UTC). The table fits
    `width`: the summary is shortened with an ellipsis, keys to 24 characters, and on a
    narrow terminal the key, invocation, time and author columns are left out, in that
    order.

    Args:
        events: Events in `seq` order.
        title: A caption above the table.
        width: The width to fit, in characters; 80 when `None` (pass `console.width`).
    """
    days = {e.timestamp.astimezone(timezone.utc).date() for e in events}
    with_date = len(days) > 1
    columns = [
        _Column("seq", [Text(str(e.seq), style="dim") for e in events], drop=0, justify="right"),
        _Column("time (UTC)", [Text(format_time(e.timestamp, date=with_date)) for e in events], 3),
        _Column("type", [Text(e.type, style=event_type_style(e.type)) for e in events], drop=0),
        _Column("author", [Text(e.author) for e in events], drop=2),
        _Column("summary", [Text(summarize_event(e, width=None)) for e in events], 1, flex=True),
        _Column("invocation", [Text(short_id(e.invocation_id), style="dim") for e in events], 4),
    ]
    if any(e.key is not None for e in events):  # idempotency keys, shortened to 24 characters
        keys = [Text(_shorten(e.key or "", _KEY_WIDTH), style="cyan") for e in events]
        columns.insert(3, _Column("key", keys, drop=5))
    return _fit_table(columns, width or 80, title=title)


_KEY_WIDTH = 24


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_events_table(
    events: Sequence[Event], *, title: str | None = None, console: Console | None = None
) -> None:
    """Print events as a table (see `events_table`), or a dim note when there are none.

    Args:
        events: Events in `seq` order.
        title: A caption above the table.
        console: Where to print; a new stdout console when `None`.
    """
    console = console or make_console()
    if not events:
        console.print(Text("No events.", style="dim"))
        return
    console.print(events_table(events, title=title, width=console.width))


def print_events_json(events: Iterable[Event]) -> None:
    """Print events as a JSON ledger: an array of `Event.model_dump(mode="json")` objects.

    Args:
        events: The events, printed in the order given.
    """
    print_json([event.model_dump(mode="json") for event in events])


# -- sessions -------------------------------------------------------------------------------


def _label(session: Session) -> str:
    return session.title or session.purpose or ""


def sessions_table(sessions: Sequence[Session], *, width: int | None = None) -> Table:
    """Build a table of sessions: id, app, user, agent, status, phase, events, updated, title.

    `updated` is the time since the last activity (`5m ago`); `show` gives the exact time.

    The table fits `width`: the title (or purpose) is shortened with an ellipsis, and on a
    narrow terminal the agent, app, events, title, updated and user columns are left out,
    in that order. Ids are never shortened, so they can be copied; an id too long for the
    terminal (ids run to 512 characters) wraps over lines instead of pushing the other
    columns out.

    Args:
        sessions: The sessions, in the order given.
        width: The width to fit, in characters; 80 when `None` (pass `console.width`).
    """
    now = datetime.now(timezone.utc)
    columns = [
        _Column("id", [Text(shown_id(s.id), style="bold") for s in sessions], drop=0, fold=True),
        _Column("app", [Text(s.app_name) for s in sessions], drop=6),
        _Column("user", [Text(s.user_id) for s in sessions], drop=2),
        _Column("agent", [Text(s.agent_name or "") for s in sessions], drop=7),
        _Column("status", [status_text(s.status) for s in sessions], drop=0),
        _Column("phase", [Text(s.phase) for s in sessions], drop=1),
        _Column("events", [Text(str(s.version)) for s in sessions], drop=5, justify="right"),
        _Column("updated", [Text(format_age(s.updated_at, now=now)) for s in sessions], drop=3),
        _Column("title", [Text(one_line(_label(s), width=None)) for s in sessions], 4, flex=True),
    ]
    return _fit_table(columns, width or 80)


def print_sessions_table(
    sessions: Sequence[Session],
    *,
    next_cursor: str | None = None,
    next_hint: str | None = None,
    console: Console | None = None,
) -> None:
    """Print sessions as a table, then how to get the next page when there is one.

    Args:
        sessions: The sessions of one page.
        next_cursor: The page's `next_cursor`; `None` on the last page.
        next_hint: The command that fetches the next page; `--cursor <next_cursor>`
            when `None`.
        console: Where to print; a new stdout console when `None`.
    """
    console = console or make_console()
    if sessions:
        console.print(sessions_table(sessions, width=console.width))
    else:
        console.print(Text("No sessions.", style="dim"))
    if next_cursor is not None:
        hint = next_hint or f"--cursor {next_cursor}"
        console.print(Text.assemble(("More sessions: ", "dim"), (hint, "bold")), soft_wrap=True)


def print_session_json(session: Session) -> None:
    """Print a session as one JSON object (`Session.model_dump(mode="json")`)."""
    print_json(session.model_dump(mode="json"))


def _json_block(value: Mapping[str, Any]) -> RenderableType:
    if not value:
        return Text("{}", style="dim")
    block = JSON.from_data(value, indent=2, ensure_ascii=False)
    block.text.no_wrap, block.text.overflow = False, "fold"  # long values wrap, never cut
    return block


def session_panel(session: Session) -> Panel:
    """Build a panel of a session: its fields, phase history, state and metadata.

    Args:
        session: The session.
    """
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, str | Text | None]] = [
        ("app", session.app_name),
        ("user", session.user_id),
        ("agent", session.agent_name),
        ("title", session.title),
        ("purpose", session.purpose),
        ("status", status_text(session.status)),
        ("phase", session.phase),
        ("version", plural(session.version, "event")),
        (
            "forked from",
            f"{session.forked_from.session_id} at seq {session.forked_from.seq}"
            if session.forked_from else None,
        ),
        ("created", f"{format_time(session.created_at)} UTC"),
        ("updated", f"{format_time(session.updated_at)} UTC"),
        ("resume ready", "yes" if session.resume_ready else "no"),
        ("errors", str(session.error_count)),
        ("last error", session.last_error),
        (
            "tokens",
            f"{session.input_tokens:,} in, {session.output_tokens:,} out over "
            f"{session.model_calls:,} model calls"
            if session.input_tokens or session.output_tokens else None,
        ),
        ("outcome", session.outcome),
        ("summary", session.summary),
        ("finalized", f"{format_time(session.finalized_at)} UTC" if session.finalized_at else None),
        (
            "duration",
            f"{session.duration_seconds:.1f} s" if session.duration_seconds is not None else None,
        ),
    ]
    for name, value in rows:
        if value is None or value == "":
            continue
        fields.add_row(name, value if isinstance(value, Text) else Text(value))
    parts: list[RenderableType] = [fields]
    if session.phase_history:
        history = Text()
        for i, step in enumerate(session.phase_history):
            if i:
                history.append("\n")
            history.append(f"{format_time(step.timestamp)}  ", style="dim")
            history.append(f"{step.from_phase} → {step.to_phase}")
        parts += [Text("\nphase history", style="bold"), history]
    parts += [Text("\nstate", style="bold"), _json_block(session.state)]
    parts += [Text("\nmetadata", style="bold"), _json_block(session.metadata)]
    return Panel(
        Group(*parts),
        title=Text.assemble(("session ", "bold"), (shown_id(session.id), "bold cyan")),
        title_align="left",
        border_style=status_style(session.status) or "none",
    )


def print_session(session: Session, *, console: Console | None = None) -> None:
    """Print a session as a readable panel (see `session_panel`).

    Args:
        session: The session.
        console: Where to print; a new stdout console when `None`.
    """
    (console or make_console()).print(session_panel(session))


def session_note(session: Session, created: bool) -> str:
    """How a command came to a session, as printed after its id: `new` (just created),
    `continued` (an existing active session) or, for one that takes no turns, its status
    (`suspended`, `terminated`).

    Args:
        session: The session.
        created: The command created it.
    """
    if created:
        return "new"
    return "continued" if session.status == Status.ACTIVE else str(session.status)


def print_answer(
    answer: str | None,
    *,
    console: Console | None = None,
    label: str = "agent:",
    style: str = "bold cyan",
) -> None:
    """Print an agent's answer after a label (`agent: …`), never cut.

    On a terminal a long answer is word-wrapped to the terminal's width, its lines indented
    under the first (a word longer than the width is folded); otherwise (piped output) it
    is printed as given, one line per line of the answer, for the reader to wrap.

    Args:
        answer: The answer's text; `None` prints the label alone.
        console: Where to print; a new stdout console when `None`.
        label: Printed before the answer.
        style: The label's Rich style.
    """
    console = console or make_console()
    text = Text(answer or "")
    if console.is_terminal:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style=style)
        grid.add_column(overflow="fold")
        grid.add_row(label, text)
        console.print(grid)
    else:
        console.print(Text.assemble((label, style), " ", text), soft_wrap=True)


def state_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> Text | None:
    """Render what changed between two states, one key per line, in `after`'s key order
    (removed keys last): `+ key = value` (added, green), `~ key: old → new` (changed,
    yellow), `- key (was value)` (removed, red). Values are compact JSON.

    Args:
        before: The state before (e.g. of a turn).
        after: The state after.

    Returns:
        The lines, or `None` when nothing changed.
    """

    def shown(value: Any) -> str:
        return one_line(json.dumps(value, ensure_ascii=False, default=str), width=None)

    text = Text()
    lines = 0
    for key, value in after.items():
        if key in before and before[key] == value:
            continue
        if lines:
            text.append("\n")
        lines += 1
        if key not in before:
            text.append(f"+ {key} = ", style="green")
            text.append(shown(value))
        else:
            text.append(f"~ {key}: ", style="yellow")
            text.append(f"{shown(before[key])} → {shown(value)}")
    for key, value in before.items():
        if key in after:
            continue
        if lines:
            text.append("\n")
        lines += 1
        text.append(f"- {key}", style="red")
        text.append(f" (was {shown(value)})", style="dim")
    return text if lines else None


def print_state_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    title: str = "state changes",
    console: Console | None = None,
) -> bool:
    """Print what changed between two states in a panel (see `state_changes`); print
    nothing when nothing changed.

    Args:
        before: The state before.
        after: The state after.
        title: The panel's title.
        console: Where to print; a new stdout console when `None`.

    Returns:
        Whether anything changed (and was printed).
    """
    changes = state_changes(before, after)
    if changes is None:
        return False
    (console or make_console()).print(
        Panel(changes, title=Text(title, style="bold"), title_align="left")
    )
    return True


def print_state(
    state: Session | Mapping[str, Any],
    *,
    title: str = "state",
    console: Console | None = None,
) -> None:
    """Print a session's state as pretty-printed, highlighted JSON in a panel.

    Args:
        state: A session (its `state` is printed) or a state mapping.
        title: The panel's title.
        console: Where to print; a new stdout console when `None`.
    """
    mapping = state.state if isinstance(state, Session) else state
    (console or make_console()).print(
        Panel(_json_block(mapping), title=Text(title, style="bold"), title_align="left")
    )


# -- lifecycle: resume decisions, changes, clean-up, metrics ---------------------------------


def print_warning(message: str) -> None:
    """Print `warning: <message>` on stderr, on one line (something left alone, not a failure).

    Args:
        message: The warning; line breaks in it are folded into spaces.
    """
    label = typer.style("warning:", fg="yellow", bold=True)
    typer.echo(f"{label} {one_line(message, width=None)}", err=True)


def _fields(rows: Sequence[tuple[str, Text | str | None]]) -> Text:
    """Aligned `name  value` lines (dim names); rows whose value is `None` are left out.
    Plain text rather than a table, so no line carries trailing padding."""
    kept = [(name, value) for name, value in rows if value is not None]
    width = max((len(name) for name, _ in kept), default=0) + 2
    text = Text()
    for i, (name, value) in enumerate(kept):
        if i:
            text.append("\n")
        text.append(name.ljust(width), style="dim")
        text.append_text(value if isinstance(value, Text) else Text(value))
    return text


def decision_text(decision: ResumeDecision) -> Text:
    """Render a resume decision as aligned lines: resume yes/no (green/red), reason, detail,
    the session and its status, previous phase, idle time and error count (lines without a
    value, e.g. for a session that was not found, are left out).

    Args:
        decision: The decision of `SessionManager.should_resume`.
    """
    verdict = Text("yes", style="bold green") if decision.resume else Text("no", style="bold red")
    session = Text(decision.session_id, style="bold")
    if decision.status is not None:
        session.append("  ")
        session.append_text(status_text(decision.status))
    rows: list[tuple[str, Text | str | None]] = [
        ("resume", verdict),
        ("reason", Text(str(decision.reason), style="bold")),
        ("detail", decision.detail),
        ("session", session),
        ("previous phase", decision.previous_phase),
        (
            "idle",
            format_duration(decision.idle_seconds) if decision.idle_seconds is not None else None,
        ),
        ("errors", str(decision.error_count) if decision.error_count is not None else None),
    ]
    return _fields(rows)


def print_decision(decision: ResumeDecision, *, console: Console | None = None) -> None:
    """Print a resume decision (see `decision_text`).

    Args:
        decision: The decision.
        console: Where to print; a new stdout console when `None`.
    """
    (console or make_console()).print(decision_text(decision), soft_wrap=True)


def print_session_change(verb: str, session: Session, *, console: Console | None = None) -> None:
    """Print one line saying what a write command did to a session:
    `Updated session <id>: active, phase approval, 0 errors.` (a finalized session shows
    its outcome and duration instead of the phase).

    Args:
        verb: `Updated`, `Suspended`, `Resumed`, `Finalized`, `Terminated`...
        session: The session after the change.
        console: Where to print; a new stdout console when `None`.
    """
    line = Text(f"{verb} session ")
    line.append(shown_id(session.id), style="bold")
    line.append(": ")
    line.append_text(status_text(session.status))
    if session.outcome is not None:
        line.append(f", outcome {session.outcome}")
        if session.duration_seconds is not None:
            line.append(f" after {format_duration(session.duration_seconds)}")
    else:
        line.append(f", phase {session.phase}")
    errors = session.error_count
    line.append(f", {errors} error{'' if errors == 1 else 's'}.")
    (console or make_console()).print(line, soft_wrap=True)


def print_cleanup(
    result: CleanupResult, sessions: Sequence[Session], *, console: Console | None = None
) -> None:
    """Print what a clean-up did: how many sessions were deleted, or on a dry run a table of
    the sessions that would be; corrupted sessions left alone are named on stderr.

    Args:
        result: The clean-up's result.
        sessions: The sessions to list (a dry run's); ignored after a real run.
        console: Where to print; a new stdout console when `None`.
    """
    console = console or make_console()
    count = result.count
    noun = f"{count} session{'' if count == 1 else 's'}"
    since = f"last active before {format_time(result.cutoff)} UTC"
    if result.dry_run:
        if count:
            console.print(Text(f"Would delete {noun} {since}:"), soft_wrap=True)
            console.print(sessions_table(sessions, width=console.width))
        else:
            console.print(Text(f"No sessions {since}; nothing would be deleted.", style="dim"))
    else:
        console.print(Text(f"Deleted {noun} {since}."), soft_wrap=True)
    for session_id in result.skipped_corrupted:
        print_warning(
            f"session {shown_id(session_id)} is corrupted and was left alone (look at it, then delete "
            "it by id)"
        )
    for session_id in result.skipped_changed:
        print_warning(f"session {shown_id(session_id)} got new events during the clean-up and was kept")


def _counts(counts: Mapping[str, int], *, statuses: bool = False) -> Text:
    text = Text()
    for i, (name, count) in enumerate(counts.items()):
        if i:
            text.append(" · ", style="dim")
        text.append(name, style=status_style(name) if statuses else "")
        text.append(f" {count}")
    return text if counts else Text("-", style="dim")


def stats_text(stats: SessionStats) -> Text:
    """Render the session metrics as aligned lines: sessions and finalized counts, resume and
    error rates, median and p95 duration, and the counts by status (colour-coded), phase
    and agent.

    Args:
        stats: The result of `SessionManager.stats`.
    """
    rows: list[tuple[str, Text | str | None]] = [
        ("sessions", f"{stats.total} ({stats.finalized} finalized)"),
        ("resume rate", f"{stats.resume_rate:.1%} resumed at least once"),
        ("error rate", f"{stats.error_rate:.1%} with at least one error"),
        ("median duration", format_duration(stats.median_duration_seconds)),
        ("p95 duration", format_duration(stats.p95_duration_seconds)),
        ("by status", _counts(stats.by_status, statuses=True)),
        ("by phase", _counts(stats.by_phase)),
        ("by agent", _counts(stats.by_agent)),
        (
            "tokens",
            f"{stats.input_tokens:,} in, {stats.output_tokens:,} out over {stats.model_calls:,} "
            f"model calls ({stats.tokens_per_session:,.0f} per session)"
            if stats.input_tokens or stats.output_tokens else None,
        ),
        (
            "tokens by agent",
            ", ".join(
                f"{agent} {c['input_tokens']:,} in / {c['output_tokens']:,} out"
                for agent, c in stats.tokens_by_agent.items()
                if c["input_tokens"] or c["output_tokens"]
            ) or None,
        ),
        ("corrupted", Text(", ".join(stats.corrupted), style="red") if stats.corrupted else None),
    ]
    return _fields(rows)


def print_stats(stats: SessionStats, *, console: Console | None = None) -> None:
    """Print the session metrics (see `stats_text`).

    Args:
        stats: The metrics.
        console: Where to print; a new stdout console when `None`.
    """
    (console or make_console()).print(stats_text(stats), soft_wrap=True)
