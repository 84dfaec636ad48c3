"""The aborted-transaction index of a partition: Kafka's ``.txnindex`` files.

One file per segment, named by the segment's base offset like the segment's
other files (``00000000000000000000.txnindex``), holding fixed 34-byte
entries, big-endian, in the order they were appended::

    version int16 (0) | producer id int64 | first offset int64
    | last offset int64 | last stable offset int64

An entry says: the offsets ``[first offset, last offset]`` of that producer
end in an abort (``last offset`` is the offset of the abort marker, which
lives in the segment whose file holds the entry). ``last stable offset`` is
the partition's last stable offset right after the marker. Storage gives
the entries no other meaning: the broker decides what is aborted, appends
entries, and reads those overlapping a fetched range.

The entries are small and few, so they are kept in memory as well; the files
exist to survive a clean restart. A file whose segment is gone is deleted by
:meth:`TxnIndexes.prune`, and entries at or past a truncated log end are
dropped with it. After a crash the broker rewrites the entries it rebuilds
from batch headers with :meth:`TxnIndexes.replace_from`.

When the log cleaner merges segments, the merged segment's file must hold the
entries of every segment it replaces: :meth:`TxnIndexes.merged_entries` says
which, and :meth:`TxnIndexes.stage` writes that file under a suffixed name
that :meth:`PartitionLog.replace_segments` renames along with the segment's
other files (see :mod:`logbroker.storage.swap`).

Thread-safety: one thread appends and reads; :meth:`TxnIndexes.flush` may
run in a worker thread (it fsyncs files only).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from logbroker.errors import StorageError
from logbroker.storage.files import write_atomically

__all__ = ["TXN_INDEX_SUFFIX", "AbortedTxn", "TxnIndexes"]

logger = logging.getLogger("logbroker.storage")

TXN_INDEX_SUFFIX = ".txnindex"
ENTRY_STRUCT = struct.Struct(">hqqqq")  # version, producer id, first, last, last stable offset: 34 bytes
_VERSION = 0


class AbortedTxn(NamedTuple):
    """One ``.txnindex`` entry (see the module docstring)."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndexes:
    """The ``.txnindex`` files of one partition directory, by segment base offset.

    ``file_mode``: permission bits of new files. Unreadable or torn files are
    read up to their last whole entry (a torn tail is cut when written next).
    """

    def __init__(self, directory: Path | str, *, file_mode: int = 0o600) -> None:
        self._dir = Path(directory)
        self._mode = file_mode
        self._entries: dict[int, list[AbortedTxn]] = {}
        self._dirty: set[int] = set()
        # Replacement files being swapped in: base -> (current name suffix, entries).
        self._staged: dict[int, tuple[str, list[AbortedTxn]]] = {}
        for path in self._dir.glob("*" + TXN_INDEX_SUFFIX):
            try:
                base = int(path.name[: -len(TXN_INDEX_SUFFIX)])
                data = path.read_bytes()
            except (ValueError, OSError) as exc:
                logger.warning("%s: ignoring %s (%s)", self._dir.name, path.name, exc)
                continue
            whole = len(data) - len(data) % ENTRY_STRUCT.size
            entries = [
                AbortedTxn(*fields[1:]) for fields in ENTRY_STRUCT.iter_unpack(data[:whole]) if fields[0] == _VERSION
            ]
            if whole != len(data):
                logger.warning("%s: %s ends in a torn entry; it is cut", self._dir.name, path.name)
                self._write_file(base, entries)
            self._entries[base] = entries

    def __repr__(self) -> str:
        return f"TxnIndexes({self._dir.name}, files={len(self._entries)}, entries={len(self)})"

    def __len__(self) -> int:
        return sum(map(len, self._entries.values()))

    def _path(self, base: int) -> Path:
        return self._dir / f"{base:020d}{TXN_INDEX_SUFFIX}"

    def append(self, segment_base: int, entry: AbortedTxn) -> None:
        """Add ``entry`` to the file of the segment at ``segment_base``. Raises StorageError."""
        try:
            fd = os.open(self._path(segment_base), os.O_WRONLY | os.O_CREAT | os.O_APPEND, self._mode)
            try:
                os.write(fd, ENTRY_STRUCT.pack(_VERSION, *entry))
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {self._path(segment_base)}: {exc}") from exc
        self._entries.setdefault(segment_base, []).append(entry)
        self._dirty.add(segment_base)

    def overlapping(self, from_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Entries whose range overlaps ``[from_offset, upper_bound)``, by first offset."""
        out = [
            e for entries in self._entries.values() for e in entries
            if e.last_offset >= from_offset and e.first_offset < upper_bound
        ]
        out.sort(key=lambda e: e.first_offset)
        return out

    def entries(self) -> list[tuple[int, AbortedTxn]]:
        """Every ``(segment base, entry)``, in file order."""
        return [(base, e) for base in sorted(self._entries) for e in self._entries[base]]

    def replace_from(self, offset: int, entries: Iterable[tuple[int, AbortedTxn]]) -> bool:
        """Drop entries whose last offset is >= ``offset`` and add ``entries``
        (``(segment base, entry)``); files are rewritten only if that changes
        them. True if something changed. Raises StorageError."""
        wanted: dict[int, list[AbortedTxn]] = {
            base: [e for e in kept if e.last_offset < offset] for base, kept in self._entries.items()
        }
        for base, entry in entries:
            wanted.setdefault(base, []).append(entry)
        changed = False
        for base in sorted(set(wanted) | set(self._entries)):
            new = wanted.get(base, [])
            if new != self._entries.get(base, []):
                self._write_file(base, new)
                changed = True
        return changed

    def prune(self, segment_bases: list[int], log_end: int) -> None:
        """Delete the files of segments that no longer exist (``segment_bases`` are
        those that do, sorted) and entries at or past ``log_end``."""
        for base in list(self._entries):
            i = bisect.bisect_left(segment_bases, base)
            if i == len(segment_bases) or segment_bases[i] != base:
                self._write_file(base, [])
        if any(e.last_offset >= log_end for entries in self._entries.values() for e in entries):
            self.replace_from(log_end, ())

    def merged_entries(self, groups: Iterable[Sequence[int]]) -> dict[int, list[AbortedTxn]]:
        """For each group of segment bases merged into one segment at the group's
        first base, the entries that segment's file must hold, in order; only
        for the groups where entries move (a later base of the group has some)."""
        merged = {}
        for bases in groups:
            if any(self._entries.get(base) for base in bases[1:]):
                merged[bases[0]] = [e for base in bases for e in self._entries.get(base, ())]
        return merged

    def stage(self, base: int, entries: Sequence[AbortedTxn], suffix: str) -> None:
        """Write ``entries`` as a replacement of the file of ``base``, under its
        name plus ``suffix``, fsynced: not part of the index until
        :meth:`rename_staged` gives it the final name and :meth:`adopt_staged`
        its entries. Raises StorageError (nothing left behind)."""
        path = self._path(base).with_name(self._path(base).name + suffix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self._mode)
            try:
                data = memoryview(b"".join(ENTRY_STRUCT.pack(_VERSION, *e) for e in entries))
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc}") from exc
        self._staged[base] = (suffix, list(entries))

    def rename_staged(self, base: int, suffix: str) -> None:
        """Rename the staged file of ``base`` to carry ``suffix`` instead ("" is its
        final name, replacing the current file). Raises StorageError."""
        old_suffix, entries = self._staged[base]
        path = self._path(base)
        try:
            # os.rename, as the segment files: a swap's steps are all renames and unlinks.
            os.rename(path.with_name(path.name + old_suffix), path.with_name(path.name + suffix))
        except OSError as exc:
            raise StorageError(f"cannot rename {path.name}{old_suffix}: {exc}") from exc
        self._staged[base] = (suffix, entries)

    def adopt_staged(self) -> None:
        """The staged files renamed to their final names hold their bases' entries
        now (the caller prunes the files of the bases merged away)."""
        for base, (suffix, entries) in list(self._staged.items()):
            if not suffix:
                self._entries[base] = entries
                del self._staged[base]

    def discard_staged(self) -> None:
        """Delete the staged files not yet renamed into place (a swap that did not
        commit); missing ones are fine, a refusal is left to the next open."""
        for base, (suffix, _) in self._staged.items():
            if suffix:
                path = self._path(base)
                try:
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("%s: cannot remove %s%s: %s", self._dir.name, path.name, suffix, exc)
        self._staged.clear()

    def flush(self) -> None:
        """fsync the files appended to since the last flush. Raises StorageError."""
        dirty, self._dirty = self._dirty, set()
        for base in sorted(dirty):
            path = self._path(base)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot fsync {path}: {exc}") from exc
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StorageError(f"cannot fsync {path}: {exc}") from exc
            finally:
                os.close(fd)

    def _write_file(self, base: int, entries: list[AbortedTxn]) -> None:
        """Replace one file (deleted when ``entries`` is empty). Raises StorageError."""
        path = self._path(base)
        try:
            if not entries:
                path.unlink(missing_ok=True)
                self._entries.pop(base, None)
                self._dirty.discard(base)
                return
            write_atomically(path, b"".join(ENTRY_STRUCT.pack(_VERSION, *e) for e in entries), self._mode)
        except OSError as exc:
            raise StorageError(f"cannot rewrite {path}: {exc}") from exc
        self._entries[base] = list(entries)
