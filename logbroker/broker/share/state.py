"""The stored state of share groups: writing the changes of each request to
``__share_group_state``, dead-letter copies, replay at startup, copy-forward
compaction, group configs and topic deletion.

:class:`ShareState` is a part of
:class:`~logbroker.broker.share.coordinator.ShareCoordinator`, held by it as
``state``. It owns the internal topic and the pending-change bookkeeping:
the commands report what they changed through :meth:`ShareState.note`,
:meth:`ShareState.mark_snapshot` and :meth:`ShareState.mark_group`, and
:meth:`ShareState.commit` writes it. Groups and share-partitions are reached
through the shared :class:`~logbroker.broker.share.registry.ShareRegistry`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from logbroker.broker.share.config import (
    AUTO_OFFSET_RESET, DELIVERY_COUNT_LIMIT, DLQ_COPY_RECORD, DLQ_TOPIC, GROUP_CONFIG_DEFAULTS, HEARTBEAT_INTERVAL, LOCK_DURATION,
    SESSION_TIMEOUT, GroupSettings, validate_group_configs,
)
from logbroker.broker.share.dlq import dead_letter_batch
from logbroker.broker.share.config import ShareConfig
from logbroker.broker.share.membership import ShareGroup
from logbroker.broker.share.partition import Change, SharePartition
from logbroker.broker.share.state_log_format import (
    ConfigKey, ConfigValue, GroupKey, GroupValue, Key, PartitionKey, PartitionValue, RecordFormatError, Value,
    decode_key, decode_value, encode_key, encode_value,
)
from logbroker.broker.share.registry import ShareRegistry
from logbroker.broker.share.results import ConfigDescription, ShareError, Written
from logbroker.broker.share.sessions import ShareSessions
from logbroker.broker.share.store import ShareStateTopic
from logbroker.broker.internal_topic import FlushPoint
from logbroker.errors import InvalidConfigError, LogbrokerError
from logbroker.storage import LogManager

log = logging.getLogger("logbroker.share")

TP = tuple[str, int]


Records = list[tuple[bytes, bytes | None]]


class ShareState:
    """Persistence, replay, configs (see the module docstring). Not thread-safe."""

    def __init__(
        self, config: ShareConfig, store: ShareStateTopic, logs: LogManager, groups: ShareRegistry,
        sessions: ShareSessions, *, is_classic_group: Callable[[str], bool],
    ) -> None:
        self.config = config
        self._store = store
        self._logs = logs
        self._groups = groups
        self._sessions = sessions
        self._is_classic = is_classic_group
        # What the commands changed since the last commit: share-partitions by
        # (group, topic, partition) -> ["snapshot"] or [lowest, highest offset];
        # groups whose epoch changed; records to dead-letter; partitions whose
        # records became available.
        self._dirty: dict[tuple[str, str, int], list[object]] = {}
        self._dirty_groups: set[str] = set()
        self._dead: list[tuple[str, str, int, list[tuple[int, int, str]]]] = []
        self._available: set[TP] = set()
        self.wake: Callable[[list[TP]], None] | None = None
        """Called by :meth:`commit` with the partitions that grew or whose
        records became available again (the server wakes waiting fetches)."""

    def __repr__(self) -> str:
        return f"ShareState(dirty={len(self._dirty)}, dirty_groups={len(self._dirty_groups)})"

    @property
    def record_count(self) -> int:
        """Records a replay of the internal topic would read."""
        return self._store.record_count

    # -- what the commands changed -------------------------------------------------------------

    def ensure_group(self, group_id: str, now: int) -> ShareGroup:
        """The group, created (and marked to be written) if it does not exist."""
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups.add(ShareGroup(group_id, GroupSettings.resolve({}, self.config), created=now))
            self._dirty_groups.add(group_id)
        return group

    def mark_group(self, group_id: str) -> None:
        """The group's epoch may have changed: write it at the next commit."""
        self._dirty_groups.add(group_id)

    def mark_snapshot(self, group_id: str, tp: TP) -> None:
        """Write a snapshot of the share-partition at the next commit."""
        self._dirty[(group_id, *tp)] = ["snapshot"]

    def note(self, group: ShareGroup, tp: TP, sp: SharePartition, change: Change) -> None:
        """Remember a change to persist, to dead-letter and to wake fetches for."""
        if change.changed:
            assert change.lo is not None and change.hi is not None  # a change says where
            key = (group.group_id, *tp)
            pending = self._dirty.get(key)
            if pending is None:
                self._dirty[key] = [change.lo, change.hi]
            elif pending[0] != "snapshot":
                pending[0] = min(_offset(pending[0]), change.lo)
                pending[1] = max(_offset(pending[1]), change.hi)
        if change.available:
            self._available.add(tp)
        if change.archived and group.settings.dlq_topic:
            self._dead.append((group.group_id, tp[0], tp[1], change.archived))

    # -- persistence -------------------------------------------------------------------------

    def commit(self, now_ms: int) -> Written:
        """Write what the last commands changed (one batch) and the dead-letter
        copies; returns the fsync points and the partitions that grew or whose
        records became available."""
        written = Written()
        records: Records = []
        snapshots = []
        for key, pending in self._dirty.items():
            group_id, topic, partition = key
            sp = self._groups.partition(group_id, (topic, partition))
            if sp is None:
                continue
            snapshot = pending[0] == "snapshot" or sp.deltas + 1 >= self.config.snapshot_every
            runs = sp.runs() if snapshot else sp.runs(_offset(pending[0]), _offset(pending[1]))
            value = PartitionValue(snapshot, _topic_id(sp), sp.start, runs)
            records.append((encode_key(PartitionKey(group_id, topic, partition)), encode_value(value)))
            snapshots.append((sp, snapshot))
        for group_id in self._dirty_groups:
            group = self._groups.get(group_id)
            if group is not None and group.persisted_epoch != group.epoch:
                records.append((encode_key(GroupKey(group_id)), encode_value(GroupValue(group.epoch, group.created))))
        failed = False
        if records:
            try:
                written.flush.append(self._store.append(records, now_ms))
            except LogbrokerError as exc:
                log.warning("cannot write share-group state (will retry with snapshots): %s", exc)
                failed = written.failed = True
                for key in self._dirty:
                    self._dirty[key] = ["snapshot"]
        if not failed:
            for sp, snapshot in snapshots:
                sp.deltas = 0 if snapshot else sp.deltas + 1
            for group_id in self._dirty_groups:
                group = self._groups.get(group_id)
                if group is not None:
                    group.persisted_epoch = group.epoch
            self._dirty.clear()
            self._dirty_groups.clear()
        for group_id, topic, partition, items in self._dead:
            tp = self._dead_letter(group_id, topic, partition, items, now_ms)
            if tp is not None:
                written.appended.append(tp)
        self._dead.clear()
        written.available = sorted(self._available)
        self._available.clear()
        if self.wake is not None and (written.available or written.appended):
            self.wake(written.available + written.appended)
        if records and not failed:
            self._maybe_compact(now_ms)
        return written

    def _dead_letter(self, group_id: str, topic: str, partition: int, items: list[tuple[int, int, str]],
                     now: int) -> TP | None:
        group = self._groups.get(group_id)
        target = group.settings.dlq_topic if group is not None else None
        if group is None or not target or target == topic:
            return None
        try:
            batch = dead_letter_batch(self._logs.get_partition(topic, partition), group_id, topic, partition, items,
                                      copy_record=group.settings.dlq_copy_record)
            if batch is None:
                return None
            if target not in self._logs.topics():
                self._logs.create_topic(target, 1, {})
                log.info("share group %s: created dead-letter topic %s", group_id, target)
            target_partition = partition % self._logs.topic(target).partitions
            self._logs.get_partition(target, target_partition).append(batch, now)
        except LogbrokerError as exc:
            log.warning("share group %s: cannot dead-letter %d records of %s-%d to %s: %s",
                        group_id, len(items), topic, partition, target, exc)
            return None
        log.info("share group %s: %d records of %s-%d dead-lettered to %s", group_id, len(items), topic, partition, target)
        return target, target_partition

    def _live_records(self) -> Records:
        records: Records = []
        for group in self._groups:
            records.append((encode_key(GroupKey(group.group_id)), encode_value(GroupValue(group.epoch, group.created))))
            if group.configs:
                value = ConfigValue(tuple(sorted(group.configs.items())))
                records.append((encode_key(ConfigKey(group.group_id)), encode_value(value)))
        for group_id, (topic, partition), sp in self._groups.all_partitions():
            snapshot = PartitionValue(True, _topic_id(sp), sp.start, sp.runs())
            records.append((encode_key(PartitionKey(group_id, topic, partition)), encode_value(snapshot)))
        return records

    def _maybe_compact(self, now_ms: int) -> None:
        if self._store.compact_if_superseded(self._live_records, now_ms, self.config.compact_min_records):
            for _, _, sp in self._groups.all_partitions():
                sp.deltas = 0  # the copies are snapshots

    def load(self, now_ms: int) -> None:
        """Replay the internal topic: groups come back Empty with their configs
        and share-partitions; state of deleted topics is dropped. Ends the
        registry's loading state."""
        skipped = 0
        for raw_key, raw_value in self._store.replay():
            try:
                key = decode_key(raw_key)
                value = decode_value(key, raw_value) if key is not None else None
            except RecordFormatError:
                skipped += 1
                continue
            if key is None or (value is None and raw_value is not None):
                skipped += 1
                continue
            self._apply(key, value)
        if skipped:
            log.warning("skipped %d unreadable records in the share-group state topic", skipped)
        topics = self._logs.topics()
        for group_id, tp, sp in self._groups.all_partitions():
            info = topics.get(tp[0])
            if info is None or info.topic_id != sp.topic_id or tp[1] >= info.partitions:
                self._groups.remove_partition(group_id, tp)
                self._dirty.pop((group_id, *tp), None)
        for group in self._groups:
            group.persisted_epoch = group.epoch
        self._groups.loading = False
        log.info(
            "loaded %d share groups with %d share-partitions from %d records",
            len(self._groups), self._groups.partition_count(), self._store.record_count,
        )
        self._maybe_compact(now_ms)

    def _apply(self, key: Key, value: Value | None) -> None:
        if isinstance(key, PartitionKey):
            tp = (key.topic, key.partition)
            if value is None:
                self._groups.remove_partition(key.group_id, tp)
                return
            assert isinstance(value, PartitionValue)
            if key.group_id not in self._groups:
                self._groups.add(ShareGroup(key.group_id, GroupSettings.resolve({}, self.config)))
            sp = self._groups.partition(key.group_id, tp)
            if sp is None or value.snapshot or sp.topic_id != value.topic_id:
                sp = self._groups.set_partition(key.group_id, tp, SharePartition(value.start_offset, value.topic_id))
                sp.apply_runs(value.start_offset, value.runs, snapshot=True)
            else:
                sp.apply_runs(value.start_offset, value.runs, snapshot=False)
                sp.deltas += 1
            return
        if value is None:
            self._groups.remove(key.group_id)
            return
        group = self._groups.get(key.group_id)
        if group is None:
            group = self._groups.add(ShareGroup(key.group_id, GroupSettings.resolve({}, self.config)))
        if isinstance(key, GroupKey):
            assert isinstance(value, GroupValue)
            group.epoch = max(group.epoch, value.group_epoch)
            group.created = value.created_timestamp
        else:
            assert isinstance(value, ConfigValue)
            group.configs = dict(value.configs)
            group.settings = GroupSettings.resolve(group.configs, self.config)

    # -- group configs -----------------------------------------------------------------------

    def describe_configs(self, group_id: str) -> list[ConfigDescription]:
        """Every share-group config with its value ("" = the broker's setting)."""
        group = self._groups.get(group_id)
        overrides = group.configs if group is not None else {}
        settings = group.settings if group is not None else GroupSettings.resolve({}, self.config)
        effective = {
            AUTO_OFFSET_RESET: settings.auto_offset_reset,
            LOCK_DURATION: str(settings.record_lock_duration_ms),
            DELIVERY_COUNT_LIMIT: str(settings.delivery_count_limit),
            SESSION_TIMEOUT: str(settings.session_timeout_ms),
            HEARTBEAT_INTERVAL: str(settings.heartbeat_interval_ms),
            DLQ_TOPIC: settings.dlq_topic or "",
            DLQ_COPY_RECORD: "true" if settings.dlq_copy_record else "false",
        }
        return [
            ConfigDescription(name, overrides.get(name, effective.get(name, "")), name not in overrides)
            for name in sorted(GROUP_CONFIG_DEFAULTS)
        ]

    def group_configs(self, group_id: str) -> dict[str, str]:
        """The group's overrides."""
        group = self._groups.get(group_id)
        return dict(group.configs) if group is not None else {}

    def alter_configs(self, group_id: str, configs: dict[str, str | None], now_ms: int, *,
                      validate_only: bool = False) -> FlushPoint | None:
        """Replace the group's overrides with ``configs``; returns the fsync point (or None).

        Raises InvalidConfigError naming the bad key or value (nothing changes).
        """
        if not group_id:
            raise InvalidConfigError("a group config needs a group id")
        if self._is_classic(group_id) and group_id not in self._groups:
            raise InvalidConfigError(f"group {group_id} is not a share group")
        overrides = validate_group_configs(configs)
        if validate_only:
            return None
        group = self.ensure_group(group_id, now_ms)
        value = ConfigValue(tuple(sorted(overrides.items())))
        self.commit(now_ms)
        flush = self._store.append([(encode_key(ConfigKey(group_id)), encode_value(value))], now_ms)
        group.configs = overrides
        group.settings = GroupSettings.resolve(overrides, self.config)
        log.info("share group %s: configs now %s", group_id, overrides)
        return flush

    def delete_group(self, group_id: str, now_ms: int) -> tuple[ShareError, FlushPoint | None]:
        """Delete an empty share group: its share-partitions, configs and share
        sessions (tombstones in the internal topic, written before anything is
        forgotten). Returns ``(ShareError, fsync point or None)``."""
        if self._groups.loading:
            return ShareError.COORDINATOR_LOAD_IN_PROGRESS, None
        group = self._groups.get(group_id)
        if group is None:
            return ShareError.GROUP_ID_NOT_FOUND, None
        if group.members:
            return ShareError.NON_EMPTY_GROUP, None
        if self.commit(now_ms).failed:
            return ShareError.KAFKA_STORAGE_ERROR, None
        parts = self._groups.partitions(group_id)
        records: Records = [(encode_key(PartitionKey(group_id, *tp)), None) for tp, _ in parts]
        records += [(encode_key(GroupKey(group_id)), None), (encode_key(ConfigKey(group_id)), None)]
        try:
            flush = self._store.append(records, now_ms)
        except LogbrokerError as exc:
            log.warning("cannot write the deletion of share group %s: %s", group_id, exc)
            return ShareError.KAFKA_STORAGE_ERROR, None
        for session in self._sessions.of_group(group_id):
            self._sessions.close(session)
        for tp in self._groups.remove(group_id):
            self._dirty.pop((group_id, *tp), None)
        self._dirty_groups.discard(group_id)
        log.info("share group %s deleted", group_id)
        return ShareError.NONE, flush

    def topic_deleted(self, topic: str, now_ms: int) -> None:
        """Forget every share group's state of a deleted topic."""
        records: Records = []
        for group_id, tp, _ in self._groups.all_partitions():
            if tp[0] == topic:
                self._groups.remove_partition(group_id, tp)
                self._dirty.pop((group_id, *tp), None)
                records.append((encode_key(PartitionKey(group_id, *tp)), None))
        if records and not self._groups.loading:
            try:
                self._store.append(records, now_ms)
            except LogbrokerError as exc:
                log.warning("cannot forget share state of deleted topic %s: %s", topic, exc)

    def close(self, now_ms: int) -> None:
        """The broker is shutting down: write what is pending, and a snapshot of
        every share-partition holding acquired records, so their delivery counts
        survive a clean restart (acquisitions are otherwise not written)."""
        if self._groups.loading:
            return
        for group_id, tp, sp in self._groups.all_partitions():
            if sp.min_deadline() is not None:
                self.mark_snapshot(group_id, tp)
        self.commit(now_ms)


def _topic_id(sp: SharePartition) -> uuid.UUID:
    """The topic id of a share-partition of a group (only a bare test object has none)."""
    assert sp.topic_id is not None
    return sp.topic_id


def _offset(bound: object) -> int:
    """A pending change's offset bound (the other form is "snapshot")."""
    assert isinstance(bound, int)
    return bound
