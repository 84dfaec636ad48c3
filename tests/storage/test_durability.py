"""Group commit, crash recovery (SIGKILL mid-append) and full-disk behaviour."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from logbroker.errors import StorageError
from logbroker.records import decode_batches
from logbroker.storage import LogConfig, LogManager, PartitionLog

from .conftest import batch_spans, make_batch

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_concurrent_flushes_share_fsyncs(tmp_path, monkeypatch):
    log = PartitionLog(tmp_path / "p", LogConfig())
    calls = []
    real = os.fsync

    def slow_fsync(fd):
        calls.append(fd)
        time.sleep(0.02)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    n = 24
    threads = []
    for _ in range(n):  # the owner appends; each append gets a flushing worker, as the broker does
        info = log.append(make_batch(records=2), now_ms=0)
        t = threading.Thread(target=log.flush, args=(info.last_offset + 1,))
        t.start()
        threads.append(t)
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert log.recovery_point == log.log_end_offset == 2 * n
    assert 1 <= len(calls) < n / 3, f"{len(calls)} fsyncs for {n} flushes"
    assert log.fsyncs == len(calls)
    log.close(flush=False)


def test_flush_covers_rolled_segments_and_directory(tmp_path, monkeypatch):
    log = PartitionLog(tmp_path / "p", LogConfig(segment_bytes=1000))
    for _ in range(10):
        log.append(make_batch(value_size=300), now_ms=0)
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    log.flush()
    names = {Path(p).name for p in synced}
    for seg in log.segments[:-1]:
        assert {seg.path.name, seg.path.with_suffix(".index").name, seg.path.with_suffix(".timeindex").name} <= names
    assert log.segments[-1].path.name in names
    assert "p" in names  # the directory, for the new segment files
    synced.clear()
    log.flush()
    assert synced == []  # nothing new: no fsync
    log.close(flush=False)


def _check_log(data_dir: Path, acked: int) -> int:
    with LogManager(data_dir) as manager:
        log = manager.get_partition("t", 0)
        end = log.log_end_offset
        assert end >= acked, f"lost fsynced data: log end {end} < acknowledged {acked}"
        offset = 0
        while offset < end:
            records = log.read(offset, 1 << 20).records
            for batch in decode_batches(records):  # checks CRCs
                for record in batch.records:
                    assert record.offset == offset
                    assert record.value.startswith(b"%d:" % offset)
                    offset += 1
        return end


def test_sigkill_mid_append_keeps_everything_fsynced(tmp_path):
    data_dir = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    iterations = 0
    total_acked = 0
    rng = random.Random(1234)
    while iterations < 25 and time.monotonic() - started < 15:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_crash_writer.py"), str(data_dir), str(iterations)],
            stdout=subprocess.PIPE,
            env=env,
        )
        acked = 0
        deadline = time.monotonic() + rng.uniform(0.05, 0.3)
        first = proc.stdout.readline()  # wait for the writer to be running
        assert first, "writer died before appending"
        acked = int(first)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # lines already reported count as acknowledged
        proc.wait()
        for line in rest.split():
            acked = max(acked, int(line))
        end = _check_log(data_dir, acked)
        total_acked = max(total_acked, acked)
        assert end >= total_acked
        iterations += 1
    assert iterations >= 10


_FSIZE_CHILD = r"""
import json, resource, signal, sys
from logbroker.errors import StorageError
from logbroker.records import build_batch, iter_batches
from logbroker.storage import LogConfig, PartitionLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
log = PartitionLog(sys.argv[1], LogConfig(segment_bytes=10_000_000))
batch = build_batch([(None, b"x" * 1000, (), 5)] * 7)
appended, error = 0, None
while True:
    try:
        log.append(batch, now_ms=0)
        appended += 1
    except StorageError as exc:
        error = str(exc)
        break
segment = log.segments[-1]
again = None
try:
    log.append(batch, now_ms=0)
except StorageError:
    again = "refused again"
spans = [(h.base_offset, h.last_offset) for _, h in iter_batches(log.read(0, 1 << 30).records)]
print(json.dumps({"appended": appended, "error": error, "end": log.log_end_offset,
                  "size": segment.size_bytes, "file": __import__("os").path.getsize(segment.path),
                  "batches": len(spans), "again": again}))
"""


def test_file_size_limit_raises_storage_error_and_log_stays_consistent(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _FSIZE_CHILD, str(tmp_path / "p")], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert "File too large" in result["error"] or "EFBIG" in result["error"]
    assert result["again"] == "refused again"
    assert result["file"] == result["size"]  # the partial write was cut back
    assert result["end"] == 7 * result["appended"] == 7 * result["batches"]
    log = PartitionLog(tmp_path / "p", LogConfig(segment_bytes=10_000_000))
    assert log.recovery_report.truncated_bytes == 0 and log.log_end_offset == result["end"]
    log.close()


def test_enospc_partial_write_is_cut_back(tmp_path, monkeypatch):
    log = PartitionLog(tmp_path / "p", LogConfig())
    log.append(make_batch(), now_ms=0)
    before = log.size_bytes
    real = os.pwritev

    def half_then_enospc(fd, buffers, pos):
        data = b"".join(bytes(b) for b in buffers)
        os.pwrite(fd, data[: len(data) // 2], pos)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwritev", half_then_enospc)
    with pytest.raises(StorageError, match="No space left"):
        log.append(make_batch(records=3, value_size=500), now_ms=0)
    assert os.path.getsize(log.segments[-1].path) == before == log.size_bytes
    assert log.log_end_offset == 1
    monkeypatch.setattr(os, "pwritev", real)
    assert log.append(make_batch(), now_ms=0).base_offset == 1
    assert batch_spans(log.read(0, 1 << 20).records) == [(0, 0), (1, 1)]
    log.close()


def test_real_enospc_on_a_small_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        log = PartitionLog(mount / "p", LogConfig(segment_bytes=300_000, index_interval_bytes=4096))
        batch = make_batch(records=10, value_size=1000)
        errors = 0
        for _ in range(200):
            try:
                log.append(batch, now_ms=0)
            except StorageError:
                errors += 1
                if errors > 3:
                    break
        assert errors, "the disk never filled up"
        end = log.log_end_offset
        spans = []
        for seg in log.segments:
            assert os.path.getsize(seg.path) == seg.size_bytes
        offset = log.log_start_offset
        while offset < end:
            got = batch_spans(log.read(offset, 1 << 20).records)
            spans += got
            offset = got[-1][1] + 1
        assert offset == end and len(spans) * 10 == end
        log.close(flush=False)
        again = PartitionLog(mount / "p", LogConfig(segment_bytes=300_000))
        assert again.log_end_offset == end and again.recovery_report.truncated_bytes == 0
        again.close(flush=False)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
