"""Many partitions: can one broker hold 100,000 partitions (1,000 topics x 100)
under an ordinary ``ulimit -n``, and how do they cost it at rest and at restart?

A real ``logbroker serve`` (defaults, ``--flush interval``) runs with a soft
``RLIMIT_NOFILE`` of 1024 (``--nofile``; set in the child before exec, the
limit a user's shell usually has), its data in a temporary directory. Then:

* **create**: ``--topics`` topics of ``--partitions`` partitions with
  confluent-kafka's AdminClient, 50 topics per CreateTopics request;
* **produce**: one record to every partition (its value names the topic and
  partition), with one confluent-kafka producer (``linger.ms`` 100, so each
  Produce request carries thousands of partitions);
* **read**: every partition back from offset 0 with confluent-kafka,
  ``assign()`` 2,000 partitions at a time, checking each record's value;
* **Metadata**: the median of 5 Metadata v12 requests for every topic (a null
  topic list, sent on a raw socket: librdkafka's all-topics request is
  malformed), from sending until the whole answer arrived;
* **clean restart**: SIGTERM, then start again; seconds from the new process
  until it answers that Metadata request with every topic, and how many
  lines it logged by then;
* **SIGKILL restart**: a second record to every partition, SIGKILL as soon
  as the producer is acknowledged (within ``flush.interval.ms``: some was not
  yet fsynced), start again and time it the same way; then read every
  partition again and check both records are there.

Sampled every 0.2 s throughout: the broker's open descriptors
(``/proc/PID/fd``), memory maps (lines of ``/proc/PID/maps``) and resident
memory (``VmRSS``; ``VmHWM`` is the peak). ``targets`` says which of the
issue's goals are met: descriptors <= 4096 (and under the ulimit), RSS
< 2 GiB, clean restart < 10 s, SIGKILL restart < 60 s, Metadata < 1 s; and
every record read back.

Prints one JSON object on stdout; progress goes to stderr. ``--quick`` runs
50 topics x 40 partitions.

    python benchmarks/bench_partitions.py [--quick] [--topics N] [--partitions N] [--nofile N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _harness import REPO_ROOT, LogbrokerProcess  # noqa: E402

GiB = 1 << 30
TOPICS_PER_CREATE = 50
READ_CHUNK = 2000
METADATA_RUNS = 5
TARGETS = {"descriptors": 4096, "rss_bytes": 2 * GiB, "clean_restart_s": 10.0, "kill_restart_s": 60.0,
           "metadata_s": 1.0}

_t_start = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)


class LimitedLogbroker(LogbrokerProcess):
    """``logbroker serve`` under a soft RLIMIT_NOFILE of ``nofile``."""

    def __init__(self, workdir: str | None, nofile: int, *args: str) -> None:
        super().__init__(workdir, *args)
        self.nofile = nofile

    def _spawn(self, cmd: list[str], env: dict | None = None) -> None:
        import subprocess

        def limit() -> None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir, preexec_fn=limit)

    def start(self, timeout: float = 30.0) -> LimitedLogbroker:
        """As LogbrokerProcess.start, but reads only this start's log (the file
        keeps every start's lines, and an earlier one names an old port)."""
        import re
        import sys as _sys

        cmd = [_sys.executable, "-m", "logbroker", "serve", "--data-dir", self.data_dir,
               "--host", "127.0.0.1", "--port", "0", *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        self.log_offset = len(self.log())
        self._spawn(cmd, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on \S+:(\d+)", self.log()[self.log_offset:])
            if m:
                self.port = int(m.group(1))
                return self
            time.sleep(0.02)
        log = self.log()[self.log_offset:]
        self.stop(5)
        raise RuntimeError(f"logbroker did not start:\n{log[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Sampler:
    """Samples a process's descriptors, maps and RSS in a thread; keeps the peaks."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.peak = {"fds": 0, "maps": 0, "rss": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def sample(pid: int) -> dict:
        out = {"fds": 0, "maps": 0, "rss": 0, "hwm": 0}
        try:
            out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
            with open(f"/proc/{pid}/maps", "rb") as f:
                out["maps"] = sum(1 for _ in f)
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        out["rss" if line.startswith("VmRSS") else "hwm"] = int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            pid = self.pid
            if pid is None:
                continue
            s = self.sample(pid)
            for key in self.peak:
                self.peak[key] = max(self.peak[key], s[key])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _metadata_request(correlation_id: int) -> bytes:
    from logbroker.protocol.adapter import encode_request, request_module

    body = request_module(3, 12).MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    return encode_request(3, 12, correlation_id, "bench-partitions", body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionError("broker closed the connection")
        got += k
    return bytes(buf)


def metadata_all(bootstrap: str, timeout: float = 60.0) -> tuple[float, int, int]:
    """One all-topics Metadata v12: (seconds from send to the whole answer, topics, partitions)."""
    from logbroker.protocol.adapter import decode_response

    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        request = _metadata_request(1)
        started = time.perf_counter()
        sock.sendall(request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        payload = _recv_exact(sock, size)
        seconds = time.perf_counter() - started
    _, body = decode_response(3, 12, payload)
    user = [t for t in body.topics if not t.is_internal]
    return seconds, len(user), sum(len(t.partitions) for t in user)


def wait_answering(broker: LimitedLogbroker, topics: int, partitions: int, timeout: float) -> float:
    """Start ``broker`` and wait until Metadata lists every topic and partition;
    seconds from the spawn."""
    started = time.monotonic()
    broker.start(timeout=timeout)
    deadline = started + timeout
    while True:
        try:
            _, n_topics, n_parts = metadata_all(broker.bootstrap)
            if n_topics >= topics and n_parts >= partitions:
                return time.monotonic() - started
        except (OSError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the broker did not answer Metadata with every topic in time")
        time.sleep(0.05)


def topic_names(n: int) -> list[str]:
    return [f"t{i:05d}" for i in range(n)]


def create_all(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for i in range(0, len(names), TOPICS_PER_CREATE):
        chunk = names[i:i + TOPICS_PER_CREATE]
        futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in chunk],
                                      operation_timeout=120, request_timeout=120)
        for future in futures.values():
            future.result(timeout=300)
        if (i // TOPICS_PER_CREATE) % 4 == 3:
            progress(f"  created {i + len(chunk)} topics")


def value_of(topic: str, partition: int, n: int) -> bytes:
    return f"{topic}/{partition}/{n}".encode()


def produce_all(bootstrap: str, names: list[str], partitions: int, n: int) -> set[tuple[str, int]]:
    """Record ``n`` (its value says so) to every partition; returns the partitions
    whose record was not acknowledged."""
    from confluent_kafka import Producer

    failed: set[tuple[str, int]] = set()

    def on_delivery(err, msg) -> None:
        if err is not None:
            failed.add((msg.topic(), msg.partition()))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 100, "acks": "all",
                         "queue.buffering.max.messages": 1_000_000, "on_delivery": on_delivery,
                         "message.timeout.ms": 1_800_000, "topic.metadata.refresh.interval.ms": 600_000})
    for topic in names:
        for p in range(partitions):
            while True:
                try:
                    producer.produce(topic, value_of(topic, p, n), partition=p)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    if producer.flush(1800):
        raise RuntimeError("records still undelivered after 1800 s")
    return failed


def read_all(bootstrap: str, names: list[str], partitions: int, records: int,
             unacked: set[tuple[str, int]] = frozenset()) -> dict:  # type: ignore[assignment]
    """Read ``records`` records of every partition from offset 0 and check their values;
    a partition in ``unacked`` may lack its last one (never acknowledged)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-partitions",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.queue.backoff.ms": 10, "topic.metadata.refresh.interval.ms": 600_000})
    wanted = [(t, p) for t in names for p in range(partitions)]
    ok = bad = missing = 0
    try:
        for i in range(0, len(wanted), READ_CHUNK):
            chunk = wanted[i:i + READ_CHUNK]
            expect = {(t, p): [value_of(t, p, k) for k in range(records)] for t, p in chunk}
            seen: dict[tuple[str, int], list[bytes]] = {tp: [] for tp in chunk}
            consumer.assign([TopicPartition(t, p, 0) for t, p in chunk])
            need = len(chunk) * records
            got, last = 0, time.monotonic()
            while got < need and time.monotonic() - last < 30:
                for msg in consumer.consume(10_000, 0.5):
                    if msg.error() is not None:
                        continue
                    tp = (msg.topic(), msg.partition())
                    if tp in seen and len(seen[tp]) < records:
                        seen[tp].append(msg.value())
                        got += 1
                        last = time.monotonic()
            consumer.unassign()
            for tp, values in seen.items():
                if values == expect[tp] or (tp in unacked and values == expect[tp][:-1]):
                    ok += 1
                elif len(values) < records:
                    missing += 1
                else:
                    bad += 1
            if (i // READ_CHUNK) % 10 == 9:
                progress(f"  read {i + len(chunk)} partitions")
    finally:
        consumer.close()
    return {"partitions_ok": ok, "partitions_wrong": bad, "partitions_short": missing}


def _log_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def run(args: argparse.Namespace) -> dict:
    names = topic_names(args.topics)
    total = args.topics * args.partitions
    sampler = Sampler()
    broker = LimitedLogbroker(None, args.nofile)
    figures: dict = {"topics": args.topics, "partitions_per_topic": args.partitions, "partitions": total,
                     "nofile_soft_limit": args.nofile}
    try:
        broker.start(timeout=60)
        sampler.pid = broker.pid
        progress(f"broker pid {broker.pid} on {broker.bootstrap}; creating {args.topics} x {args.partitions}")
        t = time.perf_counter()
        create_all(broker.bootstrap, names, args.partitions)
        figures["create_s"] = round(time.perf_counter() - t, 2)
        progress(f"created in {figures['create_s']} s; producing one record per partition")
        t = time.perf_counter()
        figures["produce_failed"] = len(produce_all(broker.bootstrap, names, args.partitions, 0))
        figures["produce_s"] = round(time.perf_counter() - t, 2)
        progress(f"produced in {figures['produce_s']} s; reading back")
        t = time.perf_counter()
        figures["read"] = read_all(broker.bootstrap, names, args.partitions, 1)
        figures["read_s"] = round(time.perf_counter() - t, 2)
        progress(f"read in {figures['read_s']} s: {figures['read']}")
        runs = [metadata_all(broker.bootstrap) for _ in range(METADATA_RUNS)]
        figures["metadata_p50_ms"] = round(statistics.median(r[0] for r in runs) * 1000, 1)
        figures["metadata_partitions"] = runs[-1][2]
        now = Sampler.sample(broker.pid)
        figures["after_load"] = {"fds": now["fds"], "maps": now["maps"], "rss_mib": now["rss"] >> 20,
                                 "hwm_mib": now["hwm"] >> 20}
        progress(f"metadata p50 {figures['metadata_p50_ms']} ms; {figures['after_load']}; clean restart")

        t = time.perf_counter()
        broker.stop(timeout=600)
        figures["clean_stop_s"] = round(time.perf_counter() - t, 2)
        log_before = len(broker.log())
        figures["clean_restart_s"] = round(wait_answering(broker, args.topics, total, 600), 2)
        sampler.pid = broker.pid
        figures["clean_restart_log_lines"] = _log_lines(broker.log()[log_before:])
        progress(f"clean restart answered in {figures['clean_restart_s']} s "
                 f"({figures['clean_restart_log_lines']} log lines); second record, then SIGKILL")

        t = time.perf_counter()
        unacked = produce_all(broker.bootstrap, names, args.partitions, 1)
        figures["produce2_s"] = round(time.perf_counter() - t, 2)
        figures["produce2_failed"] = len(unacked)
        broker.kill()
        log_before = len(broker.log())
        figures["kill_restart_s"] = round(wait_answering(broker, args.topics, total, 900), 2)
        sampler.pid = broker.pid
        restart_log = broker.log()[log_before:]
        figures["kill_restart_log_lines"] = _log_lines(restart_log)
        figures["kill_restart_log_sample"] = [line[:300] for line in restart_log.splitlines()[:12]]
        progress(f"SIGKILL restart answered in {figures['kill_restart_s']} s "
                 f"({figures['kill_restart_log_lines']} log lines); reading both records back")
        t = time.perf_counter()
        figures["read_after_kill"] = read_all(broker.bootstrap, names, args.partitions, 2, unacked)
        figures["read_after_kill_s"] = round(time.perf_counter() - t, 2)
        now = Sampler.sample(broker.pid)
        figures["at_end"] = {"fds": now["fds"], "maps": now["maps"], "rss_mib": now["rss"] >> 20,
                             "hwm_mib": now["hwm"] >> 20}
        progress(f"read after kill: {figures['read_after_kill']}; {figures['at_end']}")
        figures["peak"] = {"fds": sampler.peak["fds"], "maps": sampler.peak["maps"],
                           "rss_mib": sampler.peak["rss"] >> 20}
    except Exception as exc:
        figures["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        figures["broker_log_tail"] = broker.log().splitlines()[-15:]
        if broker.pid is not None:
            now = Sampler.sample(broker.pid)
            figures["at_error"] = {"fds": now["fds"], "maps": now["maps"], "rss_mib": now["rss"] >> 20}
        figures["peak"] = {"fds": sampler.peak["fds"], "maps": sampler.peak["maps"],
                           "rss_mib": sampler.peak["rss"] >> 20}
    finally:
        sampler.stop()
        figures["broker_trouble"] = broker.trouble(10)
        broker.cleanup()
    figures["targets"] = _targets(figures, total, args.nofile)
    return figures


def _targets(f: dict, total: int, nofile: int) -> dict:
    peak = f.get("peak", {})
    budget = min(TARGETS["descriptors"], nofile)

    def met(name: str, value, ok: bool) -> tuple[str, dict]:
        return name, {"value": value, "met": bool(ok)}

    read_ok = f.get("read", {}).get("partitions_ok", 0) == total and f.get("produce_failed") == 0
    kill_ok = f.get("read_after_kill", {}).get("partitions_ok", 0) == total
    rss = peak.get("rss_mib", 0)
    return dict([
        met(f"descriptors peak <= {budget}", peak.get("fds"), "fds" in peak and peak["fds"] <= budget),
        met("RSS peak < 2 GiB (MiB)", rss, "error" not in f and 0 < rss < TARGETS["rss_bytes"] >> 20),
        met("clean restart < 10 s", f.get("clean_restart_s"), f.get("clean_restart_s", 1e9) < 10),
        met("SIGKILL restart < 60 s", f.get("kill_restart_s"), f.get("kill_restart_s", 1e9) < 60),
        met("Metadata (all topics) < 1 s (ms)", f.get("metadata_p50_ms"), f.get("metadata_p50_ms", 1e9) < 1000),
        met("every partition read back", f.get("read", {}).get("partitions_ok"), read_ok),
        met("every acknowledged record after SIGKILL", f.get("read_after_kill", {}).get("partitions_ok"), kill_ok),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--nofile", type=int, default=1024, help="soft RLIMIT_NOFILE of the broker")
    parser.add_argument("--quick", action="store_true", help="50 topics x 40 partitions")
    args = parser.parse_args()
    if args.quick:
        args.topics, args.partitions = 50, 40
    report = {"benchmark": "bench_partitions", "python": platform.python_version(), "cpus": os.cpu_count(),
              "vm_max_map_count": _max_map_count(), **run(args)}
    report["meets_targets"] = all(t["met"] for t in report["targets"].values())
    print(json.dumps(report, indent=1))


def _max_map_count() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    main()
