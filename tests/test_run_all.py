"""benchmarks/run_all.py: runs the benchmarks, prints the combined JSON, writes the page."""

import importlib.util
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "benchmarks" / "run_all.py"


def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_of_one_benchmark_writes_tables_and_json(tmp_path):
    out = tmp_path / "benchmarks.md"
    result = subprocess.run([sys.executable, str(RUN_ALL), "--quick", "--only", "bench_embedded", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    combined = json.loads(result.stdout)
    assert set(combined["steps"]) == {"limits", "bench_embedded"}  # the raw limits are measured in every run
    assert not any(step["error"] for step in combined["steps"].values())
    assert combined["results"]["bench_embedded"]["startup_ms"]["p50"] > 0
    assert combined["results"]["limits"]["loopback"]["mb_per_s"] > 0
    page = out.read_text()
    assert "## Embedded broker" in page and "## Raw limits" in page
    assert "| figure | result | target |\n|---|---|---|\n" in page
    assert "python benchmarks/run_all.py" in page and "Quick run" in page
    assert "## Known limits" in page  # the hand-written prose of docs/benchmarks_notes.md is carried over


def _combined() -> dict:
    """A combined JSON object with every step, shaped as the scripts print it (small made-up figures)."""
    lat = {"p50": 1.2, "p99": 3.3, "p999": 5.6, "max": 9.0, "mean": 1.5}
    broker = {f"{k}_{unit}": v for k, v in (("produce_100B_acks1", 1000), ("produce_100B_acksall", 900),
                                             ("consume_100B", 2000), ("produce_1KiB_acks1", 500),
                                             ("produce_1KiB_acksall", 400), ("consume_1KiB", 800))
              for unit in ("rps", "MBps")}
    sizes = {"produce_10KiB_acks1_MBps": 300.0, "consume_10KiB_MBps": 600.0,
             "produce_100KiB_acks1_MBps": 400.0, "consume_100KiB_MBps": 700.0}
    append = {"batch_bytes": 10, "batches": 1, "appends_per_s": 100_000, "mb_per_s": 1000, "raw_writes_per_s": 1,
              "raw_mb_per_s": 1200, "us_per_append": 1.0, "append_vs_raw": 0.83}
    recovery = {"segment_bytes": 1 << 30, "batches": 1, "seconds": 0.3, "gb_per_s": 3.0}
    queue = {"records": 1000, "work_us_per_record": 0.0, "one_consumer_records_per_s": 90_000,
             "two_consumers_records_per_s": 120_000, "ratio": 1.33,
             "runs": {"one": [{"broker_cpu_us_per_record": 0.2}]}}
    client = {"records_per_s": 1000, "mb_per_s": 0.1}
    results = {
        "limits": {"repeat": 3, "disk": {"dir": "/tmp", "bytes": 1 << 30, "write_mb_per_s": 6000,
                                        "write_fsync_mb_per_s": 2500,
                                        "64KiB": {"block_bytes": 65536, "write_mb_per_s": 5000, "write_fsync_mb_per_s": 2400},
                                        "1MiB": {"block_bytes": 1 << 20, "write_mb_per_s": 6000, "write_fsync_mb_per_s": 2500}},
                   "loopback": {"bytes": 1 << 31, "mb_per_s": 3700}},
        "bench_records": {"kafka_python": "2.2", "codecs": {"none": {
            "encode_records_per_s": 3, "decode_records_per_s": 2, "kafka_python_encode_records_per_s": 1,
            "kafka_python_decode_records_per_s": 1, "encode_ratio": 3.0, "decode_ratio": 2.0}}},
        "bench_storage": {"scale": 1.0, "append_10KiB": append, "append_64KiB": append, "append_1MiB": append,
                          "read_gb_per_s": 150.0, "read_touching_bytes_gb_per_s": 14.0,
                          "random_lookup_us": {"mean": 4.0, "p50": 3.9, "p99": 5.8},
                          "recovery_1GiB_10KiB_batches": recovery, "recovery_1GiB_64KiB_batches": recovery},
        "bench_broker": {
            "records": {"100B": 2000, "1KiB": 500, "partitions": 6, "repeat": 3,
                        "latency": {"rate_per_s": 10_000, "warmup_s": 1.0, "seconds": 5.0, "value_bytes": 100,
                                    "linger_ms": {"latency_ms": 1, "latency_linger0_ms": 0}, "acks": "all"}},
            "client": {"confluent_kafka": "2.6", "librdkafka": "2.6"},
            "logbroker": {**broker, "latency_ms": lat, "latency_linger0_ms": lat},
            "tansu": {**broker, "latency_ms": {k: v * 1000 for k, v in lat.items()}},
            "ratios": {"produce_100B_acks1_rps": 1.0}, "targets": {"latency_p50_below_5ms": True},
            "details": {"tansu": {"errors": [], "notes": ["watermarks are off"]}}},
        "record_sizes": {"sizes": {"10KiB": {"bytes": 10240, "records": 10}, "100KiB": {"bytes": 102400, "records": 1}},
                         "logbroker": sizes, "tansu": sizes, "details": {}},
        "bench_groups": {"records": 1000, "record_bytes": 1000, "runs": 1, "rebalance_after_leave_ms": 500.0,
                         "formation": {"formation_ms": 520.0, "client_join_ms": 6.0, "broker_share_ms": 514.0,
                                       "initial_rebalance_delay_ms": 250},
                         "commits": {"commits_per_s": 4000},
                         "consume": {"ratio": 1.1, "group_of_3_records_per_s": 1100,
                                     "single_assigned_records_per_s": 1000}},
        "bench_queues": {"partitions": 4, "no_work": queue, "work": {**queue, "work_us_per_record": 10.0},
                         "target": {"ratio_two_vs_one": 1.5, "records_per_s": 50_000}, "meets_target": False,
                         "request_reply": {"outstanding_1": {"round_trips_per_s": 800, "p50_ms": 1.2, "p99_ms": 1.6},
                                           "outstanding_50": {"round_trips_per_s": 1000, "p50_ms": 49.0, "p99_ms": 60.0},
                                           "target_p50_below_5ms_at_1": True}},
        "bench_clients": {"records": 1000, "value_bytes": 100, "partitions": 6, "repeat": 1,
                          "produce": {"logbroker": client, "kafka-python": client},
                          "consume": {"logbroker": client, "kafka-python": client},
                          "ratios": {"produce": {"logbroker/kafka-python": 1.0}},
                          "targets": {"produce logbroker/kafka-python >= 3.0": {"ratio": 1.0, "met": False}}},
        "bench_transactions": {
            "records": 1000, "value_bytes": 100, "partitions": 6, "repeat": 1, "per_transaction": [100, 1000],
            "latency_transactions": 50, "latency_records_per_transaction": 100, "broker_flush": "interval",
            "client": {"confluent_kafka": "2.6", "librdkafka": "2.6"},
            "produce": {"idempotent": {"records_per_s": 1000},
                        "txn_100": {"records_per_s": 500, "commit_call_ms": {"p50": 2.0}},
                        "txn_1000": {"records_per_s": 900, "commit_call_ms": {"p50": 3.0}}},
            "consume": {f"{iso}_txn_{k}": {"records_per_s": 2000} for k in (100, 1000)
                        for iso in ("read_committed", "read_uncommitted")},
            "commit_ms": {"p50": 0.4, "p99": 1.3, "max": 9.0, "count": 50},
            "ratios": {"txn_100_vs_idempotent": 0.5, "txn_1000_vs_idempotent": 0.9,
                       "read_committed_vs_uncommitted_txn_100": 1.0, "read_committed_vs_uncommitted_txn_1000": 1.0},
            "targets": {"txn_1000_vs_idempotent_at_least_0.8": {"value": 0.9, "met": True},
                        "commit_p50_below_5ms": {"value": 0.4, "met": True},
                        "commit_p99_below_20ms": {"value": 1.3, "met": True},
                        "read_committed_vs_uncommitted_at_least_0.9": {"value": 1.0, "met": True}}},
        "bench_embedded": {"starts": 5, "startup_ms": {"p50": 1.4, "max": 5.9}, "shutdown_ms_p50": 1.3,
                           "target_p50_below_200ms": True},
    }
    ok = {"seconds": 1.0, "returncode": 0, "error": None}
    steps = {name: dict(ok) for name in results}
    steps["bench_storage"] = {"seconds": 1.0, "returncode": 1, "error": "exit code 1", "stderr_tail": ["Boom"]}
    del results["bench_storage"]
    return {"benchmark": "run_all", "command": "python benchmarks/run_all.py", "quick": False,
            "started": "2026-11-28T12:00:00+00:00", "seconds": 600.0, "steps": steps, "results": results,
            "machine": {"cpu": "Some CPU", "cores": 2, "python": "3.11.7", "implementation": "CPython",
                        "commit": "abc1234", "loadavg_1m_at_start": 0.1, "loadavg_1m_at_end": 0.2}}


def test_every_section_renders_from_saved_json(tmp_path):
    run_all = _load_run_all()
    saved = tmp_path / "combined.json"
    saved.write_text(json.dumps(_combined()))
    out = tmp_path / "page" / "benchmarks.md"
    assert run_all.main(["--from-json", str(saved), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Could not tabulate" not in page
    for heading in ("Raw limits", "Records", "Broker over the Kafka protocol", "Throughput by record size",
                    "Consumer groups", "Queues", "Clients compared", "Transactions", "Embedded broker"):
        assert f"## {heading}" in page
    assert "Not measured in this run: `bench_storage` failed (exit code 1)" in page and "Boom" in page
    assert "| 100 KiB | 400 | 400 | 1.00 | 700 | 700 | 1.00 |" in page
    assert "| 1.2 / 3.3 / 5.6 ms | 1.2 / 3.3 / 5.6 s |" in page
    assert "watermarks are off" in page
    assert "| commit latency, 50 transactions of 100 records flushed first: p50 / p99 / max | 0.4 / 1.3 / 9.0 ms |" in page
    plots = ("throughput_by_record_size", "latency_percentiles", "queue_throughput")
    if "Plots skipped" in page:
        assert not (out.parent / "img").exists()
    else:
        assert all((out.parent / "img" / f"{name}.png").stat().st_size > 0 for name in plots)
        assert "](img/throughput_by_record_size.png)" in page


def test_unknown_step_is_refused():
    result = subprocess.run([sys.executable, str(RUN_ALL), "--only", "bench_nothing"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "unknown step 'bench_nothing'" in result.stderr
