"""Transactions with real clients against ``logbroker serve``.

confluent-kafka (librdkafka) is the reference: commits and aborts
interleaved, read_committed vs read_uncommitted, consume-transform-produce
with ``send_offsets_to_transaction``, fencing by a second producer, a
transaction aborted by its timeout, and a broker restart in the middle of a
transaction. kafka-python and aiokafka run their own transactional producers
and read_committed consumers against the same broker. What librdkafka
expects is in its tests 0103 (transactions), 0129 (aborted messages are
skipped), 0137 (a consumer stops at the last stable offset and resumes at
the commit) and 0061 (read_committed lag is measured from the LSO).
"""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from interop_support import create_topic, unique_topic, wait_until

ck = pytest.importorskip("confluent_kafka")

TXN_CONFIG = """
"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 500
"""


@pytest.fixture(scope="module")
def txn_broker(module_broker_factory, tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "broker.toml"
    config.write_text(TXN_CONFIG)
    return module_broker_factory("--config", str(config))


def ck_producer(bootstrap, transactional_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5}
    conf.update(extra)
    producer = ck.Producer(conf)
    producer.init_transactions(20)
    return producer


def ck_consumer(bootstrap, topic, isolation, partitions=(0,), group=None, **extra):
    conf = {
        "bootstrap.servers": bootstrap, "group.id": group or unique_topic("g"), "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": isolation, "fetch.wait.max.ms": 100,
    }
    conf.update(extra)
    consumer = ck.Consumer(conf)
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
    return consumer


def ck_drain(consumer, expected: int | None = None, idle: float = 1.5, timeout: float = 20.0):
    """Values polled until ``expected`` arrived (then ``idle`` s more) or nothing came for ``idle`` s."""
    got = []
    deadline = time.monotonic() + timeout
    quiet_until = time.monotonic() + idle
    while time.monotonic() < min(deadline, quiet_until):
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == ck.KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consumer error: {msg.error()}")
        got.append((msg.partition(), msg.offset(), msg.value()))
        if expected is None or len(got) < expected:
            quiet_until = time.monotonic() + idle
        elif len(got) == expected:
            quiet_until = time.monotonic() + 0.5
    return got


def test_commits_and_aborts_interleaved(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic = unique_topic("txn")
    create_topic(bootstrap, topic, partitions=2)
    producer = ck_producer(bootstrap, unique_topic("tx"))
    committed = []
    for i in range(6):
        producer.begin_transaction()
        values = [f"{i}-{j}".encode() for j in range(10)]
        for j, value in enumerate(values):
            producer.produce(topic, value=value, partition=j % 2)
        if i % 2:
            producer.flush(10)  # in the log before the abort (librdkafka purges what it has not sent)
            producer.abort_transaction(20)
        else:
            producer.commit_transaction(20)
            committed += values
    # A transaction left open: read_committed stops before it (librdkafka 0137).
    producer.begin_transaction()
    for j in range(4):
        producer.produce(topic, value=b"open-%d" % j, partition=j % 2)
    producer.flush(10)

    consumer = ck_consumer(bootstrap, topic, "read_committed", partitions=(0, 1))
    got = ck_drain(consumer, len(committed))
    assert sorted(v for _, _, v in got) == sorted(committed)
    for p in (0, 1):  # in order per partition
        values = [v for part, _, v in got if part == p]
        assert values == [v for k, v in enumerate(committed) if int(v.split(b"-")[1]) % 2 == p]
    # Lag under read_committed is measured from the last stable offset (librdkafka 0061).
    lso = consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=5)
    assert lso[1] > 0

    uncommitted = ck_consumer(bootstrap, topic, "read_uncommitted", partitions=(0, 1))
    everything = ck_drain(uncommitted, 64)
    assert len(everything) == 64  # every data record of every transaction, and no control record
    assert all(not v.startswith(b"\x00\x00") for _, _, v in everything)

    producer.commit_transaction(20)
    rest = ck_drain(consumer, 4)
    assert sorted(v for _, _, v in rest) == [b"open-0", b"open-1", b"open-2", b"open-3"]
    consumer.close()
    uncommitted.close()


def test_consume_transform_produce_commits_the_group_offsets(txn_broker):
    bootstrap = txn_broker.bootstrap
    source, sink, group = unique_topic("in"), unique_topic("out"), unique_topic("g")
    create_topic(bootstrap, source)
    create_topic(bootstrap, sink)
    plain = ck.Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        plain.produce(source, value=b"%d" % i)
    plain.flush(10)

    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    consumer.subscribe([source])
    producer = ck_producer(bootstrap, unique_topic("ctp"))
    done = 0
    deadline = time.monotonic() + 30
    while done < 30 and time.monotonic() < deadline:
        msgs = consumer.consume(10, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(sink, value=b"x" + m.value())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 20
        )
        producer.commit_transaction(20)
        done += len(msgs)
    assert done == 30
    committed = consumer.committed([ck.TopicPartition(source, 0)], timeout=10)
    assert committed[0].offset == 30  # the group's offset is at the input's end
    consumer.close()
    out = ck_consumer(bootstrap, sink, "read_committed")
    assert [v for _, _, v in ck_drain(out, 30)] == [b"x%d" % i for i in range(30)]
    out.close()


def test_a_second_producer_fences_the_first(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic, transactional_id = unique_topic("fence"), unique_topic("tx")
    create_topic(bootstrap, topic)
    first = ck_producer(bootstrap, transactional_id)
    first.begin_transaction()
    first.produce(topic, value=b"zombie")
    first.flush(10)
    second = ck_producer(bootstrap, transactional_id)  # aborts the first's transaction
    second.begin_transaction()
    second.produce(topic, value=b"fresh")
    second.commit_transaction(20)
    with pytest.raises(ck.KafkaException) as raised:
        first.produce(topic, value=b"late")
        first.commit_transaction(10)
    assert raised.value.args[0].fatal() or "fenced" in str(raised.value).lower()
    consumer = ck_consumer(bootstrap, topic, "read_committed")
    assert [v for _, _, v in ck_drain(consumer, 1)] == [b"fresh"]
    consumer.close()


def test_a_transaction_past_its_timeout_is_aborted(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic = unique_topic("timeout")
    create_topic(bootstrap, topic)
    producer = ck_producer(bootstrap, unique_topic("tx"), **{"transaction.timeout.ms": 1500})
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, value=b"never-%d" % i)
    producer.flush(10)
    consumer = ck_consumer(bootstrap, topic, "read_committed")

    def stable_at_end():
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=5, cached=False)
        return high == 4  # three records and the abort marker: the LSO moved past them

    wait_until(stable_at_end, 15, what="the broker's abort of the timed-out transaction")
    assert ck_drain(consumer, idle=1.0) == []
    with pytest.raises(ck.KafkaException):
        producer.commit_transaction(10)
    consumer.close()


def test_broker_restart_in_the_middle_of_a_transaction(module_broker_factory, tmp_path):
    from brokerproc import BrokerProcess

    proc = BrokerProcess(tmp_path / "data")
    proc.start()
    try:
        bootstrap = proc.bootstrap
        topic = unique_topic("restart")
        create_topic(bootstrap, topic)
        producer = ck_producer(bootstrap, unique_topic("tx"))
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, value=b"r%d" % i)
        producer.flush(10)
        proc.kill()  # SIGKILL: no snapshot, the transaction is Ongoing in __transaction_state
        proc.start()
        producer.commit_transaction(30)
        consumer = ck_consumer(bootstrap, topic, "read_committed")
        assert [v for _, _, v in ck_drain(consumer, 5)] == [b"r%d" % i for i in range(5)]
        consumer.close()
    finally:
        proc.kill()


def test_kafka_python_transactions(txn_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    bootstrap = txn_broker.bootstrap
    topic = unique_topic("kp")
    create_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_topic("kp-tx"),
                             request_timeout_ms=10000)
    producer.init_transactions()
    for i in range(4):
        producer.begin_transaction()
        for j in range(3):
            producer.send(topic, value=b"%d-%d" % (i, j), partition=0)
        if i % 2:
            producer.abort_transaction()
        else:
            producer.commit_transaction()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition(topic, 0)])
    got = [m.value for m in consumer]
    assert got == [b"0-0", b"0-1", b"0-2", b"2-0", b"2-1", b"2-2"]
    consumer.close()
    # librdkafka's read_committed consumer skips kafka-python's aborted data too.
    ck_c = ck_consumer(bootstrap, topic, "read_committed")
    assert [v for _, _, v in ck_drain(ck_c, 6)] == got
    ck_c.close()


def test_aiokafka_transactions(txn_broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    bootstrap = txn_broker.bootstrap
    topic = unique_topic("aio")
    create_topic(bootstrap, topic)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_topic("aio-tx"))
        await producer.start()
        try:
            for i in range(4):
                try:
                    async with producer.transaction():
                        for j in range(3):
                            await producer.send_and_wait(topic, value=b"%d-%d" % (i, j), partition=0)
                        if i % 2:
                            raise RuntimeError("abort this one")
                except RuntimeError:
                    pass
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.seek_to_beginning(TopicPartition(topic, 0))
            got = []
            deadline = time.monotonic() + 10
            while len(got) < 6 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got += [r.value for r in records]
            await asyncio.sleep(0.5)
            batch = await consumer.getmany(timeout_ms=500)
            got += [r.value for records in batch.values() for r in records]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"0-0", b"0-1", b"0-2", b"2-0", b"2-1", b"2-2"]


def test_an_unserved_version_is_logged_once_per_client(txn_broker):
    import socket

    def frame(client_id: bytes) -> bytes:
        # UpdateFeatures (57) v0 is not served: the broker logs it and closes the connection.
        body = struct.pack(">hhih", 57, 0, 7, len(client_id)) + client_id + b"\x00" * 8
        return struct.pack(">i", len(body)) + body

    for _ in range(3):
        with socket.create_connection(("127.0.0.1", txn_broker.port), timeout=5) as sock:
            sock.sendall(frame(b"marker-writer"))
            sock.recv(100)
    lines = wait_until(lambda: [l for l in txn_broker.log_lines if "'marker-writer'" in l and "not serve" in l], 5)
    time.sleep(0.3)
    lines = [l for l in txn_broker.log_lines if "'marker-writer'" in l and "not serve" in l]
    assert len(lines) == 1 and "API key 57 v0" in lines[0]


def test_a_fetch_of_only_aborted_batches_is_skipped(txn_broker):
    """librdkafka 0129: small segments and batches, a large aborted transaction;
    a read_committed consumer reads past it without an error and sees what follows."""
    bootstrap = txn_broker.bootstrap
    topic = unique_topic("aborted-only")
    create_topic(bootstrap, topic, configs={"max.message.bytes": "10000", "segment.bytes": "20000"})
    producer = ck_producer(bootstrap, unique_topic("tx"), **{"message.max.bytes": 10000, "linger.ms": 100})
    producer.begin_transaction()
    for i in range(1000):
        producer.produce(topic, value=b"a" * 1000, partition=0)
    producer.flush(20)
    producer.abort_transaction(20)
    producer.begin_transaction()
    producer.produce(topic, value=b"after", partition=0)
    producer.commit_transaction(20)
    consumer = ck_consumer(bootstrap, topic, "read_committed", **{"enable.partition.eof": True})
    assert [v for _, _, v in ck_drain(consumer, 1, timeout=30)] == [b"after"]
    consumer.close()


def test_kafka_python_admin_lists_describes_and_aborts_a_hanging_transaction(txn_broker):
    """kafka-python's transaction admin: ListTransactions, DescribeTransactions,
    DescribeProducers, and abort_transaction (WriteTxnMarkers) of an open one."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import AbortTransactionSpec

    bootstrap = txn_broker.bootstrap
    topic, transactional_id = unique_topic("admin"), unique_topic("tx")
    create_topic(bootstrap, topic)
    producer = ck_producer(bootstrap, transactional_id)
    producer.begin_transaction()
    producer.produce(topic, value=b"hanging")
    producer.flush(10)
    tp = TopicPartition(topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        listed = [t for per_broker in admin.list_transactions().values() for t in per_broker
                  if t.transactional_id == transactional_id]
        assert [t.state for t in listed] == ["Ongoing"]
        described = admin.describe_transactions([transactional_id])[transactional_id]
        assert described.state == "Ongoing" and described.producer_id == listed[0].producer_id
        (state,) = admin.describe_producers([tp])[tp].active_producers
        assert (state.producer_id, state.current_transaction_start_offset) == (listed[0].producer_id, 0)
        admin.abort_transaction(AbortTransactionSpec(tp, state.producer_id, state.producer_epoch, -1))
        consumer = ck_consumer(bootstrap, topic, "read_committed")
        wait_until(lambda: consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=5, cached=False)[1]
                   == 2, 10, what="the admin's abort marker")
        assert ck_drain(consumer, idle=1.0) == []
        consumer.close()
    finally:
        admin.close()
    producer.abort_transaction(10)


def _seed(bootstrap, topic, n):
    plain = ck.Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        plain.produce(topic, value=b"%d" % i, partition=0)
    plain.flush(10)


def test_kafka_python_consume_transform_produce(txn_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    bootstrap = txn_broker.bootstrap
    source, sink, group = unique_topic("kp-in"), unique_topic("kp-out"), unique_topic("kp-g")
    create_topic(bootstrap, source)
    create_topic(bootstrap, sink)
    _seed(bootstrap, source, 20)
    consumer = KafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed")
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_topic("kp-ctp"))
    producer.init_transactions()
    tp = TopicPartition(source, 0)
    done, deadline = 0, time.monotonic() + 30
    while done < 20 and time.monotonic() < deadline:
        records = consumer.poll(timeout_ms=500).get(tp, [])
        if not records:
            continue
        producer.begin_transaction()
        for r in records:
            producer.send(sink, value=b"y" + r.value, partition=0)
        producer.send_offsets_to_transaction({tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)},
                                             consumer.group_metadata())
        producer.commit_transaction()
        done += len(records)
    assert done == 20 and consumer.committed(tp) == 20
    producer.close()
    consumer.close()
    out = ck_consumer(bootstrap, sink, "read_committed")
    assert [v for _, _, v in ck_drain(out, 20)] == [b"y%d" % i for i in range(20)]
    out.close()


def test_aiokafka_send_offsets_to_transaction(txn_broker):
    from aiokafka import AIOKafkaProducer, TopicPartition
    from kafka import KafkaConsumer

    bootstrap = txn_broker.bootstrap
    source, group = unique_topic("aio-in"), unique_topic("aio-g")
    create_topic(bootstrap, source)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_topic("aio-ctp"))
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(source, value=b"x", partition=0)
                await producer.send_offsets_to_transaction({TopicPartition(source, 0): 7}, group)
            try:
                async with producer.transaction():
                    await producer.send_offsets_to_transaction({TopicPartition(source, 0): 9}, group)
                    raise RuntimeError("abort")
            except RuntimeError:
                pass
        finally:
            await producer.stop()

    asyncio.run(run())
    from kafka import TopicPartition as KTP

    checker = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    assert checker.committed(KTP(source, 0)) == 7  # the aborted commit of 9 never shows
    checker.close()
