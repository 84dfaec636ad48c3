"""Kafka error codes -> exceptions of :mod:`logbroker.errors`, in one table (STYLE rule 6)."""

from __future__ import annotations

from logbroker.errors import (
    CommitFailedError,
    CorruptRecordError,
    FetchOffsetOutOfRangeError,
    GroupError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logbroker.protocol import ErrorCode

__all__ = ["kafka_error", "raise_for_code", "is_retriable"]

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
}


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
