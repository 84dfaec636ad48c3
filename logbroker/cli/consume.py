"""``logbroker consume TOPIC``: print records as text, JSON lines or a kcat format string.

The bar is kcat's consumer (``kcat -C``): the same ``-o`` forms, the same
``-f`` format tokens, raw bytes on stdout.

Reading never creates a topic: the consumer asks for no auto-creation and
the topic (and every ``--partition``) is checked first; a missing one is a
one-line error naming similar topics, exit status 1.

Without ``--group`` it reads every partition, or ``--partition``, from where
``-o/--offset``, ``--from-beginning`` or ``--from-time`` says (default: new
records only). With ``--group`` it joins the group (``--group-protocol
consumer``: Kafka 4's protocol) and starts from the committed offsets;
``beginning``/``end`` then only say where to start in partitions with none
committed (kcat's meaning under ``-G``), the other start forms apply to each
partition as it is assigned. It stops after ``--max-records``, at the end
with ``--exit-at-end``, or on Ctrl-C / SIGTERM; with a group it then commits
the position after the last record it printed, and leaves the group.

``--isolation read_committed`` prints only records of committed transactions
(and of no transaction) and waits at a transaction still open; with
``--exit-at-end`` the end is then the last stable offset. Transaction markers
are never printed.

Output (:func:`make_output`, shared with ``logbroker queue consume``):

* ``text``: the value, one per line, as raw bytes (never a replacement
  character); ``-K SEP`` prefixes the key, ``--print-offsets``,
  ``--print-timestamp``, ``--print-headers`` prefix tab-separated fields.
* ``json``: one object per line, ``{"topic", "partition", "offset",
  "timestamp", "key", "value", "headers"}``; a key, value or header value is
  a string (UTF-8), null, or ``{"base64": ...}`` (other bytes); headers are
  ``[name, value]`` pairs. ``logbroker produce --format json`` takes these
  lines back.
* a kcat format string (``-f '%k:%s\\n'``): no newline is added.

``--encoding hex|base64`` prints keys, values and header values so encoded
in text and format-string output.

Each fetched batch of records is rendered to bytes and written to stdout
with one write.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import re
import signal
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal, TypeVar

import click
import trio

from logbroker.cli.schemas import registry_options
from logbroker.client.serde import SchemaRegistryClient, SerializationError
from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.hints import missing_partition_message, missing_topic_message, parse_when
from logbroker.cli.topics import run_client
from logbroker.client import Consumer, ConsumerRecord, TopicPartition
from logbroker.errors import LogbrokerError

__all__ = ["RecordOutput", "StartAt", "compile_format", "json_record", "make_output", "output_options", "parse_offset"]

_F = TypeVar("_F", bound=Callable[..., Any])

# -- where to start ------------------------------------------------------------------------

StartKind = Literal["beginning", "end", "stored", "absolute", "tail", "time"]


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where reading starts in each partition: kcat's ``-o`` forms.

    ``value`` is the offset (``absolute``), the number of records back from
    the end (``tail``) or epoch milliseconds (``time``).
    """

    kind: StartKind
    value: int = 0


_WORDS: dict[str, StartKind] = {"beginning": "beginning", "end": "end", "stored": "stored"}
_OFFSET_HELP = "give N, -N (the last N records of each partition), beginning, end, stored or s@EPOCH_MS"


def parse_offset(text: str) -> StartAt:
    """kcat's ``-o`` argument: ``N``, ``-N``, ``beginning``, ``end``, ``stored``, ``s@EPOCHMS``.

    :raises click.ClickException: anything else (one line, exit status 1).
    """
    word = text.strip()
    if word in _WORDS:
        return StartAt(_WORDS[word])
    if word.startswith("s@") and word[2:].isdigit():
        return StartAt("time", int(word[2:]))
    if word.startswith("e@"):
        raise click.ClickException(f"--offset {text!r}: stopping at a time (kcat's e@) is not supported; "
                                   "stop with -e or -n")
    if re.fullmatch(r"-?\d+", word):
        number = int(word)
        return StartAt("tail", -number) if word.startswith("-") else StartAt("absolute", number)
    raise click.ClickException(f"--offset {text!r}: {_OFFSET_HELP}")


async def _seek(consumer: Consumer, tps: set[TopicPartition], start: StartAt) -> None:
    """Move ``tps`` to ``start``; absolute and tail offsets are clamped to the log
    (kcat's -o -N on a short partition starts at its first record)."""
    ordered = sorted(tps)
    if start.kind == "beginning":
        await consumer.seek_to_beginning(*ordered)
    elif start.kind == "end":
        await consumer.seek_to_end(*ordered)
    elif start.kind == "time":
        await consumer.seek_to_time(start.value, *ordered)
    elif start.kind in ("absolute", "tail"):
        first = await consumer.beginning_offsets(ordered)
        last = await consumer.end_offsets(ordered)
        for tp in ordered:
            target = start.value if start.kind == "absolute" else last[tp] - start.value
            consumer.seek(tp, min(max(target, first[tp]), last[tp]))


# -- rendering records to bytes ----------------------------------------------------------

Renderer = Callable[[Sequence[ConsumerRecord]], bytes]
Encoder = Callable[[bytes], bytes]


def _raw(value: bytes) -> bytes:
    return value


_ENCODERS: dict[str, Encoder] = {
    "raw": _raw,
    "hex": lambda b: b.hex().encode("ascii"),
    "base64": base64.b64encode,
}
_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # the C string encoder json.dumps uses


def _json_bytes(value: bytes | None) -> str:
    """A JSON value for bytes: a string if UTF-8, null, else ``{"base64": ...}``."""
    if value is None:
        return "null"
    try:
        return _json_str(value.decode("utf-8"))
    except UnicodeDecodeError:
        return f'{{"base64": "{base64.b64encode(value).decode("ascii")}"}}'


def json_record(record: ConsumerRecord, **extra: int) -> str:
    """One record as the JSON object ``consume --format json`` prints (what
    ``json.dumps`` would give, field for field), plus ``extra`` integer fields."""
    headers = ", ".join(f"[{_json_str(name)}, {_json_bytes(value)}]" for name, value in record.headers)
    more = "".join(f", {_json_str(name)}: {int(value)}" for name, value in extra.items())
    return (f'{{"topic": {_json_str(record.topic)}, "partition": {record.partition}, "offset": {record.offset}, '
            f'"timestamp": {record.timestamp}, "key": {_json_bytes(record.key)}, '
            f'"value": {_json_bytes(record.value)}, "headers": [{headers}]{more}}}')


def _render_json(records: Sequence[ConsumerRecord]) -> bytes:
    return "".join([json_record(r) + "\n" for r in records]).encode("ascii")  # ensure_ascii, as json.dumps


def _headers_bytes(headers: tuple[tuple[str, bytes | None], ...], encode: Encoder) -> bytes:
    """kcat's %h: ``name=value,name=value``; a null value is ``NULL``."""
    return b",".join([name.encode("utf-8") + b"=" + (b"NULL" if value is None else encode(value))
                      for name, value in headers])


def _iso(timestamp_ms: int) -> bytes:
    if timestamp_ms < 0:
        return b"-"  # a record without a timestamp
    when = datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode("ascii")


def _text_renderer(encode: Encoder, key_separator: bytes | None, print_offsets: bool, print_timestamp: bool,
                   print_headers: bool) -> Renderer:
    if encode is _raw and key_separator is None and not (print_offsets or print_timestamp or print_headers):
        def values_only(records: Sequence[ConsumerRecord]) -> bytes:
            # the common case: one join, each value copied once
            values = [v if v is not None else b"" for v in map(itemgetter(5), records)]
            values.append(b"")  # the last line's newline
            return b"\n".join(values)

        return values_only

    def render(records: Sequence[ConsumerRecord]) -> bytes:
        out: list[bytes] = []
        for r in records:
            if print_offsets:
                out.append(b"%d:%d\t" % (r.partition, r.offset))
            if print_timestamp:
                out.append(_iso(r.timestamp) + b"\t")
            if print_headers:
                out.append(_headers_bytes(r.headers, encode) + b"\t")
            if key_separator is not None:
                out.append((encode(r.key) if r.key is not None else b"") + key_separator)
            out.append((encode(r.value) if r.value is not None else b"") + b"\n")
        return b"".join(out)

    return render


_FORMAT_TOKENS = "%t topic, %p partition, %o offset, %k key, %s value, %K key length, %S value length, " \
                 "%R value length as 4-byte big-endian binary, %T timestamp (ms), %h headers, %% a %"
_INT = b"%d"
_BYTES = b"%b"


def _format_getters(encode: Encoder) -> dict[str, tuple[bytes, Callable[[ConsumerRecord], Any]]]:
    """Per kcat token: the bytes-% placeholder and what fills it."""
    def key(r: ConsumerRecord) -> bytes:
        return encode(r.key) if r.key else b""  # kcat prints nothing for a null or empty key

    def value(r: ConsumerRecord) -> bytes:
        return encode(r.value) if r.value else b""

    return {
        "t": (_BYTES, lambda r: r.topic.encode("utf-8")),
        "p": (_INT, itemgetter(1)),
        "o": (_INT, itemgetter(2)),
        "T": (_INT, itemgetter(3)),
        "k": (_BYTES, key),
        "s": (_BYTES, value),
        "K": (_INT, lambda r: -1 if r.key is None else len(r.key)),  # lengths are the record's, before --encoding
        "S": (_INT, lambda r: -1 if r.value is None else len(r.value)),
        "R": (_BYTES, lambda r: struct.pack(">i", -1 if r.value is None else len(r.value))),
        "h": (_BYTES, lambda r: _headers_bytes(r.headers, encode)),
    }


def _escape(text: str, i: int) -> tuple[bytes, int]:
    """The byte of the backslash escape at ``text[i]`` (after the backslash) and
    the index after it: kcat's \\n \\r \\t, \\xHH, \\0 and \\NNN (octal after a 0,
    else decimal), any other character as itself."""
    c = text[i]
    simple = {"n": b"\n", "r": b"\r", "t": b"\t"}
    if c in simple:
        return simple[c], i + 1
    if c == "x":
        digits = re.match(r"[0-9a-fA-F]{1,2}", text[i + 1:])
        if digits:
            return bytes([int(digits.group(), 16)]), i + 1 + len(digits.group())
        return b"x", i + 1
    if c.isdigit():
        digits = re.match(r"0[0-7]{0,3}|[1-9][0-9]{0,2}", text[i:])
        assert digits is not None  # c is a digit
        number = int(digits.group(), 8 if c == "0" else 10)
        return bytes([number & 0xFF]), i + len(digits.group())
    return c.encode("utf-8", "surrogateescape"), i + 1


def compile_format(fmt: str, encode: Encoder) -> Renderer:
    """A kcat format string (``%k:%s\\n``) as a renderer; no newline is added.

    :raises click.ClickException: an unknown token or a lone ``%`` at the end.
    """
    getters = _format_getters(encode)
    template: list[bytes] = []
    fill: list[Callable[[ConsumerRecord], Any]] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            if i + 1 >= len(fmt):
                raise click.ClickException(f"--format {fmt!r} ends with a lone %; tokens: {_FORMAT_TOKENS}")
            token = fmt[i + 1]
            if token == "%":
                template.append(b"%%")
            elif token in getters:
                placeholder, getter = getters[token]
                template.append(placeholder)
                fill.append(getter)
            else:
                raise click.ClickException(f"--format: unknown token %{token}; tokens: {_FORMAT_TOKENS}")
            i += 2
        elif c == "\\" and i + 1 < len(fmt):
            byte, i = _escape(fmt, i + 1)
            template.append(byte.replace(b"%", b"%%"))
        else:
            template.append(c.encode("utf-8", "surrogateescape").replace(b"%", b"%%"))  # argv's raw bytes back
            i += 1
    pattern = b"".join(template)
    getter_tuple = tuple(fill)

    def render(records: Sequence[ConsumerRecord]) -> bytes:
        return b"".join([pattern % tuple([g(r) for g in getter_tuple]) for r in records])

    return render


@dataclass(frozen=True, slots=True)
class RecordOutput:
    """How records are printed: ``render(records)`` gives the bytes to write to stdout."""

    mode: Literal["text", "json", "format"]
    render: Renderer


def make_output(fmt: str = "text", *, encoding: str = "raw", key_separator: str | None = None,
                print_offsets: bool = False, print_timestamp: bool = False, print_headers: bool = False) -> RecordOutput:
    """The output that ``--format`` and the text options ask for.

    :raises click.ClickException: a bad format string, or options that do not
        apply to the format (one line, exit status 1).
    """
    text_options = [name for name, given in (("-K/--key-separator", key_separator is not None),
                                             ("--print-offsets", print_offsets),
                                             ("--print-timestamp", print_timestamp),
                                             ("--print-headers", print_headers)) if given]
    if fmt != "text" and text_options:
        raise click.ClickException(f"{', '.join(text_options)}: only with --format text "
                                   "(a format string has %p, %o, %T, %h and %k tokens)")
    if encoding not in _ENCODERS:
        raise click.ClickException(f"--encoding {encoding!r}: give raw, hex or base64")
    encode = _ENCODERS[encoding]
    if fmt == "json":
        if encoding != "raw":
            raise click.ClickException("--encoding applies to text and format strings; JSON gives bytes "
                                       "that are not UTF-8 as {\"base64\": ...} itself")
        return RecordOutput("json", _render_json)
    if fmt == "text":
        separator = key_separator.encode("utf-8", "surrogateescape") if key_separator is not None else None
        return RecordOutput("text", _text_renderer(encode, separator, print_offsets, print_timestamp, print_headers))
    if "%" not in fmt:
        raise click.ClickException(f"--format {fmt!r}: give text, json, or a kcat format string such as "
                                   "'%k\\t%s\\n' (tokens: " + _FORMAT_TOKENS + ")")
    return RecordOutput("format", compile_format(fmt, encode))


_SCHEMA_FORMATS = ("bytes", "avro", "json", "protobuf", "schema")
_OUTPUT_OPTIONS = ("fmt", "encoding", "key_separator", "print_offsets", "print_timestamp", "print_headers")


def output_options(f: _F) -> _F:
    """Add ``--format``, ``--encoding`` and the text options to a command and pass
    it ``output: RecordOutput`` instead of them."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _OUTPUT_OPTIONS}
        kwargs["output"] = make_output(given.pop("fmt"), **given)
        return f(*args, **kwargs)

    options = [
        click.option("--format", "-f", "fmt", default="text", show_default=True, metavar="text|json|FORMAT",
                     help="text: the value per line; json: one object per line (topic, partition, offset, "
                     "timestamp, key, value, headers; bytes that are not UTF-8 as {\"base64\": ...}), which "
                     "`logbroker produce --format json` reads back; or a kcat format string, printed as is with "
                     "no newline added: " + _FORMAT_TOKENS + r"; escapes \n \t \r \\ \0 \xHH."),
        click.option("--encoding", type=click.Choice(["raw", "hex", "base64"]), default="raw", show_default=True,
                     help="How keys, values and header values are printed in text and format strings "
                     "(raw: their bytes as they are)."),
        click.option("--key-separator", "-K", default=None, metavar="SEP", help="Text: print KEY<SEP>VALUE."),
        click.option("--print-offsets", is_flag=True, help="Text: prefix PARTITION:OFFSET and a tab."),
        click.option("--print-timestamp", is_flag=True, help="Text: prefix the timestamp (ISO 8601, UTC) and a tab."),
        click.option("--print-headers", is_flag=True, help="Text: prefix the headers (name=value,...) and a tab."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]  # functools.wraps keeps f's signature for click


# -- the command ---------------------------------------------------------------------------

@click.command(epilog="""
\b
Where it starts, in each partition (-o/--offset, as kcat's -o):
  N           offset N (clamped to the partition's first and next offsets)
  -N          the last N records
  beginning   the first record (same as --from-beginning)
  end         the next new record (the default without --group)
  stored      the group's committed offset (needs --group; its default)
  s@MS        the first record at or after epoch milliseconds MS
--from-time takes an ISO 8601 time, epoch milliseconds or a time ago (-1h, -30m).
With --group, beginning and end apply where the group has no committed offset;
the other forms apply to each partition as it is assigned.

\b
When it stops:
  without -e  it follows new records until Ctrl-C or SIGTERM
  -e          at the end of every partition (as it was at the start)
  -n N        after N records
With --group it then commits the position after the last record printed and
leaves the group. The topic must exist: consume never creates it.
""")
@click.argument("topic")
@click.option("--group", "-g", default=None, help="Consume as a member of this group, committing offsets.")
@click.option("--group-protocol", type=click.Choice(["classic", "consumer"]), default="classic", show_default=True,
              help="With --group: the classic group protocol, or Kafka 4's consumer protocol (KIP-848), where "
              "the broker assigns the partitions.")
@click.option("--offset", "-o", default=None, metavar="N|-N|beginning|end|stored|s@MS",
              help="Where to start in each partition (see below).")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record (with a group: where none is committed).")
@click.option("--from-time", default=None, metavar="WHEN",
              help="Start at the first record at or after this time: ISO 8601, epoch ms, or ago (-1h).")
@click.option("--partition", "-p", "partitions", type=int, multiple=True, help="Only these partitions (repeatable).")
@click.option("--max-records", "-n", type=int, default=None, help="Stop after this many records.")
@click.option("--exit-at-end", "-e", is_flag=True, help="Stop once the end of every partition is reached.")
@click.option("--isolation", type=click.Choice(["read_uncommitted", "read_committed"]), default="read_uncommitted",
              show_default=True, help="read_committed: only records of committed transactions, and stop at "
              "the last stable offset (the end for --exit-at-end).")
@output_options
@click.option("--value-format", type=click.Choice(_SCHEMA_FORMATS), default="bytes", show_default=True,
              help="Decode values written with a schema registry serializer (Confluent's wire format) and print "
              "them as JSON: avro, json, protobuf, or schema (whichever their schema is); bytes: as they are.")
@click.option("--key-format", type=click.Choice(_SCHEMA_FORMATS), default="bytes", show_default=True,
              help="The same for keys.")
@registry_options
@client_options
def consume(topic: str, group: str | None, group_protocol: str, offset: str | None, from_beginning: bool,
            from_time: str | None, partitions: tuple[int, ...], max_records: int | None, exit_at_end: bool,
            isolation: str, output: RecordOutput, client: ClientSettings, key_format: str, value_format: str,
            registry: SchemaRegistryClient) -> None:
    """Print the records of TOPIC, as kcat -C does."""
    start = _start_option(offset, from_beginning, from_time, group)
    if group_protocol != "classic" and group is None:
        raise click.ClickException("--group-protocol needs --group")
    if max_records is not None and max_records < 1:
        raise click.ClickException("--max-records must be at least 1")
    # With a group, beginning/end only choose the reset policy (kcat -G); seeking would skip committed offsets.
    seeks = start is not None and not (group is not None and start.kind in ("beginning", "end"))
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest" if start is not None and start.kind == "beginning" else "latest",
        "group_id": group,
        "enable_auto_commit": group is not None,
        "isolation_level": isolation,
        "group_protocol": group_protocol,
        "allow_auto_create_topics": False,  # reading must never create a topic (a typo would make one)
    }
    out = sys.stdout.buffer
    render = output.render
    if key_format != "bytes" or value_format != "bytes":
        from logbroker.client.serde import Deserializer

        render = _SchemaDecoding(Deserializer(registry), output, key_format, value_format).render
    printed = 0

    async def position(consumer: Consumer, tps: set[TopicPartition]) -> None:
        if tps and seeks and start is not None:
            await _seek(consumer, tps, start)

    async def check_topic(consumer: Consumer) -> list[int]:
        names = await consumer.topics()
        if topic not in names:
            raise click.ClickException(missing_topic_message(topic, names))
        numbers = await consumer.partitions_for(topic)
        for p in partitions:
            if p not in numbers:
                raise click.ClickException(missing_partition_message(topic, p, len(numbers)))
        return numbers

    async def read(consumer: Consumer) -> None:
        nonlocal printed
        numbers = await check_topic(consumer)
        if partitions or group is None:
            tps = {TopicPartition(topic, p) for p in (partitions or numbers)}
            consumer.assign(tps)
            await position(consumer, tps)
        else:
            async def on_assign(tps: set[TopicPartition]) -> None:
                await position(consumer, tps)

            await consumer.subscribe([topic], on_assign=on_assign)
            if exit_at_end:
                await consumer.wait_assignment()
        ends = await consumer.end_offsets(consumer.assignment()) if exit_at_end else None
        while True:
            left = None if max_records is None else max_records - printed
            if ends is not None:
                pending = False
                for tp, end in ends.items():
                    if tp in consumer.assignment() and await consumer.position(tp) < end:
                        pending = True
                if not pending:
                    return
                records = []  # a slow fetch: look at the positions again, print nothing twice
                with trio.move_on_after(0.5):
                    records = await consumer.getmany(left)
            else:
                records = await consumer.getmany(left)
            if records:
                if isinstance(render, _AsyncRender):
                    await render.prepare(records)
                # one write per fetched batch; getmany(left) moved the positions past exactly these
                out.write(render(records))
                out.flush()
                printed += len(records)
                if max_records is not None and printed >= max_records:
                    return

    async def main() -> None:
        async with Consumer(client.bootstrap, **client.options(**options)) as consumer:
            with trio.CancelScope() as stop:
                async with trio.open_nursery() as nursery:
                    async def on_signal() -> None:
                        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                            async for _ in signals:
                                stop.cancel()
                                return

                    nursery.start_soon(on_signal)
                    await read(consumer)
                    nursery.cancel_scope.cancel()
            if group is not None:
                await consumer.commit()

    run_client(main)
    if sys.stderr.isatty():
        click.echo(f"consumed {printed} records", err=True)


class _AsyncRender:
    """A renderer that needs the registry first: :meth:`prepare` fetches the schemas a
    batch names (in a worker thread), then calling it renders the batch."""

    def __init__(self, decoding: _SchemaDecoding) -> None:
        self._decoding = decoding

    async def prepare(self, records: Sequence[ConsumerRecord]) -> None:
        await self._decoding.prepare(records)

    def __call__(self, records: Sequence[ConsumerRecord]) -> bytes:
        return self._decoding.render_now(records)


class _SchemaDecoding:
    """Keys and values in Confluent's wire format decoded through the schema registry
    and printed as JSON: inside the object with ``--format json``, as one line of
    compact JSON in text and format strings. A record that does not decode is
    printed as its bytes, with a warning on stderr."""

    def __init__(self, deserializer: Any, output: RecordOutput, key_format: str, value_format: str) -> None:
        self._deserializer = deserializer
        self._output = output
        self._key = key_format
        self._value = value_format
        self._decoded: dict[tuple[int, int, bool], Any] = {}
        self.render = _AsyncRender(self)

    async def prepare(self, records: Sequence[ConsumerRecord]) -> None:
        self._decoded.clear()
        for r in records:
            for is_key, fmt, data in ((True, self._key, r.key), (False, self._value, r.value)):
                if fmt == "bytes" or data is None:
                    continue
                try:
                    value = await self._deserializer.decode_async(r.topic, data, is_key)
                    kind = self._deserializer.registry.schema(self._deserializer.schema_id(data)).schema_type
                    if fmt != "schema" and kind != fmt.upper():
                        raise SerializationError(f"its schema is {kind}, not {fmt.upper()} (--{'key' if is_key else 'value'}"
                                                 "-format schema takes any)")
                    self._decoded[(r.partition, r.offset, is_key)] = _jsonable(value)
                except (SerializationError, LogbrokerError) as exc:
                    click.echo(f"warning: {r.topic}[{r.partition}] offset {r.offset}: {exc}", err=True)

    def _swap(self, r: ConsumerRecord) -> ConsumerRecord:
        key = self._decoded.get((r.partition, r.offset, True), _MISSING)
        value = self._decoded.get((r.partition, r.offset, False), _MISSING)
        if key is _MISSING and value is _MISSING:
            return r
        return r._replace(key=r.key if key is _MISSING else _compact(key),
                          value=r.value if value is _MISSING else _compact(value))

    def render_now(self, records: Sequence[ConsumerRecord]) -> bytes:
        if self._output.mode != "json":
            return self._output.render([self._swap(r) for r in records])
        lines = []
        for r in records:
            obj = json.loads(json_record(r))
            for field, is_key in (("key", True), ("value", False)):
                decoded = self._decoded.get((r.partition, r.offset, is_key), _MISSING)
                if decoded is not _MISSING:
                    obj[field] = decoded
            lines.append(json.dumps(obj) + "\n")
        return "".join(lines).encode("ascii")


_MISSING = object()


def _jsonable(value: Any) -> Any:
    from logbroker.client.serde import jsonable

    return jsonable(value)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _start_option(offset: str | None, from_beginning: bool, from_time: str | None, group: str | None) -> StartAt | None:
    """The one start option given (None: the default), checked.

    :raises click.ClickException: more than one, a bad value, or ``stored`` without a group.
    """
    if sum([from_beginning, offset is not None, from_time is not None]) > 1:
        raise click.ClickException("give at most one of --from-beginning, --offset and --from-time")
    if from_beginning:
        return StartAt("beginning")
    if from_time is not None:
        try:
            when = parse_when(from_time, "--from-time")
        except click.BadParameter as exc:
            raise click.ClickException(exc.format_message()) from None  # one line, not click's usage text
        return StartAt("time", int(when.timestamp() * 1000))
    if offset is None:
        return None
    start = parse_offset(offset)
    if start.kind == "stored" and group is None:
        raise click.ClickException("--offset stored reads the group's committed offsets: it needs --group")
    return start
