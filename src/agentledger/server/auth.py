"""Who is calling: bearer tokens from a tokens file, compared in constant time.

The tokens file is JSON:

```json
{"tokens": [
  {"token": "a-long-random-string", "user": "ada", "apps": ["support"], "role": "user"},
  {"token": "another-one", "user": "ops", "apps": ["*"], "role": "admin"}
]}
```

`apps` lists the apps the user may work in (`"*"` or an absent `apps`: any); `role` is
`user` (only their own sessions) or `admin` (every session). The file is read again when
it changes (checked at most once a second) or on `reload()` (the `serve` command calls it
on SIGHUP), so tokens rotate without a restart; a file that no longer parses keeps the
previous tokens and logs the error.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agentledger.errors import ConfigurationError

__all__ = ["LOCAL_PRINCIPAL", "Principal", "TokenTable"]

log = logging.getLogger("agentledger.server")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request.

    Attributes:
        user_id: Their user id; sessions they create belong to it.
        apps: The apps they may use; `None` for any.
        admin: Whether they see and change every session.
    """

    user_id: str
    apps: frozenset[str] | None = None
    admin: bool = False

    def may_use_app(self, app_name: str) -> bool:
        """Whether this caller may work in `app_name`."""
        return self.apps is None or app_name in self.apps


LOCAL_PRINCIPAL = Principal(user_id="local", apps=None, admin=True)
"""The caller when the server runs without tokens (loopback only): sees everything."""


def _parse(raw: bytes, source: str) -> list[tuple[bytes, Principal]]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"tokens file {source} is not valid JSON: {exc}") from exc
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f'tokens file {source} must hold {{"tokens": [...]}}')
    table: list[tuple[bytes, Principal]] = []
    for index, entry in enumerate(entries):
        where = f"tokens file {source}, entry {index}"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: must be an object")
        unknown = set(entry) - {"token", "user", "apps", "role"}
        if unknown:
            raise ConfigurationError(f"{where}: unknown fields {sorted(unknown)}")
        token, user, apps, role = (
            entry.get("token"), entry.get("user"), entry.get("apps"), entry.get("role", "user")
        )
        if not isinstance(token, str) or len(token) < 16:
            raise ConfigurationError(f"{where}: token must be a string of 16+ characters")
        if not isinstance(user, str) or not user:
            raise ConfigurationError(f"{where}: user must be a non-empty string")
        if role not in ("user", "admin"):
            raise ConfigurationError(f"{where}: role must be 'user' or 'admin', not {role!r}")
        if apps is not None and (
            not isinstance(apps, list) or not all(isinstance(a, str) and a for a in apps)
        ):
            raise ConfigurationError(f"{where}: apps must be a list of app names")
        allowed = None if apps is None or "*" in apps else frozenset(apps)
        table.append((token.encode(), Principal(user, allowed, role == "admin")))
    return table


class TokenTable:
    """The tokens of a tokens file (see the module docstring).

    Args:
        path: The tokens file.

    Raises:
        ConfigurationError: The file cannot be read or does not hold valid tokens.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: list[tuple[bytes, Principal]] = []
        self._mtime: float | None = None
        self._checked = 0.0
        self.reload(strict=True)

    def reload(self, *, strict: bool = False) -> None:
        """Read the file again. With `strict`, a bad file raises `ConfigurationError`;
        otherwise it is logged and the previous tokens stay in force."""
        try:
            mtime = self.path.stat().st_mtime
            entries = _parse(self.path.read_bytes(), str(self.path))
        except (OSError, ConfigurationError) as exc:
            if strict:
                if isinstance(exc, OSError):
                    raise ConfigurationError(f"cannot read tokens file {self.path}: {exc}") from exc
                raise
            log.error("tokens file not reloaded, keeping the previous tokens: %s", exc)
            return
        with self._lock:
            self._entries, self._mtime = entries, mtime
        log.info("tokens loaded: %d", len(entries))

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self.reload()

    def lookup(self, token: str) -> Principal | None:
        """The principal of a bearer token, or `None`. Every token is compared, each in
        constant time, so the time taken says nothing about which one (nearly) matched."""
        self._reload_if_changed()
        presented = token.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        with self._lock:
            entries = self._entries
        for secret, principal in entries:
            if hmac.compare_digest(secret, presented) and found is None:
                found = principal
        return found
