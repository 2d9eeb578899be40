"""`http://` and `https://` — a store served by `agentledger serve`, over its HTTP API.

`open_store("http://127.0.0.1:8420", token="...")` returns an `HttpStore`: the whole
`SessionStore` contract against a remote ledger, so library code, the runner and the CLI
(`--store http://…`) work on it unchanged. Errors come back as the same `agentledger.errors`
classes, with the same attributes, as on the server's store (the server sends them as
problem documents). One `httpx` client per store reuses its connections; reads are retried
on network errors, writes only when the request was never sent (a refused connection), so
an append is never applied twice.

URL options: `token` (prefer the `token=` argument or `$AGENTLEDGER_TOKEN`: a URL may end up
in logs), `timeout` (seconds, default 30), `retries` (default 3), `max_event_bytes` (a
client-side limit, at most the server's).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

from agentledger.core.events import Event, EventType, NewEvent
from agentledger.core.keys import check_data_match
from agentledger.core.lifecycle import Lifecycle
from agentledger.core.session import Session, validate_session_id
from agentledger.core.state import strip_temp
from agentledger.errors import (
    ConfigurationError,
    EventTooLargeError,
    InvalidEventError,
    MissingDependencyError,
    ReadOnlyStoreError,
    StoreUnavailableError,
)
from agentledger.plugins.host import PluginHost
from agentledger.stores.base import (
    Capabilities,
    FeedEvent,
    SessionPage,
    SessionStore,
    VerifyReport,
    display_url,
)
from agentledger.stores.shared import (
    MAX_SEQ,
    check_erase_args,
    check_nesting,
    check_scope,
    check_seq_argument,
    check_version_arg,
    session_order,
)

__all__ = ["TOKEN_ENV", "HttpStore"]

TOKEN_ENV = "AGENTLEDGER_TOKEN"
"""The environment variable the `http://` store reads its bearer token from by default."""

_OPTIONS = {"token", "timeout", "retries", "max_event_bytes", "read_only", "create"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _strict_json(value: Any, what: str) -> bytes:
    try:
        return _dumps(value).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError too: a lone surrogate
        raise InvalidEventError(f"{what} holds a value JSON cannot hold: {exc}") from exc


class HttpStore:
    """A `SessionStore` served over HTTP by `agentledger serve` (see the module docstring).

    Args:
        url: `http://host:port` (optionally with a path prefix where the app is mounted).
        token: The bearer token; `None` reads `$AGENTLEDGER_TOKEN` (no token: a server
            without tokens).
        timeout: Seconds to wait for connecting and for each response.
        retries: Extra tries after a network error (reads; writes only if never sent).
        read_only: Refuse every write here, before sending (`ReadOnlyStoreError`).
        create: Accepted for every store's sake; a served store always exists.
        max_event_bytes: Refuse events over this many bytes before sending; the server's
            limit when `None` or larger.

    Raises:
        MissingDependencyError: httpx is not installed (the `server` extra).
        ConfigurationError: A bad URL or option.
        StoreUnavailableError: The server cannot be reached.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_event_bytes: int | None = None,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "server") from exc
        self._httpx = httpx
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"bad store URL {display_url(url)!r}: expected http://host:port")
        self.url = urlunsplit(parts._replace(query="", fragment=""))
        self._base = self.url.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._retries = retries
        self._closed = False
        self.read_only = read_only  # the server's store always exists: `create` is moot
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=False
        )
        try:
            info = self._request("GET", "/v1/store")
        except BaseException:
            self._client.close()
            raise
        caps = info["capabilities"]
        self.capabilities = Capabilities(
            persistent=bool(caps.get("persistent")),
            # Any number of processes may share one server, but the suite's multi-process
            # and kill -9 checks take minutes over HTTP (thousands of contended round
            # trips), so they are not declared; the server's own tests cover concurrent
            # clients and a killed server.
            multi_process=False,
            injectable_clock=False,
        )
        self.server_plugins: tuple[str, ...] = tuple(info.get("plugins") or ())
        """The plugins the server runs around every write, in their order."""
        server_limit = int(info["max_event_bytes"])
        self.max_event_bytes = (
            server_limit if max_event_bytes is None else min(max_event_bytes, server_limit)
        )
        cycle = info["lifecycle"]
        transitions = cycle.get("transitions")
        self.lifecycle = Lifecycle(
            phases=tuple(cycle["phases"]),
            final_phases=frozenset(cycle["final_phases"]),
            initial_phase=cycle["initial_phase"],
            transitions=None
            if transitions is None
            else {k: frozenset(v) for k, v in transitions.items()},
        )

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any]) -> HttpStore:
        """Open from `open_store`'s URL and options (see the module docstring).

        Raises:
            ConfigurationError: An unknown option or a bad value.
        """
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {sorted(unknown)} for {display_url(url)!r}; "
                f"known: {sorted(_OPTIONS)}"
            )
        opts: dict[str, Any] = dict(options)
        try:
            for name in ("read_only", "create"):
                if name in opts and isinstance(opts[name], str):
                    text = opts[name].lower()
                    if text not in _TRUE | _FALSE:
                        raise ValueError(f"{name} must be true or false, not {opts[name]!r}")
                    opts[name] = text in _TRUE
            if "timeout" in opts:
                opts["timeout"] = float(opts["timeout"])
            for name in ("retries", "max_event_bytes"):
                if name in opts:
                    opts[name] = int(opts[name])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad option in {display_url(url)!r}: {exc}") from exc
        return cls(url, **opts)

    def use_plugins(self, host: PluginHost | None) -> None:
        """Check that the server runs these plugins: an `http://` store's plugins run in
        its server process (`agentledger --plugin NAME serve`), where its store is.

        Args:
            host: The plugins asked for (`open_store(url, plugins=...)` or
                `$AGENTLEDGER_PLUGINS`); `None` checks nothing.

        Raises:
            ConfigurationError: The server does not run one of them.
        """
        if host is None:
            return
        missing = [name for name in host.names if name not in self.server_plugins]
        if missing:
            running = ", ".join(self.server_plugins) or "none"
            raise ConfigurationError(
                f"plugins run in the server process, and the server at {display_url(self.url)} "
                f"does not run {', '.join(missing)} (it runs: {running}); start it with "
                f"`agentledger {' '.join('--plugin ' + n for n in missing)} serve`"
            )

    # -- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        body: bytes | None = None,
    ) -> Any:
        httpx = self._httpx
        if self._closed:
            raise StoreUnavailableError(f"the store {display_url(self.url)} is closed")
        idempotent = method in ("GET", "HEAD")
        if self.read_only and not idempotent:
            raise ReadOnlyStoreError(f"the store {display_url(self.url)} is open read-only")
        headers = {"Content-Type": "application/json"} if body is not None else None
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, self._base + path, params=params, content=body, headers=headers
                )
            except httpx.ConnectError as exc:  # nothing was sent: safe to retry any request
                error: Exception = exc
            except httpx.TransportError as exc:
                if not idempotent:
                    raise StoreUnavailableError(
                        f"{display_url(self.url)}: {type(exc).__name__}: {exc}; the write may "
                        "or may not have been applied"
                    ) from exc
                error = exc
            else:
                if response.status_code == 503 and idempotent and attempt < self._retries:
                    error = StoreUnavailableError("503")
                else:
                    return self._decode(response)
            attempt += 1
            if attempt > self._retries:
                raise StoreUnavailableError(
                    f"cannot reach {display_url(self.url)}: {type(error).__name__}: {error}"
                ) from error
            time.sleep(min(0.05 * 2**attempt, 1.0))

    def _decode(self, response: Any) -> Any:
        from agentledger.server.problems import error_from_problem

        status = response.status_code
        if status == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if status >= 400:
            raise error_from_problem(status, body)
        return body

    @staticmethod
    def _sid(session_id: str) -> str:
        """The id as one path segment: every byte but letters, digits and `-_~`
        percent-encoded, `/` as `%2F` and `.` as `%2E` too (so `..` is no dot segment), and
        `current` as `%63urrent` (not the caller's current session)."""
        if session_id == "current":
            return "%63urrent"
        return quote(validate_session_id(session_id), safe="").replace(".", "%2E")

    # -- the contract ---------------------------------------------------------------------

    def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        agent_name: str | None = None,
        title: str | None = None,
        purpose: str | None = None,
        state: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        phase: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
    ) -> Session:
        """As `SessionStore.create_session`, on the server."""
        if session_id is not None:
            validate_session_id(session_id)
        for name, value in (("state", state), ("metadata", metadata)):
            if value is not None and not isinstance(value, Mapping):
                raise InvalidEventError(f"{name} must be a JSON object (a mapping), not {value!r}")
            check_nesting(value, f"session_created event {name}")
        for name, required in (("app_name", app_name), ("user_id", user_id)):
            if not isinstance(required, str) or not required:
                raise InvalidEventError(f"{name} must be a non-empty string, not {required!r}")
        self._check_size(
            "session_created",
            {k: v for k, v in (("agent_name", agent_name), ("title", title),
                               ("purpose", purpose), ("phase", phase)) if v is not None}
            | {"app_name": app_name, "user_id": user_id, "metadata": dict(metadata or {})},
            dict(state or {}),
            "system",
            None,
        )
        payload = {
            "app_name": app_name,
            "user_id": user_id,
            "agent_name": agent_name,
            "title": title,
            "purpose": purpose,
            "state": None if state is None else dict(state),
            "metadata": None if metadata is None else dict(metadata),
            "phase": phase,
            "session_id": session_id,
            "created_at": None if created_at is None else created_at.isoformat(),
        }
        return Session.model_validate(
            self._request("POST", "/v1/sessions", body=_strict_json(payload, "the session"))
        )

    def _event_json(self, event: NewEvent) -> dict[str, Any]:
        if not isinstance(event, NewEvent):
            raise InvalidEventError(f"append takes NewEvent objects, not {type(event).__name__}")
        writer = {
            EventType.SESSION_CREATED.value: "create_session",
            EventType.SESSION_FORKED.value: "fork_session",
            EventType.REWOUND.value: "rewind",
            EventType.EVENTS_ERASED.value: "erase_events",
        }.get(str(event.type))
        if writer is not None:
            raise InvalidEventError(f"{event.type} is written by {writer} only")
        # Every field as JSON; the free-form values exactly as given, so a value JSON cannot
        # hold is refused here as the server's store would refuse it.
        check_nesting(event.data, f"{event.type} event data")
        check_nesting(event.state_delta, f"{event.type} event state_delta")
        check_nesting(event.state_ops, f"{event.type} event state_ops")
        values = event.model_dump(mode="json", exclude={"data", "state_delta"})
        values["data"], values["state_delta"] = event.data, event.state_delta
        self._check_size(
            event.type, event.data, event.state_delta, event.author, event.invocation_id
        )
        return values

    def _check_size(
        self,
        type_: str,
        data: Mapping[str, Any],
        state_delta: Mapping[str, Any],
        author: str,
        invocation_id: str | None,
    ) -> None:
        """Refuse, before sending, what the server's store would refuse: a value JSON cannot
        hold, or an event over `max_event_bytes` (sized as the stores size it)."""
        encoded = _strict_json(data, f"{type_} event")
        delta = _strict_json(strip_temp(state_delta), f"{type_} event")
        size = len(encoded) + len(delta) + sum(
            len(text.encode("utf-8", "surrogatepass"))
            for text in (type_, author, invocation_id or "")
        )
        if size > self.max_event_bytes:
            raise EventTooLargeError(size, self.max_event_bytes)

    def append(
        self,
        session_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """As `SessionStore.append`, on the server, in one request (never retried once sent).

        Raises:
            StoreUnavailableError: Also when the connection broke after the request was
                sent: the append may or may not have been applied (read the events to know).
        """
        sid = self._sid(session_id)
        payload = {
            "events": [self._event_json(e) for e in events],
            "expected_version": expected_version,
            "expected_state": None if expected_state is None else dict(expected_state),
        }
        found = self._request(
            "POST", f"/v1/sessions/{sid}/events", body=_strict_json(payload, "the append")
        )
        return [Event.model_validate(e) for e in found["events"]]

    def fork_session(
        self,
        source_id: str,
        *,
        at_seq: int | None = None,
        new_session_id: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """As `SessionStore.fork_session`, on the server (`POST …/fork`, never retried
        once sent)."""
        sid = self._sid(source_id)
        if new_session_id is not None:
            validate_session_id(new_session_id)
        check_seq_argument("at_seq", at_seq)
        check_seq_argument("expected_version", expected_version)
        payload = {
            "at_seq": at_seq,
            "new_session_id": new_session_id,
            "expected_version": expected_version,
        }
        return Session.model_validate(
            self._request("POST", f"/v1/sessions/{sid}/fork", body=_strict_json(payload, "the fork"))
        )

    def rewind(
        self,
        session_id: str,
        *,
        to_seq: int | None = None,
        before_invocation: str | None = None,
        then: Sequence[NewEvent] = (),
        expected_version: int | None = None,
        expected_state: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """As `SessionStore.rewind`, on the server (`POST …/rewind`, one request, never
        retried once sent)."""
        sid = self._sid(session_id)
        check_seq_argument("to_seq", to_seq)
        check_seq_argument("expected_version", expected_version)
        if (to_seq is None) == (before_invocation is None):
            raise InvalidEventError(
                "rewind takes either to_seq or before_invocation (one of them); nothing was written"
            )
        payload = {
            "to_seq": to_seq,
            "before_invocation": before_invocation,
            "then": [self._event_json(e) for e in then],
            "expected_version": expected_version,
            "expected_state": None if expected_state is None else dict(expected_state),
        }
        found = self._request(
            "POST", f"/v1/sessions/{sid}/rewind", body=_strict_json(payload, "the rewind")
        )
        return [Event.model_validate(e) for e in found["events"]]

    def get_session(self, session_id: str) -> Session:
        """As `SessionStore.get_session`, on the server."""
        return Session.model_validate(self._request("GET", f"/v1/sessions/{self._sid(session_id)}"))

    def read_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        last: int | None = None,
        types: Sequence[str] | None = None,
        after_timestamp: datetime | None = None,
        before_timestamp: datetime | None = None,
        keys: Sequence[str] | None = None,
        key_prefix: str | None = None,
        data_match: Mapping[str, Any] | None = None,
        effective: bool = False,
    ) -> list[Event]:
        """As `SessionStore.read_events`, on the server; follows its pages."""
        sid = self._sid(session_id)
        if not isinstance(effective, bool):
            raise ConfigurationError(f"effective must be True or False, not {effective!r}")
        window: list[tuple[str, Any]] = [("effective", "true")] if effective else []
        if keys is not None:
            if isinstance(keys, str) or not isinstance(keys, Sequence):
                raise ConfigurationError(f"keys must be a list of strings, not {keys!r}")
            if not keys:  # none asked for: none found (the session must still exist)
                self.get_session(session_id)
                return []
            window += [("key", k) for k in keys]
        if key_prefix is not None:
            window.append(("key_prefix", key_prefix))
        if data_match is not None:
            check_data_match(data_match)  # refused here as the server's store would
            window.append(("data_match", _strict_json(dict(data_match), "data_match").decode()))
        for name, moment in (
            ("after_timestamp", after_timestamp),
            ("before_timestamp", before_timestamp),
        ):
            if moment is None:
                continue
            if not isinstance(moment, datetime) or moment.utcoffset() is None:
                raise ConfigurationError(f"{name} must be an aware datetime, not {moment!r}")
            window.append((name, moment.isoformat()))
        if isinstance(after, bool) or not isinstance(after, int):
            raise ConfigurationError(f"after must be an int, not {after!r}")
        after = min(after, MAX_SEQ)  # no seq is larger; the server takes 64-bit numbers
        for name, value in (("limit", limit), ("last", last)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigurationError(f"{name} must be a non-negative int, not {value!r}")
        if isinstance(types, str):
            types = [types]
        base: list[tuple[str, Any]] = [("type", t) for t in types or ()] + window
        if last is not None:
            page = self._request(
                "GET", f"/v1/sessions/{sid}/events", params=[*base, ("after", after), ("last", last)]
            )
            return [Event.model_validate(e) for e in page["events"]]
        found: list[Event] = []
        cursor = after
        while True:
            params = [*base, ("after", cursor)]
            if limit is not None:
                params.append(("limit", limit - len(found)))
            page = self._request("GET", f"/v1/sessions/{sid}/events", params=params)
            found += [Event.model_validate(e) for e in page["events"]]
            if page.get("next_after") is None or (limit is not None and len(found) >= limit):
                return found
            cursor = int(page["next_after"])

    def get_event(self, session_id: str, key: str) -> Event | None:
        """As `SessionStore.get_event`, on the server."""
        if not isinstance(key, str):
            raise ConfigurationError(f"key must be a string, not {key!r}")
        found = self.read_events(session_id, keys=[key])
        return found[0] if found else None

    def list_sessions(
        self,
        *,
        app_name: str | None = None,
        user_id: str | None = None,
        agent_name: str | None = None,
        status: str | None = None,
        phase: str | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "updated_desc",
    ) -> SessionPage:
        """As `SessionStore.list_sessions`, on the server."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ConfigurationError(f"limit must be an int from 1 to 1000, not {limit!r}")
        session_order(order)  # refused here, before a request
        params: dict[str, Any] = {"limit": limit}
        if order != "updated_desc":
            params["order"] = order
        for key, value in (
            ("app", app_name),
            ("user", user_id),
            ("agent", agent_name),
            ("status", status),
            ("phase", phase),
            ("cursor", cursor),
        ):
            if value is not None:
                params[key] = value
        for key, moment in (("updated_after", updated_after), ("updated_before", updated_before)):
            if moment is not None:
                params[key] = moment.isoformat()
        return SessionPage.model_validate(self._request("GET", "/v1/sessions", params=params))

    def read_feed(self, after: int = 0, limit: int = 1000) -> list[FeedEvent]:
        """As `SessionStore.read_feed`, on the server (`GET /v1/feed`): the events of every
        session the caller may see (all of them for an admin), in commit order."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigurationError(f"after must be a non-negative int, not {after!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ConfigurationError(f"limit must be an int from 1 to 10000, not {limit!r}")
        page = self._request("GET", "/v1/feed", params={"after": min(after, MAX_SEQ), "limit": limit})
        return [FeedEvent.model_validate(e) for e in page["events"]]

    def feed_position(self) -> int:
        """As `SessionStore.feed_position`, on the server."""
        page = self._request("GET", "/v1/feed", params={"after": MAX_SEQ, "limit": 1})
        return int(page["feed_position"])

    iter_sessions = SessionStore.iter_sessions
    """Every page of `list_sessions` (the protocol's walk, one request per page)."""

    def get_scoped_state(self, app_name: str, user_id: str | None = None) -> dict[str, Any]:
        """As `SessionStore.get_scoped_state`, on the server (`GET /v1/scoped-state`); a
        caller that is not an admin may read only their own user's state."""
        check_scope(app_name, user_id)
        params = {"app": app_name} if user_id is None else {"app": app_name, "user": user_id}
        found = self._request("GET", "/v1/scoped-state", params=params)
        return dict(found["state"])

    def update_scoped_state(
        self,
        app_name: str,
        user_id: str | None,
        delta: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        expected_state: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """As `SessionStore.update_scoped_state`, on the server (`PUT /v1/scoped-state`); a
        caller that is not an admin may change only their own user's state."""
        check_scope(app_name, user_id)
        for what, value in (("delta", delta), ("expected_state", expected_state)):
            if value is not None and not isinstance(value, Mapping):
                raise InvalidEventError(f"{what} must be a JSON object (a mapping), not {value!r}")
        if isinstance(remove, str) or not isinstance(remove, Sequence):
            raise InvalidEventError(f"remove must be a list of state keys, not {remove!r}")
        payload: dict[str, Any] = {"app_name": app_name, "user_id": user_id, "delta": dict(delta)}
        if remove:
            payload["remove"] = list(remove)
        if expected_state is not None:
            payload["expected_state"] = dict(expected_state)
        check_nesting(payload["delta"], "scoped state delta")
        found = self._request(
            "PUT", "/v1/scoped-state", body=_strict_json(payload, "the scoped state update")
        )
        return dict(found["state"])

    def verify_session(self, session_id: str) -> VerifyReport:
        """As `SessionStore.verify_session`, run by the server on its store."""
        return VerifyReport.model_validate(
            self._request("GET", f"/v1/sessions/{self._sid(session_id)}/verify")
        )

    def delete_session(self, session_id: str, *, expected_version: int | None = None) -> None:
        """As `SessionStore.delete_session`, on the server (`DELETE …?purge=true`)."""
        sid = self._sid(session_id)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ConfigurationError(f"expected_version must be an int, not {expected_version!r}")
        params: dict[str, Any] = {"purge": "true"}
        if expected_version is not None:
            params["expected_version"] = expected_version
        self._request("DELETE", f"/v1/sessions/{sid}", params=params)

    def erase_events(
        self,
        session_id: str,
        seqs: Sequence[int],
        reason: str,
        *,
        expected_version: int | None = None,
    ) -> Event:
        """As `SessionStore.erase_events`, on the server (`POST /v1/sessions/{id}/erase`)."""
        sid = self._sid(session_id)
        wanted = check_erase_args(seqs, reason)
        check_version_arg(expected_version)
        payload = {"seqs": wanted, "reason": reason, "expected_version": expected_version}
        found = self._request(
            "POST", f"/v1/sessions/{sid}/erase", body=_strict_json(payload, "the erase")
        )
        return Event.model_validate(found)

    def truncate_before(
        self, session_id: str, seq: int, *, expected_version: int | None = None
    ) -> int:
        """As `SessionStore.truncate_before`, on the server (`POST /v1/sessions/{id}/truncate`)."""
        sid = self._sid(session_id)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ConfigurationError(f"seq must be an int >= 1, not {seq!r}")
        check_version_arg(expected_version)
        payload = {"before": min(seq, MAX_SEQ), "expected_version": expected_version}
        found = self._request(
            "POST", f"/v1/sessions/{sid}/truncate", body=_strict_json(payload, "the truncation")
        )
        return int(found["dropped"])

    def compact(self) -> None:
        """As `SessionStore.compact`, run by the server on its store (`POST /v1/store/compact`,
        admins only)."""
        self._request("POST", "/v1/store/compact")

    def close(self) -> None:
        """Close the connections; every call afterwards raises `StoreUnavailableError`."""
        self._closed = True
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HttpStore {display_url(self.url)}>"
