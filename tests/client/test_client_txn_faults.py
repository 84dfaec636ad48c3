"""The transactional producer against the real broker in this process, with injected answers:
what is retried (CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, a
lost answer), what is fatal (fencing) and what only ends the transaction (TRANSACTION_ABORTABLE)."""

from __future__ import annotations

import pytest
import trio

from logbroker.client import Consumer, Producer
from logbroker.errors import ProducerFencedError, TransactionAbortableError
from logbroker.protocol import ApiKey, ErrorCode, build

from client_fakes import once, produce_error


def _options(inproc, **kw):
    return {"connector": inproc.connector, "retry_backoff_ms": 10, "linger_ms": 0, **kw}


def _key(api_key):
    return lambda request: request.api_key == api_key


def _top_error(code, **fields):
    """An answer whose only content is a top-level error code (InitProducerId, EndTxn, AddOffsetsToTxn)."""
    def answer(request):
        m = request.response_module
        cls = next(getattr(m, n) for n in dir(m) if n.endswith("Response") and n != "ResponseHeader")
        return build(cls, throttle_time=0, error_code=code, producer_id=-1, producer_epoch=-1, **fields)
    return answer


def _find_coordinator_error(code):
    def answer(request):
        m = request.response_module
        return build(m.FindCoordinatorResponse, throttle_time=0, error_code=code, error_message=None, node_id=-1,
                     host="", port=-1, coordinators=[])
    return answer


def _add_partitions_error(code):
    def answer(request):
        m = request.response_module
        body = request.body
        return build(m.AddPartitionsToTxnResponse, throttle_time=0, results_by_topic_v3_and_below=[
            build(m.AddPartitionsToTxnTopicResult, name=t.name, results_by_partition=[
                build(m.AddPartitionsToTxnPartitionResult, partition_index=p, partition_error_code=code)
                for p in t.partitions])
            for t in body.v3_and_below_topics])
    return answer


async def _committed_values(inproc, topic: str) -> list[bytes]:
    async with Consumer("inproc:9092", connector=inproc.connector, auto_offset_reset="earliest",
                        isolation_level="read_committed", fetch_max_wait_ms=50) as consumer:
        consumer.assign([(topic, 0)])
        out = []
        with trio.move_on_after(1):
            while True:
                out.extend(r.value for r in await consumer.getmany())
        return out


async def test_coordinator_answers_worth_retrying_are_retried(inproc):
    seen = []
    inproc.inject(lambda r: seen.append((r.api_key, getattr(r.body, "key_type", None))) or None)
    inproc.inject(once(_key(ApiKey.FIND_COORDINATOR), _find_coordinator_error(ErrorCode.coordinator_load_in_progress)))
    inproc.inject(once(_key(ApiKey.INIT_PRODUCER_ID), _top_error(ErrorCode.concurrent_transactions), times=2))
    inproc.inject(once(_key(ApiKey.ADD_PARTITIONS_TO_TXN), _add_partitions_error(ErrorCode.concurrent_transactions)))
    inproc.inject(once(_key(ApiKey.ADD_PARTITIONS_TO_TXN), lambda r: "lose-answer"))
    inproc.inject(once(_key(ApiKey.END_TXN), _top_error(ErrorCode.not_coordinator)))
    with trio.fail_after(20):
        async with Producer("inproc:9092", transactional_id="retries", **_options(inproc)) as producer:
            await producer.init_transactions()
            await producer.begin_transaction()
            await producer.send("retried", b"one", partition=0)
            await producer.commit_transaction()
        assert await _committed_values(inproc, "retried") == [b"one"]
    assert (ApiKey.FIND_COORDINATOR, 1) in seen  # the transaction coordinator: key type 1
    assert [k for k, _ in seen].count(ApiKey.INIT_PRODUCER_ID) == 3
    assert [k for k, _ in seen].count(ApiKey.ADD_PARTITIONS_TO_TXN) >= 3
    assert [k for k, _ in seen].count(ApiKey.END_TXN) == 2


@pytest.mark.parametrize("code", [ErrorCode.invalid_producer_epoch, ErrorCode.producer_fenced])
async def test_fencing_on_produce_is_fatal(inproc, code):
    inproc.inject(once(_key(ApiKey.PRODUCE), produce_error(code)))
    with trio.fail_after(20):
        async with Producer("inproc:9092", transactional_id=f"fenced-{code.name}", **_options(inproc)) as producer:
            await producer.begin_transaction()
            delivery = await producer.send("fenced", b"x", partition=0)
            with pytest.raises(ProducerFencedError):
                await delivery
            with pytest.raises(ProducerFencedError):
                await producer.commit_transaction()
            with pytest.raises(ProducerFencedError):
                await producer.abort_transaction()
            with pytest.raises(ProducerFencedError):
                await producer.send("fenced", b"y", partition=0)


async def test_transaction_abortable_from_end_txn_leaves_the_producer_usable(inproc):
    inproc.inject(once(_key(ApiKey.END_TXN), _top_error(ErrorCode.transaction_abortable)))
    with trio.fail_after(20):
        async with Producer("inproc:9092", transactional_id="abortable", **_options(inproc)) as producer:
            await producer.begin_transaction()
            await producer.send("abortable", b"lost", partition=0)
            with pytest.raises(TransactionAbortableError):
                await producer.commit_transaction()
            await producer.abort_transaction()
            await producer.begin_transaction()
            await producer.send("abortable", b"kept", partition=0)
            await producer.commit_transaction()
        assert await _committed_values(inproc, "abortable") == [b"kept"]


async def test_a_partition_refused_by_add_partitions_fails_its_records(inproc):
    inproc.inject(once(_key(ApiKey.ADD_PARTITIONS_TO_TXN),
                       _add_partitions_error(ErrorCode.topic_authorization_failed)))
    with trio.fail_after(20):
        async with Producer("inproc:9092", transactional_id="refused", **_options(inproc)) as producer:
            await producer.begin_transaction()
            delivery = await producer.send("refused", b"x", partition=0)
            with pytest.raises(TransactionAbortableError):
                await producer.commit_transaction()
            assert delivery.exception() is not None
            await producer.abort_transaction()
            await producer.begin_transaction()
            await producer.send("refused", b"y", partition=0)
            await producer.commit_transaction()
        assert await _committed_values(inproc, "refused") == [b"y"]
