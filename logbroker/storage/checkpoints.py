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
_VERSION = 0

TopicPartition = tuple[str, int]


def read_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """Entries of a checkpoint file; empty if the file does not exist.

    Raises StorageError if the file is malformed (the caller treats the
    offsets as unknown and recovers conservatively).
    """
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
        entries: dict[TopicPartition, int] = {}
        for line in lines[2 : 2 + count]:
            topic, partition, offset = line.split(" ")
            entries[(topic, int(partition))] = int(offset)
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
