"""The HTTP service, request by request (FastAPI's TestClient, in process): every endpoint,
every error status, bad input, bearer tokens and per-user isolation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs the server extra")

from fastapi.testclient import TestClient  # noqa: E402

from agentledger import SessionStore, open_store  # noqa: E402
from agentledger.core.events import NewEvent  # noqa: E402
from agentledger.server import create_app  # noqa: E402
from agentledger.server.auth import TokenTable  # noqa: E402

ADA_TOKEN, BOB_TOKEN, ROOT_TOKEN = "ada-" + "a" * 28, "bob-" + "b" * 28, "root-" + "r" * 27
ADA = {"Authorization": f"Bearer {ADA_TOKEN}"}
BOB = {"Authorization": f"Bearer {BOB_TOKEN}"}
ROOT = {"Authorization": f"Bearer {ROOT_TOKEN}"}
PROBLEM = "application/problem+json"


def tokens_json(*entries: dict[str, Any]) -> str:
    return json.dumps({"tokens": list(entries)})


@pytest.fixture
def mem() -> Iterator[SessionStore]:
    with open_store("memory://", max_event_bytes=4096) as store:
        yield store


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(
        tokens_json(
            {"token": ADA_TOKEN, "user": "ada", "apps": ["*"]},
            {"token": BOB_TOKEN, "user": "bob", "apps": ["agents", "other"]},
            {"token": ROOT_TOKEN, "user": "root", "role": "admin"},
        )
    )
    return path


@pytest.fixture
def client(mem: SessionStore, tokens_file: Path) -> Iterator[TestClient]:
    app = create_app(mem, tokens=TokenTable(tokens_file), max_body_bytes=64 * 1024)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def local(mem: SessionStore) -> Iterator[TestClient]:
    with TestClient(create_app(mem)) as test_client:
        yield test_client


def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:agentledger:problem:")
    assert body["title"] and body["detail"]
    return body


def new_session(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def append(client: TestClient, sid: str, headers: dict[str, str], *texts: str, **extra: Any) -> Any:
    events = [{"type": "user_message", "author": "user", "data": {"text": t}} for t in texts]
    return client.post(f"/v1/sessions/{sid}/events", json={"events": events, **extra},
                       headers=headers)


def sse_events(text: str) -> list[dict[str, Any]]:
    """The `id`/`event`/`data` fields of each message of an SSE body (comments skipped)."""
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            found.append(fields)
    return found


# -- sessions ------------------------------------------------------------------------------


def test_create_get_and_list(client: TestClient) -> None:
    response = client.post("/v1/sessions", json={"agent_name": "helper", "title": "t"},
                           headers=ADA)
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/v1/sessions/{created['id']}"
    assert created["user_id"] == "ada" and created["app_name"] == "agents"
    got = client.get(f"/v1/sessions/{created['id']}", headers=ADA)
    assert got.json() == created and got.headers["etag"] == '"1"'
    for _ in range(2):
        new_session(client, ADA)
    page = client.get("/v1/sessions", params={"limit": 2}, headers=ADA).json()
    assert len(page["sessions"]) == 2 and page["next_cursor"]
    rest = client.get("/v1/sessions", params={"limit": 2, "cursor": page["next_cursor"]},
                      headers=ADA).json()
    ids = [s["id"] for s in page["sessions"] + rest["sessions"]]
    assert sorted(ids) == sorted({*ids}) and created["id"] in ids and len(ids) == 3
    filtered = client.get("/v1/sessions", params={"agent": "helper"}, headers=ADA).json()
    assert [s["id"] for s in filtered["sessions"]] == [created["id"]]


def test_current_session_is_the_most_recently_active(client: TestClient) -> None:
    problem(client.get("/v1/sessions/current", headers=ADA), 404)
    first = new_session(client, ADA, agent_name="a")
    second = new_session(client, ADA, agent_name="b")
    assert client.get("/v1/sessions/current", headers=ADA).json()["id"] == second["id"]
    append(client, first["id"], ADA, "again")
    assert client.get("/v1/sessions/current", headers=ADA).json()["id"] == first["id"]
    by_agent = client.get("/v1/sessions/current", params={"agent": "b"}, headers=ADA)
    assert by_agent.json()["id"] == second["id"]


def test_create_with_a_taken_id_is_409(client: TestClient) -> None:
    new_session(client, ADA, session_id="mine")
    body = problem(client.post("/v1/sessions", json={"session_id": "mine"}, headers=ADA), 409)
    assert body["error"] == "SessionExistsError" and body["session_id"] == "mine"


# -- events ---------------------------------------------------------------------------------


def test_append_and_read_events(client: TestClient) -> None:
    sid = new_session(client, ADA)["id"]
    response = append(client, sid, ADA, "one", "two", expected_version=1)
    assert response.status_code == 201
    assert [e["seq"] for e in response.json()["events"]] == [2, 3]
    assert response.json()["version"] == 3 and response.headers["etag"] == '"3"'
    events = client.get(f"/v1/sessions/{sid}/events", headers=ADA).json()
    assert [e["seq"] for e in events["events"]] == [1, 2, 3] and events["next_after"] is None
    page = client.get(f"/v1/sessions/{sid}/events", params={"after": 1, "limit": 1},
                      headers=ADA).json()
    assert [e["data"] for e in page["events"]] == [{"text": "one"}]
    last = client.get(f"/v1/sessions/{sid}/events", params={"last": 1}, headers=ADA).json()
    assert [e["seq"] for e in last["events"]] == [3]
    typed = client.get(f"/v1/sessions/{sid}/events", params={"type": ["session_created"]},
                       headers=ADA).json()
    assert [e["type"] for e in typed["events"]] == ["session_created"]


def test_version_conflict_is_409_naming_the_current_version(client: TestClient,
                                                             mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    append(client, sid, ADA, "one")
    body = problem(append(client, sid, ADA, "late", expected_version=1), 409)
    assert body["error"] == "ConcurrencyError"
    assert body["current_version"] == 2 and body["expected_version"] == 1
    headers = {**ADA, "If-Match": '"1"'}
    assert problem(append(client, sid, headers, "late"), 409)["current_version"] == 2
    assert append(client, sid, {**ADA, "If-Match": '"2"'}, "ok").status_code == 201
    assert len(mem.read_events(sid)) == 3  # nothing written by the refused appends


def test_state_conflict_is_409_naming_the_keys(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA, state={"n": 1})["id"]
    mem.append(sid, [NewEvent(type="state_updated", state_delta={"n": 2})])
    body = problem(append(client, sid, ADA, "x", expected_state={"n": 1}), 409)
    assert body["error"] == "StateConflictError" and body["keys"] == ["n"]
    assert body["current_version"] == 2
    assert len(mem.read_events(sid)) == 2


def test_event_too_large_is_413(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    body = problem(append(client, sid, ADA, "x" * 5000), 413)
    assert body["error"] == "EventTooLargeError" and body["limit"] == 4096
    assert len(mem.read_events(sid)) == 1


def test_huge_body_is_413_and_the_server_keeps_serving(client: TestClient) -> None:
    sid = new_session(client, ADA)["id"]
    body = problem(append(client, sid, ADA, "x" * (70 * 1024)), 413)
    assert body["limit"] == 64 * 1024
    assert client.get(f"/v1/sessions/{sid}", headers=ADA).json()["version"] == 1


def test_huge_body_without_content_length_is_413(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    event = json.dumps({"type": "user_message", "data": {"text": "x" * 1000}}).encode()

    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length to check up front
        yield b'{"events": ['
        for i in range(100):
            yield (b"," if i else b"") + event
        yield b"]}"

    response = client.post(f"/v1/sessions/{sid}/events", content=chunks(),
                           headers={**ADA, "Content-Type": "application/json"})
    assert problem(response, 413)["limit"] == 64 * 1024
    assert len(mem.read_events(sid)) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"events": "nope"}',
        b'{"events": [{"type": 5}]}',
        b'{"events": [{"type": "unknown"}]}',
        b'{"events": [{"type": "user_message", "surprise": 1}]}',
        b'{"events": [], "unknown_field": 1}',
        b'{"events": [{"type": "user_message", "data": {"t": "\xff\xfe"}}]}',
        b'{"events": [{"type": "user_message", "data": [1]}]}',
        b'{"events": [], "expected_version": "one"}',
    ],
    ids=["malformed", "wrong-type", "type-not-str", "unknown-type", "unknown-event-field",
         "unknown-field", "not-utf8", "data-not-object", "version-not-int"],
)
def test_bad_append_bodies_are_problems_and_store_nothing(
    client: TestClient, mem: SessionStore, raw: bytes
) -> None:
    sid = new_session(client, ADA)["id"]
    response = client.post(f"/v1/sessions/{sid}/events", content=raw,
                           headers={**ADA, "Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    problem(response, response.status_code)
    assert len(mem.read_events(sid)) == 1


def test_validation_problems_name_the_field(client: TestClient) -> None:
    body = problem(client.post("/v1/sessions", json={"title": 5}, headers=ADA), 422)
    assert body["errors"][0]["loc"] == ["body", "title"]


def test_invalid_session_id_is_422(client: TestClient) -> None:
    body = problem(client.get("/v1/sessions/bad%00id", headers=ADA), 422)
    assert body["error"] == "InvalidSessionIdError"
    body = problem(client.get("/v1/sessions/" + "x" * 513, headers=ADA), 422)
    assert body["error"] == "InvalidSessionIdError"


@pytest.mark.parametrize("sid", ["user/42", "t/1 x", "..", "%2F", "100%", "日本/語", " pad "])
def test_a_session_id_with_slashes_or_escapes_is_one_path_segment(
    client: TestClient, sid: str
) -> None:
    created = client.post("/v1/sessions", json={"session_id": sid}, headers=ADA)
    assert created.status_code == 201, created.text
    segment = quote(sid, safe="").replace(".", "%2E")
    assert created.headers["Location"] == f"/v1/sessions/{segment}"
    posted = client.post(
        f"/v1/sessions/{segment}/events",
        json={"events": [{"type": "user_message", "data": {"text": "hi"}}]},
        headers=ADA,
    )
    assert posted.status_code == 201, posted.text
    got = client.get(created.headers["Location"], headers=ADA)
    assert got.status_code == 200 and got.json()["id"] == sid and got.json()["version"] == 2
    events = client.get(f"/v1/sessions/{segment}/events", headers=ADA).json()
    assert [e["session_id"] for e in events["events"]] == [sid, sid]
    if "/" in sid:  # the `/` unescaped is another path, never this session
        assert client.get(f"/v1/sessions/{sid}/events", headers=ADA).status_code == 404


def test_a_session_named_current_is_reached_escaped(client: TestClient) -> None:
    created = client.post("/v1/sessions", json={"session_id": "current"}, headers=ADA)
    assert created.headers["Location"] == "/v1/sessions/%63urrent"
    got = client.get("/v1/sessions/%63urrent", headers=ADA)
    assert got.status_code == 200 and got.json()["id"] == "current"


def test_unknown_session_is_404_on_every_endpoint(client: TestClient) -> None:
    for method, path, body in session_endpoints("nobody-here"):
        response = client.request(method, path, json=body, headers=ADA)
        if path.endswith("resume-decision"):
            assert response.json()["reason"] == "not_found"
        else:
            problem(response, 404)


# -- lifecycle ------------------------------------------------------------------------------


def test_lifecycle_over_http(client: TestClient) -> None:
    sid = new_session(client, ADA, agent_name="w")["id"]
    patched = client.patch(f"/v1/sessions/{sid}", json={"phase": "planning",
                           "metadata": {"a": {"b": 1}}, "error": "oops"}, headers=ADA).json()
    assert patched["phase"] == "planning" and patched["metadata"] == {"a": {"b": 1}}
    assert patched["error_count"] == 1
    assert client.post(f"/v1/sessions/{sid}/suspend", json={"reason": "lunch"},
                       headers=ADA).json()["status"] == "suspended"
    turn = client.post(f"/v1/sessions/{sid}/turns", json={"message": "hi"}, headers=ADA)
    assert problem(turn, 409)["error"] == "InvalidTransitionError"
    assert client.post(f"/v1/sessions/{sid}/resume", headers=ADA).json()["status"] == "active"
    loaded = client.post(f"/v1/sessions/{sid}", headers=ADA).json()
    assert loaded["resume_count"] == 2
    decision = client.get(f"/v1/sessions/{sid}/resume-decision", headers=ADA).json()
    assert decision["reason"] == "session_resumable" and decision["version"] == loaded["version"]
    stale = client.post(f"/v1/sessions/{sid}/resume", json={"expected_version": 1}, headers=ADA)
    assert problem(stale, 409)["current_version"] == loaded["version"]
    done = client.post(f"/v1/sessions/{sid}/finalize",
                       json={"outcome": "completed", "summary": "ok"}, headers=ADA).json()
    assert done["status"] == "terminated" and done["outcome"] == "completed"
    again = client.post(f"/v1/sessions/{sid}/terminate", headers=ADA)
    assert problem(again, 409)["error"] == "InvalidTransitionError"
    bad_phase = client.patch(f"/v1/sessions/{sid}", json={"phase": "x"}, headers=ADA)
    problem(bad_phase, 409)


def test_delete_terminates_and_purge_deletes(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    assert client.delete(f"/v1/sessions/{sid}", headers=ADA).json()["status"] == "terminated"
    assert mem.get_session(sid).status == "terminated"  # the ledger is kept
    stale = client.delete(f"/v1/sessions/{sid}", params={"purge": True, "expected_version": 1},
                          headers=ADA)
    assert problem(stale, 409)["current_version"] == 2
    purged = client.delete(f"/v1/sessions/{sid}", params={"purge": True, "expected_version": 2},
                           headers=ADA)
    assert purged.status_code == 204
    problem(client.get(f"/v1/sessions/{sid}", headers=ADA), 404)


# -- turns, streams, hooks, stats -----------------------------------------------------------


def test_turn_returns_the_answer_and_its_events(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    result = client.post(f"/v1/sessions/{sid}/turns", json={"message": "remind me to call mum"},
                         headers=ADA).json()
    assert "call mum" in result["answer"]
    assert [e["seq"] for e in result["events"]] == [e.seq for e in mem.read_events(sid, after=1)]
    assert mem.get_session(sid).state["user:reminders"] == ["call mum"]


def test_turn_as_an_event_stream(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    response = client.post(f"/v1/sessions/{sid}/turns", json={"message": "what are my reminders"},
                           headers={**ADA, "Accept": "text/event-stream"})
    assert response.headers["content-type"].startswith("text/event-stream")
    got = sse_events(response.text)
    assert [int(e["id"]) for e in got] == [e.seq for e in mem.read_events(sid, after=1)]
    assert got[-1]["event"] == "final_output"


def test_empty_turn_message_is_422(client: TestClient) -> None:
    sid = new_session(client, ADA)["id"]
    problem(client.post(f"/v1/sessions/{sid}/turns", json={"message": ""}, headers=ADA), 422)


def test_stream_resumes_after_last_event_id_and_ends_on_terminate(client: TestClient) -> None:
    sid = new_session(client, ADA)["id"]
    append(client, sid, ADA, "one", "two", "three")
    client.post(f"/v1/sessions/{sid}/terminate", headers=ADA)
    whole = sse_events(client.get(f"/v1/sessions/{sid}/events/stream", headers=ADA).text)
    assert [int(e["id"]) for e in whole] == [1, 2, 3, 4, 5]
    assert json.loads(whole[1]["data"])["data"] == {"text": "one"}
    resumed = client.get(f"/v1/sessions/{sid}/events/stream",
                         headers={**ADA, "Last-Event-ID": "3"})
    assert [int(e["id"]) for e in sse_events(resumed.text)] == [4, 5]
    bad = client.get(f"/v1/sessions/{sid}/events/stream", headers={**ADA, "Last-Event-ID": "x"})
    problem(bad, 422)


def test_hooks(client: TestClient) -> None:
    created = client.post("/v1/hooks/pre-delegate",
                          json={"agent_name": "coder", "task_id": "T1"}, headers=ADA).json()
    assert created["should_resume"] is False and created["reason"] == "no_agent_id"
    sid = created["agent_id"]
    client.patch(f"/v1/sessions/{sid}", json={"phase": "planning"}, headers=ADA)
    resumed = client.post("/v1/hooks/pre-delegate",
                          json={"agent_name": "coder", "agent_id": sid}, headers=ADA).json()
    assert resumed["should_resume"] is True and resumed["agent_id"] == sid
    stopped = client.post("/v1/hooks/subagent-stop", json={"agent_id": sid, "exit_code": 1},
                          headers=ADA).json()
    assert stopped["finalized"] is True and stopped["outcome"] == "failed"
    body = problem(client.post("/v1/hooks/pre-delegate", json={}, headers=ADA), 422)
    assert body["code"] == "invalid_input"
    problem(client.post("/v1/hooks/subagent-stop", json=[1], headers=ADA), 422)


def test_stats(client: TestClient) -> None:
    new_session(client, ADA, agent_name="a")
    sid = new_session(client, ADA, agent_name="b")["id"]
    client.post(f"/v1/sessions/{sid}/finalize", json={"outcome": "completed"}, headers=ADA)
    stats = client.get("/v1/stats", headers=ADA).json()
    assert stats["total"] == 2 and stats["finalized"] == 1
    assert client.get("/v1/stats", params={"agent": "a"}, headers=ADA).json()["total"] == 1


def test_health_and_store_info(local: TestClient, mem: SessionStore) -> None:
    assert local.get("/healthz").json() == {"status": "ok"}
    assert local.get("/readyz").json() == {"status": "ready"}
    info = local.get("/v1/store").json()
    assert info["max_event_bytes"] == 4096 and "completed" in info["lifecycle"]["final_phases"]
    mem.close()
    response = local.get("/readyz")
    problem(response, 503)
    assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_500_without_the_traceback(
    mem: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(mem, name)

        def get_session(self, session_id: str) -> Any:
            raise RuntimeError("secret internals")

    app = create_app(Broken())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        with caplog.at_level(logging.ERROR, "agentledger.server"):
            body = problem(test_client.get("/v1/sessions/abc"), 500)
    assert "secret" not in json.dumps(body)
    assert "secret internals" in caplog.text  # logged, with its traceback, server-side


# -- auth and isolation ---------------------------------------------------------------------


def test_tokens_are_required(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADA_TOKEN}):
        response = client.get("/v1/sessions", headers=headers)
        problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200


def test_the_request_log_names_the_user_never_the_token(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "agentledger.server"):
        client.get("/v1/sessions", headers=ADA)
    lines = [r.getMessage() for r in caplog.records if "/v1/sessions" in r.getMessage()]
    assert len(lines) == 1 and "GET /v1/sessions 200" in lines[0] and "user=ada" in lines[0]
    assert ADA_TOKEN not in caplog.text


def test_a_user_creates_only_for_themselves_in_their_apps(client: TestClient) -> None:
    body = problem(client.post("/v1/sessions", json={"user_id": "ada"}, headers=BOB), 403)
    assert body["error"] == "AccessDeniedError"
    problem(client.post("/v1/sessions", json={"app_name": "secret"}, headers=BOB), 403)
    assert new_session(client, BOB, app_name="other")["user_id"] == "bob"


def session_endpoints(sid: str) -> list[tuple[str, str, Any]]:
    """Every endpoint on one session: (method, path, JSON body)."""
    one = [{"type": "user_message", "data": {"text": "x"}}]
    return [
        ("GET", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}", None),
        ("PATCH", f"/v1/sessions/{sid}", {"metadata": {"k": 1}}),
        ("POST", f"/v1/sessions/{sid}/events", {"events": one}),
        ("GET", f"/v1/sessions/{sid}/events", None),
        ("GET", f"/v1/sessions/{sid}/events/stream", None),
        ("POST", f"/v1/sessions/{sid}/suspend", None),
        ("POST", f"/v1/sessions/{sid}/resume", None),
        ("POST", f"/v1/sessions/{sid}/turns", {"message": "hi"}),
        ("GET", f"/v1/sessions/{sid}/resume-decision", None),
        ("GET", f"/v1/sessions/{sid}/verify", None),
        ("POST", f"/v1/sessions/{sid}/erase", {"seqs": [1], "reason": "x"}),
        ("POST", f"/v1/sessions/{sid}/truncate", {"before": 2}),
        ("POST", f"/v1/sessions/{sid}/fork", {"new_session_id": "stolen"}),
        ("POST", f"/v1/sessions/{sid}/rewind", {"to_seq": 1, "then": one}),
        ("GET", f"/v1/sessions/{sid}/events?effective=true", None),
        ("POST", f"/v1/sessions/{sid}/finalize", {"outcome": "completed"}),
        ("POST", f"/v1/sessions/{sid}/terminate", None),
        ("DELETE", f"/v1/sessions/{sid}", None),
        ("DELETE", f"/v1/sessions/{sid}?purge=true", None),
    ]


def test_another_users_session_is_not_found_on_every_endpoint(
    client: TestClient, mem: SessionStore
) -> None:
    sid = new_session(client, ADA, state={"user:secret": "ada's"})["id"]
    before = (mem.get_session(sid), mem.read_events(sid))
    for method, path, body in session_endpoints(sid):
        response = client.request(method, path, json=body, headers=BOB)
        if path.endswith("resume-decision"):
            decision = response.json()
            assert decision["reason"] == "not_found" and decision["version"] is None
        else:
            assert problem(response, 404)["error"] == "SessionNotFoundError", path
    assert (mem.get_session(sid), mem.read_events(sid)) == before
    hook = client.post("/v1/hooks/pre-delegate", json={"agent_name": "x", "agent_id": sid},
                       headers=BOB).json()
    assert hook["reason"] == "not_found" and hook["agent_id"] != sid
    stop = client.post("/v1/hooks/subagent-stop", json={"agent_id": sid}, headers=BOB).json()
    assert stop["finalized"] is False and stop["reason"] == "not_found"
    assert (mem.get_session(sid), mem.read_events(sid)) == before


def test_listing_current_and_stats_show_only_your_own(client: TestClient) -> None:
    ada = new_session(client, ADA, state={"user:secret": "ada's"})["id"]
    bob = new_session(client, BOB, agent_name="b")["id"]
    for params in ({}, {"user": "ada"}, {"app": "agents"}):
        listed = client.get("/v1/sessions", params=params, headers=BOB).json()["sessions"]
        assert [s["id"] for s in listed] == ([bob] if "user" not in params else [])
    assert client.get("/v1/sessions/current", headers=BOB).json()["id"] == bob
    problem(client.get("/v1/sessions/current", params={"user": "ada"}, headers=BOB), 404)
    by_admin = client.get("/v1/sessions/current", params={"user": "ada"}, headers=ROOT)
    assert by_admin.json()["id"] == ada
    assert client.get("/v1/stats", headers=BOB).json()["total"] == 1
    bob_state = client.get(f"/v1/sessions/{bob}", headers=BOB).json()["state"]
    assert "user:secret" not in bob_state
    all_ids = {s["id"] for s in client.get("/v1/sessions", headers=ROOT).json()["sessions"]}
    assert all_ids == {ada, bob}  # an admin sees every session
    assert client.get(f"/v1/sessions/{ada}", headers=ROOT).status_code == 200


def test_another_users_stream_is_not_found(client: TestClient) -> None:
    sid = new_session(client, ADA)["id"]
    problem(client.get(f"/v1/sessions/{sid}/events/stream", headers=BOB), 404)


def test_tokens_are_reloaded_when_the_file_changes(tokens_file: Path) -> None:
    table = TokenTable(tokens_file)
    assert table.lookup(ADA_TOKEN) is not None
    new_token = "new-" + "n" * 28
    tokens_file.write_text(tokens_json({"token": new_token, "user": "ada"}))
    table.reload()
    assert table.lookup(ADA_TOKEN) is None
    found = table.lookup(new_token)
    assert found is not None and found.user_id == "ada" and not found.admin
    tokens_file.write_text("{broken")
    table.reload()  # a broken file keeps the tokens in force
    assert table.lookup(new_token) is not None


@pytest.mark.parametrize(
    "content",
    ["[]", '{"tokens": [{"token": "short", "user": "a"}]}',
     '{"tokens": [{"token": "long-enough-token-123", "user": "a", "role": "god"}]}',
     '{"tokens": [{"token": "long-enough-token-123", "user": "a", "extra": 1}]}'],
)
def test_bad_tokens_files_are_refused(tmp_path: Path, content: str) -> None:
    from agentledger.errors import ConfigurationError

    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        TokenTable(path)


def test_openapi_documents_every_route_and_its_problems(local: TestClient) -> None:
    spec = local.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/sessions", "/v1/sessions/current", "/v1/sessions/{session_id}",
                 "/v1/sessions/{session_id}/events", "/v1/sessions/{session_id}/events/stream",
                 "/v1/sessions/{session_id}/turns", "/v1/hooks/pre-delegate", "/v1/stats"):
        assert path in paths
    assert {"404", "409", "413"} <= set(paths["/v1/sessions/{session_id}/events"]["post"]["responses"])


class _FailingModel:
    name = "failing"

    def generate(self, messages: Any, tools: Any) -> Any:
        raise RuntimeError("the model is down")


def test_a_failed_turn_is_a_502_and_its_error_event_is_stored(mem: SessionStore) -> None:
    from agentledger.runner import Agent

    app = create_app(mem, agent=Agent(name="broken", model=_FailingModel()))
    with TestClient(app) as test_client:
        sid = new_session(test_client, {})["id"]
        body = problem(test_client.post(f"/v1/sessions/{sid}/turns", json={"message": "hi"}), 502)
        assert body["error"] == "ModelError" and "the model is down" in body["detail"]
        streamed = test_client.post(f"/v1/sessions/{sid}/turns", json={"message": "again"},
                                    headers={"Accept": "text/event-stream"})
        got = sse_events(streamed.text)
        assert [e.get("event") for e in got][-2:] == ["error", "problem"]
        assert json.loads(got[-1]["data"])["error"] == "ModelError"
    assert [e.type for e in mem.read_events(sid, types=["error"])] == ["error", "error"]


def test_scoped_state_is_yours_only(client: TestClient, mem: SessionStore) -> None:
    mem.update_scoped_state("agents", "ada", {"user:secret": "ada's"})
    path = "/v1/scoped-state"
    got = client.get(path, params={"app": "agents", "user": "ada"}, headers=ADA).json()
    assert got == {"state": {"user:secret": "ada's"}}
    put = client.put(path, json={"app_name": "agents", "user_id": "bob", "delta": {"user:n": 1}},
                     headers=BOB)
    assert put.json() == {"state": {"user:n": 1}}
    # bob may neither read nor change ada's user: state, nor use an app not his
    problem(client.get(path, params={"app": "agents", "user": "ada"}, headers=BOB), 403)
    for body in ({"app_name": "agents", "user_id": "ada", "delta": {"user:secret": "bob's"}},
                 {"app_name": "elsewhere", "user_id": "bob", "delta": {"app:x": 1}}):
        assert problem(client.put(path, json=body, headers=BOB), 403)["error"] == (
            "AccessDeniedError")
    assert mem.get_scoped_state("agents", "ada") == {"user:secret": "ada's"}
    assert mem.get_scoped_state("elsewhere") == {}
    by_admin = client.get(path, params={"app": "agents", "user": "ada"}, headers=ROOT)
    assert by_admin.json()["state"] == {"user:secret": "ada's"}
    bad = client.put(path, json={"app_name": "agents", "user_id": "bob", "delta": {"x": 1}},
                     headers=BOB)
    assert problem(bad, 422)["error"] == "InvalidEventError"


def test_list_order_and_event_time_window_over_http(client: TestClient) -> None:
    first = new_session(client, ADA)["id"]
    second = new_session(client, ADA)["id"]
    listed = client.get("/v1/sessions", params={"order": "created_asc", "limit": 1}, headers=ADA)
    page = listed.json()
    assert [s["id"] for s in page["sessions"]] == [first]
    more = client.get("/v1/sessions", headers=ADA,
                      params={"order": "created_asc", "cursor": page["next_cursor"]}).json()
    assert [s["id"] for s in more["sessions"]] == [second]
    bad = client.get("/v1/sessions", params={"order": "newest"}, headers=ADA)
    assert problem(bad, 422)["error"] == "ConfigurationError"
    foreign = client.get("/v1/sessions", headers=ADA,
                         params={"order": "updated_asc", "cursor": page["next_cursor"]})
    assert problem(foreign, 422)["error"] == "ConfigurationError"
    created = client.get(f"/v1/sessions/{first}/events", headers=ADA).json()["events"][0]
    path = f"/v1/sessions/{first}/events"
    window = {"after_timestamp": created["timestamp"]}
    assert client.get(path, params=window, headers=ADA).json()["events"] == []
    window = {"before_timestamp": "2999-01-01T00:00:00+00:00"}
    assert len(client.get(path, params=window, headers=ADA).json()["events"]) == 1
    naive = client.get(path, params={"after_timestamp": "2026-01-01T00:00:00"}, headers=ADA)
    assert problem(naive, 422)["error"] == "ConfigurationError"


def test_json_null_is_a_value_and_removal_is_explicit_over_http(
    client: TestClient, mem: SessionStore
) -> None:
    sid = new_session(client, ADA, state={"flag": True, "old": 1, "user:pref": "dark"})["id"]
    events = [{"type": "state_updated", "state_delta": {"flag": None, "user:pref": None},
               "state_remove": ["old", "missing"]}]
    response = client.post(f"/v1/sessions/{sid}/events", json={"events": events}, headers=ADA)
    assert response.status_code == 201, response.text
    (stored,) = response.json()["events"]
    assert stored["state_delta"] == {"flag": None, "user:pref": None}
    assert stored["state_remove"] == ["old", "missing"] and stored["format"] == 2
    state = client.get(f"/v1/sessions/{sid}", headers=ADA).json()["state"]
    assert state == {"flag": None, "user:pref": None}
    both = [{"type": "state_updated", "state_delta": {"k": 1}, "state_remove": ["k"]}]
    bad = client.post(f"/v1/sessions/{sid}/events", json={"events": both}, headers=ADA)
    assert problem(bad, 422)
    path = "/v1/scoped-state"
    put = client.put(path, json={"app_name": "agents", "user_id": "ada",
                                 "delta": {"user:n": None}, "remove": ["user:pref"]},
                     headers=ADA)
    assert put.status_code == 200, put.text
    assert put.json() == {"state": {"user:n": None}}
    assert mem.get_scoped_state("agents", "ada") == {"user:n": None}
    wrong = client.put(path, json={"app_name": "agents", "user_id": "ada", "delta": {},
                                   "remove": ["plain"]}, headers=ADA)
    assert problem(wrong, 422)["error"] == "InvalidEventError"


def test_erase_truncate_and_compact_over_http(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA)["id"]
    appended = client.post(
        f"/v1/sessions/{sid}/events",
        json={"events": [{"type": "user_message", "data": {"text": "secret"}}] * 3},
        headers=ADA,
    )
    assert appended.status_code == 201, appended.text
    erased = client.post(
        f"/v1/sessions/{sid}/erase", json={"seqs": [2], "reason": "privacy"}, headers=ADA
    )
    assert erased.status_code == 200, erased.text
    assert (erased.json()["type"], erased.json()["seq"]) == ("events_erased", 5)
    assert mem.read_events(sid)[1].erased
    stale = client.post(
        f"/v1/sessions/{sid}/truncate", json={"before": 3}, headers={**ADA, "If-Match": '"4"'}
    )
    assert problem(stale, 409)["error"] == "ConcurrencyError"
    bad = client.post(f"/v1/sessions/{sid}/erase", json={"seqs": [9], "reason": "x"}, headers=ADA)
    assert problem(bad, bad.status_code)["error"] == "ConfigurationError"
    dropped = client.post(f"/v1/sessions/{sid}/truncate", json={"before": 3}, headers=ADA)
    assert dropped.json() == {"dropped": 2}
    assert [e.seq for e in mem.read_events(sid)] == [3, 4, 5]
    assert problem(client.post("/v1/store/compact", headers=ADA), 403)["error"] == (
        "AccessDeniedError"
    )
    assert client.post("/v1/store/compact", headers=ROOT).status_code == 204
    assert mem.verify_session(sid).ok


def test_fork_and_rewind_over_http(client: TestClient, mem: SessionStore) -> None:
    sid = new_session(client, ADA, state={"n": 0})["id"]
    append(client, sid, ADA, "one", "two")
    response = client.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 2, "new_session_id": "f"},
                           headers=ADA)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/v1/sessions/f"
    fork = response.json()
    assert fork["forked_from"] == {"session_id": sid, "seq": 2} and fork["user_id"] == "ada"
    listed = client.get("/v1/sessions", headers=ADA).json()["sessions"]
    assert {s["id"]: s["forked_from"] for s in listed}["f"] == fork["forked_from"]
    assert problem(client.post(f"/v1/sessions/{sid}/fork", json={"new_session_id": "f"},
                               headers=ADA), 409)["error"] == "SessionExistsError"
    assert problem(client.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 9},
                               headers=ADA), 422)["error"] == "InvalidEventError"
    stale = client.post(f"/v1/sessions/{sid}/rewind", json={"to_seq": 1},
                        headers={**ADA, "If-Match": '"2"'})
    assert problem(stale, 409)["error"] == "ConcurrencyError"
    then = [{"type": "user_message", "data": {"text": "again"}}]
    response = client.post(f"/v1/sessions/{sid}/rewind", json={"to_seq": 2, "then": then},
                           headers={**ADA, "If-Match": '"3"'})
    assert response.status_code == 201, response.text
    body = response.json()
    assert [e["type"] for e in body["events"]] == ["rewound", "user_message"]
    assert body["version"] == 5 and response.headers["ETag"] == '"5"'
    kept = client.get(f"/v1/sessions/{sid}/events", params={"effective": "true"},
                      headers=ADA).json()["events"]
    assert [e["seq"] for e in kept] == [1, 2, 5]
    assert mem.verify_session(sid).ok and mem.verify_session("f").ok
