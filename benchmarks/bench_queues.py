"""Queues (KIP-932 share groups) on logbroker: how many records per second do
confluent-kafka ShareConsumers acknowledge, and does a second consumer add
throughput?

A topic of ``--partitions`` (4) partitions is filled with ``--records``
records of 100 bytes (default 1,000,000). Then, for each run, a fresh share
group (``share.auto.offset.reset=earliest``) is consumed to the end by one,
then by two consumer processes, each a confluent-kafka ``ShareConsumer`` in
implicit acknowledgement mode: the records of a poll are acknowledged (ACCEPT)
in one batch, piggy-backed on the next ShareFetch. A record counts when the
broker confirmed its acknowledgement (the acknowledgement commit callback);
records/s is measured from the first record received to the last
acknowledgement confirmed. Both consumers subscribe to the whole topic; the
broker hands each record to exactly one of them.

Two workloads:

* **no_work**: the consumer only touches each record's value. On a 2-core
  machine each consumer process (librdkafka's threads plus Python) uses more
  than a core, so two consumers compete for the cores; the broker's CPU per
  record is reported to show it is not what limits.
* **work**: each record costs ``--work-us`` (10) microseconds of simulated
  I/O-bound processing (a sleep per poll of records x work), the case
  queues are for: spreading processing over consumers. ``ratio`` = two / one.

Targets: two consumers >= 1.5 x one (work), and >= 50,000 records/s
acknowledged. Prints one JSON object on stdout (medians of ``--repeat`` runs,
with every run); progress on stderr.

The request-reply half of this benchmark needs logbroker's native client
(``logbroker.client``) and is reported as ``"request_reply": null`` until it
is added (see :func:`bench_request_reply`).

    python benchmarks/bench_queues.py [--records N] [--repeat N] [--work-us US]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess  # noqa: E402

VALUE = b"x" * 100
_t0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


# -- worker (its own process; JSON lines on stdout) --------------------------------------


def worker_share(a: dict) -> None:
    """A ShareConsumer: waits for "go", subscribes, consumes until stdin closes."""
    from confluent_kafka import ShareConsumer

    consumer = ShareConsumer({
        "bootstrap.servers": a["bootstrap"], "group.id": a["group"],
        "share.acknowledgement.mode": "implicit", "fetch.wait.max.ms": 100,
    })
    acked = [0]

    def on_commit(offsets, error) -> None:
        if error is None:
            acked[0] += sum(len(v) for v in offsets.values())
            emit(e="acked", n=acked[0], t=time.monotonic())

    consumer.set_acknowledgement_commit_callback(on_commit)
    stop = threading.Event()
    emit(e="ready")
    sys.stdin.readline()  # "go"
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    consumer.subscribe([a["topic"]])
    work_s = a["work_us"] / 1e6
    received = 0
    while not stop.is_set():
        messages = consumer.poll(0.1)
        for m in messages:
            if m.error() is None:
                m.value()
                received += 1
        if messages:
            if received == len(messages):
                emit(e="first", t=time.monotonic())
            if work_s:
                time.sleep(len(messages) * work_s)
    consumer.close()
    emit(e="done", received=received, acked=acked[0])


# -- parent ------------------------------------------------------------------------------


class Child:
    def __init__(self, args: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_worker", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.events: list[dict] = []
        self.acked = 0
        self.last_ack: float | None = None
        self.first: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print(line, end="", file=sys.stderr)
                continue
            self.events.append(event)
            if event.get("e") == "acked":
                self.acked, self.last_ack = event["n"], event["t"]
            elif event.get("e") == "first" and self.first is None:
                self.first = event["t"]

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fill(bootstrap: str, topic: str, partitions: int, records: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future is done
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500_000})
    for i in range(records):
        while True:
            try:
                producer.produce(topic, VALUE, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("produce did not finish")


def set_earliest(bootstrap: str, group: str) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)
    ])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(30)


def run(broker: LogbrokerProcess, topic: str, consumers: int, records: int, work_us: float) -> dict:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    set_earliest(broker.bootstrap, group)
    children = [Child({"bootstrap": broker.bootstrap, "group": group, "topic": topic, "work_us": work_us})
                for _ in range(consumers)]
    try:
        deadline = time.monotonic() + 60
        while not all(any(e.get("e") == "ready" for e in c.events) for c in children):
            if time.monotonic() > deadline:
                raise RuntimeError("consumers did not start")
            time.sleep(0.02)
        cpu_before = broker.cpu_seconds()
        for c in children:
            c.send("go")
        limit = 60 + records * (work_us / 1e6) * 2
        deadline = time.monotonic() + limit
        while sum(c.acked for c in children) < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"stalled at {sum(c.acked for c in children)} of {records} acknowledged")
            time.sleep(0.01)
        cpu = broker.cpu_seconds() - cpu_before if cpu_before is not None else None
        start = min(c.first for c in children if c.first is not None)
        end = max(c.last_ack for c in children if c.last_ack is not None)
        seconds = end - start
        shares = [c.acked for c in children]
    finally:
        for c in children:
            c.finish()
    received = sum(next((e["received"] for e in c.events if e.get("e") == "done"), 0) for c in children)
    return {
        "consumers": consumers, "records_per_s": round(records / seconds), "seconds": round(seconds, 3),
        "acked_per_consumer": shares, "received": received,
        "broker_cpu_us_per_record": round(cpu / records * 1e6, 3) if cpu is not None else None,
    }


def bench_request_reply(bootstrap: str, seconds: float = 3.0) -> dict:
    """Request-reply with logbroker.client's Requester and Responder (Spring's
    kafka_correlationId / kafka_replyTopic headers): round trips/s and p50/p99
    latency with 1 and with 50 requests outstanding, one responder process-local."""
    import trio

    from logbroker.client import Admin
    from logbroker.client.reply import Requester, Responder

    async def main() -> dict:
        async with Admin(bootstrap) as admin:
            await admin.create_topic("rpc-bench", 1)
        out = {}
        async with Responder(bootstrap, "rpc-bench", lambda r: r.value, group_id="rpc-bench") as responder, \
                Requester(bootstrap, timeout_ms=10_000) as requester:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(responder.run)
                await requester.request("rpc-bench", b"warm-up")
                for outstanding in (1, 50):
                    latencies: list[float] = []
                    deadline = time.perf_counter() + seconds

                    async def caller() -> None:
                        while time.perf_counter() < deadline:
                            t0 = time.perf_counter()
                            await requester.request("rpc-bench", b"ping")
                            latencies.append(time.perf_counter() - t0)

                    async with trio.open_nursery() as callers:
                        for _ in range(outstanding):
                            callers.start_soon(caller)
                    latencies.sort()
                    out[f"outstanding_{outstanding}"] = {
                        "round_trips_per_s": round(len(latencies) / seconds),
                        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
                        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
                    }
                nursery.cancel_scope.cancel()
        out["target_p50_below_5ms_at_1"] = out["outstanding_1"]["p50_ms"] < 5
        return out

    return trio.run(main)


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work-records", type=int, default=300_000, help="records per run with --work-us")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-us", type=float, default=10.0)
    args = parser.parse_args()
    out: dict = {
        "benchmark": "queues", "date": datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(), "cpus": os.cpu_count(), "record_bytes": len(VALUE),
        "partitions": args.partitions,
    }
    with LogbrokerProcess() as broker:
        topic = "queue"
        progress(f"producing {args.records} records")
        fill(broker.bootstrap, topic, args.partitions, args.records)
        for name, records, work in (("no_work", args.records, 0.0), ("work", args.work_records, args.work_us)):
            one, two = [], []
            for i in range(args.repeat):
                one.append(run(broker, topic, 1, records, work))
                progress(f"{name} run {i + 1}: one consumer {one[-1]['records_per_s']:,} records/s")
                two.append(run(broker, topic, 2, records, work))
                progress(f"{name} run {i + 1}: two consumers {two[-1]['records_per_s']:,} records/s")
            a, b = median_of(one, "records_per_s"), median_of(two, "records_per_s")
            out[name] = {
                "records": records, "work_us_per_record": work,
                "one_consumer_records_per_s": round(a), "two_consumers_records_per_s": round(b),
                "ratio": round(b / a, 2), "runs": {"one": one, "two": two},
            }
        out["target"] = {"ratio_two_vs_one": 1.5, "records_per_s": 50_000}
        out["meets_target"] = (
            out["work"]["ratio"] >= 1.5
            and min(out["work"]["one_consumer_records_per_s"], out["no_work"]["one_consumer_records_per_s"]) >= 50_000
        )
        progress("request-reply")
        out["request_reply"] = bench_request_reply(broker.bootstrap)
        trouble = broker.trouble()
        if trouble:
            out["broker_trouble"] = trouble
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_worker":
        worker_share(json.loads(sys.argv[2]))
    else:
        main()
