"""``logbroker mirror``: copy topics between brokers (e.g. onto a Kafka cluster)."""

from __future__ import annotations

import click

from logbroker.cli.topics import emit_json, run_client


@click.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--source", required=True, help="Bootstrap address of the broker to copy from.")
@click.option("--target", required=True, help="Bootstrap address of the broker to copy to.")
@click.option("--follow", is_flag=True, help="Keep copying new records until Ctrl-C.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def mirror(topics: tuple[str, ...], source: str, target: str, follow: bool, fmt: str) -> None:
    """Copy TOPICS from --source to --target with keys, headers, timestamps and
    partition numbers kept; missing topics are created with the source's configs."""
    from logbroker.client.mirror import MirrorResult
    from logbroker.client.mirror import mirror as run_mirror

    def progress(total: int) -> None:
        if fmt == "text":
            click.echo(f"\rcopied {total} records", nl=False, err=True)

    async def main() -> MirrorResult:
        return await run_mirror(source, target, list(topics), follow=follow, progress=progress)

    result = run_client(main)
    if fmt == "json":
        emit_json({"copied": result.copied, "total": result.total})
        return
    click.echo("", err=True)
    for topic, count in result.copied.items():
        click.echo(f"{topic}: {count} records")
