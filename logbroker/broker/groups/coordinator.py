"""The group coordinator: Kafka's classic group membership as a state machine.

Every command takes ``now_ms`` and returns its result at once, or a
:class:`~logbroker.broker.deferred.Deferred` that a later command or
deadline completes (a JoinGroup waits for the other members, a follower's
SyncGroup for the leader's assignments). Nothing here sleeps or does I/O
besides appending to the internal topic through :class:`OffsetsTopic`.

Deadlines (session expiry, the end of a join phase, the SyncGroup deadline,
the periodic offset-expiry check) sit in one heap. Entries are never
removed: each names what it is for, and is live only while that object
still holds the same deadline, so rescheduling is a push and stale entries
are dropped when they reach the top. The broker polls
:meth:`next_deadline_ms` and calls :meth:`fire_deadlines` (the timer-source
interface of :class:`~logbroker.broker.core.Broker`).

The coordinator is composed of parts, each the one owner of its state:

* the group map and the loading / shutting-down flags:
  :class:`~.registry.GroupRegistry` (``registry``), shared by the parts;
* stored state (the internal topic, committed and pending transactional
  offsets, listing, deletion, expiry): :class:`~.offsets.OffsetStore`
  (``offsets``), told of a member's commit through a callback;
* KIP-848 consumer groups and their member timers:
  :class:`~.consumer_commands.ConsumerGroups` (``consumer``);
* classic membership and its timers: this class.

The request handlers call the coordinator; the methods that belong to a
part delegate to it with the same names and signatures.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import uuid

from collections.abc import Mapping, Sequence

from logbroker.broker.deferred import Deferred
from logbroker.broker.groups.config import GroupConfig
from logbroker.broker.groups.consumer_commands import ConsumerGroups
from logbroker.broker.groups.consumer_group import TopicMeta
from logbroker.broker.groups.offsets import OffsetStore
from logbroker.broker.groups.registry import GroupRegistry
from logbroker.broker.groups.results import (
    CommitRequest,
    CommitResult,
    ConsumerGroupDescription,
    ConsumerHeartbeat,
    ConsumerHeartbeatResult,
    CoordinatorStatistics,
    FetchResult,
    GroupOutcome,
    GroupSummary,
    JoinedMember,
    JoinRequest,
    JoinResult,
    LeaveResult,
    ListedGroup,
    OffsetDeleteResult,
    SyncResult,
)
from logbroker.broker.groups.state import Group, GroupState, Member
from logbroker.broker.groups.store import FlushPoint, OffsetsTopic

log = logging.getLogger("logbroker.groups")

NEW_MEMBER_JOIN_TIMEOUT_MS = 300_000
"""A new member's JoinGroup is dropped after this long (Kafka's constant)."""

_SESSION, _JOIN, _SYNC, _CHECK = "session", "join", "sync", "check"
_EMPTY = GroupState.EMPTY
_PREPARING = GroupState.PREPARING_REBALANCE
_COMPLETING = GroupState.COMPLETING_REBALANCE
_STABLE = GroupState.STABLE
_DEAD = GroupState.DEAD
E = GroupOutcome


class GroupCoordinator:
    """Every group of this broker. Not thread-safe: one thread drives it.

    Create it, then call :meth:`load` to replay the internal topic; until
    then commands answer COORDINATOR_LOAD_IN_PROGRESS.
    """

    def __init__(self, config: GroupConfig, store: OffsetsTopic) -> None:
        self.config = config
        self.registry = GroupRegistry()
        self.offsets = OffsetStore(config, store, self.registry, self._keep_alive)
        self.consumer = ConsumerGroups(config, self.registry, self.offsets)
        self._heap: list[tuple[int, int, str, str, str]] = []
        self._seq = itertools.count()
        self._next_check: int | None = None

    def __repr__(self) -> str:
        state = "loading" if self.loading else "shutting down" if self.registry.shutting_down else "active"
        return f"GroupCoordinator({state}, groups={len(self.registry)}, timers={self.timers})"

    @property
    def loading(self) -> bool:
        """True until :meth:`load` replayed the internal topic."""
        return self.registry.loading

    @property
    def timers(self) -> int:
        """Entries in the timer heaps (classic and consumer groups), live or stale."""
        return len(self._heap) + self.consumer.timers

    def group(self, group_id: str) -> Group | None:
        """The group's live state (for tests and tools; do not mutate)."""
        return self.registry.get(group_id)

    def load(self, now_ms: int) -> None:
        """Replay the internal topic (see :meth:`OffsetStore.load`), then serve."""
        self.offsets.load(now_ms)
        self.registry.loading = False
        self._next_check = now_ms + self.config.retention_check_interval_ms
        self._schedule(self._next_check, _CHECK)

    def _keep_alive(self, group: Group, member: Member, now: int) -> None:
        """A classic member committed offsets: its session goes on."""
        self._set_session_deadline(group, member, now + member.session_timeout_ms)

    # -- timers --------------------------------------------------------------

    def _schedule(self, deadline: int, kind: str, group_id: str = "", member_id: str = "") -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, group_id, member_id))

    def _set_session_deadline(self, group: Group, member: Member, deadline: int) -> None:
        """Heartbeats only move the deadline; an entry is pushed when none is due earlier."""
        member.session_deadline = deadline
        if member.timer_at is None or deadline < member.timer_at:
            member.timer_at = deadline
            self._schedule(deadline, _SESSION, group.group_id, member.member_id)

    def _live(self, entry: tuple[int, int, str, str, str]) -> bool:
        deadline, _, kind, group_id, member_id = entry
        if kind == _CHECK:
            return self._next_check == deadline
        group = self.registry.get(group_id)
        if group is None:
            return False
        if kind == _SESSION:
            member = group.members.get(member_id)
            if member is not None:
                return member.timer_at == deadline
            return group.pending_members.get(member_id) == deadline
        if kind == _JOIN:
            return group.join_deadline == deadline and group.is_(_PREPARING)
        return group.sync_deadline == deadline

    def next_deadline_ms(self) -> int | None:
        """The earliest live deadline (classic or consumer groups), or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        own = heap[0][0] if heap else None
        consumer = self.consumer.next_deadline_ms()
        if own is None or consumer is None:
            return own if consumer is None else consumer
        return min(own, consumer)

    def fire_deadlines(self, now_ms: int) -> None:
        """Act on every deadline at or before ``now_ms``."""
        self.consumer.fire_deadlines(now_ms)
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, kind, group_id, member_id = entry
            if kind == _CHECK:
                self._next_check = now_ms + self.config.retention_check_interval_ms
                self._schedule(self._next_check, _CHECK)
                self.offsets.expire_offsets(now_ms)
                continue
            group = self.registry.get(group_id)
            assert group is not None  # _live checked it
            if kind == _SESSION:
                self._on_session_deadline(group, member_id, now_ms)
            elif kind == _JOIN:
                self._on_join_deadline(group, now_ms)
            else:
                self._on_sync_deadline(group, now_ms)

    def _on_session_deadline(self, group: Group, member_id: str, now: int) -> None:
        member = group.members.get(member_id)
        if member is None:  # a pending member that never sent its second JoinGroup
            del group.pending_members[member_id]
            log.info("group %s: pending member %s expired", group.group_id, member_id)
            self._try_complete_join(group, now)
            return
        member.timer_at = None
        if member.session_deadline > now:  # heartbeats moved it on
            self._set_session_deadline(group, member, member.session_deadline)
            return
        # Kafka's shouldKeepAlive: a member waiting in JoinGroup (unless new) or
        # SyncGroup is not expired; answering it schedules a fresh deadline.
        if (member.join_waiter is not None and not member.is_new) or member.sync_waiter is not None:
            return
        log.info("group %s: member %s session expired", group.group_id, member_id)
        self._remove_member(group, member, now, "session expired")

    def _on_join_deadline(self, group: Group, now: int) -> None:
        if group.initial_delay_left is not None and group.new_member_added and group.initial_delay_left > 0:
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, group.initial_delay_left)
            group.initial_delay_left -= delay
            group.join_deadline = now + delay
            self._schedule(group.join_deadline, _JOIN, group.group_id)
            return
        self._complete_join(group, now)

    def _on_sync_deadline(self, group: Group, now: int) -> None:
        group.sync_deadline = None
        if group.state not in (_COMPLETING, _STABLE) or not group.pending_sync:
            return
        late = sorted(group.pending_sync)
        log.info("group %s: removing members that sent no SyncGroup in time: %s", group.group_id, late)
        for member_id in late:
            member = group.remove(member_id)
            if member is not None:
                self._answer_removed(member)
        group.pending_sync.clear()
        self._maybe_prepare_rebalance(group, now, "members did not sync")

    # -- JoinGroup -----------------------------------------------------------

    def join_group(self, req: JoinRequest, now_ms: int) -> JoinResult | Deferred:
        """JoinGroup: a JoinResult now, or a Deferred completed with one."""
        if self.loading:
            return JoinResult(E.COORDINATOR_LOAD_IN_PROGRESS, member_id=req.member_id)
        if self.registry.shutting_down:
            return JoinResult(E.NOT_COORDINATOR, member_id=req.member_id)
        if not req.group_id:
            return JoinResult(E.INVALID_GROUP_ID, member_id=req.member_id)
        cfg = self.config
        if not cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms:
            return JoinResult(E.INVALID_SESSION_TIMEOUT, member_id=req.member_id)
        group = self.registry.get(req.group_id)
        if group is None and req.member_id:
            return JoinResult(E.UNKNOWN_MEMBER_ID, member_id=req.member_id)
        if group is not None and group.is_(_DEAD):
            return JoinResult(E.COORDINATOR_NOT_AVAILABLE, member_id=req.member_id)
        if group is not None and group.consumer is not None:
            # Kafka 4 takes classic members into a consumer group (online
            # migration); logbroker converts only an empty one back to classic.
            if group.consumer.members or req.member_id:
                return JoinResult(E.INCONSISTENT_GROUP_PROTOCOL, member_id=req.member_id)
            self.consumer.convert_group(group, to_consumer=False, now_ms=now_ms)
        if not (group or Group(req.group_id)).supports(req.protocol_type, req.protocols):
            return JoinResult(E.INCONSISTENT_GROUP_PROTOCOL, member_id=req.member_id)
        if group is None:
            group = self.registry.add(Group(req.group_id, state_timestamp=now_ms))
        if not req.member_id:
            return self._join_new(group, req, now_ms)
        return self._join_known(group, req, now_ms)

    def _join_new(self, group: Group, req: JoinRequest, now: int) -> JoinResult | Deferred:
        member_id = f"{req.client_id}-{uuid.uuid4()}"
        if req.group_instance_id is not None:
            return self._join_static(group, req, member_id, now)
        if req.require_known_member_id:
            deadline = now + req.session_timeout_ms
            group.pending_members[member_id] = deadline
            self._schedule(deadline, _SESSION, group.group_id, member_id)
            return JoinResult(E.MEMBER_ID_REQUIRED, member_id=member_id)
        return self._add_member(group, req, member_id, now)

    def _join_known(self, group: Group, req: JoinRequest, now: int) -> JoinResult | Deferred:
        member_id = req.member_id
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            return self._add_member(group, req, member_id, now)
        if group.is_fenced(req.group_instance_id, member_id):
            return JoinResult(E.FENCED_INSTANCE_ID, member_id=member_id)
        member = group.members.get(member_id)
        if member is None or group.state in (_EMPTY, _DEAD):
            return JoinResult(E.UNKNOWN_MEMBER_ID, member_id=member_id)
        self._set_session_deadline(group, member, now + member.session_timeout_ms)
        if group.is_(_COMPLETING) and member.matches(req.protocols):
            # The member lost our answer and asks again: same generation.
            is_leader = member_id == group.leader_id
            return self._generation_result(group, member, members=self._member_list(group) if is_leader else ())
        if group.is_(_STABLE) and member_id != group.leader_id and member.matches(req.protocols):
            return self._generation_result(group, member)
        # Preparing; a changed member; or the leader rejoining a stable group
        # (how a consumer leader asks for a rebalance after metadata changes).
        return self._update_member(group, member, req, now)

    def _join_static(self, group: Group, req: JoinRequest, new_id: str, now: int) -> JoinResult | Deferred:
        """A static member (re)joins without a member id: it takes over the old one's place."""
        instance_id = req.group_instance_id
        assert instance_id is not None  # the caller's condition
        old_id = group.static_members.get(instance_id)
        if old_id is None:
            return self._add_member(group, req, new_id, now)
        member = group.members[old_id]
        if member.join_waiter is not None:
            waiter, member.join_waiter = member.join_waiter, None
            waiter.complete(JoinResult(E.FENCED_INSTANCE_ID, member_id=old_id))
        if member.sync_waiter is not None:
            waiter, member.sync_waiter = member.sync_waiter, None
            waiter.complete(SyncResult(E.FENCED_INSTANCE_ID))
        previous_leader = group.leader_id
        group.replace_static(instance_id, old_id, new_id)
        _update_fields(member, req)
        member.timer_at = None
        self._set_session_deadline(group, member, now + member.session_timeout_ms)
        log.info("group %s: static member %s replaced %s by %s", group.group_id, instance_id, old_id, new_id)
        if group.is_(_STABLE) and group.select_protocol() == group.protocol_name:
            # No rebalance: the member gets the current generation and, as a
            # follower (the leader id stays the old one), its stored assignment.
            return JoinResult(
                E.NONE, member_id=new_id, generation=group.generation, protocol_type=group.protocol_type,
                protocol_name=group.protocol_name, leader_id=previous_leader or "",
            )
        waiter = member.join_waiter = Deferred()
        self._maybe_prepare_rebalance(group, now, f"static member {instance_id} rejoined")
        self._try_complete_join(group, now)
        return waiter

    def _add_member(self, group: Group, req: JoinRequest, member_id: str, now: int) -> Deferred:
        member = Member(
            member_id, req.group_instance_id, req.client_id, req.client_host, req.session_timeout_ms,
            req.rebalance_timeout_ms, req.protocol_type, req.protocols,
        )
        if group.is_(_PREPARING) and group.initial_delay_left is not None:
            group.new_member_added = True
        group.add(member)
        waiter = member.join_waiter = Deferred()
        # Its session starts once it joined; until then only this long bound applies.
        self._set_session_deadline(group, member, now + NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(group, now, f"new member {member_id}")
        self._try_complete_join(group, now)
        return waiter

    def _update_member(self, group: Group, member: Member, req: JoinRequest, now: int) -> Deferred:
        _update_fields(member, req)
        if member.join_waiter is not None:  # a retried JoinGroup replaces the first
            member.join_waiter.complete(JoinResult(E.REBALANCE_IN_PROGRESS, member_id=member.member_id))
        waiter = member.join_waiter = Deferred()
        self._maybe_prepare_rebalance(group, now, f"member {member.member_id} rejoined")
        self._try_complete_join(group, now)
        return waiter

    @staticmethod
    def _generation_result(group: Group, member: Member, *, members: tuple[JoinedMember, ...] = ()) -> JoinResult:
        """The current generation as ``member`` sees it (``members`` for the leader)."""
        return JoinResult(
            E.NONE, member_id=member.member_id, generation=group.generation, protocol_type=group.protocol_type,
            protocol_name=group.protocol_name, leader_id=group.leader_id or "", members=members,
        )

    @staticmethod
    def _member_list(group: Group) -> tuple[JoinedMember, ...]:
        return tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
            for m in group.members.values()
        )

    # -- rebalance -------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, now: int, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, now, reason)

    def _prepare_rebalance(self, group: Group, now: int, reason: str) -> None:
        if group.is_(_COMPLETING):
            self._reset_assignments(group, E.REBALANCE_IN_PROGRESS, now)
        group.pending_sync.clear()
        group.sync_deadline = None
        timeout = group.rebalance_timeout_ms()
        if group.is_(_EMPTY):
            # Kafka's InitialDelayedJoin: wait a little for the other members.
            delay = min(self.config.initial_rebalance_delay_ms, timeout)
            group.initial_delay_left = max(timeout - delay, 0)
            group.new_member_added = False
        else:
            delay = timeout
            group.initial_delay_left = None
        log.info(
            "group %s: preparing to rebalance from %s, generation %d (%s)",
            group.group_id, group.state.value, group.generation, reason,
        )
        group.transition(_PREPARING, now)
        group.join_deadline = now + delay
        self._schedule(group.join_deadline, _JOIN, group.group_id)
        self._try_complete_join(group, now)

    def _try_complete_join(self, group: Group, now: int) -> None:
        if group.is_(_PREPARING) and group.initial_delay_left is None and group.all_joined():
            self._complete_join(group, now)

    def _complete_join(self, group: Group, now: int) -> None:
        """End the join phase: drop dynamic members that did not rejoin, start
        the next generation, answer every waiting JoinGroup."""
        group.join_deadline = None
        group.initial_delay_left = None
        group.new_member_added = False
        for member in [m for m in group.members.values() if m.join_waiter is None and m.group_instance_id is None]:
            log.info("group %s: member %s did not rejoin in time", group.group_id, member.member_id)
            group.remove(member.member_id)
            self._answer_removed(member)
        if group.members and not _elect_joined_leader(group):
            # Only static members that have not rejoined remain: wait for them.
            group.join_deadline = now + group.rebalance_timeout_ms()
            self._schedule(group.join_deadline, _JOIN, group.group_id)
            return
        group.generation += 1
        if not group.members:
            group.protocol_name = None
            group.leader_id = None
            group.transition(_EMPTY, now)
            log.info("group %s: generation %d is empty", group.group_id, group.generation)
            self.offsets.persist_group(group, now)
            return
        group.protocol_name = group.select_protocol()
        group.transition(_COMPLETING, now)
        log.info(
            "group %s: generation %d with %d members, protocol %s, leader %s",
            group.group_id, group.generation, len(group.members), group.protocol_name, group.leader_id,
        )
        members = self._member_list(group)
        for member in group.members.values():
            waiter, member.join_waiter = member.join_waiter, None
            member.is_new = False
            self._set_session_deadline(group, member, now + member.session_timeout_ms)
            if waiter is not None:
                is_leader = member.member_id == group.leader_id
                waiter.complete(self._generation_result(group, member, members=members if is_leader else ()))
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms()
        self._schedule(group.sync_deadline, _SYNC, group.group_id)

    def _reset_assignments(self, group: Group, error: GroupOutcome, now: int) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error, now)

    def _propagate_assignment(self, group: Group, error: GroupOutcome, now: int) -> None:
        for member in group.members.values():
            waiter, member.sync_waiter = member.sync_waiter, None
            if waiter is None:
                continue
            waiter.complete(SyncResult(
                error, member.assignment if error is E.NONE else b"", group.protocol_type, group.protocol_name
            ))
            self._set_session_deadline(group, member, now + member.session_timeout_ms)

    def _remove_member(self, group: Group, member: Member, now: int, reason: str) -> None:
        """Kafka's removeMemberAndUpdateGroup."""
        group.remove(member.member_id)
        self._answer_removed(member)
        if group.state in (_STABLE, _COMPLETING):
            self._maybe_prepare_rebalance(group, now, f"member {member.member_id} {reason}")
        elif group.is_(_PREPARING):
            self._try_complete_join(group, now)

    @staticmethod
    def _answer_removed(member: Member) -> None:
        """A removed member's waiting requests learn it is gone (it will rejoin)."""
        if member.join_waiter is not None:
            waiter, member.join_waiter = member.join_waiter, None
            waiter.complete(JoinResult(E.UNKNOWN_MEMBER_ID))
        if member.sync_waiter is not None:
            waiter, member.sync_waiter = member.sync_waiter, None
            waiter.complete(SyncResult(E.UNKNOWN_MEMBER_ID))

    # -- SyncGroup, Heartbeat, LeaveGroup ---------------------------------------

    def _check_member(self, group: Group | None, generation: int | None, member_id: str,
                      instance_id: str | None) -> GroupOutcome | None:
        """The checks SyncGroup and Heartbeat share, in Kafka's order."""
        if group is None:
            return E.UNKNOWN_MEMBER_ID
        if group.is_(_DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if group.is_fenced(instance_id, member_id):
            return E.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return E.UNKNOWN_MEMBER_ID
        if generation is not None and generation != group.generation:
            return E.ILLEGAL_GENERATION
        return None

    def sync_group(
        self, group_id: str, generation: int, member_id: str, assignments: dict[str, bytes], now_ms: int, *,
        group_instance_id: str | None = None, protocol_type: str | None = None, protocol_name: str | None = None,
    ) -> SyncResult | Deferred:
        """SyncGroup: the leader's ``assignments`` end the rebalance; followers wait for them."""
        if self.loading:  # Kafka: the rebalance is lost, so rejoin
            return SyncResult(E.REBALANCE_IN_PROGRESS)
        if self.registry.shutting_down:
            return SyncResult(E.NOT_COORDINATOR)
        if not group_id:
            return SyncResult(E.INVALID_GROUP_ID)
        group = self.registry.get(group_id)
        error = self._check_member(group, generation, member_id, group_instance_id)
        if error is not None:
            return SyncResult(error)
        assert group is not None  # _check_member answers UNKNOWN_MEMBER_ID otherwise
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(E.INCONSISTENT_GROUP_PROTOCOL)
        member = group.members[member_id]
        if group.is_(_PREPARING):
            return SyncResult(E.REBALANCE_IN_PROGRESS)
        if group.is_(_STABLE):
            self._synced(group, member_id)
            self._set_session_deadline(group, member, now_ms + member.session_timeout_ms)
            return SyncResult(E.NONE, member.assignment, group.protocol_type, group.protocol_name)
        # CompletingRebalance
        if member.sync_waiter is not None:
            member.sync_waiter.complete(SyncResult(E.REBALANCE_IN_PROGRESS))
        waiter = member.sync_waiter = Deferred()
        self._synced(group, member_id)
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = bytes(assignments.get(m.member_id, b""))
            error = self.offsets.persist_group(group, now_ms)
            if error is E.NONE:
                group.transition(_STABLE, now_ms)
                self._propagate_assignment(group, E.NONE, now_ms)
            else:
                self._reset_assignments(group, error, now_ms)
                self._maybe_prepare_rebalance(group, now_ms, "group metadata could not be written")
        return waiter

    @staticmethod
    def _synced(group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline = None

    def heartbeat(self, group_id: str, generation: int, member_id: str, now_ms: int, *,
                  group_instance_id: str | None = None) -> GroupOutcome:
        """Heartbeat: keeps the session; REBALANCE_IN_PROGRESS tells the member to rejoin."""
        if self.loading:  # Kafka answers NONE so members do not rejoin needlessly
            return E.NONE
        if not group_id:
            return E.INVALID_GROUP_ID
        group = self.registry.get(group_id)
        error = self._check_member(group, generation, member_id, group_instance_id)
        if error is not None:
            return error
        assert group is not None  # _check_member answers UNKNOWN_MEMBER_ID otherwise
        if group.is_(_EMPTY):
            return E.UNKNOWN_MEMBER_ID
        member = group.members[member_id]
        self._set_session_deadline(group, member, now_ms + member.session_timeout_ms)
        return E.REBALANCE_IN_PROGRESS if group.is_(_PREPARING) else E.NONE

    def leave_group(self, group_id: str, members: tuple[tuple[str, str | None], ...], now_ms: int) -> LeaveResult:
        """LeaveGroup of ``(member_id, group_instance_id)`` pairs; a static member
        may be named by its instance id alone (member id "")."""
        if self.loading:
            return LeaveResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        if not group_id:
            return LeaveResult(E.INVALID_GROUP_ID)
        group = self.registry.get(group_id)
        if group is None:
            return LeaveResult(E.NONE, tuple((m, i, E.UNKNOWN_MEMBER_ID) for m, i in members))
        if group.is_(_DEAD):
            return LeaveResult(E.COORDINATOR_NOT_AVAILABLE)
        out = []
        for member_id, instance_id in members:
            out.append((member_id, instance_id, self._leave_one(group, member_id, instance_id, now_ms)))
        return LeaveResult(E.NONE, tuple(out))

    def _leave_one(self, group: Group, member_id: str, instance_id: str | None, now: int) -> GroupOutcome:
        if not member_id:
            member_id = group.static_members.get(instance_id, "") if instance_id is not None else ""
            if not member_id:
                return E.UNKNOWN_MEMBER_ID
        elif group.is_fenced(instance_id, member_id):
            return E.FENCED_INSTANCE_ID
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            self._try_complete_join(group, now)
            return E.NONE
        member = group.members.get(member_id)
        if member is None:
            return E.UNKNOWN_MEMBER_ID
        log.info("group %s: member %s leaves", group.group_id, member_id)
        self._remove_member(group, member, now, "left")
        return E.NONE

    # -- lifecycle -------------------------------------------------------------

    def shutdown_pending(self) -> None:
        """Answer every waiting JoinGroup/SyncGroup with NOT_COORDINATOR (as Kafka
        does when it unloads a group) and refuse to start new waits."""
        self.registry.shutting_down = True
        for group in self.registry:
            for member in group.members.values():
                if member.join_waiter is not None:
                    waiter, member.join_waiter = member.join_waiter, None
                    waiter.complete(JoinResult(E.NOT_COORDINATOR, member_id=member.member_id))
                if member.sync_waiter is not None:
                    waiter, member.sync_waiter = member.sync_waiter, None
                    waiter.complete(SyncResult(E.NOT_COORDINATOR))

    def close(self) -> None:
        self.shutdown_pending()

    # -- the offset store's commands (OffsetStore) -------------------------------

    def commit_offsets(self, req: CommitRequest, now_ms: int) -> CommitResult:
        """OffsetCommit (see :meth:`OffsetStore.commit_offsets`)."""
        return self.offsets.commit_offsets(req, now_ms)

    def txn_commit_offsets(self, req: CommitRequest, producer_id: int, producer_epoch: int,
                           now_ms: int) -> CommitResult:
        """TxnOffsetCommit (see :meth:`OffsetStore.txn_commit_offsets`)."""
        return self.offsets.txn_commit_offsets(req, producer_id, producer_epoch, now_ms)

    def complete_transaction(self, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int,
                             now_ms: int) -> FlushPoint:
        """A transaction marker (see :meth:`OffsetStore.complete_transaction`)."""
        return self.offsets.complete_transaction(producer_id, producer_epoch, commit, coordinator_epoch, now_ms)

    def has_pending_offset(self, group_id: str, tp: tuple[str, int]) -> bool:
        return self.offsets.has_pending_offset(group_id, tp)

    def fetch_offsets(self, group_id: str, partitions: list[tuple[str, int]] | None, *,
                      member_id: str | None = None, member_epoch: int = -1) -> FetchResult:
        """OffsetFetch (see :meth:`OffsetStore.fetch_offsets`)."""
        return self.offsets.fetch_offsets(group_id, partitions, member_id=member_id, member_epoch=member_epoch)

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]], now_ms: int) -> OffsetDeleteResult:
        return self.offsets.delete_offsets(group_id, partitions, now_ms)

    def list_groups(self, states: set[str] | None = None) -> tuple[GroupOutcome, list[ListedGroup]]:
        return self.offsets.list_groups(states)

    def describe_groups(self, group_ids: list[str]) -> list[GroupSummary]:
        return self.offsets.describe_groups(group_ids)

    def delete_groups(self, group_ids: list[str], now_ms: int) -> tuple[dict[str, GroupOutcome], FlushPoint | None]:
        return self.offsets.delete_groups(group_ids, now_ms)

    def expire_offsets(self, now_ms: int) -> int:
        return self.offsets.expire_offsets(now_ms)

    def topic_deleted(self, topic: str, now_ms: int) -> int:
        return self.offsets.topic_deleted(topic, now_ms)

    def statistics(self) -> CoordinatorStatistics:
        return self.offsets.statistics()

    # -- KIP-848 consumer groups (ConsumerGroups) -----------------------------------

    def consumer_heartbeat(self, req: ConsumerHeartbeat, topics: Mapping[str, TopicMeta],
                           now_ms: int) -> ConsumerHeartbeatResult:
        """ConsumerGroupHeartbeat (see :meth:`ConsumerGroups.consumer_heartbeat`)."""
        return self.consumer.consumer_heartbeat(req, topics, now_ms)

    def describe_consumer_groups(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        return self.consumer.describe_consumer_groups(group_ids)

    def convert_group(self, group: Group, *, to_consumer: bool, now_ms: int) -> None:
        self.consumer.convert_group(group, to_consumer=to_consumer, now_ms=now_ms)


def _update_fields(member: Member, req: JoinRequest) -> None:
    member.protocols = req.protocols
    member.protocol_type = req.protocol_type
    member.session_timeout_ms = req.session_timeout_ms
    member.rebalance_timeout_ms = req.rebalance_timeout_ms
    member.client_id = req.client_id or member.client_id
    member.client_host = req.client_host or member.client_host


def _elect_joined_leader(group: Group) -> bool:
    """Keep the leader if it rejoined, else pick a member that did (False if none)."""
    leader = group.members.get(group.leader_id or "")
    if leader is not None and leader.join_waiter is not None:
        return True
    for member in group.members.values():
        if member.join_waiter is not None:
            group.leader_id = member.member_id
            return True
    return False
