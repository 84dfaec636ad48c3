"""Shared memory maps of files that hold no file descriptor.

Python's ``mmap.mmap`` keeps a duplicate of the descriptor it mapped for as
long as the map lives, so every mapped segment and index would cost one
open file: a partition of ten segments held about thirty. A map made with
the C library's ``mmap`` (through ctypes) needs the descriptor only while
it is made; the caller closes it at once. Such a map is unmapped when the
returned view and every slice or array made from it are gone.

A map may reach past the end of the file (bytes written later through a
descriptor show up in it); touching bytes beyond the end raises SIGBUS, so
callers slice to the data. Where ctypes cannot reach ``mmap`` (or the
system refuses the map), the functions return None and the caller falls
back to ``mmap.mmap``.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import weakref
from typing import Any
from pathlib import Path

__all__ = ["map_fd", "map_path"]

_MAP_FAILED = ctypes.c_void_p(-1).value


@functools.cache
def _libc_mmap() -> tuple[Any, Any] | None:  # ctypes foreign functions
    """(mmap, munmap) of the C library, or None where ctypes cannot reach them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        map_, unmap = libc.mmap, libc.munmap
    except (OSError, AttributeError):
        return None
    map_.restype = ctypes.c_void_p
    map_.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64)
    unmap.restype = ctypes.c_int
    unmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return map_, unmap


def map_fd(fd: int, length: int, *, writable: bool = False) -> memoryview | None:
    """A view of a shared map of ``length`` (> 0) bytes of ``fd`` from offset 0;
    read-only unless ``writable`` (then ``fd`` must be open for writing).
    The descriptor may be closed as soon as this returns."""
    calls = _libc_mmap()
    if calls is None or length <= 0:
        return None
    map_, unmap = calls
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    address = map_(None, length, prot, mmap.MAP_SHARED, fd, 0)
    if address is None or address == _MAP_FAILED:
        return None
    region = (ctypes.c_ubyte * length).from_address(address)
    # Not at exit: a view may still be in use then, and the process unmaps anyway.
    weakref.finalize(region, unmap, address, length).atexit = False
    view = memoryview(region).cast("B")
    return view if writable else view.toreadonly()


def map_path(path: Path, length: int, *, writable: bool = False) -> memoryview | None:
    """:func:`map_fd` of the file at ``path``, opened only while the map is made.
    Raises OSError if the file cannot be opened."""
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        return map_fd(fd, length, writable=writable)
    finally:
        os.close(fd)
