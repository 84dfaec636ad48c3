"""Produce: validate each partition's batch, check producer state, append.

Batches stay opaque bytes; only their 61-byte header is read.
"""

from __future__ import annotations

from logbroker.protocol import ErrorCode

from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.handlers._result import Reply
from logbroker.broker.handlers.errors import error_code_for
from logbroker.errors import LogbrokerError

_VALID_ACKS = (-1, 0, 1)


def handle_produce(broker, request) -> Reply:
    body = request.body
    mod = module_of(request.response_class)
    acks = int(body.acks)
    always = broker.config.flush == "always"
    topics_out = []
    flush: list = []
    appended: list = []
    for topic in body.topic_data:
        name = topic.name
        exists = name in broker.topics()
        partitions_out = []
        for pdata in topic.partition_data:
            index = int(pdata.index)
            message = None
            if acks not in _VALID_ACKS:
                code, result = ErrorCode.invalid_required_acks, None
            elif not exists:
                code, result = ErrorCode.unknown_topic_or_partition, None
            elif broker.is_internal_topic(name):
                code, result = ErrorCode.invalid_topic_exception, None
                message = f"producing to internal topic {name} is not allowed"
            elif not pdata.records:
                code, result = ErrorCode.corrupt_message, None
            else:
                try:
                    result = broker.append(name, index, pdata.records)
                    code = ErrorCode.none
                except LogbrokerError as exc:
                    code, result = error_code_for(exc), None
                    message = str(exc)
            if result is None:
                partitions_out.append(
                    build(
                        mod.PartitionProduceResponse,
                        index=index,
                        error_code=code,
                        base_offset=-1,
                        log_append_time=-1,
                        log_start_offset=-1,
                        error_message=message,
                    )
                )
                continue
            if not result.duplicate:
                appended.append((name, index))
                if always and acks != 0:
                    plog = broker.partition(name, index)
                    # flush(n) makes offsets below n durable: cover the whole batch.
                    flush.append((plog, plog.log_end_offset))
            partitions_out.append(
                build(
                    mod.PartitionProduceResponse,
                    index=index,
                    error_code=ErrorCode.none,
                    base_offset=result.base_offset,
                    log_append_time=result.log_append_time,
                    log_start_offset=result.log_start_offset,
                )
            )
        topics_out.append(build(mod.TopicProduceResponse, name=name, partition_responses=tuple(partitions_out)))
    if acks == 0:
        return Reply(None, flush=[], appended=appended)
    return Reply(build(request.response_class, responses=tuple(topics_out)), flush=flush, appended=appended)
