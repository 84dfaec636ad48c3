"""What a client knows about the cluster: brokers, partition leaders, coordinators,
and one connection per (broker, lane).

Lanes keep slow requests off fast paths: Kafka answers a connection's
requests in order, so a JoinGroup that waits for a whole rebalance, or a
fetch that long-polls, would hold up everything queued behind it. The
consumer fetches on lane ``"fetch"``, talks to its group coordinator on
``"group"``; everything else uses ``"default"``. A single-node broker simply
gets a few connections; a multi-node cluster gets them per node that leads
something this client needs.

Every connection's reader task runs in the nursery the cluster was given;
:meth:`Cluster.aclose` closes them all. Every connection is opened with the
config's security settings (TLS context built once, SASL credentials).

Failures that trying again cannot mend (a refused login, a certificate that
does not verify: non-retriable errors) are raised at once, never retried.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Iterable

import trio

from logbroker.errors import ClientClosedError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import ApiKey, ErrorCode

from . import _wire, _wire_admin
from ._errors import kafka_error
from ._sasl import SaslCredentials
from .config import ClientConfig
from .connection import Connection, Connector, make_ssl_context
from .types import BrokerInfo, ClusterMetadata, TopicInfo

__all__ = ["Cluster"]

log = logging.getLogger("logbroker.client")

_RETRIABLE_TOPIC_ERRORS = (ErrorCode.leader_not_available, ErrorCode.unknown_topic_or_partition)


class Cluster:
    """Metadata and connections for one client. Not thread-safe (one trio loop)."""

    def __init__(
        self,
        config: ClientConfig,
        nursery: trio.Nursery,
        *,
        connector: Connector | None = None,
        allow_auto_create: bool = False,
    ) -> None:
        self.config = config
        self.metadata = ClusterMetadata()
        self._nursery = nursery
        self._connector = connector
        self._ssl_context: ssl.SSLContext | None = None
        if config.uses_ssl:  # built once: loading the CA file per connection would be wasted work
            self._ssl_context = make_ssl_context(cafile=config.ssl_cafile, certfile=config.ssl_certfile,
                                                 keyfile=config.ssl_keyfile, check_hostname=config.ssl_check_hostname)
        self._sasl: SaslCredentials | None = None
        if config.uses_sasl:
            assert config.sasl_username is not None and config.sasl_password is not None  # the config checked
            self._sasl = SaslCredentials(config.sasl_mechanism, config.sasl_username, config.sasl_password)
        self._allow_auto_create = allow_auto_create
        self._connections: dict[tuple[int, str], Connection] = {}
        self._locks: dict[tuple[int, str], trio.Lock] = {}
        self._bootstrap_connection: Connection | None = None
        self._opens = 0  # connection attempts started
        self._refusal: tuple[int, KafkaError] | None = None  # the last attempt's non-retriable failure
        self._coordinators: dict[str | tuple[int, str], BrokerInfo] = {}
        self._topics: set[str] = set()
        self._refresh_lock = trio.Lock()
        self._refreshed_at = -math.inf
        self._refreshes = 0
        self._closed = False

    def __repr__(self) -> str:
        live = sum(not c.broken for c in self._connections.values())
        return (
            f"<Cluster brokers={sorted(self.metadata.brokers)} topics={len(self.metadata.topics)} "
            f"connections={live} refreshes={self._refreshes}>"
        )

    # -- connections -------------------------------------------------------------

    async def connection(self, node_id: int, lane: str = "default") -> Connection:
        """A live connection to broker ``node_id`` on ``lane``, opened if needed.

        :raises KafkaConnectionError: unknown node or it cannot be reached.
        """
        key = (node_id, lane)
        conn = self._connections.get(key)
        if conn is not None and not conn.broken:
            return conn
        lock = self._locks.setdefault(key, trio.Lock())
        seen = self._opens
        async with lock:
            conn = self._connections.get(key)
            if conn is not None and not conn.broken:
                return conn
            if self._closed:
                raise ClientClosedError("the client is closed")
            self._raise_refusal_since(seen)
            broker = self.metadata.brokers.get(node_id) or self._node_from_coordinators(node_id)
            if broker is None:
                raise KafkaConnectionError(f"node {node_id} is not in the cluster metadata")
            conn = await self._open(broker.host, broker.port, node_id)
            self._connections[key] = conn
            return conn

    def _node_from_coordinators(self, node_id: int) -> BrokerInfo | None:
        for broker in self._coordinators.values():
            if broker.node_id == node_id:
                return broker
        return None

    def _raise_refusal_since(self, seen: int) -> None:
        """Raise (a copy of) the non-retriable failure of an attempt that started after
        attempt number ``seen``: a task that waited for a lock while another task's
        login was refused gets that refusal, instead of trying the same credentials
        again (the owner may be shutting down because of it)."""
        if self._refusal is not None and self._refusal[0] > seen:
            error = self._refusal[1]
            raise type(error)(str(error), code=error.code, retriable=False) from error

    async def _open(self, host: str, port: int, node_id: int) -> Connection:
        self._opens += 1
        attempt = self._opens
        try:
            conn = await self._connect(host, port, node_id)
        except KafkaError as exc:
            if not exc.retriable:
                self._refusal = (attempt, exc)
            raise
        self._refusal = None
        return conn

    async def _connect(self, host: str, port: int, node_id: int) -> Connection:
        c = self.config
        return await Connection.open(
            self._nursery,
            host,
            port,
            node_id=node_id,
            client_id=c.client_id,
            request_timeout_ms=c.request_timeout_ms,
            connect_timeout_ms=c.connect_timeout_ms,
            max_response_bytes=c.max_response_bytes,
            connector=self._connector,
            ssl_context=self._ssl_context,
            sasl=self._sasl,
        )

    async def any_connection(self) -> Connection:
        """A live default-lane connection to some broker: a known one, else a bootstrap address.

        :raises KafkaConnectionError: no broker could be reached.
        """
        for (node_id, lane), conn in self._connections.items():
            if lane == "default" and not conn.broken and node_id in self.metadata.brokers:
                return conn
        if self._bootstrap_connection is not None and not self._bootstrap_connection.broken:
            return self._bootstrap_connection
        errors = []
        for node_id in list(self.metadata.brokers):
            try:
                return await self.connection(node_id)
            except KafkaConnectionError as exc:
                if not exc.retriable:
                    raise
                errors.append(str(exc))
        lock = self._locks.setdefault((-1, "bootstrap"), trio.Lock())
        seen = self._opens
        async with lock:
            if self._bootstrap_connection is not None and not self._bootstrap_connection.broken:
                return self._bootstrap_connection
            self._raise_refusal_since(seen)
            for host, port in self.config.addresses:
                if self._closed:
                    raise ClientClosedError("the client is closed")
                try:
                    self._bootstrap_connection = await self._open(host, port, -1)
                    return self._bootstrap_connection
                except KafkaConnectionError as exc:
                    if not exc.retriable:  # a certificate that does not verify: another address will not help
                        raise
                    errors.append(str(exc))
        raise KafkaConnectionError("no broker reachable: " + "; ".join(" ".join(e.split()) for e in errors))

    async def aclose(self) -> None:
        """Close every connection (their reader tasks end). Idempotent."""
        self._closed = True
        conns = list(self._connections.values())
        if self._bootstrap_connection is not None:
            conns.append(self._bootstrap_connection)
        self._connections.clear()
        self._bootstrap_connection = None
        for conn in conns:
            await conn.aclose()

    # -- metadata -----------------------------------------------------------------

    @property
    def bootstrapped(self) -> bool:
        """True once some broker answered Metadata; before, refreshes give up after
        ``bootstrap_timeout_ms``."""
        return self._refreshes > 0

    @property
    def stale(self) -> bool:
        """True when metadata is older than ``metadata_max_age_ms``."""
        return trio.current_time() - self._refreshed_at > self.config.metadata_max_age_ms / 1000

    def add_topics(self, topics: Iterable[str]) -> bool:
        """Remember ``topics`` for later refreshes; True if any is new."""
        new = set(topics) - self._topics
        self._topics |= new
        return bool(new)

    async def refresh(self, topics: Iterable[str] | None = (), *, all_topics: bool = False) -> ClusterMetadata:
        """Ask Metadata for the remembered topics plus ``topics`` (or all topics).

        Concurrent calls share one request when it covers them. Retries on
        other brokers and with backoff until ``request_timeout_ms`` passes, or
        ``bootstrap_timeout_ms`` (when set) while no broker has ever answered:
        then no attempt outlasts it, even one stuck connecting.

        :raises KafkaConnectionError, KafkaTimeoutError: no broker answered in time.
        :raises AuthenticationError: the login was refused (at once, not retried).
        :raises KafkaConnectionError: not retriable: the broker's certificate does not verify (at once).
        """
        if topics:
            self.add_topics(topics)
        started = self._refreshes
        async with self._refresh_lock:
            if self._refreshes > started and not all_topics and self._topics <= set(self.metadata.topics):
                return self.metadata  # someone refreshed while we waited
            bootstrap_ms = None if self.bootstrapped else self.config.bootstrap_timeout_ms
            timeout_ms = self.config.request_timeout_ms if bootstrap_ms is None else bootstrap_ms
            deadline = trio.current_time() + timeout_ms / 1000
            attempt = 0
            last: KafkaError | None = None
            while True:
                attempt += 1
                try:
                    # Only an explicit bootstrap timeout cuts an attempt short; else each
                    # attempt keeps its own limits (connect, request timeout), as before.
                    with trio.move_on_at(deadline if bootstrap_ms is not None else math.inf) as scope:
                        conn = await self.any_connection()
                        version = conn.version(ApiKey.METADATA)
                        wanted = None if all_topics else sorted(self._topics)
                        body = _wire.metadata_request(version, wanted, allow_auto_create=self._allow_auto_create)
                        answer = await conn.request(ApiKey.METADATA, version, body)
                        break
                    raise KafkaConnectionError(f"no broker reachable within {timeout_ms} ms (bootstrap_timeout_ms)"
                                               + (f"; last error: {last}" if last is not None else ""))
                except (KafkaConnectionError, KafkaTimeoutError) as exc:
                    if self._closed:
                        raise ClientClosedError("the client is closed") from exc
                    if scope.cancelled_caught or not exc.retriable:
                        raise
                    if trio.current_time() + self.config.backoff(attempt) > deadline:
                        raise
                    last = exc
                    await trio.sleep(self.config.backoff(attempt))
            fresh = _wire.parse_metadata(answer)
            if not all_topics:
                # Keep what we knew of topics this answer did not mention.
                topics_map = dict(self.metadata.topics)
                topics_map.update(fresh.topics)
                fresh = ClusterMetadata(fresh.brokers, topics_map, fresh.controller_id, fresh.cluster_id)
            self._forget_departed(fresh)
            self.metadata = fresh
            self._refreshed_at = trio.current_time()
            self._refreshes += 1
            return fresh

    def _forget_departed(self, fresh: ClusterMetadata) -> None:
        """Drop connections to nodes that left or moved."""
        for (node_id, lane), conn in list(self._connections.items()):
            broker = fresh.brokers.get(node_id)
            if broker is None and self._node_from_coordinators(node_id) is not None:
                continue
            if broker is None or (broker.host, broker.port) != (conn.host, conn.port):
                del self._connections[(node_id, lane)]
                self._nursery.start_soon(conn.aclose)

    async def topic(self, name: str) -> TopicInfo:
        """Metadata of topic ``name`` with a leader for every partition.

        Refreshes until the topic is known and led (auto-creation and leader
        elections take a moment), for at most ``request_timeout_ms``.

        :raises UnknownTopicOrPartitionError: the topic does not exist in time.
        :raises KafkaError: another topic-level error (authorization...).
        """
        info = self.metadata.topics.get(name)
        if info is not None and not info.error_code and info.partitions and all(p.leader >= 0 for p in info.partitions):
            return info
        deadline = trio.current_time() + self.config.request_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            meta = await self.refresh([name])
            info = meta.topics.get(name)
            code = info.error_code if info is not None else ErrorCode.unknown_topic_or_partition
            if info is not None and not code and info.partitions and all(p.leader >= 0 for p in info.partitions):
                return info
            if code and code not in _RETRIABLE_TOPIC_ERRORS:
                raise kafka_error(code, context=f"topic {name!r}")
            if trio.current_time() + self.config.backoff(attempt) > deadline:
                raise kafka_error(code or ErrorCode.leader_not_available, context=f"topic {name!r}")
            await trio.sleep(self.config.backoff(attempt))

    def leader(self, topic: str, partition: int) -> int:
        """The leader's node id from current metadata, -1 if unknown."""
        info = self.metadata.topics.get(topic)
        if info is None or partition >= len(info.partitions):
            return -1
        p = info.partitions[partition]
        return p.leader if p.partition == partition else -1

    # -- coordinators ----------------------------------------------------------------

    async def coordinator(self, group_id: str, key_type: int = 0) -> int:
        """The node id of ``group_id``'s coordinator (FindCoordinator), cached.

        ``key_type`` 1 asks for the transaction coordinator of a transactional
        id instead (cached apart: a group and a transactional id may share a name).

        :raises KafkaError: retriable codes (COORDINATOR_NOT_AVAILABLE...) are
            retried with backoff until ``request_timeout_ms``; others raise.
        """
        cache_key = _cache_key(group_id, key_type)
        cached = self._coordinators.get(cache_key)
        if cached is not None:
            return cached.node_id
        what = "transactional id" if key_type else "group"
        deadline = trio.current_time() + self.config.request_timeout_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = await self.any_connection()
                version = conn.version(ApiKey.FIND_COORDINATOR)
                if key_type and version < 1:
                    raise KafkaError(f"{conn!r} cannot find transaction coordinators (FindCoordinator v0)",
                                     code=ErrorCode.unsupported_version)
                answer = _wire_admin.parse_find_coordinator(await conn.request(
                    ApiKey.FIND_COORDINATOR, version, _wire.find_coordinator_request(version, group_id, key_type)
                ))
                if answer.error_code == ErrorCode.none:
                    broker = answer.broker
                    self._coordinators[cache_key] = broker
                    known = self.metadata.brokers.get(broker.node_id)
                    if known is not None and (known.host, known.port) != (broker.host, broker.port):
                        log.debug("coordinator address %s differs from metadata %s", broker, known)
                    return broker.node_id
                error: KafkaError = kafka_error(answer.error_code, answer.error_message,
                                                context=f"FindCoordinator({what} {group_id!r})")
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                error = exc
            if not error.retriable or trio.current_time() + self.config.backoff(attempt) > deadline:
                raise error
            await trio.sleep(self.config.backoff(attempt))

    def forget_coordinator(self, group_id: str, key_type: int = 0) -> None:
        """Ask FindCoordinator again next time (after NOT_COORDINATOR and friends)."""
        self._coordinators.pop(_cache_key(group_id, key_type), None)


def _cache_key(key: str, key_type: int) -> str | tuple[int, str]:
    """Groups are cached by name, transactional ids by (1, name): the two never collide."""
    return key if not key_type else (key_type, key)
