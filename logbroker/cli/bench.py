"""``logbroker bench``: measure a broker in one command.

Without ``--bootstrap`` it starts a broker of its own in a temporary
directory. It produces ``--records`` records, consumes them back, then
measures end-to-end latency at a steady rate, and prints a table (or one
JSON object with ``--json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import click
import trio

from logbroker.cli.topics import run_client

_STAMP = struct.Struct(">d")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(bootstrap: str, records: int, size: int, partitions: int, rate: int, seconds: float,
               bar: Callable[[int], None]) -> dict[str, Any]:
    from logbroker.client import Admin, Consumer, Producer, TopicPartition

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    async with Admin(bootstrap) as admin:
        await admin.create_topic(topic, partitions)
    value = b"x" * size
    out: dict = {"records": records, "record_bytes": size, "partitions": partitions}

    async with Producer(bootstrap, linger_ms=5) as producer:
        start = time.perf_counter()
        step = max(1, records // 100)
        for i in range(records):
            await producer.send(topic, value, partition=i % partitions)
            if i % step == 0:
                bar(i)
        await producer.flush()
        elapsed = time.perf_counter() - start
    out["produce_records_per_s"] = round(records / elapsed)
    out["produce_mb_per_s"] = round(records * size / elapsed / 1e6, 1)

    async with Consumer(bootstrap, enable_auto_commit=False) as consumer:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        start = time.perf_counter()
        while got < records:
            got += len(await consumer.getmany())
            bar(records + got)
        elapsed = time.perf_counter() - start
    out["consume_records_per_s"] = round(records / elapsed)
    out["consume_mb_per_s"] = round(records * size / elapsed / 1e6, 1)

    latency: list[float] = []
    async with Consumer(bootstrap, enable_auto_commit=False, fetch_max_wait_ms=500) as consumer, \
            Producer(bootstrap, linger_ms=0) as producer:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        total = int(rate * seconds)

        async def receive() -> None:
            while len(latency) < total:
                for record in await consumer.getmany():
                    stamp = record.value[:8]  # type: ignore[index]  # every record sent here has a value
                    latency.append(time.time() - _STAMP.unpack(stamp)[0])

        with trio.move_on_after(seconds + 10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                begin = trio.current_time()
                for i in range(total):
                    await trio.sleep_until(begin + i / rate)
                    producer.send_nowait(topic, _STAMP.pack(time.time()) + value[8:], partition=i % partitions)
                    if i % max(1, rate // 10) == 0:
                        bar(2 * records + i)
    ms = [v * 1000 for v in latency]
    out["latency_rate_per_s"] = rate
    out["latency_ms"] = {
        "p50": round(_percentile(ms, 0.50), 2),
        "p99": round(_percentile(ms, 0.99), 2),
        "p99.9": round(_percentile(ms, 0.999), 2),
        "mean": round(statistics.fmean(ms), 2) if ms else None,
    }
    with contextlib.suppress(Exception):
        async with Admin(bootstrap) as admin:
            await admin.delete_topic(topic)
    return out


@click.command()
@click.option("--bootstrap", "-b", default=None, help="Measure this broker [default: start one in a temp dir].")
@click.option("--records", "-n", default=200_000, show_default=True, help="Records to produce and consume.")
@click.option("--record-size", default=100, show_default=True, help="Bytes per record value (at least 8).")
@click.option("--partitions", default=6, show_default=True)
@click.option("--rate", default=10_000, show_default=True, help="Records/s for the latency run.")
@click.option("--seconds", default=3.0, show_default=True, help="Length of the latency run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench(bootstrap: str | None, records: int, record_size: int, partitions: int, rate: int, seconds: float,
          as_json: bool) -> None:
    """Throughput (records/s, MB/s) and end-to-end latency percentiles of a broker."""
    if record_size < 8:
        raise click.BadParameter("must be at least 8", param_hint="--record-size")
    total_steps = 2 * records + int(rate * seconds)
    with contextlib.ExitStack() as stack:
        target = bootstrap
        if target is None:
            from logbroker import embedded

            target = stack.enter_context(embedded()).bootstrap_servers
        progress = stack.enter_context(click.progressbar(
            length=total_steps, label="benchmarking", file=io.StringIO() if as_json else None,
        ))
        done = [0]

        def bar(position: int) -> None:
            if position > done[0]:
                progress.update(position - done[0])
                done[0] = position

        result = run_client(lambda: _run(target, records, record_size, partitions, rate, seconds, bar))
    result["broker"] = bootstrap or "embedded (temporary directory)"
    if as_json:
        click.echo(json.dumps(result))
        return
    lat = result["latency_ms"]
    rows = [
        ("produce", f"{result['produce_records_per_s']:,}", f"{result['produce_mb_per_s']}", ""),
        ("consume", f"{result['consume_records_per_s']:,}", f"{result['consume_mb_per_s']}", ""),
        (f"end-to-end at {rate:,}/s", "", "", f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p99.9']} ms"),
    ]
    click.echo(f"\n{records:,} records of {record_size} B, {partitions} partitions, broker: {result['broker']}\n")
    click.echo(f"{'':<24}{'records/s':>12}{'MB/s':>9}  latency")
    for name, rps, mbps, latency in rows:
        click.echo(f"{name:<24}{rps:>12}{mbps:>9}  {latency}")
