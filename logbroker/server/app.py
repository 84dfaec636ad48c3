"""The trio server: one nursery owns the listener, the connections and the
maintenance tasks.

Its parts, each in its own module:

* :mod:`.connection`: one task per connection reads requests, handles
  pipelined ones in order and sends their responses together;
* :mod:`.dispatch`: request frame -> handler -> response buffers, the one
  place where a handler's result (Reply, FetchOperation, Deferred) is completed;
* :mod:`.limits`: ``max.connections`` and the per-address limits;
* :mod:`.watchdog`: closes connections idle, not reading, or not
  authenticated in time;
* here: accepting, the coordinators' timer task, periodic flush and retention,
  start-up checks and graceful shutdown.

Shutdown (``Server.shutdown``): stop accepting, let every connection finish
the request it is handling, wake long polls, flush, write the clean marker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, cast

import trio

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.session import Session
from logbroker.errors import InternalError, InvalidConfigError, LogbrokerError, ProtocolError
from logbroker.server.cleaner_task import run_cleaner
from logbroker.server.connection import Connection, peer_address
from logbroker.server.dispatch import Dispatcher
from logbroker.server.limits import ConnectionLimits
from logbroker.server.http import serve_http
from logbroker.server.metrics import Metrics, metrics_app
from logbroker.server.waiters import AppendWaiters
from logbroker.server.watchdog import Watch, Watchdog

log = logging.getLogger("logbroker.server")


async def _sent_nothing() -> bool:
    return False


class Server:
    """Serves one Broker on one listener. Create with :func:`serve`."""

    def __init__(self, broker: Broker, config: BrokerConfig) -> None:
        self.broker = broker
        self.config = config
        self.waiters = AppendWaiters(sessions_of=broker.fetch_sessions.partitions_changed)
        # Share-group records released by a lock expiry, a Release or a member
        # leaving wake the share fetches waiting on their partition.
        broker.share.wake = self.waiters.notify
        self.port: int | None = None
        # Request, connection and fsync metrics; None unless the metrics endpoint or the console is on.
        self.metrics: Metrics | None = (
            Metrics() if config.metrics_port is not None or config.console_port is not None else None
        )
        self.metrics_port: int | None = None  # the bound metrics port, once serving
        self.schema_registry_port: int | None = None  # the bound schema registry port, once serving
        self.console_port: int | None = None  # the bound console port, once serving
        self.limits = ConnectionLimits(config, self.metrics)
        self.watchdog = Watchdog(config, on_tick=self.limits.log_refusals)
        self.dispatcher = Dispatcher(
            broker, config, self.waiters, self.metrics,
            closing=lambda: self._closing, deadlines_moved=self._deadlines_moved,
        )
        self._closing = False
        self._accept_scope = trio.CancelScope()
        self._drained = trio.Event()
        self._shutdown_requested = trio.Event()
        self._timers_changed = trio.Event()

    def __repr__(self) -> str:
        return f"Server(port={self.port}, connections={self.limits.connections}, closing={self._closing})"

    # -- lifecycle --------------------------------------------------------

    def shutdown(self) -> None:
        """Begin a graceful shutdown; :func:`serve` returns once it is done."""
        if self._closing:
            return
        log.info("shutting down: no new connections, finishing in-flight requests")
        self._closing = True
        self._shutdown_requested.set()
        self._accept_scope.cancel()
        self.watchdog.close_awaiting()
        self.waiters.notify_all()
        self.broker.shutdown_pending()
        if self.limits.connections == 0:
            self._drained.set()

    def _deadlines_moved(self) -> None:
        self._timers_changed.set()

    async def _timers(self) -> None:
        """Fire the broker's deadlines (session and rebalance timeouts)."""
        broker = self.broker
        while True:
            deadline_ms = broker.next_deadline_ms()
            self._timers_changed = trio.Event()
            if deadline_ms is None:
                await self._timers_changed.wait()
                continue
            delay = (deadline_ms - broker.clock()) / 1000
            if delay > 0:
                with trio.move_on_after(delay):
                    await self._timers_changed.wait()
                    continue
            grown = broker.fire_deadlines(broker.clock())
            if grown:  # transaction markers: read_committed fetches may advance
                self.waiters.notify(grown)
            await trio.sleep(0)

    async def _maintenance(self) -> None:
        broker = self.broker
        # With flush=always this only advances the recovery-point checkpoint.
        flush_every = self.config.flush_interval_ms / 1000 if self.config.flush != "never" else math.inf
        retention_every = self.config.log_retention_check_interval_ms / 1000
        next_flush = trio.current_time() + flush_every
        next_retention = trio.current_time() + retention_every
        while True:
            await trio.sleep_until(min(next_flush, next_retention))
            now = trio.current_time()
            # A full or failing disk must not stop the broker: produce answers
            # KAFKA_STORAGE_ERROR meanwhile, and these retry on the next tick.
            if now >= next_flush:
                next_flush = now + flush_every
                try:
                    await trio.to_thread.run_sync(broker.flush_dirty)
                except (LogbrokerError, OSError) as exc:
                    log.error("periodic flush failed: %s", exc)
            if now >= next_retention:
                next_retention = now + retention_every
                try:
                    deleted = broker.apply_retention()
                except (LogbrokerError, OSError) as exc:
                    log.error("retention failed: %s", exc)
                    deleted = 0
                if deleted:
                    log.info("retention deleted %d segments", deleted)

    async def run(self, listeners: list[Any], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on bound ``listeners`` with the maintenance tasks (timers, flush
        and retention, the idle watchdog, the log cleaner, metrics) until
        :meth:`shutdown` (then connections get 30 s to finish their request) or
        cancellation. ``task_status.started(self)`` once accepting."""
        broker, config = self.broker, self.config
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._maintenance)
            nursery.start_soon(self._timers)
            nursery.start_soon(self.watchdog.run)
            if config.log_cleaner_enable:
                nursery.start_soon(run_cleaner, broker, config.log_cleaner_backoff_ms)
            if self.metrics is not None:
                broker.log_manager.on_fsync = self.metrics.observe_fsync
            if self.metrics is not None and config.metrics_port is not None:
                self.metrics_port = await nursery.start(partial(
                    serve_http, metrics_app(self.metrics, broker), config.metrics_host, config.metrics_port,
                    name="metrics", path="/metrics",
                ))
            if broker.schema_registry is not None and config.schema_registry_port is not None:
                from logbroker.server.registry_app import registry_app  # its schema libraries load only when used

                self.schema_registry_port = await nursery.start(partial(
                    serve_http, registry_app(broker), config.schema_registry_host, config.schema_registry_port,
                    name="schema registry",
                ))
            if config.console_port is not None:
                from logbroker.server.console.app import console_app  # templates load only when used

                app = console_app(broker, metrics=self.metrics, read_only=config.console_read_only,
                                  listeners=lambda: [f"{config.security_protocol} {config.host}:{self.port}"],
                                  appended=self.waiters.notify)
                self.console_port = await nursery.start(partial(
                    serve_http, app, config.console_host, config.console_port, name="console",
                ))
            async with trio.open_nursery() as connections:
                await nursery.start(self._accept, listeners, connections)
                task_status.started(self)
                await self._shutdown_requested.wait()
                # Accepting stopped; connections finish their current request.
                with trio.move_on_after(30):
                    await self._drained.wait()
                connections.cancel_scope.cancel()
            nursery.cancel_scope.cancel()

    async def _accept(self, listeners: list[Any], connections: trio.Nursery, *,
                      task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with self._accept_scope:
            await trio.serve_listeners(
                self.handle_connection, listeners, handler_nursery=connections, task_status=task_status
            )

    # -- connections ------------------------------------------------------

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted stream until it closes; never raises (a failure of
        one connection is logged and closes that connection only)."""
        if self._closing:
            await stream.aclose()
            return
        config = self.config
        peer = peer_address(stream)
        host = peer.rsplit(":", 1)[0]
        if not self.limits.admit(host, unauthenticated=config.requires_sasl):
            await trio.aclose_forcefully(stream)
            return
        # One scope per connection, cancelled by shutdown only while the
        # connection waits for its next request, and by the watchdog once its
        # peer sent or took nothing for too long, or did not authenticate in time.
        watch = Watch(trio.CancelScope(), host)
        if config.requires_sasl:
            watch.login_deadline = trio.current_time() + config.sasl_authentication_timeout_ms / 1000
        metrics = self.metrics
        if metrics is not None:
            metrics.connections += 1
            metrics.connections_total += 1
        connection = Connection(
            stream, config, peer, watch,
            handle_frame=self._handle_frame,
            closing=lambda: self._closing,
            on_authenticated=lambda: self._authenticated(watch),
        )
        try:
            with watch.scope:
                self.watchdog.add(watch)
                try:
                    await connection.serve()
                finally:
                    self.watchdog.discard(watch)
            if watch.expired is not None:
                self._log_expired(peer, watch.expired)
        except ProtocolError as exc:  # the peer's bytes
            log.info("closing connection from %s: %s", peer, exc)
        except InternalError as exc:  # ours, logged where it happened
            log.error("closing connection from %s: %s", peer, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug serving one connection must not take the broker down
            log.exception("closing connection from %s after an unexpected error", peer)
        finally:
            self._authenticated(watch)  # or gone: no longer counts as unauthenticated
            self.limits.release(host)
            if metrics is not None:
                metrics.connections -= 1
            if self._closing and self.limits.connections == 0:
                self._drained.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _log_expired(self, peer: str, why: str) -> None:
        if self.metrics is not None and why != "not authenticated":
            self.metrics.connections_closed_idle += 1
        if why == "not reading":
            log.info("closing connection from %s: it took no response bytes for %d ms (not reading)",
                     peer, self.config.connections_max_idle_ms)
        elif why == "not authenticated":
            log.info("closing connection from %s: not authenticated within %d ms "
                     "(sasl.authentication.timeout.ms)", peer, self.config.sasl_authentication_timeout_ms)
        else:
            log.debug("closing connection from %s: idle for %d ms", peer, self.config.connections_max_idle_ms)

    def _authenticated(self, watch: Watch) -> None:
        """The connection authenticated or closed: drop its login deadline and
        its count in ``max.unauthenticated.connections.per.ip`` (once)."""
        if watch.login_deadline == math.inf:
            return
        watch.login_deadline = math.inf
        self.limits.authenticated(watch.host)

    async def _handle_frame(
        self,
        frame: bytes | memoryview,
        peer: str = "",
        before_wait: Callable[[], Awaitable[bool]] | None = None,
        session: Session | None = None,
        hung_up: Callable[[], Awaitable[None]] | None = None,
    ) -> Sequence[Any] | None:
        """Handle one request frame of the connection in ``session`` (a fresh one
        for ``peer`` if None); see :meth:`Dispatcher.handle_frame`. A hook that
        tests may wrap (an in-process broker injecting answers)."""
        return await self.dispatcher.handle_frame(
            frame, session if session is not None else Session(peer=peer), before_wait or _sent_nothing, hung_up,
        )


def _warn_if_too_few_descriptors(config: BrokerConfig) -> None:
    """Warn when RLIMIT_NOFILE cannot hold max.connections sockets: accept()
    would then fail with EMFILE before the limit closes anything."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft < config.max_connections + 100:
        log.warning(
            "the file descriptor limit (%d) is below max.connections (%d) plus the broker's own files: "
            "raise it (ulimit -n) or lower max.connections",
            soft, config.max_connections,
        )


def _check_security(config: BrokerConfig, broker: Broker) -> None:
    """At start-up: warn when SASL PLAIN sends passwords in clear text, and read
    users.json and acls.json once, so a broken one is logged now (in one line;
    the broker then fails closed until it is fixed)."""
    if config.security_protocol == "SASL_PLAINTEXT" and "PLAIN" in config.sasl_mechanisms:
        log.warning(
            "SASL PLAIN is offered on a SASL_PLAINTEXT listener: passwords cross the network in clear text; "
            "use SASL_SSL, or offer only SCRAM-SHA-256/512 (sasl.enabled.mechanisms)"
        )
    if config.requires_sasl:
        broker.users.check()
    if broker.authorizer is not None:
        broker.authorizer.check()


class ListenError(LogbrokerError):
    """The listener could not bind ``host:port``; ``errno`` says why (EADDRINUSE...)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        reason = (cause.strerror or str(cause)).lower()
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host, self.port, self.errno = host, port, cause.errno


@contextlib.contextmanager
def _naming_address(config: BrokerConfig) -> Iterator[None]:
    """Turn a failed bind into ListenError: the OSError alone does not say which address."""
    try:
        yield
    except OSError as exc:
        raise ListenError(config.host, config.port, exc) from exc


async def serve(config: BrokerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Open the broker, listen, and serve until cancelled or shut down.

    ``task_status.started(server)`` is called once the listener is bound.
    Cancellation closes connections abruptly but still flushes and writes the
    clean-shutdown marker.
    """
    broker = await trio.to_thread.run_sync(Broker, config)
    log.info("data directory %s", os.path.abspath(broker.config.data_dir))
    _warn_if_too_few_descriptors(config)
    _check_security(config, broker)
    try:
        listeners: list[Any]
        tcp: list[trio.SocketListener]
        if config.uses_ssl:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(config.ssl_certfile or "", config.ssl_keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
            with _naming_address(config):
                ssl_listeners = await trio.open_ssl_over_tcp_listeners(config.port, context, host=config.host)
            listeners = list(ssl_listeners)
            tcp = [cast(trio.SocketListener, listener.transport_listener) for listener in ssl_listeners]
        else:
            with _naming_address(config):
                tcp = await trio.open_tcp_listeners(config.port, host=config.host)
            listeners = list(tcp)
        bound = tcp[0].socket.getsockname()
        server = Server(broker, config)
        server.port = bound[1]
        broker.advertised_port = config.advertised_port or bound[1]
        log.info(
            "listening on %s:%d, advertised as %s:%d",
            config.host, bound[1], broker.advertised_host, broker.advertised_port,
        )
        await server.run(listeners, task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            broker.share.wake = None  # closing runs in a worker thread: no trio events from there
            await trio.to_thread.run_sync(broker.close)
        log.info("clean shutdown complete")
