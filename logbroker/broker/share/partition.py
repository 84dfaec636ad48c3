"""One share-partition: the in-flight window of a (share group, topic,
partition) and the record state machine of KIP-932, with time as a parameter.

The window is ``[start, end)``: ``start`` is the share-partition start offset
(every record below it is acknowledged or archived), ``end`` the first offset
never acquired. Per offset in the window the partition keeps four numpy
columns (no per-record Python objects)::

    state     uint8   AVAILABLE 0 | ACQUIRED 1 | ACKNOWLEDGED 2 | ARCHIVED 4 (Kafka's codes)
    count     int16   delivery count (incremented by each acquisition)
    deadline  int64   lock deadline in ms while ACQUIRED
    owner     int32   index of the acquiring member while ACQUIRED

Transitions (Kafka's): AVAILABLE -> ACQUIRED on fetch (count + 1, lock for
the group's lock duration); ACQUIRED -> ACKNOWLEDGED on Accept; -> AVAILABLE
on Release, lock expiry or the owner's session ending, unless the count has
reached the delivery limit, then -> ARCHIVED; -> ARCHIVED on Reject (and on
Gap, for offsets without a record). Renew extends the lock. After every
command ``start`` advances over the contiguous prefix of terminal records.

Acquisition is per offset range but driven batch by batch: the coordinator
reads whole batches from the log and calls :meth:`SharePartition.acquire_batch`
with each batch's offset range; every operation is a few slice operations on
the columns. Not thread-safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

AVAILABLE, ACQUIRED, ACKNOWLEDGED, ARCHIVED = 0, 1, 2, 4
STATE_NAMES = {AVAILABLE: "available", ACQUIRED: "acquired", ACKNOWLEDGED: "acknowledged", ARCHIVED: "archived"}

ACK_GAP, ACK_ACCEPT, ACK_RELEASE, ACK_REJECT, ACK_RENEW = 0, 1, 2, 3, 4

REASON_REJECTED = "REJECTED"
REASON_DELIVERY_LIMIT = "DELIVERY_COUNT_EXCEEDED"

RUN_DTYPE = np.dtype([("first", ">i8"), ("last", ">i8"), ("state", "i1"), ("count", ">i2")])
"""One persisted run of offsets sharing a state and delivery count (19 bytes, big-endian)."""

_INITIAL_CAPACITY = 256
_NO_DEADLINE = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class AcquiredRange:
    """Offsets ``first..last`` (inclusive) acquired with one delivery count."""

    first: int
    last: int
    delivery_count: int


@dataclass(slots=True)
class Change:
    """What a command did: the offsets it changed (to persist), whether records
    became available (to wake waiting fetches), records archived for a reason
    that sends them to a dead-letter topic, and an error that refused it."""

    lo: int | None = None
    hi: int | None = None
    available: bool = False
    archived: list[tuple[int, int, str]] = field(default_factory=list)
    error: str | None = None

    def touch(self, lo: int, hi: int) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    @property
    def changed(self) -> bool:
        return self.lo is not None


class SharePartition:
    """The in-flight window of one share-partition (see the module docstring)."""

    __slots__ = (
        "start", "end", "_base", "_state", "_count", "_deadline", "_owner",
        "_owners", "_owner_ids", "timer_at", "deltas", "topic_id",
        "acknowledged_total", "archived_total",
    )

    def __init__(self, start: int, topic_id: uuid.UUID | None = None) -> None:
        self.start = self.end = self._base = start
        self._state = np.zeros(_INITIAL_CAPACITY, np.uint8)
        self._count = np.zeros(_INITIAL_CAPACITY, np.int16)
        self._deadline = np.full(_INITIAL_CAPACITY, _NO_DEADLINE, np.int64)
        self._owner = np.full(_INITIAL_CAPACITY, -1, np.int32)
        self._owners: dict[str, int] = {}
        self._owner_ids: list[str] = []
        self.timer_at: int | None = None
        """Deadline of this partition's entry in the coordinator's timer heap."""
        self.deltas = 0
        """Deltas written since the last snapshot."""
        self.topic_id = topic_id
        self.acknowledged_total = 0
        self.archived_total = 0
        """Records acknowledged and archived since the broker started (for metrics)."""

    def __repr__(self) -> str:
        counts = self.state_counts()
        parts = ", ".join(f"{STATE_NAMES[s]}={n}" for s, n in counts.items() if n)
        return f"SharePartition([{self.start}, {self.end}){', ' + parts if parts else ''})"

    # -- views ---------------------------------------------------------------

    def _slice(self, lo: int, hi: int) -> slice:
        """Column indexes of offsets ``lo..hi`` (inclusive)."""
        return slice(lo - self._base, hi - self._base + 1)

    def _window(self) -> slice:
        return slice(self.start - self._base, self.end - self._base)

    @property
    def in_flight(self) -> int:
        return self.end - self.start

    def state_counts(self) -> dict[int, int]:
        states = self._state[self._window()]
        return {s: int(np.count_nonzero(states == s)) for s in STATE_NAMES}

    def record(self, offset: int) -> tuple[int, int, str | None]:
        """``(state, delivery count, owner)`` of one offset (for tests and tools)."""
        if offset < self.start:
            return ACKNOWLEDGED, 0, None
        if offset >= self.end:
            return AVAILABLE, 0, None
        i = offset - self._base
        state = int(self._state[i])
        owner = self._owner_ids[self._owner[i]] if state == ACQUIRED else None
        return state, int(self._count[i]), owner

    def acquired_by(self, member: str) -> int:
        index = self._owners.get(member)
        if index is None:
            return 0
        w = self._window()
        return int(np.count_nonzero((self._state[w] == ACQUIRED) & (self._owner[w] == index)))

    def min_deadline(self) -> int | None:
        """The earliest lock deadline of an acquired record, or None."""
        w = self._window()
        acquired = self._state[w] == ACQUIRED
        if not acquired.any():
            return None
        return int(self._deadline[w][acquired].min())

    def fetch_offset(self, max_in_flight: int) -> int | None:
        """Where acquisition would start: the first available record in the
        window, else ``end`` unless the window is full; None: nothing to acquire."""
        w = self._window()
        available = np.flatnonzero(self._state[w] == AVAILABLE)
        if len(available):
            return self.start + int(available[0])
        return self.end if self.in_flight < max_in_flight else None

    def any_available(self, first: int, last: int, max_in_flight: int) -> bool:
        """Would :meth:`acquire_batch` acquire anything of ``first..last``?"""
        if last < self.start:
            return False
        first = max(first, self.start)
        if last >= self.end and self.in_flight < max_in_flight:
            return True
        top = min(last, self.end - 1)
        return top >= first and bool((self._state[self._slice(first, top)] == AVAILABLE).any())

    # -- storage of the columns -------------------------------------------------

    def _ensure(self, end: int) -> None:
        """Make the columns cover offsets below ``end`` (new slots AVAILABLE, count 0)."""
        capacity = len(self._state)
        if end - self._base <= capacity:
            return
        size = end - self.start
        if size <= capacity * 3 // 4:
            self._compact()
            return
        new_capacity = max(capacity * 2, size + size // 2)
        n = self.end - self.start
        w = self._window()
        for name, fill in (("_state", 0), ("_count", 0), ("_deadline", _NO_DEADLINE), ("_owner", -1)):
            old = getattr(self, name)
            new = np.full(new_capacity, fill, old.dtype)
            new[:n] = old[w]
            setattr(self, name, new)
        self._base = self.start

    def _compact(self) -> None:
        """Move the window to the front of the columns; clear the rest."""
        n = self.end - self.start
        w = self._window()
        for name, fill in (("_state", 0), ("_count", 0), ("_deadline", _NO_DEADLINE), ("_owner", -1)):
            column = getattr(self, name)
            column[:n] = column[w]
            column[n:] = fill
        self._base = self.start

    def _extend(self, end: int) -> None:
        """Grow the window to ``end``; new offsets are AVAILABLE with count 0."""
        if end <= self.end:
            return
        self._ensure(end)
        s = self._slice(self.end, end - 1)
        self._state[s] = AVAILABLE
        self._count[s] = 0
        self._deadline[s] = _NO_DEADLINE
        self._owner[s] = -1
        self.end = end

    def _owner_index(self, member: str) -> int:
        index = self._owners.get(member)
        if index is None:
            if len(self._owner_ids) > 4096 and not (self._state[self._window()] == ACQUIRED).any():
                self._owners.clear()
                self._owner_ids.clear()
            index = self._owners[member] = len(self._owner_ids)
            self._owner_ids.append(member)
        return index

    def advance(self) -> int:
        """Move ``start`` over the terminal prefix; returns the new start."""
        states = self._state[self._window()]
        open_ = np.flatnonzero((states != ACKNOWLEDGED) & (states != ARCHIVED))
        self.start = self.start + int(open_[0]) if len(open_) else self.end
        if self.start - self._base > len(self._state) // 2:
            self._compact()
        return self.start

    def move_start(self, offset: int) -> bool:
        """Skip everything below ``offset`` (the log lost it); True if start moved."""
        if offset <= self.start:
            return False
        if offset >= self.end:
            self.start = self.end = self._base = offset
            self._compact()
            return True
        self.start = offset
        self.advance()
        return True

    # -- commands -----------------------------------------------------------------

    def acquire_batch(
        self, member: str, first: int, last: int, now_ms: int, lock_ms: int, max_in_flight: int
    ) -> list[AcquiredRange]:
        """Acquire every available offset of the batch ``first..last`` for ``member``.

        Offsets beyond ``end`` join the window (unless it already holds
        ``max_in_flight`` offsets); a hole between ``end`` and ``first`` (a
        compacted log) joins it archived. Returns the acquired ranges, split
        where the delivery count changes.
        """
        if last < self.start:
            return []
        first = max(first, self.start)
        if first > self.end and self.in_flight < max_in_flight:
            hole = self.end
            self._extend(first)
            self._state[self._slice(hole, first - 1)] = ARCHIVED
            self.advance()
        top = last
        if last >= self.end:
            if self.in_flight >= max_in_flight or first > self.end:
                top = self.end - 1
            else:
                self._extend(last + 1)
        if top < first:
            return []
        s = self._slice(first, top)
        states = self._state[s]
        free = states == AVAILABLE
        if not free.any():
            return []
        owner = self._owner_index(member)
        counts = self._count[s]
        counts[free] += 1
        states[free] = ACQUIRED
        self._deadline[s][free] = now_ms + lock_ms
        self._owner[s][free] = owner
        return _ranges(first, free, counts)

    def skip_batch(self, first: int, last: int, max_in_flight: int) -> bool:
        """Archive the available offsets of the batch ``first..last`` without
        delivering them (a transaction that was aborted), as :meth:`acquire_batch`
        archives a hole. Offsets beyond ``end`` join the window unless it already
        holds ``max_in_flight``; returns False when they could not."""
        if last < self.start:
            return True
        first = max(first, self.start)
        if last >= self.end:
            if self.in_flight >= max_in_flight:
                return False
            self._extend(last + 1)
        s = self._slice(first, last)
        states = self._state[s]
        states[states == AVAILABLE] = ARCHIVED
        self.advance()
        return True

    def acknowledge(
        self, member: str, batches: Iterable[tuple[int, int, Sequence[int]]], now_ms: int, lock_ms: int, limit: int, *,
        allow_renew: bool = False,
    ) -> Change:
        """Apply acknowledgement batches ``(first, last, types)`` of ``member``.

        ``types`` holds one type for the whole range or one per offset (0 Gap,
        1 Accept, 2 Release, 3 Reject, 4 Renew). All batches are checked first:
        on any record not ACQUIRED by ``member`` nothing changes and
        ``Change.error`` says why.
        """
        change = Change()
        owner = self._owners.get(member)
        plans = []
        for first, last, types in batches:
            if last < first or first < self.start or last >= self.end:
                change.error = f"offsets {first}-{last} are not in flight [{self.start}, {self.end})"
                return change
            if not types or (len(types) != 1 and len(types) != last - first + 1):
                change.error = f"{len(types)} acknowledge types for offsets {first}-{last}"
                return change
            kinds = np.asarray(types, np.int8)
            if ((kinds < ACK_GAP) | (kinds > (ACK_RENEW if allow_renew else ACK_REJECT))).any():
                change.error = f"unknown acknowledge type in {sorted(set(types))}"
                return change
            s = self._slice(first, last)
            if owner is None or not ((self._state[s] == ACQUIRED) & (self._owner[s] == owner)).all():
                change.error = f"offsets {first}-{last} are not acquired by this member"
                return change
            plans.append((first, last, s, kinds))
        for first, last, s, kinds in plans:
            if len(kinds) == 1:
                kinds = np.full(last - first + 1, kinds[0], np.int8)
            states = self._state[s]
            counts = self._count[s]
            renew = kinds == ACK_RENEW
            if renew.any():
                self._deadline[s][renew] = now_ms + lock_ms
            accepted = kinds == ACK_ACCEPT
            states[accepted] = ACKNOWLEDGED
            self.acknowledged_total += int(np.count_nonzero(accepted))
            states[kinds == ACK_GAP] = ARCHIVED
            rejected = kinds == ACK_REJECT
            if rejected.any():
                states[rejected] = ARCHIVED
                self.archived_total += int(np.count_nonzero(rejected))
                change.archived.extend(_listing(first, rejected, counts, REASON_REJECTED))
            released = kinds == ACK_RELEASE
            if released.any():
                self._release(first, released, states, counts, limit, change)
            done = ~renew
            if done.any():  # a renewal alone changes nothing that is persisted
                self._owner[s][done] = -1
                self._deadline[s][done] = _NO_DEADLINE
                change.touch(first, last)
        self.advance()
        return change

    def _release(self, first: int, mask: np.ndarray, states: np.ndarray, counts: np.ndarray, limit: int,
                 change: Change) -> None:
        """ACQUIRED -> AVAILABLE for ``mask`` (positions from ``first``); ARCHIVED at the limit."""
        spent = mask & (counts >= limit)
        again = mask & ~spent
        states[again] = AVAILABLE
        if again.any():
            change.available = True
        if spent.any():
            states[spent] = ARCHIVED
            self.archived_total += int(np.count_nonzero(spent))
            change.archived.extend(_listing(first, spent, counts, REASON_DELIVERY_LIMIT))

    def expire(self, now_ms: int, limit: int) -> Change:
        """Release every record whose lock deadline is at or before ``now_ms``."""
        change = Change()
        w = self._window()
        states = self._state[w]
        expired = (states == ACQUIRED) & (self._deadline[w] <= now_ms)
        if expired.any():
            self._release_mask(expired, limit, change)
        return change

    def release_member(self, member: str, limit: int) -> Change:
        """Release every record ``member`` holds (its session ended)."""
        change = Change()
        owner = self._owners.get(member)
        if owner is None:
            return change
        w = self._window()
        mine = (self._state[w] == ACQUIRED) & (self._owner[w] == owner)
        if mine.any():
            self._release_mask(mine, limit, change)
        return change

    def _release_mask(self, mask: np.ndarray, limit: int, change: Change) -> None:
        w = self._window()
        states, counts = self._state[w], self._count[w]
        self._release(self.start, mask, states, counts, limit, change)
        self._owner[w][mask] = -1
        self._deadline[w][mask] = _NO_DEADLINE
        positions = np.flatnonzero(mask)
        change.touch(self.start + int(positions[0]), self.start + int(positions[-1]))
        self.advance()

    # -- persistence ---------------------------------------------------------------

    def runs(self, lo: int | None = None, hi: int | None = None, *, live: bool = False) -> np.ndarray:
        """The persisted form of offsets ``lo..hi`` (default: the window) as
        :data:`RUN_DTYPE` runs. ACQUIRED is written as AVAILABLE with its count
        (locks do not survive a restart) unless ``live``; AVAILABLE runs with
        count 0 are left out (they equal offsets never seen)."""
        lo = self.start if lo is None else max(lo, self.start)
        hi = self.end - 1 if hi is None else min(hi, self.end - 1)
        if hi < lo:
            return np.empty(0, RUN_DTYPE)
        s = self._slice(lo, hi)
        states = self._state[s].copy()
        if not live:
            states[states == ACQUIRED] = AVAILABLE
        counts = self._count[s]
        cuts = np.flatnonzero((states[1:] != states[:-1]) | (counts[1:] != counts[:-1])) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts - 1, [len(states) - 1]))
        keep = (states[starts] != AVAILABLE) | (counts[starts] != 0)
        out = np.empty(int(keep.sum()), RUN_DTYPE)
        out["first"] = starts[keep] + lo
        out["last"] = ends[keep] + lo
        out["state"] = states[starts[keep]]
        out["count"] = counts[starts[keep]]
        return out

    def apply_runs(self, start: int, runs: np.ndarray, *, snapshot: bool) -> None:
        """Replay a persisted snapshot (replaces the window) or delta (patches it)."""
        if snapshot:
            self.start = self.end = self._base = start
            self._compact()
        for first, last, state, count in runs.tolist():
            first = max(first, self.start)
            if last < first:
                continue
            self._extend(last + 1)
            s = self._slice(first, last)
            self._state[s] = AVAILABLE if state == ACQUIRED else state
            self._count[s] = count
            self._owner[s] = -1
            self._deadline[s] = _NO_DEADLINE
        if start > self.start:
            self.move_start(start)
        self.advance()


def _ranges(first: int, mask: np.ndarray, counts: np.ndarray) -> list[AcquiredRange]:
    """Runs of ``mask`` from offset ``first``, split where ``counts`` changes."""
    positions = np.flatnonzero(mask)
    if not len(positions):
        return []
    picked = counts[positions]
    cuts = np.flatnonzero((np.diff(positions) != 1) | (picked[1:] != picked[:-1])) + 1
    out = []
    for a, b in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [len(positions)])).tolist()):
        out.append(AcquiredRange(first + int(positions[a]), first + int(positions[b - 1]), int(picked[a])))
    return out


def _listing(first: int, mask: np.ndarray, counts: np.ndarray, reason: str) -> list[tuple[int, int, str]]:
    """``(offset, delivery count, reason)`` for each set position of ``mask``."""
    positions = np.flatnonzero(mask)
    return [(first + p, c, reason) for p, c in zip(positions.tolist(), counts[positions].tolist())]


def merge_ranges(ranges: list[AcquiredRange]) -> list[AcquiredRange]:
    """Join adjacent ranges with the same delivery count (across batches)."""
    out: list[AcquiredRange] = []
    for r in ranges:
        if out and out[-1].last + 1 == r.first and out[-1].delivery_count == r.delivery_count:
            out[-1] = AcquiredRange(out[-1].first, r.last, r.delivery_count)
        else:
            out.append(r)
    return out
