"""What the store benchmarks share: the event they write, the timing loops, the result rows,
the table printer, and the two interfaces each backend module implements (`RawLog`, the
hand-written baseline, and `Backend`, which opens a fresh ours/raw pair).

Not an entry point: see `bench_store.py` and `bench_concurrency.py`.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from agentledger.core.events import NewEvent
from agentledger.stores.base import SessionStore

TEXT = "Please summarise the incident report from last night and list the follow-ups #"
STATE = {"topic": "incident review", "turns": 0}
"""Initial state of the sessions created by the create and list workloads."""
META = {"source": "bench", "tags": ["a", "b"]}
"""Metadata of the sessions created by the create and list workloads."""

POSTGRES_URL_ENV = "AGENTLEDGER_TEST_POSTGRES_URL"
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1/agentledger_test"

RawEvent = tuple[str, str, dict[str, Any], dict[str, Any]]
"""(type, author, data, state_delta): an event as `RawLog.append` takes it."""


def dumps(value: Any) -> str:
    """Compact JSON text, as the stores write it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def now_text() -> str:
    """The current UTC time in the fixed-width format the stores write."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_postgres_url() -> str:
    """`$AGENTLEDGER_TEST_POSTGRES_URL`, else the local test database."""
    return os.environ.get(POSTGRES_URL_ENV) or POSTGRES_DEFAULT_URL


def run_meta(mode: str, started: float) -> dict[str, Any]:
    """When, where and how long (`started` is a `time.perf_counter()` reading)."""
    return {"date": utcnow().strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "mode": mode, "seconds": time.perf_counter() - started}


def filesystem(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/mounts), or "?"."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and str(path.resolve()).startswith(fields[1]) \
                        and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def message(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The benchmark event's (data, state_delta): ~100 bytes of text, a 2-key delta."""
    return {"text": f"{TEXT}{i:06d}", "lang": "en"}, {"turn": i, "last_author": "user"}


def ours_event(i: int) -> NewEvent:
    """The benchmark event as ours takes it."""
    data, delta = message(i)
    return NewEvent(type="user_message", author="user", data=data, state_delta=delta)


def raw_event(i: int) -> RawEvent:
    """The benchmark event as the raw baselines take it."""
    return ("user_message", "user", *message(i))


class RawLog(Protocol):
    """The hand-written baseline every backend module provides: an event log one would write
    directly against the backend, doing the same work as ours minus the library."""

    def create(self, app_name: str, user_id: str, state: dict[str, Any], meta: dict[str, Any]) -> str:
        """Create a session (its row or files and its `session_created` event); its id."""
        ...

    def append(self, sid: str, events: list[RawEvent]) -> None:
        """Append events to a session in one transaction, numbering them after its version."""
        ...

    def load_state(self, sid: str) -> dict[str, Any]:
        """The session's current state."""
        ...

    def read_events(self, sid: str) -> list[Any]:
        """Every event of the session, data and state_delta parsed."""
        ...

    def list_sessions(self, limit: int) -> list[Any]:
        """Up to `limit` sessions, most recently updated first, snapshots parsed."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


class Pair(ABC):
    """A fresh, empty store of ours and a fresh raw log beside it, on the same backend."""

    ours: SessionStore
    raw: RawLog

    @abstractmethod
    def sizes(self) -> tuple[int, int]:
        """Bytes each side occupies (ours, raw); closes both first if the backend needs it."""

    def close(self) -> None:
        self.ours.close()
        self.raw.close()


class Backend(ABC):
    """One backend's side of the benchmark.

    Attributes:
        name: The `--stores` name (`sqlite`, `file`, `postgresql`).
        title: "ours vs raw" for the table heading.
        raw_name: The raw side's column heading.
        variants: Settings the append workload runs at (durability, strictest first); the
            last one is used by every other workload (loads, creates, list, bytes), `strict`
            (the first, unless a backend says otherwise) by `bench_concurrency.py`.
        variant_labels: How a variant reads in a metric's name, if not as itself.
        state_note: How the raw side loads a session's state, for the metric's name.
        targets: Targets by row kind ("append:<variant>", "history", "growth", "bytes"):
            (comparison, bound), e.g. (">=", 0.9). Only rows with a target are marked.
        notes: Lines printed under the table.
    """

    name: str
    title: str
    raw_name: str
    variants: tuple[str, ...]
    variant_labels: dict[str, str] = {}
    state_note: str = "raw: fold deltas"
    targets: dict[str, tuple[str, float]] = {}
    notes: tuple[str, ...] = ()

    @property
    def relaxed(self) -> str:
        return self.variants[-1]

    @property
    def strict(self) -> str:
        """The variant the concurrency benchmark runs at: the store's default."""
        return self.variants[0]

    def label(self, variant: str) -> str:
        return self.variant_labels.get(variant, variant)

    @abstractmethod
    def open_pair(self, variant: str, tag: str) -> Pair:
        """A fresh pair at durability `variant`; `tag` names its files or schemas."""

    @abstractmethod
    def shared(self, variant: str, tag: str) -> tuple[str, Callable[[], RawLog]]:
        """Make a fresh, empty store of ours and raw log at `variant`, for several processes:
        returns our store's URL (for `open_store`) and a picklable function opening the raw
        log (in any process, any number of times)."""

    def meta(self) -> dict[str, Any]:
        """Versions and settings worth reporting."""
        return {}

    def close(self) -> None:
        """Remove what the backend made outside the temporary folder (schemas)."""
        return None


def paired(
    ours: Callable[[], object], raw: Callable[[], object], round_time: float, rounds: int
) -> tuple[float, float]:
    """Seconds per call of each function: the median over `rounds` rounds, each a loop sized
    to ~`round_time`, the two sides alternating round by round so that drift in machine
    load hits both alike."""
    gc.collect()  # start from the same heap state whatever ran before
    loops = []
    for fn in (ours, raw):
        start = time.perf_counter()
        fn()
        loops.append(max(1, int(round_time / max(time.perf_counter() - start, 1e-7))))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, n, out in zip((ours, raw), loops, times):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - start) / n)
    return statistics.median(times[0]), statistics.median(times[1])


def interleaved(
    ours_step: Callable[[int], None], raw_step: Callable[[int], None], n: int, chunk: int = 50
) -> tuple[float, float]:
    """Calls per second of each side over `n` calls, alternating in chunks of `chunk` calls
    so that drift in disk latency (fsync) hits both sides alike."""
    gc.collect()
    t_ours = t_raw = 0.0
    for first in range(0, n, chunk):
        calls = range(first, min(first + chunk, n))
        start = time.perf_counter()
        for i in calls:
            ours_step(i)
        middle = time.perf_counter()
        for i in calls:
            raw_step(i)
        t_ours, t_raw = t_ours + middle - start, t_raw + time.perf_counter() - middle
    return n / t_ours, n / t_raw


@dataclass(frozen=True)
class Config:
    """Workload sizes of one run of `bench_store.py`."""

    appends: int = 2_000
    load_sizes: tuple[int, ...] = (100, 1_000, 10_000)
    creates: int = 1_000
    listed: int = 1_000
    rounds: int = 5
    write_rounds: int = 5
    round_time: float = 0.3


QUICK = Config(appends=50, load_sizes=(10, 100, 1_000), creates=20, listed=30,
               rounds=3, write_rounds=1, round_time=0.02)


@dataclass
class Row:
    """One line of a results table (and of `--json`'s "rows")."""

    store: str
    metric: str
    unit: str  # "/s", "ms", "B" or "x"
    ours: float
    raw: float | None
    ratio: float  # ours ÷ raw, or as the metric says
    better: str  # "higher" or "lower": which direction of `ratio` is better
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def judged(backend: Backend, kind: str, ratio: float) -> dict[str, Any]:
    """`target` and `met` for a row of this kind, if the backend sets a target for it."""
    if kind not in backend.targets:
        return {}
    op, bound = backend.targets[kind]
    return {"target": f"{op} {bound}", "met": ratio >= bound if op == ">=" else ratio <= bound}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:.2f}x"


def print_table(heading: str, raw_name: str, rows: list[Row], notes: tuple[str, ...] = ()) -> None:
    header: tuple[str, ...] = ("metric", "ours", raw_name, "ours÷raw", "better", "target", "")
    cells = [header] + [
        (r.metric, fmt(r.ours, r.unit), fmt(r.raw, r.unit), f"{r.ratio:.2f}", r.better, r.target,
         "" if r.met is None else ("met" if r.met else "MISSED"))
        for r in rows
    ]
    if not any(r.target for r in rows):
        cells = [line[:5] for line in cells]
        header = header[:5]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(heading)
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(line, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(note)
    print()
