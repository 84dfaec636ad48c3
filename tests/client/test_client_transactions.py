"""Our transactional producer and read_committed consumer against ``logbroker serve``,
checked against confluent-kafka (librdkafka) on both sides, and against Tansu.

What each test pins down: commits and aborts interleaved read back as exactly
the committed records, in order, by our read_committed consumer and by
librdkafka's, and as every data record (never a control record) by
read_uncommitted; consume-transform-produce with ``send_offsets_to_transaction``
leaves the group's committed offsets at the input's end; a second producer of
the same transactional id fences the first; our read_committed consumer reads
librdkafka's transactional output. The first tests are sans-I/O: the decoder's
handling of aborted transactions and the request builders of every version.
"""

from __future__ import annotations

import time

import pytest
import trio

from logbroker.client import (
    Admin,
    ConsumerGroupMetadata,
    Consumer,
    Producer,
    SyncConsumer,
    SyncProducer,
    TopicPartition,
)
from logbroker.client import _wire
from logbroker.client._decode import decode_for_consumer
from logbroker.client.versions import CLIENT_VERSIONS
from logbroker.errors import (
    CommitFailedError,
    ProducerFencedError,
    TransactionAbortableError,
    TransactionAbortedError,
    TransactionStateError,
)
from logbroker.protocol import ApiKey, encode_request
from logbroker.records import BatchBuilder

from client_support import create_topic

ck = pytest.importorskip("confluent_kafka")

# -- sans-I/O ------------------------------------------------------------------------


def _batch(base: int, pid: int, values: list[bytes], *, transactional: bool = True) -> bytes:
    builder = BatchBuilder(producer_id=pid, producer_epoch=0, base_sequence=0, transactional=transactional,
                           base_offset=base)
    for v in values:
        builder.append(v, None, (), 1_000)
    return builder.build()


def _marker(offset: int, pid: int, commit: bool) -> bytes:
    builder = BatchBuilder(producer_id=pid, producer_epoch=0, base_sequence=-1, transactional=True, control=True,
                           base_offset=offset)
    builder.append(b"\x00\x00\x00\x00\x00\x00", b"\x00\x00\x00" + (b"\x01" if commit else b"\x00"), (), 1_000)
    return builder.build()


def test_decoder_drops_aborted_transactions_and_every_control_record():
    # pid 7 aborts [0, 1], pid 8 commits [2], pid 7 commits [5, 6] later: only the
    # first of pid 7's transactions is listed as aborted.
    data = b"".join([
        _batch(0, 7, [b"a0", b"a1"]), _batch(2, 8, [b"c2"]), _marker(3, 7, commit=False),
        _marker(4, 8, commit=True), _batch(5, 7, [b"c5", b"c6"]), _marker(7, 7, commit=True),
        _batch(8, -1, [b"plain"], transactional=False),
    ])
    committed = decode_for_consumer(data, "t", 0, 0, aborted=[(7, 0)])
    assert [(r.offset, r.value) for r in committed] == [(2, b"c2"), (5, b"c5"), (6, b"c6"), (8, b"plain")]
    everything = decode_for_consumer(data, "t", 0, 0)
    assert [r.offset for r in everything] == [0, 1, 2, 5, 6, 8]  # no control record
    assert [r.offset for r in decode_for_consumer(data, "t", 0, 6, aborted=[(7, 0)])] == [6, 8]


def test_transaction_request_builders_encode_in_every_version():
    builders = {
        ApiKey.INIT_PRODUCER_ID: lambda v: _wire.init_producer_id_request(
            v, transactional_id="tx", transaction_timeout_ms=1000, producer_id=5, producer_epoch=1),
        ApiKey.ADD_PARTITIONS_TO_TXN: lambda v: _wire.add_partitions_to_txn_request(
            v, transactional_id="tx", producer_id=5, producer_epoch=1, partitions={"a": [0, 1]}),
        ApiKey.ADD_OFFSETS_TO_TXN: lambda v: _wire.add_offsets_to_txn_request(
            v, transactional_id="tx", producer_id=5, producer_epoch=1, group_id="g"),
        ApiKey.END_TXN: lambda v: _wire.end_txn_request(v, transactional_id="tx", producer_id=5, producer_epoch=1,
                                                        commit=True),
        ApiKey.TXN_OFFSET_COMMIT: lambda v: _wire.txn_offset_commit_request(
            v, transactional_id="tx", group_id="g", producer_id=5, producer_epoch=1, generation_id=3,
            member_id="m", group_instance_id=None, offsets={"a": [(0, 9, "")]}),
        ApiKey.LIST_TRANSACTIONS: lambda v: _wire.list_transactions_request(v, states=["Ongoing"]),
        ApiKey.DESCRIBE_TRANSACTIONS: lambda v: _wire.describe_transactions_request(v, ["tx"]),
        ApiKey.DESCRIBE_PRODUCERS: lambda v: _wire.describe_producers_request(v, {"a": [0]}),
        ApiKey.WRITE_TXN_MARKERS: lambda v: _wire.write_txn_markers_request(
            v, producer_id=5, producer_epoch=1, commit=False, coordinator_epoch=0, partitions={"a": [0]}),
        ApiKey.PRODUCE: lambda v: _wire.produce_request(v, -1, 1000, {"a": [(0, b"x" * 70)]}, "tx"),
    }
    for key, build_body in builders.items():
        lo, hi = CLIENT_VERSIONS[key]
        for version in range(lo, hi + 1):
            assert encode_request(key, version, 1, "c", build_body(version))


# -- against logbroker serve ------------------------------------------------------------


def _ck_consumer(bootstrap, topic, isolation, partitions, **extra):
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"ck-{topic}-{isolation}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": isolation, "fetch.wait.max.ms": 100, **extra,
    })
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
    return consumer


def _ck_drain(consumer, expected: int, idle: float = 1.5, timeout: float = 20.0):
    """(partition, value) polled until ``expected`` arrived and ``idle`` s passed quietly."""
    got = []
    deadline = time.monotonic() + timeout
    quiet_until = time.monotonic() + idle
    while time.monotonic() < min(deadline, quiet_until):
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        assert not msg.error() or msg.error().code() == ck.KafkaError._PARTITION_EOF, msg.error()
        if msg.error():
            continue
        got.append((msg.partition(), msg.value()))
        quiet_until = time.monotonic() + (idle if len(got) < expected else 0.5)
    return got


async def _drain(bootstrap, topic, partitions, isolation, expected: int, idle: float = 1.0):
    """(partition, value) read by our consumer until ``expected`` came and ``idle`` s passed."""
    async with Consumer(bootstrap, auto_offset_reset="earliest", isolation_level=isolation,
                        fetch_max_wait_ms=100) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        got = []
        with trio.move_on_after(20):
            while len(got) < expected:
                got.extend((r.partition, r.value) for r in await consumer.getmany())
        with trio.move_on_after(idle):  # nothing more may come
            while True:
                got.extend((r.partition, r.value) for r in await consumer.getmany())
        return got


async def test_commits_and_aborts_interleaved(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)
    committed: list[tuple[int, bytes]] = []
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=2) as producer:
            with pytest.raises(TransactionStateError):
                await producer.send(topic, b"outside")  # not initialized, no transaction
            await producer.init_transactions()
            for i in range(6):
                await producer.begin_transaction()
                values = [(j % 2, f"{i}-{j}".encode()) for j in range(10)]
                for partition, value in values:
                    await producer.send(topic, value, partition=partition)
                if i % 2:
                    await producer.flush()  # in the log before the abort marker
                    await producer.abort_transaction()
                else:
                    await producer.commit_transaction()
                    committed += values
            with pytest.raises(TransactionStateError):
                await producer.commit_transaction()  # none open
            # Records not sent when the transaction is aborted fail with TransactionAbortedError.
            await producer.begin_transaction()
            delivery = await producer.send(topic, b"never", partition=0)
            await producer.abort_transaction()
            with pytest.raises(TransactionAbortedError):
                await delivery
            await producer.flush()  # does not report the aborted record again

        ours = await _drain(lb.bootstrap, topic, (0, 1), "read_committed", len(committed))
        everything = await _drain(lb.bootstrap, topic, (0, 1), "read_uncommitted", 60)
    for p in (0, 1):  # exactly the committed records, in order per partition
        assert [v for q, v in ours if q == p] == [v for q, v in committed if q == p]
    assert len(everything) == 60 or len(everything) == 61  # every data record ("never" may have been sent)
    assert not any(v.startswith(b"\x00\x00") for _, v in everything)  # no control record
    assert {v for _, v in committed} <= {v for _, v in everything}

    theirs = await trio.to_thread.run_sync(
        lambda: _ck_drain(_ck_consumer(lb.bootstrap, topic, "read_committed", (0, 1)), len(committed)))
    for p in (0, 1):
        assert [v for q, v in theirs if q == p] == [v for q, v in committed if q == p]
    theirs_all = await trio.to_thread.run_sync(
        lambda: _ck_drain(_ck_consumer(lb.bootstrap, topic, "read_uncommitted", (0, 1)), len(everything)))
    assert sorted(theirs_all) == sorted(everything)


async def test_read_committed_stops_at_an_open_transaction(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
            await producer.begin_transaction()  # initializes implicitly
            await producer.send(topic, b"first", partition=0)
            await producer.commit_transaction()
            await producer.begin_transaction()
            await producer.send(topic, b"open", partition=0)
            await producer.flush()
            async with Consumer(lb.bootstrap, auto_offset_reset="earliest", isolation_level="read_committed",
                                fetch_max_wait_ms=100) as consumer:
                tp = TopicPartition(topic, 0)
                consumer.assign([tp])
                assert (await consumer.getone()).value == b"first"
                assert (await consumer.end_offsets([tp]))[tp] == 2  # the last stable offset
                with trio.move_on_after(1):
                    pytest.fail(f"read past the open transaction: {await consumer.getone()}")
                await producer.commit_transaction()
                assert (await consumer.getone()).value == b"open"


async def test_consume_transform_produce(lb, topic):
    source, sink, group = f"{topic}-in", f"{topic}-out", f"{topic}-g"
    await create_topic(lb.bootstrap, source, 2)
    await create_topic(lb.bootstrap, sink, 1)
    with trio.fail_after(90):
        async with Producer(lb.bootstrap, linger_ms=0) as plain:
            for i in range(40):
                await plain.send(source, f"v{i}", partition=i % 2)
        async with Consumer(lb.bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                            isolation_level="read_committed", session_timeout_ms=10_000,
                            heartbeat_interval_ms=300) as consumer, \
                Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=2) as producer:
            await consumer.subscribe([source])
            await consumer.wait_assignment()
            await producer.init_transactions()
            seen = 0
            rounds = 0
            while seen < 40:
                records = await consumer.getmany(max_records=7)
                await producer.begin_transaction()
                for r in records:
                    await producer.send(sink, r.value.upper(), partition=0)
                positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
                metadata = consumer.group_metadata()
                assert metadata.group_id == group and metadata.generation_id >= 1 and metadata.member_id
                await producer.send_offsets_to_transaction(positions, metadata)
                if rounds == 1:  # one round aborted and redone: its output must vanish
                    await producer.abort_transaction()
                    for tp in positions:
                        consumer.seek(tp, (await consumer.committed(tp)) or 0)
                    rounds += 1
                    continue
                await producer.commit_transaction()
                seen += len(records)
                rounds += 1
            committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        assert committed == {TopicPartition(source, 0): 20, TopicPartition(source, 1): 20}
        out = await _drain(lb.bootstrap, sink, (0,), "read_committed", 40)
    assert sorted(v for _, v in out) == sorted(f"V{i}".encode() for i in range(40))  # each exactly once


async def test_a_second_producer_fences_the_first(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    tid = f"tx-{topic}"
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=tid, linger_ms=0) as first:
            await first.init_transactions()
            await first.begin_transaction()
            await first.send(topic, b"zombie", partition=0)
            await first.flush()
            async with Producer(lb.bootstrap, transactional_id=tid, linger_ms=0) as second:
                await second.init_transactions()  # aborts the first one's open transaction
                await second.begin_transaction()
                await second.send(topic, b"alive", partition=0)
                await second.commit_transaction()
                with pytest.raises(ProducerFencedError):
                    await first.send(topic, b"more", partition=0)
                    await first.commit_transaction()
                with pytest.raises(ProducerFencedError):  # fatal: every later call raises it
                    await first.begin_transaction()
                with pytest.raises(ProducerFencedError):
                    await first.abort_transaction()
        got = await _drain(lb.bootstrap, topic, (0,), "read_committed", 1)
    assert got == [(0, b"alive")]


async def test_a_failed_record_makes_the_transaction_abortable(lb, topic):
    await create_topic(lb.bootstrap, topic, 1, max_message_bytes="2000")
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
            await producer.begin_transaction()
            await producer.send(topic, b"x" * 5000, partition=0)  # the broker refuses it
            with pytest.raises(TransactionAbortableError):
                await producer.commit_transaction()
            with pytest.raises(TransactionAbortableError):
                await producer.send(topic, b"small", partition=0)
            await producer.abort_transaction()
            await producer.begin_transaction()  # usable again
            await producer.send(topic, b"small", partition=0)
            await producer.commit_transaction()
        got = await _drain(lb.bootstrap, topic, (0,), "read_committed", 1)
    assert got == [(0, b"small")]


async def test_our_read_committed_consumer_reads_librdkafkas_transactions(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)

    def produce() -> list[tuple[int, bytes]]:
        producer = ck.Producer({"bootstrap.servers": lb.bootstrap, "transactional.id": f"ck-{topic}",
                                "linger.ms": 5})
        producer.init_transactions(20)
        committed = []
        for i in range(5):
            producer.begin_transaction()
            values = [(j % 2, f"{i}-{j}".encode()) for j in range(8)]
            for partition, value in values:
                producer.produce(topic, value=value, partition=partition)
            if i in (1, 3):
                producer.flush(10)
                producer.abort_transaction(20)
            else:
                producer.commit_transaction(20)
                committed += values
        return committed

    with trio.fail_after(90):
        committed = await trio.to_thread.run_sync(produce)
        got = await _drain(lb.bootstrap, topic, (0, 1), "read_committed", len(committed))
        everything = await _drain(lb.bootstrap, topic, (0, 1), "read_uncommitted", 40)
    for p in (0, 1):
        assert [v for q, v in got if q == p] == [v for q, v in committed if q == p]
    assert len(everything) == 40


def test_sync_facade_transactions(lb, topic):
    trio.run(create_topic, lb.bootstrap, topic, 1)
    group = f"{topic}-g"
    with SyncProducer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
        producer.init_transactions(timeout=20)
        producer.begin_transaction()
        producer.send(topic, b"one", partition=0)
        producer.send_offsets_to_transaction({(topic, 0): 1}, ConsumerGroupMetadata(group), timeout=20)
        producer.commit_transaction(timeout=20)
        producer.begin_transaction()
        producer.send(topic, b"two", partition=0)
        producer.abort_transaction(timeout=20)
    with SyncConsumer(lb.bootstrap, group_id=group, isolation_level="read_committed",
                      auto_offset_reset="earliest", enable_auto_commit=False) as consumer:
        consumer.assign([(topic, 0)])
        assert consumer.committed((topic, 0), timeout=10) == 1
        assert consumer.group_metadata() == ConsumerGroupMetadata(group)
        consumer.seek((topic, 0), 0)
        assert [r.value for r in consumer.getmany(timeout=10)] == [b"one"]


async def test_admin_lists_and_describes_transactions(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)
    tid = f"tx-{topic}"
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=tid, linger_ms=0) as producer, \
                Admin(lb.bootstrap) as admin:
            await producer.begin_transaction()
            await producer.send(topic, b"a", partition=1)
            await producer.flush()
            listed = {t.transactional_id: t for t in await admin.list_transactions()}
            assert listed[tid].state == "Ongoing"
            assert listed[tid].producer_id == producer.statistics().producer_id
            assert tid in {t.transactional_id for t in await admin.list_transactions(states=["Ongoing"])}
            assert tid not in {t.transactional_id for t in await admin.list_transactions(states=["Empty"])}
            [described] = await admin.describe_transactions([tid])
            assert described.state == "Ongoing" and described.partitions == (TopicPartition(topic, 1),)
            assert described.start_time_ms > 0 and described.timeout_ms == 60_000
            producers = await admin.describe_producers([(topic, 1)])
            [active] = producers[TopicPartition(topic, 1)]
            assert active.current_txn_start_offset == 0
            await producer.commit_transaction()
            [described] = await admin.describe_transactions([tid])
            assert described.state == "CompleteCommit" and described.partitions == ()
            [unknown] = await admin.describe_transactions([f"nobody-{topic}"])
            assert unknown.error_code != 0


# -- against Tansu ----------------------------------------------------------------------


async def test_transactions_against_tansu(tansu, topic):
    """Tansu 0.6 serves the producer's side (InitProducerId, AddPartitionsToTxn, EndTxn
    writing a marker per transaction) but lists no aborted transactions in Fetch, so
    read_committed cannot hide aborted records there (librdkafka's consumer shows them
    too). What is checked: each transaction of ours ends with its marker (offsets
    1, 3, 5, 7) and no control record reaches the application."""
    await create_topic(tansu.bootstrap, topic, 1)
    with trio.fail_after(60):
        async with Producer(tansu.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
            await producer.init_transactions()
            for i in range(4):
                await producer.begin_transaction()
                await producer.send(topic, f"v{i}", partition=0)
                await producer.flush()
                if i % 2:
                    await producer.abort_transaction()
                else:
                    await producer.commit_transaction()
        async with Consumer(tansu.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([(topic, 0)])
            got = []
            while len(got) < 4:
                got.extend((r.offset, r.value) for r in await consumer.getmany())
    assert got == [(0, b"v0"), (2, b"v1"), (4, b"v2"), (6, b"v3")]


async def test_the_exactly_once_doc_example_runs(lb, topic):
    """The consume-transform-produce example of docs/exactly-once.md, run for real."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "exactly-once.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    code = code.replace('trio.run(transform, "localhost:9092", "orders", "orders-upper", "upper", "upper-1")', "")
    namespace: dict = {}
    exec(compile(code, "exactly-once.md", "exec"), namespace)
    source, sink = f"{topic}-in", f"{topic}-out"
    await create_topic(lb.bootstrap, source, 2)
    await create_topic(lb.bootstrap, sink, 1)
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, linger_ms=0) as plain:
            for i in range(30):
                await plain.send(source, f"v{i}", partition=i % 2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(namespace["transform"], lb.bootstrap, source, sink, f"{topic}-g", f"tx-{topic}")
            out = await _drain(lb.bootstrap, sink, (0,), "read_committed", 30)
            nursery.cancel_scope.cancel()
        async with Admin(lb.bootstrap) as admin:
            offsets = await admin.list_group_offsets(f"{topic}-g")
    assert sorted(v for _, v in out) == sorted(f"V{i}".encode() for i in range(30))
    assert offsets == {TopicPartition(source, 0): 15, TopicPartition(source, 1): 15}


async def test_a_zombie_members_offsets_are_refused_and_the_transaction_aborts(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    group = f"{topic}-g"
    with trio.fail_after(60):
        async with Consumer(lb.bootstrap, group_id=group, enable_auto_commit=False, session_timeout_ms=10_000,
                            heartbeat_interval_ms=300) as consumer, \
                Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
            await consumer.subscribe([topic])
            await consumer.wait_assignment()
            real = consumer.group_metadata()
            zombie = ConsumerGroupMetadata(group, real.generation_id + 5, "zombie-member")
            await producer.begin_transaction()
            await producer.send(topic, b"lost", partition=0)
            with pytest.raises(CommitFailedError):
                await producer.send_offsets_to_transaction({(topic, 0): 1}, zombie)
            with pytest.raises(TransactionAbortableError):
                await producer.commit_transaction()
            await producer.abort_transaction()
            await producer.begin_transaction()
            await producer.send(topic, b"kept", partition=0)
            await producer.send_offsets_to_transaction({(topic, 0): 7}, real)
            await producer.commit_transaction()
            assert await consumer.committed((topic, 0)) == 7
        got = await _drain(lb.bootstrap, topic, (0,), "read_committed", 1)
    assert got == [(0, b"kept")]


async def test_leaving_with_an_open_transaction_aborts_it(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    tid = f"tx-{topic}"
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=tid, linger_ms=0) as producer:
            await producer.begin_transaction()
            await producer.send(topic, b"left open", partition=0)
            await producer.flush()
        async with Admin(lb.bootstrap) as admin:
            [described] = await admin.describe_transactions([tid])
            ends = await admin.list_offsets({(topic, 0): "latest"})
    assert described.state == "CompleteAbort"
    assert [a.offset for a in ends.values()] == [2]  # the record and the abort marker


async def test_an_abort_right_after_a_send_does_not_leak_its_partition_into_the_next_transaction(lb, topic):
    """abort_transaction waits for an AddPartitionsToTxn in flight: answered after the
    abort, it must neither count for the next transaction nor reach the coordinator after EndTxn."""
    await create_topic(lb.bootstrap, topic, 2)
    committed = []
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
            for i in range(15):
                await producer.begin_transaction()
                await producer.send(topic, f"aborted-{i}", partition=i % 2)
                await trio.sleep(0)  # the sender starts AddPartitionsToTxn
                await producer.abort_transaction()
                await producer.begin_transaction()
                await producer.send(topic, f"kept-{i}", partition=i % 2)
                await producer.commit_transaction()
                committed.append((i % 2, f"kept-{i}".encode()))
        got = await _drain(lb.bootstrap, topic, (0, 1), "read_committed", len(committed))
    assert sorted(got) == sorted(committed)
