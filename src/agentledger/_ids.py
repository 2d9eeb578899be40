"""Unique, time-sortable ids (ULIDs) for events and sessions.

A ULID is 48 bits of milliseconds since the Unix epoch and 80 random bits, written as 26
Crockford base-32 characters, so ids sort by creation time as strings. Within one
millisecond this generator increments the random part, so ids made by one process are
strictly increasing. (Our own ~30 lines rather than a dependency: we need that monotonic
guarantee, which the common ULID packages do not give, and nothing else.)
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id", "new_ids"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as 2 characters
_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs = 26 characters = 130 bits


def _encode(value: int) -> str:
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id() -> str:
    """Return a new ULID: 26 characters, unique, sortable by creation time."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = ms, rand
    return _encode((ms << 80) | rand)


def new_ids(count: int) -> list[str]:
    """Return `count` new ULIDs at once, strictly increasing: one block of the generator's
    sequence (as `count` calls of `new_id` would give, without taking the lock each time)."""
    global _last_ms, _last_rand
    if count <= 0:
        return []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            first = _last_rand + 1
        else:
            first = int.from_bytes(os.urandom(10), "big") >> 1  # room for the block
        last = first + count - 1
        if last >= 1 << 80:  # the random part would overflow: take the next millisecond
            ms, first = ms + 1, 0
            last = count - 1
        _last_ms, _last_rand = ms, last
    base = ms << 80
    pairs = _PAIRS
    ids: list[str] = []
    prefix_of = -1
    prefix = ""
    for rand in range(first, last + 1):
        value = base | rand
        high = value >> 30  # the first 20 characters change only when the low 30 bits wrap
        if high != prefix_of:
            prefix_of, prefix = high, _encode(value)[:20]
        ids.append(
            prefix + pairs[(value >> 20) & 1023] + pairs[(value >> 10) & 1023] + pairs[value & 1023]
        )
    return ids


def _reseed_after_fork() -> None:
    global _last_ms, _last_rand, _lock
    _lock = threading.Lock()
    _last_ms, _last_rand = -1, 0


os.register_at_fork(after_in_child=_reseed_after_fork)
