"""Read an internal topic back at startup, batch by batch, surviving damage.

A batch that no longer decodes (flipped bits below the recovery point, which
a clean start does not rescan) is treated as recovery treats a torn tail:
the log is cut at that batch, the cut is logged with its file and offsets,
and replay ends there, so the broker starts and never serves the bad batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from logbroker.errors import RecordsError, StorageError
from logbroker.records import BatchHeader, Record, decode_batch, iter_batches
from logbroker.storage import PartitionLog

log = logging.getLogger("logbroker.broker")

_READ_BYTES = 1 << 20


def replay_records(plog: PartitionLog) -> Iterator[Record]:
    """Every record of ``plog`` from its log start, in offset order."""
    for _, records in replay_batches(plog):
        yield from records


def replay_batches(plog: PartitionLog) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Every batch of ``plog`` from its log start, in offset order: its header
    (producer id, transactional and control bits) and its records."""
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        try:
            data = plog.read(offset, _READ_BYTES).records
        except StorageError as exc:  # the batch at ``offset`` fails its CRC check
            _cut(plog, offset, offset, exc)
            return
        if not len(data):
            break
        for pos, header in iter_batches(data):
            offset = max(offset, header.next_offset)
            try:
                batch = decode_batch(data, pos)
            except RecordsError as exc:
                del data  # no view of the bytes about to be cut may survive
                _cut(plog, header.base_offset, header.last_offset, exc)
                return
            yield header, batch.records


def _cut(plog: PartitionLog, first: int, last: int, exc: Exception) -> None:
    size = plog.size_bytes
    plog.truncate_to(first)
    log.error(
        "%s: damaged batch at offsets %d-%d (%s): truncated %d invalid bytes, the log now ends at offset %d",
        plog.directory, first, last, exc, size - plog.size_bytes, plog.log_end_offset,
    )
