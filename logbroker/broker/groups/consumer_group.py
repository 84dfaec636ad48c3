"""A KIP-848 consumer group's membership: epochs, target assignment and
each member's reconciliation towards it.

Plain state plus the rules that change it; time, requests and persistence
are the coordinator's (:mod:`.consumer_commands`). The rules are Kafka's
(``GroupMetadataManager`` and ``CurrentAssignmentBuilder``):

* The **group epoch** goes up whenever something the assignment depends on
  changes: a member joins or leaves, a subscription or the chosen assignor
  changes, or the partitions of a subscribed topic change.
* The **target assignment** is recomputed by the server assignor when the
  group epoch is ahead of the **assignment epoch**; then both are equal.
* Each **member** moves towards its target on its own heartbeats, and
  **revokes before it assigns**: partitions it owns but should not are
  revoked first (state ``UNREVOKED_PARTITIONS``, the member keeps its
  epoch); only once its heartbeat no longer lists them does it take the
  target epoch. A partition still owned by another member is not handed
  out (state ``UNRELEASED_PARTITIONS``) until that member released it, so
  no partition ever has two owners.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from logbroker.broker.groups.server_assignors import ASSIGNORS, DEFAULT_ASSIGNOR, AssignmentSpec, MemberSpec

STABLE = "stable"
UNREVOKED_PARTITIONS = "unrevoked_partitions"
UNRELEASED_PARTITIONS = "unreleased_partitions"

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

Assignment = dict[str, frozenset[int]]
"""topic name -> partitions (no empty sets)."""


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """What the group needs of a topic: its id and partition count."""

    topic_id: object
    partitions: int


@dataclass(eq=False, slots=True)
class ConsumerMember:
    """One member. ``assigned``: partitions it may consume now; ``revoking``:
    partitions it must give up before it gets more. ``session_deadline`` and
    ``revoke_deadline`` are the coordinator's timers (``timer_at`` is the
    member's entry in its heap)."""

    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 300_000
    subscribed_names: tuple[str, ...] = ()
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_epoch: int = -1
    state: str = STABLE
    assigned: Assignment = field(default_factory=dict)
    revoking: Assignment = field(default_factory=dict)
    session_deadline: int = 0
    timer_at: int | None = None
    revoke_deadline: int | None = None

    def __repr__(self) -> str:
        return (
            f"ConsumerMember({self.member_id!r}, epoch={self.member_epoch}, {self.state}, "
            f"assigned={_count(self.assigned)}, revoking={_count(self.revoking)})"
        )

    def subscribed_topics(self, topics: Iterable[str], internal: frozenset[str]) -> frozenset[str]:
        """The existing topics this member subscribes to (names, and the regex
        matched against the whole name; internal topics only by name)."""
        existing = set(topics)
        names = {t for t in self.subscribed_names if t in existing}
        if self.subscribed_regex:
            pattern = re.compile(self.subscribed_regex)
            names.update(t for t in existing if t not in internal and pattern.fullmatch(t))
        return frozenset(names)


@dataclass(eq=False, slots=True)
class ConsumerGroup:
    """The membership half of a consumer group (offsets stay on the group
    record that holds this). ``owners``: (topic, partition) -> the member
    that owns it now (assigned or still revoking)."""

    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    owners: dict[tuple[str, int], str] = field(default_factory=dict)
    fingerprint: tuple = ()
    assignor: str = DEFAULT_ASSIGNOR

    def __repr__(self) -> str:
        return (
            f"ConsumerGroup({self.group_id!r}, {self.state}, epoch={self.group_epoch}, "
            f"assignment_epoch={self.assignment_epoch}, members={len(self.members)})"
        )

    @property
    def state(self) -> str:
        """Kafka's ConsumerGroupState name: Empty, Assigning, Reconciling or Stable."""
        if not self.members:
            return "Empty"
        if self.group_epoch > self.assignment_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch or m.state != STABLE for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    # -- membership ------------------------------------------------------------

    def add(self, member: ConsumerMember) -> None:
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id

    def remove(self, member_id: str) -> ConsumerMember | None:
        """Drop a member, its target and its ownerships (its partitions are free at once)."""
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        self.target.pop(member_id, None)
        self._release(member)
        return member

    def replace_static(self, old: ConsumerMember, new: ConsumerMember) -> None:
        """A static member that left (epoch -2) rejoins as ``new``: it takes
        over the old one's partitions and target with no rebalance."""
        self.members.pop(old.member_id, None)
        self._release(old)
        new.assigned = dict(old.assigned)
        new.member_epoch = 0
        new.previous_epoch = -1
        self.members[new.member_id] = new
        if new.instance_id is not None:
            self.static_members[new.instance_id] = new.member_id
        target = self.target.pop(old.member_id, None)
        if target is not None:
            self.target[new.member_id] = target
        self._own(new)

    def _release(self, member: ConsumerMember) -> None:
        for assignment in (member.assigned, member.revoking):
            for topic, parts in assignment.items():
                for p in parts:
                    if self.owners.get((topic, p)) == member.member_id:
                        del self.owners[(topic, p)]

    def _own(self, member: ConsumerMember) -> None:
        for assignment in (member.assigned, member.revoking):
            for topic, parts in assignment.items():
                for p in parts:
                    self.owners[(topic, p)] = member.member_id

    # -- assignor choice and metadata -------------------------------------------

    def preferred_assignor(self) -> str:
        """The assignor most members ask for (ties by name); the default if none asks."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return DEFAULT_ASSIGNOR
        return max(sorted(votes), key=lambda name: votes[name])

    def subscriptions(self, topics: Mapping[str, TopicMeta], internal: frozenset[str]) -> dict[str, frozenset[str]]:
        """member id -> the existing topics it subscribes to."""
        return {mid: m.subscribed_topics(topics, internal) for mid, m in self.members.items()}

    @staticmethod
    def metadata_fingerprint(subscribed: Mapping[str, frozenset[str]], topics: Mapping[str, TopicMeta]) -> tuple:
        """What the target depends on besides membership: each subscribed topic's id and size."""
        names = sorted(set().union(*subscribed.values())) if subscribed else []
        return tuple((n, str(topics[n].topic_id), topics[n].partitions) for n in names)

    # -- target assignment ------------------------------------------------------

    def compute_target(self, subscribed: Mapping[str, frozenset[str]], topics: Mapping[str, TopicMeta]) -> None:
        """Run the group's assignor for the current group epoch."""
        self.assignor = self.preferred_assignor()
        spec = AssignmentSpec(
            members={
                mid: MemberSpec(subscribed[mid], self.target.get(mid, {}), m.instance_id)
                for mid, m in self.members.items()
            },
            partitions={t: topics[t].partitions for t in set().union(*subscribed.values())} if subscribed else {},
        )
        result = ASSIGNORS[self.assignor].assign(spec)
        self.target = {mid: dict(result.get(mid, {})) for mid in self.members}
        self.assignment_epoch = self.group_epoch

    # -- reconciliation (Kafka's CurrentAssignmentBuilder) ---------------------------

    def reconcile(self, member: ConsumerMember, owned: Assignment | None) -> None:
        """Move ``member`` one step towards its target. ``owned``: the partitions
        its heartbeat says it owns (None: not sent, so nothing is acknowledged)."""
        self._release(member)
        try:
            if member.state == UNREVOKED_PARTITIONS:
                if owned is None or _overlaps(owned, member.revoking):
                    return  # still revoking
                self._next(member, member.member_epoch, member.assigned)
            elif member.state == UNRELEASED_PARTITIONS or member.member_epoch != self.assignment_epoch:
                self._next(member, member.member_epoch, member.assigned)
        finally:
            self._own(member)

    def _next(self, member: ConsumerMember, epoch: int, current: Assignment) -> None:
        target = self.target.get(member.member_id, {})
        keep: dict[str, set[int]] = {}
        revoke: dict[str, set[int]] = {}
        new: dict[str, set[int]] = {}
        unreleased = False
        for topic in set(current) | set(target):
            have = current.get(topic, frozenset())
            want = target.get(topic, frozenset())
            if have & want:
                keep[topic] = set(have & want)
            if have - want:
                revoke[topic] = set(have - want)
            for p in want - have:
                owner = self.owners.get((topic, p))
                if owner is None or owner == member.member_id:
                    new.setdefault(topic, set()).add(p)
                else:
                    unreleased = True
        if revoke:
            member.state = UNREVOKED_PARTITIONS
            member.assigned = _frozen(keep)
            member.revoking = _frozen(revoke)
            # The epoch stays: the member must not commit as if it had moved on.
            self._set_epoch(member, epoch)
            return
        for topic, parts in new.items():
            keep.setdefault(topic, set()).update(parts)
        member.assigned = _frozen(keep)
        member.revoking = {}
        member.state = UNRELEASED_PARTITIONS if unreleased else STABLE
        self._set_epoch(member, self.assignment_epoch)

    @staticmethod
    def _set_epoch(member: ConsumerMember, epoch: int) -> None:
        if epoch != member.member_epoch:
            member.previous_epoch = member.member_epoch
            member.member_epoch = epoch


def _overlaps(owned: Assignment, revoking: Assignment) -> bool:
    return any(owned.get(topic, frozenset()) & parts for topic, parts in revoking.items())


def _frozen(parts: Mapping[str, set[int]]) -> Assignment:
    return {t: frozenset(ps) for t, ps in parts.items() if ps}


def _count(assignment: Assignment) -> int:
    return sum(len(ps) for ps in assignment.values())


def is_subset(owned: Assignment | None, assigned: Assignment) -> bool:
    """Kafka's isSubset: every owned partition is in ``assigned`` (None is not a subset)."""
    if owned is None:
        return False
    return all(parts <= assigned.get(topic, frozenset()) for topic, parts in owned.items())
