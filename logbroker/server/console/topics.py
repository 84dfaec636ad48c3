"""The overview (``/``) and the topic list (``/topics``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from logbroker.broker.internal_topic import is_internal_topic
from logbroker.server.console.app import Console, Viewer, disk_usage, page, visible

__all__ = ["routes"]

_MAX_ROWS = 500


@dataclass(frozen=True, slots=True)
class TopicRow:
    name: str
    partitions: int
    records: int
    size: int
    retention: str
    compacted: bool
    bytes_in: int
    records_in: int
    bytes_out: int


def topic_rows(console: Console, viewer: Viewer, query: str = "", internal: bool = False) -> list[TopicRow]:
    """The topics ``viewer`` may describe whose name contains ``query``."""
    broker = console.broker
    infos = broker.topics()
    names = [n for n in infos if query.lower() in n.lower() and (internal or not is_internal_topic(n))]
    sizes: dict[str, list[int]] = {}
    for (topic, _), plog in broker.log_manager.iter_partitions():
        if topic in infos:
            total = sizes.setdefault(topic, [0, 0])
            total[0] += plog.log_end_offset - plog.log_start_offset
            total[1] += plog.size_bytes
    traffic = broker.traffic
    default_retention = str(broker.config.log_retention_ms)
    rows = []
    for name in visible(console, viewer, names):
        info = infos[name]
        records, size = sizes.get(name, [0, 0])
        retention = info.configs.get("retention.ms", default_retention)
        rows.append(TopicRow(
            name=name, partitions=info.partitions, records=records, size=size,
            retention=_duration(retention), compacted="compact" in info.configs.get("cleanup.policy", "delete"),
            bytes_in=traffic.bytes_in.get(name, 0), records_in=traffic.records_in.get(name, 0),
            bytes_out=traffic.bytes_out.get(name, 0),
        ))
    return rows


def _duration(ms_text: str) -> str:
    try:
        ms = int(ms_text)
    except ValueError:
        return ms_text
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


async def overview(console: Console, request: Request, viewer: Viewer) -> Response:
    broker = console.broker
    config = broker.config
    free, total = disk_usage(config.data_dir)
    used = sum(plog.size_bytes for _, plog in broker.log_manager.iter_partitions())
    records_in, bytes_in, bytes_out = console.rates.sample(broker)
    query = request.query_params.get("q", "")
    rows = topic_rows(console, viewer, query)
    return console.render(
        request, viewer, "overview.html",
        listeners=console.listeners(), data_dir=config.data_dir, used=used, free=free, total=total,
        uptime=_uptime(time.time() - console.started), records_in=records_in, bytes_in=bytes_in,
        bytes_out=bytes_out, topics=rows[:_MAX_ROWS], more=max(0, len(rows) - _MAX_ROWS), query=query,
        partitions=sum(r.partitions for r in rows),
    )


async def topic_list(console: Console, request: Request, viewer: Viewer) -> Response:
    query = request.query_params.get("q", "")
    internal = request.query_params.get("internal") == "1"
    rows = topic_rows(console, viewer, query, internal)
    return console.render(request, viewer, "topics.html", topics=rows[:_MAX_ROWS],
                          more=max(0, len(rows) - _MAX_ROWS), query=query, internal=internal)


def _uptime(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return (f"{days} d " if days else "") + f"{hours:02d}:{minutes:02d}:{s:02d}"


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/", page(console, overview), methods=["GET"]),
        Route("/topics", page(console, topic_list), methods=["GET"]),
    ]
