"""The broker's state: the log manager, topic registry, producer state, the
group coordinators (classic groups and share groups) and the transaction
coordinator, whose control markers it writes.

Synchronous; the server drives it from the trio thread and runs fsyncs in
worker threads. Request handlers (``broker.handlers``) are its only callers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from logbroker.broker.config import BrokerConfig
from logbroker.broker.dynamic_config import ConfigEntry, DynamicBrokerConfigs
from logbroker.broker.fetch_sessions import FetchSessionCache
from logbroker.broker.groups import OFFSETS_TOPIC, GroupConfig, GroupCoordinator, OffsetsTopic
from logbroker.broker.internal_topic import internal_config_problem, is_internal_topic
from logbroker.broker.limits import AutoCreateLimiter
from logbroker.broker.meta import MetaProperties, check_meta, new_cluster_id, write_meta
from logbroker.broker.markers import control_batch, is_abort_marker
from logbroker.broker.producer_state import (
    Duplicate, InvalidProducerEpochError, InvalidTxnStateError, PartitionProducerState, ProducerSummary,
    TxnNotReadyError,
)
from logbroker.broker.security import Authorizer, UserStore
from logbroker.broker.session import RequestContext
from logbroker.broker.share import ShareConfig, ShareCoordinator, ShareStateTopic
from logbroker.broker.traffic import TrafficCounters
from logbroker.broker.transactions import (
    TransactionConfig, TransactionCoordinator, TransactionStateTopic, TxnError, TxnMarker,
)
from logbroker.errors import (
    InternalTopicError, InvalidBatchError, InvalidConfigError, InvalidRequestError, LogbrokerError, RecordErrorsError,
    RecordsError,
    StorageError, UnknownTopicError,
)
from logbroker.records import BatchHeader, keyless_records, parse_header
from logbroker.storage import (
    TOPIC_CONFIG_DEFAULTS, AbortedTxn, FlushMode, LogConfig, LogManager, LogManagerConfig, PartitionLog, TopicInfo,
    write_atomically,
)

if TYPE_CHECKING:
    from logbroker.broker.schema_registry import SchemaRegistry

log = logging.getLogger("logbroker.broker")

_PRODUCER_ID_BLOCK = 1000
_PRODUCER_ID_FILE = "producer-id-block"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_SOURCE_TOPIC, _SOURCE_STATIC_BROKER, _SOURCE_DEFAULT = 1, 4, 5
_TYPE_BOOLEAN, _TYPE_STRING, _TYPE_LONG, _TYPE_DOUBLE, _TYPE_LIST = 1, 2, 5, 6, 7


def _config_type(name: str, value: str) -> int:
    default = TOPIC_CONFIG_DEFAULTS.get(name, value)
    if default in ("true", "false"):
        return _TYPE_BOOLEAN
    if name in ("cleanup.policy",) or name.endswith("replicas"):
        return _TYPE_LIST
    try:
        int(default)
        return _TYPE_LONG
    except ValueError:
        pass
    try:
        float(default)
        return _TYPE_DOUBLE
    except ValueError:
        return _TYPE_STRING


@dataclass(frozen=True, slots=True)
class MarkersOutcome:
    """What writing a transaction's markers left to do: ``flush`` (partition log,
    offset) pairs to fsync before answering (flush=always only), and
    ``appended`` the partitions that grew (to wake read_committed fetches)."""

    flush: list
    appended: list


# Kafka's translation of the coordinator's answers for a transactional Produce
# (v10 and older: no TRANSACTION_ABORTABLE; retriable coordinator errors
# become NOT_ENOUGH_REPLICAS, which old producers retry without a metadata refresh).
_PRODUCE_TXN_ERRORS = {
    TxnError.TRANSACTION_ABORTABLE: InvalidTxnStateError,
    TxnError.INVALID_TXN_STATE: InvalidTxnStateError,
    TxnError.PRODUCER_FENCED: InvalidProducerEpochError,
    TxnError.INVALID_PRODUCER_ID_MAPPING: InvalidTxnStateError,
    TxnError.CONCURRENT_TRANSACTIONS: TxnNotReadyError,
    TxnError.COORDINATOR_LOAD_IN_PROGRESS: TxnNotReadyError,
    TxnError.COORDINATOR_NOT_AVAILABLE: TxnNotReadyError,
    TxnError.NOT_COORDINATOR: TxnNotReadyError,
}


@dataclass(frozen=True, slots=True)
class ProduceResult:
    base_offset: int
    log_append_time: int
    log_start_offset: int
    duplicate: bool = False


def _make_data_dir(config: BrokerConfig) -> None:
    """Create the data directory if needed.

    :raises StorageError: it is a file, or cannot be created (the message names it).
    """
    try:
        os.makedirs(config.data_dir, mode=config.dir_mode, exist_ok=True)
    except FileExistsError:  # exist_ok forgives only an existing directory
        raise StorageError(f"data directory {config.data_dir} is a file, not a directory") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise StorageError(f"cannot create data directory {config.data_dir}: {reason}") from exc


class Broker:
    """One single-node broker over one data directory."""

    def __init__(self, config: BrokerConfig, *, clock: Callable[[], int] = now_ms) -> None:
        self.config = config
        self.clock = clock
        _make_data_dir(config)
        # Whose data this is, checked before the log is opened (Kafka refuses the same way).
        meta = check_meta(config.data_dir, node_id=config.node_id, cluster_id=config.cluster_id)
        # AlterConfigs on the BROKER resource: kept in the data dir, laid over the static settings.
        self.static_config = config
        self.dynamic_configs = DynamicBrokerConfigs(config.data_dir, config.file_mode)
        self.config = config = self.dynamic_configs.effective(config)
        self.log_manager = LogManager(config.data_dir, _log_manager_config(config), now_ms=clock())
        if meta is None:
            meta = MetaProperties(config.cluster_id or new_cluster_id(), config.node_id)
            write_meta(config.data_dir, meta, config.file_mode)
        self.cluster_id = meta.cluster_id
        self.advertised_host = config.advertised_host or config.host
        self.advertised_port = config.advertised_port or config.port
        self._producer_states: dict[tuple[str, int], PartitionProducerState] = {}
        self._next_producer_id, self._producer_id_limit = 0, 0
        self._timer_sources: list = []
        self.traffic = TrafficCounters()  # bytes/records in and out per topic (metrics)
        # Incremental fetch sessions (KIP-227), per broker, in memory.
        self.fetch_sessions = FetchSessionCache(config.max_incremental_fetch_session_cache_slots)
        self._auto_create = AutoCreateLimiter(
            per_request=config.auto_create_topics_max_per_request,
            per_second=config.auto_create_topics_max_per_second,
        )
        self.users = UserStore(config.data_dir, file_mode=config.file_mode)
        self.authorizer = (
            Authorizer(config.data_dir, super_users=config.super_user_list, file_mode=config.file_mode)
            if config.authorizer_enable else None
        )
        self._restore_producer_states()
        self.groups = GroupCoordinator(GroupConfig.from_broker(config), OffsetsTopic(self.log_manager))
        self.groups.load(clock())
        self.add_timer_source(self.groups)
        self.share = ShareCoordinator(
            ShareConfig.from_broker(config), ShareStateTopic(self.log_manager), self.log_manager,
            is_classic_group=lambda group_id: self.groups.group(group_id) is not None,
            stable_view=self._stable_view,
        )
        self.share.load(clock())
        self.add_timer_source(self.share)
        self.transactions = TransactionCoordinator(
            TransactionConfig.from_broker(config), TransactionStateTopic(self.log_manager),
            self.allocate_producer_id, offsets_partition_for=lambda group_id: 0,
        )
        self.transactions.load(clock())
        self.add_timer_source(self.transactions)
        # the schema registry's state, when the broker serves one (schema.registry.port)
        self.schema_registry: SchemaRegistry | None = None
        if config.schema_registry_port is not None:
            from logbroker.broker.schema_registry import SchemaRegistry  # schema libraries load only when used

            self.schema_registry = SchemaRegistry(self.log_manager, clock)
            self.schema_registry.load()
        self._markers_to_retry: tuple[TxnMarker, ...] = ()
        self._marker_retry_at: int | None = None
        pending = self.transactions.pending_markers()
        if pending:
            log.info("writing the markers of %d transactions left prepared",
                     len({m.transactional_id for m in pending}))
            self.finish_transactions(pending, clock())

    def __repr__(self) -> str:
        return (
            f"Broker(data_dir={self.config.data_dir!r}, topics={len(self.log_manager.topics())}, "
            f"advertised={self.advertised_host}:{self.advertised_port})"
        )

    # -- topics -----------------------------------------------------------

    def topics(self) -> dict[str, TopicInfo]:
        return self.log_manager.topics()

    def allowed(self, ctx: RequestContext, operation: str, resource_type: str, name: str) -> bool:
        """May the principal of the request ``ctx`` do ``operation`` on the
        resource? Always True without ``authorizer.enable``."""
        if self.authorizer is None:
            return True
        return self.authorizer.allowed(ctx.principal, operation, resource_type, name)

    def allowed_on_any(self, ctx: RequestContext, operation: str, resource_type: str) -> bool:
        """May the principal of ``ctx`` do ``operation`` on some resource of the type
        (Kafka's ``authorizeByResourceType``)? Always True without ``authorizer.enable``."""
        if self.authorizer is None:
            return True
        return self.authorizer.allowed_on_any(ctx.principal, operation, resource_type)

    def has_topic(self, name: str) -> bool:
        return self.log_manager.has_topic(name)

    def partition(self, topic: str, partition: int) -> PartitionLog:
        """The log of one partition; raises UnknownTopicError."""
        return self.log_manager.get_partition(topic, partition)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a user topic; internal topics are created by their coordinators only."""
        if is_internal_topic(name):
            raise InvalidRequestError(
                f"creation of internal topic {name} is prohibited: the broker creates it when it first needs it"
            )
        info = self.log_manager.create_topic(name, partitions, dict(configs or {}))
        log.info("created topic %s with %d partitions", name, partitions)
        return info

    def delete_topic(self, name: str) -> None:
        _refuse_internal(name, "deleted")
        self.log_manager.delete_topic(name)
        for key in [k for k in self._producer_states if k[0] == name]:
            del self._producer_states[key]
        self.groups.topic_deleted(name, self.clock())
        self.share.topic_deleted(name, self.clock())
        self.fetch_sessions.topic_deleted(name)
        self.traffic.forget(name)
        log.info("deleted topic %s", name)

    def add_partitions(self, name: str, total: int) -> None:
        _refuse_internal(name, "given more partitions")
        self.log_manager.add_partitions(name, total)
        log.info("topic %s now has %d partitions", name, total)

    def validate_topic_configs(self, configs: dict[str, str]) -> LogConfig:
        """The effective LogConfig; raises InvalidConfigError naming the bad key."""
        return LogConfig.from_topic_configs(configs, self.log_manager.config.log)

    def alter_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's overrides with ``configs``; raises InvalidConfigError
        for values an internal topic cannot work with."""
        self.check_topic_configs(name, configs)
        self.log_manager.alter_topic_configs(name, configs)

    def check_topic_configs(self, name: str, configs: dict[str, str]) -> LogConfig:
        """The effective LogConfig ``configs`` would give topic ``name``; raises
        InvalidConfigError naming the bad key or what an internal topic must keep."""
        effective = self.validate_topic_configs(configs)
        if is_internal_topic(name):
            problem = internal_config_problem(name, effective.cleanup_policy, effective.max_message_bytes)
            if problem is not None:
                raise InvalidConfigError(problem)
        return effective

    def delete_records(self, topic: str, partition: int, before: int) -> int:
        """Move the log start of a user topic's partition up to ``before``; the new log start."""
        _refuse_internal(topic, "trimmed with DeleteRecords")
        plog = self.log_manager.get_partition(topic, partition)
        plog.delete_records_before(before)
        return plog.log_start_offset

    def describe_topic_configs(self, name: str, overrides: dict[str, str] | None = None) -> list[ConfigEntry]:
        """Every topic config with its value and where the value comes from."""
        if overrides is None:
            overrides = dict(self.log_manager.topics()[name].configs)
        broker_level = self.log_manager.config.log.to_topic_configs()
        entries = []
        for key, kafka_default in sorted(TOPIC_CONFIG_DEFAULTS.items()):
            if key in overrides:
                value, source = str(overrides[key]), _SOURCE_TOPIC
            elif broker_level.get(key, kafka_default) != kafka_default:
                value, source = broker_level[key], _SOURCE_STATIC_BROKER
            else:
                value, source = kafka_default, _SOURCE_DEFAULT
            entries.append(ConfigEntry(key, value, source, _config_type(key, value)))
        return entries

    def describe_broker_configs(self, per_broker: bool = True, include_synonyms: bool = False) -> list[ConfigEntry]:
        """The broker settings under their Kafka names (DescribeConfigs of this node,
        or of the cluster default when not ``per_broker``); see DynamicBrokerConfigs."""
        return self.dynamic_configs.describe(self.static_config, per_broker, include_synonyms)

    def alter_broker_configs(self, layer: dict[str, str], per_broker: bool, validate_only: bool) -> None:
        """Replace this node's (``per_broker``) or the cluster-default dynamic configs
        with ``layer`` and apply the result at once: topics without their own value
        take the new defaults. Raises InvalidRequestError (read-only setting, bad
        value) or StorageError, with nothing changed."""
        effective = self.dynamic_configs.check(self.static_config, layer, per_broker)
        if validate_only:
            return
        self.dynamic_configs.replace(layer, per_broker)
        self.config = effective
        self.log_manager.set_log_defaults(_log_manager_config(effective).log)
        log.info("dynamic broker configs of %s now %s", "this broker" if per_broker else "the cluster default",
                 layer)

    @staticmethod
    def is_internal_topic(name: str) -> bool:
        """Topics the broker writes itself (``__consumer_offsets``...); clients only read them."""
        return is_internal_topic(name)

    def maybe_auto_create(self, name: str, limiter: AutoCreateLimiter.Request | None = None) -> bool:
        """Create an unknown topic when auto-creation is on; True if it exists now.

        Internal topics are never created this way. ``limiter`` (one per
        request) bounds how many topics one request and the broker per second
        may create: beyond either, ThrottledError and nothing is created.
        """
        if name in self.log_manager.topics():
            return True
        if not self.config.auto_create_topics_enable or is_internal_topic(name):
            return False
        if limiter is not None:
            limiter.take(self.clock())
        self.create_topic(name, self.config.num_partitions)
        return True

    def auto_create_request(self) -> AutoCreateLimiter.Request:
        """The auto-creation allowance of one request (see :meth:`maybe_auto_create`)."""
        return self._auto_create.request()

    # -- produce ----------------------------------------------------------

    def append(self, topic: str, partition: int, batch: bytes | memoryview, *, transactional_id: str | None = None) -> ProduceResult:
        """Validate and append one producer batch.

        A transactional batch needs ``transactional_id`` (the Produce request's)
        and the partition in that id's ongoing transaction (KIP-890 part 1:
        checked here, in the same turn as the append).

        Raises UnknownTopicError, RecordsError subclasses, ProducerStateError
        subclasses and StorageError; on any of them nothing is written.
        """
        plog = self.log_manager.get_partition(topic, partition)
        header = parse_header(batch)
        if "compact" in plog.config.cleanup_policy:
            # Transactional batches too: the cleaner keeps them whole (it does not read markers).
            _require_keys(batch, topic, partition)
        state = None
        if header.producer_id >= 0:
            state = self._producer_state(topic, partition, plog)
            dup = state.check(header)
            if isinstance(dup, Duplicate):
                return ProduceResult(dup.base_offset, -1, plog.log_start_offset, duplicate=True)
            if header.is_transactional:
                self._verify_in_transaction(transactional_id, header, topic, partition)
        elif header.is_transactional:
            raise InvalidBatchError("a transactional batch needs a producer id")
        info = plog.append(batch, self.clock())
        if state is not None:
            opened = header.is_transactional and state.open_transaction(header.producer_id) is None
            state.update(header, info.base_offset, header.max_timestamp)
            if opened:
                plog.retention_limit = state.first_unstable_offset()
        traffic = self.traffic
        traffic.bytes_in[topic] += header.size
        traffic.records_in[topic] += header.records_count
        return ProduceResult(info.base_offset, info.log_append_time_ms, info.log_start_offset)

    def _verify_in_transaction(self, transactional_id: str | None, header: BatchHeader, topic: str, partition: int) -> None:
        """Raise the ProducerStateError Produce answers unless the partition is in
        the transaction of ``transactional_id``'s current producer."""
        if transactional_id is None:
            raise InvalidTxnStateError("a transactional batch in a Produce request without a transactional id")
        verified = self.transactions.verify_partitions(
            transactional_id, header.producer_id, header.producer_epoch, [(topic, partition)]
        )
        error = verified.partitions[(topic, partition)]
        if error is not TxnError.NONE:
            kind = _PRODUCE_TXN_ERRORS.get(error, InvalidTxnStateError)
            raise kind(f"transactional id {transactional_id}: {topic}-{partition} refused ({error.value})")

    def _producer_state(self, topic: str, partition: int, plog: PartitionLog) -> PartitionProducerState:
        key = (topic, partition)
        state = self._producer_states.get(key)
        if state is None:
            state = PartitionProducerState()
            self._rebuild_producer_state(state, plog, plog.log_start_offset)
            self._producer_states[key] = state
        return state

    def _rebuild_producer_state(self, state: PartitionProducerState, plog: PartitionLog, from_offset: int) -> None:
        """Replay batch headers from ``from_offset`` into ``state`` and rewrite the
        partition's aborted-transaction entries from there (the files may have
        missed the last aborts before a crash, or hold some past a truncation)."""

        def aborted(header: Any) -> bool:
            return is_abort_marker(plog.read(header.base_offset, 1).records)

        entries = []
        for base, header in plog.iter_batch_headers(from_offset):
            for done in state.rebuild((header,), aborted):
                if done.aborted:
                    stable = state.first_unstable_offset()
                    lso = done.last_offset + 1 if stable is None else min(stable, done.last_offset + 1)
                    entries.append((base, AbortedTxn(done.producer_id, done.first_offset, done.last_offset, lso)))
        try:
            plog.txn_index.replace_from(from_offset, entries)
        except LogbrokerError as exc:
            log.warning("%s: cannot rewrite the aborted-transaction index: %s", plog.directory, exc)
        plog.retention_limit = state.first_unstable_offset()

    # -- transactions -------------------------------------------------------

    def producer_state(self, topic: str, partition: int) -> PartitionProducerState:
        """The producer state of a partition (built from the log on first use);
        raises UnknownTopicError."""
        return self._producer_state(topic, partition, self.log_manager.get_partition(topic, partition))

    def last_stable_offset(self, topic: str, partition: int, plog: PartitionLog) -> int:
        """The first offset of the partition's oldest open transaction, or the high
        watermark when none is open (internal topics: the high watermark)."""
        high_watermark = plog.high_watermark
        if is_internal_topic(topic):
            return high_watermark
        first = self._producer_state(topic, partition, plog).first_unstable_offset()
        if first is None:
            return high_watermark
        # DeleteRecords may have moved the log start into an open transaction (Kafka clamps too).
        return max(min(first, high_watermark), plog.log_start_offset)

    def _stable_view(self, topic: str, partition: int, plog: Any, from_offset: int) -> tuple[int, Sequence[Any]]:
        """The last stable offset and the aborted transactions from ``from_offset``
        up to it (share groups reading committed records)."""
        stable = self.last_stable_offset(topic, partition, plog)
        if is_internal_topic(topic) or from_offset >= stable:
            return stable, ()
        return stable, plog.txn_index.overlapping(from_offset, stable)

    def aborted_transactions(self, topic: str, partition: int, plog: PartitionLog, from_offset: int,
                             upper_bound: int) -> list[tuple[int, int]]:
        """``(producer id, first offset)`` of each aborted transaction overlapping
        ``[from_offset, upper_bound)`` (FetchResponse ``aborted_transactions``)."""
        if is_internal_topic(topic):
            return []
        return [(e.producer_id, e.first_offset) for e in plog.txn_index.overlapping(from_offset, upper_bound)]

    def describe_producers(self, topic: str, partition: int) -> list[ProducerSummary]:
        """DescribeProducers: the producers of one partition; raises UnknownTopicError."""
        return self.producer_state(topic, partition).producers()

    def finish_transactions(self, markers: Sequence[TxnMarker], now_ms: int, prepared: Any = None) -> MarkersOutcome:
        """Write the markers of transactions in PrepareCommit/PrepareAbort, then
        complete each transaction whose markers all went in (``markers_written``).

        ``prepared``: the flush point of the Prepare* records; with flush=always
        it is fsynced first, so no partition sees a decision a crash could
        undo. A transaction whose marker could not be written stays prepared
        and is tried again after ``transaction.abort.timed.out.transaction.cleanup.interval.ms``.
        """
        always = self.config.flush == "always"
        markers = tuple(markers)
        if always and prepared is not None:
            try:
                prepared.log.flush(prepared.offset)
            except LogbrokerError as exc:
                log.error("cannot make the end of %d transactions durable: %s",
                          len({m.transactional_id for m in markers}), exc)
                self._retry_markers(markers, now_ms)
                return MarkersOutcome([], [])
        flush, appended, failed = [], [], []
        for marker in markers:
            try:
                point = self._write_marker(marker, now_ms)
            except LogbrokerError as exc:
                log.warning("cannot write the %s marker of %s to %s-%d: %s",
                            "commit" if marker.commit else "abort", marker.transactional_id,
                            marker.topic, marker.partition, exc)
                failed.append(marker)
                continue
            if point is not None:
                flush.append(point)
                appended.append((marker.topic, marker.partition))
        failed_ids = {m.transactional_id for m in failed}
        for transactional_id in dict.fromkeys(m.transactional_id for m in markers):
            if transactional_id in failed_ids:
                continue
            result = self.transactions.markers_written(transactional_id, now_ms)
            if result.error is not TxnError.NONE:
                log.warning("transaction %s: markers written, completion refused: %s",
                            transactional_id, result.error.value)
                failed += [m for m in markers if m.transactional_id == transactional_id]
            elif result.flush is not None:
                flush.append((result.flush.log, result.flush.offset))
        if failed:
            self._retry_markers(tuple(failed), now_ms)
        return MarkersOutcome(flush if always else [], appended)

    def _retry_markers(self, markers: tuple[TxnMarker, ...], now_ms: int) -> None:
        known = set(self._markers_to_retry)
        self._markers_to_retry += tuple(m for m in markers if m not in known)
        self._marker_retry_at = now_ms + self.config.transaction_abort_timed_out_transaction_cleanup_interval_ms

    def _write_marker(self, marker: TxnMarker, now_ms: int) -> tuple[PartitionLog, int] | None:
        """Append one marker of the coordinator's (:meth:`append_marker`). Returns
        where to fsync, or None when nothing was written (a deleted topic, a
        stale marker). Raises LogbrokerError with nothing changed."""
        try:
            return self.append_marker(
                marker.topic, marker.partition, marker.producer_id, marker.producer_epoch, marker.commit,
                marker.coordinator_epoch, now_ms,
            )
        except UnknownTopicError:
            return None  # the topic was deleted: nothing left to mark
        except InvalidProducerEpochError as exc:
            log.warning("not writing a stale marker to %s-%d: %s", marker.topic, marker.partition, exc)
            return None

    def append_marker(self, topic: str, partition: int, producer_id: int, producer_epoch: int, commit: bool,
                      coordinator_epoch: int, now_ms: int) -> tuple[PartitionLog, int]:
        """Append one transaction marker and apply it (also WriteTxnMarkers, which
        an admin uses to end a hanging transaction). Returns where to fsync.

        Raises UnknownTopicError, InvalidProducerEpochError (older than the
        producer's epoch) and StorageError, with nothing written."""
        if topic == OFFSETS_TOPIC:
            point = self.groups.complete_transaction(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)
            return point.log, point.offset
        plog = self.log_manager.get_partition(topic, partition)
        state = self._producer_state(topic, partition, plog)
        state.check_marker(producer_id, producer_epoch)
        batch = control_batch(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)
        # Built here, so its header is trusted (a marker's base sequence is -1).
        info = plog.append(batch, now_ms, allow_control=True, header=parse_header(batch))
        done = state.complete_txn(producer_id, producer_epoch, not commit, info.base_offset, coordinator_epoch)
        if done is not None and done.aborted:
            stable = state.first_unstable_offset()
            lso = info.last_offset + 1 if stable is None else stable
            entry = AbortedTxn(done.producer_id, done.first_offset, done.last_offset, lso)
            plog.txn_index.append(plog.segments[-1].base_offset, entry)
        plog.retention_limit = state.first_unstable_offset()
        return plog, info.last_offset + 1

    def _restore_producer_states(self) -> None:
        """Load snapshots written at clean shutdown and replay the log after them,
        for the partitions open now; the others when they open at first use
        (``log_manager.on_open``), so a start does not open every partition.

        A snapshot is deleted once read, so a later crash never trusts a stale
        one; without a snapshot the state is rebuilt lazily from batch headers.
        """
        self.log_manager.on_open = self._restore_producer_state
        for (name, p), plog in self.log_manager.iter_partitions(opened_only=True):
            self._restore_producer_state(name, p, plog)

    def _restore_producer_state(self, name: str, p: int, plog: PartitionLog) -> None:
        loaded = PartitionProducerState.load(str(plog.directory))
        if loaded is None:
            return
        PartitionProducerState.discard_snapshot(str(plog.directory))
        state, covered = loaded
        if covered > plog.log_end_offset:
            return  # the log lost data after the snapshot: rebuild lazily
        self._rebuild_producer_state(state, plog, max(covered, plog.log_start_offset))
        self._producer_states[(name, p)] = state

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, across restarts.

        Ids come in blocks recorded in ``producer-id-block``. A block never
        starts below the wall clock in ms x 1000, so a lost or damaged file
        cannot hand out an old id again (a reused id would make a new
        producer's first batch look like a retry and be dropped).
        """
        if self._next_producer_id >= self._producer_id_limit:
            path = os.path.join(self.config.data_dir, _PRODUCER_ID_FILE)
            try:
                with open(path) as fh:
                    recorded = int(fh.read().strip())
            except FileNotFoundError:
                recorded = 0
            except (OSError, ValueError) as exc:
                log.warning("%s is unreadable (%s); starting a fresh producer id block", path, exc)
                recorded = 0
            start = max(recorded, self.clock() * 1000)
            write_atomically(Path(path), str(start + _PRODUCER_ID_BLOCK).encode(), self.config.file_mode)
            self._next_producer_id, self._producer_id_limit = start, start + _PRODUCER_ID_BLOCK
        pid = self._next_producer_id
        self._next_producer_id += 1
        return pid

    # -- status (metrics) -------------------------------------------------

    def group_lags(self) -> list[tuple[str, str, int, int]]:
        """``(group, topic, partition, lag)`` for every committed offset of a
        classic group: the partition's high watermark minus the committed
        offset (never below 0). Partitions of deleted topics are left out."""
        _, groups = self.groups.list_groups()  # none while loading
        out = []
        for listed in groups:
            for (topic, index), value in self.groups.fetch_offsets(listed.group_id, None).offsets.items():
                if value is None or value.offset < 0:
                    continue
                try:
                    end = self.log_manager.get_partition(topic, index).high_watermark
                except UnknownTopicError:
                    continue
                out.append((listed.group_id, topic, index, max(0, end - value.offset)))
        out.sort()
        return out

    # -- timers and lifecycle ---------------------------------------------

    def add_timer_source(self, source: Any) -> None:
        """Register an object with ``next_deadline_ms()`` and ``fire_deadlines(now_ms)``."""
        self._timer_sources.append(source)

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline any coordinator waits for, or None."""
        deadlines = [d for s in self._timer_sources if (d := s.next_deadline_ms()) is not None]
        if self._marker_retry_at is not None:
            deadlines.append(self._marker_retry_at)
        return min(deadlines, default=None)

    def fire_deadlines(self, now_ms: int) -> list[tuple[str, int]]:
        """Fire every due deadline; the transaction coordinator's aborts of timed-out
        transactions get their markers written here. Returns the partitions
        markers grew (to wake fetches waiting on them)."""
        markers: tuple[TxnMarker, ...] = ()
        prepared = None
        for source in self._timer_sources:
            result = source.fire_deadlines(now_ms)
            if source is self.transactions:
                markers, prepared = result.markers, result.flush
        if self._marker_retry_at is not None and self._marker_retry_at <= now_ms:
            markers = self._markers_to_retry + markers
            self._markers_to_retry, self._marker_retry_at = (), None
        if not markers:
            return []
        return self.finish_transactions(markers, now_ms, prepared).appended

    def shutdown_pending(self) -> None:
        """Answer every request still waiting (e.g. JoinGroup) so shutdown can drain."""
        for source in self._timer_sources:
            shutdown = getattr(source, "shutdown_pending", None)
            if shutdown is not None:
                shutdown()

    def flush_dirty(self) -> None:
        self.log_manager.flush_dirty()

    def apply_retention(self) -> int:
        return self.log_manager.apply_retention(self.clock())

    def close(self) -> None:
        """Flush, snapshot producer state and write the clean-shutdown marker."""
        self.groups.close()
        self.share.close(self.clock())
        for (topic, p), state in self._producer_states.items():
            try:
                plog = self.log_manager.get_partition(topic, p)
                plog.txn_index.flush()
            except (UnknownTopicError, StorageError):
                continue
            # A state without producers (a partition only read) is cheap to lose: no fsync.
            state.save(str(plog.directory), plog.log_end_offset, mode=self.config.file_mode, durable=bool(state))
        self.log_manager.close()


def _refuse_internal(name: str, what: str) -> None:
    if is_internal_topic(name):
        raise InternalTopicError(f"internal topic {name} cannot be {what}: the broker owns it")


def _require_keys(batch: bytes | memoryview, topic: str, partition: int) -> None:
    """Compacted topics keep the latest record per key, so every record needs one.

    The only produce path that reads records; compacted topics pay for it.
    Raises RecordErrorsError naming each keyless record, as Kafka's LogValidator.
    """
    try:
        keyless = keyless_records(batch)
    except RecordsError:
        return  # the append reports the corrupt batch with its own reason
    if keyless:
        why = f"Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
        errors = tuple((index, why) for index in keyless)
        shown = ", ".join(f"RecordError(batchIndex={index}, message='{why}')" for index, _ in errors[:3])
        raise RecordErrorsError(
            f"One or more records have been rejected due to {len(errors)} record errors in total, "
            f"and only showing the first three errors at most: [{shown}]",
            errors,
        )


def _log_manager_config(config: BrokerConfig) -> LogManagerConfig:
    defaults = LogConfig(
        segment_bytes=config.log_segment_bytes,
        segment_ms=config.log_roll_ms,
        retention_ms=config.log_retention_ms,
        retention_bytes=config.log_retention_bytes,
        max_message_bytes=config.message_max_bytes,
        index_interval_bytes=config.log_index_interval_bytes,
        dir_mode=config.dir_mode,
        file_mode=config.file_mode,
    )
    return LogManagerConfig(
        flush=cast(FlushMode, config.flush),  # validated to one of the three in BrokerConfig
        flush_interval_ms=config.flush_interval_ms, log=defaults,
        max_open_files=config.log_max_open_files, max_memory_maps=config.log_max_memory_maps,
    )
