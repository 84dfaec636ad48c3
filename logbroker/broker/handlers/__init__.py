"""Request handlers: one module per API family, one dispatch table.

A handler takes ``(broker, ctx, request)``: the broker, the request's
:class:`~logbroker.broker.session.RequestContext` (who asks; every ACL check
takes it) and the decoded request. It returns a response body or a member of
the result family (:mod:`._result`): a :class:`Reply` (body plus fsyncs and
wake-ups for the server), a :class:`FetchOperation` the server completes when
data arrives, or a :class:`~logbroker.broker.deferred.Deferred`.
:func:`dispatch` always returns a :data:`HandlerResult` (a bare body becomes a
Reply).

:data:`HANDLERS` is built once by :func:`_handler_table` and is read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from logbroker.broker.core import Broker
from logbroker.broker.deferred import Deferred
from logbroker.broker.handlers._result import Body as Body, Reply as Reply
from logbroker.broker.session import RequestContext as RequestContext
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
from logbroker.broker.handlers._build import build
from logbroker.errors import LocalProtocolError
from logbroker.protocol import (
    SUPPORTED_VERSIONS, ApiKey, ErrorCode, Request, encode_response, has_error_code, response_class,
)

HandlerResult: TypeAlias = Reply | FetchOperation | Deferred
"""Everything a dispatched request yields (:func:`dispatch`); a Deferred completes
with a Reply, a FetchOperation or a bare body (see :func:`as_result`)."""

Handler: TypeAlias = Callable[[Broker, RequestContext, Request], Any]
"""``handler(broker, ctx, request)``: a response body or a :data:`HandlerResult`."""


def _handle_api_versions(broker: Broker, ctx: RequestContext, request: Request) -> Body:
    return handle_api_versions(broker, ctx, request, served_versions=SERVED_VERSIONS)


def _handler_table() -> Mapping[ApiKey, Handler]:
    """The one dispatch table, built once: API key -> handler."""
    return MappingProxyType({
        ApiKey.API_VERSIONS: _handle_api_versions,
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
        # Group configs (share groups) ride on the topic config handlers.
        ApiKey.DESCRIBE_CONFIGS: with_group_configs(handle_describe_configs, incremental=False),
        ApiKey.ALTER_CONFIGS: handle_alter_configs,
        ApiKey.INCREMENTAL_ALTER_CONFIGS: with_group_configs(handle_incremental_alter_configs, incremental=True),
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
    })


HANDLERS: Final[Mapping[ApiKey, Handler]] = _handler_table()
"""API key -> handler; read-only (a ``MappingProxyType``)."""

SERVED_VERSIONS: Final[Mapping[ApiKey, tuple[int, int]]] = MappingProxyType(
    {key: SUPPORTED_VERSIONS[key] for key in HANDLERS if key in SUPPORTED_VERSIONS}
)
"""API key -> (lowest, highest) version served: what ApiVersions advertises."""


def is_served(api_key: int, api_version: int) -> bool:
    try:
        versions = SERVED_VERSIONS.get(ApiKey(api_key))
    except ValueError:
        return False
    return versions is not None and versions[0] <= api_version <= versions[1]


def as_result(value: Any) -> HandlerResult:
    """``value`` as a member of the result family: a bare body becomes ``Reply(value)``."""
    if isinstance(value, (Reply, FetchOperation, Deferred)):
        return value
    return Reply(value)


def dispatch(broker: Broker, request: Request, ctx: RequestContext | None = None) -> HandlerResult:
    """Run the handler of ``request`` for ``ctx`` (callers checked :func:`is_served`
    first); None is an anonymous context, for tests and tools without a connection.

    :raises KeyError: the API is not in :data:`HANDLERS`.
    Whatever the handler raises passes through: a bug, for the server to log
    and answer (it is not the peer's doing).
    """
    if ctx is None:
        ctx = RequestContext.for_request(request)
    result = as_result(HANDLERS[request.api_key](broker, ctx, request))
    if isinstance(result, Reply) and result.appended:  # fetch sessions read these partitions next
        broker.fetch_sessions.partitions_changed(result.appended)
    return result


def error_response(request: Request, error_code: ErrorCode) -> list[Any] | None:
    """Buffers answering ``request`` as a whole with ``error_code`` (UNSUPPORTED_VERSION,
    UNKNOWN_SERVER_ERROR), or None when its response has no top-level error code
    (Produce, Fetch, Metadata...): the caller then closes the connection, as Kafka does."""
    cls = request.response_class
    if not has_error_code(cls):
        return None
    return encode_response(request, build(cls, error_code=error_code))


def unsupported_version_response(api_key: int, api_version: int, correlation_id: int) -> list[Any] | None:
    """Buffers answering a served API at a version we lack with UNSUPPORTED_VERSION,
    or None (not served, no kio schema for that version, or no top-level error code)."""
    if api_key not in SERVED_VERSIONS:
        return None
    try:
        cls = response_class(api_key, api_version)
    except LocalProtocolError:
        return None
    request = Request(
        api_key=ApiKey(api_key), api_version=api_version, correlation_id=correlation_id,
        client_id=None, body=None, response_class=cls,
    )
    return error_response(request, ErrorCode.unsupported_version)
