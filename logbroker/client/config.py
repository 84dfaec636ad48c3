"""Client settings: frozen dataclasses validated once, in ``__post_init__`` (docs/contributing.md, convention 5).

Names follow Kafka's with underscores (``linger_ms`` is ``linger.ms``);
defaults follow the Java client except where noted. Every wait the client
does is bounded by one of these limits, so nothing hangs forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self

from logbroker.errors import InvalidConfigError
from logbroker.records import Compression

__all__ = ["SASL_MECHANISMS", "SECURITY_PROTOCOLS", "AdminConfig", "ClientConfig", "ConsumerConfig", "ProducerConfig",
           "parse_bootstrap"]

_ACKS = {"all": -1, "-1": -1, "1": 1, "0": 0, -1: -1, 1: 1, 0: 0}
PARTITIONERS = ("xxhash", "murmur2", "crc32")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")


def parse_bootstrap(bootstrap: str | list[str] | tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """``"h1:9092,h2"`` (or a list) -> ``(("h1", 9092), ("h2", 9092))``.

    :raises InvalidConfigError: empty, or a port that is not a number.
    """
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":") or "9092"
        else:
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = item, "9092"
        try:
            out.append((host, int(port)))
        except ValueError:
            raise InvalidConfigError(f"bootstrap address {item!r} has no valid port") from None
    if not out:
        raise InvalidConfigError("bootstrap names no broker")
    return tuple(out)


def _positive(obj: Any, *names: str, zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value < 0 or (value == 0 and not zero):
            raise InvalidConfigError(f"{name} must be a {'non-negative' if zero else 'positive'} int, got {value!r}")


def _choice(obj: Any, name: str, allowed: tuple[str, ...]) -> str:
    """The setting ``name`` upper-cased (stored so) if it is one of ``allowed``."""
    value = getattr(obj, name)
    if not isinstance(value, str) or value.upper() not in allowed:
        raise InvalidConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    object.__setattr__(obj, name, value.upper())
    return value.upper()


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Settings every client shares."""

    bootstrap: str = "localhost:9092"
    client_id: str = "logbroker-python"
    request_timeout_ms: int = 30_000
    """Longest wait for one answer; the connection is closed when it expires."""
    connect_timeout_ms: int = 10_000
    metadata_max_age_ms: int = 300_000
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1_000
    max_response_bytes: int = 200 * 1024 * 1024
    """Largest response frame accepted (a fetch answer is bounded by ``fetch_max_bytes``)."""
    bootstrap_timeout_ms: int | None = None
    """How long a metadata refresh keeps retrying while no broker has ever answered
    (None: ``request_timeout_ms``); an unreachable cluster is reported after this long."""
    security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (login, no TLS) or SASL_SSL (login over TLS); any case."""
    sasl_mechanism: str = "PLAIN"
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols only)."""
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    """PEM file of the CAs that sign the broker's certificate (None: the system's CAs)."""
    ssl_certfile: str | None = None
    """PEM client certificate (may hold the key too), for brokers that ask for one."""
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    """Check that the broker's certificate names the host of its address (the chain is always checked)."""

    def __post_init__(self) -> None:
        parse_bootstrap(self.bootstrap)
        _positive(self, "request_timeout_ms", "connect_timeout_ms", "metadata_max_age_ms",
                  "retry_backoff_max_ms", "max_response_bytes")
        _positive(self, "retry_backoff_ms", zero=True)
        if self.bootstrap_timeout_ms is not None:
            _positive(self, "bootstrap_timeout_ms")
        self._check_security()

    def _check_security(self) -> None:
        protocol = _choice(self, "security_protocol", SECURITY_PROTOCOLS)
        _choice(self, "sasl_mechanism", SASL_MECHANISMS)
        for name in ("sasl_username", "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise InvalidConfigError(f"{name} must be a string or None, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.ssl_check_hostname, bool):
            raise InvalidConfigError(f"ssl_check_hostname must be True or False, got {self.ssl_check_hostname!r}")
        if self.uses_sasl:
            missing = [n for n, v in (("sasl_username", self.sasl_username), ("sasl_password", self.sasl_password))
                       if v is None or (n == "sasl_username" and not v)]
            if missing:
                raise InvalidConfigError(f"security_protocol={protocol} logs in and needs sasl_username and "
                                         f"sasl_password; missing: {', '.join(missing)}")
        elif self.sasl_username is not None or self.sasl_password is not None:
            # Kafka would ignore them and the broker would drop the connection without saying why.
            raise InvalidConfigError(f"sasl_username/sasl_password are set but security_protocol={protocol} "
                                     "does not log in: use SASL_PLAINTEXT or SASL_SSL")
        files = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, n) is not None]
        if files and not self.uses_ssl:
            raise InvalidConfigError(f"{', '.join(files)} set but security_protocol={protocol} does not use TLS: "
                                     "use SSL or SASL_SSL")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise InvalidConfigError("ssl_keyfile needs ssl_certfile (the client certificate it belongs to)")

    @property
    def uses_ssl(self) -> bool:
        """True for SSL and SASL_SSL: connections are TLS."""
        return self.security_protocol.endswith("SSL")

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL: every connection logs in."""
        return self.security_protocol.startswith("SASL_")

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        return parse_bootstrap(self.bootstrap)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped."""
        ms = min(self.retry_backoff_max_ms, self.retry_backoff_ms * (2 ** max(0, attempt - 1)))
        return ms / 1000

    @classmethod
    def from_options(cls, bootstrap: str | None, options: dict[str, Any]) -> Self:
        """Build from keyword options; unknown names raise InvalidConfigError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise InvalidConfigError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
        if bootstrap is not None:
            options = {**options, "bootstrap": bootstrap}
        return cls(**options)


@dataclass(frozen=True, slots=True)
class ProducerConfig(ClientConfig):
    """Producer settings.

    ``batch_size`` is larger than Java's 16 KiB: this client pays per batch in
    Python, so bigger batches are much cheaper per record. ``max_buffer_bytes``
    bounds the records waiting in memory (Java's ``buffer.memory``): those in
    closed batches (queued or in flight) and those held for metadata; the
    open batches (at most one of ``batch_size`` per partition) come on top.
    When it is reached ``send()`` waits for room at most ``max_block_ms`` and
    ``send_nowait()`` raises ``trio.WouldBlock``.
    """

    acks: int | str = "all"
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression: str = "none"
    idempotence: bool = True
    partitioner: str = "xxhash"
    retries: int = 2_147_483_647
    delivery_timeout_ms: int = 120_000
    max_in_flight: int = 5
    max_request_size: int = 1024 * 1024
    max_buffer_bytes: int = 32 * 1024 * 1024
    max_block_ms: int = 60_000
    allow_auto_create_topics: bool = True
    transactional_id: str | None = None
    """Makes the producer transactional (needs idempotence): ``init_transactions()``,
    then ``begin_transaction()`` ... ``commit_transaction()``/``abort_transaction()``."""
    transaction_timeout_ms: int = 60_000
    """How long the coordinator lets a transaction stay open before aborting it."""

    def __post_init__(self) -> None:
        ClientConfig.__post_init__(self)
        if self.transactional_id is not None:
            if not isinstance(self.transactional_id, str) or not self.transactional_id:
                raise InvalidConfigError("transactional_id must be a non-empty string or None")
            if not self.idempotence:
                raise InvalidConfigError("a transactional producer is idempotent; drop idempotence=False")
        _positive(self, "transaction_timeout_ms")
        if self.acks not in _ACKS:
            raise InvalidConfigError(f"acks must be 'all', -1, 0 or 1, got {self.acks!r}")
        object.__setattr__(self, "acks", _ACKS[self.acks])
        Compression.from_name(self.compression)  # raises CompressionError for unknown codecs
        if self.partitioner not in PARTITIONERS:
            raise InvalidConfigError(f"partitioner must be one of {PARTITIONERS}, got {self.partitioner!r}")
        _positive(self, "batch_size", "delivery_timeout_ms", "max_in_flight", "max_request_size",
                  "max_buffer_bytes", "max_block_ms")
        _positive(self, "linger_ms", "retries", zero=True)
        if self.idempotence:
            if self.acks != -1:
                raise InvalidConfigError("idempotence needs acks='all'; pass idempotence=False for acks 0 or 1")
            if self.max_in_flight > 5:
                raise InvalidConfigError("idempotence allows at most 5 requests in flight per connection")
        if self.batch_size > self.max_request_size:
            object.__setattr__(self, "batch_size", self.max_request_size)

    @property
    def codec(self) -> Compression:
        return Compression.from_name(self.compression)


@dataclass(frozen=True, slots=True)
class ConsumerConfig(ClientConfig):
    """Consumer settings. ``group_id`` None means no group: ``assign()`` only, no commits.

    ``prefetch_bytes`` bounds the fetched-but-unread bytes per partition; the
    next fetch for a partition is in flight while the application reads the
    last one, as long as less than that is buffered.

    ``group_protocol="consumer"`` joins with Kafka 4's protocol (KIP-848): the
    broker assigns (``group_remote_assignor`` names its assignor, e.g.
    "uniform" or "range"; None lets the broker choose) and sets the session
    timeout and heartbeat interval, so ``session_timeout_ms``,
    ``heartbeat_interval_ms`` and ``assignors`` are not used.
    """

    group_id: str | None = None
    group_instance_id: str | None = None
    auto_offset_reset: str = "latest"
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5_000
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 1024 * 1024
    prefetch_bytes: int = 4 * 1024 * 1024
    isolation_level: str = "read_uncommitted"
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    rebalance_timeout_ms: int = 300_000
    assignors: tuple[str, ...] = ("range", "roundrobin")
    allow_auto_create_topics: bool = True
    group_protocol: str = "classic"
    group_remote_assignor: str | None = None

    def __post_init__(self) -> None:
        ClientConfig.__post_init__(self)
        if self.auto_offset_reset not in ("earliest", "latest", "none"):
            raise InvalidConfigError(f"auto_offset_reset must be earliest, latest or none, got {self.auto_offset_reset!r}")
        if self.isolation_level not in ("read_uncommitted", "read_committed"):
            raise InvalidConfigError(f"isolation_level must be read_uncommitted or read_committed, got {self.isolation_level!r}")
        if isinstance(self.assignors, str):
            object.__setattr__(self, "assignors", (self.assignors,))
        else:
            object.__setattr__(self, "assignors", tuple(self.assignors))
        if not self.assignors or any(a not in ASSIGNORS for a in self.assignors):
            raise InvalidConfigError(f"assignors must be chosen from {ASSIGNORS}, got {self.assignors!r}")
        if "cooperative-sticky" in self.assignors and len(self.assignors) > 1:
            raise InvalidConfigError("cooperative-sticky cannot be mixed with eager assignors in one consumer")
        _positive(self, "auto_commit_interval_ms", "fetch_max_bytes", "max_partition_fetch_bytes",
                  "prefetch_bytes", "session_timeout_ms", "heartbeat_interval_ms", "rebalance_timeout_ms")
        _positive(self, "fetch_min_bytes", "fetch_max_wait_ms", zero=True)
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise InvalidConfigError("heartbeat_interval_ms must be below session_timeout_ms")
        if self.group_id is not None and not self.group_id:
            raise InvalidConfigError("group_id must be a non-empty string or None")
        if self.group_protocol not in ("classic", "consumer"):
            raise InvalidConfigError(f"group_protocol must be classic or consumer, got {self.group_protocol!r}")
        if self.group_remote_assignor is not None and self.group_protocol != "consumer":
            raise InvalidConfigError("group_remote_assignor needs group_protocol='consumer'")


@dataclass(frozen=True, slots=True)
class AdminConfig(ClientConfig):
    """Admin settings: ``operation_timeout_ms`` is the broker-side timeout of topic operations."""

    operation_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        ClientConfig.__post_init__(self)
        _positive(self, "operation_timeout_ms")
