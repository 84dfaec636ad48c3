"""Kafka error codes -> exceptions of :mod:`logbroker.errors`, in one table (docs/contributing.md, convention 6)."""

from __future__ import annotations

from logbroker.errors import (
    CommitFailedError,
    CorruptRecordError,
    FetchOffsetOutOfRangeError,
    GroupError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderError,
    ProducerFencedError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TransactionAbortableError,
    TransactionalIdAuthorizationError,
    TransactionError,
    UnknownTopicOrPartitionError,
)
from logbroker.protocol import ErrorCode

__all__ = ["FENCING_CODES", "kafka_error", "raise_for_code", "is_retriable", "transaction_error"]

_CLASSES: dict[int, type[KafkaError]] = {
    ErrorCode.unknown_topic_or_partition: UnknownTopicOrPartitionError,
    ErrorCode.not_leader_or_follower: NotLeaderError,
    ErrorCode.offset_out_of_range: FetchOffsetOutOfRangeError,
    ErrorCode.corrupt_message: CorruptRecordError,
    ErrorCode.message_too_large: RecordTooLargeError,
    ErrorCode.record_list_too_large: RecordTooLargeError,
    ErrorCode.topic_already_exists: TopicAlreadyExistsError,
    ErrorCode.request_timed_out: KafkaTimeoutError,
    ErrorCode.illegal_generation: CommitFailedError,
    ErrorCode.unknown_member_id: CommitFailedError,
    ErrorCode.rebalance_in_progress: CommitFailedError,
    ErrorCode.fenced_instance_id: CommitFailedError,
    ErrorCode.inconsistent_group_protocol: GroupError,
    ErrorCode.invalid_group_id: GroupError,
    ErrorCode.invalid_session_timeout: GroupError,
    ErrorCode.group_id_not_found: GroupError,
    ErrorCode.non_empty_group: GroupError,
    ErrorCode.group_max_size_reached: GroupError,
    ErrorCode.unsupported_assignor: GroupError,
    ErrorCode.fenced_member_epoch: CommitFailedError,
    ErrorCode.stale_member_epoch: CommitFailedError,
    ErrorCode.unreleased_instance_id: GroupError,
    ErrorCode.invalid_regular_expression: GroupError,
}


# Codes a transactional producer's request may get, and what they leave of it: the
# fencing ones end the producer (Kafka's fatal errors), the abortable ones end the
# transaction. The idempotent (non-transactional) path keeps the plain table above:
# there INVALID_PRODUCER_EPOCH only means "ask for a new producer id".
_TXN_CLASSES: dict[int, type[TransactionError]] = {
    ErrorCode.producer_fenced: ProducerFencedError,
    ErrorCode.invalid_producer_epoch: ProducerFencedError,
    ErrorCode.transaction_coordinator_fenced: ProducerFencedError,
    ErrorCode.transactional_id_authorization_failed: TransactionalIdAuthorizationError,
    ErrorCode.transaction_abortable: TransactionAbortableError,
}
FENCING_CODES = frozenset(code for code, cls in _TXN_CLASSES.items() if cls is not TransactionAbortableError)
"""Codes after which a transactional producer is unusable."""


def _code(code: int) -> ErrorCode | int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def is_retriable(code: int) -> bool:
    """kio's (Kafka's) retriable flag for ``code``; unknown codes are not retriable."""
    member = _code(code)
    return bool(getattr(member, "retriable", False))


def kafka_error(code: int, message: str | None = None, *, context: str = "") -> KafkaError:
    """The exception for a Kafka error ``code``: its subclass, its retriable flag."""
    member = _code(code)
    name = member.name.upper() if isinstance(member, ErrorCode) else f"error {code}"
    text = f"{context}: {name}" if context else name
    if message:
        text = f"{text} ({message})"
    cls = _CLASSES.get(code, KafkaError)
    return cls(text, code=member, retriable=is_retriable(code))


def raise_for_code(code: int, message: str | None = None, *, context: str = "") -> None:
    """Raise :func:`kafka_error` unless ``code`` is NONE (0)."""
    if code:
        raise kafka_error(code, message, context=context)


def transaction_error(code: int, message: str | None = None, *, context: str = "") -> KafkaError:
    """The exception for ``code`` answered to a transactional producer: a
    :class:`~logbroker.errors.TransactionError` subclass for fencing, authorization and
    TRANSACTION_ABORTABLE, else as :func:`kafka_error`."""
    cls = _TXN_CLASSES.get(code)
    if cls is None:
        return kafka_error(code, message, context=context)
    error = kafka_error(code, message, context=context)
    return cls(str(error), code=error.code, retriable=False)
