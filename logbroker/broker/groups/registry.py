"""The groups of one coordinator by id, and whether they are loaded yet.

:class:`GroupRegistry` is the one owner of the group map: the classic
membership (:mod:`.coordinator`), the offset store (:mod:`.offsets`) and the
KIP-848 commands (:mod:`.consumer_commands`) each hold the same registry
and change the map only through its methods. Each :class:`Group` is plain
data; which part writes which of its fields is said in :mod:`.state`.
"""

from __future__ import annotations

from collections.abc import Iterator

from logbroker.broker.groups.state import Group


class GroupRegistry:
    """Groups by id. ``loading``: the internal topic is not replayed yet (commands
    answer COORDINATOR_LOAD_IN_PROGRESS); ``shutting_down``: the broker is
    stopping (no new waits). Not thread-safe: the coordinator's thread only."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}
        self.loading = True
        self.shutting_down = False

    def __repr__(self) -> str:
        state = "loading" if self.loading else "shutting down" if self.shutting_down else "active"
        return f"GroupRegistry({state}, groups={len(self._groups)})"

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __iter__(self) -> Iterator[Group]:
        """The groups, in creation order (a snapshot: the map may change meanwhile)."""
        return iter(list(self._groups.values()))

    def get(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    def add(self, group: Group) -> Group:
        """Register ``group`` (replacing one with the same id); returns it."""
        self._groups[group.group_id] = group
        return group

    def remove(self, group_id: str) -> Group | None:
        """Forget a group; the removed one, or None."""
        return self._groups.pop(group_id, None)
