"""What the SQL stores' schema tests share: a check that reopening a store at the current
schema version runs no migration again."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from agentledger.testing import StoreFactory

__all__ = ["SpyMigrations", "check_reopening_does_not_rerun_migrations"]


class SpyMigrations(list[list[str]]):
    """`MIGRATIONS` that records which versions `setup()` applies."""

    def __init__(self, migrations: list[list[str]]) -> None:
        super().__init__(migrations)
        self.applied: list[int] = []

    def __getitem__(self, index: Any) -> Any:
        self.applied.append(index)
        return super().__getitem__(index)


def check_reopening_does_not_rerun_migrations(
    make: StoreFactory, module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new store applies migrations 1..SCHEMA_VERSION once; reopening applies none and
    keeps the data. `module` holds the store's `MIGRATIONS` and `SCHEMA_VERSION`."""
    spy = SpyMigrations(module.MIGRATIONS)
    monkeypatch.setattr(module, "MIGRATIONS", spy)
    store = make()
    assert spy.applied == list(range(1, module.SCHEMA_VERSION + 1))
    store.create_session(app_name="demo", user_id="ada", session_id="kept")
    store.close()
    spy.applied.clear()
    reopened = make()
    assert spy.applied == []
    assert reopened.get_session("kept").version == 1
