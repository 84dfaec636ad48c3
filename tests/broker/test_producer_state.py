"""Idempotent producer rules (Kafka's ProducerAppendInfo), without sockets."""

import pytest

from logbroker.broker.producer_state import (
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    PartitionProducerState,
)
from logbroker.records import BatchBuilder, parse_header


def _header(pid=7, epoch=0, seq=0, count=3):
    b = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    for i in range(count):
        b.append(b"v%d" % i, timestamp_ms=1000 + i)
    return parse_header(b.build())


def test_sequences_must_follow_on():
    state = PartitionProducerState()
    first = _header(seq=0, count=3)
    assert state.check(first) is None
    state.update(first, base_offset=10, timestamp=1002)
    assert state.check(_header(seq=3)) is None
    with pytest.raises(OutOfOrderSequenceError):
        state.check(_header(seq=5))


def test_retried_batch_gets_its_original_offset():
    state = PartitionProducerState()
    h = _header(seq=0, count=3)
    state.update(h, base_offset=42, timestamp=1)
    dup = state.check(_header(seq=0, count=3))
    assert dup is not None and dup.base_offset == 42


def test_only_last_five_batches_are_remembered():
    state = PartitionProducerState()
    for i in range(7):
        state.update(_header(seq=i * 2, count=2), base_offset=i * 2, timestamp=0)
    assert state.check(_header(seq=12, count=2)) is not None  # batch 6, kept
    with pytest.raises(OutOfOrderSequenceError):
        state.check(_header(seq=0, count=2))  # batch 0, forgotten: out of order


def test_stale_epoch_is_fenced_and_new_epoch_restarts_at_zero():
    state = PartitionProducerState()
    state.update(_header(epoch=2, seq=0), base_offset=0, timestamp=0)
    with pytest.raises(InvalidProducerEpochError):
        state.check(_header(epoch=1, seq=3))
    with pytest.raises(OutOfOrderSequenceError):
        state.check(_header(epoch=3, seq=3))
    assert state.check(_header(epoch=3, seq=0)) is None


def test_unknown_producer_may_start_anywhere():
    assert PartitionProducerState().check(_header(seq=1000)) is None


def test_sequence_wraps_past_int32_max():
    state = PartitionProducerState()
    state.update(_header(seq=2**31 - 2, count=2), base_offset=0, timestamp=0)
    assert state.check(_header(seq=0, count=1)) is None


def test_snapshot_round_trip(tmp_path):
    state = PartitionProducerState()
    state.update(_header(seq=0, count=3), base_offset=5, timestamp=9)
    state.save(str(tmp_path), log_end_offset=8)
    loaded, covered = PartitionProducerState.load(str(tmp_path))
    assert covered == 8
    assert loaded.check(_header(seq=0, count=3)).base_offset == 5
    (tmp_path / "producer-state.json").write_text("{not json")
    assert PartitionProducerState.load(str(tmp_path)) is None
