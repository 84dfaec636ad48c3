"""Produce: validate each partition's batch, check producer state, append.

Batches stay opaque bytes; only their 61-byte header is read. The response
is written by the protocol's fast Produce encoder (no kio objects). A
request naming a transactional id needs WRITE on it (else
TRANSACTIONAL_ID_AUTHORIZATION_FAILED on every partition, as Kafka); the
broker checks each transactional batch's partition is in the transaction.
"""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode, ProducePartition, encode_legacy_produce_response, encode_produce_response

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._legacy import upconverted_produce
from logbroker.broker.handlers._result import Reply
from logbroker.broker.handlers.errors import error_code_for
from logbroker.errors import LogbrokerError, RecordErrorsError

_VALID_ACKS = (-1, 0, 1)


def handle_produce(broker: Broker, ctx: RequestContext, request: Request) -> Reply:
    # v0-2 (old clients): message sets become v2 batches first; their answer has its own encoder.
    body = request.body if request.api_version >= 3 else upconverted_produce(request.body)
    encode = encode_produce_response if request.api_version >= 3 else encode_legacy_produce_response
    transactional_id = body.transactional_id
    txn_denied = transactional_id is not None and not broker.allowed(ctx, "write", "transactional_id", transactional_id)
    acks = int(body.acks)
    always = broker.config.flush == "always"
    topics_out = []
    flush: list = []
    flushed: set[tuple[str, int]] = set()
    appended: list = []
    for topic in body.topic_data:
        name = topic.name
        exists = broker.has_topic(name)
        partitions_out = []
        for pdata in topic.partition_data:
            index = int(pdata.index)
            message = None
            record_errors: tuple[tuple[int, str], ...] = ()
            if acks not in _VALID_ACKS:
                code, result = ErrorCode.invalid_required_acks, None
            elif txn_denied:
                code, result = ErrorCode.transactional_id_authorization_failed, None
            elif not broker.allowed(ctx, "write", "topic", name):
                code, result = ErrorCode.topic_authorization_failed, None
            elif not exists:
                code, result = ErrorCode.unknown_topic_or_partition, None
            elif broker.is_internal_topic(name):
                code, result = ErrorCode.invalid_topic_exception, None
                message = f"producing to internal topic {name} is not allowed"
            elif not pdata.records:
                code, result = ErrorCode.corrupt_message, None
            else:
                try:
                    result = broker.append(name, index, pdata.records, transactional_id=transactional_id)
                    code = ErrorCode.none
                except LogbrokerError as exc:
                    code, result = error_code_for(exc), None
                    message = str(exc)
                    if isinstance(exc, RecordErrorsError):  # KIP-467: which records were refused
                        record_errors = exc.record_errors
            if result is None:
                partitions_out.append(
                    ProducePartition(index, code, error_message=message, record_errors=record_errors)
                )
                continue
            if not result.duplicate:
                appended.append((name, index))
                if always and acks != 0:
                    plog = broker.partition(name, index)
                    # flush(n) makes offsets below n durable: cover the whole batch.
                    flush.append((plog, plog.log_end_offset))
                    flushed.add((name, index))
            partitions_out.append(
                ProducePartition(
                    index,
                    ErrorCode.none,
                    base_offset=result.base_offset,
                    log_append_time=result.log_append_time,
                    log_start_offset=result.log_start_offset,
                )
            )
        topics_out.append((name, partitions_out))
    if acks == 0:
        return Reply(None, flush=[], appended=appended)
    response = encode(request.api_version, request.correlation_id, topics_out)
    if not flush:
        return Reply(response, appended=appended)

    def storage_error() -> Any:
        """The same answer with KAFKA_STORAGE_ERROR for the batches awaiting an fsync."""
        failed = [
            (name, [ProducePartition(p.index, ErrorCode.kafka_storage_error, error_message="fsync failed")
                    if (name, p.index) in flushed else p for p in partitions])
            for name, partitions in topics_out
        ]
        return encode(request.api_version, request.correlation_id, failed)

    return Reply(response, flush=flush, appended=appended, if_flush_fails=storage_error)
