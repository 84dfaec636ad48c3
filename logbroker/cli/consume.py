"""``logbroker consume TOPIC``: print records as text or JSON lines.

Without ``--group`` it reads new records (or from ``--from-beginning``,
``--offset``, ``--from-time``) of every partition, or of ``--partition``.
With ``--group`` it joins the group (``--group-protocol consumer``: with
Kafka 4's consumer group protocol) and starts from the committed offsets;
the start options then apply to each partition as it is assigned. It stops
after ``--max-records``, at the end with ``--exit-at-end``, or on Ctrl-C /
SIGTERM; with a group it then commits the position after the last record it
printed, and leaves the group.

``--isolation read_committed`` prints only records of committed transactions
(and of no transaction) and waits at a transaction still open; with
``--exit-at-end`` the end is then the last stable offset. Transaction markers
are never printed.

``--format json`` prints one object per record: topic, partition, offset,
timestamp, key, value and headers; keys and values that are not UTF-8 are
given as ``{"base64": ...}``.
"""

from __future__ import annotations

import base64
import datetime
import json
import signal
import sys
from typing import Any

import click
import trio

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.topics import run_client
from logbroker.client import Consumer, ConsumerRecord, TopicPartition


def _text(value: bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace")


def _jsonable(value: bytes | None) -> str | dict[str, str] | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _format(record: ConsumerRecord, fmt: str, print_offsets: bool, key_separator: str | None) -> str:
    if fmt == "json":
        return json.dumps({
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": _jsonable(record.key), "value": _jsonable(record.value),
            "headers": [[k, _jsonable(v)] for k, v in record.headers],
        })
    line = _text(record.value)
    if key_separator is not None:
        line = _text(record.key) + key_separator + line
    if print_offsets:
        line = f"{record.partition}:{record.offset}\t{line}"
    return line


def _parse_time(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--from-time") from None
    return when if when.tzinfo is not None else when.astimezone()  # naive = local time


@click.command()
@click.argument("topic")
@click.option("--group", "-g", default=None, help="Consume as a member of this group, committing offsets.")
@click.option("--group-protocol", type=click.Choice(["classic", "consumer"]), default="classic", show_default=True,
              help="With --group: the classic group protocol, or Kafka 4's consumer protocol (KIP-848), where "
              "the broker assigns the partitions.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record (with a group: where none is committed).")
@click.option("--offset", "-o", type=int, default=None, help="Start at this offset in each partition.")
@click.option("--from-time", default=None, metavar="ISO", help="Start at the first record at or after this time.")
@click.option("--partition", "-p", "partitions", type=int, multiple=True, help="Only these partitions (repeatable).")
@click.option("--max-records", "-n", type=int, default=None, help="Stop after this many records.")
@click.option("--exit-at-end", "-e", is_flag=True, help="Stop once the end of every partition is reached.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--print-offsets", is_flag=True, help="Prefix text lines with PARTITION:OFFSET.")
@click.option("--key-separator", "-K", default=None, help="Print KEY<sep>VALUE in text output.")
@click.option("--isolation", type=click.Choice(["read_uncommitted", "read_committed"]), default="read_uncommitted",
              show_default=True, help="read_committed: only records of committed transactions, and stop at "
              "the last stable offset (the end for --exit-at-end).")
@client_options
def consume(topic: str, group: str | None, group_protocol: str, from_beginning: bool, offset: int | None,
            from_time: str | None, partitions: tuple[int, ...], max_records: int | None, exit_at_end: bool,
            fmt: str, print_offsets: bool, key_separator: str | None, isolation: str, client: ClientSettings) -> None:
    """Print the records of TOPIC."""
    starts = [bool(from_beginning), offset is not None, from_time is not None]
    if sum(starts) > 1:
        raise click.UsageError("give at most one of --from-beginning, --offset and --from-time")
    if group_protocol != "classic" and group is None:
        raise click.UsageError("--group-protocol needs --group")
    when = _parse_time(from_time) if from_time else None
    explicit_start = offset is not None or when is not None or (from_beginning and group is None)
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest" if from_beginning else "latest",
        "group_id": group,
        "enable_auto_commit": group is not None,
        "isolation_level": isolation,
        "group_protocol": group_protocol,
    }
    echo = click.echo
    stats = {"printed": 0}

    async def position(consumer: Consumer, tps: set[TopicPartition]) -> None:
        if not tps or not explicit_start:
            return
        if offset is not None:
            for tp in tps:
                consumer.seek(tp, offset)
        elif when is not None:
            await consumer.seek_to_time(when, *tps)
        else:
            await consumer.seek_to_beginning(*tps)

    async def read(consumer: Consumer, stop: trio.CancelScope) -> None:
        ends: dict[TopicPartition, int] | None = None
        if partitions or group is None:
            numbers = partitions or await consumer.partitions_for(topic)
            tps = {TopicPartition(topic, p) for p in numbers}
            consumer.assign(tps)
            await position(consumer, tps)
        else:
            async def on_assign(tps: set[TopicPartition]) -> None:
                await position(consumer, tps)

            await consumer.subscribe([topic], on_assign=on_assign)
            if exit_at_end:
                await consumer.wait_assignment()
        if exit_at_end:
            ends = await consumer.end_offsets(consumer.assignment())
        while True:
            if ends is not None:
                pending = False
                for tp, end in ends.items():
                    if tp in consumer.assignment() and await consumer.position(tp) < end:
                        pending = True
                if not pending:
                    return
                records = []  # a slow fetch: look at the positions again, print nothing twice
                with trio.move_on_after(0.5):
                    records = await consumer.getmany(max_records)
            else:
                records = await consumer.getmany(max_records)
            for record in records:
                echo(_format(record, fmt, print_offsets, key_separator))
                stats["printed"] += 1
                if max_records is not None and stats["printed"] >= max_records:
                    # the position must not run past what was printed
                    consumer.seek(record.topic_partition, record.offset + 1)
                    return
            sys.stdout.flush()

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
                    await read(consumer, stop)
                    nursery.cancel_scope.cancel()
            if group is not None:
                await consumer.commit()

    run_client(main)
    if sys.stderr.isatty():
        click.echo(f"consumed {stats['printed']} records", err=True)
