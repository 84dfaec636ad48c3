"""A damaged batch surfaces and loses no more than it touched, against a real ``logbroker serve``.

One template directory per module: topic ``data`` (1 partition, 16 KiB segments,
an index entry per KiB, about 12 segments of 45-record batches), stopped cleanly.
Each test copies it and damages one sealed segment in the middle of the partition:

* after a clean-marker start (no scan, as Kafka), a fetch of the damaged batch is
  answered CORRUPT_MESSAGE: librdkafka hands the application an error for the
  partition, logbroker's consumer and ``logbroker consume`` name topic, partition
  and offset, the broker logs it once, ``status`` and the metrics mark the
  partition; ``logbroker repair`` (refused while the broker runs) then removes
  exactly that batch and librdkafka reads across the gap;
* after a crash-style start (no marker, no recovery-point checkpoint: every
  segment is rescanned), recovery removes exactly the damaged batch (or the cut
  segment's tail) and keeps every later segment; the records after it are read
  at their old offsets.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from fault_support import (
    REPO,
    FaultBroker,
    batches,
    create_topic,
    probe_offsets,
    produce_all,
    read_partitions,
    segments,
    summary,
    truncate,
)

TOPIC = "data"
RECORDS = 1800


def _value(i: int) -> bytes:
    return b"rec-%05d-" % i + bytes([97 + i % 26]) * (40 + i % 50)


@dataclass
class Template:
    path: Path
    values: list[bytes]  # the value at each offset


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("damaged") / "data"
    broker = FaultBroker(path, "--flush", "always").start()
    try:
        create_topic(broker.bootstrap, TOPIC, 1, {"segment.bytes": "16384", "index.interval.bytes": "1024"})
        acked = produce_all(broker.bootstrap, TOPIC, [(0, None, _value(i)) for i in range(RECORDS)],
                            **{"batch.size": 4000, "linger.ms": 5})
    finally:
        assert broker.stop() == 0
    assert [o for _, o, _ in acked] == list(range(RECORDS))
    assert len(segments(path / f"{TOPIC}-0")) >= 10
    return Template(path, [v for _, _, v in acked])


def _copy(template: Template, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(template.path, data)
    (data / ".lock").unlink(missing_ok=True)
    return data


def _sealed(data: Path, n: int) -> Path:
    return segments(data / f"{TOPIC}-0")[n]


def scribble(data: Path) -> set[int]:
    """44 random bytes inside the records of a middle batch of a middle segment."""
    log = _sealed(data, 5)
    pos, size, base, last = batches(log)[len(batches(log)) // 2]
    with open(log, "r+b") as fh:
        fh.seek(pos + size // 2)
        fh.write(random.Random(44).randbytes(44))
    return set(range(base, last + 1))


def flip(data: Path) -> set[int]:
    """One byte flipped inside a batch of a sealed segment."""
    log = _sealed(data, 4)
    pos, size, base, last = batches(log)[3]
    with open(log, "r+b") as fh:
        fh.seek(pos + size - 7)
        byte = fh.read(1)
        fh.seek(pos + size - 7)
        fh.write(bytes([byte[0] ^ 0x20]))
    return set(range(base, last + 1))


def cut(data: Path) -> set[int]:
    """A sealed segment cut in the middle of a batch: its tail is gone, not the next segment."""
    log, following = _sealed(data, 3), _sealed(data, 4)
    pos, size, base, _ = batches(log)[len(batches(log)) // 2]
    truncate(log, pos + size // 2)
    return set(range(base, int(following.stem)))


DAMAGE = [scribble, flip, cut]


def _assert_read_across_the_gap(broker: FaultBroker, template: Template, lost: set[int]) -> None:
    """librdkafka (check.crcs=true) reads every record but the lost ones, at their old offsets."""
    [records] = read_partitions(broker.bootstrap, TOPIC, [0], timeout=10).values()
    served = {o: v for o, _, v in records}
    expected = {o: v for o, v in enumerate(template.values) if o not in lost}
    assert served.keys() == expected.keys(), (
        f"lost {sorted(expected.keys() - served.keys())[:10]}..., expected only {min(lost)}-{max(lost)}")
    assert served == expected
    asked = [min(lost) - 1, min(lost), max(lost) + 1, *range(0, RECORDS, 97)]
    for offset, (first, value) in probe_offsets(broker.bootstrap, TOPIC, 0, asked).items():
        want = max(lost) + 1 if offset in lost else offset
        assert (first, value) == (want, template.values[want]), f"a fetch from {offset} served {first}"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logbroker", *args], capture_output=True, text=True,
                          cwd=str(REPO), timeout=timeout)


@pytest.mark.parametrize("damage", DAMAGE, ids=[f.__name__ for f in DAMAGE])
def test_crash_style_start_loses_only_what_the_damage_touched(template, tmp_path, fault_broker, damage):
    data = _copy(template, tmp_path)
    lost = damage(data)
    before = len(segments(data / f"{TOPIC}-0"))
    (data / "clean-shutdown").unlink()
    (data / "recovery-point-offset-checkpoint").unlink()  # a crash before any checkpoint: rescan all
    broker = fault_broker("--flush", "always", data_dir=data)
    assert len(segments(data / f"{TOPIC}-0")) == before, "recovery deleted segments"
    assert re.search(rf"lost offsets {min(lost)}-{max(lost)} \({len(lost)}\)", broker.log), broker.log
    _assert_read_across_the_gap(broker, template, lost)
    acked = produce_all(broker.bootstrap, TOPIC, [(0, None, b"after-%d" % i) for i in range(5)])
    assert [o for _, o, _ in acked] == list(range(RECORDS, RECORDS + 5))
    assert "Traceback" not in broker.log
    summary("damaged-batches", case=f"crash-{damage.__name__}", lost=len(lost), kept=RECORDS - len(lost))


@pytest.mark.parametrize("damage", DAMAGE, ids=[f.__name__ for f in DAMAGE])
def test_repair_after_a_clean_stop_loses_only_what_the_damage_touched(template, tmp_path, fault_broker, damage):
    data = _copy(template, tmp_path)
    lost = damage(data)
    done = _cli("repair", str(data), "--format", "json")
    assert done.returncode == 0, done.stderr
    [part] = json.loads(done.stdout)["damaged"]
    assert (part["topic"], part["partition"], part["records"]) == (TOPIC, 0, len(lost))
    assert [(r["first_offset"], r["next_offset"]) for r in part["lost"]] == [(min(lost), max(lost) + 1)]
    broker = fault_broker("--flush", "always", data_dir=data)
    assert "clean shutdown" in broker.log and "damaged batch" not in broker.log
    _assert_read_across_the_gap(broker, template, lost)
    summary("damaged-batches", case=f"repair-{damage.__name__}", lost=len(lost), kept=RECORDS - len(lost))


def _first_error(bootstrap: str, seconds: float):
    """What a librdkafka application polling data-0 from the start sees: (offsets, error)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "app", "enable.auto.commit": False,
                         "check.crcs": True, "fetch.error.backoff.ms": 200, "log_level": 0})
    offsets, error = [], None
    try:
        consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error() is not None:
                error = error or (msg.partition(), msg.offset(), msg.error())
                continue  # keep polling: librdkafka retries the fetch (and the broker must log once)
            offsets.append(msg.offset())
    finally:
        consumer.close()
    return offsets, error


def _metrics(broker: FaultBroker) -> str:
    port = re.search(r"metrics on http://[\d.]+:(\d+)", broker.log).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def test_a_damaged_batch_surfaces_to_every_reader_and_repair_removes_it(template, tmp_path, fault_broker):
    data = _copy(template, tmp_path)
    lost = scribble(data)
    first, last = min(lost), max(lost)
    broker = fault_broker("--flush", "always", "--metrics-port", "0", data_dir=data)
    assert "clean shutdown" in broker.log

    # librdkafka: the records before it, then an error for the partition (not a silent retry).
    offsets, error = _first_error(broker.bootstrap, 3.0)
    assert offsets == list(range(first)), offsets[-3:]
    assert error is not None, "the application saw no error"
    partition, _, err = error
    assert partition == 0 and err.code() == 2, err  # CORRUPT_MESSAGE (librdkafka: INVALID_MSG)
    # The broker said it once, with the file and byte position, although the fetch was retried.
    said = [line for line in broker.log_lines if "damaged batch at byte" in line]
    assert len(said) == 1 and f"{TOPIC}-0/{_sealed(data, 5).name}" in said[0], said
    assert f"offsets {first}-{last}" in said[0] and "logbroker repair" in said[0]

    # logbroker's consumer and CLI name topic, partition and offset.
    from logbroker.client import SyncConsumer
    from logbroker.errors import CorruptRecordError

    with SyncConsumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(TOPIC, 0)])
        seen = []
        with pytest.raises(CorruptRecordError, match=rf"{TOPIC}\[0\] at offset {first}\b"):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                seen += [r.offset for r in consumer.getmany(timeout=0.5)]
        assert seen == list(range(first))
    done = _cli("consume", TOPIC, "-b", broker.bootstrap, "--from-beginning", "--exit-at-end", timeout=30)
    assert done.returncode == 1 and re.search(rf"{TOPIC}\[0\] at offset {first}\b", done.stderr), done.stderr
    assert len(done.stdout.splitlines()) == first

    # status and the metrics mark the partition.
    status = _cli("status", "-b", broker.bootstrap, "--format", "json")
    assert status.returncode == 0, status.stderr
    [topic] = [t for t in json.loads(status.stdout)["topics"] if t["name"] == TOPIC]
    assert topic["partitions"][0]["damaged"] == [f"{first}-{last}"]
    text = _cli("status", "-b", broker.bootstrap).stdout
    assert "DAMAGED" in text and re.search(rf"{TOPIC}\s+0\s+{first}-{last}", text), text
    assert f'logbroker_partition_damaged_batches{{partition="0",topic="{TOPIC}"}} 1.0\n' in _metrics(broker)

    # repair: refused while the broker runs; a dry run changes nothing; then exactly that batch goes.
    refused = _cli("repair", str(data))
    assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
    assert broker.stop() == 0
    files = {p.name: p.read_bytes() for p in (data / f"{TOPIC}-0").iterdir() if p.is_file()}
    dry = _cli("repair", str(data), "--dry-run")
    assert dry.returncode == 1 and f"{TOPIC}[0]: would lose offsets {first}-{last} ({len(lost)})" in dry.stdout
    assert {p.name: p.read_bytes() for p in (data / f"{TOPIC}-0").iterdir() if p.is_file()} == files
    fixed = _cli("repair", str(data))
    assert fixed.returncode == 0 and f"{TOPIC}[0]: lost offsets {first}-{last} ({len(lost)})" in fixed.stdout
    assert f"{len(lost)} offsets lost" in fixed.stdout

    broker.start()
    _assert_read_across_the_gap(broker, template, lost)
    status = json.loads(_cli("status", "-b", broker.bootstrap, "--format", "json").stdout)
    assert [t for t in status["topics"] if t["name"] == TOPIC][0]["partitions"][0]["damaged"] == []
    assert f'logbroker_partition_damaged_batches{{partition="0",topic="{TOPIC}"}} 0.0\n' in _metrics(broker)
    assert "Traceback" not in "".join(broker.all_log_lines)
    summary("damaged-batches", case="surfaces-then-repair", first=first, last=last, lost=len(lost), logged=len(said),
            served_before_error=len(offsets))


def test_our_consumer_hands_out_the_records_before_a_damaged_batch_before_the_error(template, tmp_path, fault_broker):
    # The fetcher reads ahead: the answer naming the damaged batch (CORRUPT_MESSAGE)
    # can arrive while records fetched before it still wait for the application.
    # Those come first, then the error, as the partition's order says.
    from logbroker.client import SyncConsumer
    from logbroker.errors import CorruptRecordError

    data = _copy(template, tmp_path)
    first = min(scribble(data))
    broker = fault_broker("--flush", "always", data_dir=data)
    with SyncConsumer(broker.bootstrap, auto_offset_reset="earliest", max_partition_fetch_bytes=4096) as consumer:
        consumer.assign([(TOPIC, 0)])
        consumer.getmany(timeout=10, max_records=1)  # fetching has started; now let it read ahead
        time.sleep(2)
        seen = [0]
        with pytest.raises(CorruptRecordError, match=rf"at offset {first}\b"):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                seen += [r.offset for r in consumer.getmany(timeout=0.5)]
        assert seen == list(range(first))
