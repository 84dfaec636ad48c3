"""Kafka request framing: a 4-byte big-endian signed size, then that many bytes.

:class:`FrameDecoder` is sans-I/O in the style of h11: the connection loop feeds
it whatever the socket returned with :meth:`~FrameDecoder.receive_data` and pulls
complete payloads with :meth:`~FrameDecoder.next_frame`. The frame-size limit
lives here (convention 5 of docs/contributing.md: framing enforces the frame limit), so it is tested
without sockets.

Not thread-safe: one decoder belongs to one connection task.
"""

from __future__ import annotations

from typing import Final

from logbroker.errors import FrameTooLargeError

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "FrameDecoder"]

DEFAULT_MAX_FRAME_BYTES: Final = 100 * 1024 * 1024
"""Kafka's ``socket.request.max.bytes`` default (100 MiB)."""

_SIZE_BYTES: Final = 4


class FrameDecoder:
    """Split a byte stream into Kafka frames, bounded by ``max_frame_bytes``.

    Buffers in one :class:`bytearray`. Appending is amortised O(n) and taking a
    frame off the front is O(frame) (CPython trims a bytearray's head in place),
    so a 1 MiB frame arriving in 64 KiB chunks costs one copy in and one copy out,
    never a quadratic re-slice.

    Once :meth:`next_frame` raised :class:`FrameTooLargeError` the decoder stays
    broken: every later call raises again. The connection must be closed.
    """

    __slots__ = ("_buffer", "_max_frame_bytes", "_size")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {max_frame_bytes}")
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._size: int | None = None  # declared size of the frame at the head

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
        return len(self._buffer)

    @property
    def at_frame_boundary(self) -> bool:
        """True when no partial frame is buffered; at EOF, False means truncation."""
        return not self._buffer

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` (any length, including empty). Never raises on content.

        Memory grows with the bytes received, never with a declared size: a
        peer that declares 100 MB and sends 20 costs 20 (and is refused after
        4 bytes when the limit is lower)."""
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """Return the next complete payload (without its size prefix), or None.

        :raises FrameTooLargeError: as soon as the 4 size bytes of the head frame
            are buffered and declare a negative size or one above
            ``max_frame_bytes``; the body is never waited for.
        """
        buffer = self._buffer
        size = self._size
        if size is None:
            if len(buffer) < _SIZE_BYTES:
                return None
            size = int.from_bytes(buffer[:_SIZE_BYTES], "big", signed=True)
            if size < 0 or size > self._max_frame_bytes:
                raise FrameTooLargeError(
                    f"frame declares {size} bytes; the limit is {self._max_frame_bytes}"
                )
            self._size = size
        end = _SIZE_BYTES + size
        if len(buffer) < end:
            return None
        with memoryview(buffer) as view:
            frame = bytes(view[_SIZE_BYTES:end])
        del buffer[:end]
        self._size = None
        return frame

    def __repr__(self) -> str:
        expected = "?" if self._size is None else str(self._size)
        return (
            f"<FrameDecoder buffered={len(self._buffer)} head_frame_size={expected} "
            f"max_frame_bytes={self._max_frame_bytes}>"
        )
