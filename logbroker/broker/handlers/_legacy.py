"""Old clients (Produce v0-2, Fetch v0-3): their message sets to and from stored v2 batches.

The only place the broker decodes records, and only for these versions: new
clients keep the opaque batch path (docs/contributing.md, convention 9).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from logbroker.errors import RecordsError
from logbroker.records import message_set_to_batch

log = logging.getLogger(__name__)

FETCH_MAGIC = {0: 0, 1: 0, 2: 1, 3: 1}
"""The message format a Fetch version reads, as Kafka down-converts (v4+: the stored v2)."""


def fetch_magic(version: int) -> int | None:
    """The magic a Fetch of ``version`` is answered in; None: the stored batches as they are."""
    magic = FETCH_MAGIC.get(version)
    if magic is not None:
        log.debug("Fetch v%d: down-converting to magic %d for an old client", version, magic)
    return magic


def upconverted_produce(body: Any) -> Any:
    """``body`` (Produce v0-2 in the v3 shape) with each partition's message set
    as one v2 batch; a set that does not convert becomes empty records, which
    the handler answers with CORRUPT_MESSAGE as for any unreadable batch."""

    def convert(records: Any) -> Any:
        if not records:
            return records
        try:
            return message_set_to_batch(records)
        except RecordsError:
            return None

    log.debug("converting Produce message sets to v2 batches for an old client")
    return dataclasses.replace(
        body,
        topic_data=tuple(
            dataclasses.replace(
                topic,
                partition_data=tuple(
                    dataclasses.replace(p, records=convert(p.records)) for p in topic.partition_data
                ),
            )
            for topic in body.topic_data
        ),
    )
