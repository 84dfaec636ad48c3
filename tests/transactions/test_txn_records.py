"""The ``__transaction_state`` record format: Kafka's bytes, both value versions, tombstones, damage."""

import struct

import pytest

from logbroker.broker.transactions import TransactionState as S, TxnMetadata
from logbroker.broker.transactions.transaction_log_format import (
    RecordFormatError,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)


def meta(**changes) -> TxnMetadata:
    base = dict(
        transactional_id="my-txn-id", producer_id=7, timeout_ms=60_000, state=S.ONGOING,
        last_update_ms=1_700_000_000_123, prev_producer_id=6, next_producer_id=9, producer_epoch=3,
        partitions=frozenset({("orders", 2), ("orders", 0), ("payments", 5)}), start_ms=1_700_000_000_000,
        client_version=2,
    )
    base.update(changes)
    return TxnMetadata(**base)


def test_key_is_kafkas_transaction_log_key():
    assert encode_key("my-txn-id") == b"\x00\x00\x00\x09my-txn-id"
    assert decode_key(encode_key("ü-id")) == "ü-id"
    assert decode_key(b"\x00\x01\x00\x01x") is None  # another coordinator record type
    with pytest.raises(RecordFormatError):
        decode_key(b"\x00\x00\x00\x09my-")
    with pytest.raises(RecordFormatError):
        decode_key(b"\x00\x00\xff\xff")


def test_value_v1_matches_bytes_a_kafka_4_0_coordinator_wrote():
    # An Ongoing record captured from __transaction_state of Kafka 4.0 at
    # transaction.version 1 (no tagged fields set).
    kafka = bytes.fromhex(
        "0001" "0000000000000000" "0000" "0000ea60" "01"
        "02" "07747874657374" "02" "00000000" "00"
        "0000019e7b4b367a" "0000019e7b4b367a" "00"
    )
    ts = 0x0000019E7B4B367A
    m = TxnMetadata("my-txn-id", 0, 60_000, S.ONGOING, ts, producer_epoch=0,
                    partitions=frozenset({("txtest", 0)}), start_ms=ts)
    assert encode_value(m, 1) == kafka
    assert decode_value("my-txn-id", kafka) == m


def test_value_v0_layout():
    m = meta(state=S.PREPARE_COMMIT, partitions=frozenset({("t", 1), ("t", 0)}))
    raw = encode_value(m, 0)
    head = struct.pack(">hqhib", 0, 7, 3, 60_000, 2)
    body = struct.pack(">i", 1) + b"\x00\x01t" + struct.pack(">iii", 2, 0, 1)
    assert raw == head + body + struct.pack(">qq", m.last_update_ms, m.start_ms)
    # v0 has no tagged fields: the previous/next ids and the client version are lost.
    back = decode_value("my-txn-id", raw)
    assert back == TxnMetadata(
        "my-txn-id", 7, 60_000, S.PREPARE_COMMIT, m.last_update_ms, producer_epoch=3, partitions=m.partitions,
        start_ms=m.start_ms,
    )


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("status", list(S))
def test_round_trip_every_state(version, status):
    m = meta(state=status, last_producer_epoch=-1)
    if status is S.EMPTY:
        m = meta(state=status, partitions=frozenset(), start_ms=-1, last_producer_epoch=-1)
    back = decode_value(m.transactional_id, encode_value(m, version))
    if version == 0:
        m = meta(**{**_fields(m), "prev_producer_id": -1, "next_producer_id": -1, "client_version": 0})
    assert back == m
    assert back.state.code == list(S).index(status)


def _fields(m):
    return {name: getattr(m, name) for name in m.__slots__}


def test_tagged_fields_only_when_not_default_and_last_epoch_is_not_stored():
    plain = meta(prev_producer_id=-1, next_producer_id=-1, client_version=0, last_producer_epoch=2)
    tagged = meta(last_producer_epoch=2)
    assert encode_value(plain, 1).endswith(b"\x00")
    assert len(encode_value(tagged, 1)) == len(encode_value(plain, 1)) + (2 + 8) * 2 + (2 + 2)
    assert decode_value("my-txn-id", encode_value(tagged, 1)).last_producer_epoch == -1


def test_empty_state_writes_null_partitions_and_refuses_partitions():
    empty = meta(state=S.EMPTY, partitions=frozenset(), start_ms=-1)
    raw1, raw0 = encode_value(empty, 1), encode_value(empty, 0)
    assert raw1[struct.calcsize(">hqhib")] == 0  # compact null array
    assert raw0[struct.calcsize(">hqhib"):][:4] == b"\xff\xff\xff\xff"
    with pytest.raises(ValueError):
        encode_value(meta(state=S.EMPTY), 1)


def test_unknown_tags_are_skipped():
    m = meta()
    raw = encode_value(m, 1)
    # Kafka's later tag 3 (next producer epoch, int16): append it to the tag section.
    n_tags_pos = len(raw) - (2 + 8) * 2 - (2 + 2) - 1
    assert raw[n_tags_pos] == 3
    extended = raw[:n_tags_pos] + b"\x04" + raw[n_tags_pos + 1 :] + b"\x03\x02\x00\x05"
    assert decode_value("my-txn-id", extended) == decode_value("my-txn-id", raw)


def test_tombstones_unknown_versions_and_damage():
    assert encode_value(None) is None
    assert decode_value("x", None) is None
    assert decode_value("x", b"\x00\x02" + b"\x00" * 40) is None  # a newer value version
    raw = encode_value(meta(), 1)
    for cut in (3, 20, len(raw) - 3):
        with pytest.raises(RecordFormatError):
            decode_value("x", raw[:cut])
    bad_status = bytearray(raw)
    bad_status[struct.calcsize(">hqhi")] = 42
    with pytest.raises(RecordFormatError):
        decode_value("x", bytes(bad_status))
    with pytest.raises(ValueError):
        encode_value(meta(), 2)
