"""Produce v0-2, Fetch v0-3 and ListOffsets v0 through the handlers, with request bytes and no sockets.

Requests are written by kafka-python's old protocol structs and its legacy
record builder; answers are read back with the same library.
"""

from __future__ import annotations

import struct
from typing import Any

import crc32c
from kafka.protocol.old import fetch as kp_fetch
from kafka.protocol.old import list_offsets as kp_list_offsets
from kafka.protocol.old import produce as kp_produce
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from logbroker.broker.handlers import FetchOperation, Reply, dispatch
from logbroker.protocol import decode_request, encode_response
from logbroker.records import build_batch, decode_batches
from logbroker.records.legacy import encode_message

CREATE_TOPICS, FETCH = 19, 1


def create(h: Any, name: str, partitions: int = 1, **configs: str) -> None:
    topic = h.req(CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=partitions, replication_factor=1,
                  assignments=(), configs=tuple(h.req(CREATE_TOPICS, 7, "CreatableTopicConfig", name=k, value=v)
                                                for k, v in configs.items()))
    h.call(CREATE_TOPICS, 7, "CreateTopicsRequest", topics=(topic,), timeout=5000, validate_only=False)


def old_call(h: Any, request: Any, response_class: Any) -> Any:
    """Dispatch an old request's bytes; the answer decoded with kafka-python (None: no answer)."""
    request.with_header(correlation_id=5, client_id="old")
    decoded = decode_request(request.encode(header=True))
    result = dispatch(h.broker, decoded)
    if isinstance(result, FetchOperation):
        result = result.attempt(final=True)
    if isinstance(result, Reply):
        result = result.body
    if result is None:
        return None
    frame = b"".join(bytes(b) for b in encode_response(decoded, result))
    assert struct.unpack_from(">ii", frame) == (len(frame) - 4, 5)
    return response_class.decode(frame[8:]).to_object()


def message_set(magic: int, codec: int, values: list[bytes], timestamp: int | None = None) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, codec, 1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp if magic else None, b"k%d" % i, value)
    return bytes(builder.build())


def produce(h: Any, version: int, topic: str, records: bytes, acks: int = -1) -> Any:
    cls = getattr(kp_produce, f"ProduceRequest_v{version}")
    response = getattr(kp_produce, f"ProduceResponse_v{version}")
    answer = old_call(h, cls(acks, 5000, [(topic, [(0, records)])]), response)
    return None if answer is None else answer["responses"][0]["partition_responses"][0]


def fetch(h: Any, version: int, topic: str, offset: int, partition_max: int = 1 << 20, max_bytes: int = 1 << 20):
    cls = getattr(kp_fetch, f"FetchRequest_v{version}")
    head = (-1, 0, 1) + ((max_bytes,) if version == 3 else ())
    answer = old_call(h, cls(*head, [(topic, [(0, offset, partition_max)])]), getattr(kp_fetch, f"FetchResponse_v{version}"))
    [partition] = answer["responses"][0]["partitions"]
    records = MemoryRecords(partition["records"])
    out = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.magic == (0 if version < 2 else 1)
        out.extend((r.offset, r.timestamp, r.timestamp_type, r.key, r.value) for r in batch)
    return partition, out


def test_old_produce_is_stored_as_v2_and_read_by_every_fetch_version(h):
    create(h, "t")
    first = produce(h, 0, "t", message_set(0, 1, [b"a", b"b"]))  # gzip wrapper
    second = produce(h, 2, "t", message_set(1, 2, [b"c"], timestamp=1_700_000_000_000))  # snappy, v1
    assert (first["error_code"], first["base_offset"]) == (0, 0)
    assert (second["error_code"], second["base_offset"], second["log_append_time_ms"]) == (0, 2, -1)

    log = h.broker.partition("t", 0)
    stored = [(r.offset, r.timestamp, r.value) for b in decode_batches(log.read(0, 1 << 20).records) for r in b.records]
    assert stored == [(0, -1, b"a"), (1, -1, b"b"), (2, 1_700_000_000_000, b"c")]

    partition, v0 = fetch(h, 0, "t", 0)
    assert (partition["error_code"], partition["high_watermark"]) == (0, 3)
    assert [(o, v) for o, _ts, _tt, _k, v in v0] == [(0, b"a"), (1, b"b"), (2, b"c")]
    _, v1 = fetch(h, 3, "t", 1)  # from the middle of the first batch
    assert [(o, ts, v) for o, ts, _tt, _k, v in v1] == [(1, -1, b"b"), (2, 1_700_000_000_000, b"c")]


def test_fetch_limits_cut_at_whole_messages(h):
    create(h, "t")
    h.broker.append("t", 0, build_batch([(None, b"x" * 100)] * 10))
    one = len(encode_message(1, 0, 0, None, b"x" * 100))
    _, out = fetch(h, 2, "t", 0, partition_max=3 * one + 10)
    assert [o for o, *_ in out] == [0, 1, 2]
    _, out = fetch(h, 1, "t", 0, partition_max=5)  # smaller than one message: still one
    assert len(out) == 1
    _, out = fetch(h, 3, "t", 4, max_bytes=2 * one)  # v3's response limit
    assert [o for o, *_ in out] == [4, 5]


def test_log_append_time_topic(h):
    create(h, "t", **{"message.timestamp.type": "LogAppendTime"})
    answer = produce(h, 2, "t", message_set(1, 0, [b"v"], timestamp=5))
    stamped = answer["log_append_time_ms"]
    assert stamped > 1_600_000_000_000
    _, out = fetch(h, 2, "t", 0)
    assert [(ts, tt) for _o, ts, tt, _k, _v in out] == [(stamped, 1)]  # LogAppendTime flagged


def test_bad_message_sets_and_acks_zero(h):
    create(h, "t")
    broken = bytearray(encode_message(0, 0, -1, b"k", b"v"))
    broken[-1] ^= 1
    assert produce(h, 1, "t", bytes(broken))["error_code"] == 2  # CORRUPT_MESSAGE
    assert produce(h, 1, "t", encode_message(0, 0, -1, b"k", b"v")[:-3])["error_code"] == 2
    assert produce(h, 0, "unknown", encode_message(0, 0, -1, b"k", b"v"))["error_code"] == 3
    assert produce(h, 0, "t", encode_message(0, 0, -1, b"k", b"v"), acks=0) is None  # acks 0: no answer
    assert produce(h, 1, "t", build_batch([(b"k", b"v2 batch")]))["base_offset"] == 1  # a v2 batch is taken as is
    _, out = fetch(h, 1, "t", 0)
    assert [v for *_, v in out] == [b"v", b"v2 batch"]


def test_list_offsets_v0(h):
    create(h, "t")
    h.broker.append("t", 0, build_batch([(None, b"x")] * 4))
    request = kp_list_offsets.ListOffsetsRequest_v0(-1, [("t", [(0, -1, 1), (0, -2, 1), (3, -1, 1)])])
    answer = old_call(h, request, kp_list_offsets.ListOffsetsResponse_v0)
    [topic] = answer["topics"]
    assert [tuple(p.values()) for p in topic["partitions"]] == [(0, 0, [4]), (0, 0, [0]), (3, 3, [])]


def test_a_stored_batch_that_does_not_decode_fails_only_its_partition(h):
    create(h, "t", partitions=2)
    h.broker.append("t", 0, build_batch([(None, b"fine")]))
    bad = bytearray(build_batch([(None, b"abcdefgh")]))
    bad[-8:] = b"\xff" * 8  # the record's bytes, not its header: the CRC-32C is redone, so storing it succeeds
    struct.pack_into(">I", bad, 17, crc32c.crc32c(bytes(bad[21:])))
    h.broker.append("t", 1, bytes(bad))
    request = kp_fetch.FetchRequest_v1(-1, 0, 1, [("t", [(0, 0, 1 << 20), (1, 0, 1 << 20)])])
    answer = old_call(h, request, kp_fetch.FetchResponse_v1)
    good, broken = answer["responses"][0]["partitions"]
    assert (good["error_code"], broken["error_code"], broken["records"]) == (0, 2, b"")  # CORRUPT_MESSAGE
    assert [r.value for r in MemoryRecords(good["records"]).next_batch()] == [b"fine"]
