"""Log and log-manager configuration: frozen values validated on construction.

:class:`LogConfig` holds the per-topic settings the storage engine acts on,
named after Kafka's topic configs (``segment.bytes`` -> ``segment_bytes``).
Topic configs that the engine stores but does not act on (``compression.type``,
``min.insync.replicas``...) travel in ``LogConfig.extra`` as strings, so the
broker can answer DescribeConfigs. :data:`TOPIC_CONFIG_DEFAULTS` is the table of
every accepted Kafka topic config name with its Kafka default; a name outside it
is rejected with InvalidConfigError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from logbroker.errors import InvalidConfigError

__all__ = [
    "DEFAULT_DIR_MODE",
    "DEFAULT_FILE_MODE",
    "FlushMode",
    "LogConfig",
    "LogManagerConfig",
    "TOPIC_CONFIG_DEFAULTS",
]

FlushMode = Literal["always", "interval", "never"]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_DAY_MS = 24 * 60 * 60 * 1000

#: Permission bits of the directories and files the engine creates: topic data
#: is for the broker's user only (the process umask may still remove bits).
DEFAULT_DIR_MODE = 0o700
DEFAULT_FILE_MODE = 0o600

#: Every topic config name Kafka 4.x accepts, with its default as a string.
TOPIC_CONFIG_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "compression.gzip.level": "-1",
    "compression.lz4.level": "9",
    "compression.zstd.level": "3",
    "delete.retention.ms": str(_DAY_MS),
    "file.delete.delay.ms": "60000",
    "flush.messages": str(_INT64_MAX),
    "flush.ms": str(_INT64_MAX),
    "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "4096",
    "leader.replication.throttled.replicas": "",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": str(_INT64_MAX),
    "max.message.bytes": "1048588",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": str(_INT64_MAX),
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "min.insync.replicas": "1",
    "preallocate": "false",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "false",
    "retention.bytes": "-1",
    "retention.ms": str(7 * _DAY_MS),
    "segment.bytes": str(1024**3),
    "segment.index.bytes": str(10 * 1024**2),
    "segment.jitter.ms": "0",
    "segment.ms": str(7 * _DAY_MS),
    "unclean.leader.election.enable": "false",
}

# Kafka config name -> LogConfig field, for the settings the engine acts on.
_FIELD_OF: dict[str, str] = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "segment.index.bytes": "segment_index_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "max.message.bytes": "max_message_bytes",
    "message.timestamp.type": "message_timestamp_type",
    "cleanup.policy": "cleanup_policy",
}

_TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
_CLEANUP_POLICIES = ("delete", "compact")
_COMPRESSION_TYPES = ("uncompressed", "gzip", "snappy", "lz4", "zstd", "producer")


def _check_int(name: str, value: object, lo: int, hi: int = _INT64_MAX) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidConfigError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidConfigError(f"{name}={value} is outside [{lo}, {hi}]")


def _check_mode(name: str, value: object, owner: int) -> None:
    _check_int(name, value, 0, 0o777)
    assert isinstance(value, int)  # _check_int refused anything else
    if value & owner != owner:
        raise InvalidConfigError(
            f"{name}={value:04o} takes the owner's access away; the broker must read and write its own "
            f"data (include {owner:04o})"
        )


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-topic log settings (Kafka topic config names in the comments).

    ``extra`` holds the other accepted topic configs, as sorted
    ``(name, value)`` string pairs; the engine stores but ignores them.
    ``dir_mode`` and ``file_mode`` are not topic configs: they are the
    permission bits of every directory and file created for the log, set
    broker-wide in ``LogManagerConfig.log`` and kept by
    :meth:`from_topic_configs` (the owner must keep read and write access).
    Raises InvalidConfigError on construction when a value is out of range.
    """

    segment_bytes: int = 1024**3  # segment.bytes
    segment_ms: int = 7 * _DAY_MS  # segment.ms
    segment_index_bytes: int = 10 * 1024**2  # segment.index.bytes
    index_interval_bytes: int = 4096  # index.interval.bytes
    retention_ms: int = 7 * _DAY_MS  # retention.ms, -1 = keep forever
    retention_bytes: int = -1  # retention.bytes, -1 = no size limit
    max_message_bytes: int = 1048588  # max.message.bytes
    message_timestamp_type: str = "CreateTime"  # message.timestamp.type
    cleanup_policy: str = "delete"  # cleanup.policy
    extra: tuple[tuple[str, str], ...] = field(default=())
    dir_mode: int = DEFAULT_DIR_MODE
    file_mode: int = DEFAULT_FILE_MODE

    def __post_init__(self) -> None:
        _check_mode("dir_mode", self.dir_mode, 0o700)
        _check_mode("file_mode", self.file_mode, 0o600)
        _check_int("segment.bytes", self.segment_bytes, 14, _INT32_MAX)
        _check_int("segment.ms", self.segment_ms, 1)
        _check_int("segment.index.bytes", self.segment_index_bytes, 4, _INT32_MAX)
        _check_int("index.interval.bytes", self.index_interval_bytes, 0, _INT32_MAX)
        _check_int("retention.ms", self.retention_ms, -1)
        _check_int("retention.bytes", self.retention_bytes, -1)
        _check_int("max.message.bytes", self.max_message_bytes, 0, _INT32_MAX)
        if self.message_timestamp_type not in _TIMESTAMP_TYPES:
            raise InvalidConfigError(
                f"message.timestamp.type must be one of {_TIMESTAMP_TYPES}, "
                f"got {self.message_timestamp_type!r}"
            )
        policies = [p.strip() for p in self.cleanup_policy.split(",")]
        if not policies or any(p not in _CLEANUP_POLICIES for p in policies):
            raise InvalidConfigError(
                f"cleanup.policy must be a list of {_CLEANUP_POLICIES}, got {self.cleanup_policy!r}"
            )
        for name, value in self.extra:
            if name not in TOPIC_CONFIG_DEFAULTS or name in _FIELD_OF:
                raise InvalidConfigError(f"unknown topic config {name!r}")
            if not isinstance(value, str):
                raise InvalidConfigError(f"{name} must be a string, got {value!r}")
        extra = dict(self.extra)
        for name in ("delete.retention.ms", "min.compaction.lag.ms"):
            if name in extra:
                try:
                    _check_int(name, int(extra[name]), 0)
                except ValueError:
                    raise InvalidConfigError(f"{name} must be an integer, got {extra[name]!r}") from None
        if "min.cleanable.dirty.ratio" in extra:
            try:
                ratio = float(extra["min.cleanable.dirty.ratio"])
            except ValueError:
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                raise InvalidConfigError(
                    f"min.cleanable.dirty.ratio must be in [0, 1], got {extra['min.cleanable.dirty.ratio']!r}"
                )
        codec = extra.get("compression.type")
        if codec is not None and codec not in _COMPRESSION_TYPES:
            raise InvalidConfigError(
                f"compression.type must be one of {_COMPRESSION_TYPES}, got {codec!r}"
            )

    @property
    def log_append_time(self) -> bool:
        """True when the broker stamps batches with its own clock."""
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def compacts(self) -> bool:
        """True when the log cleaner keeps only the latest record per key."""
        return "compact" in self.cleanup_policy

    def _extra_number(self, name: str) -> float:
        """The number an extra topic config holds (an int stays exact: float only above 2**53)."""
        raw = dict(self.extra).get(name, TOPIC_CONFIG_DEFAULTS[name])
        try:
            return int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise InvalidConfigError(f"{name} must be a number, got {raw!r}") from None

    def _extra_int(self, name: str) -> int:
        raw = dict(self.extra).get(name, TOPIC_CONFIG_DEFAULTS[name])
        try:
            return int(raw)
        except ValueError:
            raise InvalidConfigError(f"{name} must be a number, got {raw!r}") from None

    @property
    def delete_retention_ms(self) -> int:
        """delete.retention.ms: how long tombstones survive compaction."""
        return self._extra_int("delete.retention.ms")

    @property
    def min_compaction_lag_ms(self) -> int:
        """min.compaction.lag.ms: records younger than this are never compacted."""
        return self._extra_int("min.compaction.lag.ms")

    @property
    def min_cleanable_dirty_ratio(self) -> float:
        """min.cleanable.dirty.ratio: share of uncleaned bytes that triggers cleaning."""
        return float(self._extra_number("min.cleanable.dirty.ratio"))

    @property
    def deletes(self) -> bool:
        """True when retention may delete segments (``delete`` in cleanup.policy)."""
        return "delete" in self.cleanup_policy

    @classmethod
    def from_topic_configs(
        cls, configs: dict[str, str] | None = None, defaults: LogConfig | None = None
    ) -> LogConfig:
        """Build a config from Kafka-named string settings laid over ``defaults``.

        Raises InvalidConfigError for an unknown name or a bad value.
        """
        base = defaults if defaults is not None else cls()
        changes: dict[str, object] = {}
        extra = dict(base.extra)
        for name, raw in (configs or {}).items():
            if name not in TOPIC_CONFIG_DEFAULTS:
                raise InvalidConfigError(f"unknown topic config {name!r}")
            if raw is None:
                raise InvalidConfigError(f"topic config {name!r} has no value")
            value = str(raw).strip()
            attr = _FIELD_OF.get(name)
            if attr is None:
                extra[name] = value
            elif isinstance(getattr(base, attr), int):
                try:
                    changes[attr] = int(value)
                except ValueError:
                    raise InvalidConfigError(f"{name} must be an integer, got {value!r}") from None
            else:
                changes[attr] = value
        changes["extra"] = tuple(sorted(extra.items()))
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]  # each value was checked against its field's type above

    def to_topic_configs(self) -> dict[str, str]:
        """Every known topic config name with this config's effective value."""
        out = dict(TOPIC_CONFIG_DEFAULTS)
        for name, attr in _FIELD_OF.items():
            out[name] = str(getattr(self, attr))
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class LogManagerConfig:
    """Data-directory-wide settings.

    ``flush``: ``"always"`` (the broker flushes each append before acking),
    ``"interval"`` (``flush_dirty()`` every ``flush_interval_ms``) or
    ``"never"`` (only at clean shutdown); see docs/durability.md.
    ``log``: the defaults every topic's overrides are laid over.
    """

    flush: FlushMode = "interval"
    flush_interval_ms: int = 1000
    log: LogConfig = field(default_factory=LogConfig)
    # Write descriptors of active segments kept open at once (least recently
    # used closed first): the whole log's budget of open files.
    max_open_files: int = 1024
    # Memory maps of segments and indexes kept at once (least recently read
    # dropped first), under Linux's vm.max_map_count.
    max_memory_maps: int = 16384

    def __post_init__(self) -> None:
        if self.max_open_files < 1:
            raise InvalidConfigError(f"log.max.open.files must be at least 1, got {self.max_open_files}")
        if self.max_memory_maps < 1:
            raise InvalidConfigError(f"log.max.memory.maps must be at least 1, got {self.max_memory_maps}")
        if self.flush not in ("always", "interval", "never"):
            raise InvalidConfigError(f"flush must be always, interval or never, got {self.flush!r}")
        _check_int("flush_interval_ms", self.flush_interval_ms, 1)
        if not isinstance(self.log, LogConfig):
            raise InvalidConfigError(f"log must be a LogConfig, got {self.log!r}")
