"""The `redact` plugin: each secret kind, key names, configuration, and the raw bytes each
store writes (SQLite database and WAL, the file store's folder, a PostgreSQL dump) hold no
secret, where the same writes without the plugin do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentledger import ConfigurationError, NewEvent, SessionManager, open_store
from agentledger.plugins.redact import KEYS_ENV, PATTERNS_ENV, RedactPlugin, from_environment
from agentledger.stores.base import SessionStore

# Fake secrets of every kind, each unique so a grep of raw bytes finds it or not.
SECRETS: dict[str, str] = {
    "openai_api_key": "sk-proj-Zq81mXa0TbVw9c2LkPfe7RuY4hNd",
    "anthropic_api_key": "sk-ant-api03-Hj4kLm8nQp2rSt6vWx0yZa3bCd5eFg",
    "openrouter_api_key": "sk-or-v1-0f9e8d7c6b5a49382716a5b4c3d2e1f0aa11bb22cc33dd44",
    "aws_access_key_id": "AKIAQX7ZT3MPLE2KEYID",
    "github_token": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "slack_token": "xoxb-240967158023-Kp9QzXw3VtY7",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEtNDIifQ.q3Vz8Kd0Lx2mNf7Rt1Yw",
}
AWS_SECRET = "wJalrXUtnFEMIxK7MDENGxbPxRfiCYzq9Unique1"  # 40 characters
BEARER = "opaque-bearer-Tk7Qm2Xz"
PEM_BODY = "MIIEowIBAAKCAQEAx9QuniquePemBodyLine0123456789abcdef"
URL_PASSWORD = "s3cr3t-Url-Pw0rd"
KEYED = "hunter2-keyed-value-77"
KEYED_NUMBER = 918273645501

EVERY_SECRET = [*SECRETS.values(), AWS_SECRET, BEARER, PEM_BODY, URL_PASSWORD, KEYED,
                str(KEYED_NUMBER)]


def secret_text() -> str:
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
    return "\n".join([
        *(f"{kind}: {value}" for kind, value in SECRETS.items()),
        f"aws_secret_access_key = {AWS_SECRET}",
        f"Authorization: Bearer {BEARER}",
        pem,
        f"db at postgresql://bob:{URL_PASSWORD}@db.internal:5432/app",
    ])


def write_secrets(store: SessionStore) -> str:
    """Write every secret every way it can get in: metadata and state on create, message
    text, nested tool arguments, state deltas and state operations."""
    manager = SessionManager(store)
    session = manager.create_session(
        "agent", app_name="app", user_id="u",
        metadata={"password": KEYED, "note": secret_text()},
        state={"api_key": KEYED_NUMBER},
    )
    store.append(session.id, [
        NewEvent(type="user_message", author="user", data={"text": secret_text()}),
        NewEvent(type="tool_call", author="agent", data={
            "name": "fetch", "arguments": {"headers": [{"Authorization": f"Bearer {BEARER}"}],
                                           "url": f"https://bob:{URL_PASSWORD}@h/x"}}),
        NewEvent(type="tool_result", author="tool", data={"result": "ok"},
                 state_delta={"user:api_key": KEYED, "last": SECRETS["github_token"]},
                 state_ops=[{"op": "add", "path": "/notes", "value": [SECRETS["jwt"]]}]),
    ])
    manager.record_interaction(session.id, f"my key is {SECRETS['openai_api_key']}", "noted")
    # shared state changed without an event
    store.update_scoped_state("app", "u", {"user:password": KEYED, "app:note": f"Bearer {BEARER}"})
    return session.id


def assert_no_secret(blob: bytes, where: str) -> None:
    found = [s for s in EVERY_SECRET if s.encode() in blob]
    assert not found, f"{where} holds {found}"


def assert_every_secret(blob: bytes, where: str) -> None:
    """The control: without the plugin the same writes do store the secrets, so the grep
    would find them."""
    missing = [s for s in EVERY_SECRET if s.encode() not in blob]
    assert not missing, f"{where} lacks {missing} (the grep would prove nothing)"


def folder_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# -- the raw bytes of each store -------------------------------------------------------------


@pytest.mark.parametrize("plugins", [["redact"], []], ids=["redact", "control"])
def test_sqlite_database_and_wal_hold_no_secret(tmp_path: Path, plugins: list[str]) -> None:
    db = tmp_path / "x.db"
    check = assert_no_secret if plugins else assert_every_secret
    with open_store(f"sqlite:///{db}", plugins=plugins) as store:
        sid = write_secrets(store)
        wal = Path(f"{db}-wal")
        assert wal.exists() and wal.stat().st_size > 0  # the appends are in the WAL now
        check(db.read_bytes() + wal.read_bytes(), "the SQLite database and WAL")
        assert store.verify_session(sid).ok
    check(folder_bytes(tmp_path), "the SQLite files after close")


@pytest.mark.parametrize("plugins", [["redact"], []], ids=["redact", "control"])
def test_file_store_folder_holds_no_secret(tmp_path: Path, plugins: list[str]) -> None:
    with open_store(f"file://{tmp_path}/sessions", plugins=plugins) as store:
        sid = write_secrets(store)
        assert store.verify_session(sid).ok
    (assert_no_secret if plugins else assert_every_secret)(
        folder_bytes(tmp_path), "the file store's folder"
    )


@pytest.mark.parametrize("plugins", [["redact"], []], ids=["redact", "control"])
def test_postgres_dump_holds_no_secret(postgres_url: str, plugins: list[str]) -> None:
    if subprocess.run(["which", "pg_dump"], capture_output=True).returncode != 0:
        pytest.skip("pg_dump is not installed")
    with open_store(postgres_url, plugins=plugins) as store:
        sid = write_secrets(store)
        assert store.verify_session(sid).ok
    base, _, schema = postgres_url.rpartition("schema=")
    parts = urlsplit(base.rstrip("?&"))
    dump = subprocess.run(
        ["pg_dump", "--schema", schema, base.rstrip("?&")],
        capture_output=True, timeout=120, env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    assert dump.returncode == 0, dump.stderr.decode()
    assert b"CREATE TABLE" in dump.stdout and parts.scheme.startswith("postgres")
    (assert_no_secret if plugins else assert_every_secret)(dump.stdout, "the PostgreSQL dump")


# -- what is replaced, and what is not ---------------------------------------------------------


def test_every_kind_is_named_in_its_placeholder() -> None:
    text = RedactPlugin().redact_text(secret_text())
    for kind in SECRETS:
        assert f"{kind}: [REDACTED:{kind}]" in text
    assert "aws_secret_access_key = [REDACTED:aws_secret_access_key]" in text
    assert "Authorization: Bearer [REDACTED:bearer_token]" in text
    assert "[REDACTED:pem_private_key]" in text and "BEGIN RSA" not in text
    assert "postgresql://bob:[REDACTED:url_password]@db.internal:5432/app" in text
    for secret in EVERY_SECRET:
        assert secret not in text


def test_values_under_secret_keys_are_replaced_whatever_they_are() -> None:
    plugin = RedactPlugin()
    value = {
        "Password": "x", "API-Key": 12, "authorization": {"scheme": "basic", "v": "abc"},
        "client_secret": ["a"], "user:api_key": "k", "password_hint": "fine", "token": "Hello",
        "empty": None, "api_key": None, "nested": [{"passwd": "y"}],
    }
    assert plugin.redact(value) == {
        "Password": "[REDACTED:password]", "API-Key": "[REDACTED:api_key]",
        "authorization": "[REDACTED:authorization]", "client_secret": "[REDACTED:client_secret]",
        "user:api_key": "[REDACTED:api_key]", "password_hint": "fine", "token": "Hello",
        "empty": None, "api_key": None, "nested": [{"passwd": "[REDACTED:passwd]"}],
    }


def test_ordinary_text_is_left_alone_and_not_copied() -> None:
    plugin = RedactPlugin()
    value: dict[str, Any] = {
        "text": "ask the sky-blue desk; see https://example.com/a:b@c? no: http://host/x",
        "usage": {"input_tokens": 12, "output_tokens": 3},
        "words": ["sk-short", "eyJ", "Bearer", "AKIA1234", "a bearer of news"],
    }
    assert plugin.redact(value) is value


def test_keys_and_patterns_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = RedactPlugin(keys=["ssn"], patterns={"card": r"\b(?:\d{4}[ -]){3}\d{4}\b",
                                                  "pin": r"PIN (?P<secret>\d{4})"})
    assert plugin.redact({"ssn": "1", "password": "stays"}) == {
        "ssn": "[REDACTED:ssn]", "password": "stays"
    }
    assert plugin.redact_text("card 4111 1111 1111 1111, PIN 1234") == (
        "card [REDACTED:card], PIN [REDACTED:pin]"
    )
    assert plugin.redact_text(SECRETS["github_token"]) == "[REDACTED:github_token]"  # built-ins stay
    with pytest.raises(ConfigurationError, match="bad pattern"):
        RedactPlugin(patterns={"x": "("})
    with pytest.raises(ConfigurationError, match="must be a word"):
        RedactPlugin(patterns={"a b": "x"})

    monkeypatch.setenv(KEYS_ENV, "ssn, Member-ID")
    monkeypatch.setenv(PATTERNS_ENV, '{"ticket": "TICKET-\\\\d+"}')
    configured = from_environment()
    assert configured.redact({"member_id": 5, "password": "p", "t": "see TICKET-42"}) == {
        "member_id": "[REDACTED:member_id]", "password": "[REDACTED:password]",
        "t": "see [REDACTED:ticket]",
    }
    monkeypatch.setenv(PATTERNS_ENV, "[1]")
    with pytest.raises(ConfigurationError, match=PATTERNS_ENV):
        from_environment()


def test_redaction_runs_after_the_other_plugins() -> None:
    """`redact` is trylast: a secret another plugin adds is caught too."""
    from agentledger import hookimpl
    from agentledger.plugins import enhance

    class Leaky:
        name = "leaky"

        @hookimpl
        def before_append(self, events: list[NewEvent]) -> None:
            events[:] = [enhance(e, "leaky", {"copied": f"Bearer {BEARER}"}) for e in events]

    with open_store("memory://", plugins=["redact", Leaky()]) as store:
        sid = store.create_session(app_name="a", user_id="u").id
        (event,) = store.append(sid, [NewEvent(type="user_message", data={"text": "hi"})])
    assert event.data["plugins"] == {"leaky": {"copied": "Bearer [REDACTED:bearer_token]"}}
