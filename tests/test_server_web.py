"""The web view's files as the server sends them (FastAPI's TestClient, no browser): the
same page at `/` and `/sessions/{id}`, its script and style sheet from the package, a
content security policy that keeps the page to this server, nothing of it in the OpenAPI
spec, and no data without a token (the page itself holds none)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the HTTP service needs the server extra")

from fastapi.testclient import TestClient  # noqa: E402

from agentledger import open_store  # noqa: E402
from agentledger.server import create_app  # noqa: E402
from agentledger.server.auth import TokenTable  # noqa: E402
from agentledger.server.web import STATIC_DIR  # noqa: E402


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"token": "a" * 20, "user": "ada"}]}))
    store = open_store("memory://")
    store.create_session(app_name="a", user_id="ada", title="private title")
    with TestClient(create_app(store, tokens=TokenTable(tokens))) as test_client:
        yield test_client
    store.close()


def test_the_page_is_served_at_the_root_and_at_every_session_path(client: TestClient) -> None:
    page = (STATIC_DIR / "index.html").read_text()
    for path in ("/", "/sessions/abc", "/sessions/a.b:c@d-1", "/sessions/with%2Fslash"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.text == page
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script src="/web/app.js"' in page and "http" not in page.split("<body>")[0]


def test_the_script_and_style_sheet_come_from_the_package(client: TestClient) -> None:
    script = client.get("/web/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text == (STATIC_DIR / "app.js").read_text()
    sheet = client.get("/web/app.css")
    assert sheet.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in sheet.text
    missing = client.get("/web/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get("/web/..%2Fapp.py").status_code == 404


def test_nothing_is_fetched_from_another_site() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        for scheme in ("http://", "https://", "//cdn"):
            assert scheme not in text, f"{path.name} names {scheme}"


def test_the_page_holds_no_data_and_the_api_still_needs_a_token(client: TestClient) -> None:
    assert "private title" not in client.get("/").text
    assert client.get("/v1/sessions").status_code == 401
    listed = client.get("/v1/sessions", headers={"Authorization": "Bearer " + "a" * 20})
    assert [s["title"] for s in listed.json()["sessions"]] == ["private title"]


def test_the_web_view_is_not_part_of_the_api_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith(("/sessions", "/web"))]
