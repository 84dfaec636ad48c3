"""Damaged batches in a ``.log``: finding them, skipping them, describing what they held.

:func:`scan_batches` walks a segment's bytes from the start and checks every
batch (length, magic, CRC-32C, offsets increasing from the segment's base
offset). At a batch that fails, it looks byte by byte for the first valid
batch after it that either starts where the damaged batch's own length says
the next one does, or is followed by another valid batch (or ends the data),
so a batch-shaped run of bytes inside a record value is not taken for one.
What lies between is a :class:`LostRange`; damage with nothing valid after
it is the torn tail. The batches kept keep their offsets: a lost range
leaves a gap in the offsets, as compaction does, and Kafka clients read
across gaps. So damage loses what it touched and nothing after it (except
a base offset raised by the damage: it lies outside the CRC, so the batch
passes at the wrong offsets and the batches after it look out of order).

:class:`DamagedBatch` is what a read found (and did not serve) in a log that
was not scanned at open (after a clean shutdown, or below the recovery point).

Pure functions over a buffer (no I/O), so ``logbroker repair --dry-run`` can
scan a map of a file the broker is not running on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import crc32c

from logbroker.records import (
    CRC_START,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOCATE_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_AT,
    BytesLike,
)

__all__ = ["BatchScan", "DamagedBatch", "LostRange", "scan_batches"]

_MIN_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_INT32_MAX = 2**31 - 1
_CHUNK = 1 << 20  # bytes searched for a batch start per step (a copy of at most this much)


def _offsets(first: int, last: int | None) -> str:
    """``"offsets 5-9 (5)"``; ``last`` None: open-ended."""
    if last is None:
        return f"offsets from {first} on"
    if last < first:
        return "no offsets"
    return f"offset {first}" if last == first else f"offsets {first}-{last} ({last - first + 1})"


class LostRange(NamedTuple):
    """Bytes ``[position, end)`` of the ``.log`` at ``path`` that hold no valid batch,
    and the offsets they held: ``[first_offset, next_offset)``.

    ``next_offset`` is None for a torn tail of the last segment (the damage
    runs to the end of the file and no later segment bounds it): what it held
    ran to the old log end, which the segment alone does not tell.
    """

    path: str
    position: int
    end: int
    first_offset: int
    next_offset: int | None

    @property
    def records(self) -> int | None:
        """Offsets in the range (an upper bound on compacted topics); None if unbounded."""
        return None if self.next_offset is None else max(0, self.next_offset - self.first_offset)

    def offsets(self) -> str:
        """``"offsets 5-9 (5)"``, ``"offsets from 5 on"`` or ``"no offsets"``."""
        return _offsets(self.first_offset, None if self.next_offset is None else self.next_offset - 1)

    def describe(self) -> str:
        return f"bytes {self.position}-{self.end} of {self.path}: {self.offsets()}"


class DamagedBatch(NamedTuple):
    """A batch that a read found damaged at byte ``position`` of the ``.log`` at ``path``
    (and did not serve). ``first_offset``/``last_offset`` are what its header
    says, or the offset asked for and -1 where the header is unreadable."""

    path: str
    position: int
    first_offset: int
    last_offset: int
    reason: str

    def offsets(self) -> str:
        return _offsets(self.first_offset, self.last_offset if self.last_offset >= 0 else None)


class BatchScan(NamedTuple):
    """What :func:`scan_batches` found. ``kept``: byte ranges of valid batches in
    order; ``lost``: the ranges between and after them; ``next_offset``: one
    past the last valid batch (the base offset when there is none)."""

    kept: tuple[tuple[int, int], ...]
    lost: tuple[LostRange, ...]
    batches: int
    next_offset: int

    @property
    def kept_bytes(self) -> int:
        return sum(stop - start for start, stop in self.kept)

    @property
    def has_holes(self) -> bool:
        """True if a lost range lies between valid batches (only a rewrite removes it;
        a torn tail alone is cut off by truncation)."""
        return any(r.next_offset is not None for r in self.lost)


def _valid(view: BytesLike, pos: int, size: int, expected: int, max_last: int, limit: int) -> tuple[int, int, int] | None:
    """``(size, last offset, max timestamp)`` of a valid batch at ``pos`` with base
    offset >= ``expected``, or None."""
    if size - pos < HEADER_SIZE:
        return None
    base, length, _, magic, stored_crc, _, last_delta, _, max_ts = HEADER_STRUCT.unpack_from(view, pos)[:9]
    n = length + LOG_OVERHEAD
    if (
        length < _MIN_LENGTH
        or n > size - pos
        or n > limit
        or magic != MAGIC
        or base < expected
        or last_delta < 0
        or base + last_delta > max_last
        or crc32c.crc32c(view[pos + CRC_START : pos + n]) != stored_crc
    ):
        return None
    return n, base + last_delta, max_ts


def _resync(view: BytesLike, pos: int, size: int, expected: int, max_last: int, limit: int) -> int | None:
    """Where the first valid batch after the damaged one at ``pos`` starts, or None.

    Candidates are tried in order from ``pos + 1``. One counts if it is where
    the damaged batch's own length says the next batch starts (the chain
    goes on), or if the batch after it is valid too or it ends the data: a
    lone batch-shaped run of bytes inside a record value is not taken.
    """
    declared = pos + LOCATE_STRUCT.unpack_from(view, pos)[1] + LOG_OVERHEAD if size - pos >= HEADER_SIZE else -1
    start = pos + 1
    while size - start >= HEADER_SIZE:
        stop = min(start + _CHUNK, size - HEADER_SIZE + 1)
        magics = bytes(view[start + MAGIC_AT : stop + MAGIC_AT])  # the magic byte of each candidate start
        i = magics.find(b"\x02")
        while i >= 0:
            candidate = start + i
            found = _valid(view, candidate, size, expected, max_last, limit)
            if found is not None:
                n, last, _ = found
                after = candidate + n
                if (candidate == declared or after == size
                        or _valid(view, after, size, last + 1, max_last, limit) is not None):
                    return candidate
            i = magics.find(b"\x02", i + 1)
        start = stop
    return None


def scan_batches(
    view: BytesLike,
    size: int,
    base_offset: int,
    *,
    path: str = "",
    max_batch_bytes: int | None = None,
    on_batch: Callable[[int, int, int, int], None] | None = None,
) -> BatchScan:
    """Check every batch of ``view[:size]``, a segment whose base offset is ``base_offset``.

    ``on_batch(position, size, last_offset, max_timestamp)`` is called for each
    valid batch in order, with its position in the file once the lost ranges
    are removed (to rebuild indexes). ``max_batch_bytes`` treats larger
    batches as damaged. ``path`` names the file in the lost ranges.
    """
    limit = max_batch_bytes if max_batch_bytes is not None else 1 << 62
    max_last = base_offset + _INT32_MAX  # index entries hold offsets relative to the base
    kept: list[tuple[int, int]] = []
    lost: list[LostRange] = []
    expected = base_offset
    pos = run = shift = batches = 0
    while pos < size:
        found = _valid(view, pos, size, expected, max_last, limit)
        if found is None:
            if pos > run:
                kept.append((run, pos))
            nxt = _resync(view, pos, size, expected, max_last, limit)
            if nxt is None:
                lost.append(LostRange(path, pos, size, expected, None))
                run = pos = size
                break
            lost.append(LostRange(path, pos, nxt, expected, LOCATE_STRUCT.unpack_from(view, nxt)[0]))
            shift += nxt - pos
            run = pos = nxt
            continue
        n, last, max_ts = found
        if on_batch is not None:
            on_batch(pos - shift, n, last, max_ts)
        expected = last + 1
        pos += n
        batches += 1
    if pos > run:
        kept.append((run, pos))
    return BatchScan(tuple(kept), tuple(lost), batches, expected)
