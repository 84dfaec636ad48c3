"""KIP-848 consumer-group APIs: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

Each handler turns the request into a group-coordinator command
(``broker.groups``, :mod:`logbroker.broker.groups`) and its result into the
response. Partitions travel as topic ids on the wire and as topic names in
the coordinator; this module translates with the broker's current topics.

ACLs as in Kafka: ConsumerGroupHeartbeat needs READ on the group and
DESCRIBE on each topic it names (a regex subscription only ever matches
topics the principal may describe); ConsumerGroupDescribe needs DESCRIBE on
the group and on the topics of its assignments.
"""

from __future__ import annotations

from typing import Any

import uuid
from collections.abc import Mapping

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.groups import ConsumerHeartbeat, GroupOutcome, TopicMeta
from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import (
    GROUP_DENIED, NO_AUTHORIZED_OPERATIONS, TOPIC_DENIED, denied_topics, group_operations,
)
from logbroker.broker.handlers._build import build, module_of, ms
from logbroker.broker.handlers.groups import ERROR_CODES


def _topic_metadata(broker: Broker, ctx: RequestContext) -> dict[str, TopicMeta]:
    """name -> TopicMeta of the topics the principal may describe."""
    metas = {name: TopicMeta(info.topic_id, info.partitions) for name, info in broker.topics().items()}
    if broker.authorizer is None:
        return metas
    denied = denied_topics(broker, ctx, "describe", metas)
    return {name: meta for name, meta in metas.items() if name not in denied}


def handle_consumer_group_heartbeat(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)

    def refuse(code: ErrorCode, message: str) -> Any:
        return build(request.response_class, error_code=code, error_message=message, member_id=None,
                     member_epoch=-1, heartbeat_interval=0, assignment=None)

    if not broker.allowed(ctx, "read", "group", body.group_id):
        return refuse(GROUP_DENIED, f"not allowed to read group {body.group_id!r}")
    names = body.subscribed_topic_names
    if names and (denied := denied_topics(broker, ctx, "describe", names)):
        return refuse(TOPIC_DENIED, f"not allowed to describe topics {', '.join(sorted(denied))}")
    if broker.share.is_share_group(body.group_id):
        return refuse(ErrorCode.group_id_not_found, f"Group {body.group_id} is not a consumer group.")
    topics = _topic_metadata(broker, ctx)
    owned: dict[str, frozenset[int]] | None = None
    if body.topic_partitions is not None:
        by_id = {meta.topic_id: name for name, meta in topics.items()}
        owned = {}
        for tp in body.topic_partitions:
            name = by_id.get(tp.topic_id)
            if name is not None and tp.partitions:  # a deleted topic is owned by nobody
                owned[name] = owned.get(name, frozenset()) | frozenset(int(p) for p in tp.partitions)
    rebalance_timeout = ms(body.rebalance_timeout)
    member_id = body.member_id
    if not member_id and request.api_version == 0 and int(body.member_epoch) == 0:
        member_id = str(uuid.uuid4())  # v0: the coordinator names a joining member
    result = broker.groups.consumer_heartbeat(
        ConsumerHeartbeat(
            group_id=body.group_id,
            member_id=member_id,
            member_epoch=int(body.member_epoch),
            instance_id=body.instance_id,
            rack_id=body.rack_id,
            rebalance_timeout_ms=rebalance_timeout,
            subscribed_names=tuple(names) if names is not None else None,
            subscribed_regex=getattr(body, "subscribed_topic_regex", None),
            server_assignor=body.server_assignor,
            owned=owned,
            client_id=request.client_id or "",
            client_host=ctx.peer,
        ),
        topics,
        broker.clock(),
    )
    assignment = None
    if result.assignment is not None:
        assignment = build(mod.Assignment, topic_partitions=tuple(
            build(mod.TopicPartitions, topic_id=topics[name].topic_id, partitions=parts)
            for name, parts in result.assignment
            if name in topics
        ))
    return build(
        request.response_class,
        error_code=ERROR_CODES[result.error],
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=result.heartbeat_interval_ms,
        assignment=assignment,
    )


def handle_consumer_group_describe(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    names = list(request.body.group_ids)
    allowed = [broker.allowed(ctx, "describe", "group", name) for name in names]
    described = iter(broker.groups.describe_consumer_groups([n for n, ok in zip(names, allowed) if ok]))
    with_operations = bool(getattr(request.body, "include_authorized_operations", False))
    topics: Mapping[str, TopicMeta] = {
        name: TopicMeta(info.topic_id, info.partitions) for name, info in broker.topics().items()
    }

    def assignment(parts: Any) -> Any:
        return build(mod.Assignment, topic_partitions=tuple(
            build(mod.TopicPartitions, topic_id=topics[name].topic_id, topic_name=name, partitions=ps)
            for name, ps in parts
            if name in topics
        ))

    groups = []
    for name, ok in zip(names, allowed):
        if not ok:
            groups.append(build(mod.DescribedGroup, error_code=GROUP_DENIED, group_id=name, members=(),
                                error_message=f"not allowed to describe group {name!r}",
                                authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        g = next(described)
        assigned = {t for m in g.members for t, _ in (*m.assignment, *m.target_assignment)}
        if denied_topics(broker, ctx, "describe", assigned):
            groups.append(build(mod.DescribedGroup, error_code=TOPIC_DENIED, group_id=name, members=(),
                                error_message="the group has topics the client may not describe",
                                authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        members = tuple(
            build(
                mod.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed_names,
                subscribed_topic_regex=m.subscribed_regex,
                assignment=assignment(m.assignment),
                target_assignment=assignment(m.target_assignment),
                member_type=1,
            )
            for m in g.members
        )
        ok_group = g.error is GroupOutcome.NONE
        groups.append(build(
            mod.DescribedGroup,
            error_code=ERROR_CODES[g.error],
            error_message=g.message,
            group_id=g.group_id,
            group_state=g.state,
            group_epoch=g.group_epoch,
            assignment_epoch=g.assignment_epoch,
            assignor_name=g.assignor,
            members=members,
            authorized_operations=(
                group_operations(broker, ctx, g.group_id) if with_operations and ok_group else NO_AUTHORIZED_OPERATIONS
            ),
        ))
    return build(request.response_class, groups=tuple(groups))
