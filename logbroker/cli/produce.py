"""``logbroker produce TOPIC``: one record per input line, from stdin or ``--file``.

``--format text`` (default): each line is a value, or ``KEY<sep>VALUE`` with
``--key-separator``. ``--format json``: each line is a JSON string (the
value) or an object with any of ``key``, ``value``, ``headers`` (an object
or a list of pairs), ``partition`` and ``timestamp`` (epoch ms). Exits with
status 1 if any record could not be delivered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, BinaryIO

import click
import trio

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.topics import emit_json, parse_pairs, run_client
from logbroker.client import Producer

_READ_HINT = 1 << 20  # bytes of lines read per call into a worker thread


def _json_record(line: bytes, lineno: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise click.ClickException(f"line {lineno}: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        obj = {"value": obj}
    unknown = set(obj) - {"key", "value", "headers", "partition", "timestamp"}
    if unknown:
        raise click.ClickException(f"line {lineno}: unknown field(s) {', '.join(sorted(unknown))}")
    record: dict[str, Any] = {}
    for field in ("key", "value"):
        v = obj.get(field)
        record[field] = v if v is None or isinstance(v, str) else json.dumps(v)
    headers = obj.get("headers") or ()
    if isinstance(headers, dict):
        headers = list(headers.items())
    record["headers"] = [(str(k), None if v is None else str(v).encode()) for k, v in headers]
    record["partition"] = obj.get("partition")
    record["timestamp_ms"] = obj.get("timestamp")
    return record


@click.command()
@click.argument("topic")
@click.option("--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, allow_dash=True), default="-",
              help="Read lines from this file [default: stdin].")
@click.option("--key-separator", "-K", default=None, help="Split each text line into KEY<sep>VALUE at the first sep.")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE", help="Header on every record (repeatable).")
@click.option("--partition", "-p", type=int, default=None, help="Send every record to this partition.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Input lines are plain text or JSON records; json also prints a JSON summary.")
@click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none",
              show_default=True)
@click.option("--acks", type=click.Choice(["all", "1", "0"]), default="all", show_default=True)
@click.option("--linger-ms", type=int, default=5, show_default=True)
@client_options
def produce(topic: str, path: str, key_separator: str | None, headers: tuple[str, ...], partition: int | None,
            fmt: str, compression: str, acks: str, linger_ms: int, client: ClientSettings) -> None:
    """Produce lines of input as records to TOPIC."""
    common_headers = [(k, v.encode()) for k, v in parse_pairs(headers, "--header").items()]
    stream: BinaryIO = click.open_file(path, "rb")  # type: ignore[assignment]  # "rb" always opens a binary stream
    sep = key_separator.encode() if key_separator else None
    options: dict[str, Any] = {"compression": compression, "acks": acks, "linger_ms": linger_ms}
    if acks != "all":
        options["idempotence"] = False
    started = time.monotonic()

    async def main() -> tuple[int, Counter[int]]:
        partitions: Counter[int] = Counter()
        count = 0
        async with Producer(client.bootstrap, **client.options(**options)) as producer:
            lineno = 0
            while True:
                lines = await trio.to_thread.run_sync(stream.readlines, _READ_HINT)
                if not lines:
                    break
                for line in lines:
                    lineno += 1
                    line = line.rstrip(b"\r\n")
                    if fmt == "json":
                        if not line.strip():
                            continue
                        r = _json_record(line, lineno)
                        delivery = await producer.send(
                            topic, r["value"], r["key"], headers=common_headers + r["headers"],
                            partition=r["partition"] if r["partition"] is not None else partition,
                            timestamp_ms=r["timestamp_ms"],
                        )
                    else:
                        key = None
                        if sep is not None and sep in line:
                            key, line = line.split(sep, 1)
                        delivery = await producer.send(topic, line, key, headers=common_headers, partition=partition)
                    partitions[delivery.partition] += 1
                    count += 1
            await producer.flush()
        return count, partitions

    count, partitions = run_client(main)
    elapsed = time.monotonic() - started
    if fmt == "json":
        emit_json({"topic": topic, "records": count, "partitions": {str(p): n for p, n in sorted(partitions.items())},
                   "seconds": round(elapsed, 3)})
    else:
        where = ", ".join(f"{p}: {n}" for p, n in sorted(partitions.items())) or "-"
        click.echo(f"produced {count} records to {topic} (partitions {where}) in {elapsed:.2f} s", err=True)
