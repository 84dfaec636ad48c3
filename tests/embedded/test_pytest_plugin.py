"""The pytest plugin, run through pytester as a user's test suite would use it."""

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import time
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

SEEN = []

@pytest.mark.parametrize("i", range(20))
def test_isolated_topics(logbroker_broker, logbroker_topic, i):
    others = [t for t in logbroker_broker.topics() if not t.startswith("__")]
    assert others == [logbroker_topic], "a test sees only its own topic"
    SEEN.append(logbroker_broker.bootstrap_servers)
    assert len(set(SEEN)) == 1, "one broker for the whole session"

def test_kafka_python(logbroker_bootstrap, logbroker_topic):
    producer = KafkaProducer(bootstrap_servers=logbroker_bootstrap)
    producer.send(logbroker_topic, b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=logbroker_bootstrap, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(logbroker_topic, 0)])
    consumer.seek_to_beginning()
    assert [m.value for m in consumer] == [b"hello"]
    consumer.close()

@pytest.mark.logbroker_topic(partitions=3)
def test_confluent_group(logbroker_bootstrap, logbroker_topic):
    from confluent_kafka import Consumer, Producer
    producer = Producer({"bootstrap.servers": logbroker_bootstrap})
    for i in range(30):
        producer.produce(logbroker_topic, key=str(i).encode(), value=b"v%d" % i)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": logbroker_bootstrap, "group.id": "g-" + logbroker_topic,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([logbroker_topic])
    got = set()
    deadline = time.time() + 30
    while len(got) < 30 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.add(msg.value())
    consumer.close()
    assert got == {b"v%d" % i for i in range(30)}
'''


def test_fixtures_in_a_user_suite(pytester: pytest.Pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=22)


def test_keep_option_leaves_data(pytester: pytest.Pytester, tmp_path):
    pytester.makepyfile(test_one="def test_one(logbroker_topic):\n    assert logbroker_topic\n")
    data = tmp_path / "kept"
    result = pytester.runpytest_subprocess("--logbroker-data-dir", str(data), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (data / "topics.json").exists()


def test_broker_is_gone_after_the_session(pytester: pytest.Pytester):
    pytester.makepyfile(test_addr='''
import pathlib
def test_addr(logbroker_bootstrap, tmp_path_factory):
    pathlib.Path("addr.txt").write_text(logbroker_bootstrap)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    import socket
    host, port = (pytester.path / "addr.txt").read_text().split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


def test_the_schema_registry_example_of_the_testing_guide(pytester: pytest.Pytester):
    import pathlib
    import re

    guide = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    section = guide.split("## confluent-kafka with Avro and the schema registry", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    pytester.makepyfile(test_avro=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
