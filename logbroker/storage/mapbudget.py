"""The memory maps of segments and indexes, within a budget.

Linux caps the memory maps of a process (``vm.max_map_count``, 65530 by
default), and a partition maps up to three files per segment (the log and
its two indexes): 100,000 partitions read and written would need 300,000.
Every such map is registered here by its owner (a segment's log view or an
index), least recently used first; once more than ``limit`` are registered,
the oldest owners are asked to drop theirs (:meth:`MappedOwner.release_map`),
and they map again on their next read (about 10 microseconds). An idle
partition thus holds no map.

Dropping a map only drops the owner's reference: views already handed out
(a fetch answer being sent) keep their map alive until they are gone, so a
release never invalidates bytes in use.

One instance serves the process (:data:`MAPS`): the cap is per process.
Thread-safe: owners register and touch from any thread under one lock;
``release_map`` is called under that lock and must only drop references.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

__all__ = ["DEFAULT_MAX_MAPS", "MAPS", "MapBudget", "MappedOwner", "map_budget_for"]

DEFAULT_MAX_MAPS = 16384
"""Maps kept at most (a quarter of Linux's default ``vm.max_map_count``)."""


class MappedOwner(Protocol):
    def release_map(self) -> None:
        """Drop the reference to the map (called with the budget's lock held)."""


class MapBudget:
    """At most ``limit`` registered maps, least recently used released first."""

    def __init__(self, limit: int = DEFAULT_MAX_MAPS) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._owners: OrderedDict[int, MappedOwner] = OrderedDict()
        self._lock = threading.Lock()
        self.released = 0  # maps released to stay within the budget (statistics)

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """Change the budget; maps over it are released now."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            self._limit = limit
            self._evict(None)

    def mapped(self) -> int:
        """Maps registered now."""
        return len(self._owners)

    def add(self, owner: MappedOwner) -> None:
        """``owner`` just mapped: register it as the most recent, releasing the
        least recently used maps beyond the budget (never ``owner``'s)."""
        with self._lock:
            key = id(owner)
            self._owners[key] = owner
            self._owners.move_to_end(key)
            self._evict(key)

    def touch(self, owner: MappedOwner) -> None:
        """``owner`` used its map: make it the most recent (no-op if not registered)."""
        key = id(owner)
        if key in self._owners:
            with self._lock:
                if key in self._owners:
                    self._owners.move_to_end(key)

    def forget(self, owner: MappedOwner) -> None:
        """``owner`` dropped its map itself (closed, deleted) or keeps it outside
        the budget (the files of an unlinked segment cannot be mapped again)."""
        key = id(owner)
        if key in self._owners:
            with self._lock:
                self._owners.pop(key, None)

    def _evict(self, keep: int | None) -> None:
        while len(self._owners) > self._limit:
            key, owner = next(iter(self._owners.items()))
            if key == keep:
                break
            del self._owners[key]
            owner.release_map()
            self.released += 1


def map_budget_for(configured: int) -> int:
    """``configured`` maps, or a quarter of ``vm.max_map_count`` if that is less
    (the rest is for the interpreter, libraries, thread stacks and views in use)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            cap = int(f.read()) // 4
    except (OSError, ValueError):
        return configured
    return max(1, min(configured, cap))


MAPS = MapBudget()
