"""The producer against the real broker in this process (no listener), with injected faults."""

from __future__ import annotations

import pytest
import trio

from logbroker.client import Consumer, Producer
from logbroker.errors import ClientClosedError, KafkaTimeoutError, RecordTooLargeError, UnknownTopicOrPartitionError
from logbroker.protocol import ApiKey, ErrorCode

from client_fakes import once, produce_error


def _options(inproc, **kw):
    return {"connector": inproc.connector, "retry_backoff_ms": 10, **kw}


async def _read_all(inproc, topic: str, partitions: int = 3, **kw):
    async with Consumer("inproc:9092", connector=inproc.connector, auto_offset_reset="earliest", **kw) as consumer:
        tps = [(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        total = sum((await consumer.end_offsets(tps)).values())
        out = []
        with trio.fail_after(10):
            while len(out) < total:
                out.extend(await consumer.getmany())
        return out


def _is_produce(request):
    return request.api_key == ApiKey.PRODUCE


async def test_round_trip_with_keys_headers_and_explicit_partitions(inproc):
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        deliveries = [await producer.send("rt", f"value-{i}", key=f"key-{i % 10}", headers=[("n", str(i).encode())])
                      for i in range(500)]
        pinned = await producer.send("rt", b"pinned", partition=2, timestamp_ms=1_600_000_000_000)
        meta = await pinned
        assert (meta.partition, meta.timestamp) == (2, 1_600_000_000_000)
        results = [await d for d in deliveries]
    by_key = {}
    for i, m in enumerate(results):
        by_key.setdefault(i % 10, set()).add(m.partition)
    assert all(len(ps) == 1 for ps in by_key.values())  # a key always lands on one partition
    records = await _read_all(inproc, "rt")
    assert len(records) == 501
    found = {(r.partition, r.offset): r for r in records}
    for i, m in enumerate(results):
        r = found[(m.partition, m.offset)]
        assert (r.key, r.value, r.headers) == (f"key-{i % 10}".encode(), f"value-{i}".encode(), (("n", str(i).encode()),))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compressed_batches_round_trip(inproc, codec):
    async with Producer("inproc:9092", **_options(inproc, compression=codec)) as producer:
        for i in range(300):
            producer.send_nowait("codec", b"x" * 50 + str(i).encode(), partition=0) if i else \
                await producer.send("codec", b"x" * 50 + b"0", partition=0)
    records = await _read_all(inproc, "codec", 1)
    assert [r.value for r in records] == [b"x" * 50 + str(i).encode() for i in range(300)]


async def test_a_lost_answer_is_retried_and_written_once(inproc):
    """The broker appends, the answer is lost with the connection: the retry is deduplicated."""
    inproc.inject(once(_is_produce, lambda r: "lose-answer", times=2))
    async with Producer("inproc:9092", **_options(inproc, linger_ms=0)) as producer:
        deliveries = [await producer.send("dedupe", b"%d" % i, partition=0) for i in range(200)]
        offsets = [(await d).offset for d in deliveries]
        assert producer.statistics().retries >= 1
    assert offsets == list(range(200))
    records = await _read_all(inproc, "dedupe", 1)
    assert [r.value for r in records] == [b"%d" % i for i in range(200)]  # no duplicates, in order


async def test_not_leader_refreshes_metadata_then_retries(inproc):
    inproc.inject(once(_is_produce, produce_error(ErrorCode.not_leader_or_follower)))
    metadata_requests = []
    inproc.inject(lambda r: metadata_requests.append(r) if r.api_key == ApiKey.METADATA else None)
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        await producer.partitions_for("moved")
        before = len(metadata_requests)
        meta = await (await producer.send("moved", b"v", partition=1))
    assert meta.offset == 0
    assert len(metadata_requests) > before


async def test_non_retriable_errors_fail_the_delivery_and_flush_reports_unseen_ones(inproc):
    inproc.inject(once(_is_produce, produce_error(ErrorCode.message_too_large), times=2))
    async with Producer("inproc:9092", **_options(inproc)) as producer:
        seen = await producer.send("big", b"v", partition=0)
        with pytest.raises(RecordTooLargeError) as info:
            await seen
        assert info.value.code == ErrorCode.message_too_large and not info.value.retriable
        producer.send_nowait("big", b"w", partition=0)  # fire and forget
        with pytest.raises(RecordTooLargeError):
            await producer.flush()
        await producer.flush()  # reported once


async def test_a_broker_that_never_answers_hits_the_delivery_timeout(inproc):
    inproc.inject(lambda r: "hang" if _is_produce(r) else None)
    async with Producer("inproc:9092", **_options(inproc, request_timeout_ms=300, delivery_timeout_ms=900)) as producer:
        delivery = await producer.send("slow", b"v", partition=0)
        start = trio.current_time()
        with trio.fail_after(5), pytest.raises(KafkaTimeoutError) as info:
            await delivery
        assert trio.current_time() - start < 2.5
        assert info.value.retriable
        await producer.flush()  # the failure was seen above, so flush does not repeat it


async def test_acks_zero_sends_without_answers(inproc):
    async with Producer("inproc:9092", **_options(inproc, acks=0, idempotence=False)) as producer:
        metas = [await d for d in [await producer.send("fire", b"%d" % i, partition=0) for i in range(50)]]
    assert {m.offset for m in metas} == {-1}
    with trio.fail_after(10):
        while len(await _read_all(inproc, "fire", 1)) < 50:
            await trio.sleep(0.05)


async def test_close_delivers_everything_sent_without_waiting(inproc):
    async with Producer("inproc:9092", **_options(inproc, linger_ms=1000)) as producer:
        await producer.partitions_for("nowait")
        for i in range(5000):
            producer.send_nowait("nowait", b"%d" % i, key=b"%d" % (i % 7))
    assert len(await _read_all(inproc, "nowait")) == 5000


async def test_send_nowait_holds_records_until_metadata_and_refuses_when_full(inproc):
    async with Producer("inproc:9092", **_options(inproc, max_buffer_bytes=2000, batch_size=500,
                                                  linger_ms=50)) as producer:
        assert producer.send_nowait("room", b"before metadata", partition=1) is None  # held, then sent
        await producer.flush()
        assert producer.statistics().records_sent == 1
        sent = 0
        with pytest.raises(trio.WouldBlock):
            for _ in range(100):
                producer.send_nowait("room", b"x" * 100, partition=0)
                sent += 1
        assert 0 < sent < 100
        await (await producer.send("room", b"last", partition=0))  # waits for room
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send_nowait("room", b"v", partition=99)  # metadata known: refused at once
        producer.send_nowait("fresh", b"v", partition=99)  # held: fails once metadata arrives
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.flush()  # the fire-and-forget failure is not lost
    with pytest.raises(ClientClosedError):
        producer.send_nowait("room", b"after close")
    records = await _read_all(inproc, "room")
    assert sorted(r.value for r in records if r.partition == 1) == [b"before metadata"]


async def test_sticky_partition_moves_with_each_batch(inproc):
    async with Producer("inproc:9092", **_options(inproc, batch_size=1000, linger_ms=1000)) as producer:
        await producer.partitions_for("sticky")
        parts = [(await producer.send("sticky", b"x" * 100)).partition for _ in range(60)]
    runs = [parts[0]]
    for p in parts[1:]:
        if p != runs[-1]:
            runs.append(p)
    assert len(runs) > 3  # it moved several times
    assert len(parts) / len(runs) > 3  # but records came in runs (whole batches)


async def test_acks_one_gets_offsets_without_idempotence(inproc):
    async with Producer("inproc:9092", **_options(inproc, acks=1, idempotence=False)) as producer:
        metas = [await d for d in [await producer.send("one", b"%d" % i, partition=0) for i in range(20)]]
        assert producer.statistics().producer_id == -1
    assert [m.offset for m in metas] == list(range(20))
