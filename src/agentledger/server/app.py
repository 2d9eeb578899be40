"""The HTTP service: `create_app(store)` builds a FastAPI app serving a store under `/v1`.

Resources (JSON; errors are RFC 9457 problem documents, see `agentledger.server.problems`):

- `GET /v1/sessions`, `POST /v1/sessions`, `GET /v1/sessions/current`,
  `GET|POST|PATCH|DELETE /v1/sessions/{id}`;
- `POST|GET /v1/sessions/{id}/events`, `GET /v1/sessions/{id}/events/stream` (SSE);
- `POST /v1/sessions/{id}/erase`, `POST /v1/sessions/{id}/truncate`,
  `POST /v1/store/compact`;
- `POST /v1/sessions/{id}/suspend|resume|terminate|finalize`,
  `GET /v1/sessions/{id}/resume-decision`, `POST /v1/sessions/{id}/turns`;
- `POST /v1/hooks/pre-delegate`, `POST /v1/hooks/subagent-stop`, `GET /v1/stats`,
  `GET /v1/store`; `GET /healthz`, `GET /readyz`;
- the web view (`agentledger.server.web`): `GET /`, `GET /sessions/{id}`, `GET /web/{file}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentledger.core.events import Event, EventType, NewEvent
from agentledger.core.lifecycle import ResumeDecision
from agentledger.core.session import Session, Status
from agentledger.errors import (
    AgentLedgerError,
    ConfigurationError,
    InvalidEventError,
    SessionNotFoundError,
)
from agentledger.manager import DEFAULT_APP, SessionManager
from agentledger.runner import Agent, Runner, final_output
from agentledger.server.auth import LOCAL_PRINCIPAL, Principal, TokenTable
from agentledger.server.problems import (
    PROBLEM_JSON,
    RETRY_AFTER_SECONDS,
    problem_for,
    problem_type,
)
from agentledger.server.scoped import scoped_store
from agentledger.server.web import add_web_view
from agentledger.stores.base import FeedEvent, SessionPage, SessionStore, VerifyReport
from agentledger.stores.shared import MAX_SEQ

__all__ = ["DEFAULT_MAX_BODY_BYTES", "EVENTS_PAGE_MAX", "create_app"]

log = logging.getLogger("agentledger.server")

DEFAULT_MAX_BODY_BYTES = 16 * 1_048_576
"""The default limit on a request body, in bytes (16 MiB); larger bodies get a 413."""

EVENTS_PAGE_MAX = 1000
"""The most events one `GET …/events` answer holds; follow `next_after` for more."""


# -- request and response bodies ------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSessionBody(_Strict):
    """`POST /v1/sessions`. `user_id` defaults to the caller; `app_name` to the caller's only
    app, else `agents`."""

    app_name: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    title: str | None = None
    purpose: str | None = None
    state: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    phase: str | None = None
    session_id: str | None = None
    created_at: str | None = Field(
        default=None,
        description="The creation time, ISO 8601 with a timezone; default: the store's clock.",
        json_schema_extra={"format": "date-time"},
    )


class AppendBody(_Strict):
    """`POST /v1/sessions/{id}/events`: events appended atomically, with optional
    optimistic-concurrency checks (`expected_version`, also as `If-Match`;
    `expected_state`)."""

    events: list[NewEvent]
    expected_version: int | None = None
    expected_state: dict[str, Any] | None = None


class ForkBody(_Strict):
    """`POST /v1/sessions/{id}/fork`: copy the session's history up to `at_seq` (default:
    all of it) into a new session, `new_session_id` or a new id."""

    at_seq: int | None = None
    new_session_id: str | None = None
    expected_version: int | None = None


class RewindBody(_Strict):
    """`POST /v1/sessions/{id}/rewind`: go back to `to_seq` (or to just before
    `before_invocation`), then append `then`, atomically; `expected_version` also as
    `If-Match`."""

    to_seq: int | None = None
    before_invocation: str | None = None
    then: list[NewEvent] = Field(default_factory=list)
    expected_version: int | None = None
    expected_state: dict[str, Any] | None = None


class ScopedStateBody(_Strict):
    """`PUT /v1/scoped-state`: `app:`/`user:` keys set (`null` is stored as a value) and
    keys removed (`remove`, a list of keys) without a session, with an optional
    `expected_state` check; `user_id` `null` allows `app:` keys only."""

    app_name: str
    user_id: str | None = None
    delta: dict[str, Any]
    remove: list[str] = []
    expected_state: dict[str, Any] | None = None


class FeedPage(BaseModel):
    """A page of the store-wide feed: `events` (each `position` and `event`) by increasing
    position, and `feed_position`, the last position of the feed (for a reader's lag)."""

    events: list[FeedEvent]
    feed_position: int


class ScopedStateResult(BaseModel):
    """An app's `app:` or a user's `user:` state, keys prefixed as sessions see them."""

    state: dict[str, Any]


class AppendResult(BaseModel):
    """The stored events (with `seq`) and the session's version after them (with no
    events, the session's current version). A retry answered from stored events (every
    event's key stored already, same content) returns those events and the version right
    after the last of them, never a later one, so an `If-Match` with it never skips an
    event the caller has not seen."""

    events: list[Event]
    version: int


class EventPage(BaseModel):
    """A page of events; pass `next_after` as `after` for the next (`null`: no more)."""

    events: list[Event]
    next_after: int | None = None


class EraseBody(_Strict):
    """`POST /v1/sessions/{id}/erase`: erase the payload of these events for good, recorded
    by an `events_erased` event (`SessionStore.erase_events`)."""

    seqs: list[int]
    reason: str
    expected_version: int | None = None


class TruncateBody(_Strict):
    """`POST /v1/sessions/{id}/truncate`: drop the events before seq `before` for good
    (`SessionStore.truncate_before`)."""

    before: int
    expected_version: int | None = None


class TruncateResult(BaseModel):
    """How many events a truncation dropped."""

    dropped: int


class UpdateBody(_Strict):
    """`PATCH /v1/sessions/{id}`: as `SessionManager.update_state`."""

    phase: str | None = None
    metadata: dict[str, Any] | None = None
    error: str | None = None
    resume_ready: bool | None = None
    summary: str | None = None


class ReasonBody(_Strict):
    """An optional reason recorded with a status change."""

    reason: str | None = None


class ResumeBody(_Strict):
    """Resume, optionally only at the version a resume decision was made on."""

    reason: str | None = None
    expected_version: int | None = None


class FinalizeBody(_Strict):
    """End a session with an outcome (a final phase) and a summary."""

    outcome: str
    summary: str | None = None


class TurnBody(_Strict):
    """One agent turn: what the user says."""

    message: str = Field(min_length=1)


class TurnResult(BaseModel):
    """The answer of a turn and every event it stored."""

    session_id: str
    answer: str | None
    events: list[Event]


class Problem(BaseModel):
    """An RFC 9457 problem document; `error` names the agentledger error class, and the
    error's attributes (`session_id`, `current_version`, `keys`, `size`, `limit`, …) follow."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    error: str | None = None


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Bad request",
        401: "Missing or unknown bearer token (urn:agentledger:problem:unauthorized)",
        403: "The token does not allow this user or app (urn:agentledger:problem:access-denied)",
        404: "No such session, or not yours (urn:agentledger:problem:session-not-found)",
        409: "Version or state conflict, a session id that is taken, or a lifecycle rule "
        "broken (concurrency, state-conflict, session-exists, invalid-transition)",
        413: "An event or the request body is too large (event-too-large, body-too-large)",
        415: "The body is not JSON (unsupported-media-type)",
        422: "Invalid input; `errors` lists the fields (invalid-event, invalid-session-id, "
        "configuration, validation)",
        500: "An unexpected server error (internal); the traceback is only in the server log",
        502: "The agent failed (runner, model, tool)",
        503: "The store is unavailable; retry after `Retry-After` seconds (store-unavailable)",
    }
    return {
        code: {"model": Problem, "description": described[code], "content": {PROBLEM_JSON: {}}}
        for code in codes
    }


_COMMON = (401, 422, 500, 503)
_ON_SESSION = (*_COMMON, 404)


# -- the app ---------------------------------------------------------------------------------


class _Notifier:
    """Wakes stream readers of this process when an append through it commits; readers
    also poll the store, so appends by other processes are seen too."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def subscribe(self, session_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(session_id, set()).add(event)
        return event

    def unsubscribe(self, session_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[session_id]

    def notify(self, session_id: str) -> None:
        for event in self._waiters.get(session_id, ()):
            event.set()


class _SharedReads:
    """Coalesces the stream readers of one session at the same position into one store
    read: 100 subscribers woken by one append cost one read, not 100. (A session's owner
    never changes, so a read checked once for the caller may be shared.)"""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._inflight: dict[tuple[str, int], asyncio.Future[list[Event]]] = {}

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        key = (session_id, after)
        found = self._inflight.get(key)
        if found is None:
            found = asyncio.ensure_future(
                run_in_threadpool(self._store.read_events, session_id, after=after, limit=limit)
            )
            self._inflight[key] = found
            found.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(found)


def _problem_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(
        body, status_code=int(body["status"]), media_type=PROBLEM_JSON, headers=headers
    )


def _simple_problem(status: int, name: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": problem_type(name),
        "title": name,
        "status": status,
        "detail": detail,
        **extra,
    }


def _error_response(exc: AgentLedgerError) -> Response:
    body = problem_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if body["status"] == 503 else None
    if body["status"] >= 500:
        log.error("request failed: %s: %s", type(exc).__name__, exc)
    return _problem_response(body, headers)


class _SessionIdPath:
    """Keeps a percent-encoded session id in one path segment, as `SessionId` reads it.

    ASGI servers decode the path before routing, so `/v1/sessions/user%2F42/events` would
    route as `/v1/sessions/user/42/events`, and `/v1/sessions/%63urrent` (the session whose
    id is `current`) as the caller's current session. When the raw path holds an escape,
    the path is rebuilt from it with `%` and `/` inside each segment kept escaped
    (`user%2F42`), and an escaped segment that decodes to `current` kept as `%63urrent`;
    `SessionId` decodes it back. Any other path is left as it is (it holds no `%`, so
    decoding it again changes nothing).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%" in raw:
            kept = []
            for segment in raw.decode("latin-1").split("/"):
                decoded = unquote(segment)
                if decoded == "current" and segment != decoded:
                    kept.append("%63urrent")
                else:
                    kept.append(decoded.replace("%", "%25").replace("/", "%2F"))
            scope = {**scope, "path": "/".join(kept)}
        await self.app(scope, receive, send)


class _BodyLimit:
    """Refuses request bodies over `limit` bytes with a 413 problem, by `Content-Length`
    or while reading a body sent without one."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _simple_problem(
            413, "BodyTooLarge", f"the request body is over {self.limit} bytes", limit=self.limit
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await _problem_response(too_large, {"Connection": "close"})(
                        scope, receive, send
                    )
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _problem_response(too_large, {"Connection": "close"})(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class _RequestLog:
    """One log line per request: method, path, status, milliseconds, user (never a token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            user = scope.get("state", {}).get("user", "-")
            log.info(
                "%s %s %d %.1fms user=%s",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - start) * 1000,
                user,
            )


# -- who is calling, and what they may see ---------------------------------------------------


async def _principal(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    tokens: TokenTable | None = request.app.state.tokens
    if tokens is None:
        found: Principal | None = LOCAL_PRINCIPAL
    else:
        scheme, _, credential = (authorization or "").partition(" ")
        found = tokens.lookup(credential.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise StarletteHTTPException(
                401,
                "a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
    assert found is not None
    request.scope.setdefault("state", {})["user"] = found.user_id
    return found


Caller = Annotated[Principal, Depends(_principal)]


async def _view(request: Request, who: Caller) -> SessionStore:
    return scoped_store(request.app.state.store, who)


View = Annotated[SessionStore, Depends(_view)]


async def _manager(view: View, who: Caller) -> SessionManager:
    apps = who.apps
    default_app = next(iter(apps)) if apps is not None and len(apps) == 1 else DEFAULT_APP
    return SessionManager(view, app_name=default_app, user_id=who.user_id)


Manager = Annotated[SessionManager, Depends(_manager)]
SessionId = Annotated[
    str,
    Path(
        description="A session id: any 1-512 characters, percent-encoded as one path "
        "segment (`/` as `%2F`, space as `%20`, `.` may be `%2E`)."
    ),
    AfterValidator(unquote),  # see `_SessionIdPath`
]
_Moment = Annotated[
    str | None,
    Query(
        description="An ISO 8601 time with a timezone (2026-01-08T19:00:00Z).",
        json_schema_extra={"format": "date-time"},
    ),
]


def _moment(name: str, text: str | None) -> datetime | None:
    """Parse an ISO 8601 time with a timezone (numbers are not times).

    Raises:
        ConfigurationError: Not such a time.
    """
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise ConfigurationError(
            f"{name} must be an ISO 8601 time with a timezone (2026-01-08T19:00:00Z), "
            f"not {text!r}"
        )
    return parsed


def create_app(
    store: SessionStore,
    *,
    tokens: TokenTable | None = None,
    agent: Agent | None = None,
    poll_interval: float = 0.2,
    heartbeat_interval: float = 15.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    close_store: bool = False,
) -> FastAPI:
    """Build the HTTP service over a store (an ASGI app; mount it in your own stack or run
    it with uvicorn, as `agentledger serve` does).

    Args:
        store: Any `SessionStore`; shared by every request.
        tokens: Bearer tokens and who they belong to; `None` serves one local user who sees
            everything (bind such a server to loopback only).
        agent: The agent `POST …/turns` runs; `None` is the reminders demo agent.
        poll_interval: Seconds between store polls of an event stream (appends made through
            this app wake its streams at once; other writers are seen within this time).
        heartbeat_interval: Seconds of silence after which a stream sends a comment line.
        max_body_bytes: Larger request bodies are refused with 413.
        close_store: Close `store` when the app shuts down.

    Returns:
        The FastAPI app; its OpenAPI spec is at `/openapi.json`, the docs at `/docs`.
    """
    if agent is None:
        from agentledger.cli.agent import load_agent

        agent = load_agent(None)
    run_agent: Agent = agent
    notifier = _Notifier()
    shared_reads = _SharedReads(store)
    stopping = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        stopping.set()
        if close_store:
            store.close()

    app = FastAPI(
        title="agentledger",
        summary="Durable sessions and an append-only event ledger for AI agents, over HTTP.",
        version="1",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.draining = False  # set by the server on SIGTERM: open streams end
    app.state.tokens = tokens
    app.state.notifier = notifier

    # -- errors --------------------------------------------------------------------------

    @app.exception_handler(AgentLedgerError)
    async def _agentledger_error(_: Request, exc: AgentLedgerError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid input"}
        where = ".".join(str(p) for p in first["loc"])
        return _problem_response(
            _simple_problem(422, "Validation", f"{where}: {first['msg']}", errors=errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, _BodyTooLarge):  # a body sent without Content-Length
            return _problem_response(
                _simple_problem(413, "BodyTooLarge", f"the request body is over "
                                f"{max_body_bytes} bytes", limit=max_body_bytes),
                {"Connection": "close"},
            )
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8)
            return _problem_response(
                _simple_problem(422, "Validation", "the body is not valid JSON in UTF-8",
                                errors=[{"loc": ["body"], "msg": "not valid JSON in UTF-8",
                                         "type": "json_invalid"}])
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not just one route's
            matching = [
                r for r in app.routes
                if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
            ]
            static = [r for r in matching if "{" not in r.path]  # /current over /{id}
            allowed = {m for r in static or matching for m in r.methods or ()}
            headers["Allow"] = ", ".join(sorted(allowed))
        names = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}
        name = names.get(exc.status_code, f"Http{exc.status_code}")
        return _problem_response(
            _simple_problem(exc.status_code, name, str(exc.detail)), headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return _problem_response(
            _simple_problem(500, "Internal", "an unexpected error; see the server log")
        )

    # -- health --------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The store answers.",
        responses={503: _problems(503)[503]},
    )
    async def readyz() -> dict[str, str]:
        await run_in_threadpool(store.list_sessions, limit=1)
        return {"status": "ready"}

    # -- the store ----------------------------------------------------------------------

    @app.get("/v1/store", tags=["store"], summary="What the store is and promises.",
             responses=_problems(*_COMMON))
    async def store_info(_: Caller) -> dict[str, Any]:
        lifecycle = store.lifecycle
        return {
            "capabilities": dataclasses.asdict(store.capabilities),
            "max_event_bytes": store.max_event_bytes,
            "plugins": list(getattr(getattr(store, "plugins", None), "names", ())),
            "lifecycle": {
                "phases": list(lifecycle.phases),
                "final_phases": sorted(lifecycle.final_phases),
                "initial_phase": lifecycle.initial_phase,
                "transitions": None
                if lifecycle.transitions is None
                else {k: sorted(v) for k, v in lifecycle.transitions.items()},
            },
        }

    # -- sessions ------------------------------------------------------------------------

    @app.get("/v1/sessions", tags=["sessions"], summary="List sessions, newest activity first.",
             responses=_problems(*_COMMON))
    async def list_sessions(
        manager: Manager,
        app_name: Annotated[str | None, Query(alias="app")] = None,
        user_id: Annotated[str | None, Query(alias="user")] = None,
        agent_name: Annotated[str | None, Query(alias="agent")] = None,
        status: str | None = None,
        phase: str | None = None,
        active_only: bool = False,
        updated_after: _Moment = None,
        updated_before: _Moment = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
        order: Annotated[
            str,
            Query(description="updated_desc (default), updated_asc, created_desc or created_asc."),
        ] = "updated_desc",
    ) -> SessionPage:
        return await run_in_threadpool(
            manager.list_sessions,
            order=order,
            active_only=active_only,
            agent_name=agent_name,
            app_name=app_name,
            user_id=user_id,
            status=status,
            phase=phase,
            updated_after=_moment("updated_after", updated_after),
            updated_before=_moment("updated_before", updated_before),
            limit=limit,
            cursor=cursor,
        )

    @app.post("/v1/sessions", tags=["sessions"], status_code=201, summary="Create a session.",
              responses=_problems(*_COMMON, 403, 409, 413))
    async def create_session(
        manager: Manager, view: View, who: Caller, response: Response,
        body: CreateSessionBody | None = None,
    ) -> Session:
        body = body or CreateSessionBody()
        session = await run_in_threadpool(
            view.create_session,
            app_name=body.app_name if body.app_name is not None else manager.app_name,
            user_id=body.user_id if body.user_id is not None else who.user_id,
            agent_name=body.agent_name,
            title=body.title,
            purpose=body.purpose,
            state=body.state,
            metadata=body.metadata,
            phase=body.phase,
            session_id=body.session_id,
            created_at=_moment("created_at", body.created_at),
        )
        segment = quote(session.id, safe="").replace(".", "%2E")  # as `HttpStore` sends it
        segment = "%63urrent" if segment == "current" else segment
        response.headers["Location"] = f"/v1/sessions/{segment}"
        response.headers["ETag"] = f'"{session.version}"'
        return session

    @app.get("/v1/sessions/current", tags=["sessions"],
             summary="The caller's most recently active session (an admin may name a user).",
             responses=_problems(*_ON_SESSION))
    async def current_session(
        view: View,
        who: Caller,
        agent_name: Annotated[str | None, Query(alias="agent")] = None,
        app_name: Annotated[str | None, Query(alias="app")] = None,
        user_id: Annotated[str | None, Query(alias="user")] = None,
    ) -> Session:
        page = await run_in_threadpool(
            view.list_sessions,
            user_id=user_id if user_id is not None else who.user_id,
            agent_name=agent_name,
            app_name=app_name,
            status=Status.ACTIVE.value,
            limit=1,
        )
        if not page.sessions:
            raise SessionNotFoundError("current")
        return page.sessions[0]

    @app.get("/v1/sessions/{session_id}", tags=["sessions"], summary="A session.",
             responses=_problems(*_ON_SESSION))
    async def get_session(view: View, session_id: SessionId, response: Response) -> Session:
        session = await run_in_threadpool(view.get_session, session_id)
        response.headers["ETag"] = f'"{session.version}"'
        return session

    @app.post("/v1/sessions/{session_id}", tags=["lifecycle"],
              summary="Load a session: resume it (same as …/resume).",
              responses=_problems(*_ON_SESSION, 409))
    async def load_session(
        manager: Manager, session_id: SessionId, body: ResumeBody | None = None
    ) -> Session:
        return await _resume(manager, session_id, body)

    @app.patch("/v1/sessions/{session_id}", tags=["lifecycle"],
               summary="Record progress: phase, metadata merge, error, resume_ready, summary.",
               responses=_problems(*_ON_SESSION, 409))
    async def update_session(
        manager: Manager, session_id: SessionId, body: UpdateBody
    ) -> Session:
        return await run_in_threadpool(
            manager.update_state,
            session_id,
            phase=body.phase,
            metadata=body.metadata,
            error=body.error,
            resume_ready=body.resume_ready,
            summary=body.summary,
        )

    @app.delete("/v1/sessions/{session_id}", tags=["lifecycle"],
                summary="Terminate a session (kept), or with purge=true delete it for good.",
                responses={**_problems(*_ON_SESSION, 409), 204: {"description": "Purged."}})
    async def delete_session(
        manager: Manager,
        view: View,
        session_id: SessionId,
        purge: bool = False,
        expected_version: int | None = None,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        expected = _expected_version(expected_version, if_match)
        if purge:
            await run_in_threadpool(view.delete_session, session_id, expected_version=expected)
            return Response(status_code=204)
        if expected is not None:
            raise InvalidEventError("expected_version applies to purge=true only")
        return await run_in_threadpool(manager.terminate, session_id)

    # -- lifecycle -----------------------------------------------------------------------

    async def _resume(
        manager: SessionManager, session_id: str, body: ResumeBody | None
    ) -> Session:
        body = body or ResumeBody()
        return await run_in_threadpool(
            manager.resume, session_id, body.reason, expected_version=body.expected_version
        )

    @app.post("/v1/sessions/{session_id}/suspend", tags=["lifecycle"],
              summary="Pause an active session.", responses=_problems(*_ON_SESSION, 409))
    async def suspend(
        manager: Manager, session_id: SessionId, body: ReasonBody | None = None
    ) -> Session:
        return await run_in_threadpool(
            manager.suspend, session_id, (body or ReasonBody()).reason
        )

    @app.post("/v1/sessions/{session_id}/resume", tags=["lifecycle"],
              summary="Resume a session (resume_count + 1).",
              responses=_problems(*_ON_SESSION, 409))
    async def resume(
        manager: Manager, session_id: SessionId, body: ResumeBody | None = None
    ) -> Session:
        return await _resume(manager, session_id, body)

    @app.post("/v1/sessions/{session_id}/terminate", tags=["lifecycle"],
              summary="End a session without an outcome.",
              responses=_problems(*_ON_SESSION, 409))
    async def terminate(
        manager: Manager, session_id: SessionId, body: ReasonBody | None = None
    ) -> Session:
        return await run_in_threadpool(
            manager.terminate, session_id, (body or ReasonBody()).reason
        )

    @app.post("/v1/sessions/{session_id}/finalize", tags=["lifecycle"],
              summary="End a session with an outcome.",
              responses=_problems(*_ON_SESSION, 409))
    async def finalize(manager: Manager, session_id: SessionId, body: FinalizeBody) -> Session:
        return await run_in_threadpool(
            manager.finalize_session, session_id, body.outcome, body.summary
        )

    @app.get("/v1/sessions/{session_id}/verify", tags=["sessions"],
             summary="Check the session's stored history against its hash chain.",
             responses=_problems(*_ON_SESSION))
    async def verify_session(view: View, session_id: SessionId) -> VerifyReport:
        return await run_in_threadpool(view.verify_session, session_id)

    @app.post("/v1/sessions/{session_id}/erase", tags=["sessions"],
              summary="Erase the payload of some events for good (an events_erased event).",
              responses=_problems(*_ON_SESSION, 409))
    async def erase_events(
        view: View,
        session_id: SessionId,
        body: EraseBody,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Event:
        expected = _expected_version(body.expected_version, if_match)
        erased = await run_in_threadpool(
            view.erase_events, session_id, body.seqs, body.reason, expected_version=expected
        )
        notifier.notify(session_id)
        return erased

    @app.post("/v1/sessions/{session_id}/truncate", tags=["sessions"],
              summary="Drop the events before a seq for good; the session is unchanged.",
              responses=_problems(*_ON_SESSION, 409))
    async def truncate_before(
        view: View,
        session_id: SessionId,
        body: TruncateBody,
        if_match: Annotated[str | None, Header()] = None,
    ) -> TruncateResult:
        expected = _expected_version(body.expected_version, if_match)
        dropped = await run_in_threadpool(
            view.truncate_before, session_id, body.before, expected_version=expected
        )
        return TruncateResult(dropped=dropped)

    @app.post("/v1/store/compact", tags=["store"], status_code=204,
              summary="Reclaim the space of erased and dropped data (admins only).",
              responses={**_problems(*_COMMON, 403), 204: {"description": "Compacted."}})
    async def compact_store(view: View) -> Response:
        await run_in_threadpool(view.compact)
        return Response(status_code=204)

    @app.get("/v1/sessions/{session_id}/resume-decision", tags=["lifecycle"],
             summary="Whether the resume policy lets the session resume, and why.",
             responses=_problems(*_COMMON))
    async def resume_decision(manager: Manager, session_id: SessionId) -> ResumeDecision:
        return await run_in_threadpool(manager.should_resume, session_id)

    # -- events --------------------------------------------------------------------------

    @app.post("/v1/sessions/{session_id}/events", tags=["events"], status_code=201,
              summary="Append events atomically.",
              responses=_problems(*_ON_SESSION, 409, 413))
    async def append_events(
        view: View,
        session_id: SessionId,
        body: AppendBody,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> AppendResult:
        expected = _expected_version(body.expected_version, if_match)
        stored = await run_in_threadpool(
            view.append,
            session_id,
            body.events,
            expected_version=expected,
            expected_state=body.expected_state,
        )
        if stored:
            notifier.notify(session_id)
            version = stored[-1].seq
        else:  # as the store API: nothing appended (the checks still ran); the version now
            version = (await run_in_threadpool(view.get_session, session_id)).version
        response.headers["ETag"] = f'"{version}"'
        return AppendResult(events=stored, version=version)

    @app.post("/v1/sessions/{session_id}/fork", tags=["sessions"], status_code=201,
              summary="Fork a session: a new session with its history up to a seq.",
              responses=_problems(*_ON_SESSION, 409))
    async def fork_session(
        view: View, session_id: SessionId, response: Response, body: ForkBody | None = None
    ) -> Session:
        body = body or ForkBody()
        fork = await run_in_threadpool(
            view.fork_session,
            session_id,
            at_seq=body.at_seq,
            new_session_id=body.new_session_id,
            expected_version=body.expected_version,
        )
        response.headers["Location"] = f"/v1/sessions/{fork.id}"
        response.headers["ETag"] = f'"{fork.version}"'
        return fork

    @app.post("/v1/sessions/{session_id}/rewind", tags=["events"], status_code=201,
              summary="Rewind a session (append-only undo), then append, atomically.",
              responses=_problems(*_ON_SESSION, 409, 413))
    async def rewind_session(
        view: View,
        session_id: SessionId,
        body: RewindBody,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> AppendResult:
        stored = await run_in_threadpool(
            view.rewind,
            session_id,
            to_seq=body.to_seq,
            before_invocation=body.before_invocation,
            then=body.then,
            expected_version=_expected_version(body.expected_version, if_match),
            expected_state=body.expected_state,
        )
        notifier.notify(session_id)
        response.headers["ETag"] = f'"{stored[-1].seq}"'
        return AppendResult(events=stored, version=stored[-1].seq)

    @app.get("/v1/sessions/{session_id}/events", tags=["events"],
             summary="Read events in seq order, a page at a time.",
             responses=_problems(*_ON_SESSION))
    async def read_events(
        view: View,
        session_id: SessionId,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int | None, Query(ge=0)] = None,
        last: Annotated[int | None, Query(ge=0)] = None,
        event_type: Annotated[list[str] | None, Query(alias="type")] = None,
        after_timestamp: _Moment = None,
        before_timestamp: _Moment = None,
        key: Annotated[
            list[str] | None,
            Query(description="Only the events with these idempotency keys (repeatable)."),
        ] = None,
        key_prefix: Annotated[
            str | None, Query(description="Only the events whose key starts with this.")
        ] = None,
        data_match: Annotated[
            str | None,
            Query(
                description='A JSON object of dotted paths to values the event data must '
                'hold, e.g. {"metadata.source": "input"}.'
            ),
        ] = None,
        effective: Annotated[
            bool,
            Query(description="Only the events in effect after the session's rewinds."),
        ] = False,
    ) -> EventPage:
        for name, value in (("limit", limit), ("last", last), ("after", after)):
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be a non-negative int, not {value!r}")
        match: Any = None
        if data_match is not None:
            try:
                match = json.loads(data_match)
            except ValueError as exc:
                raise ConfigurationError(f"data_match must be a JSON object: {exc}") from exc
        read = partial(
            view.read_events,
            after_timestamp=_moment("after_timestamp", after_timestamp),
            before_timestamp=_moment("before_timestamp", before_timestamp),
            keys=key,
            key_prefix=key_prefix,
            data_match=match,
            effective=effective,
        )
        if last is not None:
            events = await run_in_threadpool(
                read,
                session_id,
                after=after,
                last=last,
                types=event_type,
            )
            return EventPage(events=events)
        page = EVENTS_PAGE_MAX if limit is None else min(limit, EVENTS_PAGE_MAX)
        events = await run_in_threadpool(
            read,
            session_id,
            after=after,
            limit=page,
            types=event_type,
        )
        more = len(events) == page and page > 0 and (limit is None or limit > page)
        return EventPage(events=events, next_after=events[-1].seq if more else None)

    @app.get("/v1/sessions/{session_id}/events/stream", tags=["events"],
             summary="Server-Sent Events: every event as it is stored (id = seq).",
             response_class=StreamingResponse,
             responses={**_problems(*_ON_SESSION),
                        200: {"content": {"text/event-stream": {}},
                              "description": "An event stream."}})
    async def stream_events(
        request: Request,
        view: View,
        session_id: SessionId,
        after: int = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        start = after
        if last_event_id:
            try:
                start = max(start, int(last_event_id))
            except ValueError as exc:
                raise InvalidEventError(
                    f"Last-Event-ID must be an event seq, not {last_event_id!r}"
                ) from exc
        await run_in_threadpool(view.get_session, session_id)  # 404 before streaming

        async def lines() -> AsyncIterator[str]:
            seen = start
            wake = notifier.subscribe(session_id)
            quiet_since = time.monotonic()
            try:
                yield "retry: 1000\n\n"
                while not stopping.is_set() and not app.state.draining:
                    wake.clear()
                    try:
                        batch = await shared_reads.read(session_id, seen, 500)
                    except SessionNotFoundError:
                        return  # deleted: the stream ends
                    ended = False
                    for event in batch:
                        seen = event.seq
                        yield _sse(event)
                        ended = ended or _ends_session(event)
                    if batch:
                        quiet_since = time.monotonic()
                        if ended:
                            return
                        if len(batch) == 500:
                            continue
                    elif time.monotonic() - quiet_since >= heartbeat_interval:
                        quiet_since = time.monotonic()
                        yield ": heartbeat\n\n"
                    if await request.is_disconnected():
                        return
                    try:
                        await asyncio.wait_for(wake.wait(), poll_interval)
                    except TimeoutError:
                        pass
            finally:
                notifier.unsubscribe(session_id, wake)

        return StreamingResponse(
            lines(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- turns ---------------------------------------------------------------------------

    @app.post("/v1/sessions/{session_id}/turns", tags=["turns"],
              summary="Run one agent turn; with Accept: text/event-stream, stream its events.",
              responses={**_problems(*_ON_SESSION, 409, 502),
                         200: {"content": {"application/json": {},
                                           "text/event-stream": {}},
                               "model": TurnResult, "description": "The turn's answer."}})
    async def run_turn(
        view: View,
        session_id: SessionId,
        body: TurnBody,
        accept: Annotated[str | None, Header()] = None,
    ) -> Any:
        runner = Runner(run_agent, view)
        await run_in_threadpool(view.get_session, session_id)  # 404 before anything
        loop = asyncio.get_running_loop()
        if accept and "text/event-stream" in accept:

            def turn_lines() -> Iterator[str]:
                try:
                    for event in runner.run(session_id, body.message):
                        loop.call_soon_threadsafe(notifier.notify, session_id)
                        yield _sse(event)
                except AgentLedgerError as exc:
                    yield f"event: problem\ndata: {json.dumps(problem_for(exc))}\n\n"

            return StreamingResponse(turn_lines(), media_type="text/event-stream")

        def whole_turn() -> list[Event]:
            return list(runner.run(session_id, body.message))

        stored = await run_in_threadpool(whole_turn)
        if stored:
            notifier.notify(session_id)
        return TurnResult(session_id=session_id, answer=final_output(stored), events=stored)

    # -- hooks and stats -----------------------------------------------------------------

    async def _hook(
        manager: SessionManager,
        payload: dict[str, Any],
        handler: Callable[[SessionManager, dict[str, Any]], dict[str, Any]],
    ) -> Response:
        from agentledger.cli.hooks import HookError

        try:
            result = await run_in_threadpool(handler, manager, payload)
        except HookError as exc:
            return _problem_response(
                _simple_problem(422, "InvalidEvent", exc.message, error="InvalidEventError",
                                code=exc.code)
            )
        return JSONResponse(result)

    @app.post("/v1/hooks/pre-delegate", tags=["hooks"],
              summary="Before delegating: resume the agent's session if allowed, else create one.",
              responses=_problems(*_COMMON))
    async def pre_delegate_hook(
        manager: Manager, payload: Annotated[dict[str, Any], Body()]
    ) -> Any:
        from agentledger.cli.hooks import pre_delegate

        return await _hook(manager, payload, pre_delegate)

    @app.post("/v1/hooks/subagent-stop", tags=["hooks"],
              summary="When an agent stops: finalize its session.",
              responses=_problems(*_COMMON))
    async def subagent_stop_hook(
        manager: Manager, payload: Annotated[dict[str, Any], Body()]
    ) -> Any:
        from agentledger.cli.hooks import subagent_stop

        return await _hook(manager, payload, subagent_stop)

    # -- shared state without a session -----------------------------------------------------

    @app.get("/v1/scoped-state", tags=["state"],
             summary="An app's app: state, or a user's user: state (yours only, unless admin).",
             responses=_problems(*_COMMON, 403))
    async def get_scoped_state(
        view: View,
        app_name: Annotated[str, Query(alias="app")],
        user_id: Annotated[str | None, Query(alias="user")] = None,
    ) -> ScopedStateResult:
        state = await run_in_threadpool(view.get_scoped_state, app_name, user_id)
        return ScopedStateResult(state=state)

    @app.put("/v1/scoped-state", tags=["state"],
             summary="Change app: and user: state atomically, without a session.",
             responses=_problems(*_COMMON, 403, 409, 413))
    async def update_scoped_state(view: View, body: ScopedStateBody) -> ScopedStateResult:
        state = await run_in_threadpool(
            view.update_scoped_state,
            body.app_name,
            body.user_id,
            body.delta,
            remove=body.remove,
            expected_state=body.expected_state,
        )
        return ScopedStateResult(state=state)

    @app.get("/v1/feed", tags=["events"],
             summary="The store-wide event feed: events of every session you may see, in commit order.",
             responses=_problems(*_COMMON))
    async def read_feed(
        view: View,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Positions after this one.")] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> FeedPage:
        events = await run_in_threadpool(view.read_feed, after, limit)
        head = await run_in_threadpool(view.feed_position)
        return FeedPage(events=events, feed_position=head)

    @app.get("/v1/stats", tags=["stats"], summary="Session metrics over the matching sessions.",
             responses=_problems(*_COMMON))
    async def stats(
        manager: Manager,
        agent_name: Annotated[str | None, Query(alias="agent")] = None,
        app_name: Annotated[str | None, Query(alias="app")] = None,
        user_id: Annotated[str | None, Query(alias="user")] = None,
    ) -> dict[str, Any]:
        found = await run_in_threadpool(
            manager.stats, agent_name=agent_name, app_name=app_name, user_id=user_id
        )
        return dataclasses.asdict(found)

    add_web_view(app)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    app.add_middleware(_SessionIdPath)
    app.add_middleware(_RequestLog)
    return app


def _expected_version(given: int | None, if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return given
    text = if_match.strip().removeprefix("W/").strip('"')
    try:
        header = int(text)
    except ValueError as exc:
        raise InvalidEventError(f"If-Match must be a session version, not {if_match!r}") from exc
    if given is not None and given != header:
        raise InvalidEventError(
            f"If-Match ({header}) and expected_version ({given}) disagree"
        )
    return header


def _sse(event: Event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _ends_session(event: Event) -> bool:
    return event.type == EventType.SESSION_FINALIZED or (
        event.type == EventType.STATUS_CHANGED and event.data.get("to") == Status.TERMINATED
    )

