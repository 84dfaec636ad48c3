"""Torn and corrupted files: the broker starts, repairs what it can, says what it
did in its log, and never serves a corrupt batch.

Two data directories are built once per module with ``--flush always``: a topic
``data`` (2 partitions, 16 KiB segments, so each partition has ~15 segments
with sparse indexes), records produced by an idempotent producer, a consumer
group ``g`` that committed 20 times, then the broker was either killed
(SIGKILL: no clean-shutdown marker, the recovery point checkpoint a little
behind the log end) or stopped (SIGTERM: marker and producer-state snapshots).
Each test copies one of them, damages one file, starts a broker on it and:

* asserts what its log says (and that no traceback was logged);
* reads every partition back with librdkafka ``check.crcs=true``: every record
  served is the one produced at that offset, and exactly the records the damage
  touched are missing (a damaged batch, or a torn tail); the records after a
  damaged batch are still served at their offsets, across the gap;
* checks the committed offsets are the last commit, or for damage to
  ``__consumer_offsets`` one of the earlier commits;
* produces again (offsets continue where the log now ends);
* stops the broker and runs ``logbroker dump`` over every partition: no problem.

Where the broker must refuse to start (``topics.json`` unreadable), it must
exit non-zero with a one-line reason and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fault_support import (
    FaultBroker,
    append_bytes,
    assert_dump_clean,
    batches,
    committed_offsets,
    create_topic,
    dump,
    flip,
    probe_offsets,
    produce_all,
    read_partitions,
    segments,
    summary,
    truncate,
)

TOPIC = "data"
PARTITIONS = 2
BEFORE_CHECKPOINT = 1400  # records per partition acknowledged before the checkpoint is written
AFTER_CHECKPOINT = 100  # ... and after it (above the recovery point when the broker is killed)
GROUP = "g"
COMMIT_STEP = 75
IDEMPOTENT = {"enable.idempotence": True, "batch.size": 4000, "linger.ms": 5}


def _value(p: int, i: int) -> bytes:
    return b"rec-%d-%05d-" % (p, i) + bytes([97 + i % 26]) * (40 + i % 50)


@dataclass
class Template:
    path: Path
    expected: dict[int, list[bytes]]  # partition -> value at each offset
    commits: list[int]  # successive committed offsets (same for both partitions)


def _build(path: Path, kill: bool) -> Template:
    broker = FaultBroker(path, "--flush", "always").start()
    try:
        create_topic(broker.bootstrap, TOPIC, PARTITIONS, {"segment.bytes": "16384", "index.interval.bytes": "1024"})
        records = [(p, None, _value(p, i)) for i in range(BEFORE_CHECKPOINT) for p in range(PARTITIONS)]
        acked = produce_all(broker.bootstrap, TOPIC, records, **IDEMPOTENT)
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
        commits = []
        for k in range(1, 21):
            offset = k * COMMIT_STEP
            stored = consumer.commit(offsets=[TopicPartition(TOPIC, p, offset) for p in range(PARTITIONS)],
                                     asynchronous=False)
            assert all(tp.error is None for tp in stored)
            commits.append(offset)
        consumer.close()
        time.sleep(1.3)  # the periodic flush writes the recovery-point checkpoint
        records = [(p, None, _value(p, i)) for i in range(BEFORE_CHECKPOINT, BEFORE_CHECKPOINT + AFTER_CHECKPOINT)
                   for p in range(PARTITIONS)]
        acked += produce_all(broker.bootstrap, TOPIC, records, **IDEMPOTENT)
    finally:
        if kill:
            broker.kill()
        else:
            assert broker.stop() == 0
    expected = {p: [] for p in range(PARTITIONS)}
    for p, offset, value in sorted(acked):
        assert offset == len(expected[p])
        expected[p].append(value)
    return Template(path, expected, commits)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    base = tmp_path_factory.mktemp("templates")
    return {"killed": _build(base / "killed", kill=True), "stopped": _build(base / "stopped", kill=False)}


# ----------------------------------------------------------------------------- damage

def _pdir(data: Path, p: int = 0, topic: str = TOPIC) -> Path:
    return data / f"{topic}-{p}"


def _last_log(data: Path, p: int = 0, topic: str = TOPIC) -> Path:
    return segments(_pdir(data, p, topic))[-1]


def _sealed_log(data: Path, p: int = 0) -> Path:
    """A sealed segment in the middle of the partition (several index entries)."""
    logs = segments(_pdir(data, p))
    return logs[len(logs) // 2]


def _middle_batch(log: Path):
    found = batches(log)
    return found[len(found) // 2]


END = BEFORE_CHECKPOINT + AFTER_CHECKPOINT  # records per partition in the templates


def _batch_offsets(batch) -> range:
    """The offsets of one ``(position, size, base, last)`` batch."""
    return range(batch[2], batch[3] + 1)


@dataclass
class Damage:
    """What was done, and what the broker loses because of it."""

    description: str
    # partition -> exactly the offsets lost (absent: nothing may be lost)
    lost: dict[int, range]
    log: str  # regex the broker's log must match


def tear_last_segment(data: Path) -> Damage:
    log = _last_log(data)
    pos, size, base, _ = batches(log)[-1]
    truncate(log, pos + size // 2)
    return Damage(f"cut {log.name} in the middle of its last batch", {0: range(base, END)},
                  r"truncated \d+ invalid bytes")


def tear_last_segment_header(data: Path) -> Damage:
    log = _last_log(data)
    pos, _, base, _ = batches(log)[-1]
    truncate(log, pos + 30)
    return Damage(f"cut {log.name} inside a batch header", {0: range(base, END)}, r"truncated 30 invalid bytes")


def _removed(batch) -> str:
    """The log line for a damaged batch: cut out, or truncated if it was the last one."""
    pos, _, base, last = batch
    return rf"(removed \d+ damaged bytes at positions \[{pos}, \d+\), between valid batches; lost offsets " \
           rf"{base}-{last}|truncated \d+ invalid bytes at position {pos})"


def flip_record_byte_last_segment(data: Path) -> Damage:
    log = _last_log(data)
    batch = pos, size, _, _ = _middle_batch(log)
    flip(log, pos + size - 7)
    return Damage(f"flipped a record byte of the batch at {pos} of {log.name}", {0: _batch_offsets(batch)},
                  _removed(batch))


def flip_length_last_segment(data: Path) -> Damage:
    log = _last_log(data)
    batch = pos, _, _, _ = _middle_batch(log)
    flip(log, pos + 10, 0x40)  # batchLength grows by 16 KiB: runs past the end of the file
    return Damage(f"flipped the length of the batch at {pos} of {log.name}", {0: _batch_offsets(batch)},
                  _removed(batch))


def _set_base_offset(log: Path, pos: int, value: int) -> None:
    with open(log, "r+b") as fh:
        fh.seek(pos)
        fh.write(value.to_bytes(8, "big", signed=True))


def offset_backwards_last_segment(data: Path) -> Damage:
    log = _last_log(data)
    batch = pos, _, base, _ = _middle_batch(log)
    _set_base_offset(log, pos, base - 1)  # baseOffset is outside the CRC
    return Damage(f"base offset of the batch at {pos} of {log.name} lowered by 1", {0: _batch_offsets(batch)},
                  _removed(batch))


def offset_forwards_last_segment(data: Path) -> Damage:
    """baseOffset + 1: the CRC still matches and offsets still increase, but the
    batch's records now sit one offset later (a gap before them). logbroker never
    writes gaps, so recovery could notice; a client must never be served them."""
    log = _last_log(data)
    batch = pos, _, base, _ = _middle_batch(log)
    _set_base_offset(log, pos, base + 1)
    return Damage(f"base offset of the batch at {pos} of {log.name} raised by 1", {0: _batch_offsets(batch)},
                  _removed(batch))


def flip_record_byte_sealed_segment(data: Path) -> Damage:
    log = _sealed_log(data)
    batch = pos, size, _, _ = _middle_batch(log)
    flip(log, pos + size - 7)
    return Damage(f"flipped a record byte of the batch at {pos} of sealed {log.name}", {0: _batch_offsets(batch)},
                  _removed(batch))


def garbage_tail(data: Path) -> Damage:
    log = _last_log(data)
    append_bytes(log, os.urandom(3000))
    return Damage(f"appended 3000 random bytes to {log.name}", {}, r"truncated 3000 invalid bytes")


def zero_tail(data: Path) -> Damage:
    log = _last_log(data)
    append_bytes(log, bytes(8192))
    return Damage(f"appended 8 KiB of zeros to {log.name} (a power loss' preallocated tail)", {},
                  r"truncated 8192 invalid bytes")


def empty_last_segment(data: Path) -> Damage:
    log = _last_log(data)
    base = int(log.stem)
    truncate(log, 0)
    return Damage(f"emptied {log.name}", {0: range(base, END)}, r"log end " + str(base))


def index_misaligned(data: Path) -> Damage:
    index = _sealed_log(data).with_suffix(".index")
    truncate(index, index.stat().st_size - 3)
    return Damage(f"cut 3 bytes off {index.name}", {}, r"rebuilt indexes of \[" + str(int(index.stem)))


def index_garbage(data: Path) -> Damage:
    index = _sealed_log(data).with_suffix(".index")
    index.write_bytes(os.urandom(index.stat().st_size))
    return Damage(f"filled {index.name} with random bytes", {}, r"rebuilt indexes of \[" + str(int(index.stem)))


def index_entry_position_flip(data: Path) -> Damage:
    """A plausible flip: the low bit of a middle entry's position. The entries still
    increase and point inside the .log, so only a check of the entry against the
    batch at that position can notice."""
    log = _sealed_log(data)
    index = log.with_suffix(".index")
    entries = index.stat().st_size // 8
    assert entries >= 2, f"{index.name} has {entries} entries"
    flip(index, (entries // 2 - 1) * 8 + 7, 0x01) if entries > 2 else flip(index, 7, 0x01)
    return Damage(f"flipped the low bit of an entry's position in {index.name}", {},
                  r"rebuilt indexes of \[" + str(int(index.stem)))


def index_deleted(data: Path) -> Damage:
    index = _sealed_log(data).with_suffix(".index")
    index.unlink()
    return Damage(f"deleted {index.name}", {}, r"rebuilt indexes of \[" + str(int(index.stem)))


def last_index_truncated(data: Path) -> Damage:
    index = _last_log(data).with_suffix(".index")
    truncate(index, 0)
    return Damage(f"emptied {index.name} (the last segment's)", {}, r"opened .*: (clean|unclean) shutdown")


def timeindex_misaligned(data: Path) -> Damage:
    index = _sealed_log(data).with_suffix(".timeindex")
    truncate(index, index.stat().st_size - 5)
    return Damage(f"cut 5 bytes off {index.name}", {}, r"rebuilt indexes of \[" + str(int(index.stem)))


def timeindex_garbage(data: Path) -> Damage:
    index = _sealed_log(data).with_suffix(".timeindex")
    index.write_bytes(os.urandom(max(index.stat().st_size, 24)))
    return Damage(f"filled {index.name} with random bytes", {}, r"rebuilt indexes of \[" + str(int(index.stem)))


def _checkpoint(data: Path, name: str) -> Path:
    path = data / name
    assert path.exists(), f"the template has no {name}"
    return path


def recovery_point_truncated(data: Path) -> Damage:
    path = _checkpoint(data, "recovery-point-offset-checkpoint")
    truncate(path, path.stat().st_size // 2)
    return Damage("cut recovery-point-offset-checkpoint in half", {}, r"malformed checkpoint file .*recovery-point")


def recovery_point_empty(data: Path) -> Damage:
    truncate(_checkpoint(data, "recovery-point-offset-checkpoint"), 0)
    return Damage("emptied recovery-point-offset-checkpoint", {}, r"malformed checkpoint file .*recovery-point")


def recovery_point_binary(data: Path) -> Damage:
    path = _checkpoint(data, "recovery-point-offset-checkpoint")
    flip(path, 0, 0xFF)  # "0" -> 0xCF: not UTF-8 any more
    return Damage("flipped the first byte of recovery-point-offset-checkpoint (not UTF-8)", {},
                  r"checkpoint.*recovery-point|recovery-point.*(malformed|cannot)")


def recovery_point_torn_log(data: Path) -> Damage:
    """A recovery point beyond the log end (a digit flipped) on top of a torn last batch."""
    path = _checkpoint(data, "recovery-point-offset-checkpoint")
    text = path.read_text()
    path.write_text(re.sub(rf"^{TOPIC} 0 (\d+)$", lambda m: f"{TOPIC} 0 9{m.group(1)}", text, flags=re.M))
    damage = tear_last_segment(data)
    return Damage("recovery point of data-0 made 9xxxx and the last batch cut", damage.lost, damage.log)


def log_start_truncated(data: Path) -> Damage:
    path = _checkpoint(data, "log-start-offset-checkpoint")
    truncate(path, path.stat().st_size - 4)
    return Damage("cut the end of log-start-offset-checkpoint", {}, r"malformed checkpoint file .*log-start")


def log_start_binary(data: Path) -> Damage:
    path = _checkpoint(data, "log-start-offset-checkpoint")
    flip(path, 2, 0xFF)  # the entry count: not UTF-8 any more
    return Damage("flipped a byte of log-start-offset-checkpoint (not UTF-8)", {},
                  r"checkpoint.*log-start|log-start.*(malformed|cannot)")


def offsets_torn(data: Path) -> Damage:
    log = _last_log(data, 0, "__consumer_offsets")
    pos, size, _, _ = batches(log)[-1]
    truncate(log, pos + size - 5)
    return Damage("cut the last batch of __consumer_offsets", {}, r"truncated \d+ invalid bytes")


def offsets_flipped(data: Path) -> Damage:
    log = _last_log(data, 0, "__consumer_offsets")
    pos, size, _, _ = _middle_batch(log)
    flip(log, pos + size - 3)
    return Damage(f"flipped a byte of the __consumer_offsets batch at {pos}", {},
                  rf"(removed \d+ damaged bytes at positions \[{pos}, |truncated \d+ invalid bytes)")


def producer_state_truncated(data: Path) -> Damage:
    path = _pdir(data) / "producer-state.json"
    assert path.exists(), "the stopped template has no producer-state.json"
    truncate(path, path.stat().st_size // 2)
    return Damage("cut data-0/producer-state.json in half", {}, r"producer-state")


def producer_state_wrong_types(data: Path) -> Damage:
    path = _pdir(data) / "producer-state.json"
    doc = json.loads(path.read_text())
    doc["producers"] = list(doc["producers"].values())  # an object became an array
    path.write_text(json.dumps(doc))
    return Damage("producers in data-0/producer-state.json became an array", {}, r"producer-state")


def producer_state_flipped(data: Path) -> Damage:
    path = _pdir(data) / "producer-state.json"
    flip(path, path.stat().st_size // 2, 0x80)  # not UTF-8 any more
    return Damage("flipped the high bit of a byte of data-0/producer-state.json", {}, r"producer-state")


_ROT = pytest.mark.xfail(strict=True, reason=(
    "rot below the recovery point is not rescanned at start (a clean start scans nothing, as Kafka); reads "
    "CRC-check such bytes and stop before a damaged batch (it is never served: the fetch answers "
    "CORRUPT_MESSAGE, the partition is marked damaged, and `logbroker repair` removes it), but a read does "
    "not remove it; this test asks for the removal at start and its log line"))


_GAP = pytest.mark.xfail(strict=True, reason=(
    "the base offset lies outside the CRC (as in Kafka) and compaction leaves legitimate gaps, so a batch "
    "moved one offset later is indistinguishable from a compacted one; refusing gaps would destroy "
    "compacted logs on recovery"))


def _case(state: str, damage_fn, *marks):
    return pytest.param(state, damage_fn, id=f"{state}-{damage_fn.__name__}", marks=marks)


CASES = [
    # (template, damage); the template is the state the broker was left in before the damage
    _case("stopped", flip_record_byte_last_segment, _ROT),
    _case("killed", flip_record_byte_sealed_segment, _ROT),
    _case("killed", tear_last_segment),
    _case("stopped", tear_last_segment),
    _case("killed", tear_last_segment_header),
    _case("killed", flip_record_byte_last_segment),
    _case("killed", flip_length_last_segment),
    _case("killed", offset_backwards_last_segment),
    _case("killed", offset_forwards_last_segment, _GAP),
    _case("killed", garbage_tail),
    _case("stopped", garbage_tail),
    _case("killed", zero_tail),
    _case("killed", empty_last_segment),
    _case("killed", index_misaligned),
    _case("stopped", index_misaligned),
    _case("stopped", index_garbage),
    _case("killed", index_entry_position_flip),
    _case("stopped", index_entry_position_flip),
    _case("stopped", index_deleted),
    _case("stopped", last_index_truncated),
    _case("killed", timeindex_misaligned),
    _case("stopped", timeindex_garbage),
    _case("killed", recovery_point_truncated),
    _case("killed", recovery_point_empty),
    _case("killed", recovery_point_binary),
    _case("killed", recovery_point_torn_log),
    _case("killed", log_start_truncated),
    _case("killed", log_start_binary),
    _case("killed", offsets_torn),
    _case("killed", offsets_flipped),
    _case("stopped", offsets_flipped),
    _case("stopped", producer_state_truncated),
    _case("stopped", producer_state_wrong_types),
    _case("stopped", producer_state_flipped),
]


def _copy(template: Template, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(template.path, data)
    (data / ".lock").unlink(missing_ok=True)
    return data


def _check_served(broker: FaultBroker, template: Template, damage: Damage) -> dict[int, int]:
    """Every record served is the one produced at that offset, and exactly the damaged
    offsets are missing; returns the log end offset of each partition."""
    log = read_partitions(broker.bootstrap, TOPIC, range(PARTITIONS), timeout=6)  # a small log; a stuck read is the failure
    ends = {}
    for p, records in log.items():
        expected = template.expected[p]
        lost = set(damage.lost.get(p, ()))
        offsets = [o for o, _, _ in records]
        kept = [o for o in range(len(expected)) if o not in lost]
        assert offsets == kept, (
            f"partition {p}: {len(expected) - len(offsets)} records lost "
            f"({sorted(set(range(len(expected))) - set(offsets))[:5]}...); only {damage.lost.get(p, 'none')} may be"
        )
        wrong = [(o, v) for o, _, v in records if v != expected[o]]
        assert not wrong, f"partition {p}: records changed, e.g. {wrong[:3]}"
        ends[p] = offsets[-1] + 1 if offsets else 0
        if p != 0:
            continue  # every damage is done to partition 0
        # Random access through the sparse index (an entry per batch of ~45 records); a fetch
        # from a lost offset is served the next record kept.
        asked = list(range(0, ends[p], 13))
        for offset, (first, value) in probe_offsets(broker.bootstrap, TOPIC, p, asked).items():
            want = min(o for o in kept if o >= offset)
            assert (first, value) == (want, expected[want]), (
                f"partition {p}: a fetch from offset {offset} served offset {first} = {value!r}"
            )
    # The internal topic too: whatever the broker serves from it must pass the CRC check.
    read_partitions(broker.bootstrap, "__consumer_offsets", [0])
    return ends


def _produce_after(broker: FaultBroker, ends: dict[int, int]) -> None:
    records = [(p, None, b"after-%d-%d" % (p, i)) for i in range(10) for p in range(PARTITIONS)]
    acked = produce_all(broker.bootstrap, TOPIC, records, **IDEMPOTENT)
    for p in range(PARTITIONS):
        offsets = sorted(o for q, o, _ in acked if q == p)
        assert offsets == list(range(ends[p], ends[p] + 10)), f"partition {p}: new records at {offsets}"


@pytest.mark.parametrize("state,damage_fn", CASES)
def test_damaged_file_is_repaired_or_never_served(templates, tmp_path, fault_broker, state, damage_fn):
    template = templates[state]
    data = _copy(template, tmp_path)
    damage = damage_fn(data)
    broker = fault_broker("--flush", "always", data_dir=data, start=False)
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"{damage.description}: the broker did not start:\n{exc}")
    problems: list[str] = []

    def check(step, fn, *args):
        try:
            return fn(*args)
        except AssertionError as exc:
            problems.append(f"{step}: {exc}")
            return None

    ends = check("served records", _check_served, broker, template, damage)
    committed = committed_offsets(broker.bootstrap, GROUP, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):
        if "__consumer_offsets" in damage.description:
            if committed[p] not in template.commits:
                problems.append(f"partition {p}: committed offset {committed[p]} was never committed")
        elif committed[p] != template.commits[-1]:
            problems.append(f"partition {p}: committed offset {committed[p]}, last commit {template.commits[-1]}")
    if ends is not None:
        check("produce afterwards", _produce_after, broker, ends)
    if not re.search(damage.log, broker.log):
        problems.append(f"the log does not say what the broker did (expected /{damage.log}/)")
    if "Traceback" in broker.log:
        problems.append("a traceback in the log")
    assert broker.stop() == 0
    check("logbroker dump after the restart", assert_dump_clean, data)
    assert not problems, f"{damage.description}:\n- " + "\n- ".join(problems) + f"\nbroker log:\n{broker.log}"
    lost = {p: len(damage.lost.get(p, ())) for p in range(PARTITIONS)}
    summary("corruption", case=f"{state}-{damage_fn.__name__}", lost=lost,
            committed_lost=len(template.commits) - 1 - template.commits.index(committed[0]))


def test_dump_reports_the_damage(templates, tmp_path):
    """``logbroker dump`` on the damaged files (before any broker touches them) says what is wrong."""
    data = _copy(templates["killed"], tmp_path)
    flip_record_byte_last_segment(data)
    rc, out = dump(_last_log(data))
    assert rc == 1 and "MISMATCH" in out, out
    data2 = _copy(templates["killed"], tmp_path / "b")
    tear_last_segment(data2)
    rc, out = dump(_last_log(data2))
    assert rc == 1 and "is truncated" in out, out
    data3 = _copy(templates["stopped"], tmp_path / "c")
    index_entry_position_flip(data3)
    rc, out = dump(_sealed_log(data3).with_suffix(".index"))
    assert rc == 1 and "no batch starts at this position" in out, out


# ------------------------------------------------------------ producer-id-block

@pytest.mark.parametrize("damage", ["garbage", "deleted", "emptied"])
def test_damaged_producer_id_block_never_swallows_new_records(fault_broker, tmp_path, damage):
    """``producer-id-block`` records the next block of producer ids. If it is lost, a
    new idempotent producer must not get an id whose batches are already in the log:
    its first batch (sequence 0..n) would be taken for a retry of the old producer's
    and acknowledged at the old offsets without being written."""
    idempotent = {"enable.idempotence": True, "linger.ms": 50}
    broker = fault_broker("--flush", "always", data_dir=tmp_path / "pid")
    create_topic(broker.bootstrap, "t", 1)
    produce_all(broker.bootstrap, "t", [(0, None, b"old-%d" % i) for i in range(10)], **idempotent)
    broker.stop()
    block = Path(broker.data_dir) / "producer-id-block"
    if damage == "garbage":
        block.write_bytes(b"\x00\xffgarbage")
    elif damage == "deleted":
        block.unlink()
    else:
        truncate(block, 0)
    broker.start()
    acked = produce_all(broker.bootstrap, "t", [(0, None, b"new-%d" % i) for i in range(10)], **idempotent)
    [records] = read_partitions(broker.bootstrap, "t", [0]).values()
    by_offset = {o: v for o, _, v in records}
    swallowed = [(o, v) for _, o, v in acked if by_offset.get(o) != v]
    assert not swallowed, (
        f"producer-id-block {damage}: {len(swallowed)} acknowledged records were never written, e.g. "
        f"{swallowed[:3]} (the log holds {[v for _, _, v in records][:3]}...); the new producer reused an old id"
    )


# ------------------------------------------------ damage the broker cannot repair

def _topics_truncated(data: Path) -> str:
    path = data / "topics.json"
    truncate(path, path.stat().st_size // 2)
    return "cut topics.json in half"


def _topics_empty(data: Path) -> str:
    truncate(data / "topics.json", 0)
    return "emptied topics.json"


def _topics_binary(data: Path) -> str:
    flip(data / "topics.json", 5, 0xFF)
    return "flipped a byte of topics.json (not UTF-8)"


def _topics_wrong_types(data: Path) -> str:
    (data / "topics.json").write_text('{"version": 1, "topics": 5}')
    return "topics.json holds a number where the topic list should be"


def _topics_bad_uuid(data: Path) -> str:
    path = data / "topics.json"
    doc = json.loads(path.read_text())
    doc["topics"][0]["topic_id"] = doc["topics"][0]["topic_id"][:-1] + "g"
    path.write_text(json.dumps(doc))
    return "a topic id in topics.json is not a UUID"


def _topics_missing(data: Path) -> str:
    (data / "topics.json").unlink()
    return "deleted topics.json"


REFUSALS = [
    (_topics_truncated, r"Error: (cannot read|malformed) topic metadata .*topics\.json"),
    (_topics_empty, r"Error: (cannot read|malformed) topic metadata .*topics\.json"),
    (_topics_binary, r"Error: (cannot read|malformed) topic metadata .*topics\.json"),
    (_topics_wrong_types, r"Error: malformed topic metadata .*topics\.json"),
    (_topics_bad_uuid, r"Error: malformed topic metadata .*topics\.json"),
    (_topics_missing, r"Error: .*topics\.json is missing but .* holds partition directories"),
]


@pytest.mark.parametrize("state", ["killed", "stopped"])
@pytest.mark.parametrize("damage_fn,message", REFUSALS, ids=[f.__name__.strip("_") for f, _ in REFUSALS])
def test_unrepairable_metadata_refuses_to_start_clearly(templates, tmp_path, fault_broker, state, damage_fn, message):
    data = _copy(templates[state], tmp_path)
    what = damage_fn(data)
    broker = fault_broker("--flush", "always", data_dir=data, start=False)
    rc, output = broker.start_expecting_failure()
    assert rc != 0, f"{what}: exit status {rc}"
    assert "Traceback" not in output, f"{what}: the broker printed a traceback:\n{output}"
    assert re.search(message, output), f"{what}: unclear error (expected /{message}/):\n{output}"
    # Nothing was touched: the data is still there for a human to repair.
    for p in range(PARTITIONS):
        assert segments(_pdir(data, p)), f"{what}: partition {p} lost its segments"
    summary("refusal", case=f"{state}-{damage_fn.__name__.strip('_')}", exit=rc,
            message=[line for line in output.splitlines() if line.startswith("Error")][:1])
