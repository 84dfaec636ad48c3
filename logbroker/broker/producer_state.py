"""Idempotent-producer state of one partition: epochs, sequences and the last
five batches of each producer, so retried batches get their original offsets.

Rules follow Kafka's ProducerAppendInfo (kafka-notes section 1). The state is
rebuilt from batch headers (never records) and snapshotted beside the log.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from logbroker.errors import LogbrokerError
from logbroker.records import BatchHeader

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
    batches: deque = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retried batch already in the log: answer with its original offsets."""

    base_offset: int
    timestamp: int


class PartitionProducerState:
    """Per-partition map producer id -> epoch and recent batches. Not thread-safe."""

    def __init__(self) -> None:
        self._producers: dict[int, _ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def __repr__(self) -> str:
        return f"PartitionProducerState(producers={len(self._producers)})"

    def check(self, header: BatchHeader) -> Duplicate | None:
        """Validate a produced batch against the state, before it is appended.

        Returns a Duplicate for a retried batch, None when it may be appended.
        Raises InvalidProducerEpochError or OutOfOrderSequenceError.
        """
        pid = header.producer_id
        if pid < 0:
            return None
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

    def rebuild(self, headers: Iterable[BatchHeader]) -> None:
        """Replay batch headers read back from the log (already stamped)."""
        for header in headers:
            if header.producer_id >= 0 and not header.is_control:
                self.update(header, header.base_offset, header.max_timestamp)

    def save(self, directory: str, log_end_offset: int, *, mode: int = 0o600) -> None:
        """Write the snapshot atomically (temp file, fsync, rename); a new file
        gets the permission bits ``mode``."""
        data = {
            "version": 1,
            "log_end_offset": log_end_offset,
            "producers": {
                str(pid): {"epoch": e.epoch, "batches": [list(_astuple(b)) for b in e.batches]}
                for pid, e in self._producers.items()
            },
        }
        path = os.path.join(directory, SNAPSHOT_NAME)
        tmp = path + ".tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: str) -> tuple[PartitionProducerState, int] | None:
        """Read a snapshot; returns (state, offset it covers up to) or None if absent or unreadable."""
        path = os.path.join(directory, SNAPSHOT_NAME)
        try:
            with open(path) as fh:
                data = json.load(fh)
            state = cls()
            for pid, raw in data["producers"].items():
                entry = _ProducerEntry(epoch=int(raw["epoch"]))
                for item in raw["batches"]:
                    entry.batches.append(BatchMetadata(*map(int, item)))
                state._producers[int(pid)] = entry
            return state, int(data["log_end_offset"])
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
