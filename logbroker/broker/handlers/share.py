"""Share-group APIs (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe,
ShareFetch, ShareAcknowledge; and group configs (resource type GROUP) for
DescribeConfigs and IncrementalAlterConfigs.

Each handler turns the request into share-coordinator commands
(``broker.share``, :mod:`logbroker.broker.share`) and their results into the
response of the request's version. Topics are named by topic id. A
ShareFetch that acquires nothing becomes a :class:`ShareFetchOperation`
the server retries when its partitions grow, until ``max_wait``.
:data:`ERROR_CODES` is the one mapping from the coordinator's outcomes to
Kafka error codes.

ACLs as in Kafka (KIP-932): ShareGroupHeartbeat needs READ on the group and
DESCRIBE on each subscribed topic, ShareGroupDescribe DESCRIBE on the group
(and on the topics of its assignments), ShareFetch and ShareAcknowledge READ
on the group and READ on each topic (TOPIC_AUTHORIZATION_FAILED per
partition, and the partition is neither added to the session nor fetched);
group configs need DESCRIBE_CONFIGS / ALTER_CONFIGS on the group.
"""

from __future__ import annotations

from typing import Any

import dataclasses

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import (
    GROUP_DENIED, NO_AUTHORIZED_OPERATIONS, TOPIC_DENIED, denied_topics, group_operations,
)
from logbroker.broker.handlers._build import build, module_of, ms
from logbroker.broker.handlers._result import Reply
from logbroker.broker.handlers.errors import error_code_for
from logbroker.broker.handlers.fetch import FetchOperation
from logbroker.broker.share import FINAL_EPOCH, INITIAL_EPOCH, HeartbeatRequest, PartitionData, ShareError, ShareSession
from logbroker.errors import InvalidConfigError, LogbrokerError

ERROR_CODES: dict[ShareError, ErrorCode] = {e: getattr(ErrorCode, e.value) for e in ShareError}
"""ShareError -> the ErrorCode sent on the wire."""

RESOURCE_GROUP = 32
"""Kafka's ConfigResource.Type.GROUP; librdkafka sends its ACL type GROUP (3), accepted too."""
_RESOURCE_GROUP_ACL = 3
_OP_SET, _OP_DELETE, _OP_APPEND, _OP_SUBTRACT = 0, 1, 2, 3
_SOURCE_GROUP, _SOURCE_DEFAULT = 8, 5
_TYPE_STRING = 2


def _code(error: ShareError) -> ErrorCode:
    return ERROR_CODES[error]


def _unwritten(broker: Broker, written: Any) -> bool:
    """With flush=always, a commit that could not be written must not be confirmed
    (its changes stay in memory and are written as snapshots once the disk recovers)."""
    return written.failed and broker.config.flush == "always"


def _flush(broker: Broker, written: Any) -> list:
    """fsync points to honour before answering (only with flush=always)."""
    if broker.config.flush != "always":
        return []
    return [(f.log, f.offset) for f in written.flush]


# -- ShareGroupHeartbeat / ShareGroupDescribe -------------------------------------------


def handle_share_group_heartbeat(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    subscribed = body.subscribed_topic_names
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, assignment=None,
                     error_message=f"not allowed to read group {body.group_id!r}")
    if subscribed and (denied := denied_topics(broker, ctx, "describe", subscribed)):
        return build(request.response_class, error_code=TOPIC_DENIED, assignment=None,
                     error_message=f"not allowed to describe topics {', '.join(sorted(denied))}")
    result = broker.share.heartbeat(
        HeartbeatRequest(
            group_id=body.group_id,
            member_id=body.member_id,
            member_epoch=int(body.member_epoch),
            subscribed=tuple(subscribed) if subscribed is not None else None,
            rack_id=body.rack_id,
            client_id=request.client_id or "",
            client_host=ctx.peer,
        ),
        broker.clock(),
    )
    mod = module_of(request.response_class)
    assignment = None
    if result.assignment is not None:
        assignment = build(mod.Assignment, topic_partitions=tuple(
            build(mod.TopicPartitions, topic_id=topic_id, partitions=partitions)
            for topic_id, _, partitions in result.assignment
        ))
    return build(
        request.response_class,
        error_code=_code(result.error),
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=result.heartbeat_interval_ms,
        assignment=assignment,
    )


def handle_share_group_describe(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    names = list(request.body.group_ids)
    allowed = [broker.allowed(ctx, "describe", "group", name) for name in names]
    described = iter(broker.share.describe([n for n, ok in zip(names, allowed) if ok]))
    with_operations = bool(getattr(request.body, "include_authorized_operations", False))
    groups = []
    for name, ok in zip(names, allowed):
        if not ok:
            groups.append(build(mod.DescribedGroup, error_code=GROUP_DENIED, group_id=name, members=(),
                                error_message=f"not allowed to describe group {name!r}",
                                authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        g = next(described)
        if denied_topics(broker, ctx, "describe", (topic for m in g.members for _, topic, _ in m.assignment)):
            groups.append(build(mod.DescribedGroup, error_code=TOPIC_DENIED, group_id=name, members=(),
                                error_message="the group has topics the client may not describe",
                                authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        members = tuple(
            build(
                mod.Member,
                member_id=m.member_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed,
                assignment=build(mod.Assignment, topic_partitions=tuple(
                    build(mod.TopicPartitions, topic_id=tid, topic_name=name, partitions=parts)
                    for tid, name, parts in m.assignment
                )),
            )
            for m in g.members
        )
        groups.append(build(
            mod.DescribedGroup,
            error_code=_code(g.error),
            error_message=g.message,
            group_id=g.group_id,
            group_state=g.state if g.error is ShareError.NONE else "",
            group_epoch=g.group_epoch,
            assignment_epoch=g.assignment_epoch,
            assignor_name="simple",
            members=members,
            authorized_operations=(
                group_operations(broker, ctx, g.group_id) if with_operations and g.error is ShareError.NONE
                else NO_AUTHORIZED_OPERATIONS
            ),
        ))
    return build(request.response_class, groups=tuple(groups))


# -- ShareFetch / ShareAcknowledge ---------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Entry:
    """One partition of the response: what the request's own work (topic
    lookup, acknowledgements) and the acquisition said about it."""

    topic_id: object
    topic: str | None
    partition: int
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    ack_error: ErrorCode = ErrorCode.none
    ack_message: str | None = None
    records: object = b""
    acquired: tuple = ()

    def merge(self, other: _Entry) -> None:
        """Fold in a second mention of the same partition (a topic listed twice)."""
        if other.error is not ErrorCode.none:
            self.error, self.message = other.error, other.message
        if other.ack_error is not ErrorCode.none:
            self.ack_error, self.ack_message = other.ack_error, other.ack_message


def _resolve(broker: Broker, ctx: RequestContext, topics: Any) -> Any:
    """``(entry, ack batches)`` per requested partition, topic ids resolved to
    names; partitions of topics the principal may not READ carry TOPIC_AUTHORIZATION_FAILED."""
    out = []
    share = broker.share
    for topic in topics:
        name = share.topic_name(topic.topic_id) if topic.topic_id is not None else None
        readable = name is None or broker.allowed(ctx, "read", "topic", name)
        for p in topic.partitions:
            index = int(p.partition_index)
            entry = _Entry(topic.topic_id, name, index)
            if name is None:
                entry.error = ErrorCode.unknown_topic_id
            elif not readable:
                entry.error, entry.message = TOPIC_DENIED, f"not allowed to read {name!r}"
            batches = tuple(
                (int(b.first_offset), int(b.last_offset), tuple(int(t) for t in b.acknowledge_types))
                for b in p.acknowledgement_batches
            )
            out.append((entry, batches))
    return out


def _acknowledge(broker: Broker, group_id: str, member_id: str, resolved: Any, now: int, allow_renew: bool) -> None:
    for entry, batches in resolved:
        if not batches:
            continue
        if entry.topic is None:
            entry.ack_error = ErrorCode.unknown_topic_id
            continue
        if entry.error is TOPIC_DENIED:
            entry.ack_error = TOPIC_DENIED
            continue
        error, message = broker.share.acknowledge(
            group_id, member_id, entry.topic, entry.partition, batches, now, allow_renew=allow_renew
        )
        entry.ack_error, entry.ack_message = _code(error), message


def _lock_timeout(broker: Broker, group_id: str) -> int:
    group = broker.share.group(group_id)
    return group.settings.record_lock_duration_ms if group is not None else broker.share.config.record_lock_duration_ms


class ShareFetchOperation(FetchOperation):
    """The acquisition half of one ShareFetch, attempted again each time one of
    the session's partitions grows (acknowledgements were applied already).

    It acquires only for the client that asked: once that client's session
    closed or was replaced, or the member left the group (it was one when it
    asked), it answers at once with nothing acquired. A parked fetch outlives
    its asker's interest (the client gave up on it and closed); records taken
    for it would be released later and count a delivery nobody saw.

    It is a :class:`FetchOperation` for the server (``watch``, ``wait_ms``,
    ``attempt``) but shares none of its state, hence its own slot names."""

    __slots__ = ("_sf_broker", "_sf_request", "_sf_entries", "_sf_session", "_sf_member", "_sf_limits",
                 "_sf_denied", "flush")

    def __init__(self, broker: Broker, request: Request, entries: list[_Entry], session: ShareSession | None,
                 partitions: Any, denied: Any = frozenset()) -> None:
        body = request.body
        self._sf_broker = broker
        self._sf_request = request
        self._sf_entries = entries
        self._sf_session = session
        # The asker's membership as it asked (None: not a member, e.g. a fetch before joining).
        self._sf_member = broker.share.member(session.group_id, session.member_id) if session is not None else None
        self._sf_limits = (int(body.max_records), int(body.max_bytes))
        # Topics of the session the principal may not READ (decided once, for the asking connection).
        self._sf_denied = denied
        self.flush = []
        self.wait_ms = max(0, ms(body.max_wait)) if session is not None else 0
        self.min_bytes = 1
        self.watch = [tp for tp in partitions if tp[0] not in denied]

    def __repr__(self) -> str:
        return f"ShareFetchOperation(partitions={len(self.watch)}, wait_ms={self.wait_ms})"

    def _asker(self) -> ShareSession | None:
        """The session to acquire for, or None once its client is gone."""
        session = self._sf_session
        if session is None:
            return None
        share = self._sf_broker.share
        live = share.sessions.get(session.group_id, session.member_id)
        if live is not session:
            return None  # closed (epoch -1, expiry) or replaced by a new session
        if self._sf_member is not None and share.member(session.group_id, session.member_id) is not self._sf_member:
            return None  # the member left (its session may stay for its last acknowledgements)
        return session

    def attempt(self, *, final: bool) -> Any:
        """The response body, or None while nothing was acquired and not final."""
        live = self._asker()
        if live is None:
            return self._response([])
        max_records, max_bytes = self._sf_limits
        partitions = live.ordered()
        if self._sf_denied:
            partitions = [tp for tp in partitions if tp[0] not in self._sf_denied]
        data = self._sf_broker.share.acquire(
            live.group_id, live.member_id, partitions, max_records, max_bytes, self._sf_broker.clock(),
        )
        if not any(d.acquired for d in data) and not final and self.wait_ms > 0:
            return None
        return self._response(data)

    def _response(self, data: list[PartitionData]) -> Any:
        request = self._sf_request
        broker = self._sf_broker
        mod = module_of(request.response_class)
        entries: dict[tuple, _Entry] = {}
        for e in self._sf_entries:
            key = (e.topic_id, e.partition)
            if key in entries:
                entries[key].merge(e)
            else:
                entries[key] = dataclasses.replace(e)
        bytes_out = broker.traffic.bytes_out
        for d in data:
            if isinstance(d.records, (bytes, bytearray, memoryview)):
                bytes_out[d.topic] += len(d.records)
            topic_id = broker.share.topic_id(d.topic)
            entry = entries.setdefault((topic_id, d.partition), _Entry(topic_id, d.topic, d.partition))
            if d.error is not ShareError.NONE:
                entry.error, entry.message = _code(d.error), d.message
            entry.records, entry.acquired = d.records, d.acquired
        leader = build(mod.LeaderIdAndEpoch, leader_id=broker.config.node_id, leader_epoch=0)
        topics: dict[object, list] = {}
        for e in entries.values():
            topics.setdefault(e.topic_id, []).append(build(
                mod.PartitionData,
                partition_index=e.partition,
                error_code=e.error,
                error_message=e.message,
                acknowledge_error_code=int(e.ack_error.value),
                acknowledge_error_message=e.ack_message,
                current_leader=leader,
                records=e.records,
                acquired_records=tuple(
                    mod.AcquiredRecords(first_offset=r.first, last_offset=r.last, delivery_count=r.delivery_count)
                    for r in e.acquired
                ),
            ))
        return build(
            request.response_class,
            error_code=ErrorCode.none,
            acquisition_lock_timeout=_lock_timeout(broker, request.body.group_id),
            responses=tuple(
                build(mod.ShareFetchableTopicResponse, topic_id=topic_id, partitions=tuple(parts))
                for topic_id, parts in topics.items()
            ),
            node_endpoints=(),
        )


def _top_level_error(request: Request, error: ShareError | ErrorCode, message: str | None) -> Any:
    code = _code(error) if isinstance(error, ShareError) else error
    return build(request.response_class, error_code=code, error_message=message, responses=(), node_endpoints=())


def handle_share_fetch(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    share = broker.share
    now = broker.clock()
    epoch = int(body.share_session_epoch)
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return _top_level_error(request, GROUP_DENIED, f"not allowed to read group {body.group_id!r}")
    resolved = _resolve(broker, ctx, body.topics)
    if epoch == INITIAL_EPOCH and any(batches for _, batches in resolved):
        return _top_level_error(request, ShareError.INVALID_REQUEST, "acknowledgements in a request opening a session")
    add = [(e.topic, e.partition) for e, _ in resolved if e.topic is not None and e.error is not TOPIC_DENIED]
    forget: list[tuple[str, int]] = []
    for topic in body.forgotten_topics_data:
        name = share.topic_name(topic.topic_id) if topic.topic_id is not None else None
        if name is not None:
            forget.extend((name, int(p)) for p in topic.partitions)
    result, session = share.open_session(body.group_id, body.member_id, epoch, add, forget, now)
    if result.error is not ShareError.NONE:
        return _top_level_error(request, result.error, result.message)
    allow_renew = request.api_version >= 2
    _acknowledge(broker, body.group_id, body.member_id, resolved, now, allow_renew)
    if epoch == FINAL_EPOCH and session is not None:
        share.close_session(session, now)
    # flush=always: the server makes the acknowledgements durable before it answers.
    written = share.commit(now)
    if _unwritten(broker, written):
        return _top_level_error(request, ShareError.KAFKA_STORAGE_ERROR, "acknowledgements not written")
    flush = _flush(broker, written)
    renew_only = bool(getattr(body, "is_renew_ack", False))
    fetching = epoch != FINAL_EPOCH and int(body.max_records) > 0 and not renew_only
    # Partitions the session gained earlier are checked again: an ACL may have gone since.
    entries = [e for e, _ in resolved]
    denied = denied_topics(broker, ctx, "read", (topic for topic, _ in result.partitions)) if fetching else set()
    if denied:
        named = {(e.topic, e.partition) for e in entries}
        entries += [
            _Entry(share.topic_id(topic), topic, index, TOPIC_DENIED, f"not allowed to read {topic!r}")
            for topic, index in result.partitions if topic in denied and (topic, index) not in named
        ]
    op = ShareFetchOperation(
        broker, request, entries, session if fetching else None,
        result.partitions if fetching else (), frozenset(denied),
    )
    if not fetching:
        return Reply(op.attempt(final=True), flush=flush)
    op.flush = flush
    return op


def handle_share_acknowledge(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    share = broker.share
    now = broker.clock()
    epoch = int(body.share_session_epoch)
    mod = module_of(request.response_class)
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return _top_level_error(request, GROUP_DENIED, f"not allowed to read group {body.group_id!r}")
    resolved = _resolve(broker, ctx, body.topics)
    result, session = share.open_session(body.group_id, body.member_id, epoch, (), (), now, fetch=False)
    if result.error is not ShareError.NONE:
        return _top_level_error(request, result.error, result.message)
    _acknowledge(broker, body.group_id, body.member_id, resolved, now, request.api_version >= 2)
    if epoch == FINAL_EPOCH and session is not None:
        share.close_session(session, now)
    written = share.commit(now)
    if _unwritten(broker, written):
        return _top_level_error(request, ShareError.KAFKA_STORAGE_ERROR, "acknowledgements not written")
    leader = build(mod.LeaderIdAndEpoch, leader_id=broker.config.node_id, leader_epoch=0)
    topics: dict[object, list] = {}
    for entry, _ in resolved:
        code = entry.error if entry.error is not ErrorCode.none else entry.ack_error
        message = entry.message if entry.error is not ErrorCode.none else entry.ack_message
        topics.setdefault(entry.topic_id, []).append(build(
            mod.PartitionData, partition_index=entry.partition, error_code=code, error_message=message,
            current_leader=leader,
        ))
    body_out = build(
        request.response_class,
        error_code=ErrorCode.none,
        acquisition_lock_timeout=_lock_timeout(broker, body.group_id),
        responses=tuple(
            build(mod.ShareAcknowledgeTopicResponse, topic_id=topic_id, partitions=tuple(parts))
            for topic_id, parts in topics.items()
        ),
        node_endpoints=(),
    )
    return Reply(body_out, flush=_flush(broker, written))  # commit() already woke the fetches


# -- group configs -------------------------------------------------------------------------


def is_group_resource(resource_type: int) -> bool:
    return resource_type in (RESOURCE_GROUP, _RESOURCE_GROUP_ACL)


def with_group_configs(handler: Any, *, incremental: bool) -> Any:
    """Wrap DescribeConfigs / IncrementalAlterConfigs so GROUP resources reach
    the share coordinator and every other resource the topic handler."""

    def handle(broker: Broker, ctx: RequestContext, request: Request) -> Any:
        body = request.body
        resources = body.resources
        groups = [r for r in resources if is_group_resource(int(r.resource_type))]
        if not groups:
            return handler(broker, ctx, request)
        others = tuple(r for r in resources if not is_group_resource(int(r.resource_type)))
        if others:
            inner = dataclasses.replace(request, body=dataclasses.replace(body, resources=others))
            result = handler(broker, ctx, inner)
            answered = list(result.responses if incremental else result.results)
        else:
            answered = []
        if incremental:
            mine = {id(r): _alter_group(broker, ctx, request, r) for r in groups}
            field_name = "responses"
        else:
            mine = {id(r): _describe_group(broker, ctx, request, r) for r in groups}
            field_name = "results"
        out, rest = [], iter(answered)
        for r in resources:
            out.append(mine[id(r)] if id(r) in mine else next(rest))
        return build(request.response_class, **{field_name: tuple(out)})

    handle.__name__ = f"{handler.__name__}_with_groups"
    handle.__doc__ = handler.__doc__
    return handle


def _alter_group(broker: Broker, ctx: RequestContext, request: Request, resource: Any) -> Any:
    mod = module_of(request.response_class)
    name = resource.resource_name
    code, message = ErrorCode.none, None
    if not broker.allowed(ctx, "alter_configs", "group", name):
        return build(
            mod.AlterConfigsResourceResponse, error_code=GROUP_DENIED,
            error_message=f"not allowed to alter configs of group {name!r}",
            resource_type=int(resource.resource_type), resource_name=name,
        )
    try:
        new = broker.share.group_configs(name)
        for c in resource.configs:
            op = int(c.config_operation)
            if op == _OP_SET:
                new[c.name] = c.value
            elif op == _OP_DELETE:
                new.pop(c.name, None)
            else:
                raise InvalidConfigError(f"operation {op} does not apply to group config {c.name}")
        broker.share.alter_configs(name, dict(new), broker.clock(), validate_only=bool(request.body.validate_only))
    except LogbrokerError as exc:
        code, message = error_code_for(exc), str(exc)
    return build(
        mod.AlterConfigsResourceResponse, error_code=code, error_message=message,
        resource_type=int(resource.resource_type), resource_name=name,
    )


def _describe_group(broker: Broker, ctx: RequestContext, request: Request, resource: Any) -> Any:
    mod = module_of(request.response_class)
    if not broker.allowed(ctx, "describe_configs", "group", resource.resource_name):
        return build(
            mod.DescribeConfigsResult, error_code=GROUP_DENIED,
            error_message=f"not allowed to describe configs of group {resource.resource_name!r}",
            resource_type=int(resource.resource_type), resource_name=resource.resource_name, configs=(),
        )
    keys = resource.configuration_keys
    entries = broker.share.describe_configs(resource.resource_name)
    if keys:
        entries = [e for e in entries if e.name in keys]
    configs = tuple(
        build(
            mod.DescribeConfigsResourceResult,
            name=e.name, value=e.value, read_only=False, is_default=e.is_default,
            config_source=_SOURCE_DEFAULT if e.is_default else _SOURCE_GROUP,
            is_sensitive=False, synonyms=(), config_type=_TYPE_STRING, documentation=None,
        )
        for e in entries
    )
    return build(
        mod.DescribeConfigsResult, error_code=ErrorCode.none, error_message=None,
        resource_type=int(resource.resource_type), resource_name=resource.resource_name, configs=configs,
    )
