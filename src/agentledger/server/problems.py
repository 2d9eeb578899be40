"""RFC 9457 problem details for every `AgentLedgerError`, and back again.

The server answers every failure with `application/problem+json`: `type` is stable per error
class (`urn:agentledger:problem:<kebab-name>`), `title` the class's short name, `status` the
HTTP status, `detail` the error's message, `error` the class name, plus the error's public
attributes (`session_id`, `expected_version`, `actual_version`, `keys`, `size`, `limit`...)
as extension members, and all of them again in `attributes` (one named like a standard
member, such as `CorruptedSessionError.detail`, only there). The `http://` store turns such a response back into the same class
with the same attributes (`error_from_problem`), so callers see one error tree locally and
remotely.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentledger import errors
from agentledger.errors import (
    AgentLedgerError,
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventKeyError,
    EventTooLargeError,
    InvalidEventError,
    InvalidSessionIdError,
    InvalidTransitionError,
    MissingDependencyError,
    PluginError,
    PluginRejectedError,
    RunnerError,
    SessionAccessError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    StoreUnavailableError,
)
from agentledger.server.scoped import AccessDeniedError

__all__ = [
    "PROBLEM_JSON",
    "RETRY_AFTER_SECONDS",
    "error_from_problem",
    "problem_for",
    "problem_type",
    "status_for",
]

PROBLEM_JSON = "application/problem+json"
"""The media type of every error response."""

RETRY_AFTER_SECONDS = 1
"""The `Retry-After` (seconds) sent with a 503 when the store is unavailable."""

# Most specific first: the first class in an error's MRO found here decides its status.
_STATUS: dict[type[AgentLedgerError], int] = {
    SessionNotFoundError: 404,
    SessionAccessError: 404,  # another user's session: as if it did not exist
    ConcurrencyError: 409,
    SessionExistsError: 409,
    AccessDeniedError: 403,
    InvalidTransitionError: 409,
    DuplicateEventKeyError: 409,
    EventTooLargeError: 413,
    InvalidEventError: 422,
    InvalidSessionIdError: 422,
    MissingDependencyError: 500,
    PluginRejectedError: 422,
    PluginError: 500,
    ConfigurationError: 422,
    StoreUnavailableError: 503,
    StoreError: 500,
    RunnerError: 502,
    AgentLedgerError: 400,
}


def _kebab(name: str) -> str:
    name = name.removesuffix("Error") or name
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem_type(name: str) -> str:
    """The stable problem `type` URI of an error class name (`SessionNotFoundError` ->
    `urn:agentledger:problem:session-not-found`)."""
    return f"urn:agentledger:problem:{_kebab(name)}"


def status_for(exc: AgentLedgerError) -> int:
    """The HTTP status of an error: by the most specific class of its MRO that has one
    (403 for `AccessDeniedError`)."""
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 400


_RESERVED = frozenset({"type", "title", "status", "detail", "error", "attributes"})


def _public_attributes(exc: BaseException) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in vars(exc).items():
        if key.startswith("_"):
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        found[key] = value
    return found


def problem_for(exc: AgentLedgerError) -> dict[str, Any]:
    """The problem document of an error (see the module docstring).

    A conflict also carries `current_version` (the session's version now), and a state
    conflict the changed `keys`.
    """
    name = type(exc).__name__
    body: dict[str, Any] = {
        "type": problem_type(name),
        "title": name,
        "status": status_for(exc),
        "detail": str(exc),
        "error": name,
    }
    attributes = _public_attributes(exc)
    body.update({k: v for k, v in attributes.items() if k not in _RESERVED})
    body["attributes"] = attributes  # all of them, also those named like a member
    if isinstance(exc, ConcurrencyError):
        body["current_version"] = exc.actual_version
    return body


def error_from_problem(status: int, body: Any) -> AgentLedgerError:
    """Rebuild the error a problem response describes (the inverse of `problem_for`).

    Args:
        status: The HTTP status.
        body: The decoded JSON body (anything; a non-problem body falls back on the status).

    Returns:
        An instance of the named `agentledger.errors` class with the problem's attributes;
        for an unknown or missing class: `SessionNotFoundError`-free fallbacks by status
        (413 `EventTooLargeError`-like `InvalidEventError`, 4xx `InvalidEventError` or
        `ConfigurationError`, 5xx `StoreUnavailableError`).
    """
    problem = body if isinstance(body, dict) else {}
    detail = str(problem.get("detail") or f"HTTP {status}")
    errors_found = problem.get("errors")
    if errors_found:
        detail = f"{detail}: {json.dumps(errors_found)}"
    name = problem.get("error")
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, AgentLedgerError):
        exc: AgentLedgerError = cls.__new__(cls)
        Exception.__init__(exc, detail)
        attributes = problem.get("attributes")
        if not isinstance(attributes, dict):
            attributes = {
                k: v for k, v in problem.items() if k not in _RESERVED | {"current_version"}
            }
        for key, value in attributes.items():
            setattr(exc, key, value)
        if isinstance(exc, SessionNotFoundError) and not hasattr(exc, "session_id"):
            exc.session_id = ""
        if not _has_own_str(cls):
            return exc
        try:
            str(exc)
        except Exception:  # a __str__ that needs an attribute the problem did not carry
            return AgentLedgerError(detail)
        return exc
    if status in (401, 403):
        return ConfigurationError(f"the server refused the request ({status}): {detail}")
    if status in (404, 405, 413, 422) or 400 <= status < 500:
        return InvalidEventError(detail)
    return StoreUnavailableError(f"the server failed ({status}): {detail}")


def _has_own_str(cls: type) -> bool:
    return any("__str__" in vars(k) for k in cls.__mro__ if k not in (BaseException, object))
