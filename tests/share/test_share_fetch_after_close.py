"""A ShareFetch parked in the broker for a client that is gone acquires nothing.

A queue consumer's last long poll used to stay parked after it closed (up to
``max_wait_ms``); a record appended meanwhile was acquired for the departed
member, the answer went nowhere, and the record was released later: the
next consumer got it as a second delivery. The broker must not acquire for a
parked ShareFetch whose connection closed, whose session was closed (epoch
-1) or whose member left; our client must not leave one parked when it closes.
"""

import time
import uuid

import trio

from logbroker.client import Admin, Producer, SyncProducer
from logbroker.client import _wire_share as wire
from logbroker.client.cluster import Cluster
from logbroker.client.config import ClientConfig
from logbroker.client.queue import QueueConsumer, SyncQueueConsumer
from logbroker.protocol import ApiKey, ErrorCode

LOCK_MS = 1000  # the least Kafka allows: a record wrongly held comes back (counted) within a second
PARKED_MS = 20_000  # a raw long poll's wait, far beyond every wait of these tests


def _broker(broker_factory, tmp_path):
    config = tmp_path / "share.toml"
    config.write_text(f"group_share_record_lock_duration_ms = {LOCK_MS}\n")
    return broker_factory("--config", str(config))


async def _create_topic(bootstrap):
    async with Admin(bootstrap) as admin:
        await admin.create_topic("jobs", 1)


async def _first_delivery_of(bootstrap, value):
    """The delivery count with which a new member of ``workers`` gets ``value``."""
    with trio.fail_after(20):
        async with QueueConsumer(bootstrap, "jobs", group_id="workers") as queue:
            msg = await queue.get()
            assert msg.value == value
            await msg.ack()
            return msg.delivery_count


# -- our client: closing leaves nothing parked ------------------------------------------


def test_a_record_appended_right_after_a_sync_consumer_closed_is_a_first_delivery(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    trio.run(_create_topic, broker.bootstrap)
    with SyncProducer(broker.bootstrap) as producer:
        with SyncQueueConsumer(broker.bootstrap, "jobs", group_id="workers") as queue:
            time.sleep(0.5)  # joined: the share-partition starts at the end
            producer.send("jobs", b"first").result(timeout=10)
            msg = queue.get(timeout=20)
            assert (msg.value, msg.delivery_count) == (b"first", 1)
            msg.ack()
            time.sleep(0.2)  # the ack went out; the next fetch long-polls
        producer.send("jobs", b"R").result(timeout=10)  # within the closed consumer's max_wait_ms
    assert trio.run(_first_delivery_of, broker.bootstrap, b"R") == 1


async def test_a_record_appended_right_after_a_consumer_closed_by_another_task_is_a_first_delivery(
        broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    await _create_topic(broker.bootstrap)
    acked = trio.Event()

    async def consume(task_status=trio.TASK_STATUS_IGNORED):
        async with QueueConsumer(broker.bootstrap, "jobs", group_id="workers") as queue:
            task_status.started(queue)
            async for msg in queue:  # ends (cancelled) when another task closes the queue
                await msg.ack()
                acked.set()

    async with Producer(broker.bootstrap) as producer:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                queue = await nursery.start(consume)
                await trio.sleep(0.5)
                await producer.send("jobs", b"first")
                await acked.wait()
                await trio.sleep(0.2)  # the next fetch long-polls
                await queue.close()
                await producer.send("jobs", b"R")  # within the closed consumer's max_wait_ms
    assert await _first_delivery_of(broker.bootstrap, b"R") == 1


# -- the broker: a parked ShareFetch of a client that is gone ---------------------------


class _RawMember:
    """One share-group member speaking the protocol itself: ``parked`` sends a
    ShareFetch that long-polls on its own connection, ``lane``."""

    def __init__(self, cluster: Cluster, topic_id: uuid.UUID) -> None:
        self.cluster = cluster
        self.topic_id = topic_id
        self.member_id = str(uuid.uuid4())
        self.epoch = 0

    @property
    def node(self) -> int:
        return self.cluster.leader("jobs", 0)

    async def heartbeat(self, member_epoch: int) -> None:
        conn = await self.cluster.connection(self.node)
        version = conn.version(ApiKey.SHARE_GROUP_HEARTBEAT)
        body = wire.share_group_heartbeat_request(
            version, group_id="workers", member_id=self.member_id, member_epoch=member_epoch,
            subscribed_topic_names=["jobs"] if member_epoch == 0 else None)
        answer = wire.parse_share_group_heartbeat(await conn.request(ApiKey.SHARE_GROUP_HEARTBEAT, version, body))
        assert answer.error_code == ErrorCode.none

    async def fetch(self, lane: str, max_wait_ms: int):
        """Send a ShareFetch of the next epoch; return its connection and its pending answer."""
        conn = await self.cluster.connection(self.node, lane)
        version = conn.version(ApiKey.SHARE_FETCH)
        body = wire.share_fetch_request(
            version, group_id="workers", member_id=self.member_id, session_epoch=self.epoch,
            max_wait_ms=max_wait_ms, max_bytes=1 << 20, max_records=500, partitions={self.topic_id: {0: ()}})
        self.epoch += 1
        return conn, await conn.send(ApiKey.SHARE_FETCH, version, body)

    async def close_session(self) -> None:
        conn = await self.cluster.connection(self.node)
        version = conn.version(ApiKey.SHARE_ACKNOWLEDGE)
        body = wire.share_acknowledge_request(
            version, group_id="workers", member_id=self.member_id, session_epoch=-1, partitions={})
        assert wire.parse_share_acknowledge(await conn.request(ApiKey.SHARE_ACKNOWLEDGE, version, body)) == 0


async def _parked_member(bootstrap, nursery):
    """A member of ``workers`` with an open share session whose ShareFetch now
    long-polls on lane ``parked``; returns it, that connection and the pending answer."""
    cluster = Cluster(ClientConfig.from_options(bootstrap, {}), nursery)
    meta = await cluster.refresh(["jobs"])
    member = _RawMember(cluster, uuid.UUID(str(meta.topics["jobs"].topic_id)))
    await member.heartbeat(0)
    conn, pending = await member.fetch("parked", 0)  # opens the session; the partition starts at the end
    assert wire.parse_share_fetch(await conn.answer(pending)).error_code == ErrorCode.none
    conn, pending = await member.fetch("parked", PARKED_MS)
    await trio.sleep(0.3)  # parked in the broker
    return member, conn, pending


async def _empty_answer_soon(conn, pending):
    """The parked fetch's answer, which must come long before its wait ends and acquire nothing."""
    with trio.fail_after(PARKED_MS / 1000 / 4):
        answer = wire.parse_share_fetch(await conn.answer(pending, extra_timeout_ms=PARKED_MS))
    assert answer.error_code == ErrorCode.none
    assert [p.acquired for p in answer.partitions if p.acquired] == []


async def test_a_parked_share_fetch_whose_connection_closed_acquires_nothing(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    await _create_topic(broker.bootstrap)
    async with trio.open_nursery() as nursery:
        member, conn, _ = await _parked_member(broker.bootstrap, nursery)
        await conn.aclose()  # the client is gone; its session and membership are not (yet)
        await trio.sleep(0.2)
        async with Producer(broker.bootstrap) as producer:
            await producer.send("jobs", b"R")
        assert await _first_delivery_of(broker.bootstrap, b"R") == 1
        await member.cluster.aclose()


async def test_a_parked_share_fetch_whose_session_was_closed_answers_at_once_with_nothing(
        broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    await _create_topic(broker.bootstrap)
    async with trio.open_nursery() as nursery:
        member, conn, pending = await _parked_member(broker.bootstrap, nursery)
        await member.close_session()  # epoch -1, on another connection
        async with Producer(broker.bootstrap) as producer:
            await producer.send("jobs", b"R")
        await _empty_answer_soon(conn, pending)
        assert await _first_delivery_of(broker.bootstrap, b"R") == 1
        await member.cluster.aclose()


async def test_a_parked_share_fetch_of_a_member_that_left_answers_at_once_with_nothing(broker_factory, tmp_path):
    broker = _broker(broker_factory, tmp_path)
    await _create_topic(broker.bootstrap)
    async with trio.open_nursery() as nursery:
        member, conn, pending = await _parked_member(broker.bootstrap, nursery)
        await member.heartbeat(-1)  # leaves; its share session stays open (for late acknowledgements)
        async with Producer(broker.bootstrap) as producer:
            await producer.send("jobs", b"R")
        await _empty_answer_soon(conn, pending)
        assert await _first_delivery_of(broker.bootstrap, b"R") == 1
        await member.cluster.aclose()
