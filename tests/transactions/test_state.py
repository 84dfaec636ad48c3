"""The transition table and the pure transitions of one transactional id's metadata."""

import pytest

from logbroker.broker.transactions import IllegalStateTransition, MAX_EPOCH, TransactionState as S, TxnMetadata
from logbroker.broker.transactions.state import VALID_PREVIOUS, is_epoch_exhausted

A = frozenset({("a", 0)})


def meta(state=S.EMPTY, epoch=4, **changes):
    base = dict(producer_epoch=epoch, last_update_ms=0)
    if state not in (S.EMPTY,):
        base.update(partitions=A, start_ms=10)
    base.update(changes)
    return TxnMetadata("t", 7, 1000, state, **base)


def test_state_names_codes_and_flags():
    assert [s.code for s in S] == list(range(8))
    assert S.from_code(7) is S.PREPARE_EPOCH_FENCE
    with pytest.raises(ValueError):
        S.from_code(8)
    assert S.from_name("CompleteCommit") is S.COMPLETE_COMMIT and S.from_name("completecommit") is None
    assert {s for s in S if s.expiration_allowed} == {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}
    assert {s for s in S if s.is_prepared} == {S.PREPARE_COMMIT, S.PREPARE_ABORT}


def test_the_transition_table_is_kafkas():
    allowed = {(prev, to) for to, prevs in VALID_PREVIOUS.items() for prev in prevs}
    assert len(allowed) == 19
    assert (S.EMPTY, S.PREPARE_ABORT) in allowed and (S.EMPTY, S.PREPARE_COMMIT) not in allowed
    assert (S.ONGOING, S.PREPARE_EPOCH_FENCE) in allowed and (S.PREPARE_EPOCH_FENCE, S.PREPARE_ABORT) in allowed
    assert not any(to is S.ONGOING for prev, to in allowed if prev.is_prepared)
    with pytest.raises(IllegalStateTransition):
        meta(S.PREPARE_COMMIT).prepare_add_partitions(A, 5, 0)
    with pytest.raises(IllegalStateTransition):
        meta(S.ONGOING).prepare_dead()
    with pytest.raises(IllegalStateTransition):
        meta(S.EMPTY).prepare_abort_or_commit(S.PREPARE_COMMIT, 2, -1, 5, True)


def test_every_transition_records_the_id_it_leaves():
    new = meta(S.EMPTY, prev_producer_id=-1).prepare_add_partitions(A, 50, 0)
    assert (new.state, new.prev_producer_id, new.start_ms, new.last_update_ms) == (S.ONGOING, 7, 50, 50)
    more = new.prepare_add_partitions(frozenset({("b", 1)}), 60, 0)
    assert more.partitions == A | {("b", 1)} and more.start_ms == 50  # the transaction keeps its start


def test_increment_epoch_kip360():
    m = meta(S.COMPLETE_COMMIT, epoch=4, last_producer_epoch=3)
    plain = m.prepare_increment_producer_epoch(2000, None, 99)
    assert (plain.state, plain.producer_epoch, plain.last_producer_epoch, plain.timeout_ms) == (S.EMPTY, 5, -1, 2000)
    assert (plain.partitions, plain.start_ms, plain.last_update_ms) == (frozenset(), -1, 99)
    assert m.prepare_increment_producer_epoch(2000, 4, 99).last_producer_epoch == 4  # current epoch
    retry = m.prepare_increment_producer_epoch(2000, 3, 99)  # last epoch: the earlier bump succeeded
    assert (retry.producer_epoch, retry.last_producer_epoch) == (4, 3)
    assert m.prepare_increment_producer_epoch(2000, 1, 99) is None  # fenced
    fresh = meta(S.EMPTY, epoch=-1)
    assert fresh.prepare_increment_producer_epoch(1000, 17, 0).producer_epoch == 0
    with pytest.raises(IllegalStateTransition):
        meta(S.EMPTY, epoch=MAX_EPOCH - 1).prepare_increment_producer_epoch(1000, None, 0)


def test_rotation_and_exhaustion():
    assert not is_epoch_exhausted(MAX_EPOCH - 2) and is_epoch_exhausted(MAX_EPOCH - 1)
    m = meta(S.COMPLETE_ABORT, epoch=MAX_EPOCH - 1)
    new = m.prepare_producer_id_rotation(99, 1000, 5, record_last_epoch=True)
    assert (new.producer_id, new.prev_producer_id, new.producer_epoch, new.last_producer_epoch) == (
        99, 7, 0, MAX_EPOCH - 1)
    assert m.prepare_producer_id_rotation(99, 1000, 5, record_last_epoch=False).last_producer_epoch == -1
    with pytest.raises(IllegalStateTransition):
        meta(S.ONGOING).prepare_producer_id_rotation(99, 1000, 5, True)


def test_fence_bumps_once_and_never_past_max():
    assert meta(S.ONGOING, epoch=4).prepare_fence_producer_epoch().producer_epoch == 5
    assert meta(S.ONGOING, epoch=MAX_EPOCH).prepare_fence_producer_epoch().producer_epoch == MAX_EPOCH
    with pytest.raises(IllegalStateTransition):
        meta(S.COMPLETE_COMMIT).prepare_fence_producer_epoch()


def test_end_tv1_keeps_the_epoch_tv2_bumps_it():
    m = meta(S.ONGOING, epoch=4, last_producer_epoch=2)
    v1 = m.prepare_abort_or_commit(S.PREPARE_COMMIT, 0, -1, 70, False)
    assert (v1.producer_epoch, v1.last_producer_epoch, v1.start_ms, v1.client_version) == (4, 2, 10, 0)
    v2 = m.prepare_abort_or_commit(S.PREPARE_COMMIT, 2, -1, 70, False)
    assert (v2.producer_epoch, v2.last_producer_epoch, v2.client_version) == (5, 4, 2)
    empty_abort = meta(S.EMPTY).prepare_abort_or_commit(S.PREPARE_ABORT, 2, -1, 70, True)
    assert empty_abort.start_ms == 70
    at_max = meta(S.ONGOING, epoch=MAX_EPOCH).prepare_abort_or_commit(S.PREPARE_ABORT, 2, -1, 70, False)
    assert at_max.producer_epoch == MAX_EPOCH
    with pytest.raises(IllegalStateTransition):
        meta(S.ONGOING, epoch=MAX_EPOCH).prepare_abort_or_commit(S.PREPARE_COMMIT, 2, -1, 70, False)


def test_complete_switches_to_the_next_id_only_under_tv2():
    prepared = meta(S.ONGOING, epoch=MAX_EPOCH - 1).prepare_abort_or_commit(S.PREPARE_COMMIT, 2, 99, 70, False)
    assert (prepared.producer_epoch, prepared.next_producer_id) == (MAX_EPOCH, 99)
    done = prepared.prepare_complete(80)
    assert (done.state, done.producer_id, done.prev_producer_id, done.producer_epoch) == (S.COMPLETE_COMMIT, 99, 7, 0)
    assert (done.last_producer_epoch, done.next_producer_id, done.partitions) == (MAX_EPOCH - 1, -1, frozenset())
    assert done.start_ms == 10 and done.last_update_ms == 80
    v1 = meta(S.ONGOING).prepare_abort_or_commit(S.PREPARE_ABORT, 0, -1, 70, False).prepare_complete(80)
    assert (v1.state, v1.producer_id, v1.producer_epoch) == (S.COMPLETE_ABORT, 7, 4)
