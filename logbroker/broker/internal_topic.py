"""A one-partition internal topic a coordinator writes its state to:
append, replay at startup, copy-forward compaction; and the string codec
the internal topics' record formats share.

Compaction rolls the segment, appends the live records (the coordinator's
current state), fsyncs them and moves the log start past everything older.
A crash at any point leaves a log whose replay gives the same state: the
copies are the latest values, and the old records go only once the copies
are durable. Not thread-safe; the broker calls it from one thread.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from logbroker.broker.startup_replay import replay_batches
from logbroker.errors import LogbrokerError, UnknownTopicError
from logbroker.records import BatchBuilder, BatchHeader, BytesLike, Record, parse_header
from logbroker.storage import LogManager, PartitionLog

log = logging.getLogger("logbroker.broker")

_REWRITE_BATCH_BYTES = 1 << 20
_I16 = struct.Struct(">h")

# Kafka's internal topic names: those the broker writes today, and those a
# later version (or a Kafka cluster a user moves to) owns, so that no user
# topic can take the name first.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__share_group_state", "__transaction_state", "__cluster_metadata",
                             "_schemas"})
# What an internal topic's configs must keep: the coordinators replay it
# key by key, and write batches of up to _REWRITE_BATCH_BYTES (Kafka's
# default max.message.bytes leaves room for one).
_REQUIRED_CLEANUP_POLICY = "compact"
_MIN_MAX_MESSAGE_BYTES = 1048588


def is_internal_topic(name: str) -> bool:
    """A topic the broker owns: clients may read it but not write, delete, grow or reconfigure it."""
    return name in INTERNAL_TOPICS


def internal_config_problem(name: str, cleanup_policy: str, max_message_bytes: int) -> str | None:
    """Why configs with these effective values would break internal topic ``name``; None if they would not."""
    if cleanup_policy != _REQUIRED_CLEANUP_POLICY:
        return f"internal topic {name} must keep cleanup.policy={_REQUIRED_CLEANUP_POLICY} (asked: {cleanup_policy})"
    if max_message_bytes < _MIN_MAX_MESSAGE_BYTES:
        return f"internal topic {name} needs max.message.bytes >= {_MIN_MAX_MESSAGE_BYTES} (asked: {max_message_bytes})"
    return None


class RecordFormatError(ValueError):
    """A key or value of an internal topic that does not parse (truncated, bad UTF-8)."""


def encode_str(text: str | None) -> bytes:
    """An int16 byte length (-1 = null) and the UTF-8 bytes."""
    if text is None:
        return _I16.pack(-1)
    raw = text.encode("utf-8")
    return _I16.pack(len(raw)) + raw


def read_str(buf: BytesLike, pos: int) -> tuple[str | None, int]:
    """The string :func:`encode_str` wrote at ``buf[pos]``, and the position after it."""
    (length,) = _I16.unpack_from(buf, pos)
    pos += 2
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise RecordFormatError("string runs past the end of the record")
    return bytes(buf[pos : pos + length]).decode("utf-8"), pos + length


@dataclass(frozen=True, slots=True)
class FlushPoint:
    """fsync ``log`` below ``offset`` to make a write durable."""

    log: PartitionLog
    offset: int


class InternalTopic:
    """Subclasses set ``NAME``, ``CONFIGS`` and ``REWRITE_BATCH_RECORDS``.

    ``record_count``: records between the log start and the log end, i.e.
    what a replay would read (coordinators compare it with their live state
    to decide when to compact).
    """

    NAME: str
    CONFIGS: dict[str, str]
    REWRITE_BATCH_RECORDS = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.NAME not in INTERNAL_TOPICS:
            raise TypeError(f"{cls.__name__}.NAME {cls.NAME!r} must be listed in INTERNAL_TOPICS")

    def __init__(self, log_manager: LogManager) -> None:
        self._manager = log_manager
        self.record_count = 0
        self._next_compaction_check: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(records={self.record_count})"

    def _log(self, create: bool) -> PartitionLog | None:
        try:
            return self._manager.get_partition(self.NAME, 0)
        except UnknownTopicError:
            if not create:
                return None
        self._manager.create_topic(self.NAME, 1, dict(self.CONFIGS))
        log.info("created internal topic %s", self.NAME)
        return self._manager.get_partition(self.NAME, 0)

    def append(self, records: Sequence[tuple[bytes, bytes | None]], now_ms: int, *,
               producer_id: int = -1, producer_epoch: int = -1) -> FlushPoint:
        """Append ``(key, value)`` records as one batch; returns where to fsync.

        With ``producer_id`` the batch is transactional (its records count
        once a commit marker of that producer follows, see :meth:`append_batch`).
        Creates the topic on first use. Raises LogbrokerError (StorageError,
        BatchTooLargeError...) with nothing written.
        """
        if producer_id >= 0:
            builder = BatchBuilder(producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=0,
                                   transactional=True)
        else:
            builder = BatchBuilder()
        for key, value in records:
            builder.append(value, key, timestamp_ms=now_ms)
        return self.append_batch(builder.build(), now_ms, records=len(records))

    def append_batch(self, batch: bytes, now_ms: int, *, records: int = 1, control: bool = False) -> FlushPoint:
        """Append a batch built by the caller (``control``: a transaction marker)."""
        plog = self._log(create=True)
        assert plog is not None  # create=True makes it
        # A marker's base sequence is -1: its header (built here) is passed as trusted.
        info = plog.append(batch, now_ms, allow_control=control, header=parse_header(batch) if control else None)
        self.record_count += records
        return FlushPoint(plog, info.last_offset + 1)

    def keyed_records(self) -> Iterator[Record]:
        """Every keyed record from the log start, in offset order, control
        records left out; counts all records."""
        for header, records in self.batches():
            if header.is_control:
                continue
            for record in records:
                if record.key is not None:
                    yield record

    def batches(self) -> Iterator[tuple[BatchHeader, list[Record]]]:
        """Every batch (header and records) from the log start; counts all records."""
        self.record_count = 0
        plog = self._log(create=False)
        if plog is None:
            return
        for header, records in replay_batches(plog):
            self.record_count += len(records)
            yield header, records

    def compact_if_superseded(self, live: Callable[[], Sequence[tuple[bytes, bytes | None]]], now_ms: int,
                              min_records: int) -> bool:
        """Copy the live state (``live()``) forward once the log holds at least
        ``min_records`` records and twice as many as are live; True if it did.

        ``live()`` is called only when a check is due: after ``min_records``
        records, then after as many records again as were live (at least
        ``min_records``), so the checks cost nothing per append.
        """
        due = min_records if self._next_compaction_check is None else self._next_compaction_check
        if self.record_count < due:
            return False
        records = live()
        rewritten = False
        if self.record_count >= 2 * len(records):
            try:
                self.rewrite(records, now_ms)
                rewritten = True
            except LogbrokerError as exc:
                log.warning("cannot compact %s: %s", self.NAME, exc)
        self._next_compaction_check = self.record_count + max(min_records, len(records))
        return rewritten

    def rewrite(self, records: Sequence[tuple[bytes, bytes | None]], now_ms: int,
                batch_records: int | None = None) -> None:
        """Copy-forward compaction: make ``records`` (the live state) the whole log.

        Blocks for one fsync of the copies. Raises LogbrokerError; on error
        the old records are kept and the log stays replayable.
        """
        plog = self._log(create=False)
        if plog is None:
            return
        batch_records = batch_records or self.REWRITE_BATCH_RECORDS
        before = plog.log_end_offset
        plog.roll()
        start = plog.log_end_offset
        builder = BatchBuilder()
        for key, value in records:
            builder.append(value, key, timestamp_ms=now_ms)
            if len(builder) >= batch_records or builder.estimated_size() >= _REWRITE_BATCH_BYTES:
                plog.append(builder.build(), now_ms)
                builder = BatchBuilder()
        if len(builder):
            plog.append(builder.build(), now_ms)
        plog.flush()
        plog.delete_records_before(start)
        dropped = self.record_count
        self.record_count = len(records)
        log.info(
            "compacted %s: %d records before offset %d replaced by %d live records",
            self.NAME, dropped, before, len(records),
        )
