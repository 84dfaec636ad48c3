"""``logbroker mirror``: copy topics between brokers (e.g. onto a Kafka cluster),
resuming where the last run stopped."""

from __future__ import annotations

import signal
from typing import Any

import click
import trio

from logbroker.cli.connect import ClientSettings, load_command_config
from logbroker.cli.hints import missing_topic_message
from logbroker.cli.topics import emit_json, run_client
from logbroker.client import Admin

_GUARANTEE_HELP = """\b
Progress is kept as MirrorMaker 2 keeps it: the next source offset of each
partition, committed in a consumer group (--group), so a second run copies
only what is new (--from-beginning copies everything again).

\b
Default, at-least-once: the group lives on the source and is committed only
after the target acknowledged the records. A crash loses nothing; the next
run copies again at most the last second or so of records.

\b
--exactly-once: the target must support transactions. Records are written in
transactions that also commit the progress as the group's offsets on the
target, so records and progress land together: consumers of the target that
read read_committed see each record once, across crashes and reruns.

Run one mirror per group at a time. More: docs/mirror.md."""


def _endpoint(address: str | None, config_file: str | None, side: str) -> ClientSettings:
    """The address and client settings of one side: --source/--target wins over
    the file's bootstrap.servers."""
    settings: dict[str, Any] = load_command_config(config_file) if config_file else {}
    bootstrap = address or settings.pop("bootstrap", None)
    settings.pop("bootstrap", None)
    if not bootstrap:
        raise click.UsageError(f"give --{side} HOST:PORT (or bootstrap.servers in --{side}-config)")
    for name in ("security_protocol", "sasl_mechanism"):  # as the other commands take them: any case
        if name in settings:
            settings[name] = str(settings[name]).upper()
    timeout = settings.pop("timeout", None)
    extra = {} if timeout is None else {"timeout_s": float(timeout)}
    return ClientSettings(bootstrap=str(bootstrap), role=f"mirror-{side}", security=settings, **extra)


async def _stop_on_signal(stop: trio.Event, scope: trio.CancelScope) -> None:
    """Ctrl-C (or SIGTERM) asks the mirror to save its progress and stop; a
    second one stops at once (the next run then copies the last records again)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                scope.cancel()
                return
            stop.set()
            click.echo("\nstopping after saving the progress (Ctrl-C again to quit now)", err=True)


@click.command(epilog=_GUARANTEE_HELP)
@click.argument("topics", nargs=-1, required=True)
@click.option("--source", default=None, metavar="HOST:PORT", help="Bootstrap address of the broker to copy from.")
@click.option("--target", default=None, metavar="HOST:PORT", help="Bootstrap address of the broker to copy to.")
@click.option("--source-config", type=click.Path(dir_okay=False), metavar="FILE",
              help="Client settings for the source (properties file: security.protocol=..., "
              "sasl.jaas.config=..., or .toml), as --command-config takes.")
@click.option("--target-config", type=click.Path(dir_okay=False), metavar="FILE",
              help="Client settings for the target, likewise.")
@click.option("--group", "group_id", default=None, metavar="GROUP",
              help="Consumer group keeping the progress [default: logbroker-mirror-TARGET].")
@click.option("--from-beginning", is_flag=True, help="Ignore saved progress: copy everything again.")
@click.option("--exactly-once", is_flag=True,
              help="Write in transactions on the target, with the progress (see below).")
@click.option("--follow", is_flag=True, help="Keep copying new records until Ctrl-C.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def mirror(topics: tuple[str, ...], source: str | None, target: str | None, source_config: str | None,
           target_config: str | None, group_id: str | None, from_beginning: bool, exactly_once: bool,
           follow: bool, fmt: str) -> None:
    """Copy TOPICS from --source to --target with keys, headers, timestamps and
    partition numbers kept, continuing where the last run stopped; missing
    topics are created with the source's configs. Records of aborted
    transactions are not copied."""
    from logbroker.client.mirror import MirrorResult, MirrorSettings, default_group_id
    from logbroker.client.mirror import mirror as run_mirror

    src = _endpoint(source, source_config, "source")
    dst = _endpoint(target, target_config, "target")
    group = group_id or default_group_id(dst.bootstrap)
    settings = MirrorSettings(follow=follow, group_id=group, from_beginning=from_beginning,
                              exactly_once=exactly_once, source_options=src.options(),
                              target_options=dst.options())
    last: list[MirrorResult] = []

    def progress(result: MirrorResult) -> None:
        last[:] = [result]
        if fmt == "text":
            click.echo(f"\rcopied {result.total} records", nl=False, err=True)

    async def main() -> None:
        async with Admin(src.bootstrap, **src.options()) as admin:
            existing = await admin.list_topics()
        for topic in topics:
            if topic not in existing:
                raise click.ClickException(f"on the source: {missing_topic_message(topic, existing)}")

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, stop, nursery.cancel_scope)
            last[:] = [await run_mirror(src.bootstrap, dst.bootstrap, list(topics), settings, stop=stop,
                                        progress=progress)]
            nursery.cancel_scope.cancel()

    run_client(main)
    if not last:
        return
    result = last[0]
    where = "target" if exactly_once else "source"
    if fmt == "json":
        emit_json({"copied": result.copied, "total": result.total, "group": result.group_id,
                   "progress_on": where, "exactly_once": exactly_once,
                   "resumed": [{"topic": tp.topic, "partition": tp.partition, "offset": offset}
                               for tp, offset in sorted(result.resumed.items())]})
        return
    click.echo("", err=True)
    for topic, count in result.copied.items():
        click.echo(f"{topic}: {count} records")
    resumed = "continued from saved progress; " if result.resumed else ""
    click.echo(f"{resumed}progress saved in group {result.group_id} on the {where} "
               "(the next run copies only new records; --from-beginning copies all again)", err=True)
