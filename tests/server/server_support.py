"""Helpers for the server tests: a Broker in a temporary directory behind a
:class:`~logbroker.server.dispatch.Dispatcher`, request frames, decoded answers."""

from __future__ import annotations

from typing import Any

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.handlers._build import build
from logbroker.broker.session import Session
from logbroker.protocol import decode_response, encode_request, request_module
from logbroker.server.dispatch import Dispatcher
from logbroker.server.waiters import AppendWaiters


class DispatchEnv:
    """A broker and a dispatcher over it; ``ask`` sends request bytes and decodes the answer."""

    def __init__(self, data_dir: str, **settings: Any) -> None:
        self.broker = Broker(BrokerConfig(data_dir=data_dir, **settings))
        self.waiters = AppendWaiters()
        self.closing = False
        self.deadline_moves = 0
        self.dispatcher = Dispatcher(
            self.broker, self.broker.config, self.waiters, None,
            closing=lambda: self.closing, deadlines_moved=self._moved,
        )
        self._correlation = 0

    def __repr__(self) -> str:
        return f"DispatchEnv({self.broker!r})"

    def _moved(self) -> None:
        self.deadline_moves += 1

    def close(self) -> None:
        self.broker.close()

    def frame(self, api_key: int, version: int, class_name: str, /, **fields: Any) -> bytes:
        """A request payload (a frame without its 4-byte size)."""
        self._correlation += 1
        body = build(getattr(request_module(api_key, version), class_name), **fields)
        return encode_request(api_key, version, self._correlation, "test-client", body)[4:]

    async def ask(self, session: Session, api_key: int, version: int, class_name: str, /, **fields: Any) -> Any:
        """Send one request on the connection of ``session``; its decoded response body."""
        frame = self.frame(api_key, version, class_name, **fields)
        sent = self._correlation
        parts = await self.dispatcher.handle_frame(frame, session)
        assert parts is not None
        payload = b"".join(bytes(p) for p in parts)[4:]
        correlation, body = decode_response(api_key, version, payload)
        assert correlation == sent
        return body


def req(api_key: int, version: int, class_name: str, /, **fields: Any) -> Any:
    return build(getattr(request_module(api_key, version), class_name), **fields)
