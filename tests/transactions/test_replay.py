"""Restarts: replay rebuilds every id, Prepare* transactions report their markers, damage is skipped."""

from dataclasses import replace

from txn_support import begin, finish, init, set_epoch, state

from logbroker.broker.transactions import MAX_EPOCH, TransactionState as S, TxnError as E
from logbroker.broker.transactions.transaction_log_format import encode_key


def test_restart_mid_prepare_commit_finishes_the_transaction(env):
    coord = env.open(0)
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, now=10)
    result = coord.end_txn("t", pid, epoch, True, 20)
    before = coord.transaction("t")
    coord = env.restart(1000)
    after = coord.transaction("t")
    assert after.state is S.PREPARE_COMMIT
    assert after == before  # (the last epoch is -1 on both sides here)
    # The broker asks what is left to do, writes the markers and completes.
    assert coord.pending_markers() == result.markers
    assert coord.statistics().awaiting_markers == 1
    assert coord.end_txn("t", pid, epoch, True, 1001).error is E.CONCURRENT_TRANSACTIONS
    finish(coord, result, now=1002)
    coord = env.restart(2000)
    assert state(coord) == "CompleteCommit" and coord.pending_markers() == ()
    assert coord.end_txn("t", pid, epoch, True, 2001).error is E.NONE  # a late retry


def test_restart_mid_tv2_abort_keeps_the_bumped_epoch(env):
    coord = env.open(0)
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, tv=2)
    result = coord.end_txn("t", pid, epoch, False, 20, client_version=2)
    coord = env.restart(100)
    assert coord.pending_markers() == result.markers
    assert {m.producer_epoch for m in result.markers} == {epoch + 1}
    # The client's retry is recognised by the bumped epoch.
    assert coord.end_txn("t", pid, epoch, False, 101, client_version=2).error is E.CONCURRENT_TRANSACTIONS
    finish(coord, result, now=102)
    assert coord.end_txn("t", pid, epoch, False, 103, client_version=2).producer_epoch == epoch + 1


def test_restart_restores_timeouts(env):
    coord = env.open(0)
    pid, epoch = init(coord, timeout=5000)
    begin(coord, "t", pid, epoch, now=100)
    coord = env.restart(200)
    assert coord.next_deadline_ms() == 5101
    written = coord.fire_deadlines(5101)
    assert written.aborted == ("t",)


def test_every_field_survives(env):
    coord = env.open(0)
    pid, _ = init(coord, "a")
    init(coord, "b", timeout=1234)
    pid_c, epoch_c = init(coord, "c")
    begin(coord, "c", pid_c, epoch_c, now=5, partitions=[("x", 1), ("y", 2)], tv=2)
    # An exhausted epoch under TV2: the next producer id is in the PrepareCommit record.
    set_epoch(coord, MAX_EPOCH - 1, "c")
    coord.end_txn("c", pid_c, MAX_EPOCH - 1, True, 6, client_version=2)
    snapshot = {t: coord.transaction(t) for t in "abc"}
    coord = env.restart(100)
    for tid, meta in snapshot.items():
        assert coord.transaction(tid) == replace(meta, last_producer_epoch=-1)
    assert coord.transaction("c").next_producer_id == 1003


def test_v0_records_written_by_a_tv0_broker_replay(make_env):
    env = make_env(transaction_version=0)
    coord = env.open(0)
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    coord = env.restart(10, transaction_version=2)
    assert state(coord) == "Ongoing" and coord.transaction("t").partitions == {("a", 0), ("b", 1)}


def test_compaction_copies_the_live_ids_forward(make_env):
    env = make_env(compact_min_records=50)
    coord = env.open(0)
    pid, epoch = init(coord)
    for n in range(40):
        begin(coord, "t", pid, epoch, now=n)
        finish(coord, coord.end_txn("t", pid, epoch, n % 2 == 0, n), now=n)
    init(coord, "other")
    assert coord.statistics().log_records < 60
    coord = env.restart(1000)
    assert state(coord) == "CompleteAbort" and state(coord, "other") == "Empty"


def test_unreadable_and_unknown_records_are_skipped(env):
    coord = env.open(0)
    init(coord, "good")
    env.store.append([
        (encode_key("bad"), b"\x00\x01\x00"),  # truncated value
        (b"\x00\x05whatever", b"\x00\x00"),  # another record type
        (encode_key("future"), b"\x00\x09" + b"\x00" * 30),  # a newer value version
    ], 1)
    coord = env.restart(2)
    assert coord.transaction("good") is not None
    assert coord.transaction("bad") is None and coord.transaction("future") is None


def test_tombstones_delete_on_replay(env):
    coord = env.open(0)
    init(coord, "gone")
    env.store.append([(encode_key("gone"), None)], 1)
    coord = env.restart(2)
    assert coord.transaction("gone") is None
