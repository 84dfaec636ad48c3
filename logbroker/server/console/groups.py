"""Console views of consumer groups: the list (``/groups``), a group's page
(``/groups/{id}``: members, and per partition committed offset, end offset
and lag), resetting its offsets (a preview by GET, then an Apply that POSTs
exactly the previewed offsets) and deleting it. Share groups are the queue
pages (:mod:`.queues`, whose routes these include).

ACLs, as the Kafka APIs behind each view ask them: a group needs DESCRIBE on
the group to be listed or shown (otherwise 404, so names do not leak); its
offsets of a topic, and assignments of a topic, are shown only to a viewer
who may DESCRIBE that topic (and only those count in the lags shown).
Resetting needs READ on the group and on every topic reset (OffsetCommit's
rules), deleting DELETE on the group (DeleteGroups'). Both need the group
Empty, as Kafka does.

Group ids may contain ``/``: the routes take the id as a path, and the
action routes (``.../reset``, ``.../delete``) are matched first.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from logbroker.broker.groups import (
    CommitRequest,
    FlushPoint,
    GroupOutcome,
    ListedGroup,
    OffsetValue,
)
from logbroker.errors import LogbrokerError
from logbroker.server.console.app import Console, Viewer, page
from logbroker.server.console.queues import routes as queue_routes

__all__ = ["GroupRow", "parse_assignment", "routes"]

_MAX_ROWS = 500
TARGETS = ("earliest", "latest", "time", "offset", "shift")
"""What a reset moves offsets to: the log start, the log end, the first record
at or after a time, an offset, or the committed offset shifted by N."""

TopicCheck = Callable[[str, str], bool]
"""``may(operation, topic)``: the viewer's right, asked once per pair in one request."""


def _topic_rights(console: Console, viewer: Viewer) -> TopicCheck:
    asked: dict[tuple[str, str], bool] = {}

    def may(operation: str, topic: str) -> bool:
        key = (operation, topic)
        if key not in asked:
            asked[key] = console.allowed(viewer, operation, "topic", topic)
        return asked[key]

    return may


def parse_assignment(data: bytes) -> list[tuple[str, int]] | None:
    """The partitions of a consumer-protocol Assignment (any version), or None.

    Layout: version int16, topics array (int32 count; per topic an int16-length
    name and an int32 array of partitions), then user data (ignored).
    """
    try:
        pos = 2
        (count,) = struct.unpack_from(">i", data, pos)
        pos += 4
        out = []
        for _ in range(max(count, 0)):
            (length,) = struct.unpack_from(">h", data, pos)
            pos += 2
            topic = bytes(data[pos:pos + length]).decode("utf-8")
            pos += length
            (partitions,) = struct.unpack_from(">i", data, pos)
            pos += 4
            for _ in range(max(partitions, 0)):
                (p,) = struct.unpack_from(">i", data, pos)
                pos += 4
                out.append((topic, p))
        return out
    except (struct.error, UnicodeDecodeError):
        return None


# -- reading a group -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One line of ``/groups``."""

    group_id: str
    group_type: str
    protocol_type: str
    state: str
    members: int
    lag: int
    partitions: int


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    assignment: tuple[tuple[str, tuple[int, ...]], ...]
    """Assigned partitions by topic, of the topics the viewer may describe."""
    hidden: int
    """Assigned partitions of topics the viewer may not describe."""
    epoch: int | None = None
    target_differs: bool = False


@dataclass(frozen=True, slots=True)
class OffsetRow:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int | None
    owner: str | None


@dataclass(frozen=True, slots=True)
class GroupView:
    """What ``/groups/{id}`` shows."""

    group_id: str
    group_type: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberView, ...]
    rows: tuple[OffsetRow, ...]
    hidden_partitions: int
    epoch: int | None = None

    @property
    def empty(self) -> bool:
        """No members: its offsets may be reset and it may be deleted."""
        return not self.members and self.state in ("Empty", "Dead")

    @property
    def total_lag(self) -> int:
        return sum(r.lag for r in self.rows if r.lag is not None)

    @property
    def topics(self) -> list[str]:
        return sorted({r.topic for r in self.rows})


def _listed(console: Console) -> list[ListedGroup]:
    error, listed = console.broker.groups.list_groups()
    if error is GroupOutcome.COORDINATOR_LOAD_IN_PROGRESS:
        raise HTTPException(503, "the group coordinator is still loading; try again in a moment")
    return listed


def _find(console: Console, viewer: Viewer, group_id: str) -> ListedGroup:
    """The group; 404 when it does not exist or ``viewer`` may not describe it (the
    two look the same, so names do not leak)."""
    if console.allowed(viewer, "describe", "group", group_id):
        for listed in _listed(console):
            if listed.group_id == group_id:
                return listed
    raise HTTPException(404, f"no consumer group {group_id}")


def _end_offset(console: Console, topic: str, partition: int) -> int | None:
    try:
        return console.broker.partition(topic, partition).high_watermark
    except LogbrokerError:
        return None  # deleted meanwhile


def group_rows(console: Console, viewer: Viewer, query: str = "") -> list[GroupRow]:
    """The classic and consumer groups ``viewer`` may describe whose id contains ``query``;
    lag and partitions count only topics ``viewer`` may describe."""
    groups = console.broker.groups
    may = _topic_rights(console, viewer)
    listed = sorted((g for g in _listed(console) if query.lower() in g.group_id.lower()
                     and console.allowed(viewer, "describe", "group", g.group_id)), key=lambda g: g.group_id)
    lags: dict[str, list[int]] = {}
    for group_id, topic, _, lag in console.broker.group_lags():
        if may("describe", topic):
            total = lags.setdefault(group_id, [0, 0])
            total[0] += lag
            total[1] += 1
    classic = [g.group_id for g in listed if g.group_type == "classic"]
    consumer = [g.group_id for g in listed if g.group_type != "classic"]
    members = {d.group_id: len(d.members) for d in groups.describe_groups(classic)}
    members.update((d.group_id, len(d.members)) for d in groups.describe_consumer_groups(consumer))
    return [
        GroupRow(g.group_id, g.group_type, g.protocol_type, g.state, members.get(g.group_id, 0),
                 *lags.get(g.group_id, [0, 0]))
        for g in listed
    ]


def _by_topic(tps: Iterable[tuple[str, int]], may: TopicCheck) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], int]:
    """Partitions grouped by topic (visible topics only), and how many were left out."""
    shown: dict[str, list[int]] = {}
    hidden = 0
    for topic, p in tps:
        if may("describe", topic):
            shown.setdefault(topic, []).append(p)
        else:
            hidden += 1
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(shown.items())), hidden


def describe_group(console: Console, viewer: Viewer, group_id: str) -> GroupView:
    """The group as ``viewer`` may see it; 404 as :func:`_find`."""
    listed = _find(console, viewer, group_id)
    groups = console.broker.groups
    may = _topic_rights(console, viewer)
    owners: dict[tuple[str, int], str] = {}
    members: list[MemberView] = []
    epoch = None
    if listed.group_type == "classic":
        [summary] = groups.describe_groups([group_id])
        state, protocol_type, protocol = summary.state, summary.protocol_type, summary.protocol_name
        for m in summary.members:
            # Assignments are known only while Stable, and only the consumer protocol's can be read.
            tps = parse_assignment(m.assignment) if protocol_type == "consumer" and m.assignment else None
            for tp in tps or ():
                owners[tp] = m.client_id or m.member_id
            assignment, hidden = _by_topic(tps or (), may)
            members.append(MemberView(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                      assignment, hidden))
    else:
        [described] = groups.describe_consumer_groups([group_id])
        state, protocol_type, protocol, epoch = described.state, "consumer", described.assignor, described.group_epoch
        for c in described.members:
            tps = [(t, p) for t, ps in c.assignment for p in ps]
            for tp in tps:
                owners[tp] = c.client_id or c.member_id
            assignment, hidden = _by_topic(tps, may)
            members.append(MemberView(c.member_id, c.instance_id, c.client_id, c.client_host, assignment, hidden,
                                      c.member_epoch, c.target_assignment != c.assignment))
    committed = {tp: v.offset for tp, v in groups.fetch_offsets(group_id, None).offsets.items()
                 if v is not None and v.offset >= 0}
    rows: list[OffsetRow] = []
    hidden_partitions = 0
    for topic, partition in sorted(set(committed) | set(owners)):
        if not may("describe", topic):
            hidden_partitions += 1
            continue
        end = _end_offset(console, topic, partition)
        if end is None:
            continue
        offset = committed.get((topic, partition))
        lag = max(0, end - offset) if offset is not None else None  # as broker.group_lags() counts it
        rows.append(OffsetRow(topic, partition, offset, end, lag, owners.get((topic, partition))))
    return GroupView(group_id, listed.group_type, state, protocol_type, protocol, tuple(members), tuple(rows),
                     hidden_partitions, epoch)


# -- resetting offsets -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResetSpec:
    """A reset as the form asks it: ``topic`` "" means every topic the group has offsets for."""

    topic: str
    target: str
    value: str

    def query(self) -> str:
        return urlencode({"topic": self.topic, "target": self.target, "value": self.value})


@dataclass(frozen=True, slots=True)
class PlanRow:
    topic: str
    partition: int
    current: int | None
    new: int
    start: int
    end: int

    @property
    def lag_after(self) -> int:
        return max(0, self.end - self.new)


@dataclass(frozen=True, slots=True)
class Plan:
    rows: tuple[PlanRow, ...]
    left_out: int = 0
    """Partitions of the group's topics the viewer may not read (not reset)."""
    problems: tuple[str, ...] = ()
    """Why the plan cannot be applied (shown instead of the Apply button)."""

    def encoded(self) -> str:
        """The offsets to commit, as the Apply form carries them (topic names have no ``:`` ``=`` ``,``)."""
        return ",".join(f"{r.topic}:{r.partition}={r.new}" for r in self.rows)


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


def _number(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise HTTPException(400, f"{what} must be a whole number, got {text!r}") from None


def _spec(values: Mapping[str, str]) -> ResetSpec:
    """The reset a form (query string or POST body) asks for; 400 when it makes no sense."""
    target = values.get("target", "") or "earliest"
    value = values.get("value", "").strip()
    if target == "time" and not value:
        value = values.get("time", "").strip()  # the form's datetime-local field
    spec = ResetSpec(values.get("topic", "").strip(), target, value)
    if spec.target not in TARGETS:
        raise HTTPException(400, f"reset to what? {spec.target!r} is not one of {', '.join(TARGETS)}")
    if spec.target in ("time", "offset", "shift") and not spec.value.strip():
        raise HTTPException(400, f"a reset to {spec.target} needs a value")
    return spec


def plan_reset(console: Console, viewer: Viewer, view: GroupView, spec: ResetSpec) -> Plan:
    """The offsets ``spec`` gives each partition, clamped to the log (as
    kafka-consumer-groups does). One topic: all its partitions; all topics:
    the partitions the group has committed offsets for (Kafka's ``--all-topics``).

    :raises HTTPException: 404 unknown or hidden topic, 400 a bad value.
    """
    broker = console.broker
    may = _topic_rights(console, viewer)
    committed = {(r.topic, r.partition): r.committed for r in view.rows}
    left_out = 0
    if spec.topic:
        info = broker.topics().get(spec.topic)
        if info is None or not may("describe", spec.topic):
            raise HTTPException(404, f"no topic {spec.topic}")
        partitions = [(spec.topic, p) for p in range(info.partitions)]
        problems: tuple[str, ...] = () if may("read", spec.topic) else (f"you may not read {spec.topic}",)
    else:
        partitions = sorted(tp for tp, offset in committed.items() if offset is not None)
        left_out = view.hidden_partitions + sum(1 for t, _ in partitions if not may("read", t))
        partitions = [tp for tp in partitions if may("read", tp[0])]
        problems = ()
    when = _time_ms(spec.value) if spec.target == "time" else 0
    number = _number(spec.value, "the " + spec.target) if spec.target in ("offset", "shift") else 0
    rows = []
    for topic, partition in partitions:
        try:
            plog = broker.partition(topic, partition)
        except LogbrokerError:
            continue
        start, end = plog.log_start_offset, plog.high_watermark
        current = committed.get((topic, partition))
        if spec.target == "earliest":
            new = start
        elif spec.target == "latest":
            new = end
        elif spec.target == "offset":
            new = number
        elif spec.target == "shift":
            new = (end if current is None else current) + number  # no commit yet: from the end, as the CLI
        else:
            found = plog.offset_for_timestamp(when)
            new = found[0] if found is not None else end
        rows.append(PlanRow(topic, partition, current, min(max(new, start), end), start, end))
    return Plan(tuple(rows), left_out, problems)


def _parse_plan(text: str) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        where, _, offset = item.rpartition("=")
        topic, _, partition = where.rpartition(":")
        try:
            tp, value = (topic, int(partition)), int(offset)
        except ValueError:
            raise HTTPException(400, f"cannot read the offset {item!r}") from None
        if not topic or value < 0:
            raise HTTPException(400, f"cannot read the offset {item!r}")
        offsets[tp] = value
    if not offsets:
        raise HTTPException(400, "nothing to reset: preview a reset first")
    return offsets


async def _fsync(console: Console, point: object) -> None:
    """Make a coordinator's write durable first when the broker runs with flush=always
    (as the handlers' replies do)."""
    if isinstance(point, FlushPoint) and console.broker.config.flush == "always":
        await trio.to_thread.run_sync(point.log.flush, point.offset)


def _not_empty(view: GroupView) -> str:
    return (f"group {view.group_id} is {view.state} with {len(view.members)} member(s): stop its consumers "
            f"first (Kafka changes a group's offsets and deletes it only while it is Empty)")


# -- pages -----------------------------------------------------------------------------------


def _group_url(group_id: str, suffix: str = "") -> str:
    return f"/groups/{quote(group_id, '')}{suffix}"


async def group_list(console: Console, request: Request, viewer: Viewer) -> Response:
    query = request.query_params.get("q", "")
    rows = group_rows(console, viewer, query)
    return console.render(request, viewer, "groups.html", groups=rows[:_MAX_ROWS],
                          more=max(0, len(rows) - _MAX_ROWS), query=query,
                          message=request.query_params.get("message", ""))


def _render_group(console: Console, request: Request, viewer: Viewer, view: GroupView, *, status: int = 200,
                  spec: ResetSpec | None = None, plan: Plan | None = None, error: str = "") -> Response:
    may_read = console.allowed(viewer, "read", "group", view.group_id)
    return console.render(
        request, viewer, "group.html", status=status, group=view, spec=spec, plan=plan, error=error,
        targets=TARGETS, message=request.query_params.get("message", ""),
        may_preview=may_read, may_reset=may_read and not console.read_only,
        may_delete=console.allowed(viewer, "delete", "group", view.group_id) and not console.read_only,
        group_url=_group_url(view.group_id),
    )


async def group_page(console: Console, request: Request, viewer: Viewer) -> Response:
    group_id = request.path_params["id"]
    if console.broker.share.is_share_group(group_id) and console.allowed(viewer, "describe", "group", group_id):
        return RedirectResponse(f"/queues/{quote(group_id, '')}", status_code=303)  # a queue's id, as Kafka lists it
    view = describe_group(console, viewer, group_id)
    return _render_group(console, request, viewer, view)


async def reset_preview(console: Console, request: Request, viewer: Viewer) -> Response:
    view = describe_group(console, viewer, request.path_params["id"])
    spec = _spec(request.query_params)
    plan = plan_reset(console, viewer, view, spec)
    return _render_group(console, request, viewer, view, spec=spec, plan=plan)


async def reset_apply(console: Console, request: Request, viewer: Viewer) -> Response:
    group_id = request.path_params["id"]
    view = describe_group(console, viewer, group_id)
    form = await console.check_post(request, viewer)
    if not console.allowed(viewer, "read", "group", group_id):
        raise HTTPException(403, f"you may not change the offsets of group {group_id} (it needs READ on the group)")
    offsets = _parse_plan(form.get("plan", ""))
    topics = console.broker.topics()
    for (topic, partition) in offsets:
        info = topics.get(topic)
        if info is None or not console.allowed(viewer, "describe", "topic", topic):
            raise HTTPException(404, f"no topic {topic}")
        if not console.allowed(viewer, "read", "topic", topic):
            raise HTTPException(403, f"you may not reset offsets of {topic} (it needs READ on the topic)")
        if not 0 <= partition < info.partitions:
            raise HTTPException(400, f"{topic} has no partition {partition} (it has {info.partitions})")
    if not view.empty:
        spec = _spec(form)
        return _render_group(console, request, viewer, view, status=409, spec=spec,
                             plan=plan_reset(console, viewer, view, spec), error=_not_empty(view))
    # Exactly what an OffsetCommit from outside the group sends: no member, no generation.
    request_ = CommitRequest(group_id, -1, "", {tp: OffsetValue(offset) for tp, offset in offsets.items()})
    result = console.broker.groups.commit_offsets(request_, console.broker.clock())
    failed = sorted({e.value for e in result.errors.values() if e is not GroupOutcome.NONE})
    if failed:
        fresh = describe_group(console, viewer, group_id)
        spec = _spec(form)
        return _render_group(console, request, viewer, fresh, status=409, spec=spec,
                             plan=plan_reset(console, viewer, fresh, spec),
                             error=f"the group coordinator refused the commit: {', '.join(failed).upper()}")
    await _fsync(console, result.flush)
    message = f"reset {len(offsets)} offsets"
    return RedirectResponse(_group_url(group_id) + "?" + urlencode({"message": message}), status_code=303)


async def delete_group(console: Console, request: Request, viewer: Viewer) -> Response:
    group_id = request.path_params["id"]
    view = describe_group(console, viewer, group_id)
    form = await console.check_post(request, viewer)
    if not console.allowed(viewer, "delete", "group", group_id):
        raise HTTPException(403, f"you may not delete group {group_id} (it needs DELETE on the group)")
    if form.get("confirm") != "yes":
        raise HTTPException(400, "tick the box to confirm the deletion")
    if not view.empty:
        return _render_group(console, request, viewer, view, status=409, error=_not_empty(view))
    results, flush = console.broker.groups.delete_groups([group_id], console.broker.clock())
    outcome = results.get(group_id, GroupOutcome.UNKNOWN_SERVER_ERROR)
    if outcome is not GroupOutcome.NONE:
        return _render_group(console, request, viewer, describe_group(console, viewer, group_id), status=409,
                             error=f"the group coordinator refused to delete it: {outcome.value.upper()}")
    await _fsync(console, flush)
    return RedirectResponse("/groups?" + urlencode({"message": f"deleted group {group_id}"}), status_code=303)


def routes(console: Console) -> list[BaseRoute]:
    return [
        Route("/groups", page(console, group_list), methods=["GET"]),
        # The actions first: a group id may hold "/" (the page route takes the rest of the path).
        Route("/groups/{id:path}/reset", page(console, reset_preview), methods=["GET"]),
        Route("/groups/{id:path}/reset", page(console, reset_apply), methods=["POST"]),
        Route("/groups/{id:path}/delete", page(console, delete_group), methods=["POST"]),
        Route("/groups/{id:path}", page(console, group_page), methods=["GET"]),
        *queue_routes(console),
    ]
