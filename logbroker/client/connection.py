"""One connection to one broker: pipelined requests, answers matched by correlation id.

A :class:`Connection` owns a trio stream and one reader task
(:meth:`Connection.run`, started in the cluster's nursery). Any task may call
:meth:`Connection.request`: it encodes the frame, sends it under a lock (a
frame is never interleaved with another), then waits for the reader to hand
it the decoded answer. Many requests are in flight at once; Kafka answers
them in order, but the reader matches them by correlation id anyway.

After connecting (and, for SSL/SASL_SSL, the TLS handshake over the
connector's stream), :meth:`Connection.handshake` asks ApiVersions and keeps,
for every API the client implements, the highest version both sides support
(:func:`logbroker.client.versions.negotiate`); with SASL credentials it then
logs in: SaslHandshake v1, then SaslAuthenticate messages of the mechanism
(:mod:`._sasl`). A refused login raises
:class:`~logbroker.errors.AuthenticationError` and a certificate that does
not verify a non-retriable :class:`~logbroker.errors.KafkaConnectionError`:
trying again cannot help either.

Failure is sticky: once the stream breaks, a request times out, or the
peer sends bytes that do not decode, the connection is *broken*: every waiting
and later request raises :class:`~logbroker.errors.KafkaConnectionError`
(or :class:`~logbroker.errors.KafkaTimeoutError` for the request that timed
out) and the cluster opens a new connection on next use. A timed-out request
breaks the connection because its answer may still arrive and answers come
in order; Kafka's Java client does the same.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any

import trio

from logbroker.errors import (
    AuthenticationError,
    ClientClosedError,
    InvalidConfigError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LogbrokerError,
    ProtocolError,
)
from logbroker.protocol import ApiKey, ErrorCode, FrameDecoder, decode_response, encode_request

from . import _wire_admin
from ._sasl import SaslCredentials, new_exchange
from .versions import CLIENT_VERSIONS, negotiate

__all__ = ["Connection", "Connector", "make_ssl_context"]

Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""Opens a stream to (host, port): ``trio.open_tcp_stream`` by default, in-memory streams in tests.
TLS, when asked for, runs over the stream it returns."""

# Login APIs: used before the client's own APIs, so negotiated apart from CLIENT_VERSIONS.
# SaslHandshake v0 (raw SASL bytes outside Kafka frames) is not spoken.
_SASL_VERSIONS = MappingProxyType({ApiKey.SASL_HANDSHAKE: (1, 1), ApiKey.SASL_AUTHENTICATE: (0, 2)})

log = logging.getLogger("logbroker.client")

_RECEIVE_CHUNK = 1024 * 1024
_SOFTWARE_NAME = "logbroker-python"
_SOFTWARE_VERSION = "0.1.0"


class _Pending:
    """A request waiting for its answer; the reader fills ``body`` or ``error``."""

    __slots__ = ("api_key", "version", "correlation_id", "event", "body", "error")

    def __init__(self, api_key: int, version: int, correlation_id: int) -> None:
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.event = trio.Event()
        self.body: Any = None
        self.error: BaseException | None = None


class Connection:
    """A connection to broker ``node_id`` at ``host:port`` (node id -1: a bootstrap address).

    Create with :meth:`open`; close with :meth:`aclose`. ``versions`` is
    empty until :meth:`handshake` ran. Requests wait ``handshake_timeout_ms``
    (default: ``request_timeout_ms``) until the handshake succeeded, then
    ``request_timeout_ms``.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        node_id: int,
        host: str,
        port: int,
        client_id: str,
        request_timeout_ms: int,
        max_response_bytes: int,
        handshake_timeout_ms: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self._stream = stream
        self._client_id = client_id
        self._request_timeout = request_timeout_ms / 1000
        self._timeout = self._request_timeout if handshake_timeout_ms is None else handshake_timeout_ms / 1000
        self._decoder = FrameDecoder(max_response_bytes)
        self._pending: dict[int, _Pending] = {}
        self._correlation = itertools.count(1)
        self._send_lock = trio.Lock()
        self._error: KafkaError | ClientClosedError | None = None
        self._closed = trio.Event()
        self.versions: dict[ApiKey, int] = {}
        self.requests_sent = 0
        self.user: str | None = None
        """The SASL user this connection logged in as (None: no login)."""

    def __repr__(self) -> str:
        state = "open" if self._error is None else f"broken ({type(self._error).__name__})"
        login = f" user={self.user!r}" if self.user is not None else ""
        return (
            f"<Connection node={self.node_id} {self.host}:{self.port}{login} {state} "
            f"in_flight={len(self._pending)} sent={self.requests_sent}>"
        )

    # -- lifecycle -----------------------------------------------------------

    @property
    def broken(self) -> bool:
        """True once the connection failed or was closed; it never recovers."""
        return self._error is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reader task: decode answers until the stream ends; then fail what waits.

        Returns when the connection is closed or broken; never raises for a
        network failure (the waiting requests get it).
        """
        task_status.started()
        error: KafkaError | ClientClosedError | None = None
        try:
            while True:
                data = await self._stream.receive_some(_RECEIVE_CHUNK)
                if not data:
                    error = KafkaConnectionError(f"broker {self._peer()} closed the connection")
                    break
                self._decoder.receive_data(data)
                while (frame := self._decoder.next_frame()) is not None:
                    self._dispatch(frame)
        except trio.ClosedResourceError:
            pass  # aclose() was called: self._error says why
        except (trio.BrokenResourceError, OSError) as exc:
            error = KafkaConnectionError(f"connection to {self._peer()} broke: {exc}")
        except ProtocolError as exc:  # an oversized frame, or an answer that does not decode
            error = KafkaConnectionError(f"bad answer from {self._peer()}: {exc}")
        finally:  # also when cancelled: the stream never outlives its reader
            self._break(error or ClientClosedError(f"connection to {self._peer()} closed"))
            with trio.CancelScope(shield=True):
                await self._stream.aclose()
            self._closed.set()

    async def aclose(self) -> None:
        """Close the stream; waiting requests raise ClientClosedError. Idempotent."""
        self._break(ClientClosedError(f"connection to {self._peer()} closed"))
        with trio.CancelScope(shield=True):
            await self._stream.aclose()

    def _break(self, error: KafkaError | ClientClosedError) -> None:
        if self._error is None:
            self._error = error
            if isinstance(error, KafkaError):
                log.debug("connection to %s broken: %s", self._peer(), error)
        pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot.error = self._error
            slot.event.set()

    def _dispatch(self, frame: bytes | memoryview) -> None:
        correlation_id = int.from_bytes(frame[:4], "big", signed=True)
        slot = self._pending.pop(correlation_id, None)
        if slot is None:  # its caller gave up (cancelled); the answer is dropped
            return
        try:
            _, slot.body = decode_response(slot.api_key, slot.version, frame)
        except LogbrokerError as exc:
            slot.error = KafkaConnectionError(
                f"undecodable {ApiKey(slot.api_key).name} v{slot.version} answer from {self._peer()}: {exc}"
            )
            slot.error.__cause__ = exc
        slot.event.set()

    def _peer(self) -> str:
        return f"{self.host}:{self.port}" if self.node_id < 0 else f"node {self.node_id} ({self.host}:{self.port})"

    # -- requests ------------------------------------------------------------

    def version(self, api_key: ApiKey) -> int:
        """The negotiated version of ``api_key``.

        :raises KafkaError: UNSUPPORTED_VERSION when the ranges do not overlap.
        """
        try:
            return self.versions[api_key]
        except KeyError:
            raise KafkaError(
                f"{self._peer()} supports no version of {api_key.name} that this client implements",
                code=ErrorCode.unsupported_version,
                retriable=False,
            ) from None

    def supports(self, api_key: ApiKey) -> bool:
        return api_key in self.versions

    async def request(
        self,
        api_key: ApiKey,
        version: int,
        body: Any,
        *,
        expect_response: bool = True,
        extra_timeout_ms: int = 0,
    ) -> Any:
        """Send ``body`` as ``api_key`` v``version``; return the decoded answer body.

        ``expect_response=False`` (Produce with acks=0) returns None once the
        frame is sent. The wait is bounded by ``request_timeout_ms`` plus
        ``extra_timeout_ms`` (a long poll's own wait). Cancelling the caller
        while waiting for the answer leaves the connection usable (the answer
        is dropped); a frame is always sent whole.

        :raises KafkaConnectionError: the connection is or becomes broken.
        :raises KafkaTimeoutError: no answer in time (the connection is closed).
        :raises ClientClosedError: the connection was closed by its owner.
        """
        slot = await self.send(api_key, version, body, expect_response=expect_response)
        if slot is None:
            return None
        return await self.answer(slot, extra_timeout_ms=extra_timeout_ms)

    async def send(self, api_key: ApiKey, version: int, body: Any, *, expect_response: bool = True) -> Any:
        """The first half of :meth:`request`: send the frame, return a handle for :meth:`answer`
        (None without a response). Frames go out in the order of the calls that
        reach this point, which callers that need ordering (the producer) rely on.

        :raises: as :meth:`request`.
        """
        if self._error is not None:
            raise self._error
        correlation_id = next(self._correlation)
        frame = encode_request(api_key, version, correlation_id, self._client_id, body)
        slot = None
        if expect_response:
            slot = _Pending(api_key, version, correlation_id)
            self._pending[correlation_id] = slot
        try:
            # Shielded: a frame cut in half would corrupt the stream for everyone.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(self._timeout) as send_scope:
                    async with self._send_lock:
                        if self._error is not None:
                            raise self._error
                        await self._stream.send_all(frame)
                        self.requests_sent += 1
            if send_scope.cancelled_caught:
                error = KafkaTimeoutError(f"sending {api_key.name} to {self._peer()} took over {self._timeout:.1f} s")
                self._break(error)
                raise error
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._break(KafkaConnectionError(f"connection to {self._peer()} broke: {exc}"))
            raise self._error from exc  # type: ignore[misc]  # _break() has just set it
        return slot

    async def answer(self, slot: _Pending, *, extra_timeout_ms: int = 0) -> Any:
        """The second half of :meth:`request`: wait for the answer to a sent frame.

        :raises: as :meth:`request`.
        """
        timeout = self._timeout + extra_timeout_ms / 1000
        try:
            with trio.move_on_after(timeout) as wait_scope:
                await slot.event.wait()
        finally:
            if not slot.event.is_set():
                self._pending.pop(slot.correlation_id, None)
        if wait_scope.cancelled_caught and not slot.event.is_set():
            error = KafkaTimeoutError(
                f"no answer to {ApiKey(slot.api_key).name} from {self._peer()} within {timeout:.1f} s"
            )
            self._break(error)
            raise error
        if slot.error is not None:
            raise slot.error
        return slot.body

    async def handshake(self, sasl: SaslCredentials | None = None) -> None:
        """Ask ApiVersions (v3, falling back as the broker says) and negotiate versions,
        then log in with ``sasl`` if given; from then on requests wait ``request_timeout_ms``.

        :raises KafkaConnectionError, KafkaTimeoutError: as :meth:`request`.
        :raises AuthenticationError: the login was refused (see :meth:`_login`).
        :raises KafkaError: the broker answered ApiVersions with an error.
        """
        rows = await self._api_versions()
        self.versions = negotiate(rows)
        if sasl is not None:
            await self._login(sasl, negotiate(rows, _SASL_VERSIONS))
        self._timeout = self._request_timeout

    async def _api_versions(self) -> list[tuple[int, int, int]]:
        """The broker's (api key, min, max) rows."""
        version = CLIENT_VERSIONS[ApiKey.API_VERSIONS][1]
        for _ in range(3):
            body = _wire_admin.api_versions_request(version, software_name=_SOFTWARE_NAME,
                                                    software_version=_SOFTWARE_VERSION)
            code, rows = _wire_admin.parse_api_versions(await self.request(ApiKey.API_VERSIONS, version, body))
            if code == ErrorCode.unsupported_version:
                broker_max = next((hi for key, _, hi in rows if key == ApiKey.API_VERSIONS), 0)
                version = min(version - 1, broker_max)
                if version < 0:
                    break
                continue
            if code != ErrorCode.none:
                raise KafkaError(f"ApiVersions refused by {self._peer()}: {ErrorCode(code).name}", code=ErrorCode(code))
            return rows
        raise KafkaError(f"{self._peer()} supports no ApiVersions version we speak", code=ErrorCode.unsupported_version)

    async def _login(self, sasl: SaslCredentials, versions: dict[ApiKey, int]) -> None:
        """SaslHandshake v1 for ``sasl.mechanism``, then SaslAuthenticate (at
        ``versions[SASL_AUTHENTICATE]``, the highest both sides speak) until the
        mechanism is done. The broker closes the connection after a refusal.

        :raises AuthenticationError: the broker does not offer the mechanism or
            SaslHandshake v1, refused the credentials, or (SCRAM) did not prove it
            knows the password. The message names the user and this address.
        :raises KafkaConnectionError, KafkaTimeoutError: as :meth:`request`.
        """
        def refused(why: str, code: int = ErrorCode.sasl_authentication_failed) -> AuthenticationError:
            return AuthenticationError(f"login as {sasl.username} failed at {self._peer()}: {why}", code=code)

        if ApiKey.SASL_HANDSHAKE not in versions or ApiKey.SASL_AUTHENTICATE not in versions:
            raise refused("the broker offers no SASL login this client speaks (SaslHandshake v1, SaslAuthenticate)")
        code, offered = _wire_admin.parse_sasl_handshake(await self.request(
            ApiKey.SASL_HANDSHAKE, 1, _wire_admin.sasl_handshake_request(1, sasl.mechanism)))
        if code == ErrorCode.unsupported_sasl_mechanism:
            raise refused(f"the broker does not offer {sasl.mechanism} (it offers: {', '.join(offered) or 'none'})",
                          code)
        if code != ErrorCode.none:
            raise refused(f"SaslHandshake answered {ErrorCode(code).name}", code)
        version = versions[ApiKey.SASL_AUTHENTICATE]
        exchange = new_exchange(sasl)
        message: bytes | None = exchange.first()
        while message is not None:
            answer = _wire_admin.parse_sasl_authenticate(await self.request(
                ApiKey.SASL_AUTHENTICATE, version, _wire_admin.sasl_authenticate_request(version, message)))
            if answer.error_code == ErrorCode.sasl_authentication_failed:
                said = f"; the broker said: {answer.error_message}" if answer.error_message else ""
                raise refused(f"SASL authentication failed (wrong user name or password?){said}")
            if answer.error_code != ErrorCode.none:
                raise refused(f"SaslAuthenticate answered {ErrorCode(answer.error_code).name}"
                              + (f" ({answer.error_message})" if answer.error_message else ""), answer.error_code)
            try:
                message = exchange.step(answer.auth_bytes)
            except AuthenticationError as exc:
                raise refused(str(exc)) from exc
        self.user = sasl.username

    @classmethod
    async def open(
        cls,
        nursery: trio.Nursery,
        host: str,
        port: int,
        *,
        node_id: int,
        client_id: str,
        request_timeout_ms: int,
        connect_timeout_ms: int,
        max_response_bytes: int,
        connector: Connector | None = None,
        ssl_context: ssl.SSLContext | None = None,
        sasl: SaslCredentials | None = None,
    ) -> Connection:
        """Connect, start the reader task in ``nursery``, negotiate versions and log in.

        ``connector(host, port)`` returns a trio Stream (default:
        ``trio.open_tcp_stream``); tests pass in-memory streams. With
        ``ssl_context`` the connection is TLS over that stream (the
        certificate is checked for ``host``); with ``sasl`` it logs in.
        Connecting and the TLS handshake share ``connect_timeout_ms``.

        :raises KafkaConnectionError: could not connect (or handshake) in time;
            not retriable when the broker's certificate does not verify.
        :raises AuthenticationError: the login was refused.
        """
        connect = connector or _tcp
        with trio.move_on_after(connect_timeout_ms / 1000) as scope:
            try:
                stream = await connect(host, port)
            except OSError as exc:
                raise KafkaConnectionError(f"cannot connect to {host}:{port}: {_one_line(exc)}") from exc
            if ssl_context is not None:
                stream = await _start_tls(stream, ssl_context, host, port)
        if scope.cancelled_caught:
            what = "connecting (and the TLS handshake)" if ssl_context is not None else "connecting"
            raise KafkaConnectionError(f"{what} to {host}:{port} took over {connect_timeout_ms} ms")
        conn = cls(
            stream,
            node_id=node_id,
            host=host,
            port=port,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            max_response_bytes=max_response_bytes,
            handshake_timeout_ms=min(request_timeout_ms, connect_timeout_ms * 3),
        )
        try:
            await nursery.start(conn.run)
        except RuntimeError as exc:  # the nursery is closed: its owner is shutting down (after a fatal error)
            await trio.aclose_forcefully(stream)
            raise ClientClosedError(f"the client is closing; not connecting to {host}:{port}") from exc
        try:
            await conn.handshake(sasl)
        except BaseException:
            await conn.aclose()
            raise
        return conn


async def _tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)  # trio sets TCP_NODELAY


def make_ssl_context(*, cafile: str | None, certfile: str | None, keyfile: str | None,
                     check_hostname: bool) -> ssl.SSLContext:
    """The client's TLS context: the broker's chain is checked against ``cafile``
    (None: the system's CAs), its name only if ``check_hostname``; ``certfile``
    (and ``keyfile``) is this client's certificate, for brokers that ask for one.

    :raises InvalidConfigError: a file is missing or is not PEM of the right kind.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidConfigError(f"ssl_cafile {cafile!r} cannot be used: {_one_line(exc)}") from exc
    context.check_hostname = check_hostname  # verify_mode stays CERT_REQUIRED: the chain is always checked
    if certfile is not None:
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(f"ssl_certfile {certfile!r} / ssl_keyfile {keyfile!r} cannot be used: "
                                     f"{_one_line(exc)}") from exc
    return context


async def _start_tls(transport: trio.abc.Stream, context: ssl.SSLContext, host: str, port: int) -> trio.SSLStream[Any]:
    """TLS over ``transport``, handshake done.

    :raises KafkaConnectionError: the handshake failed; not retriable when the
        certificate does not verify (wrong CA, another host name, expired).
    """
    # https_compatible: closing skips close_notify, so the reader task's close and aclose()
    # may race without failing; Kafka's length-prefixed frames already reveal a truncation.
    stream = trio.SSLStream(transport, context, server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(transport)
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise KafkaConnectionError(
                f"TLS handshake with {host}:{port} failed: the broker's certificate does not verify: "
                f"{cause.verify_message or cause.reason}", retriable=False) from exc
        reason = _one_line(cause) if cause is not None else "the connection broke"
        raise KafkaConnectionError(f"TLS handshake with {host}:{port} failed: {reason} "
                                   "(is it a TLS listener?)") from exc
    except BaseException:  # cancelled (the connect timeout): the transport must not leak
        await trio.aclose_forcefully(transport)
        raise
    return stream


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (OS and TLS messages sometimes span lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__
