"""Open files: maps keep no descriptor, and active segments write through a
budget of descriptors, so idle partitions hold no open file."""

from __future__ import annotations

import os
import threading

import pytest

from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage.descriptors import WRITE_DESCRIPTORS, WriteDescriptors

from .conftest import make_batch


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def _restore_budget():
    limit = WRITE_DESCRIPTORS.limit
    yield
    WRITE_DESCRIPTORS.set_limit(limit)


def test_a_partition_of_many_segments_holds_at_most_one_descriptor(open_log):
    before = _open_fds()
    log = open_log(LogConfig(segment_bytes=4096, index_interval_bytes=100))
    while len(log.segments) < 12:
        log.append(make_batch(records=5, value_size=100), now_ms=0)
    offset = 0
    while offset < log.log_end_offset:  # read every segment through its map
        result = log.read(offset, 1 << 20)
        assert len(result.records)
        offset = _next(result.records)
    assert log.offset_for_timestamp(0) is not None  # time indexes of every segment mapped too
    assert _open_fds() - before <= 1


def _next(records) -> int:
    from logbroker.records import iter_batches

    last = None
    for _, header in iter_batches(records):
        last = header
    return last.last_offset + 1


def test_idle_partitions_beyond_the_budget_hold_no_descriptor(tmp_path):
    before = _open_fds()
    config = LogManagerConfig(flush="never", max_open_files=20, log=LogConfig(segment_bytes=1 << 20))
    with LogManager(tmp_path / "data", config) as manager:
        manager.create_topic("many", 300, {})
        for p in range(300):
            manager.get_partition("many", p).append(make_batch(records=2), now_ms=0)
        assert WRITE_DESCRIPTORS.open_count() <= 20
        assert _open_fds() - before <= 20 + 2  # the budget, the lock file, slack
        # Every partition still takes appends (reopening its file) and serves reads.
        for p in range(0, 300, 7):
            plog = manager.get_partition("many", p)
            assert plog.append(make_batch(records=1), now_ms=0).base_offset == 2
            assert plog.log_end_offset == 3 and len(plog.read(0, 1 << 20).records)
        assert _open_fds() - before <= 20 + 2
    with LogManager(tmp_path / "data", config) as manager:  # and nothing was lost
        assert [manager.get_partition("many", p).log_end_offset for p in (0, 7, 8, 299)] == [3, 3, 2, 2]


def test_the_least_recently_used_descriptor_is_closed_first(tmp_path):
    cache = WriteDescriptors(limit=2)
    paths = []
    for name in "abc":
        path = tmp_path / name
        path.write_bytes(b"")
        paths.append(path)
    owners = [object(), object(), object()]
    with cache.use(owners[0], paths[0]) as fd_a:
        os.write(fd_a, b"a")
    with cache.use(owners[1], paths[1]):
        pass
    with cache.use(owners[0], paths[0]):  # a is now the most recent
        pass
    with cache.use(owners[2], paths[2]):
        pass
    assert cache.open_count() == 2 and cache.opened == 3
    with cache.use(owners[0], paths[0]):  # still open: no reopen
        pass
    assert cache.opened == 3
    with cache.use(owners[1], paths[1]) as fd_b:  # evicted before: reopened
        os.write(fd_b, b"b")
    assert cache.opened == 4
    for owner in owners:
        cache.release(owner)
    assert cache.open_count() == 0
    assert paths[0].read_bytes() == b"a" and paths[1].read_bytes() == b"b"


def test_a_descriptor_in_use_is_never_closed_by_another_thread(tmp_path):
    # Eviction waits for the lender's lock: writes from two threads over a budget
    # of one never land in a file other than their own.
    cache = WriteDescriptors(limit=1)
    paths = [tmp_path / "x", tmp_path / "y"]
    for path in paths:
        path.write_bytes(b"")
    owners = [object(), object()]

    def write(i: int) -> None:
        for n in range(300):
            with cache.use(owners[i], paths[i]) as fd:
                os.pwrite(fd, bytes([65 + i]), n)

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert paths[0].read_bytes() == b"A" * 300 and paths[1].read_bytes() == b"B" * 300
    for owner in owners:
        cache.release(owner)
