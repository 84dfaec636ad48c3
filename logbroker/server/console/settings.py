"""The broker's page (``/settings``): its settings as DescribeConfigs reports
them, and charts of the server's metrics over the last minutes.

The metrics are running totals (``server/metrics.py``); :class:`MetricsHistory`
keeps snapshots of them, taken when the page is asked for (no background
task: a snapshot at most every 5 s, the last 15 minutes), and the charts are
drawn from the differences between neighbouring snapshots. The charts are
inline SVG built here, so the page needs no JavaScript.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from logbroker.server.console.app import Console, Viewer, page
from logbroker.server.metrics import Metrics, api_name

__all__ = ["Chart", "MetricsHistory", "Sample", "line_chart", "percentile", "routes"]

SAMPLE_EVERY_S = 5.0
KEEP_S = 15 * 60.0
_MAX_SERIES = 6
_RATE_WINDOW_S = 60.0
_COLORS = ("#2f5dd1", "#d1742f", "#2f9e5d", "#b42318", "#7a4fd1", "#667085", "#0e7490")
_SOURCES = {1: "topic", 2: "this broker (dynamic)", 3: "cluster default (dynamic)", 4: "config file / flags",
            5: "default", 6: "default"}
_REFRESH_CHOICES = (0, 5, 15)


# -- snapshots -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The server's totals at one moment: per-API latency bucket counts (not
    cumulative; their sum is the request count), fsync bucket counts, open and
    accepted connections."""

    at: float
    """Epoch seconds."""
    latency: Mapping[int, tuple[int, ...]]
    latency_sum: Mapping[int, float]
    fsync: tuple[int, ...]
    connections: int
    accepted: int

    def requests(self, api_key: int) -> int:
        return sum(self.latency.get(api_key, ()))


def _snapshot(metrics: Metrics, at: float) -> Sample:
    latency, fsync = metrics.histograms()
    return Sample(at=at, latency={k: tuple(h.counts) for k, h in latency.items()},
                  latency_sum={k: h.sum for k, h in latency.items()}, fsync=tuple(fsync.counts),
                  connections=metrics.connections, accepted=metrics.connections_total)


class MetricsHistory:
    """A ring of :class:`Sample`, filled on demand. Not thread-safe (the console's
    thread is its only user)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S, keep_s: float = KEEP_S) -> None:
        self.every_s = every_s
        self.keep_s = keep_s
        self._samples: deque[Sample] = deque(maxlen=int(keep_s / every_s) + 2)

    def __repr__(self) -> str:
        return f"MetricsHistory(samples={len(self._samples)}, every_s={self.every_s}, keep_s={self.keep_s})"

    def sample(self, metrics: Metrics, now: float) -> list[Sample]:
        """The kept samples and one taken ``now`` (kept too when the last kept one is
        ``every_s`` old), oldest first, within the last ``keep_s`` seconds."""
        if not self._samples and now - metrics.started <= self.keep_s:
            # every total was zero when Metrics was made: the first page already has an interval to show
            self._samples.append(Sample(metrics.started, {}, {}, (0,) * (len(metrics.fsync.bounds) + 1), 0, 0))
        current = _snapshot(metrics, now)
        if not self._samples or now - self._samples[-1].at >= self.every_s:
            self._samples.append(current)
        while self._samples and now - self._samples[0].at > self.keep_s:
            self._samples.popleft()
        kept = list(self._samples)
        return kept if kept and kept[-1] is current else [*kept, current]


# -- percentiles ---------------------------------------------------------------------


def percentile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram's non-cumulative ``counts`` (one
    more than ``bounds``, the last for +Inf), interpolated linearly inside its
    bucket as Prometheus' ``histogram_quantile`` does; the highest bound when it
    falls in +Inf; None for an empty histogram."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * max(0.0, rank - below) / n
        below += n
    return bounds[-1]


def _delta(new: Sequence[int], old: Sequence[int]) -> list[int]:
    return [a - (old[i] if i < len(old) else 0) for i, a in enumerate(new)]


# -- charts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    value: float
    label: str
    """What a hover shows: the time and the value."""
    count: int | None = None
    """Requests (or fsync rounds) behind the value, when it is a rate or a latency."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    segments: tuple[str, ...]
    """SVG ``points`` of each unbroken run (a missing value breaks the line)."""
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG line chart laid out in its own ``width`` x ``height`` coordinates."""

    id: str
    title: str
    unit: str
    series: tuple[Series, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    width: int = 640
    height: int = 200
    left: int = 56
    right: int = 12
    top: int = 10
    bottom: int = 24

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power  # pragma: no cover - the loop returns


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "now"
    if seconds < 90:
        return f"-{seconds:.0f} s"
    return f"-{seconds / 60:.0f} min"


def line_chart(chart_id: str, title: str, unit: str, times: Sequence[float], now: float,
               lines: Mapping[str, Sequence[tuple[float, float | None, int | None]]]) -> Chart:
    """A chart of ``lines``: per name, ``(time, value or None, count or None)``
    points; times are epoch seconds and the x axis ends at ``now``."""
    probe = Chart(chart_id, title, unit, (), (), ())
    plot_w = probe.width - probe.left - probe.right
    plot_h = probe.height - probe.top - probe.bottom
    start = min(times, default=now)
    span = max(now - start, 1.0)
    top = _nice_ceiling(max((v for pts in lines.values() for _, v, _ in pts if v is not None), default=0.0))

    def x_of(t: float) -> float:
        return round(probe.left + plot_w * (t - start) / span, 1)

    def y_of(v: float) -> float:
        return round(probe.top + plot_h * (1 - v / top), 1)

    series = []
    for index, (name, pts) in enumerate(lines.items()):
        segments: list[str] = []
        run: list[str] = []
        points = []
        for t, v, count in pts:
            if v is None:
                if run:
                    segments.append(" ".join(run))
                run = []
                continue
            x, y = x_of(t), y_of(v)
            run.append(f"{x},{y}")
            when = time.strftime("%H:%M:%S", time.gmtime(t))
            points.append(Point(x, y, v, f"{name} at {when} UTC: {_number(v)} {unit}"
                                + (f" ({count} in the interval)" if count is not None else ""), count))
        if run:
            segments.append(" ".join(run))
        series.append(Series(name, _COLORS[index % len(_COLORS)], tuple(segments), tuple(points)))
    y_ticks = tuple((y_of(top * f), _number(top * f)) for f in (0.0, 0.5, 1.0))
    x_ticks = tuple((x_of(start + span * f), _ago(span * (1 - f))) for f in (0.0, 0.5, 1.0))
    return Chart(chart_id, title, unit, tuple(series), y_ticks, x_ticks)


# -- the page ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiRow:
    key: int
    name: str
    requests: int
    rate: float
    """Requests per second over about the last minute."""
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


@dataclass(frozen=True, slots=True)
class MetricsView:
    apis: tuple[ApiRow, ...]
    charts: tuple[Chart, ...]
    fsync_rounds: int
    fsync_p50_ms: float | None
    fsync_p99_ms: float | None
    connections: int
    accepted: int
    refused: int
    closed_idle: int
    samples: int
    history_s: float


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def metrics_view(metrics: Metrics, history: MetricsHistory, now: float) -> MetricsView:
    """Tables and charts of ``metrics`` from ``history`` (sampled ``now``)."""
    samples = history.sample(metrics, now)
    latency, fsync = metrics.histograms()
    last = samples[-1]
    recent = next((s for s in samples if last.at - s.at <= _RATE_WINDOW_S), last)
    if recent is last and len(samples) > 1:
        recent = samples[-2]  # the only interval there is, however long
    span = max(last.at - recent.at, 1e-9)
    rows = []
    for key, hist in sorted(latency.items(), key=lambda kv: (-kv[1].count, kv[0])):
        rows.append(ApiRow(
            key=key, name=api_name(key), requests=hist.count,
            rate=(last.requests(key) - recent.requests(key)) / span if last is not recent else 0.0,
            p50_ms=_ms(percentile(hist.bounds, hist.counts, 0.5)),
            p99_ms=_ms(percentile(hist.bounds, hist.counts, 0.99)),
            mean_ms=hist.sum / hist.count * 1000 if hist.count else None,
        ))
    # the busiest APIs of the charted window get a line each
    window_counts = {r.key: last.requests(r.key) - samples[0].requests(r.key) for r in rows}
    charted = sorted((k for k, n in window_counts.items() if n > 0), key=lambda k: (-window_counts[k], k))
    charted = charted[:_MAX_SERIES]
    pairs = list(zip(samples, samples[1:]))
    rates: dict[str, list[tuple[float, float | None, int | None]]] = {}
    p99s: dict[str, list[tuple[float, float | None, int | None]]] = {}
    for key in charted:
        name = api_name(key)
        rates[name], p99s[name] = [], []
        for old, new in pairs:
            counts = _delta(new.latency.get(key, ()), old.latency.get(key, ()))
            n = sum(counts)
            rates[name].append((new.at, n / max(new.at - old.at, 1e-9), n))
            p99s[name].append((new.at, _ms(percentile(latency[key].bounds, counts, 0.99)), n))
    fsync_lines: dict[str, list[tuple[float, float | None, int | None]]] = {"p50": [], "p99": []}
    for old, new in pairs:
        counts = _delta(new.fsync, old.fsync)
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            fsync_lines[name].append((new.at, _ms(percentile(fsync.bounds, counts, q)), sum(counts)))
    times = [s.at for s in samples]
    charts = (
        line_chart("chart-requests", "Requests per second, by API", "req/s", times, now, rates),
        line_chart("chart-latency", "Request latency p99, by API", "ms", times, now, p99s),
        line_chart("chart-fsync", "fsync latency", "ms", times, now, fsync_lines),
        line_chart("chart-connections", "Open connections", "connections", times, now,
                   {"open": [(s.at, float(s.connections), None) for s in samples]}),
    )
    return MetricsView(
        apis=tuple(rows), charts=charts, fsync_rounds=fsync.count,
        fsync_p50_ms=_ms(percentile(fsync.bounds, fsync.counts, 0.5)),
        fsync_p99_ms=_ms(percentile(fsync.bounds, fsync.counts, 0.99)),
        connections=metrics.connections, accepted=metrics.connections_total, refused=metrics.connections_refused,
        closed_idle=metrics.connections_closed_idle, samples=len(samples), history_s=now - samples[0].at,
    )


async def settings_page(console: Console, request: Request, viewer: Viewer, history: MetricsHistory) -> Response:
    if not console.allowed_on_cluster(viewer, "describe_configs"):
        raise HTTPException(403, "you may not see the broker's settings (DESCRIBE_CONFIGS on the cluster)")
    q = request.query_params
    query = q.get("q", "").strip()
    changed = q.get("changed") == "1"
    try:
        refresh = int(q.get("refresh", "0"))
    except ValueError:
        refresh = 0
    refresh = refresh if refresh in _REFRESH_CHOICES else 0
    entries = [e for e in console.broker.describe_broker_configs(per_broker=True)
               if query.lower() in e.name.lower() and (not changed or e.source not in (5, 6))]
    metrics = console.metrics
    view = metrics_view(metrics, history, time.time()) if metrics is not None else None
    return console.render(request, viewer, "settings.html", configs=entries, query=query, changed=changed,
                          source_names=_SOURCES, metrics=view, refresh=refresh, refresh_choices=_REFRESH_CHOICES,
                          node_id=console.broker.config.node_id)


def routes(console: Console) -> list[BaseRoute]:
    history = MetricsHistory()  # one per console: the page's memory of earlier samples

    async def handler(console: Console, request: Request, viewer: Viewer) -> Response:
        return await settings_page(console, request, viewer, history)

    return [Route("/settings", page(console, handler), methods=["GET"])]
