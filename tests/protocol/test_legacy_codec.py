"""protocol/legacy.py: the old versions kio lacks (Produce v0-2, Fetch v0-3,
ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0).

Oracles: frames captured from real old clients (kcat with
``api.version.request=false``, kafka-python forced to ``api_version=(0, 9)``
and ``(0, 10, 0)``), and kafka-python's hand-written old protocol structs
(``kafka.protocol.old``), which follow Kafka's JSON definitions independently
of our code: requests they encode must decode here, responses encoded here
must decode there.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.old import commit as kp_commit
from kafka.protocol.old import fetch as kp_fetch
from kafka.protocol.old import list_offsets as kp_list_offsets
from kafka.protocol.old import produce as kp_produce

from logbroker.errors import LocalProtocolError, ProtocolError
from logbroker.protocol import (
    ApiKey,
    ErrorCode,
    FetchPartition,
    ProducePartition,
    build,
    decode_request,
    encode_legacy_fetch_response,
    encode_legacy_produce_response,
    encode_response,
    to_ms,
)
from logbroker.protocol.legacy import STAND_IN, is_legacy
from logbroker.records import decode_batch, message_set_to_batch

# Request payloads (frames without their size) captured from real clients.
KCAT_PRODUCE_V0_GZIP = bytes.fromhex(  # kcat, broker.version.fallback=0.8.2: magic 0, gzip wrapper
    "0000000000000003000772646b61666b61ffff00007530000000010006676f6c64656e0000000100000000000000540000"
    "00000000000000000048e87656170001ffffffff0000003a1f8b08000000000000036360800389d20f5f64c12c96ecd44a"
    "4320cd569698539a6a089567046211d6ab8f74e03a20f24600cd44702644000000"
)
KCAT_PRODUCE_V1_SNAPPY = bytes.fromhex(  # kcat, fallback 0.9.0: magic 0, snappy wrapper
    "0000000100000002000772646b61666b61ffff00007530000000010006676f6c64656e0000000100000000000000530000"
    "00000000000000000047abedbcf10002ffffffff000000394400001901101875f0f41d050f34046b6579310000000676616c"
    "7565010a010120010000001405d5e22c010d2c00000000000676616c756532"
)
KP_PRODUCE_V1_LZ4_MAGIC0 = bytes.fromhex(  # kafka-python api_version=(0, 9): Kafka's broken LZ4 header checksum
    "000000010000000100176b61666b612d707974686f6e2d70726f64756365722d31ffff00007530000000010006676f6c64"
    "656e00000001000000000000006300000000000000000000005743231a850003ffffffff0000004904224d1860401a3a00"
    "0000160001005137c2e078f40f00af016b000000286c7a3420040011013300f00c00000100000014a6f2489d0000ffffff"
    "ff000000067365636f6e6400000000"
)
KP_PRODUCE_V2_LZ4_MAGIC1 = bytes.fromhex(  # kafka-python api_version=(0, 10, 0): magic 1 with timestamps
    "000000020000000200176b61666b612d707974686f6e2d70726f64756365722d32ffff00007530000000010006676f6c64"
    "656e00000001000000000000007e000000000000000000000072b65a6e0501030000000000000000ffffffff0000005c04"
    "224d1868407300000000000000f04500000016000100e03f178e36dc01000000018bcfe5681800af016b000000286c7a34"
    "20040011003200003e00850000001c11db5f364b00f00001ffffffff000000067365636f6e6400000000"
)
KCAT_LIST_OFFSETS_V0 = bytes.fromhex(  # kcat -o beginning, fallback 0.9.0
    "0002000000000003000772646b61666b61ffffffff000000010006676f6c64656e0000000100000000fffffffffffffffe00000001"
)
KCAT_FETCH_V1 = bytes.fromhex(
    "0001000100000004000772646b61666b61ffffffff000001f400000001000000010006676f6c64656e0000000100000000"
    "000000000000000000100000"
)


def _records(payload: bytes) -> list[tuple[Any, ...]]:
    request = decode_request(payload)
    [topic] = request.body.topic_data
    [partition] = topic.partition_data
    batch = decode_batch(message_set_to_batch(partition.records))
    return [(r.offset, r.timestamp, r.key, r.value) for r in batch.records]


def test_golden_kcat_produce_v0_gzip() -> None:
    request = decode_request(KCAT_PRODUCE_V0_GZIP)
    assert (request.api_key, request.api_version, request.correlation_id) == (ApiKey.PRODUCE, 0, 3)
    assert request.client_id == "rdkafka"
    body = request.body
    assert (body.transactional_id, body.acks, to_ms(body.timeout)) == (None, -1, 30000)
    assert type(body).__module__ == "kio.schema.produce.v3.request"  # the stand-in shape
    assert request.expects_response
    # kcat's "-K:" makes ":value2" an empty key, not a null one.
    assert _records(KCAT_PRODUCE_V0_GZIP) == [(0, -1, b"key1", b"value1"), (1, -1, b"", b"value2")]


def test_golden_kcat_produce_v1_snappy() -> None:
    assert decode_request(KCAT_PRODUCE_V1_SNAPPY).api_version == 1
    assert _records(KCAT_PRODUCE_V1_SNAPPY) == [(0, -1, b"key1", b"value1"), (1, -1, b"", b"value2")]


def test_golden_kafka_python_lz4_magic0_with_kafkas_broken_header_checksum() -> None:
    assert _records(KP_PRODUCE_V1_LZ4_MAGIC0) == [(0, -1, b"k", b"lz4 " * 10), (1, -1, None, b"second")]


def test_golden_kafka_python_produce_v2_keeps_v1_timestamps() -> None:
    assert _records(KP_PRODUCE_V2_LZ4_MAGIC1) == [
        (0, 1700000000000, b"k", b"lz4 " * 10),
        (1, 1700000000001, None, b"second"),
    ]


def test_golden_list_offsets_v0_and_fetch_v1() -> None:
    lo = decode_request(KCAT_LIST_OFFSETS_V0)
    assert (lo.api_version, lo.body.replica_id) == (0, -1)
    [topic] = lo.body.topics
    assert [(p.partition_index, p.timestamp) for p in topic.partitions] == [(0, -2)]
    assert lo.response_class.__module__ == "kio.schema.list_offsets.v1.response"

    fetch = decode_request(KCAT_FETCH_V1)
    body = fetch.body
    assert (fetch.api_version, to_ms(body.max_wait), body.min_bytes, body.isolation_level) == (1, 500, 1, 0)
    assert body.max_bytes == 2**31 - 1  # v0-2 have none: Kafka's default
    [topic] = body.topics
    assert [(p.partition, p.fetch_offset, p.partition_max_bytes) for p in topic.partitions] == [(0, 0, 1 << 20)]


# -- requests: kafka-python's old structs encode, we decode ----------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)


def _payload(request: Any, correlation_id: int = 7) -> bytes:
    request.with_header(correlation_id=correlation_id, client_id="old-client")
    return request.encode(header=True)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    version=st.integers(0, 2), acks=i16, timeout=st.integers(0, 2**31 - 1),
    topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, st.binary(max_size=20) | st.none()), max_size=3)),
                    max_size=3),
)
def test_produce_requests(version: int, acks: int, timeout: int, topics: list) -> None:
    cls = getattr(kp_produce, f"ProduceRequest_v{version}")
    request = decode_request(_payload(cls(acks, timeout, [(n, list(ps)) for n, ps in topics])))
    body = request.body
    assert (request.api_version, request.correlation_id, request.client_id) == (version, 7, "old-client")
    assert (body.acks, to_ms(body.timeout)) == (acks, timeout)
    assert [(t.name, [(p.index, None if p.records is None else bytes(p.records)) for p in t.partition_data])
            for t in body.topic_data] == topics


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    version=st.integers(0, 3), replica=i32, wait=st.integers(0, 2**31 - 1), min_bytes=i32, max_bytes=i32,
    topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, i64, i32), max_size=3)), max_size=3),
)
def test_fetch_requests(version: int, replica: int, wait: int, min_bytes: int, max_bytes: int, topics: list) -> None:
    cls = getattr(kp_fetch, f"FetchRequest_v{version}")
    fields = (replica, wait, min_bytes) + ((max_bytes,) if version == 3 else ())
    body = decode_request(_payload(cls(*fields, [(n, list(ps)) for n, ps in topics]))).body
    assert (body.replica_id, to_ms(body.max_wait), body.min_bytes) == (replica, wait, min_bytes)
    assert body.max_bytes == (max_bytes if version == 3 else 2**31 - 1)
    assert [(t.topic, [(p.partition, p.fetch_offset, p.partition_max_bytes) for p in t.partitions])
            for t in body.topics] == topics


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, i64, i32), max_size=3)), max_size=3))
def test_list_offsets_v0_requests(topics: list) -> None:
    body = decode_request(_payload(kp_list_offsets.ListOffsetsRequest_v0(-1, [(n, list(ps)) for n, ps in topics]))).body
    assert [(t.name, [(p.partition_index, p.timestamp) for p in t.partitions]) for t in body.topics] == [
        (n, [(i, ts) for i, ts, _max in ps]) for n, ps in topics
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    version=st.integers(0, 1), group=names, generation=i32, member=names,
    topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, i64, i64, names | st.none()), max_size=3)),
                    max_size=3),
)
def test_offset_commit_requests(version: int, group: str, generation: int, member: str, topics: list) -> None:
    if version == 0:
        wire = [(n, [(i, off, meta) for i, off, _ts, meta in ps]) for n, ps in topics]
        request = kp_commit.OffsetCommitRequest_v0(group, wire)
    else:
        request = kp_commit.OffsetCommitRequest_v1(group, generation, member, [(n, list(ps)) for n, ps in topics])
    body = decode_request(_payload(request)).body
    assert body.group_id == group
    # v0 has no membership: a simple commit (generation -1, no member), as Kafka 4's coordinator takes it.
    assert (body.generation_id_or_member_epoch, body.member_id) == ((generation, member) if version else (-1, ""))
    assert [(t.name, [(p.partition_index, p.committed_offset, p.committed_metadata) for p in t.partitions])
            for t in body.topics] == [(n, [(i, off, meta) for i, off, _ts, meta in ps]) for n, ps in topics]


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(group=names, topics=st.lists(st.tuples(names, st.lists(i32, max_size=4)), max_size=3))
def test_offset_fetch_v0_requests(group: str, topics: list) -> None:
    request = decode_request(_payload(kp_commit.OffsetFetchRequest_v0(group, topics)))
    assert request.response_class.__module__ == "kio.schema.offset_fetch.v1.response"
    assert request.body.group_id == group
    assert [(t.name, list(t.partition_indexes)) for t in request.body.topics] == topics


# -- responses: we encode, kafka-python's old structs decode -----------------------------------


def _decoded(cls: Any, buffers: list) -> Any:
    frame = b"".join(bytes(b) for b in buffers)
    (size, correlation_id) = struct.unpack_from(">ii", frame)
    assert size == len(frame) - 4
    assert correlation_id == 99
    return cls.decode(frame[8:]).to_object()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    version=st.integers(0, 2), throttle=st.integers(0, 2**31 - 1),
    topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, st.sampled_from([0, 2, 3, 87]), i64, i64),
                                              max_size=3)), max_size=3),
)
def test_produce_responses(version: int, throttle: int, topics: list) -> None:
    encoded = encode_legacy_produce_response(
        version, 99,
        [(n, [ProducePartition(i, e, base_offset=b, log_append_time=t, log_start_offset=5, error_message="x")
              for i, e, b, t in ps]) for n, ps in topics],
        throttle_ms=throttle,
    )
    out = _decoded(getattr(kp_produce, f"ProduceResponse_v{version}"), encoded.buffers)
    expected = [(n, [(i, e, b) + ((t,) if version == 2 else ()) for i, e, b, t in ps]) for n, ps in topics]
    assert [(t["name"], [tuple(p.values()) for p in t["partition_responses"]]) for t in out["responses"]] == expected
    assert out.get("throttle_time_ms", 0) == (throttle if version else 0)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    version=st.integers(0, 3), throttle=st.integers(0, 2**31 - 1),
    topics=st.lists(st.tuples(names, st.lists(st.tuples(i32, st.sampled_from([0, 1, 3]), i64,
                                                        st.binary(max_size=30) | st.none()), max_size=3)),
                    max_size=3),
)
def test_fetch_responses(version: int, throttle: int, topics: list) -> None:
    encoded = encode_legacy_fetch_response(
        version, 99, [(n, [FetchPartition(i, e, hw, hw, 0, r) for i, e, hw, r in ps]) for n, ps in topics],
        throttle_ms=throttle,
    )
    out = _decoded(getattr(kp_fetch, f"FetchResponse_v{version}"), encoded.buffers)
    partitions = [(t["topic"], [tuple(p.values()) for p in t["partitions"]]) for t in out["responses"]]
    assert partitions == [(n, [(i, e, hw, r or b"") for i, e, hw, r in ps]) for n, ps in topics]
    assert out.get("throttle_time_ms", 0) == (throttle if version else 0)


def _request(api_key: ApiKey, version: int, payload: bytes) -> Any:
    header = struct.pack(">hhih", api_key, version, 99, -1)
    return decode_request(header + payload)


def test_list_offsets_v0_answers_the_old_offsets_array() -> None:
    request = _request(ApiKey.LIST_OFFSETS, 0, struct.pack(">ii", -1, 0))
    m = request.response_module
    body = build(request.response_class, topics=[build(m.ListOffsetsTopicResponse, name="t", partitions=[
        build(m.ListOffsetsPartitionResponse, partition_index=0, error_code=ErrorCode.none, timestamp=-1, offset=42),
        build(m.ListOffsetsPartitionResponse, partition_index=1, error_code=ErrorCode.none, timestamp=-1, offset=-1),
        build(m.ListOffsetsPartitionResponse, partition_index=2, error_code=ErrorCode.unknown_topic_or_partition,
              timestamp=-1, offset=-1),
    ])])
    out = _decoded(kp_list_offsets.ListOffsetsResponse_v0, encode_response(request, body))
    [topic] = out["topics"]
    assert topic["name"] == "t"
    assert [tuple(p.values()) for p in topic["partitions"]] == [(0, 0, [42]), (1, 0, []), (2, 3, [])]


@pytest.mark.parametrize(("api_key", "version", "kp_class"), [
    (ApiKey.OFFSET_COMMIT, 0, kp_commit.OffsetCommitResponse_v0),
    (ApiKey.OFFSET_COMMIT, 1, kp_commit.OffsetCommitResponse_v1),
])
def test_offset_commit_v0_v1_answers(api_key: ApiKey, version: int, kp_class: Any) -> None:
    payload = struct.pack(">h", 1) + b"g" + (struct.pack(">ih", 3, 1) + b"m" if version else b"") + struct.pack(">i", 0)
    request = _request(api_key, version, payload)
    m = request.response_module
    body = build(request.response_class, topics=[build(m.OffsetCommitResponseTopic, name="t", partitions=[
        build(m.OffsetCommitResponsePartition, partition_index=4, error_code=ErrorCode.illegal_generation)])])
    out = _decoded(kp_class, encode_response(request, body))
    assert [(t["name"], [tuple(p.values()) for p in t["partitions"]]) for t in out["topics"]] == [("t", [(4, 22)])]


def test_offset_fetch_v0_answer() -> None:
    request = _request(ApiKey.OFFSET_FETCH, 0, struct.pack(">h", 1) + b"g" + struct.pack(">i", 0))
    m = request.response_module
    body = build(request.response_class, topics=[build(m.OffsetFetchResponseTopic, name="t", partitions=[
        build(m.OffsetFetchResponsePartition, partition_index=0, committed_offset=17, metadata="meta",
              error_code=ErrorCode.none)])])
    out = _decoded(kp_commit.OffsetFetchResponse_v0, encode_response(request, body))
    assert [(t["name"], [tuple(p.values()) for p in t["partitions"]]) for t in out["topics"]] == [
        ("t", [(0, 17, "meta", 0)])
    ]


# -- malformed and refused --------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    KCAT_PRODUCE_V0_GZIP[:-60],  # cut inside the records
    KCAT_FETCH_V1[:-3],
    KCAT_LIST_OFFSETS_V0[:-4],
    struct.pack(">hhih", 0, 1, 5, -1) + struct.pack(">hii", 1, 100, 2**31 - 1),  # absurd array count
    struct.pack(">hhih", 9, 0, 5, -1) + struct.pack(">h", -1),  # null group id
    struct.pack(">hhih", 8, 0, 5, -1) + struct.pack(">h", 2) + b"\xff\xfe" + struct.pack(">i", 0),  # not UTF-8
])
def test_malformed_old_requests_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(payload)
    assert type(info.value) is ProtocolError  # not "unsupported version": the connection is closed


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    pair=st.sampled_from([(k, v) for k in STAND_IN for v in range(STAND_IN[k]) if is_legacy(k, v)]),
    body=st.binary(max_size=120),
)
def test_fuzz_old_bodies_raise_only_protocol_errors(pair: tuple[int, int], body: bytes) -> None:
    try:
        decode_request(struct.pack(">hhih", *pair, 1, -1) + body)
    except ProtocolError:
        pass


def test_encoders_refuse_versions_that_are_not_theirs() -> None:
    with pytest.raises(LocalProtocolError):
        encode_legacy_produce_response(3, 1, [])
    with pytest.raises(LocalProtocolError):
        encode_legacy_fetch_response(4, 1, [])
