"""What :meth:`Consumer.poll_batch <logbroker.client.Consumer.poll_batch>` returns: records as columns.

A :class:`ConsumerBatch` holds one :class:`PartitionColumns` per partition
that had records. Offsets and timestamps are numpy ``int64`` arrays; values
are a 2-D numpy ``uint8`` array (one row per record) when every value of the
partition's records is present and of one size, else a list of bytes (None
for a null value); keys are a list of bytes or None. Keys and values are
made when first asked for, so code that reads only offsets, timestamps or the
value array pays for no Python object per record. Iterating a batch (or a
partition's columns) yields ordinary :class:`~logbroker.client.ConsumerRecord`
tuples, for convenience.

Values are immutable snapshots: the arrays are the consumer's no longer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from logbroker.records.decoder import RecordColumns

from ._decode import records_from_columns, slices
from .types import ConsumerRecord, TopicPartition

__all__ = ["ConsumerBatch", "PartitionColumns"]

_EMPTY = np.zeros(0, np.int64)


def _fixed_rows(columns: RecordColumns, size: int) -> np.ndarray:
    """The values of ``columns`` (all ``size`` bytes) as a (records, size) uint8 array.

    Values that lie evenly spaced in the buffer (records of one size in a batch)
    are copied a run at a time through a strided view; sizes that vary at almost
    every record are gathered byte by byte.
    """
    n = columns.count
    data = np.frombuffer(columns.buffer, np.uint8)
    starts = columns.value_starts
    if n < 2:
        return data[starts[:, None] + np.arange(size)] if n else np.zeros((0, size), np.uint8)
    steps = np.diff(starts)
    breaks = (np.flatnonzero(steps[1:] != steps[:-1]) + 1).tolist()
    if len(breaks) > n // 16:
        return data[starts[:, None] + np.arange(size)]
    out = np.empty((n, size), np.uint8)
    bounds = [0, *breaks, n]
    for a, b in zip(bounds, bounds[1:]):
        step = int(steps[a]) if b - a > 1 else size
        out[a:b] = np.lib.stride_tricks.as_strided(data[int(starts[a]):], shape=(b - a, size), strides=(step, 1),
                                                   writeable=False)
    return out


class PartitionColumns:
    """The records of one partition from one :meth:`~logbroker.client.Consumer.poll_batch`, in offset order.

    ``offsets`` and ``timestamps`` are int64 arrays; ``keys`` a list of bytes or
    None; ``values`` a (records, size) uint8 array when ``value_size`` is not
    None (every value present and ``value_size`` bytes long), else a list of
    bytes or None; :meth:`value_list` always gives the list. ``headers`` is one
    tuple of (name, value) pairs per record.
    """

    __slots__ = ("topic", "partition", "offsets", "timestamps", "_parts", "_keys", "_values", "_value_size",
                 "_headers")

    def __init__(self, topic: str, partition: int, parts: Sequence[RecordColumns]) -> None:
        self.topic = topic
        self.partition = partition
        self._parts = [p for p in parts if p.count]
        if len(self._parts) == 1:
            self.offsets: np.ndarray = self._parts[0].offsets
            self.timestamps: np.ndarray = self._parts[0].timestamps
        elif self._parts:
            self.offsets = np.concatenate([p.offsets for p in self._parts])
            self.timestamps = np.concatenate([p.timestamps for p in self._parts])
        else:
            self.offsets = self.timestamps = _EMPTY
        lengths = [p.value_lengths for p in self._parts]
        size = None
        if lengths:
            low = min(int(x.min()) for x in lengths)
            high = max(int(x.max()) for x in lengths)
            if low == high and low >= 0:
                size = low
        self._value_size = size
        self._keys: list[bytes | None] | None = None
        self._values: np.ndarray | list[bytes | None] | None = None
        self._headers: list[tuple[tuple[str, bytes | None], ...]] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __repr__(self) -> str:
        span = f"{int(self.offsets[0])}..{int(self.offsets[-1])}" if len(self) else "-"
        return (f"<PartitionColumns {self.topic}[{self.partition}] records={len(self)} offsets={span} "
                f"value_size={self._value_size}>")

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def value_size(self) -> int | None:
        """The size of every value when all are present and of one size (``values`` is then an array)."""
        return self._value_size

    @property
    def keys(self) -> list[bytes | None]:
        if self._keys is None:
            keys: list[bytes | None] = []
            for p in self._parts:
                keys += slices(p.buffer, p.key_starts, p.key_lengths)
            self._keys = keys
        return self._keys

    @property
    def values(self) -> np.ndarray | list[bytes | None]:
        """A (records, value_size) uint8 array if ``value_size`` is not None, else a list of bytes or None."""
        if self._values is None:
            if self._value_size is not None:
                rows = [_fixed_rows(p, self._value_size) for p in self._parts]
                self._values = rows[0] if len(rows) == 1 else np.concatenate(rows)
            else:
                self._values = self.value_list()
        return self._values

    def value_list(self) -> list[bytes | None]:
        """The values as a list of bytes (None for a null value), whatever their sizes."""
        if isinstance(self._values, list):
            return self._values
        values: list[bytes | None] = []
        for p in self._parts:
            values += slices(p.buffer, p.value_starts, p.value_lengths)
        return values

    @property
    def headers(self) -> list[tuple[tuple[str, bytes | None], ...]]:
        if self._headers is None:
            headers: list[tuple[tuple[str, bytes | None], ...]] = []
            for p in self._parts:
                headers += p.headers if p.headers is not None else [()] * p.count
            self._headers = headers
        return self._headers

    def records(self) -> list[ConsumerRecord]:
        """The rows as :class:`ConsumerRecord` tuples."""
        out: list[ConsumerRecord] = []
        for p in self._parts:
            out += records_from_columns(p, self.topic, self.partition)
        return out

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return iter(self.records())


class ConsumerBatch:
    """Records of many partitions from one :meth:`~logbroker.client.Consumer.poll_batch`.

    ``partitions`` maps each partition that had records to its
    :class:`PartitionColumns`; ``len(batch)`` is the number of records.
    Iterating yields :class:`ConsumerRecord` tuples, partition after partition,
    in offset order within each.
    """

    __slots__ = ("partitions", "count")

    def __init__(self, partitions: dict[TopicPartition, PartitionColumns] | None = None) -> None:
        self.partitions: dict[TopicPartition, PartitionColumns] = partitions or {}
        self.count = sum(len(c) for c in self.partitions.values())

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __repr__(self) -> str:
        return f"<ConsumerBatch records={self.count} partitions={len(self.partitions)}>"

    def __iter__(self) -> Iterator[ConsumerRecord]:
        for columns in self.partitions.values():
            yield from columns.records()

    def records(self) -> list[ConsumerRecord]:
        """Every record, as :class:`ConsumerRecord` tuples."""
        return [r for columns in self.partitions.values() for r in columns.records()]

    def next_offsets(self) -> dict[TopicPartition, int]:
        """For each partition, the offset after its last record (what to commit for it)."""
        return {tp: int(c.offsets[-1]) + 1 for tp, c in self.partitions.items() if len(c)}
