"""Damage loses no more than it touches: recovery and repair cut out damaged batches
and keep every intact later batch and segment at its offsets; a read that meets a
damaged batch raises CorruptSegmentError (logged once) and never serves it."""

from __future__ import annotations

import logging
import os
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from logbroker.errors import CorruptBatchError, CorruptSegmentError, LogDirLockedError
from logbroker.records import decode_batches, iter_batches
from logbroker.storage import LogConfig, LogManager, LogManagerConfig, PartitionLog, repair_data_dir
from logbroker.storage.damage import scan_batches

from .conftest import make_batch

TOPIC = "t"
CONFIG = {"segment.bytes": "2400", "index.interval.bytes": "200"}


def _value(i: int) -> bytes:
    return b"value-%05d-" % i + bytes([97 + i % 26]) * (20 + i % 30)


def _build(data_dir) -> dict[int, bytes]:
    """A topic of one partition with 10+ segments of 3-record batches, closed cleanly."""
    with LogManager(data_dir, LogManagerConfig()) as manager:
        manager.create_topic(TOPIC, 1, CONFIG)
        log = manager.get_partition(TOPIC, 0)
        values = {}
        for b in range(150):
            records = [(None, _value(3 * b + i), (), 1_000 + b) for i in range(3)]
            from logbroker.records import build_batch

            info = log.append(build_batch(records), now_ms=0)
            for i in range(3):
                values[info.base_offset + i] = _value(3 * b + i)
        assert len(log.segments) >= 10
    return values


def _pdir(data_dir):
    return data_dir / f"{TOPIC}-0"


def _logs(data_dir):
    return sorted(_pdir(data_dir).glob("*.log"))


def _batches(path):
    data = path.read_bytes()
    return [(pos, h.size, h.base_offset, h.last_offset) for pos, h in iter_batches(data)]


def _flip_middle_batch(data_dir) -> set[int]:
    log = _logs(data_dir)[4]
    pos, size, base, last = _batches(log)[3]
    with open(log, "r+b") as fh:
        fh.seek(pos + size - 9)
        byte = fh.read(1)
        fh.seek(pos + size - 9)
        fh.write(bytes([byte[0] ^ 0x5A]))
    return set(range(base, last + 1))


def _scribble_44_bytes(data_dir) -> set[int]:
    """44 random bytes across the end of one batch and the header of the next."""
    log = _logs(data_dir)[5]
    found = _batches(log)
    pos, size, base, _ = found[2]
    _, _, _, last = found[3]
    with open(log, "r+b") as fh:
        fh.seek(pos + size - 20)
        fh.write(random.Random(7).randbytes(44))
    return set(range(base, last + 1))


def _cut_sealed_segment(data_dir) -> set[int]:
    logs = _logs(data_dir)
    log = logs[3]
    pos, size, base, _ = _batches(log)[4]
    os.truncate(log, pos + size // 2)
    return set(range(base, int(logs[4].stem)))  # that segment's tail


DAMAGE = [_flip_middle_batch, _scribble_44_bytes, _cut_sealed_segment]


def _read_all(log: PartitionLog) -> dict[int, bytes]:
    """Every record from the log start by following fetches (as a consumer does)."""
    out, offset = {}, log.log_start_offset
    while offset < log.log_end_offset:
        records = log.read(offset, 1000).records
        for batch in decode_batches(records):
            for record in batch.records:
                if record.offset >= offset:
                    out[record.offset] = record.value
            offset = batch.header.last_offset + 1
    return out


def _assert_only_lost(manager: LogManager, values: dict[int, bytes], lost: set[int]) -> None:
    log = manager.get_partition(TOPIC, 0)
    served = _read_all(log)
    assert served == {o: v for o, v in values.items() if o not in lost}
    for offset in sorted(values)[::7]:  # random access through the index
        if offset in lost:
            continue
        [batch, *_] = decode_batches(log.read(offset, 1).records)
        assert values[offset] in [r.value for r in batch.records if r.offset == offset]
    assert log.append(make_batch(), now_ms=0).base_offset == max(values) + 1


@pytest.mark.parametrize("damage", DAMAGE, ids=[f.__name__.strip("_") for f in DAMAGE])
def test_crash_style_start_loses_only_what_the_damage_touched(tmp_path, damage, caplog):
    data = tmp_path / "data"
    values = _build(data)
    segments = len(_logs(data))
    lost = damage(data)
    # A crash before any checkpoint: no clean-shutdown marker, every segment is rescanned.
    (data / "clean-shutdown").unlink()
    (data / "recovery-point-offset-checkpoint").unlink()
    with caplog.at_level(logging.WARNING, logger="logbroker.storage"):
        with LogManager(data, LogManagerConfig()) as manager:
            report = manager.get_partition(TOPIC, 0).recovery_report
            assert report.deleted_segments == () and len(_logs(data)) == segments
            assert {o for r in report.lost for o in range(r.first_offset, r.next_offset)} == lost
            _assert_only_lost(manager, values, lost)
    assert any(f"offsets {min(lost)}-{max(lost)}" in m for m in caplog.messages), caplog.messages


@pytest.mark.parametrize("damage", DAMAGE, ids=[f.__name__.strip("_") for f in DAMAGE])
def test_clean_start_then_repair_loses_only_what_the_damage_touched(tmp_path, damage):
    data = tmp_path / "data"
    values = _build(data)
    lost = damage(data)
    before = {p.name: p.read_bytes() for p in _pdir(data).iterdir()}
    dry = repair_data_dir(data, dry_run=True)
    assert {p.name: p.read_bytes() for p in _pdir(data).iterdir()} == before  # a dry run changes nothing
    [part] = dry.partitions
    assert (part.topic, part.partition, part.records) == (TOPIC, 0, len(lost))
    done = repair_data_dir(data)
    assert done.partitions == dry.partitions and not done.dry_run
    assert repair_data_dir(data, dry_run=True).partitions == ()  # nothing left to repair
    assert (data / "clean-shutdown").exists()  # the next start still skips the scan
    with LogManager(data, LogManagerConfig()) as manager:
        assert manager.get_partition(TOPIC, 0).recovery_report.scanned_segments == 0
        _assert_only_lost(manager, values, lost)


def test_a_read_reports_a_damaged_batch_once_and_never_serves_it(tmp_path, caplog):
    data = tmp_path / "data"
    values = _build(data)
    lost = _flip_middle_batch(data)
    first, last = min(lost), max(lost)
    with LogManager(data, LogManagerConfig()) as manager:  # clean start: nothing scanned
        log = manager.get_partition(TOPIC, 0)
        assert log.damaged == ()
        with caplog.at_level(logging.ERROR, logger="logbroker.storage"):
            for _ in range(5):
                with pytest.raises(CorruptSegmentError, match=f"offsets {first}-{last}") as raised:
                    log.read(first + 1, 10_000)
                assert isinstance(raised.value, CorruptBatchError)  # answered CORRUPT_MESSAGE
            # A read from before the damage stops in front of it.
            served = [r.offset for b in decode_batches(log.read(first - 3, 10_000).records) for r in b.records]
            assert served and max(served) == first - 1
        errors = [m for m in caplog.messages if "damaged batch" in m]
        assert len(errors) == 1 and f"offsets {first}-{last}" in errors[0] and "logbroker repair" in errors[0]
        [damaged] = log.damaged
        assert (damaged.first_offset, damaged.last_offset) == (first, last)
        assert damaged.path == str(_logs(data)[4]) and damaged.position == _batches(_logs(data)[4])[3][0]
        # Everything after it is still served.
        assert decode_batches(log.read(last + 1, 1).records).__next__().records[0].value == values[last + 1]


def test_a_read_meeting_a_broken_batch_chain_raises(tmp_path, caplog):
    data = tmp_path / "data"
    _build(data)
    log_file = _logs(data)[6]
    index = log_file.with_suffix(".index").read_bytes()
    indexed = {int.from_bytes(index[i + 4 : i + 8], "big") for i in range(0, len(index), 8)}
    # A batch that no index entry points at, before the last entry (a clean open checks
    # the indexed headers and the batches after the last entry, and would recover it).
    pos, _, base, last = next(b for b in _batches(log_file) if b[0] not in indexed and 0 < b[0] < max(indexed))
    with open(log_file, "r+b") as fh:  # the header's length and magic: the chain breaks here
        fh.seek(pos + 8)
        fh.write(b"\xff" * 12)
    with LogManager(data, LogManagerConfig()) as manager:
        log = manager.get_partition(TOPIC, 0)
        with caplog.at_level(logging.ERROR, logger="logbroker.storage"):
            for _ in range(3):
                with pytest.raises(CorruptSegmentError, match=f"byte {pos} "):
                    log.read(base, 10_000)
        assert len([m for m in caplog.messages if "damaged batch" in m]) == 1
        [damaged] = log.damaged
        assert (damaged.position, damaged.first_offset) == (pos, base)


def test_repair_refuses_while_a_broker_holds_the_directory(tmp_path):
    data = tmp_path / "data"
    _build(data)
    with LogManager(data, LogManagerConfig()):
        with pytest.raises(LogDirLockedError, match="in use"):
            repair_data_dir(data, dry_run=True)


def test_a_torn_tail_is_bounded_by_the_clean_log_end(tmp_path):
    data = tmp_path / "data"
    values = _build(data)
    last_log = _logs(data)[-1]
    pos, size, base, _ = _batches(last_log)[-2]
    os.truncate(last_log, pos + size - 1)
    [part] = repair_data_dir(data).partitions
    [lost] = part.lost
    assert (lost.first_offset, lost.next_offset, lost.position) == (base, max(values) + 1, pos)


def test_an_interrupted_rewrite_leaves_the_log_intact(tmp_path):
    path = tmp_path / "p"
    log = PartitionLog(path, LogConfig())
    for _ in range(3):
        log.append(make_batch(records=2), now_ms=0)
    log.close()
    leftover = path / f"{0:020d}.log.repairing"
    leftover.write_bytes(b"half a rewrite")
    again = PartitionLog(path, LogConfig(), recovery_point=0)
    assert not leftover.exists() and leftover.name in again.recovery_report.removed_files
    assert again.log_end_offset == 6
    again.close()


# ------------------------------------------------------------------ property


def _segment(sizes: list[int]) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Batches numbered from 100 back to back: the bytes and (position, size, base, last)."""
    out, spans, offset = bytearray(), [], 100
    for records, value_size in sizes:
        batch = bytearray(make_batch(records=records, value_size=value_size))
        batch[0:8] = offset.to_bytes(8, "big")
        spans.append((len(out), len(batch), offset, offset + records - 1))
        out += batch
        offset += records
    return bytes(out), spans


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 300)), min_size=1, max_size=25),
    where=st.floats(0, 1, exclude_max=True),
    length=st.integers(1, 120),
    noise=st.binary(min_size=120, max_size=120),
    cut=st.booleans(),
)
def test_scan_keeps_every_batch_the_damage_did_not_touch(sizes, where, length, noise, cut):
    data, spans = _segment(sizes)
    start = int(where * len(data))
    stop = min(len(data), start + length)
    damaged = bytearray(data)
    if cut:
        del damaged[start:]
        stop = len(data)
    else:
        damaged[start:stop] = noise[: stop - start]
    # A base offset raised by the damage passes (it is outside the CRC) and hides the
    # batches after it; that case is not this property's (see the module's docstring).
    assume(not any(pos + 8 <= len(damaged) and damaged[pos : pos + 8] > data[pos : pos + 8]
                   for pos, _, _, _ in spans))
    scan = scan_batches(memoryview(bytes(damaged)), len(damaged), 100)
    kept = {(s[2], s[3]) for s in spans}
    spared = [s for s in spans if s[0] + s[1] <= start or s[0] >= stop]
    found = []
    for lo, hi in scan.kept:
        found += [(h.base_offset, h.last_offset, bytes(damaged[lo + p : lo + p + h.size]))
                  for p, h in iter_batches(bytes(damaged[lo:hi]))]
    assert {(b, l) for b, l, _ in found} <= kept  # nothing invented
    for pos, size, base, last in spared:  # untouched batches stay, byte for byte
        assert (base, last, data[pos : pos + size]) in found
    lost = {o for r in scan.lost for o in range(r.first_offset, r.next_offset if r.next_offset else 10**6)}
    for _, _, base, last in spared:
        assert not lost & set(range(base, last + 1))
    assert scan.kept_bytes + sum(r.end - r.position for r in scan.lost) == len(damaged)
