"""Checkpoint files written incrementally: a write reads only the partitions
noted as changed, rewrites only the files whose lines changed, and the files
always say what a full recomputation would (issue: the periodic flush of a
broker of 10,000 idle partitions cost a pass over all of them every second)."""

from __future__ import annotations

import pytest

from logbroker.errors import StorageError
from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage import checkpoints as checkpoints_module
from logbroker.storage.checkpoints import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    RECOVERY_POSITION_CHECKPOINT,
    Checkpoints,
    read_checkpoint,
    read_positions,
)

from .conftest import make_batch

SMALL = LogManagerConfig(log=LogConfig(segment_bytes=4096, index_interval_bytes=256, segment_index_bytes=4096))


def _expected(m: LogManager) -> tuple[dict, dict, dict]:
    """The three files' entries recomputed from every partition (all open)."""
    points, starts, positions = {}, {}, {}
    for tp, log in m.iter_partitions():
        points[tp] = log.recovery_point
        starts[tp] = log.log_start_offset
        if log.recovery_position is not None:
            positions[tp] = log.recovery_position
    return points, starts, positions


def _on_disk(data) -> tuple[dict, dict, dict]:
    return (read_checkpoint(data / RECOVERY_POINT_CHECKPOINT), read_checkpoint(data / LOG_START_OFFSET_CHECKPOINT),
            read_positions(data / RECOVERY_POSITION_CHECKPOINT))


def test_the_files_follow_every_kind_of_change(tmp_path):
    data = tmp_path / "data"
    m = LogManager(data, SMALL)
    m.create_topic("a", 3, {"retention.ms": "100"})
    m.create_topic("b", 2)
    m.checkpoint()
    assert _on_disk(data) == _expected(m)
    a0, b1 = m.get_partition("a", 0), m.get_partition("b", 1)
    for i in range(20):
        a0.append(make_batch(value_size=300, timestamp=i), now_ms=0)
    b1.append(make_batch(records=3), now_ms=0)
    m.flush_dirty()  # recovery points and positions move
    assert _on_disk(data) == _expected(m)
    b1.delete_records_before(2)  # persisted at once
    assert read_checkpoint(data / LOG_START_OFFSET_CHECKPOINT)[("b", 1)] == 2
    assert m.apply_retention(now_ms=10_000) > 0  # a0's log start moves
    m.checkpoint()
    assert _on_disk(data) == _expected(m)
    m.add_partitions("b", 4)
    m.checkpoint()
    assert ("b", 3) in read_checkpoint(data / RECOVERY_POINT_CHECKPOINT)
    m.delete_topic("a")
    assert _on_disk(data) == _expected(m)
    assert all(topic == "b" for topic, _ in read_checkpoint(data / RECOVERY_POINT_CHECKPOINT))
    b1.flush()  # outside flush_dirty: the log's fsync notes it
    b1.append(make_batch(), now_ms=0)
    b1.flush()
    m.checkpoint()
    assert _on_disk(data) == _expected(m)
    m.close()


def test_partitions_opened_at_first_use_keep_their_entries(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, SMALL) as m:
        m.create_topic("t", 4)
        m.get_partition("t", 1).append(make_batch(records=5), now_ms=0)
        m.get_partition("t", 2).delete_records_before(0)
    before = _on_disk(data)
    with LogManager(data, SMALL) as m:
        assert m.open_partitions == 0
        m.checkpoint()  # the first write compares every partition: nothing differs
        assert _on_disk(data) == before
        log = m.get_partition("t", 1)  # opened at first use
        log.append(make_batch(), now_ms=0)
        m.flush_dirty()
        assert read_checkpoint(data / RECOVERY_POINT_CHECKPOINT) == {("t", 0): 0, ("t", 1): 6, ("t", 2): 0, ("t", 3): 0}


def test_entries_the_files_hold_for_partitions_gone_go_at_the_first_write(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, SMALL) as m:
        m.create_topic("t", 1)
    # A checkpoint naming a partition of no topic (as a crash mid-deletion may leave).
    path = data / RECOVERY_POINT_CHECKPOINT
    path.write_text(path.read_text().replace("0\n1\n", "0\n2\ngone 0 5\n", 1))
    with LogManager(data, SMALL) as m:
        m.checkpoint()
        assert read_checkpoint(path) == {("t", 0): 0}


def test_a_write_reads_only_the_partitions_noted_and_rewrites_only_changed_files(tmp_path):
    cp = Checkpoints(tmp_path, 0o600)
    entries = {("t", p): (0, 0, None) for p in range(100)}
    asked: list = []

    def entry_of(tp):
        asked.append(tp)
        return entries.get(tp)

    cp.reset({}, {}, {})
    cp.write(entry_of, lambda: list(entries))
    assert len(asked) == 100  # after reset: every partition once
    asked.clear()
    cp.write(entry_of, lambda: list(entries))
    assert asked == []  # nothing noted: nothing read
    stamps = {name: (tmp_path / name).stat().st_ino for name in (RECOVERY_POINT_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT)}
    entries[("t", 7)] = (12, 0, (0, 500))
    cp.changed(("t", 7))
    cp.write(entry_of, lambda: list(entries))
    assert asked == [("t", 7)]
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)[("t", 7)] == 12
    assert read_positions(tmp_path / RECOVERY_POSITION_CHECKPOINT) == {("t", 7): (0, 500)}
    # The log-start file's lines did not change: it was not rewritten (same inode).
    assert (tmp_path / LOG_START_OFFSET_CHECKPOINT).stat().st_ino == stamps[LOG_START_OFFSET_CHECKPOINT]
    assert (tmp_path / RECOVERY_POINT_CHECKPOINT).stat().st_ino != stamps[RECOVERY_POINT_CHECKPOINT]
    # Lines keep the file's order (sorted) whatever order partitions change in.
    lines = (tmp_path / RECOVERY_POINT_CHECKPOINT).read_text().splitlines()
    assert lines[:3] == ["0", "100", "t 0 0"] and lines[2 + 7] == "t 7 12"
    # A partition gone loses its lines.
    del entries[("t", 7)]
    cp.changed(("t", 7))
    cp.write(entry_of, lambda: list(entries))
    assert ("t", 7) not in read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)
    assert read_positions(tmp_path / RECOVERY_POSITION_CHECKPOINT) == {}


def test_a_failed_write_is_done_by_the_next_one(tmp_path, monkeypatch):
    cp = Checkpoints(tmp_path, 0o600)
    cp.reset({}, {}, {})
    entries = {("t", 0): (0, 0, None)}
    cp.write(entries.get, lambda: list(entries))
    real = checkpoints_module.write_atomically

    def failing(*args, **kwargs):
        raise StorageError("disk full")

    entries[("t", 0)] = (9, 0, (0, 90))
    cp.changed(("t", 0))
    monkeypatch.setattr(checkpoints_module, "write_atomically", failing)
    with pytest.raises(StorageError):
        cp.write(entries.get, lambda: list(entries))
    monkeypatch.setattr(checkpoints_module, "write_atomically", real)
    cp.write(entries.get, lambda: [])  # nothing noted since: the pending lines are written
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT) == {("t", 0): 9}
    assert read_positions(tmp_path / RECOVERY_POSITION_CHECKPOINT) == {("t", 0): (0, 90)}


def test_a_log_with_unflushed_data_is_read_again_by_the_next_write(tmp_path):
    """A flush announces itself before it moves the recovery point: a write
    that comes in between reads the old one, so a log still dirty stays noted."""
    data = tmp_path / "data"
    with LogManager(data, LogManagerConfig(flush="never")) as m:
        m.create_topic("t", 2)
        log = m.get_partition("t", 0)
        m.checkpoint()
        log.append(make_batch(), now_ms=0)
        # on_fsync runs after the log's fsync is noted and before its recovery point moves.
        m.on_fsync = lambda _seconds: m.checkpoint()
        log.flush()
        m.on_fsync = None
        assert read_checkpoint(data / RECOVERY_POINT_CHECKPOINT)[("t", 0)] == 0  # read mid-flush
        m.checkpoint()
        assert read_checkpoint(data / RECOVERY_POINT_CHECKPOINT)[("t", 0)] == 1
