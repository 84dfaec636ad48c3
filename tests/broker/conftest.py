"""A Broker in a temp dir, driven with real request bytes but no sockets."""

import pytest

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.handlers import FetchOperation, Reply, dispatch
from logbroker.broker.handlers._build import build
from logbroker.broker.session import RequestContext, Session
from logbroker.protocol import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_module,
)


class Harness:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._correlation = 0
        self.session = Session()  # the connection the requests come from; its principal is who asks

    def call(self, api_key: int, version: int, body_name: str, /, **fields):
        """Encode a request, dispatch it, encode and decode the response body."""
        mod = request_module(api_key, version)
        body = build(getattr(mod, body_name), **fields)
        return self.call_body(api_key, version, body)

    def call_body(self, api_key, version, body):
        self._correlation += 1
        frame = encode_request(api_key, version, self._correlation, "test", body)
        request = decode_request(frame[4:])
        result = dispatch(self.broker, request, RequestContext.for_request(request, self.session))
        if isinstance(result, FetchOperation):
            result = result.attempt(final=True)
        if isinstance(result, Reply):
            result = result.body
        if result is None:
            return None
        payload = b"".join(bytes(p) for p in encode_response(request, result))[4:]
        correlation, decoded = decode_response(api_key, version, payload)
        assert correlation == self._correlation
        return decoded

    def req(self, api_key, version, class_name, /, **fields):
        return build(getattr(request_module(api_key, version), class_name), **fields)


@pytest.fixture
def make_broker(tmp_path):
    brokers = []

    def make(**settings):
        settings.setdefault("data_dir", str(tmp_path / f"data{len(brokers)}"))
        broker = Broker(BrokerConfig(**settings))
        brokers.append(broker)
        return Harness(broker)

    yield make
    for b in brokers:
        try:
            b.close()
        except Exception:
            pass


@pytest.fixture
def h(make_broker):
    return make_broker()
