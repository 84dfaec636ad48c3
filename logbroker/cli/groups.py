"""``logbroker groups list|describe|delete|reset-offsets``: consumer groups and their lag.

``list`` shows each group's type (classic, consumer, share) and can filter by
it. ``describe`` shows what people look for first: per partition the
committed offset, the log end and the lag, and which member owns it; for a
group of Kafka 4's consumer protocol (KIP-848) also the group and assignment
epochs, the assignor and, per member, its epoch, subscription and current
against target assignment.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable

import click

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.hints import missing_partition_message, missing_topic_message, parse_when
from logbroker.cli.topics import emit_json, format_option, print_table, run_client
from logbroker.client import (
    Admin,
    ConsumerGroupDescription,
    ConsumerGroupMemberDescription,
    GroupDescription,
    GroupListing,
    MemberDescription,
    SharePartitionProgress,
    TopicPartition,
)
from logbroker.errors import KafkaError
from logbroker.protocol import ErrorCode


@click.group()
def groups() -> None:
    """List, describe, delete consumer groups and reset their offsets."""


@groups.command("list")
@click.option("--state", default=None, help="Only groups in this state (Stable, Empty...).")
@click.option("--type", "types", type=click.Choice(["classic", "consumer", "share"], case_sensitive=False),
              multiple=True, help="Only groups of this type (repeatable).")
@client_options
@format_option
def list_(state: str | None, types: tuple[str, ...], client: ClientSettings, fmt: str) -> None:
    """List groups with their type (classic, consumer, share), protocol type and state."""

    async def main() -> list[GroupListing]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await admin.list_groups(types=types)

    listed = [g for g in run_client(main) if state is None or g.state.lower() == state.lower()]
    if fmt == "json":
        emit_json([{"group": g.group_id, "type": g.kind, "protocol_type": g.protocol_type,
                    "state": g.state} for g in listed])
        return
    if not listed:
        click.echo("no groups")
        return
    print_table(["GROUP", "TYPE", "PROTOCOL-TYPE", "STATE"],
                [[g.group_id, g.kind, g.protocol_type or "-", g.state or "-"] for g in listed])


async def _consumer_group(admin: Admin, group_id: str) -> ConsumerGroupDescription | None:
    """The group if it is one of Kafka 4's consumer protocol, else None (a classic or
    share group answers GROUP_ID_NOT_FOUND; an older broker lacks ConsumerGroupDescribe)."""
    try:
        [description] = await admin.describe_consumer_groups([group_id])
    except KafkaError as exc:
        if exc.code in (ErrorCode.group_id_not_found, ErrorCode.unsupported_version):
            return None
        raise
    return description


_Description = GroupDescription | ConsumerGroupDescription
_Member = MemberDescription | ConsumerGroupMemberDescription
_Described = tuple[_Description, dict[TopicPartition, int], dict[TopicPartition, _Member], list[TopicPartition],
                   dict[TopicPartition, int]]
_Row = tuple[TopicPartition, int | None, int, int | None, _Member | None]
"""A partition of a described group: committed offset, log end, lag and owner."""


def missing_group_message(group_id: str, existing: Iterable[str]) -> str:
    """``group 'bling' does not exist; similar: billing`` (names from ``existing``)."""
    similar = difflib.get_close_matches(group_id, list(existing), n=3, cutoff=0.6)
    hint = f"; similar: {', '.join(similar)}" if similar else "; `logbroker groups list` shows the groups"
    return f"group {group_id!r} does not exist{hint}"


async def _missing_group(admin: Admin, group_id: str) -> click.ClickException:
    return click.ClickException(missing_group_message(group_id, [g.group_id for g in await admin.list_groups()]))


async def _describe(admin: Admin, group_id: str) -> _Described:
    """The group, its committed offsets, owners and log ends.

    :raises click.ClickException: no such group (as kafka-consumer-groups says,
        for a group Kafka describes as Dead, or answers GROUP_ID_NOT_FOUND for).
    """
    description: GroupDescription | ConsumerGroupDescription | None = await _consumer_group(admin, group_id)
    if description is None:
        try:
            description = (await admin.describe_groups([group_id]))[0]
        except KafkaError as exc:
            if exc.code != ErrorCode.group_id_not_found:  # DescribeGroups v6+ (Kafka 4) says so
                raise
            raise await _missing_group(admin, group_id) from None
    committed = await admin.list_group_offsets(group_id)
    # Older DescribeGroups answer Dead for an unknown group; a group holding only
    # committed offsets is Empty, so Dead with no offsets means there is none.
    if description.state == "Dead" and not committed and not description.members:
        raise await _missing_group(admin, group_id)
    owners: dict[TopicPartition, _Member] = {tp: m for m in description.members for tp in m.assignment}
    partitions = sorted(set(committed) | set(owners))
    ends: dict[TopicPartition, int] = {}
    if partitions:
        ends = {tp: a.offset for tp, a in (await admin.list_offsets({tp: "latest" for tp in partitions})).items()}
    return description, committed, owners, partitions, ends


@groups.command("describe")
@click.argument("group_id")
@client_options
@format_option
def describe(group_id: str, client: ClientSettings, fmt: str) -> None:
    """State, members and, per partition, committed offset, log end and lag."""

    async def main() -> tuple[_Described, list[SharePartitionProgress] | None]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            described = await _describe(admin, group_id)
            share = None
            if isinstance(described[0], GroupDescription) and described[0].protocol_type == "share":
                share = await admin.share_group_progress(group_id)
            return described, share

    (description, committed, owners, partitions, ends), share = run_client(main)
    if share is not None:
        _describe_share(group_id, description, share, fmt)
        return
    rows: list[_Row] = []
    for tp in partitions:
        offset = committed.get(tp)
        end = ends.get(tp, -1)
        lag = end - offset if offset is not None and end >= 0 else None
        member = owners.get(tp)
        rows.append((tp, offset, end, lag, member))
    if isinstance(description, ConsumerGroupDescription):
        _describe_consumer(group_id, description, rows, fmt)
        return
    if fmt == "json":
        emit_json({
            "group": group_id,
            "state": description.state,
            "type": description.protocol_type,
            "protocol": description.protocol,
            "members": [
                {"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host,
                 "instance_id": m.group_instance_id,
                 "assignment": [[tp.topic, tp.partition] for tp in m.assignment]}
                for m in description.members
            ],
            "partitions": [
                {"topic": tp.topic, "partition": tp.partition, "committed": offset, "log_end": end,
                 "lag": lag, "member_id": member.member_id if member else None}
                for tp, offset, end, lag, member in rows
            ],
            "total_lag": sum(lag for *_, lag, _ in rows if lag is not None),
        })
        return
    total = sum(lag for *_, lag, _ in rows if lag is not None)
    click.echo(f"Group {group_id}: {description.state}, {len(description.members)} members, "
               f"protocol {description.protocol or '-'}, total lag {total}")
    if description.members:
        click.echo("")
        print_table(["MEMBER", "CLIENT", "HOST", "PARTITIONS"], [
            [m.member_id, m.client_id, m.client_host or "-",
             ", ".join(f"{tp.topic}-{tp.partition}" for tp in m.assignment) or "-"]
            for m in description.members
        ])
    if rows:
        click.echo("")
        print_table(["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"], [
            [tp.topic, tp.partition, "-" if offset is None else offset, end,
             "-" if lag is None else lag, member.client_id if member else "-"]
            for tp, offset, end, lag, member in rows
        ])


def _partition_list(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in tps) or "-"


def _describe_consumer(group_id: str, description: ConsumerGroupDescription, rows: list[_Row], fmt: str) -> None:
    """A group of the consumer protocol: epochs, assignor, each member's subscription and
    current against target assignment, then the partitions' lag."""
    total = sum(lag for *_, lag, _ in rows if lag is not None)
    if fmt == "json":
        emit_json({
            "group": group_id,
            "state": description.state,
            "type": "consumer",
            "protocol": "consumer",
            "group_epoch": description.group_epoch,
            "assignment_epoch": description.assignment_epoch,
            "assignor": description.assignor,
            "members": [
                {"member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                 "host": m.client_host, "member_epoch": m.member_epoch,
                 "subscribed_topics": list(m.subscribed_topics), "subscribed_regex": m.subscribed_regex,
                 "assignment": [[tp.topic, tp.partition] for tp in m.assignment],
                 "target_assignment": [[tp.topic, tp.partition] for tp in m.target_assignment]}
                for m in description.members
            ],
            "partitions": [
                {"topic": tp.topic, "partition": tp.partition, "committed": offset, "log_end": end,
                 "lag": lag, "member_id": member.member_id if member else None}
                for tp, offset, end, lag, member in rows
            ],
            "total_lag": total,
        })
        return
    click.echo(f"Group {group_id}: {description.state}, {len(description.members)} members, protocol consumer, "
               f"group epoch {description.group_epoch}, assignment epoch {description.assignment_epoch}, "
               f"assignor {description.assignor or '-'}, total lag {total}")
    if description.members:
        click.echo("")
        print_table(["MEMBER", "INSTANCE", "CLIENT", "HOST", "EPOCH", "SUBSCRIPTION", "ASSIGNED", "TARGET"], [
            [m.member_id, m.instance_id or "-", m.client_id, m.client_host or "-", m.member_epoch,
             m.subscribed_regex or ", ".join(m.subscribed_topics) or "-", _partition_list(m.assignment),
             "(same)" if m.target_assignment == m.assignment else _partition_list(m.target_assignment)]
            for m in description.members
        ])
    if rows:
        click.echo("")
        print_table(["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"], [
            [tp.topic, tp.partition, "-" if offset is None else offset, end,
             "-" if lag is None else lag, member.member_id if member else "-"]
            for tp, offset, end, lag, member in rows
        ])


def _describe_share(group_id: str, description: _Description, progress: list[SharePartitionProgress],
                    fmt: str) -> None:
    """A share group: members, and per partition where the queue stands."""
    fields = ("start_offset", "log_end", "lag", "in_flight", "available", "acknowledged", "archived")
    totals = {f: sum(getattr(p, f) for p in progress if getattr(p, f) > 0) for f in ("lag", "in_flight")}
    if fmt == "json":
        emit_json({
            "group": group_id, "state": description.state, "type": "share",
            "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host}
                        for m in description.members],
            "partitions": [{"topic": p.topic, "partition": p.partition, **{f: getattr(p, f) for f in fields}}
                           for p in progress],
            "total_lag": totals["lag"], "total_in_flight": totals["in_flight"],
        })
        return
    click.echo(f"Share group {group_id}: {description.state}, {len(description.members)} members, "
               f"lag {totals['lag']}, in flight {totals['in_flight']}")
    if description.members:
        click.echo("")
        print_table(["MEMBER", "CLIENT", "HOST"],
                    [[m.member_id, m.client_id, m.client_host or "-"] for m in description.members])
    if progress:
        click.echo("")
        print_table(["TOPIC", "PARTITION", "START-OFFSET", "LOG-END", "LAG", "IN-FLIGHT", "AVAILABLE",
                     "ACKNOWLEDGED", "ARCHIVED"],
                    [[p.topic, p.partition, *(getattr(p, f) for f in fields)] for p in progress])
        click.echo("\nLAG: records not yet acknowledged or archived (IN-FLIGHT acquired now, AVAILABLE waiting); "
                   "ACKNOWLEDGED and ARCHIVED: records of the in-flight window past START-OFFSET.")


@groups.command("config")
@click.argument("group_id")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Set a share-group config, e.g. share.auto.offset.reset=earliest (repeatable).")
@click.option("--delete", "deletions", multiple=True, metavar="NAME",
              help="Remove an override: back to the broker's setting (repeatable).")
@client_options
@format_option
def config(group_id: str, settings: tuple[str, ...], deletions: tuple[str, ...], client: ClientSettings, fmt: str) -> None:
    """Show or change a share group's configs: share.auto.offset.reset,
    share.record.lock.duration.ms, share.delivery.count.limit,
    errors.deadletterqueue.topic.name, ... (a group may be configured before
    its first member joins)."""
    changes: dict[str, str | None] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        changes[name.strip()] = value.strip()
    changes.update((name, None) for name in deletions)

    async def main() -> dict[str, str | None]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            if changes:
                await admin.alter_group_configs(group_id, changes)
            return await admin.describe_group_configs(group_id)

    configs = run_client(main)
    if fmt == "json":
        emit_json({"group": group_id, "configs": configs})
        return
    print_table(["NAME", "VALUE"], [[name, "-" if value in (None, "") else value] for name, value in sorted(configs.items())])


@groups.command("delete")
@click.argument("group_ids", nargs=-1, required=True)
@client_options
def delete(group_ids: tuple[str, ...], client: ClientSettings) -> None:
    """Delete groups (and their committed offsets); they must have no members."""

    async def main() -> dict[str, KafkaError | None]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await admin.delete_groups(group_ids)

    failed = False
    for group_id, error in run_client(main).items():
        if error is None:
            click.echo(f"deleted  {group_id}")
        else:
            failed = True
            reason = "does not exist" if error.code == ErrorCode.group_id_not_found else str(error)
            click.echo(f"failed   {group_id}: {reason}", err=True)
    if failed:
        sys.exit(1)


@groups.command("reset-offsets")
@click.argument("group_id")
@click.option("--topic", required=True, help="Topic whose offsets to reset.")
@click.option("--partition", "partitions", type=int, multiple=True, help="Only these partitions (repeatable).")
@click.option("--to-earliest", is_flag=True, help="To the log start.")
@click.option("--to-latest", is_flag=True, help="To the log end.")
@click.option("--to-offset", type=int, default=None, help="To this offset (clamped to the log).")
@click.option("--to-datetime", default=None, metavar="WHEN",
              help="To the first record at or after WHEN: ISO 8601 (naive = local time), epoch "
              "milliseconds, or a time ago (-1h, -30m, -2d).")
@click.option("--shift-by", type=int, default=None, help="Move each committed offset by N (negative = back).")
@click.option("--dry-run", is_flag=True, help="Show the new offsets without committing them.")
@client_options
@format_option
def reset_offsets(group_id: str, topic: str, partitions: tuple[int, ...], to_earliest: bool, to_latest: bool,
                  to_offset: int | None, to_datetime: str | None, shift_by: int | None, dry_run: bool,
                  client: ClientSettings, fmt: str) -> None:
    """Commit new offsets for GROUP_ID on --topic (for a share group: new start
    offsets). Refused while the group has members. A group that does not exist
    yet is created with these offsets, as kafka-consumer-groups does; a topic
    that does not exist is an error (never created)."""
    chosen = [n for n, v in (("--to-earliest", to_earliest), ("--to-latest", to_latest),
                             ("--to-offset", to_offset is not None), ("--to-datetime", to_datetime is not None),
                             ("--shift-by", shift_by is not None)) if v]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by")
    when = None if to_datetime is None else parse_when(to_datetime, "--to-datetime")

    async def main() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            [description] = await admin.describe_groups([group_id])
            if description.members:
                raise click.ClickException(
                    f"group {group_id} has {len(description.members)} active members; stop them first"
                )
            share = description.protocol_type == "share"
            existing = await admin.list_topics(internal=True)
            if topic not in existing:
                raise click.ClickException(missing_topic_message(topic, existing))
            count = len(await admin.topic_offsets(topic, "latest"))
            for p in partitions:
                if not 0 <= p < count:
                    raise click.ClickException(missing_partition_message(topic, p, count))
            numbers = sorted(set(partitions)) or list(range(count))
            tps = [TopicPartition(topic, p) for p in numbers]
            begin = {tp: a.offset for tp, a in (await admin.list_offsets({tp: "earliest" for tp in tps})).items()}
            end = {tp: a.offset for tp, a in (await admin.list_offsets({tp: "latest" for tp in tps})).items()}
            if share:  # a share group's position is its share-partition start offset
                committed = {TopicPartition(p.topic, p.partition): p.start_offset
                             for p in await admin.share_group_progress(group_id) if p.start_offset >= 0}
            else:
                committed = await admin.list_group_offsets(group_id, [topic])
            if to_earliest:
                target = dict(begin)
            elif to_latest:
                target = dict(end)
            elif to_offset is not None:
                target = {tp: to_offset for tp in tps}
            elif shift_by is not None:
                target = {tp: committed.get(tp, end[tp]) + shift_by for tp in tps}
            else:
                assert when is not None  # --to-datetime was the one given
                found = await admin.list_offsets({tp: when for tp in tps})
                target = {tp: found[tp].offset if found[tp].offset >= 0 else end[tp] for tp in tps}
            target = {tp: min(max(off, begin[tp]), end[tp]) for tp, off in target.items()}
            if dry_run:
                pass
            elif share:
                await admin.alter_share_group_offsets(group_id, target)
            else:
                for tp, offset in target.items():
                    await admin.reset_offsets(group_id, topic, offset, partitions=[tp.partition])
            return committed, target

    committed, target = run_client(main)
    if fmt == "json":
        emit_json({"group": group_id, "dry_run": dry_run, "partitions": [
            {"topic": tp.topic, "partition": tp.partition, "old": committed.get(tp), "new": off}
            for tp, off in sorted(target.items())
        ]})
        return
    print_table(["TOPIC", "PARTITION", "OLD", "NEW"], [
        [tp.topic, tp.partition, committed.get(tp, "-"), off] for tp, off in sorted(target.items())
    ])
    click.echo("(dry run: nothing committed)" if dry_run else f"committed new offsets for group {group_id}")
