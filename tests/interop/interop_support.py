"""Uniform, synchronous wrappers around kafka-python, aiokafka and confluent-kafka.

Every interop test is written once against these wrappers and parametrized over
the three clients, so a failure names the client and the broker behaviour, not
the glue. The wrappers only translate; they never retry or hide errors.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from brokerproc import unique_topic as unique_topic, wait_until as wait_until  # noqa: E402

KP = "kafka-python"
AIO = "aiokafka"
CK = "confluent-kafka"
CLIENTS = (KP, AIO, CK)
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")

CREATE_TIME = 0
LOG_APPEND_TIME = 1






@dataclass(frozen=True)
class Rec:
    """One record as a client saw it (produced-and-acked, or consumed)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int
    timestamp_type: int = CREATE_TIME


# --------------------------------------------------------------------------- admin


def kafka_admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    """Create a topic (kafka-python admin) and wait until every partition has a leader."""
    admin = kafka_admin(bootstrap)
    try:
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1, "configs": dict(configs or {})}}
        )
        wait_until(lambda: _has_leaders(admin, name, partitions), 10, message=f"leaders of {name}")
    finally:
        admin.close()


def _has_leaders(admin, name: str, partitions: int) -> bool:
    topics = [t for t in admin.describe_topics([name]) if t["name"] == name]
    if not topics or topics[0]["error_code"] != 0:
        return False
    parts = topics[0]["partitions"]
    return len(parts) == partitions and all(p["leader_id"] >= 0 for p in parts)


# ------------------------------------------------------------------------ producers


def make_producer(client: str, bootstrap: str, *, compression: str = "none", idempotent: bool | None = None,
                  max_request_size: int | None = None, linger_ms: int = 0, batch_size: int | None = None):
    cls = {KP: KafkaPythonProducer, AIO: AioProducer, CK: ConfluentProducer}[client]
    return cls(bootstrap, compression=compression, idempotent=idempotent, max_request_size=max_request_size,
               linger_ms=linger_ms, batch_size=batch_size)


class KafkaPythonProducer:
    def __init__(self, bootstrap, *, compression, idempotent, max_request_size, linger_ms, batch_size):
        from kafka import KafkaProducer

        config = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms, request_timeout_ms=10000,
                      max_block_ms=10000, delivery_timeout_ms=20000)
        if compression != "none":
            config["compression_type"] = compression
        if idempotent is not None:
            config["enable_idempotence"] = idempotent
        if max_request_size is not None:
            config["max_request_size"] = max_request_size
        if batch_size is not None:
            config["batch_size"] = batch_size
        self.client = KafkaProducer(**config)

    def send_many(self, topic, records, timeout=15.0) -> list[tuple[int, int]]:
        """``records``: dicts of key, value, headers, partition, timestamp_ms. Returns (partition, offset)s."""
        futures = [
            self.client.send(topic, value=r.get("value"), key=r.get("key"), headers=list(r.get("headers") or []),
                             partition=r.get("partition"), timestamp_ms=r.get("timestamp_ms"))
            for r in records
        ]
        self.client.flush(timeout=timeout)
        out = []
        for fut in futures:
            md = fut.get(timeout=timeout)
            out.append((md.partition, md.offset))
        return out

    def close(self):
        self.client.close(timeout=5)


class AioProducer:
    def __init__(self, bootstrap, *, compression, idempotent, max_request_size, linger_ms, batch_size):
        from aiokafka import AIOKafkaProducer

        self.loop = asyncio.new_event_loop()
        config = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms, request_timeout_ms=10000)
        if compression != "none":
            config["compression_type"] = compression
        if idempotent is not None:
            config["enable_idempotence"] = idempotent
        if max_request_size is not None:
            config["max_request_size"] = max_request_size
        if batch_size is not None:
            config["max_batch_size"] = batch_size

        async def start():
            producer = AIOKafkaProducer(**config)
            await producer.start()
            return producer

        self.client = self.run(start())

    def run(self, coro, timeout=20.0):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def send_many(self, topic, records, timeout=15.0) -> list[tuple[int, int]]:
        async def go():
            futures = []
            for r in records:
                futures.append(await self.client.send(
                    topic, value=r.get("value"), key=r.get("key"), headers=list(r.get("headers") or []),
                    partition=r.get("partition"), timestamp_ms=r.get("timestamp_ms")))
            mds = await asyncio.gather(*futures)
            return [(md.partition, md.offset) for md in mds]

        return self.run(go(), timeout)

    def close(self):
        try:
            self.run(self.client.stop(), 10)
        finally:
            self.loop.close()


class ConfluentProducer:
    def __init__(self, bootstrap, *, compression, idempotent, max_request_size, linger_ms, batch_size):
        from confluent_kafka import Producer

        config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
                  "compression.type": compression, "message.timeout.ms": 20000, "socket.timeout.ms": 10000}
        if idempotent is not None:
            config["enable.idempotence"] = idempotent
        if max_request_size is not None:
            config["message.max.bytes"] = max_request_size
        if batch_size is not None:
            config["batch.size"] = batch_size
        self.client = Producer(config)

    def send_many(self, topic, records, timeout=15.0) -> list[tuple[int, int]]:
        results: list = [None] * len(records)

        def report(index):
            def cb(err, msg):
                results[index] = err if err is not None else (msg.partition(), msg.offset())
            return cb

        for i, r in enumerate(records):
            kwargs = {}
            if r.get("partition") is not None:
                kwargs["partition"] = r["partition"]
            if r.get("timestamp_ms") is not None:
                kwargs["timestamp"] = r["timestamp_ms"]
            if r.get("headers"):
                kwargs["headers"] = list(r["headers"])
            self.client.produce(topic, value=r.get("value"), key=r.get("key"), on_delivery=report(i), **kwargs)
        remaining = self.client.flush(timeout)
        assert remaining == 0, f"{remaining} confluent-kafka messages undelivered after {timeout}s"
        for res in results:
            if not isinstance(res, tuple):
                raise AssertionError(f"confluent-kafka delivery failed: {res!r}")
        return results

    def close(self):
        self.client.flush(5)
        self.client = None  # librdkafka's handle is destroyed with its last reference


# ------------------------------------------------------------------------ consumers


def make_consumer(client: str, bootstrap: str, topic: str, partition: int = 0, *,
                  auto_offset_reset: str = "earliest", fetch_max_wait_ms: int = 100):
    """A consumer assigned to one partition, no consumer group. Position starts at ``auto_offset_reset``."""
    cls = {KP: KafkaPythonConsumer, AIO: AioConsumer, CK: ConfluentConsumer}[client]
    return cls(bootstrap, topic, partition, auto_offset_reset=auto_offset_reset, fetch_max_wait_ms=fetch_max_wait_ms)


class KafkaPythonConsumer:
    def __init__(self, bootstrap, topic, partition, *, auto_offset_reset, fetch_max_wait_ms):
        from kafka import KafkaConsumer, TopicPartition

        self.tp = TopicPartition(topic, partition)
        self.client = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset=auto_offset_reset, fetch_max_wait_ms=fetch_max_wait_ms,
                                    request_timeout_ms=max(30000, fetch_max_wait_ms + 5000))
        self.client.assign([self.tp])

    def seek(self, offset):
        self.client.seek(self.tp, offset)

    def seek_to_beginning(self):
        self.client.seek_to_beginning(self.tp)

    def seek_to_end(self):
        self.client.seek_to_end(self.tp)

    def beginning_offset(self):
        return self.client.beginning_offsets([self.tp], timeout_ms=10000)[self.tp]

    def end_offset(self):
        return self.client.end_offsets([self.tp], timeout_ms=10000)[self.tp]

    def offset_for_time(self, ts):
        """(offset, timestamp) of the first record with timestamp >= ts, or None."""
        found = self.client.offsets_for_times({self.tp: ts}, timeout_ms=10000)[self.tp]
        return None if found is None else (found.offset, found.timestamp)

    def poll_once(self, timeout) -> list[Rec]:
        batch = self.client.poll(timeout_ms=int(timeout * 1000))
        return [_rec(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp, r.timestamp_type)
                for recs in batch.values() for r in recs]

    def close(self):
        self.client.close()


class AioConsumer:
    def __init__(self, bootstrap, topic, partition, *, auto_offset_reset, fetch_max_wait_ms):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.loop = asyncio.new_event_loop()
        self.tp = TopicPartition(topic, partition)

        async def start():
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                        auto_offset_reset=auto_offset_reset, fetch_max_wait_ms=fetch_max_wait_ms,
                                        request_timeout_ms=max(40000, fetch_max_wait_ms + 5000))
            await consumer.start()
            consumer.assign([self.tp])
            return consumer

        self.client = self.run(start())

    def run(self, coro, timeout=20.0):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def seek(self, offset):
        self.client.seek(self.tp, offset)

    def seek_to_beginning(self):
        self.run(self.client.seek_to_beginning(self.tp))

    def seek_to_end(self):
        self.run(self.client.seek_to_end(self.tp))

    def beginning_offset(self):
        return self.run(self.client.beginning_offsets([self.tp]))[self.tp]

    def end_offset(self):
        return self.run(self.client.end_offsets([self.tp]))[self.tp]

    def offset_for_time(self, ts):
        found = self.run(self.client.offsets_for_times({self.tp: ts}))[self.tp]
        return None if found is None else (found.offset, found.timestamp)

    def poll_once(self, timeout) -> list[Rec]:
        batch = self.run(self.client.getmany(self.tp, timeout_ms=int(timeout * 1000)), timeout + 10)
        return [_rec(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp, r.timestamp_type)
                for recs in batch.values() for r in recs]

    def close(self):
        try:
            self.run(self.client.stop(), 10)
        finally:
            self.loop.close()


class ConfluentConsumer:
    def __init__(self, bootstrap, topic, partition, *, auto_offset_reset, fetch_max_wait_ms):
        from confluent_kafka import Consumer, TopicPartition

        self._TP = TopicPartition
        self.topic, self.partition = topic, partition
        # confluent-kafka insists on a group.id; with assign() and no commits it is never joined.
        self.client = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"interop-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset, "fetch.wait.max.ms": fetch_max_wait_ms,
            "socket.timeout.ms": max(10000, fetch_max_wait_ms + 5000), "fetch.queue.backoff.ms": 10,
            "enable.partition.eof": False,
        })
        # Start from an explicit logical offset: OFFSET_STORED would ask the group coordinator.
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

        self._assign(OFFSET_BEGINNING if auto_offset_reset == "earliest" else OFFSET_END)

    def _assign(self, offset):
        self.client.assign([self._TP(self.topic, self.partition, offset)])

    def seek(self, offset):
        self._assign(offset)

    def seek_to_beginning(self):
        from confluent_kafka import OFFSET_BEGINNING

        self._assign(OFFSET_BEGINNING)

    def seek_to_end(self):
        from confluent_kafka import OFFSET_END

        self._assign(OFFSET_END)

    def beginning_offset(self):
        return self.client.get_watermark_offsets(self._TP(self.topic, self.partition), timeout=10, cached=False)[0]

    def end_offset(self):
        return self.client.get_watermark_offsets(self._TP(self.topic, self.partition), timeout=10, cached=False)[1]

    def offset_for_time(self, ts):
        [found] = self.client.offsets_for_times([self._TP(self.topic, self.partition, ts)], timeout=10)
        if found.error is not None:
            raise AssertionError(f"offsets_for_times failed: {found.error}")
        return None if found.offset < 0 else (found.offset, None)

    def poll_once(self, timeout) -> list[Rec]:
        msg = self.client.poll(timeout)
        if msg is None:
            return []
        if msg.error() is not None:
            raise AssertionError(f"confluent-kafka consumer error: {msg.error()}")
        ts_type, ts = msg.timestamp()
        return [_rec(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), ts,
                     {1: CREATE_TIME, 2: LOG_APPEND_TIME}.get(ts_type, -1))]

    def close(self):
        self.client.close()


def _rec(partition, offset, key, value, headers, timestamp, timestamp_type) -> Rec:
    return Rec(partition, offset, key, value, tuple((k, v) for k, v in (headers or ())), timestamp, timestamp_type)


def consume(consumer, count: int, timeout: float = 10.0) -> list[Rec]:
    """Poll until ``count`` records arrived (fails on timeout), then return exactly what came."""
    got: list[Rec] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {count} records within {timeout}s: {got!r}")
        got.extend(consumer.poll_once(min(left, 0.5)))
    return got


def consume_nothing(consumer, wait: float = 0.5) -> list[Rec]:
    """Poll for ``wait`` seconds and return whatever arrived (expected: nothing)."""
    got: list[Rec] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        got.extend(consumer.poll_once(min(left, 0.25)))
    return got
