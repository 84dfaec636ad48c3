"""``logbroker transactions list|describe|describe-producers|abort``: what
``kafka-transactions.sh`` does, with the same columns.

``abort`` ends a *hanging* transaction (one whose producer is gone and whose
coordinator no longer tracks it, so the partition's last stable offset is
stuck): it writes an abort marker on one partition with WriteTxnMarkers. Name
the transaction by ``--start-offset`` (the offset where it began, as
``describe-producers`` shows) or by ``--producer-id``, ``--producer-epoch``
and ``--coordinator-epoch``. An ordinary open transaction is better left to
its producer or to its timeout.
"""

from __future__ import annotations

import time

import click

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.topics import emit_json, format_option, print_table, run_client
from logbroker.client import (
    Admin,
    ProducerDescription,
    TopicPartition,
    TransactionDescription,
    TransactionListing,
)


@click.group()
def transactions() -> None:
    """List, describe and abort transactions."""


@transactions.command("list")
@click.option("--state", "states", multiple=True, help="Only ids in this state (Ongoing, CompleteCommit...; repeatable).")
@click.option("--producer-id", "producer_ids", type=int, multiple=True, help="Only this producer id (repeatable).")
@click.option("--duration-ms", type=int, default=-1, help="Only transactions open at least this long.")
@click.option("--pattern", default=None, help="Only transactional ids matching this regular expression.")
@client_options
@format_option
def list_(states: tuple[str, ...], producer_ids: tuple[int, ...], duration_ms: int, pattern: str | None,
          client: ClientSettings, fmt: str) -> None:
    """List transactional ids with their producer id and state."""

    async def main() -> tuple[list[TransactionListing], dict[str, int]]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            listed = await admin.list_transactions(states=states, producer_ids=producer_ids,
                                                   duration_ms=duration_ms, pattern=pattern)
            coordinators = {t.transactional_id: await admin.cluster.coordinator(t.transactional_id, 1)
                            for t in listed}
            return listed, coordinators

    listed, coordinators = run_client(main)
    if fmt == "json":
        emit_json([{"transactional_id": t.transactional_id, "coordinator": coordinators[t.transactional_id],
                    "producer_id": t.producer_id, "state": t.state} for t in listed])
        return
    if not listed:
        click.echo("no transactions")
        return
    print_table(["TransactionalId", "Coordinator", "ProducerId", "TransactionState"],
                [[t.transactional_id, coordinators[t.transactional_id], t.producer_id, t.state] for t in listed])


@transactions.command("describe")
@click.argument("transactional_id")
@client_options
@format_option
def describe(transactional_id: str, client: ClientSettings, fmt: str) -> None:
    """State, producer, timeout and partitions of TRANSACTIONAL_ID."""

    async def main() -> tuple[TransactionDescription, int]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            [described] = await admin.describe_transactions([transactional_id])
            coordinator = await admin.cluster.coordinator(transactional_id, 1)
            return described, coordinator

    d, coordinator = run_client(main)
    if d.error_code:
        from logbroker.client._wire import error_name

        raise click.ClickException(f"transactional id {transactional_id!r}: {error_name(d.error_code)}")
    now = int(time.time() * 1000)
    duration = now - d.start_time_ms if d.start_time_ms >= 0 else None
    partitions = ",".join(f"{tp.topic}-{tp.partition}" for tp in d.partitions)
    if fmt == "json":
        emit_json({"coordinator": coordinator, "transactional_id": d.transactional_id,
                   "producer_id": d.producer_id, "producer_epoch": d.producer_epoch, "state": d.state,
                   "start_time_ms": d.start_time_ms if d.start_time_ms >= 0 else None, "duration_ms": duration,
                   "timeout_ms": d.timeout_ms,
                   "partitions": [[tp.topic, tp.partition] for tp in d.partitions]})
        return
    print_table(
        ["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch", "TransactionState",
         "CurrentTransactionStartTimeMs", "TransactionDurationMs", "TransactionTimeoutMs", "TopicPartitions"],
        [[coordinator, d.transactional_id, d.producer_id, d.producer_epoch, d.state,
          d.start_time_ms if d.start_time_ms >= 0 else "None", duration if duration is not None else "None",
          d.timeout_ms, partitions or "-"]],
    )


@transactions.command("describe-producers")
@click.option("--topic", "-t", required=True)
@click.option("--partition", "-p", type=int, required=True)
@client_options
@format_option
def describe_producers(topic: str, partition: int, client: ClientSettings, fmt: str) -> None:
    """The producers active on one partition and where their open transactions start."""

    async def main() -> list[ProducerDescription]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return (await admin.describe_producers([(topic, partition)])).get(TopicPartition(topic, partition), [])

    producers = run_client(main)
    if fmt == "json":
        emit_json([{"producer_id": p.producer_id, "producer_epoch": p.producer_epoch,
                    "coordinator_epoch": p.coordinator_epoch, "last_sequence": p.last_sequence,
                    "last_timestamp": p.last_timestamp,
                    "current_transaction_start_offset": p.current_txn_start_offset} for p in producers])
        return
    if not producers:
        click.echo("no active producers")
        return
    print_table(
        ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence", "LastTimestamp",
         "CurrentTransactionStartOffset"],
        [[p.producer_id, p.producer_epoch, p.coordinator_epoch, p.last_sequence, p.last_timestamp,
          p.current_txn_start_offset if p.current_txn_start_offset >= 0 else "None"] for p in producers],
    )


@transactions.command("abort")
@click.option("--topic", "-t", required=True)
@click.option("--partition", "-p", type=int, required=True)
@click.option("--start-offset", type=int, default=None, help="Where the hanging transaction began.")
@click.option("--producer-id", type=int, default=None)
@click.option("--producer-epoch", type=int, default=None)
@click.option("--coordinator-epoch", type=int, default=None)
@client_options
def abort(topic: str, partition: int, start_offset: int | None, producer_id: int | None,
          producer_epoch: int | None, coordinator_epoch: int | None, client: ClientSettings) -> None:
    """Write an abort marker for a hanging transaction on one partition (WriteTxnMarkers)."""
    by_producer = (producer_id, producer_epoch, coordinator_epoch)
    if start_offset is None and None in by_producer:
        raise click.UsageError("give --start-offset, or --producer-id, --producer-epoch and --coordinator-epoch")
    if start_offset is not None and any(v is not None for v in by_producer):
        raise click.UsageError("give either --start-offset or the producer options, not both")

    async def main() -> None:
        async with Admin(client.bootstrap, **client.options()) as admin:
            await admin.abort_transaction((topic, partition), start_offset=start_offset, producer_id=producer_id,
                                          producer_epoch=producer_epoch, coordinator_epoch=coordinator_epoch)

    run_client(main)
    click.echo(f"aborted the transaction on {topic}-{partition}")
