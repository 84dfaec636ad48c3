"""Fetch: hand out memoryviews of mapped segments, whole batches only.

A fetch that finds fewer than ``min_bytes`` becomes a FetchOperation the
server retries whenever one of its partitions grows, until ``max_wait_ms``.
Responses are written by the protocol's fast Fetch encoder (no kio objects),
and the request is read once, not on every attempt.
"""

from __future__ import annotations

from typing import Any

from collections.abc import Sequence

from logbroker.protocol import ErrorCode, FetchPartition, Request, encode_fetch_response, encode_legacy_fetch_response

from logbroker.broker.core import Broker
from logbroker.broker.handlers._acl import TOPIC_DENIED
from logbroker.broker.handlers._build import ms
from logbroker.broker.handlers._legacy import fetch_magic
from logbroker.broker.handlers._result import FlushPoint
from logbroker.broker.handlers.errors import error_code_for
from logbroker.broker.session import RequestContext
from logbroker.broker.markers import cut_before
from logbroker.errors import LogbrokerError
from logbroker.records import down_convert

_NONE = ErrorCode.none


class FetchOperation:
    """One Fetch request, attempted again each time watched data arrives."""

    __slots__ = ("_broker", "_version", "_correlation_id", "_topics", "_max_bytes", "_denied",
                 "_read_committed", "_magic", "wait_ms", "min_bytes", "watch")
    flush: Sequence[FlushPoint] = ()
    """(partition log, offset) pairs to fsync before the first attempt (ShareFetch's acknowledgements)."""

    def __init__(self, broker: Broker, ctx: RequestContext, request: Request) -> None:
        self._broker = broker
        self._version = request.api_version
        self._correlation_id = request.correlation_id
        body = request.body
        self.wait_ms = max(0, ms(body.max_wait))
        self.min_bytes = int(body.min_bytes)
        self._max_bytes = int(body.max_bytes)
        # isolation_level 1 (read_committed): data below the last stable offset only.
        self._read_committed = int(getattr(body, "isolation_level", 0)) == 1
        # v0-3 (old clients) read magic 0/1 messages converted from the stored v2 batches.
        self._magic = fetch_magic(self._version)
        # (topic, [(partition, fetch offset, partition max bytes)]) in request order.
        self._topics = [
            (t.topic, [(int(p.partition), int(p.fetch_offset), int(p.partition_max_bytes)) for p in t.partitions])
            for t in body.topics
        ]
        self.watch = [(topic, p[0]) for topic, parts in self._topics for p in parts]
        # Decided once, for the principal of the connection that asked.
        self._denied = {topic for topic, _ in self._topics if not broker.allowed(ctx, "read", "topic", topic)}

    def __repr__(self) -> str:
        return f"FetchOperation(partitions={len(self.watch)}, wait_ms={self.wait_ms}, min_bytes={self.min_bytes})"

    def attempt(self, *, final: bool) -> Any:
        """The encoded response, or None while too little data is there and not final."""
        partition_log = self._broker.partition
        remaining = self._max_bytes
        total = 0
        errors = False
        topics_out = []
        sent = []  # (topic, bytes) for the traffic counters, once per topic
        for topic, wanted in self._topics:
            parts = []
            topic_bytes = 0
            for index, offset, partition_max in wanted:
                if topic in self._denied:
                    errors = True
                    parts.append(FetchPartition(index, TOPIC_DENIED, -1, -1, -1, b""))
                    continue
                try:
                    plog = partition_log(topic, index)
                    limit = min(partition_max, remaining)
                    # At least one whole batch while the response is still empty.
                    result = plog.read(offset, limit if total else max(limit, 1))
                except LogbrokerError as exc:
                    errors = True
                    hw, start = self._offsets_or_unknown(topic, index)
                    parts.append(FetchPartition(index, error_code_for(exc), hw, hw, start, b""))
                    continue
                records: bytes | memoryview = result.records
                hw = result.high_watermark
                stable = self._broker.last_stable_offset(topic, index, plog)
                aborted = None
                if self._read_committed:
                    if stable < hw:
                        records = cut_before(memoryview(records), stable)
                    aborted = self._broker.aborted_transactions(topic, index, plog, offset, stable) if records else None
                if self._magic is not None and records:
                    try:
                        records = down_convert(records, self._magic, offset, limit, at_least_one=not total)
                    except LogbrokerError as exc:  # a stored batch that does not decode: this partition only
                        errors = True
                        parts.append(FetchPartition(index, error_code_for(exc), hw, stable, result.log_start_offset, b""))
                        continue
                size = len(records)
                if total and size > limit:
                    records, size = b"", 0
                total += size
                topic_bytes += size
                remaining = max(0, remaining - size)
                parts.append(FetchPartition(index, _NONE, hw, stable, result.log_start_offset, records, aborted))
            topics_out.append((topic, parts))
            if topic_bytes:
                sent.append((topic, topic_bytes))
        if not final and not errors and total < self.min_bytes and self.wait_ms > 0:
            return None
        bytes_out = self._broker.traffic.bytes_out
        for topic, n in sent:
            bytes_out[topic] += n
        if self._magic is not None:
            return encode_legacy_fetch_response(self._version, self._correlation_id, topics_out)
        return encode_fetch_response(self._version, self._correlation_id, topics_out)

    def _offsets_or_unknown(self, topic: str, index: int) -> tuple[int, int]:
        try:
            plog = self._broker.partition(topic, index)
        except LogbrokerError:
            return -1, -1
        return plog.log_end_offset, plog.log_start_offset


def handle_fetch(broker: Broker, ctx: RequestContext, request: Request) -> FetchOperation:
    return FetchOperation(broker, ctx, request)
