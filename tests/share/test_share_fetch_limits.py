"""How much one ShareFetch acquires, as Kafka 4.2 decides it (DelayedShareFetch,
PartitionMaxBytesStrategy UNIFORM, ReplicaManager.readFromLog's minOneMessage,
SharePartition.acquire): MaxBytes split evenly over the partitions that can
acquire, a batch that does not fit is left for the next fetch (the response's
first batch always fits), MaxBytes 0 acquires nothing, MaxRecords counts whole
batches. Over the coordinator with explicit time, then the error on the wire."""

from __future__ import annotations

from logbroker.broker.share import AVAILABLE, ShareError

E = ShareError
T0 = 1_000_000


def setup(env, partitions=1):
    env.topic("t", partitions)
    env.share.alter_configs("g", {"share.auto.offset.reset": "earliest"}, T0)


def acquire(env, max_bytes, *, partitions=(0,), max_records=500, member="m"):
    share = env.share
    session = share.sessions.get("g", member)
    epoch = session.epoch if session is not None else 0
    result, session = share.open_session("g", member, epoch, [("t", p) for p in partitions], [], T0)
    assert result.error is E.NONE
    out = share.acquire("g", member, list(session.partitions), max_records, max_bytes, T0)
    share.commit(T0)
    return {d.partition: d for d in out}


def batch_sizes(env, partition=0) -> list[int]:
    from logbroker.records import iter_batches

    data = env.broker.partition("t", partition).read(0, 1 << 20).records
    return [h.size for _, h in iter_batches(data)]


def acquired(d) -> list[tuple[int, int]]:
    return [(r.first, r.last) for r in d.acquired]


def test_max_bytes_one_still_returns_the_first_batch_and_only_it(env):
    setup(env)
    env.produce("t", [f"v{i}" for i in range(10)], per_batch=1)
    for i in range(10):  # librdkafka 0180: fetch.max.bytes=1 drains one batch per fetch
        (d,) = acquire(env, 1).values()
        assert acquired(d) == [(i, i)] and len(d.records) == batch_sizes(env)[i]
    assert acquire(env, 1) == {}


def test_a_batch_that_does_not_fit_is_left_for_the_next_fetch(env):
    setup(env)
    env.produce("t", [f"v{i}" for i in range(10)], per_batch=1)
    size = batch_sizes(env)[0]
    (d,) = acquire(env, 3 * size + size // 2).values()
    assert acquired(d) == [(0, 2)] and len(d.records) == 3 * size
    (d,) = acquire(env, 3 * size).values()  # exactly three fit
    assert acquired(d) == [(3, 5)]


def test_a_batch_with_nothing_to_acquire_costs_no_bytes(env):
    setup(env)
    env.produce("t", [f"v{i}" for i in range(4)], per_batch=1)
    size = batch_sizes(env)[0]
    acquire(env, 1, member="other")  # offset 0 is held by another member
    (d,) = acquire(env, 2 * size).values()
    assert acquired(d) == [(1, 2)]


def test_max_bytes_is_split_evenly_over_the_partitions(env):
    setup(env, 2)
    for p in (0, 1):
        env.produce("t", [f"p{p}-{i}" for i in range(6)], partition=p, per_batch=1)
    size = batch_sizes(env)[0]
    got = acquire(env, 4 * size + 1, partitions=(0, 1))
    # each partition's share is two batches: the first may not take all four
    assert {p: acquired(d) for p, d in got.items()} == {0: [(0, 1)], 1: [(0, 1)]}


def test_a_partition_at_its_record_lock_limit_takes_no_share_of_the_bytes(make_env):
    env = make_env(group_share_partition_max_record_locks=100)
    setup(env, 2)
    for p in (0, 1):
        env.produce("t", [f"p{p}-{i}" for i in range(120)], partition=p, per_batch=10)
    four = sum(batch_sizes(env, 1)[:4])
    first = acquire(env, 1 << 20, partitions=(0,), max_records=100, member="other")
    assert acquired(first[0]) == [(0, 99)]  # partition 0's window is full now
    got = acquire(env, four, partitions=(0, 1))
    # partition 0 cannot acquire, so partition 1 gets all the bytes, not half
    assert {p: acquired(d) for p, d in got.items()} == {1: [(0, 39)]}


def test_max_bytes_zero_acquires_nothing_and_says_why(env):
    setup(env)
    env.produce("t", ["a", "b"], per_batch=1)
    (d,) = acquire(env, 0).values()
    assert d.error is E.UNKNOWN_SERVER_ERROR and not d.acquired
    assert d.message == "Request max bytes must be greater than 0"
    assert env.share.share_partition("g", "t", 0).record(0)[0] == AVAILABLE


def test_max_records_counts_whole_batches(env):
    setup(env)
    env.produce("t", [f"v{i}" for i in range(12)], per_batch=3)
    (d,) = acquire(env, 1 << 20, max_records=4).values()
    assert acquired(d) == [(0, 5)]  # the second batch passes 4: Kafka acquires it whole
    (d,) = acquire(env, 1 << 20, max_records=3).values()
    assert acquired(d) == [(6, 8)]
