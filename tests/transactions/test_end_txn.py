"""EndTxn under TV1 and TV2: the state tables, epoch bumps, retries, markers, completion."""

import pytest
from txn_support import begin, finish, init, set_epoch, state

from logbroker.broker.transactions import MAX_EPOCH, TransactionState as S, TxnError as E
from logbroker.errors import BatchTooLargeError, LogbrokerError, StorageError


def ended(coord, commit, *, tv=0, tid="t"):
    """A transaction of ``tid`` ended with ``commit`` and completed; (pid, epoch) to use next."""
    pid, epoch = init(coord, tid)
    begin(coord, tid, pid, epoch, tv=tv)
    result = coord.end_txn(tid, pid, epoch, commit, 10, client_version=tv)
    finish(coord, result, tid, now=11)
    return (result.producer_id, result.producer_epoch) if tv == 2 else (pid, epoch)


def test_tv1_commit_writes_prepare_then_markers_then_complete(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, now=5)
    result = coord.end_txn("t", pid, epoch, True, 10)
    assert (result.error, result.producer_id, result.producer_epoch) == (E.NONE, -1, -1)
    assert result.flush is not None
    meta = coord.transaction("t")
    assert (meta.state, meta.producer_epoch, meta.start_ms, meta.last_update_ms) == (S.PREPARE_COMMIT, 0, 5, 10)
    assert [(m.topic, m.partition, m.producer_id, m.producer_epoch, m.commit, m.transaction_version)
            for m in result.markers] == [("a", 0, pid, 0, True, 0), ("b", 1, pid, 0, True, 0)]
    assert coord.pending_markers() == result.markers
    done = coord.markers_written("t", 12)
    assert done.error is E.NONE and done.flush is not None
    meta = coord.transaction("t")
    assert (meta.state, meta.partitions, meta.producer_epoch, meta.last_update_ms) == (
        S.COMPLETE_COMMIT, frozenset(), 0, 12)
    assert coord.pending_markers() == ()


@pytest.mark.parametrize(("current", "commit", "expected"), [
    ("CompleteCommit", True, E.NONE),
    ("CompleteCommit", False, E.INVALID_TXN_STATE),
    ("CompleteAbort", False, E.NONE),
    ("CompleteAbort", True, E.INVALID_TXN_STATE),
    ("PrepareCommit", True, E.CONCURRENT_TRANSACTIONS),
    ("PrepareCommit", False, E.INVALID_TXN_STATE),
    ("PrepareAbort", False, E.CONCURRENT_TRANSACTIONS),
    ("PrepareAbort", True, E.INVALID_TXN_STATE),
    ("Empty", True, E.INVALID_TXN_STATE),
    ("Empty", False, E.INVALID_TXN_STATE),
])
def test_tv1_table(coord, current, commit, expected):
    pid, epoch = init(coord)
    if current != "Empty":
        begin(coord, "t", pid, epoch)
        coord.end_txn("t", pid, epoch, current.endswith("Commit"), 10)
        if current.startswith("Complete"):
            coord.markers_written("t", 11)
    assert state(coord) == current
    records = coord.statistics().log_records
    result = coord.end_txn("t", pid, epoch, commit, 20)
    assert (result.error, result.markers, result.flush) == (expected, (), None)
    assert state(coord) == current and coord.statistics().log_records == records


def test_tv1_producer_checks(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    assert coord.end_txn("", pid, epoch, True, 0).error is E.INVALID_REQUEST
    assert coord.end_txn("nope", pid, epoch, True, 0).error is E.INVALID_PRODUCER_ID_MAPPING
    assert coord.end_txn("t", pid + 1, epoch, True, 0).error is E.INVALID_PRODUCER_ID_MAPPING
    assert coord.end_txn("t", pid, epoch + 1, True, 0).error is E.PRODUCER_FENCED
    assert coord.end_txn("t", pid, epoch - 1, True, 0).error is E.PRODUCER_FENCED
    assert state(coord) == "Ongoing"


def test_loading(env):
    coord = env.open(0, load=False)
    assert coord.end_txn("t", 1, 0, True, 0).error is E.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.markers_written("t", 0).error is E.COORDINATOR_LOAD_IN_PROGRESS


def test_tv2_bumps_the_epoch_on_every_end(coord):
    pid, epoch = init(coord)
    for n in range(3):
        begin(coord, "t", pid, epoch, now=10 * n, tv=2)
        result = coord.end_txn("t", pid, epoch, n % 2 == 0, 10 * n + 5, client_version=2)
        assert (result.error, result.producer_id, result.producer_epoch) == (E.NONE, pid, epoch + 1)
        assert {m.producer_epoch for m in result.markers} == {epoch + 1}
        assert {m.transaction_version for m in result.markers} == {2}
        meta = coord.transaction("t")
        assert (meta.producer_epoch, meta.last_producer_epoch) == (epoch + 1, epoch)
        finish(coord, result, now=10 * n + 6)
        epoch += 1
    # The old epoch is fenced for the next transaction.
    assert coord.add_partitions("t", pid, epoch - 1, [("a", 0)], 100, client_version=2).error is E.PRODUCER_FENCED


@pytest.mark.parametrize(("current", "commit", "retry", "expected"), [
    # Kafka's TV2 table for the states a client may not know it is in.
    ("Empty", False, True, E.PRODUCER_FENCED),
    ("Empty", False, False, "bump"),
    ("Empty", True, True, E.PRODUCER_FENCED),
    ("Empty", True, False, E.INVALID_TXN_STATE),
    ("CompleteAbort", False, True, E.NONE),
    ("CompleteAbort", False, False, "bump"),
    ("CompleteAbort", True, True, E.INVALID_TXN_STATE),
    ("CompleteAbort", True, False, E.INVALID_TXN_STATE),
    ("CompleteCommit", False, True, E.INVALID_TXN_STATE),
    ("CompleteCommit", False, False, "bump"),
    ("CompleteCommit", True, True, E.NONE),
    ("CompleteCommit", True, False, E.INVALID_TXN_STATE),
])
def test_tv2_table(coord, current, commit, retry, expected):
    if current == "Empty":
        init(coord)
        pid, epoch = init(coord)  # epoch 1: epoch 0 looks like a retry
    else:
        pid, epoch = ended(coord, current == "CompleteCommit", tv=2)
    sent = epoch - 1 if retry else epoch
    assert state(coord) == current
    result = coord.end_txn("t", pid, sent, commit, 50, client_version=2)
    if expected == "bump":
        # An abort with nothing to abort: PrepareAbort and CompleteAbort written
        # at once (no partitions, no markers), the epoch bumped.
        assert (result.error, result.markers, result.producer_epoch) == (E.NONE, (), epoch + 1)
        meta = coord.transaction("t")
        assert (meta.state, meta.producer_epoch, meta.start_ms) == (S.COMPLETE_ABORT, epoch + 1, 50)
        return
    assert result.error is expected
    if expected is E.NONE:
        assert (result.producer_id, result.producer_epoch) == (pid, epoch)  # what to use next
    else:
        assert (result.producer_id, result.producer_epoch) == (-1, -1)
    assert state(coord) == current


def test_tv2_prepared_states(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, tv=2)
    result = coord.end_txn("t", pid, epoch, True, 10, client_version=2)
    # The client retries with the epoch it had; the coordinator already bumped it.
    assert coord.end_txn("t", pid, epoch, True, 11, client_version=2).error is E.CONCURRENT_TRANSACTIONS
    assert coord.end_txn("t", pid, epoch, False, 11, client_version=2).error is E.INVALID_TXN_STATE
    assert coord.end_txn("t", pid, epoch + 1, True, 11, client_version=2).error is E.PRODUCER_FENCED
    finish(coord, result, now=12)
    retried = coord.end_txn("t", pid, epoch, True, 13, client_version=2)
    assert (retried.error, retried.producer_id, retried.producer_epoch, retried.flush) == (
        E.NONE, pid, epoch + 1, None)


def test_tv2_ongoing_needs_the_current_epoch(coord):
    init(coord)
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, tv=2)
    assert coord.end_txn("t", pid, epoch - 1, True, 10, client_version=2).error is E.PRODUCER_FENCED
    assert coord.end_txn("t", pid + 1, epoch, True, 10, client_version=2).error is E.INVALID_PRODUCER_ID_MAPPING


def test_tv2_epoch_exhaustion_moves_to_a_new_producer_id(coord):
    pid, _ = init(coord)
    set_epoch(coord, MAX_EPOCH - 2)
    begin(coord, "t", pid, MAX_EPOCH - 2, tv=2)
    first = coord.end_txn("t", pid, MAX_EPOCH - 2, True, 10, client_version=2)
    assert (first.producer_id, first.producer_epoch) == (pid, MAX_EPOCH - 1)
    finish(coord, first, now=11)
    begin(coord, "t", pid, MAX_EPOCH - 1, tv=2)
    last = coord.end_txn("t", pid, MAX_EPOCH - 1, True, 20, client_version=2)
    # Markers still carry the old id at the last epoch; the client moves to a new id at 0.
    assert {(m.producer_id, m.producer_epoch) for m in last.markers} == {(pid, MAX_EPOCH)}
    assert (last.producer_id, last.producer_epoch) == (1001, 0)
    assert coord.transaction("t").next_producer_id == 1001
    finish(coord, last, now=21)
    meta = coord.transaction("t")
    assert (meta.producer_id, meta.prev_producer_id, meta.producer_epoch, meta.last_producer_epoch) == (
        1001, pid, 0, MAX_EPOCH - 1)
    # The client lost the answer and retries with the old id: idempotent.
    retry = coord.end_txn("t", pid, MAX_EPOCH - 1, True, 22, client_version=2)
    assert (retry.error, retry.producer_id, retry.producer_epoch) == (E.NONE, 1001, 0)
    # The new id works.
    begin(coord, "t", 1001, 0, tv=2)
    assert coord.end_txn("t", 1001, 0, False, 30, client_version=2).producer_epoch == 1


def test_markers_written_outside_a_prepared_state(coord):
    assert coord.markers_written("nope", 0).error is E.INVALID_PRODUCER_ID_MAPPING
    pid, epoch = init(coord)
    assert coord.markers_written("t", 0).error is E.INVALID_TXN_STATE
    begin(coord, "t", pid, epoch)
    assert coord.markers_written("t", 0).error is E.INVALID_TXN_STATE
    result = coord.end_txn("t", pid, epoch, False, 1)
    finish(coord, result, now=2)
    assert coord.markers_written("t", 3).error is E.INVALID_TXN_STATE


@pytest.mark.parametrize(("exc", "error"), [
    (StorageError("disk"), E.NOT_COORDINATOR),
    (BatchTooLargeError("big"), E.UNKNOWN_SERVER_ERROR),
    (LogbrokerError("other"), E.COORDINATOR_NOT_AVAILABLE),
])
def test_a_failed_write_changes_nothing(env, exc, error):
    coord = env.open()
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    before = coord.transaction("t")
    good_append = env.store.append

    def failing(records, now_ms):
        raise exc

    env.store.append = failing
    failed = coord.end_txn("t", pid, epoch, True, 10)
    assert (failed.error, failed.markers, failed.flush) == (error, (), None)
    assert coord.add_partitions("t", pid, epoch, [("c", 0)], 10).error is error
    assert coord.init_producer_id("t", 60_000, 10).error is error
    assert coord.transaction("t") == before
    env.store.append = good_append
    result = coord.end_txn("t", pid, epoch, True, 11)
    env.store.append = failing
    assert coord.markers_written("t", 12).error is error
    assert state(coord) == "PrepareCommit" and coord.pending_markers() == result.markers
    env.store.append = good_append
    assert coord.markers_written("t", 13).error is E.NONE
