"""Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups, DeleteGroups.

Each handler turns the request into a coordinator command
(``broker.groups``, :mod:`logbroker.broker.groups`) and its result into the
response of the request's version. JoinGroup and SyncGroup may return a
:class:`Deferred` that the coordinator completes later. :data:`ERROR_CODES`
is the one mapping from the coordinator's outcomes to Kafka error codes.

ACLs as in Kafka: the membership APIs and OffsetCommit need READ on the
group, OffsetFetch, FindCoordinator, DescribeGroups and ListGroups DESCRIBE
(ListGroups: DESCRIBE on the cluster shows every group), DeleteGroups and
OffsetDelete DELETE; OffsetCommit and OffsetDelete need READ, OffsetFetch
DESCRIBE on each topic. A check is decided when the request arrives.
"""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.deferred import Deferred
from logbroker.broker.session import RequestContext
from logbroker.broker.handlers.transactions import find_transaction_coordinator
from logbroker.broker.groups import (
    CommitRequest,
    GroupOutcome,
    JoinRequest,
    JoinResult,
    OffsetValue,
    SyncResult,
)
from logbroker.broker.handlers._acl import (
    GROUP_DENIED, NO_AUTHORIZED_OPERATIONS, TOPIC_DENIED, denied_topics, group_operations,
)
from logbroker.broker.handlers._build import build, module_of, ms
from logbroker.broker.handlers._result import Reply
from logbroker.broker.handlers.errors import GROUP_ERROR_CODES
from logbroker.broker.security.acls import CLUSTER

ERROR_CODES: dict[GroupOutcome, ErrorCode] = GROUP_ERROR_CODES
"""GroupOutcome -> the ErrorCode sent on the wire (the table of :mod:`.errors`)."""

_KEY_TYPE_GROUP, _KEY_TYPE_TRANSACTION = 0, 1


def _code(error: GroupOutcome) -> ErrorCode:
    return ERROR_CODES[error]


def _then(result: Any, convert: Any) -> Any:
    """``convert(result)``, or a Deferred of it when the coordinator answers later."""
    if not isinstance(result, Deferred):
        return convert(result)
    if result.done:
        return convert(result.value)
    out = Deferred()
    result.add_done_callback(lambda done: out.complete(convert(done.value)))
    return out


def _flush_reply(broker: Broker, body: Any, flush: Any) -> Reply:
    """fsync the internal topic before answering when the broker runs with flush=always."""
    if flush is None or broker.config.flush != "always":
        return Reply(body)
    return Reply(body, flush=[(flush.log, flush.offset)])


# -- FindCoordinator -------------------------------------------------------------


def handle_find_coordinator(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """This node coordinates every group and transactional id; v4+ asks for
    several keys at once (``coordinator_keys``) and gets one answer per key."""
    body = request.body
    key_type = int(getattr(body, "key_type", _KEY_TYPE_GROUP))
    if request.api_version >= 4:
        mod = module_of(request.response_class)
        coordinators = tuple(
            build(mod.Coordinator, key=key, error_code=code, error_message=message, **fields)
            for key in body.coordinator_keys
            for code, message, fields in (_find_coordinator(broker, ctx, key_type, key),)
        )
        return build(request.response_class, coordinators=coordinators)
    code, message, fields = _find_coordinator(broker, ctx, key_type, body.key)
    return build(request.response_class, error_code=code, error_message=message, **fields)


def _find_coordinator(broker: Broker, ctx: RequestContext, key_type: int, key: str) -> Any:
    """(error code, message, node fields) for one coordinator key."""
    fields = {"node_id": -1, "host": "", "port": -1}
    if key_type == _KEY_TYPE_GROUP and not broker.allowed(ctx, "describe", "group", key):
        code, message = GROUP_DENIED, f"not allowed to describe group {key!r}"
    elif key_type == _KEY_TYPE_GROUP:
        code, message = ErrorCode.none, None
    elif key_type == _KEY_TYPE_TRANSACTION:
        code, message = find_transaction_coordinator(broker, ctx, key)
    else:
        code, message = ErrorCode.invalid_request, f"unknown key type {key_type}"
    if code == ErrorCode.none:
        fields = {"node_id": broker.config.node_id, "host": broker.advertised_host, "port": broker.advertised_port}
    return code, message, fields


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------


def handle_join_group(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    version = request.api_version
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, generation_id=-1, leader="", member_id="",
                     protocol_type=None, protocol_name=None if version >= 7 else "", members=())
    session_timeout = ms(body.session_timeout)
    req = JoinRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        protocol_type=body.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
        session_timeout_ms=session_timeout,
        rebalance_timeout_ms=ms(body.rebalance_timeout) if version >= 1 else session_timeout,
        group_instance_id=getattr(body, "group_instance_id", None),
        require_known_member_id=version >= 4,
        client_id=request.client_id or "",
        client_host=ctx.peer,
    )
    result = broker.groups.join_group(req, broker.clock())
    return _then(result, lambda r: _join_response(request, r))


def _join_response(request: Request, result: JoinResult) -> Any:
    mod = module_of(request.response_class)
    flexible_names = request.api_version >= 7
    members = tuple(
        build(mod.JoinGroupResponseMember, member_id=m.member_id, group_instance_id=m.group_instance_id,
              metadata=m.metadata)
        for m in result.members
    )
    protocol_name = result.protocol_name
    if protocol_name is None and not flexible_names:
        protocol_name = ""
    return build(
        request.response_class,
        error_code=_code(result.error),
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=protocol_name,
        leader=result.leader_id,
        member_id=result.member_id,
        members=members,
    )


def handle_sync_group(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, protocol_type=None, protocol_name=None,
                     assignment=b"")
    result = broker.groups.sync_group(
        body.group_id,
        int(body.generation_id),
        body.member_id,
        {a.member_id: bytes(a.assignment) for a in body.assignments},
        broker.clock(),
        group_instance_id=getattr(body, "group_instance_id", None),
        protocol_type=getattr(body, "protocol_type", None),
        protocol_name=getattr(body, "protocol_name", None),
    )

    def respond(r: SyncResult) -> Any:
        return build(
            request.response_class,
            error_code=_code(r.error),
            protocol_type=r.protocol_type,
            protocol_name=r.protocol_name,
            assignment=r.assignment,
        )

    return _then(result, respond)


def handle_heartbeat(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED)
    error = broker.groups.heartbeat(
        body.group_id, int(body.generation_id), body.member_id, broker.clock(),
        group_instance_id=getattr(body, "group_instance_id", None),
    )
    return build(request.response_class, error_code=_code(error))


def handle_leave_group(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, members=())
    batched = request.api_version >= 3
    if batched:
        members = tuple((m.member_id, m.group_instance_id) for m in body.members)
    else:
        members = ((body.member_id, None),)
    result = broker.groups.leave_group(body.group_id, members, broker.clock())
    if not batched:
        error = result.error
        if error is GroupOutcome.NONE and result.members:
            error = result.members[0][2]
        return build(request.response_class, error_code=_code(error))
    mod = module_of(request.response_class)
    out = tuple(
        build(mod.MemberResponse, member_id=m, group_instance_id=i, error_code=_code(e))
        for m, i, e in result.members
    )
    return build(request.response_class, error_code=_code(result.error), members=out)


# -- OffsetCommit / OffsetFetch / OffsetDelete ----------------------------------------


def _partition_exists(topics: Any, name: str, partition: int) -> bool:
    info = topics.get(name)
    return info is not None and 0 <= partition < info.partitions


def handle_offset_commit(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    topics = broker.topics()
    offsets: dict[tuple[str, int], OffsetValue] = {}
    errors: dict[tuple[str, int], ErrorCode] = {}
    group_allowed = broker.allowed(ctx, "read", "group", body.group_id)
    denied = denied_topics(broker, ctx, "read", (t.name for t in body.topics)) if group_allowed else set()
    for topic in body.topics:
        for p in topic.partitions:
            tp = (topic.name, int(p.partition_index))
            if not group_allowed:
                errors[tp] = GROUP_DENIED
            elif topic.name in denied:
                errors[tp] = TOPIC_DENIED
            elif not _partition_exists(topics, *tp):
                errors[tp] = ErrorCode.unknown_topic_or_partition
            else:
                offsets[tp] = OffsetValue(
                    int(p.committed_offset), int(getattr(p, "committed_leader_epoch", -1)), p.committed_metadata
                )
    retention = getattr(body, "retention_time", None)
    req = CommitRequest(
        group_id=body.group_id,
        generation=int(body.generation_id_or_member_epoch),
        member_id=body.member_id,
        offsets=offsets,
        group_instance_id=getattr(body, "group_instance_id", None),
        retention_ms=ms(retention) if retention is not None else -1,
        api_version=request.api_version,
    )
    result = broker.groups.commit_offsets(req, broker.clock()) if offsets else None
    if result is not None:
        errors.update((tp, _code(e)) for tp, e in result.errors.items())
    topics_out = []
    for topic in body.topics:
        parts = tuple(
            build(mod.OffsetCommitResponsePartition, partition_index=int(p.partition_index),
                  error_code=errors[(topic.name, int(p.partition_index))])
            for p in topic.partitions
        )
        topics_out.append(build(mod.OffsetCommitResponseTopic, name=topic.name, partitions=parts))
    response = build(request.response_class, topics=tuple(topics_out))
    return _flush_reply(broker, response, result.flush if result is not None else None)


def handle_offset_fetch(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if request.api_version >= 8:
        return _offset_fetch_groups(broker, ctx, request)
    entries, error = _fetch_group_offsets(
        broker, ctx, body.group_id, body.topics, request.api_version, getattr(body, "require_stable", False)
    )
    return _offset_fetch_response(request, entries, error)


def _fetch_group_offsets(broker: Broker, ctx: RequestContext, group_id: str, topics: Any, version: int, require_stable: bool, *,
                         member_id: str | None = None, member_epoch: int = -1) -> Any:
    """(entries, group error code) of one group's OffsetFetch: entries are
    ((topic, partition), OffsetValue or None, error code)."""
    wanted = None
    if topics is not None:
        wanted = [(t.name, int(p)) for t in topics for p in t.partition_indexes]
    entries: list[tuple[tuple[str, int], OffsetValue | None, ErrorCode | None]]
    if not broker.allowed(ctx, "describe", "group", group_id):
        # v0/v1 have no top-level error field: every asked partition carries it.
        entries = [(tp, None, GROUP_DENIED) for tp in wanted or ()] if version < 2 else []
        return entries, GROUP_DENIED
    if wanted is None:
        result = broker.groups.fetch_offsets(group_id, None, member_id=member_id, member_epoch=member_epoch)
        # Offsets of topics the principal may not describe are left out, unnamed.
        denied = denied_topics(broker, ctx, "describe", (topic for topic, _ in result.offsets))
        entries = [(tp, value, None) for tp, value in result.offsets.items() if tp[0] not in denied]
    else:
        denied = denied_topics(broker, ctx, "describe", (topic for topic, _ in wanted))
        result = broker.groups.fetch_offsets(group_id, [tp for tp in wanted if tp[0] not in denied],
                                             member_id=member_id, member_epoch=member_epoch)
        entries = [(tp, None, TOPIC_DENIED) if tp[0] in denied else (tp, result.offsets.get(tp), None)
                   for tp in wanted]
    if require_stable:
        # v7+: offsets a transaction is still committing are not answered yet.
        pending = broker.groups.has_pending_offset
        entries = [(tp, None, ErrorCode.unstable_offset_commit) if code is None and pending(group_id, tp)
                   else (tp, value, code) for tp, value, code in entries]
    # v0/v1: the group's error is reported on every partition.
    partition_error = _code(result.error) if version < 2 else ErrorCode.none
    entries = [(tp, value, partition_error if code is None else code) for tp, value, code in entries]
    return entries, _code(result.error)


def _offset_fetch_groups(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """OffsetFetch v8+: several groups per request; v9 names the member (KIP-848),
    whose epoch a consumer group checks. A group with an error has no topics."""
    mod = module_of(request.response_class)
    body = request.body
    groups_out = []
    for group in body.groups:
        entries, error = _fetch_group_offsets(
            broker, ctx, group.group_id, group.topics, request.api_version, body.require_stable,
            member_id=getattr(group, "member_id", None), member_epoch=int(getattr(group, "member_epoch", -1)),
        )
        if error != ErrorCode.none:
            entries = []
        by_topic: dict[str, list] = {}
        for (topic, partition), value, code in entries:
            by_topic.setdefault(topic, []).append(build(
                mod.OffsetFetchResponsePartitions,
                partition_index=partition,
                committed_offset=value.offset if value is not None else -1,
                committed_leader_epoch=value.leader_epoch if value is not None else -1,
                metadata=(value.metadata if value.metadata is not None else "") if value is not None else "",
                error_code=code,
            ))
        topics_out = tuple(
            build(mod.OffsetFetchResponseTopics, name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        )
        groups_out.append(build(mod.OffsetFetchResponseGroup, group_id=group.group_id, topics=topics_out,
                                error_code=error))
    return build(request.response_class, groups=tuple(groups_out))


def _offset_fetch_response(request: Request, entries: Any, error: ErrorCode) -> Any:
    """``entries`` are ((topic, partition), OffsetValue or None, error code)."""
    mod = module_of(request.response_class)
    by_topic: dict[str, list] = {}
    for (topic, partition), value, code in entries:
        by_topic.setdefault(topic, []).append(build(
            mod.OffsetFetchResponsePartition,
            partition_index=partition,
            committed_offset=value.offset if value is not None else -1,
            committed_leader_epoch=value.leader_epoch if value is not None else -1,
            metadata=(value.metadata if value.metadata is not None else "") if value is not None else "",
            error_code=code,
        ))
    topics_out = tuple(
        build(mod.OffsetFetchResponseTopic, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )
    return build(request.response_class, topics=topics_out, error_code=error)


def handle_offset_delete(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    if not broker.allowed(ctx, "delete", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED, topics=())
    wanted = [(t.name, int(p.partition_index)) for t in body.topics for p in t.partitions]
    denied = denied_topics(broker, ctx, "read", (topic for topic, _ in wanted))
    topics = broker.topics()
    known = [tp for tp in wanted if tp[0] not in denied and _partition_exists(topics, *tp)]
    result = broker.groups.delete_offsets(body.group_id, known, broker.clock())
    if result.error is not GroupOutcome.NONE:
        return build(request.response_class, error_code=_code(result.error), topics=())
    topics_out = []
    for topic in body.topics:
        parts = []
        for p in topic.partitions:
            tp = (topic.name, int(p.partition_index))
            error = result.partitions.get(tp)
            if topic.name in denied:
                code = TOPIC_DENIED
            else:
                code = ErrorCode.unknown_topic_or_partition if error is None else _code(error)
            parts.append(build(mod.OffsetDeleteResponsePartition, partition_index=tp[1], error_code=code))
        topics_out.append(build(mod.OffsetDeleteResponseTopic, name=topic.name, partitions=tuple(parts)))
    response = build(request.response_class, error_code=ErrorCode.none, topics=tuple(topics_out))
    return _flush_reply(broker, response, result.flush)


# -- ListGroups / DescribeGroups / DeleteGroups ------------------------------------------


def handle_list_groups(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    states = set(getattr(request.body, "states_filter", ()) or ())
    types = {t.lower() for t in getattr(request.body, "types_filter", ()) or ()}
    error, groups = broker.groups.list_groups(states or None)
    # DESCRIBE on the cluster lists every group; otherwise only the groups the principal may describe.
    see_all = broker.allowed(ctx, "describe", "cluster", CLUSTER)

    def visible(group_id: str) -> bool:
        return see_all or broker.allowed(ctx, "describe", "group", group_id)

    out = tuple(
        build(mod.ListedGroup, group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state,
              group_type=g.group_type)
        for g in groups
        if (not types or g.group_type in types) and visible(g.group_id)
    )
    if not types or "share" in types:  # share groups (KIP-932), type "share" from ListGroups v5
        wanted = {s.lower() for s in states}
        out += tuple(
            build(mod.ListedGroup, group_id=g.group_id, protocol_type="share", group_state=g.state, group_type="share")
            for g in broker.share.list_groups()
            if (not wanted or g.state.lower() in wanted) and visible(g.group_id)
        )
    return build(request.response_class, error_code=_code(error), groups=out)


def handle_describe_groups(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    body = request.body
    names = list(body.groups)
    allowed = [broker.allowed(ctx, "describe", "group", name) for name in names]
    summaries = iter(broker.groups.describe_groups([n for n, ok in zip(names, allowed) if ok]))
    with_operations = bool(getattr(body, "include_authorized_operations", False))
    out = []
    for name, ok in zip(names, allowed):
        if not ok:
            out.append(build(
                mod.DescribedGroup, error_code=GROUP_DENIED, group_id=name, group_state="", protocol_type="",
                protocol_data="", members=(), authorized_operations=NO_AUTHORIZED_OPERATIONS,
            ))
            continue
        s = next(summaries)
        operations = NO_AUTHORIZED_OPERATIONS
        if with_operations and s.error is GroupOutcome.NONE:
            operations = group_operations(broker, ctx, s.group_id)
        if s.state == "Dead" and broker.share.is_share_group(s.group_id):
            out.append(_describe_share_group(broker, mod, s.group_id, operations))
            continue
        members = tuple(
            build(
                mod.DescribedGroupMember,
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata,
                member_assignment=m.assignment,
            )
            for m in s.members
        )
        out.append(build(
            mod.DescribedGroup,
            error_code=_code(s.error),
            group_id=s.group_id,
            group_state=s.state,
            protocol_type=s.protocol_type,
            protocol_data=s.protocol_name,
            members=members,
            authorized_operations=operations,
        ))
    return build(request.response_class, groups=tuple(out))


def _describe_share_group(broker: Broker, mod: Any, group_id: str, operations: int) -> Any:
    """A share group as DescribeGroups shows it: state, type "share", members (no metadata)."""
    (g,) = broker.share.describe([group_id])
    members = tuple(
        build(mod.DescribedGroupMember, member_id=m.member_id, group_instance_id=None, client_id=m.client_id,
              client_host=m.client_host, member_metadata=b"", member_assignment=b"")
        for m in g.members
    )
    return build(
        mod.DescribedGroup, error_code=ErrorCode.none, group_id=group_id, group_state=g.state,
        protocol_type="share", protocol_data="", members=members, authorized_operations=operations,
    )


def handle_delete_groups(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    names = list(request.body.groups_names)
    allowed = [n for n in names if broker.allowed(ctx, "delete", "group", n)]
    now = broker.clock()
    share = {n for n in allowed if broker.share.is_share_group(n)}
    results, flush = broker.groups.delete_groups([n for n in allowed if n not in share], now)
    codes = {n: _code(e) for n, e in results.items()}
    flushes = [flush] if flush is not None else []
    for n in share:
        error, point = broker.share.delete_group(n, now)
        codes[n] = getattr(ErrorCode, error.value)
        if point is not None:
            flushes.append(point)
    out = tuple(
        build(mod.DeletableGroupResult, group_id=n, error_code=codes.get(n, GROUP_DENIED)) for n in names
    )
    body = build(request.response_class, results=out)
    if broker.config.flush != "always" or not flushes:
        return Reply(body)
    return Reply(body, flush=[(f.log, f.offset) for f in flushes])
