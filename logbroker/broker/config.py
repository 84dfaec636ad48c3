"""Broker settings: one frozen dataclass, loaded from defaults, a TOML file,
``LOGBROKER_*`` environment variables and command-line flags, in that order.

Keys may be written the Kafka way (``auto.create.topics.enable``) or the
Python way (``auto_create_topics_enable``); both name the same field.

Every integer setting has a valid range (:data:`RANGES`), Kafka's where Kafka
has the setting; a value outside it, or of the wrong type, is refused with
InvalidConfigError naming the setting as the user wrote it: the file key,
the ``LOGBROKER_*`` variable or the command-line flag.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from logbroker.errors import InvalidConfigError

FLUSH_MODES = ("always", "interval", "never")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_OCTAL_MODE = re.compile(r"0?[0-7]{3}")

#: Inclusive ``(lowest, highest)`` of every integer setting (None: no bound), as
#: Kafka's ConfigDef validates the same setting (``atLeast``, ``between``); where
#: a value Kafka takes would break this broker, the bound is tighter and says why.
RANGES: dict[str, tuple[int, int | None]] = {
    "port": (0, 65535),
    "advertised_port": (1, 65535),
    "metrics_port": (0, 65535),
    "schema_registry_port": (0, 65535),
    "console_port": (0, 65535),
    "node_id": (0, _INT32_MAX),  # Kafka refuses a negative node.id too
    "num_partitions": (1, _INT32_MAX),
    "log_max_open_files": (1, _INT32_MAX),
    "log_max_memory_maps": (1, _INT32_MAX),
    "auto_create_topics_max_per_request": (1, _INT32_MAX),
    "auto_create_topics_max_per_second": (1, _INT32_MAX),
    "flush_interval_ms": (1, _INT64_MAX),
    # Kafka: atLeast(1). A frame smaller than 1 KiB cannot hold ordinary requests
    # (ApiVersions with a client id, Metadata, a small Produce): every client fails.
    "socket_request_max_bytes": (1024, _INT32_MAX),
    "max_connections": (1, _INT32_MAX),  # Kafka: atLeast(0); 0 would refuse every client
    "max_connections_per_ip": (1, _INT32_MAX),  # the same
    "connections_max_idle_ms": (1, _INT64_MAX),  # or -1 (see SPECIAL)
    "queued_max_requests": (1, _INT32_MAX),
    "max_incremental_fetch_session_cache_slots": (0, _INT32_MAX),  # Kafka: atLeast(0); 0 = no sessions
    "queued_max_bytes": (1, _INT64_MAX),
    "message_max_bytes": (1, _INT32_MAX),  # Kafka: atLeast(0); 0 refuses every batch
    "log_segment_bytes": (14, _INT32_MAX),  # LegacyRecord.RECORD_OVERHEAD_V0
    "log_roll_ms": (1, _INT64_MAX),
    "log_retention_ms": (0, _INT64_MAX),  # or -1
    "log_retention_bytes": (0, _INT64_MAX),  # or -1
    "log_retention_check_interval_ms": (1, _INT64_MAX),
    "log_index_interval_bytes": (0, _INT32_MAX),
    "sasl_server_max_receive_size": (1024, _INT32_MAX),  # as socket.request.max.bytes
    "sasl_authentication_timeout_ms": (1, _INT32_MAX),
    "max_unauthenticated_connections_per_ip": (1, _INT32_MAX),
    "connection_failed_authentication_delay_ms": (0, _INT32_MAX),
    # Kafka: atLeast(0), but with no pause the cleaner loop spins a core.
    "log_cleaner_backoff_ms": (1, _INT64_MAX),
    "group_min_session_timeout_ms": (1, _INT32_MAX),
    "group_max_session_timeout_ms": (1, _INT32_MAX),
    "group_initial_rebalance_delay_ms": (0, _INT32_MAX),
    "group_consumer_session_timeout_ms": (1, _INT32_MAX),
    "group_consumer_heartbeat_interval_ms": (1, _INT32_MAX),
    "group_consumer_max_size": (1, _INT32_MAX),
    "offsets_retention_minutes": (1, _INT32_MAX),
    "offsets_retention_check_interval_ms": (1, _INT64_MAX),
    "group_share_record_lock_duration_ms": (1000, 3_600_000),
    "group_share_delivery_count_limit": (2, 10),
    "group_share_partition_max_record_locks": (100, 10_000),
    "group_share_heartbeat_interval_ms": (1, _INT32_MAX),
    "group_share_session_timeout_ms": (1, _INT32_MAX),
    "group_share_max_size": (1, 1000),
    "transaction_max_timeout_ms": (1, _INT32_MAX),
    "transactional_id_expiration_ms": (1, _INT32_MAX),
    "transaction_abort_timed_out_transaction_cleanup_interval_ms": (1, _INT32_MAX),
    "transaction_remove_expired_transaction_cleanup_interval_ms": (1, _INT32_MAX),
    "transaction_version": (0, 2),
}
#: Values allowed outside :data:`RANGES`, with what they mean.
SPECIAL: dict[str, dict[int, str]] = {
    "connections_max_idle_ms": {-1: "never"},
    "log_retention_ms": {-1: "keep forever"},
    "log_retention_bytes": {-1: "no size limit"},
}

#: Settings a running broker takes from AlterConfigs on its BROKER resource and
#: keeps in the data dir: the topic-config defaults of Kafka's DynamicLogConfig.
#: Every other setting is read-only (see docs/configuration.md).
DYNAMIC: frozenset[str] = frozenset({
    "log_segment_bytes", "log_roll_ms", "log_retention_ms", "log_retention_bytes", "message_max_bytes",
    "log_index_interval_bytes",
})


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Every broker setting, with Kafka's defaults where Kafka has one."""

    data_dir: str = field(default="./logbroker-data", metadata={"help": "Directory holding the log."})
    data_dir_mode: str = field(
        default="0700",
        metadata={"help": "Permission bits (octal, as a string) of every directory the broker creates: data.dir "
                          "itself and the partition directories in it. The owner must keep 0700; the umask "
                          "may still remove bits."},
    )
    data_file_mode: str = field(
        default="0600",
        metadata={"help": "Permission bits (octal, as a string) of every file the broker writes in data.dir: "
                          "segments, indexes, checkpoints, topics.json, meta.properties, producer-id-block, "
                          "snapshots, users.json, acls.json. The owner must keep 0600."},
    )
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
    schema_registry_port: int | None = field(
        default=None,
        metadata={"help": "Serve a schema registry (Confluent's REST API, schemas kept in the _schemas topic) over "
                          "HTTP on this port (unset = off; 0 = any free port)."},
    )
    schema_registry_host: str = field(default="127.0.0.1",
                                      metadata={"help": "Address the schema registry binds."})
    console_port: int | None = field(
        default=None,
        metadata={"help": "Serve the web console (topics, messages, groups, queues, schemas) over HTTP on this "
                          "port (unset = off; 0 = any free port)."},
    )
    console_host: str = field(default="127.0.0.1", metadata={"help": "Address the web console binds."})
    console_read_only: bool = field(
        default=False, metadata={"help": "Turn every action of the web console off (browsing only)."},
    )
    node_id: int = field(
        default=0,
        metadata={"help": "This broker's id in Metadata responses; kept in meta.properties, and the broker refuses "
                          "to start on data of another node id."},
    )
    cluster_id: str | None = field(
        default=None,
        metadata={"help": "Cluster id; generated once and kept in meta.properties when unset. When set, it must "
                          "match the stored one."},
    )
    auto_create_topics_enable: bool = field(
        default=True, metadata={"help": "Create a topic when a client asks for an unknown one."}
    )
    num_partitions: int = field(default=1, metadata={"help": "Partitions of an auto-created topic."})
    log_max_open_files: int = field(
        default=1024,
        metadata={"help": "Segment files kept open for writing at once, least recently used closed first: idle "
                          "partitions hold no descriptor (see docs/operations.md for the descriptor budget)."},
    )
    log_max_memory_maps: int = field(
        default=16384,
        metadata={"help": "Memory maps of segments and indexes kept at once, least recently read dropped first "
                          "(and made again on the next read): idle partitions hold none. Never more than a "
                          "quarter of vm.max_map_count (see docs/operations.md)."},
    )
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
    max_incremental_fetch_session_cache_slots: int = field(
        default=1000,
        metadata={"help": "Most incremental fetch sessions (KIP-227, Fetch v7+) the broker keeps. A consumer with "
                          "a session sends and gets only the partitions that changed, so many idle partitions "
                          "cost little per fetch. When full, a new session evicts one idle over two minutes, "
                          "else the smallest session older than two minutes if the new one has more partitions, "
                          "else it is answered without a session. 0 = no sessions (every fetch lists and reads "
                          "all its partitions)."},
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
    group_consumer_session_timeout_ms: int = field(
        default=45_000,
        metadata={"help": "A consumer-group member (KIP-848 protocol) that sends no heartbeat for this long is removed."},
    )
    group_consumer_heartbeat_interval_ms: int = field(
        default=5000, metadata={"help": "Heartbeat interval the broker tells consumer-group members (KIP-848 protocol)."}
    )
    group_consumer_max_size: int = field(
        default=_INT32_MAX, metadata={"help": "Most members one consumer group (KIP-848 protocol) may have."}
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
    transaction_max_timeout_ms: int = field(
        default=900_000, metadata={"help": "Largest transaction timeout a transactional producer may ask for."}
    )
    transactional_id_expiration_ms: int = field(
        default=7 * 24 * 3600 * 1000,
        metadata={"help": "A transactional id idle this long outside a transaction is forgotten."},
    )
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = field(
        default=10_000,
        metadata={"help": "When aborting a timed-out transaction fails, how long until it is tried again "
                          "(timeouts themselves fire at their deadline)."},
    )
    transaction_remove_expired_transaction_cleanup_interval_ms: int = field(
        default=3_600_000, metadata={"help": "How often expired transactional ids are removed."}
    )
    transaction_version: int = field(
        default=2,
        metadata={"help": "The transaction protocol version the coordinator runs at (Kafka's transaction.version "
                          "feature): 2 bumps the epoch of a fenced or timed-out transaction's abort."},
    )

    def __post_init__(self) -> None:
        _check(lambda name: getattr(self, name), kafka_name)

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

    @property
    def dir_mode(self) -> int:
        """``data_dir_mode`` as permission bits."""
        return int(self.data_dir_mode, 8)

    @property
    def file_mode(self) -> int:
        """``data_file_mode`` as permission bits."""
        return int(self.data_file_mode, 8)

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
        override_names: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Merge defaults < file < environment < overrides; None overrides are ignored.

        ``override_names`` says how the user wrote each override (its
        command-line flag, say), for error messages; by default its key.
        Raises InvalidConfigError naming the bad setting as the user wrote it.
        """
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        if config_file is not None:
            try:
                with open(config_file, "rb") as fh:
                    raw = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise InvalidConfigError(f"cannot read config file {config_file}: {exc}") from exc
            for name, (key, value) in _normalize(raw, source=config_file).items():
                values[name], labels[name] = value, f"{key} in {config_file}"
        env = os.environ if environ is None else environ
        prefix = "LOGBROKER_"
        for key, value in env.items():
            if key.startswith(prefix) and key != "LOGBROKER_CONFIG":
                name = key[len(prefix) :].lower()
                if name in cls.field_names():
                    values[name], labels[name] = value, key
        if overrides:
            given = {k: v for k, v in overrides.items() if v is not None}
            for name, (key, value) in _normalize(given, source="options").items():
                values[name], labels[name] = value, (override_names or {}).get(key, key)

        def label(name: str) -> str:
            return labels.get(name, kafka_name(name))

        coerced = {name: _coerce(name, value, label(name)) for name, value in values.items()}
        defaults = cls()
        _check(lambda name: coerced[name] if name in coerced else getattr(defaults, name), label)
        return cls(**coerced)


def with_settings(config: BrokerConfig, values: Mapping[str, Any], *, source: str) -> BrokerConfig:
    """``config`` with ``values`` (Kafka or Python names, strings coerced as in a
    file) laid over it. Raises InvalidConfigError naming the bad setting and
    ``source``, for an unknown name, a wrong kind or a value out of range."""
    coerced = {name: _coerce(name, value, key) for name, (key, value) in _normalize(values, source=source).items()}
    return dataclasses.replace(config, **coerced)


def kafka_name(name: str) -> str:
    """The Kafka spelling of a field name: ``log_roll_ms`` -> ``log.roll.ms``."""
    return name.replace("_", ".")


def _check(get: Callable[[str], Any], label: Callable[[str], str]) -> None:
    """Raise InvalidConfigError for the first setting out of its range or kind;
    ``get(name)`` is a field's value, ``label(name)`` how the user wrote it."""
    for name, (lo, hi) in RANGES.items():
        if name not in _FIELD_TYPES:
            continue
        value = get(name)
        if value is None and _FIELD_TYPES[name] == "int | None":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidConfigError(f"{label(name)} must be an integer, not {value!r}")
        special = SPECIAL.get(name, {})
        if value in special or (lo <= value and (hi is None or value <= hi)):
            continue
        allowed = f"at least {lo}" if hi is None or hi >= _INT32_MAX else f"between {lo} and {hi}"
        extra = "".join(f" or {v} ({meaning})" for v, meaning in special.items())
        raise InvalidConfigError(f"{label(name)} must be {allowed}{extra}, not {value}")
    if get("group_max_session_timeout_ms") < get("group_min_session_timeout_ms"):
        raise InvalidConfigError(
            f"{label('group_max_session_timeout_ms')} must not be below {label('group_min_session_timeout_ms')}"
        )
    if get("group_consumer_heartbeat_interval_ms") >= get("group_consumer_session_timeout_ms"):
        raise InvalidConfigError(
            f"{label('group_consumer_heartbeat_interval_ms')} must be below {label('group_consumer_session_timeout_ms')}"
        )
    if get("group_share_heartbeat_interval_ms") >= get("group_share_session_timeout_ms"):
        raise InvalidConfigError(
            f"{label('group_share_heartbeat_interval_ms')} must be below {label('group_share_session_timeout_ms')}"
        )
    protocol = get("security_protocol")
    if protocol not in SECURITY_PROTOCOLS:
        raise InvalidConfigError(
            f"{label('security_protocol')} must be one of {', '.join(SECURITY_PROTOCOLS)}, not {protocol!r}"
        )
    mechanisms = {m.strip() for m in str(get("sasl_enabled_mechanisms")).split(",") if m.strip()}
    unknown = mechanisms - set(SASL_MECHANISMS)
    if unknown:
        raise InvalidConfigError(
            f"{label('sasl_enabled_mechanisms')} has unsupported SASL mechanisms: {', '.join(sorted(unknown))}"
        )
    if protocol.endswith("SSL") and not (get("ssl_certfile") and get("ssl_keyfile")):
        raise InvalidConfigError(f"{label('security_protocol')}={protocol} needs ssl.certfile and ssl.keyfile")
    flush = get("flush")
    if flush not in FLUSH_MODES:
        raise InvalidConfigError(f"{label('flush')} must be one of {', '.join(FLUSH_MODES)}, not {flush!r}")
    for name, owner in (("data_dir_mode", 0o700), ("data_file_mode", 0o600)):
        value = get(name)
        if not isinstance(value, str) or not _OCTAL_MODE.fullmatch(value):
            raise InvalidConfigError(
                f"{label(name)} must be octal permission bits written as a string, e.g. \"{owner:04o}\", "
                f"not {value!r}"
            )
        if int(value, 8) & owner != owner:
            raise InvalidConfigError(
                f"{label(name)}={value} takes the owner's access away: the broker must read and write its "
                f"own data (include {owner:04o})"
            )


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


def _normalize(raw: Mapping[str, Any], *, source: str) -> dict[str, tuple[str, Any]]:
    """field name -> (the key as written, value)."""
    out = {}
    names = BrokerConfig.field_names()
    for key, value in _flatten(raw).items():
        name = key.replace(".", "_").replace("-", "_").lower()
        if name not in names:
            raise InvalidConfigError(f"unknown setting {key!r} in {source}")
        out[name] = (key, value)
    return out


def _coerce(name: str, value: Any, label: str) -> Any:
    kind = _FIELD_TYPES[name]
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
        raise InvalidConfigError(f"bad value {value!r} for {label}") from exc
    return value


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(BrokerConfig)}
