"""Transactions through the request handlers: InitProducerId with a
transactional id, AddPartitionsToTxn, transactional Produce, EndTxn, markers,
the last stable offset, read_committed fetches, TxnOffsetCommit, restart."""

from __future__ import annotations

import shutil
import time

import pytest

from logbroker.broker.markers import ABORT, COMMIT
from logbroker.broker.handlers import dispatch
from logbroker.protocol import ApiKey, ErrorCode, decode_request, encode_request, encode_response
from logbroker.records import BatchBuilder, decode_batches

PRODUCE, FETCH, LIST_OFFSETS = ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.LIST_OFFSETS
INIT, ADD_PARTS, ADD_OFFSETS, END = (ApiKey.INIT_PRODUCER_ID, ApiKey.ADD_PARTITIONS_TO_TXN,
                                     ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN)


def create(h, name, partitions=1, configs=()):
    cfg = tuple(h.req(ApiKey.CREATE_TOPICS, 7, "CreatableTopicConfig", name=k, value=v) for k, v in configs)
    topic = h.req(ApiKey.CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=partitions,
                  replication_factor=1, assignments=(), configs=cfg)
    assert h.call(ApiKey.CREATE_TOPICS, 7, "CreateTopicsRequest", topics=(topic,), timeout=1000,
                  validate_only=False).topics[0].error_code == ErrorCode.none


def init(h, tid, timeout_ms=60_000, version=3, producer_id=-1, producer_epoch=-1):
    return h.call(INIT, version, "InitProducerIdRequest", transactional_id=tid, transaction_timeout=timeout_ms,
                  producer_id=producer_id, producer_epoch=producer_epoch)


def add_partitions(h, tid, pid, epoch, topic, partitions=(0,), version=3):
    t = h.req(ADD_PARTS, version, "AddPartitionsToTxnTopic", name=topic, partitions=tuple(partitions))
    resp = h.call(ADD_PARTS, version, "AddPartitionsToTxnRequest", v3_and_below_transactional_id=tid,
                  v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch, v3_and_below_topics=(t,))
    return [p.partition_error_code for t in resp.results_by_topic_v3_and_below for p in t.results_by_partition]


def end(h, tid, pid, epoch, commit, version=3):
    return h.call(END, version, "EndTxnRequest", transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                  committed=commit).error_code


def txn_batch(pid, epoch, seq, values, transactional=True):
    builder = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=transactional)
    for v in values:
        builder.append(v, None, timestamp_ms=int(time.time() * 1000))
    return builder.build()


def produce(h, topic, batch, tid=None, partition=0, version=9):
    part = h.req(PRODUCE, version, "PartitionProduceData", index=partition, records=batch)
    data = h.req(PRODUCE, version, "TopicProduceData", name=topic, partition_data=(part,))
    resp = h.call(PRODUCE, version, "ProduceRequest", transactional_id=tid, acks=-1, timeout=1000,
                  topic_data=(data,))
    return resp.responses[0].partition_responses[0]


def fetch(h, topic, offset=0, isolation=1, partition=0, version=12):
    fp = h.req(FETCH, version, "FetchPartition", partition=partition, fetch_offset=offset,
               partition_max_bytes=1 << 20)
    ft = h.req(FETCH, version, "FetchTopic", topic=topic, partitions=(fp,))
    resp = h.call(FETCH, version, "FetchRequest", max_wait=0, min_bytes=1, topics=(ft,),
                  forgotten_topics_data=(), isolation_level=isolation)
    return resp.responses[0].partitions[0]


def batches(part):
    return list(decode_batches(bytes(part.records))) if part.records else []


def latest(h, topic, isolation, partition=0, version=7):
    p = h.req(LIST_OFFSETS, version, "ListOffsetsPartition", partition_index=partition, timestamp=-1)
    t = h.req(LIST_OFFSETS, version, "ListOffsetsTopic", name=topic, partitions=(p,))
    resp = h.call(LIST_OFFSETS, version, "ListOffsetsRequest", replica_id=-1, isolation_level=isolation, topics=(t,))
    return resp.topics[0].partitions[0].offset


def begin(h, tid, topic, partitions=(0,)):
    r = init(h, tid)
    assert r.error_code == ErrorCode.none
    assert add_partitions(h, tid, r.producer_id, r.producer_epoch, topic, partitions) == [ErrorCode.none] * len(
        partitions)
    return r.producer_id, r.producer_epoch


def test_commit_makes_data_visible_and_abort_hides_it(h):
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    assert produce(h, "t", txn_batch(pid, epoch, 0, [b"a", b"b"]), tid="tx").error_code == ErrorCode.none
    # Open transaction: the LSO stays at its first offset; read_committed sees nothing.
    part = fetch(h, "t")
    assert (part.high_watermark, part.last_stable_offset, batches(part)) == (2, 0, [])
    assert latest(h, "t", 1) == 0 and latest(h, "t", 0) == 2
    assert len(batches(fetch(h, "t", isolation=0))) == 1
    assert end(h, "tx", pid, epoch, True) == ErrorCode.none
    part = fetch(h, "t")
    got = batches(part)
    assert part.last_stable_offset == part.high_watermark == 3
    assert [r.value for r in got[0].records] == [b"a", b"b"]
    assert got[1].header.is_control and got[1].records[0].key == b"\x00\x00\x00\x01"  # commit
    assert not part.aborted_transactions
    # A second transaction, aborted: its range is listed as aborted.
    assert add_partitions(h, "tx", pid, epoch, "t") == [ErrorCode.none]
    assert produce(h, "t", txn_batch(pid, epoch, 2, [b"c"]), tid="tx").error_code == ErrorCode.none
    assert end(h, "tx", pid, epoch, False) == ErrorCode.none
    part = fetch(h, "t")
    assert part.last_stable_offset == 5
    assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions] == [(pid, 3)]
    marker = batches(part)[-1]
    assert marker.header.is_control and marker.records[0].key == b"\x00\x00\x00\x00"  # abort
    entries = h.broker.partition("t", 0).txn_index.entries()
    assert [(e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset) for _, e in entries] == [
        (pid, 3, 4, 5)]
    assert COMMIT == 1 and ABORT == 0


def test_produce_outside_the_transaction_is_refused(h):
    create(h, "t", partitions=2)
    pid, epoch = begin(h, "tx", "t", partitions=(0,))
    # Partition 1 was never added: INVALID_TXN_STATE (Produce before v11 has no TRANSACTION_ABORTABLE).
    assert produce(h, "t", txn_batch(pid, epoch, 0, [b"x"]), tid="tx", partition=1).error_code == \
        ErrorCode.invalid_txn_state
    # No transactional id in the request.
    assert produce(h, "t", txn_batch(pid, epoch, 0, [b"x"])).error_code == ErrorCode.invalid_txn_state
    # A stale epoch.
    assert produce(h, "t", txn_batch(pid, epoch - 1 if epoch else 5, 0, [b"x"]), tid="tx").error_code in (
        ErrorCode.invalid_producer_epoch, ErrorCode.invalid_txn_state)
    assert produce(h, "t", txn_batch(pid, epoch, 0, [b"x"]), tid="tx").error_code == ErrorCode.none
    # A plain batch of a producer inside its transaction.
    assert produce(h, "t", txn_batch(pid, epoch, 1, [b"y"], transactional=False), tid="tx").error_code == \
        ErrorCode.invalid_txn_state


def test_a_second_producer_fences_the_first_and_aborts_its_transaction(h):
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    assert produce(h, "t", txn_batch(pid, epoch, 0, [b"zombie"]), tid="tx").error_code == ErrorCode.none
    # The new producer's InitProducerId aborts the open transaction (CONCURRENT_TRANSACTIONS, then retry).
    r = init(h, "tx")
    assert r.error_code == ErrorCode.concurrent_transactions
    r = init(h, "tx")
    assert r.error_code == ErrorCode.none and r.producer_id == pid and r.producer_epoch > epoch
    part = fetch(h, "t")
    assert part.last_stable_offset == part.high_watermark == 2
    assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions] == [(pid, 0)]
    # The zombie is fenced everywhere.
    assert end(h, "tx", pid, epoch, True, version=1) == ErrorCode.invalid_producer_epoch  # v1: no PRODUCER_FENCED
    assert end(h, "tx", pid, epoch, True, version=3) == ErrorCode.producer_fenced
    assert produce(h, "t", txn_batch(pid, epoch, 1, [b"late"]), tid="tx").error_code == \
        ErrorCode.invalid_producer_epoch


def test_timed_out_transaction_is_aborted_by_the_timer(make_broker):
    now = [1_000_000]
    h = make_broker()
    h.broker.clock = lambda: now[0]
    create(h, "t")
    r = init(h, "tx", timeout_ms=1000)
    add_partitions(h, "tx", r.producer_id, r.producer_epoch, "t")
    assert produce(h, "t", txn_batch(r.producer_id, r.producer_epoch, 0, [b"x"]), tid="tx").error_code == 0
    deadline = h.broker.next_deadline_ms()
    assert deadline is not None and deadline <= now[0] + 1001
    now[0] = deadline
    assert h.broker.fire_deadlines(now[0]) == [("t", 0)]
    part = fetch(h, "t")
    assert part.last_stable_offset == 2 and [a.first_offset for a in part.aborted_transactions] == [0]
    assert end(h, "tx", r.producer_id, r.producer_epoch, True, version=3) == ErrorCode.producer_fenced


def test_restart_keeps_open_transactions_and_the_aborted_index(make_broker, tmp_path):
    data = str(tmp_path / "d")
    h = make_broker(data_dir=data)
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a"]), tid="tx")
    end(h, "tx", pid, epoch, False)
    add_partitions(h, "tx", pid, epoch, "t")
    produce(h, "t", txn_batch(pid, epoch, 1, [b"b"]), tid="tx")
    h.broker.partition("t", 0).flush()
    # A crash: a copy of the directory as it is now (no snapshot, no clean-shutdown
    # marker), without its .txnindex files, which must come back from the log.
    crashed = tmp_path / "crashed"
    shutil.copytree(data, crashed, ignore=shutil.ignore_patterns(".lock", "*.txnindex"))
    h.broker.close()
    for directory in (data, str(crashed)):
        h2 = make_broker(data_dir=directory)
        part = fetch(h2, "t")
        assert (part.high_watermark, part.last_stable_offset) == (3, 2)
        assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions] == [(pid, 0)]
        assert list(h2.broker.partition("t", 0).directory.glob("*.txnindex"))
        assert end(h2, "tx", pid, epoch, True) == ErrorCode.none
        part = fetch(h2, "t")
        assert part.last_stable_offset == 4


def test_prepared_transaction_is_finished_after_a_restart(make_broker, tmp_path):
    data = str(tmp_path / "d")
    h = make_broker(data_dir=data)
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a"]), tid="tx")
    # Decide the commit but "crash" before any marker is written.
    result = h.broker.transactions.end_txn("tx", pid, epoch, True, h.broker.clock())
    assert result.markers
    h.broker.close()
    h2 = make_broker(data_dir=data)
    part = fetch(h2, "t")
    assert part.last_stable_offset == part.high_watermark == 2
    assert h2.broker.transactions.transaction("tx").state.value == "CompleteCommit"


def test_txn_offset_commit_is_visible_on_commit_only(make_broker, tmp_path):
    data = str(tmp_path / "d")
    h = make_broker(data_dir=data)
    create(h, "t")
    create(h, "in")
    pid, epoch = begin(h, "tx", "t")

    def add_offsets():
        return h.call(ADD_OFFSETS, 3, "AddOffsetsToTxnRequest", transactional_id="tx", producer_id=pid,
                      producer_epoch=epoch, group_id="g").error_code

    def commit_offset(offset, version=3):
        p = h.req(ApiKey.TXN_OFFSET_COMMIT, version, "TxnOffsetCommitRequestPartition", partition_index=0,
                  committed_offset=offset, committed_leader_epoch=-1, committed_metadata="")
        t = h.req(ApiKey.TXN_OFFSET_COMMIT, version, "TxnOffsetCommitRequestTopic", name="in", partitions=(p,))
        resp = h.call(ApiKey.TXN_OFFSET_COMMIT, version, "TxnOffsetCommitRequest", transactional_id="tx",
                      group_id="g", producer_id=pid, producer_epoch=epoch, generation_id=-1, member_id="",
                      group_instance_id=None, topics=(t,))
        return resp.topics[0].partitions[0].error_code

    def fetched(require_stable=False):
        t = h.req(ApiKey.OFFSET_FETCH, 7, "OffsetFetchRequestTopic", name="in", partition_indexes=(0,))
        resp = h.call(ApiKey.OFFSET_FETCH, 7, "OffsetFetchRequest", group_id="g", topics=(t,),
                      require_stable=require_stable)
        p = resp.topics[0].partitions[0]
        return p.committed_offset, p.error_code

    # Not in the transaction yet: refused.
    assert commit_offset(5) == ErrorCode.invalid_txn_state
    assert add_offsets() == ErrorCode.none
    assert commit_offset(5) == ErrorCode.none
    assert fetched() == (-1, ErrorCode.none)
    assert fetched(require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
    assert end(h, "tx", pid, epoch, False) == ErrorCode.none
    assert fetched(require_stable=True) == (-1, ErrorCode.none)
    assert add_offsets() == ErrorCode.none
    assert commit_offset(7) == ErrorCode.none
    assert end(h, "tx", pid, epoch, True) == ErrorCode.none
    assert fetched(require_stable=True) == (7, ErrorCode.none)
    # A pending commit survives a restart, and so does its resolution.
    assert add_offsets() == ErrorCode.none
    assert commit_offset(9) == ErrorCode.none
    h.broker.close()
    h = make_broker(data_dir=data)
    assert fetched(require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
    assert fetched() == (7, ErrorCode.none)
    assert end(h, "tx", pid, epoch, True) == ErrorCode.none
    assert fetched() == (9, ErrorCode.none)
    h.broker.close()
    h = make_broker(data_dir=data)
    assert fetched(require_stable=True) == (9, ErrorCode.none)


def test_find_coordinator_answers_for_transactional_ids(h):
    resp = h.call(ApiKey.FIND_COORDINATOR, 3, "FindCoordinatorRequest", key="tx", key_type=1)
    assert resp.error_code == ErrorCode.none and resp.node_id == h.broker.config.node_id
    resp = h.call(ApiKey.FIND_COORDINATOR, 4, "FindCoordinatorRequest", key_type=1, coordinator_keys=("a", "b"))
    assert [(c.key, c.error_code) for c in resp.coordinators] == [("a", 0), ("b", 0)]


def test_describe_and_list_transactions_and_producers(h):
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a"]), tid="tx")
    resp = h.call(ApiKey.DESCRIBE_TRANSACTIONS, 0, "DescribeTransactionsRequest", transactional_ids=("tx",))
    (tx,) = resp.transaction_states
    assert tx.error_code == ErrorCode.none and tx.transaction_state == "Ongoing" and tx.producer_id == pid
    assert [(t.topic, tuple(t.partitions)) for t in tx.topics] == [("t", (0,))]
    # An unknown id: start time -1 on the wire (kio's decoder refuses negative timestamps, so read the bytes).
    body = h.req(ApiKey.DESCRIBE_TRANSACTIONS, 0, "DescribeTransactionsRequest", transactional_ids=("nope",))
    frame = encode_request(ApiKey.DESCRIBE_TRANSACTIONS, 0, 1, "test", body)
    request = decode_request(frame[4:])
    raw = b"".join(bytes(p) for p in encode_response(request, dispatch(h.broker, request).body))
    # size, correlation id, tags, throttle, 1 state: error code, id "nope", state "", timeout, start time
    assert raw[14:16] == ErrorCode.transactional_id_not_found.value.to_bytes(2, "big")
    assert raw[16:] .startswith(b"\x05nope\x01") and raw[26:34] == b"\xff" * 8
    resp = h.call(ApiKey.LIST_TRANSACTIONS, 1, "ListTransactionsRequest", state_filters=(), producer_id_filters=(),
                  duration_filter=-1)
    assert [(t.transactional_id, t.transaction_state) for t in resp.transaction_states] == [("tx", "Ongoing")]
    t = h.req(ApiKey.DESCRIBE_PRODUCERS, 0, "TopicRequest", name="t", partition_indexes=(0,))
    resp = h.call(ApiKey.DESCRIBE_PRODUCERS, 0, "DescribeProducersRequest", topics=(t,))
    (producer,) = resp.topics[0].partitions[0].active_producers
    assert (producer.producer_id, producer.producer_epoch, producer.current_txn_start_offset) == (pid, epoch, 0)


def test_batched_add_partitions_verify_only(h):
    create(h, "t", partitions=2)
    pid, epoch = begin(h, "tx", "t", partitions=(0,))
    mod_topic = h.req(ADD_PARTS, 4, "AddPartitionsToTxnTopic", name="t", partitions=(0, 1))
    txn = h.req(ADD_PARTS, 4, "AddPartitionsToTxnTransaction", transactional_id="tx", producer_id=pid,
                producer_epoch=epoch, verify_only=True, topics=(mod_topic,))
    resp = h.call(ADD_PARTS, 4, "AddPartitionsToTxnRequest", transactions=(txn,))
    (result,) = resp.results_by_transaction
    codes = [p.partition_error_code for t in result.topic_results for p in t.results_by_partition]
    assert codes == [ErrorCode.none, ErrorCode.transaction_abortable]


@pytest.mark.parametrize("version", [4, 7, 11, 12])
def test_read_uncommitted_fetch_reports_the_last_stable_offset(h, version):
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a"]), tid="tx")
    part = fetch(h, "t", isolation=0, version=version)
    assert (part.high_watermark, part.last_stable_offset) == (1, 0)
    assert part.aborted_transactions is None or list(part.aborted_transactions) == []


def test_flush_always_fsyncs_the_decision_before_the_markers(make_broker, monkeypatch):
    """With flush=always the Prepare* record is durable before any marker is
    appended; the answer waits for the markers' and the completion's fsyncs."""
    h = make_broker(flush="always")
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a"]), tid="tx")
    events = []
    state_log = h.broker.transactions._store._log(create=False)
    data_log = h.broker.partition("t", 0)
    real_flush = type(state_log).flush

    def flush(self, up_to=None):
        events.append(("fsync", self.directory.name, self.log_end_offset))
        return real_flush(self, up_to)

    real_append = type(data_log).append

    def append(self, batch, now_ms, **kw):
        events.append(("append", self.directory.name))
        return real_append(self, batch, now_ms, **kw)

    monkeypatch.setattr(type(state_log), "flush", flush)
    monkeypatch.setattr(type(data_log), "append", append)
    body = h.req(END, 3, "EndTxnRequest", transactional_id="tx", producer_id=pid, producer_epoch=epoch,
                 committed=True)
    frame = encode_request(END, 3, 99, "test", body)
    reply = dispatch(h.broker, decode_request(frame[4:]))
    state_dir = state_log.directory.name
    first_marker = events.index(("append", "t-0"))
    assert ("fsync", state_dir) in [e[:2] for e in events[:first_marker]]
    flushed = {plog.directory.name for plog, _ in reply.flush}
    assert {"t-0", state_dir} <= flushed and reply.appended == [("t", 0)]


def test_transactional_id_acls(make_broker):
    from logbroker.broker.security import Acl
    from logbroker.broker.session import Session

    h = make_broker(authorizer_enable=True)
    h.broker.create_topic("t", 1)
    authorizer = h.broker.authorizer

    def as_user(name):
        h.session = Session(principal=f"User:{name}", authenticated=True)

    as_user("alice")
    denied = ErrorCode.transactional_id_authorization_failed
    assert h.call(ApiKey.FIND_COORDINATOR, 3, "FindCoordinatorRequest", key="tx", key_type=1).error_code == denied
    assert init(h, "tx").error_code == denied
    authorizer.add(Acl("User:alice", "transactional_id", "tx", "write"))  # WRITE implies DESCRIBE
    assert h.call(ApiKey.FIND_COORDINATOR, 3, "FindCoordinatorRequest", key="tx", key_type=1).error_code == 0
    r = init(h, "tx")
    assert r.error_code == ErrorCode.none
    assert add_partitions(h, "tx", r.producer_id, r.producer_epoch, "t") == [ErrorCode.topic_authorization_failed]
    authorizer.add(Acl("User:alice", "topic", "t", "write"))
    assert add_partitions(h, "tx", r.producer_id, r.producer_epoch, "t") == [ErrorCode.none]
    batch = txn_batch(r.producer_id, r.producer_epoch, 0, [b"a"])
    assert produce(h, "t", batch, tid="tx").error_code == ErrorCode.none
    as_user("bob")  # WRITE on the topic but not on the transactional id
    authorizer.add(Acl("User:bob", "topic", "t", "write"))
    assert produce(h, "t", txn_batch(r.producer_id, r.producer_epoch, 1, [b"b"]), tid="tx").error_code == denied
    listed = h.call(ApiKey.LIST_TRANSACTIONS, 0, "ListTransactionsRequest", state_filters=(), producer_id_filters=())
    assert listed.transaction_states == ()
    as_user("alice")
    assert end(h, "tx", r.producer_id, r.producer_epoch, True) == ErrorCode.none


def test_compacted_topics_take_transactional_batches(h):
    create(h, "changelog", configs=(("cleanup.policy", "compact"),))
    pid, epoch = begin(h, "tx", "changelog")
    builder = BatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=0, transactional=True)
    builder.append(b"v", b"k", timestamp_ms=int(time.time() * 1000))
    assert produce(h, "changelog", builder.build(), tid="tx").error_code == ErrorCode.none
    assert end(h, "tx", pid, epoch, True) == ErrorCode.none
    assert fetch(h, "changelog").last_stable_offset == 2


def test_the_last_stable_offset_never_falls_below_the_log_start(h):
    create(h, "t")
    pid, epoch = begin(h, "tx", "t")
    produce(h, "t", txn_batch(pid, epoch, 0, [b"a", b"b"]), tid="tx")
    h.broker.delete_records("t", 0, 2)
    part = fetch(h, "t", offset=2)
    assert (part.log_start_offset, part.last_stable_offset) == (2, 2)
