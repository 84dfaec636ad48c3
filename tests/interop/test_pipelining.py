"""Pipelined requests on one connection against ``logbroker serve``.

The broker answers every complete request it has received before sending, and
sends the ready answers together; answers stay in request order, and a
request that waits (a long-poll Fetch) never holds back the answers to the
requests before it.
"""

from __future__ import annotations

import socket
import struct
import time

from interop_support import create_topic

from logbroker.protocol import build, decode_response, encode_request, request_module
from logbroker.records import build_batch, decode_batches

PRODUCE, FETCH, METADATA = 0, 1, 3


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _read_response(sock: socket.socket, api_key: int, version: int):
    (size,) = struct.unpack(">i", _read_exact(sock, 4))
    return decode_response(api_key, version, _read_exact(sock, size))


def _produce(topic: str, partition: int, correlation_id: int, value: bytes) -> bytes:
    m = request_module(PRODUCE, 9)
    data = build(m.PartitionProduceData, index=partition, records=build_batch([(None, value, (), 1_000)]))
    body = build(m.ProduceRequest, transactional_id=None, acks=1, timeout=5000,
                 topic_data=[build(m.TopicProduceData, name=topic, partition_data=[data])])
    return encode_request(PRODUCE, 9, correlation_id, "pipelining", body)


def _fetch(topic: str, partition: int, offset: int, correlation_id: int, max_wait_ms: int) -> bytes:
    m = request_module(FETCH, 12)
    part = build(m.FetchPartition, partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20,
                 current_leader_epoch=-1, last_fetched_epoch=-1, log_start_offset=-1)
    body = build(m.FetchRequest, replica_id=-1, max_wait=max_wait_ms, min_bytes=1, max_bytes=1 << 20,
                 isolation_level=0, session_id=0, session_epoch=-1,
                 topics=[build(m.FetchTopic, topic=topic, partitions=[part])], forgotten_topics_data=[],
                 rack_id="")
    return encode_request(FETCH, 12, correlation_id, "pipelining", body)


def _metadata(correlation_id: int) -> bytes:
    m = request_module(METADATA, 1)
    return encode_request(METADATA, 1, correlation_id, "pipelining", build(m.MetadataRequest, topics=None))


def test_pipelined_requests_are_answered_in_order(module_broker, topic):
    create_topic(module_broker.bootstrap, topic, partitions=2)
    with _connect(module_broker.port) as sock:
        frames = [_produce(topic, i % 2, i, b"v%d" % i) for i in range(1, 101)]
        frames.insert(50, _metadata(1000))
        sock.sendall(b"".join(frames))  # one write: the broker sees many frames at once
        offsets = {0: [], 1: []}
        for i in range(1, 101):
            if i == 51:
                correlation_id, body = _read_response(sock, METADATA, 1)
                assert correlation_id == 1000 and body.brokers
            correlation_id, body = _read_response(sock, PRODUCE, 9)
            assert correlation_id == i
            answer = body.responses[0].partition_responses[0]
            assert answer.error_code == 0
            offsets[answer.index].append(answer.base_offset)
        assert offsets == {0: list(range(50)), 1: list(range(50))}


def test_a_waiting_fetch_does_not_hold_back_earlier_answers(module_broker, topic):
    create_topic(module_broker.bootstrap, topic, partitions=2)
    with _connect(module_broker.port) as sock:
        started = time.monotonic()
        # Produce, then a long poll on the empty partition 1, then another produce:
        # sent together, so all three frames are read by the broker at once.
        sock.sendall(_produce(topic, 0, 1, b"first") + _fetch(topic, 1, 0, 2, max_wait_ms=1500)
                     + _produce(topic, 0, 3, b"after"))
        correlation_id, body = _read_response(sock, PRODUCE, 9)
        assert correlation_id == 1 and body.responses[0].partition_responses[0].base_offset == 0
        assert time.monotonic() - started < 1.0  # not behind the fetch's 1.5 s wait
        correlation_id, body = _read_response(sock, FETCH, 12)
        assert correlation_id == 2 and len(body.responses[0].partitions[0].records or b"") == 0
        assert time.monotonic() - started >= 1.4  # the fetch waited its max_wait out
        correlation_id, body = _read_response(sock, PRODUCE, 9)
        assert correlation_id == 3 and body.responses[0].partition_responses[0].base_offset == 1


def test_a_long_poll_is_answered_when_another_connection_produces(module_broker, topic):
    create_topic(module_broker.bootstrap, topic, partitions=1)
    with _connect(module_broker.port) as consumer, _connect(module_broker.port) as producer:
        started = time.monotonic()
        consumer.sendall(_fetch(topic, 0, 0, 1, max_wait_ms=5000))
        time.sleep(0.2)  # the fetch is waiting now
        producer.sendall(_produce(topic, 0, 1, b"wake"))
        assert _read_response(producer, PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == 0
        correlation_id, body = _read_response(consumer, FETCH, 12)
        assert correlation_id == 1 and time.monotonic() - started < 2.0
        (batch,) = decode_batches(bytes(body.responses[0].partitions[0].records))
        assert batch.records[0].value == b"wake"


def _produce_to_all(topic: str, values: list[bytes], correlation_id: int) -> bytes:
    m = request_module(PRODUCE, 9)
    data = [build(m.PartitionProduceData, index=i, records=build_batch([(None, v, (), 1_000)]))
            for i, v in enumerate(values)]
    body = build(m.ProduceRequest, transactional_id=None, acks=1, timeout=5000,
                 topic_data=[build(m.TopicProduceData, name=topic, partition_data=data)])
    return encode_request(PRODUCE, 9, correlation_id, "pipelining", body)


def test_a_large_request_that_arrives_in_pieces_is_answered(module_broker, topic):
    # The broker waits for the rest of a large frame with SO_RCVLOWAT (at most
    # 2 MiB of it); pieces smaller than what it waits for, with pauses between
    # them, must still add up to an answer, and so must a frame that arrives
    # all at once next.
    create_topic(module_broker.bootstrap, topic, partitions=3)
    first = [bytes([i]) * (1_000_000 - i) for i in range(3)]  # a 3 MB frame
    with _connect(module_broker.port) as sock:
        frame = _produce_to_all(topic, first, 1)
        for start in range(0, len(frame), 300_000):
            sock.sendall(frame[start : start + 300_000])
            time.sleep(0.03)
        correlation_id, body = _read_response(sock, PRODUCE, 9)
        assert correlation_id == 1
        assert [p.error_code for p in body.responses[0].partition_responses] == [0, 0, 0]
        sock.sendall(_produce_to_all(topic, [b"second" * 100_000], 2) + _fetch(topic, 0, 0, 3, max_wait_ms=0))
        correlation_id, body = _read_response(sock, PRODUCE, 9)
        assert correlation_id == 2 and body.responses[0].partition_responses[0].base_offset == 1
        correlation_id, body = _read_response(sock, FETCH, 12)
        batch = next(iter(decode_batches(bytes(body.responses[0].partitions[0].records))))
        assert correlation_id == 3 and batch.records[0].value == first[0]


def test_a_peer_that_hangs_up_inside_a_large_request_is_let_go(module_broker, topic):
    create_topic(module_broker.bootstrap, topic, partitions=1)
    frame = _produce(topic, 0, 1, b"x" * 1_000_000)
    with _connect(module_broker.port) as sock:
        sock.sendall(frame[: len(frame) // 3])
        time.sleep(0.1)
        sock.shutdown(socket.SHUT_WR)  # EOF with two thirds missing: readable despite SO_RCVLOWAT
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the broker closed its end, it did not wait for the rest
    with _connect(module_broker.port) as sock:  # and it still serves
        sock.sendall(_metadata(7))
        assert _read_response(sock, METADATA, 1)[0] == 7
