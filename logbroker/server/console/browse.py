"""Reading records for the console's message browser: through the log's
offset and time indexes, never by scanning from the start, with a byte
budget so a filter over a large topic answers quickly."""

from __future__ import annotations

import base64
import heapq
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logbroker.errors import LogbrokerError
from logbroker.records import decode_batch, iter_batches

if TYPE_CHECKING:
    from logbroker.broker.schema_registry import SchemaRegistry
    from logbroker.storage import PartitionLog

__all__ = ["Shown", "find_records", "render_bytes"]

_READ_BYTES = 1 << 20
SCAN_BUDGET_BYTES = 64 << 20  # a filtered search stops after this much log and says where


@dataclass(frozen=True, slots=True)
class Shown:
    """One record as the browser shows it."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def read_forward(plog: PartitionLog, partition: int, start: int, limit: int, *, key_text: str = "",
                 value_text: str = "", budget: int = SCAN_BUDGET_BYTES) -> tuple[list[Shown], int]:
    """Up to ``limit`` records from ``start`` (matching the filters), and the offset the
    read stopped at (where to continue)."""
    out: list[Shown] = []
    offset = max(start, plog.log_start_offset)
    end = plog.high_watermark
    key_b, value_b = key_text.encode(), value_text.encode()
    read = 0
    while offset < end and len(out) < limit and read < budget:
        try:
            chunk = plog.read(offset, _READ_BYTES).records
        except LogbrokerError:
            break
        if not len(chunk):
            break
        read += len(chunk)
        progressed = False
        for pos, header in iter_batches(chunk):
            if header.last_offset < offset:
                continue
            progressed = True
            next_offset = header.last_offset + 1
            if header.is_control:
                offset = next_offset
                continue
            for record in decode_batch(chunk, pos).records:
                if record.offset < offset or record.offset >= end:
                    continue
                if key_b and (record.key is None or key_b not in record.key):
                    continue
                if value_b and (record.value is None or value_b not in record.value):
                    continue
                out.append(Shown(partition, record.offset, record.timestamp, record.key, record.value,
                                 record.headers))
                if len(out) >= limit:
                    return out, record.offset + 1
            offset = next_offset
        if not progressed:
            break
    return out, min(offset, end)


def find_records(logs: dict[int, PartitionLog], *, mode: str, limit: int, offset: int = 0, timestamp: int = 0,
                 key_text: str = "", value_text: str = "") -> list[Shown]:
    """Records of the partitions ``logs`` for the browser.

    ``mode``: ``newest`` (the last ``limit`` of all partitions, newest first, by
    timestamp), ``offset`` (from ``offset`` in each partition) or ``time`` (from
    the first record at or after ``timestamp`` ms, via the time index).
    """
    found: list[Shown] = []
    for partition, plog in sorted(logs.items()):
        if mode == "newest":
            if key_text or value_text:
                found += _newest_matching(plog, partition, limit, key_text, value_text)
            else:
                start = max(plog.log_start_offset, plog.high_watermark - limit)
                found += read_forward(plog, partition, start, limit)[0]
        elif mode == "time":
            hit = plog.offset_for_timestamp(timestamp)
            if hit is not None:
                found += read_forward(plog, partition, hit[0], limit, key_text=key_text, value_text=value_text)[0]
        else:
            found += read_forward(plog, partition, offset, limit, key_text=key_text, value_text=value_text)[0]
    if mode == "newest":
        return heapq.nlargest(limit, found, key=lambda r: (r.timestamp, r.offset))
    return sorted(found, key=lambda r: (r.timestamp, r.partition, r.offset))[:limit]


def _newest_matching(plog: PartitionLog, partition: int, limit: int, key_text: str,
                     value_text: str) -> list[Shown]:
    """The newest matches: windows read backwards from the end, within the scan budget."""
    end = plog.high_watermark
    window = max(limit * 4, 1000)
    matches: list[Shown] = []
    scanned = 0
    while end > plog.log_start_offset and len(matches) < limit and scanned < SCAN_BUDGET_BYTES:
        start = max(plog.log_start_offset, end - window)
        got, _ = read_forward(plog, partition, start, 10**9, key_text=key_text, value_text=value_text,
                              budget=SCAN_BUDGET_BYTES)
        matches = [r for r in got if r.offset < end] + matches
        scanned += (end - start) * 100  # an estimate: the budget is a bound, not an exact count
        end = start
        window *= 2
    return matches[-limit:]


def render_bytes(data: bytes | None, view: str, registry: SchemaRegistry | None = None) -> str:
    """Bytes as the browser shows them: ``text`` (UTF-8, invalid bytes escaped),
    ``json`` (pretty, else text), ``hex``, or ``schema`` (decoded through the
    registry when the bytes carry Confluent's schema id)."""
    if data is None:
        return "null"
    if view == "hex":
        return data.hex(" ")
    if view == "base64":
        return base64.b64encode(data).decode()
    if view == "schema" and registry is not None and len(data) > 5 and data[0] == 0:
        decoded = _decode_with_registry(data, registry)
        if decoded is not None:
            return decoded
    if view in ("json", "schema"):
        try:
            return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return data.decode("utf-8", "backslashreplace")


def _decode_with_registry(data: bytes, registry: SchemaRegistry) -> str | None:
    schema_id = int.from_bytes(data[1:5], "big")
    try:
        schema = registry.state.schema(schema_id)
    except LogbrokerError:
        return None
    body = data[5:]
    kind = schema.schema_type.value
    if kind == "AVRO":
        import io

        import fastavro

        try:
            parsed = fastavro.parse_schema(json.loads(schema.text))
            value = fastavro.schemaless_reader(io.BytesIO(body), parsed, None)
        except Exception as exc:  # a value that does not match its schema: show why, not a 500
            return f"(schema {schema_id}: cannot decode as Avro: {exc})"
        return f"schema {schema_id} (AVRO)\n" + json.dumps(value, indent=2, default=str, ensure_ascii=False)
    if kind == "JSON":
        try:
            return f"schema {schema_id} (JSON)\n" + json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            return None
    return f"schema {schema_id} ({kind})\n" + body.hex(" ")
