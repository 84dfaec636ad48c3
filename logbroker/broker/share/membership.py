"""Share-group membership (ShareGroupHeartbeat): members, epochs and the
simple assignment, as plain state with time as a parameter.

Assignment is server-side and has no revocation phase: a share-partition
hands each record to one member at a time, so any number of members may
fetch the same partition. The group's target assignment is Kafka's
``SimpleAssignor`` (KIP-932): each member is hashed (Java's
``String.hashCode``) to one of its subscribed partitions, partitions nobody
has are dealt round-robin, and members keep what they had (it is sticky,
so a member that joins late shares partitions rather than taking them). It
is computed again whenever members, subscriptions or partition counts
change. A member's epoch moves to the group epoch whenever its assignment
changes; a heartbeat carrying the member's current or previous epoch is
accepted (the previous one covers a lost response).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from logbroker.broker.share.config import GroupSettings

EMPTY, STABLE, DEAD = "Empty", "Stable", "Dead"

Assignment = dict[str, tuple[int, ...]]


@dataclass(eq=False, slots=True)
class ShareMember:
    """One member; ``session_deadline`` is when it is removed without a heartbeat,
    ``timer_at`` the deadline of its entry in the coordinator's timer heap."""

    member_id: str
    client_id: str = ""
    client_host: str = ""
    rack_id: str | None = None
    subscribed: tuple[str, ...] = ()
    epoch: int = 0
    previous_epoch: int = -1
    assignment: Assignment = field(default_factory=dict)
    session_deadline: int = 0
    timer_at: int | None = None

    def __repr__(self) -> str:
        return f"ShareMember({self.member_id!r}, epoch={self.epoch}, topics={sorted(self.assignment)})"


@dataclass(eq=False, slots=True)
class ShareGroup:
    """One share group: members, epoch, config overrides and effective settings."""

    group_id: str
    settings: GroupSettings
    epoch: int = 0
    created: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    persisted_epoch: int = -1
    target: dict[str, Assignment] = field(default_factory=dict)
    """The target assignment by member (what each member's heartbeat reconciles to)."""
    target_spec: object = None
    """Members, subscriptions and partition counts ``target`` was computed for."""

    def __repr__(self) -> str:
        return f"ShareGroup({self.group_id!r}, {self.state}, epoch={self.epoch}, members={len(self.members)})"

    @property
    def state(self) -> str:
        return STABLE if self.members else EMPTY

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.subscribed}

    def bump(self) -> int:
        self.epoch += 1
        return self.epoch


TP = tuple[str, int]


def java_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit wrap-around)."""
    raw = text.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(raw) // 2}H", raw):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _hash_index(member_id: str, n: int) -> int:
    """``Math.abs(memberId.hashCode() % n)`` with Java's truncating remainder."""
    h = java_hash(member_id)
    return abs(h - int(h / n) * n) if h < 0 else h % n


def _partitions_of(topics: Iterable[str], partitions: Mapping[str, int]) -> list[TP]:
    return [(t, p) for t in sorted(set(topics)) if t in partitions for p in range(partitions[t])]


def _round_robin(members: list[str], targets: list[TP], out: dict[TP, list[str]]) -> None:
    for i, tp in enumerate(targets):
        out.setdefault(tp, []).append(members[i % len(members)])


def simple_assignment(
    subscriptions: Mapping[str, tuple[str, ...]], partitions: Mapping[str, int], current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Kafka's SimpleAssignor: the target assignment of every member.

    ``subscriptions`` maps each member (in join order) to its topics,
    ``partitions`` each topic to its partition count, ``current`` the
    previous target assignment (kept where still subscribed).
    """
    members = list(subscriptions)
    wanted = {m: _partitions_of(subscriptions[m], partitions) for m in members}
    held: dict[TP, list[str]] = {}
    for m in members:
        for topic, parts in current.get(m, {}).items():
            for p in parts:
                held.setdefault((topic, p), []).append(m)
    new: dict[TP, list[str]] = {}
    # Step 1: hash each member to one of its partitions.
    for m in members:
        if wanted[m]:
            new.setdefault(wanted[m][_hash_index(m, len(wanted[m]))], []).append(m)
    # Step 2: deal the partitions nobody has round-robin over their subscribers.
    homogeneous = len({frozenset(subscriptions[m]) for m in members}) == 1
    every: list[TP] = list(dict.fromkeys(tp for m in members for tp in wanted[m]))
    free = [tp for tp in every if tp not in new and tp not in held]
    if homogeneous:
        if members and free:
            _round_robin(members, free, new)
    else:
        by_topic: dict[str, list[TP]] = {}
        for tp in free:
            by_topic.setdefault(tp[0], []).append(tp)
        for topic, tps in by_topic.items():
            _round_robin([m for m in members if topic in subscriptions[m]], tps, new)
    # Step 3: what members hold (of topics they still subscribe to) and the new.
    final: dict[str, set[TP]] = {m: set() for m in members}
    valid = set(every)
    for tp, holders in held.items():
        for m in holders:
            if tp in valid and tp[0] in subscriptions[m]:
                final[m].add(tp)
    for tp, ms in new.items():
        for m in ms:
            final[m].add(tp)
    out: dict[str, Assignment] = {}
    for m, owned in final.items():
        by: dict[str, list[int]] = {}
        for topic, p in sorted(owned):
            by.setdefault(topic, []).append(p)
        out[m] = {topic: tuple(ps) for topic, ps in by.items()}
    return out


def update_assignment(group: ShareGroup, member: ShareMember, partitions: Mapping[str, int]) -> bool:
    """Bring the group's target assignment up to date, then ``member``'s: on a
    change of its assignment bump the group epoch and move the member to it.
    Returns True if the member's assignment changed."""
    subscriptions = {m.member_id: m.subscribed for m in group.members.values()}
    topics = sorted({t for subscribed in subscriptions.values() for t in subscribed})
    spec = (tuple((m, tuple(sorted(set(s)))) for m, s in subscriptions.items()),
            tuple((t, partitions.get(t, 0)) for t in topics))
    if spec != group.target_spec:
        group.target = simple_assignment(subscriptions, partitions, group.target)
        group.target_spec = spec
    target = group.target.get(member.member_id, {})
    if target == member.assignment and member.epoch > 0:
        return False
    member.assignment = target
    member.previous_epoch = member.epoch
    member.epoch = group.bump()
    return True
