"""Brokers for client tests that need no listener.

:class:`FakeBroker` speaks bytes over trio memory streams with handlers the
test writes (``handlers[api_key](request) -> body``), to script exact
answers: version ranges, delays, answer order, silence, hang-ups.

:class:`InProcessBroker` is the real :class:`logbroker.broker.Broker` served
by the real :class:`logbroker.server.Server` connection loop over socket
pairs; ``inject`` lets a test answer chosen requests itself (a
NOT_LEADER_OR_FOLLOWER, a dropped connection) before the broker sees them.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from logbroker.broker import Broker, BrokerConfig
from logbroker.protocol import (
    SUPPORTED_VERSIONS,
    ApiKey,
    ErrorCode,
    FrameDecoder,
    Request,
    build,
    decode_request,
    encode_response,
    response_module,
)
from logbroker.server import Server


class FakeBroker:
    """A scripted broker. ``versions`` is what it advertises and accepts."""

    def __init__(self, nursery: trio.Nursery, versions=SUPPORTED_VERSIONS, *, api_versions_max: int = 4) -> None:
        self.nursery = nursery
        self.versions = dict(versions)
        self.api_versions_max = api_versions_max
        self.handlers: dict[int, Callable[[Any], Any]] = {}
        self.requests: list = []
        self.addresses: list[tuple[str, int]] = []  # where each of ``requests`` arrived
        self.connections = 0
        self.reverse_pairs = False  # answer two requests at a time, second first
        self.silent: set[int] = set()  # api keys never answered
        self.hang_up_on: set[int] = set()  # api keys that make it close the connection

    async def connector(self, host: str, port: int):
        client, server = trio.testing.memory_stream_pair()
        self.connections += 1
        self.nursery.start_soon(self._serve, server, (host, port))
        return client

    async def _serve(self, stream, address=("fake", 9092)) -> None:
        decoder = FrameDecoder()
        held = None
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                decoder.receive_data(data)
                while (frame := decoder.next_frame()) is not None:
                    api_key, version, correlation_id = struct.unpack_from(">hhi", frame)
                    if api_key == ApiKey.API_VERSIONS and version > self.api_versions_max:
                        await stream.send_all(self._unsupported_api_versions(correlation_id))
                        continue
                    request = decode_request(frame, self.versions)
                    self.requests.append(request)
                    self.addresses.append(address)
                    if request.api_key in self.hang_up_on:
                        await stream.aclose()
                        return
                    if request.api_key in self.silent:
                        continue
                    body = self._answer(request)
                    if body is None:
                        continue
                    out = b"".join(bytes(b) for b in encode_response(request, body))
                    if self.reverse_pairs and request.api_key != ApiKey.API_VERSIONS:
                        if held is None:
                            held = out
                            continue
                        out, held = out + held, None
                    await stream.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _api_versions(self, version: int, error_code=ErrorCode.none) -> Any:
        # Built here: protocol.api_versions_response lists SUPPORTED_VERSIONS' ranges
        # for the keys given, not the ranges themselves.
        m = response_module(ApiKey.API_VERSIONS, version)
        rows = [build(m.ApiVersion, api_key=int(k), min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(self.versions.items())]
        return build(m.ApiVersionsResponse, error_code=error_code, api_keys=rows, throttle_time=0)

    def _unsupported_api_versions(self, correlation_id: int) -> bytes:
        body = self._api_versions(0, ErrorCode.unsupported_version)
        request = Request(api_key=ApiKey.API_VERSIONS, api_version=0, correlation_id=correlation_id,
                          client_id=None, body=None, response_class=type(body))
        return b"".join(bytes(b) for b in encode_response(request, body))

    def _answer(self, request) -> Any:
        if request.api_key == ApiKey.API_VERSIONS:
            return self._api_versions(request.api_version)
        handler = self.handlers.get(request.api_key)
        if handler is None:
            raise AssertionError(f"FakeBroker has no handler for {request.api_key.name}")
        return handler(request)


def produce_error(code):
    """An injected answer to a Produce: every partition of its first topic fails with ``code``."""
    def answer(request):
        m = request.response_module
        topic = request.body.topic_data[0]
        return build(m.ProduceResponse, throttle_time=0, responses=[
            build(m.TopicProduceResponse, name=topic.name, partition_responses=[
                build(m.PartitionProduceResponse, index=p.index, error_code=code, base_offset=-1,
                      log_append_time=None, log_start_offset=-1, record_errors=[], error_message=None)
                for p in topic.partition_data])])
    return answer


def metadata_answer(request, topics: dict[str, int], *, leader: int = 0, port: int = 9092, errors=None,
                    topic_ids: dict[str, str] | None = None):
    """A Metadata answer of one broker (node ``leader``) leading every partition
    (``topic_ids``: name -> UUID string, else no ids)."""
    m = request.response_module
    errors = errors or {}
    topic_ids = topic_ids or {}
    return build(
        m.MetadataResponse,
        throttle_time=0,
        brokers=[build(m.MetadataResponseBroker, node_id=leader, host="fake", port=port, rack=None)],
        cluster_id="fake",
        controller_id=leader,
        topics=[
            build(
                m.MetadataResponseTopic,
                error_code=errors.get(name, ErrorCode.none),
                name=name,
                topic_id=uuid.UUID(topic_ids[name]) if name in topic_ids else None,
                is_internal=False,
                partitions=[
                    build(m.MetadataResponsePartition, error_code=ErrorCode.none, partition_index=p, leader_id=leader,
                          leader_epoch=0, replica_nodes=[leader], isr_nodes=[leader], offline_replicas=[])
                    for p in range(n)
                ],
                topic_authorized_operations=-2147483648,
            )
            for name, n in topics.items()
        ],
    )


class _InjectingServer(Server):
    def __init__(self, broker, config, owner: InProcessBroker) -> None:
        super().__init__(broker, config)
        self._owner = owner

    async def _handle_frame(self, frame, *args):
        try:
            request = decode_request(frame)
        except Exception:
            return await super()._handle_frame(frame, *args)
        for rule in list(self._owner.rules):
            result = rule(request)
            if result is None:
                continue
            if result == "hang-up":  # before the broker sees it
                raise _HangUp()
            if result == "lose-answer":  # the broker handles it, the client never hears
                await super()._handle_frame(frame, *args)
                raise _HangUp()
            if result == "hang":  # no answer until the test ends (the server loop is shielded)
                await self._owner.release.wait()
                raise _HangUp()
            return encode_response(request, result)
        return await super()._handle_frame(frame, *args)


class _HangUp(Exception):
    pass


class _NamedPeer:
    """A socket whose getpeername() looks like TCP; everything else is the socket's."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def getpeername(self):
        return ("in-process", 0)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class InProcessBroker:
    """The real broker and connection loop, reached through socket pairs."""

    def __init__(self, data_dir, **settings) -> None:
        self.config = BrokerConfig(data_dir=str(data_dir), port=9092, **settings)
        self.broker = Broker(self.config)
        self.broker.advertised_port = 9092
        self.server = _InjectingServer(self.broker, self.config, self)
        self.rules: list[Callable[[Any], Any]] = []
        self.release = trio.Event()
        self.connections = 0
        self._streams: list = []
        self.nursery: trio.Nursery | None = None

    def inject(self, rule: Callable[[Any], Any]) -> None:
        """``rule(request)`` returns a response body, ``"hang-up"`` (close before handling),
        ``"lose-answer"`` (handle, then close), ``"hang"`` (never answer) or None (the broker answers)."""
        self.rules.append(rule)

    async def connector(self, host: str, port: int):
        a, b = trio.socket.socketpair()
        client, server = trio.SocketStream(a), trio.SocketStream(b)
        # Server._peer unpacks getpeername() as (host, port); an AF_UNIX pair has ''.
        server.socket = _NamedPeer(server.socket)
        self.connections += 1
        self._streams.append(server)
        assert self.nursery is not None
        self.nursery.start_soon(self._serve, server)
        return client

    async def _serve(self, stream) -> None:
        try:
            await self.server.handle_connection(stream)
        except _HangUp:
            await stream.aclose()

    async def drop_connections(self) -> None:
        for s in self._streams:
            await s.aclose()
        self._streams.clear()

    def close(self) -> None:
        self.release.set()
        self.broker.close()


class once:
    """A rule that fires for the first ``times`` requests matching ``predicate``."""

    def __init__(self, predicate: Callable[[Any], bool], answer: Callable[[Any], Any], times: int = 1) -> None:
        self.predicate = predicate
        self.answer = answer
        self.left = times

    def __call__(self, request):
        if self.left > 0 and self.predicate(request):
            self.left -= 1
            return self.answer(request)
        return None
