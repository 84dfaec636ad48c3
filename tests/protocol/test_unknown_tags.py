"""Unknown tagged fields (KIP-482) are skipped at every level, never a crash.

kio 0.6.5's native reader raises KeyError on them; a newer client adding a tag
must still be served. The requests are hand-made: kio encodes the message, then
the empty tagged-field section (a single 0x00 byte ending each flexible entity)
of one entity is replaced by a section carrying unknown tags.
"""

from __future__ import annotations

import dataclasses
import datetime
import struct
import uuid

from typing import Any

import pytest

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from kio.serial import entity_reader
from kio.serial import entity_writer
from kio.serial._implicit_defaults import get_tagged_field_default
from kio.static.primitive import Records

from logbroker.errors import ProtocolError
from logbroker.protocol import SUPPORTED_VERSIONS
from logbroker.protocol.legacy import STAND_IN
from logbroker.protocol import build
from logbroker.protocol import decode_request
from logbroker.protocol import decode_response
from logbroker.protocol import encode_request
from logbroker.protocol import encode_response
from logbroker.protocol import request_module
from logbroker.protocol import response_module
from logbroker.protocol._reader import _walker

st.register_type_strategy(Records, st.binary(max_size=64).map(Records))

UNKNOWN_TAGS = b"\x02" + b"\x63\x03abc" + b"\x7e\x00"  # tag 99 (3 bytes), tag 126 (empty)


def _encode(entity: Any) -> bytes:
    chunks: list[bytes] = []

    class _W:
        write = chunks.append

    entity_writer(type(entity))(_W, entity)
    return b"".join(chunks)


def inject_unknown_tags(payload: bytes, entity: Any, tags: bytes = UNKNOWN_TAGS) -> bytes:
    """Replace ``entity``'s empty tag section inside ``payload`` by ``tags``."""
    encoded = _encode(entity)
    assert encoded.endswith(b"\x00"), "entity already has tags"
    assert payload.count(encoded) == 1, "entity bytes are not unique in the payload"
    return payload.replace(encoded, encoded[:-1] + tags)


def _api_versions_v3() -> tuple[bytes, Any]:
    m = request_module(18, 3)
    body = m.ApiVersionsRequest(client_software_name="newclient", client_software_version="9.9")
    return encode_request(18, 3, 77, "new-client", body)[4:], body


def test_unknown_tag_in_request_header_v2() -> None:
    payload, body = _api_versions_v3()
    header = body.__header_schema__(
        request_api_key=18, request_api_version=3, correlation_id=77, client_id="new-client"
    )
    request = decode_request(inject_unknown_tags(payload, header))
    assert request.correlation_id == 77
    assert request.client_id == "new-client"
    assert request.body == body


def test_unknown_tag_in_request_body() -> None:
    payload, body = _api_versions_v3()
    request = decode_request(inject_unknown_tags(payload, body))
    assert request.body == body


def test_unknown_tags_in_header_and_body() -> None:
    payload, body = _api_versions_v3()
    header = body.__header_schema__(
        request_api_key=18, request_api_version=3, correlation_id=77, client_id="new-client"
    )
    payload = inject_unknown_tags(payload, header)
    payload = inject_unknown_tags(payload, body)
    assert decode_request(payload).body == body


def _fetch_v12() -> tuple[bytes, Any]:
    m = request_module(1, 12)
    partitions = tuple(
        m.FetchPartition(
            partition=p,
            current_leader_epoch=-1,
            fetch_offset=0x0102030405060700 + p,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=1048576,
        )
        for p in range(3)
    )
    forgotten = m.ForgottenTopic(topic="forgotten-topic", partitions=(7, 8))
    body = m.FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=500),
        min_bytes=1,
        max_bytes=52428800,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(m.FetchTopic(topic="unique-topic", partitions=partitions),),
        forgotten_topics_data=(forgotten,),
        rack_id="rack-a",
    )
    return encode_request(1, 12, 5, "c", body)[4:], body


def test_unknown_tags_at_every_nesting_level_of_a_fetch() -> None:
    payload, body = _fetch_v12()
    # Outermost first: injecting changes the bytes of the enclosing entities.
    payload = inject_unknown_tags(payload, body)
    payload = inject_unknown_tags(payload, body.topics[0])  # entity with an array
    payload = inject_unknown_tags(payload, body.topics[0].partitions[1])  # array-free
    payload = inject_unknown_tags(payload, body.forgotten_topics_data[0])
    request = decode_request(payload)
    assert request.body == body


def test_unknown_tag_next_to_a_known_tag() -> None:
    m = request_module(1, 12)
    payload, body = _fetch_v12()
    # FetchRequest v12 knows tag 0 (cluster_id); send it with unknown tags around.
    cluster = b"\x08cluster"  # compact nullable string "cluster" (7 chars)
    tags = b"\x03" + b"\x00" + bytes([len(cluster)]) + cluster + b"\x05\x01x" + b"\x63\x00"
    request = decode_request(inject_unknown_tags(payload, body, tags))
    assert request.body == build(m.FetchRequest, **{**_fields(body), "cluster_id": "cluster"})


def _fields(entity: Any) -> dict[str, Any]:
    return {name: getattr(entity, name) for name in entity.__dataclass_fields__}


def test_unknown_tag_overrunning_the_payload_is_a_protocol_error() -> None:
    payload, body = _api_versions_v3()
    bad = inject_unknown_tags(payload, body, b"\x01\x63\x7fabc")  # declares 127 bytes
    with pytest.raises(ProtocolError, match="tagged field 99"):
        decode_request(bad)


def test_unknown_tag_in_a_response_is_skipped_by_the_client() -> None:

    payload, _ = _fetch_v12()
    request = decode_request(payload)
    m = response_module(1, 12)
    partition = build(
        m.PartitionData,
        partition_index=0,
        error_code=0,
        high_watermark=10,
        aborted_transactions=None,
        records=b"",
    )
    topic = m.FetchableTopicResponse(topic="unique-topic", partitions=(partition,))
    body = build(m.FetchResponse, throttle_time=0, error_code=0, session_id=0, responses=[topic])
    wire = b"".join(encode_response(request, body))[4:]
    wire = inject_unknown_tags(wire, body)
    wire = inject_unknown_tags(wire, topic)
    correlation_id, decoded = decode_response(1, 12, wire)
    assert correlation_id == 5
    assert decoded == body


def test_flexible_request_with_uuid_topic_and_unknown_tag() -> None:
    m = request_module(3, 12)
    topic_id = uuid.UUID(int=0x1234)
    body = m.MetadataRequest(
        topics=(m.MetadataRequestTopic(topic_id=topic_id, name="named"),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    payload = encode_request(3, 12, 1, None, body)[4:]
    payload = inject_unknown_tags(payload, body.topics[0])
    assert struct.unpack_from(">h", payload, 8)[0] == -1  # null client id
    request = decode_request(payload)
    assert request.client_id is None
    assert request.body == body


def test_kio_native_reader_still_refuses_unknown_tags() -> None:
    """Documents the kio 0.6.5 bug we work around; if this fails, kio fixed it."""
    payload, body = _api_versions_v3()
    payload = inject_unknown_tags(payload, body)
    header_size = 2 + 2 + 4 + 2 + len("new-client") + 1
    with pytest.raises(KeyError, match="Unknown tagged field"):
        entity_reader(type(body))(payload, header_size)


def _flexible_entity_classes() -> dict[str, type]:

    classes: dict[str, type] = {}
    for key, (lo, hi) in SUPPORTED_VERSIONS.items():
        for version in range(max(lo, STAND_IN.get(key, lo)), hi + 1):  # legacy versions are never flexible
            for module in (request_module(key, version), response_module(key, version)):
                for obj in vars(module).values():
                    if (
                        isinstance(obj, type)
                        and dataclasses.is_dataclass(obj)
                        and obj.__module__ == module.__name__
                        and obj.__flexible__
                    ):
                        classes[f"{module.__name__.removeprefix('kio.schema.')}.{obj.__name__}"] = obj
    return classes


_FLEXIBLE = _flexible_entity_classes()


def _writes_no_tags(entity: Any) -> bool:
    """True when kio writes an empty tag section for ``entity`` (all at default)."""

    return all(
        getattr(entity, f.name) == get_tagged_field_default(f)
        for f in dataclasses.fields(entity)
        if "tag" in f.metadata
    )


@pytest.mark.parametrize("name", sorted(_FLEXIBLE))
def test_python_walker_reads_like_kio_native(name: str) -> None:
    """The fallback used when native refuses a tag gives kio's exact objects."""


    cls = _FLEXIBLE[name]

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_type(cls))
    def check(entity: Any) -> None:
        data = _encode(entity)
        try:
            expected = entity_reader(cls)(data, 0)
        except ValueError:  # kio's huge-timedelta limit, see test_encode
            return
        assert _walker(cls, False)(data, 0) == expected
        if _writes_no_tags(entity):  # its last byte is the empty tag section
            with_unknown = data[:-1] + UNKNOWN_TAGS
            value, size = _walker(cls, False)(with_unknown, 0)
            assert (value, size) == (expected[0], len(with_unknown))

    check()
