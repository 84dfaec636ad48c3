"""Offset checkpoint files (Kafka's OffsetCheckpointFile), written atomically.

Text format, the same as Kafka's::

    0                     <- version
    2                     <- number of entries
    orders 0 1234         <- topic, partition, offset (space-separated)
    orders 1 99

Topic names cannot contain spaces, so each line splits unambiguously.
"""

from __future__ import annotations

from pathlib import Path

from logbroker.errors import StorageError
from logbroker.storage.config import DEFAULT_FILE_MODE
from logbroker.storage.files import write_atomically

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
RECOVERY_POSITION_CHECKPOINT = "recovery-point-position-checkpoint"
"""logbroker's own: ``topic partition segment-base bytes`` per line (same header),
where the recovery point lies in the files: the segment at ``segment-base``
was fsynced up to ``bytes`` bytes and every segment before it entirely. After
a crash a partition whose files still end there needs no recovery."""
_VERSION = 0

TopicPartition = tuple[str, int]


def read_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """Entries of a checkpoint file; empty if the file does not exist.

    Raises StorageError if the file is malformed (the caller treats the
    offsets as unknown and recovers conservatively).
    """
    return {tp: values[0] for tp, values in _read(path, 1).items()}


def read_positions(path: Path) -> dict[TopicPartition, tuple[int, int]]:
    """Entries of a :data:`RECOVERY_POSITION_CHECKPOINT` file, ``(segment base,
    bytes)`` by partition; empty if missing. Raises StorageError if malformed."""
    return {tp: (values[0], values[1]) for tp, values in _read(path, 2).items()}


def write_positions(path: Path, entries: dict[TopicPartition, tuple[int, int]], mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace ``path`` with ``entries`` like :func:`write_checkpoint`."""
    lines = [str(_VERSION), str(len(entries))]
    lines += [f"{topic} {partition} {base} {size}" for (topic, partition), (base, size) in sorted(entries.items())]
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"), mode)


def _read(path: Path, fields: int) -> dict[TopicPartition, tuple[int, ...]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise StorageError(f"malformed checkpoint file {path}: not UTF-8 text") from exc
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    lines = text.splitlines()
    try:
        if int(lines[0]) != _VERSION:
            raise ValueError(f"unknown version {lines[0]!r}")
        count = int(lines[1])
        entries: dict[TopicPartition, tuple[int, ...]] = {}
        for line in lines[2 : 2 + count]:
            topic, partition, *values = line.split(" ")
            if len(values) != fields:
                raise ValueError(f"expected {fields + 2} fields in {line!r}")
            entries[(topic, int(partition))] = tuple(int(v) for v in values)
        if len(entries) != count:
            raise ValueError(f"expected {count} entries, found {len(entries)}")
    except (ValueError, IndexError) as exc:
        raise StorageError(f"malformed checkpoint file {path}: {exc}") from exc
    return entries


def write_checkpoint(path: Path, entries: dict[TopicPartition, int], mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace ``path`` with ``entries`` (temp file, fsync, rename, fsync dir);
    a new file gets the permission bits ``mode``."""
    lines = [str(_VERSION), str(len(entries))]
    lines += [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(entries.items())]
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"), mode)
