"""The data directory is the broker's: its identity (meta.properties) is
checked at every start, and what the broker writes there is private."""

import os
import stat

import pytest

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.groups import OffsetsTopic
from logbroker.broker.security import Acl
from logbroker.errors import InvalidConfigError, StorageError
from logbroker.records import build_batch

from brokerproc import BrokerProcess


# -- identity ------------------------------------------------------------------------------------

def _open_close(data, **settings) -> str:
    broker = Broker(BrokerConfig(data_dir=str(data), **settings))
    cluster_id = broker.cluster_id
    broker.close()
    return cluster_id


def test_the_identity_is_written_once_and_kept(tmp_path):
    first = _open_close(tmp_path, node_id=3)
    text = (tmp_path / "meta.properties").read_text()
    assert text == f"version=1\ncluster.id={first}\nnode.id=3\n"
    assert _open_close(tmp_path, node_id=3) == first
    assert _open_close(tmp_path, node_id=3, cluster_id=first) == first
    assert (tmp_path / "meta.properties").read_text() == text


@pytest.mark.parametrize("garbage, why", [
    (b"\x00\xff\xfe garbage", "not text"),
    (b"", "no version"),
    (b"hello world\n", "not key=value"),
    (b"version=1\nnode.id=0\n", "no cluster.id"),
    (b"version=1\ncluster.id=abc\nnode.id=zero\n", "not a number"),
    (b"version=7\ncluster.id=abc\nnode.id=0\n", "version"),
    (b"version=1\ncluster.id=\nnode.id=0\n", "not a cluster id"),
])
def test_a_damaged_meta_properties_is_never_rewritten(tmp_path, garbage, why):
    _open_close(tmp_path)
    (tmp_path / "meta.properties").write_bytes(garbage)
    with pytest.raises(StorageError, match=why) as refused:
        Broker(BrokerConfig(data_dir=str(tmp_path)))
    assert "Restore it from a backup" in str(refused.value)
    assert (tmp_path / "meta.properties").read_bytes() == garbage  # it was replaced with a new cluster id before


def test_another_node_or_cluster_id_is_refused(tmp_path):
    cluster_id = _open_close(tmp_path, node_id=1)
    with pytest.raises(InvalidConfigError, match="node.id 2 does not match node id 1 stored in .*set node.id = 1"):
        Broker(BrokerConfig(data_dir=str(tmp_path), node_id=2))
    with pytest.raises(InvalidConfigError, match=f"cluster.id 'other' does not match cluster id '{cluster_id}'"):
        Broker(BrokerConfig(data_dir=str(tmp_path), node_id=1, cluster_id="other"))
    assert _open_close(tmp_path, node_id=1) == cluster_id


def _one_line_refusal(log: str) -> str:
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, log
    return errors[0]


def test_serve_refuses_a_damaged_meta_properties_in_one_line(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    proc.stop()
    meta = tmp_path / "data" / "meta.properties"
    meta.write_bytes(b"\x89PNG garbage\x00")
    rc, log = proc.start_expecting_failure()
    assert rc != 0
    line = _one_line_refusal(log)
    assert str(meta) in line and "damaged" in line and "Restore it from a backup" in line
    assert meta.read_bytes() == b"\x89PNG garbage\x00"


def test_serve_refuses_another_node_id_in_one_line(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    proc.stop()
    config = tmp_path / "broker.toml"
    config.write_text("node.id = 2\n")
    rc, log = BrokerProcess(tmp_path / "data", "--config", str(config)).start_expecting_failure()
    assert rc != 0
    line = _one_line_refusal(log)
    assert "node.id 2 does not match node id 0 stored in" in line and "set node.id = 0" in line


# -- modes ---------------------------------------------------------------------------------------

@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _fill(data, **settings) -> None:
    """A broker that writes every kind of file it has: segments and indexes,
    checkpoints, topics.json, meta.properties, producer-id-block, a producer
    snapshot, an internal topic, users.json and acls.json."""
    broker = Broker(BrokerConfig(data_dir=str(data), authorizer_enable=True, **settings))
    try:
        broker.create_topic("t", 2)
        pid = broker.allocate_producer_id()
        batch = build_batch([(b"k", b"v")], producer_id=pid, producer_epoch=0, base_sequence=0)
        broker.append("t", 0, batch)
        OffsetsTopic(broker.log_manager).append([(b"key", b"value")], 0)
        broker.users.add("alice", "secret", iterations=4096)
        broker.authorizer.add(Acl("User:alice", "topic", "t", "read"))
    finally:
        broker.close()


@pytest.mark.parametrize("settings, dir_mode, file_mode", [
    ({}, 0o700, 0o600),
    ({"data_dir_mode": "0750", "data_file_mode": "0640"}, 0o750, 0o640),
])
def test_everything_the_broker_writes_gets_the_mode(tmp_path, umask_022, settings, dir_mode, file_mode):
    data = tmp_path / "data"
    _fill(data, **settings)
    seen = {}
    for directory, dirs, files in os.walk(data):
        for name in dirs + files:
            path = os.path.join(directory, name)
            seen[os.path.relpath(path, data)] = stat.S_IMODE(os.stat(path).st_mode)
    expected = {"meta.properties", "producer-id-block", "topics.json", "users.json", "acls.json",
                "recovery-point-offset-checkpoint", "clean-shutdown", "t-0/00000000000000000000.log",
                "t-0/00000000000000000000.timeindex", "t-0/producer-state.json", "__consumer_offsets-0"}
    assert expected <= set(seen), sorted(seen)
    assert stat.S_IMODE(os.stat(data).st_mode) == dir_mode
    wrong = {p: f"{m:04o}" for p, m in seen.items() if m != (dir_mode if os.path.isdir(data / p) else file_mode)}
    assert wrong == {}
