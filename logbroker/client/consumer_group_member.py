"""A member of a KIP-848 consumer group (``group_protocol="consumer"``).

The broker computes the assignment; the member heartbeats and reconciles::

    epoch 0 (join: subscription, assignor, rebalance timeout, owned = [])
      -> ConsumerGroupHeartbeat every interval the broker returns
         an answer with an assignment (topic ids -> partitions) is the new target:
           revoke what is no longer ours (commit first with auto-commit, on_revoke)
           -> take what is new (on_assign)
           -> the next heartbeat, sent at once, lists what we own (the acknowledgement)
         FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID: drop every partition (no commit:
           the epoch is gone), rejoin with epoch 0 and the same member id
    close -> a heartbeat with epoch -1 (-2 for a static member, who comes back)

:class:`Membership` is the sans-I/O half (what the next heartbeat carries,
what an answer means, which partitions to revoke and take), tested with
answer sequences and no broker. :class:`ConsumerGroupMember` drives it with
two tasks: the heartbeat loop, which never waits for the application, and
the reconciler, which runs the consumer's commits and callbacks. The
consumer is reached only through :class:`PartitionOwner`.

Offsets are committed with the member id and epoch (OffsetCommit v9+), so
the coordinator can refuse a commit from a member that lost its partitions.
"""

from __future__ import annotations

import base64
import enum
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from ._subscription import PartitionOwner
from .cluster import Cluster
from .config import ConsumerConfig
from .types import TopicPartition

__all__ = [
    "ConsumerGroupMember",
    "HeartbeatFields",
    "HeartbeatResult",
    "Membership",
    "Outcome",
    "PartitionOwner",
    "Plan",
    "new_member_id",
]

log = logging.getLogger("logbroker.client.consumer_group")

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

UNSUPPORTED_MESSAGE = ("broker does not support the consumer group protocol (ConsumerGroupHeartbeat); "
                       "use group_protocol='classic'")

_FENCED_CODES = frozenset({ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id})
_FIND_COORDINATOR_CODES = frozenset({ErrorCode.not_coordinator, ErrorCode.coordinator_not_available})


def new_member_id() -> str:
    """A member id as Kafka 4 clients make one: a random UUID in URL-safe base64 without
    padding (Kafka's ``Uuid.toString()``), never starting with "-"."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


# -- the sans-I/O half ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeartbeatFields:
    """One ConsumerGroupHeartbeat. None (-1 for the timeout) means "unchanged since the last one";
    ``owned`` maps topic id -> partitions."""

    member_id: str
    member_epoch: int
    instance_id: str | None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Mapping[str, tuple[int, ...]] | None = None


class Outcome(enum.Enum):
    """What the driver does after a heartbeat answer."""

    OK = "ok"  # heartbeat again after the interval
    NEW_TARGET = "new target"  # reconcile, then heartbeat at once
    FENCED = "fenced"  # drop every partition, then rejoin with epoch 0
    FIND_COORDINATOR = "find coordinator"  # look the coordinator up again, retry at once
    RETRY = "retry"  # back off and retry
    FATAL = "fatal"  # report ``error``; no more heartbeats


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    outcome: Outcome
    error: KafkaError | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One reconciliation step: partitions to give up, then to take; topic ids of the
    target whose names are not known yet (ask Metadata, then plan again)."""

    revoke: frozenset[TopicPartition] = frozenset()
    assign: frozenset[TopicPartition] = frozenset()
    unresolved: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.revoke and not self.assign


@dataclass(frozen=True, slots=True)
class _Sent:
    rebalance_timeout_ms: int
    topics: tuple[str, ...] | None
    pattern: str | None
    assignor: str | None
    owned: frozenset[TopicPartition]


class Membership:
    """The member's state and rules, without I/O or time (the driver owns both).

    ``owned`` is what the consumer consumes now; ``target`` the last assignment
    the broker sent (topic id -> partitions), None before the first. Topic names
    and ids are learned with :meth:`learn_topic_ids` from Metadata.
    """

    def __init__(self, *, member_id: str, instance_id: str | None, rebalance_timeout_ms: int,
                 server_assignor: str | None) -> None:
        self.member_id = member_id
        self.instance_id = instance_id
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.server_assignor = server_assignor
        self.epoch = JOIN_EPOCH
        self.topics: tuple[str, ...] = ()
        self.pattern: str | None = None
        self.owned: frozenset[TopicPartition] = frozenset()
        self.target: dict[str, frozenset[int]] | None = None
        self.fenced = False  # partitions must be dropped before rejoining
        self.heartbeat_interval_ms = 0  # until the broker says: at once
        self._names: dict[str, str] = {}  # topic id -> name
        self._ids: dict[str, str] = {}  # name -> topic id
        self._sent: _Sent | None = None

    def __repr__(self) -> str:
        target = "-" if self.target is None else sum(len(p) for p in self.target.values())
        return (f"<Membership member={self.member_id!r} epoch={self.epoch} owned={len(self.owned)} "
                f"target={target} fenced={self.fenced}>")

    @property
    def subscribed(self) -> bool:
        return bool(self.topics) or self.pattern is not None

    @property
    def joined(self) -> bool:
        return self.epoch > 0

    def subscribe(self, topics: Iterable[str] = (), pattern: str | None = None) -> bool:
        """Set the subscription; True if it changed."""
        topics = tuple(sorted(set(topics)))
        changed = (topics, pattern) != (self.topics, self.pattern)
        self.topics, self.pattern = topics, pattern
        return changed

    def learn_topic_ids(self, ids_by_name: Mapping[str, str | None]) -> None:
        for name, topic_id in ids_by_name.items():
            if topic_id:
                self._names[topic_id] = name
                self._ids[name] = topic_id

    # -- heartbeats ---------------------------------------------------------------

    def next_heartbeat(self) -> HeartbeatFields:
        """The next heartbeat: everything when joining (or after a failure), else only what
        changed since the last one. Records what it sends."""
        sent = self._sent if self.epoch != JOIN_EPOCH else None
        topics = None if self.pattern is not None else self.topics
        fields = HeartbeatFields(
            member_id=self.member_id,
            member_epoch=self.epoch,
            instance_id=self.instance_id,
            rebalance_timeout_ms=(self.rebalance_timeout_ms if sent is None
                                  or sent.rebalance_timeout_ms != self.rebalance_timeout_ms else -1),
            subscribed_topic_names=topics if sent is None or (sent.topics, sent.pattern) != (topics, self.pattern)
            else None,
            subscribed_topic_regex=self.pattern if sent is None or sent.pattern != self.pattern else None,
            server_assignor=self.server_assignor if sent is None or sent.assignor != self.server_assignor else None,
            owned=self._owned_by_id() if sent is None or sent.owned != self.owned else None,
        )
        self._sent = _Sent(self.rebalance_timeout_ms, topics, self.pattern, self.server_assignor, self.owned)
        return fields

    def leave_heartbeat(self) -> HeartbeatFields:
        """The heartbeat that leaves: epoch -1, or -2 for a static member (its assignment waits for it)."""
        epoch = STATIC_LEAVE_EPOCH if self.instance_id is not None else LEAVE_EPOCH
        return HeartbeatFields(member_id=self.member_id, member_epoch=epoch, instance_id=self.instance_id)

    def left(self) -> None:
        """The member left (or gave up): the next heartbeat joins again with epoch 0."""
        self.epoch = JOIN_EPOCH
        self.target = None
        self._sent = None

    def request_failed(self) -> None:
        """No answer: the broker may not have seen it, so send every field next time."""
        self._sent = None

    def _owned_by_id(self) -> dict[str, tuple[int, ...]]:
        owned: dict[str, list[int]] = defaultdict(list)
        for tp in self.owned:
            owned[self._ids[tp.topic]].append(tp.partition)
        return {topic_id: tuple(sorted(parts)) for topic_id, parts in owned.items()}

    def on_answer(self, answer: _wire.ConsumerHeartbeatAnswer, group_id: str) -> HeartbeatResult:
        """Apply a heartbeat answer."""
        code = answer.error_code
        if code == ErrorCode.none:
            if answer.member_id:
                self.member_id = answer.member_id  # v0: the coordinator names the member
            self.epoch = answer.member_epoch
            self.heartbeat_interval_ms = answer.heartbeat_interval_ms
            if answer.assignment is None:
                return HeartbeatResult(Outcome.OK)
            target = {topic_id: frozenset(parts) for topic_id, parts in answer.assignment.items() if parts}
            changed = target != self.target
            self.target = target
            return HeartbeatResult(Outcome.NEW_TARGET if changed else Outcome.OK)
        self._sent = None
        context = f"ConsumerGroupHeartbeat for group {group_id!r}"
        if code in _FENCED_CODES:
            self.epoch = JOIN_EPOCH
            self.target = None
            self.fenced = True
            return HeartbeatResult(Outcome.FENCED, kafka_error(code, answer.error_message, context=context))
        if code in _FIND_COORDINATOR_CODES:
            return HeartbeatResult(Outcome.FIND_COORDINATOR, kafka_error(code, context=context))
        if code == ErrorCode.coordinator_load_in_progress:
            return HeartbeatResult(Outcome.RETRY, kafka_error(code, context=context))
        if code == ErrorCode.unsupported_version:
            return HeartbeatResult(Outcome.FATAL, GroupError(UNSUPPORTED_MESSAGE, code=code))
        return HeartbeatResult(Outcome.FATAL, kafka_error(code, answer.error_message, context=context))

    # -- reconciliation -------------------------------------------------------------

    def plan(self) -> Plan:
        """What to revoke and take to reach the target (all of it is revoked when unsubscribed).
        Partitions of topics whose ids are unknown wait; they are listed in ``unresolved``."""
        if not self.subscribed:
            return Plan(revoke=self.owned)
        if self.target is None:
            return Plan()
        wanted: set[TopicPartition] = set()
        unresolved = set()
        for topic_id, parts in self.target.items():
            name = self._names.get(topic_id)
            if name is None:
                unresolved.add(topic_id)
                continue
            wanted.update(TopicPartition(name, p) for p in parts)
        revoke = frozenset(tp for tp in self.owned if tp not in wanted and self._ids.get(tp.topic) not in unresolved)
        return Plan(revoke=revoke, assign=frozenset(wanted - self.owned), unresolved=frozenset(unresolved))

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        self.owned = self.owned - frozenset(partitions)

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        self.owned = self.owned | frozenset(partitions)

    def lost(self) -> None:
        """After fencing, the consumer dropped every partition (without a commit): the
        next heartbeat may join again."""
        self.owned = frozenset()
        self.fenced = False


# -- the driver ----------------------------------------------------------------------------


class ConsumerGroupMember:
    """Membership of ``group_id`` under the consumer protocol for one consumer. Driven by :meth:`run`.

    Offers the interface the consumer uses for its group (``subscribe``,
    ``stable``/``wait_stable``, ``commit``, ``fetch_committed``, ``leave``,
    ``generation``/``member_id`` for transactions), as the classic
    :class:`~logbroker.client.group.GroupMember` does.
    """

    def __init__(self, consumer: PartitionOwner, cluster: Cluster, config: ConsumerConfig, group_id: str) -> None:
        self.group_id = group_id
        self._consumer = consumer
        self._cluster = cluster
        self._config = config
        self.state = Membership(member_id=new_member_id(), instance_id=config.group_instance_id,
                                rebalance_timeout_ms=config.rebalance_timeout_ms,
                                server_assignor=config.group_remote_assignor)
        self._heartbeat_wake = trio.Event()
        self._reconcile_wake = trio.Event()
        self._stable = trio.Event()
        self._failed: KafkaError | None = None
        self._failed_event = trio.Event()
        self._closing = False
        self._scope: trio.CancelScope | None = None
        self.rebalances = 0

    def __repr__(self) -> str:
        return f"<ConsumerGroupMember {self.group_id!r} {self.state!r} stable={self.stable}>"

    # -- what the consumer reads --------------------------------------------------

    @property
    def topics(self) -> tuple[str, ...]:
        return self.state.topics

    @property
    def subscribed(self) -> bool:
        return self.state.subscribed

    @property
    def member_id(self) -> str:
        return self.state.member_id

    @property
    def generation(self) -> int:
        """The member epoch (what transactional offset commits carry as the generation)."""
        return self.state.epoch

    @property
    def owned(self) -> frozenset[TopicPartition]:
        return self.state.owned

    @property
    def stable(self) -> bool:
        return self._stable.is_set()

    async def wait_stable(self) -> None:
        """Return once the member owns its whole target assignment.

        :raises KafkaError: the member failed for good (the broker lacks the protocol...).
        """
        async with trio.open_nursery() as nursery:
            async def failed() -> None:
                await self._failed_event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(failed)
            await self._stable.wait()
            nursery.cancel_scope.cancel()
        if self._failed is not None and not self._stable.is_set():
            raise self._failed

    def subscribe(self, topics: Iterable[str] = (), pattern: str | None = None) -> None:
        if self.state.subscribe(topics, pattern):
            self._unstable()
            self.request_rejoin()

    def request_rejoin(self) -> None:
        """Heartbeat (and reconcile) at once."""
        self._heartbeat_wake.set()
        self._reconcile_wake.set()

    def _unstable(self) -> None:
        if self._stable.is_set():
            self._stable = trio.Event()

    # -- the loops ---------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat and reconcile until :meth:`leave`; fatal errors are reported to the consumer."""
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reconcile_loop)
                await self._heartbeat_loop()
                nursery.cancel_scope.cancel()

    def _fail(self, error: KafkaError) -> None:
        log.warning("group %s: %s", self.group_id, error)
        self._failed = error
        self._failed_event.set()
        self._consumer.report_error(error)

    async def _heartbeat(self, fields: HeartbeatFields, *, lane: str = "group") -> _wire.ConsumerHeartbeatAnswer:
        def body(version: int) -> Any:
            return _wire.consumer_group_heartbeat_request(
                version, group_id=self.group_id,
                member_id=fields.member_id if version >= 1 or fields.member_epoch != JOIN_EPOCH else "",
                member_epoch=fields.member_epoch, instance_id=fields.instance_id,
                rebalance_timeout_ms=fields.rebalance_timeout_ms,
                subscribed_topic_names=fields.subscribed_topic_names,
                subscribed_topic_regex=fields.subscribed_topic_regex,
                server_assignor=fields.server_assignor, owned=fields.owned,
            )

        node = await self._cluster.coordinator(self.group_id)
        conn = await self._cluster.connection(node, lane)
        if not conn.supports(ApiKey.CONSUMER_GROUP_HEARTBEAT):
            raise GroupError(UNSUPPORTED_MESSAGE, code=ErrorCode.unsupported_version, retriable=False)
        version = conn.version(ApiKey.CONSUMER_GROUP_HEARTBEAT)
        answer = await conn.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, version, body(version))
        return _wire.parse_consumer_group_heartbeat(answer)

    async def _heartbeat_loop(self) -> None:
        state = self.state
        attempt = 0
        while not self._closing:
            self._heartbeat_wake = trio.Event()
            if state.fenced or (not state.subscribed and state.owned):
                await self._heartbeat_wake.wait()  # the reconciler drops the partitions first
                continue
            if not state.subscribed:
                if state.joined:
                    await self._send_leave()
                await self._heartbeat_wake.wait()
                continue
            fields = state.next_heartbeat()
            try:
                answer = await self._heartbeat(fields)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                attempt += 1
                log.debug("group %s: heartbeat failed: %s", self.group_id, exc)
                state.request_failed()
                self._cluster.forget_coordinator(self.group_id)
                await trio.sleep(self._config.backoff(attempt))
                continue
            except KafkaError as exc:
                if exc.retriable:
                    attempt += 1
                    state.request_failed()
                    await trio.sleep(self._config.backoff(attempt))
                    continue
                self._fail(exc)
                return
            except ProtocolError as exc:
                self._fail(KafkaError(f"group {self.group_id}: {exc}"))
                return
            if self._closing:
                return
            result = state.on_answer(answer, self.group_id)
            outcome = result.outcome
            if outcome in (Outcome.OK, Outcome.NEW_TARGET):
                attempt = 0
                if outcome is Outcome.NEW_TARGET:
                    self._unstable()
                self._reconcile_wake.set()
            elif outcome is Outcome.FENCED:
                log.info("group %s: %s; dropping %d partitions and joining again",
                         self.group_id, result.error, len(state.owned))
                self._unstable()
                self._reconcile_wake.set()
                continue
            elif outcome is Outcome.FIND_COORDINATOR:
                attempt += 1
                self._cluster.forget_coordinator(self.group_id)
                await trio.sleep(self._config.backoff(attempt))
                continue
            elif outcome is Outcome.RETRY:
                attempt += 1
                await trio.sleep(self._config.backoff(attempt))
                continue
            else:
                assert result.error is not None
                self._fail(result.error)
                return
            with trio.move_on_after(state.heartbeat_interval_ms / 1000):
                await self._heartbeat_wake.wait()

    async def _reconcile_loop(self) -> None:
        state = self.state
        retry_at = math.inf
        while True:
            self._reconcile_wake = trio.Event()
            if state.fenced:
                if state.owned:
                    await self._consumer.revoke_partitions(set(state.owned), lost=True)
                state.lost()
                self._heartbeat_wake.set()
                continue
            plan = state.plan()
            if plan.unresolved:
                await self._learn_topic_ids()
                plan = state.plan()
            if state.fenced:
                continue
            if not plan.empty:
                await self._apply(plan)
                continue
            retry_at = trio.current_time() + self._config.backoff(1) if plan.unresolved else math.inf
            if state.joined and state.target is not None and not plan.unresolved and not state.fenced:
                if not self._stable.is_set():
                    self.rebalances += 1
                    log.info("group %s epoch %d: member %s owns %d partitions",
                             self.group_id, state.epoch, state.member_id, len(state.owned))
                self._stable.set()
            with trio.move_on_at(retry_at):
                await self._reconcile_wake.wait()

    async def _apply(self, plan: Plan) -> None:
        """Revoke, then take; the next heartbeat (at once) acknowledges. A fence in
        between leaves the rest to the fenced path."""
        state = self.state
        if plan.revoke:
            await self._consumer.revoke_partitions(set(plan.revoke))
            if state.fenced:
                state.revoked(plan.revoke)
                return
            state.revoked(plan.revoke)
        if plan.assign:
            self._cluster.add_topics({tp.topic for tp in plan.assign})
            state.assigned(plan.assign)
            await self._consumer.take_partitions(set(plan.assign), set(state.owned))
        self._heartbeat_wake.set()

    async def _learn_topic_ids(self) -> None:
        """Names of the target's topic ids: Metadata of the subscribed topics, or of all
        topics for a pattern (or an id not among them)."""
        try:
            meta = await self._cluster.refresh(self.state.topics)
            ids = {name: info.topic_id for name, info in meta.topics.items()}
            self.state.learn_topic_ids(ids)
            if self.state.plan().unresolved:
                meta = await self._cluster.refresh(all_topics=True)
                self.state.learn_topic_ids({name: info.topic_id for name, info in meta.topics.items()})
        except (KafkaError, ClientClosedError) as exc:
            log.debug("group %s: metadata for the assignment failed: %s", self.group_id, exc)

    # -- offsets and leaving --------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int], *, metadata: str = "") -> None:
        """OffsetCommit ``offsets`` (the next offset to read, per partition) with this member's
        id and epoch. Retries coordinator moves and a stale epoch that has since changed,
        for at most ``request_timeout_ms``.

        :raises CommitFailedError: the member was fenced or its epoch is stale.
        :raises KafkaError: another error.
        """
        if not offsets:
            return
        by_topic: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
        for tp, offset in offsets.items():
            by_topic[tp.topic].append((tp.partition, offset, metadata))
        manual = not self.state.subscribed  # assign() with a group id: a "simple" group
        deadline = trio.current_time() + self._config.request_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            epoch = -1 if manual else self.state.epoch
            member_id = "" if manual else self.state.member_id
            error: KafkaError
            instance_id = None if manual else self._config.group_instance_id

            def body(version: int, epoch: int = epoch, member_id: str = member_id) -> Any:
                return _wire.offset_commit_request(
                    version, group_id=self.group_id, generation_id=epoch, member_id=member_id,
                    group_instance_id=instance_id, offsets=by_topic,
                )

            try:
                answer = await coordinator_request(self._cluster, self.group_id, ApiKey.OFFSET_COMMIT, body)
                codes = {p.error_code for t in answer.topics for p in t.partitions} - {ErrorCode.none}
                if not codes:
                    return
                code = next(iter(codes))
                context = f"OffsetCommit for group {self.group_id!r}"
                if code in COORDINATOR_CODES:
                    self._cluster.forget_coordinator(self.group_id)
                    error = kafka_error(code, context=context)
                elif code == ErrorCode.stale_member_epoch and self.state.epoch != epoch and self.state.joined:
                    # the epoch moved on while the commit was on its way: try with the new one
                    error = KafkaError(f"{context}: STALE_MEMBER_EPOCH", code=code, retriable=True)
                elif code in (ErrorCode.stale_member_epoch, ErrorCode.fenced_member_epoch,
                              ErrorCode.unknown_member_id, ErrorCode.illegal_generation,
                              ErrorCode.fenced_instance_id, ErrorCode.rebalance_in_progress):
                    raise CommitFailedError(
                        f"commit for group {self.group_id!r} failed: {_wire.error_name(code)}; the member "
                        "lost its partitions or its epoch moved on, and they may now belong to another member",
                        code=ErrorCode(code),
                    )
                else:
                    error = kafka_error(code, context=context)
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
        """Stop the loops and leave with epoch -1 (-2 for a static member, whose
        assignment waits for it to come back within the session timeout). Never raises."""
        self._closing = True
        if self._scope is not None:
            self._scope.cancel()
        if self.state.joined:
            await self._send_leave()

    async def _send_leave(self) -> None:
        fields = self.state.leave_heartbeat()
        try:
            with trio.move_on_after(self._config.request_timeout_ms / 1000):
                await self._heartbeat(fields, lane="default")  # not behind a heartbeat in flight
        except (KafkaError, ClientClosedError, ProtocolError) as exc:
            log.debug("leaving group %s failed: %s", self.group_id, exc)
        self.state.left()
