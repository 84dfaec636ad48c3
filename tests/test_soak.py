"""benchmarks/soak.py, short form: about 40 s of the mixed soak load (keyed idempotent
produce, transactions with aborts, a consumer group with members joining and
leaving, share-group consumers rejecting into a dead-letter topic, retention,
compaction, 1,000 idle connections) against a real broker, then its end-of-run
checks. Over so short a run only correctness is asserted, and descriptors not
growing beyond the idle connections and the clients' own; memory and latency
flatness need the long form (``python benchmarks/soak.py``)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOAK = ROOT / "benchmarks" / "soak.py"
IDLE = 1000

CORRECTNESS = [
    "keyed_exactly_once_in_order", "transactions_read_committed", "share_none_lost",
    "compaction_latest_per_key", "retention_deleted_segments", "group_caught_up", "idle_connections_kept",
    "latency_consumer",
]


def test_short_soak_loses_nothing_and_keeps_descriptors_flat(tmp_path):
    cmd = [sys.executable, str(SOAK), "--minutes", "0.6", "--window-minutes", "0.2", "--sample-seconds", "2",
           "--rate", "1000", "--idle", str(IDLE), "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=115)
    report = tmp_path / "soak.json"
    assert report.exists(), f"exit {run.returncode}\n{run.stderr[-4000:]}"
    result = json.loads(report.read_text())
    assert json.loads(run.stdout) == result  # the JSON printed is the JSON written

    checks = result["checks"]
    failed = {name: checks[name] for name in CORRECTNESS if not checks[name]["ok"]}
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert result["broker_log_trouble"] == []
    assert result["run"]["worker_noise"] == {}

    # Every record was really exercised, not vacuously checked.
    keyed = checks["keyed_exactly_once_in_order"]
    assert keyed["acknowledged"] > 10_000 and keyed["read"] == keyed["acknowledged"]
    assert keyed["duplicates"] == keyed["gaps"] == keyed["missing"] == 0
    txn = checks["transactions_read_committed"]
    assert txn["committed_transactions"] > 10 and txn["aborted_transactions"] > 0
    assert txn["read_committed_records"] == txn["expected_records"]
    share = checks["share_none_lost"]
    assert share["rejected"] > 0 and share["dead_letters"] >= share["rejected"] and share["lost"] == []
    assert share["group_lag"] == 0 and share["members_started"] >= 3  # one member replaced at least once
    compact = checks["compaction_latest_per_key"]
    assert compact["records_left"] < compact["records_written"]
    assert all(start > 0 for start in checks["retention_deleted_segments"]["log_start_offsets"])
    group = checks["group_caught_up"]
    assert group["joins"] >= 4 and group["leaves"] == group["joins"]  # members left and joined
    assert checks["idle_connections_kept"]["open_at_end"] == IDLE

    # Descriptors: the idle connections, the clients' and the segments', nothing growing.
    flat = result["flatness"]
    assert IDLE <= flat["descriptors_flat"]["max"] <= IDLE + 200, flat["descriptors_flat"]
    assert flat["descriptors_flat"]["ok"], flat["descriptors_flat"]
    samples = result["samples"]
    assert len(samples) >= 10 and all(s["p99_ms"] is not None for s in samples[1:])
    assert len(flat["windows"]["rows"]) >= 2
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "soak.png").stat().st_size > 10_000
