"""Conformance: the store and the memory store agree, whatever is done to them (hypothesis).

A `RuleBasedStateMachine` drives the store under test and a fresh `MemoryStore` (the model)
with the same calls: create sessions (caller-chosen ids from a pool of three, so ids collide
and deleted ids come back), append batches of every standard event type with state deltas
in every scope (`app:`, `user:`, `temp:`, own keys; `None` among the values, a value like
any other) and key removals (`state_remove`, present keys or not), right and wrong
`expected_version` and `expected_state`, lifecycle moves allowed and refused; change shared
state without a session (`update_scoped_state`, with nulls and removals); set a key to null
and remove it again, checked directly on the store under test; read events (`after`,
`limit`, `last`, `types`); append events with idempotency keys (new, retried with a stale
version, clashing, partial retries, repeated in a batch; the outcome decided from the
model's ledger) and read them back (`keys`, `key_prefix`, `data_match`, `get_event`); list
sessions (every filter, a bad cursor, walking the cursor page by page), delete,
`SessionManager.cleanup`, erase event payloads (`erase_events`: seqs held or not, the
`events_erased` records, an empty reason) and drop ledger prefixes (`truncate_before`:
before the ledger's start, within it, past its end). Each call must return the same on
both, or
raise the same exception type (`ConcurrencyError`s with the same versions). After every
step, `get_session` of every id and a one-per-page walk of all sessions must agree too.

Both stores read one `FakeClock`, moved by a drawn step (zero included, for equal
timestamps) before each write, so timestamps agree; events are compared without their `id`
(each store makes its own ULIDs). Hypothesis runs many examples against one store (the
test's store fixture): each example uses its own app names, starts with no sessions and
deletes its sessions when it ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentledger.core.events import Event, NewEvent
from agentledger.core.projection import project
from agentledger.core.session import DEFAULT_PHASES, FINAL_PHASES
from agentledger.errors import (
    AgentLedgerError,
    ConcurrencyError,
    DuplicateEventKeyError,
    SessionNotFoundError,
)
from agentledger.manager import SessionManager
from agentledger.stores.base import SessionStore
from agentledger.stores.memory import MemoryStore
from agentledger.testing._base import ConformanceBase, StoreFactory
from agentledger.testing._integrity import chain_of
from agentledger.testing._lifecycle import FakeClock

__all__ = ["StatefulConformance", "StoreComparison"]

T = TypeVar("T")

T0 = datetime(2026, 1, 8, 18, 5, 30, tzinfo=timezone.utc)
SESSION_IDS = ("s0", "S0", "t/1 x")
"""Ids that differ only by case, and one with `/` and a space: every store keeps them apart."""
APPS = ("a", "b")
USERS = ("ada", "bob")
AGENTS = (None, "helper", "critic")
PHASES = (*DEFAULT_PHASES, "nowhere")  # one phase no store knows
STATUSES = ("active", "suspended", "terminated", "paused")  # "paused" is not a status
TYPES = (
    "session_created",  # refused: create_session writes it
    "user_message",
    "agent_message",
    "tool_call",
    "tool_result",
    "final_output",
    "state_updated",
    "myplugin.metric",
)
STEPS = (
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(seconds=1),
    timedelta(minutes=5),
    timedelta(hours=2),
)
"""How far `tick` moves the clock; 0 makes equal timestamps (ties in list order) likely."""
_steps = st.sampled_from(STEPS)
EVENT_KEYS = ("k:0", "k:1", "k:2", "w:0", "w:1", "k")
"""The idempotency keys `keyed_append` draws from: few, so they are often stored already."""
AGES = (timedelta(0), timedelta(minutes=10), timedelta(hours=3), timedelta(days=1))
"""`cleanup` cut-offs: sessions idle longer than this go."""

_values = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "y", ""])
_keys = st.sampled_from(["a", "b", "app:x", "app:y", "user:x", "user:z", "temp:t"])
_deltas = st.dictionaries(_keys, _values, max_size=3)
_removals = st.lists(_keys, max_size=2)
"""Keys an event removes (`state_remove`); those its delta sets are left out."""
_data = st.dictionaries(st.sampled_from(["text", "n", "k"]), _values, max_size=2)
_timestamps = st.none() | st.sampled_from(
    [
        T0 - timedelta(days=1),
        T0 + timedelta(hours=1),
        datetime(2026, 1, 9, 3, 0, tzinfo=timezone(timedelta(hours=5))),
    ]
)
"""Mostly `None` (the store's clock stamps it); sometimes a given time, in the past too."""


_op_keys = st.sampled_from(["a", "l", "app:x", "user:x", "user:l", "temp:t"])
_ops = st.lists(
    st.one_of(
        st.builds(lambda k, n: {"op": "increment", "path": f"/{k}", "value": n},
                  _op_keys, st.integers(-2, 2)),
        st.builds(lambda k: {"op": "setdefault", "path": f"/{k}", "value": []}, _op_keys),
        st.builds(lambda k, v: {"op": "add", "path": f"/{k}/-", "value": v}, _op_keys, _values),
        st.builds(lambda k: {"op": "remove", "path": f"/{k}/0"}, _op_keys),
        st.builds(lambda k, v: {"op": "test", "path": f"/{k}", "value": v}, _op_keys, _values),
    ),
    max_size=3,
)
"""State operations: they often fit (counting, adding to lists) and sometimes do not (a
missing index, a failed test, counting a string), which must refuse the append on both."""


INVOCATIONS = (None, None, "i1", "i2")
"""Invocation ids plain events carry, so `rewind(before_invocation=...)` finds some."""


def _event(
    kind: str,
    data: dict[str, Any],
    delta: dict[str, Any],
    when: datetime | None,
    ops: list[dict[str, Any]] | None = None,
    remove: list[str] | None = None,
    invocation: str | None = None,
) -> NewEvent:
    return NewEvent(
        type=kind, author="agent", data=data, state_delta=delta, state_ops=ops or [],
        state_remove=[k for k in remove or [] if k not in delta], timestamp=when,
        invocation_id=invocation,
    )


_KINDS = ("plain",) * 8 + ("phase",) * 3 + ("status",) * 2 + (
    "error",
    "metadata",
    "finalize",
    "outcome",
)
"""Kinds of step, weighted so that most appends go through and a session is not terminated
(after which every append is refused) too soon."""


@st.composite
def _one_step(draw: st.DrawFn) -> list[NewEvent]:
    """One or two events: a plain event or a lifecycle move (allowed or not)."""
    delta = draw(_deltas)
    when = draw(_timestamps)
    kind = draw(st.sampled_from(_KINDS))
    if kind == "plain":
        return [
            _event(
                draw(st.sampled_from(TYPES)), draw(_data), delta, when, draw(_ops),
                draw(_removals), draw(st.sampled_from(INVOCATIONS)),
            )
        ]
    if kind == "phase":
        data: dict[str, Any] = {"to": draw(st.sampled_from(PHASES))}
        if draw(st.booleans()):
            data["resume_ready"] = draw(st.booleans())
        return [_event("phase_changed", data, delta, when)]
    if kind == "finalize":  # the allowed way to a final phase
        outcome = draw(st.sampled_from(sorted(FINAL_PHASES)))
        summary = draw(st.none() | st.just("done"))
        return [
            _event("phase_changed", {"to": outcome}, delta, when),
            _event("session_finalized", {"outcome": outcome, "summary": summary}, {}, when),
        ]
    if kind == "status":
        return [_event("status_changed", {"to": draw(st.sampled_from(STATUSES))}, delta, when)]
    if kind == "error":
        return [_event("error", {"message": draw(st.sampled_from(["boom", "oops"]))}, delta, when)]
    if kind == "metadata":
        update = draw(st.dictionaries(st.sampled_from(["m", "n"]), _values | _data, max_size=2))
        return [_event("metadata_updated", {"metadata": update}, delta, when)]
    outcome = draw(st.sampled_from([*sorted(FINAL_PHASES), "won"]))
    return [_event("session_finalized", {"outcome": outcome}, delta, when)]  # without the phase


_choices = st.integers(0, 9)
"""Which session a call is about; see `StoreComparison._pick`."""

batches = st.lists(_one_step(), max_size=3).map(lambda steps: [e for s in steps for e in s])
"""The events of one append: up to three steps (a finalize is two events), possibly none."""


def _events(events: list[Event]) -> list[dict[str, Any]]:
    """Events as comparable values, without `id` (each store makes its own ULIDs), nor the
    source's chain hash a `session_forked` event records (the hash covers those ids)."""
    values = [e.model_dump(exclude={"id"}) for e in events]
    for value in values:
        if value["type"] == "session_forked":
            value["data"].pop("source_hash", None)
    return values


class _Raised:
    """An exception a call raised, as an outcome to compare."""

    def __init__(self, error: AgentLedgerError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"raised {type(self.error).__name__}: {self.error}"


def _call(function: Callable[[], T]) -> T | _Raised:
    try:
        return function()
    except AgentLedgerError as exc:  # anything else is a bug: let it fail the test
        return _Raised(exc)


class StoreComparison(RuleBasedStateMachine):
    """The model (`MemoryStore`) and the store under test, driven by the same calls.

    Attributes:
        store: The store under test, opened with `clock=clock`; set by a subclass.
        clock: The clock both stores read.
    """

    store: ClassVar[SessionStore]
    clock: ClassVar[FakeClock]

    def __init__(self) -> None:
        super().__init__()
        self.clock.now = T0
        self.model = MemoryStore(clock=self.clock)
        self.prefix = uuid.uuid4().hex[:10]
        self.times = [T0]
        leftover = self.store.list_sessions().sessions
        assert leftover == [], f"the store is not empty: {[s.id for s in leftover]}"

    def teardown(self) -> None:
        for sid in SESSION_IDS:
            try:
                self.store.delete_session(sid)
            except SessionNotFoundError:
                pass

    # -- helpers ------------------------------------------------------------------------

    def _app(self, key: str | None) -> str | None:
        return None if key is None else f"{self.prefix}-{key}"

    def _both(self, call: Callable[[SessionStore], T], what: str) -> tuple[T, T] | None:
        """Call both stores; check they both returned or raised the same type. Return the
        two results, or `None` when both raised."""
        expected = _call(lambda: call(self.model))
        actual = _call(lambda: call(self.store))
        self._agree(expected, actual, what)
        if isinstance(expected, _Raised) or isinstance(actual, _Raised):
            return None
        return expected, actual

    @staticmethod
    def _agree(expected: object, actual: object, what: str) -> None:
        if isinstance(expected, _Raised) or isinstance(actual, _Raised):
            assert isinstance(expected, _Raised) and isinstance(actual, _Raised), (
                f"{what}: the model {'raised' if isinstance(expected, _Raised) else 'returned'}"
                f" ({expected!r}), the store gave {actual!r}"
            )
            assert type(actual.error) is type(expected.error), (
                f"{what}: the model {expected!r}, the store {actual!r}"
            )
            if isinstance(expected.error, DuplicateEventKeyError):
                assert isinstance(actual.error, DuplicateEventKeyError)
                assert (actual.error.keys, actual.error.reason) == (
                    expected.error.keys,
                    expected.error.reason,
                ), f"{what}: the model {expected!r}, the store {actual!r}"
            if isinstance(expected.error, ConcurrencyError):
                assert isinstance(actual.error, ConcurrencyError)
                versions = (expected.error.expected_version, expected.error.actual_version)
                assert (actual.error.expected_version, actual.error.actual_version) == versions

    def _sessions(self) -> int:
        """How many sessions the model has."""
        return len(self.model.list_sessions(limit=1000).sessions)

    def _pick(self, choice: int, *, fresh: bool = False) -> str:
        """A session id from the pool: usually one that exists (or, with `fresh`, one that
        does not), sometimes any; `choice` from `_choices`."""
        existing = {s.id for s in self.model.list_sessions(limit=1000).sessions}
        wanted = sorted(set(SESSION_IDS) - existing if fresh else existing)
        if choice < 8 and wanted:
            return wanted[choice % len(wanted)]
        return SESSION_IDS[choice % len(SESSION_IDS)]

    def _version(self, sid: str) -> int:
        found = _call(lambda: self.model.get_session(sid))
        return 1 if isinstance(found, _Raised) else found.version

    # -- rules --------------------------------------------------------------------------

    @initialize(app=st.sampled_from(APPS), user=st.sampled_from(USERS), state=_deltas)
    def first_session(self, app: str, user: str, state: dict[str, Any]) -> None:
        """Start with a session, so that appends and reads have something to work on."""
        self.create(timedelta(0), 0, app, user, None, None, None, state, {})

    def _tick(self, step: timedelta) -> None:
        """Move the clock both stores read (before a write)."""
        self.clock.now += step
        self.times.append(self.clock.now)

    @precondition(lambda self: self._sessions() < len(SESSION_IDS))
    @rule(
        step=_steps,
        choice=_choices,
        app=st.sampled_from(APPS),
        user=st.sampled_from(USERS),
        agent=st.sampled_from(AGENTS),
        phase=st.none() | st.sampled_from(PHASES),
        title=st.none() | st.just("a title"),
        state=_deltas,
        metadata=st.dictionaries(st.sampled_from(["m", "n"]), _values, max_size=2),
    )
    def create(
        self,
        step: timedelta,
        choice: int,
        app: str,
        user: str,
        agent: str | None,
        phase: str | None,
        title: str | None,
        state: dict[str, Any],
        metadata: dict[str, Any],
    ) -> None:
        self._tick(step)
        sid = self._pick(choice, fresh=True)
        app_name = self._app(app)
        assert app_name is not None
        results = self._both(
            lambda s: s.create_session(
                app_name=app_name,
                user_id=user,
                agent_name=agent,
                title=title,
                purpose="compare",
                state=state,
                metadata=metadata,
                phase=phase,
                session_id=sid,
            ),
            f"create_session({sid!r})",
        )
        if results is not None:
            assert results[1] == results[0], f"create_session({sid!r}) returned another session"

    @rule(
        step=_steps,
        choice=_choices,
        events=batches,
        version=st.sampled_from(["none", "none", "none", "right", "right", "stale", "ahead"]),
        expected_keys=st.sampled_from([None] * 5 + [["a"], ["app:x", "user:x"], ["b"]]),
        stale_state=st.booleans(),
    )
    def append(
        self,
        step: timedelta,
        choice: int,
        events: list[NewEvent],
        version: str,
        expected_keys: list[str] | None,
        stale_state: bool,
    ) -> None:
        self._tick(step)
        sid = self._pick(choice)
        current = self._version(sid)
        expected_version = {
            "none": None,
            "right": current,
            "stale": current - 1,
            "ahead": current + 2,
        }[version]
        expected_state = None
        if expected_keys is not None:
            found = _call(lambda: self.model.get_session(sid))
            state = {} if isinstance(found, _Raised) else found.state
            expected_state = {k: "stale" if stale_state else state.get(k) for k in expected_keys}
        what = f"append({sid!r}, {[e.type for e in events]}, expected_version={expected_version})"
        results = self._both(
            lambda s: s.append(
                sid, events, expected_version=expected_version, expected_state=expected_state
            ),
            what,
        )
        if results is None:
            return
        assert _events(results[1]) == _events(results[0]), f"{what} stored other events"
        # The whole ledger, and a few slices of it (whatever the `read` rule draws).
        self._compare_events(sid, 0, None, None, None)
        length = self._version(sid)
        self._compare_events(sid, 0, None, 2, None)
        self._compare_events(sid, length - 3, 2, None, None)
        self._compare_events(sid, 1, None, None, sorted({e.type for e in events}))

    @rule(
        choice=_choices,
        after=st.integers(-1, 8),
        limit=st.none() | st.integers(0, 4),
        last=st.none() | st.integers(0, 4),
        types=st.none() | st.lists(st.sampled_from(TYPES[1:] + ("error",)), max_size=2),
        effective=st.booleans(),
    )
    def read(
        self,
        choice: int,
        after: int,
        limit: int | None,
        last: int | None,
        types: list[str] | None,
        effective: bool,
    ) -> None:
        self._compare_events(self._pick(choice), after, limit, last, types, effective)

    def _compare_events(
        self,
        sid: str,
        after: int,
        limit: int | None,
        last: int | None,
        types: list[str] | None,
        effective: bool = False,
    ) -> None:
        what = (
            f"read_events({sid!r}, after={after}, limit={limit}, last={last}, types={types}, "
            f"effective={effective})"
        )
        results = self._both(
            lambda s: s.read_events(
                sid, after=after, limit=limit, last=last, types=types, effective=effective
            ),
            what,
        )
        if results is not None:
            assert _events(results[1]) == _events(results[0]), f"{what} differs"

    @rule(
        step=_steps,
        choice=_choices,
        batch=st.lists(
            st.tuples(st.sampled_from(EVENT_KEYS), st.sampled_from(["x", "y"])),
            min_size=1,
            max_size=3,
        ),
        unkeyed=st.sampled_from([False] * 4 + [True]),
        version=st.sampled_from(["none", "none", "right", "stale"]),
    )
    def keyed_append(
        self,
        step: timedelta,
        choice: int,
        batch: list[tuple[str, str]],
        unkeyed: bool,
        version: str,
    ) -> None:
        """Append events with idempotency keys from a small pool, with two possible
        contents each: new keys, exact retries (also with a stale `expected_version`),
        clashing content, partial retries and keys repeated in a batch all come up. The
        outcome is decided from the model's whole ledger (not its key index) and both
        stores must give it."""
        self._tick(step)
        sid = self._pick(choice)
        events = [
            NewEvent(type="user_message", author="user", data={"text": text}, key=key)
            for key, text in batch
        ]
        if unkeyed:
            events.append(NewEvent(type="user_message", author="user", data={"text": "plain"}))
        current = self._version(sid)
        expected_version = {"none": None, "right": current, "stale": current - 1}[version]
        ledger = _call(lambda: self.model.read_events(sid))
        what = f"append({sid!r}, keys={[k for k, _ in batch]}, expected_version={expected_version})"
        results = self._both(
            lambda s: s.append(sid, events, expected_version=expected_version), what
        )
        if isinstance(ledger, _Raised):
            assert results is None, f"{what} appended to a session that does not exist"
            return
        stored = {e.key: e for e in ledger if e.key is not None}
        keys = [k for k, _ in batch]
        if len(set(keys)) != len(keys):
            expected = "refused: a key repeated in the batch"
        elif any(k in stored and stored[k].erased for k in keys):
            # An erased event keeps its payload hash, not its data: the stores compare a
            # retry by that hash, which the model's data can no longer decide.
            expected = "replayed or refused: an erased key"
        elif any(k in stored for k in keys):
            same = not unkeyed and all(
                k in stored and stored[k].data == {"text": t} for k, t in batch
            )
            expected = "replayed" if same else "refused: a clashing key"
        else:
            expected = "written or refused by another check"
        if expected == "replayed":
            assert results is not None, f"{what}: a retry of stored events was refused"
            assert [e.seq for e in results[0]] == [stored[k].seq for k in keys], what
            assert _events(results[1]) == _events(results[0]), f"{what} replayed other events"
            assert self._version(sid) == current, f"{what}: a retry wrote events"
        elif expected.startswith("replayed or refused"):
            if results is not None:
                assert [e.seq for e in results[0]] == [stored[k].seq for k in keys], what
                assert _events(results[1]) == _events(results[0]), f"{what} replayed other events"
            assert self._version(sid) == current, f"{what}: a retry over an erased key wrote"
        elif expected.startswith("refused"):
            assert results is None, f"{what}: {expected}, but it was appended"
            assert self._version(sid) == current
        elif results is not None:
            assert _events(results[1]) == _events(results[0]), f"{what} stored other events"
        assert len(stored) == len({e.key for e in ledger if e.key is not None})

    @rule(
        choice=_choices,
        keys=st.none() | st.lists(st.sampled_from([*EVENT_KEYS, "none"]), max_size=3),
        prefix=st.none() | st.sampled_from(["k:", "w:", "k", "z"]),
        after=st.integers(0, 6),
        limit=st.none() | st.integers(0, 3),
        last=st.none() | st.integers(0, 3),
        text=st.none() | st.sampled_from(["x", "y", "plain"]),
    )
    def keyed_read(
        self,
        choice: int,
        keys: list[str] | None,
        prefix: str | None,
        after: int,
        limit: int | None,
        last: int | None,
        text: str | None,
    ) -> None:
        """`read_events` by keys, by key prefix and by `data_match`; `get_event`."""
        sid = self._pick(choice)
        match = None if text is None else {"text": text}
        what = (
            f"read_events({sid!r}, keys={keys}, key_prefix={prefix!r}, after={after},"
            f" limit={limit}, last={last}, data_match={match})"
        )
        results = self._both(
            lambda s: s.read_events(
                sid, keys=keys, key_prefix=prefix, after=after, limit=limit, last=last,
                data_match=match,
            ),
            what,
        )
        if results is not None:
            assert _events(results[1]) == _events(results[0]), f"{what} differs"
        for key in keys or EVENT_KEYS[:1]:
            found = self._both(
                lambda s, key=key: s.get_event(sid, key),  # type: ignore[misc]
                f"get_event({sid!r}, {key!r})",
            )
            if found is not None:
                one, two = found
                assert (one is None) == (two is None), f"get_event({sid!r}, {key!r}) differs"
                if one is not None and two is not None:
                    assert _events([two]) == _events([one])

    @rule(
        app=st.none() | st.sampled_from([*APPS, "other"]),
        user=st.none() | st.sampled_from(USERS),
        agent=st.none() | st.sampled_from(AGENTS[1:]),
        status=st.none() | st.sampled_from(STATUSES[:3]),
        phase=st.none() | st.sampled_from(DEFAULT_PHASES),
        after=st.none() | st.integers(0, 30),
        before=st.none() | st.integers(0, 30),
        limit=st.sampled_from([1, 2, 2, 3, 3, 1000, 0, 1001]),
        bad_cursor=st.sampled_from([False] * 7 + [True]),
    )
    def list_pages(
        self,
        app: str | None,
        user: str | None,
        agent: str | None,
        status: str | None,
        phase: str | None,
        after: int | None,
        before: int | None,
        limit: int,
        bad_cursor: bool,
    ) -> None:
        """Walk every page with each store's own cursor; pages must match one for one."""
        filters: dict[str, Any] = {
            "app_name": self._app(app),
            "user_id": user,
            "agent_name": agent,
            "status": status,
            "phase": phase,
            # Times the clock has shown, so equal timestamps (strict bounds) come up.
            "updated_after": None if after is None else self.times[after % len(self.times)],
            "updated_before": None if before is None else self.times[before % len(self.times)],
        }
        self._compare_pages(filters, limit, "not-a-cursor" if bad_cursor else None)

    def _compare_pages(self, filters: dict[str, Any], limit: int, cursor: str | None) -> None:
        what = f"list_sessions({filters}, limit={limit})"
        cursors = [cursor, cursor]
        for number in range(1, 20):
            expected, actual = (
                _call(partial(store.list_sessions, limit=limit, cursor=cursor, **filters))
                for store, cursor in ((self.model, cursors[0]), (self.store, cursors[1]))
            )
            self._agree(expected, actual, f"{what}, page {number}")
            if isinstance(expected, _Raised) or isinstance(actual, _Raised):
                return
            assert actual.sessions == expected.sessions, f"{what}: page {number} differs"
            assert actual.corrupted == expected.corrupted == []
            assert (actual.next_cursor is None) == (expected.next_cursor is None), (
                f"{what}: page {number} is the last on one store only"
            )
            if expected.next_cursor is None:
                return
            cursors = [expected.next_cursor, actual.next_cursor]
        raise AssertionError(f"{what}: pagination does not end")

    @precondition(lambda self: self._sessions() >= 2)  # deletes would empty the store
    @rule(choice=_choices)
    def delete(self, choice: int) -> None:
        sid = self._pick(choice)
        self._both(lambda s: s.delete_session(sid), f"delete_session({sid!r})")

    @precondition(lambda self: self._sessions() >= 2)
    @rule(age=st.sampled_from(AGES), only_finalized=st.booleans())
    def cleanup(self, age: timedelta, only_finalized: bool) -> None:
        results = self._both(
            lambda s: SessionManager(s, clock=self.clock).cleanup(
                age, only_finalized=only_finalized, batch_size=2
            ),
            f"cleanup({age}, only_finalized={only_finalized})",
        )
        if results is not None:
            assert results[1].session_ids == results[0].session_ids
            assert results[1].skipped_corrupted == results[0].skipped_corrupted == []

    @rule(
        app=st.sampled_from(APPS),
        user=st.none() | st.sampled_from(USERS),
        delta=st.dictionaries(st.sampled_from(["app:x", "app:y", "user:x", "user:z"]), _values,
                              max_size=2),
        remove=st.lists(st.sampled_from(["app:x", "app:y", "user:x", "user:z", "a"]),
                        max_size=2),
    )
    def scoped_update(
        self, app: str, user: str | None, delta: dict[str, Any], remove: list[str]
    ) -> None:
        """Shared state changed without a session: nulls stored, keys removed (or refused:
        a `user:` key without a user, a key both set and removed, a key of no scope)."""
        app_name = self._app(app)
        assert app_name is not None
        what = f"update_scoped_state({app!r}, {user!r}, {delta}, remove={remove})"
        results = self._both(
            lambda s: s.update_scoped_state(app_name, user, delta, remove=remove), what
        )
        if results is not None:
            assert results[1] == results[0], f"{what} differs"
            for key, value in delta.items():
                if key.startswith("app:" if user is None else "user:"):
                    assert key in results[1] and results[1][key] == value, f"{what}: {key} lost"
            assert not set(remove) & set(results[1]), f"{what}: a removed key is still there"

    @rule(choice=_choices, key=st.sampled_from(["a", "b", "app:x", "user:z"]), step=_steps)
    def null_then_remove(self, choice: int, key: str, step: timedelta) -> None:
        """A key set to `None` is there with the value `None`; removed, it is gone."""
        self._tick(step)
        sid = self._pick(choice)
        for event, present in (
            (_event("state_updated", {}, {key: None}, None), True),
            (_event("state_updated", {}, {}, None, remove=[key]), False),
        ):
            results = self._both(
                lambda s, e=event: s.append(sid, [e]),  # type: ignore[misc]
                f"append({sid!r}, {event})",
            )
            if results is None:
                return
            state = self.store.get_session(sid).state
            assert (key in state) is present, f"{key!r} after {event}: {state}"
            assert state.get(key) is None

    @precondition(lambda self: 1 <= self._sessions() < len(SESSION_IDS))
    @rule(
        step=_steps,
        choice=_choices,
        into=_choices,
        at=st.none() | st.integers(-1, 14),
        version=st.sampled_from(["none", "none", "right", "stale"]),
    )
    def fork(self, step: timedelta, choice: int, into: int, at: int | None, version: str) -> None:
        """Fork a session (usually into a free id, sometimes a taken one), at the head or
        at a seq (sometimes out of range)."""
        self._tick(step)
        sid = self._pick(choice)
        new = self._pick(into, fresh=True)
        current = self._version(sid)
        expected = {"none": None, "right": current, "stale": current - 1}[version]
        what = f"fork_session({sid!r}, at_seq={at}, new_session_id={new!r}, {expected=})"
        results = self._both(
            lambda s: s.fork_session(sid, at_seq=at, new_session_id=new, expected_version=expected),
            what,
        )
        if results is None:
            return
        assert results[1] == results[0], f"{what} made another session"
        self._compare_events(new, 0, None, None, None)
        self._check_effective(new)
        report = self.store.verify_session(new)
        assert report.ok, report

    @rule(
        step=_steps,
        choice=_choices,
        seqs=st.lists(st.integers(0, 14), max_size=3),
        reason=st.sampled_from(["privacy", "privacy", "privacy", ""]),
    )
    def erase(self, step: timedelta, choice: int, seqs: list[int], reason: str) -> None:
        self._tick(step)
        sid = self._pick(choice)
        what = f"erase_events({sid!r}, {seqs}, {reason!r})"
        results = self._both(lambda s: s.erase_events(sid, seqs, reason), what)
        if results is not None:
            assert _events([results[1]]) == _events([results[0]]), f"{what} recorded another event"
            erased = {e.seq for e in self.model.read_events(sid) if e.erased}
            assert set(seqs) <= erased, f"{what}: the model did not erase them"
        self._compare_events(sid, 0, None, None, None)

    @rule(choice=_choices, before=st.integers(0, 16))
    def truncate(self, choice: int, before: int) -> None:
        sid = self._pick(choice)
        what = f"truncate_before({sid!r}, {before})"
        results = self._both(lambda s: s.truncate_before(sid, before), what)
        if results is not None:
            assert results[1] == results[0], f"{what} dropped another number of events"
        self._compare_events(sid, 0, None, None, None)
        self._compare_events(sid, max(before - 2, 0), 2, None, None)

    @rule(
        step=_steps,
        choice=_choices,
        grow=st.lists(
            st.builds(
                lambda delta, turn: _event("agent_message", {}, delta, None, invocation=turn),
                _deltas,
                st.sampled_from(INVOCATIONS),
            ),
            max_size=4,
        ),
        back=st.integers(-1, 4) | st.sampled_from(["i1", "i2", "i3"]),
        then=batches.map(lambda events: [e for e in events if e.type != "session_created"]),
        version=st.sampled_from(["none", "none", "right", "stale"]),
    )
    def rewind(
        self,
        step: timedelta,
        choice: int,
        grow: list[NewEvent],
        back: int | str,
        then: list[NewEvent],
        version: str,
    ) -> None:
        """Append a few events (so there is something to undo), then rewind a few events
        back (sometimes out of range: past the head or before seq 1) or before an
        invocation (sometimes one with no event in effect), with events after it."""
        self._tick(step)
        sid = self._pick(choice)
        if grow:
            self._both(lambda s: s.append(sid, grow), f"append({sid!r}) before a rewind")
        current = self._version(sid)
        to = back if isinstance(back, str) else current - back
        expected = {"none": None, "right": current, "stale": current - 1}[version]
        target: dict[str, Any] = (
            {"before_invocation": to} if isinstance(to, str) else {"to_seq": to}
        )
        what = f"rewind({sid!r}, {target}, then={[e.type for e in then]}, {expected=})"
        results = self._both(
            lambda s: s.rewind(sid, then=then, expected_version=expected, **target), what
        )
        if results is None:
            return
        assert _events(results[1]) == _events(results[0]), f"{what} stored other events"
        self._compare_events(sid, 0, None, None, None)
        self._compare_events(sid, 0, None, None, None, effective=True)
        self._check_effective(sid)

    def _check_effective(self, sid: str) -> None:
        """The events in effect, folded on their own (renumbered, the `rewound` markers
        left out), give the session's own state: what a rewind means."""
        ledger = self.store.read_events(sid)
        if not ledger or ledger[0].seq != 1 or any(e.erased for e in ledger):
            return  # a truncated or erased ledger folds from its base, not from seq 1
        kept = self.store.read_events(sid, effective=True)
        assert all(e.type != "rewound" for e in kept)
        renumbered = [e.model_copy(update={"seq": i}) for i, e in enumerate(kept, 1)]
        session = self.store.get_session(sid)
        own = {k: v for k, v in session.state.items() if not k.startswith(("app:", "user:"))}
        folded = project(renumbered)
        assert folded.state == own, f"{sid}: the events in effect fold to another state"
        assert (folded.phase, folded.status, folded.metadata, folded.error_count) == (
            session.phase, session.status, session.metadata, session.error_count
        ), f"{sid}: the events in effect fold to another session"

    @rule(choice=_choices)
    def verify(self, choice: int) -> None:
        """Whatever was done, the session's history verifies, with the same chain hash on
        both stores (the chain is a function of the events, whatever keeps them)."""
        sid = self._pick(choice)
        results = self._both(lambda s: s.verify_session(sid), f"verify_session({sid!r})")
        if results is not None:
            expected, actual = results
            assert expected.ok and actual.ok, actual
            assert actual.events == expected.events
            assert (actual.first_seq, actual.erased) == (expected.first_seq, expected.erased)
            ledger = self.store.read_events(sid)
            if ledger and ledger[0].seq == 1 and not any(e.erased for e in ledger):
                assert actual.last_hash == chain_of(ledger), f"verify_session({sid!r}) differs"

    @invariant()
    def every_session_agrees(self) -> None:
        """Every session id gets the same answer, and lists one per page the same way."""
        for sid in SESSION_IDS:
            self._compare_session(sid)
        self._compare_pages({}, 1, None)
        for app in APPS:
            app_name = self._app(app)
            assert app_name is not None
            for user in (None, *USERS):
                scope = f"get_scoped_state({app!r}, {user!r})"
                results = self._both(lambda s: s.get_scoped_state(app_name, user), scope)  # noqa: B023
                assert results is not None and results[1] == results[0], f"{scope} differs"

    def _compare_session(self, sid: str) -> None:
        results = self._both(lambda s: s.get_session(sid), f"get_session({sid!r})")
        if results is not None:
            assert results[1] == results[0], f"get_session({sid!r}) differs"


class StatefulConformance(ConformanceBase):
    """The store behaves as the memory store does, call for call (hypothesis stateful).

    Needs a store that accepts the `clock` option (`make_store(clock=...)`).

    Attributes:
        stateful_examples: Sequences of calls hypothesis runs per store.
        stateful_steps: Calls per sequence, at most.
    """

    stateful_examples: ClassVar[int] = 50
    stateful_steps: ClassVar[int] = 30

    def test_store_agrees_with_the_memory_model(self, make_store: StoreFactory) -> None:
        self.require_injectable_clock(make_store)
        clock = FakeClock(T0)
        under_test = make_store(clock=clock)

        class Comparison(StoreComparison):
            store = under_test

        Comparison.clock = clock
        run_state_machine_as_test(
            Comparison,
            settings=settings(
                max_examples=self.stateful_examples,
                stateful_step_count=self.stateful_steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
