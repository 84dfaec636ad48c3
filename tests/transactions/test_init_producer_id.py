"""InitProducerId: new ids, epoch bumps, fencing an ongoing transaction, KIP-360 recovery, exhaustion."""

from txn_support import begin, finish, init, set_epoch, state

from logbroker.broker.transactions import MAX_EPOCH, TransactionState as S, TxnError as E


def test_new_id_then_bumps_persisted(coord):
    assert init(coord, now=5) == (1000, 0)
    meta = coord.transaction("t")
    assert (meta.state, meta.timeout_ms, meta.last_update_ms, meta.start_ms) == (S.EMPTY, 60_000, 5, -1)
    assert coord.init_producer_id("t", 30_000, 9).flush is not None
    assert (coord.transaction("t").producer_epoch, coord.transaction("t").timeout_ms) == (1, 30_000)
    assert init(coord, "other") == (1001, 0)


def test_request_validation_in_kafkas_order(env):
    coord = env.open(0, load=False)
    assert coord.init_producer_id("t", 60_000, 0, producer_id=5).error is E.INVALID_REQUEST
    assert coord.init_producer_id("t", 60_000, 0, producer_epoch=5).error is E.INVALID_REQUEST
    assert coord.init_producer_id("", 60_000, 0).error is E.INVALID_REQUEST
    assert coord.init_producer_id("t", 0, 0).error is E.INVALID_TRANSACTION_TIMEOUT
    assert coord.init_producer_id("t", 900_001, 0).error is E.INVALID_TRANSACTION_TIMEOUT
    assert coord.init_producer_id("t", 900_000, 0).error is E.COORDINATOR_LOAD_IN_PROGRESS
    coord.load(0)
    assert coord.init_producer_id("t", 900_000, 0).error is E.NONE


def test_configured_max_timeout(make_env):
    coord = make_env(max_timeout_ms=1000).open()
    assert coord.init_producer_id("t", 1001, 0).error is E.INVALID_TRANSACTION_TIMEOUT
    assert coord.init_producer_id("t", 1000, 0).error is E.NONE


def test_null_transactional_id_is_an_idempotent_producer(coord):
    result = coord.init_producer_id(None, 0, 0)
    assert (result.error, result.producer_id, result.producer_epoch, result.flush) == (E.NONE, 1000, 0, None)
    assert coord.statistics().transactional_ids == 0


def test_allocation_failure(env):
    coord = env.open()

    def broken():
        raise OSError("disk full")

    env.allocate = broken
    assert coord.init_producer_id("t", 60_000, 0).error is E.COORDINATOR_NOT_AVAILABLE
    assert coord.transaction("t") is None
    assert coord.init_producer_id(None, 0, 0).error is E.COORDINATOR_NOT_AVAILABLE


def test_reinit_fences_and_aborts_an_ongoing_transaction(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, now=10)
    result = coord.init_producer_id("t", 60_000, 20)
    assert result.error is E.CONCURRENT_TRANSACTIONS and result.flush is not None
    meta = coord.transaction("t")
    # TV2 broker: fence (epoch + 1), then an abort that bumps again.
    assert (meta.state, meta.producer_epoch, meta.last_producer_epoch) == (S.PREPARE_ABORT, 2, 1)
    assert {(m.topic, m.partition, m.producer_id, m.producer_epoch, m.commit) for m in result.markers} == {
        ("a", 0, pid, 2, False), ("b", 1, pid, 2, False)}
    assert {m.transactional_id for m in result.markers} == {"t"} and result.markers[0].coordinator_epoch == 0
    # Until the markers are written the client keeps being told to retry.
    assert coord.init_producer_id("t", 60_000, 21).error is E.CONCURRENT_TRANSACTIONS
    assert coord.add_partitions("t", pid, epoch, [("a", 0)], 21).error is E.PRODUCER_FENCED
    finish(coord, result, now=22)
    assert state(coord) == "CompleteAbort"
    assert init(coord, now=23) == (pid, 3)


def test_fencing_on_a_tv1_broker_bumps_once(make_env):
    coord = make_env(transaction_version=1).open()
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    result = coord.init_producer_id("t", 60_000, 1)
    meta = coord.transaction("t")
    assert (result.error, meta.producer_epoch, meta.last_producer_epoch, meta.client_version) == (
        E.CONCURRENT_TRANSACTIONS, 1, -1, 0)
    assert {m.producer_epoch for m in result.markers} == {1}


def test_prepared_transactions_answer_concurrent_transactions(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    assert coord.end_txn("t", pid, epoch, True, 5).error is E.NONE
    assert coord.init_producer_id("t", 60_000, 6).error is E.CONCURRENT_TRANSACTIONS
    assert coord.init_producer_id("t", 60_000, 6, producer_id=pid, producer_epoch=epoch).error is (
        E.CONCURRENT_TRANSACTIONS)
    coord.markers_written("t", 7)
    assert init(coord, now=8) == (pid, 1)


def test_kip360_recovery_with_the_current_epoch(coord):
    pid, epoch = init(coord)
    assert init(coord, producer_id=pid, producer_epoch=epoch) == (pid, 1)
    assert coord.transaction("t").last_producer_epoch == 0
    # The same request again (its answer was lost): the last epoch, answered unchanged.
    assert init(coord, producer_id=pid, producer_epoch=epoch) == (pid, 1)
    # A producer with an older epoch or another id is fenced.
    assert coord.init_producer_id("t", 60_000, 0, producer_id=pid, producer_epoch=5).error is E.PRODUCER_FENCED
    assert coord.init_producer_id("t", 60_000, 0, producer_id=pid + 50, producer_epoch=1).error is (
        E.PRODUCER_FENCED)
    # A plain InitProducerId forgets the last epoch, so the old producer's retry is fenced.
    assert init(coord) == (pid, 2)
    assert coord.init_producer_id("t", 60_000, 0, producer_id=pid, producer_epoch=1).error is E.PRODUCER_FENCED


def test_kip360_for_an_id_that_expired_gets_a_new_producer_id(coord):
    assert init(coord, "fresh", producer_id=42, producer_epoch=7) == (1000, 0)


def test_epoch_exhaustion_rotates_the_producer_id(coord):
    pid, _ = init(coord)
    set_epoch(coord, MAX_EPOCH - 2)
    assert init(coord) == (pid, MAX_EPOCH - 1)
    assert init(coord, now=5) == (1001, 0)  # exhausted: a new id
    meta = coord.transaction("t")
    assert (meta.prev_producer_id, meta.last_producer_epoch) == (pid, -1)


def test_epoch_exhaustion_with_kip360(coord):
    pid, _ = init(coord)
    set_epoch(coord, MAX_EPOCH - 1)
    new_pid, epoch = init(coord, producer_id=pid, producer_epoch=MAX_EPOCH - 1)
    assert (new_pid, epoch) == (1001, 0)
    assert coord.transaction("t").last_producer_epoch == MAX_EPOCH - 1
    # A retry of that call names the old id with its exhausted epoch: not fenced,
    # and answered with the new id unchanged (its last epoch is the one named).
    assert init(coord, producer_id=pid, producer_epoch=MAX_EPOCH - 1) == (1001, 0)
    assert init(coord, producer_id=1001, producer_epoch=0) == (1001, 1)


def test_exhausted_epoch_with_another_expected_epoch_is_a_server_error(coord):
    pid, _ = init(coord)
    set_epoch(coord, MAX_EPOCH - 1)
    assert coord.init_producer_id("t", 60_000, 0, producer_id=pid, producer_epoch=3).error is (
        E.UNKNOWN_SERVER_ERROR)
