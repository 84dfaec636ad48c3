"""``logbroker produce TOPIC``: one record per input line, from stdin or ``--file``, sent as it arrives.

Input is read in a worker thread (``os.read`` on the descriptor): a whole
chunk when data is waiting (a file, a fast pipe), a single line as soon as it
is written when input is slow (``tail -f app.log | logbroker produce logs``).
Batching comes from the producer's ``linger_ms``. A topic that does not exist
is created by the broker if it auto-creates topics, else named as missing.

``--format text`` (default): each line is a value, or ``KEY<sep>VALUE`` with
``--key-separator``; ``--key-encoding``/``--value-encoding`` hex or base64
decode them. ``--format json``: each line is a JSON string (the value) or an
object as ``logbroker consume --format json`` prints it: ``key`` and
``value`` (a string, null, ``{"base64": ...}`` or ``{"hex": ...}``; any
other JSON value is sent as its JSON text), ``headers`` (a list of
``[name, value]`` pairs or an object), ``partition`` (kept unless
``--partition``), ``timestamp`` (epoch ms); ``topic`` and ``offset`` are
ignored. ``--format json`` also prints the summary as JSON on stdout.

Limits: the topic's ``max.message.bytes`` and ``segment.bytes`` are read at
start and size the producer (largest request, batch size), so a topic that
takes 50 MB records gets them; ``--max-message-bytes``/``--batch-size`` set
them explicitly. A line over the limit, or one that cannot be parsed, is
reported (line number, size, limit) and skipped; the rest are sent.

Ending: at EOF everything read is sent and waited for (each record at most
the producer's ``delivery_timeout_ms``). On SIGINT/SIGTERM reading stops, the
lines already read are sent and waited for at most ``--timeout`` seconds
(a second signal: at once); records not acknowledged by then are reported
as failed (they may or may not have been written). A summary always ends
the run: records delivered and failed, per partition, with the errors.
Exit status: 0, 1 if any record failed, 130 after SIGINT, 143 after SIGTERM.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import click
import trio

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.hints import missing_partition_message, missing_topic_message
from logbroker.cli.schemas import registry_options
from logbroker.cli.topics import emit_json, parse_pairs, run_client
from logbroker.client import Admin, Delivery, Producer, ProducerConfig
from logbroker.client.serde import SchemaRegistryClient, SerializationError
from logbroker.errors import (
    ClientClosedError,
    KafkaError,
    LogbrokerError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)

_CHUNK = 1 << 16  # most bytes one read returns (a pipe gives what is waiting): bounds the records queued at once
_BATCH_OVERHEAD = 61 + 24 + 16  # batch header, a record's varints and attributes, and a margin
_HEADER_OVERHEAD = 10  # varints of one header
_KAFKA_MAX_MESSAGE_BYTES = 1048588  # Kafka's (and the broker's) default message.max.bytes
_DEFAULTS = ProducerConfig()
_SHOWN_PROBLEMS = 20  # per-line messages printed before they are only counted
_SHOWN_LINES = 20  # line numbers kept per failure kind
_SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
_ENCODINGS = ("text", "hex", "base64")


class _BadLine(Exception):
    """A line that cannot become a record: why (no line number; the caller adds it)."""


# -- what the topic takes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TopicFacts:
    """What the broker said of the topic before producing."""

    partitions: int | None  # None: the topic does not exist (yet)
    max_message_bytes: int | None  # None: not known (absent topic, or configs not readable)
    segment_bytes: int | None
    existing: tuple[str, ...] = ()  # the topic names, when the topic is absent (for the hint)


@dataclass(frozen=True, slots=True)
class _Limits:
    """How big a record and a batch may be, and which setting says so."""

    record_bytes: int
    """The largest batch of one record the broker takes (record plus batch overhead)."""
    source: str
    """What sets ``record_bytes``, for messages (``max.message.bytes of logs``)."""
    batch_size: int

    def producer_options(self) -> dict[str, Any]:
        """The producer's limits: requests and buffer big enough for the largest record."""
        request = max(_DEFAULTS.max_request_size, self.record_bytes + 1024)
        return {"max_request_size": request, "batch_size": min(self.batch_size, request),
                "max_buffer_bytes": max(_DEFAULTS.max_buffer_bytes, 2 * request)}

    @property
    def record_room(self) -> int:
        """Bytes of key, value and headers a record may have."""
        return self.record_bytes - _BATCH_OVERHEAD

    def too_large(self, topic: str) -> str:
        """Why a record too large is not sent, and how to raise the limit."""
        if self.source == "--max-message-bytes":
            hint = "raise --max-message-bytes (and the topic's max.message.bytes)"
        elif self.source.startswith("Kafka's default"):
            hint = (f"if the topic takes more, say so with --max-message-bytes; raise the topic's with "
                    f"`logbroker topics alter {topic} -c max.message.bytes=N`")
        else:
            hint = f"raise it with `logbroker topics alter {topic} -c {self.source.split()[0]}=N`"
        return (f"larger than the {self.record_room} bytes a record may have "
                f"({self.source}: {self.record_bytes}, less {_BATCH_OVERHEAD} for the batch); {hint}")


def _int_config(configs: dict[str, str | None], name: str) -> int | None:
    try:
        return int(configs.get(name) or "")
    except ValueError:
        return None


async def _inspect(client: ClientSettings, topic: str) -> _TopicFacts:
    """Partitions and size limits of ``topic``; what is missing stays None.

    :raises KafkaError: the broker cannot be reached, or refuses to describe the topic.
    """
    async with Admin(client.bootstrap, **client.options()) as admin:
        try:
            (described,) = await admin.describe_topics([topic])
        except UnknownTopicOrPartitionError:
            return _TopicFacts(None, None, None, tuple(await admin.list_topics()))
        try:
            configs = (await admin.describe_configs([topic], keys=["max.message.bytes", "segment.bytes"])).get(
                topic, {})
        except KafkaError:  # a user allowed to write need not be allowed to describe configs
            configs = {}
    return _TopicFacts(len(described.partitions), _int_config(configs, "max.message.bytes"),
                       _int_config(configs, "segment.bytes"))


def _limits(topic: str, facts: _TopicFacts, max_message_bytes: int | None, batch_size: int | None) -> _Limits:
    if max_message_bytes is not None:
        candidates = [(max_message_bytes, "--max-message-bytes")]
    elif facts.max_message_bytes is not None:
        candidates = [(facts.max_message_bytes, f"max.message.bytes of {topic}")]
    else:
        candidates = [(_KAFKA_MAX_MESSAGE_BYTES, "Kafka's default max.message.bytes")]
    if facts.segment_bytes is not None:  # the broker refuses a batch bigger than a segment too
        candidates.append((facts.segment_bytes, f"segment.bytes of {topic}"))
    record_bytes, source = min(candidates)
    if batch_size is None:
        batch_size = max(1, min(_DEFAULTS.batch_size, record_bytes - _BATCH_OVERHEAD))
    elif batch_size + _BATCH_OVERHEAD > record_bytes:
        raise click.BadParameter(f"{batch_size} bytes would make batches bigger than the limit of {record_bytes} "
                                 f"bytes ({source}), which the broker refuses", param_hint="--batch-size")
    return _Limits(record_bytes, source, batch_size)


# -- input ---------------------------------------------------------------------------


class _LongLine(bytes):
    """Stands for a line too long to keep in memory: empty, but ``len()`` is the line's size,
    so the size check every line goes through catches it."""

    size: int

    def __len__(self) -> int:
        return self.size


def _long_line(size: int) -> _LongLine:
    line = _LongLine()
    line.size = size
    return line


class _LineReader:
    """Splits chunks of input into lines; the unterminated tail waits for the next chunk.

    A tail longer than ``keep`` bytes is no longer kept, only measured: a huge
    line costs no memory, and comes out as a :class:`_LongLine`.
    """

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._parts: list[bytes] = []
        self._size = 0
        self._strip_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes, without their ``\\n`` (nor trailing ``\\r``)."""
        if not self._strip_cr and b"\r" in chunk:  # CRLF input: strip from here on (a cost per line)
            self._strip_cr = True
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if self._size:
                lines[0] = self._join(lines[0])
            if self._strip_cr:
                lines = [line if line.__class__ is _LongLine else line.rstrip(b"\r") for line in lines]
        self._add(tail)
        return lines

    def end(self) -> bytes | None:
        """The last line if the input did not end with a newline."""
        if not self._size:
            return None
        line = self._join(b"")
        return line if line.__class__ is _LongLine else line.rstrip(b"\r")

    def _add(self, part: bytes) -> None:
        if not part:
            return
        self._size += len(part)
        if self._size <= self._keep:
            self._parts.append(part)
        else:
            self._parts.clear()

    def _join(self, last: bytes) -> bytes:
        size = self._size + len(last)
        whole = _long_line(size) if size > self._keep else b"".join(self._parts) + last
        self._parts = []
        self._size = 0
        return whole


def _decode_text(data: bytes, encoding: str, what: str) -> bytes:
    if encoding == "hex":
        try:
            return bytes.fromhex(data.decode("ascii"))
        except ValueError as exc:
            raise _BadLine(f"{what} is not hex: {exc}") from None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _BadLine(f"{what} is not base64: {exc}") from None


def _json_bytes(value: Any, what: str) -> bytes | None:
    """A key, value or header value as ``consume --format json`` prints it, as bytes."""
    if value is None:
        return None
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("base64", "hex"):
        ((form, text),) = value.items()
        if not isinstance(text, str):
            raise _BadLine(f"{what}: {form} must be a string")
        try:
            return bytes.fromhex(text) if form == "hex" else base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadLine(f"{what} is not {form}: {exc}") from None
    try:
        return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")  # other JSON: its text
    except UnicodeEncodeError as exc:
        raise _BadLine(f"{what} is not valid Unicode: {exc.reason}") from None


def _json_headers(headers: Any) -> list[tuple[str, bytes | None]]:
    if headers is None:
        return []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    if not isinstance(pairs, list):
        raise _BadLine("headers must be a list of [name, value] pairs or an object")
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str):
            raise _BadLine(f"header {json.dumps(pair)} is not a [name, value] pair")
        out.append((pair[0], _json_bytes(pair[1], f"header {pair[0]!r}")))
    return out


@dataclass(frozen=True, slots=True)
class _JsonRecord:
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int | None
    timestamp_ms: int | None


_JSON_FIELDS = frozenset({"key", "value", "headers", "partition", "timestamp", "topic", "offset"})


def _json_record(line: bytes) -> _JsonRecord:
    """One line of ``--format json`` input. :raises _BadLine: it is not one."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise _BadLine(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        return _JsonRecord(_json_bytes(obj, "value"), None, [], None, None)
    unknown = set(obj) - _JSON_FIELDS
    if unknown:
        raise _BadLine(f"unknown field(s) {', '.join(sorted(unknown))}")
    partition, timestamp = obj.get("partition"), obj.get("timestamp")
    for name, number in (("partition", partition), ("timestamp", timestamp)):
        if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < -1
                                   or (name == "partition" and number < 0)):
            raise _BadLine(f"{name} must be a {'partition number' if name == 'partition' else 'time in epoch ms'}, "
                           f"got {json.dumps(number)}")
    return _JsonRecord(_json_bytes(obj.get("value"), "value"), _json_bytes(obj.get("key"), "key"),
                       _json_headers(obj.get("headers")), partition, timestamp)


# -- outcome -------------------------------------------------------------------------


@dataclass(slots=True)
class _Failure:
    """Records of one partition (None: never queued) that failed for one reason."""

    count: int = 0
    message: str = ""
    lines: list[int] = field(default_factory=list)


class _Tally:
    """What became of the input: delivered records per partition, failures by
    partition and kind. Written by one trio task at a time (the loop is single-threaded)."""

    def __init__(self, topic: str, limits: _Limits | None, partitions: int | None) -> None:
        self.topic = topic
        self.limits = limits
        self.partitions = partitions
        self.sent: Counter[int] = Counter()
        self.failures: dict[tuple[int | None, str], _Failure] = {}
        self.shown = 0

    @property
    def failed(self) -> int:
        return sum(f.count for f in self.failures.values())

    def reject(self, lineno: int, detail: str, kind: str, reason: str | None = None) -> None:
        """Line ``lineno`` was not sent: say so on stderr (the first few), count it.

        ``reason`` (default ``detail``) is said once for every line of this ``kind``;
        ``detail`` is this line's."""
        if self.shown < _SHOWN_PROBLEMS:
            click.echo(f"line {lineno}: not sent: {detail}" + (f": {reason}" if reason else ""), err=True)
        elif self.shown == _SHOWN_PROBLEMS:
            click.echo("... more lines not sent; the summary counts them", err=True)
        self.shown += 1
        failure = self._failure(None, kind, reason or detail)
        if len(failure.lines) < _SHOWN_LINES:
            failure.lines.append(lineno)

    def record_failed(self, partition: int, error: BaseException) -> None:
        self._failure(partition, type(error).__name__, self.explain(error))

    def _failure(self, partition: int | None, kind: str, message: str) -> _Failure:
        failure = self.failures.get((partition, kind))
        if failure is None:
            failure = self.failures[(partition, kind)] = _Failure(message=message)
        failure.count += 1
        return failure

    def explain(self, error: BaseException) -> str:
        """A delivery error as one line, with what to do about it."""
        if isinstance(error, ClientClosedError):
            return "not acknowledged before exit (it may or may not have been written)"
        text = f"{type(error).__name__}: {error}"
        if isinstance(error, RecordTooLargeError):
            limit = f"the limit is {self.limits.record_bytes} bytes ({self.limits.source}); " if self.limits else ""
            text += f"; {limit}raise it with `logbroker topics alter {self.topic} -c max.message.bytes=N`"
        return text

    def sweep(self, pending: deque[Delivery]) -> None:
        """Count the deliveries done at the head of ``pending`` (oldest first) and drop them."""
        sent = self.sent
        popleft = pending.popleft
        while pending:
            delivery = pending[0]
            try:
                error = delivery.exception()  # also marks a failure seen: flush() does not raise it again
            except RuntimeError:  # not done yet; nor are (mostly) the ones after it
                return
            popleft()
            if error is None:
                sent[delivery.partition] += 1
            else:
                self.record_failed(delivery.partition, error)

    def summary(self, seconds: float, interrupted: str | None) -> dict[str, Any]:
        failures = [
            {"partition": p, "count": f.count, "error": f.message, **({"lines": f.lines} if f.lines else {})}
            for (p, _), f in sorted(self.failures.items(), key=lambda i: (i[0][0] is not None, i[0][0] or 0, i[0][1]))
        ]
        return {"topic": self.topic, "records": sum(self.sent.values()), "failed": self.failed,
                "partitions": {str(p): n for p, n in sorted(self.sent.items())},
                "failures": failures, "interrupted": interrupted, "seconds": round(seconds, 3)}


def _print_summary(summary: dict[str, Any]) -> None:
    where = ", ".join(f"{p}: {n}" for p, n in summary["partitions"].items()) or "-"
    failed = f", {summary['failed']} failed" if summary["failed"] else ""
    stopped = f" (stopped by {summary['interrupted']})" if summary["interrupted"] else ""
    click.echo(f"produced {summary['records']} records to {summary['topic']} (partitions {where}){failed} "
               f"in {summary['seconds']:.2f} s{stopped}", err=True)
    for f in summary["failures"]:
        if f["partition"] is not None:
            click.echo(f"  partition {f['partition']}: {f['count']} failed: {f['error']}", err=True)
            continue
        more = ", ..." if f["count"] > len(f.get("lines", ())) else ""
        lines = ", ".join(map(str, f.get("lines", ())))
        click.echo(f"  {f['count']} line{'s' if f['count'] > 1 else ''} not sent ({lines}{more}): {f['error']}",
                   err=True)


# -- the run -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    topic: str
    fmt: str
    key_separator: bytes | None
    key_encoding: str
    value_encoding: str
    headers: list[tuple[str, bytes]]
    partition: int | None
    producer: dict[str, Any]
    max_message_bytes: int | None
    batch_size: int | None
    key_codec: _SchemaCodec | None = None
    value_codec: _SchemaCodec | None = None


class _SchemaCodec:
    """A key or value given as JSON, encoded with a schema in Confluent's wire format
    (the schema registered under the topic's subject, or found there, before the
    first record is read)."""

    def __init__(self, serializer: Any, is_key: bool) -> None:
        self._serializer = serializer
        self._is_key = is_key

    async def prepare(self, topic: str) -> None:
        """Parse the schema and register it (or find its id): at start, so that a refused
        schema is one message, not a failure per record."""
        from logbroker.client.serde import topic_subject

        await trio.to_thread.run_sync(self._serializer.prepare)
        await trio.to_thread.run_sync(self._serializer.schema_id, topic_subject(topic, self._is_key))

    def encode(self, topic: str, data: bytes, *, strings: bool = False) -> bytes:
        """``data`` (JSON text; with ``strings``, a JSON record's field, which holds a
        string as its UTF-8 text) encoded.

        :raises _BadLine: not JSON, or not a value of the schema.
        """
        what = "key" if self._is_key else "value"
        try:
            value = json.loads(data)
        except ValueError as exc:
            if not strings:
                raise _BadLine(f"the {what} is not JSON ({exc}); with --{what}-format it must be") from None
            value = data.decode("utf-8", "replace")
        try:
            encoded = self._serializer.encode(topic, value, self._is_key)
        except (SerializationError, LogbrokerError) as exc:
            raise _BadLine(str(exc)) from None
        return b"" if encoded is None else encoded


class _Run:
    """One ``produce`` run: reads, sends, counts; owns the pending deliveries.

    The reader (this task) queues records and appends their Delivery to
    ``pending``; the collector task counts them as they complete. A signal
    stops the reading; the lines read are still sent.
    """

    def __init__(self, opts: _Options, read: Callable[[int], bytes], client: ClientSettings) -> None:
        self.opts = opts
        self.client = client
        self._read = read
        self.pending: deque[Delivery] = deque()
        self.tally = _Tally(opts.topic, None, None)
        self.interrupted: str | None = None
        self.stopped_by: BaseException | None = None  # an error that ended the reading
        self._read_scope = trio.CancelScope()
        self._outer = trio.CancelScope()
        self._more = trio.Event()
        self._input_done = False
        self._limit = 0  # bytes of key + value + headers a record may have

    # signals

    async def watch_signals(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
            task_status.started()
            await trio.sleep_forever()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.interrupted is not None:  # the second one: stop waiting now
                    self._outer.cancel()
                    continue
                self.interrupted = signal.Signals(signum).name
                self._read_scope.cancel()
                bound = self.client.timeout_s
                self._outer.deadline = min(self._outer.deadline, trio.current_time() + bound)
                click.echo(f"\n{self.interrupted}: sending what was read, waiting up to {bound:g} s for "
                           f"acknowledgements ({self.interrupted} again to quit now)", err=True)

    # the whole run

    async def run(self) -> None:
        opts = self.opts
        with self._outer:
            facts = await _inspect(self.client, opts.topic)
            if facts.partitions is not None and opts.partition is not None and opts.partition >= facts.partitions:
                raise click.ClickException(missing_partition_message(opts.topic, opts.partition, facts.partitions))
            limits = _limits(opts.topic, facts, opts.max_message_bytes, opts.batch_size)
            self._limit = limits.record_room
            self.tally = _Tally(opts.topic, limits, facts.partitions)
            for codec in (opts.key_codec, opts.value_codec):
                if codec is not None:
                    try:
                        await codec.prepare(opts.topic)
                    except (SerializationError, LogbrokerError) as exc:
                        raise click.ClickException(f"the schema cannot be used: {exc}") from None
            options = {**opts.producer, **limits.producer_options()}
            async with Producer(self.client.bootstrap, **self.client.options(**options)) as producer:
                await self._meet_topic(producer, facts)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._collect)
                    try:
                        with self._read_scope:
                            await self._read_and_send(producer)
                    finally:
                        self._input_done = True
                        self._more.set()
                    try:  # the input ended: send what lingers now, not after linger_ms
                        await producer.flush()
                    except (KafkaError, ClientClosedError):
                        pass  # the collector counts each failed record
        self.tally.sweep(self.pending)  # after an abort: the records it failed
        for delivery in self.pending:  # never completed: nothing says whether they were written
            self.tally.record_failed(delivery.partition, ClientClosedError("not acknowledged"))

    async def _meet_topic(self, producer: Producer, facts: _TopicFacts) -> None:
        """Load the topic's metadata now (auto-creating it if the broker does), so that a
        missing topic or partition is one clear message, not a failure per record."""
        opts = self.opts
        count = facts.partitions
        if count is None:
            with trio.move_on_after(self.client.timeout_s):
                try:
                    count = len(await producer.partitions_for(opts.topic))
                except UnknownTopicOrPartitionError:
                    pass
            if count is None:
                raise click.ClickException(missing_topic_message(opts.topic, facts.existing))
            if opts.partition is not None and opts.partition >= count:
                raise click.ClickException(missing_partition_message(opts.topic, opts.partition, count))
        self.tally.partitions = count

    async def _collect(self) -> None:
        """Count deliveries as they complete, until the input ended and all are counted."""
        pending = self.pending
        while True:
            self.tally.sweep(pending)
            if pending:
                try:
                    await pending[0].wait()
                except Exception:  # whatever it is, the next sweep counts it
                    pass
            elif self._input_done:
                return
            else:
                await self._more.wait()
                self._more = trio.Event()

    async def _read_and_send(self, producer: Producer) -> None:
        opts = self.opts
        # room for what decoding removes: JSON escapes and base64, hex
        encoded = opts.key_encoding != "text" or opts.value_encoding != "text"
        expand = 8 if opts.fmt == "json" else 2 if encoded else 1
        lines = _LineReader(keep=expand * max(self._limit, 0) + (1 << 16))
        send = self._send_json if opts.fmt == "json" else self._send_text
        lineno = 0
        while True:
            chunk = await trio.to_thread.run_sync(self._read, _CHUNK, abandon_on_cancel=True)
            if not chunk:
                break
            batch = lines.feed(chunk)
            if batch:
                await send(producer, batch, lineno)
                lineno += len(batch)
                if not self._more.is_set():
                    self._more.set()
                if self.stopped_by is not None:
                    return
        last = lines.end()
        if last is not None:
            await send(producer, [last], lineno)
            self._more.set()

    def _stop(self, error: BaseException, lineno: int) -> None:
        """An error that the next records would meet too: stop reading, report it."""
        self.stopped_by = error
        self.tally.reject(lineno, f"reading stopped: {self.tally.explain(error)}", "stopped")

    async def _send_text(self, producer: Producer, lines: list[bytes], lineno: int) -> None:
        opts = self.opts
        topic, partition, sep, headers = opts.topic, opts.partition, opts.key_separator, opts.headers
        limit = self._limit - sum(len(k) + len(v) + _HEADER_OVERHEAD for k, v in headers)
        append, send = self.pending.append, producer.send
        codecs = opts.key_codec is not None or opts.value_codec is not None
        if sep is None and opts.value_encoding == "text" and not codecs and max(map(len, lines)) <= limit:
            # the common case, in a loop of its own: nothing to check per line
            for line in lines:
                lineno += 1
                try:
                    append(await send(topic, line, None, headers=headers, partition=partition))
                except RecordTooLargeError:
                    self._too_large(lineno, len(line))
                except (KafkaError, ClientClosedError) as exc:
                    self._stop(exc, lineno)
                    return
            return
        for line in lines:
            lineno += 1
            if line.__class__ is _LongLine:
                self._too_large(lineno, len(line))
                continue
            key: bytes | None = None
            value = line
            if sep is not None and sep in line:
                key, value = line.split(sep, 1)
            try:
                if key is not None and opts.key_encoding != "text":
                    key = _decode_text(key, opts.key_encoding, "the key")
                if opts.value_encoding != "text":
                    value = _decode_text(value, opts.value_encoding, "the value")
                if key is not None and opts.key_codec is not None:
                    key = opts.key_codec.encode(topic, key)
                if opts.value_codec is not None:
                    value = opts.value_codec.encode(topic, value)
            except _BadLine as exc:
                self.tally.reject(lineno, str(exc), "bad line")
                continue
            size = len(value) + (len(key) if key is not None else 0)
            if size > limit:
                self._too_large(lineno, size)
                continue
            try:
                append(await send(topic, value, key, headers=headers, partition=partition))
            except RecordTooLargeError:
                self._too_large(lineno, size)
            except (KafkaError, ClientClosedError) as exc:
                self._stop(exc, lineno)
                return

    async def _send_json(self, producer: Producer, lines: list[bytes], lineno: int) -> None:
        opts = self.opts
        count = self.tally.partitions
        for line in lines:
            lineno += 1
            if line.__class__ is _LongLine:
                self._too_large(lineno, len(line))
                continue
            if not line.strip():
                continue
            try:
                record = _json_record(line)
                if record.key is not None and opts.key_codec is not None:
                    record = replace(record, key=opts.key_codec.encode(opts.topic, record.key, strings=True))
                if record.value is not None and opts.value_codec is not None:
                    record = replace(record, value=opts.value_codec.encode(opts.topic, record.value, strings=True))
            except _BadLine as exc:
                self.tally.reject(lineno, str(exc), "bad line")
                continue
            partition = opts.partition if opts.partition is not None else record.partition
            if partition is not None and count is not None and partition >= count:
                self.tally.reject(lineno, missing_partition_message(opts.topic, partition, count), "no partition")
                continue
            headers = opts.headers + record.headers
            size = (len(record.value or b"") + len(record.key or b"")
                    + sum(len(k) + len(v or b"") + _HEADER_OVERHEAD for k, v in headers))
            if size > self._limit:
                self._too_large(lineno, size)
                continue
            try:
                self.pending.append(await producer.send(opts.topic, record.value, record.key, headers=headers,
                                                        partition=partition, timestamp_ms=record.timestamp_ms))
            except RecordTooLargeError:
                self._too_large(lineno, size)
            except (KafkaError, ClientClosedError) as exc:
                self._stop(exc, lineno)
                return

    def _too_large(self, lineno: int, size: int) -> None:
        limits = self.tally.limits
        assert limits is not None
        self.tally.reject(lineno, f"{size} bytes", "too large", limits.too_large(self.opts.topic))


def _schema_codec(registry: SchemaRegistryClient, fmt: str, schema_file: str | None, *,
                  is_key: bool) -> _SchemaCodec | None:
    what = "key" if is_key else "value"
    if fmt == "bytes":
        if schema_file is not None:
            raise click.UsageError(f"--{what}-schema needs --{what}-format avro, json or protobuf")
        return None
    if schema_file is None:
        raise click.UsageError(f"--{what}-format {fmt} needs --{what}-schema FILE")
    from logbroker.client.serde import Serializer

    text = Path(schema_file).read_text(encoding="utf-8")
    return _SchemaCodec(Serializer(registry, fmt.upper(), text), is_key)


def _reader(stream: BinaryIO) -> Callable[[int], bytes]:
    """``read(n)``: the bytes waiting now (at most n), blocking only while there are none.

    A real file descriptor is read with ``os.read``: a thread left blocked in it
    at exit (after a signal) holds no lock of the interpreter's stdin object.
    """
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file: click's test runner, a wrapper
        read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        return read
    return functools.partial(os.read, fd)


@click.command()
@click.argument("topic")
@click.option("--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, allow_dash=True), default="-",
              help="Read lines from this file [default: stdin].")
@click.option("--key-separator", "-K", default=None, help="Split each text line into KEY<sep>VALUE at the first sep.")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE", help="Header on every record (repeatable).")
@click.option("--partition", "-p", type=click.IntRange(min=0), default=None,
              help="Send every record to this partition.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Input lines are plain text or JSON records (as `consume --format json` prints them); json "
              "also prints the summary as JSON.")
@click.option("--key-encoding", type=click.Choice(_ENCODINGS), default="text", show_default=True,
              help="Text keys are given as text, hex or base64.")
@click.option("--value-encoding", type=click.Choice(_ENCODINGS), default="text", show_default=True,
              help="Text values are given as text, hex or base64.")
@click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none",
              show_default=True)
@click.option("--acks", type=click.Choice(["all", "1", "0"]), default="all", show_default=True)
@click.option("--linger-ms", type=int, default=5, show_default=True)
@click.option("--max-message-bytes", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="Largest record (as a batch of one) to send [default: the topic's max.message.bytes].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="Bytes of records per batch [default: 256 KiB, less if the topic's limits are smaller].")
@click.option("--value-format", type=click.Choice(["bytes", "avro", "json", "protobuf"]), default="bytes",
              show_default=True, help="Encode each value, given as JSON, with --value-schema in Confluent's wire "
              "format (registered under TOPIC-value in the schema registry), as confluent-kafka's serializers do.")
@click.option("--value-schema", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="The schema of --value-format (.avsc, a JSON Schema, or a .proto file).")
@click.option("--key-format", type=click.Choice(["bytes", "avro", "json", "protobuf"]), default="bytes",
              show_default=True, help="The same for keys (subject TOPIC-key).")
@click.option("--key-schema", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE")
@registry_options
@client_options
def produce(topic: str, path: str, key_separator: str | None, headers: tuple[str, ...], partition: int | None,
            fmt: str, key_encoding: str, value_encoding: str, compression: str, acks: str, linger_ms: int,
            max_message_bytes: int | None, batch_size: int | None, value_format: str, value_schema: str | None,
            key_format: str, key_schema: str | None, registry: SchemaRegistryClient,
            client: ClientSettings) -> None:
    """Produce lines of input as records to TOPIC, each as soon as it is read.

    At the end of the input every record is waited for; Ctrl-C or SIGTERM stops
    reading, sends what was read and waits at most --timeout seconds (a second
    Ctrl-C: not at all). A summary (records delivered and failed, per partition)
    goes to stderr. Exit status 1 if any record failed, 130/143 after a signal.
    """
    options: dict[str, Any] = {"compression": compression, "acks": acks, "linger_ms": linger_ms}
    if acks != "all":
        options["idempotence"] = False
    opts = _Options(topic, fmt, key_separator.encode() if key_separator else None, key_encoding, value_encoding,
                    [(k, v.encode()) for k, v in parse_pairs(headers, "--header").items()], partition, options,
                    max_message_bytes, batch_size,
                    key_codec=_schema_codec(registry, key_format, key_schema, is_key=True),
                    value_codec=_schema_codec(registry, value_format, value_schema, is_key=False))
    stream: BinaryIO = click.open_file(path, "rb")  # type: ignore[assignment]  # "rb" always opens a binary stream
    run = _Run(opts, _reader(stream), client)
    started = time.monotonic()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(run.watch_signals)
            await run.run()
            nursery.cancel_scope.cancel()

    # Deliveries live until acknowledged, so garbage collections come often and would walk every
    # object the imports made; set those aside for the run (about 7% of the time on bulk input).
    gc.freeze()
    try:
        run_client(main)
    finally:
        gc.unfreeze()
    summary = run.tally.summary(time.monotonic() - started, run.interrupted)
    if fmt == "json":
        emit_json(summary)
    else:
        _print_summary(summary)
    if run.interrupted is not None:
        sys.exit(_SIGNAL_STATUS[signal.Signals[run.interrupted]])
    if summary["failed"]:
        sys.exit(1)
