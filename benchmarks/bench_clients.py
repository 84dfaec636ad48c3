"""Clients compared: how fast do logbroker's own client, kafka-python, aiokafka
and confluent-kafka produce to and consume from the same ``logbroker serve``?

Each client produces 1,000,000 records of 100 bytes (``--records``) to a fresh
6-partition topic, then consumes that topic back. Every workload runs in its
own subprocess (this file, ``_worker ...``), one after the other, against one
broker started for the run. Every producer uses the same settings: keyless
records, ``acks=all``, idempotence on, ``linger.ms`` 5, 256 KiB batches, no
compression. Each uses its fast path:

* logbroker: ``producer.send_nowait()`` (falling back to ``await send()``
  when the buffer is full), one Delivery per record, ``flush()`` at the end;
  ``async for record in consumer``.
* logbroker-bulk: the bulk APIs. ``await producer.send_many(topic, rows)``
  with a (records, 100) numpy uint8 array, 50,000 rows a call, then
  ``flush()``; ``await consumer.poll_batch()``, taking each partition's
  values as a 2-D numpy array (``columns.values``).
* kafka-python: ``send()`` (a future per record), ``flush()``; ``for msg in consumer``.
* aiokafka: ``await send()`` (a future per record), ``flush()``; ``getmany()``.
* confluent-kafka: ``produce()`` with ``poll(0)`` every 16K records,
  ``flush()``; ``consume(10000, 1.0)`` with ``fetch.queue.backoff.ms`` 10.

Producers are timed from the first send until ``flush()`` returns (so all
records are acknowledged); consumers from ``assign()`` of all partitions at
offset 0 until the last record arrived. Records/s and MB/s (10^6 bytes of
values) are reported per client with the median of ``--repeat`` runs (1 by
default), and ``ratios`` divides logbroker's rate (and logbroker-bulk's) by
each other client's. ``targets`` checks the goals: producer >= 3x
kafka-python, >= 2x aiokafka, >= 0.5x confluent-kafka; consumer >= 2x
kafka-python, >= 1.5x aiokafka, >= 0.6x confluent-kafka; bulk consumer
(``poll_batch``) >= 3x confluent-kafka.

Prints one JSON object on stdout; progress goes to stderr.

    python benchmarks/bench_clients.py [--records N] [--repeat N] [--clients a,b,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _harness import LogbrokerProcess, produce_timed  # noqa: E402

CLIENTS = ("logbroker", "logbroker-bulk", "kafka-python", "aiokafka", "confluent-kafka")
OURS = ("logbroker", "logbroker-bulk")
PARTITIONS = 6
VALUE_SIZE = 100
LINGER_MS = 5
BATCH_BYTES = 256 * 1024
TARGETS = {  # (kind, our client, the other client): the least ratio of their records/s
    ("produce", "logbroker", "kafka-python"): 3.0,
    ("produce", "logbroker", "aiokafka"): 2.0,
    ("produce", "logbroker", "confluent-kafka"): 0.5,
    ("consume", "logbroker", "kafka-python"): 2.0,
    ("consume", "logbroker", "aiokafka"): 1.5,
    ("consume", "logbroker", "confluent-kafka"): 0.6,
    ("consume", "logbroker-bulk", "confluent-kafka"): 3.0,
}
BULK_ROWS = 50_000

_t0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _value() -> bytes:
    pattern = b"logbroker-client-benchmark-0123456789abcdefghijklmnopqrstuvwxyz|"
    return (pattern * 2)[:VALUE_SIZE]


# --------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line.
# --------------------------------------------------------------------------


def produce_logbroker(a: dict) -> dict:
    import trio

    from logbroker.client import Producer

    async def main() -> dict:
        async with Producer(a["bootstrap"], linger_ms=LINGER_MS, batch_size=BATCH_BYTES) as producer:
            topic, value, n = a["topic"], _value(), a["records"]
            await producer.partitions_for(topic)  # metadata before the clock starts
            send_nowait, send = producer.send_nowait, producer.send
            start = time.perf_counter()
            for _ in range(n):
                try:
                    send_nowait(topic, value)
                except trio.WouldBlock:
                    await send(topic, value)
            queued = time.perf_counter() - start
            await producer.flush()
            seconds = time.perf_counter() - start
            stats = producer.statistics()
            return {"records": stats.records_sent, "seconds": seconds, "enqueue_seconds": queued,
                    "errors": stats.records_failed, "requests": stats.requests}

    return trio.run(main)


def produce_logbroker_bulk(a: dict) -> dict:
    import numpy as np
    import trio

    from logbroker.client import Producer

    async def main() -> dict:
        async with Producer(a["bootstrap"], linger_ms=LINGER_MS, batch_size=BATCH_BYTES) as producer:
            topic, n = a["topic"], a["records"]
            rows = np.frombuffer(_value() * min(n, BULK_ROWS), np.uint8).reshape(-1, VALUE_SIZE)
            await producer.partitions_for(topic)  # metadata before the clock starts
            start = time.perf_counter()
            left = n
            while left:
                chunk = rows[:min(left, BULK_ROWS)]
                await producer.send_many(topic, chunk)
                left -= len(chunk)
            queued = time.perf_counter() - start
            await producer.flush()
            seconds = time.perf_counter() - start
            stats = producer.statistics()
            return {"records": stats.records_sent, "seconds": seconds, "enqueue_seconds": queued,
                    "errors": stats.records_failed, "requests": stats.requests}

    return trio.run(main)


def produce_kafka_python(a: dict) -> dict:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=a["bootstrap"], acks="all", enable_idempotence=True,
                             linger_ms=LINGER_MS, batch_size=BATCH_BYTES, max_request_size=1024 * 1024)
    topic, value, n = a["topic"], _value(), a["records"]
    producer.partitions_for(topic)
    errors = [0]

    def failed(_exc) -> None:
        errors[0] += 1

    start = time.perf_counter()
    for _ in range(n):
        producer.send(topic, value).add_errback(failed)
    queued = time.perf_counter() - start
    producer.flush()
    seconds = time.perf_counter() - start
    producer.close()
    return {"records": n - errors[0], "seconds": seconds, "enqueue_seconds": queued, "errors": errors[0]}


def produce_aiokafka(a: dict) -> dict:
    from aiokafka import AIOKafkaProducer

    async def main() -> dict:
        producer = AIOKafkaProducer(bootstrap_servers=a["bootstrap"], acks="all", enable_idempotence=True,
                                    linger_ms=LINGER_MS, max_batch_size=BATCH_BYTES)
        await producer.start()
        try:
            topic, value, n = a["topic"], _value(), a["records"]
            await producer.partitions_for(topic)
            send = producer.send
            futures = []
            start = time.perf_counter()
            for _ in range(n):
                futures.append(await send(topic, value))
            queued = time.perf_counter() - start
            await producer.flush()
            results = await asyncio.gather(*futures, return_exceptions=True)
            seconds = time.perf_counter() - start
            errors = sum(isinstance(r, BaseException) for r in results)
            return {"records": n - errors, "seconds": seconds, "enqueue_seconds": queued, "errors": errors}
        finally:
            await producer.stop()

    return asyncio.run(main())


def produce_confluent(a: dict) -> dict:
    from confluent_kafka import Producer

    errors = [0]

    def report(err, _msg) -> None:
        if err is not None:
            errors[0] += 1

    producer = Producer({"bootstrap.servers": a["bootstrap"], "acks": "all", "enable.idempotence": True,
                         "linger.ms": LINGER_MS, "batch.size": BATCH_BYTES,
                         "delivery.report.only.error": True, "on_delivery": report})
    topic, value, n = a["topic"], _value(), a["records"]
    producer.list_topics(topic, timeout=30)
    seconds, queued, left = produce_timed(producer, topic, value, n, a["timeout"])
    return {"records": n - errors[0] - left, "seconds": seconds, "enqueue_seconds": queued,
            "errors": errors[0] + left}


def consume_logbroker(a: dict) -> dict:
    import trio

    from logbroker.client import Consumer

    async def main() -> dict:
        async with Consumer(a["bootstrap"], auto_offset_reset="earliest") as consumer:
            n, count, size_ok = a["records"], 0, True
            start = time.perf_counter()
            consumer.assign([(a["topic"], p) for p in range(PARTITIONS)])
            with trio.fail_after(a["timeout"]):
                async for record in consumer:
                    count += 1
                    if count == n:
                        size_ok = len(record.value) == VALUE_SIZE
                        break
            return {"records": count, "seconds": time.perf_counter() - start, "value_size_ok": size_ok}

    return trio.run(main)


def consume_logbroker_bulk(a: dict) -> dict:
    import trio

    from logbroker.client import Consumer

    async def main() -> dict:
        async with Consumer(a["bootstrap"], auto_offset_reset="earliest") as consumer:
            n, count, size_ok = a["records"], 0, True
            start = time.perf_counter()
            consumer.assign([(a["topic"], p) for p in range(PARTITIONS)])
            with trio.fail_after(a["timeout"]):
                while count < n:
                    batch = await consumer.poll_batch(max_records=n - count)
                    for columns in batch.partitions.values():
                        values = columns.values  # a (records, 100) uint8 array
                        size_ok = size_ok and values.shape == (len(columns), VALUE_SIZE)
                    count += len(batch)
            return {"records": count, "seconds": time.perf_counter() - start, "value_size_ok": size_ok}

    return trio.run(main)


def consume_kafka_python(a: dict) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=a["bootstrap"], auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(a["timeout"] * 1000))
    n, count, size_ok = a["records"], 0, True
    start = time.perf_counter()
    consumer.assign([TopicPartition(a["topic"], p) for p in range(PARTITIONS)])
    for msg in consumer:
        count += 1
        if count == n:
            size_ok = len(msg.value) == VALUE_SIZE
            break
    seconds = time.perf_counter() - start
    consumer.close()
    return {"records": count, "seconds": seconds, "value_size_ok": size_ok}


def consume_aiokafka(a: dict) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def main() -> dict:
        consumer = AIOKafkaConsumer(bootstrap_servers=a["bootstrap"], auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            n, count, size_ok = a["records"], 0, True
            start = time.perf_counter()
            consumer.assign([TopicPartition(a["topic"], p) for p in range(PARTITIONS)])
            deadline = time.monotonic() + a["timeout"]
            while count < n and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    count += len(records)
                    size_ok = size_ok and len(records[-1].value) == VALUE_SIZE
            return {"records": count, "seconds": time.perf_counter() - start, "value_size_ok": size_ok}
        finally:
            await consumer.stop()

    return asyncio.run(main())


def consume_confluent(a: dict) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": a["bootstrap"], "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.queue.backoff.ms": 10})
    try:
        n, count, size_ok = a["records"], 0, True
        start = time.perf_counter()
        consumer.assign([TopicPartition(a["topic"], p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + a["timeout"]
        while count < n and time.monotonic() < deadline:
            batch = consumer.consume(min(10_000, n - count), 1.0)
            for msg in batch:
                if msg.error() is None:
                    count += 1
            if batch:
                size_ok = size_ok and len(batch[-1]) == VALUE_SIZE
        return {"records": count, "seconds": time.perf_counter() - start, "value_size_ok": size_ok}
    finally:
        consumer.close()


WORKERS = {
    ("produce", "logbroker"): produce_logbroker,
    ("produce", "logbroker-bulk"): produce_logbroker_bulk,
    ("produce", "kafka-python"): produce_kafka_python,
    ("produce", "aiokafka"): produce_aiokafka,
    ("produce", "confluent-kafka"): produce_confluent,
    ("consume", "logbroker"): consume_logbroker,
    ("consume", "logbroker-bulk"): consume_logbroker_bulk,
    ("consume", "kafka-python"): consume_kafka_python,
    ("consume", "aiokafka"): consume_aiokafka,
    ("consume", "confluent-kafka"): consume_confluent,
}


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------


def _run(kind: str, client: str, args: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "_worker", kind, client, json.dumps(args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args["timeout"] + 60, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} with {client} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _create_topic(bootstrap: str, name: str) -> None:
    from logbroker.client import SyncAdmin

    with SyncAdmin(bootstrap) as admin:
        admin.create_topic(name, PARTITIONS, timeout=30)


def _rate(result: dict) -> dict:
    seconds = result["seconds"]
    out = dict(result)
    out["seconds"] = round(seconds, 3)
    if "enqueue_seconds" in out:
        out["enqueue_seconds"] = round(out["enqueue_seconds"], 3)
    out["records_per_s"] = round(result["records"] / seconds)
    out["mb_per_s"] = round(result["records"] * VALUE_SIZE / seconds / 1e6, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--timeout", type=float, default=300.0, help="per workload, seconds")
    opts = parser.parse_args()
    clients = [c.strip() for c in opts.clients.split(",") if c.strip()]
    results: dict = {"produce": {}, "consume": {}}
    broker = LogbrokerProcess()
    broker.start()
    progress(f"logbroker serve on {broker.bootstrap}")
    try:
        for client in clients:
            runs: dict = {"produce": [], "consume": []}
            for i in range(opts.repeat):
                topic = f"bench-{client}-{i}-{uuid.uuid4().hex[:6]}"
                _create_topic(broker.bootstrap, topic)
                args = {"bootstrap": broker.bootstrap, "topic": topic, "records": opts.records,
                        "timeout": opts.timeout}
                for kind in ("produce", "consume"):
                    progress(f"{kind} {opts.records:,} records with {client} (run {i + 1}/{opts.repeat})")
                    r = _rate(_run(kind, client, args))
                    progress(f"  {r['records_per_s']:,} records/s")
                    runs[kind].append(r)
            for kind in ("produce", "consume"):
                ordered = sorted(runs[kind], key=lambda r: r["records_per_s"])
                results[kind][client] = ordered[len(ordered) // 2]
                if opts.repeat > 1:
                    results[kind][client]["all_records_per_s"] = [r["records_per_s"] for r in runs[kind]]
    finally:
        trouble = broker.trouble()
        broker.cleanup()
    ratios: dict = {"produce": {}, "consume": {}}
    targets: dict = {}
    for kind in ("produce", "consume"):
        for name in OURS:
            ours = results[kind].get(name)
            for client, r in results[kind].items():
                if client not in OURS and ours is not None:
                    ratios[kind][f"{name}/{client}"] = round(ours["records_per_s"] / r["records_per_s"], 2)
    for (kind, name, client), goal in TARGETS.items():
        ratio = ratios[kind].get(f"{name}/{client}")
        if ratio is not None:
            targets[f"{kind} {name}/{client} >= {goal}"] = {"ratio": ratio, "met": ratio >= goal}
    report = {
        "benchmark": "bench_clients",
        "records": opts.records,
        "value_bytes": VALUE_SIZE,
        "partitions": PARTITIONS,
        "producer_settings": {"acks": "all", "idempotence": True, "linger_ms": LINGER_MS, "batch_bytes": BATCH_BYTES},
        "repeat": opts.repeat,
        "produce": results["produce"],
        "consume": results["consume"],
        "ratios": ratios,
        "targets": targets,
        "broker_log_trouble": trouble,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(report, indent=2))
    return 0


def worker_main(kind: str, client: str, args_json: str) -> int:
    result = WORKERS[(kind, client)](json.loads(args_json))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_worker":
        sys.exit(worker_main(*sys.argv[2:5]))
    sys.exit(main())
