"""LogManager.partition_figures: the figures of partitions not opened since the
start come from their directories, equal to what their logs report once
opened, and reading them opens nothing."""

from __future__ import annotations

import logging
import os
import shutil

from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage.checkpoints import LOG_START_OFFSET_CHECKPOINT
from logbroker.storage.files import partition_dir_name

from .conftest import make_batch

# Small segments: most partitions get several, and DeleteRecords removes some.
CONFIG = LogManagerConfig(flush="never", log=LogConfig(segment_bytes=400, index_interval_bytes=100))


def _fill(manager: LogManager) -> None:
    """Partitions of every shape: empty, one segment, several, log start moved
    past deleted segments, log start inside the active segment."""
    manager.create_topic("a", 6)
    manager.create_topic("b", 3, {"segment.bytes": "100000"})
    for p in range(1, 6):
        log = manager.get_partition("a", p)
        for i in range(p * 4):
            log.append(make_batch(1 + i % 3, value_size=10 + p), 1_000 + i)
    for p in range(3):
        manager.get_partition("b", p).append(make_batch(p + 1), 1_000)
    manager.get_partition("a", 4).delete_records_before(9)  # past whole segments
    manager.get_partition("b", 2).delete_records_before(2)  # inside the only segment
    assert len(manager.get_partition("a", 5).segments) > 2


def _open_all(manager: LogManager) -> None:
    for name, info in manager.topics().items():
        for p in range(info.partitions):
            manager.get_partition(name, p)


def test_unopened_partitions_report_what_their_logs_report_after_a_clean_restart(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, CONFIG) as manager:
        _fill(manager)
        before = manager.partition_figures()
    assert [(r.topic, r.partition) for r in before] == [("a", p) for p in range(6)] + [("b", p) for p in range(3)]
    assert before[4].log_start_offset == 9 and before[4].size_bytes > 0
    assert before[0].size_bytes == 0 and before[0].log_end_offset == 0

    with LogManager(data, CONFIG) as manager:
        assert manager.open_partitions == 0
        assert manager.partition_figures() == before
        assert manager.partition_figures() == before  # kept from the first listing
        assert manager.open_partitions == 0
        manager.get_partition("a", 3).append(make_batch(2), 5_000)  # opens it: read from its log now
        after = manager.partition_figures()
        assert after[3].log_end_offset == before[3].log_end_offset + 2
        assert after[3].size_bytes > before[3].size_bytes
        assert manager.open_partitions == 1
        _open_all(manager)
        assert manager.partition_figures() == after


def test_after_a_crash_partitions_unchanged_since_their_fsync_stay_unopened(tmp_path):
    data = tmp_path / "data"
    manager = LogManager(data, CONFIG)
    _fill(manager)
    manager.flush_dirty()
    for p in (1, 5):  # written after the last fsync: recovered at open
        manager.get_partition("a", p).append(make_batch(3), 9_000)
    before = manager.partition_figures()
    manager._release()  # noqa: SLF001 - a crash: the kernel releases the lock, nothing is closed
    with LogManager(data, CONFIG) as again:
        assert not again.recovery_report.clean_shutdown and again.open_partitions == 2
        assert again.partition_figures() == before  # the page cache kept the unflushed batches
        assert again.open_partitions == 2
        _open_all(again)
        assert again.partition_figures() == before


def test_a_last_segment_cut_while_stopped_is_read_from_its_log(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, CONFIG) as manager:
        _fill(manager)
        before = manager.partition_figures()
    # What 'logbroker repair' does to a torn tail: the file ends before the recovery point.
    last = sorted((data / partition_dir_name("b", 1)).glob("*.log"))[-1]
    os.truncate(last, last.stat().st_size - 1)
    with LogManager(data, CONFIG) as manager:
        figures = manager.partition_figures()
        assert manager.open_partitions == 1  # that one only: its end is known from its batches alone
        cut = figures[7]
        assert (cut.topic, cut.partition, cut.log_end_offset, cut.size_bytes) == ("b", 1, 0, 0)
        assert figures[:7] + figures[8:] == before[:7] + before[8:]
        _open_all(manager)
        assert manager.partition_figures() == figures


def test_deleted_topics_leave_and_unreadable_directories_are_left_out_in_one_line(tmp_path, caplog):
    data = tmp_path / "data"
    with LogManager(data, CONFIG) as manager:
        _fill(manager)
    with LogManager(data, CONFIG) as manager:
        assert {r.topic for r in manager.partition_figures()} == {"a", "b"}
        manager.delete_topic("b")
        manager.create_topic("b", 1)  # a new topic of that name starts empty
        assert [r for r in manager.partition_figures() if r.topic == "b"] == [("b", 0, 0, 0, 0, 0)]
        manager.delete_topic("b")
        manager.create_topic("b", 4)
        manager.get_partition("b", 3).append(make_batch(), 1_000)
    for p in (0, 1):
        shutil.rmtree(data / partition_dir_name("a", p))
    with LogManager(data, CONFIG) as manager, caplog.at_level(logging.WARNING, logger="logbroker.storage"):
        figures = manager.partition_figures()
        assert [(r.topic, r.partition) for r in figures] == [("a", p) for p in range(2, 6)] + [
            ("b", p) for p in range(4)]
        assert figures[-1].log_end_offset == 1
        warnings = [r.getMessage() for r in caplog.records if "cannot read the files" in r.getMessage()]
        assert len(warnings) == 1 and "of 2 unopened partitions: a-0 (" in warnings[0]
        assert manager.open_partitions == 0


def test_a_lost_log_start_checkpoint_falls_back_to_the_first_segment_as_the_log_does(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, CONFIG) as manager:
        _fill(manager)
    (data / LOG_START_OFFSET_CHECKPOINT).unlink()
    with LogManager(data, CONFIG) as manager:
        figures = manager.partition_figures()
        first_base = int(min((data / partition_dir_name("a", 4)).glob("*.log")).name[:20])
        assert 0 < figures[4].log_start_offset == first_base <= 9
        assert manager.open_partitions == 0
        _open_all(manager)
        assert manager.partition_figures() == figures
