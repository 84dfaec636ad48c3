"""Blocking facades for code that is not async: one trio loop in a background thread.

Each :class:`SyncProducer`, :class:`SyncConsumer` or :class:`SyncAdmin` starts
a daemon thread running ``trio.run``; a host task there enters the async
client (``async with``) and keeps it open until :meth:`close`. Every method
is one ``trio.from_thread.run`` call into that loop, so any number of threads
may share one object. Method names are those of the async clients; each
takes ``timeout=`` (seconds, None = the client's own limits only) and raises
:class:`~logbroker.errors.KafkaTimeoutError` when it expires.

    with SyncProducer("localhost:9092") as producer:
        producer.send("events", b"hello").result(timeout=10)
"""

from __future__ import annotations

import datetime
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import trio

from logbroker.errors import ClientClosedError, KafkaTimeoutError

from ._batches import Delivery
from .admin import Admin
from .columns import ConsumerBatch
from .consumer import Consumer
from .producer import Producer
from .types import ConsumerRecord, RecordMetadata

__all__ = ["SyncAdmin", "SyncConsumer", "SyncDelivery", "SyncProducer"]


async def _bounded(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   timeout: float | None) -> Any:
    if timeout is None:
        return await fn(*args, **kwargs)
    with trio.move_on_after(timeout) as scope:
        return await fn(*args, **kwargs)
    assert scope.cancelled_caught
    raise KafkaTimeoutError(f"{getattr(fn, '__name__', 'call')} did not complete within {timeout} s")


class _LoopThread:
    """A trio loop in a daemon thread hosting one async client until :meth:`stop`."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._crash: BaseException | None = None
        self._stop: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported to the calling threads
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                self._crash = exc

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._stopped = trio.Event()
        try:
            async with self.client:
                self._ready.set()
                await self._stop.wait()
        finally:
            self._stopped.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._token is not None

    def _dead(self) -> ClientClosedError:
        error = ClientClosedError("the client is closed")
        if self._crash is not None:
            error = ClientClosedError(f"the client's loop stopped: {self._crash!r}")
            error.__cause__ = self._crash
        return error

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``await fn(*args, **kwargs)`` on the loop and return its result (or raise its error)."""
        if not self._thread.is_alive():
            raise self._dead()
        try:
            return trio.from_thread.run(_bounded, fn, args, kwargs, timeout, trio_token=self._token)
        except trio.RunFinishedError:
            raise self._dead() from None

    def call_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run plain ``fn(*args)`` on the loop thread."""
        if not self._thread.is_alive():
            raise self._dead()
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise self._dead() from None

    def stop(self, timeout: float | None) -> None:
        """Close the client (its own ``close()`` first, under ``timeout``), end the loop, join the thread."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self.client.close, timeout=timeout)
        finally:
            try:
                self.call_sync(self._stop.set)  # type: ignore[union-attr]  # set by start(), which close() follows
            except ClientClosedError:
                pass
            self._thread.join(timeout)


class _SyncBase:
    _kind = "client"

    def __init__(self, client: Any) -> None:
        self._loop = _LoopThread(client, f"logbroker-{self._kind}")
        self._client = client

    def __enter__(self) -> Any:  # each facade returns itself
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> None:
        """Close the async client (flushing/committing as it does) and stop the loop thread."""
        self._loop.stop(timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._client!r}>"


def _blocking(name: str, async_cls: type) -> Callable[..., Any]:
    """A method calling ``await self._client.<name>(...)`` on the loop, with ``timeout=``."""

    def method(self: _SyncBase, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return self._loop.call(getattr(self._client, name), *args, timeout=timeout, **kwargs)

    original = getattr(async_cls, name)
    method.__name__ = name
    method.__qualname__ = name
    method.__doc__ = (original.__doc__ or "") + "\n\nBlocking; ``timeout`` in seconds raises KafkaTimeoutError."
    return method


def _plain(name: str, async_cls: type) -> Callable[..., Any]:
    """A method running the client's plain (non-async) ``name`` on the loop thread."""

    def method(self: _SyncBase, *args: Any) -> Any:
        return self._loop.call_sync(getattr(self._client, name), *args)

    method.__name__ = name
    method.__qualname__ = name
    method.__doc__ = getattr(async_cls, name).__doc__
    return method


# -- producer -----------------------------------------------------------------------


class SyncDelivery:
    """A blocking view of a :class:`~logbroker.client.Delivery`."""

    __slots__ = ("_delivery", "_loop")

    def __init__(self, delivery: Delivery, loop: _LoopThread) -> None:
        self._delivery = delivery
        self._loop = loop

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait for the delivery and return its RecordMetadata (or raise its error)."""
        return self._loop.call(self._delivery.wait, timeout=timeout)

    def done(self) -> bool:
        return self._loop.call_sync(self._delivery.done)

    def __repr__(self) -> str:
        return f"<SyncDelivery {self._delivery!r}>"


class SyncProducer(_SyncBase):
    """A blocking :class:`~logbroker.client.Producer`; options as for the async one."""

    _kind = "producer"

    def __init__(self, bootstrap: str | None = None, **options: Any) -> None:
        super().__init__(Producer(bootstrap, **options))

    def send(self, topic: str, value: bytes | str | None, key: bytes | str | None = None, *,
             timeout: float | None = None, **kwargs: Any) -> SyncDelivery:
        """Queue a record (waiting for room or metadata at most ``timeout``); return its SyncDelivery."""
        delivery = self._loop.call(self._client.send, topic, value, key, timeout=timeout, **kwargs)
        return SyncDelivery(delivery, self._loop)

    def send_many(self, topic: str, records: Iterable[tuple[bytes | str | None, bytes | str | None]], *,
                  timeout: float | None = None) -> list[SyncDelivery]:
        """Queue many ``(key, value)`` pairs in one call into the loop (much cheaper than ``send`` each)."""
        async def _send_all() -> list[Delivery]:
            return [await self._client.send(topic, value, key) for key, value in records]

        return [SyncDelivery(d, self._loop) for d in self._loop.call(_send_all, timeout=timeout)]

    flush = _blocking("flush", Producer)
    init_transactions = _blocking("init_transactions", Producer)
    begin_transaction = _blocking("begin_transaction", Producer)
    commit_transaction = _blocking("commit_transaction", Producer)
    abort_transaction = _blocking("abort_transaction", Producer)
    send_offsets_to_transaction = _blocking("send_offsets_to_transaction", Producer)
    send_and_wait = _blocking("send_and_wait", Producer)
    partitions_for = _blocking("partitions_for", Producer)
    statistics = _plain("statistics", Producer)


# -- consumer -----------------------------------------------------------------------


class SyncConsumer(_SyncBase):
    """A blocking :class:`~logbroker.client.Consumer`; options as for the async one.

    Iterating blocks for each next record (fetching a whole batch of records
    per call into the loop) and ends when the consumer is closed.
    """

    _kind = "consumer"

    def __init__(self, bootstrap: str | None = None, **options: Any) -> None:
        super().__init__(Consumer(bootstrap, **options))
        self._buffer: list[ConsumerRecord] = []
        self._lock = threading.Lock()

    def getmany(self, max_records: int | None = None, *, timeout: float | None = None) -> list[ConsumerRecord]:
        """Records of the next fetch, or [] if none arrived within ``timeout``."""
        try:
            return self._loop.call(self._client.getmany, max_records, timeout=timeout)
        except KafkaTimeoutError:
            return []

    def __iter__(self) -> Iterator[ConsumerRecord]:
        while True:
            with self._lock:
                if not self._buffer:
                    try:
                        self._buffer = self._loop.call(self._client.getmany)
                    except ClientClosedError:
                        return
                    self._buffer.reverse()
                record = self._buffer.pop()
            yield record

    def poll_batch(self, max_records: int = 100_000, *, timeout: float | None = None) -> ConsumerBatch:
        """Blocking :meth:`Consumer.poll_batch`: up to ``max_records`` records as columns; an empty
        batch if none arrived within ``timeout``."""
        try:
            return self._loop.call(self._client.poll_batch, max_records, timeout=timeout)
        except KafkaTimeoutError:
            return ConsumerBatch()

    def replay(self, topic: str, *, start: int | datetime.datetime = 0, stop: int | datetime.datetime | None = None,
               partitions: Iterable[int] | None = None, timeout: float | None = None) -> Iterator[ConsumerRecord]:
        """Blocking :meth:`Consumer.replay`; ``timeout`` bounds each wait for records."""
        replay = self._loop.call_sync(functools.partial(self._client.replay, topic, start=start, stop=stop,
                                                        partitions=partitions))
        while True:
            batch = self._loop.call(replay.next_records, timeout=timeout)
            if batch is None:
                return
            yield from batch

    getone = _blocking("getone", Consumer)
    subscribe = _blocking("subscribe", Consumer)
    unsubscribe = _blocking("unsubscribe", Consumer)
    wait_assignment = _blocking("wait_assignment", Consumer)
    seek_to_beginning = _blocking("seek_to_beginning", Consumer)
    seek_to_end = _blocking("seek_to_end", Consumer)
    seek_to_time = _blocking("seek_to_time", Consumer)
    position = _blocking("position", Consumer)
    committed = _blocking("committed", Consumer)
    commit = _blocking("commit", Consumer)
    beginning_offsets = _blocking("beginning_offsets", Consumer)
    end_offsets = _blocking("end_offsets", Consumer)
    offsets_for_times = _blocking("offsets_for_times", Consumer)
    partitions_for = _blocking("partitions_for", Consumer)
    topics = _blocking("topics", Consumer)
    assign = _plain("assign", Consumer)
    seek = _plain("seek", Consumer)
    pause = _plain("pause", Consumer)
    resume = _plain("resume", Consumer)
    paused = _plain("paused", Consumer)
    assignment = _plain("assignment", Consumer)
    subscription = _plain("subscription", Consumer)
    group_metadata = _plain("group_metadata", Consumer)


# -- admin --------------------------------------------------------------------------


class SyncAdmin(_SyncBase):
    """A blocking :class:`~logbroker.client.Admin`; options as for the async one."""

    _kind = "admin"

    def __init__(self, bootstrap: str | None = None, **options: Any) -> None:
        super().__init__(Admin(bootstrap, **options))

    create_topics = _blocking("create_topics", Admin)
    create_topic = _blocking("create_topic", Admin)
    delete_topics = _blocking("delete_topics", Admin)
    delete_topic = _blocking("delete_topic", Admin)
    list_topics = _blocking("list_topics", Admin)
    describe_topics = _blocking("describe_topics", Admin)
    describe_configs = _blocking("describe_configs", Admin)
    alter_topic = _blocking("alter_topic", Admin)
    list_offsets = _blocking("list_offsets", Admin)
    topic_offsets = _blocking("topic_offsets", Admin)
    list_groups = _blocking("list_groups", Admin)
    describe_groups = _blocking("describe_groups", Admin)
    delete_groups = _blocking("delete_groups", Admin)
    list_group_offsets = _blocking("list_group_offsets", Admin)
    reset_offsets = _blocking("reset_offsets", Admin)
    delete_records = _blocking("delete_records", Admin)
    describe_log_dirs = _blocking("describe_log_dirs", Admin)
    list_transactions = _blocking("list_transactions", Admin)
    describe_transactions = _blocking("describe_transactions", Admin)
    describe_producers = _blocking("describe_producers", Admin)
    abort_transaction = _blocking("abort_transaction", Admin)
