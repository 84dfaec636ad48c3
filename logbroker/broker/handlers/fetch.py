"""Fetch: hand out memoryviews of mapped segments, whole batches only.

A fetch that finds fewer than ``min_bytes`` becomes a FetchOperation the
server retries whenever one of its partitions grows, until ``max_wait_ms``.
Responses are written by the protocol's fast Fetch encoder (no kio objects),
and the request is read once, not on every attempt.

From v7 a Fetch may use an incremental fetch session (KIP-227, the broker's
:class:`~logbroker.broker.fetch_sessions.FetchSessionCache`): the cache says,
once per request, what the request does (a :data:`FetchContext`). A FULL fetch
offers a new session with the partitions it answered; an INCREMENTAL one reads
every partition of its session but answers only those with records, a changed
high watermark, last stable offset or log start offset, or an error. A
partition at its log end whose offsets the client already knows is skipped
without reading it, so an idle partition costs a few lookups per fetch. A long
poll of an incremental fetch waits on every partition of the session.
"""

from __future__ import annotations

from typing import Any

from collections.abc import Collection, Sequence

from logbroker.protocol import ErrorCode, FetchPartition, Request, encode_fetch_response, encode_legacy_fetch_response

from logbroker.broker.core import Broker
from logbroker.broker.fetch_sessions import (
    CachedPartition,
    FetchContext,
    FullFetch,
    IncrementalFetch,
    PartitionRequest,
    SessionErrorContext,
    Sessionless,
    SESSION_MIN_VERSION,
)
from logbroker.broker.handlers._acl import TOPIC_DENIED
from logbroker.broker.handlers._build import ms
from logbroker.broker.handlers._legacy import fetch_magic
from logbroker.broker.handlers._result import FlushPoint
from logbroker.broker.handlers.errors import FETCH_SESSION_ERROR_CODES, error_code_for
from logbroker.broker.session import RequestContext
from logbroker.broker.markers import cut_before
from logbroker.errors import LogbrokerError
from logbroker.records import down_convert

_NONE = ErrorCode.none

# (topic, [(partition, fetch offset, partition max bytes)]) in request order.
_Wanted = list[tuple[str, list[tuple[int, int, int]]]]


class FetchOperation:
    """One Fetch request, attempted again each time watched data arrives."""

    __slots__ = ("_broker", "_version", "_correlation_id", "_topics", "_max_bytes", "_denied",
                 "_read_committed", "_magic", "_context", "_log_starts", "wait_ms", "min_bytes", "watch",
                 "watch_session")
    flush: Sequence[FlushPoint] = ()
    """(partition log, offset) pairs to fsync before the first attempt (ShareFetch's acknowledgements)."""

    def __init__(self, broker: Broker, ctx: RequestContext, request: Request) -> None:
        self._broker = broker
        self._version = version = request.api_version
        self._correlation_id = request.correlation_id
        body = request.body
        self.wait_ms = max(0, ms(body.max_wait))
        self.min_bytes = int(body.min_bytes)
        self._max_bytes = int(body.max_bytes)
        # isolation_level 1 (read_committed): data below the last stable offset only.
        self._read_committed = int(getattr(body, "isolation_level", 0)) == 1
        # v0-3 (old clients) read magic 0/1 messages converted from the stored v2 batches.
        self._magic = fetch_magic(version)
        # (topic, [(partition, fetch offset, partition max bytes)]) in request order.
        self._topics: _Wanted = [
            (t.topic, [(int(p.partition), int(p.fetch_offset), int(p.partition_max_bytes)) for p in t.partitions])
            for t in body.topics
        ]
        self._log_starts: dict[tuple[str, int], int] = {}
        self.watch_session: int | None = None  # an incremental fetch waits on its whole session
        context: FetchContext = Sessionless()
        if version >= SESSION_MIN_VERSION:
            context = self._session_context(body)
        self._context = context
        topics: Collection[str]
        if isinstance(context, IncrementalFetch):
            topics = context.session.topics()
            self.watch: list[tuple[str, int]] = []  # the whole session is watched (partitions_changed)
            self.watch_session = context.session.id
        elif isinstance(context, SessionErrorContext):
            topics = set()
            self.watch = []
        else:
            topics = {topic for topic, _ in self._topics}
            self.watch = [(topic, p[0]) for topic, parts in self._topics for p in parts]
        # Decided once, for the principal of the connection that asked.
        self._denied = {topic for topic in topics if not broker.allowed(ctx, "read", "topic", topic)}

    def _session_context(self, body: Any) -> FetchContext:
        """Ask the broker's session cache what this v7+ request does."""
        epoch = int(body.session_epoch)
        session_id = int(body.session_id)
        requested: list[PartitionRequest] = []
        if epoch > 0:  # incremental: the listed partitions update the session
            log_starts = {
                (t.topic, int(p.partition)): int(getattr(p, "log_start_offset", -1))
                for t in body.topics for p in t.partitions
            }
            requested = [
                PartitionRequest(topic, index, offset, partition_max, log_starts[(topic, index)])
                for topic, parts in self._topics for index, offset, partition_max in parts
            ]
        else:
            self._log_starts = {
                (t.topic, int(p.partition)): int(getattr(p, "log_start_offset", -1))
                for t in body.topics for p in t.partitions
            } if epoch == 0 else {}
        forgotten = [(t.topic, int(p)) for t in body.forgotten_topics_data for p in t.partitions]
        broker = self._broker
        return broker.fetch_sessions.new_context(
            self._version, session_id, epoch, requested, forgotten, broker.clock(),
        )

    def __repr__(self) -> str:
        return (f"FetchOperation(partitions={len(self.watch)}, wait_ms={self.wait_ms}, min_bytes={self.min_bytes}, "
                f"context={type(self._context).__name__})")

    def attempt(self, *, final: bool) -> Any:
        """The encoded response, or None while too little data is there and not final."""
        context = self._context
        if isinstance(context, IncrementalFetch):
            return self._attempt_incremental(context, final)
        if isinstance(context, SessionErrorContext):
            return encode_fetch_response(self._version, self._correlation_id, [],
                                         error_code=FETCH_SESSION_ERROR_CODES[context.error])
        remaining = self._max_bytes
        total = 0
        errors = False
        topics_out = []
        sent = []  # (topic, bytes) for the traffic counters, once per topic
        for topic, wanted in self._topics:
            parts = []
            topic_bytes = 0
            for index, offset, partition_max in wanted:
                part, size = self._read(topic, index, offset, min(partition_max, remaining), total)
                if part.error_code != _NONE:
                    errors = True
                total += size
                topic_bytes += size
                remaining = max(0, remaining - size)
                parts.append(part)
            topics_out.append((topic, parts))
            if topic_bytes:
                sent.append((topic, topic_bytes))
        if not final and not errors and total < self.min_bytes and self.wait_ms > 0:
            return None
        self._count_sent(sent)
        if self._magic is not None:
            return encode_legacy_fetch_response(self._version, self._correlation_id, topics_out)
        session_id = 0
        if isinstance(context, FullFetch):
            session_id = self._create_session(context, topics_out)
        return encode_fetch_response(self._version, self._correlation_id, topics_out, session_id=session_id)

    def _read(self, topic: str, index: int, offset: int, limit: int, total: int) -> tuple[FetchPartition, int]:
        """One partition's answer from ``offset`` within ``limit`` bytes (at least
        one whole batch while the response is still empty, ``total`` == 0), and its size."""
        if topic in self._denied:
            return FetchPartition(index, TOPIC_DENIED, -1, -1, -1, b""), 0
        try:
            plog = self._broker.partition(topic, index)
            result = plog.read(offset, limit if total else max(limit, 1))
        except LogbrokerError as exc:
            hw, start = self._offsets_or_unknown(topic, index)
            return FetchPartition(index, error_code_for(exc), hw, hw, start, b""), 0
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
                return FetchPartition(index, error_code_for(exc), hw, stable, result.log_start_offset, b""), 0
        size = len(records)
        if total and size > limit:
            records, size = b"", 0
        return FetchPartition(index, _NONE, hw, stable, result.log_start_offset, records, aborted), size

    def _attempt_incremental(self, context: IncrementalFetch, final: bool) -> Any:
        """Read the session's partitions; answer those with something new."""
        session = context.session
        broker = self._broker
        partition_log = broker.partition
        last_stable_offset = broker.last_stable_offset
        denied = self._denied
        remaining = self._max_bytes
        total = 0
        errors = False
        included: list[tuple[CachedPartition, FetchPartition]] = []
        for cached in session.to_read(broker.clock()):
            topic = cached.topic
            index = cached.partition
            if topic not in denied:
                # An idle partition the client is caught up on and whose offsets it
                # knows says nothing: skip it without reading.
                try:
                    plog = partition_log(topic, index)
                except LogbrokerError:
                    plog = None
                if plog is not None:
                    hw = plog.high_watermark
                    if cached.fetch_offset == hw:
                        start = plog.log_start_offset
                        if hw == cached.high_watermark and start == cached.local_log_start_offset:
                            # Nothing appended or deleted since the last answer: the last
                            # stable offset cannot have moved either (markers are appends).
                            continue
                        stable = last_stable_offset(topic, index, plog)
                        if cached.unchanged(hw, stable, start):
                            continue
                        session.read_again(cached)
                        included.append((cached, FetchPartition(index, _NONE, hw, stable, start, b"")))
                        continue
            session.read_again(cached)  # records, an error or new offsets: read it next time too
            part, size = self._read(topic, index, cached.fetch_offset, min(cached.max_bytes, remaining), total)
            if part.error_code != _NONE:
                errors = True
            elif not size and cached.unchanged(part.high_watermark, part.last_stable_offset, part.log_start_offset):
                continue
            total += size
            remaining = max(0, remaining - size)
            included.append((cached, part))
        if not final and not errors and total < self.min_bytes and self.wait_ms > 0:
            return None
        if session.epoch != context.epoch:
            # Another request of this session came in meanwhile (a duplicate): Kafka answers so.
            return encode_fetch_response(self._version, self._correlation_id, [], session_id=session.id,
                                         error_code=ErrorCode.invalid_fetch_session_epoch)
        by_topic: dict[str, list[FetchPartition]] = {}
        sent: dict[str, int] = {}
        for cached, part in included:
            by_topic.setdefault(cached.topic, []).append(part)
            cached.answered(part.error_code != _NONE, part.high_watermark, part.last_stable_offset,
                            part.log_start_offset)
            if part.records:
                sent[cached.topic] = sent.get(cached.topic, 0) + len(part.records)
                session.move_to_end(cached.topic, cached.partition)
        self._count_sent(sent.items())
        return encode_fetch_response(self._version, self._correlation_id, list(by_topic.items()),
                                     session_id=session.id)

    def _create_session(self, context: FullFetch, topics_out: Sequence[tuple[str, Sequence[FetchPartition]]]) -> int:
        """Offer a session holding the partitions of this FULL fetch's answer; its id or 0."""
        cached_parts = []
        log_starts = self._log_starts
        for (topic, wanted), (_, parts) in zip(self._topics, topics_out):
            for (index, offset, partition_max), part in zip(wanted, parts):
                cached = CachedPartition(PartitionRequest(topic, index, offset, partition_max,
                                                          log_starts.get((topic, index), -1)))
                cached.answered(part.error_code != _NONE, part.high_watermark, part.last_stable_offset,
                                part.log_start_offset)
                cached_parts.append(cached)
        broker = self._broker
        return broker.fetch_sessions.create(cached_parts, context.uses_topic_ids, broker.clock())

    def _count_sent(self, sent: Any) -> None:
        bytes_out = self._broker.traffic.bytes_out
        for topic, n in sent:
            bytes_out[topic] += n

    def _offsets_or_unknown(self, topic: str, index: int) -> tuple[int, int]:
        try:
            plog = self._broker.partition(topic, index)
        except LogbrokerError:
            return -1, -1
        return plog.log_end_offset, plog.log_start_offset


def handle_fetch(broker: Broker, ctx: RequestContext, request: Request) -> FetchOperation:
    return FetchOperation(broker, ctx, request)
