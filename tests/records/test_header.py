"""The 61-byte batch header: parse, check, validate, stamp, iterate."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbroker.errors import BatchTooLargeError, CorruptBatchError, InvalidBatchError, RecordsError
from logbroker.records import (
    HEADER_SIZE,
    Compression,
    batch_crc,
    build_batch,
    check_batch,
    decode_batch,
    iter_batches,
    parse_header,
    peek_size,
    scan_valid_prefix,
    stamp_batch,
    validate_produced_batch,
)

from ._util import recrc, set_field


def _batch(n: int = 3, **kwargs) -> bytes:
    records = [(b"k%d" % i, b"value-%d" % i, (), 1_000 + i) for i in range(n)]
    return build_batch(records, **kwargs)


def test_layout_matches_hand_packed_header():
    batch = _batch(3, producer_id=7, producer_epoch=2, base_sequence=11, partition_leader_epoch=4, base_offset=100)
    fields = struct.unpack_from(">qiibIhiqqqhii", batch)
    assert fields[0] == 100  # baseOffset
    assert fields[1] == len(batch) - 12  # batchLength
    assert fields[2] == 4  # partitionLeaderEpoch
    assert fields[3] == 2  # magic
    assert fields[5] == 0  # attributes
    assert fields[6] == 2  # lastOffsetDelta
    assert fields[7:10] == (1_000, 1_002, 7)  # base/max timestamp, producerId
    assert fields[10:] == (2, 11, 3)


def test_parse_header_fields_and_properties():
    batch = _batch(3, producer_id=7, producer_epoch=2, base_sequence=11, base_offset=100, transactional=True)
    header = parse_header(batch)
    assert header.size == len(batch)
    assert header.magic == 2
    assert header.records_count == 3
    assert header.last_offset_delta == 2
    assert header.last_offset == 102
    assert header.next_offset == 103
    assert header.base_timestamp == 1_000 and header.max_timestamp == 1_002
    assert header.is_transactional and not header.is_control and not header.log_append_time
    assert header.compression == Compression.NONE
    assert header.last_sequence == 13
    assert header.crc == batch_crc(batch, 0, len(batch))


def test_parse_header_at_position():
    batch = _batch(2)
    assert parse_header(b"xyz" + batch, 3) == parse_header(batch)


def test_header_flags():
    header = parse_header(_batch(1, compression=Compression.ZSTD, log_append_time=True, control=True))
    assert header.compression == Compression.ZSTD
    assert header.log_append_time and header.is_control and not header.is_transactional


def test_last_sequence_wraps_and_absent():
    assert parse_header(_batch(3)).last_sequence == -1
    header = parse_header(_batch(3, producer_id=1, producer_epoch=0, base_sequence=0x7FFFFFFF))
    assert header.last_sequence == 1


def test_parse_header_truncated():
    with pytest.raises(CorruptBatchError, match="truncated"):
        parse_header(_batch()[:60])


def test_check_batch_accepts_a_good_batch():
    batch = _batch()
    assert check_batch(batch) == parse_header(batch)
    assert check_batch(b"\0" * 5 + batch, 5).size == len(batch)


def test_check_batch_bad_crc():
    buf = bytearray(_batch())
    buf[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError, match="CRC") as info:
        check_batch(buf)
    assert info.value.reason == "corrupt"


def test_check_batch_crc_covers_attributes_and_count():
    batch = _batch()
    for offset, fmt, value in ((21, ">h", 1), (57, ">i", 9), (27, ">q", 5)):
        with pytest.raises(CorruptBatchError, match="CRC"):
            check_batch(set_field(batch, offset, fmt, value, fix_crc=False))


def test_check_batch_bad_magic():
    with pytest.raises(CorruptBatchError, match="magic"):
        check_batch(set_field(_batch(), 16, ">b", 1, fix_crc=False))


def test_check_batch_truncated():
    batch = _batch()
    with pytest.raises(CorruptBatchError, match="truncated"):
        check_batch(batch[:-1])
    with pytest.raises(CorruptBatchError, match="truncated"):
        check_batch(batch[:HEADER_SIZE - 1])


def test_check_batch_length_shorter_than_header():
    with pytest.raises(CorruptBatchError, match="shorter than a header"):
        check_batch(set_field(_batch(), 8, ">i", 10, fix_crc=False))
    with pytest.raises(CorruptBatchError):
        check_batch(set_field(_batch(), 8, ">i", -1, fix_crc=False))


def test_validate_produced_batch_accepts():
    batch = _batch(5, producer_id=3, producer_epoch=0, base_sequence=0)
    header = validate_produced_batch(batch, max_bytes=len(batch))
    assert header.records_count == 5


def test_validate_too_large():
    batch = _batch()
    with pytest.raises(BatchTooLargeError) as info:
        validate_produced_batch(batch, max_bytes=len(batch) - 1)
    assert info.value.reason == "too large"


def test_validate_length_mismatch():
    with pytest.raises(CorruptBatchError, match="were sent"):
        validate_produced_batch(_batch() + b"\0")


def test_validate_corrupt():
    buf = bytearray(_batch())
    buf[70] ^= 1
    with pytest.raises(CorruptBatchError):
        validate_produced_batch(bytes(buf))
    with pytest.raises(CorruptBatchError):
        validate_produced_batch(_batch()[:40])


def test_validate_control_batch():
    with pytest.raises(InvalidBatchError, match="control") as info:
        validate_produced_batch(_batch(1, control=True))
    assert info.value.reason == "invalid"


def test_validate_count_mismatch():
    batch = set_field(_batch(3), 57, ">i", 4)
    with pytest.raises(InvalidBatchError, match="lastOffsetDelta"):
        validate_produced_batch(bytes(batch))
    batch = set_field(_batch(3), 23, ">i", 5)
    with pytest.raises(InvalidBatchError, match="lastOffsetDelta"):
        validate_produced_batch(bytes(batch))


def test_validate_zero_records():
    batch = set_field(set_field(_batch(1), 57, ">i", 0), 23, ">i", -1)
    with pytest.raises(InvalidBatchError, match="0 records"):
        validate_produced_batch(bytes(batch))


def test_validate_producer_id_without_sequence():
    with pytest.raises(InvalidBatchError, match="sequence"):
        validate_produced_batch(_batch(2, producer_id=5, producer_epoch=0, base_sequence=-1))


def test_errors_share_a_family():
    for exc in (CorruptBatchError, InvalidBatchError, BatchTooLargeError):
        assert issubclass(exc, RecordsError)


def test_stamp_keeps_crc_valid():
    batch = _batch(4, compression=Compression.LZ4)
    buf = bytearray(b"pad" + batch)
    stamp_batch(buf, 1_000_000, 7, pos=3)
    header = check_batch(buf, 3)
    assert header.base_offset == 1_000_000
    assert header.partition_leader_epoch == 7
    assert header.crc == parse_header(batch).crc
    assert [r.offset for r in decode_batch(buf, 3).records] == [1_000_000 + i for i in range(4)]


def test_stamp_default_epoch_zero():
    buf = bytearray(_batch())
    stamp_batch(buf, 42)
    assert parse_header(buf).partition_leader_epoch == 0
    assert check_batch(buf).base_offset == 42


def _log(n: int = 3) -> tuple[bytes, list[int]]:
    parts, positions, pos = [], [], 0
    for i in range(n):
        b = bytearray(_batch(i + 1))
        stamp_batch(b, i * 10)
        parts.append(bytes(b))
        positions.append(pos)
        pos += len(b)
    return b"".join(parts), positions


def test_iter_batches_all():
    log, positions = _log()
    assert [(p, h.base_offset) for p, h in iter_batches(log)] == list(zip(positions, [0, 10, 20]))


def test_iter_batches_stops_at_partial_tail():
    log, positions = _log()
    for cut in (1, 11, 12, 60, 61, 62):
        assert [p for p, _ in iter_batches(log[:-cut])] == positions[:2]
    assert [p for p, _ in iter_batches(log, end=positions[2])] == positions[:2]
    assert [p for p, _ in iter_batches(log, pos=positions[1])] == positions[1:]


def test_iter_batches_stops_at_nonsense_length():
    log, positions = _log()
    broken = set_field(log, positions[1] + 8, ">i", 3, fix_crc=False)
    assert [p for p, _ in iter_batches(broken)] == positions[:1]


def test_iter_batches_does_not_check_crc():
    log, positions = _log()
    buf = bytearray(log)
    buf[positions[1] + 70] ^= 1
    assert [p for p, _ in iter_batches(buf)] == positions


def test_scan_valid_prefix_stops_at_corrupt_batch():
    log, positions = _log()
    buf = bytearray(log)
    buf[positions[1] + 70] ^= 1
    assert [p for p, _ in scan_valid_prefix(buf)] == positions[:1]
    assert [p for p, _ in scan_valid_prefix(log)] == positions
    assert [p for p, _ in scan_valid_prefix(log[:-5])] == positions[:2]
    assert [p for p, _ in scan_valid_prefix(log, end=positions[2] + 61)] == positions[:2]


def test_scan_valid_prefix_stops_at_bad_magic():
    log, positions = _log()
    assert [p for p, _ in scan_valid_prefix(set_field(log, positions[2] + 16, ">b", 0, fix_crc=False))] == positions[:2]


def test_peek_size():
    batch = _batch()
    assert peek_size(batch[:11]) is None
    assert peek_size(batch[:12]) == len(batch)
    assert peek_size(b"ab" + batch, 2) == len(batch)


def test_recrc_helper_is_consistent():
    batch = _batch()
    assert bytes(recrc(bytearray(batch))) == batch


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=400))
def test_truncation_and_corruption_properties(cut, flip):
    log, positions = _log()
    ends = [p + parse_header(log, p).size for p in positions]
    truncated = log[: max(0, len(log) - cut)]
    assert [p for p, _ in iter_batches(truncated)] == [p for p, e in zip(positions, ends) if e <= len(truncated)]
    # Flipping one byte at or after 21 (CRC-covered, or the CRC itself at 17..20)
    # invalidates exactly the batch holding it and hides all that follow.
    buf = bytearray(log)
    index = flip % len(buf)
    buf[index] ^= 0x5A
    holder = max(i for i, p in enumerate(positions) if p <= index)
    offset_in_batch = index - positions[holder]
    valid = [p for p, _ in scan_valid_prefix(buf)]
    if offset_in_batch >= 16 or 8 <= offset_in_batch < 12:
        assert valid == positions[:holder]
    else:  # baseOffset / leader epoch: outside the CRC, by design
        assert valid == positions
