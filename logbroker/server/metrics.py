"""Prometheus metrics: counters and histograms updated on the hot paths, gauges
computed when scraped by a prometheus_client collector, served on ``--metrics-port``
by the broker's HTTP stack (``server/http.py``).

Updating is a dict lookup and an add (per request, per batch, per fsync round;
never per record); rendering walks the log manager and the coordinators only
when Prometheus asks. Bytes and records per topic are counted by the broker
itself (``Broker.traffic``), request timing and connections by the server,
fsync timing by the storage layer through ``LogManager.on_fsync``.
"""

from __future__ import annotations

from bisect import bisect_left
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.routing import Route

from logbroker.protocol import ApiKey

if TYPE_CHECKING:
    from logbroker.broker import Broker

_T = TypeVar("_T")

log = logging.getLogger("logbroker.server")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def api_name(key: int) -> str:
    """``ApiKey.LIST_OFFSETS`` -> ``"ListOffsets"`` (Kafka's spelling); unknown keys by number."""
    try:
        return "".join(part.capitalize() for part in ApiKey(key).name.split("_"))
    except ValueError:
        return str(int(key))


class Histogram:
    """Cumulative buckets, sum and count, Prometheus style. Not thread-safe."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, sum={self.sum:.6f})"

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """The server's own metrics; :meth:`render` adds the broker's and the gauges.

    Updated on the trio thread, except :meth:`observe_fsync`, which flushing
    worker threads call (it takes a lock).
    """

    def __init__(self) -> None:
        self.started = time.time()
        self.latency: defaultdict[int, Histogram] = defaultdict(Histogram)  # by API key; count = requests
        self.connections = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.connections_closed_idle = 0
        self.fsync = Histogram(_FSYNC_BUCKETS)
        self._fsync_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Metrics(requests={sum(h.count for h in self.latency.values())}, connections={self.connections})"

    def observe_request(self, api_key: int, seconds: float) -> None:
        """One request of ``api_key`` answered ``seconds`` after it was read."""
        self.latency[api_key].observe(seconds)

    def observe_fsync(self, seconds: float) -> None:
        """One partition fsync round took ``seconds``; thread-safe."""
        with self._fsync_lock:
            self.fsync.observe(seconds)

    def collector(self, broker: Broker) -> _BrokerCollector:
        """A prometheus_client collector of these metrics and the broker's gauges."""
        return _BrokerCollector(self, broker)

    def histograms(self) -> tuple[dict[int, Histogram], Histogram]:
        """Copies of the request latencies (by API key) and of the fsync histogram."""
        with self._fsync_lock:
            fsync = _copy(self.fsync)
        return {key: _copy(h) for key, h in self.latency.items()}, fsync


def _copy(hist: Histogram) -> Histogram:
    out = Histogram(hist.bounds)
    out.counts = list(hist.counts)
    out.sum = hist.sum
    out.count = hist.count
    return out


def _histogram_family(name: str, help_text: str, labels: list[str],
                      rows: list[tuple[list[str], Histogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    for values, hist in rows:
        buckets, running = [], 0
        for bound, n in zip((*hist.bounds, math.inf), hist.counts):
            running += n
            buckets.append(("+Inf" if bound == math.inf else repr(bound), running))
        family.add_metric(values, buckets, hist.sum)
    return family


class _BrokerCollector(Collector):
    """Every family, computed when scraped on the broker's thread (it reads the log
    manager and the coordinators). prometheus_client renders the exposition."""

    def __init__(self, metrics: Metrics, broker: Broker) -> None:
        self._metrics = metrics
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        m, broker = self._metrics, self._broker
        yield GaugeMetricFamily("logbroker_up_seconds", "Seconds since the broker started.",
                                value=time.time() - m.started)
        latency, fsync = m.histograms()
        requests = CounterMetricFamily("logbroker_requests", "Requests handled, by API.", labels=["api"])
        for key, hist in sorted(latency.items()):
            requests.add_metric([api_name(key)], hist.count)
        yield requests
        yield _histogram_family("logbroker_request_seconds",
                                "Time from reading a request to its response being ready, by API.", ["api"],
                                [([api_name(k)], h) for k, h in sorted(latency.items())])
        yield GaugeMetricFamily("logbroker_connections", "Open client connections.", value=m.connections)
        for name, value, help_text in (
            ("logbroker_connections_accepted", m.connections_total, "Client connections accepted."),
            ("logbroker_connections_refused", m.connections_refused,
             "Connections closed at once: max.connections or max.connections.per.ip reached."),
            ("logbroker_connections_closed_idle", m.connections_closed_idle,
             "Connections closed after connections.max.idle.ms idle or not reading."),
        ):
            yield CounterMetricFamily(name, help_text, value=value)

        traffic = broker.traffic
        for name, table, help_text in (
            ("logbroker_topic_bytes_in", traffic.bytes_in, "Record batch bytes appended by producers, by topic."),
            ("logbroker_topic_records_in", traffic.records_in, "Records appended by producers, by topic."),
            ("logbroker_topic_bytes_out", traffic.bytes_out, "Record batch bytes sent in Fetch responses, by topic."),
        ):
            counter = CounterMetricFamily(name, help_text, labels=["topic"])
            for topic, n in sorted(table.items()):
                counter.add_metric([topic], n)
            yield counter
        yield _histogram_family("logbroker_fsync_seconds",
                                "Duration of one partition's fsync round (log, indexes, directory).", [],
                                [([], fsync)])

        # From the manager's figures, not the logs: a scrape must not open the
        # partitions left unopened since the start.
        figures = broker.log_manager.partition_figures()
        labels = [[row.topic, str(row.partition)] for row in figures]
        for name, help_text, field in (
            ("logbroker_partition_log_bytes", "Bytes of log segments on disk, by partition.", "size_bytes"),
            ("logbroker_partition_log_end_offset", "Log end offset (high watermark), by partition.",
             "log_end_offset"),
            ("logbroker_partition_log_start_offset", "Log start offset, by partition.", "log_start_offset"),
            ("logbroker_partition_damaged_batches",
             "Batches that reads found damaged and did not serve, by partition (0: none found; "
             "stop the broker and run 'logbroker repair').", "damaged"),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=["topic", "partition"])
            read = attrgetter(field)
            for values, row in zip(labels, figures):
                gauge.add_metric(values, read(row))
            yield gauge

        lag = GaugeMetricFamily("logbroker_group_lag",
                                "High watermark minus committed offset, by consumer group and partition.",
                                labels=["group", "topic", "partition"])
        for group, topic, index, value in _safely(broker.group_lags, []):
            lag.add_metric([group, topic, str(index)], value)
        yield lag
        yield from _share_families(_safely(broker.share.partition_counts, {}))


_SHARE_STATES = ("in_flight", "available", "acknowledged", "archived")


def _share_families(counts: dict[Any, Any]) -> Iterator[Metric]:
    """The share-group families from ``ShareCoordinator.partition_counts()``."""
    labels = ["group", "topic", "partition"]
    states = GaugeMetricFamily("logbroker_share_records", "Share-group records in the in-flight window by state.",
                               labels=[*labels, "state"])
    totals = CounterMetricFamily("logbroker_share_records_settled",
                                 "Share-group records acknowledged or archived since the broker started.",
                                 labels=[*labels, "state"])
    offsets = GaugeMetricFamily("logbroker_share_partition_offset", "Share-partition window start and end offsets.",
                                labels=[*labels, "kind"])
    for (group, topic, index), c in sorted(counts.items()):
        key = [group, topic, str(index)]
        for state in _SHARE_STATES:
            states.add_metric([*key, state], getattr(c, state))
        totals.add_metric([*key, "acknowledged"], c.acknowledged_total)
        totals.add_metric([*key, "archived"], c.archived_total)
        offsets.add_metric([*key, "start"], c.start_offset)
        offsets.add_metric([*key, "end"], c.end_offset)
    yield states
    yield totals
    yield offsets


def render(metrics: Metrics, broker: Broker) -> str:
    """The text exposition of everything (what a scrape of ``/metrics`` returns)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.collector(broker))
    return generate_latest(registry).decode()


def metrics_app(metrics: Metrics, broker: Broker) -> Starlette:
    """The ASGI application of ``--metrics-port``: ``/metrics`` (and ``/``) in
    Prometheus' text format, or OpenMetrics when the scraper asks for it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.collector(broker))
    exposition = _Exposition(make_asgi_app(registry))
    return Starlette(routes=[Route(path, exposition, methods=["GET", "HEAD"]) for path in ("/metrics", "/")])


class _Exposition:
    """prometheus_client's ASGI app as an object, so a Starlette route treats it as
    an application (and answers other methods 405)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)


def _safely(compute: Callable[[], _T], empty: Any) -> _T:
    """``compute()``, or ``empty`` if it fails: a scrape must never take the broker down."""
    try:
        return compute()
    except Exception:
        log.exception("computing %s for metrics failed", getattr(compute, "__name__", compute))
        return empty
