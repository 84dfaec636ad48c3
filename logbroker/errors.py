"""The one exception family of logbroker. Imports nothing of ours."""

from __future__ import annotations


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


class BatchTooLargeError(RecordsError):
    """A batch larger than the configured maximum."""

    reason = "too large"


class CompressionError(RecordsError):
    """A codec is unknown, unavailable or its payload does not decompress."""

    reason = "compression"


class StorageError(LogbrokerError):
    """The disk refused a write or a file is unusable (ENOSPC, EIO...)."""


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


class InvalidPartitionsError(LogbrokerError):
    """A partition count that is not allowed (below 1, or not an increase)."""


class ProtocolError(LogbrokerError):
    """The peer sent bytes that are not a valid Kafka request; close the connection."""


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
