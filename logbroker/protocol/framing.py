"""Kafka request framing: a 4-byte big-endian signed size, then that many bytes.

:class:`FrameDecoder` is sans-I/O in the style of h11: the connection loop
either lets the socket write straight into the decoder (``recv_into`` the
view :meth:`~FrameDecoder.receive_buffer` lends, then
:meth:`~FrameDecoder.received`) or feeds it whatever it read with
:meth:`~FrameDecoder.receive_data`, and pulls complete payloads with
:meth:`~FrameDecoder.next_frame`. The frame-size limit lives here
(convention 5 of docs/contributing.md: framing enforces the frame limit), so
it is tested without sockets.

Not thread-safe: one decoder belongs to one connection task.
"""

from __future__ import annotations

import sys
from typing import Final

from logbroker.errors import FrameTooLargeError

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "FrameDecoder"]

DEFAULT_MAX_FRAME_BYTES: Final = 100 * 1024 * 1024
"""Kafka's ``socket.request.max.bytes`` default (100 MiB)."""

_SIZE_BYTES: Final = 4
_LARGE_FRAME: Final = 64 * 1024
"""A frame of at least this many bytes is received into a buffer of its own
and handed out without a copy; smaller ones are copied out of the shared one."""
_FIRST_LARGE: Final = 1024 * 1024
"""A large frame's buffer starts at most this big and grows fourfold as its
bytes arrive, so a declared size costs nothing before the bytes do."""
_SMALL_START: Final = 8 * 1024
_SMALL_MAX: Final = 256 * 1024
_MIN_ROOM: Final = 4 * 1024


class FrameDecoder:
    """Split a byte stream into Kafka frames, bounded by ``max_frame_bytes``.

    Bytes cross it with the fewest copies: a frame of at least 64 KiB (a
    producer's batches) is received straight into a buffer of its own and
    returned as a read-only memoryview of it; that buffer is reused for a
    later large frame once nothing holds the earlier one any more, so a
    producer's stream costs no allocation (and no page faults) per request.
    Smaller frames are received into one shared buffer, grown while reads
    fill it (up to 256 KiB), and copied out as ``bytes``.

    Memory grows with the bytes received, never with a declared size alone: a
    peer that declares 100 MB and sends 20 costs one starting buffer of at
    most 1 MiB (and is refused after 4 bytes when the limit is lower).

    Once :meth:`next_frame` raised :class:`FrameTooLargeError` the decoder stays
    broken: every later call raises again. The connection must be closed.
    """

    __slots__ = ("_buffer", "_start", "_end", "_max_frame_bytes", "_size", "_large", "_filled", "_spare",
                 "_lent", "_last_read", "_full_read")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {max_frame_bytes}")
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray(_SMALL_START)  # shared: frames start in [_start, _end)
        self._start = 0
        self._end = 0
        self._size: int | None = None  # declared size of the frame at the head
        self._large: bytearray | None = None  # the head frame's own buffer, while it fills
        self._filled = 0  # bytes of the head frame in _large
        self._spare: bytearray | None = None  # an earlier large frame's buffer, for reuse
        self._lent: memoryview | None = None  # the view receive_buffer() lent out
        self._last_read = 0  # bytes of the last read
        self._full_read = False  # the last read filled the view it was lent

    @property
    def max_frame_bytes(self) -> int:
        """The largest payload size accepted (the 4 size bytes not included).

        Settable: a new limit applies to every frame whose size prefix
        :meth:`next_frame` has not read yet (a SASL listener raises it once the
        connection has authenticated).
        """
        return self._max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {value}")
        self._max_frame_bytes = value

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as a frame (size prefixes included)."""
        large = _SIZE_BYTES + self._filled if self._large is not None else 0
        return self._end - self._start + large

    @property
    def filling_large(self) -> bool:
        """The next bytes received belong to a large frame (its own buffer)."""
        return self._large is not None and self._size is not None and self._filled < self._size

    @property
    def at_frame_boundary(self) -> bool:
        """True when no partial frame is buffered; at EOF, False means truncation."""
        return self._large is None and self._start == self._end

    def receive_buffer(self) -> memoryview:
        """A writable view for the next bytes from the peer (never empty); pass
        the number written to :meth:`received`. The view is valid until then."""
        self._return_lent()
        large = self._large
        if large is not None and self._size is not None and self._filled < self._size:
            if self._filled == len(large):
                large.extend(bytes(min(self._size, 4 * len(large)) - len(large)))
            view = memoryview(large)[self._filled : self._size]
        else:
            view = memoryview(self._room())[self._end :]
        self._lent = view
        return view

    def received(self, count: int) -> None:
        """``count`` bytes were written at the start of the last :meth:`receive_buffer`."""
        lent = 0 if self._lent is None else len(self._lent)
        if not 0 <= count <= lent:
            raise ValueError(f"received {count} bytes into a lent view of {lent}")
        self._return_lent()
        self._last_read, self._full_read = count, count == lent
        large = self._large
        if large is not None and self._size is not None and self._filled < self._size:
            self._filled += count
        else:
            self._end += count

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` (any length, including empty); a copy. Never raises on content."""
        with memoryview(data) as source:
            source = source.cast("B")
            done = 0
            while done < len(source):
                target = self.receive_buffer()
                n = min(len(target), len(source) - done)
                target[:n] = source[done : done + n]
                self.received(n)
                done += n

    def next_frame(self) -> bytes | memoryview | None:
        """Return the next complete payload (without its size prefix), or None:
        ``bytes`` below 64 KiB, else a read-only memoryview of its own buffer.

        :raises FrameTooLargeError: as soon as the 4 size bytes of the head frame
            are buffered and declare a negative size or one above
            ``max_frame_bytes``; the body is never waited for.
        """
        self._return_lent()
        large = self._large
        size = self._size
        if large is not None and size is not None:
            if self._filled < size:
                return None
            frame = memoryview(large)[:size].toreadonly()
            self._large, self._size, self._filled = None, None, 0
            self._spare = large
            return frame
        buffer, start = self._buffer, self._start
        available = self._end - start
        if size is None:
            if available < _SIZE_BYTES:
                return None
            size = int.from_bytes(buffer[start : start + _SIZE_BYTES], "big", signed=True)
            if size < 0 or size > self._max_frame_bytes:
                raise FrameTooLargeError(
                    f"frame declares {size} bytes; the limit is {self._max_frame_bytes}"
                )
            self._size = size
        if size >= _LARGE_FRAME:
            return self._start_large(size)
        end = start + _SIZE_BYTES + size
        if self._end < end:
            return None
        with memoryview(buffer) as view:
            small = bytes(view[start + _SIZE_BYTES : end])
        self._start = end
        self._size = None
        return small

    @property
    def holds_spare(self) -> bool:
        """A large frame's buffer is kept for the next one."""
        return self._spare is not None

    def release_spare(self) -> None:
        """Let go of the buffer kept for the next large frame (an idle
        connection should not hold a megabyte)."""
        self._spare = None
        if self._start == self._end and len(self._buffer) > _SMALL_START:
            self._return_lent()
            self._buffer = bytearray(_SMALL_START)
            self._start = self._end = 0

    def _start_large(self, size: int) -> bytes | memoryview | None:
        """Move the head frame's bytes into a buffer of its own, which takes the rest."""
        large = self._spare
        self._spare = None
        # Only this function's name holds it (the call's argument is the second):
        # no frame handed out earlier is still in use, so it can be written again.
        if large is None or sys.getrefcount(large) > 2:
            large = bytearray(min(size, _FIRST_LARGE))
        begin = self._start + _SIZE_BYTES
        have = min(self._end - begin, size)
        if have > len(large):
            large.extend(bytes(have - len(large)))
        with memoryview(large) as target, memoryview(self._buffer) as source:
            target[:have] = source[begin : begin + have]
        self._start = begin + have
        self._large, self._filled = large, have
        return self.next_frame()

    def _room(self) -> bytearray:
        """The shared buffer with free space after ``_end``: compacted, doubled
        while reads fill it (up to 256 KiB), shrunk when a burst is over."""
        buffer = self._buffer
        if self._start == self._end:
            self._start = self._end = 0
            if len(buffer) > _SMALL_START and self._last_read < len(buffer) // 8:
                self._buffer = buffer = bytearray(_SMALL_START)
        free = len(buffer) - self._end
        grow = self._full_read and len(buffer) < _SMALL_MAX
        if free >= _MIN_ROOM and not grow:
            return buffer
        used = self._end - self._start
        if self._start:
            buffer[:used] = buffer[self._start : self._end]
            self._start, self._end = 0, used
        if len(buffer) - used < _MIN_ROOM or grow:
            buffer.extend(bytes(len(buffer)))
        self._full_read = False
        return buffer

    def _return_lent(self) -> None:
        if self._lent is not None:
            self._lent.release()
            self._lent = None

    def __repr__(self) -> str:
        expected = "?" if self._size is None else str(self._size)
        return (
            f"<FrameDecoder buffered={self.buffered_bytes} head_frame_size={expected} "
            f"max_frame_bytes={self._max_frame_bytes}>"
        )
