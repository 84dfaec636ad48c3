"""A broker driven with real request bytes (no sockets) as a chosen principal:
the support of the admin API handler tests."""

from __future__ import annotations

from typing import Any

from logbroker.broker import Broker
from logbroker.broker.handlers import Reply, dispatch
from logbroker.broker.handlers._build import build
from logbroker.broker.session import RequestContext, Session
from logbroker.protocol import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_module,
)


class AdminHarness:
    """Requests to ``broker`` as ``User:<user>`` (default ``admin``), round-tripped
    through the encoders and decoders on both sides."""

    def __init__(self, broker: Broker, user: str = "admin") -> None:
        self.broker = broker
        self.user = user
        self._correlation = 0

    def __repr__(self) -> str:
        return f"AdminHarness(user={self.user!r}, broker={self.broker!r})"

    def req(self, api_key: int, version: int, class_name: str, /, **fields: Any) -> Any:
        return build(getattr(request_module(api_key, version), class_name), **fields)

    def call(self, api_key: int, version: int, body_name: str, /, *, as_user: str | None = None, **fields: Any):
        body = self.req(api_key, version, body_name, **fields)
        self._correlation += 1
        frame = encode_request(api_key, version, self._correlation, "test-client", body)
        request = decode_request(frame[4:])
        session = Session(principal=f"User:{as_user or self.user}", authenticated=True)
        result = dispatch(self.broker, request, RequestContext.for_request(request, session))
        if isinstance(result, Reply):
            result = result.body
        payload = b"".join(bytes(p) for p in encode_response(request, result))[4:]
        correlation, decoded = decode_response(api_key, version, payload)
        assert correlation == self._correlation
        return decoded
