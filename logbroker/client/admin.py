"""The async admin client: topics, configs, groups, offsets, transactions.

Usage::

    async with Admin("localhost:9092") as admin:
        await admin.create_topic("events", partitions=6, configs={"retention.ms": "86400000"})
        print(await admin.describe_topics(["events"]))

Topic operations go to the controller (any broker answers them on a single
node); group operations to each group's coordinator; ListOffsets to each
partition's leader. Every method raises a typed
:class:`~logbroker.errors.KafkaError` for the first per-item error, except
the plural ``create_topics``/``delete_topics``/``delete_groups``, which
return the error (or None) per item so one failure does not hide the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from logbroker.errors import ClientClosedError, GroupError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import ApiKey, ErrorCode

import trio

from . import _wire, _wire_admin, _wire_share
from ._errors import kafka_error, raise_for_code
from ._offsets import EARLIEST, LATEST, list_offsets, timestamp_ms
from ._tasks import close_background, open_background
from ._wire_admin import ItemError
from .cluster import Cluster
from .config import AdminConfig
from .connection import Connector
from .types import (
    ConsumerGroupDescription,
    GroupDescription,
    GroupListing,
    LogDirDescription,
    NewTopic,
    OffsetAndTimestamp,
    ProducerDescription,
    SharePartitionProgress,
    TopicDescription,
    TopicPartition,
    TransactionDescription,
    TransactionListing,
)

__all__ = ["Admin"]

_COORDINATOR_CODES = frozenset(
    {ErrorCode.coordinator_not_available, ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress}
)
OffsetSpec = int | str | datetime.datetime
"""An offset to list or reset to: "earliest", "latest", a datetime, or (for resets) an offset."""
_V = TypeVar("_V")
PartitionMap = Mapping[TopicPartition, _V] | Mapping[tuple[str, int], _V]
"""Partitions (TopicPartition or plain (topic, partition) tuples) to values."""
MakeBody = Callable[[int], Any]
"""Builds a request body for the negotiated version (a ``_wire`` request function)."""


class Admin:
    """An async admin client. Use as ``async with Admin(bootstrap, **options)``."""

    def __init__(self, bootstrap: str | None = None, *, config: AdminConfig | None = None,
                 connector: Connector | None = None, **options: Any) -> None:
        if config is None:
            config = AdminConfig.from_options(bootstrap, options)
        elif options or bootstrap is not None:
            raise TypeError("pass either config= or options, not both")
        self.config = config
        self._connector = connector
        self._cluster: Cluster | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Admin bootstrap={self.config.bootstrap!r} closed={self._closed}>"

    async def __aenter__(self) -> Admin:
        if self._stack is not None:
            raise RuntimeError("an Admin can be entered only once")
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        try:
            nursery = await open_background(self._stack)
            self._cluster = Cluster(self.config, nursery, connector=self._connector)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.close()
        finally:
            assert self._stack is not None
            await close_background(self._stack, exc)

    async def close(self) -> None:
        """Close every connection. Idempotent."""
        self._closed = True
        if self._cluster is not None:
            with trio.CancelScope(shield=True):
                await self._cluster.aclose()

    @property
    def cluster(self) -> Cluster:
        if self._closed:
            raise ClientClosedError("the admin client is closed")
        if self._cluster is None:
            raise RuntimeError("use the admin client inside 'async with Admin(...)'")
        return self._cluster

    async def _call(self, api_key: ApiKey, make_body: MakeBody, *, node: int | None = None) -> Any:
        """Send to ``node`` (default: the controller, else any broker), retrying connection errors.

        ``make_body`` is called (once per attempt) before this returns, so a lambda
        may use the caller's loop variables.
        """
        cluster = self.cluster
        deadline = trio.current_time() + self.config.request_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            try:
                if node is not None:
                    conn = await cluster.connection(node)
                else:
                    if not cluster.metadata.brokers:
                        await cluster.refresh()
                    controller = cluster.metadata.controller_id
                    conn = await (cluster.connection(controller) if controller in cluster.metadata.brokers
                                  else cluster.any_connection())
                version = conn.version(api_key)
                return await conn.request(api_key, version, make_body(version),
                                          extra_timeout_ms=self.config.operation_timeout_ms)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                # a refused certificate, or no broker ever reached within the bootstrap timeout, will not
                # change by retrying
                if not exc.retriable or not cluster.bootstrapped:
                    raise
                if trio.current_time() + self.config.backoff(attempt) > deadline:
                    raise
                await trio.sleep(self.config.backoff(attempt))

    # -- topics ------------------------------------------------------------------------

    async def create_topics(self, topics: Iterable[NewTopic], *, validate_only: bool = False
                            ) -> dict[str, KafkaError | None]:
        """Create ``topics``; returns name -> None (created) or the error for that topic."""
        topics = list(topics)
        rows: list[tuple[str, int, int, Mapping[str, str]]] = [
            (t.name, t.partitions, t.replication_factor, t.configs) for t in topics]
        answer = await self._call(
            ApiKey.CREATE_TOPICS,
            lambda v: _wire.create_topics_request(v, rows, timeout_ms=self.config.operation_timeout_ms,
                                                  validate_only=validate_only),
        )
        result = {e.name: _topic_error(e) for e in _wire_admin.parse_create_topics(answer)}
        await self.cluster.refresh([t.name for t in topics if result.get(t.name) is None])
        return result

    async def create_topic(self, name: str, partitions: int = -1, *, replication_factor: int = -1,
                           configs: Mapping[str, str] | None = None) -> None:
        """Create one topic (-1: the broker's default partitions / replication).

        :raises TopicAlreadyExistsError: it exists.
        :raises KafkaError: another refusal (INVALID_PARTITIONS, INVALID_CONFIG...).
        """
        errors = await self.create_topics([NewTopic(name, partitions, replication_factor, dict(configs or {}))])
        if errors.get(name) is not None:
            raise errors[name]  # type: ignore[misc]  # mypy does not narrow a dict lookup

    async def delete_topics(self, names: Iterable[str]) -> dict[str, KafkaError | None]:
        """Delete topics; returns name -> None (deleted) or the error for that topic."""
        names = list(names)
        answer = await self._call(
            ApiKey.DELETE_TOPICS,
            lambda v: _wire.delete_topics_request(v, names, timeout_ms=self.config.operation_timeout_ms),
        )
        return {e.name: _topic_error(e) for e in _wire_admin.parse_delete_topics(answer)}

    async def delete_topic(self, name: str) -> None:
        """Delete one topic. :raises UnknownTopicOrPartitionError: it does not exist."""
        errors = await self.delete_topics([name])
        if errors.get(name) is not None:
            raise errors[name]  # type: ignore[misc]  # mypy does not narrow a dict lookup

    async def list_topics(self, *, internal: bool = False) -> list[str]:
        """Sorted topic names (internal topics such as __consumer_offsets only if asked)."""
        meta = await self.cluster.refresh(all_topics=True)
        return sorted(name for name, info in meta.topics.items()
                      if not info.error_code and (internal or not info.internal))

    async def describe_topics(self, names: Iterable[str] | None = None, *, configs: bool = False
                              ) -> list[TopicDescription]:
        """Partitions (leader, replicas, ISR) of ``names`` (default: all), optionally with configs.

        :raises UnknownTopicOrPartitionError: a named topic does not exist.
        """
        cluster = self.cluster
        if names is None:
            meta = await cluster.refresh(all_topics=True)
            wanted = sorted(n for n, i in meta.topics.items() if not i.error_code and not i.internal)
        else:
            wanted = list(names)
            meta = await cluster.refresh(wanted)
        out = []
        found_configs = await self.describe_configs(wanted) if configs and wanted else {}
        for name in wanted:
            info = meta.topics.get(name)
            if info is None:
                raise kafka_error(ErrorCode.unknown_topic_or_partition, context=f"topic {name!r}")
            raise_for_code(info.error_code, context=f"topic {name!r}")
            out.append(TopicDescription(name, info.partitions, info.topic_id, info.internal,
                                        found_configs.get(name, {})))
        return out

    async def describe_configs(self, topics: Iterable[str], *, include_defaults: bool = False,
                               keys: Iterable[str] | None = None) -> dict[str, dict[str, str | None]]:
        """Topic name -> {config name: value}; only non-default values unless
        ``include_defaults``. ``keys``: ask for these configs only (every value
        the broker has of them is returned, default or not)."""
        names = list(topics)
        wanted = None if keys is None else list(keys)
        if wanted is not None:
            include_defaults = True
        answer = await self._call(ApiKey.DESCRIBE_CONFIGS,
                                  lambda v: _wire.describe_configs_request(v, names, keys=wanted))
        result: dict[str, dict[str, str | None]] = {}
        for error, entries in _wire_admin.parse_describe_configs(answer):
            raise_for_code(error.error_code, error.error_message, context=f"topic {error.name!r}")
            result[error.name] = {c.name: c.value for c in entries if include_defaults or not c.is_default}
        return result

    async def alter_share_group_offsets(self, group_id: str,
                                        offsets: PartitionMap[int]) -> None:
        """Move an empty share group's start offsets (``kafka-share-groups.sh
        --reset-offsets``): records from there on are delivered again, those
        before are skipped.

        :raises GroupError: NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND.
        :raises KafkaError: OFFSET_OUT_OF_RANGE outside [log start, log end].
        """
        by_topic: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for tp, offset in offsets.items():
            tp = TopicPartition(*tp)
            by_topic[tp.topic].append((tp.partition, offset))
        answer = await self._group_call(group_id, ApiKey.ALTER_SHARE_GROUP_OFFSETS,
                                        lambda v: _wire.alter_share_group_offsets_request(v, group_id, by_topic))
        group, parts = _wire_share.parse_alter_share_group_offsets(answer, group_id)
        raise_for_code(group.error_code, group.error_message, context=f"share group {group_id!r}")
        for p in parts:
            raise_for_code(p.error_code, context=f"share group {group_id!r} {p.tp.topic}[{p.tp.partition}]")

    async def describe_group_configs(self, group_id: str) -> dict[str, str | None]:
        """A share group's configs (``share.auto.offset.reset``,
        ``errors.deadletterqueue.topic.name``...): name -> effective value."""
        answer = await self._call(ApiKey.DESCRIBE_CONFIGS,
                                  lambda v: _wire.describe_configs_request(v, [group_id], _wire.GROUP_RESOURCE))
        result: dict[str, str | None] = {}
        for error, entries in _wire_admin.parse_describe_configs(answer):
            raise_for_code(error.error_code, error.error_message, context=f"group {group_id!r}")
            result.update((c.name, c.value) for c in entries)
        return result

    async def alter_group_configs(self, group_id: str, configs: Mapping[str, str | None]) -> None:
        """Set group configs (None deletes one: back to the broker's setting).

        :raises KafkaError: INVALID_CONFIG for an unknown name or a bad value.
        """
        answer = await self._call(ApiKey.INCREMENTAL_ALTER_CONFIGS,
                                  lambda v: _wire.incremental_alter_configs_request(v, group_id, configs,
                                                                                    _wire.GROUP_RESOURCE))
        for e in _wire_admin.parse_incremental_alter_configs(answer):
            raise_for_code(e.error_code, e.error_message, context=f"group {group_id!r}")

    async def alter_topic(self, name: str, *, partitions: int | None = None,
                          configs: Mapping[str, str | None] | None = None) -> None:
        """Grow ``name`` to ``partitions`` and/or set configs (None deletes one, back to its default).

        :raises KafkaError: INVALID_PARTITIONS (not an increase), INVALID_CONFIG...
        """
        if partitions is not None:
            answer = await self._call(
                ApiKey.CREATE_PARTITIONS,
                lambda v: _wire.create_partitions_request(v, {name: partitions},
                                                          timeout_ms=self.config.operation_timeout_ms),
            )
            for e in _wire_admin.parse_create_partitions(answer):
                raise_for_code(e.error_code, e.error_message, context=f"topic {e.name!r}")
        if configs:
            answer = await self._call(ApiKey.INCREMENTAL_ALTER_CONFIGS,
                                      lambda v: _wire.incremental_alter_configs_request(v, name, configs))
            for e in _wire_admin.parse_incremental_alter_configs(answer):
                raise_for_code(e.error_code, e.error_message, context=f"topic {e.name!r}")
        await self.cluster.refresh([name])

    # -- offsets ------------------------------------------------------------------------

    async def list_offsets(self, specs: PartitionMap[OffsetSpec]
                           ) -> dict[TopicPartition, OffsetAndTimestamp]:
        """Offsets per partition: spec ``"earliest"``, ``"latest"``, a datetime or epoch ms.

        A time gives the first offset at or after it (-1 when there is none).
        """
        targets = {TopicPartition(*tp): _list_target(spec) for tp, spec in specs.items()}
        return await list_offsets(self.cluster, targets)

    async def topic_offsets(self, topic: str, spec: OffsetSpec = "latest") -> dict[int, int]:
        """partition -> offset of ``spec`` for every partition of ``topic``."""
        info = await self.cluster.topic(topic)
        answers = await self.list_offsets({TopicPartition(topic, p.partition): spec for p in info.partitions})
        return {tp.partition: a.offset for tp, a in sorted(answers.items())}

    # -- groups ------------------------------------------------------------------------

    async def _group_call(self, group_id: str, api_key: ApiKey, make_body: MakeBody) -> Any:
        cluster = self.cluster
        for attempt in range(1, 6):
            node = await cluster.coordinator(group_id)
            answer = await self._call(api_key, make_body, node=node)
            code = _wire_admin.top_error_code(answer, group_id)
            if code in _COORDINATOR_CODES:
                cluster.forget_coordinator(group_id)
                await trio.sleep(self.config.backoff(attempt))
                continue
            return answer
        return answer

    async def list_groups(self, *, types: Iterable[str] = ()) -> list[GroupListing]:
        """Every group on every broker; with ``types`` only groups of those types
        ("classic", "consumer", "share": ListGroups v5's filter, applied here for older brokers).
        """
        cluster = self.cluster
        meta = await cluster.refresh()
        wanted = {t.lower() for t in types}
        groups: dict[str, GroupListing] = {}
        for node in meta.brokers:
            answer = await self._call(ApiKey.LIST_GROUPS, lambda v: _wire.list_groups_request(v, sorted(wanted)),
                                      node=node)
            code, listings = _wire_admin.parse_list_groups(answer)
            raise_for_code(code, context="ListGroups")
            for listing in listings:
                if not wanted or listing.kind in wanted:
                    groups[listing.group_id] = listing
        return sorted(groups.values(), key=lambda g: g.group_id)

    async def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        """State, protocol and members (with decoded assignments) of each group."""
        out = []
        for group_id in group_ids:
            answer = await self._group_call(group_id, ApiKey.DESCRIBE_GROUPS,
                                            lambda v: _wire.describe_groups_request(v, [group_id]))
            for g in _wire_admin.parse_describe_groups(answer):
                raise_for_code(g.error_code, context=f"group {g.group_id!r}")
                out.append(g)
        return out

    async def describe_consumer_groups(self, group_ids: Iterable[str]) -> list[ConsumerGroupDescription]:
        """Groups of Kafka 4's consumer protocol (ConsumerGroupDescribe): epochs, assignor and,
        per member, its subscription and current and target assignments.

        :raises GroupError: GROUP_ID_NOT_FOUND for a group that is not a consumer group
            (a classic group: use :meth:`describe_groups`).
        :raises KafkaError: UNSUPPORTED_VERSION when the broker lacks ConsumerGroupDescribe.
        """
        out = []
        for group_id in group_ids:
            answer = await self._group_call(group_id, ApiKey.CONSUMER_GROUP_DESCRIBE,
                                            lambda v: _wire.consumer_group_describe_request(v, [group_id]))
            errors, groups = _wire_admin.parse_consumer_group_describe(answer)
            for e in errors:
                raise_for_code(e.error_code, e.error_message, context=f"group {e.name!r}")
            out.extend(groups)
        return out

    async def delete_groups(self, group_ids: Iterable[str]) -> dict[str, KafkaError | None]:
        """Delete groups (they must have no members); returns group -> None or its error."""
        result: dict[str, KafkaError | None] = {}
        for group_id in group_ids:
            answer = await self._group_call(group_id, ApiKey.DELETE_GROUPS,
                                            lambda v: _wire.delete_groups_request(v, [group_id]))
            for e in _wire_admin.parse_delete_groups(answer):
                result[e.name] = kafka_error(e.error_code, context=f"group {e.name!r}") if e.error_code else None
        return result

    async def list_group_offsets(self, group_id: str, topics: Iterable[str] | None = None
                                 ) -> dict[TopicPartition, int]:
        """The group's committed offsets (all, or those of ``topics``)."""
        partitions = None
        if topics is not None:
            partitions = {}
            for t in topics:
                info = await self.cluster.topic(t)
                partitions[t] = [p.partition for p in info.partitions]
        answer = await self._group_call(group_id, ApiKey.OFFSET_FETCH,
                                        lambda v: _wire.offset_fetch_request(v, group_id, partitions))
        code, committed = _wire_admin.parse_offset_fetch(answer)
        raise_for_code(code, context=f"OffsetFetch for group {group_id!r}")
        return committed

    async def reset_offsets(self, group_id: str, topic: str, to: OffsetSpec, *,
                            partitions: Iterable[int] | None = None) -> dict[TopicPartition, int]:
        """Commit new offsets for an *inactive* group, as ``kafka-consumer-groups --reset-offsets`` does.

        ``to`` is ``"earliest"``, ``"latest"``, a datetime (first offset at or
        after it, the end where there is none) or an offset (clamped to the
        log). Returns what was committed.

        :raises GroupError: NON_EMPTY_GROUP when the group has members.
        """
        descriptions = await self.describe_groups([group_id])
        if descriptions and descriptions[0].members:
            raise GroupError(f"group {group_id!r} has {len(descriptions[0].members)} members; stop them first",
                             code=ErrorCode.non_empty_group)
        info = await self.cluster.topic(topic)
        numbers = sorted(partitions) if partitions is not None else [p.partition for p in info.partitions]
        tps = [TopicPartition(topic, p) for p in numbers]
        begin = {tp: a.offset for tp, a in (await self.list_offsets({tp: "earliest" for tp in tps})).items()}
        end = {tp: a.offset for tp, a in (await self.list_offsets({tp: "latest" for tp in tps})).items()}
        if isinstance(to, int) and not isinstance(to, bool):
            target = {tp: min(max(to, begin[tp]), end[tp]) for tp in tps}
        elif to == "earliest":
            target = begin
        elif to == "latest":
            target = end
        else:
            found = await self.list_offsets({tp: to for tp in tps})
            target = {tp: (found[tp].offset if found[tp].offset >= 0 else end[tp]) for tp in tps}
        by_topic: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
        for tp in tps:
            by_topic[tp.topic].append((tp.partition, target[tp], ""))
        answer = await self._group_call(
            group_id, ApiKey.OFFSET_COMMIT,
            lambda v: _wire.offset_commit_request(v, group_id=group_id, generation_id=-1, member_id="",
                                                  group_instance_id=None, offsets=by_topic),
        )
        for p in _wire_admin.parse_offset_commit(answer):
            raise_for_code(p.error_code, context=f"OffsetCommit {p.tp.topic}[{p.tp.partition}]")
        return {tp: target[tp] for tp in tps}

    async def share_group_progress(self, group_id: str) -> list[SharePartitionProgress]:
        """Per partition a share group has state for: its start offset, lag and
        the records of its in-flight window by state (DescribeShareGroupOffsets,
        then ReadShareGroupState for the window)."""
        answer = await self._group_call(group_id, ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS,
                                        lambda v: _wire.describe_share_group_offsets_request(v, group_id))
        found: dict[TopicPartition, tuple[int, int]] = {}
        ids: dict[uuid.UUID, str] = {}
        for g in _wire_share.parse_describe_share_group_offsets(answer):
            raise_for_code(g.error_code, context=f"share group {group_id!r}")
            for p in g.partitions:
                ids[p.topic_id] = p.tp.topic
                raise_for_code(p.error_code, context=f"share group {group_id!r} {p.tp.topic}[{p.tp.partition}]")
                found[p.tp] = (p.start_offset, p.lag)
        if not found:
            return []
        ends = {tp: a.offset for tp, a in (await self.list_offsets({tp: "latest" for tp in found})).items()}
        wanted: dict[uuid.UUID, list[int]] = defaultdict(list)
        for topic_id, name in ids.items():
            wanted[topic_id] = [tp.partition for tp in found if tp.topic == name]
        state = await self._group_call(group_id, ApiKey.READ_SHARE_GROUP_STATE,
                                       lambda v: _wire.read_share_group_state_request(v, group_id, wanted))
        windows: dict[TopicPartition, _wire_share.ShareStateWindow] = {}
        for row in _wire_share.parse_read_share_group_state(state):
            raise_for_code(row.error_code, context=f"share group {group_id!r} state")
            windows[TopicPartition(ids.get(row.topic_id, "?"), row.partition)] = row
        out = []
        for tp, (start, lag) in sorted(found.items()):
            w = windows.get(tp)
            in_flight, acknowledged, archived, window = (
                (w.in_flight, w.acknowledged, w.archived, w.window) if w is not None else (0, 0, 0, 0))
            out.append(SharePartitionProgress(
                tp.topic, tp.partition, start, ends.get(tp, -1), lag,
                in_flight=in_flight,
                available=max(0, lag - in_flight) if lag >= 0 else max(0, window - acknowledged - archived),
                acknowledged=acknowledged, archived=archived, window=window,
            ))
        return out

    async def delete_records(self, before: PartitionMap[int]) -> dict[TopicPartition, int]:
        """Move each partition's log start up to the given offset; returns the new low watermarks."""
        cluster = self.cluster
        by_node: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for tp, offset in before.items():
            tp = TopicPartition(*tp)
            await cluster.topic(tp.topic)
            by_node[cluster.leader(tp.topic, tp.partition)][tp.topic].append((tp.partition, offset))
        out: dict[TopicPartition, int] = {}
        for node, request in by_node.items():
            answer = await self._call(
                ApiKey.DELETE_RECORDS,
                lambda v: _wire.delete_records_request(v, request, timeout_ms=self.config.operation_timeout_ms),
                node=node,
            )
            errors, marks = _wire_admin.parse_delete_records(answer)
            for p in errors:
                raise_for_code(p.error_code, context=f"DeleteRecords {p.tp.topic}[{p.tp.partition}]")
            out.update(marks)
        return out

    # -- log directories ---------------------------------------------------------------

    async def describe_log_dirs(self, topics: Mapping[str, Iterable[int]] | Iterable[str] | None = None
                                ) -> list[LogDirDescription]:
        """Every log directory of every broker with the size of each partition in it.

        ``topics``: topic -> partitions, topic names (all their partitions),
        or None (every partition, internal topics included).

        :raises KafkaError: the broker refused (CLUSTER_AUTHORIZATION_FAILED...).
        """
        cluster = self.cluster
        wanted: dict[str, list[int]] | None = None
        if isinstance(topics, Mapping):
            wanted = {t: sorted(ps) for t, ps in topics.items()}
        elif topics is not None:
            wanted = {}
            for name in topics:
                info = await cluster.topic(name)
                wanted[name] = [p.partition for p in info.partitions]
        meta = await cluster.refresh()
        out = []
        for node in sorted(meta.brokers):
            answer = await self._call(ApiKey.DESCRIBE_LOG_DIRS,
                                      lambda v: _wire.describe_log_dirs_request(v, wanted), node=node)
            code, dirs = _wire_admin.parse_describe_log_dirs(answer, node)
            raise_for_code(code, context="DescribeLogDirs")
            out.extend(dirs)
        return out


    # -- transactions --------------------------------------------------------------------

    async def list_transactions(self, *, states: Iterable[str] = (), producer_ids: Iterable[int] = (),
                                duration_ms: int = -1, pattern: str | None = None) -> list[TransactionListing]:
        """Every transactional id the coordinators know (ListTransactions to every broker),
        filtered by state (``"Ongoing"``, ``"CompleteCommit"``...), producer id, open
        for at least ``duration_ms`` (v1+) or a regular-expression ``pattern`` (v2+).

        :raises KafkaError: the broker refused, or lacks the version a filter needs.
        """
        cluster = self.cluster
        meta = await cluster.refresh()
        states, producer_ids = list(states), list(producer_ids)
        out: dict[str, TransactionListing] = {}
        for node in sorted(meta.brokers):
            conn = await cluster.connection(node)
            version = conn.version(ApiKey.LIST_TRANSACTIONS)
            if (duration_ms >= 0 and version < 1) or (pattern is not None and version < 2):
                raise KafkaError(f"node {node} serves ListTransactions v{version}, too old for the "
                                 f"{'pattern' if pattern is not None else 'duration'} filter",
                                 code=ErrorCode.unsupported_version)
            answer = await self._call(
                ApiKey.LIST_TRANSACTIONS,
                lambda v: _wire.list_transactions_request(v, states=states, producer_ids=producer_ids,
                                                          duration_ms=duration_ms, pattern=pattern),
                node=node)
            code, listings = _wire_admin.parse_list_transactions(answer)
            raise_for_code(code, context="ListTransactions")
            out.update((t.transactional_id, t) for t in listings)
        return sorted(out.values(), key=lambda t: t.transactional_id)

    async def describe_transactions(self, transactional_ids: Iterable[str]) -> list[TransactionDescription]:
        """State, producer, timeout, start time and partitions of each transactional id, from
        its transaction coordinator. An unknown id comes back with its ``error_code``
        (TRANSACTIONAL_ID_NOT_FOUND) rather than raising."""
        cluster = self.cluster
        out = []
        for tid in transactional_ids:
            node = await cluster.coordinator(tid, 1)
            answer = await self._call(ApiKey.DESCRIBE_TRANSACTIONS,
                                      lambda v: _wire.describe_transactions_request(v, [tid]), node=node)
            for t in _wire_admin.parse_describe_transactions(answer):
                if t.error_code in _COORDINATOR_CODES:
                    cluster.forget_coordinator(tid, 1)
                    raise kafka_error(t.error_code, context=f"DescribeTransactions({tid!r})")
                out.append(t)
        return out

    async def describe_producers(self, partitions: Iterable[TopicPartition | tuple[str, int]]
                                 ) -> dict[TopicPartition, list[ProducerDescription]]:
        """The producers active on each partition (DescribeProducers to its leader), with the
        first offset of each one's open transaction.

        :raises KafkaError: the first per-partition error.
        """
        cluster = self.cluster
        by_node: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for tp in partitions:
            tp = TopicPartition(*tp)
            await cluster.topic(tp.topic)
            by_node[cluster.leader(tp.topic, tp.partition)][tp.topic].append(tp.partition)
        out: dict[TopicPartition, list[ProducerDescription]] = {}
        for node, request in by_node.items():
            answer = await self._call(ApiKey.DESCRIBE_PRODUCERS,
                                      lambda v: _wire.describe_producers_request(v, request),
                                      node=node)
            errors, producers = _wire_admin.parse_describe_producers(answer)
            for p in errors:
                raise_for_code(p.error_code, p.error_message,
                               context=f"DescribeProducers {p.tp.topic}[{p.tp.partition}]")
            out.update(producers)
        return out

    async def abort_transaction(self, tp: TopicPartition | tuple[str, int], *, start_offset: int | None = None,
                                producer_id: int | None = None, producer_epoch: int | None = None,
                                coordinator_epoch: int | None = None) -> None:
        """Abort a hanging transaction on one partition, as ``kafka-transactions.sh abort``
        does: write an abort marker there with WriteTxnMarkers (sent to the leader).

        Name the transaction by ``start_offset`` (the producer whose open transaction
        starts there is found with DescribeProducers) or by ``producer_id``,
        ``producer_epoch`` and ``coordinator_epoch``.

        :raises KafkaError: no open transaction starts at ``start_offset``; the
            broker does not serve WriteTxnMarkers (UNSUPPORTED_VERSION); or it refused.
        """
        tp = TopicPartition(*tp)
        if start_offset is not None:
            producers = (await self.describe_producers([tp])).get(tp, [])
            match = [p for p in producers if p.current_txn_start_offset == start_offset]
            if not match:
                raise KafkaError(f"no open transaction of {tp.topic}[{tp.partition}] starts at offset {start_offset}",
                                 code=ErrorCode.invalid_request)
            producer_id, producer_epoch = match[0].producer_id, match[0].producer_epoch
            coordinator_epoch = max(match[0].coordinator_epoch, 0)
        if producer_id is None or producer_epoch is None or coordinator_epoch is None:
            raise ValueError("give start_offset, or producer_id, producer_epoch and coordinator_epoch")
        cluster = self.cluster
        await cluster.topic(tp.topic)
        node = cluster.leader(tp.topic, tp.partition)
        answer = await self._call(
            ApiKey.WRITE_TXN_MARKERS,
            lambda v: _wire.write_txn_markers_request(v, producer_id=producer_id, producer_epoch=producer_epoch,
                                                      commit=False, coordinator_epoch=coordinator_epoch,
                                                      partitions={tp.topic: [tp.partition]}),
            node=node)
        for p in _wire_admin.parse_write_txn_markers(answer):
            raise_for_code(p.error_code, context=f"WriteTxnMarkers {p.tp.topic}[{p.tp.partition}]")


def _list_target(spec: OffsetSpec) -> int:
    if spec == "earliest":
        return EARLIEST
    if spec == "latest":
        return LATEST
    if isinstance(spec, (datetime.datetime, int)) and not isinstance(spec, bool):
        return timestamp_ms(spec)
    raise ValueError(f"offset spec must be 'earliest', 'latest', a datetime or epoch ms, not {spec!r}")


def _topic_error(e: ItemError) -> KafkaError | None:
    """The error of one topic of a CreateTopics/DeleteTopics answer, None when it succeeded."""
    return kafka_error(e.error_code, e.error_message, context=f"topic {e.name!r}") if e.error_code else None
