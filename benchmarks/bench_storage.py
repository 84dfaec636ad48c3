"""How fast is the storage engine next to plain file writes? Prints one JSON object.

Measures, in a temp dir under /tmp:
* appends of 10 KiB (100 x 100-byte records), 64 KiB and 1 MiB batches through
  PartitionLog.append (flush=interval: a thread calls LogManager.flush_dirty()
  every second, as the broker does), and the same bytes written with plain
  sequential os.write (with the same fsync-per-second thread) as the baseline;
  ``append_vs_raw`` = our MB/s over raw MB/s for each size;
* sequential read throughput via read() (zero-copy views; also with the bytes
  actually touched by a CRC pass);
* random offset lookup latency (read(offset, 1));
* recovery of a 1 GiB segment after an unclean shutdown.

Usage: python benchmarks/bench_storage.py [--scale 0.25]   (scale shrinks the data)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import crc32c

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logbroker.records import build_batch, parse_header  # noqa: E402
from logbroker.storage import LogConfig, LogManager, LogManagerConfig, PartitionLog  # noqa: E402

GiB = 1 << 30


def _batch(count: int, record_value: int) -> bytes:
    value = os.urandom(record_value)
    return build_batch([(None, value, (), 1_700_000_000_000 + i) for i in range(count)])


class _Flusher:
    """Calls ``fn`` every ``interval_s`` in a thread while active (the interval mode)."""

    def __init__(self, fn, interval_s: float = 1.0) -> None:
        self._fn, self._interval = fn, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._fn()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _raw_writes(path: Path, batch: bytes, n: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with _Flusher(lambda: os.fsync(fd)):
            start = time.perf_counter()
            for _ in range(n):
                os.write(fd, batch)
            elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return elapsed


def _appends(data_dir: Path, batch: bytes, n: int) -> tuple[float, LogManager]:
    config = LogManagerConfig(flush="interval", log=LogConfig(segment_bytes=GiB, retention_ms=-1, max_message_bytes=2 << 20))
    manager = LogManager(data_dir, config, now_ms=0)
    manager.create_topic("bench", 1)
    log = manager.get_partition("bench", 0)
    append = log.append
    with _Flusher(manager.flush_dirty):
        start = time.perf_counter()
        for _ in range(n):
            append(batch, 0)
        elapsed = time.perf_counter() - start
    return elapsed, manager


def _warm_up(tmp: Path, nbytes: int) -> None:
    """Write and delete a scratch file: the first touch of guest memory is slow on VMs."""
    chunk = os.urandom(1 << 20)
    path = tmp / "warm"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    for _ in range(nbytes >> 20):
        os.write(fd, chunk)
    os.close(fd)
    path.unlink()


def _measure_append(tmp: Path, label: str, batch: bytes, total: int, results: dict, reps: int = 2) -> LogManager:
    """Alternate raw and engine runs ``reps`` times; keep the best of each."""
    n = max(1, total // len(batch))
    raw = ours = float("inf")
    manager = None
    for rep in range(reps):
        raw = min(raw, _raw_writes(tmp / f"raw-{label}", batch, n))
        (tmp / f"raw-{label}").unlink()
        if manager is not None:
            manager.close()
            shutil.rmtree(tmp / f"data-{label}")
        elapsed, manager = _appends(tmp / f"data-{label}", batch, n)
        ours = min(ours, elapsed)
    mb = n * len(batch) / 1e6
    results[f"append_{label}"] = {
        "batch_bytes": len(batch),
        "batches": n,
        "appends_per_s": round(n / ours),
        "mb_per_s": round(mb / ours),
        "raw_writes_per_s": round(n / raw),
        "raw_mb_per_s": round(mb / raw),
        "us_per_append": round(ours / n * 1e6, 2),
        "append_vs_raw": round(raw / ours, 3),
    }
    return manager


def _measure_reads(log: PartitionLog, batch_len: int, results: dict) -> None:
    """Read the whole log back with 1 MiB reads; then random single-offset reads."""
    end = log.log_end_offset
    for touch in (False, True):
        best = 0.0
        for _ in range(2):
            offset, nbytes = log.log_start_offset, 0
            start = time.perf_counter()
            while offset < end:
                records = log.read(offset, 1 << 20).records
                if touch:
                    crc32c.crc32c(records)
                nbytes += len(records)
                # every batch has the same size here, so the last one starts at len - batch_len
                offset = parse_header(records, len(records) - batch_len).next_offset
            best = max(best, nbytes / (time.perf_counter() - start))
        results["read_touching_bytes_gb_per_s" if touch else "read_gb_per_s"] = round(best / 1e9, 2)
    rng = random.Random(7)
    offsets = [rng.randrange(log.log_start_offset, end) for _ in range(20_000)]
    samples = []
    read = log.read
    for offset in offsets:
        t = time.perf_counter_ns()
        read(offset, 1)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    results["random_lookup_us"] = {
        "mean": round(statistics.fmean(samples) / 1000, 2),
        "p50": round(samples[len(samples) // 2] / 1000, 2),
        "p99": round(samples[int(len(samples) * 0.99)] / 1000, 2),
    }


def _measure_recovery(data_dir: Path, results: dict, key: str) -> None:
    part = data_dir / "bench-0"
    segment = max(part.glob("*.log"), key=lambda p: p.stat().st_size)
    start = time.perf_counter()
    log = PartitionLog(part, LogConfig(segment_bytes=GiB), recovery_point=0, clean_shutdown=False)
    elapsed = time.perf_counter() - start
    report = log.recovery_report
    results[key] = {
        "segment_bytes": segment.stat().st_size,
        "batches": report.scanned_batches,
        "seconds": round(elapsed, 3),
        "gb_per_s": round(report.scanned_bytes / elapsed / 1e9, 2),
    }
    log.close(flush=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default data sizes")
    args = parser.parse_args()
    total = int(GiB * args.scale)
    results: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "scale": args.scale}
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-", dir="/tmp"))
    try:
        _warm_up(tmp, total)
        batch_10k = _batch(100, 100)
        manager = _measure_append(tmp, "10KiB", batch_10k, total, results)
        log = manager.get_partition("bench", 0)
        _measure_reads(log, len(batch_10k), results)
        manager.close()
        _measure_recovery(tmp / "data-10KiB", results, "recovery_1GiB_10KiB_batches")
        shutil.rmtree(tmp / "data-10KiB")
        manager = _measure_append(tmp, "64KiB", _batch(64, 1000), total, results)
        manager.close()
        _measure_recovery(tmp / "data-64KiB", results, "recovery_1GiB_64KiB_batches")
        shutil.rmtree(tmp / "data-64KiB")
        manager = _measure_append(tmp, "1MiB", _batch(1024, 1000), total // 2, results)
        manager.close()
        shutil.rmtree(tmp / "data-1MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["append_vs_raw"] = results["append_64KiB"]["append_vs_raw"]
    results["appends_per_s_10KiB"] = results["append_10KiB"]["appends_per_s"]
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
