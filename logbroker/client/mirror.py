"""Copy topics from one Kafka-compatible broker to another, record for record.

Keys, values, headers and timestamps are kept, and each record goes to the
partition of the same number, so per-key order and partitioning survive the
move (offsets do not: the target numbers its own log). Missing target topics
are created with the source's partition count and topic configs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field

import trio

from .admin import Admin
from .consumer import Consumer
from .producer import Producer
from .types import TopicPartition

__all__ = ["MirrorResult", "mirror"]

log = logging.getLogger("logbroker.client")


@dataclass(slots=True)
class MirrorResult:
    """Records copied per topic."""

    copied: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.copied.values())


async def mirror(source: str, target: str, topics: list[str], *, follow: bool = False,
                 progress: Callable[[int], object] | None = None, **producer_options: Any) -> MirrorResult:
    """Copy ``topics`` from ``source`` to ``target`` from their beginning up to the
    end seen at the start (or forever with ``follow``). ``progress(copied)`` is
    called now and then. Returns how many records were copied per topic.
    """
    result = MirrorResult()
    async with Admin(source) as src_admin, Admin(target) as dst_admin:
        described = await src_admin.describe_topics(topics, configs=True)
        existing = set(await dst_admin.list_topics())
        for topic in described:
            if topic.name not in existing:
                await dst_admin.create_topic(topic.name, len(topic.partitions),
                                             configs={k: v for k, v in topic.configs.items() if v is not None})
                log.info("created %s on the target with %d partitions", topic.name, len(topic.partitions))
        partitions = [TopicPartition(t.name, p.partition) for t in described for p in t.partitions]
        ends = {tp: a.offset for tp, a in (await src_admin.list_offsets({tp: "latest" for tp in partitions})).items()}
    remaining = {tp for tp in partitions if ends[tp] > 0 or follow}
    result.copied = {t.name: 0 for t in described}
    if not remaining:
        return result
    async with Consumer(source, enable_auto_commit=False, auto_offset_reset="earliest") as consumer, \
            Producer(target, **producer_options) as producer:
        consumer.assign(sorted(remaining))
        await consumer.seek_to_beginning(*sorted(remaining))
        done: set[TopicPartition] = set()
        since_report = 0
        while follow or len(done) < len(remaining):
            batch = []
            with trio.move_on_after(1):
                batch = await consumer.getmany(10_000)
            for record in batch:
                tp = TopicPartition(record.topic, record.partition)
                if not follow and record.offset >= ends[tp]:
                    done.add(tp)
                    continue
                await producer.send(record.topic, record.value, record.key, partition=record.partition,
                                    headers=record.headers, timestamp_ms=record.timestamp)
                result.copied[record.topic] += 1
                since_report += 1
                if not follow and record.offset + 1 >= ends[tp]:
                    done.add(tp)
            if progress is not None and since_report >= 10_000:
                progress(result.total)
                since_report = 0
            if not follow:  # compaction may leave the last offsets empty: trust the position
                for tp in remaining - done:
                    if await consumer.position(tp) >= ends[tp]:
                        done.add(tp)
        await producer.flush()
    if progress is not None:
        progress(result.total)
    return result
