"""The transaction coordinator's settings (Kafka's ``transaction.*`` broker configs)."""

from __future__ import annotations

from dataclasses import dataclass

from logbroker.broker.config import BrokerConfig
from logbroker.errors import InvalidConfigError


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """Kafka's transaction coordinator settings, with Kafka's defaults.

    ``max_timeout_ms``: ``transaction.max.timeout.ms``; InitProducerId asking
    for more answers INVALID_TRANSACTION_TIMEOUT.
    ``transactional_id_expiration_ms``: ``transactional.id.expiration.ms``; an
    id idle this long (and not in a transaction) is forgotten.
    ``remove_expired_interval_ms``: how often expiry is checked
    (``transaction.remove.expired.transaction.cleanup.interval.ms``).
    ``abort_retry_interval_ms``: when a timed-out transaction could not be
    aborted (the internal topic refused the write), the next attempt is this
    much later (Kafka scans every
    ``transaction.abort.timed.out.transaction.cleanup.interval.ms``; timeouts
    here fire at the exact deadline instead).
    ``transaction_version``: the broker's finalized ``transaction.version``
    feature: 2 aborts timed-out or fenced transactions with the TV2 epoch
    bump, and 1 or more writes value version 1 records.
    ``coordinator_epoch``: stamped on every marker (a single node never
    changes coordinator).
    ``compact_min_records``: the internal topic is copied forward once it
    holds at least this many records and twice the live ones.
    """

    max_timeout_ms: int = 900_000
    transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000
    remove_expired_interval_ms: int = 3_600_000
    abort_retry_interval_ms: int = 10_000
    transaction_version: int = 2
    coordinator_epoch: int = 0
    compact_min_records: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_timeout_ms", "transactional_id_expiration_ms", "remove_expired_interval_ms",
                     "abort_retry_interval_ms", "compact_min_records"):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        if self.transaction_version not in (0, 1, 2):
            raise InvalidConfigError("transaction_version must be 0, 1 or 2")
        if self.coordinator_epoch < 0:
            raise InvalidConfigError("coordinator_epoch must not be negative")

    @classmethod
    def from_broker(cls, config: BrokerConfig) -> TransactionConfig:
        """From a :class:`~logbroker.broker.config.BrokerConfig` (Kafka's ``transaction.*`` settings)."""
        return cls(
            max_timeout_ms=config.transaction_max_timeout_ms,
            transactional_id_expiration_ms=config.transactional_id_expiration_ms,
            remove_expired_interval_ms=config.transaction_remove_expired_transaction_cleanup_interval_ms,
            abort_retry_interval_ms=config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            transaction_version=config.transaction_version,
        )

    @property
    def log_value_version(self) -> int:
        """The ``__transaction_state`` value version written (Kafka's rule)."""
        return 1 if self.transaction_version >= 1 else 0
