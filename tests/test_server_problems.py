"""Every `AgentLedgerError` class has an HTTP status and a stable problem type, and the
`http://` store rebuilds the same error, attributes included, from the problem document."""

from __future__ import annotations

import inspect
import json

import pytest

from agentledger import errors
from agentledger.errors import AgentLedgerError
from agentledger.server.problems import error_from_problem, problem_for, status_for
from agentledger.server.scoped import AccessDeniedError

EXAMPLES: dict[type[AgentLedgerError], AgentLedgerError] = {
    errors.SessionNotFoundError: errors.SessionNotFoundError("s1"),
    errors.SessionExistsError: errors.SessionExistsError("s1"),
    errors.ConcurrencyError: errors.ConcurrencyError("s1", 3, 5),
    errors.StateConflictError: errors.StateConflictError("s1", ["user:n"], 5),
    errors.CorruptedSessionError: errors.CorruptedSessionError("s1", "bad JSON"),
    errors.EventTooLargeError: errors.EventTooLargeError(2000, 1024),
    errors.MissingDependencyError: errors.MissingDependencyError("httpx", "server"),
    errors.SessionAccessError: errors.SessionAccessError("s1", ("app", "alice"), ("app", "bo")),
    errors.DuplicateEventKeyError: errors.DuplicateEventKeyError(
        "s1", ["ckpt:1"], "different_content"
    ),
    errors.StateOperationError: errors.StateOperationError(
        {"op": "remove", "path": "/user:items/9"}, 0, "no item 9"
    ),
    errors.PluginError: errors.PluginError("acme", "it raised KeyError"),
    errors.PluginRejectedError: errors.PluginRejectedError("a secret in data", plugin="redact"),
}

STATUS = {
    "SessionNotFoundError": 404,
    "SessionAccessError": 404,
    "SessionExistsError": 409,
    "ConcurrencyError": 409,
    "StateConflictError": 409,
    "InvalidTransitionError": 409,
    "DuplicateEventKeyError": 409,
    "EventTooLargeError": 413,
    "InvalidEventError": 422,
    "InvalidSessionIdError": 422,
    "ConfigurationError": 422,
    "StoreUnavailableError": 503,
    "CorruptedSessionError": 500,
    "SchemaVersionError": 500,
    "StoreError": 500,
    "MissingDependencyError": 500,
    "RunnerError": 502,
    "ModelError": 502,
    "ToolError": 502,
    "AgentLedgerError": 400,
    "PluginRejectedError": 422,
    "PluginError": 500,
}


def every_error_class() -> list[type[AgentLedgerError]]:
    return [
        cls for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, AgentLedgerError)
    ]


def example(cls: type[AgentLedgerError]) -> AgentLedgerError:
    return EXAMPLES.get(cls) or cls(f"something about {cls.__name__}")


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_every_error_class_round_trips(cls: type[AgentLedgerError]) -> None:
    exc = example(cls)
    body = problem_for(exc)
    assert body["status"] == status_for(exc) == STATUS.get(cls.__name__, body["status"])
    assert body["type"].startswith("urn:agentledger:problem:") and body["error"] == cls.__name__
    back = error_from_problem(body["status"], body)
    assert type(back) is cls and str(back) == str(exc)
    for name, value in vars(exc).items():  # as JSON carries them (a tuple comes back a list)
        assert json.loads(json.dumps(getattr(back, name))) == json.loads(json.dumps(value))


def test_known_classes_have_their_status() -> None:
    names = {cls.__name__ for cls in every_error_class()}
    assert set(STATUS) <= names  # the table above names real classes


def test_conflicts_name_the_current_version_and_keys() -> None:
    body = problem_for(EXAMPLES[errors.StateConflictError])
    assert body["current_version"] == 5 and body["keys"] == ["user:n"]


def test_access_denied_is_403() -> None:
    assert problem_for(AccessDeniedError("no"))["status"] == 403


def test_problems_without_a_class_fall_back_on_the_status() -> None:
    assert isinstance(error_from_problem(503, None), errors.StoreUnavailableError)
    assert isinstance(error_from_problem(401, {"detail": "x"}), errors.ConfigurationError)
    assert isinstance(error_from_problem(422, {"detail": "x", "errors": [{}]}),
                      errors.InvalidEventError)
    unknown = error_from_problem(404, {"error": "NoSuchClass", "detail": "gone"})
    assert isinstance(unknown, AgentLedgerError) and "gone" in str(unknown)
