"""Committed offsets and the group registry: OffsetCommit/Fetch/Delete,
transactional offset commits (TxnOffsetCommit and the markers that resolve
them), ListGroups, DescribeGroups, DeleteGroups, offset expiry, and the
replay and compaction of the internal topic.

Transactional offsets are written as a transactional batch of the
producer's; they stay pending (invisible to OffsetFetch) until the
producer's commit marker, appended to the same log, makes them committed,
or its abort marker drops them. Replay resolves them the same way.

:class:`OffsetStore` is the part of
:class:`~logbroker.broker.groups.coordinator.GroupCoordinator` that owns
stored state: the internal topic (appends, replay, compaction), the
committed offsets (``Group.offsets``: no other part writes them), the
transactional offsets awaiting their marker, and the records of each group.
It reads and changes the group map only through the shared
:class:`~logbroker.broker.groups.registry.GroupRegistry`, and tells the
membership that a member committed through the ``keep_alive`` callback it
is given (a commit keeps a classic member's session, as in Kafka). A
command that changes stored state appends its records first and changes
memory only once the append succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from logbroker.broker.groups.config import GroupConfig
from logbroker.broker.groups.consumer_group import ConsumerGroup
from logbroker.broker.groups.offsets_log_format import (
    ConsumerGroupKey,
    ConsumerGroupValue,
    GroupKey,
    GroupValue,
    Key,
    OffsetKey,
    OffsetValue,
    RecordFormatError,
    Value,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logbroker.broker.groups.results import (
    CommitRequest,
    CommitResult,
    CoordinatorStatistics,
    FetchResult,
    GroupOutcome,
    GroupSummary,
    ListedGroup,
    MemberSummary,
    OffsetDeleteResult,
)
from logbroker.broker.groups.registry import GroupRegistry
from logbroker.broker.groups.state import Group, GroupState, Member
from logbroker.broker.groups.store import FlushPoint, OffsetsTopic
from logbroker.errors import BatchTooLargeError, LogbrokerError

log = logging.getLogger("logbroker.groups")

E = GroupOutcome
_EMPTY = GroupState.EMPTY
_DEAD = GroupState.DEAD
Records = list[tuple[bytes, bytes | None]]
KeepAlive = Callable[[Group, Member, int], None]
"""``keep_alive(group, member, now_ms)``: a classic member committed offsets."""


class OffsetStore:
    """Offsets, listing, deletion, expiry and persistence (see the module docstring)."""

    def __init__(self, config: GroupConfig, topic: OffsetsTopic, groups: GroupRegistry,
                 keep_alive: KeepAlive) -> None:
        self.config = config
        self._topic = topic
        self._groups = groups
        self._keep_alive = keep_alive
        # Transactional offset commits awaiting their marker:
        # producer id -> (group id, (topic, partition)) -> offset.
        self._pending_txn: dict[int, dict[tuple[str, tuple[str, int]], OffsetValue]] = {}

    def __repr__(self) -> str:
        return f"OffsetStore(groups={len(self._groups)}, pending_transactions={len(self._pending_txn)})"

    @property
    def record_count(self) -> int:
        """Records a replay of the internal topic would read."""
        return self._topic.record_count

    # -- persistence -----------------------------------------------------------

    def load(self, now_ms: int) -> None:
        """Replay the internal topic: groups come back Empty, with their offsets.

        Records that do not parse are skipped with a warning. Groups that had
        members when the broker stopped are recorded as Empty from now. The
        caller then ends the registry's loading state.
        """
        skipped = 0
        for raw_key, raw_value, _timestamp, producer_id, marker in self._topic.replay():
            if marker is not None:
                self._resolve_pending(producer_id, marker, -1)
                continue
            if raw_key is None:
                continue
            try:
                key = decode_key(raw_key)
                value = decode_value(key, raw_value) if key is not None else None
            except RecordFormatError:
                skipped += 1
                continue
            if key is None or (value is None and raw_value is not None):
                skipped += 1  # a newer format than this broker knows
                continue
            if producer_id >= 0:
                if isinstance(key, OffsetKey) and isinstance(value, OffsetValue):
                    pending = self._pending_txn.setdefault(producer_id, {})
                    pending[(key.group_id, (key.topic, key.partition))] = value
                continue
            self._apply(key, value)
        if skipped:
            log.warning("skipped %d unreadable records in the internal topic", skipped)
        emptied = [g for g in self._groups if g.state_timestamp < 0]
        for group in emptied:
            group.state_timestamp = now_ms
            self.persist_group(group, now_ms)
        log.info(
            "loaded %d groups with %d offsets from %d records",
            len(self._groups), sum(len(g.offsets) for g in self._groups), self._topic.record_count,
        )
        self._maybe_compact(now_ms)

    def _apply(self, key: Key, value: Value | None) -> None:
        group = self._groups.get(key.group_id)
        if isinstance(key, ConsumerGroupKey):
            if value is None:
                if group is not None and group.consumer is not None:
                    group.consumer = None
                    group.protocol_type = None
                    group.persisted = False
                    if not group.offsets:
                        self._groups.remove(key.group_id)
                return
            assert isinstance(value, ConsumerGroupValue)
            if group is None:
                group = self._groups.add(Group(key.group_id))
            # Members re-join after a restart; the epoch goes on from where it was.
            group.consumer = ConsumerGroup(key.group_id, group_epoch=value.group_epoch,
                                           assignment_epoch=value.group_epoch)
            group.protocol_type = "consumer"
            group.state_timestamp = value.state_timestamp
            group.persisted = True
            return
        if isinstance(key, OffsetKey):
            if value is None:
                if group is not None:
                    group.offsets.pop((key.topic, key.partition), None)
                    if not group.offsets and not group.persisted:
                        self._groups.remove(key.group_id)  # it only existed through its offsets
                return
            assert isinstance(value, OffsetValue)
            if group is None:
                group = self._groups.add(Group(key.group_id))
            group.offsets[(key.topic, key.partition)] = value
            return
        if value is None:
            if group is not None and group.consumer is None:
                self._groups.remove(key.group_id)
            return
        assert isinstance(value, GroupValue)
        if group is None:
            group = self._groups.add(Group(key.group_id))
        group.consumer = None
        group.protocol_type = value.protocol_type
        group.generation = value.generation
        group.persisted = True
        # Members do not survive a restart: the group is Empty, since the
        # recorded time if it was Empty already, else from the end of loading (-1).
        group.state_timestamp = value.state_timestamp if value.member_count == 0 else -1

    def persist_group(self, group: Group, now_ms: int) -> GroupOutcome:
        """Record the group's generation and protocol; an error if the append failed."""
        if group.consumer is not None:
            return E.NONE  # a consumer group records its epoch itself
        value = GroupValue(
            group.protocol_type, group.generation, group.protocol_name, group.leader_id,
            group.state_timestamp, len(group.members),
        )
        try:
            self._topic.append([(encode_key(GroupKey(group.group_id)), encode_value(value))], now_ms)
        except LogbrokerError as exc:
            log.warning("group %s: cannot write group metadata: %s", group.group_id, exc)
            return E.COORDINATOR_NOT_AVAILABLE
        group.persisted = True
        self._maybe_compact(now_ms)
        return E.NONE

    def append_quietly(self, records: Records, now_ms: int) -> None:
        """Append membership records; a failure is logged, not answered: members
        re-join after a restart anyway, and offsets are written on their own."""
        if not records:
            return
        try:
            self._topic.append(records, now_ms)
        except LogbrokerError as exc:
            log.warning("cannot write consumer group records: %s", exc)
            return
        self._maybe_compact(now_ms)

    def _live_records(self) -> Records:
        records: Records = []
        for group in self._groups:
            if group.persisted and group.consumer is not None:
                cg_value = ConsumerGroupValue(group.consumer.group_epoch, group.state_timestamp)
                records.append((encode_key(ConsumerGroupKey(group.group_id)), encode_value(cg_value)))
            elif group.persisted:
                value = GroupValue(
                    group.protocol_type, group.generation, group.protocol_name, group.leader_id,
                    group.state_timestamp, len(group.members),
                )
                records.append((encode_key(GroupKey(group.group_id)), encode_value(value)))
            for (topic, partition), offset in group.offsets.items():
                records.append((encode_key(OffsetKey(group.group_id, topic, partition)), encode_value(offset)))
        return records

    def _maybe_compact(self, now_ms: int) -> None:
        if self._pending_txn:
            return  # the copy would leave the pending offsets' batches behind
        self._topic.compact_if_superseded(self._live_records, now_ms, self.config.compact_min_records)

    def _append(self, records: Records, now_ms: int) -> tuple[FlushPoint, None] | tuple[None, GroupOutcome]:
        """Append; returns (flush point, None) or (None, the error to answer)."""
        try:
            flush = self._topic.append(records, now_ms)
        except BatchTooLargeError as exc:
            log.warning("internal topic refused %d records: %s", len(records), exc)
            return None, E.INVALID_COMMIT_OFFSET_SIZE
        except LogbrokerError as exc:
            log.warning("cannot write to the internal topic: %s", exc)
            return None, E.COORDINATOR_NOT_AVAILABLE
        return flush, None

    # -- OffsetCommit / OffsetFetch / OffsetDelete -------------------------------

    def commit_offsets(self, req: CommitRequest, now_ms: int) -> CommitResult:
        """OffsetCommit. A group that does not exist is created for a "simple"
        consumer (generation < 0); a member of an active group must be current."""
        if self._groups.loading:
            return CommitResult({tp: E.COORDINATOR_LOAD_IN_PROGRESS for tp in req.offsets})
        group = self._groups.get(req.group_id)
        new_group = None
        if group is None:
            if req.generation >= 0:
                return CommitResult({tp: E.ILLEGAL_GENERATION for tp in req.offsets})
            group = new_group = Group(req.group_id, state_timestamp=now_ms)
        else:
            error = self._check_commit(group, req)
            if error is not None:
                return CommitResult({tp: error for tp in req.offsets})
            member = group.members.get(req.member_id)
            if member is not None:
                self._keep_alive(group, member, now_ms)
        errors: dict[tuple[str, int], GroupOutcome] = {}
        values: dict[tuple[str, int], OffsetValue] = {}
        expire = now_ms + req.retention_ms if req.retention_ms >= 0 else -1
        limit = self.config.offset_metadata_max_bytes
        for tp, value in req.offsets.items():
            if value.metadata is not None and len(value.metadata.encode("utf-8")) > limit:
                errors[tp] = E.OFFSET_METADATA_TOO_LARGE
                continue
            values[tp] = OffsetValue(value.offset, value.leader_epoch, value.metadata, now_ms, expire)
        if not values:
            return CommitResult(errors)
        records = [
            (encode_key(OffsetKey(req.group_id, topic, partition)), encode_value(value))
            for (topic, partition), value in values.items()
        ]
        flush, error = self._append(records, now_ms)
        if error is not None:
            errors.update((tp, error) for tp in values)
            return CommitResult(errors)
        if new_group is not None:
            self._groups.add(new_group)
        group.offsets.update(values)
        errors.update((tp, E.NONE) for tp in values)
        self._maybe_compact(now_ms)
        return CommitResult(errors, flush)

    # -- TxnOffsetCommit and transaction markers ----------------------------------

    def txn_commit_offsets(self, req: CommitRequest, producer_id: int, producer_epoch: int,
                           now_ms: int) -> CommitResult:
        """TxnOffsetCommit: write the offsets in the producer's transaction; they
        become committed with its commit marker (:meth:`complete_transaction`).

        A group that does not exist is created to store offsets; a member id or
        generation given (v3+) must match the group's, as Kafka checks."""
        if self._groups.loading:
            return CommitResult({tp: E.COORDINATOR_LOAD_IN_PROGRESS for tp in req.offsets})
        group = self._groups.get(req.group_id)
        if group is not None and group.consumer is not None:
            error = _check_consumer_commit(group.consumer, req, transactional=True)
            if error is not None:
                return CommitResult({tp: error for tp in req.offsets})
        elif group is not None:
            error = None
            if group.is_(_DEAD):
                error = E.COORDINATOR_NOT_AVAILABLE
            elif group.is_fenced(req.group_instance_id, req.member_id):
                error = E.FENCED_INSTANCE_ID
            elif req.member_id and req.member_id not in group.members:
                error = E.UNKNOWN_MEMBER_ID
            elif req.generation >= 0 and req.generation != group.generation:
                error = E.ILLEGAL_GENERATION
            if error is not None:
                return CommitResult({tp: error for tp in req.offsets})
        errors: dict[tuple[str, int], GroupOutcome] = {}
        values: dict[tuple[str, int], OffsetValue] = {}
        limit = self.config.offset_metadata_max_bytes
        for tp, value in req.offsets.items():
            if value.metadata is not None and len(value.metadata.encode("utf-8")) > limit:
                errors[tp] = E.OFFSET_METADATA_TOO_LARGE
                continue
            values[tp] = OffsetValue(value.offset, value.leader_epoch, value.metadata, now_ms, -1)
        if not values:
            return CommitResult(errors)
        records = [
            (encode_key(OffsetKey(req.group_id, topic, partition)), encode_value(value))
            for (topic, partition), value in values.items()
        ]
        try:
            flush = self._topic.append(records, now_ms, producer_id=producer_id, producer_epoch=producer_epoch)
        except BatchTooLargeError as exc:
            log.warning("internal topic refused %d transactional offsets: %s", len(records), exc)
            errors.update((tp, E.INVALID_COMMIT_OFFSET_SIZE) for tp in values)
            return CommitResult(errors)
        except LogbrokerError as exc:
            log.warning("cannot write transactional offsets to the internal topic: %s", exc)
            errors.update((tp, E.COORDINATOR_NOT_AVAILABLE) for tp in values)
            return CommitResult(errors)
        pending = self._pending_txn.setdefault(producer_id, {})
        for tp, value in values.items():
            pending[(req.group_id, tp)] = value
        errors.update((tp, E.NONE) for tp in values)
        return CommitResult(errors, flush)

    def complete_transaction(self, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                             now_ms: int) -> FlushPoint:
        """Append the transaction marker to the internal topic, then make the
        producer's pending offsets committed (``commit``) or drop them. Returns
        the flush point; raises LogbrokerError with nothing changed."""
        flush = self._topic.append_marker(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)
        self._resolve_pending(producer_id, commit, now_ms)
        self._maybe_compact(now_ms)
        return flush

    def _resolve_pending(self, producer_id: int, commit: bool, now_ms: int) -> None:
        pending = self._pending_txn.pop(producer_id, None)
        if not pending or not commit:
            return
        for (group_id, tp), value in pending.items():
            group = self._groups.get(group_id)
            if group is None:
                group = self._groups.add(Group(group_id, state_timestamp=max(now_ms, 0)))
            group.offsets[tp] = value

    def has_pending_offset(self, group_id: str, tp: tuple[str, int]) -> bool:
        """True while a transaction holds an uncommitted offset of the group for ``tp``
        (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT)."""
        return any((group_id, tp) in pending for pending in self._pending_txn.values())

    @staticmethod
    def _check_commit(group: Group, req: CommitRequest) -> GroupOutcome | None:
        """Kafka's checks of a commit to an existing group, in its order."""
        if group.consumer is not None:
            return _check_consumer_commit(group.consumer, req, transactional=False)
        if group.is_(_DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if req.generation < 0 and group.is_(_EMPTY):
            return None  # a group that only stores offsets
        if req.generation >= 0 or req.member_id or req.group_instance_id is not None:
            if req.group_instance_id is not None and group.static_members.get(req.group_instance_id) is None:
                return E.UNKNOWN_MEMBER_ID
            if group.is_fenced(req.group_instance_id, req.member_id):
                return E.FENCED_INSTANCE_ID
            if req.member_id not in group.members:
                return E.UNKNOWN_MEMBER_ID
            if req.generation != group.generation:
                return E.ILLEGAL_GENERATION
        elif not group.is_(_EMPTY):
            return E.UNKNOWN_MEMBER_ID  # no member id nor generation: only into an empty group
        # Only a member of the current generation learns that the group is still
        # syncing; an older generation is ILLEGAL_GENERATION above (Kafka's order),
        # which a cooperative consumer handles by rejoining, not by failing the commit.
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return E.REBALANCE_IN_PROGRESS
        return None

    def fetch_offsets(self, group_id: str, partitions: list[tuple[str, int]] | None, *,
                      member_id: str | None = None, member_epoch: int = -1) -> FetchResult:
        """OffsetFetch of ``partitions`` (None: every partition the group has offsets for).

        ``member_id``/``member_epoch`` (OffsetFetch v9+): a member of a
        consumer group must be known and current (UNKNOWN_MEMBER_ID,
        STALE_MEMBER_EPOCH), as Kafka's validateOffsetFetch."""
        if self._groups.loading:
            return FetchResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        group = self._groups.get(group_id)
        if group is not None and group.consumer is not None and not (member_id is None and member_epoch < 0):
            member = group.consumer.members.get(member_id or "")
            if member is None:
                return FetchResult(E.UNKNOWN_MEMBER_ID)
            if member.member_epoch != member_epoch:
                return FetchResult(E.STALE_MEMBER_EPOCH)
        stored = group.offsets if group is not None and not group.is_(_DEAD) else {}
        if partitions is None:
            return FetchResult(E.NONE, dict(stored))
        return FetchResult(E.NONE, {tp: stored.get(tp) for tp in partitions})

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]], now_ms: int) -> OffsetDeleteResult:
        """OffsetDelete: refused per partition for topics the active group consumes."""
        if self._groups.loading:
            return OffsetDeleteResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        if not group_id:
            return OffsetDeleteResult(E.INVALID_GROUP_ID)
        group = self._groups.get(group_id)
        if group is None or group.is_(_DEAD):
            return OffsetDeleteResult(E.GROUP_ID_NOT_FOUND)
        if group.protocol_type == "consumer" or group.consumer is not None:
            subscribed = group.subscribed_topics() or set()
        elif group.is_(_EMPTY):
            subscribed = set()
        else:
            return OffsetDeleteResult(E.NON_EMPTY_GROUP)
        results = {tp: E.GROUP_SUBSCRIBED_TO_TOPIC if tp[0] in subscribed else E.NONE for tp in partitions}
        doomed = [tp for tp, error in results.items() if error is E.NONE and tp in group.offsets]
        if not doomed:
            return OffsetDeleteResult(E.NONE, results)
        flush, error = self._append([(encode_key(OffsetKey(group_id, *tp)), None) for tp in doomed], now_ms)
        if error is not None:
            return OffsetDeleteResult(error)
        for tp in doomed:
            del group.offsets[tp]
        return OffsetDeleteResult(E.NONE, results, flush)

    # -- ListGroups / DescribeGroups / DeleteGroups --------------------------------

    def list_groups(self, states: set[str] | None = None) -> tuple[GroupOutcome, list[ListedGroup]]:
        """Every group (optionally only those in ``states``, matched case-insensitively)."""
        if self._groups.loading:
            return E.COORDINATOR_LOAD_IN_PROGRESS, []
        wanted = {s.lower() for s in states} if states else None
        out = [
            ListedGroup(g.group_id, g.protocol_type or "", g.state_name(), g.group_type)
            for g in self._groups
            if not g.is_(_DEAD) and (wanted is None or g.state_name().lower() in wanted)
        ]
        return E.NONE, out

    def describe_groups(self, group_ids: list[str]) -> list[GroupSummary]:
        """DescribeGroups; an unknown group is reported Dead with no error, as Kafka does."""
        out = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if self._groups.loading:
                out.append(GroupSummary(group_id, E.COORDINATOR_LOAD_IN_PROGRESS, _DEAD.value))
            elif group is None or group.consumer is not None:
                # Kafka (DescribeGroups below v6): a group of another type is described as Dead.
                out.append(GroupSummary(group_id, E.NONE, _DEAD.value))
            else:
                stable = group.is_(GroupState.STABLE)
                members = tuple(
                    MemberSummary(
                        m.member_id, m.group_instance_id, m.client_id, m.client_host,
                        m.metadata(group.protocol_name) if stable else b"", m.assignment if stable else b"",
                    )
                    for m in group.members.values()
                )
                out.append(GroupSummary(
                    group_id, E.NONE, group.state.value, group.protocol_type or "",
                    (group.protocol_name or "") if stable else "", members,
                ))
        return out

    def delete_groups(self, group_ids: list[str], now_ms: int) -> tuple[dict[str, GroupOutcome], FlushPoint | None]:
        """DeleteGroups: Empty groups go, with their offsets; returns (errors, flush point)."""
        results: dict[str, GroupOutcome] = {}
        flush = None
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if self._groups.loading:
                results[group_id] = E.COORDINATOR_LOAD_IN_PROGRESS
            elif not group_id:
                results[group_id] = E.INVALID_GROUP_ID
            elif group is None or group.is_(_DEAD):
                results[group_id] = E.GROUP_ID_NOT_FOUND
            elif not group.is_(_EMPTY) or (group.consumer is not None and not group.is_empty()):
                results[group_id] = E.NON_EMPTY_GROUP
            else:
                written, error = self._append(_tombstones(group), now_ms)
                if error is not None:
                    results[group_id] = error
                    continue
                flush = written
                group.transition(_DEAD, now_ms)
                self._groups.remove(group_id)
                results[group_id] = E.NONE
                log.info("deleted group %s", group_id)
        return results, flush

    # -- expiry --------------------------------------------------------------------

    def expire_offsets(self, now_ms: int) -> int:
        """Kafka's offset retention; then Empty groups without offsets are removed.

        An Empty group's offsets expire ``offsets_retention_ms`` after it became
        Empty; a group that only stores offsets counts from each commit; a
        stable consumer group loses offsets of topics it no longer subscribes
        to. Explicit expire timestamps (OffsetCommit v2-v4) win. Returns the
        number of offsets removed.
        """
        retention = self.config.offsets_retention_ms
        records: Records = []
        changes: list[tuple[Group, list[tuple[str, int]], bool]] = []
        for group in self._groups:
            skip: set[str] = set()
            base: int | None
            if group.consumer is not None and group.consumer.members:
                base, skip = None, group.subscribed_topics() or set()
            elif group.is_(_EMPTY) and group.protocol_type is not None:
                base = group.state_timestamp
            elif group.is_(_EMPTY):
                base = None  # each offset's commit time
            elif group.is_(GroupState.STABLE) and (topics := group.subscribed_topics()) is not None:
                base, skip = None, topics
            else:
                continue
            expired = [
                tp for tp, v in group.offsets.items()
                if tp[0] not in skip and (
                    now_ms >= v.expire_timestamp if v.expire_timestamp >= 0
                    else now_ms - (v.commit_timestamp if base is None else base) >= retention
                )
            ]
            drop_group = group.is_empty() and len(expired) == len(group.offsets)
            if not expired and not drop_group:
                continue
            records.extend((encode_key(OffsetKey(group.group_id, *tp)), None) for tp in expired)
            if drop_group and group.persisted:
                kind = GroupKey if group.consumer is None else ConsumerGroupKey
                records.append((encode_key(kind(group.group_id)), None))
            changes.append((group, expired, drop_group))
        if not changes:
            return 0
        if records:
            _, error = self._append(records, now_ms)
            if error is not None:
                return 0
        removed = 0
        for group, expired, drop_group in changes:
            for tp in expired:
                del group.offsets[tp]
            removed += len(expired)
            if drop_group:
                group.transition(_DEAD, now_ms)
                self._groups.remove(group.group_id)
        log.info("expired %d offsets; %d groups remain", removed, len(self._groups))
        return removed

    def topic_deleted(self, topic: str, now_ms: int) -> int:
        """Drop every group's offsets of a deleted topic (as Kafka does); returns how many."""
        doomed = [(group, tp) for group in self._groups for tp in group.offsets if tp[0] == topic]
        if not doomed or self._groups.loading:
            return 0
        _, error = self._append([(encode_key(OffsetKey(g.group_id, *tp)), None) for g, tp in doomed], now_ms)
        if error is not None:
            return 0
        for group, tp in doomed:
            del group.offsets[tp]
        log.info("removed %d committed offsets of deleted topic %s", len(doomed), topic)
        return len(doomed)

    def statistics(self) -> CoordinatorStatistics:
        return CoordinatorStatistics(
            groups=len(self._groups),
            members=sum(g.member_count() for g in self._groups),
            offsets=sum(len(g.offsets) for g in self._groups),
            log_records=self._topic.record_count,
        )


def _tombstones(group: Group) -> Records:
    records: Records = [
        (encode_key(OffsetKey(group.group_id, topic, partition)), None) for topic, partition in group.offsets
    ]
    kind = GroupKey if group.consumer is None else ConsumerGroupKey
    records.append((encode_key(kind(group.group_id)), None))
    return records


def _check_consumer_commit(group: ConsumerGroup, req: CommitRequest, *, transactional: bool) -> GroupOutcome | None:
    """Kafka's ConsumerGroup.validateOffsetCommit: an empty group takes commits
    without a member (epoch < 0); a member must be known and commit with its
    current epoch, through OffsetCommit v9+ unless transactional."""
    if req.generation < 0 and not group.members:
        return None
    member = group.members.get(req.member_id)
    if member is None:
        return E.UNKNOWN_MEMBER_ID
    if not transactional and req.api_version is not None and req.api_version < 9:
        return E.UNSUPPORTED_VERSION
    if req.generation != member.member_epoch:
        return E.STALE_MEMBER_EPOCH
    return None
