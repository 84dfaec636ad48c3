"""How fast do we encode and decode record batches, against kafka-python?

For 100-byte values (null key, no headers, moderately compressible text),
1000 records per batch, each codec: records/s through ``BatchBuilder`` (append
each record, then build) and ``decode_batch``, and through kafka-python's
``DefaultRecordBatchBuilder`` / ``DefaultRecordBatch`` (CRC validated, every
record materialised) on the same records in the same run. Prints one JSON
object; ``*_ratio`` = ours / kafka-python (above 1 means we are faster).
Runs in well under 30 s on two cores.

    python benchmarks/bench_records.py
"""

from __future__ import annotations

import json
import platform
import random
import sys
import time

from logbroker.records import BatchBuilder, Compression, decode_batch

RECORDS_PER_BATCH = 1000
VALUE_BYTES = 100
BASE_TS = 1_700_000_000_000
MIN_SECONDS = 0.25  # per timing round
ROUNDS = 3


def _values(n: int) -> list[bytes]:
    rng = random.Random(42)
    words = [b"click", b"view", b"purchase", b"login", b"logout", b"search"]
    out = []
    for i in range(n):
        head = b'{"id":%d,"user":"user-%04d","event":"%s","pad":"' % (i, rng.randrange(10_000), rng.choice(words))
        pad = bytes(rng.choice(b"abcdefghijklmnop") for _ in range(VALUE_BYTES - len(head) - 2))
        out.append(head + pad + b'"}')
    return out


def _rate(fn, records: int) -> float:
    """Best records/s over ROUNDS rounds of at least MIN_SECONDS each."""
    fn()  # warm up
    best = 0.0
    for _ in range(ROUNDS):
        loops = 0
        start = time.perf_counter()
        while True:
            fn()
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= MIN_SECONDS:
                break
        best = max(best, loops * records / elapsed)
    return best


def _ours_encode(codec, values, stamps):
    def run():
        builder = BatchBuilder(compression=codec)
        append = builder.append
        for value, ts in zip(values, stamps):
            append(value, None, (), ts)
        return builder.build()

    return run


def _ours_decode(raw):
    def run():
        return decode_batch(raw).records

    return run


def _kafka_python(codec, values, stamps):
    """(encode, decode) callables for kafka-python, or None if it lacks the codec."""
    try:
        from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    except ImportError:
        return None

    def encode():
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=int(codec),
            is_transactional=False,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 30,
        )
        append = builder.append
        for offset, (value, ts) in enumerate(zip(values, stamps)):
            append(offset, ts, None, value, [])
        return builder.build()

    try:
        encode()
    except Exception:  # UnsupportedCodecError when python-snappy/lz4/zstandard is missing
        return None

    def make_decode(raw):
        def decode():
            batch = DefaultRecordBatch(raw)
            if not batch.validate_crc():
                raise AssertionError("kafka-python: bad CRC")
            return list(batch)

        return decode

    return encode, make_decode


def main() -> None:
    started = time.perf_counter()
    values = _values(RECORDS_PER_BATCH)
    stamps = [BASE_TS + i // 50 for i in range(RECORDS_PER_BATCH)]
    codecs = {}
    for codec in Compression:
        encode = _ours_encode(codec, values, stamps)
        raw = encode()
        row = {
            "batch_bytes": len(raw),
            "encode_records_per_s": round(_rate(encode, RECORDS_PER_BATCH)),
            "decode_records_per_s": round(_rate(_ours_decode(raw), RECORDS_PER_BATCH)),
        }
        baseline = _kafka_python(codec, values, stamps)
        if baseline is None:
            row.update(kafka_python_encode_records_per_s=None, kafka_python_decode_records_per_s=None)
        else:
            kp_encode, kp_decode = baseline
            row["kafka_python_encode_records_per_s"] = round(_rate(kp_encode, RECORDS_PER_BATCH))
            row["kafka_python_decode_records_per_s"] = round(_rate(kp_decode(raw), RECORDS_PER_BATCH))
            row["encode_ratio"] = round(row["encode_records_per_s"] / row["kafka_python_encode_records_per_s"], 2)
            row["decode_ratio"] = round(row["decode_records_per_s"] / row["kafka_python_decode_records_per_s"], 2)
        codecs[codec.label] = row
    try:
        from importlib.metadata import version

        kafka_python_version = version("kafka-python")
    except Exception:
        kafka_python_version = None
    print(
        json.dumps(
            {
                "benchmark": "records",
                "records_per_batch": RECORDS_PER_BATCH,
                "value_bytes": VALUE_BYTES,
                "key": None,
                "headers": 0,
                "python": platform.python_version(),
                "kafka_python": kafka_python_version,
                "codecs": codecs,
                "elapsed_s": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
