"""Log compaction: latest record per key, offsets kept, tombstones, crash-safe swap."""

from __future__ import annotations

import math
import os
import random

from logbroker.records import BatchBuilder, Compression, build_batch, decode_batches, iter_batches, parse_header
from logbroker.records.control import marker_key, marker_value
from logbroker.storage import AbortedTxn, LogConfig, LogSegment, PartitionLog
from logbroker.storage.cleaner import (
    build_cleaned,
    clean_partition,
    plan_cleaning,
    swap_cleaned,
)
from logbroker.storage.files import segment_name
from logbroker.storage.swap import CLEANED_SUFFIX, LEGACY_CLEANING_DIR, SWAP_SUFFIX

NOW = 1_700_000_000_000
HOUR = 3600 * 1000
DAY = 24 * HOUR


def _config(**extra) -> LogConfig:
    configs = {"cleanup.policy": "compact", "segment.bytes": "65536", "index.interval.bytes": "1024"}
    configs.update(extra)
    return LogConfig.from_topic_configs(configs)


def _all_records(plog: PartitionLog):
    out, offset = [], plog.log_start_offset
    while offset < plog.log_end_offset:
        batches = list(decode_batches(bytes(plog.read(offset, 1 << 20).records)))
        if not batches:
            break
        out += [r for b in batches for r in b.records if r.offset >= offset]
        # As consumers do: continue after the batch's last offset (compaction leaves gaps).
        offset = batches[-1].header.last_offset + 1
    return out


def _changelog(plog, updates, keys, *, per_batch=100, ts=NOW - DAY, codec=Compression.NONE, seed=7):
    rng = random.Random(seed)
    latest = {}
    offset = plog.log_end_offset
    for start in range(0, updates, per_batch):
        rows = []
        for _ in range(per_batch):
            key = b"key-%d" % rng.randrange(keys)
            value = b"value-%d" % offset
            rows.append((key, value, (), ts))
            latest[key] = (offset, value)
            offset += 1
        plog.append(build_batch(rows, compression=codec), NOW)
    return latest


def test_changelog_compacts_to_the_last_value_per_key(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config())
    latest = _changelog(plog, 100_000, 1_000)
    plog.roll()  # everything sealed: all of it is cleanable
    end = plog.log_end_offset
    result = clean_partition(plog, NOW)
    assert result is not None and result.records_after == len(latest) == 1_000
    records = _all_records(plog)
    assert {r.key: (r.offset, r.value) for r in records} == latest
    assert len(records) == 1_000, "one record per key"
    assert plog.log_end_offset == end, "the log end does not move"
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    # Reopening (index sanity checks included) gives the same log.
    plog.close()
    again = PartitionLog(tmp_path / "p", _config(), clean_shutdown=True)
    assert {r.key: r.value for r in _all_records(again)} == {k: v for k, (_, v) in latest.items()}
    again.close()


def test_every_kept_offset_is_readable_by_offset(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config())
    latest = _changelog(plog, 5_000, 50, codec=Compression.LZ4)
    plog.roll()
    clean_partition(plog, NOW)
    for offset, value in latest.values():
        view = plog.read(offset, 1).records
        found = [r for b in decode_batches(bytes(view)) for r in b.records if r.offset == offset]
        assert found and found[0].value == value
    plog.close()


def test_batches_keep_their_offsets_and_producer_fields(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config())
    rows = [(b"a", b"1", (), NOW - DAY), (b"b", b"2", (), NOW - DAY), (b"a", b"3", (), NOW - DAY)]
    plog.append(build_batch(rows, producer_id=9, producer_epoch=2, base_sequence=40), NOW)
    plog.roll()
    clean_partition(plog, NOW, force=True)
    [batch] = list(decode_batches(bytes(plog.read(0, 1 << 20).records)))
    assert [(r.offset, r.key) for r in batch.records] == [(1, b"b"), (2, b"a")]
    h = batch.header
    assert (h.base_offset, h.last_offset_delta, h.producer_id, h.producer_epoch, h.base_sequence) == (0, 2, 9, 2, 40)
    plog.close()


def test_tombstones_live_for_delete_retention(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config(**{"delete.retention.ms": str(DAY)}))
    plog.append(build_batch([(b"gone", b"v", (), NOW - 3 * DAY)]), NOW)
    plog.append(build_batch([(b"gone", None, (), NOW - 2 * DAY)]), NOW)
    plog.roll()
    clean_partition(plog, NOW - DAY - DAY // 2, force=True)  # tombstone younger than a day
    assert [(r.key, r.value) for r in _all_records(plog)] == [(b"gone", None)]
    clean_partition(plog, NOW, force=True)  # now older than delete.retention.ms
    assert _all_records(plog) == []
    plog.close()


def test_young_segments_wait_for_the_compaction_lag(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config(**{"min.compaction.lag.ms": str(DAY)}))
    _changelog(plog, 500, 5, ts=NOW - 1000)
    plog.roll()
    assert plan_cleaning(plog, NOW, force=True) is None
    assert plan_cleaning(plog, NOW + DAY, force=True) is not None
    plog.close()


def test_dirty_ratio_gates_cleaning(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config(**{"min.cleanable.dirty.ratio": "0.5"}))
    _changelog(plog, 2_000, 10)
    plog.roll()
    assert clean_partition(plog, NOW) is not None
    assert plan_cleaning(plog, NOW) is None, "nothing new since the last cleaning"
    plog.close()


def test_delete_only_topics_are_never_compacted(tmp_path):
    plog = PartitionLog(tmp_path / "p", LogConfig(segment_bytes=65536))
    _changelog(plog, 500, 5)
    plog.roll()
    assert plan_cleaning(plog, NOW, force=True) is None
    plog.close()


def test_a_reader_mid_compaction_keeps_a_consistent_view(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config())
    _changelog(plog, 3_000, 10)
    plog.roll()
    before = plog.read(0, 1 << 20).records  # a fetch in flight
    old = [r.offset for b in decode_batches(bytes(before)) for r in b.records]
    plan = plan_cleaning(plog, NOW)
    result = build_cleaned(plan)
    assert swap_cleaned(plog, result)
    assert [r.offset for b in decode_batches(bytes(before)) for r in b.records] == old
    assert len(_all_records(plog)) == 10
    plog.close()


def test_new_appends_during_cleaning_are_kept(tmp_path):
    plog = PartitionLog(tmp_path / "p", _config())
    _changelog(plog, 2_000, 10)
    plog.roll()
    plan = plan_cleaning(plog, NOW)
    result = build_cleaned(plan)
    plog.append(build_batch([(b"key-1", b"newest", (), NOW)]), NOW)
    assert swap_cleaned(plog, result)
    records = _all_records(plog)
    assert records[-1].value == b"newest"
    assert len(records) == 11
    plog.close()


def test_crash_after_the_swap_commit_completes_the_swap(tmp_path):
    directory = tmp_path / "p"
    plog = PartitionLog(directory, _config())
    latest = _changelog(plog, 3_000, 10)
    plog.roll()
    result = build_cleaned(plan_cleaning(plog, NOW))
    base = result.rewritten[0]
    for fresh in result.cleaned:
        fresh.rename_files(SWAP_SUFFIX)  # committed...
    # ...and the process dies here: the .swap files sit next to the old segments.
    reopened = PartitionLog(directory, _config(), clean_shutdown=False)
    assert not [p for p in os.listdir(directory) if p.endswith((SWAP_SUFFIX, CLEANED_SUFFIX))]
    assert (directory / (segment_name(base) + ".log")).stat().st_size == result.cleaned[0].size
    got = {r.key: r.value for r in _all_records(reopened)}
    assert got == {k: v for k, (_, v) in latest.items()}
    for offset, value in latest.values():
        view = reopened.read(offset, 1).records
        assert any(r.offset == offset for b in decode_batches(bytes(view)) for r in b.records)
    reopened.close()


def test_crash_before_the_swap_commit_keeps_the_old_segments(tmp_path):
    directory = tmp_path / "p"
    plog = PartitionLog(directory, _config())
    _changelog(plog, 3_000, 10)
    plog.roll()
    build_cleaned(plan_cleaning(plog, NOW))  # cleaned files written, never swapped
    assert any(p.endswith(CLEANED_SUFFIX) for p in os.listdir(directory))
    reopened = PartitionLog(directory, _config(), clean_shutdown=False)
    assert not any(p.endswith(CLEANED_SUFFIX) for p in os.listdir(directory))
    assert len(_all_records(reopened)) == 3_000
    reopened.close()


def test_a_cleaning_directory_of_an_older_version_is_finished_or_discarded(tmp_path):
    directory = tmp_path / "p"
    plog = PartitionLog(directory, _config())
    _changelog(plog, 3_000, 10)
    plog.close()
    legacy = directory / LEGACY_CLEANING_DIR
    legacy.mkdir()
    (legacy / "stray").write_bytes(b"half-built")
    reopened = PartitionLog(directory, _config(), clean_shutdown=False)
    assert not legacy.exists()
    assert not (directory / "stray").exists(), "no SWAP marker: discarded"
    assert len(_all_records(reopened)) == 3_000
    reopened.close()


def test_transactional_batches_are_kept_whole_and_supersede_nothing(tmp_path):
    """Whether a transactional record counts is decided by a later marker the
    cleaner does not read: it keeps those batches and lets them drop nothing."""
    plog = PartitionLog(tmp_path / "p", _config())
    plog.append(build_batch([(b"k", b"committed", (), NOW - DAY)]), NOW)  # offset 0
    plog.append(build_batch([(b"k", b"txn-1", (), NOW - DAY), (b"k", b"txn-2", (), NOW - DAY)],
                            producer_id=5, producer_epoch=0, base_sequence=0, transactional=True), NOW)  # 1-2
    plog.roll()
    clean_partition(plog, NOW, force=True)
    assert [(r.offset, r.value) for r in _all_records(plog)] == [(0, b"committed"), (1, b"txn-1"), (2, b"txn-2")]
    plog.close()


def _marker(producer_id: int, commit: bool, ts: int) -> bytes:
    builder = BatchBuilder(producer_id=producer_id, producer_epoch=0, base_sequence=-1, transactional=True, control=True)
    builder.append(marker_value(0), marker_key(commit), timestamp_ms=ts)
    return builder.build()


def _transaction(plog: PartitionLog, producer_id: int, key: bytes, ts: int, *, commit: bool) -> list[int]:
    """A transactional batch and its marker, with the .txnindex entry the broker
    writes for an abort; returns the offsets of both (kept whole by the cleaner)."""
    rows = [(key, b"txn-%d" % producer_id, (), ts), (key, b"txn-%d-2" % producer_id, (), ts)]
    info = plog.append(build_batch(rows, producer_id=producer_id, producer_epoch=0, base_sequence=0,
                                   transactional=True), ts)
    batch = _marker(producer_id, commit, ts)
    # Built here, so its header is trusted (a marker's base sequence is -1), as the broker does.
    marker = plog.append(batch, ts, allow_control=True, header=parse_header(batch)).base_offset
    if not commit:
        base = plog.segments[-1].base_offset
        plog.txn_index.append(base, AbortedTxn(producer_id, info.base_offset, marker, marker + 1))
    return [info.base_offset, info.last_offset, marker]


def _check_compacted(plog: PartitionLog, model, txn_offsets: list[int], entries: list[AbortedTxn], now: int) -> None:
    """The log holds the latest non-transactional record of each key (a tombstone
    only while younger than delete.retention.ms, by its batch's timestamp), every
    transactional and control record, and the aborted-transaction entries, each
    in the file of the segment holding its marker."""
    horizon = now - plog.config.delete_retention_ms
    records = _all_records(plog)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    expected = {offset: value for offset, value, ts in model.values() if value is not None or ts >= horizon}
    txn = set(txn_offsets)
    got = {r.offset: r.value for r in records if r.offset not in txn}
    assert got == expected
    assert txn <= set(offsets), "transactional batches and markers are kept whole"
    for offset in offsets:  # every kept offset is readable by offset
        assert any(r.offset == offset for b in decode_batches(bytes(plog.read(offset, 1).records)) for r in b.records)
    assert sorted(e for _, e in plog.txn_index.entries()) == sorted(entries)
    segments = plog.segments
    for base, entry in plog.txn_index.entries():
        holder = next(s for s in segments if s.base_offset <= entry.last_offset < s.next_offset)
        assert holder.base_offset == base, (base, entry)
    files = sorted(p for p in os.listdir(plog.directory) if p.endswith(".txnindex"))
    assert files == sorted(f"{b:020d}.txnindex" for b in {b for b, _ in plog.txn_index.entries()})


def test_rounds_of_appends_and_cleaning_keep_the_segment_count_bounded(tmp_path):
    """The soak's compacted topic: each round appends 1,000 records over 100 keys
    (some tombstones, one transaction) and cleans. Small cleaned segments are
    merged, so the number of segments follows the live data, not the rounds."""
    config = _config(**{"segment.bytes": "16384", "delete.retention.ms": str(DAY)})
    plog = PartitionLog(tmp_path / "p", config)
    rng = random.Random(11)
    model: dict[bytes, tuple[int, bytes | None, int]] = {}  # key -> latest (offset, value, batch timestamp)
    txn_offsets: list[int] = []
    entries: list[AbortedTxn] = []
    counts = []
    for rnd in range(30):
        now = NOW + rnd * 6 * HOUR  # tombstones expire four rounds later
        for _ in range(10):
            rows = [(b"key-%d" % rng.randrange(100), None if rng.random() < 0.05 else b"v-%d-%d" % (rnd, i), (), now)
                    for i in range(100)]
            base = plog.append(build_batch(rows), now).base_offset
            for i, (key, value, _, ts) in enumerate(rows):
                model[key] = (base + i, value, ts)
        # A transaction on a key the changelog uses too: it supersedes nothing.
        abort = rnd % 2 == 0
        txn_offsets += _transaction(plog, 1000 + rnd, b"key-%d" % rng.randrange(100), now, commit=not abort)
        if abort:
            entries.append(plog.txn_index.entries()[-1][1])
        plog.roll()
        assert clean_partition(plog, now, force=True) is not None
        _check_compacted(plog, model, txn_offsets, entries, now)
        sealed = plog.sealed_segments()
        live = sum(s.size for s in sealed)
        # Next-fit packing: any two neighbours hold more than segment.bytes.
        assert len(sealed) <= 2 * math.ceil(live / config.segment_bytes) + 1, (rnd, [s.size for s in sealed])
        counts.append(len(sealed))
    assert max(counts) <= 3, counts
    # A clean reopen and a reopen after a crash (indexes checked or rebuilt) see the same log.
    plog.close()
    again = PartitionLog(tmp_path / "p", config, clean_shutdown=True)
    _check_compacted(again, model, txn_offsets, entries, now)
    crashed = PartitionLog(tmp_path / "p", config, clean_shutdown=False)
    _check_compacted(crashed, model, txn_offsets, entries, now)
    crashed.close()
    again.close()


def test_merged_segments_keep_within_the_index_size_limit(tmp_path):
    """A merged segment needs no more offset-index entries than segment.index.bytes
    holds: every part of it stays indexed within index.interval.bytes."""
    config = _config(**{"segment.bytes": "16384", "index.interval.bytes": "256", "segment.index.bytes": "32"})
    plog = PartitionLog(tmp_path / "p", config)
    latest = _changelog(plog, 3_000, 300, per_batch=10)
    plog.roll()
    before = len(plog.sealed_segments())
    clean_partition(plog, NOW, force=True)
    sealed = plog.sealed_segments()
    assert len(sealed) < before / 2, "small segments were merged"
    assert len(sealed) > 1, "the index size limit split the groups"
    for segment in sealed:
        assert segment.offset_index.entries <= 4
        biggest = max(h.size for _, h in iter_batches(segment.view()))
        assert segment.size - segment.offset_index.last_entry()[1] <= 256 + biggest, segment
    assert {r.key: (r.offset, r.value) for r in _all_records(plog)} == latest
    plog.close()


def test_a_merged_segment_spans_no_more_than_int32_offsets(tmp_path):
    """Indexes store offsets relative to the segment's base: segments further
    apart than 2**31 - 1 offsets are never merged."""
    config = _config()
    directory = tmp_path / "p"
    plog = PartitionLog(directory, config)
    for value in (b"a", b"b"):
        plog.append(build_batch([(b"k", value, (), NOW - DAY)]), NOW)
    plog.close()
    far = 2**31 + 5
    for base, value in ((far, b"c"), (far + 1, b"d"), (far + 2, b"e")):
        segment = LogSegment.create(directory, base, config)
        batch = build_batch([(b"j", value, (), NOW - DAY)], base_offset=base)
        segment.append([batch], len(batch), base, NOW - DAY)
        segment.close()
    plog = PartitionLog(directory, config, clean_shutdown=False)
    assert [s.base_offset for s in plog.sealed_segments()] == [0, far, far + 1]
    clean_partition(plog, NOW, force=True)
    assert [s.base_offset for s in plog.sealed_segments()] == [0, far]
    assert [(r.offset, r.value) for r in _all_records(plog)] == [(1, b"b"), (far + 1, b"d"), (far + 2, b"e")]
    plog.close()
