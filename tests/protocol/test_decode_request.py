"""decode_request on real client bytes, unsupported versions and malformed input."""

from __future__ import annotations

import datetime
import struct
import subprocess
import sys
import textwrap

from typing import Any

import pytest

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchRequest as KpFetch
from kafka.protocol.metadata import ApiVersionsRequest as KpApiVersions
from kafka.protocol.metadata import MetadataRequest as KpMetadata
from kafka.protocol.producer import ProduceRequest as KpProduce

from logbroker.errors import ProtocolError
from logbroker.errors import UnsupportedVersionError
from logbroker.protocol import SUPPORTED_VERSIONS
from logbroker.protocol.legacy import is_legacy
from logbroker.protocol import ApiKey
from logbroker.protocol import decode_request
from logbroker.protocol import decode_response
from logbroker.protocol import enabled_versions
from logbroker.protocol import to_ms


def kp_payload(request: Any, correlation_id: int = 42, client_id: str = "kp") -> bytes:
    """Request bytes as kafka-python 3 puts them on the wire, minus the size."""
    request.with_header(correlation_id=correlation_id, client_id=client_id)
    wire = bytes(request.encode(header=True, framed=True))
    assert struct.unpack(">i", wire[:4])[0] == len(wire) - 4
    return wire[4:]


def kp_produce(version: int, records: bytes, acks: int = -1) -> bytes:
    cls = KpProduce[version]
    return kp_payload(
        cls(
            transactional_id=None,
            acks=acks,
            timeout_ms=30000,
            topic_data=[
                cls.TopicProduceData(
                    name="orders",
                    partition_data=[
                        cls.TopicProduceData.PartitionProduceData(index=3, records=records)
                    ],
                )
            ],
        )
    )


def kp_fetch(version: int) -> bytes:
    cls = KpFetch[version]
    return kp_payload(
        cls(
            replica_id=-1,
            max_wait_ms=500,
            min_bytes=1,
            max_bytes=52428800,
            isolation_level=1,
            session_id=0,
            session_epoch=-1,
            topics=[
                cls.FetchTopic(
                    topic="orders",
                    partitions=[
                        cls.FetchTopic.FetchPartition(
                            partition=p,
                            fetch_offset=100 + p,
                            partition_max_bytes=1048576,
                            current_leader_epoch=-1,
                            log_start_offset=-1,
                        )
                        for p in range(3)
                    ],
                )
            ],
            forgotten_topics_data=[],
            rack_id="",
        )
    )


# -- real client bytes ---------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3, 4])
def test_kafka_python_api_versions(version: int) -> None:
    kwargs = {}
    if version >= 3:
        kwargs = {"client_software_name": "kafka-python", "client_software_version": "3.0.12"}
    request = decode_request(kp_payload(KpApiVersions[version](**kwargs), 7, "kp-client"))
    assert request.api_key is ApiKey.API_VERSIONS
    assert request.api_version == version
    assert request.correlation_id == 7
    assert request.client_id == "kp-client"
    if version >= 3:
        assert request.body.client_software_name == "kafka-python"
        assert request.body.client_software_version == "3.0.12"
    assert request.response_class.__name__ == "ApiVersionsResponse"
    assert request.response_class.__version__ == version


def test_librdkafka_api_versions_v3_with_request_header_v2() -> None:
    # librdkafka's first request: header v2 (client_id is a legacy int16 string,
    # then an empty tagged-field section), body with compact strings.
    payload = (
        struct.pack(">hhih", 18, 3, 1, 7)
        + b"rdkafka"
        + b"\x00"
        + b"\x0blibrdkafka"
        + b"\x062.0.2"
        + b"\x00"
    )
    request = decode_request(payload)
    assert (request.api_key, request.api_version, request.correlation_id) == (18, 3, 1)
    assert request.client_id == "rdkafka"
    assert request.body.client_software_name == "librdkafka"
    assert request.body.client_software_version == "2.0.2"


def test_null_client_id() -> None:
    payload = struct.pack(">hhih", 18, 0, 5, -1)
    assert decode_request(payload).client_id is None


@pytest.mark.parametrize("version", [1, 4, 12])
def test_kafka_python_metadata(version: int) -> None:
    cls = KpMetadata[version]
    if version >= 10:
        topics = [cls.MetadataRequestTopic(name="orders", topic_id=None)]
    else:
        topics = [cls.MetadataRequestTopic(name="orders")]
    kwargs = {"topics": topics}
    if version >= 4:
        kwargs["allow_auto_topic_creation"] = False
    if version >= 8:
        kwargs["include_topic_authorized_operations"] = False
    request = decode_request(kp_payload(cls(**kwargs)))
    assert request.api_key is ApiKey.METADATA
    assert [t.name for t in request.body.topics] == ["orders"]
    if version >= 4:
        assert request.body.allow_auto_topic_creation is False


def test_kafka_python_metadata_all_topics_is_null() -> None:
    request = decode_request(kp_payload(KpMetadata[12](topics=None, allow_auto_topic_creation=True)))
    assert request.body.topics is None


@pytest.mark.parametrize("version", [3, 9])
def test_kafka_python_produce(version: int) -> None:
    records = bytes(range(256)) * 256  # 64 KiB stand-in for a batch
    request = decode_request(kp_produce(version, records))
    body = request.body
    assert request.api_key is ApiKey.PRODUCE
    assert request.api_version == version
    assert body.acks == -1
    assert to_ms(body.timeout) == 30000
    assert body.transactional_id is None
    (topic,) = body.topic_data
    assert topic.name == "orders"
    (partition,) = topic.partition_data
    assert partition.index == 3
    assert partition.records == records
    assert request.expects_response


def test_produce_with_acks_0_expects_no_response() -> None:
    request = decode_request(kp_produce(9, b"x" * 100, acks=0))
    assert request.body.acks == 0
    assert not request.expects_response


@pytest.mark.parametrize("version", [4, 11, 12])
def test_kafka_python_fetch(version: int) -> None:
    request = decode_request(kp_fetch(version))
    body = request.body
    assert request.api_key is ApiKey.FETCH
    assert to_ms(body.max_wait) == 500
    assert body.isolation_level == 1
    (topic,) = body.topics
    assert topic.topic == "orders"
    assert [(p.partition, p.fetch_offset) for p in topic.partitions] == [
        (0, 100),
        (1, 101),
        (2, 102),
    ]
    assert body.max_wait == datetime.timedelta(milliseconds=500)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    payload = kp_fetch(12)
    expected = decode_request(payload)
    assert decode_request(bytearray(payload)) == expected
    assert decode_request(memoryview(payload)) == expected
    assert decode_request(memoryview(bytearray(payload))) == expected


def test_request_repr_is_short() -> None:
    request = decode_request(kp_produce(9, b"x" * 65536))
    assert repr(request) == (
        "<Request PRODUCE v9 correlation_id=42 client_id='kp' body=ProduceRequestBody>"
    )


# -- unsupported keys and versions ---------------------------------------------


@pytest.mark.parametrize(
    ("key", "version"),
    [
        (18, 5),  # a future ApiVersions
        (18, 127),
        (0, -1),  # Produce below our floor
        (0, 10),  # Produce above our ceiling
        (1, 13),
        (32, 0),  # DescribeConfigs v0: kio lacks it
        (55, 0),  # DescribeQuorum: a KRaft controller API, not served
        (4, 0),  # LeaderAndIsr: removed from Kafka
        (999, 0),
        (-1, 0),
    ],
)
def test_unsupported_version_carries_the_correlation_id(key: int, version: int) -> None:
    payload = struct.pack(">hhih", key, version, 12345, 2) + b"kp" + b"garbage"
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(payload)
    error = info.value
    assert (error.api_key, error.api_version, error.correlation_id) == (key, version, 12345)
    assert isinstance(error, ProtocolError)


def test_a_subset_of_keys_refuses_the_others() -> None:
    versions = enabled_versions([ApiKey.METADATA])
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(kp_fetch(12), versions)
    assert info.value.api_key == ApiKey.FETCH
    request = decode_request(kp_payload(KpApiVersions[0]()), versions)
    assert request.api_key is ApiKey.API_VERSIONS


# -- malformed input -----------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x12\x00\x00\x00\x00\x00"])
def test_shorter_than_a_header(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="shorter than a request header"):
        decode_request(payload)


REAL_PAYLOADS = {
    "api_versions_v3": kp_payload(
        KpApiVersions[3](client_software_name="kafka-python", client_software_version="3")
    ),
    "metadata_v12": kp_payload(
        KpMetadata[12](topics=[KpMetadata[12].MetadataRequestTopic(name="t", topic_id=None)])
    ),
    "produce_v3": kp_produce(3, b"r" * 70),
    "produce_v9": kp_produce(9, b"r" * 70),
    "fetch_v4": kp_fetch(4),
    "fetch_v12": kp_fetch(12),
}


@pytest.mark.parametrize("name", sorted(REAL_PAYLOADS))
def test_every_truncation_is_a_protocol_error(name: str) -> None:
    payload = REAL_PAYLOADS[name]
    for end in range(len(payload)):
        with pytest.raises(ProtocolError):
            decode_request(payload[:end])


@pytest.mark.parametrize("name", sorted(REAL_PAYLOADS))
def test_trailing_bytes_are_ignored_as_kafka_does(name: str) -> None:
    plain = decode_request(REAL_PAYLOADS[name])
    padded = decode_request(REAL_PAYLOADS[name] + b"\x01\x00\x00")
    assert padded.body == plain.body and padded.correlation_id == plain.correlation_id


def test_librdkafka_metadata_v12_all_topics_request() -> None:
    # librdkafka 2.16 writes the null topic array as 4 bytes (librdkafka issue 5049).
    frame = bytes.fromhex("000000190003000c00000004000772646b61666b610000000000010000")
    request = decode_request(frame[4:])
    assert request.body.topics is None and request.correlation_id == 4


def test_protocol_error_is_chained_from_the_codec_error() -> None:
    with pytest.raises(ProtocolError, match="malformed FETCH v12") as info:
        decode_request(REAL_PAYLOADS["fetch_v12"][:-3])
    assert info.value.__cause__ is not None


def test_invalid_utf8_is_a_protocol_error() -> None:
    payload = struct.pack(">hhih", 18, 0, 1, 2) + b"\xff\xfe"
    with pytest.raises(ProtocolError):
        decode_request(payload)


_SUPPORTED_PAIRS = [
    (key, version)
    for key, (lo, hi) in SUPPORTED_VERSIONS.items()
    for version in range(lo, hi + 1)
]


def _decode_only_protocol_errors(payload: bytes) -> None:
    try:
        decode_request(payload)
    except (ProtocolError, UnsupportedVersionError):
        pass


@settings(max_examples=1500, suppress_health_check=list(HealthCheck))
@given(
    pair=st.sampled_from(_SUPPORTED_PAIRS),
    client_id=st.sampled_from([b"\xff\xff", b"\x00\x00", b"\x00\x02kp", b"\x7f\xff"]),
    body=st.binary(max_size=200),
)
def test_fuzz_random_bodies_raise_only_protocol_errors(
    pair: tuple[int, int], client_id: bytes, body: bytes
) -> None:
    key, version = pair
    _decode_only_protocol_errors(struct.pack(">hhi", key, version, 1) + client_id + body)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_raise_only_protocol_errors(payload: bytes) -> None:
    _decode_only_protocol_errors(payload)


@settings(max_examples=1500, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(sorted(REAL_PAYLOADS)),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]),
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]) | st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_mutated_real_requests_raise_only_protocol_errors(
    name: str, edits: list[tuple[str, int, int]]
) -> None:
    payload = bytearray(REAL_PAYLOADS[name])
    for op, where, byte in edits:
        where %= len(payload) + 1
        if op == "insert":
            payload[where:where] = bytes([byte])
        elif where < len(payload):
            if op == "set":
                payload[where] = byte
            else:
                del payload[where]
    _decode_only_protocol_errors(bytes(payload))


# -- huge declared array counts ------------------------------------------------

_HUGE_ARRAY_SCRIPT = textwrap.dedent(
    r"""
    import struct
    from logbroker.errors import ProtocolError
    from logbroker.protocol import decode_request, decode_response

    def head(key, version, flexible):
        h = struct.pack(">hhih", key, version, 1, 2) + b"kp"
        return h + (b"\x00" if flexible else b"")

    huge_compact = b"\xff\xff\xff\xff\x0f"      # uvarint 2**32 - 1 -> 2**32 - 2 items
    huge_legacy = struct.pack(">i", 2**31 - 1)
    cases = {
        # top-level compact array of array-free entities
        "metadata_v12_topics": head(3, 12, True) + huge_compact + b"\x00" * 8,
        # top-level legacy array
        "metadata_v1_topics": head(3, 1, False) + huge_legacy + b"\x00" * 8,
        # an array nested in an array element
        "fetch_v12_partitions": head(1, 12, True)
            + struct.pack(">iiiibii", -1, 500, 1, 1000, 0, 0, -1)
            + b"\x02" + b"\x02t" + huge_compact + b"\x00" * 8,
        # an array of primitives (ForgottenTopic.partitions)
        "fetch_v12_forgotten": head(1, 12, True)
            + struct.pack(">iiiibii", -1, 500, 1, 1000, 0, 0, -1)
            + b"\x01" + b"\x02" + b"\x02t" + huge_compact + b"\x00" * 8,
    }
    for name, payload in cases.items():
        try:
            decode_request(payload)
        except ProtocolError as exc:
            assert "cannot fit" in str(exc), (name, exc)
            print("refused", name)
        else:
            raise AssertionError(name)
    # client side too: a response declaring a huge broker list
    try:
        decode_response(3, 12, struct.pack(">i", 1) + b"\x00" + b"\x00\x00\x00\x00" + huge_compact)
    except ProtocolError as exc:
        assert "cannot fit" in str(exc), exc
        print("refused response")
    """
)


def test_huge_array_counts_are_refused_without_allocating() -> None:
    """kio's native reader would Vec::with_capacity(count) and abort the process.

    Runs in a child process so a regression shows up as a failed test, not as a
    crashed test run.
    """
    result = subprocess.run(
        [sys.executable, "-c", _HUGE_ARRAY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n").count("refused response") == 1
    assert result.stdout.count("refused ") == 5


def test_non_contiguous_memoryview_is_copied_not_refused() -> None:
    payload = REAL_PAYLOADS["fetch_v12"]
    doubled = bytes(b for byte in payload for b in (byte, 0))
    view = memoryview(doubled)[::2]
    assert not view.c_contiguous
    assert decode_request(view) == decode_request(payload)


def test_custom_versions_beyond_kio_are_unsupported_not_crashes() -> None:
    payload = struct.pack(">hhih", 32, 0, 9, -1)  # DescribeConfigs v0: not in kio
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(payload, {ApiKey.DESCRIBE_CONFIGS: (0, 4)})
    assert info.value.correlation_id == 9


@settings(max_examples=1000, suppress_health_check=list(HealthCheck))
@given(pair=st.sampled_from([p for p in _SUPPORTED_PAIRS if not is_legacy(*p)]), payload=st.binary(max_size=200))
def test_fuzz_client_side_decode_response_raises_only_protocol_errors(
    pair: tuple[int, int], payload: bytes
) -> None:
    try:
        decode_response(pair[0], pair[1], payload)
    except ProtocolError:
        pass
