"""The web view: static pages served beside the `/v1` API by `agentledger serve`.

`GET /` (the sessions page) and `GET /sessions/{id}` (one session's live timeline) answer
the same HTML page; its script (`/web/app.js`) and style sheet (`/web/app.css`) are files
shipped in the package (`agentledger/server/static/`), with no build step and nothing
loaded from elsewhere at run time. The page talks to the `/v1` API only, with the token
the user types once (kept in the browser's session storage, never in a URL), so it sees
exactly what that token may see through the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["STATIC_DIR", "add_web_view"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The folder of the web view's files (index.html, app.js, app.css)."""

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# The page runs only its own script and style sheet, talks only to this server, and may
# not be framed by another site.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def add_web_view(app: FastAPI) -> None:
    """Add the web view's routes to `app` (left out of the OpenAPI spec).

    Args:
        app: The service app built by `create_app`.

    Returns:
        Nothing; `GET /`, `GET /sessions/{id}` and `GET /web/{file}` are added.
    """
    page = STATIC_DIR / "index.html"
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in _TYPES}

    @app.get("/", include_in_schema=False)
    async def sessions_page() -> FileResponse:
        return FileResponse(page, media_type="text/html", headers=_HEADERS)

    @app.get("/sessions/{session_id:path}", include_in_schema=False)
    async def session_page(session_id: str) -> FileResponse:
        return FileResponse(page, media_type="text/html", headers=_HEADERS)

    @app.get("/web/{name}", include_in_schema=False)
    async def web_file(name: str) -> FileResponse:
        found = files.get(name)
        if found is None:
            raise StarletteHTTPException(404, f"no web file {name!r}")
        return FileResponse(found, media_type=_TYPES[found.suffix], headers=_HEADERS)
