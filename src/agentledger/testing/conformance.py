"""The store conformance suite: every check of the store contract, for any store.

Each backend shipped with agentledger runs it (`tests/test_conformance.py`), and so can a
third-party store. Subclass `StoreConformance` in a test module (its name must start with
`Test` for pytest to collect it) and provide a `store_url` fixture: the URL of a fresh,
empty store for one test, which `open_store(url)` can open.

Example:
    ```python
    # tests/test_my_store.py
    import pytest

    from agentledger.testing import StoreConformance


    class TestMyStore(StoreConformance):
        child_imports = ("my_store",)  # registers the "mystore" scheme on import

        @pytest.fixture
        def store_url(self, tmp_path):
            return f"mystore:///{tmp_path}/data"
    ```

The suite opens stores through the `make_store` fixture, a `StoreFactory`: `make_store()`
opens the store on that URL (again, for the checks that close and reopen it), and
`make_store(max_event_bytes=1024)` passes options to `open_store`. A store `open_store`
cannot build overrides `StoreFactory.open` and the `make_store` fixture. The `store` fixture
is `make_store()`. Stores opened through the factory are closed after each test.

Checks skipped unless the store declares them in `store.capabilities`:
    `persistent`: data survives `close()` and reopening; with `multi_process` too, every
        acknowledged write survives `kill -9` of the process that made it.
    `multi_process`: several processes write to one store at once. Each child reopens the
        store with `open_store(url)` after importing `child_imports`; the start method is
        `start_method`, `"spawn"` by default. Choose `"fork"` where the platform has it
        (`tests/test_conformance.py` does): the crash check starts 50 writers, and a forked
        child starts in milliseconds instead of importing everything again.

The suite needs the test extra (`pip install 'agentledger[test]'`: pytest and hypothesis). It
is split by topic:
    `_sessions`: create, delete, reopen.
    `_appends`: atomicity, versions, writers in threads.
    `_processes`: 8 processes × 500 appends to one session, with and without
        `expected_version`: each append lands exactly once or raises `ConcurrencyError`;
        8 processes continuing a new user's session at once make exactly one.
    `_crash`: writers killed with SIGKILL at random points, 50 times per store: every
        acknowledged write survives, no append lands in part (`benchmarks/crash_soak.py` runs
        the same rounds for longer).
    `_reads`: events, listing, cursors.
    `_ordering`: events within a time window (`after_timestamp`, `before_timestamp`);
        sessions listed in every `order`, each page once, by cursor and `iter_sessions`.
    `_bad_input`: values JSON cannot hold, oversized events; typed errors, nothing written.
    `_scoped`: `app:`, `user:` and `temp:` state.
    `_scoped_api`: `app:`/`user:` state read and changed without a session
        (`get_scoped_state`, `update_scoped_state`), outliving a user's last session.
    `_state_conflicts`: `expected_state`.
    `_state_ops`: state operations applied at commit: every scope, all or nothing, no
        lost add from threads or processes, lists longer than one event.
    `_properties`: the projection of the ledger equals the stored snapshot (hypothesis).
    `_stateful`: a hypothesis state machine creates, appends, reads, lists, deletes and cleans
        up (`SessionManager.cleanup`) on the store and on a `MemoryStore`, and checks that
        they agree call for call.
    `_continuation`: continuing a user's most recent active session of an agent, or
        creating one, without duplicates when callers race (`continue_or_create_session`);
        a caller-chosen session id is created once by racing threads.
    `_lifecycle`: statuses, phases, the resume policy, finalize, retention and stats through
        `SessionManager`.
    `_opening`: an unknown URL option is a `ConfigurationError` naming it; `read_only=True`
        reads and refuses every write (`ReadOnlyStoreError`); neither `read_only=True` nor
        `create=False` creates a missing store (`StoreNotFoundError`).
    `_integrity`: time never runs backwards in a session (a clock going back, an earlier
        timestamp from the caller); every session's hash chain verifies after normal use,
        and `verify_session` reports the same `last_hash` as `chain_of(events)`.
    `_damage`: one session's event changed behind the store's back (`damage_event`): that
        session's ledger reads raise `CorruptedSessionError` and `verify_session` finds
        it; listing, stats, clean-up, the other sessions and deleting the damaged one
        keep working. Skipped for a store `damage_event` cannot reach (override
        `DamageConformance.damage_event`).
`AsyncStoreConformance` (`_async`) is the same suite on the async API: every check above
runs through `open_async_store(url)` (a `SyncFacade` runs each coroutine on an event loop
thread), the multi-process ones aside (their writers are child processes with sync stores),
plus checks of many coroutines appending to one session at once and of cancelled appends
(all or nothing). Subclass it as `StoreConformance`, with the same `store_url` fixture.
The checks that read the time open the store with `make_store(clock=FakeClock())` (and one
with `lifecycle=`); they are skipped unless the store declares `injectable_clock` (a store
served by another process, such as `http://`, takes its clock and phases from its server).
A store must accept the `read_only` and `create` options.
"""

from __future__ import annotations

from agentledger.testing._appends import AppendConformance
from agentledger.testing._bad_input import BadInputConformance
from agentledger.testing._base import ConformanceBase, StoreFactory
from agentledger.testing._continuation import ContinuationConformance
from agentledger.testing._crash import CrashConformance
from agentledger.testing._damage import DamageConformance
from agentledger.testing._integrity import IntegrityConformance
from agentledger.testing._lifecycle import FakeClock, LifecycleConformance
from agentledger.testing._opening import OpeningConformance
from agentledger.testing._ordering import OrderingConformance
from agentledger.testing._processes import ProcessConformance
from agentledger.testing._properties import PropertyConformance
from agentledger.testing._reads import ReadConformance
from agentledger.testing._scoped import ScopedStateConformance
from agentledger.testing._scoped_api import ScopedStateApiConformance
from agentledger.testing._sessions import SessionConformance
from agentledger.testing._state_conflicts import StateConflictConformance
from agentledger.testing._state_ops import StateOpsConformance
from agentledger.testing._stateful import StatefulConformance

__all__ = [
    "AppendConformance",
    "BadInputConformance",
    "ConformanceBase",
    "ContinuationConformance",
    "CrashConformance",
    "DamageConformance",
    "FakeClock",
    "IntegrityConformance",
    "LifecycleConformance",
    "OpeningConformance",
    "OrderingConformance",
    "ProcessConformance",
    "PropertyConformance",
    "ReadConformance",
    "ScopedStateApiConformance",
    "ScopedStateConformance",
    "SessionConformance",
    "StatefulConformance",
    "StateConflictConformance",
    "StateOpsConformance",
    "StoreConformance",
    "StoreFactory",
]


class StoreConformance(
    SessionConformance,
    AppendConformance,
    ProcessConformance,
    CrashConformance,
    ReadConformance,
    OrderingConformance,
    BadInputConformance,
    ScopedStateConformance,
    ScopedStateApiConformance,
    StateConflictConformance,
    StateOpsConformance,
    PropertyConformance,
    StatefulConformance,
    LifecycleConformance,
    OpeningConformance,
    ContinuationConformance,
    IntegrityConformance,
    DamageConformance,
):
    """The whole store contract; subclass it and provide a `store_url` fixture."""
