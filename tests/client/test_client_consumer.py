"""The consumer against the real broker in this process: positions, seeks, pause, commits,
offset resets, groups and replay."""

from __future__ import annotations

import datetime

import pytest
import trio

from logbroker.client import Admin, Consumer, Producer, TopicPartition
from logbroker.errors import FetchOffsetOutOfRangeError, NoOffsetError

BASE_TS = 1_700_000_000_000


async def _fill(inproc, topic, partitions=3, per_partition=100, *, spacing_ms=1000):
    """Records "p<partition>-<i>" with timestamps BASE_TS + i * spacing_ms."""
    async with Admin("inproc:9092", connector=inproc.connector) as admin:
        await admin.create_topic(topic, partitions)
    async with Producer("inproc:9092", connector=inproc.connector, linger_ms=0) as producer:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send_nowait(topic, f"p{p}-{i}", partition=p, timestamp_ms=BASE_TS + i * spacing_ms)
            await producer.flush()


def _consumer(inproc, **kw):
    kw.setdefault("auto_offset_reset", "earliest")
    return Consumer("inproc:9092", connector=inproc.connector, retry_backoff_ms=10, **kw)


async def _take(consumer, n):
    out = []
    with trio.fail_after(10):
        async for record in consumer:
            out.append(record)
            if len(out) == n:
                return out
    return out


async def test_assign_reads_every_partition_in_offset_order(inproc):
    await _fill(inproc, "t")
    async with _consumer(inproc) as consumer:
        consumer.assign([("t", 0), ("t", 1), ("t", 2)])
        records = await _take(consumer, 300)
    for p in range(3):
        mine = [r for r in records if r.partition == p]
        assert [r.offset for r in mine] == list(range(100))
        assert [r.value for r in mine] == [f"p{p}-{i}".encode() for i in range(100)]
        assert mine[5].timestamp == BASE_TS + 5000
        assert mine[5].datetime == datetime.datetime.fromtimestamp((BASE_TS + 5000) / 1000, datetime.UTC)


async def test_latest_reset_waits_for_new_records(inproc):
    await _fill(inproc, "t", partitions=1, per_partition=10)
    async with _consumer(inproc, auto_offset_reset="latest", fetch_max_wait_ms=100) as consumer:
        consumer.assign([("t", 0)])
        assert await consumer.position(("t", 0)) == 10
        async with Producer("inproc:9092", connector=inproc.connector) as producer:
            await (await producer.send("t", b"new", partition=0))
        (record,) = await _take(consumer, 1)
        assert (record.offset, record.value) == (10, b"new")


async def test_seek_and_position(inproc):
    await _fill(inproc, "t", partitions=1)
    async with _consumer(inproc) as consumer:
        consumer.assign([("t", 0)])
        first = await _take(consumer, 3)
        assert [r.offset for r in first] == [0, 1, 2] and await consumer.position(("t", 0)) == 3
        consumer.seek(("t", 0), 50)
        assert [r.offset for r in await _take(consumer, 2)] == [50, 51]
        await consumer.seek_to_beginning()
        assert (await _take(consumer, 1))[0].offset == 0
        await consumer.seek_to_end(("t", 0))
        assert await consumer.position(("t", 0)) == 100
        await consumer.seek_to_time(datetime.datetime.fromtimestamp((BASE_TS + 42_500) / 1000, datetime.UTC))
        assert (await _take(consumer, 1))[0].offset == 43
        await consumer.seek_to_time(BASE_TS + 10**9)  # after every record: the end
        assert await consumer.position(("t", 0)) == 100
        with pytest.raises(KeyError):
            consumer.seek(("other", 0), 1)


async def test_offsets_queries(inproc):
    await _fill(inproc, "t", partitions=2, per_partition=20)
    async with _consumer(inproc) as consumer:
        tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
        assert await consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        assert await consumer.end_offsets(tps) == {tps[0]: 20, tps[1]: 20}
        found = await consumer.offsets_for_times({tps[0]: BASE_TS + 7000, tps[1]: BASE_TS + 10**9})
        assert found[tps[0]].offset == 7 and found[tps[0]].timestamp == BASE_TS + 7000 and found[tps[1]] is None
        assert await consumer.partitions_for("t") == [0, 1]
        assert "t" in await consumer.topics()


async def test_pause_holds_back_a_partition_until_resume(inproc):
    await _fill(inproc, "t", partitions=2, per_partition=50)
    async with _consumer(inproc) as consumer:
        consumer.assign([("t", 0), ("t", 1)])
        consumer.pause(("t", 1))
        assert consumer.paused() == {TopicPartition("t", 1)}
        got = await _take(consumer, 50)
        assert {r.partition for r in got} == {0}
        with trio.move_on_after(0.3):
            await consumer.getone()
            pytest.fail("a paused partition returned a record")
        consumer.resume(("t", 1))
        got = await _take(consumer, 50)
        assert {r.partition for r in got} == {1} and [r.offset for r in got] == list(range(50))


async def test_commit_and_committed_with_assign(inproc):
    await _fill(inproc, "t", partitions=1, per_partition=30)
    async with _consumer(inproc, group_id="manual", enable_auto_commit=False) as consumer:
        consumer.assign([("t", 0)])
        assert await consumer.committed(("t", 0)) is None
        await _take(consumer, 12)
        await consumer.commit()
        assert await consumer.committed(("t", 0)) == 12
        await consumer.commit({("t", 0): 5})
        assert await consumer.committed(("t", 0)) == 5
    async with _consumer(inproc, group_id="manual", auto_offset_reset="none") as consumer:
        consumer.assign([("t", 0)])
        assert (await _take(consumer, 1))[0].offset == 5  # resumes from the committed offset


async def test_no_offset_with_reset_none_is_an_error_until_seek(inproc):
    await _fill(inproc, "t", partitions=1, per_partition=5)
    async with _consumer(inproc, group_id="fresh", auto_offset_reset="none") as consumer:
        consumer.assign([("t", 0)])
        with trio.fail_after(5), pytest.raises(NoOffsetError):
            await consumer.getone()
        consumer.seek(("t", 0), 3)
        assert (await _take(consumer, 1))[0].offset == 3


async def test_out_of_range_resets_to_earliest_or_reports(inproc):
    await _fill(inproc, "t", partitions=1, per_partition=40)
    async with Admin("inproc:9092", connector=inproc.connector) as admin:
        await admin.delete_records({("t", 0): 20})
    async with _consumer(inproc) as consumer:
        consumer.assign([("t", 0)])
        consumer.seek(("t", 0), 5)  # deleted
        assert (await _take(consumer, 1))[0].offset == 20
    async with _consumer(inproc, auto_offset_reset="none") as consumer:
        consumer.assign([("t", 0)])
        consumer.seek(("t", 0), 5)
        with trio.fail_after(5), pytest.raises(FetchOffsetOutOfRangeError):
            await consumer.getone()


async def test_replay_by_offset_and_by_time(inproc):
    await _fill(inproc, "t", partitions=3, per_partition=100)
    with trio.fail_after(20):
        await _replays(inproc)


async def _replays(inproc):
    async with _consumer(inproc) as consumer:
        records = [r async for r in consumer.replay("t", start=10, stop=20)]
        assert sorted((r.partition, r.offset) for r in records) == [(p, o) for p in range(3) for o in range(10, 20)]
        start = datetime.datetime.fromtimestamp((BASE_TS + 90_000) / 1000, datetime.UTC)
        records = [r async for r in consumer.replay("t", start=start)]  # to the end as of now
        assert sorted((r.partition, r.offset) for r in records) == [(p, o) for p in range(3) for o in range(90, 100)]
        stop = datetime.datetime.fromtimestamp((BASE_TS + 3_000) / 1000, datetime.UTC)
        replay = consumer.replay("t", stop=stop, partitions=[1])
        assert [r.offset async for r in replay] == [0, 1, 2]
        assert replay.bounds == {TopicPartition("t", 1): (0, 3)}
        assert [r async for r in consumer.replay("t", start=500)] == []  # past the end: empty, no wait


async def test_group_rebalance_between_two_members(inproc):
    """Two members split the partitions; when one leaves the other takes everything,
    resuming from the offsets the first committed."""
    await _fill(inproc, "t", partitions=4, per_partition=25)
    options = dict(group_id="g", session_timeout_ms=6000, heartbeat_interval_ms=200, auto_commit_interval_ms=100)
    async with _consumer(inproc, **options) as a:
        await a.subscribe(["t"])
        with trio.fail_after(10):
            assert len(await a.wait_assignment()) == 4
        async with _consumer(inproc, **options) as b:
            await b.subscribe(["t"])
            with trio.fail_after(15):
                while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
                    if a._group is not None and not a._group.stable:
                        await a.wait_assignment()
                    await trio.sleep(0.05)
            assert a.assignment().isdisjoint(b.assignment())
            from_b = await _take(b, 50)
            assert {r.partition for r in from_b} == {tp.partition for tp in b.assignment()}
        # b left (committing what it read); a gets all four and skips b's records
        with trio.fail_after(15):
            while len(a.assignment()) != 4:
                await trio.sleep(0.05)
        rest = await _take(a, 50)
        seen = {(r.partition, r.offset) for r in from_b} | {(r.partition, r.offset) for r in rest}
        assert len(seen) == 100


async def test_cooperative_rebalance_only_moves_what_it_must(inproc):
    """With cooperative-sticky a joining member takes half the partitions; the first
    member keeps the other half throughout (never revoked), seen by the callbacks."""
    await _fill(inproc, "t", partitions=4, per_partition=5)
    options = dict(group_id="coop", session_timeout_ms=6000, heartbeat_interval_ms=200,
                   assignors=("cooperative-sticky",))
    events = []
    async with _consumer(inproc, **options) as a:
        await a.subscribe(["t"], on_assign=lambda tps: events.append(("a+", frozenset(tps))),
                          on_revoke=lambda tps: events.append(("a-", frozenset(tps))))
        with trio.fail_after(10):
            assert len(await a.wait_assignment()) == 4
        async with _consumer(inproc, **options) as b:
            await b.subscribe(["t"])
            with trio.fail_after(15):
                while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
                    await trio.sleep(0.05)
            kept = a.assignment()
    revoked = [tps for kind, tps in events if kind == "a-"]
    assert revoked and all(not (tps & kept) for tps in revoked[:1])  # the kept half was never revoked
    assert events[0] == ("a+", frozenset(TopicPartition("t", p) for p in range(4)))
