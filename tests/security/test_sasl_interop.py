"""SASL (PLAIN, SCRAM-SHA-256/512) and TLS listeners with real clients."""

import shutil
import subprocess

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from logbroker.broker.security import UserStore


def _secured(broker_factory, tmp_path, protocol, extra=()):
    data = tmp_path / "data"
    UserStore(data).add("alice", "s3cret")
    config = tmp_path / "broker.toml"
    lines = [f'security_protocol = "{protocol}"']
    lines += list(extra)
    config.write_text("\n".join(lines) + "\n")
    return broker_factory("--config", str(config), data_dir=data)


def _refused_send(bootstrap, **security) -> None:
    """A send that must fail; kafka-python >= 3 would retry its bootstrap for 30 s first."""
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
        security.setdefault("bootstrap_timeout_ms", 3000)
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=3000, **security).send("t", b"x").get(timeout=5)


def _round_trip(bootstrap, **security):
    producer = KafkaProducer(bootstrap_servers=bootstrap, **security)
    producer.send("secret-topic", b"classified").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000, **security)
    consumer.assign([TopicPartition("secret-topic", 0)])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    return values


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_sasl_plaintext(broker_factory, tmp_path, mechanism):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    good = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_plain_username="alice", sasl_plain_password="s3cret")
    assert _round_trip(broker.bootstrap, **good) == [b"classified"]
    _refused_send(broker.bootstrap, **dict(good, sasl_plain_password="wrong"))


def test_unauthenticated_clients_get_nothing(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    _refused_send(broker.bootstrap)
    assert "before SASL authentication" in broker.log


def test_confluent_kafka_scram(broker_factory, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    conf = {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "s3cret"}
    producer = Producer(conf)
    producer.produce("ck-secret", b"v")
    assert producer.flush(15) == 0
    wrong = AdminClient(dict(conf, **{"sasl.password": "nope"}))
    metadata_failed = False
    try:
        wrong.list_topics(timeout=5)
    except Exception:
        metadata_failed = True
    assert metadata_failed


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_sasl_ssl_listener(broker_factory, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    broker = _secured(broker_factory, tmp_path, "SASL_SSL",
                      [f'ssl_certfile = "{cert}"', f'ssl_keyfile = "{key}"'])
    security = dict(security_protocol="SASL_SSL", ssl_cafile=str(cert), sasl_mechanism="SCRAM-SHA-512",
                    sasl_plain_username="alice", sasl_plain_password="s3cret")
    assert _round_trip(broker.bootstrap, **security) == [b"classified"]

    # confluent-kafka (librdkafka) over the same listener: right password, then wrong.
    from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition

    conf = {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_SSL", "ssl.ca.location": str(cert),
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "s3cret"}
    producer = Producer(conf)
    producer.produce("secret-topic", b"via librdkafka")
    assert producer.flush(15) == 0
    consumer = Consumer({**conf, "group.id": "ssl-readers", "enable.auto.commit": False})
    consumer.assign([CkTopicPartition("secret-topic", 0, 0)])
    values = [m.value() for m in consumer.consume(10, timeout=10) if m.error() is None]
    consumer.close()
    assert values == [b"classified", b"via librdkafka"]
    errors = []
    wrong = Producer({**conf, "sasl.password": "nope", "message.timeout.ms": 3000,
                      "error_cb": lambda err: errors.append(err)})
    reports = []
    wrong.produce("secret-topic", b"x", on_delivery=lambda err, msg: reports.append(err))
    wrong.flush(10)
    assert len(reports) == 1 and reports[0] is not None  # never delivered
    assert any("auth" in str(e).lower() for e in errors), errors


def test_acls_hold(broker_factory, tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    from logbroker.broker.security import Acl, Authorizer

    data = tmp_path / "data"
    UserStore(data).add("mallory", "m-pw")  # alice (password s3cret) is added by _secured
    authorizer = Authorizer(data)
    authorizer.add(Acl("User:alice", "cluster", "kafka-cluster", "create"))
    authorizer.add(Acl("User:alice", "topic", "payroll", "all"))
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT", ["authorizer_enable = true"])

    def login(user, pw):
        return dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                    sasl_plain_username=user, sasl_plain_password=pw)

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, **login("alice", "s3cret"))
    admin.create_topics([NewTopic("payroll", 1, 1)])
    admin.close()
    assert _round_trip_topic(broker.bootstrap, "payroll", **login("alice", "s3cret")) == [b"salary"]
    # mallory can log in but cannot write, read or even see the topic.
    mallory = login("mallory", "m-pw")
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=3000, **mallory).send(
            "payroll", b"raise").get(timeout=5)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, **mallory)
    assert "payroll" not in consumer.topics()
    consumer.close()


def _round_trip_topic(bootstrap, topic, **security):
    producer = KafkaProducer(bootstrap_servers=bootstrap, **security)
    producer.send(topic, b"salary").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000, **security)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    return values
