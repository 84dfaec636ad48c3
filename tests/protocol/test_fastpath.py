"""The fast Produce/Fetch response encoders write exactly what kio writes."""

from __future__ import annotations

import mmap
import struct

import pytest

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from kio.index import load_response_schema

from logbroker.errors import LocalProtocolError
from logbroker.protocol import FETCH_VERSIONS
from logbroker.protocol import PRODUCE_VERSIONS
from logbroker.protocol import SUPPORTED_VERSIONS
from logbroker.protocol.legacy import LEGACY_VERSIONS
from logbroker.protocol import ZERO_COPY_MIN
from logbroker.protocol import ApiKey
from logbroker.protocol import Encoded
from logbroker.protocol import ErrorCode
from logbroker.protocol import FetchPartition
from logbroker.protocol import ProducePartition
from logbroker.protocol import Request
from logbroker.protocol import build
from logbroker.protocol import decode_response
from logbroker.protocol import encode_fetch_response
from logbroker.protocol import encode_produce_response
from logbroker.protocol import encode_response
from logbroker.protocol import response_module
from logbroker.protocol.fastpath import _ZERO_COPY_MIN

INT16 = st.integers(-(2**15), 2**15 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
# kio writes datetimes through a float: stay within years 1970..9999, or -1.
APPEND_TIME = st.just(-1) | st.integers(0, 253_402_300_799_999)
NAMES = st.text(max_size=40)
ERRORS = st.sampled_from(list(ErrorCode))


def _request(key: ApiKey, version: int, correlation_id: int) -> Request:
    return Request(
        api_key=key,
        api_version=version,
        correlation_id=correlation_id,
        client_id="c",
        body=None,
        response_class=load_response_schema(key, version),
    )


def _same_frame(fast: Encoded, kio: list) -> None:
    """Same bytes, and the same split into buffers (big records uncopied in both)."""
    assert b"".join(fast.buffers) == b"".join(kio)
    assert [bytes(b) for b in fast.buffers] == [bytes(b) for b in kio]
    frame = b"".join(fast.buffers)
    assert struct.unpack_from(">i", frame)[0] == len(frame) - 4


def test_versions_cover_what_we_serve() -> None:
    # Below the fast encoders' versions: protocol/legacy.py's (KIP-896 removed them from kio).
    for key, fast in ((ApiKey.PRODUCE, PRODUCE_VERSIONS), (ApiKey.FETCH, FETCH_VERSIONS)):
        assert LEGACY_VERSIONS[key].stop == fast.start
        assert tuple(SUPPORTED_VERSIONS[key]) == (LEGACY_VERSIONS[key].start, fast[-1])
    assert _ZERO_COPY_MIN == ZERO_COPY_MIN


# -- Produce ----------------------------------------------------------------------

PRODUCE_PARTITIONS = st.builds(
    ProducePartition,
    index=INT32,
    error_code=ERRORS,
    base_offset=INT64,
    log_append_time=APPEND_TIME,
    log_start_offset=INT64,
    error_message=st.none() | st.text(max_size=30),
    record_errors=st.lists(st.tuples(INT32, st.none() | st.text(max_size=20)), max_size=3).map(tuple),
)


def _kio_produce(version: int, topics, throttle_ms: int):
    m = response_module(ApiKey.PRODUCE, version)
    return build(
        m.ProduceResponse,
        throttle_time=throttle_ms,
        responses=[
            build(
                m.TopicProduceResponse,
                name=name,
                partition_responses=[
                    build(
                        m.PartitionProduceResponse,
                        index=p.index,
                        error_code=p.error_code,
                        base_offset=p.base_offset,
                        log_append_time=p.log_append_time,
                        log_start_offset=p.log_start_offset,
                        record_errors=tuple(
                            build(m.BatchIndexAndErrorMessage, batch_index=i, batch_index_error_message=text)
                            for i, text in p.record_errors
                        ) if version >= 8 else (),
                        error_message=p.error_message,
                    )
                    for p in partitions
                ],
            )
            for name, partitions in topics
        ],
    )


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(
    correlation_id=INT32,
    throttle_ms=st.integers(0, 2**31 - 1),
    topics=st.lists(st.tuples(NAMES, st.lists(PRODUCE_PARTITIONS, max_size=4)), max_size=4),
)
def test_produce_response_matches_kio(version, correlation_id, throttle_ms, topics) -> None:
    fast = encode_produce_response(version, correlation_id, topics, throttle_ms=throttle_ms)
    request = _request(ApiKey.PRODUCE, version, correlation_id)
    _same_frame(fast, encode_response(request, _kio_produce(version, topics, throttle_ms)))


@pytest.mark.parametrize("version", PRODUCE_VERSIONS)
def test_produce_response_decodes_back(version) -> None:
    topics = [("orders", [ProducePartition(2, ErrorCode.none, 41, -1, 0)]),
              ("ünïcode", [ProducePartition(0, ErrorCode.corrupt_message, error_message="bad crc")])]
    fast = encode_produce_response(version, 5, topics)
    assert encode_response(_request(ApiKey.PRODUCE, version, 5), fast) is fast.buffers
    correlation_id, body = decode_response(ApiKey.PRODUCE, version, b"".join(fast.buffers)[4:])
    assert correlation_id == 5
    first, second = body.responses
    assert (first.name, first.partition_responses[0].base_offset) == ("orders", 41)
    assert second.name == "ünïcode"
    assert second.partition_responses[0].error_code == ErrorCode.corrupt_message
    if version >= 8:
        assert second.partition_responses[0].error_message == "bad crc"


# -- Fetch -------------------------------------------------------------------------

SMALL_RECORDS = st.none() | st.binary(max_size=64) | st.binary(max_size=64).map(memoryview)
BIG_RECORDS = st.binary(min_size=ZERO_COPY_MIN, max_size=ZERO_COPY_MIN + 64).map(memoryview)
FETCH_PARTITIONS = st.builds(
    FetchPartition,
    index=INT32,
    error_code=ERRORS,
    high_watermark=INT64,
    last_stable_offset=INT64,
    log_start_offset=INT64,
    records=SMALL_RECORDS | BIG_RECORDS,
    aborted_transactions=st.none() | st.lists(st.tuples(INT64, INT64), max_size=3),
)


def _kio_fetch(version: int, topics, *, throttle_ms: int, error_code, session_id: int):
    m = response_module(ApiKey.FETCH, version)
    return build(
        m.FetchResponse,
        throttle_time=throttle_ms,
        error_code=error_code,
        session_id=session_id,
        responses=[
            build(
                m.FetchableTopicResponse,
                topic=name,
                partitions=[
                    build(
                        m.PartitionData,
                        partition_index=p.index,
                        error_code=p.error_code,
                        high_watermark=p.high_watermark,
                        last_stable_offset=p.last_stable_offset,
                        log_start_offset=p.log_start_offset,
                        aborted_transactions=None if p.aborted_transactions is None else [
                            build(m.AbortedTransaction, producer_id=pid, first_offset=first)
                            for pid, first in p.aborted_transactions
                        ],
                        records=p.records,
                    )
                    for p in partitions
                ],
            )
            for name, partitions in topics
        ],
    )


@pytest.mark.parametrize("version", FETCH_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(
    correlation_id=INT32,
    throttle_ms=st.integers(0, 2**31 - 1),
    error_code=ERRORS,
    session_id=INT32,
    topics=st.lists(st.tuples(NAMES, st.lists(FETCH_PARTITIONS, max_size=4)), max_size=3),
)
def test_fetch_response_matches_kio(version, correlation_id, throttle_ms, error_code, session_id, topics) -> None:
    if version < 7:  # neither field exists before v7
        error_code, session_id = ErrorCode.none, 0
    fast = encode_fetch_response(
        version, correlation_id, topics, error_code=error_code, session_id=session_id, throttle_ms=throttle_ms
    )
    kio = _kio_fetch(version, topics, throttle_ms=throttle_ms, error_code=error_code, session_id=session_id)
    _same_frame(fast, encode_response(_request(ApiKey.FETCH, version, correlation_id), kio))


@pytest.mark.parametrize("version", FETCH_VERSIONS)
def test_fetch_response_keeps_big_mmap_records_uncopied(version, tmp_path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(bytes(range(256)) * 64)
    with path.open("rb") as f:
        view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    big, small = view[:ZERO_COPY_MIN], view[100:164]
    topics = [("t", [FetchPartition(0, ErrorCode.none, 9, 9, 0, big),
                     FetchPartition(1, ErrorCode.none, 9, 9, 0, small),
                     FetchPartition(2, ErrorCode.offset_out_of_range, 9, 9, 0, b""),
                     FetchPartition(3, ErrorCode.none, 9, 9, 0, None)])]
    fast = encode_fetch_response(version, 3, topics)
    assert len(fast.buffers) == 3 and fast.buffers[1] is big
    correlation_id, body = decode_response(ApiKey.FETCH, version, b"".join(fast.buffers)[4:])
    parts = body.responses[0].partitions
    assert correlation_id == 3
    assert bytes(parts[0].records) == bytes(big) and bytes(parts[1].records) == bytes(small)
    assert parts[2].error_code == ErrorCode.offset_out_of_range and parts[3].records is None


def test_unserved_versions_and_out_of_range_values_are_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_produce_response(2, 1, [])
    with pytest.raises(LocalProtocolError):
        encode_fetch_response(13, 1, [])
    with pytest.raises(LocalProtocolError):
        encode_produce_response(9, 1, [("t", [ProducePartition(2**31, ErrorCode.none)])])
    with pytest.raises(LocalProtocolError):
        encode_fetch_response(4, 1, [("x" * 40000, [])])
    with pytest.raises(LocalProtocolError):
        encode_produce_response(8, 1, [("t", [ProducePartition(0, ErrorCode.none, error_message="\udc80")])])


# -- Metadata ---------------------------------------------------------------------

from logbroker.protocol import METADATA_VERSIONS  # noqa: E402
from logbroker.protocol import MetadataBroker  # noqa: E402
from logbroker.protocol import MetadataTopic  # noqa: E402
from logbroker.protocol import encode_metadata_response  # noqa: E402

METADATA_TOPICS = st.builds(
    MetadataTopic,
    error_code=ERRORS,
    name=NAMES,
    topic_id=st.uuids(),
    is_internal=st.booleans(),
    partitions=st.integers(0, 40),
    authorized_operations=INT32,
)
METADATA_BROKERS = st.builds(
    MetadataBroker, node_id=INT32, host=NAMES, port=INT32, rack=st.none() | st.text(max_size=10)
)


def _kio_metadata(version, brokers, topics, cluster_id, controller_id, cluster_operations, throttle_ms):
    m = response_module(ApiKey.METADATA, version)
    return build(
        m.MetadataResponse,
        throttle_time=throttle_ms,
        brokers=tuple(build(m.MetadataResponseBroker, node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
                      for b in brokers),
        cluster_id=cluster_id,
        controller_id=controller_id,
        topics=tuple(
            build(
                m.MetadataResponseTopic,
                error_code=t.error_code,
                name=t.name,
                topic_id=t.topic_id,
                is_internal=t.is_internal,
                partitions=tuple(
                    build(m.MetadataResponsePartition, error_code=ErrorCode.none, partition_index=p,
                          leader_id=controller_id, leader_epoch=0, replica_nodes=(controller_id,),
                          isr_nodes=(controller_id,), offline_replicas=())
                    for p in range(t.partitions)
                ),
                topic_authorized_operations=t.authorized_operations,
            )
            for t in topics
        ),
        cluster_authorized_operations=cluster_operations,
    )


@pytest.mark.parametrize("version", METADATA_VERSIONS)
@settings(max_examples=40, deadline=None)
@given(
    correlation_id=INT32,
    throttle_ms=st.integers(0, 2**31 - 1),
    brokers=st.lists(METADATA_BROKERS, min_size=1, max_size=2),
    topics=st.lists(METADATA_TOPICS, max_size=4),
    cluster_id=st.none() | st.text(max_size=22),
    controller_id=INT32,
    cluster_operations=INT32,
)
def test_metadata_response_matches_kio(version, correlation_id, throttle_ms, brokers, topics, cluster_id,
                                       controller_id, cluster_operations) -> None:
    fast = encode_metadata_response(version, correlation_id, brokers, topics, cluster_id=cluster_id,
                                    controller_id=controller_id, cluster_authorized_operations=cluster_operations,
                                    throttle_ms=throttle_ms)
    kio = _kio_metadata(version, brokers, topics, cluster_id, controller_id, cluster_operations, throttle_ms)
    _same_frame(fast, encode_response(_request(ApiKey.METADATA, version, correlation_id), kio))


def test_metadata_serves_every_version() -> None:
    assert tuple(SUPPORTED_VERSIONS[ApiKey.METADATA]) == (METADATA_VERSIONS.start, METADATA_VERSIONS[-1])


@pytest.mark.parametrize("version", METADATA_VERSIONS)
def test_metadata_unknown_topic_id_has_a_null_name_from_v12(version) -> None:
    fast = encode_metadata_response(version, 3, [MetadataBroker(1, "h", 9092)],
                                    [MetadataTopic(ErrorCode.unknown_topic_id, None)], cluster_id="c",
                                    controller_id=1)
    _, body = decode_response(ApiKey.METADATA, version, b"".join(fast.buffers)[4:])
    assert body.topics[0].name == (None if version >= 12 else "")
    assert body.topics[0].partitions == ()


def test_metadata_refuses_a_value_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        encode_metadata_response(12, 1, [MetadataBroker(1, "h", 2**31)], [], cluster_id=None, controller_id=1)
