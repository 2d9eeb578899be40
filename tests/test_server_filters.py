"""HTTP listing filters that name no possible value, and empty appends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs the server extra")

from fastapi.testclient import TestClient  # noqa: E402

from agentledger import SessionManager, SessionStore, open_store  # noqa: E402
from agentledger.errors import ConfigurationError  # noqa: E402
from agentledger.server import create_app  # noqa: E402

PROBLEM = "application/problem+json"


@pytest.fixture
def mem() -> Iterator[SessionStore]:
    with open_store("memory://") as store:
        yield store


@pytest.fixture
def local(mem: SessionStore) -> Iterator[TestClient]:
    with TestClient(create_app(mem)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"status": "weird"}, ["status", "active, suspended, terminated", "'weird'"]),
        ({"phase": "nowhere"}, ["phase", "planning", "'nowhere'"]),
    ],
)
def test_listing_by_an_unknown_status_or_phase_is_422(
    local: TestClient, params: dict[str, str], needles: list[str]
) -> None:
    response = local.get("/v1/sessions", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    for needle in needles:
        assert needle in response.json()["detail"], response.json()
    assert local.get("/v1/sessions", params={"status": "active"}).status_code == 200


def test_the_manager_refuses_an_unknown_status_or_phase(mem: SessionStore) -> None:
    manager = SessionManager(mem)
    with pytest.raises(ConfigurationError, match="status must be one of"):
        manager.list_sessions(status="weird")
    with pytest.raises(ConfigurationError, match="phase must be one of"):
        manager.list_sessions(phase="nowhere")
    assert manager.list_sessions(phase=mem.lifecycle.phases[0]).sessions == []


def test_an_empty_append_answers_the_current_version(local: TestClient) -> None:
    sid = local.post("/v1/sessions", json={}).json()["id"]
    event = {"type": "user_message", "author": "user", "data": {"text": "hi"}}
    assert local.post(f"/v1/sessions/{sid}/events", json={"events": [event]}).status_code == 201
    response = local.post(f"/v1/sessions/{sid}/events", json={"events": []})
    assert response.status_code == 201, response.text
    assert response.json() == {"events": [], "version": 2}
    assert response.headers["etag"] == '"2"'
    # the checks still run: a stale expected_version is a conflict
    stale = local.post(f"/v1/sessions/{sid}/events", json={"events": [], "expected_version": 1})
    assert stale.status_code == 409, stale.text
