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
    `_ids`: any string of 1-512 characters is a session id (`/`, spaces, `..`, Unicode),
        read back exactly; ids differing only by case or Unicode form are two sessions;
        NUL and other control characters are refused.
    `_appends`: atomicity, versions, writers in threads.
    `_processes`: 8 processes × 500 appends to one session, with and without
        `expected_version`: each append lands exactly once or raises `ConcurrencyError`;
        8 processes continuing a new user's session at once make exactly one.
    `_crash`: writers killed with SIGKILL at random points, 50 times per store: every
        acknowledged write survives, no append lands in part (`benchmarks/crash_soak.py` runs
        the same rounds for longer).
    `_reads`: events, listing, cursors.
    `_keys`: idempotency keys: a retried batch writes nothing and returns the stored
        events (even after the session moved on), a clashing key writes nothing
        (`DuplicateEventKeyError`); `get_event`, reads by keys, by key prefix (the latest of
        a namespace with `last`) and by `data_match`.
    `_ordering`: events within a time window (`after_timestamp`, `before_timestamp`);
        sessions listed in every `order`, each page once, by cursor and `iter_sessions`.
    `_bad_input`: values JSON cannot hold, oversized events; typed errors, nothing written.
    `_scoped`: `app:`, `user:` and `temp:` state.
    `_scoped_api`: `app:`/`user:` state read and changed without a session
        (`get_scoped_state`, `update_scoped_state`), outliving a user's last session.
    `_transfer`: export, import and copy between stores, exact to the hash; writing
        stored events exactly (`import_events`).
    `_feed`: the store-wide event feed: commit order, no failed or deleted events, a
        follower reading beside concurrent writers never skips one.
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
    `_erase`: `erase_events` empties payloads and keeps headers, records an `events_erased`
        event, leaves the projection as it was; `truncate_before` drops a prefix and keeps
        the session; both verify afterwards, go on after a reopen, refuse bad calls
        changing nothing; `compact()` keeps everything readable.
    `_fork_rewind`: `fork_session` copies a prefix of a history into a new session with
        its own chain and its lineage, leaving the source as it was; `rewind` returns the
        projection to an earlier seq (rewinds over rewinds included) with the events kept,
        `read_events(effective=True)` leaves the undone ones out, and a rewind with `then`
        lands whole or not at all.
    `_plugins`: a plugin's `before_append` refuses an append (`PluginRejectedError`
        naming the plugin), fails (`PluginError`) or transforms its events, on `append`
        and `create_session`: a refused or failed write leaves nothing, a transformed one
        stores (and verifies) what the plugin made. The store is opened with
        `plugins=[CONFORMANCE_PLUGIN]`; a store served by another process must run
        `ConformancePlugin` in its server.

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
from agentledger.testing._erase import EraseConformance
from agentledger.testing._feed import FeedConformance
from agentledger.testing._fork_rewind import ForkRewindConformance
from agentledger.testing._ids import SessionIdConformance
from agentledger.testing._integrity import IntegrityConformance
from agentledger.testing._keys import KeyConformance
from agentledger.testing._lifecycle import FakeClock, LifecycleConformance
from agentledger.testing._nulls import NullStateConformance
from agentledger.testing._opening import OpeningConformance
from agentledger.testing._ordering import OrderingConformance
from agentledger.testing._plugins import CONFORMANCE_PLUGIN, ConformancePlugin, PluginConformance
from agentledger.testing._processes import ProcessConformance
from agentledger.testing._properties import PropertyConformance
from agentledger.testing._reads import ReadConformance
from agentledger.testing._scoped import ScopedStateConformance
from agentledger.testing._scoped_api import ScopedStateApiConformance
from agentledger.testing._sessions import SessionConformance
from agentledger.testing._state_conflicts import StateConflictConformance
from agentledger.testing._state_ops import StateOpsConformance
from agentledger.testing._stateful import StatefulConformance
from agentledger.testing._transfer import TransferConformance

__all__ = [
    "CONFORMANCE_PLUGIN",
    "AppendConformance",
    "BadInputConformance",
    "ConformanceBase",
    "ConformancePlugin",
    "ContinuationConformance",
    "CrashConformance",
    "DamageConformance",
    "EraseConformance",
    "FakeClock",
    "FeedConformance",
    "ForkRewindConformance",
    "IntegrityConformance",
    "KeyConformance",
    "LifecycleConformance",
    "NullStateConformance",
    "OpeningConformance",
    "OrderingConformance",
    "PluginConformance",
    "ProcessConformance",
    "PropertyConformance",
    "ReadConformance",
    "ScopedStateApiConformance",
    "ScopedStateConformance",
    "SessionConformance",
    "SessionIdConformance",
    "StatefulConformance",
    "StateConflictConformance",
    "StateOpsConformance",
    "StoreConformance",
    "StoreFactory",
    "TransferConformance",
]


class StoreConformance(
    SessionConformance,
    SessionIdConformance,
    AppendConformance,
    ProcessConformance,
    CrashConformance,
    ReadConformance,
    KeyConformance,
    OrderingConformance,
    BadInputConformance,
    ScopedStateConformance,
    ScopedStateApiConformance,
    StateConflictConformance,
    StateOpsConformance,
    NullStateConformance,
    PropertyConformance,
    StatefulConformance,
    LifecycleConformance,
    OpeningConformance,
    ContinuationConformance,
    IntegrityConformance,
    DamageConformance,
    TransferConformance,
    FeedConformance,
    EraseConformance,
    ForkRewindConformance,
    PluginConformance,
):
    """The whole store contract; subclass it and provide a `store_url` fixture."""
