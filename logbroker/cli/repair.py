"""``logbroker repair DATA_DIR``: remove damaged batches from a stopped broker's data.

Scans every batch of every segment (a clean shutdown skips that scan at
start, as Kafka does, so damage that happened while the broker was stopped
is only found when a fetch reaches it). Damaged batches followed by valid
ones are cut out (the valid ones keep their offsets; clients read across
the gap), a torn tail is truncated, later segments are kept. It prints each
removed byte range and the offsets it held. It takes the directory's lock,
so it refuses while a broker runs on it. ``--dry-run`` only reports (and
exits 1 if it found damage).
"""

from __future__ import annotations

import sys

import click

from logbroker.cli.topics import emit_json, format_option
from logbroker.errors import LogbrokerError
from logbroker.storage import RepairReport, repair_data_dir


def _as_json(report: RepairReport) -> dict:
    return {
        "data_dir": report.data_dir,
        "dry_run": report.dry_run,
        "scanned": {"partitions": report.scanned_partitions, "segments": report.scanned_segments,
                    "bytes": report.scanned_bytes},
        "damaged": [
            {"topic": p.topic, "partition": p.partition, "records": p.records,
             "lost": [{"file": r.path, "position": r.position, "end": r.end, "first_offset": r.first_offset,
                       "next_offset": r.next_offset} for r in p.lost]}
            for p in report.partitions
        ],
    }


def _render(report: RepairReport) -> None:
    verb = "would lose" if report.dry_run else "lost"
    for part in report.partitions:
        for r in part.lost:
            click.echo(f"{part.topic}[{part.partition}]: {verb} {r.offsets()} "
                       f"(bytes {r.position}-{r.end} of {r.path})")
    click.echo(f"scanned {report.scanned_partitions} partitions, {report.scanned_segments} segments, "
               f"{report.scanned_bytes} bytes: ", nl=False)
    if not report.damaged:
        click.echo("no damage found")
        return
    counts = [p.records for p in report.partitions]
    total = "an unknown number of" if None in counts else str(sum(counts))  # type: ignore[arg-type]  # no None left once checked
    if report.dry_run:
        click.echo(f"{len(report.partitions)} damaged partitions; repairing would lose {total} offsets")
    else:
        click.echo(f"repaired {len(report.partitions)} partitions; {total} offsets lost")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Only report what is damaged; change nothing (exit 1 if damaged).")
@format_option
def repair(data_dir: str, dry_run: bool, fmt: str) -> None:
    """Remove damaged batches from DATA_DIR (the broker must be stopped)."""
    try:
        report = repair_data_dir(data_dir, dry_run=dry_run)
    except LogbrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        emit_json(_as_json(report))
    else:
        _render(report)
    if dry_run and report.damaged:
        sys.exit(1)
