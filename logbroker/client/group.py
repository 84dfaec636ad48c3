"""A member of a classic consumer group: join, sync, heartbeat, commit, leave.

:class:`GroupMember` runs as one task of the consumer. Its loop is::

    find coordinator -> JoinGroup -> (leader: assign) -> SyncGroup -> heartbeat ...
                 ^                                                      |
                 +------ REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID ------+

It speaks the "consumer" protocol type with the standard subscription and
assignment encodings (:mod:`.assignors`), so it shares a group with Java,
kafka-python and librdkafka consumers. With eager assignors (range,
roundrobin) every partition is revoked (offsets committed first when
auto-commit is on) before rejoining; with ``cooperative-sticky`` only the
partitions that move are revoked, followed by a second rebalance that hands
them to their new owner.

Requests go to the coordinator on the cluster's ``"group"`` lane: a JoinGroup
can wait for a whole rebalance and must not hold up fetches or metadata.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Callable
from typing import Any

import trio

from logbroker.errors import (
    ClientClosedError,
    CommitFailedError,
    GroupError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProtocolError,
)
from logbroker.protocol import ApiKey, ErrorCode

from . import _wire
from ._errors import kafka_error
from ._group_offsets import COORDINATOR_CODES, coordinator_request, fetch_committed
from .assignors import ASSIGNORS, Member, Subscription, decode_assignment, decode_subscription, encode_assignment, \
    encode_subscription, Assignment
from ._subscription import PartitionOwner
from .cluster import Cluster
from .config import ConsumerConfig
from .types import TopicPartition

__all__ = ["GroupMember"]

log = logging.getLogger("logbroker.client.group")

_COORDINATOR_CODES = COORDINATOR_CODES
_REJOIN_CODES = frozenset(
    {ErrorCode.rebalance_in_progress, ErrorCode.illegal_generation, ErrorCode.unknown_member_id,
     ErrorCode.fenced_instance_id}
)


class _Rejoin(Exception):
    """Internal: leave the stable state and join again."""


class GroupMember:
    """Membership of ``group_id`` for one consumer. Driven by :meth:`run`."""

    def __init__(self, consumer: PartitionOwner, cluster: Cluster, config: ConsumerConfig, group_id: str) -> None:
        self.group_id = group_id
        self._consumer = consumer
        self._cluster = cluster
        self._config = config
        self.cooperative = config.assignors == ("cooperative-sticky",)
        self.topics: tuple[str, ...] = ()
        self.member_id = ""
        self.generation = -1
        self.protocol: str | None = None
        self.leader = False
        self.owned: set[TopicPartition] = set()
        self._rejoin = trio.Event()
        self._stable = trio.Event()
        self._assigned_counts: dict[str, int] = {}
        self._closing = False
        self.rebalances = 0

    def __repr__(self) -> str:
        return (
            f"<GroupMember {self.group_id!r} member={self.member_id!r} generation={self.generation} "
            f"protocol={self.protocol} leader={self.leader} owned={len(self.owned)}>"
        )

    @property
    def stable(self) -> bool:
        return self._stable.is_set()

    @property
    def subscribed(self) -> bool:
        return bool(self.topics)

    async def wait_stable(self) -> None:
        """Return once this member has an assignment of the current generation."""
        await self._stable.wait()

    def request_rejoin(self) -> None:
        self._rejoin.set()

    def subscribe(self, topics: tuple[str, ...]) -> None:
        changed = topics != self.topics
        self.topics = topics
        if changed:
            self.request_rejoin()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Join, then heartbeat; rejoin when asked. Returns when closing; reports fatal errors."""
        attempt = 0
        while not self._closing:
            try:
                await self._join_and_sync()
                attempt = 0
                await self._heartbeat_until_rejoin()
            except _Rejoin:
                continue
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                attempt += 1
                log.debug("group %s: %s; retrying", self.group_id, exc)
                self._cluster.forget_coordinator(self.group_id)
                await trio.sleep(self._config.backoff(attempt))
            except KafkaError as exc:
                attempt += 1
                if exc.retriable or exc.code in _REJOIN_CODES:
                    await trio.sleep(self._config.backoff(attempt))
                    continue
                log.warning("group %s: %s", self.group_id, exc)
                self._consumer.report_error(exc)
                await trio.sleep(max(1.0, self._config.backoff(attempt)))
            except ProtocolError as exc:
                self._consumer.report_error(KafkaError(f"group {self.group_id}: {exc}"))
                await trio.sleep(1.0)

    async def _coordinator_request(self, api_key: ApiKey, make_body: Callable[[int], Any], *, extra_timeout_ms: int = 0,
                                   lane: str = "group") -> Any:
        return await coordinator_request(self._cluster, self.group_id, api_key, make_body,
                                         extra_timeout_ms=extra_timeout_ms, lane=lane)

    def _check(self, code: int, what: str, message: str | None = None) -> None:
        if code == ErrorCode.none:
            return
        if code in _COORDINATOR_CODES:
            self._cluster.forget_coordinator(self.group_id)
        if code in (ErrorCode.unknown_member_id, ErrorCode.fenced_instance_id):
            self.member_id = ""
            self.generation = -1
        raise kafka_error(code, message, context=f"{what} for group {self.group_id!r}")

    async def _join_and_sync(self) -> None:
        self._stable = trio.Event() if self._stable.is_set() else self._stable
        self._rejoin = trio.Event()
        if not self.cooperative and self.owned:
            await self._consumer.revoke_partitions(set(self.owned))
            self.owned = set()
        if not self.topics:  # unsubscribed: give everything up, leave, wait for a new subscribe()
            if self.owned:
                await self._consumer.revoke_partitions(set(self.owned))
                self.owned = set()
            await self._send_leave()
            await self._rejoin.wait()
            raise _Rejoin
        c = self._config
        protocols = []
        for name in c.assignors:
            sub = Subscription(
                topics=tuple(sorted(self.topics)),
                owned_partitions=tuple(sorted(self.owned)),
                generation_id=self.generation,
            )
            protocols.append((name, encode_subscription(sub)))
        while True:
            answer = await self._coordinator_request(
                ApiKey.JOIN_GROUP,
                lambda v: _wire.join_group_request(
                    v, group_id=self.group_id, member_id=self.member_id,
                    group_instance_id=c.group_instance_id, session_timeout_ms=c.session_timeout_ms,
                    rebalance_timeout_ms=c.rebalance_timeout_ms, protocol_type="consumer", protocols=protocols,
                ),
                extra_timeout_ms=c.rebalance_timeout_ms,
            )
            if answer.error_code == ErrorCode.member_id_required:
                self.member_id = answer.member_id
                continue
            self._check(answer.error_code, "JoinGroup")
            break
        self.member_id = answer.member_id
        self.generation = answer.generation_id
        self.protocol = answer.protocol_name
        self.leader = answer.leader == self.member_id
        assignments: dict[str, bytes] = {}
        if self.leader:
            assignments = await self._assign(answer.members, self.protocol or c.assignors[0])
        protocol = self.protocol
        generation = self.generation
        sync = await self._coordinator_request(
            ApiKey.SYNC_GROUP,
            lambda v: _wire.sync_group_request(
                v, group_id=self.group_id, generation_id=generation, member_id=self.member_id,
                group_instance_id=c.group_instance_id, protocol_type="consumer",
                protocol_name=protocol or "", assignments=assignments,
            ),
        )
        self._check(sync.error_code, "SyncGroup")
        assigned = set(decode_assignment(sync.assignment).partitions)
        self.rebalances += 1
        revoked = self.owned - assigned
        added = assigned - self.owned
        log.info("group %s generation %d: member %s assigned %d partitions",
                 self.group_id, generation, self.member_id, len(assigned))
        if revoked:
            await self._consumer.revoke_partitions(revoked)
        self.owned = assigned
        await self._consumer.take_partitions(added, assigned)
        if self.cooperative and revoked:
            self._rejoin.set()  # let the next round give the revoked partitions away
        self._stable.set()

    async def _assign(self, members: Any, protocol: str) -> dict[str, bytes]:
        """Leader: compute every member's assignment with ``protocol``'s assignor."""
        parsed = []
        topics: set[str] = set()
        for m in members:
            sub = decode_subscription(m.metadata)
            parsed.append(Member(m.member_id, sub, getattr(m, "group_instance_id", None)))
            topics.update(sub.topics)
        meta = await self._cluster.refresh(topics)
        counts = {}
        for t in topics:
            info = meta.topics.get(t)
            counts[t] = len(info.partitions) if info is not None and not info.error_code else 0
        self._assigned_counts = counts
        assignor = ASSIGNORS.get(protocol)
        if assignor is None:
            raise GroupError(f"the group chose protocol {protocol!r}, which this client does not implement",
                             code=ErrorCode.inconsistent_group_protocol)
        result = assignor(parsed, counts)
        return {mid: encode_assignment(Assignment(tuple(parts))) for mid, parts in result.items()}

    async def _heartbeat_until_rejoin(self) -> None:
        c = self._config
        session_deadline = trio.current_time() + c.session_timeout_ms / 1000
        check_metadata_at = trio.current_time() + c.metadata_max_age_ms / 1000
        while not self._closing:
            with trio.move_on_after(c.heartbeat_interval_ms / 1000):
                await self._rejoin.wait()
            if self._rejoin.is_set():
                return
            generation = self.generation
            try:
                answer = await self._coordinator_request(
                    ApiKey.HEARTBEAT,
                    lambda v: _wire.heartbeat_request(
                        v, group_id=self.group_id, generation_id=generation, member_id=self.member_id,
                        group_instance_id=c.group_instance_id,
                    ),
                )
            except (KafkaConnectionError, KafkaTimeoutError):
                self._cluster.forget_coordinator(self.group_id)
                if trio.current_time() > session_deadline:
                    raise
                continue
            if answer.error_code in _COORDINATOR_CODES:
                self._cluster.forget_coordinator(self.group_id)
                continue
            if answer.error_code in _REJOIN_CODES:
                if answer.error_code != ErrorCode.rebalance_in_progress:
                    self._check(answer.error_code, "Heartbeat")
                return
            self._check(answer.error_code, "Heartbeat")
            session_deadline = trio.current_time() + c.session_timeout_ms / 1000
            if self.leader and trio.current_time() >= check_metadata_at:
                check_metadata_at = trio.current_time() + c.metadata_max_age_ms / 1000
                if await self._partitions_changed():
                    return

    async def _partitions_changed(self) -> bool:
        try:
            meta = await self._cluster.refresh(self._assigned_counts)
        except KafkaError:
            return False
        for topic, count in self._assigned_counts.items():
            info = meta.topics.get(topic)
            now = len(info.partitions) if info is not None and not info.error_code else 0
            if now != count:
                return True
        return False

    # -- offsets -----------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int], *, metadata: str = "") -> None:
        """OffsetCommit ``offsets`` (the next offset to read, per partition).

        Retries coordinator moves for at most ``request_timeout_ms``.

        :raises CommitFailedError: the group rebalanced or evicted this member.
        :raises KafkaError: another error.
        """
        if not offsets:
            return
        by_topic: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
        for tp, offset in offsets.items():
            by_topic[tp.topic].append((tp.partition, offset, metadata))
        manual = not self.topics  # assign() with a group id: a "simple" group
        generation = -1 if manual else self.generation
        member_id = "" if manual else self.member_id
        deadline = trio.current_time() + self._config.request_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._coordinator_request(
                    ApiKey.OFFSET_COMMIT,
                    lambda v: _wire.offset_commit_request(
                        v, group_id=self.group_id, generation_id=generation, member_id=member_id,
                        group_instance_id=None if manual else self._config.group_instance_id, offsets=by_topic,
                    ),
                )
                codes = {p.error_code for t in answer.topics for p in t.partitions} - {ErrorCode.none}
                if not codes:
                    return
                code = next(iter(codes))
                if code in _COORDINATOR_CODES:
                    self._cluster.forget_coordinator(self.group_id)
                    error: KafkaError = kafka_error(code, context=f"OffsetCommit for group {self.group_id!r}")
                elif code in _REJOIN_CODES:
                    self.request_rejoin()
                    if code != ErrorCode.rebalance_in_progress:
                        self.member_id = "" if code == ErrorCode.unknown_member_id else self.member_id
                    raise CommitFailedError(
                        f"commit for group {self.group_id!r} failed: {_wire.error_name(code)}; the group "
                        "rebalanced and the partitions may now belong to another member",
                        code=ErrorCode(code),
                    )
                else:
                    error = kafka_error(code, context=f"OffsetCommit for group {self.group_id!r}")
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._cluster.forget_coordinator(self.group_id)
                error = exc
            if not error.retriable or trio.current_time() + self._config.backoff(attempt) > deadline:
                raise error
            await trio.sleep(self._config.backoff(attempt))

    async def fetch_committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Committed offsets of ``partitions`` (-1 for none).

        :raises KafkaError: a non-retriable error, or retriable ones past ``request_timeout_ms``.
        """
        return await fetch_committed(self._cluster, self.group_id, partitions)

    async def leave(self) -> None:
        """Stop the loop and LeaveGroup (not for static members, whose session outlives a
        restart). Never raises."""
        self._closing = True
        self._rejoin.set()
        await self._send_leave()

    async def _send_leave(self) -> None:
        if not self.member_id or self._config.group_instance_id is not None:
            return
        try:
            with trio.move_on_after(self._config.request_timeout_ms / 1000):
                await self._coordinator_request(
                    ApiKey.LEAVE_GROUP,
                    lambda v: _wire.leave_group_request(v, group_id=self.group_id, member_id=self.member_id,
                                                        group_instance_id=self._config.group_instance_id),
                    lane="default",  # not behind a JoinGroup still waiting on the group lane
                )
        except (KafkaError, ClientClosedError) as exc:
            log.debug("LeaveGroup failed: %s", exc)
        self.member_id = ""
        self.generation = -1
