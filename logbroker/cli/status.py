"""``logbroker status``: a one-screen summary of a running broker.

Everything comes over the Kafka protocol (Metadata, ListOffsets,
DescribeLogDirs, DescribeConfigs, ListGroups, DescribeGroups, OffsetFetch
and, for share groups, their progress), so it works against any broker that
answers them. Damaged batches come from logbroker's read-only topic config
``logbroker.damaged.batches`` (other brokers have none: nothing is shown).
"""

from __future__ import annotations

from typing import Any

import click

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.topics import emit_json, format_option, print_table, run_client
from logbroker.client import Admin, ConsumerGroupDescription, GroupDescription, GroupListing, TopicPartition
from logbroker.errors import KafkaError

DAMAGED_BATCHES = "logbroker.damaged.batches"


async def collect(admin: Admin) -> dict[str, Any]:
    """The status of the broker(s) ``admin`` talks to, as a JSON-ready dict."""
    meta = await admin.cluster.refresh(all_topics=True)
    topics = {name: info for name, info in sorted(meta.topics.items()) if not info.error_code}
    starts, ends, unreadable = await _offsets(admin, topics)
    dirs = await admin.describe_log_dirs()
    damaged = await _damaged(admin, list(topics))
    sizes: dict[TopicPartition, int] = {}
    for d in dirs:
        sizes.update(d.sizes)
    topics_out = []
    for name, info in topics.items():
        parts = [
            {"partition": p.partition, "log_start": starts.get(tp, -1), "log_end": ends.get(tp, -1),
             "size": sizes.get(tp, -1), "damaged": damaged.get(tp, [])}
            for p in sorted(info.partitions, key=lambda p: p.partition)
            for tp in [TopicPartition(name, p.partition)]
        ]
        topics_out.append({
            "name": name,
            "internal": info.internal,
            "error": unreadable.get(name),
            "partitions": parts,
            "records": sum(max(0, p["log_end"] - p["log_start"]) for p in parts),
            "size": sum(max(0, p["size"]) for p in parts),
        })
    groups_out = []
    for listed in await admin.list_groups():
        groups_out.append(await _group(admin, listed, ends))
    return {
        "cluster_id": meta.cluster_id,
        "controller_id": meta.controller_id,
        "brokers": [{"node_id": b.node_id, "host": b.host, "port": b.port} for _, b in sorted(meta.brokers.items())],
        "log_dirs": [
            {"broker": d.broker, "path": d.path, "size": sum(d.sizes.values()), "total_bytes": d.total_bytes,
             "usable_bytes": d.usable_bytes, "error_code": d.error_code}
            for d in dirs
        ],
        "topics": topics_out,
        "groups": groups_out,
    }


async def _damaged(admin: Admin, names: list[str]) -> dict[TopicPartition, list[str]]:
    """Offsets (``"first-last"``) of the batches the broker found damaged, by partition."""
    if not names:
        return {}
    try:
        found = await admin.describe_configs(names, keys=[DAMAGED_BATCHES])
    except KafkaError:  # not allowed to describe some topic's configs: show no damage rather than fail
        return {}
    out: dict[TopicPartition, list[str]] = {}
    for topic, configs in found.items():
        for item in filter(None, (configs.get(DAMAGED_BATCHES) or "").split(",")):
            partition, _, offsets = item.partition(":")
            out.setdefault(TopicPartition(topic, int(partition)), []).append(offsets)
    return out


async def _offsets(admin: Admin, topics: dict) -> tuple[dict, dict, dict[str, str]]:
    """Log start and end offsets by partition, and why a topic's could not be read.

    All partitions are asked at once; if that fails, topic by topic, so that
    one topic the broker cannot answer for (KAFKA_STORAGE_ERROR...) loses only
    its own numbers (-1), never the whole status.
    """
    by_topic = {name: [TopicPartition(name, p.partition) for p in info.partitions] for name, info in topics.items()}

    async def both(tps: list[TopicPartition]) -> tuple[dict, dict]:
        if not tps:
            return {}, {}
        starts = {tp: a.offset for tp, a in (await admin.list_offsets({tp: "earliest" for tp in tps})).items()}
        ends = {tp: a.offset for tp, a in (await admin.list_offsets({tp: "latest" for tp in tps})).items()}
        return starts, ends

    try:
        starts, ends = await both([tp for tps in by_topic.values() for tp in tps])
        return starts, ends, {}
    except KafkaError:
        pass
    starts, ends, unreadable = {}, {}, {}
    for name, tps in by_topic.items():
        try:
            got = await both(tps)
        except KafkaError as exc:
            unreadable[name] = str(exc)
            continue
        starts.update(got[0])
        ends.update(got[1])
    return starts, ends, unreadable


async def _group(admin: Admin, listed: GroupListing, ends: dict[TopicPartition, int]) -> dict[str, Any]:
    kind = listed.kind
    description: ConsumerGroupDescription | GroupDescription
    if kind == "consumer":  # KIP-848 groups are described by ConsumerGroupDescribe only
        [description] = await admin.describe_consumer_groups([listed.group_id])
    else:
        [description] = await admin.describe_groups([listed.group_id])
    if kind == "share":
        lag = sum(max(0, p.lag) for p in await admin.share_group_progress(listed.group_id))
    else:
        committed = await admin.list_group_offsets(listed.group_id)
        lag = sum(max(0, ends[tp] - offset) for tp, offset in committed.items() if ends.get(tp, -1) >= 0)
    return {"group": listed.group_id, "type": kind, "state": description.state or listed.state,
            "members": len(description.members), "lag": lag}


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; negative (unknown) -> ``"?"``."""
    if n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render(status: dict, *, partitions: bool = False, internal: bool = False) -> None:
    """Print ``status`` (from :func:`collect`) for people, in one screen."""
    brokers = ", ".join(f"{b['node_id']} at {b['host']}:{b['port']}" for b in status["brokers"]) or "none"
    click.echo(f"Cluster {status['cluster_id'] or '-'}, broker {brokers}")
    for d in status["log_dirs"]:
        free = (f", {human_bytes(d['usable_bytes'])} free of {human_bytes(d['total_bytes'])}"
                if d["total_bytes"] >= 0 else "")
        click.echo(f"Log dir {d['path']}: {human_bytes(d['size'])} in logs{free}")
    shown = [t for t in status["topics"] if internal or not t["internal"]]
    hidden = [t for t in status["topics"] if t not in shown]
    count = sum(len(t["partitions"]) for t in shown)
    note = f"; internal {human_bytes(sum(t['size'] for t in hidden))} (--internal)" if hidden else ""
    click.echo(f"\nTopics: {len(shown)}, {count} partitions{note}")
    if shown and partitions:
        print_table(["TOPIC", "PARTITION", "LOG-START", "LOG-END", "SIZE"], [
            [t["name"], p["partition"], p["log_start"], p["log_end"], human_bytes(p["size"])]
            for t in shown for p in t["partitions"]
        ])
    elif shown:
        print_table(["TOPIC", "PARTITIONS", "RECORDS", "SIZE"], [
            [t["name"], len(t["partitions"]), t["records"], human_bytes(t["size"])] for t in shown
        ])
    damaged = [(t["name"], p["partition"], offsets) for t in status["topics"] for p in t["partitions"]
               for offsets in p["damaged"]]
    if damaged:
        click.echo(f"\nDAMAGED: {len(damaged)} batches not served (consumers get CORRUPT_MESSAGE there); "
                   "stop the broker and run 'logbroker repair DATA_DIR'")
        print_table(["TOPIC", "PARTITION", "OFFSETS"], [list(row) for row in damaged])
    for t in status["topics"]:
        if t.get("error"):
            click.echo(f"\nTopic {t['name']}: offsets unknown: {t['error']}")
    groups = status["groups"]
    click.echo(f"\nGroups: {len(groups)}")
    if groups:
        print_table(["GROUP", "TYPE", "STATE", "MEMBERS", "LAG"], [
            [g["group"], g["type"], g["state"] or "-", g["members"], "-" if g["lag"] is None else g["lag"]]
            for g in groups
        ])


@click.command()
@client_options
@format_option
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--partitions", "-p", is_flag=True, help="One row per partition: log start and end offsets, size.")
@click.option("--internal", is_flag=True, help="Include internal topics (__consumer_offsets...).")
def status(client: ClientSettings, fmt: str, as_json: bool, partitions: bool, internal: bool) -> None:
    """One-screen summary of a running broker: topics, partitions, sizes, groups and their lag."""

    async def main() -> dict[str, Any]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await collect(admin)

    found = run_client(main)
    if as_json or fmt == "json":  # one document, with every partition
        emit_json(found)
        return
    render(found, partitions=partitions, internal=internal)
