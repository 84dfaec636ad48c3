"""Creating and deleting topics whatever happens on the way: the longest names,
failures half way, crashes between the steps, no descriptors to spare, and
the permission bits of what the manager creates."""

import errno
import logging
import os
import resource
import stat

import pytest

from logbroker.errors import InvalidConfigError, StorageError
from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage import manager as manager_module
from logbroker.storage.files import delete_dir_name, parse_delete_dir_name
from logbroker.storage.manager import DESCRIPTOR_HEADROOM, DESCRIPTORS_PER_PARTITION, spare_descriptors

from .conftest import make_batch


def _entries(path) -> list[str]:
    return sorted(e for e in os.listdir(path) if not e.startswith("."))


@pytest.mark.parametrize("length", [212, 213, 230, 249])
def test_every_legal_name_can_be_deleted_for_good(tmp_path, length):
    name = "q" * length
    with LogManager(tmp_path) as m:
        m.create_topic(name, 12)
        m.create_topic("other", 1)
        m.get_partition(name, 11).append(make_batch(records=2), now_ms=0)
        m.delete_topic(name)
        assert not m.has_topic(name)
        assert [e for e in _entries(tmp_path) if e.startswith("q")] == []
        m.create_topic(name, 1)  # the name is free again
        m.delete_topic(name)
    with LogManager(tmp_path) as m:
        assert set(m.topics()) == {"other"}


def test_delete_dir_name_fits_the_file_system_and_keeps_the_id():
    import uuid

    topic_id = uuid.uuid4()
    for topic, partition in [("a" * 249, 99_999), ("a" * 249, 0), ("short", 7)]:
        name = delete_dir_name(topic, partition, topic_id)
        assert len(name.encode()) <= 255 and name.endswith("-delete")
        assert parse_delete_dir_name(name) == (partition, topic_id)
    assert delete_dir_name("short", 7, topic_id) == f"short-7.{topic_id.hex}-delete"  # Kafka's layout


def test_a_failed_rename_leaves_the_topic_whole_and_deletable(tmp_path, monkeypatch):
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_rename(src, dst)

    with LogManager(tmp_path) as m:
        m.create_topic("doomed", 3)
        m.get_partition("doomed", 0).append(make_batch(records=2), now_ms=0)
        monkeypatch.setattr(manager_module.os, "rename", flaky_rename)
        with pytest.raises(StorageError, match="cannot delete topic 'doomed'"):
            m.delete_topic("doomed")
        monkeypatch.setattr(manager_module.os, "rename", real_rename)
        assert m.has_topic("doomed")
        assert sorted(e for e in _entries(tmp_path) if e.startswith("doomed")) == ["doomed-0", "doomed-1", "doomed-2"]
        log = m.get_partition("doomed", 0)  # reopened: still readable and writable
        assert log.log_end_offset == 2
        log.append(make_batch(records=1), now_ms=0)
        m.delete_topic("doomed")  # the retry works (it raised KeyError before)
        assert not m.has_topic("doomed")
    with LogManager(tmp_path) as m:
        assert m.topics() == {}


def test_a_deletion_cut_short_by_a_crash_is_finished_at_open(tmp_path):
    with LogManager(tmp_path) as m:
        info = m.create_topic("gone", 3)
        m.create_topic("kept", 2)
        m.get_partition("kept", 1).append(make_batch(records=4), now_ms=0)
    # The crash came after renaming partition 1 and before topics.json was written.
    os.rename(tmp_path / "gone-1", tmp_path / delete_dir_name("gone", 1, info.topic_id))
    with LogManager(tmp_path) as m:
        assert set(m.topics()) == {"kept"}
        assert m.get_partition("kept", 1).log_end_offset == 4
    assert [e for e in _entries(tmp_path) if e.startswith("gone")] == []
    with LogManager(tmp_path) as m:  # and it stays gone
        assert set(m.topics()) == {"kept"}


def test_leftover_delete_directories_are_removed_at_open(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("live", 1)
    for leftover in (delete_dir_name("old", 0), "old-1.0123456789abcdef0123456789abcdef.deleted"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "00000000000000000000.log").write_bytes(b"x" * 100)
    with LogManager(tmp_path) as m:
        assert set(m.topics()) == {"live"}
        assert len(m.recovery_report.removed) == 2
    assert [e for e in _entries(tmp_path) if "old" in e] == []


def test_a_creation_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    real_open = LogManager._open_partition

    def failing_open(self, topic, n, *args):
        if topic.startswith("half") and n == 2:
            raise StorageError(f"cannot open partition directory {topic}-{n}: [Errno 24] Too many open files")
        return real_open(self, topic, n, *args)

    with LogManager(tmp_path) as m:
        m.create_topic("before", 1)
        monkeypatch.setattr(LogManager, "_open_partition", failing_open)
        with pytest.raises(StorageError, match="Too many open files"):
            m.create_topic("half", 4)
        assert not m.has_topic("half")
        assert [e for e in _entries(tmp_path) if e.startswith("half")] == []
        m.create_topic("half2", 2)
        with pytest.raises(StorageError):
            m.add_partitions("half2", 5)  # the same when growing a topic
        assert m.topic("half2").partitions == 2
        assert [e for e in _entries(tmp_path) if e.startswith("half2")] == ["half2-0", "half2-1"]
        monkeypatch.setattr(LogManager, "_open_partition", real_open)
    with LogManager(tmp_path) as m:
        assert set(m.topics()) == {"before", "half2"}


def test_partition_directories_of_no_topic_without_records_are_removed_once(tmp_path, caplog):
    with LogManager(tmp_path) as m:
        m.create_topic("real", 1)
    (tmp_path / "ghost-0").mkdir()  # mkdir done, then the crash
    with LogManager(tmp_path / "elsewhere") as other:  # a complete empty partition, moved in
        other.create_topic("ghost", 1)
    os.rename(tmp_path / "elsewhere" / "ghost-0", tmp_path / "ghost-1")
    (tmp_path / "real-5").mkdir()  # beyond the topic's partitions
    (tmp_path / "precious-0").mkdir()
    (tmp_path / "precious-0" / "00000000000000000000.log").write_bytes(b"data")
    with caplog.at_level(logging.INFO, logger="logbroker.storage"):
        with LogManager(tmp_path) as m:
            assert set(m.topics()) == {"real"}
    assert not (tmp_path / "ghost-0").exists() and not (tmp_path / "ghost-1").exists()
    assert not (tmp_path / "real-5").exists()
    assert (tmp_path / "precious-0" / "00000000000000000000.log").read_bytes() == b"data"
    removed = [r.getMessage() for r in caplog.records if "empty partition directories" in r.getMessage()]
    kept = [r.getMessage() for r in caplog.records if "hold records" in r.getMessage()]
    assert len(removed) == 1 and "removed 3 " in removed[0]
    assert len(kept) == 1 and "precious-0" in kept[0]


def test_a_crash_during_the_very_first_creation_does_not_block_the_next_start(tmp_path):
    with LogManager(tmp_path):
        pass  # a new directory gets an empty topics.json at once
    (tmp_path / "first-0").mkdir()  # the first creation got this far before the crash
    (tmp_path / "first-0" / "00000000000000000000.log").touch()
    with LogManager(tmp_path) as m:  # it refused to start before ("refusing to guess the topics")
        assert m.topics() == {}
    assert not (tmp_path / "first-0").exists()


def test_a_creation_the_descriptors_cannot_cover_is_refused_up_front(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with LogManager(tmp_path) as m:
        free, _ = spare_descriptors()
        used = soft - free
        fits = 10
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + DESCRIPTOR_HEADROOM + fits * DESCRIPTORS_PER_PARTITION, hard))
        try:
            with pytest.raises(StorageError, match="file descriptors") as refused:
                m.create_topic("wide", 40)
            assert "ulimit" in str(refused.value)
            assert not m.has_topic("wide") and not (tmp_path / "wide-0").exists()
            m.create_topic("narrow", fits - 2)
            with pytest.raises(StorageError, match="file descriptors"):
                m.add_partitions("narrow", 40)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert m.topic("narrow").partitions == fits - 2


def _modes(root) -> dict[str, int]:
    out = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("dir_mode, file_mode", [(None, None), (0o750, 0o640)])
def test_files_and_directories_get_the_private_or_configured_mode(tmp_path, umask_022, dir_mode, file_mode):
    log = LogConfig() if dir_mode is None else LogConfig(dir_mode=dir_mode, file_mode=file_mode)
    dir_mode, file_mode = log.dir_mode, log.file_mode
    data = tmp_path / "data"
    config = LogManagerConfig(log=log)
    with LogManager(data, config) as m:
        m.create_topic("t", 2)
        m.get_partition("t", 0).append(make_batch(records=3), now_ms=0)
        m.flush_dirty()
    with LogManager(data, config):
        pass
    modes = _modes(data)
    assert {"t-0", "t-0/00000000000000000000.log", "t-0/00000000000000000000.index", "topics.json",
            "recovery-point-offset-checkpoint", ".lock", "clean-shutdown"} <= set(modes)
    for path, mode in modes.items():
        is_dir = os.path.isdir(data / path)
        assert mode == (dir_mode if is_dir else file_mode), f"{path}: {mode:04o}"


def test_a_mode_must_leave_the_owner_read_and_write(tmp_path):
    with pytest.raises(InvalidConfigError, match="file_mode"):
        LogConfig(file_mode=0o400)
    with pytest.raises(InvalidConfigError, match="dir_mode"):
        LogConfig(dir_mode=0o600)
    with pytest.raises(InvalidConfigError, match="file_mode"):
        LogConfig(file_mode=0o1600)
    # topics inherit the modes under their own overrides
    base = LogConfig(file_mode=0o640)
    assert LogConfig.from_topic_configs({"retention.ms": "5"}, base).file_mode == 0o640


def test_one_failing_partition_does_not_stop_the_periodic_flush_of_others(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("bad", 1)
        m.create_topic("good", 1)
        bad, good = m.get_partition("bad", 0), m.get_partition("good", 0)
        bad.append(make_batch(), now_ms=0)
        good.append(make_batch(), now_ms=0)

        def broken(*_args, **_kwargs):
            raise StorageError("fsync failed in bad-0: Input/output error")

        bad.flush = broken
        with pytest.raises(StorageError, match="bad-0"):
            m.flush_dirty()
        assert good.recovery_point == 1 and not good.dirty
        del bad.flush
