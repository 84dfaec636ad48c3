"""Consumer.poll_batch (the bulk, columnar read) against a real ``logbroker serve``.

What each test pins down: every record arrives exactly once and in offset
order per partition, across calls (positions advance so the next call goes
on); ``max_records`` bounds a call; commits in a group resume a new member
where the batch ended; fixed-size values come as a 2-D uint8 array equal to
what was sent, mixed sizes (and nulls, keys, headers) as lists; a poll with
nothing to read is cancelled by ``move_on_after`` without moving a position,
and the sync facade returns an empty batch at its timeout; under
read_committed aborted records and control batches never appear, while
read_uncommitted sees every data record and no control record.
"""

from __future__ import annotations

import random

import crc32c
import numpy as np
import pytest
import trio

from logbroker.client import Consumer, Producer, SyncConsumer, TopicPartition
from logbroker.client._decode import decode_chunk, records_from_columns
from logbroker.client.columns import ConsumerBatch, PartitionColumns
from logbroker.errors import CorruptBatchError
from logbroker.records import CRC_AT, CRC_START, CRC_STRUCT, BatchBuilder, iter_batches
from logbroker.records.compression import Compression
from logbroker.records.decoder import decode_batches, decode_columns

from client_support import create_topic


# -- sans-I/O: the columnar decoder against the record-at-a-time one ------------------------


def _random_batches(rng: random.Random) -> tuple[bytes, int]:
    parts, base = [], 0
    for _ in range(rng.randint(1, 4)):
        builder = BatchBuilder(base_offset=base, compression=rng.choice([Compression.NONE, Compression.GZIP]))
        n = rng.choice([1, 2, 70, 300, 3000])
        fixed, size = rng.random() < 0.5, rng.choice([0, 1, 63, 64, 100, 300])
        for i in range(n):
            value = None if rng.random() < 0.05 else rng.randbytes(size if fixed else rng.randint(0, 300))
            key = None if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 20))
            headers = (("h", b"x"), ("n", None)) if rng.random() < 0.1 else ()
            builder.append(value, key, headers, 1_700_000_000_000 + rng.choice([0, i, i * 1000, rng.randint(0, 10**7)]))
        parts.append(builder.build())
        base += n
    return b"".join(parts), base


def test_columns_match_the_record_decoder():
    rng = random.Random(5)
    for _ in range(60):
        data, end = _random_batches(rng)
        start = rng.choice([-1, 0, 1, end // 2])
        columns = decode_columns(data, list(iter_batches(data)), start=start)
        expected = [r for b in decode_batches(data) for r in b.records if r.offset >= start]
        got = records_from_columns(columns, "t", 3)
        assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in got] == \
            [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in expected]
        assert all(r.topic == "t" and r.partition == 3 for r in got)
        assert PartitionColumns("t", 3, [columns]).value_list() == [r.value for r in expected]


def test_fixed_size_values_across_batches_become_one_array():
    rows = np.random.default_rng(1).integers(0, 256, size=(500, 100), dtype=np.uint8)
    data = b"".join(_batch_of(rows[i:i + 125], i) for i in range(0, 500, 125))
    columns = PartitionColumns("t", 0, [decode_chunk(data, 0)])
    assert columns.value_size == 100
    assert np.array_equal(columns.values, rows)
    assert columns.offsets.tolist() == list(range(500))


def _batch_of(rows: np.ndarray, base: int) -> bytes:
    builder = BatchBuilder(base_offset=base)
    for row in rows:
        builder.append(row.tobytes())
    return builder.build()


def test_a_record_that_lies_about_its_length_is_corrupt():
    builder = BatchBuilder()
    for i in range(100):
        builder.append(b"v" * 10)
    data = bytearray(builder.build())
    data[61 + 40 * 17] ^= 0x02  # the length prefix of record 40 (each is 17 bytes: 1 + 16), 16 -> 17
    CRC_STRUCT.pack_into(data, CRC_AT, crc32c.crc32c(bytes(data[CRC_START:])))
    with pytest.raises(CorruptBatchError):
        decode_chunk(bytes(data), 0)


# -- against a real broker ---------------------------------------------------------------------


async def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes | None]]) -> None:
    async with Producer(bootstrap, linger_ms=5) as producer:
        for partition, key, value in records:
            await producer.send(topic, value, key, partition=partition)
        await producer.flush()


async def _poll_all(consumer: Consumer, expected: int, *, max_records: int = 100_000,
                    limit: float = 20) -> list[ConsumerBatch]:
    batches = []
    seen = 0
    with trio.fail_after(limit):
        while seen < expected:
            batch = await consumer.poll_batch(max_records=max_records)
            assert len(batch) >= 1 and len(batch) <= max_records
            batches.append(batch)
            seen += len(batch)
    assert seen == expected
    return batches


def _by_partition(batches: list[ConsumerBatch]) -> dict[TopicPartition, list[int]]:
    offsets: dict[TopicPartition, list[int]] = {}
    for batch in batches:
        for tp, columns in batch.partitions.items():
            assert columns.offsets.dtype == np.int64 and columns.timestamps.dtype == np.int64
            assert len(columns.timestamps) == len(columns.offsets)
            offsets.setdefault(tp, []).extend(columns.offsets.tolist())
    return offsets


async def test_every_record_once_in_order_and_positions_advance(lb, topic):
    await create_topic(lb.bootstrap, topic, 3)
    per_partition = 3000
    sent = [(p, None, f"{p}-{i}".encode()) for i in range(per_partition) for p in range(3)]
    await _produce(lb.bootstrap, topic, sent)
    async with Consumer(lb.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        batches = await _poll_all(consumer, len(sent), max_records=1000)
        offsets = _by_partition(batches)
        assert offsets == {TopicPartition(topic, p): list(range(per_partition)) for p in range(3)}
        values = {tp: [] for tp in offsets}
        for batch in batches:
            for tp, columns in batch.partitions.items():
                values[tp] += columns.value_list()
        assert values == {TopicPartition(topic, p): [f"{p}-{i}".encode() for i in range(per_partition)]
                          for p in range(3)}
        for p in range(3):
            assert await consumer.position(TopicPartition(topic, p)) == per_partition
        assert consumer.records_returned == len(sent)
        # records, as a convenience, match the columns
        first = batches[0]
        assert [r.offset for r in first] == [o for c in first.partitions.values() for o in c.offsets.tolist()]
        # nothing more: the next poll waits
        with trio.move_on_after(0.5) as scope:
            await consumer.poll_batch()
        assert scope.cancelled_caught
        # more records: the next call goes on where the last ended, mixing with getone
        await _produce(lb.bootstrap, topic, [(0, None, b"late-0"), (0, None, b"late-1"), (0, None, b"late-2")])
        with trio.fail_after(10):
            record = await consumer.getone()
            assert (record.partition, record.offset, record.value) == (0, per_partition, b"late-0")
            batch = await consumer.poll_batch()
        columns = batch.partitions[TopicPartition(topic, 0)]
        assert columns.offsets.tolist() == [per_partition + 1, per_partition + 2]
        assert columns.value_list() == [b"late-1", b"late-2"]
        assert batch.next_offsets() == {TopicPartition(topic, 0): per_partition + 3}


async def test_fixed_size_values_come_as_a_2d_array(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    rows = np.random.default_rng(3).integers(0, 256, size=(5000, 100), dtype=np.uint8)
    await _produce(lb.bootstrap, topic, [(0, None, row.tobytes()) for row in rows])
    async with Consumer(lb.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await _poll_all(consumer, len(rows))
    got = []
    for batch in batches:
        columns = batch.partitions[TopicPartition(topic, 0)]
        assert columns.value_size == 100
        values = columns.values
        assert isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.shape == (len(columns), 100)
        assert columns.keys == [None] * len(columns)
        got.append(values)
    assert np.array_equal(np.concatenate(got), rows)


async def test_mixed_sizes_nulls_keys_and_headers(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    values = [b"x" * (i % 7) if i % 5 else None for i in range(400)]
    async with Producer(lb.bootstrap, linger_ms=5) as producer:
        for i, value in enumerate(values):
            headers = [("i", str(i).encode())] if i % 3 == 0 else None
            await producer.send(topic, value, f"k{i}".encode() if i % 2 else None, partition=0, headers=headers)
        await producer.flush()
    async with Consumer(lb.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await _poll_all(consumer, len(values))
    got_values, got_keys, got_headers = [], [], []
    for batch in batches:
        columns = batch.partitions[TopicPartition(topic, 0)]
        assert columns.value_size is None and isinstance(columns.values, list)
        got_values += columns.values
        got_keys += columns.keys
        got_headers += columns.headers
        assert [r.value for r in columns] == columns.value_list()
    assert got_values == values
    assert got_keys == [f"k{i}".encode() if i % 2 else None for i in range(len(values))]
    assert got_headers == [(("i", str(i).encode()),) if i % 3 == 0 else () for i in range(len(values))]


async def test_commits_in_a_group_resume_where_the_batches_ended(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)
    sent = [(i % 2, None, f"v{i}".encode()) for i in range(600)]
    await _produce(lb.bootstrap, topic, sent)
    group = f"{topic}-g"
    options = dict(group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                   session_timeout_ms=6000, heartbeat_interval_ms=200)
    async with Consumer(lb.bootstrap, **options) as consumer:
        await consumer.subscribe([topic])
        with trio.fail_after(15):
            await consumer.wait_assignment()
        batches = await _poll_all(consumer, 400, max_records=100)
        await consumer.commit()  # the positions: after the last record of each partition returned
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        last = {}
        for batch in batches:
            last.update(batch.next_offsets())
        assert committed == {tp: last.get(tp) for tp in committed}
        first = _by_partition(batches)
    async with Consumer(lb.bootstrap, **options) as consumer:
        await consumer.subscribe([topic])
        with trio.fail_after(15):
            await consumer.wait_assignment()
        rest = _by_partition(await _poll_all(consumer, 200))
    for p in range(2):
        tp = TopicPartition(topic, p)
        assert first.get(tp, []) + rest.get(tp, []) == list(range(300))


async def test_sync_facade_poll_batch_and_empty_at_timeout(lb, topic):
    await create_topic(lb.bootstrap, topic, 1)
    await _produce(lb.bootstrap, topic, [(0, None, b"%03d" % i) for i in range(50)])

    def read() -> tuple[list[bytes], ConsumerBatch]:
        with SyncConsumer(lb.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([(topic, 0)])
            got: list[bytes] = []
            while len(got) < 50:
                batch = consumer.poll_batch(max_records=20, timeout=10)
                assert 1 <= len(batch) <= 20
                got += [bytes(row) for row in batch.partitions[TopicPartition(topic, 0)].values]
            return got, consumer.poll_batch(timeout=0.3)

    got, empty = await trio.to_thread.run_sync(read)
    assert got == [b"%03d" % i for i in range(50)]
    assert isinstance(empty, ConsumerBatch) and len(empty) == 0 and not empty and list(empty) == []


async def test_max_records_must_be_positive(lb, topic):
    async with Consumer(lb.bootstrap) as consumer:
        with pytest.raises(ValueError):
            await consumer.poll_batch(max_records=0)


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
async def test_transactions_aborted_records_and_markers_are_skipped(lb, topic, isolation):
    await create_topic(lb.bootstrap, topic, 1)
    async with Producer(lb.bootstrap, transactional_id=f"tx-{topic}", linger_ms=0) as producer:
        await producer.init_transactions()
        for round_ in range(4):
            await producer.begin_transaction()
            for i in range(25):
                await producer.send(topic, f"{round_}-{i}".encode(), partition=0)
            await producer.flush()  # in the log before the abort marker
            if round_ % 2:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    committed = [f"{r}-{i}".encode() for r in (0, 2) for i in range(25)]
    everything = [f"{r}-{i}".encode() for r in range(4) for i in range(25)]
    expected = committed if isolation == "read_committed" else everything
    async with Consumer(lb.bootstrap, auto_offset_reset="earliest", isolation_level=isolation) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await _poll_all(consumer, len(expected))
        with trio.move_on_after(0.5):  # nothing more may come (markers are not records)
            extra = await consumer.poll_batch()
            pytest.fail(f"unexpected records {extra.records()}")
        # the position moved past the last commit marker, and the data offsets skip the markers
        assert await consumer.position(TopicPartition(topic, 0)) == 104
    values = [v for b in batches for c in b.partitions.values() for v in c.value_list()]
    assert values == expected
    offsets = [o for b in batches for c in b.partitions.values() for o in c.offsets.tolist()]
    markers = {25, 51, 77, 103}
    assert not markers & set(offsets)
    if isolation == "read_committed":
        assert offsets == list(range(0, 25)) + list(range(52, 77))
