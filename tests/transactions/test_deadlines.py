"""Transaction timeouts (abort and fence the zombie) and the expiry of idle transactional ids, with injected time."""

from txn_support import begin, finish, init, state

from logbroker.broker.transactions import TransactionState as S, TxnError as E
from logbroker.errors import StorageError

DAY = 24 * 3600 * 1000
HOUR = 3600 * 1000


def test_an_ongoing_transaction_is_aborted_after_its_timeout(coord):
    pid, epoch = init(coord, timeout=1000)
    begin(coord, "t", pid, epoch, now=100)
    assert coord.next_deadline_ms() == 1101  # Kafka aborts once start + timeout < now
    begin(coord, "t", pid, epoch, now=900, partitions=[("c", 2)])  # more partitions: same start
    assert coord.next_deadline_ms() == 1101
    assert coord.fire_deadlines(1100).aborted == ()
    written = coord.fire_deadlines(1101)
    assert written.aborted == ("t",) and written.flush is not None
    meta = coord.transaction("t")
    assert (meta.state, meta.producer_epoch) == (S.PREPARE_ABORT, epoch + 2)
    assert {(m.topic, m.partition, m.commit, m.producer_epoch) for m in written.markers} == {
        ("a", 0, False, 2), ("b", 1, False, 2), ("c", 2, False, 2)}
    # The zombie producer is fenced everywhere.
    assert coord.add_partitions("t", pid, epoch, [("a", 0)], 1200).error is E.PRODUCER_FENCED
    assert coord.end_txn("t", pid, epoch, True, 1200).error is E.PRODUCER_FENCED
    assert coord.end_txn("t", pid, epoch, True, 1200, client_version=2).error is E.PRODUCER_FENCED
    finish(coord, written, now=1300)
    assert state(coord) == "CompleteAbort"
    assert init(coord, now=1400) == (pid, epoch + 3)


def test_ending_in_time_cancels_the_timeout(coord):
    pid, epoch = init(coord, timeout=1000)
    begin(coord, "t", pid, epoch, now=100)
    result = coord.end_txn("t", pid, epoch, True, 500)
    assert coord.next_deadline_ms() != 1101
    assert coord.fire_deadlines(5000).aborted == ()
    finish(coord, result, now=5001)
    assert state(coord) == "CompleteCommit"


def test_a_new_transaction_gets_its_own_deadline(coord):
    pid, epoch = init(coord, timeout=1000)
    begin(coord, "t", pid, epoch, now=0)
    finish(coord, coord.end_txn("t", pid, epoch, True, 10), now=11)
    begin(coord, "t", pid, epoch, now=2000)
    assert coord.fire_deadlines(2500).aborted == ()
    assert coord.next_deadline_ms() == 3001
    assert coord.fire_deadlines(3001).aborted == ("t",)


def test_several_transactions_time_out_in_deadline_order(coord):
    for n, tid in enumerate(("x", "y", "z")):
        pid, epoch = init(coord, tid, timeout=1000 * (n + 1))
        begin(coord, tid, pid, epoch, now=0)
    assert coord.fire_deadlines(2001).aborted == ("x", "y")
    assert coord.statistics().ongoing == 1 and coord.statistics().awaiting_markers == 2
    assert coord.fire_deadlines(3001).aborted == ("z",)


def test_a_failed_abort_is_retried(env):
    coord = env.open()
    pid, epoch = init(coord, timeout=1000)
    begin(coord, "t", pid, epoch, now=0)
    good_append = env.store.append

    def failing(records, now_ms):
        raise StorageError("disk")

    env.store.append = failing
    assert coord.fire_deadlines(1001).aborted == ()
    assert state(coord) == "Ongoing"
    assert coord.next_deadline_ms() == 1001 + env.config.abort_retry_interval_ms
    env.store.append = good_append
    assert coord.fire_deadlines(1001 + env.config.abort_retry_interval_ms).aborted == ("t",)


def test_timed_out_abort_on_a_tv1_broker_bumps_once(make_env):
    coord = make_env(transaction_version=0).open()
    pid, epoch = init(coord, timeout=1000)
    begin(coord, "t", pid, epoch, now=0)
    written = coord.fire_deadlines(1001)
    assert {m.producer_epoch for m in written.markers} == {epoch + 1}


def test_idle_ids_expire_after_seven_days(coord):
    init(coord, "idle", now=0)
    pid, epoch = init(coord, "done", now=0)
    begin(coord, "done", pid, epoch, now=HOUR // 2)
    finish(coord, coord.end_txn("done", pid, epoch, True, HOUR // 2), "done", now=HOUR // 2)
    # Expiry is checked every hour; an id expires 7 days after its last update.
    checks = [coord.fire_deadlines(HOUR * n).expired for n in range(1, 7 * 24 + 2)]
    assert all(not c for c in checks[: 7 * 24 - 1])
    assert checks[7 * 24 - 1] == ("idle",)
    assert checks[7 * 24] == ("done",)
    assert coord.transaction("idle") is None and coord.transaction("done") is None
    # An expired id starts afresh with a new producer id.
    assert init(coord, "idle", now=8 * DAY) == (1002, 0)


def test_ids_in_a_transaction_never_expire(coord):
    pid, epoch = init(coord, "long", timeout=900_000)
    begin(coord, "long", pid, epoch, now=0)
    result = coord.end_txn("long", pid, epoch, True, 1)
    # Markers never written: PrepareCommit is not expirable.
    coord.fire_deadlines(8 * DAY)
    assert state(coord, "long") == "PrepareCommit" and coord.pending_markers() == result.markers


def test_expiry_writes_tombstones_that_survive_a_restart(env):
    coord = env.open(0)
    init(coord, "idle", now=0)
    init(coord, "kept", now=7 * DAY)
    assert coord.fire_deadlines(7 * DAY + HOUR).expired == ("idle",)
    coord = env.restart(7 * DAY + HOUR + 1)
    assert coord.transaction("idle") is None and coord.transaction("kept") is not None


def test_stale_timer_entries_do_not_pile_up(coord):
    pid, epoch = init(coord, timeout=900_000)
    for n in range(3000):
        begin(coord, "t", pid, epoch, now=n)
        coord.end_txn("t", pid, epoch, n % 2 == 0, n)
        coord.markers_written("t", n)
    assert len(coord._heap) < 1100
    assert coord.next_deadline_ms() == 3_600_000  # only the expiry check is live
