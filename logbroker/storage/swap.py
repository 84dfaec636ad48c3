"""Segment files being swapped into a partition log, and finishing a swap a
crash interrupted (Kafka's ``.cleaned`` / ``.swap`` files, see its LogLoader).

:meth:`PartitionLog.replace_segments` moves replacement segments through
three names, one step at a time, each made durable before the next:

1. ``<base>.log.cleaned`` (and ``.index.cleaned``, ``.timeindex.cleaned``,
   and ``.txnindex.cleaned`` when the replacement merges old segments whose
   aborted-transaction entries it takes over): written, fsynced, not part of
   the log. A crash here: the files are deleted at open, and the log keeps
   its old segments.
2. ``<base>.log.swap``: committed. Each replacement's other files are renamed
   first and its ``.log`` last, so a ``.log.swap`` means the whole segment
   is there. A crash from here on: at open, the old segments whose base
   offsets fall in the replacement's range ``[base, next offset)`` (and the
   one at ``base``) are deleted and the ``.swap`` files renamed into place
   (a ``.txnindex.swap`` over the old ``.txnindex`` at ``base``; those of the
   other old segments go when the partition's aborted-transaction index
   opens, their segments being gone).
3. The old segments' files are deleted, then each ``.swap`` is renamed to
   its final name (``.log`` first). Leftover ``.swap`` files whose ``.log``
   already has its final name are renamed into place at open.

So a crash at any point opens as either the old segments or their
replacements (per replacement segment), never both and never neither.
:func:`finish_interrupted_swaps` is that open-time step; it also finishes a
``.cleaning/`` directory left by older versions of the cleaner.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
from pathlib import Path

from logbroker.records import iter_batches
from logbroker.storage.files import LOG_SUFFIX, SEGMENT_SUFFIXES, fsync_dir, parse_segment_name
from logbroker.storage.txnindex import TXN_INDEX_SUFFIX

__all__ = ["CLEANED_SUFFIX", "SWAP_SUFFIX", "finish_interrupted_swaps"]

logger = logging.getLogger("logbroker.storage")

CLEANED_SUFFIX = ".cleaned"
"""A replacement segment's files while written: discarded by a crash."""
SWAP_SUFFIX = ".swap"
"""A replacement segment's files once committed: completed after a crash."""
LEGACY_CLEANING_DIR = ".cleaning"
_LEGACY_SWAP_MARKER = "SWAP"


def finish_interrupted_swaps(directory: Path) -> list[str]:
    """Delete ``.cleaned`` files and complete ``.swap`` ones in a partition
    directory (before its segments are listed); returns what was done, for
    the recovery report. Raises OSError if the disk refuses."""
    done = _finish_legacy_cleaning(directory)
    swaps: dict[int, list[str]] = {}
    uncommitted: set[int] = set()  # a .log still .cleaned: its segment's swap never committed
    for name in sorted(os.listdir(directory)):
        if name.endswith(CLEANED_SUFFIX):
            parsed = _parse_swapped(name[: -len(CLEANED_SUFFIX)])
            if parsed is not None and parsed[1] == LOG_SUFFIX:
                uncommitted.add(parsed[0])
            (directory / name).unlink(missing_ok=True)
            done.append(f"discarded unswapped {name}")
        elif name.endswith(SWAP_SUFFIX):
            parsed = _parse_swapped(name[: -len(SWAP_SUFFIX)])
            if parsed is not None:
                swaps.setdefault(parsed[0], []).append(parsed[1])
    for base, suffixes in sorted(swaps.items()):
        if LOG_SUFFIX not in suffixes and base in uncommitted:
            for suffix in suffixes:  # indexes renamed before the crash, their .log was not
                (directory / (_stem(base) + suffix + SWAP_SUFFIX)).unlink(missing_ok=True)
            done.append(f"discarded the uncommitted swap of segment {base}")
            continue
        if LOG_SUFFIX in suffixes:
            end = max(_next_offset(directory / (_stem(base) + LOG_SUFFIX + SWAP_SUFFIX), base), base + 1)
            for old in _segment_bases(directory):
                if base <= old < end:
                    for suffix in SEGMENT_SUFFIXES:
                        (directory / (_stem(old) + suffix)).unlink(missing_ok=True)
        for suffix in sorted(suffixes, key=lambda s: s != LOG_SUFFIX):  # the .log first
            name = _stem(base) + suffix
            os.replace(directory / (name + SWAP_SUFFIX), directory / name)
        done.append(f"completed the swap of segment {base}")
    if done:
        fsync_dir(directory)
    for line in done:
        logger.warning("%s: %s", directory.name, line)
    return done


def _parse_swapped(name: str) -> tuple[int, str] | None:
    """``(base offset, suffix)`` of a segment file or ``.txnindex`` name, or None."""
    stem, suffix = name[:20], name[20:]
    if suffix == TXN_INDEX_SUFFIX and stem.isdigit():
        return int(stem), suffix
    return parse_segment_name(name)


def _stem(base: int) -> str:
    return f"{base:020d}"


def _segment_bases(directory: Path) -> list[int]:
    return sorted({p[0] for p in map(parse_segment_name, os.listdir(directory)) if p is not None and p[1] == LOG_SUFFIX})


def _next_offset(path: Path, base: int) -> int:
    """One past the last offset of the batches in the segment file ``path``."""
    size = path.stat().st_size
    if not size:
        return base
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            end = base
            for _, header in iter_batches(view):
                end = header.next_offset
            return end
        finally:
            view.release()


def _finish_legacy_cleaning(directory: Path) -> list[str]:
    """A ``.cleaning/`` directory of an older cleaner: complete it if its marker
    was written, else discard it."""
    cleaning = directory / LEGACY_CLEANING_DIR
    if not cleaning.is_dir():
        return []
    done = []
    if (cleaning / _LEGACY_SWAP_MARKER).exists():
        for path in sorted(cleaning.iterdir()):
            if path.name != _LEGACY_SWAP_MARKER and path.is_file():
                os.replace(path, directory / path.name)
                done.append(f"completed swap of {path.name}")
        fsync_dir(directory)
    else:
        done.append("discarded an unfinished cleaning")
    shutil.rmtree(cleaning, ignore_errors=True)
    return done
