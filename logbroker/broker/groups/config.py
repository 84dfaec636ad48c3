"""The group coordinator's settings, taken from the broker's."""

from __future__ import annotations

from dataclasses import dataclass

from logbroker.broker.config import BrokerConfig
from logbroker.errors import InvalidConfigError


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Kafka's group and offset settings (names without the ``group.``/``offsets.`` prefix).

    ``initial_rebalance_delay_ms``: how long a group that was Empty waits for
    more members before its next generation, extended by the same delay while
    new members keep arriving (capped by the rebalance timeout). Kafka's
    default is 3000; logbroker's is 250 so a group forms in well under a
    second when its members start together.
    ``compact_min_records``: the internal topic is compacted (copied forward)
    once it holds at least this many records and twice the live ones.
    ``consumer_*``: KIP-848 consumer groups (``group.consumer.*``): the session
    timeout and heartbeat interval the broker imposes, and the most members.
    """

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 250
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    compact_min_records: int = 100_000
    consumer_session_timeout_ms: int = 45_000
    consumer_heartbeat_interval_ms: int = 5000
    consumer_max_size: int = 2**31 - 1

    def __post_init__(self) -> None:
        if not 0 < self.min_session_timeout_ms <= self.max_session_timeout_ms:
            raise InvalidConfigError("need 0 < min session timeout <= max session timeout")
        for name in ("offsets_retention_ms", "retention_check_interval_ms", "compact_min_records"):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        if not 0 < self.consumer_heartbeat_interval_ms < self.consumer_session_timeout_ms:
            raise InvalidConfigError("need 0 < consumer heartbeat interval < consumer session timeout")
        if self.consumer_max_size <= 0:
            raise InvalidConfigError("consumer_max_size must be positive")
        if self.initial_rebalance_delay_ms < 0 or self.offset_metadata_max_bytes < 0:
            raise InvalidConfigError("initial rebalance delay and offset metadata size must not be negative")

    @classmethod
    def from_broker(cls, config: BrokerConfig) -> GroupConfig:
        """From a :class:`~logbroker.broker.config.BrokerConfig`."""
        return cls(
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
            retention_check_interval_ms=config.offsets_retention_check_interval_ms,
            consumer_session_timeout_ms=config.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms,
            consumer_max_size=config.group_consumer_max_size,
        )
