"""Consumer groups on logbroker with confluent-kafka (librdkafka): how fast does a
group form and rebalance, how many synchronous commits per second does one
member get, and does consuming as a 3-member group keep up with one consumer
that assigns itself every partition?

On a 6-partition topic of ``--records`` records of 1000 bytes (default 1,500,000),
with logbroker's defaults (``--flush interval``, ``group.initial.rebalance.delay.ms``
250), three runs, each of:

* **single**: one consumer ``assign()``s all 6 partitions from offset 0 (no
  group) and reads everything; records/s from the assignment to the last record.
* **group**: three member processes, each ready (imported, Consumer built),
  are told to ``subscribe()`` at the same moment (a fresh group per run).
  ``formation_ms``: from the first ``subscribe()`` to the moment all three
  hold a non-empty assignment (librdkafka's ``on_assign``).
  ``client_join_ms`` is the part the client spends before its JoinGroup
  starts the rebalance on the broker (connect, metadata, FindCoordinator, the
  MEMBER_ID_REQUIRED round trip), taken from the broker log;
  ``broker_share_ms`` = the rest, which contains the initial rebalance delay
  (250 ms, extended once by 250 ms because members keep arriving during the
  first 250 ms) and SyncGroup. The members then read the whole topic:
  records/s from the first assignment to the last record of any member;
  ``ratio`` = group / single.
* **rebalance after leave**: one member ``close()``s (LeaveGroup); from that
  call until the other two hold assignments covering all 6 partitions. The
  others learn of the rebalance at their next heartbeat
  (``heartbeat.interval.ms`` 1000, session 6000), so this is anywhere between
  0 and the heartbeat interval plus a round trip, as with Kafka.

Each group run is done twice, once with the classic protocol and once with
Kafka 4's consumer protocol (KIP-848, ``group.protocol=consumer``: the broker
assigns, and tells members to heartbeat every 1000 ms, the classic members'
``heartbeat.interval.ms``; the broker runs with
``group.consumer.heartbeat.interval.ms`` 1000 and session 6000). With that
protocol partitions move incrementally: ``formation_ms`` ends when the three
members hold disjoint assignments covering all 6 partitions. ``consumer_vs_classic``
gives the ratios of formation and rebalance times (consumer / classic: below 1
is faster) and ``consume.consumer_protocol_ratio`` the consumer-protocol group's
throughput against the single assigned consumer.

Then **commits**: one member of its own group consumes batches of 10 records
and commits each batch synchronously (``commit(asynchronous=False)``) for
3 s; commits/s.

Records are 1000 bytes so that the clients' per-record Python cost does not
decide the consume comparison: with 100-byte records each consumer process
is CPU-bound creating Message objects, and on a 2-core machine three
consumer processes plus the broker then compete for the cores. Consumers set
``fetch.queue.backoff.ms`` 10 (librdkafka's 1000 ms default throttles a fast
consumer). Prints one JSON object on stdout (medians, with every run);
progress on stderr. Takes about a minute.

    python benchmarks/bench_groups.py [--records N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess  # noqa: E402

PARTITIONS = 6
VALUE = b"x" * 1000
GROUP_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.queue.backoff.ms": 10}
# KIP-848: session and heartbeat are the broker's (BROKER_CONFIG); librdkafka refuses them here.
CONSUMER_PROTOCOL_CONFIG = {"group.protocol": "consumer", "fetch.queue.backoff.ms": 10}
BROKER_CONFIG = "group_consumer_heartbeat_interval_ms = 1000\ngroup_consumer_session_timeout_ms = 6000\n"
PROTOCOLS = ("classic", "consumer")
INITIAL_DELAY_MS = 250  # logbroker's group.initial.rebalance.delay.ms default
COMMIT_SECONDS = 3.0
REPEAT = 3  # single and group runs alternate; figures are medians
_t0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


# -- workers (each in its own process; JSON lines on stdout) --------------------------


def worker_member(a: dict) -> None:
    """A group member: waits for "go", subscribes, reads until told "stop", then closes."""
    from confluent_kafka import Consumer

    config = CONSUMER_PROTOCOL_CONFIG if a.get("protocol") == "consumer" else GROUP_CONFIG
    consumer = Consumer({
        "bootstrap.servers": a["bootstrap"], "group.id": a["group"], "enable.auto.commit": False,
        "auto.offset.reset": "earliest", **config,
    })
    stop = threading.Event()
    emit(e="ready")
    sys.stdin.readline()  # "go"
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    held: set[int] = set()  # eager: the callbacks name everything; incremental (KIP-848): what changes

    def on_assign(c, parts) -> None:
        held.update(p.partition for p in parts)
        emit(e="assign", t=time.monotonic(), parts=sorted(held))

    def on_revoke(c, parts) -> None:
        held.difference_update(p.partition for p in parts)
        emit(e="revoke", t=time.monotonic(), parts=sorted(held))

    emit(e="subscribe", t=time.monotonic(), wall=time.time())
    consumer.subscribe([a["topic"]], on_assign=on_assign, on_revoke=on_revoke)
    count, last, reported = 0, None, 0.0
    while not stop.is_set():
        batch = consumer.consume(1000, 0.1)
        if batch:
            count += sum(1 for m in batch if m.error() is None)
            last = time.monotonic()
        if time.monotonic() - reported > 0.1:
            emit(e="count", n=count, last=last)
            reported = time.monotonic()
    emit(e="count", n=count, last=last)
    emit(e="closing", t=time.monotonic())
    consumer.close()
    emit(e="closed", t=time.monotonic())


def worker_single(a: dict) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": a["bootstrap"], "group.id": f"single-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10,
    })
    consumer.list_topics(a["topic"], timeout=30)
    start = time.monotonic()
    consumer.assign([TopicPartition(a["topic"], p, 0) for p in range(PARTITIONS)])
    count = 0
    while count < a["records"]:
        batch = consumer.consume(1000, 1.0)
        count += sum(1 for m in batch if m.error() is None)
        if time.monotonic() - start > 120:
            raise RuntimeError(f"single consumer stalled at {count}")
    emit(records=count, seconds=time.monotonic() - start)
    consumer.close()


def worker_commits(a: dict) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": a["bootstrap"], "group.id": a["group"], "enable.auto.commit": False,
        "auto.offset.reset": "earliest", **GROUP_CONFIG,
    })
    consumer.subscribe([a["topic"]])
    while not consumer.assignment():
        consumer.poll(0.05)
    commits = records = 0
    start = time.monotonic()
    while time.monotonic() - start < COMMIT_SECONDS:
        batch = [m for m in consumer.consume(10, 1.0) if m.error() is None]
        if not batch:
            continue
        records += len(batch)
        consumer.commit(asynchronous=False)  # commits the consumed positions
        commits += 1
    seconds = time.monotonic() - start
    emit(commits=commits, records=records, seconds=seconds)
    consumer.close()


WORKERS = {"member": worker_member, "single": worker_single, "commits": worker_commits}


# -- parent --------------------------------------------------------------------------


class Child:
    """A worker process whose JSON lines are collected by a reader thread."""

    def __init__(self, kind: str, args: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_worker", kind, json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                print(line, end="", file=sys.stderr)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def find(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("e") == kind]

    def result(self, timeout: float = 180) -> dict:
        self.proc.wait(timeout)
        self._reader.join(5)
        if self.proc.returncode != 0 or not self.events:
            raise RuntimeError(f"worker failed with {self.proc.returncode}")
        return self.events[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def current_parts(child: Child) -> list[int]:
    """The member's assignment after its latest assign/revoke event."""
    parts: list[int] = []
    for e in child.events:
        if e.get("e") in ("assign", "revoke"):
            parts = e["parts"]
    return parts


def split(members: list[Child]) -> bool:
    """Every member holds partitions, none twice, all of them together."""
    held = [current_parts(m) for m in members]
    return all(held) and sorted(p for ps in held for p in ps) == list(range(PARTITIONS))


def last_change(members: list[Child]) -> float:
    return max(e["t"] for m in members for e in m.events if e.get("e") in ("assign", "revoke"))


def produce(bootstrap: str, topic: str, records: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000})
    for i in range(records):
        while True:
            try:
                producer.produce(topic, VALUE, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.001)
    if producer.flush(60):
        raise RuntimeError("records left undelivered")


def join_time_from_log(log: str, group: str) -> float | None:
    """Wall-clock time of the first JoinGroup that started the group's rebalance."""
    pattern = re.compile(r"^(\S+ \S+) INFO logbroker\.groups: group " + re.escape(group) + r": preparing", re.M)
    m = pattern.search(log)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_group(bootstrap: str, topic: str, records: int, broker: LogbrokerProcess, protocol: str = "classic") -> dict:
    group = f"bench-group-{protocol}-{uuid.uuid4().hex[:6]}"
    members = [Child("member", {"bootstrap": bootstrap, "topic": topic, "group": group, "protocol": protocol})
               for _ in range(3)]
    try:
        wait_for(lambda: all(m.find("ready") for m in members), 60, "members ready")
        for m in members:
            m.send("go")
        wait_for(lambda: split(members), 60, "three assignments")
        formed_at = last_change(members)
        subscribed = min(m.find("subscribe")[0]["t"] for m in members)
        subscribed_wall = min(m.find("subscribe")[0]["wall"] for m in members)
        assigned = [m.find("assign")[0]["t"] for m in members]
        parts = sorted(p for m in members for p in current_parts(m))
        formation_ms = (formed_at - subscribed) * 1000
        join_wall = join_time_from_log(broker.log(), group)
        client_join_ms = (join_wall - subscribed_wall) * 1000 if join_wall else None
        progress(f"{protocol} group formed in {formation_ms:.0f} ms, partitions {parts}")

        def consumed() -> int:
            return sum((m.find("count") or [{"n": 0}])[-1]["n"] for m in members)

        wait_for(lambda: consumed() >= records, 180, "the group to read everything")
        last = max(m.find("count")[-1]["last"] or 0 for m in members)
        group_seconds = last - min(assigned)
        generations = max(len(m.find("assign")) for m in members)
        progress(f"group read {consumed()} records in {group_seconds:.2f} s")

        leaver, stayers = members[0], members[1:]
        before = [len(m.find("assign")) for m in stayers]
        leaver.send("stop")
        wait_for(lambda: leaver.find("closing"), 30, "the leaver to close")
        left_at = leaver.find("closing")[0]["t"]
        wait_for(
            lambda: any(len(m.find("assign")) > b for m, b in zip(stayers, before)) and split(stayers),
            30, "the rebalance after the leave",
        )
        rebalance_ms = (last_change(stayers) - left_at) * 1000
        progress(f"rebalance after leave: {rebalance_ms:.0f} ms")
        for m in stayers:
            m.send("stop")
        for m in members:
            m.result(60)
    finally:
        for m in members:
            m.kill()
    return {
        "formation_ms": round(formation_ms, 1),
        "client_join_ms": round(client_join_ms, 1) if client_join_ms is not None else None,
        "broker_share_ms": round(formation_ms - client_join_ms, 1) if client_join_ms is not None else None,
        "initial_rebalance_delay_ms": INITIAL_DELAY_MS,
        "generations_while_forming": generations,
        "rebalance_after_leave_ms": round(rebalance_ms, 1),
        "consume_records_per_s": round(records / group_seconds),
        "consume_seconds": round(group_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_500_000)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    args = parser.parse_args()
    singles, groups, consumer_groups = [], [], []
    workdir = tempfile.mkdtemp(prefix="bench-groups-")
    config = os.path.join(workdir, "broker.toml")
    with open(config, "w") as f:
        f.write(BROKER_CONFIG)
    with LogbrokerProcess(None, "--config", config) as broker:
        bootstrap = broker.bootstrap
        topic = f"bench-groups-{uuid.uuid4().hex[:6]}"
        progress(f"producing {args.records} records of {len(VALUE)} bytes to {topic}")
        produce(bootstrap, topic, args.records)
        for run in range(args.repeat):
            progress(f"run {run + 1}/{args.repeat}: single assigned consumer")
            single = Child("single", {"bootstrap": bootstrap, "topic": topic, "records": args.records}).result()
            singles.append(single["records"] / single["seconds"])
            progress(f"single: {singles[-1]:,.0f} records/s")
            progress(f"run {run + 1}/{args.repeat}: 3-member group, classic protocol")
            groups.append(run_group(bootstrap, topic, args.records, broker))
            progress(f"run {run + 1}/{args.repeat}: 3-member group, consumer protocol (KIP-848)")
            consumer_groups.append(run_group(bootstrap, topic, args.records, broker, "consumer"))
        progress("synchronous commits")
        commits = Child("commits", {"bootstrap": bootstrap, "topic": topic,
                                    "group": f"bench-commits-{uuid.uuid4().hex[:6]}"}).result()
        trouble = broker.trouble()
    shutil.rmtree(workdir, ignore_errors=True)

    def med(key: str, runs: list[dict] = groups):
        values = [g[key] for g in runs if g[key] is not None]
        return round(statistics.median(values), 1) if values else None

    single_rps = statistics.median(singles)
    group_rps = statistics.median(g["consume_records_per_s"] for g in groups)
    consumer_rps = statistics.median(g["consume_records_per_s"] for g in consumer_groups)
    result = {
        "benchmark": "groups",
        "client": "confluent-kafka",
        "records": args.records,
        "record_bytes": len(VALUE),
        "partitions": PARTITIONS,
        "runs": args.repeat,
        "consumer_config": GROUP_CONFIG,
        "formation": {
            "formation_ms": med("formation_ms"),
            "client_join_ms": med("client_join_ms"),
            "broker_share_ms": med("broker_share_ms"),
            "initial_rebalance_delay_ms": INITIAL_DELAY_MS,
            "generations_while_forming": max(g["generations_while_forming"] for g in groups),
            "formation_ms_runs": [g["formation_ms"] for g in groups],
        },
        "rebalance_after_leave_ms": med("rebalance_after_leave_ms"),
        "rebalance_after_leave_ms_runs": [g["rebalance_after_leave_ms"] for g in groups],
        "consumer_protocol": {
            "broker_config": BROKER_CONFIG.strip().splitlines(),
            "formation_ms": med("formation_ms", consumer_groups),
            "formation_ms_runs": [g["formation_ms"] for g in consumer_groups],
            "rebalance_after_leave_ms": med("rebalance_after_leave_ms", consumer_groups),
            "rebalance_after_leave_ms_runs": [g["rebalance_after_leave_ms"] for g in consumer_groups],
        },
        "consumer_vs_classic": {
            "formation_ratio": round(med("formation_ms", consumer_groups) / med("formation_ms"), 3),
            "rebalance_after_leave_ratio": round(med("rebalance_after_leave_ms", consumer_groups)
                                                 / med("rebalance_after_leave_ms"), 3),
            "not_slower": med("formation_ms", consumer_groups) <= med("formation_ms")
            and med("rebalance_after_leave_ms", consumer_groups) <= med("rebalance_after_leave_ms"),
        },
        "commits": {
            "commits_per_s": round(commits["commits"] / commits["seconds"]),
            "records_per_commit": round(commits["records"] / max(commits["commits"], 1), 1),
            "seconds": round(commits["seconds"], 2),
            "flush": "interval",
        },
        "consume": {
            "single_assigned_records_per_s": round(single_rps),
            "group_of_3_records_per_s": round(group_rps),
            "ratio": round(group_rps / single_rps, 3),
            "consumer_protocol_group_of_3_records_per_s": round(consumer_rps),
            "consumer_protocol_ratio": round(consumer_rps / single_rps, 3),
            "consumer_protocol_group_runs": [g["consume_records_per_s"] for g in consumer_groups],
            "single_runs": [round(x) for x in singles],
            "group_runs": [g["consume_records_per_s"] for g in groups],
        },
        "broker_log_trouble": trouble,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        WORKERS[sys.argv[2]](json.loads(sys.argv[3]))
    else:
        main()
