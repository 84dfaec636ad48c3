import json
import subprocess
import sys
import uuid

import pytest

from logbroker.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    LogDirLockedError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage.checkpoints import read_checkpoint

from .conftest import make_batch

SMALL = LogManagerConfig(log=LogConfig(segment_bytes=2000, index_interval_bytes=200))


def test_create_list_get_and_persist(tmp_path):
    with LogManager(tmp_path, SMALL, now_ms=0) as m:
        info = m.create_topic("orders", 3, {"retention.ms": "1000", "compression.type": "lz4"})
        assert isinstance(info.topic_id, uuid.UUID) and info.partitions == 3
        assert set(m.topics()) == {"orders"}
        assert m.log_config("orders").retention_ms == 1000
        assert m.log_config("orders").segment_bytes == 2000  # manager default under the override
        log = m.get_partition("orders", 2)
        assert log.directory == tmp_path / "orders-2"
        log.append(make_batch(records=3), now_ms=0)
        with pytest.raises(TopicExistsError):
            m.create_topic("orders", 1)
        with pytest.raises(UnknownTopicError):
            m.get_partition("orders", 3)
        with pytest.raises(UnknownTopicError):
            m.get_partition("nope", 0)
    assert (tmp_path / "clean-shutdown").exists()
    with LogManager(tmp_path, SMALL, now_ms=0) as m:
        assert not (tmp_path / "clean-shutdown").exists()
        assert m.recovery_report.clean_shutdown
        again = m.topics()["orders"]
        assert again == info
        assert m.get_partition("orders", 2).log_end_offset == 3


def test_topic_name_and_partition_rules(tmp_path):
    with LogManager(tmp_path) as m:
        for bad in ["", ".", "..", "a b", "x" * 250, "é", "a/b"]:
            with pytest.raises(InvalidTopicError):
                m.create_topic(bad, 1)
        m.create_topic("ok._-Name9", 1)
        m.create_topic("x" * 249, 1)
        with pytest.raises(InvalidPartitionsError):
            m.create_topic("zero", 0)
        with pytest.raises(InvalidConfigError):
            m.create_topic("badcfg", 1, {"segment.bytes": "nope"})
        with pytest.raises(InvalidConfigError):
            m.create_topic("badcfg", 1, {"unknown.thing": "1"})
        assert "zero" not in m.topics() and "badcfg" not in m.topics()


def test_add_partitions_and_alter_configs(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("t", 1, {"retention.ms": "5"})
        with pytest.raises(InvalidPartitionsError):
            m.add_partitions("t", 1)
        assert m.add_partitions("t", 4).partitions == 4
        m.get_partition("t", 3).append(make_batch(), now_ms=0)
        altered = m.alter_topic_configs("t", {"segment.ms": "100", "cleanup.policy": "compact"})
        assert altered.configs == {"segment.ms": "100", "cleanup.policy": "compact"}
        assert m.get_partition("t", 0).config.segment_ms == 100
        assert m.get_partition("t", 0).config.retention_ms == LogConfig().retention_ms
        with pytest.raises(InvalidConfigError):
            m.alter_topic_configs("t", {"segment.ms": "0"})
        assert m.topics()["t"].configs == altered.configs
    with LogManager(tmp_path) as m:
        assert m.topics()["t"].partitions == 4 and m.log_config("t").cleanup_policy == "compact"
        assert m.get_partition("t", 3).log_end_offset == 1


def test_delete_topic_removes_data(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("gone", 2)
        m.get_partition("gone", 0).append(make_batch(), now_ms=0)
        m.delete_topic("gone")
        assert m.topics() == {}
        assert not (tmp_path / "gone-0").exists()
        with pytest.raises(UnknownTopicError):
            m.delete_topic("gone")
        m.create_topic("gone", 1)
        assert m.get_partition("gone", 0).log_end_offset == 0


def test_leftovers_and_stale_dirs_are_cleaned(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("a", 1)
    (tmp_path / "a-0.abc.deleted").mkdir()
    (tmp_path / "b-0").mkdir()
    (tmp_path / "b-0" / f"{0:020d}.log").write_bytes(make_batch())
    with LogManager(tmp_path) as m:
        assert "a-0.abc.deleted" in m.recovery_report.removed
        assert (tmp_path / "b-0").exists()  # unknown: left alone
        m.create_topic("b", 1)  # a stale directory must not be adopted
        assert m.get_partition("b", 0).log_end_offset == 0


def test_missing_or_corrupt_topics_file_refuses_to_guess(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("a", 1)
    (tmp_path / "topics.json").write_text("{not json")
    with pytest.raises(StorageError):
        LogManager(tmp_path)
    (tmp_path / "topics.json").unlink()
    with pytest.raises(StorageError):
        LogManager(tmp_path)


def test_lock_file_refuses_a_second_opener(tmp_path):
    m = LogManager(tmp_path)
    with pytest.raises(LogDirLockedError, match="in use by another process"):
        LogManager(tmp_path)
    code = (
        "import sys\nfrom logbroker.storage import LogManager\nfrom logbroker.errors import LogDirLockedError\n"
        "try:\n    LogManager(sys.argv[1])\nexcept LogDirLockedError as e:\n    print('LOCKED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LOCKED") and "pid" in out.stdout
    m.close()
    LogManager(tmp_path).close()


def test_checkpoints_and_flush_dirty(tmp_path):
    m = LogManager(tmp_path, SMALL)
    m.create_topic("t", 2)
    log = m.get_partition("t", 0)
    for _ in range(10):
        log.append(make_batch(records=2, value_size=300), now_ms=0)
    assert log.dirty
    assert m.flush_dirty() == 1
    assert not log.dirty and log.recovery_point == 20
    assert read_checkpoint(tmp_path / "recovery-point-offset-checkpoint") == {("t", 0): 20, ("t", 1): 0}
    text = (tmp_path / "recovery-point-offset-checkpoint").read_text()
    assert text.splitlines()[:2] == ["0", "2"] and "t 0 20" in text
    log.delete_records_before(7)  # persisted at once
    assert read_checkpoint(tmp_path / "log-start-offset-checkpoint")[("t", 0)] == 7
    log.append(make_batch(), now_ms=0)
    # unclean: no close; release the lock the hard way by closing the lock fd
    m._release()
    again = LogManager(tmp_path, SMALL)
    assert not again.recovery_report.clean_shutdown
    log = again.get_partition("t", 0)
    assert log.log_start_offset == 7 and log.log_end_offset == 21
    again.close()


def test_apply_retention_across_partitions(tmp_path):
    with LogManager(tmp_path, SMALL) as m:
        m.create_topic("t", 2, {"retention.ms": "100"})
        for p in range(2):
            for i in range(20):
                m.get_partition("t", p).append(make_batch(value_size=300, timestamp=i), now_ms=0)
        segments = sum(len(m.get_partition("t", p).segments) for p in range(2))
        assert m.apply_retention(now_ms=10_000) == segments - 2


def test_topics_file_is_json_with_ids(tmp_path):
    with LogManager(tmp_path) as m:
        info = m.create_topic("t", 2, {"retention.ms": "5"})
    doc = json.loads((tmp_path / "topics.json").read_text())
    assert doc == {
        "version": 1,
        "topics": [{"name": "t", "topic_id": str(info.topic_id), "partitions": 2, "configs": {"retention.ms": "5"}}],
    }


def test_repr(tmp_path):
    with LogManager(tmp_path) as m:
        m.create_topic("t", 2)
        assert "partitions=2" in repr(m)
