"""`agentledger hook …`: delegation hooks for agent runners, JSON on stdin, JSON on stdout.

Both commands read one JSON object on stdin and print one JSON object on stdout, and never
a traceback: any failure is a JSON error object on stdout,
`{"error": CODE, "message": TEXT, "type": EXCEPTION}` (`type` only for an exception's
error). CODE is one of the stable set `ERROR_CODES`, with its exit code: 2 for bad input
(`invalid_json`, `invalid_input`), 1 otherwise (`configuration_error`, `store_error`,
`agentledger_error`, `internal_error`). Both take the global `--store`.

`pre-delegate`, before an agent is given a task. Input:
`{"agent_name", "task_id"?, "agent_id"?, "task_description"?, "metadata"?}`.

- `agent_id` names a session the resume policy allows (and that belongs to `agent_name`):
  the resume is recorded (`status_changed` to active, `resume_count` + 1) and the output is
  `{"should_resume": true, "reason": "session_resumable", "agent_id": <that id>,
  "resume_metadata": {"previous_phase", "created_at", "history", "session_metadata"},
  ...}`.
- Otherwise a new session is created for `agent_name` (purpose: `task_description`, else
  `task_id`; metadata: the input's `metadata` plus `task_id`) and the output is
  `{"should_resume": false, "reason": <why>, "agent_id": <the NEW id>,
  "resume_metadata": null, ...}`. `reason` is `no_agent_id` (none given), `agent_mismatch`
  (the session belongs to another agent), `resumed_elsewhere` (it changed between the
  decision and the resume: the resume is conditional on the version decided on, so two
  concurrent delegations never both resume one session), or the resume policy's reason (`not_found`,
  `corrupted`, `terminated`, `not_resume_ready`, `phase_not_resumable`,
  `timeout_exceeded`, `too_many_errors`).
- `previous_agent_id` is the `agent_id` the input named (or null): the session resumed,
  or the one that was not.
- Every output also has `detail` (a sentence for people) and `original_context` (the
  input, unchanged).

`subagent-stop`, when an agent finishes. Input: `{"agent_id", "exit_code"?, "summary"?}`
or a Claude Code `SubagentStop` payload (`session_id`, `transcript_path`,
`hook_event_name`, `stop_hook_active`, `agent_id`, `agent_type`, `agent_transcript_path`,
`last_assistant_message`). The session is the first existing one named by `agent_id` at the
top level, then `metadata.agent_id`, then `tool_input.agent_id` (each a string when
present: anything else is `invalid_input`) (Claude Code's own
`agent_id` is its subagent id: it matches a session only if one was created with that id,
so a wrapper that knows the agentledger id passes it in `metadata`). It is finalized as
`completed` when `exit_code` is 0 or absent (Claude Code sends none), `failed` otherwise;
the summary is `summary`, else `last_assistant_message` (shortened to 2000 characters).
Output: `{"finalized": true, "reason": null, "agent_id", "outcome", "summary",
"duration_seconds", "finalized_at"}`, or, exit code 0 still, `{"finalized": false,
"reason": "no_agent_id" | "not_found" | "terminated" | "corrupted", "agent_id", "detail"}`.
A second stop for the same session (e.g. with `stop_hook_active`) reports `terminated`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import typer

from agentledger.cli.app import StoreMode
from agentledger.cli.render import print_json
from agentledger.cli.sessions import manager_from
from agentledger.core.lifecycle import ResumeReason
from agentledger.core.session import Session, Status
from agentledger.errors import (
    AgentLedgerError,
    ConcurrencyError,
    ConfigurationError,
    CorruptedSessionError,
    InvalidEventError,
    InvalidSessionIdError,
    InvalidTransitionError,
    SessionNotFoundError,
    StoreError,
)
from agentledger.manager import SessionManager

__all__ = [
    "AGENT_MISMATCH",
    "ERROR_CODES",
    "NO_AGENT_ID",
    "SUMMARY_MAX_CHARS",
    "hook_app",
    "pre_delegate",
    "subagent_stop",
]

NO_AGENT_ID = "no_agent_id"
"""Reason: the input named no session."""
AGENT_MISMATCH = "agent_mismatch"
"""Reason (`pre-delegate`): the session named belongs to another agent."""
RESUMED_ELSEWHERE = "resumed_elsewhere"
"""Reason (`pre-delegate`): the session changed between the decision and the resume (another
delegation resumed it, or an event was appended); a new session is created instead."""
ERROR_CODES: dict[str, int] = {
    "invalid_json": 2,
    "invalid_input": 2,
    "configuration_error": 1,
    "store_error": 1,
    "agentledger_error": 1,
    "internal_error": 1,
}
"""Every `"error"` code a hook prints, with the command's exit code. A stable set:
    `invalid_json`: stdin is empty, not UTF-8, not JSON, holds NaN/Infinity or a lone
        surrogate.
    `invalid_input`: JSON that is not an object, a required field missing, a field of the
        wrong type, or a value the store refuses (`InvalidEventError`,
        `InvalidSessionIdError`).
    `configuration_error`: a bad store URL or option, or a bad `$AGENTLEDGER_NOW`.
    `store_error`: the store cannot be opened, reached or read (`StoreError`).
    `agentledger_error`: any other agentledger error (e.g. a lifecycle rule).
    `internal_error`: an unexpected exception (a bug); the hook still answers in JSON.
"""
SUMMARY_MAX_CHARS = 2000
"""`subagent-stop` shortens a summary taken from `last_assistant_message` to this length."""

hook_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Delegation hooks: JSON on stdin, JSON on stdout, never a traceback.",
)


class HookError(Exception):
    """A hook failed in a way its output reports as `{"error": code, "message": ...}`.

    Args:
        code: Machine-readable, one of `ERROR_CODES` (`invalid_json`, `invalid_input`).
        message: For people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = ERROR_CODES[code]


def _bad_input(message: str) -> NoReturn:
    raise HookError("invalid_input", message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def read_payload(raw: bytes) -> dict[str, Any]:
    """Parse a hook's stdin: one JSON object (UTF-8).

    Raises:
        HookError: `invalid_json` for empty input, bad UTF-8, bad JSON, NaN/Infinity or
            an escaped lone surrogate; `invalid_input` for JSON that is not an object.
    """
    if not raw.strip():
        raise HookError("invalid_json", "stdin is empty; expected a JSON object")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise HookError("invalid_json", f"stdin is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        _bad_input(f"stdin must hold a JSON object, not {type(data).__name__}")
    try:  # e.g. an escaped lone surrogate ("\ud800"): it could never be stored or echoed
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HookError("invalid_json", f"stdin holds text that is not valid Unicode: {exc}") from exc
    return data


def _text(payload: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            _bad_input(f"{key} is required: a non-empty string")
        return None
    if not isinstance(value, str):
        _bad_input(f"{key} must be a string, not {json.dumps(value)}")
    return value


def _object(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        _bad_input(f"{key} must be a JSON object, not {json.dumps(value)}")
    return value


# -- pre-delegate -----------------------------------------------------------------------------


def pre_delegate(manager: SessionManager, payload: dict[str, Any]) -> dict[str, Any]:
    """Resume the session the payload names if the resume policy allows, else create one.

    Args:
        manager: The lifecycle API over the store.
        payload: `{"agent_name", "task_id"?, "agent_id"?, "task_description"?, "metadata"?}`.

    Returns:
        The hook's output (see the module docstring).

    Raises:
        HookError: `invalid_input`: no `agent_name`, or a field of the wrong type.
        AgentLedgerError: The store failed (reported by the command as a JSON error).
    """
    agent_name = _text(payload, "agent_name", required=True)
    assert agent_name is not None
    agent_id = _text(payload, "agent_id")
    description = _text(payload, "task_description")
    task_id = payload.get("task_id")
    if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, str | int)):
        _bad_input(f"task_id must be a string or an integer, not {json.dumps(task_id)}")
    metadata = _object(payload, "metadata")

    reason: str = NO_AGENT_ID
    detail = "no agent_id was given"
    if agent_id is not None:
        decision = manager.should_resume(agent_id)
        reason, detail = decision.reason.value, decision.detail
        if decision.resume and decision.agent_name != agent_name:
            reason = AGENT_MISMATCH
            detail = (
                f"session {agent_id!r} belongs to agent {decision.agent_name!r}, "
                f"not {agent_name!r}"
            )
        elif decision.resume:
            try:
                # Only on the version decided on: two delegations cannot both resume.
                manager.resume(
                    agent_id, reason="pre-delegate", expected_version=decision.version
                )
            except ConcurrencyError:
                reason = RESUMED_ELSEWHERE
                detail = f"session {agent_id!r} changed while deciding (resumed elsewhere?)"
            except InvalidTransitionError as exc:  # terminated meanwhile
                reason, detail = ResumeReason.TERMINATED.value, str(exc)
            else:
                context = decision.model_dump(mode="json")
                return {
                    "should_resume": True,
                    "reason": reason,
                    "detail": detail,
                    "agent_id": agent_id,
                    "previous_agent_id": agent_id,
                    "resume_metadata": {
                        "previous_phase": context["previous_phase"],
                        "created_at": context["created_at"],
                        "history": context["phase_history"],
                        "session_metadata": context["metadata"],
                    },
                    "original_context": payload,
                }

    new_metadata = dict(metadata)
    if task_id is not None:
        new_metadata["task_id"] = task_id
    purpose = description or (str(task_id) if task_id is not None else None)
    try:
        session = manager.create_session(agent_name, purpose, new_metadata)
    except InvalidEventError as exc:
        _bad_input(str(exc))
    return {
        "should_resume": False,
        "reason": reason,
        "detail": f"{detail}; created a new session",
        "agent_id": session.id,
        "previous_agent_id": agent_id,
        "resume_metadata": None,
        "original_context": payload,
    }


# -- subagent-stop ----------------------------------------------------------------------------


def _candidate_ids(payload: Mapping[str, Any]) -> list[str]:
    """Session ids named by the payload, in the order they are tried (see module docs).

    Raises:
        HookError: `invalid_input`: an `agent_id` that is present but not a string.
    """
    found: list[str] = []
    for path, where in (
        ("agent_id", payload),
        ("metadata.agent_id", payload.get("metadata")),
        ("tool_input.agent_id", payload.get("tool_input")),
    ):
        if isinstance(where, Mapping):
            value = where.get("agent_id")
            if value is not None and not isinstance(value, str):
                _bad_input(f"{path} must be a string, not {json.dumps(value)}")
            if isinstance(value, str) and value.strip() and value not in found:
                found.append(value)
    return found


def subagent_stop(manager: SessionManager, payload: dict[str, Any]) -> dict[str, Any]:
    """Finalize the session an agent ran in: `completed` on exit code 0 (or none),
    `failed` otherwise.

    Args:
        manager: The lifecycle API over the store.
        payload: `{"agent_id", "exit_code"?, "summary"?}` or a Claude Code `SubagentStop`
            payload (see the module docstring for where the id is looked up).

    Returns:
        `{"finalized": true, ...}`, or `{"finalized": false, "reason": ...}` when no session
        is named, none exists, it is already terminated, or it cannot be read back.

    Raises:
        HookError: `invalid_input`: `exit_code` is not an integer, `summary` or an
            `agent_id` not a string.
        AgentLedgerError: The store failed (reported by the command as a JSON error).
    """
    exit_code = payload.get("exit_code", 0)
    if exit_code is None:
        exit_code = 0
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        _bad_input(f"exit_code must be an integer, not {json.dumps(exit_code)}")
    summary = _text(payload, "summary")
    if summary is None:
        last = payload.get("last_assistant_message")
        if isinstance(last, str) and last.strip():
            cut = len(last) > SUMMARY_MAX_CHARS
            summary = last[: SUMMARY_MAX_CHARS - 1] + "…" if cut else last
    outcome = "completed" if exit_code == 0 else "failed"

    candidates = _candidate_ids(payload)
    if not candidates:
        return _not_finalized(NO_AGENT_ID, None, "the input names no agent_id")
    session_id: str | None = None
    for candidate in candidates:
        try:
            session = manager.get_session(candidate)
        except (SessionNotFoundError, InvalidSessionIdError):
            continue
        except CorruptedSessionError as exc:
            return _not_finalized(ResumeReason.CORRUPTED.value, candidate, str(exc))
        session_id = session.id
        if session.status == Status.TERMINATED:
            return _already_terminated(session)
        break
    if session_id is None:
        names = ", ".join(repr(c) for c in candidates)
        return _not_finalized(ResumeReason.NOT_FOUND.value, candidates[0], f"no session {names}")
    try:
        done = manager.finalize_session(session_id, outcome, summary)
    except InvalidTransitionError:  # terminated meanwhile
        return _already_terminated(manager.get_session(session_id))
    dumped = done.model_dump(mode="json")
    return {
        "finalized": True,
        "reason": None,
        "agent_id": done.id,
        **{k: dumped[k] for k in ("outcome", "summary", "duration_seconds", "finalized_at")},
    }


def _not_finalized(reason: str, agent_id: str | None, detail: str) -> dict[str, Any]:
    return {"finalized": False, "reason": reason, "agent_id": agent_id, "detail": detail}


def _already_terminated(session: Session) -> dict[str, Any]:
    outcome = f"outcome {session.outcome}" if session.outcome else "no outcome"
    return _not_finalized(
        ResumeReason.TERMINATED.value, session.id, f"the session is already terminated ({outcome})"
    )


# -- the commands -----------------------------------------------------------------------------


def _error_code(exc: AgentLedgerError) -> tuple[str, int]:
    """The `ERROR_CODES` entry of an agentledger error: its code and exit code."""
    if isinstance(exc, ConfigurationError):
        name = "configuration_error"
    elif isinstance(exc, StoreError):
        name = "store_error"
    elif isinstance(exc, InvalidEventError | InvalidSessionIdError):
        name = "invalid_input"
    else:
        name = "agentledger_error"
    return name, ERROR_CODES[name]


def _stdin_bytes() -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    return sys.stdin.read().encode("utf-8", "surrogateescape")


def run_hook(
    ctx: typer.Context,
    handler: Callable[[SessionManager, dict[str, Any]], dict[str, Any]],
    mode: StoreMode = StoreMode.CREATE,
) -> None:
    """Read stdin, run `handler` on the store opened for `mode`, print its JSON; on any
    failure print a JSON error object and exit non-zero (2 for bad input, 1 otherwise).
    Never lets a traceback out."""
    error: dict[str, Any]
    try:
        payload = read_payload(_stdin_bytes())
        result = handler(manager_from(ctx, mode), payload)
        print_json(result)
        return
    except HookError as exc:
        error, code = {"error": exc.code, "message": exc.message}, exc.exit_code
    except AgentLedgerError as exc:
        name, code = _error_code(exc)
        error = {"error": name, "message": str(exc), "type": type(exc).__name__}
    except Exception as exc:  # a hook must answer in JSON whatever happens
        error = {"error": "internal_error", "message": str(exc), "type": type(exc).__name__}
        code = ERROR_CODES["internal_error"]
    print_json(error)
    raise typer.Exit(code)


@hook_app.command("pre-delegate")
def pre_delegate_command(ctx: typer.Context) -> None:
    """Before delegating a task: resume the agent's session if the resume policy allows,
    else create a new one; JSON on stdin, JSON on stdout.

    Input: `{"agent_name": …, "task_id": …, "agent_id": …?, "task_description": …,
    "metadata": {…}}`. Output: `{"should_resume", "reason", "detail", "agent_id",
    "previous_agent_id", "resume_metadata": {"previous_phase", "created_at", "history",
    "session_metadata"} or null, "original_context"}`. When the session is not resumed,
    `agent_id` is the id of the NEW session and `reason` says why (`no_agent_id`,
    `agent_mismatch`, or the resume policy's reason). Exit code 0 either way; a missing
    `agent_name` or bad JSON gives a JSON error object and exit code 2.
    """
    run_hook(ctx, pre_delegate)


@hook_app.command("subagent-stop")
def subagent_stop_command(ctx: typer.Context) -> None:
    """When an agent stops: finalize its session, `completed` on exit code 0, `failed`
    otherwise; JSON on stdin, JSON on stdout.

    Input: `{"agent_id": …, "exit_code": 0, "summary": …?}` or a Claude Code SubagentStop
    payload (the session id is looked up in `agent_id`, then `metadata.agent_id`, then
    `tool_input.agent_id`; no `exit_code` counts as 0; `last_assistant_message` is the
    summary). Output: `{"finalized": true, "agent_id", "outcome", "summary",
    "duration_seconds", "finalized_at"}`, or `{"finalized": false, "reason": "no_agent_id" |
    "not_found" | "terminated" | "corrupted", …}` with exit code 0. Bad JSON gives a JSON
    error object and exit code 2.
    """
    run_hook(ctx, subagent_stop, StoreMode.WRITE)
