"""Server-side partition assignors of KIP-848 consumer groups: ``uniform`` and ``range``.

An assignor is a pure function from an :class:`AssignmentSpec` (who
subscribes to what, and the previous target assignment) to the new target
assignment. It knows nothing of epochs or reconciliation; the group hands
partitions over only after their previous owner released them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

TopicPartitions = Mapping[str, frozenset[int]]
"""topic name -> partition indexes (a member's assignment; empty sets left out)."""


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """What the assignor knows of one member: the topics it subscribes to
    (resolved names that exist) and its previous target assignment."""

    subscribed: frozenset[str]
    previous: TopicPartitions
    instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class AssignmentSpec:
    """``members``: member id -> spec; ``partitions``: topic -> partition count
    for every topic some member subscribes to."""

    members: Mapping[str, MemberSpec]
    partitions: Mapping[str, int]


class ServerAssignor(Protocol):
    name: str

    def assign(self, spec: AssignmentSpec) -> dict[str, dict[str, frozenset[int]]]:
        """The target assignment of every member in ``spec`` (members with
        nothing get an empty mapping)."""
        ...


def _freeze(owned: dict[str, dict[str, set[int]]]) -> dict[str, dict[str, frozenset[int]]]:
    return {m: {t: frozenset(ps) for t, ps in topics.items() if ps} for m, topics in owned.items()}


class UniformAssignor:
    """Kafka's default: spread every subscribed partition so member loads
    differ by at most one (among members that could take it), keeping each
    partition where it was when that does not break the balance (sticky)."""

    name = "uniform"

    def assign(self, spec: AssignmentSpec) -> dict[str, dict[str, frozenset[int]]]:
        members = sorted(spec.members)
        owned: dict[str, dict[str, set[int]]] = {m: {} for m in members}
        count = dict.fromkeys(members, 0)
        candidates: dict[str, list[str]] = {
            topic: [m for m in members if topic in spec.members[m].subscribed] for topic in sorted(spec.partitions)
        }
        unassigned: list[tuple[str, int]] = []
        for topic, n in sorted(spec.partitions.items()):
            for p in range(n):
                unassigned.append((topic, p))
        taken: set[tuple[str, int]] = set()
        # Stickiness: keep previous targets that are still valid.
        for m in members:
            ms = spec.members[m]
            for topic, parts in sorted(ms.previous.items()):
                if topic not in ms.subscribed or topic not in spec.partitions:
                    continue
                for p in sorted(parts):
                    if p < spec.partitions[topic] and (topic, p) not in taken:
                        owned[m].setdefault(topic, set()).add(p)
                        taken.add((topic, p))
                        count[m] += 1
        # New partitions go to the least loaded candidate; topics with fewer
        # candidates first, so constrained partitions find a home.
        free = [tp for tp in unassigned if tp not in taken]
        free.sort(key=lambda tp: (len(candidates[tp[0]]), tp))
        for topic, p in free:
            cands = candidates[topic]
            if not cands:
                continue
            best = min(cands, key=lambda m: (count[m], m))
            owned[best].setdefault(topic, set()).add(p)
            count[best] += 1
        # Balance: move a partition from a member to a candidate with at least
        # two fewer, until no such move exists (bounded by the partition count).
        for _ in range(len(unassigned) + 1):
            if not self._move_one(owned, count, candidates):
                break
        return _freeze(owned)

    @staticmethod
    def _move_one(owned: dict[str, dict[str, set[int]]], count: dict[str, int],
                  candidates: dict[str, list[str]]) -> bool:
        for giver in sorted(count, key=lambda m: (-count[m], m)):
            for topic in sorted(owned[giver]):
                parts = owned[giver][topic]
                if not parts:
                    continue
                taker = min(candidates[topic], key=lambda m: (count[m], m))
                if count[giver] - count[taker] > 1:
                    p = max(parts)
                    parts.discard(p)
                    owned[taker].setdefault(topic, set()).add(p)
                    count[giver] -= 1
                    count[taker] += 1
                    return True
        return False


class RangeAssignor:
    """Per topic, contiguous ranges of partitions to the members subscribed to
    it, sorted by instance id (static members) or member id: members that
    subscribe to the same topics get the same partition numbers of each
    (co-partitioning, as Kafka's range assignor)."""

    name = "range"

    def assign(self, spec: AssignmentSpec) -> dict[str, dict[str, frozenset[int]]]:
        out: dict[str, dict[str, frozenset[int]]] = {m: {} for m in spec.members}
        order = sorted(spec.members, key=lambda m: (spec.members[m].instance_id or m, m))
        for topic, n in sorted(spec.partitions.items()):
            subscribers = [m for m in order if topic in spec.members[m].subscribed]
            if not subscribers or n <= 0:
                continue
            quota, extra = divmod(n, len(subscribers))
            start = 0
            for i, m in enumerate(subscribers):
                size = quota + (1 if i < extra else 0)
                if size:
                    out[m][topic] = frozenset(range(start, start + size))
                start += size
        return out


ASSIGNORS: dict[str, ServerAssignor] = {a.name: a for a in (UniformAssignor(), RangeAssignor())}
"""Assignor name -> assignor; the first is the default (Kafka's order)."""

DEFAULT_ASSIGNOR = "uniform"
