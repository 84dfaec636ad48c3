"""Read an internal topic back at startup, batch by batch, surviving damage.

A batch that no longer decodes (flipped bits below the recovery point, which
a clean start does not rescan) is treated as recovery treats a torn tail:
the log is cut at that batch, the cut is logged with its file and offsets,
and replay ends there, so the broker starts and never serves the bad batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from logbroker.errors import RecordsError
from logbroker.records import Record, decode_batch, iter_batches

log = logging.getLogger("logbroker.broker")

_READ_BYTES = 1 << 20


def replay_records(plog) -> Iterator[Record]:
    """Every record of ``plog`` from its log start, in offset order."""
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, _READ_BYTES).records
        if not len(data):
            break
        for pos, header in iter_batches(data):
            offset = max(offset, header.next_offset)
            try:
                batch = decode_batch(data, pos)
            except RecordsError as exc:
                size = plog.size_bytes
                del data  # no view of the bytes about to be cut may survive
                plog.truncate_to(header.base_offset)
                log.error(
                    "%s: damaged batch at offsets %d-%d (%s): truncated %d invalid bytes, "
                    "the log now ends at offset %d",
                    plog.directory, header.base_offset, header.last_offset, exc,
                    size - plog.size_bytes, plog.log_end_offset,
                )
                return
            yield from batch.records
