"""keyless_records: the indexes of null-key records, one pass over the varints."""

import pytest
from hypothesis import given, settings, strategies as st

from logbroker.errors import CorruptBatchError
from logbroker.records import Compression, build_batch, keyless_records

KEYS = st.none() | st.binary(max_size=300)  # > 63 bytes: two-byte key lengths
VALUES = st.none() | st.binary(max_size=20_000)  # > 8 KiB: three-byte record lengths
HEADERS = st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=2)


@settings(max_examples=80, deadline=None)
@given(
    records=st.lists(st.tuples(KEYS, VALUES, HEADERS, st.integers(-(2**40), 2**40)), min_size=1, max_size=40),
    codec=st.sampled_from([Compression.NONE, Compression.GZIP, Compression.ZSTD]),
)
def test_finds_exactly_the_null_keys(records, codec) -> None:
    batch = build_batch(records, compression=codec)
    assert keyless_records(batch) == [i for i, (key, *_rest) in enumerate(records) if key is None]


def test_an_empty_key_is_a_key() -> None:
    assert keyless_records(build_batch([(b"", b"v"), (None, b"v"), (b"", None)])) == [1]


def test_a_damaged_batch_is_corrupt() -> None:
    batch = bytearray(build_batch([(None, b"v")] * 3))
    batch[-2] ^= 0x55  # inside the CRC's range
    with pytest.raises(CorruptBatchError):
        keyless_records(bytes(batch))
