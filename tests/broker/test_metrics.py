"""The Prometheus endpoint of a real ``logbroker serve --metrics-port 0``: the
counters move by exactly what clients did, and the gauges match the log."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest
import trio

from logbroker.broker import Broker, BrokerConfig
from logbroker.client import Admin, Producer, SyncAdmin, SyncConsumer, SyncProducer
from logbroker.client.queue import QueueConsumer
from logbroker.errors import InvalidConfigError
from figures_support import write_mixed_partitions
from logbroker.server.metrics import Histogram, Metrics, api_name, render

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_METRICS_LINE = re.compile(r"metrics on http://\S+:(\d+)/metrics")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Text exposition -> {(name, frozenset of label pairs): value}; checks every line parses."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparsable sample line {line!r}"
        name, labels, value = m.groups()
        out[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return out


def sample(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def metrics_port(proc, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _METRICS_LINE.search(proc.log)
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no metrics line in the broker log:\n{proc.log}")


def scrape(port: int) -> tuple[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return text, parse(text)


def test_counters_and_gauges_match_what_clients_did(broker_factory):
    proc = broker_factory("--metrics-port", "0", "--flush", "always")
    port = metrics_port(proc)
    topic, group, produced, committed = "metered", "lagging", 20, 8
    with SyncAdmin(proc.bootstrap) as admin:
        admin.create_topic(topic, 1)
    with SyncProducer(proc.bootstrap, linger_ms=0) as producer:
        for i in range(produced):
            producer.send(topic, b"value-%d" % i, key=b"k%d" % i, partition=0).result(10)
    with SyncConsumer(proc.bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False) as consumer:
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < produced and time.monotonic() < deadline:
            got += consumer.getmany(timeout=5)
        assert len(got) == produced
        consumer.commit({(topic, 0): committed}, timeout=10)

    text, samples = scrape(port)
    log_bytes = sample(samples, "logbroker_partition_log_bytes", topic=topic, partition=0)
    assert log_bytes and log_bytes > 0
    # Bytes in: every batch appended, which is exactly what the log holds.
    assert sample(samples, "logbroker_topic_bytes_in_total", topic=topic) == log_bytes
    assert sample(samples, "logbroker_topic_records_in_total", topic=topic) == produced
    # The consumer read the log once from the start.
    assert sample(samples, "logbroker_topic_bytes_out_total", topic=topic) == log_bytes
    assert sample(samples, "logbroker_partition_log_end_offset", topic=topic, partition=0) == produced
    assert sample(samples, "logbroker_partition_log_start_offset", topic=topic, partition=0) == 0
    with SyncAdmin(proc.bootstrap) as admin:
        [logdir] = admin.describe_log_dirs([topic])
    assert logdir.sizes == {(topic, 0): log_bytes}

    # One Produce request per awaited send; each timed once.
    assert sample(samples, "logbroker_requests_total", api="Produce") == produced
    assert sample(samples, "logbroker_request_seconds_count", api="Produce") == produced
    assert sample(samples, "logbroker_request_seconds_bucket", api="Produce", le="+Inf") == produced
    for api in ("ApiVersions", "Metadata", "CreateTopics", "Fetch", "JoinGroup", "OffsetCommit"):
        assert sample(samples, "logbroker_requests_total", api=api) >= 1, api
    buckets = [v for (name, labels), v in samples.items()
               if name == "logbroker_request_seconds_bucket" and ("api", "Fetch") in labels]
    assert len(buckets) == len(Histogram().bounds) + 1

    assert sample(samples, "logbroker_group_lag", group=group, topic=topic, partition=0) == produced - committed
    assert sample(samples, "logbroker_fsync_seconds_count") > 0  # --flush always: an fsync per produce
    assert sample(samples, "logbroker_fsync_seconds_sum") > 0
    assert sample(samples, "logbroker_connections_accepted_total") >= 3
    assert sample(samples, "logbroker_connections") >= 0
    assert sample(samples, "logbroker_up_seconds") > 0
    for family in ("logbroker_share_records", "logbroker_topic_bytes_out_total", "logbroker_group_lag"):
        assert f"# TYPE {family} " in text

    # Counters only go up; a second scrape sees the first one's effects unchanged.
    _, again = scrape(port)
    assert sample(again, "logbroker_topic_records_in_total", topic=topic) == produced


async def test_share_group_records_in_flight(broker_factory):
    proc = broker_factory("--metrics-port", "0")
    port = metrics_port(proc)
    topic, group = "queue", "workers"
    async with Admin(proc.bootstrap) as admin:
        await admin.create_topic(topic, 1)
    async with Producer(proc.bootstrap) as producer:
        for i in range(2):
            await (await producer.send(topic, b"before-%d" % i, partition=0))
    labels = dict(group=group, topic=topic, partition=0)
    with trio.fail_after(20):
        async with QueueConsumer(proc.bootstrap, topic, group_id=group) as queue:
            # The group starts at the log end (share.auto.offset.reset=latest):
            # produce once it holds the partition, until the records arrive.
            async with Producer(proc.bootstrap) as producer:
                got = []
                while not got:
                    await (await producer.send(topic, b"x", partition=0))
                    with trio.move_on_after(0.5):
                        got.append(await queue.get())
                for i in range(3):
                    await (await producer.send(topic, b"held-%d" % i, partition=0))
            held = []
            while len(held) < 3:
                msg = got.pop() if got else await queue.get()
                if msg.value.startswith(b"held-"):
                    held.append(msg)  # acquired, never answered: in flight
                else:
                    await msg.ack()
            while True:  # the acknowledgements travel with the next fetch
                _, samples = await trio.to_thread.run_sync(scrape, port)
                if sample(samples, "logbroker_share_records", **labels, state="in_flight") == len(held):
                    break
                await trio.sleep(0.1)
    assert sample(samples, "logbroker_share_records_settled_total", **labels, state="acknowledged") >= 1
    assert sample(samples, "logbroker_share_partition_offset", **labels, kind="start") >= 2
    # ShareFetch responses count as bytes out of the topic, like Fetch responses.
    assert sample(samples, "logbroker_topic_bytes_out_total", topic=topic) > 0

def _partition_samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {key: value for key, value in parse(text).items() if key[0].startswith("logbroker_partition_")}


def test_a_scrape_after_a_restart_opens_no_partition_and_reports_the_same_figures(tmp_path):
    config = BrokerConfig(data_dir=str(tmp_path / "data"))
    broker = Broker(config)
    try:
        write_mixed_partitions(broker)
        before = _partition_samples(render(Metrics(), broker))
    finally:
        broker.close()
    assert len(before) == 4 * 43
    assert sample(before, "logbroker_partition_log_start_offset", topic="many", partition=6) == 5
    assert sample(before, "logbroker_partition_log_end_offset", topic="many", partition=39) == 5
    assert sample(before, "logbroker_partition_log_bytes", topic="many", partition=39) > 300

    broker = Broker(config)
    try:
        opened = broker.log_manager.open_partitions
        assert _partition_samples(render(Metrics(), broker)) == before
        assert broker.log_manager.open_partitions == opened  # the scrape opened none
        for _ in broker.log_manager.iter_partitions():  # opens every one: their logs say the same
            pass
        assert broker.log_manager.open_partitions == opened + 43
        assert _partition_samples(render(Metrics(), broker)) == before
    finally:
        broker.close()


def test_no_metrics_port_by_default_and_range_checked():
    assert BrokerConfig().metrics_port is None
    assert BrokerConfig(metrics_port=0).metrics_host == "127.0.0.1"
    with pytest.raises(InvalidConfigError):
        BrokerConfig(metrics_port=70000)
    assert BrokerConfig.load(environ={"LOGBROKER_METRICS_PORT": "9100"}).metrics_port == 9100


def test_histogram_and_names():
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        hist.observe(value)
    assert hist.counts == [2, 1, 1] and hist.count == 4 and hist.sum == pytest.approx(2.65)
    assert api_name(2) == "ListOffsets" and api_name(35) == "DescribeLogDirs" and api_name(9999) == "9999"


def test_openmetrics_when_the_scraper_asks(broker_factory):
    proc = broker_factory("--metrics-port", "0")
    port = metrics_port(proc)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    assert text.rstrip().endswith("# EOF")
    assert "# TYPE logbroker_requests counter" in text
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="DELETE"),
                               timeout=10)
    assert refused.value.code == 405
