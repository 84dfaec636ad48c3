"""Console views of share groups (KIP-932 queues): the list (``/queues``) and a
queue's page (``/queues/{group}``: members, per share-partition the records
available, in flight, acknowledged and archived, the delivery-attempt limit,
the record lock duration and the dead-letter topic), and "send back to the
source topic", which copies dead letters to the partition they were
dead-lettered from (the ``__dlq.errors.*`` headers the broker adds say which;
those headers are dropped from the copies, so the records come back as they
were produced).

ACLs: a share group needs DESCRIBE on the group to be listed or shown (404
otherwise); its partitions of a topic are shown only to a viewer who may
DESCRIBE the topic; its configs (delivery limit, lock duration, dead-letter
topic) need DESCRIBE_CONFIGS on the group, as DescribeConfigs does. Sending
back needs READ on the dead-letter topic and WRITE on every source topic
written to (nothing is written if one is refused).

The routes are served through :func:`logbroker.server.console.groups.routes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from logbroker.broker.share import (
    DELIVERY_COUNT_LIMIT,
    DLQ_COPY_RECORD,
    DLQ_HEADERS,
    DLQ_TOPIC,
    HEADER_GROUP,
    HEADER_PARTITION,
    HEADER_TOPIC,
    LOCK_DURATION,
    ConfigDescription,
    SharePartitionCounts,
)
from logbroker.errors import LogbrokerError
from logbroker.records import BatchBuilder
from logbroker.server.console.app import Console, Viewer, page
from logbroker.server.console.browse import read_forward

__all__ = ["QueuePartition", "QueueRow", "routes"]

_MAX_ROWS = 500
MAX_SEND_BACK = 10_000
"""Dead letters one "send back" copies at most (the console runs on the broker's
thread); the answer says where it stopped, to go on from there."""
_CHUNK_RECORDS = 1000
_CHUNK_BYTES = 256 * 1024  # well below message.max.bytes' default


def _topic_rights(console: Console, viewer: Viewer) -> Callable[[str, str], bool]:
    asked: dict[tuple[str, str], bool] = {}

    def may(operation: str, topic: str) -> bool:
        key = (operation, topic)
        if key not in asked:
            asked[key] = console.allowed(viewer, operation, "topic", topic)
        return asked[key]

    return may


@dataclass(frozen=True, slots=True)
class QueuePartition:
    """One share-partition: its window starts at ``start``; ``available`` counts every
    record from there to the log end that waits for a consumer (inside the window
    or past it), ``acknowledged``/``archived`` the window's, ``*_total`` those since
    the broker started."""

    topic: str
    partition: int
    start: int
    end: int
    available: int
    in_flight: int
    acknowledged: int
    archived: int
    acknowledged_total: int
    archived_total: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of ``/queues``; ``dlq`` is None when the viewer may not see the configs."""

    group_id: str
    state: str
    members: int
    partitions: int
    available: int
    in_flight: int
    acknowledged_total: int
    archived_total: int
    dlq: str | None


def _partition(console: Console, topic: str, partition: int, c: SharePartitionCounts) -> QueuePartition | None:
    try:
        end = console.broker.partition(topic, partition).high_watermark
    except LogbrokerError:
        return None  # deleted meanwhile
    # The broker's lag (DescribeShareGroupOffsets): not yet acknowledged nor archived, to the log end.
    lag = max(0, end - c.start_offset - c.acknowledged - c.archived)
    return QueuePartition(topic, partition, c.start_offset, end, max(0, lag - c.in_flight), c.in_flight,
                          c.acknowledged, c.archived, c.acknowledged_total, c.archived_total)


def _partitions(console: Console, viewer: Viewer, group_id: str | None) -> dict[str, list[QueuePartition]]:
    """Share-partitions by group, of the topics ``viewer`` may describe."""
    may = _topic_rights(console, viewer)
    out: dict[str, list[QueuePartition]] = {}
    for (group, topic, partition), counts in sorted(console.broker.share.partition_counts(group_id).items()):
        if may("describe", topic) and (row := _partition(console, topic, partition, counts)) is not None:
            out.setdefault(group, []).append(row)
    return out


def _configs(console: Console, viewer: Viewer, group_id: str) -> dict[str, ConfigDescription] | None:
    if not console.allowed(viewer, "describe_configs", "group", group_id):
        return None
    return {c.name: c for c in console.broker.share.describe_configs(group_id)}


def queue_rows(console: Console, viewer: Viewer, query: str = "") -> list[QueueRow]:
    """The share groups ``viewer`` may describe whose id contains ``query``."""
    share = console.broker.share
    ids = sorted(g.group_id for g in share.list_groups()
                 if query.lower() in g.group_id.lower() and console.allowed(viewer, "describe", "group", g.group_id))
    partitions = _partitions(console, viewer, None)
    rows = []
    for d in share.describe(ids):
        parts = partitions.get(d.group_id, [])
        configs = _configs(console, viewer, d.group_id)
        rows.append(QueueRow(
            d.group_id, d.state, len(d.members), len(parts), sum(p.available for p in parts),
            sum(p.in_flight for p in parts), sum(p.acknowledged_total for p in parts),
            sum(p.archived_total for p in parts), None if configs is None else configs[DLQ_TOPIC].value,
        ))
    return rows


def _find(console: Console, viewer: Viewer, group_id: str) -> None:
    """404 unless ``group_id`` is a share group ``viewer`` may describe (the two look the same)."""
    if not (console.broker.share.is_share_group(group_id)
            and console.allowed(viewer, "describe", "group", group_id)):
        raise HTTPException(404, f"no share group {group_id}")


def _queue_url(group_id: str) -> str:
    return f"/queues/{quote(group_id, '')}"


async def queue_list(console: Console, request: Request, viewer: Viewer) -> Response:
    query = request.query_params.get("q", "")
    rows = queue_rows(console, viewer, query)
    return console.render(request, viewer, "queues.html", queues=rows[:_MAX_ROWS],
                          more=max(0, len(rows) - _MAX_ROWS), query=query)


async def queue_page(console: Console, request: Request, viewer: Viewer) -> Response:
    group_id = request.path_params["id"]
    _find(console, viewer, group_id)
    broker = console.broker
    may = _topic_rights(console, viewer)
    [description] = broker.share.describe([group_id])
    members = []
    for m in description.members:
        shown = [(topic, parts) for _, topic, parts in m.assignment if may("describe", topic)]
        hidden = sum(len(parts) for _, topic, parts in m.assignment if not may("describe", topic))
        members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host,
                        "epoch": m.member_epoch, "assignment": shown, "hidden": hidden})
    configs = _configs(console, viewer, group_id)
    dlq = configs[DLQ_TOPIC].value if configs is not None else ""
    dlq_partitions: list[dict[str, int]] = []
    dlq_visible = bool(dlq) and dlq in broker.topics() and may("describe", dlq)
    if dlq_visible:
        for p in range(broker.topics()[dlq].partitions):
            plog = broker.partition(dlq, p)
            dlq_partitions.append({"partition": p, "start": plog.log_start_offset, "end": plog.high_watermark})
    return console.render(
        request, viewer, "queue.html", group_id=group_id, state=description.state, epoch=description.group_epoch,
        members=members, partitions=_partitions(console, viewer, group_id).get(group_id, []), configs=configs,
        limit=configs[DELIVERY_COUNT_LIMIT].value if configs else "",
        lock_ms=configs[LOCK_DURATION].value if configs else "",
        copy_record=configs[DLQ_COPY_RECORD].value != "false" if configs else True,
        dlq=dlq, dlq_visible=dlq_visible, dlq_partitions=dlq_partitions,
        may_send_back=dlq_visible and may("read", dlq) and not console.read_only,
        message=request.query_params.get("message", ""), queue_url=_queue_url(group_id),
    )


@dataclass(slots=True)
class _SendBack:
    """What one "send back" found: the copies by source partition, and what it skipped."""

    copies: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]]]
    other_groups: int = 0
    unknown_source: int = 0
    missing_source: int = 0
    stopped_at: tuple[int, int] | None = None

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.copies.values())


def _offset(text: str | None, default: int, what: str) -> int:
    if text is None or not text.strip():
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise HTTPException(400, f"{what} must be a whole number, got {text!r}") from None


def _collect(console: Console, group_id: str, dlq: str, partitions: list[int], first: int,
             last: int | None) -> _SendBack:
    """The dead letters of ``group_id`` in ``dlq``'s ``partitions``, offsets ``first..last``
    (inclusive; None: to the end), at most :data:`MAX_SEND_BACK`."""
    broker = console.broker
    topics = broker.topics()
    found = _SendBack({})
    budget = MAX_SEND_BACK
    for p in partitions:
        plog = broker.partition(dlq, p)
        stop = plog.high_watermark if last is None else min(last + 1, plog.high_watermark)
        position = max(first, plog.log_start_offset)
        while position < stop:
            if budget <= 0:
                found.stopped_at = (p, position)
                return found
            records, after = read_forward(plog, p, position, min(budget, 1000))
            if not records or after <= position:
                break
            for r in records:
                if r.offset >= stop:
                    break
                budget -= 1
                headers = {k: v for k, v in r.headers}
                group, topic, partition = (headers.get(h) for h in (HEADER_GROUP, HEADER_TOPIC, HEADER_PARTITION))
                if group is not None and group.decode("utf-8", "replace") != group_id:
                    found.other_groups += 1
                    continue
                try:
                    source = (topic.decode(), int(partition)) if topic is not None and partition is not None else None
                except (UnicodeDecodeError, ValueError):
                    source = None
                if source is None:
                    found.unknown_source += 1
                    continue
                info = topics.get(source[0])
                if info is None or not 0 <= source[1] < info.partitions:
                    found.missing_source += 1
                    continue
                kept = tuple((k, v) for k, v in r.headers if k not in DLQ_HEADERS)
                found.copies.setdefault(source, []).append((r.key, r.value, kept))
            position = after
    return found


async def send_back(console: Console, request: Request, viewer: Viewer) -> Response:
    group_id = request.path_params["id"]
    _find(console, viewer, group_id)
    form = await console.check_post(request, viewer)
    broker = console.broker
    dlq = broker.share.group_configs(group_id).get(DLQ_TOPIC, "")
    info = broker.topics().get(dlq) if dlq else None
    if not dlq or info is None:
        raise HTTPException(400, f"share group {group_id} has no dead-letter topic with records to send back")
    if not console.allowed(viewer, "read", "topic", dlq):
        raise HTTPException(403, "you may not read this group's dead-letter topic")
    chosen = form.get("partition", "all") or "all"
    partitions = list(range(info.partitions)) if chosen == "all" else [_offset(chosen, 0, "the partition")]
    if any(not 0 <= p < info.partitions for p in partitions):
        raise HTTPException(400, f"{dlq} has no partition {chosen} (it has {info.partitions})")
    first = max(0, _offset(form.get("from"), 0, "the first offset"))
    last_text = form.get("to", "")
    last = _offset(last_text, 0, "the last offset") if last_text.strip() else None
    found = _collect(console, group_id, dlq, partitions, first, last)
    refused = sorted({topic for topic, _ in found.copies if not console.allowed(viewer, "write", "topic", topic)})
    if refused:
        raise HTTPException(403, f"you may not write to {', '.join(refused)}: nothing was sent")
    sent, written, failure = 0, [], ""
    for (topic, partition), copies in sorted(found.copies.items()):
        try:
            last_offset = _append(console, topic, partition, copies)
        except LogbrokerError as exc:
            failure = f"{topic}-{partition} refused the records: {exc}"
            break
        sent += len(copies)
        written.append((topic, partition, last_offset))
    for topic, partition, last_offset in written:
        await trio.to_thread.run_sync(broker.partition(topic, partition).flush, last_offset + 1)
    console.appended([(t, p) for t, p, _ in written])
    if failure:
        raise HTTPException(400, f"sent {sent} dead letters back, then {failure}")
    parts = [f"sent {sent} dead letters back to "
             + (", ".join(f"{t}-{p} ({len(c)})" for (t, p), c in sorted(found.copies.items())) or "no partition")]
    for count, why in ((found.other_groups, "of other groups"), (found.unknown_source, "without a source"),
                       (found.missing_source, "whose source partition is gone")):
        if count:
            parts.append(f"skipped {count} {why}")
    if found.stopped_at is not None:
        parts.append(f"stopped at {dlq}-{found.stopped_at[0]} offset {found.stopped_at[1]} "
                     f"(at most {MAX_SEND_BACK} at once): send again from there")
    return RedirectResponse(_queue_url(group_id) + "?" + urlencode({"message": "; ".join(parts)}), status_code=303)


def _append(console: Console, topic: str, partition: int,
            copies: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]]) -> int:
    """Append ``copies`` in batches of bounded size; the offset of the last one.

    :raises LogbrokerError: the log refused a batch (those before it stay written).
    """
    now = int(time.time() * 1000)  # a new delivery of the record: stamped now, so retention counts from now
    last = -1
    builder = BatchBuilder()
    for i, (key, value, headers) in enumerate(copies):
        builder.append(value, key, headers, timestamp_ms=now)
        if len(builder) >= _CHUNK_RECORDS or builder.estimated_size() >= _CHUNK_BYTES or i == len(copies) - 1:
            result = console.broker.append(topic, partition, builder.build())
            last = result.base_offset + len(builder) - 1
            builder = BatchBuilder()
    return last


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/queues", page(console, queue_list), methods=["GET"]),
        # The action first: a group id may hold "/" (the page route takes the rest of the path).
        Route("/queues/{id:path}/send-back", page(console, send_back), methods=["POST"]),
        Route("/queues/{id:path}", page(console, queue_page), methods=["GET"]),
    ]
