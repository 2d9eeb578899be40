"""The `redact` plugin: secrets never reach the store.

Before every write (`before_append`, so also the `session_created` event of a new session;
`before_state_update` for shared state changed without an event), it walks each event's `data`, `state_delta` and `state_ops` and replaces:

- every text matching a secret pattern (`PATTERNS`: OpenAI, Anthropic and OpenRouter API
  keys, AWS access key ids and secret keys, GitHub and Slack tokens, JWTs, bearer tokens,
  PEM private keys, passwords inside URLs) with `"[REDACTED:<kind>]"`; only the secret
  itself is replaced (`"Authorization: Bearer [REDACTED:bearer_token]"`);
- the whole value under a secret key name (`DEFAULT_KEYS`: `password`, `api_key`,
  `authorization`, ...; compared ignoring case, `-` and `_`) with `"[REDACTED:<key>]"`,
  whatever the value is (a string, a number, an object).

Enable it with `open_store(url, plugins=["redact"])`, `agentledger --plugin redact ...` or
`AGENTLEDGER_PLUGINS=redact`; configure it in code (`RedactPlugin(extra_keys=...,
patterns=...)`) or, when enabled by name, with `$AGENTLEDGER_REDACT_KEYS` (more key names,
separated by commas) and `$AGENTLEDGER_REDACT_PATTERNS` (a JSON object: kind -> regular
expression; a group named `secret` limits the replacement to that group).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from agentledger.core.events import NewEvent
from agentledger.errors import ConfigurationError
from agentledger.plugins.specs import hookimpl

__all__ = [
    "DEFAULT_KEYS",
    "KEYS_ENV",
    "PATTERNS",
    "PATTERNS_ENV",
    "RedactPlugin",
    "from_environment",
]

KEYS_ENV = "AGENTLEDGER_REDACT_KEYS"
PATTERNS_ENV = "AGENTLEDGER_REDACT_PATTERNS"

PATTERNS: dict[str, str] = {
    "pem_private_key": (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    ),
    "anthropic_api_key": r"\bsk-ant-[A-Za-z0-9_-]{20,}",
    "openrouter_api_key": r"\bsk-or-(?:v1-)?[A-Za-z0-9_-]{20,}",
    "openai_api_key": r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
    "aws_access_key_id": r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[0-9A-Z]{16}\b",
    "aws_secret_access_key": (
        r"(?i:aws.{0,24}?(?:secret|key)[\w\s\"']{0,24}?[=:]\s*[\"']?)"
        r"(?P<aws_secret_access_key>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
    ),
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
    "slack_token": r"\b(?:xox[abposr]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})",
    "slack_webhook": r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    "jwt": r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
    "bearer_token": r"(?i:\bbearer\s+)(?P<bearer_token>[A-Za-z0-9._~+/-]{8,}=*)",
    "url_password": (
        r"\b[a-zA-Z][\w+.-]*://[^\s/?#@:]+:(?P<url_password>[^\s/?#@]+)@"
    ),
}
"""The built-in secret patterns: kind -> regular expression. A pattern with a group named
like its kind replaces that group only; others replace the whole match. Tried together;
where two match at one place, the first listed wins (a JWT inside a bearer header is a
bearer token)."""

DEFAULT_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "authorization",
        "private_key",
        "aws_secret_access_key",
        "cookie",
        "set_cookie",
    }
)
"""Key names whose values are always redacted (normalized: lower case, `-` as `_`). The
bare word `token` is not among them: model output streams call text `token`."""


_NEEDLES = (
    "sk-", "akia", "asia", "abia", "acca", "aroa", "aida", "ghp_", "gho_", "ghu_", "ghs_",
    "ghr_", "github_pat_", "xox", "xapp-", "eyj", "bearer", "aws", "://", "-----begin",
)


def _normalize(key: str) -> str:
    return key.lower().replace("-", "_")


class RedactPlugin:
    """Replace secrets in events before they are written (see the module docstring).

    Args:
        keys: Key names to redact; `None` uses `DEFAULT_KEYS`.
        extra_keys: More key names, added to `keys`.
        patterns: More secret patterns, kind -> regular expression (a group named `secret`
            or named like the kind limits the replacement to it); tried after the
            built-in ones.

    Raises:
        ConfigurationError: A pattern that is not a valid regular expression, or a kind
            that is not a word (`[A-Za-z0-9_]+`).

    Example:
        >>> from agentledger import NewEvent, open_store
        >>> with open_store("memory://", plugins=[RedactPlugin()]) as store:
        ...     sid = store.create_session(app_name="demo", user_id="ada").id
        ...     event, = store.append(sid, [NewEvent(type="user_message",
        ...         data={"text": "my key is sk-proj-abcdefghijklmnopqrstuvwx"})])
        ...     event.data["text"]
        'my key is [REDACTED:openai_api_key]'
    """

    name = "redact"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        extra_keys: Iterable[str] = (),
        patterns: Mapping[str, str] | None = None,
    ) -> None:
        base = DEFAULT_KEYS if keys is None else {_normalize(k) for k in keys}
        self.keys: frozenset[str] = frozenset(base | {_normalize(k) for k in extra_keys})
        self.patterns: dict[str, str] = dict(PATTERNS)
        for kind, pattern in (patterns or {}).items():
            if not re.fullmatch(r"\w+", kind):
                raise ConfigurationError(f"redact: a pattern's kind must be a word, not {kind!r}")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(f"redact: bad pattern for {kind!r}: {exc}") from exc
            if "secret" in compiled.groupindex:
                pattern = pattern.replace("(?P<secret>", f"(?P<{kind}>", 1)
            self.patterns[kind] = pattern
        # Each kind's whole match is group k<i>; its inner group (if any) is named after it.
        alternatives = [f"(?P<k{i}>{p})" for i, p in enumerate(self.patterns.values())]
        try:
            self._regex = re.compile("|".join(alternatives))
        except re.error as exc:
            raise ConfigurationError(f"redact: patterns do not combine: {exc}") from exc
        self._kinds = list(self.patterns)
        self._outer = [self._regex.groupindex[f"k{i}"] for i in range(len(self._kinds))]
        self._inner = [self._regex.groupindex.get(kind) for kind in self._kinds]
        # A cheap pre-check (built-in patterns only: an extra pattern may need none of
        # these): every built-in pattern's match holds one of these needles, ignoring case.
        self._needles: tuple[str, ...] | None = None if patterns else _NEEDLES
        self._key_kinds: dict[str, str | None] = {}

    # -- the hook -----------------------------------------------------------------------

    @hookimpl(trylast=True)
    def before_append(self, events: list[NewEvent]) -> None:
        """Redact every event in place (runs after the other plugins, so it also sees
        what they added)."""
        for i, event in enumerate(events):
            data = self.redact(event.data)
            delta = self.redact(event.state_delta) if event.state_delta else event.state_delta
            ops = self.redact(event.state_ops) if event.state_ops else event.state_ops
            if data is not event.data or delta is not event.state_delta or ops is not event.state_ops:
                events[i] = event.model_copy(
                    update={"data": data, "state_delta": delta, "state_ops": ops}
                )

    @hookimpl(trylast=True)
    def before_state_update(self, delta: dict[str, Any]) -> None:
        """Redact a change of shared state made without an event, in place."""
        redacted = self.redact(delta)
        if redacted is not delta:
            delta.clear()
            delta.update(redacted)

    # -- redaction ----------------------------------------------------------------------

    def _replace(self, match: re.Match[str]) -> str:
        for k, outer in enumerate(self._outer):  # exactly one alternative matched
            start = match.start(outer)
            if start == -1:
                continue
            kind, inner = self._kinds[k], self._inner[k]
            if inner is not None and match.start(inner) != -1:
                whole = match.group(outer)
                a, b = match.start(inner) - start, match.end(inner) - start
                return f"{whole[:a]}[REDACTED:{kind}]{whole[b:]}"
            return f"[REDACTED:{kind}]"
        return match.group(0)  # pragma: no cover - some alternative always matched

    def redact_text(self, text: str) -> str:
        """Return `text` with every secret pattern's match replaced."""
        if self._needles is not None:
            low = text.lower()
            for needle in self._needles:
                if needle in low:
                    break
            else:
                return text
        return self._regex.sub(self._replace, text)

    def _key_kind(self, key: str) -> str | None:
        """The kind a key's value is redacted as (its normalized name), or `None`."""
        try:
            return self._key_kinds[key]
        except KeyError:
            pass
        name = _normalize(key)
        if name.startswith(("app:", "user:", "temp:")):
            name = name.split(":", 1)[1]
        kind = name if name in self.keys else None
        if len(self._key_kinds) < 4096:
            self._key_kinds[key] = kind
        return kind

    def redact(self, value: Any) -> Any:
        """Return `value` (JSON: dicts, lists, strings, scalars) with secrets replaced.

        Returns:
            The same object when nothing was redacted; otherwise a copy (containers that
            held a secret are copied, the rest shared).
        """
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            changed = False
            out: dict[Any, Any] = {}
            for key, item in value.items():
                kind = self._key_kind(key) if isinstance(key, str) else None
                if kind is not None:
                    new: Any = item if item is None else f"[REDACTED:{kind}]"
                elif isinstance(item, str):
                    new = self.redact_text(item)
                elif isinstance(item, dict | list):
                    new = self.redact(item)
                else:
                    new = item
                if new is not item and new != item:
                    changed = True
                out[key] = new
            return out if changed else value
        if isinstance(value, list):
            items = [self.redact(item) for item in value]
            if any(a is not b for a, b in zip(items, value, strict=True)):
                return items
            return value
        return value


def from_environment() -> RedactPlugin:
    """Build the `redact` plugin enabled by name, configured by `$AGENTLEDGER_REDACT_KEYS`
    (more key names, separated by commas) and `$AGENTLEDGER_REDACT_PATTERNS` (a JSON
    object, kind -> regular expression).

    Raises:
        ConfigurationError: `$AGENTLEDGER_REDACT_PATTERNS` is not a JSON object of strings,
            or holds a bad pattern.
    """
    keys = [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    raw = os.environ.get(PATTERNS_ENV, "").strip()
    patterns: dict[str, str] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{PATTERNS_ENV} is not JSON: {exc}") from exc
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ConfigurationError(
                f"{PATTERNS_ENV} must be a JSON object of kind -> regular expression"
            )
        patterns = loaded
    return RedactPlugin(extra_keys=keys, patterns=patterns or None)
