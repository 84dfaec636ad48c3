"""Request-reply over topics, interoperable with Spring Kafka's ReplyingKafkaTemplate.

A :class:`Requester` sends each request with the headers ``kafka_correlationId``
(16 random bytes), ``kafka_replyTopic`` and ``kafka_replyPartition`` (4-byte
big-endian) and waits for the record on its reply partition that carries the
same correlation id. Many requests may be outstanding at once. A
:class:`Responder` consumes requests in a consumer group (so each request goes
to one responder), runs a handler and produces its return value to the reply
topic with the correlation id; a handler exception becomes an error reply
(header ``logbroker_error``) that raises :class:`RemoteHandlerError` on the
requesting side.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import struct
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

import trio

from logbroker.errors import LogbrokerError

from .admin import Admin
from .config import ClientConfig
from .consumer import Consumer
from .producer import Producer
from .types import ConsumerRecord, TopicPartition

__all__ = ["RemoteHandlerError", "RequestTimeoutError", "Requester", "Responder"]

log = logging.getLogger("logbroker.client")

CORRELATION_HEADER = "kafka_correlationId"
REPLY_TOPIC_HEADER = "kafka_replyTopic"
REPLY_PARTITION_HEADER = "kafka_replyPartition"
ERROR_HEADER = "logbroker_error"
_PARTITION = struct.Struct(">i")
_C = TypeVar("_C")


class RequestTimeoutError(LogbrokerError):
    """No reply arrived within the requester's timeout."""


class RemoteHandlerError(LogbrokerError):
    """The responder's handler raised; the message says what."""


class _Waiting:
    """One outstanding request: set ``event`` once ``reply`` arrived."""

    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: ConsumerRecord | None = None


_CONNECTION_OPTIONS = frozenset(f.name for f in fields(ClientConfig))


def _admin_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The connection settings (security, timeouts, client id) of producer and
    consumer options: what the Admin that creates and deletes topics takes."""
    return {k: v for k, v in options.items() if k in _CONNECTION_OPTIONS and k != "bootstrap"}


def _entered(client: _C | None, owner: object) -> _C:
    if client is None:
        raise RuntimeError(f"use {type(owner).__name__} inside 'async with'")
    return client


def _header(record: ConsumerRecord, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


class Requester:
    """Send requests and await their replies.

    ``reply_topic``: where replies come back (default: a new single-partition
    topic ``logbroker-replies-<random>``, deleted on close). ``timeout_ms``: how
    long :meth:`request` waits before raising RequestTimeoutError (Spring's
    default, 5 s). Other options go to the producer and consumer.
    """

    def __init__(self, bootstrap: str | None = None, *, reply_topic: str | None = None, reply_partition: int = 0,
                 timeout_ms: int = 5_000, **options: Any) -> None:
        self._bootstrap = bootstrap
        self._own_topic = reply_topic is None
        self.reply_topic = reply_topic or f"logbroker-replies-{uuid.uuid4().hex[:12]}"
        self.reply_partition = reply_partition
        self.timeout_ms = timeout_ms
        self._options = options
        self._waiting: dict[bytes, _Waiting] = {}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"Requester(reply_topic={self.reply_topic!r}, outstanding={len(self._waiting)})"

    async def __aenter__(self) -> Requester:
        if self._own_topic:
            async with Admin(self._bootstrap, **_admin_options(self._options)) as admin:
                await admin.create_topic(self.reply_topic, 1)
        async with contextlib.AsyncExitStack() as stack:
            if self._own_topic:
                stack.push_async_callback(self._delete_reply_topic)
            # A request is sent at once: batching would only add its linger to every round trip.
            self._producer = await stack.enter_async_context(
                Producer(self._bootstrap, **{"linger_ms": 0, **self._options})
            )
            self._consumer = await stack.enter_async_context(
                Consumer(self._bootstrap, auto_offset_reset="latest", enable_auto_commit=False,
                         fetch_max_wait_ms=100, **self._options)
            )
            tp = TopicPartition(self.reply_topic, self.reply_partition)
            self._consumer.assign([tp])
            await self._consumer.seek_to_end(tp)
            await self._consumer.position(tp)  # resolve the end before any request goes out
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._read_replies)
            stack.callback(nursery.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await _entered(self._stack, self).aclose()

    async def _delete_reply_topic(self) -> None:
        with trio.move_on_after(5), contextlib.suppress(LogbrokerError):
            async with Admin(self._bootstrap, **_admin_options(self._options)) as admin:
                await admin.delete_topic(self.reply_topic)

    async def _read_replies(self) -> None:
        async for record in _entered(self._consumer, self):
            correlation = _header(record, CORRELATION_HEADER)
            slot = self._waiting.pop(correlation, None) if correlation is not None else None
            if slot is None:
                log.warning("dropping a reply on %s[%d] at offset %d: no request waits for it",
                            record.topic, record.partition, record.offset)
                continue
            slot.reply = record
            slot.event.set()

    async def request(self, topic: str, value: Any, key: Any = None,
                      headers: Iterable[tuple[str, bytes | None]] = ()) -> ConsumerRecord:
        """Send ``value`` to ``topic`` and return the reply record.

        :raises RequestTimeoutError: no reply within ``timeout_ms``.
        :raises RemoteHandlerError: the responder's handler failed.
        """
        correlation = os.urandom(16)
        slot = _Waiting()
        self._waiting[correlation] = slot
        all_headers = [
            *headers,
            (CORRELATION_HEADER, correlation),
            (REPLY_TOPIC_HEADER, self.reply_topic.encode()),
            (REPLY_PARTITION_HEADER, _PARTITION.pack(self.reply_partition)),
        ]
        try:
            await _entered(self._producer, self).send(topic, _as_bytes(value), _as_bytes(key), headers=all_headers)
            with trio.move_on_after(self.timeout_ms / 1000):
                await slot.event.wait()
        finally:
            self._waiting.pop(correlation, None)
        reply = slot.reply
        if reply is None:
            raise RequestTimeoutError(f"no reply to a request on {topic} within {self.timeout_ms} ms")
        error = _header(reply, ERROR_HEADER)
        if error is not None:
            raise RemoteHandlerError(error.decode("utf-8", "replace"))
        return reply


Handler = Callable[[ConsumerRecord], Any] | Callable[[ConsumerRecord], Awaitable[Any]]


class Responder:
    """Answer requests on ``topic`` with ``handler``; responders sharing
    ``group_id`` split the requests between them.

    The handler gets the request record and returns the reply value (bytes,
    str or None); a sync handler runs in a worker thread. Call :meth:`run`
    inside ``async with``; it serves until cancelled. ``options`` go to the
    producer and the consumer, ``consumer_options`` to the request consumer
    only (``allow_auto_create_topics=False``: a missing request topic is not
    created, while replies may still go to any topic).
    """

    def __init__(self, bootstrap: str | None, topic: str, handler: Handler, *, group_id: str,
                 consumer_options: Mapping[str, Any] | None = None, **options: Any) -> None:
        self._bootstrap = bootstrap
        self.topic = topic
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler)
        self.group_id = group_id
        self._options = options
        self._consumer_options = {**options, **(consumer_options or {})}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.handled = 0

    def __repr__(self) -> str:
        return f"Responder(topic={self.topic!r}, group_id={self.group_id!r}, handled={self.handled})"

    async def __aenter__(self) -> Responder:
        async with contextlib.AsyncExitStack() as stack:
            self._producer = await stack.enter_async_context(
                Producer(self._bootstrap, **{"linger_ms": 0, **self._options})
            )
            self._consumer = await stack.enter_async_context(
                Consumer(self._bootstrap, group_id=self.group_id, auto_offset_reset="earliest",
                         fetch_max_wait_ms=100, **self._consumer_options)
            )
            await self._consumer.subscribe([self.topic])
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await _entered(self._stack, self).aclose()

    async def run(self) -> None:
        """Serve requests until cancelled."""
        async for record in _entered(self._consumer, self):
            await self.handle(record)

    async def handle(self, record: ConsumerRecord) -> None:
        correlation = _header(record, CORRELATION_HEADER)
        reply_topic = _header(record, REPLY_TOPIC_HEADER)
        if correlation is None or reply_topic is None:
            log.warning("request at %s[%d]@%d has no reply headers; skipped",
                        record.topic, record.partition, record.offset)
            return
        raw_partition = _header(record, REPLY_PARTITION_HEADER)
        partition = _PARTITION.unpack(raw_partition)[0] if raw_partition and len(raw_partition) == 4 else None
        headers = [(CORRELATION_HEADER, correlation)]
        try:
            if self._is_async:
                value = await self._handler(record)
            else:
                value = await trio.to_thread.run_sync(self._handler, record)
        except Exception as exc:  # the requester raises it; the responder keeps serving
            value = None
            headers.append((ERROR_HEADER, f"{type(exc).__name__}: {exc}".encode()))
        await _entered(self._producer, self).send(reply_topic.decode(), _as_bytes(value), partition=partition,
                                                  headers=headers)
        self.handled += 1
