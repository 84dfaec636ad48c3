"""KIP-848 consumer groups as coordinator commands: ConsumerGroupHeartbeat,
ConsumerGroupDescribe, member session and revocation deadlines, and the
conversion between an empty classic group and a consumer group.

:class:`ConsumerGroups` is a part of
:class:`~logbroker.broker.groups.coordinator.GroupCoordinator`, held by it
beside the classic membership and the
:class:`~logbroker.broker.groups.offsets.OffsetStore`. It owns the timers
of consumer-group members (its own heap, which the coordinator's
``next_deadline_ms``/``fire_deadlines`` consult), reaches groups through the
shared :class:`~logbroker.broker.groups.registry.GroupRegistry` and writes
its records through the offset store. The membership rules themselves are
:class:`~logbroker.broker.groups.consumer_group.ConsumerGroup`'s; this
module validates requests (with Kafka's errors and messages), keeps the
timers and persists the group epoch.

Topic metadata is passed in with each heartbeat (``topics``: name ->
:class:`TopicMeta`), so a partition added, a topic created that matches a
regex, or a topic deleted changes the target assignment at the next
heartbeat of any member.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
from collections.abc import Mapping, Sequence

from logbroker.broker.groups.config import GroupConfig

from logbroker.broker.groups.consumer_group import (
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    UNREVOKED_PARTITIONS,
    Assignment,
    ConsumerGroup,
    ConsumerMember,
    TopicMeta,
    is_subset,
)
from logbroker.broker.groups.offsets_log_format import ConsumerGroupKey, ConsumerGroupValue, GroupKey, encode_key, encode_value
from logbroker.broker.groups.results import (
    ConsumerGroupDescription,
    ConsumerHeartbeat,
    ConsumerHeartbeatResult,
    ConsumerMemberDescription,
    GroupOutcome,
    TopicAssignment,
)
from logbroker.broker.groups.offsets import OffsetStore
from logbroker.broker.groups.registry import GroupRegistry
from logbroker.broker.groups.server_assignors import ASSIGNORS
from logbroker.broker.groups.state import Group
from logbroker.broker.internal_topic import INTERNAL_TOPICS

log = logging.getLogger("logbroker.groups")

E = GroupOutcome
C_SESSION, C_REVOKE = "consumer-session", "consumer-revoke"


class _Refused(Exception):
    """A heartbeat refused with an error code and Kafka's message."""

    def __init__(self, error: GroupOutcome, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _validate(req: ConsumerHeartbeat) -> None:
    """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid (v1: the client makes the member id)."""
    if not req.member_id:
        raise _Refused(E.INVALID_REQUEST, "MemberId can't be empty.")
    if not req.group_id:
        raise _Refused(E.INVALID_REQUEST, "GroupId can't be empty.")
    if req.instance_id is not None and not req.instance_id:
        raise _Refused(E.INVALID_REQUEST, "InstanceId can't be empty.")
    if req.rack_id is not None and not req.rack_id:
        raise _Refused(E.INVALID_REQUEST, "RackId can't be empty.")
    if req.member_epoch == 0:
        if req.rebalance_timeout_ms == -1:
            raise _Refused(E.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request.")
        if req.owned is None or req.owned:
            raise _Refused(E.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining.")
        if req.subscribed_names is None and req.subscribed_regex is None:
            raise _Refused(
                E.INVALID_REQUEST, "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."
            )
    elif req.member_epoch == STATIC_LEAVE_EPOCH:
        if req.instance_id is None:
            raise _Refused(E.INVALID_REQUEST, "InstanceId can't be null.")
    elif req.member_epoch < STATIC_LEAVE_EPOCH:
        raise _Refused(E.INVALID_REQUEST, "MemberEpoch is invalid.")
    if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
        raise _Refused(
            E.UNSUPPORTED_ASSIGNOR,
            f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: {', '.join(ASSIGNORS)}.",
        )
    if req.subscribed_regex:
        try:
            re.compile(req.subscribed_regex)
        except re.error as exc:
            raise _Refused(
                E.INVALID_REGULAR_EXPRESSION, f"SubscribedTopicRegex is not a valid regular expression: {exc}"
            ) from exc


def _as_tuples(assignment: Assignment) -> TopicAssignment:
    return tuple((topic, tuple(sorted(parts))) for topic, parts in sorted(assignment.items()) if parts)


class ConsumerGroups:
    """ConsumerGroupHeartbeat / ConsumerGroupDescribe and the member timers (see
    the module docstring). Not thread-safe: the coordinator's thread only."""

    def __init__(self, config: GroupConfig, groups: GroupRegistry, offsets: OffsetStore) -> None:
        self.config = config
        self._groups = groups
        self._offsets = offsets
        self._heap: list[tuple[int, int, str, str, str]] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"ConsumerGroups(timers={len(self._heap)})"

    @property
    def timers(self) -> int:
        """Entries in the timer heap, live or stale."""
        return len(self._heap)

    # -- ConsumerGroupHeartbeat ----------------------------------------------------

    def consumer_heartbeat(self, req: ConsumerHeartbeat, topics: Mapping[str, TopicMeta],
                           now_ms: int) -> ConsumerHeartbeatResult:
        """One heartbeat: join (epoch 0), leave (-1, or -2 for a static member
        that will come back), or keep the session and reconcile."""
        if self._groups.loading:
            return ConsumerHeartbeatResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        if self._groups.shutting_down:
            return ConsumerHeartbeatResult(E.NOT_COORDINATOR)
        try:
            _validate(req)
            if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._consumer_leave(req, now_ms)
            return self._consumer_heartbeat(req, topics, now_ms)
        except _Refused as refused:
            return ConsumerHeartbeatResult(refused.error, refused.message)

    def _consumer_group_for(self, req: ConsumerHeartbeat, now: int) -> Group:
        """Kafka's getOrMaybeCreateConsumerGroup: only a joining member creates
        a group, or converts an empty classic group (offsets are kept)."""
        group = self._groups.get(req.group_id)
        joining = req.member_epoch == 0
        if group is None:
            if not joining:
                raise _Refused(E.GROUP_ID_NOT_FOUND, f"Consumer group {req.group_id} not found.")
            group = Group(req.group_id, state_timestamp=now, protocol_type="consumer",
                          consumer=ConsumerGroup(req.group_id))
            self._groups.add(group)
            self._persist_consumer_group(group, now)
            log.info("consumer group %s created", req.group_id)
            return group
        if group.consumer is not None:
            return group
        if not joining:
            raise _Refused(E.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group.")
        if not group.is_empty():
            # Kafka would migrate a classic group's members online; logbroker converts empty groups only.
            raise _Refused(
                E.GROUP_ID_NOT_FOUND,
                f"Cannot upgrade classic group {req.group_id} to consumer group because it has members "
                "(logbroker converts empty groups only).",
            )
        self.convert_group(group, to_consumer=True, now_ms=now)
        return group

    def convert_group(self, group: Group, *, to_consumer: bool, now_ms: int) -> None:
        """Turn an empty group into a consumer group or back into a classic one,
        keeping its offsets; the record of the old kind is deleted."""
        records: list[tuple[bytes, bytes | None]]
        if to_consumer:
            group.consumer = ConsumerGroup(group.group_id)
            group.protocol_type = "consumer"
            group.protocol_name = None
            group.leader_id = None
            records = [(encode_key(GroupKey(group.group_id)), None)] if group.persisted else []
            records.append(self._consumer_record(group))
        else:
            group.consumer = None
            group.protocol_type = None
            records = [(encode_key(ConsumerGroupKey(group.group_id)), None)]
            group.persisted = False
        group.state_timestamp = now_ms
        self._offsets.append_quietly(records, now_ms)
        if to_consumer:
            group.persisted = True
        log.info("group %s converted to a %s group", group.group_id, group.group_type)

    def _consumer_heartbeat(self, req: ConsumerHeartbeat, topics: Mapping[str, TopicMeta],
                            now: int) -> ConsumerHeartbeatResult:
        group = self._consumer_group_for(req, now)
        cg = group.consumer
        assert cg is not None
        epoch = req.member_epoch
        member: ConsumerMember | None = None
        replaced: ConsumerMember | None = None
        bump = False
        if epoch == 0:
            if req.instance_id is not None:
                holder = cg.members.get(cg.static_members.get(req.instance_id, ""))
                if holder is not None:
                    if holder.member_epoch != STATIC_LEAVE_EPOCH:
                        raise _Refused(
                            E.UNRELEASED_INSTANCE_ID,
                            f"Static member {req.member_id} with instance id {req.instance_id} cannot join the "
                            f"group because the instance id is owned by {holder.member_id} member.",
                        )
                    replaced = holder
            if replaced is None:
                member = cg.members.get(req.member_id)
            if member is None:
                max_size = self.config.consumer_max_size
                if replaced is None and len(cg.members) >= max_size:
                    raise _Refused(
                        E.GROUP_MAX_SIZE_REACHED,
                        f"The consumer group has reached its maximum capacity of {max_size} members.",
                    )
                member = ConsumerMember(req.member_id)
                bump = replaced is None
        else:
            if req.instance_id is not None:
                holder_id = cg.static_members.get(req.instance_id)
                if holder_id is None:
                    raise _Refused(E.UNKNOWN_MEMBER_ID, f"Instance id {req.instance_id} is unknown.")
                if holder_id != req.member_id:
                    raise _Refused(
                        E.FENCED_INSTANCE_ID,
                        f"Static member {req.member_id} with instance id {req.instance_id} was fenced by member "
                        f"{holder_id}.",
                    )
            member = cg.members.get(req.member_id)
            if member is None:
                raise _Refused(E.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {req.group_id}.")
            if epoch > member.member_epoch or (
                epoch < member.member_epoch
                and (epoch != member.previous_epoch or not is_subset(req.owned, member.assigned))
            ):
                raise _Refused(
                    E.FENCED_MEMBER_EPOCH,
                    f"The consumer group member has a {'greater' if epoch > member.member_epoch else 'smaller'} "
                    f"member epoch ({epoch}) than the one known by the group coordinator ({member.member_epoch}). "
                    "The member must abandon all its partitions and rejoin.",
                )
        before = replaced if replaced is not None else member
        subscription = (before.subscribed_names, before.subscribed_regex, before.server_assignor)
        if replaced is not None:
            member.subscribed_names = replaced.subscribed_names
            member.subscribed_regex = replaced.subscribed_regex
            member.server_assignor = replaced.server_assignor
        _update_member(member, req)
        if (member.subscribed_names, member.subscribed_regex, member.server_assignor) != subscription:
            bump = True
        if replaced is not None:
            cg.replace_static(replaced, member)
            log.info("consumer group %s: static member %s replaced %s by %s",
                     group.group_id, member.instance_id, replaced.member_id, member.member_id)
        elif member.member_id not in cg.members:
            cg.add(member)
            log.info("consumer group %s: member %s joins (topics %s, regex %s, assignor %s)", group.group_id,
                     member.member_id, ",".join(member.subscribed_names) or "-", member.subscribed_regex,
                     member.server_assignor)
        if self._refresh(group, topics, now, bump):
            log.info("consumer group %s: epoch %d, target assignment computed by %s",
                     group.group_id, cg.group_epoch, cg.assignor)
        before_assigned = dict(member.assigned)
        cg.reconcile(member, {} if epoch == 0 else req.owned)
        if member.state == UNREVOKED_PARTITIONS:
            if member.revoke_deadline is None:
                member.revoke_deadline = now + member.rebalance_timeout_ms
                self._schedule(member.revoke_deadline, C_REVOKE, group.group_id, member.member_id)
        else:
            member.revoke_deadline = None
        self._set_consumer_session(group, member, now + self.config.consumer_session_timeout_ms)
        full = req.rebalance_timeout_ms != -1 and req.owned is not None and (
            req.subscribed_names is not None or req.subscribed_regex is not None
        )
        send = epoch == 0 or full or member.assigned != before_assigned
        return ConsumerHeartbeatResult(
            E.NONE, member_id=member.member_id, member_epoch=member.member_epoch,
            heartbeat_interval_ms=self.config.consumer_heartbeat_interval_ms,
            assignment=_as_tuples(member.assigned) if send else None,
        )

    def _refresh(self, group: Group, topics: Mapping[str, TopicMeta], now: int, bump: bool) -> bool:
        """Bump the group epoch if membership, subscriptions, the preferred
        assignor or the subscribed topics' metadata changed; recompute the
        target when the epoch is ahead of it. True if it was recomputed."""
        cg = group.consumer
        assert cg is not None
        subscribed = cg.subscriptions(topics, INTERNAL_TOPICS)
        fingerprint = cg.metadata_fingerprint(subscribed, topics)
        if fingerprint != cg.fingerprint:
            cg.fingerprint = fingerprint
            bump = True
        if cg.members and cg.preferred_assignor() != cg.assignor:
            bump = True
        if bump:
            cg.group_epoch += 1
            self._offsets.append_quietly([self._consumer_record(group)], now)
        if cg.group_epoch <= cg.assignment_epoch:
            return False
        cg.compute_target(subscribed, topics)
        return True

    def _consumer_leave(self, req: ConsumerHeartbeat, now: int) -> ConsumerHeartbeatResult:
        group = self._groups.get(req.group_id)
        if group is None or group.consumer is None:
            raise _Refused(E.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group.")
        cg = group.consumer
        if req.instance_id is not None:
            holder_id = cg.static_members.get(req.instance_id)
            if holder_id is None:
                raise _Refused(E.UNKNOWN_MEMBER_ID, f"Instance id {req.instance_id} is unknown.")
            if holder_id != req.member_id:
                raise _Refused(
                    E.FENCED_INSTANCE_ID,
                    f"Static member {req.member_id} with instance id {req.instance_id} was fenced by member "
                    f"{holder_id}.",
                )
        member = cg.members.get(req.member_id)
        if member is None:
            raise _Refused(E.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {req.group_id}.")
        if req.member_epoch == STATIC_LEAVE_EPOCH:
            # It keeps its partitions until it rejoins or its session ends.
            log.info("consumer group %s: static member %s (%s) leaves for now",
                     group.group_id, member.member_id, member.instance_id)
            member.previous_epoch = member.member_epoch
            member.member_epoch = STATIC_LEAVE_EPOCH
            member.revoke_deadline = None
            return ConsumerHeartbeatResult(E.NONE, member_id=member.member_id, member_epoch=STATIC_LEAVE_EPOCH)
        log.info("consumer group %s: member %s leaves", group.group_id, member.member_id)
        self._fence_consumer_member(group, member, now)
        return ConsumerHeartbeatResult(E.NONE, member_id=member.member_id, member_epoch=LEAVE_EPOCH)

    def _fence_consumer_member(self, group: Group, member: ConsumerMember, now: int) -> None:
        """Remove a member (left, session expired, or did not revoke in time); the group epoch goes up."""
        cg = group.consumer
        assert cg is not None
        cg.remove(member.member_id)
        cg.group_epoch += 1
        if not cg.members:
            group.state_timestamp = now
            cg.fingerprint = ()
        self._offsets.append_quietly([self._consumer_record(group)], now)

    @staticmethod
    def _consumer_record(group: Group) -> tuple[bytes, bytes | None]:
        cg = group.consumer
        assert cg is not None
        value = ConsumerGroupValue(cg.group_epoch, group.state_timestamp)
        return encode_key(ConsumerGroupKey(group.group_id)), encode_value(value)

    def _persist_consumer_group(self, group: Group, now: int) -> None:
        self._offsets.append_quietly([self._consumer_record(group)], now)
        group.persisted = True

    # -- timers ------------------------------------------------------------------------

    def _schedule(self, deadline: int, kind: str, group_id: str, member_id: str) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, group_id, member_id))

    def next_deadline_ms(self) -> int | None:
        """The earliest live deadline of a consumer-group member, or None."""
        heap = self._heap
        while heap and not self._consumer_timer_live(*heap[0][2:], deadline=heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_deadlines(self, now_ms: int) -> None:
        """Act on every member deadline at or before ``now_ms``."""
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            deadline, _, kind, group_id, member_id = heapq.heappop(heap)
            if self._consumer_timer_live(kind, group_id, member_id, deadline=deadline):
                self._on_consumer_deadline(kind, group_id, member_id, now_ms)

    def _set_consumer_session(self, group: Group, member: ConsumerMember, deadline: int) -> None:
        member.session_deadline = deadline
        if member.timer_at is None or deadline < member.timer_at:
            member.timer_at = deadline
            self._schedule(deadline, C_SESSION, group.group_id, member.member_id)

    def _consumer_timer_live(self, kind: str, group_id: str, member_id: str, *, deadline: int) -> bool:
        group = self._groups.get(group_id)
        member = group.consumer.members.get(member_id) if group is not None and group.consumer is not None else None
        if member is None:
            return False
        if kind == C_SESSION:
            return member.timer_at == deadline
        return member.revoke_deadline == deadline

    def _on_consumer_deadline(self, kind: str, group_id: str, member_id: str, now: int) -> None:
        group = self._groups.get(group_id)
        assert group is not None and group.consumer is not None
        member = group.consumer.members[member_id]
        if kind == C_SESSION:
            member.timer_at = None
            if member.session_deadline > now:
                self._set_consumer_session(group, member, member.session_deadline)
                return
            log.info("consumer group %s: member %s session expired", group_id, member_id)
        else:
            member.revoke_deadline = None
            if member.state != UNREVOKED_PARTITIONS:
                return
            log.info("consumer group %s: member %s did not revoke its partitions in time", group_id, member_id)
        self._fence_consumer_member(group, member, now)

    # -- ConsumerGroupDescribe -------------------------------------------------------------

    def describe_consumer_groups(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe: members with epochs, current and target
        assignments; GROUP_ID_NOT_FOUND for unknown groups and other kinds."""
        out = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if self._groups.loading:
                out.append(ConsumerGroupDescription(group_id, E.COORDINATOR_LOAD_IN_PROGRESS))
            elif group is None:
                out.append(ConsumerGroupDescription(group_id, E.GROUP_ID_NOT_FOUND, f"Group {group_id} not found."))
            elif group.consumer is None:
                out.append(ConsumerGroupDescription(
                    group_id, E.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group."
                ))
            else:
                cg = group.consumer
                members = tuple(
                    ConsumerMemberDescription(
                        member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                        member_epoch=m.member_epoch, client_id=m.client_id, client_host=m.client_host,
                        subscribed_names=m.subscribed_names, subscribed_regex=m.subscribed_regex,
                        assignment=_as_tuples(m.assigned), target_assignment=_as_tuples(cg.target.get(m.member_id, {})),
                        state=m.state,
                    )
                    for m in cg.members.values()
                )
                out.append(ConsumerGroupDescription(
                    group_id, E.NONE, None, cg.state, cg.group_epoch, cg.assignment_epoch, cg.assignor, members
                ))
        return out


def _update_member(member: ConsumerMember, req: ConsumerHeartbeat) -> None:
    """Take the fields the heartbeat carries (null means unchanged)."""
    if req.instance_id is not None:
        member.instance_id = req.instance_id
    if req.rack_id is not None:
        member.rack_id = req.rack_id
    if req.rebalance_timeout_ms != -1:
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
    if req.subscribed_names is not None:
        member.subscribed_names = tuple(sorted(set(req.subscribed_names)))
    if req.subscribed_regex is not None:
        member.subscribed_regex = req.subscribed_regex or None
    if req.server_assignor is not None:
        member.server_assignor = req.server_assignor
    member.client_id = req.client_id or member.client_id
    member.client_host = req.client_host or member.client_host
