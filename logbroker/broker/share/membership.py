"""Share-group membership (ShareGroupHeartbeat): members, epochs and the
simple assignment, as plain state with time as a parameter.

Assignment is server-side and has no revocation phase: a share-partition
hands each record to one member at a time, so any number of members may
fetch the same partition, and every member is assigned every partition of
every topic it subscribes to (Kafka's simple assignor also overlaps members
on partitions). A member's epoch moves to the group epoch whenever its
assignment changes; a heartbeat carrying the member's current or previous
epoch is accepted (the previous one covers a lost response).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def target_assignment(subscribed: tuple[str, ...], partitions: Mapping[str, int]) -> Assignment:
    """Every partition of every subscribed topic that exists."""
    return {t: tuple(range(partitions[t])) for t in sorted(set(subscribed)) if t in partitions}


def update_assignment(group: ShareGroup, member: ShareMember, partitions: Mapping[str, int]) -> bool:
    """Recompute ``member``'s assignment; on a change bump the group epoch and
    move the member to it. Returns True if the assignment changed."""
    target = target_assignment(member.subscribed, partitions)
    if target == member.assignment and member.epoch > 0:
        return False
    member.assignment = target
    member.previous_epoch = member.epoch
    member.epoch = group.bump()
    return True
