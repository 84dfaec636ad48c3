"""Prometheus metrics: counters and histograms updated on the hot paths, gauges
computed when scraped, served as text format on ``--metrics-port``.

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from logbroker.protocol import ApiKey

if TYPE_CHECKING:
    from logbroker.broker import Broker

_T = TypeVar("_T")

log = logging.getLogger("logbroker.server")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_MAX_REQUEST_HEAD = 8192


def api_name(key: int) -> str:
    """``ApiKey.LIST_OFFSETS`` -> ``"ListOffsets"`` (Kafka's spelling); unknown keys by number."""
    try:
        return "".join(part.capitalize() for part in ApiKey(key).name.split("_"))
    except ValueError:
        return str(int(key))


def _label(value: object) -> str:
    """A label value escaped for the text format (group ids may hold anything)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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

    def lines(self, name: str, labels: str) -> list[str]:
        """The ``_bucket``, ``_sum`` and ``_count`` samples; ``labels`` is ``a="x",b="y"`` or empty."""
        out, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*self.bounds, math.inf), self.counts):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.sum}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


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

    def render(self, broker: Broker) -> str:
        """The Prometheus text exposition of everything, gauges computed now.

        Call on the broker's thread (it reads the log manager and coordinators).
        """
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("logbroker_up_seconds", "gauge", "Seconds since the broker started.")
        out.append(f"logbroker_up_seconds {time.time() - self.started:.3f}")

        family("logbroker_requests_total", "counter", "Requests handled, by API.")
        out += [f'logbroker_requests_total{{api="{api_name(k)}"}} {h.count}' for k, h in sorted(self.latency.items())]
        family("logbroker_request_seconds", "histogram", "Time from reading a request to its response being ready, by API.")
        for key, hist in sorted(self.latency.items()):
            out += hist.lines("logbroker_request_seconds", f'api="{api_name(key)}"')

        family("logbroker_connections", "gauge", "Open client connections.")
        out.append(f"logbroker_connections {self.connections}")
        family("logbroker_connections_total", "counter", "Client connections accepted.")
        out.append(f"logbroker_connections_total {self.connections_total}")
        family("logbroker_connections_refused_total", "counter",
               "Connections closed at once: max.connections or max.connections.per.ip reached.")
        out.append(f"logbroker_connections_refused_total {self.connections_refused}")
        family("logbroker_connections_closed_idle_total", "counter",
               "Connections closed after connections.max.idle.ms idle or not reading.")
        out.append(f"logbroker_connections_closed_idle_total {self.connections_closed_idle}")

        traffic = broker.traffic
        for name, table, help_text in (
            ("logbroker_topic_bytes_in_total", traffic.bytes_in, "Record batch bytes appended by producers, by topic."),
            ("logbroker_topic_records_in_total", traffic.records_in, "Records appended by producers, by topic."),
            ("logbroker_topic_bytes_out_total", traffic.bytes_out, "Record batch bytes sent in Fetch responses, by topic."),
        ):
            family(name, "counter", help_text)
            out += [f'{name}{{topic="{t}"}} {n}' for t, n in sorted(table.items())]

        family("logbroker_fsync_seconds", "histogram", "Duration of one partition's fsync round (log, indexes, directory).")
        with self._fsync_lock:
            out += self.fsync.lines("logbroker_fsync_seconds", "")

        partitions = sorted(broker.log_manager.iter_partitions())
        for name, help_text, attribute in (
            ("logbroker_partition_log_bytes", "Bytes of log segments on disk, by partition.", "size_bytes"),
            ("logbroker_partition_log_end_offset", "Log end offset (high watermark), by partition.", "log_end_offset"),
            ("logbroker_partition_log_start_offset", "Log start offset, by partition.", "log_start_offset"),
        ):
            family(name, "gauge", help_text)
            for (topic, index), plog in partitions:
                out.append(f'{name}{{topic="{topic}",partition="{index}"}} {getattr(plog, attribute)}')
        family("logbroker_partition_damaged_batches", "gauge",
               "Batches that reads found damaged and did not serve, by partition (0: none found; "
               "stop the broker and run 'logbroker repair').")
        for (topic, index), plog in partitions:
            out.append(f'logbroker_partition_damaged_batches{{topic="{topic}",partition="{index}"}} '
                       f'{len(plog.damaged)}')

        family("logbroker_group_lag", "gauge", "High watermark minus committed offset, by consumer group and partition.")
        for group, topic, index, lag in _safely(broker.group_lags, []):
            out.append(f'logbroker_group_lag{{group="{_label(group)}",topic="{topic}",partition="{index}"}} {lag}')

        out += _share_lines(_safely(broker.share.partition_counts, {}))
        return "\n".join(out) + "\n"


_SHARE_STATES = ("in_flight", "available", "acknowledged", "archived")


def _share_lines(counts: dict) -> list[str]:
    """The share-group families from ``ShareCoordinator.partition_counts()``."""
    states, totals, offsets = [], [], []
    for (group, topic, index), c in sorted(counts.items()):
        labels = f'group="{_label(group)}",topic="{topic}",partition="{index}"'
        states += [f'logbroker_share_records{{{labels},state="{state}"}} {getattr(c, state)}' for state in _SHARE_STATES]
        totals += [f'logbroker_share_records_total{{{labels},state="acknowledged"}} {c.acknowledged_total}',
                   f'logbroker_share_records_total{{{labels},state="archived"}} {c.archived_total}']
        offsets += [f'logbroker_share_partition_offset{{{labels},kind="start"}} {c.start_offset}',
                    f'logbroker_share_partition_offset{{{labels},kind="end"}} {c.end_offset}']
    return [
        "# HELP logbroker_share_records Share-group records in the in-flight window by state.",
        "# TYPE logbroker_share_records gauge", *states,
        "# HELP logbroker_share_records_total Share-group records acknowledged or archived since the broker started.",
        "# TYPE logbroker_share_records_total counter", *totals,
        "# HELP logbroker_share_partition_offset Share-partition window start and end offsets.",
        "# TYPE logbroker_share_partition_offset gauge", *offsets,
    ]


def _safely(compute: Callable[[], _T], empty: Any) -> _T:
    """``compute()``, or ``empty`` if it fails: a scrape must never take the broker down."""
    try:
        return compute()
    except Exception:
        log.exception("computing %s for metrics failed", getattr(compute, "__name__", compute))
        return empty


async def serve_metrics(
    metrics: Metrics, broker: Broker, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """A minimal HTTP/1.0 endpoint: any GET returns the metrics text.

    ``task_status.started(bound_port)`` once listening; runs until cancelled
    (cancellation closes the listener and any scrape in progress).
    """

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(10):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST_HEAD:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                if not request.startswith(b"GET "):
                    await stream.send_all(b"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                try:
                    body = metrics.render(broker).encode()
                except Exception:  # a scrape must never take the broker down
                    log.exception("rendering metrics failed")
                    await stream.send_all(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                    return
                head = (
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)
