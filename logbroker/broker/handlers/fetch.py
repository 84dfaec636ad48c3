"""Fetch: hand out memoryviews of mapped segments, whole batches only.

A fetch that finds fewer than ``min_bytes`` becomes a FetchOperation the
server retries whenever one of its partitions grows, until ``max_wait_ms``.
"""

from __future__ import annotations

from logbroker.protocol import ErrorCode

from logbroker.broker.handlers._build import build, module_of, ms
from logbroker.broker.handlers.errors import error_code_for
from logbroker.errors import LogbrokerError, OffsetOutOfRangeError, UnknownTopicError


class FetchOperation:
    """One Fetch request, attempted again each time watched data arrives."""

    __slots__ = ("_broker", "_request", "_mod", "wait_ms", "min_bytes", "watch")

    def __init__(self, broker, request) -> None:
        self._broker = broker
        self._request = request
        self._mod = module_of(request.response_class)
        body = request.body
        self.wait_ms = max(0, ms(body.max_wait))
        self.min_bytes = int(body.min_bytes)
        self.watch = [(t.topic, int(p.partition)) for t in body.topics for p in t.partitions]

    def __repr__(self) -> str:
        return f"FetchOperation(partitions={len(self.watch)}, wait_ms={self.wait_ms}, min_bytes={self.min_bytes})"

    def attempt(self, *, final: bool):
        """The response body, or None while too little data is there and not final."""
        body = self._request.body
        mod = self._mod
        remaining = int(body.max_bytes)
        total = 0
        errors = False
        topics_out = []
        for topic in body.topics:
            parts = []
            for fp in topic.partitions:
                index = int(fp.partition)
                try:
                    plog = self._broker.partition(topic.topic, index)
                    limit = min(int(fp.partition_max_bytes), remaining)
                    # At least one whole batch while the response is still empty.
                    result = plog.read(int(fp.fetch_offset), limit if total else max(limit, 1))
                    records = result.records
                    size = len(records)
                    if total and size > limit:
                        records, size = b"", 0
                    total += size
                    remaining = max(0, remaining - size)
                    parts.append(
                        build(
                            mod.PartitionData,
                            partition_index=index,
                            error_code=ErrorCode.none,
                            high_watermark=result.high_watermark,
                            last_stable_offset=result.high_watermark,
                            log_start_offset=result.log_start_offset,
                            aborted_transactions=None,
                            records=records,
                        )
                    )
                except (UnknownTopicError, OffsetOutOfRangeError, LogbrokerError) as exc:
                    errors = True
                    hw, start = self._offsets_or_unknown(topic.topic, index)
                    parts.append(
                        build(
                            mod.PartitionData,
                            partition_index=index,
                            error_code=error_code_for(exc),
                            high_watermark=hw,
                            last_stable_offset=hw,
                            log_start_offset=start,
                            aborted_transactions=None,
                            records=b"",
                        )
                    )
            topics_out.append(build(mod.FetchableTopicResponse, topic=topic.topic, partitions=tuple(parts)))
        if not final and not errors and total < self.min_bytes and self.wait_ms > 0:
            return None
        return build(
            self._request.response_class,
            error_code=ErrorCode.none,
            session_id=0,
            responses=tuple(topics_out),
        )

    def _offsets_or_unknown(self, topic: str, index: int) -> tuple[int, int]:
        try:
            plog = self._broker.partition(topic, index)
        except LogbrokerError:
            return -1, -1
        return plog.log_end_offset, plog.log_start_offset


def handle_fetch(broker, request) -> FetchOperation:
    return FetchOperation(broker, request)
