"""The share groups of one coordinator and their share-partitions, by id.

:class:`ShareRegistry` is the one owner of both maps: the share coordinator
(membership, sessions, acquisition) and the stored state
(:class:`~logbroker.broker.share.state.ShareState`: persistence, replay,
configs) hold the same registry and change the maps only through its
methods.
"""

from __future__ import annotations

from collections.abc import Iterator

from logbroker.broker.share.membership import ShareGroup
from logbroker.broker.share.partition import SharePartition

TP = tuple[str, int]


class ShareRegistry:
    """Share groups by id and their share-partitions by (topic, partition).
    ``loading``: the internal topic is not replayed yet. Not thread-safe."""

    def __init__(self) -> None:
        self._groups: dict[str, ShareGroup] = {}
        self._parts: dict[str, dict[TP, SharePartition]] = {}
        self.loading = True

    def __repr__(self) -> str:
        return f"ShareRegistry(groups={len(self._groups)}, partitions={self.partition_count()})"

    # -- groups ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __iter__(self) -> Iterator[ShareGroup]:
        """The groups in creation order (a snapshot)."""
        return iter(list(self._groups.values()))

    def get(self, group_id: str) -> ShareGroup | None:
        return self._groups.get(group_id)

    def add(self, group: ShareGroup) -> ShareGroup:
        self._groups[group.group_id] = group
        return group

    def remove(self, group_id: str) -> list[TP]:
        """Forget a group and its share-partitions; returns the partitions it had."""
        self._groups.pop(group_id, None)
        return list(self._parts.pop(group_id, {}))

    # -- share-partitions -----------------------------------------------------------
    def partition(self, group_id: str, tp: TP) -> SharePartition | None:
        return self._parts.get(group_id, {}).get(tp)

    def set_partition(self, group_id: str, tp: TP, sp: SharePartition) -> SharePartition:
        self._parts.setdefault(group_id, {})[tp] = sp
        return sp

    def remove_partition(self, group_id: str, tp: TP) -> SharePartition | None:
        return self._parts.get(group_id, {}).pop(tp, None)

    def partitions(self, group_id: str) -> list[tuple[TP, SharePartition]]:
        """One group's share-partitions (a snapshot)."""
        return list(self._parts.get(group_id, {}).items())

    def all_partitions(self) -> list[tuple[str, TP, SharePartition]]:
        """Every ``(group id, (topic, partition), share-partition)`` (a snapshot)."""
        return [(group_id, tp, sp) for group_id, parts in self._parts.items() for tp, sp in parts.items()]

    def partition_count(self) -> int:
        return sum(len(parts) for parts in self._parts.values())
