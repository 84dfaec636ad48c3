"""Share-group settings: the broker-wide ones (:class:`ShareConfig`) and the
per-group overrides set with IncrementalAlterConfigs on a GROUP resource
(:class:`GroupSettings`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from logbroker.broker.config import BrokerConfig
from logbroker.errors import InvalidConfigError
from logbroker.storage import PartitionLog

AUTO_OFFSET_RESET = "share.auto.offset.reset"
LOCK_DURATION = "share.record.lock.duration.ms"
DELIVERY_COUNT_LIMIT = "share.delivery.count.limit"
SESSION_TIMEOUT = "share.session.timeout.ms"
HEARTBEAT_INTERVAL = "share.heartbeat.interval.ms"
DLQ_TOPIC = "errors.deadletterqueue.topic.name"
DLQ_COPY_RECORD = "errors.deadletterqueue.copy.record.enable"
ISOLATION_LEVEL = "share.isolation.level"
ISOLATION_LEVELS = ("read_uncommitted", "read_committed")

GROUP_CONFIG_DEFAULTS: Mapping[str, str] = {
    AUTO_OFFSET_RESET: "latest",
    LOCK_DURATION: "",
    DELIVERY_COUNT_LIMIT: "",
    SESSION_TIMEOUT: "",
    HEARTBEAT_INTERVAL: "",
    DLQ_TOPIC: "",
    DLQ_COPY_RECORD: "true",
    ISOLATION_LEVEL: "read_uncommitted",
}
"""Every group config a share group accepts; "" means "the broker's setting"."""

_INT_KEYS = (LOCK_DURATION, DELIVERY_COUNT_LIMIT, SESSION_TIMEOUT, HEARTBEAT_INTERVAL)
# ISO-8601 durations as Java's Duration.parse reads them: PnDTnHnMn.nS, each part optional.
_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d{1,9})?)S)?)?", re.IGNORECASE
)
BY_DURATION = "by_duration:"


def duration_ms(text: str) -> int:
    """Milliseconds of an ISO-8601 duration such as ``PT1H30M`` or ``P1DT0.5S``.

    :raises InvalidConfigError: not of the form PnDTnHnMn.nS (negative durations are refused).
    """
    m = _DURATION.fullmatch(text.strip())
    if m is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise InvalidConfigError(f"{text!r} is not an ISO-8601 duration (PnDTnHnMn.nS)")
    days, hours, minutes = (int(m.group(k) or 0) for k in "dhm")
    seconds = float(m.group("s") or 0)
    return round((((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000)


@dataclass(frozen=True, slots=True)
class ShareConfig:
    """Broker-wide share-group settings (Kafka's ``group.share.*`` without the prefix).

    ``compact_min_records``: the internal topic is compacted (copied forward)
    once it holds at least this many records and twice the live ones.
    ``snapshot_every``: a share-partition writes a full snapshot instead of a
    delta once this many deltas followed its last snapshot.
    """

    record_lock_duration_ms: int = 30_000
    delivery_count_limit: int = 5
    partition_max_record_locks: int = 2000
    heartbeat_interval_ms: int = 5000
    session_timeout_ms: int = 45_000
    max_size: int = 200
    compact_min_records: int = 100_000
    snapshot_every: int = 200

    def __post_init__(self) -> None:
        for name in (
            "record_lock_duration_ms", "partition_max_record_locks", "heartbeat_interval_ms",
            "session_timeout_ms", "max_size", "compact_min_records", "snapshot_every",
        ):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"share {name} must be positive")
        if self.delivery_count_limit < 1:
            raise InvalidConfigError("share delivery_count_limit must be at least 1")

    @classmethod
    def from_broker(cls, config: BrokerConfig) -> ShareConfig:
        """From a :class:`~logbroker.broker.config.BrokerConfig`."""
        return cls(
            record_lock_duration_ms=config.group_share_record_lock_duration_ms,
            delivery_count_limit=config.group_share_delivery_count_limit,
            partition_max_record_locks=config.group_share_partition_max_record_locks,
            heartbeat_interval_ms=config.group_share_heartbeat_interval_ms,
            session_timeout_ms=config.group_share_session_timeout_ms,
            max_size=config.group_share_max_size,
        )


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """One share group's effective settings: its overrides over the broker's."""

    auto_offset_reset: str
    record_lock_duration_ms: int
    delivery_count_limit: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    dlq_topic: str | None
    dlq_copy_record: bool = True
    """Dead letters carry the record's key and value (logbroker's default), or
    only the context headers (``false``, Kafka's default)."""
    read_committed: bool = False
    """``share.isolation.level=read_committed``: records are delivered only
    below the last stable offset, and those of aborted transactions never."""

    def start_offset(self, plog: PartitionLog, now_ms: int) -> int:
        """Where a new share-partition of ``plog`` starts (``share.auto.offset.reset``)."""
        reset = self.auto_offset_reset
        if reset == "earliest":
            return plog.log_start_offset
        if reset.startswith(BY_DURATION):
            found = plog.offset_for_timestamp(now_ms - duration_ms(reset[len(BY_DURATION):]))
            return found[0] if found is not None else plog.log_end_offset
        return plog.log_end_offset

    @classmethod
    def resolve(cls, overrides: Mapping[str, str], broker: ShareConfig) -> GroupSettings:
        """Overrides (already validated) over the broker's settings."""
        def number(key: str, default: int) -> int:
            text = overrides.get(key, "")
            return int(text) if text else default

        return cls(
            auto_offset_reset=overrides.get(AUTO_OFFSET_RESET) or "latest",
            record_lock_duration_ms=number(LOCK_DURATION, broker.record_lock_duration_ms),
            delivery_count_limit=number(DELIVERY_COUNT_LIMIT, broker.delivery_count_limit),
            session_timeout_ms=number(SESSION_TIMEOUT, broker.session_timeout_ms),
            heartbeat_interval_ms=number(HEARTBEAT_INTERVAL, broker.heartbeat_interval_ms),
            dlq_topic=overrides.get(DLQ_TOPIC) or None,
            dlq_copy_record=(overrides.get(DLQ_COPY_RECORD) or "true").lower() == "true",
            read_committed=overrides.get(ISOLATION_LEVEL) == "read_committed",
        )


def validate_group_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """The overrides to store (None and "" values dropped).

    Raises InvalidConfigError naming the bad key or value.
    """
    out: dict[str, str] = {}
    for key, value in configs.items():
        if key not in GROUP_CONFIG_DEFAULTS:
            raise InvalidConfigError(f"unknown group config {key!r}")
        if value is None or value == "":
            continue
        if key == AUTO_OFFSET_RESET:
            if value.startswith(BY_DURATION):
                duration_ms(value[len(BY_DURATION):])
            elif value not in ("earliest", "latest"):
                raise InvalidConfigError(
                    f"{key} must be earliest, latest or by_duration:PnDTnHnMn.nS, not {value!r}")
        if key == ISOLATION_LEVEL and value not in ISOLATION_LEVELS:
            raise InvalidConfigError(f"{key} must be read_uncommitted or read_committed, not {value!r}")
        if key == DLQ_COPY_RECORD and value.lower() not in ("true", "false"):
            raise InvalidConfigError(f"{key} must be true or false, not {value!r}")
        if key in _INT_KEYS:
            try:
                number = int(value)
            except ValueError:
                raise InvalidConfigError(f"{key} must be an integer, not {value!r}") from None
            if number < 1:
                raise InvalidConfigError(f"{key} must be positive")
        if key == DLQ_TOPIC and value.startswith("__"):
            raise InvalidConfigError(f"{key} may not name an internal topic")
        out[key] = str(value)
    return out
