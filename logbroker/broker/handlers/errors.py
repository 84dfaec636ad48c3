"""The one table that turns domain exceptions into Kafka error codes."""

from __future__ import annotations

from logbroker.protocol import ErrorCode

from logbroker.broker.fetch_sessions import FetchSessionError
from logbroker.broker.groups import GroupOutcome
from logbroker.broker.producer_state import (
    InvalidProducerEpochError, InvalidTxnStateError, OutOfOrderSequenceError, TxnNotReadyError,
)
from logbroker import errors as e

_TABLE: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (e.UnknownTopicError, ErrorCode.unknown_topic_or_partition),
    (e.BatchTooLargeError, ErrorCode.message_too_large),
    (e.CorruptBatchError, ErrorCode.corrupt_message),
    (e.CompressionError, ErrorCode.corrupt_message),
    (e.InvalidBatchError, ErrorCode.invalid_record),
    (e.OffsetOutOfRangeError, ErrorCode.offset_out_of_range),
    (e.TopicExistsError, ErrorCode.topic_already_exists),
    (e.InvalidConfigError, ErrorCode.invalid_config),
    (e.InvalidTopicError, ErrorCode.invalid_topic_exception),
    (e.InvalidPartitionsError, ErrorCode.invalid_partitions),
    (e.InvalidRequestError, ErrorCode.invalid_request),
    (e.ThrottledError, ErrorCode.throttling_quota_exceeded),
    (OutOfOrderSequenceError, ErrorCode.out_of_order_sequence_number),
    (InvalidProducerEpochError, ErrorCode.invalid_producer_epoch),
    (InvalidTxnStateError, ErrorCode.invalid_txn_state),
    (TxnNotReadyError, ErrorCode.not_enough_replicas),
    (e.StorageError, ErrorCode.kafka_storage_error),
)


GROUP_ERROR_CODES: dict[GroupOutcome, ErrorCode] = {e: getattr(ErrorCode, e.value) for e in GroupOutcome}
"""The group coordinator's GroupOutcome -> the ErrorCode sent on the wire."""

FETCH_SESSION_ERROR_CODES: dict[FetchSessionError, ErrorCode] = {e: getattr(ErrorCode, e.value) for e in FetchSessionError}
"""Why a Fetch cannot use its session (FetchSessionCache) -> the ErrorCode sent on the wire."""


def error_code_for(exc: BaseException) -> ErrorCode:
    """The Kafka error code for ``exc``; UNKNOWN_SERVER_ERROR when unmapped."""
    for kind, code in _TABLE:
        if isinstance(exc, kind):
            return code
    return ErrorCode.unknown_server_error
