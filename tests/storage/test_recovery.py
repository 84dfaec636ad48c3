import os

from logbroker.records import iter_batches
from logbroker.storage import LogConfig, PartitionLog

from .conftest import batch_spans, make_batch

CONFIG = LogConfig(segment_bytes=2000, index_interval_bytes=200)


def _fill(path, batches=30, config=CONFIG):
    log = PartitionLog(path, config)
    for i in range(batches):
        log.append(make_batch(records=2, value_size=100 + i, timestamp=i), now_ms=0)
    return log


def test_unclean_reopen_scans_from_recovery_point(tmp_path):
    log = _fill(tmp_path / "p")
    segments = log.segments
    log.flush()
    rp = log.recovery_point
    assert rp == log.log_end_offset
    # no close(): an unclean shutdown
    again = PartitionLog(tmp_path / "p", CONFIG, recovery_point=rp)
    assert again.recovery_report.scanned_segments == 1  # only the active one
    assert again.log_end_offset == 60 and len(again.segments) == len(segments)
    again.close()


def test_partial_tail_is_truncated(tmp_path):
    log = _fill(tmp_path / "p")
    last = log.segments[-1]
    end = log.log_end_offset
    with open(last.path, "ab") as f:
        f.write(make_batch()[:40])
    again = PartitionLog(tmp_path / "p", CONFIG)
    assert again.recovery_report.truncated_bytes == 40
    assert again.log_end_offset == end
    assert os.path.getsize(last.path) == last.size_bytes
    assert again.append(make_batch(), now_ms=0).base_offset == end
    again.close()


def test_corrupt_batch_mid_log_loses_that_batch_only(tmp_path):
    log = _fill(tmp_path / "p")
    segments = log.segments
    end = log.log_end_offset
    victim = segments[2]
    data = bytearray(victim.path.read_bytes())
    spans = batch_spans(data)
    positions = [p for p, _ in iter_batches(data)]
    data[positions[1] + 70] ^= 0x55  # inside the records: CRC now fails
    victim.path.write_bytes(bytes(data))
    again = PartitionLog(tmp_path / "p", CONFIG)
    report = again.recovery_report
    assert report.deleted_segments == ()
    assert report.truncated_bytes == positions[2] - positions[1]
    [lost] = report.lost
    assert (lost.first_offset, lost.next_offset) == (spans[1][0], spans[2][0])
    assert [s.base_offset for s in again.segments] == [s.base_offset for s in segments]
    assert again.log_end_offset == end
    served = [o for offset in range(end) if not spans[1][0] <= offset <= spans[1][1]
              for o in [batch_spans(again.read(offset, 1).records)[0]] if not o[0] <= offset <= o[1]]
    assert served == []  # every other offset is read from its own batch
    assert batch_spans(again.read(spans[1][0], 1).records)[0] == spans[2]  # the gap is skipped
    assert again.append(make_batch(), now_ms=0).base_offset == end
    again.close()


def test_corrupt_or_missing_index_is_rebuilt_after_clean_shutdown(tmp_path):
    log = _fill(tmp_path / "p")
    end = log.log_end_offset
    segments = log.segments
    log.close()
    index = segments[1].path.with_suffix(".index")
    expected = index.read_bytes()
    index.write_bytes(b"\xff" * len(expected))
    segments[2].path.with_suffix(".timeindex").unlink()
    again = PartitionLog(tmp_path / "p", CONFIG, recovery_point=end, clean_shutdown=True)
    assert set(again.recovery_report.rebuilt_indexes) == {segments[1].base_offset, segments[2].base_offset}
    assert index.read_bytes() == expected
    for offset in range(end):
        lo, hi = batch_spans(again.read(offset, 1).records)[0]
        assert lo <= offset <= hi
    again.close()


def test_orphan_index_files_are_removed(tmp_path):
    log = _fill(tmp_path / "p", batches=2)
    log.close()
    orphan = tmp_path / "p" / f"{999:020d}.index"
    orphan.write_bytes(b"\x00" * 8)
    again = PartitionLog(tmp_path / "p", CONFIG, recovery_point=4, clean_shutdown=True)
    assert not orphan.exists() and orphan.name in again.recovery_report.removed_files
    again.close()


def test_preallocated_active_index_after_crash(tmp_path):
    log = _fill(tmp_path / "p", config=LogConfig(index_interval_bytes=200))
    active_index = log.segments[-1].path.with_suffix(".index")
    assert active_index.stat().st_size > log.segments[-1].size_bytes // 200 * 8  # preallocated
    again = PartitionLog(tmp_path / "p", LogConfig(index_interval_bytes=200))
    assert again.log_end_offset == 60
    for offset in range(0, 60, 3):
        lo, hi = batch_spans(again.read(offset, 1).records)[0]
        assert lo <= offset <= hi
    again.close()
    assert active_index.stat().st_size % 8 == 0 and active_index.stat().st_size < 4096


def test_non_monotonic_offsets_stop_recovery(tmp_path):
    log = _fill(tmp_path / "p", batches=3, config=LogConfig())
    path = log.segments[0].path
    first = log.read(0, 1).records.tobytes()
    with open(path, "ab") as f:
        f.write(first)  # a valid batch whose offsets go backwards
    again = PartitionLog(tmp_path / "p", LogConfig())
    assert again.log_end_offset == 6 and again.recovery_report.truncated_bytes == len(first)
    again.close()
