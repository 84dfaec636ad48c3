"""A full disk: the data directory lives on an 8 MiB tmpfs that a filler file
nearly fills.

* Produce answers KAFKA_STORAGE_ERROR (56), which the client sees as such
  (librdkafka with retries off, and kafka-python), and keeps answering it;
  the broker stays up, also through its periodic flush and checkpoint.
* Fetches keep working and return exactly what was acknowledged.
* OffsetCommit fails cleanly; the last committed offset stays.
* Once the filler is deleted, producing and committing work again, at the
  next offsets (nothing skipped, nothing duplicated).
* After a SIGKILL everything acknowledged is still there, ``logbroker dump``
  finds no problem, and a restart while the disk is full either works or
  refuses with a one-line reason.

Without permission to mount, the test runs the broker with RLIMIT_FSIZE
(SIGXFSZ ignored) instead: appends past the limit fail with EFBIG, and
"freeing space" is shrinking segment.bytes so the next append rolls to a new,
small file.
"""

from __future__ import annotations

import os
import resource
import signal
import time

import pytest

from fault_support import (
    KAFKA_STORAGE_ERROR,
    admin,
    assert_dump_clean,
    committed_offsets,
    create_topic,
    read_partitions,
    summary,
    unique_topic,
)

RECORD = 16 * 1024
HEADROOM = 1536 * 1024  # free bytes left beside the filler
GROUP = "full-disk-group"


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path, leave: int) -> int:
    """Create ``path/filler`` so that about ``leave`` bytes stay free; returns its size."""
    size = max(_free(path.parent if path.is_file() else path) - leave, 0)
    with open(path / "filler", "wb") as fh:
        chunk = b"\0" * (1 << 20)
        left = size
        while left > 0:
            left -= fh.write(chunk[: min(left, len(chunk))])
    return size


def _top_up(path) -> int:
    """Grow ``path/filler`` until the filesystem is completely full; returns bytes added."""
    added = 0
    with open(path / "filler", "ab", buffering=0) as fh:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    added += fh.write(b"\0" * size)
            except OSError:
                pass
    return added


def fsize_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False, "retries": 0,
        "linger.ms": 0, "message.timeout.ms": 15000, "log_level": 0,
    })


def _send(producer, topic: str, value: bytes):
    """Produce one record and wait: ``(offset, None)`` or ``(None, KafkaError)``."""
    out = []
    producer.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: out.append((err, msg)))
    producer.flush(20)
    assert out, "no delivery report"
    err, msg = out[0]
    return (None, err) if err is not None else (msg.offset(), None)


def _commit(bootstrap: str, topic: str, offset: int):
    """Commit ``offset`` for partition 0; returns None or the error."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                         "log_level": 0})
    try:
        stored = consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        return stored[0].error
    except KafkaException as exc:
        return exc.args[0]
    finally:
        consumer.close()


def _kafka_python_storage_error(bootstrap: str, topic: str) -> str:
    """kafka-python (retries off) reports the failure as KafkaStorageError."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaStorageError

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, enable_idempotence=False,
                             request_timeout_ms=10000, max_block_ms=10000)
    try:
        future = producer.send(topic, value=b"k" * RECORD, partition=0)
        with pytest.raises(KafkaStorageError) as info:
            future.get(timeout=20)
        return type(info.value).__name__
    finally:
        producer.close(5)


@pytest.mark.parametrize("flush", ["always", "interval"])
def test_full_disk_refuses_produce_keeps_serving_and_recovers(small_disk, fault_broker, flush):
    disk, how = small_disk
    data = disk / "data"
    extra = ("--flush-interval-ms", "100") if flush == "interval" else ()
    limit = 3 * 1024 * 1024
    preexec = None if how == "tmpfs" else fsize_limit(limit)
    broker = fault_broker("--flush", flush, *extra, data_dir=data, preexec_fn=preexec)
    topic = unique_topic("full")
    # With the rlimit, one segment must reach the limit; on the tmpfs, rolls must happen.
    segment_bytes = 1024 * 1024 if how == "tmpfs" else 8 * limit
    create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(segment_bytes)})
    producer = _producer(broker.bootstrap)
    acked: dict[int, bytes] = {}
    for i in range(3):
        offset, err = _send(producer, topic, b"%06d" % i + b"a" * RECORD)
        assert err is None, err
        acked[offset] = b"%06d" % i + b"a" * RECORD
    assert _commit(broker.bootstrap, topic, 2) is None
    filler = _fill(disk, HEADROOM) if how == "tmpfs" else 0

    # Fill the rest: produce until the broker refuses.
    errors = []
    for i in range(3, 3 + (limit * 2) // RECORD):
        value = b"%06d" % i + b"b" * RECORD
        offset, err = _send(producer, topic, value)
        if err is not None:
            errors.append(err)
            break
        acked[offset] = value
    assert errors, f"the disk never filled up ({how})"
    assert errors[0].code() == KAFKA_STORAGE_ERROR, f"produce on a full disk answered {errors[0]!r}"
    time.sleep(0.3)  # a periodic flush or two (interval mode)
    assert broker.running, f"the broker died on a nearly full disk:\n{broker.log}"
    error_name = _kafka_python_storage_error(broker.bootstrap, topic)

    # Reads keep working and return exactly what was acknowledged.
    [records] = read_partitions(broker.bootstrap, topic, [0]).values()
    assert {o: v for o, _, v in records} == acked

    # A commit on a full disk fails cleanly (or succeeds if it still fits); the group survives.
    commit_err = _commit(broker.bootstrap, topic, len(acked))
    last_commit = 2 if commit_err is not None else len(acked)
    assert committed_offsets(broker.bootstrap, GROUP, topic, 1)[0] == last_commit

    # Now leave no byte free and let the periodic flush and checkpoint run (every
    # 1 s with --flush always, every 100 ms with interval): the broker must stay up.
    problems = []
    if how == "tmpfs":
        _top_up(disk)
    for _ in range(3):
        offset, err = _send(producer, topic, b"c" * RECORD)
        if err is None or err.code() != KAFKA_STORAGE_ERROR:
            problems.append(f"produce on a completely full disk answered offset {offset}, {err!r}")
            break
    time.sleep(1.5)
    if not broker.running:
        problems.append(f"the broker exited on a completely full disk (exit {broker.proc.poll()}): "
                        + broker.log.strip().splitlines()[-1])
    else:
        [records] = read_partitions(broker.bootstrap, topic, [0]).values()
        if {o: v for o, _, v in records} != acked:
            problems.append("reads on a completely full disk do not return what was acknowledged")

    # Free space: produce and commit work again, at the next offsets.
    if how == "tmpfs":
        (disk / "filler").unlink()
    else:
        from confluent_kafka.admin import ConfigResource

        client = admin(broker.bootstrap)  # shrink segment.bytes: the next append rolls to a new file
        futures = client.alter_configs(
            [ConfigResource("topic", topic, set_config={"segment.bytes": str(256 * 1024)})])
        [f.result(10) for f in futures.values()]
    if not broker.running:
        broker.kill()
        broker.start()  # to check the rest despite the exit above
    end = len(acked)
    for i in range(5):
        offset, err = _send(producer, topic, b"%06d" % (1000 + i) + b"d" * 100)
        assert err is None, f"produce after freeing space: {err!r}"
        assert offset == end + i, f"expected offset {end + i}, got {offset}"
        acked[offset] = b"%06d" % (1000 + i) + b"d" * 100
    assert _commit(broker.bootstrap, topic, len(acked)) is None
    last_commit = len(acked)

    # Crash and restart: nothing acknowledged is lost, nothing is damaged.
    broker.kill()
    broker.start()
    [records] = read_partitions(broker.bootstrap, topic, [0]).values()
    assert {o: v for o, _, v in records} == acked
    assert committed_offsets(broker.bootstrap, GROUP, topic, 1)[0] == last_commit
    broker.stop()
    assert_dump_clean(data)

    # Restart on a full disk: it starts and serves reads, or refuses with a clear reason.
    refused = None
    if how == "tmpfs":
        _fill(disk, 0)
        broker.spawn()
        deadline = time.monotonic() + 20
        while broker.proc.poll() is None and "listening on" not in broker.log and time.monotonic() < deadline:
            time.sleep(0.05)
        if broker.proc.poll() is not None:
            refused = broker.log
            assert "Traceback" not in refused and "Error:" in refused, f"unclear refusal on a full disk:\n{refused}"
        else:
            [records] = read_partitions(broker.bootstrap, topic, [0]).values()
            assert {o: v for o, _, v in records} == acked
            broker.kill()
    summary("full_disk", flush=flush, how=how, problems=problems, filler=filler, acked=len(acked),
            errors=[e.name() for e in errors],
            kafka_python=error_name, commit_on_full_disk=repr(commit_err),
            restart_on_full_disk=("refused: " + refused.strip().splitlines()[-1] if refused
                                  else "started" if how == "tmpfs" else "not tried"))
    assert not problems, "\n".join(problems)
