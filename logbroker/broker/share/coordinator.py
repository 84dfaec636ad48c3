"""The share coordinator: share groups (KIP-932) as a state machine.

It runs every share group's membership (:mod:`.membership`), share sessions
(:mod:`.sessions`) and share-partitions (:mod:`.partition`). It is composed
of parts, each the one owner of its state: the groups and share-partitions
are a :class:`~.registry.ShareRegistry` (``registry``); the stored state
(the in-flight state in ``__share_group_state``, dead-letter copies to
dead-letter topics, replay, configs) is a :class:`~.state.ShareState`
(``state``, record format in :mod:`.records`), told what changed through its
methods; share sessions are :class:`~.sessions.ShareSessions`
(``sessions``). The methods that belong to ``state`` are delegated with the
same names and signatures. Every command takes ``now_ms``; nothing here
sleeps.

Writes are batched per request: commands mark share-partitions dirty and
:meth:`ShareCoordinator.commit` appends one batch (a delta per changed
share-partition, a snapshot every ``snapshot_every`` deltas) and returns
where to fsync. Deadlines (member sessions, share sessions, record locks)
sit in one heap with lazily dropped stale entries, as in the classic group
coordinator; the broker polls :meth:`next_deadline_ms` and calls
:meth:`fire_deadlines`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from logbroker.broker.internal_topic import FlushPoint
from logbroker.broker.share.config import ShareConfig
from logbroker.broker.share.membership import ShareGroup, ShareMember, update_assignment
from logbroker.broker.share.partition import (
    ACKNOWLEDGED, ACQUIRED, ARCHIVED, AVAILABLE, SharePartition, merge_ranges,
)
from logbroker.broker.share.registry import ShareRegistry
from logbroker.broker.share.results import (
    ConfigDescription, GroupDescription, HeartbeatRequest, HeartbeatResult, ListedShareGroup, MemberDescription,
    PartitionData, SessionResult, ShareError, SharePartitionCounts, ShareStatistics, Written,
)
from logbroker.broker.share.sessions import FINAL_EPOCH, INITIAL_EPOCH, ShareSession, ShareSessions
from logbroker.broker.share.state import ShareState
from logbroker.broker.share.store import ShareStateTopic
from logbroker.errors import LogbrokerError, UnknownTopicError
from logbroker.records import BatchHeader, iter_batches
from logbroker.storage import LogManager, PartitionLog

log = logging.getLogger("logbroker.share")

E = ShareError
_MEMBER, _SESSION, _LOCK = "member", "session", "lock"
_READ_BYTES = 1 << 20
TP = tuple[str, int]
# (topic, partition, log, from offset) -> (last stable offset, aborted transactions
# from there on, each with producer_id, first_offset and last_offset).
StableView = Callable[[str, int, object, int], tuple[int, Sequence]]


class ShareCoordinator:
    """Every share group of this broker. Not thread-safe: one thread drives it.

    Create it, then call :meth:`load` to replay the internal topic; until
    then commands answer COORDINATOR_LOAD_IN_PROGRESS. ``is_classic_group``
    tells whether a group id belongs to the classic coordinator;
    ``stable_view`` gives a partition's last stable offset and aborted
    transactions, for groups with ``share.isolation.level=read_committed``.
    """

    def __init__(
        self, config: ShareConfig, store: ShareStateTopic, logs: LogManager,
        *, is_classic_group: Callable[[str], bool] = lambda group_id: False,
        stable_view: StableView | None = None,
    ) -> None:
        self.config = config
        self._stable_view = stable_view
        self._logs = logs
        self._is_classic = is_classic_group
        self.registry = ShareRegistry()
        self.sessions = ShareSessions()
        self.state = ShareState(config, store, logs, self.registry, self.sessions, is_classic_group=is_classic_group)
        self._heap: list[tuple[int, int, str, str, object]] = []
        self._seq = itertools.count()
        self._topic_ids: dict[uuid.UUID, str] = {}

    def __repr__(self) -> str:
        state = "loading" if self.loading else "active"
        return (f"ShareCoordinator({state}, groups={len(self.registry)}, "
                f"partitions={self.registry.partition_count()}, sessions={len(self.sessions)})")

    @property
    def loading(self) -> bool:
        """True until :meth:`load` replayed the internal topic."""
        return self.registry.loading

    @property
    def wake(self) -> Callable[[list[TP]], None] | None:
        """Called by :meth:`commit` with the partitions that grew or whose
        records became available again (the server wakes waiting fetches)."""
        return self.state.wake

    @wake.setter
    def wake(self, hook: Callable[[list[TP]], None] | None) -> None:
        self.state.wake = hook

    # -- the stored state's commands (ShareState) ------------------------------------

    def commit(self, now_ms: int) -> Written:
        """Write what the last commands changed (see :meth:`ShareState.commit`)."""
        return self.state.commit(now_ms)

    def load(self, now_ms: int) -> None:
        """Replay the internal topic (see :meth:`ShareState.load`)."""
        self.state.load(now_ms)

    def describe_configs(self, group_id: str) -> list[ConfigDescription]:
        return self.state.describe_configs(group_id)

    def group_configs(self, group_id: str) -> dict[str, str]:
        return self.state.group_configs(group_id)

    def alter_configs(self, group_id: str, configs: dict[str, str | None], now_ms: int, *,
                      validate_only: bool = False) -> FlushPoint | None:
        return self.state.alter_configs(group_id, configs, now_ms, validate_only=validate_only)

    def delete_group(self, group_id: str, now_ms: int) -> tuple[ShareError, FlushPoint | None]:
        return self.state.delete_group(group_id, now_ms)

    def topic_deleted(self, topic: str, now_ms: int) -> None:
        self.state.topic_deleted(topic, now_ms)

    def close(self, now_ms: int) -> None:
        self.state.close(now_ms)

    # -- lookups -------------------------------------------------------------------

    def group(self, group_id: str) -> ShareGroup | None:
        """The group's live state (for tests and tools; do not mutate)."""
        return self.registry.get(group_id)

    def member(self, group_id: str, member_id: str) -> ShareMember | None:
        """The member's live state, None if it is not in the group (do not mutate).
        A member that leaves and joins again is a new object."""
        group = self.registry.get(group_id)
        return group.members.get(member_id) if group is not None else None

    def share_partition(self, group_id: str, topic: str, partition: int) -> SharePartition | None:
        """A share-partition's live state (for tests and tools; do not mutate)."""
        return self.registry.partition(group_id, (topic, partition))

    def is_share_group(self, group_id: str) -> bool:
        return group_id in self.registry

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        """The name of the topic with ``topic_id``, or None (cached; checked on every hit)."""
        name = self._topic_ids.get(topic_id)
        if name is not None:
            try:
                if self._logs.topic(name).topic_id == topic_id:
                    return name
            except UnknownTopicError:
                pass
        self._topic_ids = {info.topic_id: n for n, info in self._logs.topics().items()}
        return self._topic_ids.get(topic_id)

    def topic_id(self, topic: str) -> uuid.UUID | None:
        try:
            return self._logs.topic(topic).topic_id
        except UnknownTopicError:
            return None

    def _known(self, group_id: str) -> ShareGroup:
        """A group a live timer or share-partition names (it exists)."""
        group = self.registry.get(group_id)
        assert group is not None, group_id
        return group

    # -- timers --------------------------------------------------------------------

    def _schedule(self, deadline: int, kind: str, group_id: str, key: object) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, group_id, key))

    def _live(self, entry: tuple[int, int, str, str, object]) -> bool:
        deadline, _, kind, group_id, key = entry
        if kind == _MEMBER:
            group = self.registry.get(group_id)
            member = group.members.get(str(key)) if group is not None else None
            return member is not None and member.timer_at == deadline
        if kind == _SESSION:
            session = self.sessions.get(group_id, str(key))
            return session is not None and session.expiry_at == deadline
        sp = self.registry.partition(group_id, _tp(key))
        return sp is not None and sp.timer_at == deadline

    def next_deadline_ms(self) -> int | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_deadlines(self, now_ms: int) -> Written:
        """Act on every deadline at or before ``now_ms``; returns what was written."""
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, kind, group_id, key = entry
            if kind == _MEMBER:
                self._on_member_deadline(self._known(group_id), str(key), now_ms)
            elif kind == _SESSION:
                session = self.sessions.get(group_id, str(key))
                assert session is not None  # _live checked it
                self._on_session_deadline(session, now_ms)
            else:
                sp = self.registry.partition(group_id, _tp(key))
                assert sp is not None  # _live checked it
                sp.timer_at = None
                self._expire(group_id, _tp(key), sp, now_ms)
        return self.commit(now_ms)

    def _on_member_deadline(self, group: ShareGroup, member_id: str, now: int) -> None:
        member = group.members[member_id]
        member.timer_at = None
        if member.session_deadline > now:
            self._set_member_deadline(group, member, member.session_deadline)
            return
        log.info("share group %s: member %s session expired", group.group_id, member_id)
        self._remove_member(group, member, now, release=True)

    def _on_session_deadline(self, session: ShareSession, now: int) -> None:
        session.expiry_at = None
        group = self.registry.get(session.group_id)
        timeout = group.settings.session_timeout_ms if group is not None else self.config.session_timeout_ms
        if session.last_used + timeout > now:
            self._touch_session(session, session.last_used, timeout)
            return
        log.info("share group %s: share session of %s expired", session.group_id, session.member_id)
        self._close_session(session, now)

    def _set_member_deadline(self, group: ShareGroup, member: ShareMember, deadline: int) -> None:
        member.session_deadline = deadline
        if member.timer_at is None or deadline < member.timer_at:
            member.timer_at = deadline
            self._schedule(deadline, _MEMBER, group.group_id, member.member_id)

    def _touch_session(self, session: ShareSession, now: int, timeout: int) -> None:
        session.last_used = now
        if session.expiry_at is None:
            session.expiry_at = now + timeout
            self._schedule(session.expiry_at, _SESSION, session.group_id, session.member_id)

    def _schedule_locks(self, group_id: str, tp: TP, sp: SharePartition) -> None:
        deadline = sp.min_deadline()
        if deadline is not None and (sp.timer_at is None or deadline < sp.timer_at):
            sp.timer_at = deadline
            self._schedule(deadline, _LOCK, group_id, tp)

    def _expire(self, group_id: str, tp: TP, sp: SharePartition, now: int) -> None:
        group = self._known(group_id)
        change = sp.expire(now, group.settings.delivery_count_limit)
        self.state.note(group, tp, sp, change)
        self._schedule_locks(group_id, tp, sp)

    # -- ShareGroupHeartbeat -----------------------------------------------------------

    def heartbeat(self, req: HeartbeatRequest, now_ms: int) -> HeartbeatResult:
        """ShareGroupHeartbeat: epoch 0 joins, -1 leaves, else keeps the member alive."""
        if self.loading:
            return HeartbeatResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        if not req.group_id:
            return HeartbeatResult(E.INVALID_REQUEST, message="GroupId can't be empty")
        if not req.member_id:
            return HeartbeatResult(E.INVALID_REQUEST, message="MemberId can't be empty")
        if req.member_epoch < FINAL_EPOCH:
            return HeartbeatResult(E.INVALID_REQUEST, message=f"bad member epoch {req.member_epoch}")
        if req.member_epoch == 0 and not req.subscribed:
            return HeartbeatResult(E.INVALID_REQUEST, message="SubscribedTopicNames must be set in the first request")
        if self._is_classic(req.group_id) and req.group_id not in self.registry:
            return HeartbeatResult(E.GROUP_ID_NOT_FOUND, message=f"group {req.group_id} is not a share group")
        if req.member_epoch == FINAL_EPOCH:
            group = self.registry.get(req.group_id)
            member = group.members.get(req.member_id) if group is not None else None
            if group is not None and member is not None:
                log.info("share group %s: member %s leaves", req.group_id, req.member_id)
                self._remove_member(group, member, now_ms, release=self.sessions.get(req.group_id, req.member_id) is None)
                self.commit(now_ms)
            return HeartbeatResult(E.NONE, req.member_id, FINAL_EPOCH)
        group = self.state.ensure_group(req.group_id, now_ms)
        member = group.members.get(req.member_id)
        send = False
        if req.member_epoch == 0:
            if member is None:
                if len(group.members) >= self.config.max_size:
                    return HeartbeatResult(E.GROUP_MAX_SIZE_REACHED, message=f"group {req.group_id} is full")
                member = group.members[req.member_id] = ShareMember(req.member_id)
                log.info("share group %s: member %s joins (%s)", req.group_id, req.member_id, ", ".join(req.subscribed or ()))
            member.epoch = 0
            member.assignment = {}
            send = True
        elif member is None:
            return HeartbeatResult(E.UNKNOWN_MEMBER_ID, message=f"member {req.member_id} is not in group {req.group_id}")
        elif req.member_epoch not in (member.epoch, member.previous_epoch):
            return HeartbeatResult(
                E.FENCED_MEMBER_EPOCH, message=f"epoch {req.member_epoch} is not the member's epoch {member.epoch}"
            )
        elif req.member_epoch != member.epoch:
            send = True  # it missed our last answer
        if req.subscribed is not None:
            member.subscribed = tuple(req.subscribed)
        member.client_id = req.client_id or member.client_id
        member.client_host = req.client_host or member.client_host
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        partitions = {name: info.partitions for name, info in self._logs.topics().items()}
        if update_assignment(group, member, partitions):
            send = True
            self.state.mark_group(group.group_id)
        self._set_member_deadline(group, member, now_ms + group.settings.session_timeout_ms)
        self.commit(now_ms)
        return HeartbeatResult(
            E.NONE, member.member_id, member.epoch, group.settings.heartbeat_interval_ms,
            self._assignment(member) if send else None,
        )

    def _assignment(self, member: ShareMember) -> tuple[tuple[uuid.UUID, str, tuple[int, ...]], ...]:
        out = []
        for topic, partitions in sorted(member.assignment.items()):
            topic_id = self.topic_id(topic)
            if topic_id is not None:
                out.append((topic_id, topic, partitions))
        return tuple(out)

    def _remove_member(self, group: ShareGroup, member: ShareMember, now: int, *, release: bool) -> None:
        """Drop ``member``; with ``release`` its share session closes and its records go back."""
        del group.members[member.member_id]
        group.bump()
        self.state.mark_group(group.group_id)
        if release:
            session = self.sessions.get(group.group_id, member.member_id)
            if session is not None:
                self.sessions.close(session)
            self._release_member(group, member.member_id)

    def _release_member(self, group: ShareGroup, member_id: str) -> None:
        limit = group.settings.delivery_count_limit
        for tp, sp in self.registry.partitions(group.group_id):
            self.state.note(group, tp, sp, sp.release_member(member_id, limit))

    # -- share sessions ------------------------------------------------------------------

    def open_session(
        self, group_id: str, member_id: str, epoch: int, add: Sequence[TP], forget: Sequence[TP], now_ms: int,
        *, fetch: bool = True,
    ) -> tuple[SessionResult, ShareSession | None]:
        """The session part of a ShareFetch (``fetch``) or ShareAcknowledge.

        Epoch 0 opens a session (a fetch only), -1 continues the session for
        its last request (close it with :meth:`close_session` after the
        acknowledgements), anything else must be the session's next epoch.
        """
        if self.loading:
            return SessionResult(E.COORDINATOR_LOAD_IN_PROGRESS), None
        if not group_id or not member_id:
            return SessionResult(E.INVALID_REQUEST, message="group id and member id are required"), None
        group = self.state.ensure_group(group_id, now_ms)
        if epoch == INITIAL_EPOCH:
            if not fetch:
                return SessionResult(E.INVALID_SHARE_SESSION_EPOCH, message="ShareAcknowledge cannot open a session"), None
            session, old = self.sessions.open(group_id, member_id, now_ms)
            if old is not None:
                self._release_member(group, member_id)
        else:
            checked, error = self.sessions.check(group_id, member_id, epoch)
            if checked is None or error is not E.NONE and error is not E.INVALID_SHARE_SESSION_EPOCH:
                return SessionResult(error), None
            session = checked
            if error is E.INVALID_SHARE_SESSION_EPOCH:
                self._close_session(session, now_ms)
                return SessionResult(error, message=f"expected share session epoch {session.epoch}, got {epoch}"), None
            if error is not E.NONE:
                return SessionResult(error), None
            if epoch != FINAL_EPOCH:
                session.bump()
        if epoch != FINAL_EPOCH:
            for tp in add:
                session.partitions[tp] = None
            for tp in forget:
                session.partitions.pop(tp, None)
        self._touch_session(session, now_ms, group.settings.session_timeout_ms)
        return SessionResult(E.NONE, tuple(session.partitions)), session

    def close_session(self, session: ShareSession, now_ms: int) -> None:
        """End a session (epoch -1): the member's remaining records are released."""
        self._close_session(session, now_ms)

    def _close_session(self, session: ShareSession, now: int) -> None:
        self.sessions.close(session)
        group = self.registry.get(session.group_id)
        if group is not None:
            self._release_member(group, session.member_id)

    # -- acknowledgements and acquisition ----------------------------------------------------

    def acknowledge(
        self, group_id: str, member_id: str, topic: str, partition: int,
        batches: Iterable[tuple[int, int, Sequence[int]]], now_ms: int, *, allow_renew: bool = False,
    ) -> tuple[ShareError, str | None]:
        """Apply one partition's acknowledgement batches ``(first, last, types)``;
        returns (error, message). Call :meth:`commit` once the request is done."""
        group = self.registry.get(group_id)
        sp = self.registry.partition(group_id, (topic, partition))
        if group is None or sp is None:
            return E.INVALID_RECORD_STATE, "no records of this partition are in flight"
        settings = group.settings
        change = sp.acknowledge(
            member_id, batches, now_ms, settings.record_lock_duration_ms, settings.delivery_count_limit,
            allow_renew=allow_renew,
        )
        if change.error is not None:
            return E.INVALID_RECORD_STATE, change.error
        self.state.note(group, (topic, partition), sp, change)
        if allow_renew:
            self._schedule_locks(group_id, (topic, partition), sp)
        return E.NONE, None

    def acquire(
        self, group_id: str, member_id: str, partitions: Iterable[TP], max_records: int, max_bytes: int,
        now_ms: int,
    ) -> list[PartitionData]:
        """Acquire up to about ``max_records`` records (whole batches) for
        ``member_id`` from ``partitions``, in order. Returns the partitions that
        got records or errors; records are the log's batches holding them.

        Bytes as Kafka's DelayedShareFetch and ReplicaManager.readFromLog:
        ``max_bytes`` is split evenly over the partitions that can acquire
        (the remainder to the first), a batch that does not fit its
        partition's share or what is left of ``max_bytes`` is not added,
        except the first batch of the whole response, which is always added
        (minOneMessage). ``max_bytes`` <= 0 acquires nothing: each such
        partition answers UNKNOWN_SERVER_ERROR (Kafka's uniform strategy
        refuses a limit below 1). Records as SharePartition.acquire: whole
        batches until ``max_records`` is reached (the last batch may pass it).
        """
        group = self.state.ensure_group(group_id, now_ms)
        limit = self.config.partition_max_record_locks
        out: list[PartitionData] = []
        ready = []
        for tp in partitions:
            try:
                sp, plog = self._share_partition(group, tp, now_ms)
            except UnknownTopicError:
                out.append(PartitionData(tp[0], tp[1], E.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            if sp.timer_at is not None and sp.timer_at <= now_ms:
                self._expire(group_id, tp, sp, now_ms)
            offset = sp.fetch_offset(limit)
            if offset is not None:  # else at capacity: not acquirable (canAcquireRecords)
                ready.append((tp, sp, plog, offset))
        if not ready:
            return out
        if max_bytes <= 0:
            message = "Request max bytes must be greater than 0"
            return out + [PartitionData(tp[0], tp[1], E.UNKNOWN_SERVER_ERROR, message=message) for tp, *_ in ready]
        share, extra = divmod(max_bytes, len(ready))
        budget = _Budget(max(max_records, 1), max_bytes)
        for i, (tp, sp, plog, offset) in enumerate(ready):
            if budget.records <= 0:
                break
            got = self._acquire_partition(group, member_id, tp, sp, plog, offset, share + (extra if i == 0 else 0),
                                          budget, now_ms)
            if got is not None:
                out.append(got)
        return out

    def _acquire_partition(
        self, group: ShareGroup, member_id: str, tp: TP, sp: SharePartition, plog: PartitionLog, offset: int,
        part_bytes: int,
        budget: _Budget, now_ms: int,
    ) -> PartitionData | None:
        """One partition's part of :meth:`acquire`, from ``offset``, within
        ``part_bytes`` and ``budget`` (both spent as batches are added)."""
        settings = group.settings
        limit = self.config.partition_max_record_locks
        end, aborted = plog.log_end_offset, cast(Sequence[Any], ())
        if settings.read_committed and self._stable_view is not None:
            end, aborted = self._stable_view(tp[0], tp[1], plog, offset)
        if offset >= end:
            return None
        ranges: list = []
        pieces: list = []
        full = False  # the next batch does not fit: stop
        while not full and budget.records > 0 and offset < end:
            room = min(part_bytes, budget.bytes)
            try:
                data = plog.read(offset, max(1, min(room, _READ_BYTES))).records
            except LogbrokerError as exc:
                log.warning("share group %s: cannot read %s-%d at %d: %s", group.group_id, *tp, offset, exc)
                break
            if not len(data):
                break
            scanned = False
            for pos, header in iter_batches(data):
                if header.base_offset >= end:
                    full = True  # read_committed: not stable yet
                    break
                if header.is_control:
                    scanned, offset = True, header.last_offset + 1
                    continue  # transaction markers are never delivered (its offsets become a hole)
                if aborted and header.is_transactional and _aborted(aborted, header):
                    if not sp.skip_batch(header.base_offset, header.last_offset, limit):
                        full = True
                        break
                    scanned, offset = True, header.last_offset + 1
                    continue
                if (header.size > min(part_bytes, budget.bytes) and not budget.first
                        and sp.any_available(header.base_offset, header.last_offset, limit)):
                    full = True  # it does not fit (batches with nothing to acquire cost nothing)
                    break
                scanned, offset = True, header.last_offset + 1
                got = sp.acquire_batch(
                    member_id, header.base_offset, header.last_offset, now_ms,
                    settings.record_lock_duration_ms, limit,
                )
                if got:
                    ranges += got
                    pieces.append((data, pos, header.size))
                    budget.take(sum(r.last - r.first + 1 for r in got), header.size)
                    part_bytes -= header.size
                    if budget.records <= 0:
                        break
                elif sp.in_flight >= limit and header.last_offset >= sp.end - 1:
                    full = True  # the window is full and nothing before its end is available
                    break
            if not scanned:
                break  # a read without a whole batch cannot advance
        if not ranges:
            return None
        self._schedule_locks(group.group_id, tp, sp)
        return PartitionData(tp[0], tp[1], records=_join(pieces), acquired=tuple(merge_ranges(ranges)))

    def alter_start_offsets(
        self, group_id: str, offsets: dict[TP, int], now_ms: int,
    ) -> tuple[ShareError, dict[TP, ShareError], Written | None]:
        """Move share-partitions of an empty group to new start offsets (Kafka's
        AlterShareGroupOffsets, ``kafka-share-groups.sh --reset-offsets``): each
        starts afresh there, its in-flight state dropped. Returns the group's
        error, one per partition and what was written; nothing changes on a
        group error."""
        group = self.registry.get(group_id)
        if self.loading:
            return E.COORDINATOR_LOAD_IN_PROGRESS, {}, None
        if group is None:
            return E.GROUP_ID_NOT_FOUND, {}, None
        if group.members:
            return E.NON_EMPTY_GROUP, {}, None
        out = {}
        for tp, offset in offsets.items():
            try:
                plog = self._logs.get_partition(*tp)
            except LogbrokerError:
                out[tp] = E.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not plog.log_start_offset <= offset <= plog.log_end_offset:
                out[tp] = E.OFFSET_OUT_OF_RANGE
                continue
            self.registry.set_partition(group_id, tp, SharePartition(offset, self._logs.topic(tp[0]).topic_id))
            self.state.mark_snapshot(group_id, tp)
            log.info("share group %s: %s-%d reset to start at offset %d", group_id, *tp, offset)
            out[tp] = E.NONE
        return E.NONE, out, self.commit(now_ms)

    def _share_partition(self, group: ShareGroup, tp: TP, now: int) -> tuple[SharePartition, PartitionLog]:
        """The share-partition (created at the group's auto offset reset) and its log."""
        plog = self._logs.get_partition(*tp)
        sp = self.registry.partition(group.group_id, tp)
        topic_id = self._logs.topic(tp[0]).topic_id
        if sp is not None and sp.topic_id != topic_id:
            sp = None  # the topic was deleted and created again
        if sp is None:
            start = group.settings.start_offset(plog, now)
            sp = self.registry.set_partition(group.group_id, tp, SharePartition(start, topic_id))
            self.state.mark_snapshot(group.group_id, tp)
            log.info("share group %s: %s-%d starts at offset %d", group.group_id, *tp, start)
        if sp.start < plog.log_start_offset and sp.move_start(plog.log_start_offset):
            self.state.mark_snapshot(group.group_id, tp)
        return sp, plog

    # -- listing and description --------------------------------------------------------------

    def list_groups(self) -> list[ListedShareGroup]:
        if self.loading:
            return []
        return [ListedShareGroup(g.group_id, g.state) for g in self.registry]

    def describe(self, group_ids: Sequence[str]) -> list[GroupDescription]:
        out = []
        for group_id in group_ids:
            group = self.registry.get(group_id)
            if self.loading:
                out.append(GroupDescription(group_id, E.COORDINATOR_LOAD_IN_PROGRESS))
            elif group is None:
                out.append(GroupDescription(group_id, E.GROUP_ID_NOT_FOUND, message=f"group {group_id} is not a share group"))
            else:
                members = tuple(
                    MemberDescription(
                        m.member_id, m.rack_id, m.epoch, m.client_id, m.client_host, m.subscribed, self._assignment(m)
                    )
                    for m in group.members.values()
                )
                out.append(GroupDescription(group_id, E.NONE, group.state, group.epoch, group.epoch, members))
        return out

    def partition_counts(self, group_id: str | None = None) -> dict[tuple[str, str, int], SharePartitionCounts]:
        """Per share-partition (of one group, or of all): its window, records by
        state in it, and records acknowledged and archived since the broker started."""
        out = {}
        for group, (topic, partition), sp in self.registry.all_partitions():
            if group_id is None or group == group_id:
                counts = sp.state_counts()
                out[(group, topic, partition)] = SharePartitionCounts(
                    sp.start, sp.end, counts[AVAILABLE], counts[ACQUIRED], counts[ACKNOWLEDGED], counts[ARCHIVED],
                    sp.acknowledged_total, sp.archived_total,
                )
        return out

    def statistics(self) -> ShareStatistics:
        return ShareStatistics(
            groups=len(self.registry),
            members=sum(len(g.members) for g in self.registry),
            partitions=self.registry.partition_count(),
            sessions=len(self.sessions),
            in_flight=sum(sp.in_flight for _, _, sp in self.registry.all_partitions()),
            log_records=self.state.record_count,
        )

def _tp(key: object) -> TP:
    """A lock timer's key: the share-partition's (topic, partition)."""
    assert isinstance(key, tuple)
    return key


class _Budget:
    """What one ShareFetch may still acquire: records, bytes, and whether no
    batch was added yet (the first always is, as Kafka's minOneMessage)."""

    __slots__ = ("records", "bytes", "first")

    def __init__(self, records: int, max_bytes: int) -> None:
        self.records, self.bytes, self.first = records, max_bytes, True

    def __repr__(self) -> str:
        return f"_Budget(records={self.records}, bytes={self.bytes}, first={self.first})"

    def take(self, records: int, size: int) -> None:
        self.records -= records
        self.bytes = max(0, self.bytes - size)
        self.first = False


def _aborted(aborted: Sequence[Any], header: BatchHeader) -> bool:
    """Is the transactional batch ``header`` part of one of the ``aborted`` transactions?"""
    pid, base = header.producer_id, header.base_offset
    return any(t.producer_id == pid and t.first_offset <= base <= t.last_offset for t in aborted)


def _join(pieces: list) -> object:
    """The bytes of the chosen batches: one view when they are contiguous, else a copy."""
    data, pos, size = pieces[0]
    end = pos + size
    contiguous = True
    for other, p, s in pieces[1:]:
        if other is not data or p != end:
            contiguous = False
            break
        end = p + s
    if contiguous:
        return data[pos:end]
    return b"".join(bytes(d[p : p + s]) for d, p, s in pieces)
