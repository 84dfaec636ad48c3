"""``logbroker request`` and ``logbroker reply``: request-reply from the shell.

Neither creates the request topic: a typo in its name is an error (exit 1,
with similar names), not a new empty topic that nobody answers on.
"""

from __future__ import annotations

import subprocess
import sys

import click
import trio

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.cli.hints import missing_topic_message
from logbroker.cli.topics import run_client, run_until_signalled
from logbroker.client import Admin, ConsumerRecord


async def _require_topic(client: ClientSettings, topic: str) -> None:
    """:raises click.ClickException: ``topic`` does not exist (checked first: the
    clients below do not create topics, so they would only wait for it)."""
    async with Admin(client.bootstrap, **client.options()) as admin:
        existing = await admin.list_topics()
    if topic not in existing:
        raise click.ClickException(missing_topic_message(topic, existing))


@click.command()
@click.argument("topic")
@click.argument("value")
@click.option("--key", default=None, help="Key of the request record.")
@click.option("--timeout-ms", default=5000, show_default=True, help="How long to wait for the reply.")
@client_options
def request(topic: str, value: str, key: str | None, timeout_ms: int, client: ClientSettings) -> None:
    """Send VALUE to TOPIC and print the reply (exit 1 on timeout or a handler error)."""
    from logbroker.client.reply import Requester

    async def main() -> ConsumerRecord:
        await _require_topic(client, topic)
        options = client.options(timeout_ms=timeout_ms, allow_auto_create_topics=False)
        async with Requester(client.bootstrap, **options) as requester:
            return await requester.request(topic, value.encode(), key=None if key is None else key.encode())

    reply = run_client(main)
    click.echo((reply.value or b"").decode("utf-8", "replace"))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("topic")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--group", default="logbroker-reply", show_default=True,
              help="Consumer group: responders sharing it split the requests.")
@click.option("--max-requests", type=int, default=None, help="Stop after answering this many.")
@client_options
def reply(topic: str, command: tuple[str, ...], group: str, max_requests: int | None, client: ClientSettings) -> None:
    """Answer requests on TOPIC by running COMMAND (after --) for each: the request
    value on its stdin, its stdout as the reply; a non-zero exit is an error reply."""
    from logbroker.client.reply import Responder

    def handler(record: ConsumerRecord) -> bytes:
        done = subprocess.run(list(command), input=record.value or b"", capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    async def main() -> None:
        await _require_topic(client, topic)
        # Only the request consumer must not create topics: replies go to topics the
        # requesters made, so the producer keeps the default.
        async with Responder(client.bootstrap, topic, handler, **client.options(group_id=group),
                             consumer_options={"allow_auto_create_topics": False}) as responder:
            click.echo(f"answering requests on {topic} (group {group}); Ctrl-C to stop", err=True)
            async def serve() -> None:
                if max_requests is None:
                    await responder.run()
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(responder.run)
                    while responder.handled < max_requests:
                        await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()

            await run_until_signalled(serve)

    try:
        run_client(main)
    except KeyboardInterrupt:
        sys.exit(0)
