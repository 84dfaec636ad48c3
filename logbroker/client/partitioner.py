"""Which partition a keyed record goes to. Sans-I/O, deterministic.

Three hash functions, so that producers in a mixed fleet agree on where a key
lives:

* ``xxhash`` (ours, the default): ``xxh64(key) % partitions``. Fast, and
  well spread.
* ``murmur2``: the Java client's (and kafka-python's) default,
  ``(murmur2(key) & 0x7fffffff) % partitions`` with seed ``0x9747b28c``.
* ``crc32``: librdkafka's (confluent-kafka's) default ``consistent_random``:
  ``crc32(key) % partitions`` with the zlib CRC-32 as an unsigned 32-bit
  value. librdkafka treats an *empty* key like a null one (random); so do we.

Records without a key are not hashed: the producer sends them to a *sticky*
partition per topic that changes each time a batch for it is closed
(:class:`StickyPartitions`), as Java (KIP-480) and librdkafka do, so keyless
records fill whole batches instead of many small ones.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import xxhash

__all__ = [
    "PARTITIONERS",
    "StickyPartitions",
    "crc32_partition",
    "murmur2",
    "murmur2_partition",
    "partition_many",
    "xxhash_partition",
]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java client's partition for a non-null ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's ``consistent`` partition for a non-empty ``key``."""
    return zlib.crc32(key) % partitions


_xxh64 = xxhash.xxh64_intdigest


def xxhash_partition(key: bytes, partitions: int) -> int:
    """logbroker's default: xxh64 (seed 0) of ``key`` modulo the partition count."""
    return _xxh64(key) % partitions


PARTITIONERS: dict[str, Callable[[bytes, int], int]] = {
    "xxhash": xxhash_partition,
    "murmur2": murmur2_partition,
    "crc32": crc32_partition,
}
"""Name -> ``f(key, partitions) -> partition`` for keys that are hashed."""


_BULK_HASHES: dict[str, Callable[[bytes], int]] = {
    "xxhash": _xxh64,
    "crc32": zlib.crc32,
    "murmur2": lambda key: murmur2(key) & 0x7FFFFFFF,
}


def partition_many(name: str, keys: Sequence[bytes], partitions: int) -> np.ndarray:
    """The partition (int64 array) of each non-null key of ``keys`` under partitioner ``name``:
    the same as ``PARTITIONERS[name](key, partitions)`` for each, but the hash runs in a
    C-level ``map`` (xxhash, crc32) and the modulo in numpy."""
    hashes = np.fromiter(map(_BULK_HASHES[name], keys), np.uint64, len(keys))
    return (hashes % np.uint64(partitions)).astype(np.int64)


def hashes_empty_key(name: str) -> bool:
    """False for ``crc32``: librdkafka sends empty keys to a random partition."""
    return name != "crc32"


class StickyPartitions:
    """The sticky partition of each topic for records without a key.

    :meth:`get` returns the topic's current choice; :meth:`batch_closed`
    moves it elsewhere once a batch of that partition is closed.
    """

    __slots__ = ("_current", "_random")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._current: dict[str, int] = {}
        self._random = rng or random.Random()

    def get(self, topic: str, partitions: int) -> int:
        p = self._current.get(topic)
        if p is None or p >= partitions:
            p = self._current[topic] = self._random.randrange(partitions)
        return p

    def batch_closed(self, topic: str, partition: int, partitions: int) -> None:
        """A batch of ``(topic, partition)`` closed: pick another partition if it was the sticky one."""
        if self._current.get(topic) != partition:
            return
        if partitions <= 1:
            self._current[topic] = 0
            return
        p = self._random.randrange(partitions - 1)
        self._current[topic] = p if p < partition else p + 1

    def __repr__(self) -> str:
        return f"<StickyPartitions {self._current}>"
