"""Broker settings: one frozen dataclass, loaded from defaults, a TOML file,
``LOGBROKER_*`` environment variables and command-line flags, in that order.

Keys may be written the Kafka way (``auto.create.topics.enable``) or the
Python way (``auto_create_topics_enable``); both name the same field.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from logbroker.errors import InvalidConfigError

FLUSH_MODES = ("always", "interval", "never")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Every broker setting, with Kafka's defaults where Kafka has one."""

    data_dir: str = field(default="./logbroker-data", metadata={"help": "Directory holding the log."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address the listener binds."})
    port: int = field(default=9092, metadata={"help": "Port the listener binds (0 = any free port)."})
    advertised_host: str | None = field(
        default=None, metadata={"help": "Host clients are told to connect to (default: host)."}
    )
    advertised_port: int | None = field(
        default=None, metadata={"help": "Port clients are told to connect to (default: the bound port)."}
    )
    metrics_port: int | None = field(
        default=None,
        metadata={"help": "Serve Prometheus metrics over HTTP on this port (unset = off; 0 = any free port)."},
    )
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "Address the metrics endpoint binds."})
    node_id: int = field(default=0, metadata={"help": "This broker's id in Metadata responses."})
    cluster_id: str | None = field(
        default=None, metadata={"help": "Cluster id; generated once and kept in the data dir when unset."}
    )
    auto_create_topics_enable: bool = field(
        default=True, metadata={"help": "Create a topic when a client asks for an unknown one."}
    )
    num_partitions: int = field(default=1, metadata={"help": "Partitions of an auto-created topic."})
    auto_create_topics_max_per_request: int = field(
        default=50,
        metadata={"help": "Most topics one request (Metadata, Produce...) may auto-create; the rest are refused "
                          "with THROTTLING_QUOTA_EXCEEDED."},
    )
    auto_create_topics_max_per_second: int = field(
        default=100,
        metadata={"help": "Most topics the broker auto-creates per second (bursts up to this many); beyond it, "
                          "THROTTLING_QUOTA_EXCEEDED."},
    )
    delete_topic_enable: bool = field(default=True, metadata={"help": "Allow DeleteTopics."})
    flush: str = field(
        default="interval",
        metadata={"help": "Durability: always (fsync before ack), interval, or never (OS decides)."},
    )
    flush_interval_ms: int = field(default=1000, metadata={"help": "fsync period with flush=interval."})
    socket_request_max_bytes: int = field(
        default=100 * 1024 * 1024, metadata={"help": "Largest request frame accepted; larger closes the connection."}
    )
    max_connections: int = field(
        default=10_000,
        metadata={"help": "Most client connections at once; the broker closes any beyond it as soon as it accepts "
                          "them (an idle connection costs about 7 KiB and one file descriptor)."},
    )
    max_connections_per_ip: int = field(
        default=1000, metadata={"help": "Most connections at once from one client address; more are closed at once."}
    )
    connections_max_idle_ms: int = field(
        default=600_000,
        metadata={"help": "Close a connection that sends nothing while it owes no response, or that takes no "
                          "response bytes, for this long (-1 = never)."},
    )
    queued_max_requests: int = field(
        default=500,
        metadata={"help": "Requests of one connection handled before their responses must go to the socket "
                          "(the connection reads nothing more until they have)."},
    )
    queued_max_bytes: int = field(
        default=256 * 1024,
        metadata={"help": "Request bytes one connection reads at a time, and response bytes it holds before "
                          "sending; a single larger request or response is held whole."},
    )
    message_max_bytes: int = field(default=1048588, metadata={"help": "Default max.message.bytes of topics."})
    log_segment_bytes: int = field(default=1 << 30, metadata={"help": "Default segment.bytes of topics."})
    log_roll_ms: int = field(default=7 * 24 * 3600 * 1000, metadata={"help": "Default segment.ms of topics."})
    log_retention_ms: int = field(
        default=7 * 24 * 3600 * 1000, metadata={"help": "Default retention.ms of topics (-1 = forever)."}
    )
    log_retention_bytes: int = field(default=-1, metadata={"help": "Default retention.bytes of topics (-1 = no limit)."})
    log_retention_check_interval_ms: int = field(
        default=300_000, metadata={"help": "How often retention runs."}
    )
    log_index_interval_bytes: int = field(default=4096, metadata={"help": "Bytes between sparse index entries."})
    security_protocol: str = field(
        default="PLAINTEXT",
        metadata={"help": "Listener security: PLAINTEXT, SASL_PLAINTEXT (login required), SSL or SASL_SSL."},
    )
    sasl_enabled_mechanisms: str = field(
        default="PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        metadata={"help": "SASL mechanisms offered, comma-separated; users come from `logbroker users`."},
    )
    sasl_server_max_receive_size: int = field(
        default=512 * 1024,
        metadata={"help": "Largest request frame before a connection has authenticated on a SASL listener; "
                          "larger closes the connection."},
    )
    sasl_authentication_timeout_ms: int = field(
        default=10_000,
        metadata={"help": "Close a connection to a SASL listener that has not authenticated within this long."},
    )
    max_unauthenticated_connections_per_ip: int = field(
        default=100,
        metadata={"help": "Most connections at once from one client address that have not authenticated yet "
                          "(SASL listeners); more are closed at once."},
    )
    connection_failed_authentication_delay_ms: int = field(
        default=100,
        metadata={"help": "Delay before answering a failed login and closing the connection (slows guessing; "
                          "other connections are not delayed)."},
    )
    ssl_certfile: str | None = field(default=None, metadata={"help": "PEM certificate chain of an SSL listener."})
    ssl_keyfile: str | None = field(default=None, metadata={"help": "PEM private key of an SSL listener."})
    authorizer_enable: bool = field(
        default=False,
        metadata={"help": "Check ACLs (`logbroker acls`): a principal may do only what an ACL allows."},
    )
    super_users: str = field(
        default="", metadata={"help": "Principals that pass every ACL check, e.g. User:admin (comma-separated)."}
    )
    log_cleaner_enable: bool = field(
        default=True, metadata={"help": "Compact topics with cleanup.policy=compact in the background."}
    )
    log_cleaner_backoff_ms: int = field(
        default=15_000, metadata={"help": "Pause between log cleaner passes over the compacted topics."}
    )
    group_min_session_timeout_ms: int = field(
        default=6000, metadata={"help": "Smallest session timeout a group member may ask for."}
    )
    group_max_session_timeout_ms: int = field(
        default=1_800_000, metadata={"help": "Largest session timeout a group member may ask for."}
    )
    group_initial_rebalance_delay_ms: int = field(
        default=250,
        metadata={
            "help": "How long an empty group waits for more members before its first generation, "
            "extended by the same delay while members keep arriving (Kafka's default is 3000)."
        },
    )
    offsets_retention_minutes: int = field(
        default=7 * 24 * 60, metadata={"help": "How long committed offsets of an empty group are kept."}
    )
    offsets_retention_check_interval_ms: int = field(
        default=600_000, metadata={"help": "How often expired offsets and empty groups are removed."}
    )
    group_share_record_lock_duration_ms: int = field(
        default=30_000, metadata={"help": "How long a share-group consumer holds the records it fetched."}
    )
    group_share_delivery_count_limit: int = field(
        default=5, metadata={"help": "Deliveries of a record to a share group before it is archived."}
    )
    group_share_partition_max_record_locks: int = field(
        default=2000, metadata={"help": "In-flight records per share-partition (beyond them, fetches get nothing new)."}
    )
    group_share_heartbeat_interval_ms: int = field(
        default=5000, metadata={"help": "Heartbeat interval the broker tells share-group members."}
    )
    group_share_session_timeout_ms: int = field(
        default=45_000, metadata={"help": "A share-group member that sends no heartbeat for this long is removed."}
    )
    group_share_max_size: int = field(default=200, metadata={"help": "Most members one share group may have."})

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise InvalidConfigError(
                f"security.protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, not {self.security_protocol!r}"
            )
        unknown = set(self.sasl_mechanisms) - set(SASL_MECHANISMS)
        if unknown:
            raise InvalidConfigError(f"unsupported SASL mechanisms: {', '.join(sorted(unknown))}")
        if self.uses_ssl and not (self.ssl_certfile and self.ssl_keyfile):
            raise InvalidConfigError(f"{self.security_protocol} needs ssl.certfile and ssl.keyfile")
        if self.flush not in FLUSH_MODES:
            raise InvalidConfigError(f"flush must be one of {', '.join(FLUSH_MODES)}, not {self.flush!r}")
        if not 0 <= self.port <= 65535:
            raise InvalidConfigError(f"port {self.port} out of range")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise InvalidConfigError(f"metrics_port {self.metrics_port} out of range")
        if self.num_partitions < 1:
            raise InvalidConfigError("num.partitions must be at least 1")
        for name in (
            "flush_interval_ms", "socket_request_max_bytes", "message_max_bytes", "log_segment_bytes",
            "group_min_session_timeout_ms", "offsets_retention_minutes", "offsets_retention_check_interval_ms",
            "max_connections", "max_connections_per_ip", "queued_max_requests", "queued_max_bytes",
            "auto_create_topics_max_per_request", "auto_create_topics_max_per_second",
        ):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        if self.connections_max_idle_ms <= 0 and self.connections_max_idle_ms != -1:
            raise InvalidConfigError("connections_max_idle_ms must be positive or -1 (never)")
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms:
            raise InvalidConfigError("group_max_session_timeout_ms must not be below group_min_session_timeout_ms")
        for name in (
            "group_share_record_lock_duration_ms", "group_share_partition_max_record_locks",
            "group_share_heartbeat_interval_ms", "group_share_session_timeout_ms", "group_share_max_size",
        ):
            if getattr(self, name) <= 0:
                raise InvalidConfigError(f"{name} must be positive")
        if self.group_share_delivery_count_limit < 1:
            raise InvalidConfigError("group_share_delivery_count_limit must be at least 1")
        if self.group_initial_rebalance_delay_ms < 0:
            raise InvalidConfigError("group_initial_rebalance_delay_ms must not be negative")

    @property
    def sasl_mechanisms(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.sasl_enabled_mechanisms.split(",") if m.strip())

    @property
    def requires_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @property
    def super_user_list(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.super_users.split(",") if u.strip())

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def load(
        cls,
        *,
        config_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> BrokerConfig:
        """Merge defaults < file < environment < overrides; None overrides are ignored.

        Raises InvalidConfigError naming the bad key or value.
        """
        values: dict[str, Any] = {}
        if config_file is not None:
            try:
                with open(config_file, "rb") as fh:
                    raw = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise InvalidConfigError(f"cannot read config file {config_file}: {exc}") from exc
            values.update(_normalize(raw, source=config_file))
        env = os.environ if environ is None else environ
        prefix = "LOGBROKER_"
        for key, value in env.items():
            if key.startswith(prefix) and key != "LOGBROKER_CONFIG":
                name = key[len(prefix) :].lower()
                if name in cls.field_names():
                    values[name] = value
        if overrides:
            values.update(_normalize({k: v for k, v in overrides.items() if v is not None}, source="options"))
        return cls(**{name: _coerce(name, value) for name, value in values.items()})


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # TOML reads an unquoted ``num.partitions = 3`` as a table {"num": {"partitions": 3}}.
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _normalize(raw: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    out = {}
    names = BrokerConfig.field_names()
    for key, value in _flatten(raw).items():
        name = key.replace(".", "_").replace("-", "_").lower()
        if name not in names:
            raise InvalidConfigError(f"unknown setting {key!r} in {source}")
        out[name] = value
    return out


def _coerce(name: str, value: Any) -> Any:
    kind = BrokerConfig.__dataclass_fields__[name].type
    if not isinstance(value, str) or kind in ("str", "str | None"):
        return value
    try:
        if kind in ("int", "int | None"):
            return int(value)
        if kind == "bool":
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except ValueError as exc:
        raise InvalidConfigError(f"bad value {value!r} for {name}") from exc
    return value
