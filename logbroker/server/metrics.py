"""Prometheus metrics: counters and histograms updated on the hot paths, gauges
computed when scraped, served as text format on ``--metrics-port``.

Updating is a dict lookup and an add; rendering walks the log manager and the
coordinators only when Prometheus asks.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import defaultdict

import trio

log = logging.getLogger("logbroker.server")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative buckets, sum and count, Prometheus style."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds=_LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*self.bounds, math.inf), self.counts):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Metrics:
    """Every metric the broker exports; not thread-safe except fsync timing (GIL-atomic adds)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.request_errors: defaultdict[str, int] = defaultdict(int)
        self.latency: defaultdict[str, Histogram] = defaultdict(Histogram)
        self.bytes_in: defaultdict[str, int] = defaultdict(int)
        self.records_in: defaultdict[str, int] = defaultdict(int)
        self.bytes_out: defaultdict[str, int] = defaultdict(int)
        self.connections = 0
        self.connections_total = 0
        self.fsync = Histogram()

    def __repr__(self) -> str:
        return f"Metrics(requests={sum(self.requests.values())}, connections={self.connections})"

    def observe_request(self, api: str, seconds: float) -> None:
        self.requests[api] += 1
        self.latency[api].observe(seconds)

    def render(self, broker) -> str:
        """The Prometheus text exposition of everything, gauges computed now."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("logbroker_up_seconds", "gauge", "Seconds since the broker started.")
        out.append(f"logbroker_up_seconds {time.time() - self.started:.3f}")
        family("logbroker_requests_total", "counter", "Requests handled, by API.")
        out += [f'logbroker_requests_total{{api="{a}"}} {n}' for a, n in sorted(self.requests.items())]
        family("logbroker_request_seconds", "histogram", "Time from a request's arrival to its response, by API.")
        for api, hist in sorted(self.latency.items()):
            out += hist.lines("logbroker_request_seconds", f'api="{api}"')
        family("logbroker_connections", "gauge", "Open client connections.")
        out.append(f"logbroker_connections {self.connections}")
        family("logbroker_connections_total", "counter", "Client connections accepted.")
        out.append(f"logbroker_connections_total {self.connections_total}")
        for name, table, help_text in (
            ("logbroker_topic_bytes_in_total", self.bytes_in, "Record batch bytes appended, by topic."),
            ("logbroker_topic_records_in_total", self.records_in, "Records appended, by topic."),
            ("logbroker_topic_bytes_out_total", self.bytes_out, "Record batch bytes fetched, by topic."),
        ):
            family(name, "counter", help_text)
            out += [f'{name}{{topic="{t}"}} {n}' for t, n in sorted(table.items())]
        family("logbroker_fsync_seconds", "histogram", "Duration of log fsyncs.")
        out += self.fsync.lines("logbroker_fsync_seconds", "")
        family("logbroker_partition_log_bytes", "gauge", "Bytes on disk, by partition.")
        family("logbroker_partition_log_end_offset", "gauge", "Log end offset (high watermark), by partition.")
        family("logbroker_partition_log_start_offset", "gauge", "Log start offset, by partition.")
        sizes, ends, starts = [], [], []
        for (topic, index), plog in sorted(broker.log_manager.iter_partitions()):
            labels = f'topic="{topic}",partition="{index}"'
            sizes.append(f"logbroker_partition_log_bytes{{{labels}}} {plog.size_bytes}")
            ends.append(f"logbroker_partition_log_end_offset{{{labels}}} {plog.log_end_offset}")
            starts.append(f"logbroker_partition_log_start_offset{{{labels}}} {plog.log_start_offset}")
        out += sizes + ends + starts
        family("logbroker_group_lag", "gauge", "Log end offset minus committed offset, by group and partition.")
        for group, topic, index, lag in _group_lags(broker):
            out.append(f'logbroker_group_lag{{group="{group}",topic="{topic}",partition="{index}"}} {lag}')
        share = getattr(broker, "share_metrics", None)
        if share is not None:
            family("logbroker_share_records", "gauge", "Share-group records by state (acquired, archived...).")
            for (group, topic, index, state), n in sorted(share().items()):
                out.append(
                    f'logbroker_share_records{{group="{group}",topic="{topic}",partition="{index}",'
                    f'state="{state}"}} {n}'
                )
        return "\n".join(out) + "\n"


def _group_lags(broker):
    lags = getattr(broker, "group_lags", None)
    if lags is None:
        return []
    try:
        return lags()
    except Exception:  # a scrape must never take the broker down
        log.exception("computing group lag for metrics failed")
        return []


async def serve_metrics(metrics: Metrics, broker, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED):
    """A minimal HTTP/1.0 endpoint: any GET returns the metrics text."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(10):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 8192:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                if not request.startswith(b"GET "):
                    await stream.send_all(b"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                body = metrics.render(broker).encode()
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
    await trio.serve_listeners(handle, listeners, task_status=task_status)
