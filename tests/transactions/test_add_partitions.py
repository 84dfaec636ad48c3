"""AddPartitionsToTxn (client and verify-only forms) and AddOffsetsToTxn."""

from txn_support import begin, init, state

from logbroker.broker.transactions import TransactionState as S, TxnError as E


def test_partitions_join_and_the_transaction_starts(coord):
    pid, epoch = init(coord)
    records = coord.statistics().log_records
    result = coord.add_partitions("t", pid, epoch, [("a", 0)], 100)
    assert result.error is E.NONE and result.flush is not None
    meta = coord.transaction("t")
    assert (meta.state, meta.partitions, meta.start_ms, meta.last_update_ms) == (S.ONGOING, {("a", 0)}, 100, 100)
    # Already in the transaction: answered without a write.
    assert coord.add_partitions("t", pid, epoch, [("a", 0)], 150) == coord.add_partitions("t", pid, epoch, [], 150)
    assert coord.statistics().log_records == records + 1
    assert coord.add_partitions("t", pid, epoch, [("a", 0), ("b", 3)], 200).error is E.NONE
    meta = coord.transaction("t")
    assert (meta.partitions, meta.start_ms, meta.last_update_ms) == ({("a", 0), ("b", 3)}, 100, 200)
    assert coord.statistics().log_records == records + 2


def test_errors_in_kafkas_order(env):
    coord = env.open(0, load=False)
    assert coord.add_partitions("", 1, 0, [("a", 0)], 0).error is E.INVALID_REQUEST
    assert coord.add_partitions("t", 1, 0, [("a", 0)], 0).error is E.COORDINATOR_LOAD_IN_PROGRESS
    coord.load(0)
    assert coord.add_partitions("t", 1, 0, [("a", 0)], 0).error is E.INVALID_PRODUCER_ID_MAPPING
    pid, epoch = init(coord)
    assert coord.add_partitions("t", pid + 1, epoch, [("a", 0)], 0).error is E.INVALID_PRODUCER_ID_MAPPING
    assert coord.add_partitions("t", pid, epoch + 1, [("a", 0)], 0).error is E.PRODUCER_FENCED
    init(coord)  # another instance bumped the epoch
    assert coord.add_partitions("t", pid, epoch, [("a", 0)], 0).error is E.PRODUCER_FENCED
    begin(coord, "t", pid, epoch + 1)
    assert coord.end_txn("t", pid, epoch + 1, True, 5).error is E.NONE
    assert coord.add_partitions("t", pid, epoch + 1, [("c", 0)], 6).error is E.CONCURRENT_TRANSACTIONS


def test_a_new_transaction_after_a_completed_one(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, now=10)
    coord.end_txn("t", pid, epoch, False, 20)
    coord.markers_written("t", 21)
    assert state(coord) == "CompleteAbort" and coord.transaction("t").partitions == frozenset()
    begin(coord, "t", pid, epoch, now=30, partitions=[("z", 9)])
    meta = coord.transaction("t")
    assert (meta.state, meta.partitions, meta.start_ms) == (S.ONGOING, {("z", 9)}, 30)


def test_tv2_produce_adds_partitions_implicitly(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch, partitions=[("a", 0)], tv=2)
    assert coord.transaction("t").client_version == 2


def test_verify_only(coord):
    pid, epoch = init(coord)
    tps = [("a", 0), ("b", 1)]
    assert coord.verify_partitions("t", pid, epoch, tps).partitions == {tp: E.TRANSACTION_ABORTABLE for tp in tps}
    begin(coord, "t", pid, epoch, partitions=[("a", 0)])
    records = coord.statistics().log_records
    assert coord.verify_partitions("t", pid, epoch, tps).partitions == {
        ("a", 0): E.NONE, ("b", 1): E.TRANSACTION_ABORTABLE}
    assert coord.statistics().log_records == records  # verification never writes
    assert coord.verify_partitions("t", pid, epoch - 1, tps).partitions == {tp: E.PRODUCER_FENCED for tp in tps}
    assert coord.verify_partitions("nope", pid, epoch, tps).partitions == {
        tp: E.INVALID_PRODUCER_ID_MAPPING for tp in tps}
    assert coord.verify_partitions("", pid, epoch, tps).partitions == {tp: E.INVALID_REQUEST for tp in tps}
    coord.end_txn("t", pid, epoch, True, 5)
    assert coord.verify_partitions("t", pid, epoch, tps).partitions == {tp: E.CONCURRENT_TRANSACTIONS for tp in tps}


def test_add_offsets_adds_the_groups_offsets_partition(env):
    coord = env.open()
    coord._offsets_partition_for = lambda group: {"g1": 0, "g2": 3}[group]
    pid, epoch = init(coord)
    assert coord.add_offsets("t", pid, epoch, "g2", 10).error is E.NONE
    assert coord.transaction("t").partitions == {("__consumer_offsets", 3)}
    assert coord.add_offsets("t", pid, epoch + 1, "g1", 10).error is E.PRODUCER_FENCED
    assert coord.transaction("t").client_version == 0
