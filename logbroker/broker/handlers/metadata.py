"""ApiVersions, Metadata and DescribeCluster: what this broker is and holds."""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode, MetadataBroker, MetadataTopic, encode_metadata_response

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import NO_AUTHORIZED_OPERATIONS
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.handlers.errors import error_code_for
from logbroker.broker.security.acls import CLUSTER, authorized_operations
from logbroker.errors import LogbrokerError


def handle_api_versions(broker: Broker, ctx: RequestContext, request: Request, *, served_versions: Any) -> Any:
    mod = module_of(request.response_class)
    keys = tuple(
        build(mod.ApiVersion, api_key=int(key), min_version=lo, max_version=hi)
        for key, (lo, hi) in sorted(served_versions.items())
    )
    return build(request.response_class, error_code=ErrorCode.none, api_keys=keys)


def _broker_entry(broker: Broker, cls: type) -> Any:
    return build(
        cls,
        node_id=broker.config.node_id,
        broker_id=broker.config.node_id,
        host=broker.advertised_host,
        port=broker.advertised_port,
        rack=None,
    )


def handle_metadata(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    topics = broker.topics()
    node = broker.config.node_id
    # v0 has no null array: an empty one asks for every topic (Kafka's MetadataRequest.json).
    if body.topics is None or (request.api_version == 0 and not body.topics):
        # Topics the principal may not describe are not even named.
        wanted: list[str | None] = [t for t in sorted(topics) if broker.allowed(ctx, "describe", "topic", t)]
        allow_create = False
    else:
        wanted = [t.name for t in body.topics]
        # v0-v3 have no flag: those clients always allow auto-creation.
        allow_create = getattr(body, "allow_auto_topic_creation", True)
        if any(t.name is None for t in body.topics):
            by_id = {info.topic_id: name for name, info in topics.items()}
            wanted = [t.name if t.name is not None else by_id.get(t.topic_id) for t in body.topics]
    with_operations = bool(getattr(body, "include_topic_authorized_operations", False))
    topics_out: list[MetadataTopic] = []
    allowance = broker.auto_create_request() if allow_create else None
    for name in wanted:
        code = ErrorCode.none
        if name is None:
            topics_out.append(MetadataTopic(ErrorCode.unknown_topic_id, None))
            continue
        if not broker.allowed(ctx, "describe", "topic", name):
            topics_out.append(MetadataTopic(ErrorCode.topic_authorization_failed, name))
            continue
        if name not in topics and allow_create and broker.allowed(ctx, "create", "topic", name):
            try:
                broker.maybe_auto_create(name, allowance)
            except LogbrokerError as exc:
                code = error_code_for(exc)
            topics = broker.topics()  # a copy of the table: only after a creation
        info = topics.get(name)
        if info is None:
            if code == ErrorCode.none:
                code = ErrorCode.unknown_topic_or_partition
            topics_out.append(MetadataTopic(code, name))
            continue
        operations = (
            authorized_operations(lambda op, name=name: broker.allowed(ctx, op, "topic", name), "topic")
            if with_operations
            else NO_AUTHORIZED_OPERATIONS
        )
        topics_out.append(
            MetadataTopic(ErrorCode.none, name, info.topic_id, broker.is_internal_topic(name), info.partitions,
                          operations)
        )
    return encode_metadata_response(
        request.api_version,
        request.correlation_id,
        (MetadataBroker(node, broker.advertised_host, broker.advertised_port),),
        topics_out,
        cluster_id=broker.cluster_id,
        controller_id=node,
        cluster_authorized_operations=_cluster_operations(broker, ctx, request, "include_cluster_authorized_operations"),
    )


def _cluster_operations(broker: Broker, ctx: RequestContext, request: Request, flag: str) -> int:
    """KIP-430: the cluster's operations for the principal when asked, if it may DESCRIBE the cluster (else 0)."""
    if not getattr(request.body, flag, False):
        return NO_AUTHORIZED_OPERATIONS
    if not broker.allowed(ctx, "describe", "cluster", CLUSTER):
        return 0
    return authorized_operations(lambda op: broker.allowed(ctx, op, "cluster", CLUSTER), "cluster")


def handle_describe_cluster(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    return build(
        request.response_class,
        error_code=ErrorCode.none,
        endpoint_type=1,
        cluster_id=broker.cluster_id,
        controller_id=broker.config.node_id,
        brokers=(_broker_entry(broker, mod.DescribeClusterBroker),),
        cluster_authorized_operations=_cluster_operations(broker, ctx, request, "include_cluster_authorized_operations"),
    )
