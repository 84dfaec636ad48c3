"""Copy topics from one Kafka-compatible broker to another, record for record,
resuming where the last run stopped.

Keys, values, headers and timestamps are kept, and each record goes to the
partition of the same number, so per-key order and partitioning survive the
move (offsets do not: the target numbers its own log). Missing target topics
are created with the source's partition count and topic configs. The source
is read ``read_committed``: records of aborted transactions are not copied.

Progress is kept as MirrorMaker 2 keeps it: per source partition, the next
offset to copy, stored as the committed offsets of a consumer group
(``group_id``, by default ``logbroker-mirror-<target>``). A run starts from
the saved offsets (the log start where there are none, or everywhere with
``from_beginning``). Two guarantees:

* **at-least-once** (default). The group lives on the source. Offsets are
  committed only after the target acknowledged every record below them
  (idempotent producer, ``acks=all``), about once a second, at the end and
  when ``stop`` is set. A crash or a cancel loses nothing; the next run
  re-copies at most the records sent since the last commit.
* **exactly-once** (``exactly_once``; the target must support transactions).
  The offsets of the source live next to the records they describe: the
  producer (transactional id = the group id) sends the records and commits
  the progress *on the target*, as the group's offsets there
  (TxnOffsetCommit), in one transaction. Records and progress become visible
  together or not at all, so consumers of the target reading
  ``read_committed`` see every source record once, across crashes and
  reruns. At start, ``init_transactions`` fences a previous run of the same
  group and aborts its open transaction before the progress is read. After
  each transaction the same offsets are also committed to the group on the
  source (lag monitoring; a later at-least-once run resumes from them); the
  target's progress wins, the source's is used where the target has none.

One mirror per group at a time: two exactly-once runs of a group fence each
other; two at-least-once runs would both copy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from logbroker.errors import InvalidConfigError

from .admin import Admin
from .consumer import Consumer
from .producer import Producer
from .types import ConsumerRecord, TopicPartition

__all__ = ["MirrorResult", "MirrorSettings", "default_group_id", "mirror"]

log = logging.getLogger("logbroker.client")

_BATCH = 10_000


def default_group_id(target: str) -> str:
    """The group that keeps a mirror's progress unless one is named: one per target."""
    return f"logbroker-mirror-{target}"


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    """How :func:`mirror` runs.

    ``follow``: keep copying new records until cancelled (else stop at the end
    seen at the start). ``group_id``: where progress is kept (default
    :func:`default_group_id`). ``from_beginning``: ignore saved progress.
    ``exactly_once``: transactions on the target (see the module). The
    ``*_options`` are client settings (security, timeouts) for each side.
    """

    follow: bool = False
    group_id: str | None = None
    from_beginning: bool = False
    exactly_once: bool = False
    source_options: Mapping[str, Any] = field(default_factory=dict)
    target_options: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_interval_ms: int = 1_000

    def __post_init__(self) -> None:
        if self.checkpoint_interval_ms < 1:
            raise InvalidConfigError(f"checkpoint_interval_ms must be >= 1, got {self.checkpoint_interval_ms}")
        if self.group_id == "":
            raise InvalidConfigError("group_id must not be empty")


@dataclass(frozen=True, slots=True)
class MirrorResult:
    """Records copied per topic, and where the progress is kept."""

    copied: dict[str, int]
    group_id: str
    exactly_once: bool
    resumed: dict[TopicPartition, int] = field(default_factory=dict)
    """Partitions that started from saved progress, and at which source offset."""

    @property
    def total(self) -> int:
        return sum(self.copied.values())


def _committable(offsets: dict[TopicPartition, int]) -> dict[TopicPartition | tuple[str, int], int]:
    return dict(offsets.items())  # the commit APIs also take plain tuples: Mapping's key type is invariant


class _Checkpoint(Protocol):
    """Saves progress: what the target holds, as the next source offset per partition."""

    async def before_send(self) -> None: ...

    async def save(self, offsets: dict[TopicPartition, int]) -> None: ...


class _SourceGroupCheckpoint:
    """At-least-once: flush (every record sent is acknowledged), then commit to the group on the source."""

    def __init__(self, consumer: Consumer, producer: Producer) -> None:
        self._consumer = consumer
        self._producer = producer

    async def before_send(self) -> None:
        pass

    async def save(self, offsets: dict[TopicPartition, int]) -> None:
        await self._producer.flush()
        if offsets:
            await self._consumer.commit(_committable(offsets))


class _TargetTransactionCheckpoint:
    """Exactly-once: records and progress in one transaction on the target."""

    def __init__(self, consumer: Consumer, producer: Producer, group_id: str) -> None:
        self._consumer = consumer
        self._producer = producer
        self._group_id = group_id
        self._open = False

    async def before_send(self) -> None:
        if not self._open:
            await self._producer.begin_transaction()
            self._open = True

    async def save(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets and not self._open:
            return
        await self.before_send()
        if offsets:
            await self._producer.send_offsets_to_transaction(_committable(offsets), self._group_id)
        self._open = False  # committed or failed: either way the next batch begins a new one
        await self._producer.commit_transaction()
        if offsets:  # a copy for monitoring on the source; the target's offsets are the truth
            await self._consumer.commit(_committable(offsets))


class _Run:
    """One mirror run's state: where each partition stands and what was copied."""

    def __init__(self, settings: MirrorSettings, consumer: Consumer, producer: Producer,
                 checkpoint: _Checkpoint, ends: dict[TopicPartition, int]) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.checkpoint = checkpoint
        self.ends = ends
        self.copied: dict[str, int] = {}
        self.safe: dict[TopicPartition, int] = {}
        """Per partition, the offset below which every record is sent (or was not to be copied)."""
        self.saved: dict[TopicPartition, int] = {}
        """What the checkpoint holds."""

    def changed(self) -> dict[TopicPartition, int]:
        return {tp: off for tp, off in self.safe.items() if self.saved.get(tp) != off}

    async def save(self) -> None:
        offsets = self.changed()
        await self.checkpoint.save(offsets)
        self.saved.update(offsets)

    async def copy(self, record: ConsumerRecord) -> None:
        await self.producer.send(record.topic, record.value, record.key, partition=record.partition,
                                 headers=record.headers, timestamp_ms=record.timestamp)
        self.safe[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self.copied[record.topic] += 1

    async def loop(self, pending: set[TopicPartition], stop: trio.Event, report: Callable[[], object]) -> None:
        follow = self.settings.follow
        interval = self.settings.checkpoint_interval_ms / 1000
        next_save = trio.current_time() + interval
        done: set[TopicPartition] = set()
        while (follow or len(done) < len(pending)) and not stop.is_set():
            batch: list[ConsumerRecord] = []
            with trio.move_on_after(0.5):  # also how soon ``stop`` is noticed
                batch = await self.consumer.getmany(_BATCH)
            if batch:
                await self.checkpoint.before_send()
            for record in batch:
                if not follow and record.offset >= self.ends[TopicPartition(record.topic, record.partition)]:
                    continue  # past the end seen at the start: the next run copies it
                await self.copy(record)
            # The whole batch went out: the position also covers what was not a record
            # to copy (compacted gaps, transaction markers, aborted records).
            for tp in pending - done:
                position = await self.consumer.position(tp)
                self.safe[tp] = max(self.safe[tp], position if follow else min(position, self.ends[tp]))
                if not follow and position >= self.ends[tp]:
                    done.add(tp)
            if trio.current_time() >= next_save:
                if self.changed():
                    await self.save()
                    report()
                next_save = trio.current_time() + interval


async def _create_missing(src_admin: Admin, dst_admin: Admin, topics: list[str]) -> list[TopicPartition]:
    """Create on the target the topics it lacks; returns every source partition."""
    described = await src_admin.describe_topics(topics, configs=True)
    existing = set(await dst_admin.list_topics())
    for topic in described:
        if topic.name not in existing:
            await dst_admin.create_topic(topic.name, len(topic.partitions),
                                         configs={k: v for k, v in topic.configs.items() if v is not None})
            log.info("created %s on the target with %d partitions", topic.name, len(topic.partitions))
    return [TopicPartition(t.name, p.partition) for t in described for p in t.partitions]


async def mirror(source: str, target: str, topics: list[str], settings: MirrorSettings | None = None, *,
                 stop: trio.Event | None = None,
                 progress: Callable[[MirrorResult], object] | None = None) -> MirrorResult:
    """Copy ``topics`` from ``source`` to ``target``, from the saved progress (see
    the module) up to the end seen at the start, or with ``follow`` until
    ``stop`` is set. ``progress(result)`` is called after each checkpoint.
    Returns how many records were copied per topic.

    Setting ``stop`` ends the copy early, after saving the progress (within
    about half a second plus the save). Cancelling it saves nothing more: the
    next run copies again what was sent since the last checkpoint
    (at-least-once), or the open transaction is aborted (exactly-once).

    :raises UnknownTopicOrPartitionError: a topic does not exist on the source.
    :raises KafkaError: the brokers refused (the target lacks transactions for
        ``exactly_once``, a login failed...); the progress saved so far stays.
    """
    settings = settings or MirrorSettings()
    group_id = settings.group_id or default_group_id(target)
    src_options = dict(settings.source_options)
    dst_options = dict(settings.target_options)
    async with contextlib.AsyncExitStack() as stack:
        src_admin = await stack.enter_async_context(Admin(source, **src_options))
        dst_admin = await stack.enter_async_context(Admin(target, **dst_options))
        partitions = await _create_missing(src_admin, dst_admin, topics)
        found = {tp.topic for tp in partitions}
        names = [t for t in dict.fromkeys(topics) if t in found]  # in the order asked for
        consumer = await stack.enter_async_context(Consumer(
            source, **{**src_options, "group_id": group_id, "enable_auto_commit": False,
                       "auto_offset_reset": "earliest", "isolation_level": "read_committed",
                       "allow_auto_create_topics": False}))
        producer_options: dict[str, Any] = {**dst_options, "allow_auto_create_topics": False}
        if settings.exactly_once:
            producer_options["transactional_id"] = group_id
        producer = await stack.enter_async_context(Producer(target, **producer_options))
        checkpoint: _Checkpoint
        saved: dict[TopicPartition, int] = {}
        if not settings.from_beginning:
            saved = await src_admin.list_group_offsets(group_id, names)
        if settings.exactly_once:
            # Fences an older run of this group and aborts its open transaction, so
            # the progress read next is what the target really holds.
            await producer.init_transactions()
            checkpoint = _TargetTransactionCheckpoint(consumer, producer, group_id)
            if not settings.from_beginning:
                saved.update(await dst_admin.list_group_offsets(group_id, names))
        else:
            checkpoint = _SourceGroupCheckpoint(consumer, producer)
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        run = _Run(settings, consumer, producer, checkpoint, ends)
        run.copied = {name: 0 for name in names}
        resumed: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = saved.get(tp)
            if offset is not None and offset > ends[tp]:
                log.warning("saved progress of %s[%d] (%d) is past its end (%d): the topic was recreated? "
                            "copying it from the beginning", tp.topic, tp.partition, offset, ends[tp])
                offset = None
            if offset is None:
                offset = starts[tp]
            else:
                resumed[tp] = offset
                run.saved[tp] = offset
            run.safe[tp] = max(offset, starts[tp])
            consumer.seek(tp, run.safe[tp])

        def result() -> MirrorResult:
            return MirrorResult(dict(run.copied), group_id, settings.exactly_once, dict(resumed))

        def report() -> None:
            if progress is not None:
                progress(result())

        pending = {tp for tp in partitions if settings.follow or run.safe[tp] < ends[tp]}
        if pending:
            await run.loop(pending, stop if stop is not None else trio.Event(), report)
        await run.save()  # the end, or stopped; also the offsets of partitions with nothing to copy
        report()
        return result()
    raise AssertionError("unreachable")  # mypy: AsyncExitStack may swallow exceptions
