"""Helpers for the group tests: a coordinator over a real internal topic, and
a harness that sends real request bytes through the handlers."""

from __future__ import annotations

from logbroker.broker import Broker
from logbroker.broker.deferred import Deferred
from logbroker.broker.groups import GroupConfig, GroupCoordinator, JoinRequest, OffsetsTopic
from logbroker.broker.handlers import FetchOperation, Reply, dispatch
from logbroker.broker.handlers._build import build
from logbroker.protocol import decode_request, decode_response, encode_request, encode_response, request_module
from logbroker.storage import LogManager

PROTOCOLS = (("range", b"range-meta"), ("roundrobin", b"rr-meta"))


class CoordinatorEnv:
    """A coordinator over a real ``__consumer_offsets`` in ``data_dir``; ``restart`` reopens it."""

    def __init__(self, data_dir, **config) -> None:
        self.data_dir = data_dir
        self.config = GroupConfig(**config)
        self.manager: LogManager | None = None
        self.coordinator: GroupCoordinator | None = None

    def open(self, now_ms: int = 0, *, load: bool = True) -> GroupCoordinator:
        self.manager = LogManager(self.data_dir, now_ms=now_ms)
        self.coordinator = GroupCoordinator(self.config, OffsetsTopic(self.manager))
        if load:
            self.coordinator.load(now_ms)
        return self.coordinator

    def restart(self, now_ms: int, **config) -> GroupCoordinator:
        self.close()
        if config:
            self.config = GroupConfig(**config)
        return self.open(now_ms)

    def close(self) -> None:
        if self.coordinator is not None:
            self.coordinator.close()
        if self.manager is not None:
            self.manager.close()
            self.manager = None


def join_req(group="g", member="", *, protocols=PROTOCOLS, session=10_000, rebalance=30_000, instance=None,
             v4=False, client="client", protocol_type="consumer") -> JoinRequest:
    return JoinRequest(group, member, protocol_type, protocols, session, rebalance, instance, v4, client)


def done(result):
    """The value of a completed Deferred (or the plain result)."""
    if isinstance(result, Deferred):
        assert result.done, "expected the request to be answered"
        return result.value
    return result


class GroupHarness:
    """Real request bytes through ``dispatch``; answers that wait come back as pending calls."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._correlation = 0

    def req(self, api_key, version, class_name, /, **fields):
        return build(getattr(request_module(api_key, version), class_name), **fields)

    def start(self, api_key: int, version: int, body_name: str, /, **fields) -> PendingCall:
        body = self.req(api_key, version, body_name, **fields)
        self._correlation += 1
        frame = encode_request(api_key, version, self._correlation, "test-client", body)
        request = decode_request(frame[4:])
        return PendingCall(request, dispatch(self.broker, request), self._correlation)

    def call(self, api_key: int, version: int, body_name: str, /, **fields):
        pending = self.start(api_key, version, body_name, **fields)
        assert pending.done, "request unexpectedly waits"
        return pending.response()


class PendingCall:
    def __init__(self, request, result, correlation: int) -> None:
        self.request = request
        self.result = result
        self.correlation = correlation
        self.reply: Reply | None = None

    @property
    def done(self) -> bool:
        return not isinstance(self.result, Deferred) or self.result.done

    def response(self):
        result = self.result
        if isinstance(result, Deferred):
            assert result.done
            result = result.value
        if isinstance(result, FetchOperation):
            result = result.attempt(final=True)
        if isinstance(result, Reply):
            self.reply = result
            result = result.body
        payload = b"".join(bytes(p) for p in encode_response(self.request, result))[4:]
        correlation, decoded = decode_response(self.request.api_key, self.request.api_version, payload)
        assert correlation == self.correlation
        return decoded
