"""FrameDecoder: chunked input, limits, garbage, cost of large frames."""

from __future__ import annotations

import struct
import time

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from logbroker.errors import FrameTooLargeError
from logbroker.errors import ProtocolError
from logbroker.protocol import FrameDecoder


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _drain(decoder: FrameDecoder) -> list[bytes]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_empty_decoder_has_no_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.next_frame() is None
    assert decoder.at_frame_boundary
    assert decoder.buffered_bytes == 0


def test_one_frame_in_one_chunk() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(_frame(b"hello"))
    assert decoder.next_frame() == b"hello"
    assert decoder.next_frame() is None
    assert decoder.at_frame_boundary


def test_frame_fed_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    wire = _frame(b"abcdef")
    for i, byte in enumerate(wire):
        assert decoder.next_frame() is None
        decoder.receive_data(bytes([byte]))
        assert decoder.at_frame_boundary is False
        if i < len(wire) - 1:
            assert decoder.next_frame() is None
    assert decoder.next_frame() == b"abcdef"
    assert decoder.at_frame_boundary


def test_several_frames_and_a_partial_one_in_one_chunk() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(_frame(b"a") + _frame(b"") + _frame(b"ccc") + _frame(b"dddd")[:5])
    assert _drain(decoder) == [b"a", b"", b"ccc"]
    assert not decoder.at_frame_boundary
    assert decoder.buffered_bytes == 5
    decoder.receive_data(b"ddd")
    assert decoder.next_frame() == b"dddd"


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    decoder = FrameDecoder()
    wire = _frame(b"xyz")
    decoder.receive_data(bytearray(wire[:2]))
    decoder.receive_data(memoryview(wire)[2:])
    frame = decoder.next_frame()
    assert frame == b"xyz"
    assert type(frame) is bytes


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(_frame(p) for p in payloads)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    decoder = FrameDecoder(max_frame_bytes=300)
    frames = []
    for start, end in zip(points, points[1:]):
        decoder.receive_data(wire[start:end])
        frames.extend(_drain(decoder))
    assert frames == payloads
    assert decoder.at_frame_boundary


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    decoder.receive_data(_frame(b"x" * 10))
    assert decoder.next_frame() == b"x" * 10


def test_oversize_is_refused_as_soon_as_the_size_is_seen() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    decoder.receive_data(struct.pack(">i", 11)[:3])
    assert decoder.next_frame() is None
    decoder.receive_data(struct.pack(">i", 11)[3:])  # no body byte has arrived
    with pytest.raises(FrameTooLargeError, match="11 bytes"):
        decoder.next_frame()
    # The decoder stays broken.
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_oversize_after_a_good_frame() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    decoder.receive_data(_frame(b"ok") + struct.pack(">i", 2**31 - 1))
    assert decoder.next_frame() == b"ok"
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


@pytest.mark.parametrize("size", [-1, -2, -(2**31)])
def test_negative_size_is_refused(size: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(struct.pack(">i", size))
    with pytest.raises(FrameTooLargeError) as info:
        decoder.next_frame()
    assert isinstance(info.value, ProtocolError)


def test_default_limit_is_100_mib() -> None:
    decoder = FrameDecoder()
    assert decoder.max_frame_bytes == 100 * 1024 * 1024
    decoder.receive_data(struct.pack(">i", 100 * 1024 * 1024 + 1))
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_negative_limit_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_bytes=-1)


@given(garbage=st.binary(max_size=64))
def test_garbage_yields_frames_or_frame_too_large_only(garbage: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=16)
    decoder.receive_data(garbage)
    try:
        for frame in _drain(decoder):
            assert len(frame) <= 16
    except FrameTooLargeError:
        pass


def test_repr_shows_state() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    decoder.receive_data(_frame(b"abc")[:5])
    decoder.next_frame()
    assert repr(decoder) == (
        "<FrameDecoder buffered=5 head_frame_size=3 max_frame_bytes=1000>"
    )


def test_large_frames_in_64k_chunks_are_linear() -> None:
    """16 frames of 1 MiB in 64 KiB chunks: one copy in, one copy out each."""
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = _frame(payload) * 16
    chunk = 64 * 1024
    decoder = FrameDecoder()
    start = time.perf_counter()
    frames = 0
    for offset in range(0, len(wire), chunk):
        decoder.receive_data(wire[offset : offset + chunk])
        while (frame := decoder.next_frame()) is not None:
            assert len(frame) == len(payload)
            frames += 1
    elapsed = time.perf_counter() - start
    assert frames == 16
    # Quadratic re-slicing would cost ~16 * 16 MiB copies (seconds); linear is ~10 ms.
    assert elapsed < 1.0, f"{elapsed:.3f} s for 16 MiB"
    print(f"\nframing: 16 x 1 MiB in 64 KiB chunks: {elapsed * 1e3:.1f} ms")


def test_the_limit_can_be_raised_for_the_frames_not_yet_read() -> None:
    """A SASL listener caps frames before login and raises the cap after it."""
    decoder = FrameDecoder(max_frame_bytes=8)
    decoder.receive_data(_frame(b"login") + _frame(b"x" * 100))
    assert decoder.next_frame() == b"login"
    decoder.max_frame_bytes = 1000
    assert decoder.next_frame() == b"x" * 100
    with pytest.raises(ValueError):
        decoder.max_frame_bytes = -1
    capped = FrameDecoder(max_frame_bytes=512 * 1024)
    capped.receive_data(struct.pack(">i", 100 * 1024 * 1024))
    with pytest.raises(FrameTooLargeError, match="limit is 524288"):
        capped.next_frame()


def test_a_declared_size_costs_only_a_starting_buffer_before_the_bytes_arrive() -> None:
    import tracemalloc

    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        decoder.receive_data(struct.pack(">i", 100 * 1024 * 1024) + b"\0" * 1024)
        assert decoder.next_frame() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered_bytes == 4 + 1024
    assert peak < 1024 * 1024 + 64 * 1024  # a 1 MiB starting buffer, not 100 MB


def _feed_by_recv_into(decoder: FrameDecoder, wire: bytes, chunks: list[int]) -> list[bytes]:
    """Write ``wire`` into the decoder as a socket's recv_into would, ``chunks`` bytes at most per read."""
    frames: list[bytes] = []
    done, i = 0, 0
    while done < len(wire):
        view = decoder.receive_buffer()
        assert len(view) > 0
        n = min(len(view), len(wire) - done, chunks[i % len(chunks)] if chunks else len(wire))
        i += 1
        view[:n] = wire[done : done + n]
        decoder.received(n)
        done += n
        while (frame := decoder.next_frame()) is not None:
            frames.append(bytes(frame))
    return frames


@settings(deadline=None, max_examples=60)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 100, 4095, 64 * 1024 - 1, 64 * 1024, 70_000, 1024 * 1024 + 17]), max_size=6),
    chunks=st.lists(st.one_of(st.integers(min_value=1, max_value=9), st.integers(min_value=1000, max_value=300_000)),
                    min_size=1, max_size=8),
)
def test_recv_into_yields_the_same_frames_for_any_reads(sizes: list[int], chunks: list[int]) -> None:
    payloads = [bytes([n % 251]) * n for n in sizes]
    wire = b"".join(_frame(p) for p in payloads)
    decoder = FrameDecoder()
    assert _feed_by_recv_into(decoder, wire, chunks) == payloads
    assert decoder.at_frame_boundary and decoder.buffered_bytes == 0


def test_a_large_frame_is_its_own_read_only_buffer() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 1024  # 256 KiB
    decoder.receive_data(_frame(payload) + _frame(b"small"))
    frame = decoder.next_frame()
    assert isinstance(frame, memoryview) and frame.readonly and frame == payload
    assert decoder.next_frame() == b"small"


def test_a_large_buffer_is_reused_only_once_nothing_holds_its_frame() -> None:
    decoder = FrameDecoder()
    first, second = b"a" * 100_000, b"b" * 100_000
    decoder.receive_data(_frame(first))
    held = decoder.next_frame()
    decoder.receive_data(_frame(second))
    assert decoder.next_frame() == second
    assert held == first  # still held: the second frame went to a new buffer
    held_buffer = id(held.obj)
    del held
    decoder.receive_data(_frame(first))
    again = decoder.next_frame()
    assert again == first and decoder.next_frame() is None
    # The first buffer was held when the second frame came; the third reused the second's.
    assert id(again.obj) != held_buffer


def test_the_last_large_buffer_is_reused_when_released() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(_frame(b"x" * 100_000))
    frame = decoder.next_frame()
    owner = id(frame.obj)
    del frame
    decoder.receive_data(_frame(b"y" * 90_000))
    frame = decoder.next_frame()
    assert id(frame.obj) == owner and frame == b"y" * 90_000
    del frame
    decoder.release_spare()
    decoder.receive_data(_frame(b"z" * 90_000))
    assert decoder.next_frame() == b"z" * 90_000


def test_a_frame_above_the_starting_buffer_grows_its_buffer() -> None:
    decoder = FrameDecoder()
    payload = bytes(range(256)) * 20_000  # 5 MB
    assert _feed_by_recv_into(decoder, _frame(payload), [65536]) == [payload]


def test_received_checks_the_count() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ValueError):
        decoder.received(1)  # nothing lent
    view = decoder.receive_buffer()
    with pytest.raises(ValueError):
        decoder.received(len(view) + 1)
