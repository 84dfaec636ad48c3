"""The blocking facade: one trio loop in a thread, shared by many threads."""

from __future__ import annotations

import threading

import pytest

from logbroker.client import SyncAdmin, SyncConsumer, SyncProducer, TopicPartition
from logbroker.errors import ClientClosedError, KafkaTimeoutError, TopicAlreadyExistsError


def test_admin_producer_and_consumer_from_many_threads(lb, topic):
    with SyncAdmin(lb.bootstrap) as admin:
        admin.create_topic(topic, 3, timeout=10)
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topic(topic, 3, timeout=10)
        assert topic in admin.list_topics(timeout=10)

    deliveries = []
    lock = threading.Lock()
    with SyncProducer(lb.bootstrap, linger_ms=2) as producer:
        def work(worker: int) -> None:
            for i in range(200):
                d = producer.send(topic, f"{worker}-{i}", key=f"{worker}", timeout=10)
                with lock:
                    deliveries.append(d)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        producer.flush(timeout=10)
        metas = [d.result(timeout=10) for d in deliveries]
        assert all(d.done() for d in deliveries)
        bulk = producer.send_many(topic, [(b"bulk", b"%d" % i) for i in range(100)], timeout=10)
        assert len({d.result(timeout=10).offset for d in bulk}) == 100
    assert len({(m.partition, m.offset) for m in metas}) == 800
    with pytest.raises(ClientClosedError):
        producer.send(topic, b"closed")

    with SyncConsumer(lb.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, p) for p in range(3)])
        seen = []
        def read(n: int) -> None:
            while True:
                with lock:
                    if len(seen) >= n:
                        return
                batch = consumer.getmany(timeout=0.5)
                with lock:
                    seen.extend(batch)

        readers = [threading.Thread(target=read, args=(900,)) for _ in range(2)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(30)
        assert len({(r.partition, r.offset) for r in seen}) >= 900
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert sum(ends.values()) == 900
        replayed = list(consumer.replay(topic, start=0, timeout=10))
        assert len(replayed) == 900
        assert consumer.getmany(timeout=0.2) == []  # nothing assigned after the replay
        with pytest.raises(KafkaTimeoutError):
            consumer.getone(timeout=0.2)


def test_a_sync_consumer_in_a_group_commits(lb, topic):
    with SyncProducer(lb.bootstrap) as producer:
        for i in range(10):
            producer.send(topic, b"%d" % i, partition=0)
    with SyncConsumer(lb.bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=300) as consumer:
        consumer.subscribe([topic], timeout=10)
        assert consumer.wait_assignment(timeout=20) == {TopicPartition(topic, 0)}
        got = []
        for record in consumer:
            got.append(record.value)
            if len(got) == 10:
                break
        consumer.commit(timeout=10)
        assert consumer.committed((topic, 0), timeout=10) == 10
