"""Broker CPU of a consumer of 10,000 mostly idle partitions, with and
without incremental fetch sessions (KIP-227).

Two ``logbroker serve`` processes in the same run: one with the default
``max.incremental.fetch.session.cache.slots`` (sessions served) and the
baseline with ``max.incremental.fetch.session.cache.slots=0`` (every Fetch
answered without a session, as before sessions existed). On each, 100 topics
x 100 partitions; one consumer is assigned all 10,000 partitions from their
end while a producer writes one record per second to each of 1 % of them (100
partitions). After a warm-up the broker's CPU time (user + system, from
``/proc``) is measured over ``--seconds``, with the records the consumer got
and the Fetch requests the broker handled (its ``--metrics-port`` counter,
read outside the measured window).

The consumer is kafka-python, which keeps an incremental session
(``enable_incremental_fetch_sessions``). librdkafka (confluent-kafka) never
uses fetch sessions (it always sends session id 0, epoch -1; see
``rdkafka_fetcher.c``), so its figures (``--clients`` includes
``confluent-kafka``) show the sessionless path unchanged, ratio about 1.

Prints one JSON object: per client, per broker, CPU seconds per second,
fetches per second, CPU per fetch, records read; and
``cpu_ratio_without_over_with`` (target >= 5 for kafka-python).

    python benchmarks/bench_fetch_sessions.py                 # 100 x 100, 20 s windows
    python benchmarks/bench_fetch_sessions.py --topics 20 --seconds 8   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess, free_port  # noqa: E402

BUSY_FRACTION = 0.01
_FETCHES = re.compile(r'^logbroker_requests_total\{api="Fetch"\} (\S+)$', re.M)


def _fetches(metrics_port: int) -> float:
    """Fetch requests the broker handled so far (its Prometheus counter)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
        m = _FETCHES.search(r.read().decode())
    return float(m.group(1)) if m else 0.0


def _create(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for start in range(0, len(names), 20):
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names[start:start + 20]],
                                      operation_timeout=120, request_timeout=120)
        for f in futures.values():
            f.result(180)


class _Producer:
    """One record per second into each busy partition, in a thread."""

    def __init__(self, bootstrap: str, busy: list[tuple[str, int]]) -> None:
        from confluent_kafka import Producer

        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        self.busy = busy
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for topic, partition in self.busy:
                self.p.produce(topic, b"x" * 100, partition=partition)
            self.p.flush(10)
            self.sent += len(self.busy)
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def __enter__(self) -> _Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


class _KafkaPython:
    name = "kafka-python"

    def __init__(self, bootstrap: str, partitions: list[tuple[str, int]]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                               enable_incremental_fetch_sessions=True, fetch_max_wait_ms=500)
        tps = [TopicPartition(t, p) for t, p in partitions]
        self.c.assign(tps)
        self.c.seek_to_end()

    def poll(self) -> int:
        return sum(len(v) for v in self.c.poll(timeout_ms=200).values())

    def close(self) -> None:
        self.c.close()


class _Confluent:
    name = "confluent-kafka"

    def __init__(self, bootstrap: str, partitions: list[tuple[str, int]]) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-fetch-sessions",
                           "enable.auto.commit": False, "fetch.wait.max.ms": 500})
        self.c.assign([TopicPartition(t, p, OFFSET_END) for t, p in partitions])

    def poll(self) -> int:
        return sum(1 for m in self.c.consume(10_000, 0.2) if m.error() is None)

    def close(self) -> None:
        self.c.close()


CLIENTS = {"kafka-python": _KafkaPython, "confluent-kafka": _Confluent}


def _measure(broker: LogbrokerProcess, metrics_port: int, client_cls, partitions, busy, warmup: float,
             seconds: float) -> dict:
    consumer = client_cls(broker.bootstrap, partitions)
    try:
        with _Producer(broker.bootstrap, busy):
            end_warmup = time.monotonic() + warmup
            while time.monotonic() < end_warmup:
                consumer.poll()
            fetch0 = _fetches(metrics_port)
            cpu0, t0 = broker.cpu_seconds(), time.monotonic()
            records = 0
            while time.monotonic() - t0 < seconds:
                records += consumer.poll()
            cpu1, t1 = broker.cpu_seconds(), time.monotonic()
            fetch1 = _fetches(metrics_port)
    finally:
        consumer.close()
    elapsed = t1 - t0
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    fetches = fetch1 - fetch0
    return {
        "broker_cpu_per_s": round(cpu / elapsed, 4),
        "fetches_per_s": round(fetches / elapsed, 2),
        "broker_cpu_ms_per_fetch": round(1000 * cpu / fetches, 3) if fetches > 0 else None,
        "records_read": records,
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--clients", default="kafka-python,confluent-kafka")
    args = parser.parse_args()
    names = [f"idle-{i:03d}" for i in range(args.topics)]
    partitions = [(t, p) for t in names for p in range(args.partitions)]
    step = max(1, round(1 / BUSY_FRACTION))
    busy = partitions[::step]
    clients = [c for c in args.clients.split(",") if c]
    results: dict = {"partitions": len(partitions), "busy_partitions": len(busy), "clients": {}}
    brokers = {}
    metrics_ports = {}
    try:
        for label, slots in (("sessions", None), ("no_sessions", 0)):
            metrics_ports[label] = free_port()
            broker = LogbrokerProcess(None, "--metrics-port", str(metrics_ports[label]))
            if slots is not None:
                config = os.path.join(broker.workdir, "broker.toml")
                with open(config, "w") as f:
                    f.write(f'"max.incremental.fetch.session.cache.slots" = {slots}\n')
                broker.args += ["--config", config]
            brokers[label] = broker.start()
            started = time.monotonic()
            _create(broker.bootstrap, names, args.partitions)
            print(f"{label}: {len(partitions)} partitions created in {time.monotonic() - started:.1f} s",
                  file=sys.stderr)
        for client in clients:
            out = {}
            for label, broker in brokers.items():
                out[label] = _measure(broker, metrics_ports[label], CLIENTS[client], partitions, busy, args.warmup, args.seconds)
                print(f"{client} {label}: {out[label]}", file=sys.stderr)
            with_s = out["sessions"]["broker_cpu_per_s"]
            without = out["no_sessions"]["broker_cpu_per_s"]
            out["cpu_ratio_without_over_with"] = round(without / with_s, 2) if with_s else None
            results["clients"][client] = out
    finally:
        for broker in brokers.values():
            trouble = broker.trouble()
            if trouble:
                results.setdefault("broker_trouble", []).extend(trouble[:5])
            broker.cleanup()
    kp = results["clients"].get("kafka-python")
    if kp is not None:
        results["target"] = ">= 5x less broker CPU per second with sessions (kafka-python)"
        results["target_met"] = bool(kp["cpu_ratio_without_over_with"] and kp["cpu_ratio_without_over_with"] >= 5)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
