"""Request handlers: one module per API family, one dispatch table.

A handler takes ``(broker, request)`` and returns a response body, a
:class:`Reply` (body plus fsyncs and wake-ups for the server), or a
:class:`FetchOperation` the server completes when data arrives.
"""

from __future__ import annotations

from logbroker.broker.handlers._result import Reply as Reply
from logbroker.broker.handlers.admin import handle_describe_topic_partitions, handle_elect_leaders
from logbroker.broker.handlers.admin_security import (
    handle_alter_user_scram_credentials,
    handle_create_acls,
    handle_delete_acls,
    handle_describe_acls,
    handle_describe_user_scram_credentials,
)
from logbroker.broker.handlers.consumer_groups import (
    handle_consumer_group_describe,
    handle_consumer_group_heartbeat,
)
from logbroker.broker.handlers.errors import error_code_for as error_code_for
from logbroker.broker.handlers.fetch import FetchOperation as FetchOperation, handle_fetch
from logbroker.broker.handlers.groups import (
    handle_delete_groups,
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_delete,
    handle_offset_fetch,
    handle_sync_group,
)
from logbroker.broker.handlers.logdirs import handle_describe_log_dirs
from logbroker.broker.handlers.metadata import (
    handle_api_versions,
    handle_describe_cluster,
    handle_metadata,
)
from logbroker.broker.handlers.offsets import (
    handle_delete_records,
    handle_init_producer_id,
    handle_list_offsets,
    handle_offset_for_leader_epoch,
)
from logbroker.broker.handlers.produce import handle_produce
from logbroker.broker.handlers.sasl import handle_sasl_authenticate, handle_sasl_handshake
from logbroker.broker.handlers.share import (
    ShareFetchOperation as ShareFetchOperation,
    handle_share_acknowledge,
    handle_share_fetch,
    handle_share_group_describe,
    handle_share_group_heartbeat,
    with_group_configs,
)
from logbroker.broker.handlers.share_state import (
    handle_alter_share_group_offsets,
    handle_describe_share_group_offsets,
    handle_read_share_group_state,
)
from logbroker.broker.handlers.transactions import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_describe_producers,
    handle_describe_transactions,
    handle_end_txn,
    handle_list_transactions,
    handle_txn_offset_commit,
    handle_write_txn_markers,
)
from logbroker.broker.handlers.topics import (
    handle_alter_configs,
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from logbroker.protocol import SUPPORTED_VERSIONS, ApiKey

HANDLERS = {
    ApiKey.PRODUCE: handle_produce,
    ApiKey.FETCH: handle_fetch,
    ApiKey.LIST_OFFSETS: handle_list_offsets,
    ApiKey.METADATA: handle_metadata,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: handle_offset_for_leader_epoch,
    ApiKey.DESCRIBE_CLUSTER: handle_describe_cluster,
    ApiKey.DESCRIBE_LOG_DIRS: handle_describe_log_dirs,
    ApiKey.CREATE_TOPICS: handle_create_topics,
    ApiKey.DELETE_TOPICS: handle_delete_topics,
    ApiKey.CREATE_PARTITIONS: handle_create_partitions,
    ApiKey.DESCRIBE_CONFIGS: handle_describe_configs,
    ApiKey.ALTER_CONFIGS: handle_alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: handle_incremental_alter_configs,
    ApiKey.DELETE_RECORDS: handle_delete_records,
    ApiKey.CREATE_ACLS: handle_create_acls,
    ApiKey.DESCRIBE_ACLS: handle_describe_acls,
    ApiKey.DELETE_ACLS: handle_delete_acls,
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: handle_describe_user_scram_credentials,
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: handle_alter_user_scram_credentials,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: handle_describe_topic_partitions,
    ApiKey.ELECT_LEADERS: handle_elect_leaders,
    ApiKey.INIT_PRODUCER_ID: handle_init_producer_id,
    ApiKey.ADD_PARTITIONS_TO_TXN: handle_add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: handle_add_offsets_to_txn,
    ApiKey.END_TXN: handle_end_txn,
    ApiKey.TXN_OFFSET_COMMIT: handle_txn_offset_commit,
    ApiKey.DESCRIBE_TRANSACTIONS: handle_describe_transactions,
    ApiKey.LIST_TRANSACTIONS: handle_list_transactions,
    ApiKey.DESCRIBE_PRODUCERS: handle_describe_producers,
    ApiKey.WRITE_TXN_MARKERS: handle_write_txn_markers,
    ApiKey.SASL_HANDSHAKE: handle_sasl_handshake,
    ApiKey.SASL_AUTHENTICATE: handle_sasl_authenticate,
    ApiKey.FIND_COORDINATOR: handle_find_coordinator,
    ApiKey.JOIN_GROUP: handle_join_group,
    ApiKey.SYNC_GROUP: handle_sync_group,
    ApiKey.HEARTBEAT: handle_heartbeat,
    ApiKey.LEAVE_GROUP: handle_leave_group,
    ApiKey.OFFSET_COMMIT: handle_offset_commit,
    ApiKey.OFFSET_FETCH: handle_offset_fetch,
    ApiKey.OFFSET_DELETE: handle_offset_delete,
    ApiKey.LIST_GROUPS: handle_list_groups,
    ApiKey.DESCRIBE_GROUPS: handle_describe_groups,
    ApiKey.DELETE_GROUPS: handle_delete_groups,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: handle_consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: handle_consumer_group_describe,
    ApiKey.SHARE_GROUP_HEARTBEAT: handle_share_group_heartbeat,
    ApiKey.SHARE_GROUP_DESCRIBE: handle_share_group_describe,
    ApiKey.SHARE_FETCH: handle_share_fetch,
    ApiKey.SHARE_ACKNOWLEDGE: handle_share_acknowledge,
    ApiKey.READ_SHARE_GROUP_STATE: handle_read_share_group_state,
    ApiKey.DESCRIBE_SHARE_GROUP_OFFSETS: handle_describe_share_group_offsets,
    ApiKey.ALTER_SHARE_GROUP_OFFSETS: handle_alter_share_group_offsets,
}
# Group configs (share groups) ride on the topic config handlers.
HANDLERS[ApiKey.DESCRIBE_CONFIGS] = with_group_configs(handle_describe_configs, incremental=False)
HANDLERS[ApiKey.INCREMENTAL_ALTER_CONFIGS] = with_group_configs(handle_incremental_alter_configs, incremental=True)

SERVED_VERSIONS = {
    key: SUPPORTED_VERSIONS[key] for key in (*HANDLERS, ApiKey.API_VERSIONS) if key in SUPPORTED_VERSIONS
}


def is_served(api_key: int, api_version: int) -> bool:
    versions = SERVED_VERSIONS.get(api_key)
    return versions is not None and versions[0] <= api_version <= versions[1]


def dispatch(broker, request):
    """Run the handler of ``request``; callers checked :func:`is_served` first."""
    if request.api_key == ApiKey.API_VERSIONS:
        return handle_api_versions(broker, request, served_versions=SERVED_VERSIONS)
    return HANDLERS[request.api_key](broker, request)


def unsupported_version_response(api_key: int, api_version: int, correlation_id: int):
    """Buffers answering a served API at a version we lack with UNSUPPORTED_VERSION.

    Only responses with a top-level error code can say it; for the others
    (and keys kio has no schema for) returns None and the caller closes the
    connection, as Kafka does.
    """
    import dataclasses

    from logbroker.broker.handlers._build import build
    from logbroker.errors import LocalProtocolError
    from logbroker.protocol import ErrorCode, Request, encode_response, response_module

    if api_key not in SERVED_VERSIONS:
        return None
    try:
        mod = response_module(api_key, api_version)
    except LocalProtocolError:
        return None
    cls = next(
        (c for c in vars(mod).values() if isinstance(c, type) and c.__name__.endswith("Response")
         and dataclasses.is_dataclass(c) and getattr(c, "__type__", None) is not None
         and str(c.__type__).endswith("response")),
        None,
    )
    if cls is None or "error_code" not in {f.name for f in dataclasses.fields(cls)}:
        return None
    body = build(cls, error_code=ErrorCode.unsupported_version)
    request = Request(
        api_key=ApiKey(api_key), api_version=api_version, correlation_id=correlation_id,
        client_id=None, body=None, response_class=cls,
    )
    return encode_response(request, body)
