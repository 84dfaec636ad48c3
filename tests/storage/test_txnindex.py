"""The aborted-transaction index (.txnindex): layout, lookups, pruning with
segments, truncation, torn tails; and retention stopping at the limit the
broker sets (the last stable offset)."""

from __future__ import annotations

import struct

from logbroker.storage import AbortedTxn, LogConfig, TxnIndexes

from .conftest import make_batch


def test_entries_are_kafkas_34_byte_layout(tmp_path):
    index = TxnIndexes(tmp_path)
    index.append(0, AbortedTxn(7, 3, 9, 10))
    data = (tmp_path / "00000000000000000000.txnindex").read_bytes()
    assert data == struct.pack(">hqqqq", 0, 7, 3, 9, 10) and len(data) == 34
    index.append(0, AbortedTxn(8, 11, 12, 13))
    reopened = TxnIndexes(tmp_path)
    assert [e for _, e in reopened.entries()] == [AbortedTxn(7, 3, 9, 10), AbortedTxn(8, 11, 12, 13)]


def test_overlapping_finds_ranges_that_touch_the_fetch(tmp_path):
    index = TxnIndexes(tmp_path)
    index.append(0, AbortedTxn(1, 0, 4, 5))
    index.append(10, AbortedTxn(2, 8, 12, 13))
    index.append(10, AbortedTxn(3, 20, 25, 26))
    assert [e.producer_id for e in index.overlapping(5, 20)] == [2]
    assert [e.producer_id for e in index.overlapping(4, 100)] == [1, 2, 3]
    assert index.overlapping(26, 100) == []


def test_prune_follows_segments_and_the_log_end(tmp_path):
    index = TxnIndexes(tmp_path)
    index.append(0, AbortedTxn(1, 0, 4, 5))
    index.append(10, AbortedTxn(2, 10, 14, 15))
    index.append(10, AbortedTxn(3, 16, 18, 19))
    index.prune([10], log_end=17)  # segment 0 deleted, the log cut back to 17
    assert not (tmp_path / "00000000000000000000.txnindex").exists()
    assert [e.producer_id for _, e in TxnIndexes(tmp_path).entries()] == [2]


def test_replace_from_rewrites_only_what_changed(tmp_path):
    index = TxnIndexes(tmp_path)
    index.append(0, AbortedTxn(1, 0, 4, 5))
    assert index.replace_from(0, [(0, AbortedTxn(1, 0, 4, 5))]) is False
    assert index.replace_from(5, [(0, AbortedTxn(9, 6, 7, 8))]) is True  # keeps what ends below 5
    assert [e.producer_id for _, e in TxnIndexes(tmp_path).entries()] == [1, 9]


def test_a_torn_entry_is_cut(tmp_path):
    index = TxnIndexes(tmp_path)
    index.append(0, AbortedTxn(1, 0, 4, 5))
    path = tmp_path / "00000000000000000000.txnindex"
    path.write_bytes(path.read_bytes() + b"\x00" * 20)
    assert [e.producer_id for _, e in TxnIndexes(tmp_path).entries()] == [1]
    assert len(path.read_bytes()) == 34


def test_partition_log_deletes_the_index_with_its_segment(open_log):
    log = open_log(LogConfig(segment_bytes=1000, retention_bytes=1, retention_ms=-1))
    for _ in range(10):
        log.append(make_batch(value_size=300), now_ms=0)
    first = log.segments[0].base_offset
    log.txn_index.append(first, AbortedTxn(1, 0, 0, 1))
    assert (log.directory / f"{first:020d}.txnindex").exists()
    assert log.apply_retention(now_ms=0) > 0
    assert not (log.directory / f"{first:020d}.txnindex").exists()


def test_retention_stops_at_the_limit(open_log):
    log = open_log(LogConfig(segment_bytes=1000, retention_bytes=1, retention_ms=-1))
    for _ in range(10):
        log.append(make_batch(value_size=300), now_ms=0)
    bases = [s.base_offset for s in log.segments]
    log.retention_limit = bases[2]  # an open transaction starts in the third segment
    log.apply_retention(now_ms=0)
    assert log.segments[0].base_offset == bases[2]
    log.retention_limit = None
    log.apply_retention(now_ms=0)
    assert log.segments[0].base_offset == bases[-1]
