"""An idempotent producer goes on after a batch the broker refused for good.

The client numbers a partition's batches (producer id, epoch, base sequence)
when it first sends them; a batch the broker refuses (MESSAGE_TOO_LARGE,
INVALID_RECORD...) is never written, so the numbers it took must be given to
the batches after it, or the next one fails OUT_OF_ORDER_SEQUENCE_NUMBER. A
batch of several records refused as too large is split and sent again, so only
the records too large fail. Against ``logbroker serve`` (``broker_factory``),
plus injected answers on the in-process broker for the cases a real broker
cannot be made to give on demand (INVALID_RECORD, a connection lost before the
broker read the request).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import trio

from logbroker.client import Consumer, Producer
from logbroker.errors import (
    KafkaConnectionError,
    KafkaError,
    RecordTooLargeError,
    TransactionAbortableError,
)
from logbroker.protocol import ApiKey, ErrorCode

from client_fakes import once, produce_error
from client_support import create_topic

SMALL = 300
BIG = 5000  # the topics here take batches of at most 1000 bytes


async def _read(bootstrap: str, topic: str, partitions: int, expected: int, *, connector=None, **kw) -> list:
    """Every record of ``topic`` once ``expected`` arrived, sorted by (partition, offset); checks that no more come."""
    extra = {"connector": connector} if connector is not None else {}
    async with Consumer(bootstrap, auto_offset_reset="earliest", **extra, **kw) as consumer:
        consumer.assign([(topic, p) for p in range(partitions)])
        got: list = []
        with trio.move_on_after(20):
            while len(got) < expected:
                got.extend(await consumer.getmany())
        with trio.move_on_after(0.5):
            while True:
                got.extend(await consumer.getmany())
    assert len(got) == expected, f"{len(got)} records of {expected}"
    return sorted(got, key=lambda r: (r.partition, r.offset))


def _check_partitions(records: list, sent: dict[int, list[bytes]]) -> None:
    """Each partition holds exactly the values sent to it, in order, at offsets 0, 1, 2... (no gap, no duplicate)."""
    for partition, values in sent.items():
        mine = [r for r in records if r.partition == partition]
        assert [r.offset for r in mine] == list(range(len(values))), partition
        assert [r.value for r in mine] == values, partition


async def test_a_refused_batch_then_a_small_one_to_the_same_partition(broker_factory):
    lb = broker_factory()
    await create_topic(lb.bootstrap, "refused", 1, max_message_bytes="1000")
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, linger_ms=0, max_request_size=100_000, batch_size=50_000) as producer:
            assert (await (await producer.send("refused", b"first", partition=0))).offset == 0
            with pytest.raises(RecordTooLargeError, match="MESSAGE_TOO_LARGE"):
                await (await producer.send("refused", b"x" * BIG, partition=0))
            assert (await (await producer.send("refused", b"second", partition=0))).offset == 1  # was OUT_OF_ORDER
            with pytest.raises(RecordTooLargeError):  # and again, with nothing written in between
                await (await producer.send("refused", b"y" * BIG, partition=0))
            with pytest.raises(RecordTooLargeError):
                await (await producer.send("refused", b"z" * BIG, partition=0))
            assert (await (await producer.send("refused", b"third", partition=0))).offset == 2
            stats = producer.statistics()
            assert (stats.records_sent, stats.records_failed) == (3, 3)
        records = await _read(lb.bootstrap, "refused", 1, 3)
    _check_partitions(records, {0: [b"first", b"second", b"third"]})


async def test_refused_batches_with_later_batches_in_flight(broker_factory):
    """Several partitions, five requests in flight: the batches sent after a refused one
    carry numbers the broker does not expect yet; they are renumbered and sent again."""
    lb = broker_factory()
    partitions = 3
    await create_topic(lb.bootstrap, "inflight", partitions, max_message_bytes="1000")
    sent: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    deliveries = []
    with trio.fail_after(90):
        # batch_size: a big record is a batch of its own; small ones go three or so to a batch
        async with Producer(lb.bootstrap, linger_ms=0, max_in_flight=5, batch_size=700,
                            max_request_size=100_000) as producer:
            for i in range(600):
                partition = i % partitions
                big = i % 37 == 5
                value = b"%05d-" % i + (b"b" * BIG if big else b"s" * SMALL)
                deliveries.append((big, value, await producer.send("inflight", value, partition=partition)))
                if not big:
                    sent[partition].append(value)
                if i % 50 == 49:
                    await trio.lowlevel.checkpoint()  # let the sender go on while more are queued: requests pile up
            for big, value, delivery in deliveries:
                if big:
                    with pytest.raises(RecordTooLargeError):
                        await delivery
                else:
                    meta = await delivery
                    assert sent[meta.partition][meta.offset] == value
            stats = producer.statistics()
            assert stats.records_failed == sum(big for big, _, _ in deliveries)
            assert stats.retries > 0  # batches in flight after a refused one were sent again
        records = await _read(lb.bootstrap, "inflight", partitions, sum(map(len, sent.values())))
    _check_partitions(records, sent)


@pytest.mark.parametrize("compression", ["none", "lz4"])
async def test_a_batch_too_large_is_split_and_only_the_big_records_fail(broker_factory, compression):
    """One batch (send_many) mixing small and big records: the broker refuses it whole; the
    producer splits it until the small records fit and only the big ones fail."""
    lb = broker_factory()
    await create_topic(lb.bootstrap, "split", 1, max_message_bytes="1000")
    # random bytes: compressed, a big record is still too large and two small ones still too many
    values = [b"%03d-" % i + os.urandom(BIG if i % 5 == 2 else SMALL) for i in range(40)]
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, linger_ms=50, max_request_size=1_000_000,
                            compression=compression) as producer:
            before = await producer.send("split", b"before", partition=0)
            singles = [await producer.send("split", v, partition=0) for v in values]
            bulk = await producer.send_many("split", values, partition=0)
            after = await producer.send("split", b"after", partition=0)
            assert (await before).offset == 0
            small = [v for v in values if len(v) < BIG]
            for value, delivery in zip(values, singles):
                if len(value) > BIG:
                    with pytest.raises(RecordTooLargeError):
                        await delivery
                else:
                    assert (await delivery).offset == 1 + small.index(value)
            with pytest.raises(RecordTooLargeError):
                await bulk
            assert bulk.done() and isinstance(bulk.exception(), RecordTooLargeError)
            assert (await after).offset == 1 + 2 * len(small)
        records = await _read(lb.bootstrap, "split", 1, 2 + 2 * len(small))
    _check_partitions(records, {0: [b"before", *small, *small, b"after"]})


async def test_a_transactional_producer_aborts_and_goes_on(broker_factory):
    """For a transactional producer a refused batch makes the transaction abortable; once
    aborted (the epoch is bumped) the next transaction writes to the same partition."""
    lb = broker_factory()
    await create_topic(lb.bootstrap, "txn", 1, max_message_bytes="1000")
    with trio.fail_after(60):
        async with Producer(lb.bootstrap, transactional_id="txn-refused", linger_ms=0,
                            max_request_size=100_000) as producer:
            await producer.init_transactions()
            await producer.begin_transaction()
            await (await producer.send("txn", b"one", partition=0))
            await producer.commit_transaction()
            await producer.begin_transaction()
            await producer.send("txn", b"aborted", partition=0)
            await producer.send("txn", b"x" * BIG, partition=0)
            with pytest.raises(TransactionAbortableError):
                await producer.commit_transaction()
            await producer.abort_transaction()
            await producer.begin_transaction()
            await (await producer.send("txn", b"two", partition=0))
            await producer.commit_transaction()
        records = await _read(lb.bootstrap, "txn", 1, 2, isolation_level="read_committed")
    assert [r.value for r in records] == [b"one", b"two"]


def test_cli_sends_every_short_line_and_reports_the_long_ones(broker_factory):
    """``logbroker produce T --max-message-bytes 100000`` on a topic that takes 1000: every
    short line is sent, the long ones are reported failed, exit status 1."""
    lb = broker_factory()
    trio.run(functools.partial(create_topic, lb.bootstrap, "cli", 2, max_message_bytes="1000"))
    lines = [b"%03d:" % i + (b"L" * BIG if i % 3 == 1 else b"s" * 500) for i in range(60)]
    short = [line for line in lines if len(line) < BIG]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
    done = subprocess.run([sys.executable, "-m", "logbroker", "produce", "cli", "-b", lb.bootstrap,
                           "--max-message-bytes", "100000"], input=b"\n".join(lines) + b"\n",
                          capture_output=True, timeout=120, env=env, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    failed = len(lines) - len(short)
    assert f"produced {len(short)} records to cli" in stderr and f", {failed} failed in " in stderr, stderr
    assert "MESSAGE_TOO_LARGE" in stderr and "OUT_OF_ORDER" not in stderr and "Traceback" not in stderr
    records = trio.run(_read, lb.bootstrap, "cli", 2, len(short))
    assert sorted(r.value for r in records) == short  # each short line once
    for partition in (0, 1):  # in the order read, at offsets without gaps
        mine = [r for r in records if r.partition == partition]
        assert [r.offset for r in mine] == list(range(len(mine)))
        assert [r.value for r in mine] == sorted(r.value for r in mine)


# -- injected answers (the broker in this process) ----------------------------------------


def _is_produce(request) -> bool:
    return request.api_key == ApiKey.PRODUCE


class _nth_produce:
    """Answers the ``n``-th Produce (1-based) with ``answer``, leaves the others to the broker."""

    def __init__(self, n: int, answer) -> None:
        self.n = n
        self.seen = 0
        self.answer = answer

    def __call__(self, request):
        if not _is_produce(request):
            return None
        self.seen += 1
        return self.answer(request) if self.seen == self.n else None


async def test_invalid_record_with_later_batches_in_flight(inproc):
    """INVALID_RECORD for one request while the next ones are in flight: that batch fails, the
    batches after it are renumbered, and the partition has every other record once, in order."""
    inproc.inject(_nth_produce(3, produce_error(ErrorCode.invalid_record)))
    sent: list[bytes] = []
    with trio.fail_after(60):
        async with Producer("inproc:9092", connector=inproc.connector, retry_backoff_ms=10, linger_ms=0,
                            batch_size=1000, max_in_flight=5) as producer:
            deliveries = [await producer.send("invalid", b"%04d" % i + b"v" * 200, partition=0) for i in range(200)]
            failed = 0
            for i, delivery in enumerate(deliveries):
                try:
                    meta = await delivery
                except KafkaError as exc:
                    assert exc.code == ErrorCode.invalid_record
                    failed += 1
                else:
                    assert meta.offset == len(sent)
                    sent.append(b"%04d" % i + b"v" * 200)
            assert 0 < failed < 10  # one batch
            assert producer.statistics().retries > 0
        records = await _read("inproc:9092", "invalid", 1, len(sent), connector=inproc.connector)
    _check_partitions(records, {0: sent})


async def test_a_batch_lost_with_the_connection_bumps_the_epoch(inproc):
    """A batch whose request never reached the broker, failed without retries: nothing says
    whether it was written, so the producer bumps its epoch and the next batch starts at 0."""
    with trio.fail_after(60):
        async with Producer("inproc:9092", connector=inproc.connector, retry_backoff_ms=10, linger_ms=0,
                            retries=0) as producer:
            await (await producer.send("lost", b"one", partition=0))
            inproc.inject(once(_is_produce, lambda r: "hang-up"))
            with pytest.raises(KafkaConnectionError):
                await (await producer.send("lost", b"lost", partition=0))
            assert (await (await producer.send("lost", b"two", partition=0))).offset == 1  # was OUT_OF_ORDER
        records = await _read("inproc:9092", "lost", 1, 2, connector=inproc.connector)
    _check_partitions(records, {0: [b"one", b"two"]})
