"""``logbroker queue consume``: take records from a topic as a share-group member."""

from __future__ import annotations

import json
import sys

import click

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.topics import run_client, run_until_signalled


@click.group()
def queue() -> None:
    """Point-to-point queues (Kafka share groups): each record goes to one consumer."""


@queue.command("consume")
@click.argument("topic")
@click.option("--group", "-g", required=True, help="Share group; its members split the records.")
@click.option("--reject", is_flag=True, help="Reject every record instead of acknowledging it (for tests).")
@click.option("--max-records", "-n", type=int, default=None, help="Stop after this many records.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@client_options
def consume(topic: str, group: str, reject: bool, max_records: int | None, fmt: str, client: ClientSettings) -> None:
    """Print each record of TOPIC, then acknowledge it (or --reject it)."""
    from logbroker.client.queue import QueueConsumer

    async def main() -> None:
        count = 0
        async with QueueConsumer(client.bootstrap, topic, **client.options(group_id=group)) as q:
            async def work() -> None:
                nonlocal count
                async for msg in q:
                    value = (msg.value or b"").decode("utf-8", "replace")
                    if fmt == "json":
                        click.echo(json.dumps({"partition": msg.record.partition, "offset": msg.offset,
                                               "delivery_count": msg.delivery_count, "value": value}))
                    else:
                        click.echo(value)
                    await (msg.reject() if reject else msg.ack())
                    count += 1
                    if max_records is not None and count >= max_records:
                        return

            await run_until_signalled(work)

    try:
        run_client(main)
    except KeyboardInterrupt:
        sys.exit(0)
