"""The classic "consumer" group protocol: subscription/assignment bytes and the assignors. Sans-I/O.

Encodings are Kafka's ``ConsumerProtocolSubscription`` and
``ConsumerProtocolAssignment`` (``clients/src/main/resources/common/message``),
non-flexible, versions 0-3; all big-endian::

    Subscription: version i16 | topics [string] | user_data bytes?
                  | v1+: owned_partitions [topic string, partitions [i32]]
                  | v2+: generation_id i32 | v3+: rack_id string?
    Assignment:   version i16 | partitions [topic string, partitions [i32]] | user_data bytes?

(``[x]`` is an i32 count then the items, ``string`` an i16 length then UTF-8,
``bytes`` an i32 length; ``?`` means nullable, length -1.) Decoding reads
the fields of the version it finds and ignores anything after them, so
members of newer clients interoperate, as Kafka requires.

Assignors take the members' subscriptions and the partition count of every
subscribed topic and return member id -> partitions. ``range`` and
``roundrobin`` are Java's (and kafka-python's) eager assignors;
``cooperative-sticky`` keeps partitions where they are and, as KIP-429
requires, never hands a partition to a new owner in the same round that
takes it from its old one.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logbroker.errors import ProtocolError

from .types import TopicPartition

__all__ = [
    "ASSIGNORS",
    "Assignment",
    "Subscription",
    "cooperative_sticky_assign",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
    "range_assign",
    "roundrobin_assign",
]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class Subscription:
    """A member's JoinGroup metadata."""

    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation_id: int = -1
    rack_id: str | None = None
    version: int = 3


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the leader gave a member in SyncGroup."""

    partitions: tuple[TopicPartition, ...] = ()
    user_data: bytes | None = None
    version: int = 0


# -- encoding ----------------------------------------------------------------------


def _string(s: str | None) -> bytes:
    if s is None:
        return _I16.pack(-1)
    raw = s.encode("utf-8")
    return _I16.pack(len(raw)) + raw


def _bytes(b: bytes | None) -> bytes:
    if b is None:
        return _I32.pack(-1)
    return _I32.pack(len(b)) + b


def _partitions(parts: Iterable[TopicPartition]) -> bytes:
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, partition in parts:
        by_topic[topic].append(partition)
    out = [_I32.pack(len(by_topic))]
    for topic in sorted(by_topic):
        ps = sorted(by_topic[topic])
        out.append(_string(topic))
        out.append(_I32.pack(len(ps)))
        out.append(struct.pack(f">{len(ps)}i", *ps))
    return b"".join(out)


def encode_subscription(sub: Subscription) -> bytes:
    """The bytes of ``sub`` at ``sub.version`` (0-3)."""
    if not 0 <= sub.version <= 3:
        raise ValueError(f"subscription version {sub.version} is not 0-3")
    out = [_I16.pack(sub.version), _I32.pack(len(sub.topics))]
    out.extend(_string(t) for t in sub.topics)
    out.append(_bytes(sub.user_data))
    if sub.version >= 1:
        out.append(_partitions(sub.owned_partitions))
    if sub.version >= 2:
        out.append(_I32.pack(sub.generation_id))
    if sub.version >= 3:
        out.append(_string(sub.rack_id))
    return b"".join(out)


def encode_assignment(assignment: Assignment) -> bytes:
    return b"".join(
        (_I16.pack(assignment.version), _partitions(assignment.partitions), _bytes(assignment.user_data))
    )


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def i16(self) -> int:
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return v

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return v

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("string runs past the end")
        s = bytes(self.data[self.pos : end]).decode("utf-8")
        self.pos = end
        return s

    def bytes_(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("bytes run past the end")
        b = bytes(self.data[self.pos : end])
        self.pos = end
        return b

    def count(self) -> int:
        n = self.i32()
        if n < -1 or n > len(self.data):
            raise ProtocolError(f"array count {n}")
        return max(n, 0)

    def partitions(self) -> tuple[TopicPartition, ...]:
        out = []
        for _ in range(self.count()):
            topic = self.string() or ""
            for _ in range(self.count()):
                out.append(TopicPartition(topic, self.i32()))
        return tuple(out)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def decode_subscription(data: bytes) -> Subscription:
    """Decode JoinGroup member metadata of any version; fields past the known ones are ignored.

    :raises ProtocolError: the bytes are truncated or malformed.
    """
    r = _Reader(data)
    try:
        version = r.i16()
        topics = tuple(r.string() or "" for _ in range(r.count()))
        user_data = r.bytes_()
        owned: tuple[TopicPartition, ...] = ()
        generation = -1
        rack = None
        # "ignorable" fields: an older writer may have stopped early.
        if version >= 1 and r.remaining:
            owned = r.partitions()
        if version >= 2 and r.remaining:
            generation = r.i32()
        if version >= 3 and r.remaining:
            rack = r.string()
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed consumer subscription: {exc}") from exc
    return Subscription(topics, user_data, owned, generation, rack, version)


def decode_assignment(data: bytes | None) -> Assignment:
    """Decode a SyncGroup assignment of any version; empty bytes mean no partitions.

    :raises ProtocolError: the bytes are truncated or malformed.
    """
    if not data:
        return Assignment()
    r = _Reader(data)
    try:
        version = r.i16()
        parts = r.partitions()
        user_data = r.bytes_() if r.remaining >= 4 else None
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed consumer assignment: {exc}") from exc
    return Assignment(parts, user_data, version)


# -- assignors ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """A member as an assignor sees it: id, optional static id, subscription."""

    member_id: str
    subscription: Subscription
    group_instance_id: str | None = None

    @property
    def sort_key(self) -> tuple[int, str]:
        """Java's order (``MemberInfo.compareTo``): static members by instance id, then the rest by member id."""
        if self.group_instance_id is not None:
            return (0, self.group_instance_id)
        return (1, self.member_id)


def _all_partitions(topics: Iterable[str], counts: Mapping[str, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in sorted(set(topics)) for p in range(counts.get(t, 0))]


def range_assign(members: list[Member], counts: Mapping[str, int]) -> dict[str, list[TopicPartition]]:
    """Java's RangeAssignor: per topic, consecutive ranges to members sorted by id."""
    result: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
    by_topic: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        for t in set(m.subscription.topics):
            by_topic[t].append(m)
    for topic in sorted(by_topic):
        n = counts.get(topic, 0)
        subs = sorted(by_topic[topic], key=lambda m: m.sort_key)
        if not n or not subs:
            continue
        per, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            length = per + (1 if i < extra else 0)
            result[m.member_id].extend(TopicPartition(topic, p) for p in range(start, start + length))
            start += length
    return result


def roundrobin_assign(members: list[Member], counts: Mapping[str, int]) -> dict[str, list[TopicPartition]]:
    """Java's RoundRobinAssignor: all partitions in order, dealt to members in a circle."""
    result: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
    ordered = sorted(members, key=lambda m: m.sort_key)
    if not ordered:
        return result
    topics = {t for m in members for t in m.subscription.topics}
    i = 0
    for tp in _all_partitions(topics, counts):
        for _ in range(len(ordered)):
            m = ordered[i % len(ordered)]
            i += 1
            if tp.topic in m.subscription.topics:
                result[m.member_id].append(tp)
                break
    return result


def cooperative_sticky_assign(members: list[Member], counts: Mapping[str, int]) -> dict[str, list[TopicPartition]]:
    """A balanced, sticky assignment that is safe for the cooperative protocol.

    1. Each member keeps the partitions it owns (``owned_partitions`` of its
       subscription; on a conflict the highest generation wins) and is still
       subscribed to, up to a fair share: with P partitions and N members,
       P // N each and one more for P % N of them.
    2. Partitions nobody keeps go, in order, to the subscribed member that
       has the fewest.
    3. A partition that changes owner is left out of this round while its old
       owner still has it: that member revokes it and rejoins, and the next
       round hands it out (KIP-429).

    Balanced when members subscribe to the same topics (the common case);
    otherwise step 2 still gives each partition to the least loaded candidate.
    """
    result: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
    if not members:
        return result
    ordered = sorted(members, key=lambda m: m.sort_key)
    member_ids = [m.member_id for m in ordered]
    subscribed = {m.member_id: set(m.subscription.topics) for m in members}
    all_parts = _all_partitions({t for s in subscribed.values() for t in s}, counts)
    valid = set(all_parts)
    owner: dict[TopicPartition, str] = {}
    owner_gen: dict[TopicPartition, int] = {}
    for m in ordered:
        gen = m.subscription.generation_id
        for tp in m.subscription.owned_partitions:
            tp = TopicPartition(*tp)
            if tp in valid and (tp not in owner or gen > owner_gen[tp]):
                owner[tp] = m.member_id
                owner_gen[tp] = gen
    floor, extra = divmod(len(all_parts), len(member_ids))
    kept: dict[str, list[TopicPartition]] = {mid: [] for mid in member_ids}
    unassigned: list[TopicPartition] = []
    for tp in all_parts:
        mid = owner.get(tp)
        if mid is not None and tp.topic in subscribed[mid] and len(kept[mid]) < floor + (1 if extra else 0):
            kept[mid].append(tp)
        else:
            unassigned.append(tp)
    ceiling_holders = [mid for mid in member_ids if len(kept[mid]) > floor]
    for mid in ceiling_holders[extra:]:  # only `extra` members may hold floor + 1
        unassigned.append(kept[mid].pop())
    for tp in sorted(unassigned):
        candidates = [mid for mid in member_ids if tp.topic in subscribed[mid]]
        if candidates:
            target = min(candidates, key=lambda mid: (len(kept[mid]), member_ids.index(mid)))
            kept[target].append(tp)
    for mid, parts in kept.items():
        for tp in sorted(parts):
            previous = owner.get(tp)
            if previous is None or previous == mid:
                result[mid].append(tp)
    return result


ASSIGNORS = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "cooperative-sticky": cooperative_sticky_assign,
}
"""Protocol name -> assignor function."""
