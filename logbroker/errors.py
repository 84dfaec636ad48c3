"""The one exception family of logbroker. Imports nothing of ours."""

from __future__ import annotations

from typing import Any


class LogbrokerError(Exception):
    """Base of every error logbroker raises on purpose."""


class RecordsError(LogbrokerError):
    """A record batch is not acceptable; ``reason`` names why."""

    reason = "invalid"


class CorruptBatchError(RecordsError):
    """Bytes do not form a batch: bad length, magic or CRC."""

    reason = "corrupt"


class InvalidBatchError(RecordsError):
    """A well-formed batch that breaks a rule (record count, control flag...)."""

    reason = "invalid"


class RecordErrorsError(InvalidBatchError):
    """Some records of a well-formed batch break a rule; the batch is refused whole.

    ``record_errors`` holds ``(index in the batch, why)`` of each (KIP-467).
    """

    def __init__(self, message: str, record_errors: tuple[tuple[int, str], ...]) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class BatchTooLargeError(RecordsError):
    """A batch larger than the configured maximum."""

    reason = "too large"


class CompressionError(RecordsError):
    """A codec is unknown, unavailable or its payload does not decompress."""

    reason = "compression"


class StorageError(LogbrokerError):
    """The disk refused a write or a file is unusable (ENOSPC, EIO...)."""


class CorruptSegmentError(StorageError, CorruptBatchError):
    """A stored batch failed its checks when read (CRC, length, magic): the segment
    is damaged. Answered as CORRUPT_MESSAGE, which clients hand to the application;
    ``logbroker repair`` removes such batches."""


class LogDirLockedError(StorageError):
    """Another process holds the data directory."""


class OffsetOutOfRangeError(StorageError):
    """A read or lookup asked for an offset outside [log start, log end]."""


class TopicExistsError(LogbrokerError):
    """A topic of that name already exists."""


class UnknownTopicError(LogbrokerError):
    """No topic or partition of that name."""


class InvalidConfigError(LogbrokerError):
    """A configuration value is out of range or of the wrong type."""


class InvalidTopicError(LogbrokerError):
    """A topic name breaks Kafka's rules ([a-zA-Z0-9._-], 1..249 chars, not "." or "..")."""


class InternalTopicError(InvalidTopicError):
    """An operation on a topic the broker owns (``__consumer_offsets``...) that
    would break it: delete, create partitions, delete records, produce."""


class InvalidRequestError(LogbrokerError):
    """A well-formed request the broker refuses as a whole (Kafka's INVALID_REQUEST)."""


class ThrottledError(LogbrokerError):
    """A limit on how fast something may be done was reached (Kafka's THROTTLING_QUOTA_EXCEEDED)."""


class InvalidPartitionsError(LogbrokerError):
    """A partition count that is not allowed (below 1, or not an increase)."""


class ProtocolError(LogbrokerError):
    """The peer sent bytes that are not a valid Kafka request, or a request it
    may not send now (before authenticating); close that connection only.

    Only for the peer's mistakes (h11's RemoteProtocolError): the broker's own
    failures are :class:`InternalError`, what it would send wrong is
    :class:`LocalProtocolError`."""


class FrameTooLargeError(ProtocolError):
    """A frame declared a size above the configured maximum."""


class UnsupportedVersionError(ProtocolError):
    """A request for an API key or version we do not serve (answerable).

    ``api_key``, ``api_version`` and ``correlation_id`` are read from the first
    eight bytes of the request (``None`` when unknown), so the server can answer
    an ApiVersions request in the v0 shape with UNSUPPORTED_VERSION (35).
    """

    def __init__(
        self,
        message: str = "",
        *,
        api_key: int | None = None,
        api_version: int | None = None,
        correlation_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class LocalProtocolError(LogbrokerError):
    """We were about to send something that is not valid Kafka: our bug, not the peer's."""


class InternalError(LogbrokerError):
    """The broker failed while handling a well-formed request: a handler's bug,
    or an fsync that what waits on it cannot do without. Not the peer's doing:
    the server logs it and answers UNKNOWN_SERVER_ERROR where the response has
    a top-level error code (Kafka's ``getErrorResponse``), else closes the
    connection."""


# -- the client's errors (logbroker.client) ------------------------------------


class ClientError(LogbrokerError):
    """Raised by :mod:`logbroker.client`: Kafka errors and client-side conditions."""


class ClientClosedError(ClientError):
    """The producer, consumer or admin client was closed by its owner (you closed it)."""


class NoOffsetError(ClientError):
    """A partition has no committed offset and ``auto_offset_reset`` is ``"none"``."""


class KafkaError(ClientError):
    """An error with a Kafka error code, from a broker's answer or the client itself.

    ``code`` is the Kafka error code (an ``int``; the client passes kio's
    ``ErrorCode`` members, which are ints) and ``retriable`` says whether the
    same operation may succeed if tried again. Subclasses name the codes that
    callers commonly catch; :func:`logbroker.client.kafka_error` picks the class
    for a code.
    """

    default_code: int = -1  # UNKNOWN_SERVER_ERROR
    default_retriable: bool = False

    def __init__(self, message: str = "", *, code: int | None = None, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.code = self.default_code if code is None else code
        self.retriable = self.default_retriable if retriable is None else retriable

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments survive pickling (threads, processes)
        return (_rebuild_kafka_error, (type(self), str(self), self.code, self.retriable))


def _rebuild_kafka_error(cls: type[KafkaError], message: str, code: int, retriable: bool) -> KafkaError:
    return cls(message, code=code, retriable=retriable)


class KafkaTimeoutError(KafkaError):
    """A configured limit expired before the operation completed (REQUEST_TIMED_OUT)."""

    default_code = 7
    default_retriable = True


class KafkaConnectionError(KafkaError):
    """The connection to a broker failed or broke (NETWORK_EXCEPTION): the peer or the OS."""

    default_code = 13
    default_retriable = True


class AuthenticationError(KafkaError):
    """The broker refused this client's SASL login (SASL_AUTHENTICATION_FAILED), does not
    offer the configured mechanism, or could not prove it knows the password (SCRAM's
    server signature). Not retriable: the same credentials fail again. The message
    names the user and the broker's address, never the password. (The broker's own
    :class:`logbroker.broker.security.AuthenticationError` is a different class.)"""

    default_code = 58


class UnknownTopicOrPartitionError(KafkaError):
    """The broker does not host that topic or partition (UNKNOWN_TOPIC_OR_PARTITION)."""

    default_code = 3
    default_retriable = True


class NotLeaderError(KafkaError):
    """The broker is not the partition's leader (NOT_LEADER_OR_FOLLOWER)."""

    default_code = 6
    default_retriable = True


class FetchOffsetOutOfRangeError(KafkaError):
    """A fetch or seek asked for an offset outside the log (OFFSET_OUT_OF_RANGE)."""

    default_code = 1


class CorruptRecordError(KafkaError):
    """The broker found the batch at the fetch position damaged, or the client found a
    fetched batch corrupt (CORRUPT_MESSAGE). The message names the topic, partition
    and offset; reading past it takes a seek beyond the damaged batch, or a repair."""

    default_code = 2


class RecordTooLargeError(KafkaError):
    """A record or batch exceeds the broker's or the producer's limit (MESSAGE_TOO_LARGE)."""

    default_code = 10


class TopicAlreadyExistsError(KafkaError):
    """CreateTopics found a topic of that name (TOPIC_ALREADY_EXISTS)."""

    default_code = 36


class GroupError(KafkaError):
    """The consumer group coordinator refused a request (membership, generation, state)."""


class CommitFailedError(GroupError):
    """An offset commit was refused because the group rebalanced or evicted this member."""

    default_code = 27  # REBALANCE_IN_PROGRESS; the broker's code when it gave one


class TransactionError(KafkaError):
    """A transactional producer's operation failed. The subclasses say what is left:
    fatal ones (:class:`ProducerFencedError`, :class:`TransactionalIdAuthorizationError`)
    leave the producer unusable (close it); :class:`TransactionAbortableError` leaves
    it usable after ``abort_transaction()``."""


class ProducerFencedError(TransactionError):
    """Another producer with the same transactional id started (or the coordinator bumped
    the epoch, e.g. after a timeout): this one is fenced for good (PRODUCER_FENCED,
    INVALID_PRODUCER_EPOCH). Close it; the newer producer owns the id."""

    default_code = 90


class TransactionalIdAuthorizationError(TransactionError):
    """The principal may not use this transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
    Fatal, like fencing."""

    default_code = 53


class TransactionAbortableError(TransactionError):
    """The current transaction cannot commit (a record failed, TRANSACTION_ABORTABLE...):
    call ``abort_transaction()``, after which the producer is usable again. ``code`` is
    the code of the error that made it abortable."""

    default_code = 48  # INVALID_TXN_STATE, when no broker code is known


class TransactionAbortedError(TransactionError):
    """The record was not sent: its transaction was aborted first."""

    default_code = 48


class TransactionStateError(TransactionError):
    """A transactional call out of order (begin twice, commit without begin, send outside a
    transaction, transactions on a producer without ``transactional_id``): your bug."""

    default_code = 48
