"""``logbroker queue consume``: take records from a topic as a share-group member.

The topic must exist (it is checked first; reading never creates one). Records
are printed as ``logbroker consume`` prints them (``--format text|json|FORMAT``,
``--encoding``, raw bytes on stdout); the JSON objects add ``delivery_count``.
"""

from __future__ import annotations

import sys

import click

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.consume import RecordOutput, json_record, output_options
from logbroker.cli.hints import missing_topic_message
from logbroker.cli.topics import run_client, run_until_signalled


@click.group()
def queue() -> None:
    """Point-to-point queues (Kafka share groups): each record goes to one consumer."""


@queue.command("consume")
@click.argument("topic")
@click.option("--group", "-g", required=True, help="Share group; its members split the records.")
@click.option("--reject", is_flag=True, help="Reject every record instead of acknowledging it (for tests).")
@click.option("--max-records", "-n", type=int, default=None, help="Stop after this many records.")
@output_options
@client_options
def consume(topic: str, group: str, reject: bool, max_records: int | None, output: RecordOutput,
            client: ClientSettings) -> None:
    """Print each record of TOPIC, then acknowledge it (or --reject it).

    Runs until Ctrl-C or SIGTERM, or after -n records; unanswered records are
    released for other members.
    """
    from logbroker.client import Admin
    from logbroker.client.queue import QueueConsumer

    if max_records is not None and max_records < 1:
        raise click.ClickException("--max-records must be at least 1")
    out = sys.stdout.buffer

    async def main() -> None:
        count = 0
        async with Admin(client.bootstrap, **client.options()) as admin:
            names = await admin.list_topics()
        if topic not in names:
            raise click.ClickException(missing_topic_message(topic, names))
        async with QueueConsumer(client.bootstrap, topic, **client.options(group_id=group)) as q:
            async def work() -> None:
                nonlocal count
                async for msg in q:
                    if output.mode == "json":
                        out.write((json_record(msg.record, delivery_count=msg.delivery_count) + "\n").encode("ascii"))
                    else:
                        out.write(output.render([msg.record]))
                    out.flush()  # printed before it is answered: a record acknowledged is a record shown
                    await (msg.reject() if reject else msg.ack())
                    count += 1
                    if max_records is not None and count >= max_records:
                        return

            await run_until_signalled(work)

    try:
        run_client(main)
    except KeyboardInterrupt:
        sys.exit(0)
