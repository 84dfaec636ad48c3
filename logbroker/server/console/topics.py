"""The overview (``/``), the topic list (``/topics``) and a topic's page:
partitions, configs, the message browser, the live tail and a produce form."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from logbroker.broker.internal_topic import is_internal_topic
from logbroker.errors import LogbrokerError
from logbroker.records import BatchBuilder
from logbroker.server.console.app import Console, Viewer, disk_usage, page, visible
from logbroker.server.console.browse import find_records, read_forward, render_bytes

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
    names = visible(console, viewer, [n for n in infos if query.lower() in n.lower()
                                      and (internal or not is_internal_topic(n))])
    sizes: dict[str, list[int]] = {}
    # The manager's figures of the topics shown: a page opens no partition unused since the start.
    for row in broker.log_manager.partition_figures(names):
        total = sizes.setdefault(row.topic, [0, 0])
        total[0] += row.log_end_offset - row.log_start_offset
        total[1] += row.size_bytes
    traffic = broker.traffic
    default_retention = str(broker.config.log_retention_ms)
    rows = []
    for name in names:
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
    used = sum(row.size_bytes for row in broker.log_manager.partition_figures())
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


_VIEWS = ("text", "json", "hex", "schema")
_SOURCES = {1: "topic", 2: "broker (dynamic)", 3: "broker default (dynamic)", 4: "broker", 5: "default",
            6: "default"}
_MAX_BROWSE = 1000
_TAIL_POLL_S = 0.2
_TAIL_MAX_S = 3600.0  # a forgotten tab does not hold a stream forever


def _topic(console: Console, viewer: Viewer, name: str) -> int:
    """The topic's partition count; 404 when it does not exist or ``viewer`` may not describe it
    (the two look the same, so names do not leak)."""
    info = console.broker.topics().get(name)
    if info is None or not console.allowed(viewer, "describe", "topic", name):
        raise HTTPException(404, f"no topic {name}")
    return info.partitions


def _int(value: str | None, default: int, what: str) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, f"{what} must be a number, got {value!r}") from None


def _time_ms(text: str) -> int:
    """A browser's datetime-local value (UTC), ISO 8601, or epoch milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"{text!r} is not a time (ISO 8601 or epoch milliseconds)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1000)


async def topic_page(console: Console, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    count = _topic(console, viewer, name)
    broker = console.broker
    q = request.query_params
    # The manager's figures (the high watermark is the log end on a single node), not the logs: the
    # table opens no partition; only the records read below open the partitions they are read from.
    figures = {row.partition: row for row in broker.log_manager.partition_figures([name])}
    partitions = []
    for index in range(count):
        row = figures.get(index)
        if row is None:  # its figures cannot be read: its log raises why, as it did
            plog = broker.partition(name, index)
            start, end, size = plog.log_start_offset, plog.high_watermark, plog.size_bytes
        else:
            start, end, size = row.log_start_offset, row.log_end_offset, row.size_bytes
        partitions.append({"partition": index, "start": start, "end": end, "size": size})
    may_read = console.allowed(viewer, "read", "topic", name)
    chosen = q.get("partition", "all")
    mode = q.get("mode", "newest") if q.get("mode") in ("newest", "offset", "time") else "newest"
    limit = max(1, min(_int(q.get("limit"), 100, "limit"), _MAX_BROWSE))
    view = q.get("view", "text") if q.get("view") in _VIEWS else "text"
    records: list[dict[str, object]] = []
    started = time.perf_counter()
    if may_read:
        wanted = range(count) if chosen == "all" else [_int(chosen, 0, "partition")]
        if any(p < 0 or p >= count for p in wanted):
            raise HTTPException(404, f"{name} has no partition {chosen} (it has {count})")
        logs = {p: broker.partition(name, p) for p in wanted}
        found = find_records(logs, mode=mode, limit=limit, offset=_int(q.get("offset"), 0, "offset"),
                             timestamp=_time_ms(q["time"]) if mode == "time" and q.get("time") else 0,
                             key_text=q.get("key", ""), value_text=q.get("value", ""))
        registry = broker.schema_registry
        for r in found:
            records.append({
                "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                "key": render_bytes(r.key, view, registry), "value": render_bytes(r.value, view, registry),
                "headers": [(k, render_bytes(v, "text")) for k, v in r.headers],
            })
    elapsed_ms = (time.perf_counter() - started) * 1000
    configs = []
    if console.allowed(viewer, "describe_configs", "topic", name):
        configs = [e for e in broker.describe_topic_configs(name)]
    return console.render(
        request, viewer, "topic.html", name=name, partitions=partitions, may_read=may_read, records=records,
        chosen=chosen, mode=mode, limit=limit, view=view, views=_VIEWS, q=q, elapsed_ms=elapsed_ms,
        configs=configs, may_alter=console.allowed(viewer, "alter_configs", "topic", name) and not console.read_only,
        may_write=console.allowed(viewer, "write", "topic", name) and not console.read_only,
        message=q.get("message", ""), source_names=_SOURCES,
    )


async def alter_configs(console: Console, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    _topic(console, viewer, name)
    form = await console.check_post(request, viewer)
    if not console.allowed(viewer, "alter_configs", "topic", name):
        raise HTTPException(403, f"you may not change the configs of {name}")
    config_name, value = form.get("config", "").strip(), form.get("value", "").strip()
    if not config_name:
        raise HTTPException(400, "name the config to change")
    try:
        console.broker.alter_topic_configs(name, {config_name: value} if value else {config_name: ""})
    except LogbrokerError as exc:
        raise HTTPException(400, f"cannot set {config_name}: {exc}") from None
    return RedirectResponse(f"/topics/{name}?message=set+{config_name}", status_code=303)


async def produce_form(console: Console, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    count = _topic(console, viewer, name)
    form = await console.check_post(request, viewer)
    if not console.allowed(viewer, "write", "topic", name):
        raise HTTPException(403, f"you may not write to {name}")
    partition = _int(form.get("partition"), 0, "partition")
    if not 0 <= partition < count:
        raise HTTPException(400, f"{name} has no partition {partition} (it has {count})")
    headers = []
    for line in form.get("headers", "").splitlines():
        if line.strip():
            key, _, value = line.partition("=")
            headers.append((key.strip(), value.encode()))
    key = form.get("key", "")
    builder = BatchBuilder()
    builder.append(form.get("value", "").encode(), key.encode() if key else None,
                   timestamp_ms=int(time.time() * 1000), headers=headers)
    try:
        result = console.broker.append(name, partition, builder.build())
    except LogbrokerError as exc:
        raise HTTPException(400, f"not written: {exc}") from None
    plog = console.broker.partition(name, partition)
    await trio.to_thread.run_sync(plog.flush, result.base_offset + 1)
    console.appended([(name, partition)])
    return RedirectResponse(f"/topics/{name}?message=produced+offset+{result.base_offset}+to+partition+{partition}",
                            status_code=303)


async def tail_events(console: Console, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    count = _topic(console, viewer, name)
    if not console.allowed(viewer, "read", "topic", name):
        raise HTTPException(403, f"you may not read {name}")
    view = request.query_params.get("view", "text")
    chosen = request.query_params.get("partition", "all")
    wanted = list(range(count)) if chosen == "all" else [_int(chosen, 0, "partition")]
    broker = console.broker

    async def events() -> AsyncIterator[str]:
        positions = {p: broker.partition(name, p).high_watermark for p in wanted}
        yield "retry: 1000\n\n"
        deadline = trio.current_time() + _TAIL_MAX_S
        while trio.current_time() < deadline:
            sent = False
            for p in wanted:
                try:
                    plog = broker.partition(name, p)
                except LogbrokerError:
                    return  # the topic is gone
                if plog.high_watermark <= positions[p]:
                    continue
                found, positions[p] = read_forward(plog, p, positions[p], 500)
                for r in found:
                    row = {"partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                           "key": render_bytes(r.key, view, broker.schema_registry),
                           "value": render_bytes(r.value, view, broker.schema_registry),
                           "headers": [[k, render_bytes(v, "text")] for k, v in r.headers]}
                    yield f"data: {json.dumps(row)}\n\n"
                    sent = True
            if not sent:
                yield ": keep-alive\n\n"
                await trio.sleep(_TAIL_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/", page(console, overview), methods=["GET"]),
        Route("/topics", page(console, topic_list), methods=["GET"]),
        Route("/topics/{name}", page(console, topic_page), methods=["GET"]),
        Route("/topics/{name}/configs", page(console, alter_configs), methods=["POST"]),
        Route("/topics/{name}/produce", page(console, produce_form), methods=["POST"]),
        Route("/topics/{name}/tail", page(console, tail_events), methods=["GET"]),
    ]
