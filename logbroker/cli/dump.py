"""``logbroker dump``: print the contents of segment files, read-only.

Works on a ``.log`` (its batches), a ``.index`` / ``.timeindex`` (entries,
checked against the ``.log`` beside it), a ``.txnindex`` (aborted
transactions) or a partition directory (each segment). A control batch is
followed by its transaction marker: COMMIT or ABORT, with the producer id and
epoch it closes and the coordinator epoch that wrote it. It never takes the data-directory lock and never writes, so it is
safe on a directory that no broker holds (and merely racy on one that does).
Exits with status 1 if it found a problem.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import cast

import click

from logbroker.records import HEADER_SIZE, LOG_OVERHEAD, MAGIC, BatchHeader, batch_crc, parse_header
from logbroker.records.control import MARKER_NAMES, marker_epoch, marker_type
from logbroker.storage.index import OffsetIndex, TimeIndex
from logbroker.storage.txnindex import ENTRY_STRUCT as _TXN_ENTRY

_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_INDEX_ENTRY = OffsetIndex.ENTRY_STRUCT
_TIME_ENTRY = TimeIndex.ENTRY_STRUCT

BytesLike = bytes | bytearray | memoryview
"""What the records functions read batches from."""


def _read_file(path: Path) -> BytesLike:
    """A read-only view of the file (mmap; empty bytes for an empty file)."""
    with open(path, "rb") as f:
        if not path.stat().st_size:
            return b""
        # An mmap is read like bytes (buffer protocol, slicing), which BytesLike cannot say before 3.12.
        return cast(BytesLike, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def _scan_log(buf: BytesLike) -> tuple[list[tuple[int, BatchHeader, bool]], str | None]:
    """``(position, header, crc_ok)`` of each complete batch, and a problem found
    at the end (partial or malformed bytes), if any."""
    batches: list[tuple[int, BatchHeader, bool]] = []
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < HEADER_SIZE:
            return batches, f"{end - pos} trailing bytes at position {pos} are not a complete batch"
        header = parse_header(buf, pos)
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or header.magic != MAGIC:
            return batches, f"malformed batch header at position {pos} (length {header.batch_length}, magic {header.magic})"
        if pos + header.size > end:
            return batches, f"batch at position {pos} is truncated: {end - pos} of {header.size} bytes"
        batches.append((pos, header, batch_crc(buf, pos, header.size) == header.crc))
        pos += header.size
    return batches, None


def _format_batch(pos: int, h: BatchHeader, crc_ok: bool) -> str:
    flags = []
    if h.is_transactional:
        flags.append("transactional")
    if h.is_control:
        flags.append("control")
    if h.log_append_time:
        flags.append("LogAppendTime")
    return (
        f"baseOffset: {h.base_offset} lastOffset: {h.last_offset} count: {h.records_count} "
        f"position: {pos} size: {h.size} baseTimestamp: {h.base_timestamp} "
        f"maxTimestamp: {h.max_timestamp} codec: {_CODECS.get(h.compression, h.compression)} "
        f"producerId: {h.producer_id} producerEpoch: {h.producer_epoch} "
        f"baseSequence: {h.base_sequence} leaderEpoch: {h.partition_leader_epoch} "
        f"crc: {h.crc:#010x} {'ok' if crc_ok else 'MISMATCH'}" + (f" [{', '.join(flags)}]" if flags else "")
    )


def _short(value: bytes | None, limit: int = 60) -> str:
    if value is None:
        return "null"
    text = repr(bytes(value[:limit]))
    return text + (f"...({len(value)} bytes)" if len(value) > limit else "")


def _dump_records(buf: BytesLike, pos: int) -> None:
    try:
        from logbroker.records import decode_batch
    except ImportError:
        click.echo("  | (record decoding unavailable)")
        return
    try:
        decoded = decode_batch(buf, pos)
    except Exception as exc:  # any decoding failure is reported, not fatal
        click.echo(f"  | cannot decode records: {exc}")
        return
    for r in decoded.records:
        headers = ", ".join(f"{k}={_short(v, 20)}" for k, v in r.headers)
        click.echo(
            f"  | offset: {r.offset} timestamp: {r.timestamp} key: {_short(r.key)} "
            f"value: {_short(r.value)}" + (f" headers: [{headers}]" if headers else "")
        )


def _marker_line(buf: BytesLike, pos: int, h: BatchHeader) -> str:
    """The transaction marker carried by the control batch at ``pos`` (Kafka's EndTransactionMarker)."""
    from logbroker.records import decode_batch

    try:
        decoded = decode_batch(buf, pos)
    except Exception as exc:  # a damaged control batch is reported, not fatal
        return f"  | cannot decode the control record: {exc}"
    if not decoded.records:
        return "  | control batch without records"
    record = decoded.records[0]
    key, value = record.key or b"", record.value or b""
    kind = marker_type(key)
    if kind is None:
        return f"  | control record with key {_short(key)}"
    if kind not in MARKER_NAMES:
        return f"  | control record of type {kind}"
    epoch = marker_epoch(value)
    return (f"  | offset: {record.offset} endTxnMarker: {MARKER_NAMES[kind]} producerId: {h.producer_id} "
            f"producerEpoch: {h.producer_epoch} coordinatorEpoch: {'?' if epoch is None else epoch}")


def _dump_log(path: Path, records: bool) -> int:
    buf = _read_file(path)
    batches, problem = _scan_log(buf)
    problems = 0
    expected = None
    base_name = int(path.stem) if path.stem.isdigit() else None
    for pos, header, crc_ok in batches:
        click.echo(_format_batch(pos, header, crc_ok))
        if not crc_ok:
            problems += 1
        if expected is not None and header.base_offset < expected:
            click.echo(f"  ! offsets go backwards: expected >= {expected}")
            problems += 1
        if base_name is not None and header.base_offset < base_name:
            click.echo(f"  ! offset below the segment's base offset {base_name}")
            problems += 1
        expected = header.next_offset
        if header.is_control:
            click.echo(_marker_line(buf, pos, header))
        elif records:
            _dump_records(buf, pos)
    if problem:
        click.echo(f"! {problem}")
        problems += 1
    click.echo(f"{path.name}: {len(batches)} batches, {len(buf)} bytes, {problems} problems")
    return problems


def _batches_by_position(log_path: Path) -> dict[int, BatchHeader] | None:
    if not log_path.exists():
        return None
    batches, _ = _scan_log(_read_file(log_path))
    return {pos: header for pos, header, _ in batches}


def _entries(buf: BytesLike, entry: struct.Struct) -> tuple[list[tuple[int, int]], int]:
    """Stored entries, and how many trailing all-zero (preallocated) entries were dropped."""
    n = len(buf) // entry.size
    raw = [entry.unpack_from(buf, i * entry.size) for i in range(n)]
    unused = 0
    while raw and raw[-1] == (0, 0):  # a valid entry is never all zeros in practice
        raw.pop()
        unused += 1
    return raw, unused


def _dump_index(path: Path) -> int:
    buf = _read_file(path)
    base = int(path.stem)
    batches = _batches_by_position(path.with_suffix(".log"))
    entries, unused = _entries(buf, _INDEX_ENTRY)
    problems = 0 if len(buf) % 8 == 0 else 1
    last = (-1, -1)
    for rel, pos in entries:
        note = ""
        if (rel, pos) <= last or rel <= last[0] or pos <= last[1]:
            note = "  ! not increasing"
        elif batches is not None:
            header = batches.get(pos)
            if header is None:
                note = "  ! no batch starts at this position"
            elif header.last_offset != base + rel:
                note = f"  ! batch there ends at offset {header.last_offset}"
        problems += bool(note)
        click.echo(f"offset: {base + rel} position: {pos}{note}")
        last = (rel, pos)
    if unused:
        click.echo(f"({unused} unused preallocated entries)")
    if batches is None:
        click.echo("(no .log beside it: entries not checked)")
    click.echo(f"{path.name}: {len(entries)} entries, {problems} problems")
    return problems


def _dump_time_index(path: Path) -> int:
    buf = _read_file(path)
    base = int(path.stem)
    batches = _batches_by_position(path.with_suffix(".log"))
    by_last = {h.last_offset: h for h in batches.values()} if batches is not None else None
    entries, unused = _entries(buf, _TIME_ENTRY)
    problems = 0 if len(buf) % 12 == 0 else 1
    last_ts, last_rel = None, -1
    for ts, rel in entries:
        note = ""
        if last_ts is not None and (ts <= last_ts or rel < last_rel):
            note = "  ! not increasing"
        elif by_last is not None:
            header = by_last.get(base + rel)
            if header is None:
                note = "  ! no batch ends at this offset"
            elif header.max_timestamp != ts:
                note = f"  ! that batch's max timestamp is {header.max_timestamp}"
        problems += bool(note)
        click.echo(f"timestamp: {ts} offset: {base + rel}{note}")
        last_ts, last_rel = ts, rel
    if unused:
        click.echo(f"({unused} unused preallocated entries)")
    click.echo(f"{path.name}: {len(entries)} entries, {problems} problems")
    return problems


def _dump_txn_index(path: Path) -> int:
    buf = _read_file(path)
    problems = 0 if len(buf) % _TXN_ENTRY.size == 0 else 1
    count = len(buf) // _TXN_ENTRY.size
    for i in range(count):
        version, producer_id, first, last, lso = _TXN_ENTRY.unpack_from(buf, i * _TXN_ENTRY.size)
        note = "" if first <= last else "  ! first offset after last offset"
        problems += bool(note)
        click.echo(f"version: {version} producerId: {producer_id} firstOffset: {first} lastOffset: {last} "
                   f"lastStableOffset: {lso}{note}")
    if len(buf) % _TXN_ENTRY.size:
        click.echo(f"! {len(buf) % _TXN_ENTRY.size} trailing bytes are not a complete entry")
    click.echo(f"{path.name}: {count} aborted transactions, {problems} problems")
    return problems


def _dump_directory(path: Path, records: bool) -> int:
    logs = sorted(p for p in path.iterdir() if p.suffix == ".log" and p.stem.isdigit())
    if not logs:
        click.echo(f"{path}: no segments")
        return 0
    problems = 0
    for log in logs:
        click.echo(f"== segment {log.name}")
        problems += _dump_log(log, records)
        for suffix, fn in ((".index", _dump_index), (".timeindex", _dump_time_index)):
            index = log.with_suffix(suffix)
            if index.exists():
                click.echo(f"-- {index.name}")
                problems += fn(index)
            else:
                click.echo(f"-- {index.name} missing (rebuilt at the next open)")
        txn_index = log.with_suffix(".txnindex")
        if txn_index.exists():
            click.echo(f"-- {txn_index.name}")
            problems += _dump_txn_index(txn_index)
    return problems


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--records", is_flag=True, help="Also decode and print every record of each batch.")
def dump(path: Path, records: bool) -> None:
    """Print a segment .log (batches; control batches with their transaction marker),
    .index/.timeindex (entries, checked against the .log beside them), .txnindex
    (aborted transactions) or every segment of a partition directory.

    Read-only: takes no lock and changes nothing. Exits 1 if it finds a problem.
    """
    if path.is_dir():
        problems = _dump_directory(path, records)
    elif path.suffix == ".log":
        problems = _dump_log(path, records)
    elif path.suffix == ".index":
        problems = _dump_index(path)
    elif path.suffix == ".timeindex":
        problems = _dump_time_index(path)
    elif path.suffix == ".txnindex":
        problems = _dump_txn_index(path)
    else:
        raise click.BadParameter("expected a .log, .index, .timeindex, .txnindex or a partition directory",
                                 param_hint="PATH")
    if problems:
        raise SystemExit(1)
