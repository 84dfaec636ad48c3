"""Broker CPU per byte: what it costs the broker to take records in and give them back.

For each record size (100 B, 1 KiB, 64 KiB, 1,000,000 B) a librdkafka
producer (confluent-kafka, acks=all) writes about 1 GB of values (100 MB of
100-byte records; a tenth with ``--quick``) to a fresh topic, then a
librdkafka consumer reads them all back. Clients run in their own processes;
the figure is the broker process's user and system CPU from ``/proc`` over
each phase. Targets (issue 20): produce plus consume at most 1.0
CPU-second per GB at 1 KiB, 64 KiB and 1 MB records, and at most 0.2
CPU-seconds per million 100-byte records. With Tansu (in-memory storage)
the same workload runs against it in the same run for comparison.

Before each size, ``machine_write_floor`` is what a plain ``pwritev`` of the
same bytes to a new file costs this machine, written twice: on a VM that
hands free memory back to its host, the first write into cold memory costs
up to ten times the second (the host faults each page in). The second write
leaves warm memory behind for the broker, as a broker that runs for a while
has; without it, whether a phase lands on warm or cold memory swings the
produce figure by a second per GB.

    python benchmarks/bench_bytes.py [--quick] [--no-tansu] [--sizes 1KiB,64KiB]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import LogbrokerProcess, TansuProcess, find_tansu  # noqa: E402
from bench_broker import _value, progress  # noqa: E402  # the same payload and progress lines

PARTITIONS = 3
SIZES = (("100B", 100, 1_000_000), ("1KiB", 1024, 1_000_000), ("64KiB", 65536, 16_384),
         ("1MB", 1_000_000, 1_000))
"""label, value bytes, records (about 1 GB each but 100 B: 100 MB)."""
TARGET_CPU_S_PER_GB = 1.0
TARGET_CPU_S_PER_MILLION_100B = 0.2
_MAX_BYTES = 4 * 1024 * 1024

_t_start = time.monotonic()


def worker_produce(a: dict) -> dict:
    from confluent_kafka import Producer

    failed: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer({
        "bootstrap.servers": a["bootstrap"], "acks": "all", "linger.ms": 5,
        "batch.size": max(1_000_000, a["size"] + 1024), "message.max.bytes": _MAX_BYTES,
        "delivery.report.only.error": True, "on_delivery": on_delivery,
    })
    producer.list_topics(a["topic"], timeout=30)
    value, produce, poll = _value(a["size"]), producer.produce, producer.poll
    start = time.perf_counter()
    for i in range(a["count"]):
        while True:
            try:
                produce(a["topic"], value)
                break
            except BufferError:
                poll(0.001)
        if not i & 0x3FFF:
            poll(0)
    left = producer.flush(300)
    return {"seconds": time.perf_counter() - start, "left": left, "failed": len(failed), "errors": failed[:3]}


def worker_consume(a: dict) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": a["bootstrap"], "group.id": f"bytes-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10,
        "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "receive.message.max.bytes": 80 * 1024 * 1024,
    })
    try:
        consumer.assign([TopicPartition(a["topic"], p, 0) for p in range(PARTITIONS)])
        count = size_ok = 0
        start = last = time.perf_counter()
        while count < a["count"]:
            batch = consumer.consume(10_000, 1.0)
            now = time.perf_counter()
            if not batch:
                if now - last > 60:
                    return {"seconds": now - start, "records": count, "error": "stalled"}
                continue
            last = now
            for msg in batch:
                if msg.error() is None:
                    count += 1
                    size_ok += len(msg) == a["size"]
        return {"seconds": time.perf_counter() - start, "records": count, "sizes_ok": size_ok == count}
    finally:
        consumer.close()


def _run(kind: str, args: dict) -> dict:
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "_worker", kind, json.dumps(args)],
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)
        err.seek(0)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{kind} worker exited with {proc.returncode}: {err.read()[-2000:]}")
        return json.loads(lines[-1])


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                   config={"max.message.bytes": str(_MAX_BYTES)})
    admin.create_topics([new], operation_timeout=30)[topic].result(timeout=60)
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) < PARTITIONS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic} has not all its partitions")
        time.sleep(0.1)


def _cpu(pid: int) -> tuple[float, float, int]:
    """(user, system) CPU seconds of ``pid`` so far, and its minor page faults."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])


def _write_floor(directory: str, nbytes: int) -> dict:
    """What this machine charges to write ``nbytes`` to a new file: a plain
    ``pwritev`` of 1 MiB blocks and an ``fsync``, in CPU seconds of this process.

    Done twice. On a VM whose free memory goes back to the host (virtio-balloon
    free page reporting), the first write into memory not touched for some
    seconds costs several times the second: the host faults each page in. The
    file is deleted, so the broker's phase that follows gets the memory the
    second write warmed, as a long-running broker does, and its figure is the
    broker's work, not the hypervisor's.
    """
    block = os.urandom(1 << 20)
    out = {}
    for name in ("first_write_cpu_s", "rewrite_cpu_s"):
        path = os.path.join(directory, f"write-floor-{uuid.uuid4().hex[:6]}")
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            before = os.times()
            for offset in range(0, nbytes, len(block)):
                os.pwritev(fd, [block], offset)
            os.fsync(fd)
            after = os.times()
        finally:
            os.close(fd)
            os.unlink(path)
        out[name] = round(after.user + after.system - before.user - before.system, 3)
    return out


def measure(broker, sizes) -> dict:
    out: dict = {}
    for label, size, count in sizes:
        topic = f"bytes-{label}-{uuid.uuid4().hex[:6]}"
        _create_topic(broker.bootstrap, topic)
        args = {"bootstrap": broker.bootstrap, "topic": topic, "size": size, "count": count}
        figures: dict = {"records": count, "value_bytes": size * count}
        figures["machine_write_floor"] = _write_floor(broker.workdir, size * count)
        for phase in ("produce", "consume"):
            progress(f"{broker.name}: {phase} {count:,} x {label}")
            user0, sys0, faults0 = _cpu(broker.pid)
            result = _run(phase, args)
            user1, sys1, faults1 = _cpu(broker.pid)
            figures[phase] = {"seconds": round(result["seconds"], 3),
                              "MBps": round(size * count / result["seconds"] / 1e6, 1),
                              "cpu_user_s": round(user1 - user0, 2), "cpu_system_s": round(sys1 - sys0, 2),
                              "minor_faults": faults1 - faults0,
                              **{k: v for k, v in result.items() if k != "seconds"}}
        cpu = sum(figures[p][k] for p in ("produce", "consume") for k in ("cpu_user_s", "cpu_system_s"))
        figures["cpu_s"] = round(cpu, 2)
        figures["cpu_s_per_GB"] = round(cpu / (size * count / 1e9), 3)
        figures["cpu_s_per_million_records"] = round(cpu / (count / 1e6), 3)
        out[label] = figures
    return out


def _targets(figures: dict) -> dict:
    out = {}
    for label, per in figures.items():
        if label == "100B":
            out["100B_cpu_s_per_million_le_0.2"] = per["cpu_s_per_million_records"] <= TARGET_CPU_S_PER_MILLION_100B
        else:
            out[f"{label}_cpu_s_per_GB_le_1.0"] = per["cpu_s_per_GB"] <= TARGET_CPU_S_PER_GB
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        print(json.dumps({"produce": worker_produce, "consume": worker_consume}[argv[1]](json.loads(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the records")
    parser.add_argument("--no-tansu", action="store_true")
    parser.add_argument("--sizes", help="comma-separated labels (default all: 100B,1KiB,64KiB,1MB)")
    args = parser.parse_args(argv)
    wanted = set(args.sizes.split(",")) if args.sizes else None
    sizes = [(label, size, count // (10 if args.quick else 1)) for label, size, count in SIZES
             if wanted is None or label in wanted]
    report: dict = {"benchmark": "bytes_per_core", "quick": args.quick, "partitions": PARTITIONS,
                    "client": "confluent-kafka (librdkafka), acks=all, linger.ms=5",
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}}
    brokers = [("logbroker", lambda: LogbrokerProcess())]
    tansu = None if args.no_tansu else find_tansu()
    if tansu:
        brokers.append(("tansu", lambda: TansuProcess(tansu)))
    for name, make in brokers:
        broker = make()
        try:
            broker.start()
            report[name] = measure(broker, sizes)
        except Exception as exc:  # noqa: BLE001 - the other broker may still run
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            broker.cleanup()
    if "error" not in report["logbroker"]:
        report["targets"] = _targets(report["logbroker"])
    if tansu and "error" not in report.get("tansu", {"error": 1}) and "error" not in report["logbroker"]:
        report["cpu_ratio_logbroker_to_tansu"] = {
            label: round(report["logbroker"][label]["cpu_s"] / report["tansu"][label]["cpu_s"], 3)
            for label in report["logbroker"] if report["tansu"].get(label, {}).get("cpu_s")}
    report["seconds"] = round(time.monotonic() - _t_start, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
