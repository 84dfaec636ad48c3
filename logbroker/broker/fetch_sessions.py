"""Incremental fetch sessions (KIP-227): the broker's FetchSessionCache.

A consumer that fetches thousands of mostly idle partitions would otherwise
send, and make the broker read and answer, every partition on every Fetch.
With a session the broker remembers each partition's fetch parameters; the
client then sends only what changed (incremental fetch) and the broker
answers only the partitions that have something to say.

The request's ``(session_id, epoch)`` decides (Kafka's ``FetchManager.newContext``):

========================  =====================================================
``(0, 0)``                FULL fetch; a session is created with its partitions
``(S, 0)``                close S, FULL fetch, create a new session
``(0, -1)``               FULL fetch without a session (the only kind before v7)
``(S, -1)``               close S, FULL fetch without a session
``(S, N > 0)``            INCREMENTAL: update S (added/changed partitions, the
                          forgotten ones dropped), epoch must be S's; the
                          response lists only the partitions with news
========================  =====================================================

Errors are Kafka's: an unknown S is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch
INVALID_FETCH_SESSION_EPOCH, a session created with topic ids (v13+) used
without them, or the reverse, FETCH_SESSION_TOPIC_ID_ERROR; a session error
answers with no partitions and session id 0.

The cache holds at most ``max.incremental.fetch.session.cache.slots`` sessions
(0: no sessions at all). When it is full a new session may evict, as Kafka's
``FetchSessionCacheShard.tryEvict``: first the least recently used session if
it was idle longer than ``eviction_ms``; otherwise the session with the fewest
partitions among those older than ``eviction_ms``, if the new one has more.
Else the FULL fetch is answered without a session (id 0).

When a topic is deleted every session holding one of its partitions is
closed (its partitions dropped with it): its client's next incremental fetch
gets FETCH_SESSION_ID_NOT_FOUND and starts again with a FULL fetch, so a
topic created again under the same name is never silently missing from a
session the client believes complete.

State lives in memory on the broker's thread (not thread-safe, like every
broker part); time is a parameter (``now_ms``). Pure: no protocol, no I/O.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator, KeysView, Sequence
from dataclasses import dataclass

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
SESSION_MIN_VERSION = 7
"""Fetch versions below this have no session fields: always sessionless."""
TOPIC_IDS_MIN_VERSION = 13
"""Fetch versions from this one name topics by id; a session keeps the kind it began with."""
DEFAULT_EVICTION_MS = 120_000
"""Kafka's ``min.incremental.fetch.session.eviction.ms``."""
FULL_SCAN_INTERVAL_MS = 5_000
"""An incremental fetch reads only the partitions that changed or still have
something to say, and every partition of its session at most this often
(changes nobody announces, such as retention moving a log start offset)."""
_INT32_MAX = 2**31 - 1


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch`` (Kafka's ``FetchMetadata.nextEpoch``): wraps to 1."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == _INT32_MAX else epoch + 1


class FetchSessionError(enum.Enum):
    """Why a request naming a session cannot use it; values are the Kafka error names."""

    NOT_FOUND = "fetch_session_id_not_found"
    INVALID_EPOCH = "invalid_fetch_session_epoch"
    TOPIC_ID_ERROR = "fetch_session_topic_id_error"


@dataclass(frozen=True, slots=True)
class PartitionRequest:
    """One partition as a Fetch request lists it."""

    topic: str
    partition: int
    fetch_offset: int
    max_bytes: int
    log_start_offset: int = -1


class CachedPartition:
    """A partition of a session: the request parameters it was last sent with,
    and what the last response told the client (-1: nothing yet, so it is sent)."""

    __slots__ = ("topic", "partition", "fetch_offset", "max_bytes", "log_start_offset",
                 "high_watermark", "last_stable_offset", "local_log_start_offset")

    def __init__(self, request: PartitionRequest) -> None:
        self.topic = request.topic
        self.partition = request.partition
        self.fetch_offset = request.fetch_offset
        self.max_bytes = request.max_bytes
        self.log_start_offset = request.log_start_offset
        self.high_watermark = -1
        self.last_stable_offset = -1
        self.local_log_start_offset = -1

    def __repr__(self) -> str:
        return (f"CachedPartition({self.topic}-{self.partition}, fetch_offset={self.fetch_offset}, "
                f"high_watermark={self.high_watermark})")

    def update_request(self, request: PartitionRequest) -> None:
        self.fetch_offset = request.fetch_offset
        self.max_bytes = request.max_bytes
        self.log_start_offset = request.log_start_offset

    def unchanged(self, high_watermark: int, last_stable_offset: int, log_start_offset: int) -> bool:
        """True if a response with these offsets and no records and no error
        tells the client nothing new (the partition is left out)."""
        return (high_watermark == self.high_watermark and last_stable_offset == self.last_stable_offset
                and log_start_offset == self.local_log_start_offset)

    def answered(self, error: bool, high_watermark: int, last_stable_offset: int, log_start_offset: int) -> None:
        """Remember what a sent response said. After an error the high watermark
        is forgotten (-1), so the partition is sent again once the error is gone."""
        self.high_watermark = -1 if error else high_watermark
        self.last_stable_offset = last_stable_offset
        self.local_log_start_offset = log_start_offset


class FetchSession:
    """One session: its partitions in fetch order (those that returned records
    move to the end, so a size-limited response serves every partition in turn),
    and which of them the next incremental fetch must read.

    The partitions to read are those announced as changed (appends, see
    :meth:`FetchSessionCache.partitions_changed`), those the client listed
    again, and those that still had something to say when last read; the
    others are idle and the client knows their offsets, so a fetch costs the
    broker in proportion to what changed, not to the session's size. Every
    :data:`FULL_SCAN_INTERVAL_MS` a fetch reads them all.
    """

    __slots__ = ("id", "epoch", "uses_topic_ids", "created_ms", "last_used_ms", "_partitions", "_to_read",
                 "_last_full_scan_ms", "_topics")

    def __init__(self, session_id: int, uses_topic_ids: bool, now_ms: int) -> None:
        self.id = session_id
        self.epoch = next_epoch(INITIAL_EPOCH)
        self.uses_topic_ids = uses_topic_ids
        self.created_ms = now_ms
        self.last_used_ms = now_ms
        self._partitions: dict[tuple[str, int], CachedPartition] = {}
        self._to_read: dict[tuple[str, int], None] = {}  # an ordered set
        self._last_full_scan_ms = now_ms
        # Partitions per topic, so a fetch learns the session's topics without a pass over its partitions.
        self._topics: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"FetchSession(id={self.id}, epoch={self.epoch}, partitions={len(self._partitions)}, "
                f"to_read={len(self._to_read)}, last_used_ms={self.last_used_ms})")

    def __len__(self) -> int:
        return len(self._partitions)

    def __iter__(self) -> Iterator[CachedPartition]:
        return iter(self._partitions.values())

    def keys(self) -> Iterable[tuple[str, int]]:
        return self._partitions.keys()

    def get(self, topic: str, partition: int) -> CachedPartition | None:
        return self._partitions.get((topic, partition))

    def topics(self) -> KeysView[str]:
        return self._topics.keys()

    def update(self, requested: Iterable[PartitionRequest],
               forgotten: Iterable[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Apply an incremental request: listed partitions are added or their
        parameters replaced (and read next); forgotten ones dropped (unknown
        ones ignored). Returns the keys added and the keys dropped."""
        partitions = self._partitions
        added: list[tuple[str, int]] = []
        dropped: list[tuple[str, int]] = []
        for request in requested:
            key = (request.topic, request.partition)
            cached = partitions.get(key)
            if cached is None:
                partitions[key] = CachedPartition(request)
                self._topic_added(request.topic)
                added.append(key)
            else:
                cached.update_request(request)
            self._to_read[key] = None
        for key in forgotten:
            if partitions.pop(key, None) is not None:
                self._to_read.pop(key, None)
                self._topic_dropped(key[0])
                dropped.append(key)
        return added, dropped

    def add(self, cached: CachedPartition) -> None:
        key = (cached.topic, cached.partition)
        if key not in self._partitions:
            self._topic_added(cached.topic)
        self._partitions[key] = cached
        self._to_read[key] = None

    def _topic_added(self, topic: str) -> None:
        self._topics[topic] = self._topics.get(topic, 0) + 1

    def _topic_dropped(self, topic: str) -> None:
        left = self._topics[topic] - 1
        if left:
            self._topics[topic] = left
        else:
            del self._topics[topic]

    def changed(self, key: tuple[str, int]) -> None:
        """The partition ``key`` (of this session) has news: read it next."""
        self._to_read[key] = None

    def to_read(self, now_ms: int) -> list[CachedPartition]:
        """The partitions the fetch now running must read, in fetch order; the
        list to read next starts empty (:meth:`read_again` adds back those
        that still have something to say)."""
        if now_ms - self._last_full_scan_ms >= FULL_SCAN_INTERVAL_MS:
            self._last_full_scan_ms = now_ms
            self._to_read.clear()
            return list(self._partitions.values())
        keys, self._to_read = self._to_read, {}
        partitions = self._partitions
        return [cached for key in keys if (cached := partitions.get(key)) is not None]

    def read_again(self, cached: CachedPartition) -> None:
        """``cached`` had something to say (records, new offsets, an error): the next fetch reads it too."""
        self._to_read[(cached.topic, cached.partition)] = None

    def move_to_end(self, topic: str, partition: int) -> None:
        """Fetch this partition after the others next time (it returned records)."""
        cached = self._partitions.pop((topic, partition), None)
        if cached is not None:
            self._partitions[(topic, partition)] = cached

    def has_topic(self, topic: str) -> bool:
        return topic in self._topics


# -- what a request does with the cache: one small typed family ---------------------


@dataclass(frozen=True, slots=True)
class Sessionless:
    """Answer the listed partitions; no session (response session id 0)."""


@dataclass(frozen=True, slots=True)
class FullFetch:
    """Answer the listed partitions, then offer a new session with them
    (:meth:`FetchSessionCache.create`)."""

    uses_topic_ids: bool


@dataclass(frozen=True, slots=True)
class IncrementalFetch:
    """Read every partition of ``session``; answer those with news. The
    session's epoch was moved on; ``epoch`` is the one this request expects it at."""

    session: FetchSession
    epoch: int


@dataclass(frozen=True, slots=True)
class SessionErrorContext:
    """Answer ``error``, no partitions, session id 0."""

    error: FetchSessionError


FetchContext = Sessionless | FullFetch | IncrementalFetch | SessionErrorContext


class FetchSessionCache:
    """Every fetch session of this broker, keyed by id. Owned by the Broker;
    the Fetch handler asks it for a :data:`FetchContext` per request."""

    def __init__(self, max_slots: int, *, eviction_ms: int = DEFAULT_EVICTION_MS,
                 rng: random.Random | None = None) -> None:
        self.max_slots = max_slots
        self.eviction_ms = eviction_ms
        self._sessions: dict[int, FetchSession] = {}
        self._holding: dict[tuple[str, int], set[int]] = {}  # partition -> ids of the sessions holding it
        self._rng = rng or random.Random()
        self.evictions = 0

    def __repr__(self) -> str:
        return (f"FetchSessionCache(sessions={len(self._sessions)}/{self.max_slots}, "
                f"partitions={self.total_partitions()}, evictions={self.evictions})")

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def total_partitions(self) -> int:
        return sum(len(s) for s in self._sessions.values())

    def new_context(
        self,
        version: int,
        session_id: int,
        epoch: int,
        requested: Sequence[PartitionRequest],
        forgotten: Sequence[tuple[str, int]],
        now_ms: int,
    ) -> FetchContext:
        """What the Fetch request with these session fields does (Kafka's
        ``FetchManager.newContext``). An incremental request updates its session
        here, moves its epoch on and marks it used; a full request naming a
        session closes that session first."""
        if version < SESSION_MIN_VERSION:
            return Sessionless()
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)
            if epoch == FINAL_EPOCH or self.max_slots == 0:
                return Sessionless()
            return FullFetch(uses_topic_ids=version >= TOPIC_IDS_MIN_VERSION)
        session = self._sessions.get(session_id)
        if session is None:
            return SessionErrorContext(FetchSessionError.NOT_FOUND)
        if session.epoch != epoch:
            return SessionErrorContext(FetchSessionError.INVALID_EPOCH)
        if session.uses_topic_ids != (version >= TOPIC_IDS_MIN_VERSION):
            return SessionErrorContext(FetchSessionError.TOPIC_ID_ERROR)
        added, dropped = session.update(requested, forgotten)
        self._index(session.id, added, dropped)
        if not len(session):
            # Everything forgotten: the session ends, this request is answered without one.
            self.remove(session_id)
            return Sessionless()
        session.last_used_ms = now_ms
        session.epoch = next_epoch(session.epoch)
        return IncrementalFetch(session, session.epoch)

    def create(self, partitions: Sequence[CachedPartition], uses_topic_ids: bool, now_ms: int) -> int:
        """A new session holding ``partitions`` (the answered ones of a FULL
        fetch); its id, or 0 if there is no room and nothing may be evicted."""
        if self.max_slots <= 0:
            return INVALID_SESSION_ID
        if len(self._sessions) >= self.max_slots and not self._try_evict(len(partitions), now_ms):
            return INVALID_SESSION_ID
        session = FetchSession(self._new_id(), uses_topic_ids, now_ms)
        for cached in partitions:
            session.add(cached)
        self._sessions[session.id] = session
        self._index(session.id, session.keys(), ())
        return session.id

    def remove(self, session_id: int) -> FetchSession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._index(session_id, (), session.keys())
        return session

    def topic_deleted(self, topic: str) -> int:
        """Close every session holding a partition of ``topic``; how many."""
        doomed = [sid for sid, session in self._sessions.items() if session.has_topic(topic)]
        for sid in doomed:
            self.remove(sid)
        return len(doomed)

    def partitions_changed(self, partitions: Iterable[tuple[str, int]]) -> set[int]:
        """Records were appended to ``partitions`` (or their visible end moved):
        the sessions holding them read them on their next fetch. Returns those
        sessions' ids (their long polls should wake)."""
        holding = self._holding
        sessions = self._sessions
        woken: set[int] = set()
        for key in partitions:
            ids = holding.get(key)
            if ids:
                for sid in ids:
                    sessions[sid].changed(key)
                woken |= ids
        return woken

    def _index(self, session_id: int, added: Iterable[tuple[str, int]], dropped: Iterable[tuple[str, int]]) -> None:
        holding = self._holding
        for key in added:
            holding.setdefault(key, set()).add(session_id)
        for key in dropped:
            ids = holding.get(key)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del holding[key]

    def _new_id(self) -> int:
        while True:
            session_id = self._rng.randint(1, _INT32_MAX)
            if session_id not in self._sessions:
                return session_id

    def _try_evict(self, size: int, now_ms: int) -> bool:
        """Make room for a new session of ``size`` partitions (Kafka's ``tryEvict``
        for an unprivileged session): the least recently used session if stale,
        else the smallest session past ``eviction_ms`` of age if ``size`` is larger."""
        sessions = self._sessions.values()
        if not sessions:
            return False
        lru = min(sessions, key=lambda s: (s.last_used_ms, s.id))
        if now_ms - lru.last_used_ms > self.eviction_ms:
            self._evict(lru)
            return True
        evictable = [s for s in sessions if now_ms - s.created_ms > self.eviction_ms]
        if not evictable:
            return False
        smallest = min(evictable, key=lambda s: (len(s), s.id))
        if size <= len(smallest):
            return False
        self._evict(smallest)
        return True

    def _evict(self, session: FetchSession) -> None:
        self.remove(session.id)
        self.evictions += 1
