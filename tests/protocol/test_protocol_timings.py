"""Hot-path costs, printed (run with ``-s``), never asserted: CI machines vary."""

from __future__ import annotations

import mmap
import timeit

from typing import Any

from kafka.protocol.producer import ProduceRequest as KpProduce
from kio.index import load_request_schema
from kio.serial import entity_reader

from logbroker.protocol import ApiKey
from logbroker.protocol import ErrorCode
from logbroker.protocol import Request
from logbroker.protocol import build
from logbroker.protocol import decode_request
from logbroker.protocol import encode_response
from logbroker.protocol import response_module


def _best_us(func: Any, number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=7)) / number * 1e6


def _produce_v9_payload() -> bytes:
    cls = KpProduce[9]
    request = cls(
        transactional_id=None,
        acks=-1,
        timeout_ms=30000,
        topic_data=[
            cls.TopicProduceData(
                name="orders",
                partition_data=[
                    cls.TopicProduceData.PartitionProduceData(index=0, records=b"r" * 65536)
                ],
            )
        ],
    )
    request.with_header(correlation_id=1, client_id="kp")
    return bytes(request.encode(header=True, framed=True))[4:]


def test_decode_produce_v9_with_a_64k_batch() -> None:
    payload = _produce_v9_payload()
    ours = _best_us(lambda: decode_request(payload), 2000)
    cls = load_request_schema(0, 9)
    header_reader = entity_reader(cls.__header_schema__)
    body_reader = entity_reader(cls)

    def native() -> None:
        _, size = header_reader(payload, 0)
        body_reader(payload, size)

    raw = _best_us(native, 2000)
    print(
        f"\ndecode_request Produce v9, 1 partition, 64 KiB: {ours:.1f} us "
        f"(kio native alone, unsafe: {raw:.1f} us)"
    )


def test_encode_fetch_v12_with_six_64k_memoryview_records() -> None:
    size = 64 * 1024
    mapped = mmap.mmap(-1, 6 * size)
    views = [memoryview(mapped)[i * size : (i + 1) * size] for i in range(6)]
    m = response_module(ApiKey.FETCH, 12)
    partitions = tuple(
        m.PartitionData(
            partition_index=i,
            error_code=ErrorCode.none,
            high_watermark=1000,
            last_stable_offset=1000,
            log_start_offset=0,
            aborted_transactions=None,
            records=view,  # type: ignore[arg-type]
        )
        for i, view in enumerate(views)
    )
    body = build(
        m.FetchResponse,
        throttle_time=0,
        error_code=ErrorCode.none,
        session_id=0,
        responses=[m.FetchableTopicResponse(topic="orders", partitions=partitions)],
    )
    request = Request(
        api_key=ApiKey.FETCH,
        api_version=12,
        correlation_id=1,
        client_id="c",
        body=None,
        response_class=m.FetchResponse,
    )
    encode_us = _best_us(lambda: encode_response(request, body), 2000)
    buffers = encode_response(request, body)
    print(
        f"\nencode_response Fetch v12, 6 x 64 KiB memoryview records: {encode_us:.1f} us, "
        f"{len(buffers)} buffers, {sum(map(len, buffers))} bytes"
    )
