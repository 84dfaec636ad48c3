"""Many partitions: maps and descriptors stay within their budgets, partitions
open at first use, and a crash recovers only what was written since the last
fsync, summarised in a few log lines (issue 20)."""

from __future__ import annotations

import logging
import os
import re
import resource
import time

import pytest

from logbroker.records import iter_batches
from logbroker.storage import LogConfig, LogManager, LogManagerConfig
from logbroker.storage.descriptors import WRITE_DESCRIPTORS
from logbroker.storage.mapbudget import MAPS

from .conftest import make_batch

TOPICS, PARTITIONS = 20, 100  # 2,000 partitions


def _maps_of_data(data) -> int:
    """Lines of /proc/self/maps naming a file under ``data``."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if str(data) in line)


def _fds_of_data(data) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(data))
        except OSError:
            pass
    return n


@pytest.fixture
def budgets():
    """Small budgets for the test, the process's own back afterwards."""
    maps, fds = MAPS.limit, WRITE_DESCRIPTORS.limit
    yield
    MAPS.set_limit(maps)
    WRITE_DESCRIPTORS.set_limit(fds)


def test_thousands_of_partitions_stay_within_the_budgets_and_round_trip(tmp_path, budgets):
    data = tmp_path / "data"
    config = LogManagerConfig(flush="never", max_open_files=32, max_memory_maps=120,
                              log=LogConfig(segment_bytes=1 << 20))
    names = [f"t{i:03d}" for i in range(TOPICS)]
    with LogManager(data, config) as manager:
        for name in names:
            manager.create_topic(name, PARTITIONS)
        for name in names:
            for p in range(PARTITIONS):
                manager.get_partition(name, p).append(make_batch(1, value_size=8 + p % 5), 1_000)
        for name in names:
            for p in range(PARTITIONS):
                result = manager.get_partition(name, p).read(0, 1 << 20)
                assert [h.base_offset for _, h in iter_batches(result.records)] == [0]
                del result
        assert MAPS.mapped() <= 120 and MAPS.released > 0
        assert _maps_of_data(data) <= 120 + 8  # + views still referenced somewhere
        assert _fds_of_data(data) <= 32 + 2  # + the lock file
    # Reopened: nothing opens before it is used, and reads still round-trip.
    with LogManager(data, config) as manager:
        assert manager.open_partitions == 0
        assert manager.recovery_report.total == TOPICS * PARTITIONS
        for name in names[:3]:
            for p in range(PARTITIONS):
                log = manager.get_partition(name, p)
                assert log.log_end_offset == 1
                assert len(log.read(0, 1 << 20).records) == 68 + 8 + p % 5
        assert manager.open_partitions == 3 * PARTITIONS
        assert _maps_of_data(data) <= 120 + 8


def test_a_crash_recovers_only_the_partitions_written_since_their_last_flush(tmp_path, budgets, caplog):
    data = tmp_path / "data"
    config = LogManagerConfig(flush="never", max_memory_maps=500)
    manager = LogManager(data, config)
    manager.create_topic("t", 500)
    for p in range(500):
        manager.get_partition("t", p).append(make_batch(), 1_000)
    manager.flush_dirty()  # every partition flushed, checkpoints written
    for p in range(0, 500, 50):  # ten partitions written after it
        manager.get_partition("t", p).append(make_batch(2), 2_000)
    # A crash: nothing closed, no clean-shutdown marker (the lock dies with the process).
    manager._release()  # noqa: SLF001 - the test plays the kernel releasing the lock
    with caplog.at_level(logging.INFO, logger="logbroker.storage"):
        again = LogManager(data, config)
    try:
        report = again.recovery_report
        assert not report.clean_shutdown
        assert len(report.partitions) == 10 and again.open_partitions == 10
        recovery_lines = [r for r in caplog.records if r.getMessage().startswith(("recovery:", "opened "))]
        assert len(recovery_lines) <= 7
        assert "10 of them recovered (490 unchanged since their last fsync)" in caplog.text
        for p in range(500):
            assert again.get_partition("t", p).log_end_offset == (3 if p % 50 == 0 else 1)
    finally:
        again.close()


def _nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_sigkill_of_a_real_broker_recovers_every_acknowledged_record_in_a_few_lines(tmp_path):
    from brokerproc import BrokerProcess
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topics, partitions = 10, 60
    settings = tmp_path / "broker.toml"
    settings.write_text('"log.max.open.files" = 32\n"log.max.memory.maps" = 200\n')
    broker = BrokerProcess(tmp_path / "data", "--config", str(settings), preexec_fn=_nofile).start()
    try:
        names = [f"m{i}" for i in range(topics)]
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            future.result(60)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50, "acks": "all"})
        failed = []
        for name in names:
            for p in range(partitions):
                producer.produce(name, f"{name}/{p}".encode(), partition=p,
                                 on_delivery=lambda err, msg: err and failed.append(err))
        assert producer.flush(60) == 0 and not failed
        broker.kill()  # within flush.interval.ms of the last acknowledgement
        started = time.monotonic()
        broker.start()
        assert time.monotonic() - started < 20
        startup = broker.log
        assert "unclean shutdown before" in startup
        assert len(re.findall(r"recovery: ", startup)) <= 6  # a summary, not a line per partition
        assert len(startup.splitlines()) < 40
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
        consumer.assign([TopicPartition(n, p, 0) for n in names for p in range(partitions)])
        seen = {}
        deadline = time.monotonic() + 30
        while len(seen) < topics * partitions and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    seen[(msg.topic(), msg.partition())] = msg.value()
        consumer.close()
        assert seen == {(n, p): f"{n}/{p}".encode() for n in names for p in range(partitions)}
        fds = len(os.listdir(f"/proc/{broker.proc.pid}/fd"))
        assert fds <= 32 + 40  # write budget + connections, the lock and the interpreter's own
    finally:
        broker.stop()
