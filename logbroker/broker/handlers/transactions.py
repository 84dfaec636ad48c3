"""Transactions: InitProducerId (transactional), AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions,
ListTransactions, DescribeProducers and WriteTxnMarkers.

The transaction coordinator (``broker.transactions``) decides; the broker
writes the control markers it returns (:meth:`Broker.finish_transactions`)
and this module answers with the Kafka codes. ACLs as in Kafka: the
producer APIs need WRITE on the TransactionalId, the admin ones DESCRIBE
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise); AddPartitionsToTxn also
WRITE on each topic, AddOffsetsToTxn and TxnOffsetCommit READ on the group
(and TxnOffsetCommit READ on each topic), DescribeProducers READ on the
topic; the batched, broker-to-broker AddPartitionsToTxn (v4+) and
WriteTxnMarkers need CLUSTER_ACTION.

Clients older than KIP-588 do not know PRODUCER_FENCED: InitProducerId
below v4, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn below v2, and
TxnOffsetCommit below v3 get INVALID_PRODUCER_EPOCH instead, as from Kafka.
"""

from __future__ import annotations

from typing import Any

import datetime

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.groups import OFFSETS_TOPIC, CommitRequest, OffsetValue
from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._acl import GROUP_DENIED, TOPIC_DENIED
from logbroker.broker.handlers._build import build, module_of, ms
from logbroker.broker.handlers._result import Reply
from logbroker.broker.handlers.errors import GROUP_ERROR_CODES
from logbroker.broker.security.acls import CLUSTER
from logbroker.broker.transactions import TxnError

TXN_DENIED = ErrorCode.transactional_id_authorization_failed
_NOT_ATTEMPTED = ErrorCode.operation_not_attempted
# The first version of each API that knows PRODUCER_FENCED (KIP-588).
_FENCED_SINCE = {22: 4, 24: 2, 25: 2, 26: 2, 28: 3}
# transaction_start_time -1 (no transaction yet): kio takes a datetime, and null is not -1.
_NO_START = datetime.datetime.fromtimestamp(-0.001, datetime.UTC)


def _start_time(start_ms: int) -> Any:
    return _NO_START if start_ms < 0 else start_ms


def txn_code(error: TxnError, request: Request | None = None) -> ErrorCode:
    """The Kafka error code of a coordinator answer, for ``request``'s API version."""
    code = ErrorCode[error.value]
    if (
        code == ErrorCode.producer_fenced and request is not None
        and request.api_version < _FENCED_SINCE.get(int(request.api_key), 0)
    ):
        return ErrorCode.invalid_producer_epoch
    return code


def _reply(broker: Broker, body: Any, *flush_points: Any, outcome: Any = None) -> Reply:
    """``body`` once the coordinator's writes (and the markers in ``outcome``)
    are durable: fsynced first with flush=always."""
    flush = list(outcome.flush) if outcome is not None else []
    if broker.config.flush == "always":
        flush += [(p.log, p.offset) for p in flush_points if p is not None]
    return Reply(body, flush=flush, appended=list(outcome.appended) if outcome is not None else [])


# -- InitProducerId -------------------------------------------------------------


def init_transactional_producer(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """InitProducerId with a transactional id (the idempotent form is in :mod:`.offsets`)."""
    body = request.body
    transactional_id = body.transactional_id
    if not broker.allowed(ctx, "write", "transactional_id", transactional_id):
        return build(request.response_class, error_code=TXN_DENIED, producer_id=-1, producer_epoch=-1)
    now = broker.clock()
    result = broker.transactions.init_producer_id(
        transactional_id, ms(body.transaction_timeout), now,
        producer_id=int(getattr(body, "producer_id", -1)), producer_epoch=int(getattr(body, "producer_epoch", -1)),
    )
    return _answer_with_markers(broker, request, result, now)


def _answer_with_markers(broker: Broker, request: Request, result: Any, now: int) -> Any:
    """InitProducerId's and EndTxn's answer (error, producer id and epoch), sent once
    the markers the command decided are written (or its record is durable)."""
    outcome = broker.finish_transactions(result.markers, now, result.flush) if result.markers else None
    response = build(
        request.response_class, error_code=txn_code(result.error, request),
        producer_id=result.producer_id, producer_epoch=result.producer_epoch,
    )
    return _reply(broker, response, None if outcome is not None else result.flush, outcome=outcome)


# -- AddPartitionsToTxn ------------------------------------------------------------


def handle_add_partitions_to_txn(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    if request.api_version >= 4:
        return _add_partitions_batched(broker, ctx, request)
    body = request.body
    wanted = [(t.name, int(p)) for t in body.v3_and_below_topics for p in t.partitions]
    errors, flush = _add_one(
        broker, ctx, request, body.v3_and_below_transactional_id, int(body.v3_and_below_producer_id),
        int(body.v3_and_below_producer_epoch), wanted, verify_only=False,
    )
    mod = module_of(request.response_class)
    return _reply(broker, build(
        request.response_class, results_by_topic_v3_and_below=_topic_results(mod, wanted, errors),
    ), flush)


def _add_partitions_batched(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    if not broker.allowed(ctx, "cluster_action", "cluster", CLUSTER):
        return build(request.response_class, error_code=ErrorCode.cluster_authorization_failed,
                     results_by_transaction=())
    results, flushes = [], []
    for txn in request.body.transactions:
        wanted = [(t.name, int(p)) for t in txn.topics for p in t.partitions]
        errors, flush = _add_one(
            broker, ctx, request, txn.transactional_id, int(txn.producer_id), int(txn.producer_epoch), wanted,
            verify_only=bool(txn.verify_only),
        )
        flushes.append(flush)
        results.append(build(mod.AddPartitionsToTxnResult, transactional_id=txn.transactional_id,
                             topic_results=_topic_results(mod, wanted, errors)))
    return _reply(broker, build(request.response_class, results_by_transaction=tuple(results)), *flushes)


def _add_one(broker: Broker, ctx: RequestContext, request: Request, transactional_id: Any, producer_id: Any, producer_epoch: Any, wanted: Any, *, verify_only: bool) -> Any:
    """Per-partition error codes for one transaction, and the flush point."""
    if not broker.allowed(ctx, "write", "transactional_id", transactional_id):
        return {tp: TXN_DENIED for tp in wanted}, None
    topics = broker.topics()
    refused = {}
    for topic, partition in wanted:
        if not broker.allowed(ctx, "write", "topic", topic):
            refused[(topic, partition)] = TOPIC_DENIED
        elif topic not in topics or not 0 <= partition < topics[topic].partitions:
            refused[(topic, partition)] = ErrorCode.unknown_topic_or_partition
    if refused:
        # Kafka attempts nothing when one partition is refused.
        return {tp: refused.get(tp, _NOT_ATTEMPTED) for tp in wanted}, None
    if verify_only:
        verified = broker.transactions.verify_partitions(transactional_id, producer_id, producer_epoch, wanted)
        return {tp: txn_code(error, request) for tp, error in verified.partitions.items()}, None
    result = broker.transactions.add_partitions(
        transactional_id, producer_id, producer_epoch, wanted, broker.clock()
    )
    code = txn_code(result.error, request)
    return {tp: code for tp in wanted}, result.flush


def _topic_results(mod: Any, wanted: Any, errors: Any) -> Any:
    by_topic: dict[str, list] = {}
    for topic, partition in wanted:
        by_topic.setdefault(topic, []).append(build(
            mod.AddPartitionsToTxnPartitionResult, partition_index=partition,
            partition_error_code=errors[(topic, partition)],
        ))
    return tuple(
        build(mod.AddPartitionsToTxnTopicResult, name=name, results_by_partition=tuple(parts))
        for name, parts in by_topic.items()
    )


# -- AddOffsetsToTxn / EndTxn ---------------------------------------------------------


def handle_add_offsets_to_txn(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if not broker.allowed(ctx, "write", "transactional_id", body.transactional_id):
        return build(request.response_class, error_code=TXN_DENIED)
    if not broker.allowed(ctx, "read", "group", body.group_id):
        return build(request.response_class, error_code=GROUP_DENIED)
    result = broker.transactions.add_offsets(
        body.transactional_id, int(body.producer_id), int(body.producer_epoch), body.group_id, broker.clock()
    )
    return _reply(broker, build(request.response_class, error_code=txn_code(result.error, request)), result.flush)


def handle_end_txn(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    if not broker.allowed(ctx, "write", "transactional_id", body.transactional_id):
        return build(request.response_class, error_code=TXN_DENIED, producer_id=-1, producer_epoch=-1)
    now = broker.clock()
    result = broker.transactions.end_txn(
        body.transactional_id, int(body.producer_id), int(body.producer_epoch), bool(body.committed), now,
        client_version=2 if request.api_version >= 5 else 0,
    )
    return _answer_with_markers(broker, request, result, now)


# -- TxnOffsetCommit --------------------------------------------------------------------


def handle_txn_offset_commit(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    wanted = [(t.name, int(p.partition_index)) for t in body.topics for p in t.partitions]
    errors: dict[tuple[str, int], ErrorCode] = {}
    result = None
    if not broker.allowed(ctx, "write", "transactional_id", body.transactional_id):
        errors = {tp: TXN_DENIED for tp in wanted}
    elif not broker.allowed(ctx, "read", "group", body.group_id):
        errors = {tp: GROUP_DENIED for tp in wanted}
    else:
        topics = broker.topics()
        offsets: dict[tuple[str, int], OffsetValue] = {}
        for t in body.topics:
            allowed = broker.allowed(ctx, "read", "topic", t.name)
            for p in t.partitions:
                tp = (t.name, int(p.partition_index))
                if not allowed:
                    errors[tp] = TOPIC_DENIED
                elif t.name not in topics or not 0 <= tp[1] < topics[t.name].partitions:
                    errors[tp] = ErrorCode.unknown_topic_or_partition
                else:
                    offsets[tp] = OffsetValue(
                        int(p.committed_offset), int(getattr(p, "committed_leader_epoch", -1)), p.committed_metadata
                    )
        producer_id, producer_epoch = int(body.producer_id), int(body.producer_epoch)
        if offsets:
            # The group's __consumer_offsets partition must be in the transaction (AddOffsetsToTxn).
            verified = broker.transactions.verify_partitions(
                body.transactional_id, producer_id, producer_epoch, [(OFFSETS_TOPIC, 0)]
            ).partitions[(OFFSETS_TOPIC, 0)]
            if verified is not TxnError.NONE:
                code = txn_code(TxnError.INVALID_TXN_STATE if verified is TxnError.TRANSACTION_ABORTABLE
                                else verified, request)
                errors.update((tp, code) for tp in offsets)
            else:
                req = CommitRequest(
                    group_id=body.group_id,
                    generation=int(getattr(body, "generation_id", -1)),
                    member_id=getattr(body, "member_id", "") or "",
                    offsets=offsets,
                    group_instance_id=getattr(body, "group_instance_id", None),
                )
                result = broker.groups.txn_commit_offsets(req, producer_id, producer_epoch, broker.clock())
                errors.update((tp, GROUP_ERROR_CODES[e]) for tp, e in result.errors.items())
    by_topic: dict[str, list] = {}
    for topic, partition in wanted:
        by_topic.setdefault(topic, []).append(
            build(mod.TxnOffsetCommitResponsePartition, partition_index=partition, error_code=errors[(topic, partition)])
        )
    response = build(request.response_class, topics=tuple(
        build(mod.TxnOffsetCommitResponseTopic, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    ))
    return _reply(broker, response, result.flush if result is not None else None)


# -- DescribeTransactions / ListTransactions / DescribeProducers ---------------------------


def handle_describe_transactions(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    ids = list(request.body.transactional_ids)
    allowed = [i for i in ids if broker.allowed(ctx, "describe", "transactional_id", i)]
    described = {d.transactional_id: d for d in broker.transactions.describe_transactions(allowed)}
    states = []
    for transactional_id in ids:
        d = described.get(transactional_id)
        if d is None:
            states.append(build(mod.TransactionState, error_code=TXN_DENIED, transactional_id=transactional_id,
                                transaction_state="", transaction_start_time=_NO_START, producer_id=-1, producer_epoch=-1,
                                topics=()))
            continue
        topics = tuple(
            build(mod.TopicData, topic=topic, partitions=partitions)
            for topic, partitions in d.topics if broker.allowed(ctx, "describe", "topic", topic)
        )
        states.append(build(
            mod.TransactionState, error_code=txn_code(d.error), transactional_id=transactional_id,
            transaction_state=d.state, transaction_timeout=d.timeout_ms, transaction_start_time=_start_time(d.start_ms),
            producer_id=d.producer_id, producer_epoch=d.producer_epoch, topics=topics,
        ))
    return build(request.response_class, transaction_states=tuple(states))


def handle_list_transactions(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    body = request.body
    mod = module_of(request.response_class)
    duration = getattr(body, "duration_filter", -1)
    result = broker.transactions.list_transactions(
        broker.clock(), states=tuple(body.state_filters), producer_ids=tuple(int(p) for p in body.producer_id_filters),
        duration_ms=int(duration if isinstance(duration, int) else ms(duration)),
        transactional_id_pattern=getattr(body, "transactional_id_pattern", None),
    )
    listed = tuple(
        build(mod.TransactionState, transactional_id=t.transactional_id, producer_id=t.producer_id,
              transaction_state=t.state)
        for t in result.transactions if broker.allowed(ctx, "describe", "transactional_id", t.transactional_id)
    )
    return build(request.response_class, error_code=txn_code(result.error),
                 unknown_state_filters=result.unknown_state_filters, transaction_states=listed)


def handle_describe_producers(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    from logbroker.broker.handlers.errors import error_code_for
    from logbroker.errors import LogbrokerError

    mod = module_of(request.response_class)
    topics_out = []
    for topic in request.body.topics:
        allowed = broker.allowed(ctx, "read", "topic", topic.name)
        parts = []
        for index in topic.partition_indexes:
            index = int(index)
            producers, code, message = (), ErrorCode.none, None
            if not allowed:
                code = TOPIC_DENIED
            else:
                try:
                    producers = tuple(
                        build(mod.ProducerState, producer_id=p.producer_id, producer_epoch=p.producer_epoch,
                              last_sequence=p.last_sequence, last_timestamp=p.last_timestamp,
                              coordinator_epoch=p.coordinator_epoch,
                              current_txn_start_offset=p.current_txn_start_offset)
                        for p in broker.describe_producers(topic.name, index)
                    )
                except LogbrokerError as exc:
                    code, message = error_code_for(exc), str(exc)
            parts.append(build(mod.PartitionResponse, partition_index=index, error_code=code, error_message=message,
                               active_producers=producers))
        topics_out.append(build(mod.TopicResponse, name=topic.name, partitions=tuple(parts)))
    return build(request.response_class, topics=tuple(topics_out))


# -- WriteTxnMarkers ----------------------------------------------------------------------


def handle_write_txn_markers(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """WriteTxnMarkers (v1-2): broker-to-broker in Kafka; here an admin's way to
    end a hanging transaction (a producer's open transaction its coordinator
    no longer knows). Needs CLUSTER_ACTION; each partition answers on its own."""
    from logbroker.broker.handlers.errors import error_code_for
    from logbroker.errors import LogbrokerError

    mod = module_of(request.response_class)
    allowed = broker.allowed(ctx, "cluster_action", "cluster", CLUSTER)
    now = broker.clock()
    results, flush, appended = [], [], []
    for marker in request.body.markers:
        topics_out = []
        for topic in marker.topics:
            parts = []
            for index in topic.partition_indexes:
                index = int(index)
                code = ErrorCode.cluster_authorization_failed if not allowed else ErrorCode.none
                if allowed:
                    try:
                        point = broker.append_marker(
                            topic.name, index, int(marker.producer_id), int(marker.producer_epoch),
                            bool(marker.transaction_result), int(marker.coordinator_epoch), now,
                        )
                        flush.append(point)
                        appended.append((topic.name, index))
                    except LogbrokerError as exc:
                        code = error_code_for(exc)
                parts.append(build(mod.WritableTxnMarkerPartitionResult, partition_index=index, error_code=code))
            topics_out.append(build(mod.WritableTxnMarkerTopicResult, name=topic.name, partitions=tuple(parts)))
        results.append(build(mod.WritableTxnMarkerResult, producer_id=marker.producer_id, topics=tuple(topics_out)))
    body = build(request.response_class, markers=tuple(results))
    return Reply(body, flush=flush if broker.config.flush == "always" else [], appended=appended)


def find_transaction_coordinator(broker: Broker, ctx: RequestContext, key: str) -> tuple[ErrorCode, str | None]:
    """FindCoordinator with key type 1: this node, if the principal may describe the id."""
    if not broker.allowed(ctx, "describe", "transactional_id", key):
        return TXN_DENIED, f"not allowed to describe transactional id {key!r}"
    return ErrorCode.none, None


__all__ = [
    "find_transaction_coordinator",
    "handle_add_offsets_to_txn",
    "handle_add_partitions_to_txn",
    "handle_describe_producers",
    "handle_describe_transactions",
    "handle_end_txn",
    "handle_list_transactions",
    "handle_txn_offset_commit",
    "handle_write_txn_markers",
    "init_transactional_producer",
]
