"""Bytes and records in and out per topic, for the metrics endpoint.

Counted once per batch on produce (the record count is read from the batch
header) and once per topic on fetch: a dict add, never a loop over records.
"""

from __future__ import annotations

from collections import defaultdict


class TrafficCounters:
    """Running totals since the broker started, keyed by topic name.

    ``bytes_in``/``records_in``: record batches appended by producers
    (duplicates of an idempotent retry are not counted); ``bytes_out``: record
    batch bytes handed to Fetch responses. Not thread-safe: the broker's
    thread updates them and reads happen on that thread too.
    """

    __slots__ = ("bytes_in", "records_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in: defaultdict[str, int] = defaultdict(int)
        self.records_in: defaultdict[str, int] = defaultdict(int)
        self.bytes_out: defaultdict[str, int] = defaultdict(int)

    def __repr__(self) -> str:
        return (
            f"TrafficCounters(bytes_in={sum(self.bytes_in.values())}, "
            f"records_in={sum(self.records_in.values())}, bytes_out={sum(self.bytes_out.values())})"
        )

    def forget(self, topic: str) -> None:
        """Drop a deleted topic's counters."""
        for table in (self.bytes_in, self.records_in, self.bytes_out):
            table.pop(topic, None)
