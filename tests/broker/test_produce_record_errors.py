"""KIP-467: a Produce batch refused for some of its records names them
(``record_errors``) and says why (``error_message``), as Kafka's LogValidator."""

import pytest

from logbroker.protocol import ErrorCode
from logbroker.records import Compression, build_batch

from test_handlers import create, fetch, produce


def keyed_every(n: int, count: int, codec=Compression.NONE) -> bytes:
    """``count`` records; every ``n``th (from index 0) has no key."""
    return build_batch([(None if i % n == 0 else b"k%d" % i, b"v%d" % i) for i in range(count)], compression=codec)


@pytest.mark.parametrize("policy", ["compact", "delete,compact"])
@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4])
def test_keyless_records_of_a_compacted_topic_are_named(h, policy, codec) -> None:
    create(h, "c", configs=[("cleanup.policy", policy)])
    answer = produce(h, "c", keyed_every(10, 100, codec))
    assert answer.error_code == ErrorCode.invalid_record
    assert answer.base_offset == -1
    why = "Compacted topic cannot accept message without key in topic partition c-0"
    assert [(e.batch_index, e.batch_index_error_message) for e in answer.record_errors] == [
        (i, why) for i in range(0, 100, 10)
    ]
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{why}')" for i in (0, 10, 20))
    assert answer.error_message == (
        "One or more records have been rejected due to 10 record errors in total, "
        f"and only showing the first three errors at most: [{shown}]"
    )
    assert fetch(h, "c", 0).high_watermark == 0  # the whole batch was refused
    assert produce(h, "c", build_batch([(b"k", b"v")])).error_code == ErrorCode.none


def test_v8_carries_record_errors_and_older_versions_only_the_code(h) -> None:
    create(h, "c", configs=[("cleanup.policy", "compact")])
    v8 = produce(h, "c", keyed_every(2, 3), version=8)
    assert v8.error_code == ErrorCode.invalid_record
    assert [e.batch_index for e in v8.record_errors] == [0, 2]
    assert v8.error_message.startswith("One or more records have been rejected due to 2 record errors")
    v7 = produce(h, "c", keyed_every(2, 3), version=7)
    assert v7.error_code == ErrorCode.invalid_record


def test_other_errors_name_no_records_and_other_topics_take_keyless_records(h) -> None:
    create(h, "d")
    create(h, "c", configs=[("cleanup.policy", "compact")])
    assert produce(h, "d", keyed_every(1, 4)).error_code == ErrorCode.none
    bad = bytearray(keyed_every(1, 4))
    bad[-1] ^= 0xFF
    answer = produce(h, "c", bytes(bad))
    assert answer.error_code == ErrorCode.corrupt_message
    assert answer.record_errors == ()
