"""Conformance: what `append` and `create_session` acknowledged survives `kill -9`.

A writer process appends batches of three events to one session in a loop (and creates a
session every few turns), and after each call *returns* it reports what it wrote to the
parent through a pipe. The parent kills it with SIGKILL at a random point, usually in the
middle of a write, reopens the store and checks:

- the store opens, and every session it lists loads (nothing reported corrupted);
- every batch and every session the writer reported is there, at the `seq` it was given;
- no batch is partly there: the ledger is whole batches, `seq` 1..N without gaps;
- the snapshot agrees with the ledger (the projection of the events, `version`), and the
  shared `user:` state written with the last batch and the last create is there too.

This is repeated many times on one store (`CrashConformance.crash_kills`, 50 by default);
`benchmarks/crash_soak.py` runs the same rounds for as long as one likes. The checks need
`persistent` and `multi_process`.

The writer reports after `append` returned and never before, in records of 16 bytes written
with one `write` to a pipe (POSIX makes such a write all-or-nothing), so a record the parent
reads is a write the store acknowledged. A write that completed but was not reported yet
may or may not be there; both are fine.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentledger.core.events import NewEvent
from agentledger.core.projection import project
from agentledger.errors import SessionNotFoundError
from agentledger.stores.base import SessionStore
from agentledger.testing._base import ConformanceBase, StoreFactory
from agentledger.testing._processes import open_in_child

__all__ = [
    "BATCH_SIZE",
    "CrashConformance",
    "CrashReport",
    "CrashRounds",
    "crash_writer",
]

BATCH_SIZE = 3
"""Events per append of the crash writer: each batch must land whole or not at all."""

CREATE_EVERY = 5
"""The writer creates a session instead of appending on every turn divisible by this."""

ROUND_TIMEOUT = 60.0
"""Seconds a writer may take to open the store or acknowledge a write before the round fails."""

_RECORD = struct.Struct("!qq")  # (turn, seq of the batch's first event | CREATED | READY)
_READY = -1
_CREATED = 0
_TYPES = ("user_message", "tool_call", "tool_result")


def _batch(turn: int) -> list[NewEvent]:
    """The events of one append; together they set `last` and `user:last` to `turn`."""
    return [
        NewEvent(
            type=_TYPES[k],
            author="user" if k == 0 else "tool",
            data={"turn": turn, "k": k},
            state_delta={"last": turn, "k": k} | ({"user:last": turn} if k == 2 else {}),
        )
        for k in range(BATCH_SIZE)
    ]


def created_id(turn: int) -> str:
    """The id of the session the writer creates on `turn`."""
    return f"created-{turn}"


def crash_writer(
    url: str,
    imports: tuple[str, ...],
    app_name: str,
    session_id: str,
    first_turn: int,
    acks: Any,
) -> None:
    """Write until killed, reporting each write on `acks` once the store acknowledged it.

    Each turn (numbered from `first_turn` up) appends `_batch(turn)` to `session_id`, or on
    turns divisible by `CREATE_EVERY` creates `created_id(turn)` in `app_name`. After the
    call returns, a 16-byte record `(turn, seq of the first event)` (`seq` 0 for a create)
    goes on `acks`, a `multiprocessing` connection; `(-1, -1)` first says the store is open.
    """
    store = open_in_child(url, imports)
    acks.send_bytes(_RECORD.pack(_READY, _READY))
    turn = first_turn
    while True:
        if turn % CREATE_EVERY == 0:
            store.create_session(
                app_name=app_name,
                user_id="ada",
                session_id=created_id(turn),
                state={"created": turn, "user:created": turn},
            )
            acks.send_bytes(_RECORD.pack(turn, _CREATED))
        else:
            stored = store.append(session_id, _batch(turn))
            acks.send_bytes(_RECORD.pack(turn, stored[0].seq))
        turn += 1


@dataclass
class _Ledger:
    """One session the writer appends to (and the app it creates sessions in), with what
    was acknowledged so far."""

    app_name: str
    session_id: str
    batches: dict[int, int] = field(default_factory=dict)  # turn -> seq of its first event
    creates: set[int] = field(default_factory=set)  # turns
    checked_creates: set[str] = field(default_factory=set)


@dataclass
class CrashReport:
    """What a crash run did.

    Attributes:
        kills: Writers killed with SIGKILL (one per round).
        early_kills: Of those, killed before they reported the store open.
        acknowledged_appends: Batches the writers reported (all found after the kills).
        acknowledged_creates: Sessions the writers reported created (all found).
        unacknowledged_writes: Batches and sessions found that no writer had reported
            (written, then killed before it could say so: allowed, and a sign that kills
            land inside writes).
        events: Events in the ledgers at the end.
        seconds: Wall time of the run.
        seed: The seed of the random kill points, to replay a run.
    """

    kills: int = 0
    early_kills: int = 0
    acknowledged_appends: int = 0
    acknowledged_creates: int = 0
    unacknowledged_writes: int = 0
    events: int = 0
    seconds: float = 0.0
    seed: int = 0


class CrashRounds:
    """Kill a writer at random points, reopen the store and check it, round after round.

    Args:
        url: The store URL the writer processes open (`open_store(url)`).
        reopen: Opens the store in this process; called after every kill (the caller's
            store stays untouched) and closed after the checks.
        ctx: A `multiprocessing` context; `fork` is the fastest where available.
        imports: Modules the writers import before opening the store.
        seed: Seed of the random kill points; a random one when `None`.
        rounds_per_ledger: Rounds that append to one session before the writer moves to a
            fresh one (and a fresh app), so long runs keep each check small.
        early_kill_rate: The share of rounds that kill the writer before it reports the
            store open (while it opens the store, or just after).
        max_acks: A round waits for 0 to this many acknowledged writes before it kills.
    """

    def __init__(
        self,
        url: str,
        reopen: Callable[[], SessionStore],
        ctx: Any,
        *,
        imports: tuple[str, ...] = (),
        seed: int | None = None,
        rounds_per_ledger: int = 100,
        early_kill_rate: float = 0.1,
        max_acks: int = 8,
    ) -> None:
        sigkill = getattr(signal, "SIGKILL", None)
        if sigkill is None:
            raise RuntimeError("this platform has no SIGKILL")
        self._sigkill = int(sigkill)
        self.url = url
        self.reopen = reopen
        self.ctx = ctx
        self.imports = imports
        self.seed = random.randrange(2**32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.rounds_per_ledger = rounds_per_ledger
        self.early_kill_rate = early_kill_rate
        self.max_acks = max_acks
        self.report = CrashReport(seed=self.seed)
        self._run = uuid.uuid4().hex[:8]
        self._ledgers: list[_Ledger] = []
        self._interval = 0.005  # running estimate of the seconds between two acks

    def run(self, kills: int, progress: Callable[[CrashReport], None] | None = None) -> CrashReport:
        """Run `kills` rounds, then check every ledger once more.

        Args:
            kills: Rounds to run (one SIGKILL each).
            progress: Called with the report so far after each round.

        Returns:
            The report of the whole run so far.

        Raises:
            AssertionError: A check failed; the message names the round and the seed.
        """
        started = time.perf_counter()
        try:
            for _ in range(kills):
                self.round()
                if progress is not None:
                    progress(self.report)
            store = self.reopen()
            try:
                self.report.events = sum(self._check(store, ledger) for ledger in self._ledgers)
            finally:
                store.close()
        finally:
            self.report.seconds += time.perf_counter() - started
        return self.report

    def _ledger(self) -> _Ledger:
        """The ledger of this round, created (by this process) when a new one starts."""
        block = self.report.kills // self.rounds_per_ledger
        if block == len(self._ledgers):
            ledger = _Ledger(f"crash-{self._run}-{block}", f"ledger-{self._run}-{block}")
            store = self.reopen()
            try:
                store.create_session(
                    app_name=ledger.app_name, user_id="ada", session_id=ledger.session_id
                )
            finally:
                store.close()
            self._ledgers.append(ledger)
        return self._ledgers[block]

    def round(self) -> None:
        """Start a writer, kill it at a random point, reopen the store and check it."""
        ledger = self._ledger()
        number = self.report.kills + 1
        first_turn = number * 1_000_000 + 1
        reader, writer = self.ctx.Pipe(duplex=False)
        child = self.ctx.Process(
            target=crash_writer,
            args=(self.url, self.imports, ledger.app_name, ledger.session_id, first_turn, writer),
            daemon=True,
        )
        records: list[tuple[int, int]] = []
        try:
            child.start()
            writer.close()  # the child holds the only write end now: EOF once it is dead
            if self.rng.random() < self.early_kill_rate:
                self.report.early_kills += 1
                time.sleep(self.rng.uniform(0, 0.002))
            else:
                self._wait_then_pick_a_moment(reader, records, number)
            os.kill(child.pid, self._sigkill)
            child.join(timeout=ROUND_TIMEOUT)
            while True:  # what the writer reported before it died
                try:
                    records.append(_RECORD.unpack(reader.recv_bytes()))
                except EOFError:
                    break
        finally:
            reader.close()
            if child.is_alive():
                child.kill()
                child.join()
        self.report.kills += 1
        if child.exitcode != -self._sigkill:
            raise AssertionError(
                f"round {number} (seed {self.seed}): the writer exited by itself with code "
                f"{child.exitcode} before it was killed; its stderr says why"
            )
        for turn, seq in records:
            if seq == _CREATED:
                ledger.creates.add(turn)
                self.report.acknowledged_creates += 1
            elif seq != _READY:
                ledger.batches[turn] = seq
                self.report.acknowledged_appends += 1
        store = self.reopen()  # must open cleanly after the kill
        try:
            self._check(store, ledger, number)
        finally:
            store.close()

    def _wait_then_pick_a_moment(self, reader: Any, records: list[tuple[int, int]], number: int) -> None:
        """Wait until the writer is open and has acknowledged a random number of writes,
        then sleep a random part of the time a write takes, so the kill lands anywhere in
        a write (or between two)."""
        wanted = self.rng.randint(0, self.max_acks)
        acked = 0
        last = None
        while True:
            if not reader.poll(ROUND_TIMEOUT):
                raise AssertionError(
                    f"round {number} (seed {self.seed}): the writer reported nothing for "
                    f"{ROUND_TIMEOUT:.0f} s (it died, or a write hangs)"
                )
            try:
                record = _RECORD.unpack(reader.recv_bytes())
            except EOFError:
                return  # the writer died by itself; its exit code tells the caller
            records.append(record)
            now = time.perf_counter()
            if record[1] != _READY:
                acked += 1
                if last is not None:
                    self._interval = 0.9 * self._interval + 0.1 * (now - last)
            last = now
            if acked >= wanted:
                break
        time.sleep(self.rng.uniform(0, 1.5 * self._interval))

    def _fail(self, number: int | None, ledger: _Ledger, problem: str) -> AssertionError:
        when = f"after kill {number}" if number is not None else "at the end"
        return AssertionError(f"{when} (seed {self.seed}), session {ledger.session_id}: {problem}")

    def _check(self, store: SessionStore, ledger: _Ledger, number: int | None = None) -> int:
        """Check one ledger and the sessions created beside it; return its event count."""
        sid = ledger.session_id
        # A killed writer's commit can still land after the kill (a server that received
        # its COMMIT finishes it): read the ledger and the session again until they name
        # the same version, so such a late commit is not taken for a stale snapshot.
        for _ in range(20):
            events = store.read_events(sid)
            session = store.get_session(sid)
            if session.version == len(events):
                break
            time.sleep(0.05)
        seqs = [e.seq for e in events]
        if seqs != list(range(1, len(events) + 1)):
            raise self._fail(number, ledger, f"seq is not 1..N without gaps: {seqs[-10:]}")
        body = events[1:]
        found: dict[int, int] = {}
        for start in range(0, len(body), BATCH_SIZE):
            block = body[start : start + BATCH_SIZE]
            turns = [e.data.get("turn") for e in block]
            ks = [e.data.get("k") for e in block]
            if len(block) != BATCH_SIZE or len(set(turns)) != 1 or ks != list(range(BATCH_SIZE)):
                raise self._fail(
                    number, ledger, f"a partial batch at seq {block[0].seq}: turns {turns}, k {ks}"
                )
            found[block[0].data["turn"]] = block[0].seq
        lost = {t: s for t, s in ledger.batches.items() if found.get(t) != s}
        if lost:
            raise self._fail(
                number,
                ledger,
                f"{len(lost)} acknowledged appends lost or moved (turn: acknowledged seq, now "
                f"{ {t: found.get(t) for t in sorted(lost)[:5]} })",
            )
        own = {k: v for k, v in session.state.items() if not k.startswith(("app:", "user:"))}
        if session.model_copy(update={"state": own}) != project(events):
            raise self._fail(number, ledger, "the snapshot differs from the projection of the ledger")
        last = body[-1].data["turn"] if body else None
        if session.state.get("user:last") != last:
            raise self._fail(
                number,
                ledger,
                f"shared state user:last is {session.state.get('user:last')!r}, but the last "
                f"batch in the ledger is {last!r}",
            )

        listed: set[str] = set()
        cursor: str | None = None
        while True:
            page = store.list_sessions(app_name=ledger.app_name, limit=500, cursor=cursor)
            if page.corrupted:
                raise self._fail(number, ledger, f"sessions reported corrupted: {page.corrupted}")
            listed.update(s.id for s in page.sessions)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if sid not in listed:
            raise self._fail(number, ledger, "the session is not listed")
        created = {int(s.removeprefix("created-")) for s in listed if s.startswith("created-")}
        missing = ledger.creates - created
        if missing:
            raise self._fail(number, ledger, f"acknowledged creates lost: turns {sorted(missing)[:5]}")
        for turn in created:
            cid = created_id(turn)
            if cid in ledger.checked_creates:
                continue
            try:
                made = store.get_session(cid)
                made_events = store.read_events(cid)
            except SessionNotFoundError as exc:
                raise self._fail(number, ledger, f"{cid} is listed but not found") from exc
            if made.version != 1 or [e.seq for e in made_events] != [1]:
                raise self._fail(number, ledger, f"{cid} has version {made.version}")
            if made.state.get("created") != turn:
                raise self._fail(number, ledger, f"{cid} has state {made.state}")
            ledger.checked_creates.add(cid)
        if session.state.get("user:created") != (max(created) if created else None):
            raise self._fail(
                number,
                ledger,
                f"shared state user:created is {session.state.get('user:created')!r}, but the "
                f"last session created is {max(created) if created else None!r}",
            )
        self.report.unacknowledged_writes += len(set(found) - set(ledger.batches))
        self.report.unacknowledged_writes += len(created - ledger.creates)
        ledger.batches.update(found)  # found once, it must stay
        ledger.creates.update(created)
        return len(events)


class CrashConformance(ConformanceBase):
    """Acknowledged writes survive SIGKILL of the writer (`persistent` and `multi_process`).

    Attributes:
        crash_kills: Writers killed per store (at least 50 for the suite's promise).
    """

    crash_kills: ClassVar[int] = 50

    def test_acknowledged_writes_survive_kill(self, make_store: StoreFactory) -> None:
        store = make_store()
        self.require_persistent(store)
        self.require_multi_process(store)
        self.require_sigkill()
        rounds = CrashRounds(
            store.url, make_store.open, self.mp_context(), imports=self.child_imports
        )
        report = rounds.run(self.crash_kills)
        assert report.kills == self.crash_kills
        # The kills landed while the writers were working, not only while they started.
        assert report.acknowledged_appends > 0 and report.acknowledged_creates > 0
