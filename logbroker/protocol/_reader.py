"""Safe reading of kio entities from untrusted bytes.

kio 0.6.5's native (Rust) entity reader is fast but has two defects for a server:

1. An unknown tagged field raises ``KeyError`` (``rust/src/schema.rs``), where
   Kafka (KIP-482) says unknown tags must be skipped.
2. Array counts are trusted: it calls ``Vec::with_capacity(count)`` before
   reading any element, so a request of a few bytes declaring 2**32 elements
   makes Rust abort the whole process on allocation failure. That is not an
   exception and cannot be caught.

:func:`entity_reader` compiles, once per entity class, a reader that keeps the
native code for everything it can do safely and walks the rest in Python:

* primitive fields and arrays of array-free entities go to kio's native field
  readers, but every array count is first checked against the bytes that are
  left (``count * smallest element size <= remaining``), so no allocation can
  exceed a small multiple of the frame size;
* entities that contain arrays are walked here field by field, and their tagged
  fields are read here, skipping unknown tags by their declared size;
* an array-free entity is read natively in one call; if that raises
  ``KeyError`` (unknown tag somewhere inside), it is re-read by the walker.

The result is identical to kio's (same classes, same phantom values, same
implicit tag defaults). Readers follow kio's protocol: ``reader(buffer, offset)
-> (value, bytes_consumed)``; ``buffer`` must be read-only (``bytes`` or a
read-only memoryview), as kio's native code rejects writable buffers.

Errors: :class:`~logbroker.errors.ProtocolError` for problems found here, and
whatever kio raises (``kio.serial.errors.DecodeError``, ``ValueError``...) for
problems found natively; the adapter translates both at its one boundary.

This module uses kio's own introspection helpers (``kio.serial._introspect``,
``kio.serial._implicit_defaults``), which kio's native module imports by name
too; kio is pinned to 0.6.5.
"""

from __future__ import annotations

import datetime
import functools

from collections.abc import Callable
from dataclasses import fields
from typing import Any
from typing import Final
from typing import TypeAlias

from kio._kio_native import entity_reader as _kio_entity_reader
from kio._kio_native import get_field_reader as _native_field_reader
from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import EntityField
from kio.serial._introspect import EntityTupleField
from kio.serial._introspect import PrimitiveField
from kio.serial._introspect import PrimitiveTupleField
from kio.serial._introspect import classify_field
from kio.serial._introspect import get_field_tag
from kio.serial._introspect import get_schema_field_type
from kio.serial._introspect import is_optional
from kio.serial.readers import read_compact_array_length
from kio.serial.readers import read_int8
from kio.serial.readers import read_int64
from kio.serial.readers import read_int32
from kio.serial.readers import read_unsigned_varint

from logbroker.errors import ProtocolError


def _native_entity_reader(cls: type, nullable: bool) -> Callable[[Any, int], tuple[Any, int]]:
    # kio's overloads want a literal ``nullable``; ours is chosen at run time.
    reader: Callable[[Any, int], tuple[Any, int]] = _kio_entity_reader(cls, nullable)  # type: ignore[call-overload]  # nullable is a runtime bool
    return reader

__all__ = ["Reader", "entity_reader"]

Reader: TypeAlias = Callable[[Any, int], tuple[Any, int]]

# Smallest encoding of one value of each kafka_type; strings and bytes depend on
# the flexible (compact) encoding and are handled in _primitive_min_size.
_FIXED_SIZES: Final = {
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}


def _is_request_header(cls: type) -> bool:
    # Same test as kio: RequestHeader.client_id is always a legacy string.
    return cls.__name__ == "RequestHeader"


def _primitive_min_size(kafka_type: str, flexible: bool) -> int:
    if kafka_type in _FIXED_SIZES:
        return _FIXED_SIZES[kafka_type]
    if flexible:
        return 1  # unsigned varint length
    return 2 if kafka_type == "string" else 4


@functools.cache
def _entity_min_size(cls: type) -> int:
    """Smallest wire size of a non-null ``cls`` (tagged fields absent)."""
    flexible = cls.__flexible__  # type: ignore[attr-defined]  # every kio entity class has it
    total = 1 if flexible else 0  # the tagged-field count
    for field in fields(cls):
        if get_field_tag(field) is not None:
            continue
        kind = classify_field(field)
        if kind.is_array:
            total += 1 if flexible else 4
        elif isinstance(kind, EntityField):
            total += 1 if is_optional(field) else _entity_min_size(kind.type_)
        elif _is_request_header(cls) and field.name == "client_id":
            total += 2
        else:
            total += _primitive_min_size(get_schema_field_type(field), flexible)
    return total


@functools.cache
def _is_array_free(cls: type) -> bool:
    """True when no field of ``cls``, nested or tagged, is an array."""
    for field in fields(cls):
        kind = classify_field(field)
        if kind.is_array:
            return False
        if isinstance(kind, EntityField) and not _is_array_free(kind.type_):
            return False
    return True


@functools.cache
def entity_reader(cls: type, nullable: bool = False) -> Reader:
    """Return a safe reader for entity class ``cls`` (KIP-893 nullable if asked).

    The reader returns ``(entity_or_None, bytes_consumed)``; unknown tagged
    fields are skipped and array counts are bounded by the remaining bytes.
    """
    walker = _walker(cls, nullable)
    if not _is_array_free(cls):
        return walker
    native = _native_entity_reader(cls, nullable)

    def read_native_first(buffer: Any, offset: int) -> tuple[Any, int]:
        try:
            return native(buffer, offset)
        except KeyError:  # an unknown tagged field: kio refuses, we skip it
            return walker(buffer, offset)

    return read_native_first


def _walker(cls: type, nullable: bool) -> Reader:
    """Read ``cls`` field by field in Python, tolerating unknown tags."""
    flexible: bool = cls.__flexible__  # type: ignore[attr-defined]  # every kio entity class has it
    regular: list[tuple[str, Reader]] = []
    tagged: dict[int, tuple[str, Reader]] = {}
    tag_defaults: dict[str, Any] = {}
    for field in fields(cls):
        tag = get_field_tag(field)
        reader = _field_reader(cls, field, is_tag=tag is not None)
        if tag is None:
            regular.append((field.name, reader))
        else:
            tagged[int(tag)] = (field.name, reader)
            tag_defaults[field.name] = get_tagged_field_default(field)
    name = cls.__qualname__

    def read_entity(buffer: Any, offset: int) -> tuple[Any, int]:
        pos = offset
        if nullable:
            marker, size = read_int8(buffer, pos)
            pos += size
            if marker == -1:
                return None, pos - offset
        values: dict[str, Any] = {}
        for field_name, reader in regular:
            values[field_name], size = reader(buffer, pos)
            pos += size
        if flexible:
            pos = _read_tagged_fields(buffer, pos, tagged, values, name)
            for field_name, default in tag_defaults.items():
                values.setdefault(field_name, default)
        return cls(**values), pos - offset

    return read_entity


def _read_tagged_fields(
    buffer: Any,
    pos: int,
    tagged: dict[int, tuple[str, Reader]],
    values: dict[str, Any],
    entity_name: str,
) -> int:
    """Read a tagged-field section at ``pos`` into ``values``; return the new pos."""
    count, size = read_unsigned_varint(buffer, pos)
    pos += size
    end_of_buffer = len(buffer)
    for _ in range(count):
        tag, size = read_unsigned_varint(buffer, pos)
        pos += size
        length, size = read_unsigned_varint(buffer, pos)
        pos += size
        end = pos + length
        if end > end_of_buffer:
            raise ProtocolError(
                f"{entity_name}: tagged field {tag} declares {length} bytes, "
                f"only {end_of_buffer - pos} remain"
            )
        known = tagged.get(tag)
        if known is not None:
            field_name, reader = known
            value, used = reader(buffer, pos)
            if used > length:
                raise ProtocolError(
                    f"{entity_name}: tagged field {tag} ({field_name}) overruns "
                    f"its declared {length} bytes"
                )
            values[field_name] = value
        pos = end  # unknown tags, and any tail of a known one, are skipped
    return pos


def _field_reader(cls: type, field: Any, *, is_tag: bool) -> Reader:
    """Compile the reader of one field of ``cls``; a null array where the
    schema allows none is a ProtocolError, not a None for the handlers."""
    reader = _field_reader_any(cls, field, is_tag=is_tag)
    kind = classify_field(field)
    if isinstance(kind, (PrimitiveTupleField, EntityTupleField)) and not is_optional(field):
        label = f"{cls.__qualname__}.{field.name}"

        def read_non_null(buffer: Any, offset: int) -> tuple[Any, int]:
            value, used = reader(buffer, offset)
            if value is None:
                raise ProtocolError(f"{label}: null array in a field that cannot be null")
            return value, used

        return read_non_null
    return reader


def _field_reader_any(cls: type, field: Any, *, is_tag: bool) -> Reader:
    flexible: bool = cls.__flexible__  # type: ignore[attr-defined]  # every kio entity class has it
    is_header = _is_request_header(cls)
    kind = classify_field(field)
    label = f"{cls.__qualname__}.{field.name}"
    if is_header and field.name == "client_id":
        return _native_field_reader(cls, field, True, is_tag)
    if isinstance(kind, PrimitiveField):
        if get_schema_field_type(field) == "datetime_i64" and not is_optional(field):
            return _read_any_datetime
        return _native_field_reader(cls, field, is_header, is_tag)
    if isinstance(kind, EntityField):
        # Like kio's native reader: nullability follows the annotation.
        return entity_reader(kind.type_, is_optional(field))
    if isinstance(kind, PrimitiveTupleField):
        min_size = _primitive_min_size(get_schema_field_type(field), flexible)
        native = _native_field_reader(cls, field, is_header, is_tag)
        return _bounded_native_array(native, flexible, min_size, label)
    if isinstance(kind, EntityTupleField):
        element = kind.type_
        min_size = max(1, _entity_min_size(element))
        loop = _array_loop(entity_reader(element), flexible, min_size, label)
        if not _is_array_free(element):
            return loop
        native = _native_field_reader(cls, field, is_header, is_tag)
        bounded = _bounded_native_array(native, flexible, min_size, label)

        def read_array_native_first(buffer: Any, offset: int) -> tuple[Any, int]:
            try:
                return bounded(buffer, offset)
            except KeyError:  # an unknown tag inside an element
                return loop(buffer, offset)

        return read_array_native_first
    raise TypeError(f"{label}: unsupported field classification {kind!r}")


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _read_any_datetime(buffer: Any, offset: int) -> tuple[datetime.datetime, int]:
    """An int64 epoch-ms timestamp, negative ones included: Kafka writes -1 for "none"
    (DescribeTransactions' start time of an id without a transaction), which kio's
    native reader refuses. -1 reads as one ms before the epoch (``to_ms`` gives -1 back)."""
    value, size = read_int64(buffer, offset)
    return _EPOCH + datetime.timedelta(milliseconds=value), size


def _read_array_length(
    buffer: Any, offset: int, flexible: bool, label: str
) -> tuple[int | None, int]:
    """Return (element count or None for a null array, size of the length prefix)."""
    if flexible:
        count, size = read_compact_array_length(buffer, offset)
        return count, size
    length, size = read_int32(buffer, offset)
    if length == -1:
        return None, size
    if length < 0:
        raise ProtocolError(f"{label}: negative array length {length}")
    return length, size


def _check_fits(
    buffer: Any, start: int, count: int, min_size: int, label: str
) -> None:
    remaining = len(buffer) - start
    if count * min_size > remaining:
        raise ProtocolError(
            f"{label}: array of {count} elements (at least {min_size} bytes each) "
            f"cannot fit in the {remaining} bytes left"
        )


def _bounded_native_array(
    native: Reader, flexible: bool, min_size: int, label: str
) -> Reader:
    """Check an array's count against the remaining bytes, then read it natively."""

    def read_array(buffer: Any, offset: int) -> tuple[Any, int]:
        count, size = _read_array_length(buffer, offset, flexible, label)
        if count is not None:
            _check_fits(buffer, offset + size, count, min_size, label)
        return native(buffer, offset)

    return read_array


def _array_loop(
    element: Reader, flexible: bool, min_size: int, label: str
) -> Reader:
    """Read an array element by element with ``element``, count checked first."""

    def read_array(buffer: Any, offset: int) -> tuple[Any, int]:
        count, size = _read_array_length(buffer, offset, flexible, label)
        pos = offset + size
        if count is None:
            return None, size
        _check_fits(buffer, pos, count, min_size, label)
        items: list[Any] = []
        append = items.append
        for _ in range(count):
            item, used = element(buffer, pos)
            append(item)
            pos += used
        return tuple(items), pos - offset

    return read_array
