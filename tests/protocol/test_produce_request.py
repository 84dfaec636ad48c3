"""The hand-written Produce request reader against kio's, for every version it reads."""

from __future__ import annotations

import datetime
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema
from kio.serial import entity_writer
from kio.static.primitive import i16, i32

from logbroker.errors import ProtocolError
from logbroker.protocol import decode_request
from logbroker.protocol._reader import entity_reader
from logbroker.protocol.produce_request import PRODUCE_REQUEST_VERSIONS, read_produce_request

_partition = st.tuples(st.integers(-(2**31), 2**31 - 1), st.one_of(st.none(), st.binary(max_size=300)))
_topic = st.tuples(st.text(min_size=1, max_size=20), st.lists(_partition, max_size=4))
_body = st.tuples(st.one_of(st.none(), st.text(max_size=20)), st.sampled_from([-1, 0, 1, 2]),
                  st.integers(0, 2**31 - 1), st.lists(_topic, max_size=4))


def _kio_payload(version: int, body: tuple) -> tuple[bytes, object]:
    """Header + body as kio writes them, and kio's object of the body."""
    cls = load_request_schema(0, version)
    module = __import__(cls.__module__, fromlist=["x"])
    transactional_id, acks, timeout_ms, topics = body
    request = cls(
        transactional_id=transactional_id, acks=i16(acks), timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(
            module.TopicProduceData(name=name, partition_data=tuple(
                module.PartitionProduceData(index=i32(index), records=records) for index, records in partitions))
            for name, partitions in topics),
    )
    header_cls = cls.__header_schema__
    header = header_cls(request_api_key=i16(0), request_api_version=i16(version), correlation_id=i32(7),
                        client_id="test")
    out = io.BytesIO()
    entity_writer(header_cls)(out, header)
    entity_writer(cls)(out, request)
    return out.getvalue(), request


def _fields(body) -> tuple:
    return (body.transactional_id, int(body.acks), body.timeout,
            [(t.name, [(int(p.index), None if p.records is None else bytes(p.records)) for p in t.partition_data])
             for t in body.topic_data])


@pytest.mark.parametrize("version", list(PRODUCE_REQUEST_VERSIONS))
@settings(max_examples=40, deadline=None)
@given(body=_body)
def test_fields_equal_kio_s(version: int, body: tuple) -> None:
    payload, _ = _kio_payload(version, body)
    ours = decode_request(payload).body
    cls = load_request_schema(0, version)
    header, header_size = entity_reader(cls.__header_schema__)(payload, 0)
    kio_body, _ = entity_reader(cls)(payload, header_size)
    assert _fields(ours) == _fields(kio_body)
    for topic in ours.topic_data:
        for partition in topic.partition_data:
            assert partition.records is None or isinstance(partition.records, memoryview)


def test_records_are_a_slice_of_the_frame_not_a_copy() -> None:
    payload, _ = _kio_payload(9, (None, -1, 1000, [("orders", [(0, b"x" * 5000)])]))
    frame = memoryview(bytearray(payload)).toreadonly()
    records = decode_request(frame).body.topic_data[0].partition_data[0].records
    assert records.obj is frame.obj and bytes(records) == b"x" * 5000


@pytest.mark.parametrize("version", [3, 8, 9])
def test_every_truncation_is_a_protocol_error(version: int) -> None:
    payload, _ = _kio_payload(version, ("txn", -1, 1000, [("orders", [(0, b"abc"), (1, None)]), ("t", [])]))
    _, header_size = entity_reader(load_request_schema(0, version).__header_schema__)(payload, 0)
    for cut in range(header_size, len(payload) - (1 if version >= 9 else 0)):
        with pytest.raises(ProtocolError):
            read_produce_request(payload[:cut], header_size, version)


def test_a_huge_array_count_is_refused_before_any_allocation() -> None:
    payload, _ = _kio_payload(3, (None, 1, 1000, []))
    forged = payload[:-4] + (2**31 - 1).to_bytes(4, "big")  # topic count
    with pytest.raises(ProtocolError, match="cannot fit"):
        decode_request(forged)


def test_unknown_tagged_fields_are_skipped_in_v9() -> None:
    payload, _ = _kio_payload(9, (None, 1, 1000, [("orders", [(0, b"abc")])]))
    # The body's own tagged fields are the last byte (0 of them): replace with one unknown tag.
    tagged = payload[:-1] + b"\x01\x63\x03xyz"
    body = decode_request(tagged).body
    assert bytes(body.topic_data[0].partition_data[0].records) == b"abc"
