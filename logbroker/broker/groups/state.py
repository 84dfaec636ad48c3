"""A classic consumer group's state: states and their one transition table,
members, committed offsets, and Kafka's protocol vote.

Plain data plus invariant-keeping methods; the rules of when to move
between states live in :mod:`logbroker.broker.groups.coordinator`.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from dataclasses import dataclass, field

from logbroker.broker.deferred import Deferred
from logbroker.broker.groups.consumer_group import ConsumerGroup
from logbroker.broker.groups.offsets_log_format import OffsetValue


class GroupState(enum.Enum):
    """Kafka's classic group states; the value is the name clients see."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


#: state -> the states it may be entered from (Kafka's GroupState.validPreviousStates).
VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.EMPTY, GroupState.STABLE, GroupState.COMPLETING_REBALANCE}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


class IllegalStateTransition(RuntimeError):
    """A bug: the coordinator asked for a transition the table forbids."""


@dataclass(eq=False, slots=True)
class Member:
    """One member of a group, with the requests it has waiting, if any.

    ``session_deadline``: when the member expires unless it heartbeats
    (ignored while it waits in JoinGroup or SyncGroup, as in Kafka);
    ``timer_at``: the deadline of its entry in the coordinator's timer heap.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    assignment: bytes = b""
    join_waiter: Deferred | None = None
    sync_waiter: Deferred | None = None
    session_deadline: int = 0
    timer_at: int | None = None
    is_new: bool = True

    def __repr__(self) -> str:
        waiting = "join" if self.join_waiter else "sync" if self.sync_waiter else "-"
        return f"Member({self.member_id!r}, instance={self.group_instance_id!r}, waiting={waiting})"

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: tuple[tuple[str, bytes], ...]) -> bool:
        """Same protocols, same order, same metadata (a no-op rejoin)."""
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """This member's most preferred protocol among ``candidates``."""
        return next(name for name, _ in self.protocols if name in candidates)


@dataclass(eq=False, slots=True)
class Group:
    """One group: its members (in join order), generation and offsets.

    Join phase bookkeeping: ``join_deadline`` ends the current join phase;
    ``initial_delay_left`` is not None while the phase is the initial delay
    of a group that was Empty (Kafka's InitialDelayedJoin), and
    ``new_member_added`` then says whether to extend it. ``sync_deadline``
    bounds how long ``pending_sync`` members may take to send SyncGroup.

    ``consumer`` is set while the group is a KIP-848 consumer group: then its
    membership lives there, the classic fields stay Empty, and the offsets
    and the record of the group stay here.

    Writers (one per field): ``offsets`` and ``persisted`` are the offset
    store's (:mod:`.offsets`); ``consumer`` is the consumer-group commands'
    (:mod:`.consumer_commands`, and the offset store when it replays the
    internal topic); the membership and join/sync fields are the classic
    coordinator's (:mod:`.coordinator`).
    """

    group_id: str
    state: GroupState = GroupState.EMPTY
    state_timestamp: int = 0
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_members: dict[str, int] = field(default_factory=dict)
    pending_sync: set[str] = field(default_factory=set)
    offsets: dict[tuple[str, int], OffsetValue] = field(default_factory=dict)
    join_deadline: int | None = None
    initial_delay_left: int | None = None
    new_member_added: bool = False
    sync_deadline: int | None = None
    persisted: bool = False
    consumer: ConsumerGroup | None = None

    def __repr__(self) -> str:
        if self.consumer is not None:
            return f"Group({self.group_id!r}, {self.consumer!r}, offsets={len(self.offsets)})"
        return (
            f"Group({self.group_id!r}, {self.state.value}, generation={self.generation}, "
            f"members={len(self.members)}, offsets={len(self.offsets)})"
        )

    @property
    def group_type(self) -> str:
        """"consumer" for a KIP-848 consumer group, else "classic" (ListGroups' GroupType)."""
        return "classic" if self.consumer is None else "consumer"

    def state_name(self) -> str:
        """The state clients see: the classic state, or the consumer group's."""
        return self.state.value if self.consumer is None else self.consumer.state

    def member_count(self) -> int:
        return len(self.members) + (len(self.consumer.members) if self.consumer is not None else 0)

    def is_empty(self) -> bool:
        """No members and none joining (either kind)."""
        if self.consumer is not None:
            return not self.consumer.members
        return self.is_(GroupState.EMPTY) and not self.pending_members

    # -- state --------------------------------------------------------------

    def is_(self, state: GroupState) -> bool:
        return self.state is state

    def transition(self, target: GroupState, now_ms: int) -> None:
        """Move to ``target``; raises IllegalStateTransition if the table forbids it."""
        if self.state not in VALID_PREVIOUS[target]:
            raise IllegalStateTransition(f"group {self.group_id!r}: {self.state.value} -> {target.value}")
        self.state = target
        self.state_timestamp = now_ms

    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    # -- members ------------------------------------------------------------

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static(self, instance_id: str, old_id: str, new_id: str) -> Member:
        """Give the static member ``instance_id`` a new member id (its old one is fenced)."""
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        self.static_members[instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return member

    def is_fenced(self, instance_id: str | None, member_id: str) -> bool:
        """A static member's instance id now belongs to another member id."""
        if instance_id is None:
            return False
        current = self.static_members.get(instance_id)
        return current is not None and current != member_id

    def all_joined(self) -> bool:
        return not self.pending_members and all(m.join_waiter is not None for m in self.members.values())

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # -- protocols ----------------------------------------------------------

    def supports(self, protocol_type: str, protocols: tuple[tuple[str, bytes], ...]) -> bool:
        """Kafka's supportsProtocols: an Empty group takes any non-empty set;
        otherwise the type must match and one protocol must be shared by all."""
        names = [name for name, _ in protocols]
        if not self.members:
            return bool(protocol_type) and bool(names)
        if protocol_type != self.protocol_type:
            return False
        counts = Counter(name for m in self.members.values() for name in set(m.protocol_names()))
        return any(counts[name] == len(self.members) for name in names)

    def select_protocol(self) -> str:
        """Kafka's vote: each member picks its favourite among the protocols all
        members support; the most votes win (ties go to the leader's preference)."""
        members = list(self.members.values())
        candidates = set(members[0].protocol_names())
        for member in members[1:]:
            candidates &= set(member.protocol_names())
        if not candidates:
            raise IllegalStateTransition(f"group {self.group_id!r}: no protocol all members support")
        votes = Counter(m.vote(candidates) for m in members)
        leader = self.members.get(self.leader_id or "", members[0])
        order = {name: i for i, name in enumerate(leader.protocol_names())}
        return max(votes, key=lambda name: (votes[name], -order.get(name, len(order))))

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol); None if unknown.

        For a KIP-848 group: the topics named in subscriptions and targets (a
        regex subscription counts through the topics it was resolved to)."""
        if self.consumer is not None:
            if not self.consumer.members:
                return None
            topics = {t for m in self.consumer.members.values() for t in m.subscribed_names}
            topics.update(t for target in self.consumer.target.values() for t in target)
            topics.update(t for m in self.consumer.members.values() for t in (*m.assigned, *m.revoking))
            return topics
        if self.protocol_type != "consumer" or self.protocol_name is None or not self.members:
            return None
        topics = set()
        for member in self.members.values():
            parsed = parse_subscription(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics.update(parsed)
        return topics


def parse_subscription(metadata: bytes) -> list[str] | None:
    """The topics of a consumer-protocol Subscription (any version), or None.

    Layout: version int16, topics array (int32 count, int16-length strings), ...
    """
    try:
        pos = 2
        (count,) = struct.unpack_from(">i", metadata, pos)
        pos += 4
        topics = []
        for _ in range(max(count, 0)):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            topics.append(bytes(metadata[pos : pos + length]).decode("utf-8"))
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
