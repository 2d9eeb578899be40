"""Store URLs: parsing errors are typed, and printed URLs never show a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.errors import ConfigurationError
from agentledger.stores.base import display_url, open_store


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ada:s3cret@db:5432/x?schema=a", "postgresql://ada:***@db:5432/x?schema=a"),
        ("postgresql://ada@db/x?password=s3cret&sslmode=require",
         "postgresql://ada@db/x?password=***&sslmode=require"),
        ("postgresql://[bad/db", "postgresql://***"),
        ("sqlite:///x.db?durability=normal", "sqlite:///x.db?durability=normal"),
    ],
)
def test_display_url_hides_passwords(url: str, shown: str) -> None:
    assert display_url(url) == shown
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://[bad/db",
        "file://[x/y",
        "nope://x",
        "file://{tmp}/s?lock_timeout=nan",
        "file://{tmp}/s?lock_timeout=inf",
        "sqlite:///{tmp}/x.db?busy_timeout=soon",
    ],
)
def test_bad_store_urls_are_configuration_errors(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store(url.format(tmp=tmp_path))
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("sqlite:///{tmp}/x.db?bogus=1", "durability"),
        ("file://{tmp}/s?bogus=1", "lock_timeout"),
        ("memory://?bogus=1", "max_event_bytes"),
        ("postgresql://ada:s3cret@127.0.0.1:1/x?bogus=1", "sslmode"),
    ],
)
def test_an_unknown_option_names_it_and_lists_the_valid_ones(
    url: str, valid: str, tmp_path: Path
) -> None:
    """PostgreSQL passes libpq's own parameters on: only a name that is neither ours nor
    libpq's is refused (before any connection is tried)."""
    with pytest.raises(ConfigurationError, match="'bogus'") as info:
        open_store(url.format(tmp=tmp_path))
    assert valid in str(info.value) and "read_only" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
