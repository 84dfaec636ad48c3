import os

import pytest

from logbroker.errors import (
    BatchTooLargeError,
    CorruptBatchError,
    InvalidBatchError,
    OffsetOutOfRangeError,
    StorageError,
)
from logbroker.records import BatchBuilder, decode_batch, iter_batches, parse_header
from logbroker.storage import LogConfig, PartitionLog

from .conftest import batch_spans, make_batch


def test_append_assigns_offsets_and_reads_back(open_log):
    log = open_log()
    infos = [log.append(make_batch(records=n), now_ms=0) for n in (1, 3, 2)]
    assert [(i.base_offset, i.last_offset) for i in infos] == [(0, 0), (1, 3), (4, 5)]
    assert all(i.log_append_time_ms == -1 and i.log_start_offset == 0 for i in infos)
    assert log.log_end_offset == log.high_watermark == 6
    result = log.read(2, 1 << 20)
    assert batch_spans(result.records) == [(1, 3), (4, 5)]
    assert (result.high_watermark, result.log_start_offset) == (6, 0)
    decoded = decode_batch(result.records)
    assert decoded.header.partition_leader_epoch == 0
    assert [r.offset for r in decoded.records] == [1, 2, 3]


def test_read_at_end_is_empty_and_out_of_range_raises(open_log):
    log = open_log()
    assert len(log.read(0, 100).records) == 0
    log.append(make_batch(), now_ms=0)
    assert len(log.read(1, 100).records) == 0
    with pytest.raises(OffsetOutOfRangeError):
        log.read(2, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)


def test_read_returns_whole_batches_within_max_bytes_but_at_least_one(open_log):
    log = open_log(LogConfig(index_interval_bytes=100))
    for _ in range(20):
        log.append(make_batch(records=2, value_size=50), now_ms=0)
    size = parse_header(log.read(0, 1).records).size
    assert batch_spans(log.read(0, 1).records) == [(0, 1)]  # larger than max_bytes, still whole
    assert len(log.read(0, size * 3).records) == size * 3
    assert len(log.read(0, size * 3 + size - 1).records) == size * 3
    assert batch_spans(log.read(5, size * 2).records) == [(4, 5), (6, 7)]


def test_reads_are_zero_copy_views_of_the_map(open_log):
    log = open_log()
    log.append(make_batch(), now_ms=0)
    records = log.read(0, 1000).records
    assert isinstance(records, memoryview) and records.readonly
    # A view of the file's pages, not a copy: a byte changed in the file shows.
    fd = os.open(log.segments[0].path, os.O_RDWR)
    try:
        os.pwrite(fd, bytes([records[-1] ^ 0xFF]), len(records) - 1)
        assert records[-1] == os.pread(fd, 1, len(records) - 1)[0]
    finally:
        os.close(fd)


@pytest.mark.parametrize("map_ahead", [True, False], ids=["map-ahead", "remap"])
@pytest.mark.parametrize("segment_bytes", [1 << 30, 10_000])
def test_tail_reads_after_each_append_see_every_batch(open_log, monkeypatch, segment_bytes, map_ahead):
    # The active segment's map reaches past the data; reads must still stop at
    # the data and see each append at once, across rolls and map growth. Where
    # the system refuses such a map, the segment remaps as the file grows.
    if not map_ahead:
        monkeypatch.setattr("logbroker.storage.segment.map_fd", lambda fd, length, writable=False: None)
    log = open_log(LogConfig(segment_bytes=segment_bytes, index_interval_bytes=300))
    views = []
    for i in range(200):
        info = log.append(make_batch(records=1 + i % 3, value_size=40 + i), now_ms=0)
        records = log.read(info.base_offset, 1 << 20).records
        assert parse_header(records).base_offset == info.base_offset
        assert len(records) == parse_header(records).size  # nothing past the data
        views.append(records)
        if i % 7 == 0:  # a consumer a few batches behind (reads stop at a segment's end)
            behind = max(0, info.base_offset - 5)
            spans = batch_spans(log.read(behind, 1 << 20).records)
            assert spans[0][0] <= behind <= spans[0][1]
            assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:]))
            if segment_bytes > log.size_bytes:
                assert spans[-1][1] == info.last_offset
    assert sum(map(len, views)) == log.size_bytes
    assert [parse_header(v).base_offset for v in views] == [
        h.base_offset for _, h in log.iter_batch_headers(0)
    ]


def test_append_does_not_copy_the_payload(open_log, monkeypatch):
    log = open_log()
    batch = make_batch(records=5, value_size=100)
    seen = []
    real = os.pwritev

    def spy(fd, buffers, pos):
        seen.extend(buffers)
        return real(fd, buffers, pos)

    monkeypatch.setattr(os, "pwritev", spy)
    log.append(batch, now_ms=0)
    prefix, payload = seen
    assert len(prefix) == 16
    assert isinstance(payload, memoryview) and payload.obj is batch


def test_reads_span_one_segment(open_log, small_config):
    log = open_log()
    for _ in range(30):
        log.append(make_batch(records=2, value_size=300), now_ms=0)
    assert len(log.segments) > 3
    first = log.segments[0]
    result = log.read(0, 1 << 30)
    assert batch_spans(result.records)[-1][1] == first.next_offset - 1
    assert len(result.records) == first.size_bytes


def test_invalid_batches_raise_typed_errors_and_write_nothing(open_log):
    log = open_log(LogConfig(max_message_bytes=500))
    good = make_batch()
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        log.append(bytes(corrupt), now_ms=0)
    with pytest.raises(CorruptBatchError):
        log.append(good[:-3], now_ms=0)
    with pytest.raises(BatchTooLargeError):
        log.append(make_batch(value_size=600), now_ms=0)
    control = BatchBuilder(control=True)
    control.append(b"\x00\x00\x00\x00\x00\x00", key=b"\x00\x00\x00\x01", timestamp_ms=1)
    with pytest.raises(InvalidBatchError):
        log.append(control.build(), now_ms=0)
    assert log.log_end_offset == 0 and log.size_bytes == 0
    info = log.append(control.build(), now_ms=0, allow_control=True)
    assert info.base_offset == 0


def test_batch_larger_than_segment_is_refused(open_log):
    log = open_log(LogConfig(segment_bytes=1000))
    with pytest.raises(BatchTooLargeError):
        log.append(make_batch(value_size=2000), now_ms=0)


def test_log_append_time_rewrites_timestamp_and_crc(open_log):
    log = open_log(LogConfig(message_timestamp_type="LogAppendTime"))
    info = log.append(make_batch(records=3, timestamp=5), now_ms=777)
    assert info.log_append_time_ms == 777
    decoded = decode_batch(log.read(0, 1000).records)  # checks the CRC
    assert decoded.header.log_append_time and decoded.header.max_timestamp == 777
    assert [r.timestamp for r in decoded.records] == [777, 777, 777]
    assert log.offset_for_timestamp(700) == (0, 777)


def test_leader_epoch_is_stamped(open_log):
    log = open_log()
    log.append(make_batch(), now_ms=0, leader_epoch=7)
    assert parse_header(log.read(0, 100).records).partition_leader_epoch == 7


def test_rolls_by_size_and_indexes_track_segments(open_log, small_config):
    log = open_log()
    for _ in range(50):
        log.append(make_batch(records=4, value_size=100), now_ms=0)
    segments = log.segments
    assert len(segments) > 5
    assert all(s.size_bytes <= small_config.segment_bytes for s in segments)
    for a, b in zip(segments, segments[1:]):
        assert a.next_offset == b.base_offset
    assert segments[0].path.name == "00000000000000000000.log"
    assert (segments[1].path.parent / f"{segments[1].base_offset:020d}.index").exists()
    assert log.size_bytes == sum(s.size_bytes for s in segments)


def test_rolls_by_segment_ms_using_batch_timestamps(open_log):
    log = open_log(LogConfig(segment_ms=1000))
    log.append(make_batch(timestamp=10_000), now_ms=0)
    log.append(make_batch(timestamp=10_500), now_ms=0)
    assert len(log.segments) == 1
    log.append(make_batch(timestamp=11_001), now_ms=0)
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_rolls_when_index_is_full(open_log):
    log = open_log(LogConfig(index_interval_bytes=0, segment_index_bytes=24))  # 3 entries
    for _ in range(10):
        log.append(make_batch(), now_ms=0)
    assert len(log.segments) >= 3
    for offset in range(10):
        assert batch_spans(log.read(offset, 1).records)[0][0] == offset


def test_offset_for_timestamp_and_max_timestamp(open_log):
    log = open_log(LogConfig(segment_bytes=2000, index_interval_bytes=100))
    ts = 1000
    for i in range(40):
        log.append(make_batch(records=3, timestamp=ts + 10 * i), now_ms=0)  # records at ts+10i, +1, +2
    assert log.offset_for_timestamp(0) == (0, 1000)
    assert log.offset_for_timestamp(1001) == (1, 1001)
    assert log.offset_for_timestamp(1003) == (3, 1010)
    assert log.offset_for_timestamp(1000 + 10 * 39 + 2) == (119, 1392)
    assert log.offset_for_timestamp(5000) is None
    assert log.max_timestamp() == (1392, 119)
    # out-of-order timestamps: the max is in the middle
    log.append(make_batch(records=2, timestamp=9000), now_ms=0)
    log.append(make_batch(records=1, timestamp=2000), now_ms=0)
    assert log.max_timestamp() == (9001, 121)
    assert log.offset_for_timestamp(8000) == (120, 9000)


def test_iter_batch_headers(open_log):
    log = open_log()
    for _ in range(30):
        log.append(make_batch(records=2, value_size=200, producer_id=5, producer_epoch=0, base_sequence=0), now_ms=0)
    headers = list(log.iter_batch_headers())
    assert [h.base_offset for _, h in headers] == list(range(0, 60, 2))
    assert all(h.producer_id == 5 for _, h in headers)
    assert [h.base_offset for _, h in log.iter_batch_headers(41)][:2] == [40, 42]


def test_retention_by_time_uses_largest_timestamp(open_log):
    log = open_log(LogConfig(segment_bytes=1000, retention_ms=1000))
    for i in range(20):
        log.append(make_batch(value_size=200, timestamp=i * 100), now_ms=0)
    before = log.segments
    assert len(before) > 3
    # now - largest timestamp of segment 0 must exceed retention.ms
    cutoff = before[0].max_timestamp + 1000
    assert log.apply_retention(now_ms=cutoff) == 0
    assert log.apply_retention(now_ms=cutoff + 1) == 1
    assert log.log_start_offset == before[1].base_offset
    assert log.apply_retention(now_ms=10**12) == len(before) - 2  # never the active one
    assert len(log.segments) == 1
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)


def test_retention_by_bytes(open_log):
    log = open_log(LogConfig(segment_bytes=1000, retention_bytes=2500, retention_ms=-1))
    for i in range(20):
        log.append(make_batch(value_size=200), now_ms=0)
    deleted = log.apply_retention(now_ms=0)
    assert deleted > 0
    sizes = [s.size_bytes for s in log.segments]
    assert sum(sizes) >= 2500 and sum(sizes) - sizes[0] < 2500


def test_retention_respects_compact_policy(open_log):
    log = open_log(LogConfig(segment_bytes=1000, retention_ms=1, cleanup_policy="compact"))
    for _ in range(20):
        log.append(make_batch(value_size=200, timestamp=0), now_ms=0)
    assert log.apply_retention(now_ms=10**12) == 0


def test_delete_records_before(open_log):
    seen = []
    log = open_log(LogConfig(segment_bytes=1000), on_log_start_offset_change=seen.append)
    for _ in range(20):
        log.append(make_batch(records=2, value_size=150), now_ms=0)
    segments = log.segments
    target = segments[2].base_offset + 1
    assert log.delete_records_before(target) == target
    assert seen == [target]
    assert log.log_start_offset == target
    assert log.segments[0].base_offset == segments[2].base_offset
    with pytest.raises(OffsetOutOfRangeError):
        log.read(target - 1, 100)
    assert batch_spans(log.read(target, 1).records)[0] == (target - 1, target)
    assert log.delete_records_before(3) == target  # never backwards
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(log.log_end_offset + 1)
    assert log.delete_records_before(log.log_end_offset) == 40
    assert len(log.read(40, 100).records) == 0


def test_truncate_to(open_log):
    log = open_log(LogConfig(segment_bytes=1000))
    for _ in range(20):
        log.append(make_batch(records=2, value_size=150), now_ms=0)
    assert log.truncate_to(15) == 14  # the batch holding 15 goes whole
    assert log.log_end_offset == 14
    assert log.segments[-1].next_offset == 14
    assert log.append(make_batch(), now_ms=0).base_offset == 14
    assert batch_spans(log.read(12, 10_000).records)[0] == (12, 13)
    assert batch_spans(log.read(14, 10_000).records) == [(14, 14)]
    assert log.truncate_to(100) == 15
    assert log.truncate_to(0) == 0 and log.size_bytes == 0


def test_truncation_forgets_where_tail_reads_stopped(open_log):
    log = open_log(LogConfig(index_interval_bytes=1 << 20))
    for _ in range(10):
        log.append(make_batch(records=1, value_size=100), now_ms=0)
    assert batch_spans(log.read(9, 1 << 20).records) == [(9, 9)]  # a consumer at the tail
    assert log.truncate_to(5) == 5
    for _ in range(7):  # offsets 5..11 again, at other positions
        log.append(make_batch(records=1, value_size=37), now_ms=0)
    for offset in range(12):
        assert batch_spans(log.read(offset, 1).records) == [(offset, offset)]


def test_reopen_clean_and_unclean_gives_same_state(tmp_path, small_config):
    log = PartitionLog(tmp_path / "p", small_config)
    for i in range(40):
        log.append(make_batch(records=2, value_size=120, timestamp=i), now_ms=0)
    log.close()
    clean = PartitionLog(tmp_path / "p", small_config, recovery_point=80, clean_shutdown=True)
    assert clean.recovery_report.scanned_segments == 0
    state = (clean.log_end_offset, [tuple(s)[:4] for s in clean.segments], clean.max_timestamp())
    clean.close()
    unclean = PartitionLog(tmp_path / "p", small_config)
    assert unclean.recovery_report.scanned_segments == len(state[1])
    assert (unclean.log_end_offset, [tuple(s)[:4] for s in unclean.segments], unclean.max_timestamp()) == state
    assert unclean.append(make_batch(), now_ms=0).base_offset == 80
    unclean.close()


def test_closed_log_refuses_appends(open_log):
    log = open_log()
    log.close()
    with pytest.raises(StorageError):
        log.append(make_batch(), now_ms=0)
    assert "closed" in repr(log)


def test_repr_shows_state(open_log):
    log = open_log()
    log.append(make_batch(records=3), now_ms=0)
    text = repr(log)
    assert "offsets=[0, 3)" in text and "segments=1" in text


def test_iter_batches_over_whole_read(open_log):
    log = open_log()
    for _ in range(5):
        log.append(make_batch(records=2), now_ms=0)
    assert len(list(iter_batches(log.read(0, 1 << 20).records))) == 5


def test_append_accepts_a_memoryview_slice_and_a_prevalidated_header(open_log):
    from logbroker.records import validate_produced_batch

    log = open_log()
    batch = make_batch(records=4)
    frame = bytearray(b"junk" + batch + b"tail")
    view = memoryview(bytes(frame))[4 : 4 + len(batch)]
    assert log.append(view, now_ms=0).last_offset == 3
    header = validate_produced_batch(batch)
    assert log.append(batch, now_ms=0, header=header).base_offset == 4
    assert batch_spans(log.read(0, 1 << 20).records) == [(0, 3), (4, 7)]
    log.update_config(LogConfig(max_message_bytes=10))
    with pytest.raises(BatchTooLargeError):
        log.append(batch, now_ms=0, header=header)
    assert log.log_end_offset == 8


def test_read_after_close_raises(open_log):
    log = open_log()
    log.append(make_batch(), now_ms=0)
    log.close()
    with pytest.raises(StorageError):
        log.read(0, 100)


def test_batches_without_timestamps_append_and_recover(tmp_path):
    """Timestamps of -1 (NO_TIMESTAMP) or below are legal; they get no time-index entry."""
    from logbroker.records import build_batch

    config = LogConfig(segment_bytes=8192, index_interval_bytes=64)
    plog = PartitionLog(tmp_path / "p", config)
    for i in range(50):
        plog.append(build_batch([(b"k", b"v" * 50, (), -1 - i)]), 1_000)
    assert plog.log_end_offset == 50
    assert plog.max_timestamp() is None or plog.max_timestamp()[0] < 0
    plog.close()
    again = PartitionLog(tmp_path / "p", config)  # unclean: rescans and rebuilds the indexes
    assert again.log_end_offset == 50
    assert again.read(25, 1).records
    again.close()
