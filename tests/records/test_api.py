"""The public surface of logbroker.records that other packages code against."""

from __future__ import annotations

import dataclasses
import inspect

import logbroker.records as records


def test_public_names_are_exported():
    for name in (
        "Compression",
        "compress",
        "decompress",
        "Record",
        "BatchBuilder",
        "build_batch",
        "DecodedBatch",
        "decode_batch",
        "decode_batches",
        "BatchHeader",
        "parse_header",
        "check_batch",
        "validate_produced_batch",
        "stamp_batch",
        "iter_batches",
        "scan_valid_prefix",
        "peek_size",
    ):
        assert hasattr(records, name), name


def test_record_is_a_named_tuple():
    assert issubclass(records.Record, tuple)
    assert records.Record._fields == ("offset", "timestamp", "key", "value", "headers")


def test_values_are_frozen_slotted_dataclasses():
    for cls, fields in (
        (records.DecodedBatch, ["header", "records"]),
    ):
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen
        assert hasattr(cls, "__slots__")
        assert [f.name for f in dataclasses.fields(cls)] == fields


def test_compression_values():
    assert {c.name: int(c) for c in records.Compression} == {"NONE": 0, "GZIP": 1, "SNAPPY": 2, "LZ4": 3, "ZSTD": 4}


def test_builder_signature():
    params = inspect.signature(records.BatchBuilder).parameters
    for name, default in (
        ("compression", records.Compression.NONE),
        ("base_offset", 0),
        ("producer_id", -1),
        ("producer_epoch", -1),
        ("base_sequence", -1),
        ("transactional", False),
        ("log_append_time", False),
        ("partition_leader_epoch", -1),
    ):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == default
    append = inspect.signature(records.BatchBuilder.append).parameters
    assert list(append) == ["self", "value", "key", "headers", "timestamp_ms", "offset_delta"]
