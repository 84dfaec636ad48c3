"""Producer state of one partition: epochs, sequences and the last five
batches of each producer, so retried batches get their original offsets; and
the first offset of each producer's open transaction, which gives the
partition's last stable offset.

Rules follow Kafka's ProducerAppendInfo (kafka-notes section 1). The state is
rebuilt from batch headers (never records: a transactional batch opens its
producer's transaction, a control batch closes it) and snapshotted beside
the log.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from logbroker.errors import LogbrokerError
from logbroker.records import BatchHeader
from logbroker.storage import write_atomically

BATCHES_TO_RETAIN = 5
SNAPSHOT_NAME = "producer-state.json"

_log = logging.getLogger("logbroker.broker")


class ProducerStateError(LogbrokerError):
    """A batch breaks the producer's sequence rules; ``code`` is the Kafka error."""

    code = 0


class OutOfOrderSequenceError(ProducerStateError):
    code = 45


class InvalidProducerEpochError(ProducerStateError):
    code = 47


class InvalidTxnStateError(ProducerStateError):
    """A batch that does not fit the producer's transaction (e.g. a plain batch
    while its transaction is open, or a transactional batch outside one)."""

    code = 48


class TxnNotReadyError(ProducerStateError):
    """The transaction coordinator cannot say yet whether the partition is in
    the transaction; old producers retry on NOT_ENOUGH_REPLICAS (as Kafka maps it)."""

    code = 19


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class _ProducerEntry:
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction a marker closed on this partition: its offsets from the
    producer's first transactional batch to the marker."""

    producer_id: int
    first_offset: int
    last_offset: int
    aborted: bool


@dataclass(frozen=True, slots=True)
class ProducerSummary:
    """DescribeProducers' view of one producer (-1: unknown)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retried batch already in the log: answer with its original offsets."""

    base_offset: int
    timestamp: int


class PartitionProducerState:
    """Per-partition map producer id -> epoch and recent batches. Not thread-safe."""

    def __init__(
        self,
        producers: dict[int, _ProducerEntry] | None = None,
        ongoing: dict[int, int] | None = None,
        coordinator_epochs: dict[int, int] | None = None,
    ) -> None:
        """An empty state, or the one a snapshot holds (see :meth:`load`)."""
        self._producers: dict[int, _ProducerEntry] = producers if producers is not None else {}
        # producer id -> first offset of its open transaction
        self._ongoing: dict[int, int] = ongoing if ongoing is not None else {}
        self._coordinator_epochs: dict[int, int] = coordinator_epochs if coordinator_epochs is not None else {}

    def __len__(self) -> int:
        return len(self._producers)

    def __bool__(self) -> bool:
        return bool(self._producers or self._ongoing)

    def __repr__(self) -> str:
        return f"PartitionProducerState(producers={len(self._producers)}, open_transactions={len(self._ongoing)})"

    def first_unstable_offset(self) -> int | None:
        """The smallest first offset of an open transaction, or None."""
        return min(self._ongoing.values(), default=None)

    def open_transaction(self, producer_id: int) -> int | None:
        """The first offset of the producer's open transaction, or None."""
        return self._ongoing.get(producer_id)

    def producers(self) -> list[ProducerSummary]:
        """Every producer known here, by producer id."""
        out = []
        for pid in sorted(self._producers):
            entry = self._producers[pid]
            last = entry.batches[-1] if entry.batches else None
            out.append(ProducerSummary(
                pid, entry.epoch, entry.last_seq, last.timestamp if last is not None else -1,
                self._coordinator_epochs.get(pid, -1), self._ongoing.get(pid, -1),
            ))
        return out

    def check(self, header: BatchHeader) -> Duplicate | None:
        """Validate a produced batch against the state, before it is appended.

        Returns a Duplicate for a retried batch, None when it may be appended.
        Raises InvalidProducerEpochError or OutOfOrderSequenceError.
        """
        pid = header.producer_id
        if pid < 0:
            return None
        if not header.is_transactional and pid in self._ongoing:
            raise InvalidTxnStateError(f"producer {pid} sent a non-transactional batch inside its transaction")
        entry = self._producers.get(pid)
        if entry is None:
            return None
        epoch = header.producer_epoch
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {pid} epoch {epoch} is older than current epoch {entry.epoch}"
            )
        first_seq = header.base_sequence
        if epoch > entry.epoch:
            if first_seq != 0:
                raise OutOfOrderSequenceError(
                    f"producer {pid} new epoch {epoch} must start at sequence 0, not {first_seq}"
                )
            return None
        last_seq = header.last_sequence
        for meta in entry.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                return Duplicate(meta.base_offset, meta.timestamp)
        expected = (entry.last_seq + 1) % 0x80000000
        if entry.batches and first_seq != expected:
            raise OutOfOrderSequenceError(
                f"producer {pid} sent sequence {first_seq}, expected {expected}"
            )
        return None

    def update(self, header: BatchHeader, base_offset: int, timestamp: int) -> None:
        """Record a batch that was appended at ``base_offset``."""
        pid = header.producer_id
        if pid < 0:
            return
        entry = self._producers.get(pid)
        if entry is None or header.producer_epoch != entry.epoch:
            entry = _ProducerEntry(epoch=header.producer_epoch)
            self._producers[pid] = entry
        entry.batches.append(
            BatchMetadata(
                header.base_sequence,
                header.last_sequence,
                base_offset,
                base_offset + header.last_offset_delta,
                timestamp,
            )
        )
        if header.is_transactional and pid not in self._ongoing:
            self._ongoing[pid] = base_offset

    def check_marker(self, producer_id: int, producer_epoch: int) -> None:
        """Raise InvalidProducerEpochError if a marker of this epoch is older than
        the producer's (a zombie coordinator); otherwise it may be appended."""
        entry = self._producers.get(producer_id)
        if entry is not None and producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"marker epoch {producer_epoch} of producer {producer_id} is older than {entry.epoch}"
            )

    def complete_txn(self, producer_id: int, producer_epoch: int, aborted: bool, marker_offset: int,
                     coordinator_epoch: int = -1) -> CompletedTxn | None:
        """Record a marker appended at ``marker_offset``; the transaction it closed,
        or None if none was open (a repeated marker changes nothing else).

        A marker with a newer epoch (a fenced producer, or TV2's bump) makes
        that epoch current, so the older one's batches are refused.
        """
        entry = self._producers.get(producer_id)
        if entry is None or producer_epoch > entry.epoch:
            self._producers[producer_id] = _ProducerEntry(epoch=producer_epoch)
        if coordinator_epoch >= 0:
            self._coordinator_epochs[producer_id] = coordinator_epoch
        first = self._ongoing.pop(producer_id, None)
        if first is None:
            return None
        return CompletedTxn(producer_id, first, marker_offset, aborted)

    def rebuild(
        self, headers: Iterable[BatchHeader], marker_type: Callable[[BatchHeader], bool] | None = None,
    ) -> list[CompletedTxn]:
        """Replay batch headers read back from the log (already stamped).

        ``marker_type(header)``: True if the control batch is an abort marker
        (reading its one record), needed only for the returned list; returns
        the transactions closed along the way, in log order.
        """
        completed = []
        for header in headers:
            if header.producer_id < 0:
                continue
            if header.is_control:
                aborted = bool(marker_type(header)) if marker_type is not None else False
                done = self.complete_txn(header.producer_id, header.producer_epoch, aborted, header.base_offset)
                if done is not None:
                    completed.append(done)
            else:
                self.update(header, header.base_offset, header.max_timestamp)
        return completed

    def save(self, directory: str, log_end_offset: int, *, mode: int = 0o600, durable: bool = True) -> None:
        """Write the snapshot atomically (storage's ``write_atomically``: temp
        file, fsync, rename, fsync the directory); a new file gets the
        permission bits ``mode``. ``durable=False`` skips the fsyncs (a
        snapshot whose loss only costs a rebuild from the log). Raises
        StorageError if the disk refuses (the old snapshot is untouched)."""
        data = {
            "version": 1,
            "log_end_offset": log_end_offset,
            "producers": {
                str(pid): {"epoch": e.epoch, "batches": [list(_astuple(b)) for b in e.batches]}
                for pid, e in self._producers.items()
            },
            "ongoing": {str(pid): first for pid, first in self._ongoing.items()},
            "coordinator_epochs": {str(pid): ce for pid, ce in self._coordinator_epochs.items()},
        }
        write_atomically(Path(directory) / SNAPSHOT_NAME, json.dumps(data).encode("utf-8"), mode, durable=durable)

    @classmethod
    def load(cls, directory: str) -> tuple[PartitionProducerState, int] | None:
        """Read a snapshot; returns (state, offset it covers up to) or None if absent or unreadable."""
        path = os.path.join(directory, SNAPSHOT_NAME)
        try:
            with open(path) as fh:
                data = json.load(fh)
            producers = {}
            for pid, raw in data["producers"].items():
                entry = _ProducerEntry(epoch=int(raw["epoch"]))
                for item in raw["batches"]:
                    entry.batches.append(BatchMetadata(*map(int, item)))
                producers[int(pid)] = entry
            ongoing = {int(pid): int(first) for pid, first in data.get("ongoing", {}).items()}
            epochs = {int(p): int(c) for p, c in data.get("coordinator_epochs", {}).items()}
            return cls(producers, ongoing, epochs), int(data["log_end_offset"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            _log.warning("%s is damaged (%s); rebuilding producer state from the log", path, exc)
            return None

    @staticmethod
    def discard_snapshot(directory: str) -> None:
        try:
            os.remove(os.path.join(directory, SNAPSHOT_NAME))
        except FileNotFoundError:
            pass


def _astuple(meta: BatchMetadata) -> tuple[int, int, int, int, int]:
    return (meta.first_seq, meta.last_seq, meta.base_offset, meta.last_offset, meta.timestamp)
