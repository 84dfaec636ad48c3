"""One consumer-group member in its own process, for the interop tests.

    python group_member.py '{"client": "confluent-kafka", "bootstrap": ..., "topic": ..., "group": ...}'

It subscribes, and for every record prints ``{"e": "rec", "p", "o"}``, commits
the next offset synchronously, then prints ``{"e": "ok"|"fail", "p", "o"}``.
Whenever its assignment changes it prints ``{"e": "assign", "parts": [...]}``.
One JSON object per line on stdout, flushed at once, so a parent that
SIGKILLs it knows exactly what was processed and what was committed. A line
``stop`` on stdin closes the consumer (leaving the group) and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

SESSION_MS = 6000
HEARTBEAT_MS = 1000


def emit(**fields) -> None:
    fields["t"] = time.monotonic()  # system-wide on Linux: orders events across members
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Member:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.stop = threading.Event()
        self.parts: list[int] | None = None
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def _watch_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        self.stop.set()

    def report_assignment(self, parts) -> None:
        parts = sorted(parts)
        if parts != self.parts:
            self.parts = parts
            emit(e="assign", parts=parts)


def run_kafka_python(member: Member, spec: dict) -> None:
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError

    consumer = KafkaConsumer(
        spec["topic"], bootstrap_servers=spec["bootstrap"], group_id=spec["group"],
        group_instance_id=spec.get("instance"), auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=100,
    )
    emit(e="started")
    while not member.stop.is_set():
        batches = consumer.poll(timeout_ms=100)
        member.report_assignment(tp.partition for tp in consumer.assignment())
        for tp, records in batches.items():
            for r in records:
                emit(e="rec", p=r.partition, o=r.offset, v=r.value.decode())
                try:
                    consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(r.offset + 1, "", -1)})
                    emit(e="ok", p=r.partition, o=r.offset)
                except KafkaError as exc:
                    emit(e="fail", p=r.partition, o=r.offset, error=type(exc).__name__)
    consumer.close()


def run_confluent(member: Member, spec: dict) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    config = {
        "bootstrap.servers": spec["bootstrap"], "group.id": spec["group"], "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS,
        "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10,
    }
    if spec.get("instance"):
        config["group.instance.id"] = spec["instance"]
    consumer = Consumer(config)
    consumer.subscribe([spec["topic"]])
    emit(e="started")
    while not member.stop.is_set():
        msg = consumer.poll(0.1)
        member.report_assignment(tp.partition for tp in consumer.assignment())
        if msg is None or msg.error():
            continue
        emit(e="rec", p=msg.partition(), o=msg.offset(), v=msg.value().decode())
        try:
            consumer.commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                            asynchronous=False)
            emit(e="ok", p=msg.partition(), o=msg.offset())
        except KafkaException as exc:
            emit(e="fail", p=msg.partition(), o=msg.offset(), error=str(exc))
    consumer.close()


def run_aiokafka(member: Member, spec: dict) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata

    async def main() -> None:
        consumer = AIOKafkaConsumer(
            spec["topic"], bootstrap_servers=spec["bootstrap"], group_id=spec["group"],
            group_instance_id=spec.get("instance"), auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=100,
        )
        await consumer.start()
        emit(e="started")
        try:
            while not member.stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                member.report_assignment(tp.partition for tp in consumer.assignment())
                for tp, records in batches.items():
                    for r in records:
                        emit(e="rec", p=r.partition, o=r.offset, v=r.value.decode())
                        try:
                            await consumer.commit({TopicPartition(tp.topic, tp.partition):
                                                   OffsetAndMetadata(r.offset + 1, "")})
                            emit(e="ok", p=r.partition, o=r.offset)
                        except KafkaError as exc:
                            emit(e="fail", p=r.partition, o=r.offset, error=type(exc).__name__)
        finally:
            await consumer.stop()

    asyncio.run(main())


RUNNERS = {"kafka-python": run_kafka_python, "confluent-kafka": run_confluent, "aiokafka": run_aiokafka}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    member = Member(spec)
    started = time.monotonic()
    RUNNERS[spec["client"]](member, spec)
    emit(e="closed", after=round(time.monotonic() - started, 3))
