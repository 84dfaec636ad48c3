"""Producer.send_many / send_many_nowait: many records per call, encoded in bulk.

Against the real broker in this process (``inproc``, topics auto-created with
3 partitions) and one real ``logbroker serve`` (``lb``).
"""

from __future__ import annotations

import numpy as np
import pytest
import trio

from logbroker.client import Consumer, Producer
from logbroker.client.partitioner import PARTITIONERS
from logbroker.client.producer import PartitionRange, SendManyResult
from logbroker.errors import RecordTooLargeError, TransactionStateError, UnknownTopicOrPartitionError
from logbroker.protocol import ApiKey

from client_fakes import once
from client_support import create_topic


def _options(inproc, **kw):
    return {"connector": inproc.connector, "retry_backoff_ms": 10, **kw}


async def _read_all(topic: str, partitions: int = 3, *, inproc=None, bootstrap="inproc:9092"):
    extra = {"connector": inproc.connector} if inproc is not None else {}
    async with Consumer(bootstrap, auto_offset_reset="earliest", **extra) as consumer:
        tps = [(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        total = sum((await consumer.end_offsets(tps)).values())
        out = []
        with trio.fail_after(20):
            while len(out) < total:
                out.extend(await consumer.getmany())
        return out


def _by_partition(records):
    out: dict[int, list] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.partition, []).append(r)
    return out


async def test_values_to_one_partition_arrive_intact_in_order(inproc):
    values = [b"v%05d" % i + b"x" * (i % 7) for i in range(3000)]  # varying sizes
    async with Producer("inproc:9092", **_options(inproc, batch_size=16 * 1024)) as producer:
        bulk = await producer.send_many("one", values, partition=1)
        result = await bulk
    assert isinstance(result, SendManyResult)
    assert (result.topic, result.count) == ("one", 3000)
    assert result.ranges == (PartitionRange(1, 0, 3000),)  # several batches, contiguous
    assert result.offsets(1) == list(range(3000))
    records = await _read_all("one", inproc=inproc)
    assert [r.value for r in records] == values
    assert {r.partition for r in records} == {1}
    assert all(r.key is None and r.headers == () for r in records)
    assert all(r.timestamp == result.timestamp for r in records)


async def test_keyless_records_follow_the_sticky_partition_and_keep_call_order(inproc):
    values = np.arange(20_000 * 10, dtype=np.uint32).view(np.uint8).reshape(20_000, 40)
    async with Producer("inproc:9092", **_options(inproc, batch_size=8 * 1024, linger_ms=0)) as producer:
        result = await (await producer.send_many("sticky", values))
    assert result.count == 20_000
    assert sum(r.count for r in result.ranges) == 20_000
    assert len({r.partition for r in result.ranges}) > 1  # the sticky partition moved as batches filled
    by_partition = _by_partition(await _read_all("sticky", inproc=inproc))
    expected = iter(values.tobytes()[i * 40:(i + 1) * 40] for i in range(20_000))
    for r in result.ranges:  # the ranges, in call order, say where each record went
        stored = {rec.offset: rec.value for rec in by_partition[r.partition]}
        for offset in range(r.first_offset, r.first_offset + r.count):
            assert stored[offset] == next(expected)


async def test_keys_are_hashed_like_send_and_nulls_are_kept(inproc):
    keys = [None if i % 11 == 0 else b"key-%d" % (i % 97) for i in range(2000)]
    values = [None if i % 13 == 0 else ("value-%d" % i if i % 2 else b"value-%d" % i) for i in range(2000)]
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        result = await (await producer.send_many("keyed", values, keys=keys))
        single = await (await producer.send("keyed", b"single", key=b"key-5"))
    assert result.count == 2000
    records = await _read_all("keyed", inproc=inproc)
    assert len(records) == 2001
    hashed = PARTITIONERS["xxhash"]
    normalized = [None if v is None else (v.encode() if isinstance(v, str) else v) for v in values]
    by_partition = _by_partition(r for r in records if r.value != b"single")
    for p in range(3):
        got = [(r.key, r.value) for r in by_partition.get(p, []) if r.key is not None]
        want = [(k, v) for k, v in zip(keys, normalized) if k is not None and hashed(k, 3) == p]
        assert got == want  # keyed records: in the key's partition, in call order
    null_keyed = [r for r in records if r.key is None]
    assert len(null_keyed) == sum(k is None for k in keys)
    assert single.partition == hashed(b"key-5", 3)


async def test_headers_timestamp_and_crc32_partitioner(inproc):
    keys = [b"k%d" % i for i in range(500)]
    async with Producer("inproc:9092", **_options(inproc, partitioner="crc32")) as producer:
        result = await (await producer.send_many("hdr", [b"v"] * 500, keys=keys, headers=[("h", b"1"), ("n", None)],
                                                 timestamp_ms=1_600_000_000_000))
    assert result.timestamp == 1_600_000_000_000
    records = await _read_all("hdr", inproc=inproc)
    assert len(records) == 500
    for r in records:
        assert r.headers == (("h", b"1"), ("n", None))
        assert r.timestamp == 1_600_000_000_000
        assert r.partition == PARTITIONERS["crc32"](r.key, 3)


async def test_numpy_rows_to_a_real_server(lb, topic):
    await create_topic(lb.bootstrap, topic, 2)
    rows = np.random.default_rng(7).integers(0, 256, size=(50_000, 100), dtype=np.uint8)
    async with Producer(lb.bootstrap) as producer:
        bulk = await producer.send_many(topic, rows, partition=0)
        tail = await producer.send_many(topic, rows[:10], partition=1)
        result = await bulk
        assert (await tail).ranges == (PartitionRange(1, 0, 10),)
    assert result.ranges == (PartitionRange(0, 0, 50_000),)
    records = await _read_all(topic, 2, bootstrap=lb.bootstrap)
    got = [r.value for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    assert got == [row.tobytes() for row in rows] + [row.tobytes() for row in rows[:10]]


async def test_empty_calls_return_an_empty_result(inproc):
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        await producer.partitions_for("empty")
        for values in ([], np.empty((0, 10), np.uint8)):
            bulk = await producer.send_many("empty", values)
            assert bulk.done()
            assert await bulk == SendManyResult("empty", 0, (), bulk.timestamp)
            assert producer.send_many_nowait("empty", values).count == 0
        await producer.flush()
        assert producer.statistics().records_sent == 0


async def test_wrong_shapes_and_types_are_refused_clearly(inproc):
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        await producer.partitions_for("bad")
        with pytest.raises(ValueError, match="2-D uint8"):
            await producer.send_many("bad", np.zeros(10, np.uint8))
        with pytest.raises(ValueError, match="2-D uint8"):
            await producer.send_many("bad", np.zeros((2, 3), np.float32))
        with pytest.raises(ValueError, match="2-D uint8"):
            producer.send_many_nowait("bad", np.zeros((2, 3, 4), np.uint8))
        with pytest.raises(TypeError, match="sequence of bytes"):
            await producer.send_many("bad", b"not a list")
        with pytest.raises(TypeError, match=r"values\[1\]"):
            await producer.send_many("bad", [b"ok", 5])
        with pytest.raises(TypeError, match=r"keys\[0\]"):
            await producer.send_many("bad", [b"ok"], keys=[1.5])
        with pytest.raises(ValueError, match="2 keys for 3 values"):
            await producer.send_many("bad", [b"a", b"b", b"c"], keys=[b"a", b"b"])
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_many("bad", [b"a"], partition=7)
        with pytest.raises(RecordTooLargeError):
            await producer.send_many("bad", [b"a", b"x" * 2_000_000])
        with pytest.raises(TypeError, match="timestamp_ms"):
            await producer.send_many("bad", [b"a"], timestamp_ms=1.5)
        await producer.flush()
        assert producer.statistics().records_sent == 0  # nothing of a refused call was queued


async def test_mixing_send_many_with_send_keeps_sequences_and_order(inproc):
    """Idempotent sequence numbers stay right when bulk and single records share a partition,
    also through retries of lost answers (the broker would refuse a gap or a duplicate)."""
    inproc.inject(once(lambda r: r.api_key == ApiKey.PRODUCE, lambda r: "lose-answer", times=2))
    expected: list[bytes] = []
    async with Producer("inproc:9092", **_options(inproc, linger_ms=0, batch_size=4096)) as producer:
        handles = []
        for round_ in range(20):
            value = b"single-%d" % round_
            handles.append(await producer.send("mixed", value, partition=0))
            expected.append(value)
            producer.send_nowait("mixed", b"nowait-%d" % round_, partition=0)
            expected.append(b"nowait-%d" % round_)
            bulk = [b"bulk-%d-%d" % (round_, i) for i in range(round_ * 13)]
            handles.append(await producer.send_many("mixed", bulk, partition=0))
            expected.extend(bulk)
            rows = np.full((7, 5), round_, np.uint8)
            handles.append(producer.send_many_nowait("mixed", rows, partition=0))
            expected.extend(row.tobytes() for row in rows)
        for handle in handles:
            await handle
        await producer.flush()
        stats = producer.statistics()
        assert stats.retries >= 1
        assert stats.records_failed == 0
        assert stats.records_sent == len(expected)
    records = await _read_all("mixed", inproc=inproc)
    assert [r.value for r in records] == expected  # once each, in order
    assert [r.offset for r in records] == list(range(len(expected)))


async def test_send_many_nowait_needs_metadata_and_room(inproc):
    async with Producer("inproc:9092", **_options(inproc, max_buffer_bytes=100_000, batch_size=10_000)) as producer:
        with pytest.raises(trio.WouldBlock):
            producer.send_many_nowait("nowait-many", [b"x"])  # metadata not loaded: its load starts
        with trio.fail_after(10):
            while True:
                try:
                    bulk = producer.send_many_nowait("nowait-many", [b"x"] * 10)
                    break
                except trio.WouldBlock:
                    await trio.sleep(0.01)
        with pytest.raises(trio.WouldBlock):
            producer.send_many_nowait("nowait-many", [b"y" * 1000] * 200)  # more than the whole buffer
        big = await producer.send_many("nowait-many", [b"y" * 1000] * 200)  # waits for room chunk by chunk
        assert (await bulk).count == 10
        assert (await big).count == 200
    assert len(await _read_all("nowait-many", inproc=inproc)) == 210


async def test_transactional_send_many(inproc):
    async with Producer("inproc:9092", **_options(inproc, transactional_id="bulk-tx")) as producer:
        with pytest.raises(TransactionStateError):
            await producer.send_many("txn-many", [b"outside"])
        await producer.begin_transaction()
        bulk = await producer.send_many("txn-many", [b"in-%d" % i for i in range(100)], partition=2)
        await producer.commit_transaction()
        assert (await bulk).ranges == (PartitionRange(2, 0, 100),)
    async with Consumer("inproc:9092", connector=inproc.connector, auto_offset_reset="earliest",
                        isolation_level="read_committed") as consumer:
        consumer.assign([("txn-many", 2)])
        got: list = []
        with trio.fail_after(10):
            while len(got) < 100:
                got.extend(await consumer.getmany())
    assert [r.value for r in got] == [b"in-%d" % i for i in range(100)]
