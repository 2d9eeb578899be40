"""No secret on screen: a password or other secret-bearing parameter of a store URL or a
libpq key=value string never appears in an error, through the API, the CLI or the hooks,
including where the driver echoes it (libpq quotes a bad percent-escape whole)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_support import console_script

from agentledger.errors import AgentLedgerError, ConfigurationError
from agentledger.stores.base import display_url, mask_secrets, open_store

SECRET = "S3cr3tValue"

# Each opens nothing for real: port 1 refuses at once, the others fail while parsing.
LEAKY_URLS = [
    pytest.param(
        f"postgresql://postgres@127.0.0.1:1/db?sslpassword={SECRET}&connect_timeout=2",
        id="sslpassword-query-parameter",
    ),
    pytest.param(
        f"postgresql://postgres@127.0.0.1:1/db?password={SECRET}&bogus=1", id="password-query"
    ),
    pytest.param(f"host=127.0.0.1 port=1 password={SECRET}", id="conninfo-key-value"),
    pytest.param(f"host=127.0.0.1 password='{SECRET} with spaces'", id="conninfo-quoted"),
    pytest.param(f"postgresql://postgres:My%{SECRET}@127.0.0.1:1/db", id="bad-percent-escape"),
    pytest.param(
        f"postgresql://postgres@127.0.0.1:1/db?pool_max_size=x&password={SECRET}",
        id="bad-option",
    ),
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_open_store_errors_never_show_a_secret(url: str) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(AgentLedgerError) as info:
        open_store(url)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_cli_errors_never_show_a_secret(url: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    result = subprocess.run(
        [console_script(), "--store", url, "sessions", "list"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_hook_errors_never_show_a_secret(url: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    env["AGENTLEDGER_STORE"] = url
    result = subprocess.run(
        [console_script(), "hook", "pre-delegate"],
        input='{"agent_name": "a"}', capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=env,
    )
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr
    assert "***" in json.loads(result.stdout)["message"]


def test_unknown_scheme_masks_a_conninfo_string() -> None:
    with pytest.raises(ConfigurationError, match="unknown store URL scheme") as info:
        open_store(f"host=db user=ada password={SECRET} sslpassword=other{SECRET}")
    assert SECRET not in str(info.value)
    assert "host=db user=ada" in str(info.value)  # the rest stays to help find the mistake


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"postgresql://ada:{SECRET}@db/x?sslpassword={SECRET}&sslmode=require",
         "postgresql://ada:***@db/x?sslpassword=***&sslmode=require"),
        (f"host=db password={SECRET} port=5", "host=db password=*** port=5"),
        (f"host=db password = '{SECRET} \\' x' port=5", "host=db password = *** port=5"),
        (f"cannot open postgresql://u@h/x?password={SECRET}: refused",
         "cannot open postgresql://u@h/x?password=***: refused"),
        (f"bad option in '(sqlite:///x.db?api_key={SECRET})'",
         "bad option in '(sqlite:///x.db?api_key=***)'"),
        ("connection to server at \"db\" failed", "connection to server at \"db\" failed"),
        ("sqlite:///x.db?durability=normal", "sqlite:///x.db?durability=normal"),
    ],
)
def test_mask_secrets(text: str, shown: str) -> None:
    assert mask_secrets(text) == shown


def test_display_url_masks_every_secret_parameter() -> None:
    shown = display_url(f"postgresql://ada@db/x?sslpassword={SECRET}&sslmode=require")
    assert shown == "postgresql://ada@db/x?sslpassword=***&sslmode=require"
    assert display_url(f"host=db password={SECRET}") == "host=db password=***"


def test_a_remembered_secret_is_masked_wherever_the_driver_echoes_it() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigurationError) as info:
        open_store(f"postgresql://postgres:My%{SECRET}X@127.0.0.1:1/db")
    # libpq's own words quote the token whole; it is masked, the explanation kept
    assert f"My%{SECRET}X" not in str(info.value)
    assert "invalid percent-encoded token" in str(info.value)
    assert mask_secrets(f'token: "My%{SECRET}X"') == 'token: "***"'
