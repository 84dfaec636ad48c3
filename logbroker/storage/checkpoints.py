"""Offset checkpoint files (Kafka's OffsetCheckpointFile), written atomically.

Text format, the same as Kafka's::

    0                     <- version
    2                     <- number of entries
    orders 0 1234         <- topic, partition, offset (space-separated)
    orders 1 99

Topic names cannot contain spaces, so each line splits unambiguously.

:class:`Checkpoints` keeps a data directory's three files up to date as
partitions change: it formats the lines of the partitions noted as changed
and rewrites a file only when one of its lines differs, so the periodic write
costs in proportion to what changed, not to the partitions in the directory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
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
CheckpointEntry = tuple[int, int, "tuple[int, int] | None"]
"""A partition's recovery point, log start offset and recovery position (None: unknown)."""


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


class _CheckpointLines:
    """One checkpoint file as last written (or read at open): its line per
    partition, and the lines in file order (sorted again only when a partition
    comes or goes, so a write joins them without a lookup per partition).
    ``pending`` while a line changed since the last successful write."""

    __slots__ = ("path", "pending", "_lines", "_text", "_at")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = False
        self._lines: dict[TopicPartition, str] = {}
        self._text: list[str] | None = None  # the lines in file order; None: sort again
        self._at: dict[TopicPartition, int] = {}  # where each partition's line is in _text

    def __repr__(self) -> str:
        return f"_CheckpointLines({self.path.name}, entries={len(self._lines)}, pending={self.pending})"

    def load(self, lines: dict[TopicPartition, str]) -> None:
        """What the file holds now (nothing pending)."""
        self._lines, self._text, self.pending = lines, None, False

    def keys(self) -> Iterable[TopicPartition]:
        return self._lines.keys()

    def set(self, tp: TopicPartition, line: str | None) -> None:
        """``tp``'s line (None: ``tp`` has no entry)."""
        old = self._lines.get(tp)
        if old == line:
            return
        self.pending = True
        if line is None:
            del self._lines[tp]
            self._text = None
            return
        self._lines[tp] = line
        if old is None:
            self._text = None
        elif self._text is not None:
            self._text[self._at[tp]] = line

    def write(self, mode: int) -> None:
        """Rewrite the file if a line changed (atomically, see :func:`write_checkpoint`).
        Raises StorageError; the change stays pending."""
        if not self.pending:
            return
        text = self._text
        if text is None:
            order = sorted(self._lines)
            self._at = {tp: i for i, tp in enumerate(order)}
            text = self._text = [self._lines[tp] for tp in order]
        data = f"{_VERSION}\n{len(text)}\n{''.join(text)}"
        write_atomically(self.path, data.encode("utf-8"), mode)
        self.pending = False


class Checkpoints:
    """The recovery-point, log-start-offset and recovery-position checkpoints of
    ``data_dir``, written incrementally.

    :meth:`changed` notes a partition whose entry may have moved (any thread);
    :meth:`write` reads the entries of the partitions noted since the last
    write and rewrites the files in which a line changed: recovery points
    first, the positions last (a position names data its recovery point
    covers). After :meth:`reset` (what the files held at open) the next write
    reads every partition once. Thread-safety: :meth:`changed` from any thread;
    :meth:`reset` and :meth:`write` by one caller at a time (the LogManager's lock).
    """

    def __init__(self, data_dir: Path, mode: int) -> None:
        self._mode = mode
        self._points = _CheckpointLines(data_dir / RECOVERY_POINT_CHECKPOINT)
        self._starts = _CheckpointLines(data_dir / LOG_START_OFFSET_CHECKPOINT)
        self._positions = _CheckpointLines(data_dir / RECOVERY_POSITION_CHECKPOINT)
        self._lock = threading.Lock()
        self._changed: set[TopicPartition] = set()
        self._everything = True

    def __repr__(self) -> str:
        return f"Checkpoints(changed={len(self._changed)}, everything={self._everything})"

    def reset(self, points: Mapping[TopicPartition, int], starts: Mapping[TopicPartition, int],
              positions: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """The files hold these entries; the next write compares every partition with them."""
        self._points.load({tp: _line(tp, point) for tp, point in points.items()})
        self._starts.load({tp: _line(tp, start) for tp, start in starts.items()})
        self._positions.load({tp: _position_line(tp, position) for tp, position in positions.items()})
        with self._lock:
            self._everything = True

    def changed(self, tp: TopicPartition) -> None:
        """``tp`` appeared, went, or its entry may have moved: the next write reads it."""
        with self._lock:
            self._changed.add(tp)

    def write(self, entry_of: Callable[[TopicPartition], CheckpointEntry | None],
              partitions: Callable[[], Iterable[TopicPartition]]) -> None:
        """Bring the files up to date. ``entry_of(tp)`` is a partition's entry now
        (None: it no longer exists); ``partitions()`` lists them all (read only
        after :meth:`reset`). Raises StorageError if a file cannot be written:
        what it missed stays pending for the next write."""
        with self._lock:
            changed, self._changed = self._changed, set()
            everything, self._everything = self._everything, False
        points, starts, positions = self._points, self._starts, self._positions
        try:
            if everything:
                changed.update(partitions())
                changed.update(points.keys(), starts.keys(), positions.keys())
            for tp in changed:
                entry = entry_of(tp)
                if entry is None:
                    points.set(tp, None)
                    starts.set(tp, None)
                    positions.set(tp, None)
                    continue
                point, start, position = entry
                points.set(tp, _line(tp, point))
                starts.set(tp, _line(tp, start))
                positions.set(tp, None if position is None else _position_line(tp, position))
        except BaseException:
            with self._lock:  # read again next time
                self._changed |= changed
                self._everything |= everything
            raise
        points.write(self._mode)
        starts.write(self._mode)
        positions.write(self._mode)


def _line(tp: TopicPartition, value: int) -> str:
    return f"{tp[0]} {tp[1]} {value}\n"


def _position_line(tp: TopicPartition, position: tuple[int, int]) -> str:
    return f"{tp[0]} {tp[1]} {position[0]} {position[1]}\n"
