"""CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs
and IncrementalAlterConfigs.

ACLs as in Kafka: CreateTopics needs CREATE on the cluster or the topic (and
DESCRIBE_CONFIGS on it to see the configs it was created with), DeleteTopics
DELETE (and DESCRIBE when named by id), CreatePartitions ALTER,
DescribeConfigs DESCRIBE_CONFIGS and (Incremental)AlterConfigs ALTER_CONFIGS,
on the topic (TOPIC_AUTHORIZATION_FAILED) or, for broker configs, on the
cluster (CLUSTER_AUTHORIZATION_FAILED).

BROKER config resources (this node's id, or "" for the cluster default) are
the dynamic broker configs of ``broker.dynamic_config``; BROKER_LOGGER ones are
refused with INVALID_REQUEST.

A topic with batches that reads found damaged also reports the read-only
config ``logbroker.damaged.batches`` (not a Kafka config; absent otherwise):
``partition:first-last`` offsets of each damaged batch, comma-separated
(``partition:first`` where the header is unreadable). ``logbroker status``
asks for it.
"""

from __future__ import annotations

from typing import Any


from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.core import ConfigEntry
from logbroker.broker.dynamic_config import broker_resource, incremental_layer
from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.handlers.errors import error_code_for
from logbroker.broker.security.acls import CLUSTER
from logbroker.errors import InvalidConfigError, InvalidRequestError, InvalidTopicError, LogbrokerError
from logbroker.storage import MAX_PARTITIONS, TOPIC_CONFIG_DEFAULTS, validate_topic_name

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
_NO_BROKER_LOGGER = "BROKER_LOGGER resources are not served: logbroker's log levels are not changed at run time"
SOURCE_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
DAMAGED_BATCHES = "logbroker.damaged.batches"
_TYPE_LIST = 7



def config_denial(broker: Broker, ctx: RequestContext, operation: str, resource_type: int, name: str) -> tuple[ErrorCode, str] | None:
    """(error, message) when the principal may not ``operation`` (describe_configs or
    alter_configs) the configs of a topic or the broker; None when it may (or the
    resource type is one this module does not serve)."""
    what = operation.replace("_", " ")
    if resource_type == RESOURCE_TOPIC and not broker.allowed(ctx, operation, "topic", name):
        return ErrorCode.topic_authorization_failed, f"not allowed to {what} of topic {name!r}"
    if resource_type == RESOURCE_BROKER and not broker.allowed(ctx, operation, "cluster", CLUSTER):
        return ErrorCode.cluster_authorization_failed, f"not allowed to {what} of the broker"
    return None


def _topic_name_error(name: str) -> str | None:
    try:
        validate_topic_name(name)
    except InvalidTopicError as exc:
        return str(exc)
    return None


def handle_create_topics(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    results = []
    for topic in body.topics:
        name = topic.name
        configs = {c.name: c.value for c in topic.configs if c.value is not None}
        partitions = int(topic.num_partitions)
        if topic.assignments:
            partitions = len(topic.assignments)  # checked below: explicit and -1/-1 as Kafka asks
        elif partitions == -1:
            partitions = broker.config.num_partitions
        rf = -1 if topic.assignments else int(topic.replication_factor)
        code, message, info = ErrorCode.none, None, None
        if not (broker.allowed(ctx, "create", "cluster", CLUSTER) or broker.allowed(ctx, "create", "topic", name)):
            code, message = ErrorCode.topic_authorization_failed, f"not allowed to create {name!r}"
        elif (err := _topic_name_error(name)) is not None:
            code, message = ErrorCode.invalid_topic_exception, err
        elif broker.is_internal_topic(name):
            code, message = ErrorCode.invalid_request, f"creation of internal topic {name} is prohibited"
        elif name in broker.topics():
            code, message = ErrorCode.topic_already_exists, f"topic {name!r} already exists"
        elif topic.assignments and (problem := _assignment_problem(broker, topic)) is not None:
            code, message = problem
        elif partitions <= 0:
            code, message = ErrorCode.invalid_partitions, "number of partitions must be larger than 0"
        elif partitions > MAX_PARTITIONS:  # checked here too: validate_only never reaches the log manager
            code, message = ErrorCode.invalid_partitions, f"at most {MAX_PARTITIONS} partitions, got {partitions}"
        elif rf not in (1, -1):
            code, message = ErrorCode.invalid_replication_factor, (
                f"replication factor {rf} is larger than the 1 available broker"
            )
        else:
            try:
                broker.validate_topic_configs(configs)
                if not body.validate_only:
                    info = broker.create_topic(name, partitions, configs)
            except LogbrokerError as exc:
                code, message = error_code_for(exc), str(exc)
        described, config_code = None, ErrorCode.none
        if code == ErrorCode.none and not broker.allowed(ctx, "describe_configs", "topic", name):
            config_code = ErrorCode.topic_authorization_failed  # created, but its configs stay unseen
        elif code == ErrorCode.none:
            described = tuple(
                build(
                    mod.CreatableTopicConfigs,
                    name=entry.name,
                    value=entry.value,
                    read_only=False,
                    config_source=entry.source,
                    is_sensitive=False,
                )
                for entry in broker.describe_topic_configs(name, configs)
            ) if hasattr(mod, "CreatableTopicConfigs") else None
        results.append(
            build(
                mod.CreatableTopicResult,
                name=name,
                topic_id=info.topic_id if info is not None else None,
                error_code=code,
                error_message=message,
                topic_config_error_code=config_code,
                num_partitions=partitions if code == ErrorCode.none and config_code == ErrorCode.none else -1,
                replication_factor=1 if code == ErrorCode.none and config_code == ErrorCode.none else -1,
                configs=described,
            )
        )
    return build(request.response_class, topics=tuple(results))


def _assignment_problem(broker: Broker, topic: Any) -> tuple[ErrorCode, str] | None:
    """Kafka's answer (ReplicationControlManager.createTopic) to an explicit
    replica assignment, None when it names only this broker, once per partition
    0..n-1. It stands for the partition count and replication factor, so both must be -1."""
    if int(topic.replication_factor) != -1:
        return ErrorCode.invalid_request, (
            "A manual partition assignment was specified, but replication factor was not set to -1."
        )
    if int(topic.num_partitions) != -1:
        return ErrorCode.invalid_request, (
            "A manual partition assignment was specified, but numPartitions was not set to -1."
        )
    seen: set[int] = set()
    for assignment in topic.assignments:
        index = int(assignment.partition_index)
        if index in seen:
            return ErrorCode.invalid_replica_assignment, (
                f"Found multiple manual partition assignments for partition {index}"
            )
        seen.add(index)
    problem = _replicas_problem(broker, [a.broker_ids for a in topic.assignments])
    if problem is None and seen != set(range(len(seen))):
        problem = "partitions should be a consecutive 0-based integer sequence"
    return None if problem is None else (ErrorCode.invalid_replica_assignment, problem)


def _replicas_problem(broker: Broker, replica_lists: Any, replication_factor: int | None = None) -> str | None:
    """Kafka's message (validateManualPartitionAssignment) for the first replica list
    that is empty, repeats a broker, names a broker other than this one or differs
    in length from the others; None when all are fine."""
    for replicas in replica_lists:
        if not replicas:
            return "The manual partition assignment includes an empty replica list."
        seen: set[int] = set()
        for node in replicas:
            if node in seen:
                return f"The manual partition assignment includes the broker {node} more than once."
            seen.add(node)
            if node != broker.config.node_id:
                return f"The manual partition assignment includes broker {node}, but no such broker is registered."
        if replication_factor is not None and len(replicas) != replication_factor:
            return (f"The manual partition assignment includes a partition with {len(replicas)} replica(s), but "
                    f"this is not consistent with previous partitions, which have {replication_factor} replica(s).")
        replication_factor = len(replicas)
    return None


def handle_delete_topics(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    topics = broker.topics()
    by_id = {info.topic_id: name for name, info in topics.items()}
    if hasattr(body, "topic_names"):
        wanted = [(name, None) for name in body.topic_names]
    else:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    results = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            name = by_id.get(topic_id)
            if name is not None and not broker.allowed(ctx, "describe", "topic", name):
                name = None  # an id does not reveal the name of a topic the principal may not describe
        code, message = ErrorCode.none, None
        if name is not None and not broker.allowed(ctx, "delete", "topic", name):
            code, message = ErrorCode.topic_authorization_failed, f"not allowed to delete {name!r}"
        elif not broker.config.delete_topic_enable:
            code, message = ErrorCode.topic_deletion_disabled, "topic deletion is disabled"
        elif name is None:
            code = ErrorCode.unknown_topic_id
        elif name not in broker.topics():
            code = ErrorCode.unknown_topic_or_partition
        else:
            try:
                topic_id = broker.topics()[name].topic_id
                broker.delete_topic(name)
            except LogbrokerError as exc:
                code, message = error_code_for(exc), str(exc)
        results.append(
            build(mod.DeletableTopicResult, name=name, topic_id=topic_id, error_code=code, error_message=message)
        )
    return build(request.response_class, responses=tuple(results))


def handle_create_partitions(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    results = []
    for topic in body.topics:
        info = broker.topics().get(topic.name)
        count = int(topic.count)
        code, message = ErrorCode.none, None
        if not broker.allowed(ctx, "alter", "topic", topic.name):
            code, message = ErrorCode.topic_authorization_failed, f"not allowed to alter {topic.name!r}"
        elif info is None:
            code = ErrorCode.unknown_topic_or_partition
        elif broker.is_internal_topic(topic.name):
            code = ErrorCode.invalid_topic_exception
            message = f"internal topic {topic.name} cannot be given more partitions: the broker owns it"
        elif count <= info.partitions:
            code = ErrorCode.invalid_partitions
            message = f"topic has {info.partitions} partitions; the new count {count} must be larger"
        elif count > MAX_PARTITIONS:
            code, message = ErrorCode.invalid_partitions, f"at most {MAX_PARTITIONS} partitions, got {count}"
        elif topic.assignments is not None and len(topic.assignments) != count - info.partitions:
            code = ErrorCode.invalid_replica_assignment
            message = (f"Attempted to add {count - info.partitions} additional partition(s), but only "
                       f"{len(topic.assignments)} assignment(s) were specified.")
        elif topic.assignments and (problem := _replicas_problem(broker, [a.broker_ids for a in topic.assignments], 1)):
            code, message = ErrorCode.invalid_replica_assignment, problem
        elif not body.validate_only:
            try:
                broker.add_partitions(topic.name, count)
            except LogbrokerError as exc:
                code, message = error_code_for(exc), str(exc)
        results.append(build(mod.CreatePartitionsTopicResult, name=topic.name, error_code=code, error_message=message))
    return build(request.response_class, results=tuple(results))


def _damaged_batches(broker: Broker, topic: str) -> ConfigEntry | None:
    """The ``logbroker.damaged.batches`` entry of ``topic``, None while reads found no damage."""
    manager = broker.log_manager
    found = []
    for n in range(manager.topic(topic).partitions):
        for batch in manager.get_partition(topic, n).damaged:
            last = f"-{batch.last_offset}" if batch.last_offset >= batch.first_offset else ""
            found.append(f"{n}:{batch.first_offset}{last}")
    if not found:
        return None
    return ConfigEntry(DAMAGED_BATCHES, ",".join(found), SOURCE_DEFAULT, _TYPE_LIST, read_only=True)


def handle_describe_configs(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    results = []
    for resource in body.resources:
        rtype = int(resource.resource_type)
        code, message, entries = ErrorCode.none, None, []
        if (denial := config_denial(broker, ctx, "describe_configs", rtype, resource.resource_name)) is not None:
            code, message = denial
        elif rtype == RESOURCE_TOPIC:
            if resource.resource_name not in broker.topics():
                code = ErrorCode.unknown_topic_or_partition
            else:
                entries = broker.describe_topic_configs(resource.resource_name)
                damaged = _damaged_batches(broker, resource.resource_name)
                if damaged is not None:
                    entries.append(damaged)
        elif rtype == RESOURCE_BROKER:
            try:
                per_broker = broker_resource(resource.resource_name, broker.config.node_id)
                entries = broker.describe_broker_configs(per_broker, bool(getattr(body, "include_synonyms", False)))
            except InvalidRequestError as exc:
                code, message = ErrorCode.invalid_request, str(exc)
        elif rtype == RESOURCE_BROKER_LOGGER:
            code, message = ErrorCode.invalid_request, _NO_BROKER_LOGGER
        else:
            code, message = ErrorCode.invalid_request, f"resource type {rtype} is not supported"
        keys = resource.configuration_keys
        if keys:  # null or empty both mean every config, as in Kafka
            entries = [entry for entry in entries if entry.name in keys]
        configs = tuple(
            build(
                mod.DescribeConfigsResourceResult,
                name=entry.name,
                value=entry.value,
                read_only=entry.read_only,
                is_default=entry.source == SOURCE_DEFAULT,
                config_source=entry.source,
                is_sensitive=entry.is_sensitive,
                synonyms=(
                    tuple(build(mod.DescribeConfigsSynonym, name=n, value=v, source=source)
                          for n, v, source in (entry.synonyms or ((entry.name, entry.value, entry.source),)))
                    if getattr(body, "include_synonyms", False) and hasattr(mod, "DescribeConfigsSynonym")
                    else ()
                ),
                config_type=entry.config_type,
                documentation=None,
            )
            for entry in entries
        )
        results.append(
            build(
                mod.DescribeConfigsResult,
                error_code=code,
                error_message=message,
                resource_type=rtype,
                resource_name=resource.resource_name,
                configs=configs,
            )
        )
    return build(request.response_class, results=tuple(results))


def _alter(broker: Broker, ctx: RequestContext, request: Request, *, incremental: bool) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    results = []
    for resource in body.resources:
        rtype = int(resource.resource_type)
        name = resource.resource_name
        code, message = ErrorCode.none, None
        try:
            if (denial := config_denial(broker, ctx, "alter_configs", rtype, name)) is not None:
                code, message = denial
            elif rtype == RESOURCE_BROKER:
                per_broker = broker_resource(name, broker.config.node_id)
                if incremental:
                    operations = [(c.name, int(c.config_operation), c.value) for c in resource.configs]
                    layer = incremental_layer(broker.dynamic_configs.layer(per_broker), operations)
                else:  # the legacy request replaces every dynamic config of the resource
                    layer = {c.name: c.value for c in resource.configs}
                if any(value is None for value in layer.values()):
                    nulls = ", ".join(k for k, v in layer.items() if v is None)
                    raise InvalidRequestError(f"Null value not supported for : {nulls}")
                broker.alter_broker_configs(layer, per_broker, bool(body.validate_only))
            elif rtype == RESOURCE_BROKER_LOGGER:
                code, message = ErrorCode.invalid_request, (
                    _NO_BROKER_LOGGER if incremental else f"Unknown resource type {rtype}"
                )
            elif rtype != RESOURCE_TOPIC:
                code, message = ErrorCode.invalid_request, f"Unknown resource type {rtype}"
            elif name not in broker.topics():
                code = ErrorCode.unknown_topic_or_partition
            else:
                current = dict(broker.topics()[name].configs)
                if incremental:
                    new = dict(current)
                    for c in resource.configs:
                        op = int(c.config_operation)
                        if op == OP_SET:
                            new[c.name] = c.value
                        elif op == OP_DELETE:
                            new.pop(c.name, None)
                        elif op in (OP_APPEND, OP_SUBTRACT):
                            # Kafka appends to the default of a list the topic does not set.
                            current_value = new[c.name] if c.name in new else TOPIC_CONFIG_DEFAULTS.get(c.name)
                            items = [v for v in (current_value or "").split(",") if v]
                            values = [v for v in (c.value or "").split(",") if v]
                            if op == OP_APPEND:
                                items += [v for v in values if v not in items]
                            else:
                                items = [v for v in items if v not in values]
                            new[c.name] = ",".join(items)
                        else:
                            raise InvalidConfigError(f"unknown config operation {op}")
                else:
                    new = {c.name: c.value for c in resource.configs if c.value is not None}
                broker.check_topic_configs(name, new)
                if not body.validate_only:
                    broker.alter_topic_configs(name, new)
        except LogbrokerError as exc:
            code, message = error_code_for(exc), str(exc)
        results.append(
            build(
                mod.AlterConfigsResourceResponse,
                error_code=code,
                error_message=message,
                resource_type=rtype,
                resource_name=name,
            )
        )
    return build(request.response_class, responses=tuple(results))


def handle_alter_configs(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    return _alter(broker, ctx, request, incremental=False)


def handle_incremental_alter_configs(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    return _alter(broker, ctx, request, incremental=True)
