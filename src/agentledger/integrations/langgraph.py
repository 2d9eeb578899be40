"""LangGraph checkpoints on the ledger: `LedgerSaver` and `AsyncLedgerSaver`.

Both are LangGraph `BaseCheckpointSaver`s (`langgraph.checkpoint.base`), so a graph
compiled with `checkpointer=LedgerSaver("sqlite:///agent.db")` keeps its threads in an
agentledger store (any URL `open_store` takes, or a store object) with the store's
guarantees: gapless versions under many writers, crash safety, PostgreSQL, retention and
`agentledger sessions list/show/events` on every thread.

Mapping (LangGraph → agentledger):

| LangGraph | agentledger |
|---|---|
| thread (`thread_id`) | one session, id = the thread id, app `langgraph` (`app_name=`) |
| checkpoint | a `langgraph.checkpoint` event, key `ckpt:<ns>:<checkpoint_id>` |
| pending write | a `langgraph.write` event, key `write:<ns>:<checkpoint_id>:<task_id>:<idx>` |
| values kept by a prune | a `langgraph.values` event, key `vals:<ns>:<checkpoint_id>` |
| `copy_thread` | `fork_session` |
| `delete_thread` / `prune(strategy="delete")` | `delete_session` |
| `prune("keep_latest")`, `delete_for_runs` | `erase_events` + `truncate_before` |

`<ns>`, `<checkpoint_id>` and `<task_id>` are percent-encoded (`urllib.parse.quote`, no safe
characters) so `:` always separates the parts. Latest checkpoint = the most recently
stored one of the namespace, read through the key index (`read_events(key_prefix=...,
last=1)`); a checkpoint by id is one `get_event`. A retried `put` or `put_writes` is harmless:
the same keys with the same content write nothing.

Values are stored readably (see `encode_value`): the serializer's `dumps_typed` gives
`(type, bytes)`; with LangGraph's `JsonPlusSerializer`, a `msgpack` value that holds only
JSON (objects with string keys, arrays, strings, booleans, null, integers and plainly
written floats) is stored as that JSON: `{"t": "msgpack", "json": ...}`; anything else
(messages and other objects, bytes, an encrypting serializer's output) is kept as
`{"t": <type>, "b64": <base64 of the bytes>}`, and `None` as `{"t": "null"}`. A checkpoint
event stores only the channels that changed (`new_versions`); `refs` names the checkpoint
holding each unchanged channel's value.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote

from agentledger.core.events import Event, NewEvent
from agentledger.errors import (
    DuplicateEventKeyError,
    MissingDependencyError,
    SessionExistsError,
    SessionNotFoundError,
)
from agentledger.stores.aio import AsyncSessionStore, open_async_store
from agentledger.stores.base import SessionStore, open_store

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        PendingWrite,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(exc.name or "langgraph-checkpoint", "langgraph") from exc

__all__ = [
    "AsyncLedgerSaver",
    "CHECKPOINT_TYPE",
    "LedgerSaver",
    "VALUES_TYPE",
    "WRITE_TYPE",
    "decode_value",
    "encode_value",
]

CHECKPOINT_TYPE = "langgraph.checkpoint"
"""The event type of a checkpoint."""
WRITE_TYPE = "langgraph.write"
"""The event type of a pending write (`put_writes`)."""
VALUES_TYPE = "langgraph.values"
"""The event type of channel values a prune or `delete_for_runs` moved out of a removed
checkpoint because a kept checkpoint still uses them."""
AUTHOR = "langgraph"
DEFAULT_APP = "langgraph"
_PAGE = 200
_HELD = 1024

_T = TypeVar("_T")


# -- values ---------------------------------------------------------------------------


_INT64 = 2**63


def _plain_json(value: Any) -> bool:
    """Whether `value` is plain JSON that msgpack and any of our stores' JSON give back
    unchanged: exact `dict` (string keys), `list`, `str`, `bool`, 64-bit `int`, `None`, and
    plainly written floats (PostgreSQL's jsonb writes a float such as 1e20 back as an
    integer). Subclasses (enums, named tuples) are not plain: the serializer keeps them."""
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return True
    if kind is int:
        return bool(-_INT64 <= value < 2 * _INT64)
    if kind is float:
        text = repr(value)
        return math.isfinite(value) and "e" not in text and "." in text
    if kind is list:
        return all(_plain_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    return False


def encode_value(serde: SerializerProtocol, value: Any) -> dict[str, Any]:
    """Serialize a value with `serde.dumps_typed` into the JSON object we store.

    Returns:
        `{"t": "null"}` for `None`; `{"t": "msgpack", "json": <value>}` when `serde` is
        LangGraph's `JsonPlusSerializer` and its msgpack holds only plain JSON (readable in
        `agentledger sessions events`); otherwise `{"t": <type>, "b64": <base64 bytes>}`.
    """
    if value is None:
        return {"t": "null"}
    json_plus = type(serde) is JsonPlusSerializer
    if json_plus and _plain_json(value):  # what its msgpack would hold, without the trip
        return {"t": "msgpack", "json": value}
    type_, data = serde.dumps_typed(value)
    if type_ == "null":
        return {"t": "null"}
    if type_ == "msgpack" and json_plus:  # e.g. a tuple: msgpack holds a plain array
        import ormsgpack

        try:
            plain = ormsgpack.unpackb(data)
        except (ValueError, TypeError):  # ext types (objects): no plain JSON
            plain = None
        else:
            if _plain_json(plain):
                return {"t": "msgpack", "json": plain}
    return {"t": type_, "b64": base64.b64encode(data).decode("ascii")}


def decode_value(serde: SerializerProtocol, stored: Mapping[str, Any]) -> Any:
    """Turn a stored value (`encode_value`'s output) back into the Python value."""
    type_ = stored["t"]
    if type_ == "null":
        return None
    if "json" in stored:
        return stored["json"]
    return serde.loads_typed((type_, base64.b64decode(stored["b64"])))


# -- keys -----------------------------------------------------------------------------


def _q(part: str) -> str:
    return quote(part, safe="")


def _ckpt_key(ns: str, checkpoint_id: str) -> str:
    return f"ckpt:{_q(ns)}:{_q(checkpoint_id)}"


def _vals_key(ns: str, checkpoint_id: str) -> str:
    return f"vals:{_q(ns)}:{_q(checkpoint_id)}"


def _writes_prefix(ns: str, checkpoint_id: str) -> str:
    return f"write:{_q(ns)}:{_q(checkpoint_id)}:"


def _ckpt_prefix(ns: str | None) -> str:
    return "ckpt:" if ns is None else f"ckpt:{_q(ns)}:"


def _thread_config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


# -- the logic, written once: generators that yield store calls ------------------------


@dataclass(frozen=True)
class _Call:
    """One store operation the logic asks its driver to run."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


_Steps = Generator[_Call, Any, _T]


@dataclass
class _Parent:
    """Where the values of a stored checkpoint's channels live (checkpoint id per channel)."""

    checkpoint_id: str
    versions: dict[str, Any]
    locations: dict[str, str]


def _locations(data: Mapping[str, Any]) -> dict[str, str]:
    here = {ch: data["id"] for ch in data.get("values", {})}
    return {**data.get("refs", {}), **here}


class _Logic:
    """What both savers do, as generators of `_Call`s (the sync and async drivers run them)."""

    def __init__(self, serde: SerializerProtocol, app_name: str, user_id: str) -> None:
        self.serde = serde
        self.app_name = app_name
        self.user_id = user_id
        self._parents: dict[tuple[str, str], _Parent] = {}
        # (thread, checkpoint id) -> the values stored with that checkpoint, for the
        # checkpoints later ones reference (values never change once stored).
        self._held: dict[tuple[str, str], Mapping[str, Any]] = {}

    # reads

    def _tuple(
        self, thread_id: str, event: Event, values: Mapping[str, Mapping[str, Any]],
        writes: Sequence[Event],
    ) -> CheckpointTuple:
        data = event.data
        ns, checkpoint_id = data["ns"], data["id"]
        checkpoint = cast(Checkpoint, dict(decode_value(self.serde, data["checkpoint"])))
        channel_values: dict[str, Any] = {}
        for channel, where in _locations(data).items():
            if channel not in checkpoint["channel_versions"]:
                continue
            stored = values.get(where, {}).get(channel)
            if stored is None or stored["t"] == "empty":
                continue
            channel_values[channel] = decode_value(self.serde, stored)
        checkpoint["channel_values"] = channel_values
        parent = data.get("parent")
        return CheckpointTuple(
            config=_thread_config(thread_id, ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, decode_value(self.serde, data["metadata"])),
            parent_config=_thread_config(thread_id, ns, parent) if parent else None,
            pending_writes=self._pending(writes),
        )

    def _pending(self, writes: Sequence[Event]) -> list[PendingWrite]:
        latest: dict[tuple[str, int], Event] = {}
        for event in writes:
            if not event.erased:
                latest[(event.data["task_id"], event.data["idx"])] = event  # last seq wins
        ordered = sorted(
            latest.values(),
            key=lambda e: writes_sort_key(e.data["task_path"], e.data["task_id"], e.data["idx"]),
        )
        return [
            (e.data["task_id"], e.data["channel"], decode_value(self.serde, e.data["value"]))
            for e in ordered
        ]

    def _values_of(
        self, thread_id: str, events: Sequence[Event]
    ) -> _Steps[dict[str, Mapping[str, Any]]]:
        """The stored values each checkpoint of `events` needs, by checkpoint id."""
        have: dict[str, Mapping[str, Any]] = {}
        wanted: dict[str, str] = {}  # checkpoint id -> namespace
        for event in events:
            have[event.data["id"]] = event.data.get("values", {})
            for where in event.data.get("refs", {}).values():
                wanted[where] = event.data["ns"]
        for cid in wanted:
            held = None if cid in have else self._held.get((thread_id, cid))
            if held is not None:
                have[cid] = held
        missing = {cid: ns for cid, ns in wanted.items() if cid not in have}
        keys = [k for cid, ns in missing.items() for k in (_ckpt_key(ns, cid), _vals_key(ns, cid))]
        for start in range(0, len(keys), 1000):
            found = yield _Call("read_events", (thread_id,), {"keys": keys[start:start + 1000]})
            for stored in found:
                if stored.erased:
                    continue
                cid = stored.data["id"]
                have[cid] = {**have.get(cid, {}), **stored.data.get("values", {})}
        if len(self._held) > _HELD:
            self._held.clear()
        for cid in missing:  # stored values never change: later reads skip the query
            if cid in have:
                self._held[(thread_id, cid)] = have[cid]
        return have

    def get_tuple(self, config: RunnableConfig) -> _Steps[CheckpointTuple | None]:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = str(configurable.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        try:
            if checkpoint_id:
                event = yield _Call("get_event", (thread_id, _ckpt_key(ns, checkpoint_id)))
            else:
                last = yield _Call(
                    "read_events", (thread_id,), {"key_prefix": _ckpt_prefix(ns), "last": 1}
                )
                event = last[0] if last else None
            if event is None or event.erased:
                return None
            values = yield from self._values_of(thread_id, [event])
            writes = yield _Call(
                "read_events",
                (thread_id,),
                {"key_prefix": _writes_prefix(ns, event.data["id"])},
            )
        except SessionNotFoundError:
            return None
        found = self._tuple(thread_id, event, values, writes)
        self._parents[(thread_id, ns)] = _Parent(
            event.data["id"], dict(found.checkpoint["channel_versions"]), _locations(event.data)
        )
        return found

    def _thread_ids(self) -> _Steps[list[str]]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = yield _Call(
                "list_sessions",
                kwargs={"app_name": self.app_name, "limit": _PAGE, "cursor": cursor,
                        "order": "created_asc"},
            )
            ids.extend(s.id for s in page.sessions)
            cursor = page.next_cursor
            if cursor is None:
                return ids

    def list_checkpoints(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> _Steps[list[CheckpointTuple]]:
        if config is not None:
            thread_ids = [str(config["configurable"]["thread_id"])]
            ns = config["configurable"].get("checkpoint_ns")
            wanted_id = get_checkpoint_id(config)
        else:
            thread_ids = yield from self._thread_ids()
            ns, wanted_id = None, None
        before_id = get_checkpoint_id(before) if before else None
        found: list[CheckpointTuple] = []
        for thread_id in thread_ids:
            if limit is not None and len(found) >= limit:
                break
            try:
                events = yield _Call(
                    "read_events", (thread_id,), {"key_prefix": _ckpt_prefix(ns)}
                )
            except SessionNotFoundError:
                continue
            chosen = []
            for event in events:
                if event.erased or event.type != CHECKPOINT_TYPE:
                    continue
                cid = event.data["id"]
                if (wanted_id and cid != wanted_id) or (before_id and cid >= before_id):
                    continue
                if filter:
                    metadata = decode_value(self.serde, event.data["metadata"])
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                chosen.append(event)
            chosen.sort(key=lambda e: e.data["id"], reverse=True)
            if limit is not None:
                chosen = chosen[: limit - len(found)]
            if not chosen:
                continue
            values = yield from self._values_of(thread_id, chosen)
            prefix = "write:" if ns is None else f"write:{_q(ns)}:"
            all_writes = yield _Call("read_events", (thread_id,), {"key_prefix": prefix})
            by_checkpoint: dict[tuple[str, str], list[Event]] = {}
            for write in all_writes:
                if not write.erased:
                    place = (write.data["ns"], write.data["checkpoint_id"])
                    by_checkpoint.setdefault(place, []).append(write)
            for event in chosen:
                place = (event.data["ns"], event.data["id"])
                found.append(self._tuple(thread_id, event, values, by_checkpoint.get(place, [])))
        return found

    # writes

    def _append(self, thread_id: str, events: list[NewEvent]) -> _Steps[list[Event]]:
        try:
            stored: list[Event] = yield _Call("append", (thread_id, events))
            return stored
        except SessionNotFoundError:
            pass
        try:
            yield _Call(
                "create_session",
                kwargs={"app_name": self.app_name, "user_id": self.user_id,
                        "agent_name": "langgraph", "title": f"LangGraph thread {thread_id}",
                        "session_id": thread_id},
            )
        except SessionExistsError:  # another writer created it first
            pass
        stored = yield _Call("append", (thread_id, events))
        return stored

    def _parent(self, thread_id: str, ns: str, parent_id: str | None) -> _Steps[_Parent | None]:
        if not parent_id:
            return None
        cached = self._parents.get((thread_id, ns))
        if cached is not None and cached.checkpoint_id == parent_id:
            return cached
        try:
            event = yield _Call("get_event", (thread_id, _ckpt_key(ns, parent_id)))
        except SessionNotFoundError:
            return None
        if event is None or event.erased:
            return None
        checkpoint = decode_value(self.serde, event.data["checkpoint"])
        return _Parent(parent_id, dict(checkpoint["channel_versions"]), _locations(event.data))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> _Steps[RunnableConfig]:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = str(configurable.get("checkpoint_ns", ""))
        parent_id = configurable.get("checkpoint_id")
        body = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        channel_values = checkpoint["channel_values"]
        values = {
            ch: encode_value(self.serde, channel_values[ch])
            if ch in channel_values else {"t": "empty"}
            for ch in new_versions
        }
        parent = yield from self._parent(thread_id, ns, parent_id)
        refs: dict[str, str] = {}
        for channel, version in checkpoint["channel_versions"].items():
            if channel in values or parent is None:
                continue
            if parent.versions.get(channel) == version and channel in parent.locations:
                refs[channel] = parent.locations[channel]
        data: dict[str, Any] = {
            "ns": ns,
            "id": checkpoint["id"],
            "parent": parent_id,
            "checkpoint": encode_value(self.serde, body),
            "metadata": encode_value(self.serde, get_checkpoint_metadata(config, metadata)),
            "values": values,
        }
        if refs:
            data["refs"] = refs
        event = NewEvent(
            type=CHECKPOINT_TYPE, author=AUTHOR, data=data, key=_ckpt_key(ns, checkpoint["id"])
        )
        yield from self._append(thread_id, [event])
        self._parents[(thread_id, ns)] = _Parent(
            checkpoint["id"], dict(checkpoint["channel_versions"]), _locations(data)
        )
        return _thread_config(thread_id, ns, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> _Steps[None]:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = str(configurable.get("checkpoint_ns", ""))
        checkpoint_id = str(configurable["checkpoint_id"])
        prefix = f"{_writes_prefix(ns, checkpoint_id)}{_q(task_id)}:"
        for _attempt in range(5):
            try:
                existing = yield _Call("read_events", (thread_id,), {"key_prefix": prefix})
            except SessionNotFoundError:
                existing = []
            latest: dict[int, Event] = {}
            revisions: dict[int, int] = {}
            for event in existing:
                latest[event.data["idx"]] = event
                revisions[event.data["idx"]] = revisions.get(event.data["idx"], 0) + 1
            new: list[NewEvent] = []
            for position, (channel, value) in enumerate(writes):
                idx = WRITES_IDX_MAP.get(channel, position)
                data = {
                    "ns": ns, "checkpoint_id": checkpoint_id, "task_id": task_id,
                    "task_path": task_path, "idx": idx, "channel": channel,
                    "value": encode_value(self.serde, value),
                }
                key = f"{prefix}{idx}"
                if idx in latest:
                    if idx >= 0 or (latest[idx].data == data and not latest[idx].erased):
                        continue  # stored already (a regular write is never replaced)
                    key = f"{key}:r{revisions[idx]}"  # a special write replaces the last one
                new.append(NewEvent(type=WRITE_TYPE, author=AUTHOR, data=data, key=key))
            if not new:
                return None
            try:
                yield from self._append(thread_id, new)
                return None
            except DuplicateEventKeyError:
                continue  # another writer stored some of them meanwhile: look again
        raise DuplicateEventKeyError(thread_id, [prefix], "different_content")

    # threads

    def delete_thread(self, thread_id: str) -> _Steps[None]:
        try:
            yield _Call("delete_session", (thread_id,))
        except SessionNotFoundError:
            pass
        self._forget(thread_id)

    def _forget(self, thread_id: str) -> None:
        # Copies (list() of a dict is atomic): graphs call a saver from several threads.
        self._parents = {k: v for k, v in list(self._parents.items()) if k[0] != thread_id}
        self._held = {k: v for k, v in list(self._held.items()) if k[0] != thread_id}

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> _Steps[None]:
        yield _Call("fork_session", (source_thread_id,), {"new_session_id": target_thread_id})

    def _remove(
        self, thread_id: str, events: Sequence[Event], drop: set[str], reason: str
    ) -> _Steps[None]:
        """Erase the checkpoints `drop` (ids) of `events` and their writes, keeping the
        values the other checkpoints still reference (in `langgraph.values` events), then
        truncate the ledger before the first event still needed."""
        checkpoints = [e for e in events if e.type == CHECKPOINT_TYPE]
        kept = [e for e in checkpoints if e.data["id"] not in drop]
        needed: dict[tuple[str, str], set[str]] = {}  # (ns, holder id) -> channels
        for event in kept:
            for channel, where in event.data.get("refs", {}).items():
                if where in drop:
                    needed.setdefault((event.data["ns"], where), set()).add(channel)
        values = yield from self._values_of(thread_id, kept)
        moved = [
            NewEvent(
                type=VALUES_TYPE, author=AUTHOR, key=_vals_key(ns, holder),
                data={"ns": ns, "id": holder,
                      "values": {ch: values[holder][ch] for ch in sorted(channels)
                                 if ch in values.get(holder, {})}},
            )
            for (ns, holder), channels in sorted(needed.items())
        ]
        moved_seqs: list[int] = []
        if moved:
            stored = yield from self._append(thread_id, moved)
            moved_seqs = [e.seq for e in stored]
        gone = {
            e.seq for e in events
            if not e.erased and e.type in (CHECKPOINT_TYPE, WRITE_TYPE)
            and e.data["checkpoint_id" if e.type == WRITE_TYPE else "id"] in drop
        }
        if gone:
            yield _Call("erase_events", (thread_id, sorted(gone), reason))
        still = [e.seq for e in events if not e.erased and e.seq not in gone] + moved_seqs
        if still and min(still) > 1:
            yield _Call("truncate_before", (thread_id, min(still)))

    def _langgraph_events(self, thread_id: str) -> _Steps[list[Event] | None]:
        try:
            events: list[Event] = yield _Call(
                "read_events", (thread_id,),
                {"types": [CHECKPOINT_TYPE, WRITE_TYPE, VALUES_TYPE]},
            )
        except SessionNotFoundError:
            return None
        return events

    def prune(self, thread_ids: Sequence[str], strategy: str) -> _Steps[None]:
        if strategy == "delete":
            for thread_id in thread_ids:
                yield from self.delete_thread(thread_id)
            return None
        if strategy != "keep_latest":
            raise ValueError(f"unknown prune strategy {strategy!r}: 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            events = yield from self._langgraph_events(thread_id)
            if not events:
                continue
            latest: dict[str, Event] = {}
            for event in events:
                if event.type == CHECKPOINT_TYPE and not event.erased:
                    latest[event.data["ns"]] = event  # the last stored per namespace
            keep = {e.data["id"] for e in latest.values()}
            drop = {
                e.data["id"] for e in events
                if e.type == CHECKPOINT_TYPE and not e.erased and e.data["id"] not in keep
            }
            if drop:
                yield from self._remove(thread_id, events, drop, "langgraph prune keep_latest")
            self._forget(thread_id)
        return None

    def delete_for_runs(self, run_ids: Sequence[str]) -> _Steps[None]:
        runs = set(run_ids)
        if not runs:
            return None
        thread_ids = yield from self._thread_ids()
        for thread_id in thread_ids:
            events = yield from self._langgraph_events(thread_id)
            if not events:
                continue
            drop = set()
            for event in events:
                if event.type == CHECKPOINT_TYPE and not event.erased:
                    metadata = decode_value(self.serde, event.data["metadata"])
                    if metadata.get("run_id") in runs:
                        drop.add(event.data["id"])
            if drop:
                yield from self._remove(thread_id, events, drop, "langgraph delete_for_runs")
                self._forget(thread_id)
        return None


# -- drivers --------------------------------------------------------------------------


def _run_sync(store: SessionStore, steps: _Steps[_T]) -> _T:
    """Run the logic's store calls on a sync store."""
    try:
        call = next(steps)
        while True:
            try:
                result = getattr(store, call.name)(*call.args, **call.kwargs)
            except Exception as exc:  # handed to the logic, which handles or re-raises it
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        return cast(_T, stop.value)


async def _run_async(store: AsyncSessionStore, steps: _Steps[_T]) -> _T:
    """Run the logic's store calls on an async store."""
    try:
        call = next(steps)
        while True:
            try:
                result = await getattr(store, call.name)(*call.args, **call.kwargs)
            except Exception as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        return cast(_T, stop.value)


class LedgerSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that keeps each thread as an agentledger session.

    Args:
        url_or_store: A store URL (`"sqlite:///agent.db"`, `"postgresql://..."`, any URL
            `open_store` takes) or an open `SessionStore`. A store the saver opened is
            closed by `close()` / the `with` block; a store given is left open.
        serde: LangGraph's serializer protocol (`dumps_typed`/`loads_typed`); LangGraph's
            `JsonPlusSerializer` when `None`.
        app_name: The app of the sessions threads are stored in (`"langgraph"`); `list`
            with no config and `delete_for_runs` look at that app's sessions only.
        user_id: The user of those sessions (`"langgraph"`).

    The async methods (`aget_tuple`, `aput`, …) run the sync ones on a worker thread, so
    this saver also serves `graph.ainvoke`; `AsyncLedgerSaver` runs natively on the event
    loop (PostgreSQL without threads).

    Raises:
        MissingDependencyError: `langgraph-checkpoint` is not installed (at import).
        ConfigurationError: The URL is not one `open_store` knows.

    Example:
        ```python
        from agentledger.integrations.langgraph import LedgerSaver

        with LedgerSaver("sqlite:///agent.db") as saver:
            graph = builder.compile(checkpointer=saver)
            graph.invoke(inputs, {"configurable": {"thread_id": "t-1"}})
        ```
    """

    def __init__(
        self,
        url_or_store: str | SessionStore,
        serde: SerializerProtocol | None = None,
        *,
        app_name: str = DEFAULT_APP,
        user_id: str = DEFAULT_APP,
    ) -> None:
        super().__init__(serde=serde)
        self._owns = isinstance(url_or_store, str)
        self.store: SessionStore = (
            open_store(url_or_store) if isinstance(url_or_store, str) else url_or_store
        )
        self._logic = _Logic(self.serde, app_name, user_id)

    def _run(self, steps: _Steps[_T]) -> _T:
        return _run_sync(self.store, steps)

    def close(self) -> None:
        """Close the store if this saver opened it."""
        if self._owns:
            self.store.close()

    def __enter__(self) -> LedgerSaver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint `config` names (`checkpoint_id`), or the thread's latest in
        its `checkpoint_ns`, with its pending writes; `None` if there is none."""
        return self._run(self._logic.get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield checkpoints newest first (by checkpoint id): of `config`'s thread (and its
        `checkpoint_ns` when given), or of every thread of `app_name` when `config` is
        `None`; `filter` matches metadata values, `before` keeps ids before its
        `checkpoint_id`, `limit` caps the count."""
        yield from self._run(self._logic.list_checkpoints(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint as one event (creating the thread's session on its first
        checkpoint) and return its config. Only the channels in `new_versions` are stored
        with it; the others are referenced from the parent checkpoint.

        Raises:
            DuplicateEventKeyError: This checkpoint id is stored already with other content.
            EventTooLargeError: The checkpoint is over the store's `max_event_bytes`.
        """
        return self._run(self._logic.put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for `config`'s checkpoint in one append; a write
        already stored for the same (task, index) is kept (special writes such as errors and
        interrupts, at negative indexes, replace the earlier one)."""
        self._run(self._logic.put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete the thread's session (all checkpoints and writes); no error if absent."""
        self._run(self._logic.delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove the checkpoints whose metadata `run_id` is one of `run_ids`, with their
        writes, from every thread of `app_name` (`erase_events`, then `truncate_before`)."""
        self._run(self._logic.delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread with all its checkpoints and writes (`fork_session`).

        Raises:
            SessionNotFoundError: The source thread has no checkpoints.
            SessionExistsError: The target thread exists already.
        """
        self._run(self._logic.copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the latest checkpoint per namespace (`"keep_latest"`, with its writes
        and the values it uses) or delete the threads (`"delete"`). The removed payloads are
        erased and the ledger truncated before the first event kept; `store.compact()` then
        returns the bytes to the file system."""
        self._run(self._logic.prune(thread_ids, strategy))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """`get_tuple` on a worker thread."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """`list` on a worker thread."""
        found = await asyncio.to_thread(
            self._run, self._logic.list_checkpoints(config, filter, before, limit)
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """`put` on a worker thread."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """`put_writes` on a worker thread."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """`delete_thread` on a worker thread."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """`delete_for_runs` on a worker thread."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """`copy_thread` on a worker thread."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`prune` on a worker thread."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


class AsyncLedgerSaver(BaseCheckpointSaver[int]):
    """`LedgerSaver` for asyncio: the same storage, on an `AsyncSessionStore`.

    Args:
        url_or_store: A store URL (opened with `open_async_store`) or an open
            `AsyncSessionStore`; PostgreSQL runs natively on the event loop, the other stores
            on worker threads.
        serde, app_name, user_id: As `LedgerSaver`.

    Only the async methods (`aget_tuple`, `alist`, `aput`, …) are available; the sync ones
    raise `NotImplementedError` (use `LedgerSaver`). Open it with `async with
    AsyncLedgerSaver.from_url(url) as saver:` or `await saver.setup()` when given a URL.

    Example:
        ```python
        async with AsyncLedgerSaver.from_url("postgresql://localhost/app") as saver:
            graph = builder.compile(checkpointer=saver)
            await graph.ainvoke(inputs, {"configurable": {"thread_id": "t-1"}})
        ```
    """

    def __init__(
        self,
        url_or_store: str | AsyncSessionStore,
        serde: SerializerProtocol | None = None,
        *,
        app_name: str = DEFAULT_APP,
        user_id: str = DEFAULT_APP,
    ) -> None:
        super().__init__(serde=serde)
        self._url = url_or_store if isinstance(url_or_store, str) else None
        self._store: AsyncSessionStore | None = (
            None if isinstance(url_or_store, str) else url_or_store
        )
        self._logic = _Logic(self.serde, app_name, user_id)

    @classmethod
    def from_url(cls, url: str, serde: SerializerProtocol | None = None, **options: Any
                 ) -> AsyncLedgerSaver:
        """A saver that opens `url` on `setup()` / `async with` and closes it on exit."""
        return cls(url, serde, **options)

    async def setup(self) -> None:
        """Open the store when the saver was given a URL (idempotent)."""
        if self._store is None and self._url is not None:
            self._store = await open_async_store(self._url)

    @property
    def store(self) -> AsyncSessionStore:
        """The async store; raises `RuntimeError` before `setup()` when given a URL."""
        if self._store is None:
            raise RuntimeError("AsyncLedgerSaver is not open: use `async with` or setup()")
        return self._store

    async def aclose(self) -> None:
        """Close the store if this saver opened it."""
        if self._url is not None and self._store is not None:
            await self._store.aclose()
            self._store = None

    async def __aenter__(self) -> AsyncLedgerSaver:
        await self.setup()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, steps: _Steps[_T]) -> _T:
        await self.setup()
        return await _run_async(self.store, steps)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """As `LedgerSaver.get_tuple`."""
        return await self._run(self._logic.get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """As `LedgerSaver.list`."""
        for item in await self._run(self._logic.list_checkpoints(config, filter, before, limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """As `LedgerSaver.put`."""
        return await self._run(self._logic.put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """As `LedgerSaver.put_writes`."""
        await self._run(self._logic.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """As `LedgerSaver.delete_thread`."""
        await self._run(self._logic.delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """As `LedgerSaver.delete_for_runs`."""
        await self._run(self._logic.delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """As `LedgerSaver.copy_thread`."""
        await self._run(self._logic.copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """As `LedgerSaver.prune`."""
        await self._run(self._logic.prune(thread_ids, strategy))
