"""The schemas a registry holds: parse a schema text of one of the three types
into a :class:`ParsedSchema` with a canonical form, and tell why a new schema
is not compatible with earlier versions of its subject.

Pure: no I/O, no state. The rules are Confluent Schema Registry's: Avro's
schema resolution for AVRO, Confluent's JSON Schema and Protobuf difference
rules for the other two. ``BACKWARD`` means the new schema reads data written
with the previous one, ``FORWARD`` that the previous one reads data written
with the new one, ``FULL`` both; the ``_TRANSITIVE`` levels check every
earlier version instead of the latest only.

Thread-safe: every value here is immutable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from logbroker.errors import LogbrokerError
from logbroker.registry._avro import parse as _parse_avro, reader_errors as _avro_reader_errors
from logbroker.registry._json_schema import parse as _parse_json, reader_errors as _json_reader_errors
from logbroker.registry._protobuf import parse as _parse_protobuf, reader_errors as _protobuf_reader_errors

__all__ = [
    "CompatibilityLevel",
    "InvalidSchemaError",
    "ParsedSchema",
    "SchemaReference",
    "SchemaType",
    "compatibility_errors",
    "parse_schema",
]


class SchemaType(StrEnum):
    AVRO = "AVRO"
    JSON = "JSON"
    PROTOBUF = "PROTOBUF"


class CompatibilityLevel(StrEnum):
    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A schema's use of a version of another subject, under ``name``: an Avro
    full type name, a JSON Schema ``$ref`` target, a Protobuf ``import`` path."""

    name: str
    subject: str
    version: int


class InvalidSchemaError(LogbrokerError):
    """A schema text that does not parse, or breaks its type's rules; the
    message says what is wrong and where."""


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """A schema as registered.

    ``text`` is what the registry stores and answers (the text given, except
    a Protobuf schema sent as a base64 ``FileDescriptorProto``, which becomes
    its ``.proto`` rendering). Two schemas that mean the same have the same
    ``canonical`` string. ``model`` is the parsed form that
    :func:`compatibility_errors` works on; callers treat it as opaque.
    """

    schema_type: SchemaType
    text: str
    canonical: str
    references: tuple[SchemaReference, ...] = ()
    model: object = field(default=None, compare=False, repr=False)


_NO_REFERENCES: Mapping[str, str] = MappingProxyType({})
_PARSERS = {SchemaType.AVRO: _parse_avro, SchemaType.JSON: _parse_json, SchemaType.PROTOBUF: _parse_protobuf}
_CHECKERS = {SchemaType.AVRO: _avro_reader_errors, SchemaType.JSON: _json_reader_errors,
             SchemaType.PROTOBUF: _protobuf_reader_errors}


def parse_schema(
    schema_type: SchemaType | str,
    text: str,
    references: Sequence[SchemaReference] = (),
    resolved: Mapping[str, str] = _NO_REFERENCES,
) -> ParsedSchema:
    """Parse ``text`` as a schema of ``schema_type`` (a :class:`SchemaType` or its
    name, any case).

    ``references`` are the schema's own references; ``resolved`` maps the name
    of every schema it needs, its references' references included, to that
    schema's text (the caller looks them up).

    :raises InvalidSchemaError: unknown type, a text that does not parse or
        breaks its type's rules, a reference missing from ``resolved``.
    """
    try:
        kind = SchemaType(str(schema_type).upper())
    except ValueError:
        raise InvalidSchemaError(f"Unknown schema type {schema_type!r}: use AVRO, JSON or PROTOBUF") from None
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchemaError("Empty schema")
    refs = tuple(references)
    names = [ref.name for ref in refs]
    if len(set(names)) != len(names):
        raise InvalidSchemaError(f"Reference names must be unique, got {names}")
    missing = [name for name in names if name not in resolved]
    if missing:
        raise InvalidSchemaError(f"References {missing} were not resolved to schema texts")
    try:
        shown, canonical, model = _PARSERS[kind](text, resolved)
    except RecursionError:
        raise InvalidSchemaError(f"Invalid {kind} schema: nested too deeply") from None
    except ValueError as exc:  # the format modules word their ValueErrors for the user
        raise InvalidSchemaError(str(exc)) from exc
    return ParsedSchema(kind, shown, canonical, refs, model)


def compatibility_errors(
    level: CompatibilityLevel, new: ParsedSchema, previous: Sequence[ParsedSchema]
) -> list[str]:
    """Why ``new`` may not follow ``previous`` (earlier versions of a subject,
    oldest first) at ``level``; ``[]`` when it may. Non-transitive levels look
    at the latest previous version only. Each message starts with the name of
    the rule it breaks (Confluent's), e.g. ``READER_FIELD_MISSING_DEFAULT_VALUE``.
    """
    level = CompatibilityLevel(level)
    if level == CompatibilityLevel.NONE or not previous:
        return []
    against = list(previous) if level.endswith("_TRANSITIVE") else [previous[-1]]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    errors: list[str] = []
    for old in reversed(against):  # newest first, as Confluent reports them
        if old.schema_type != new.schema_type:
            found = [f"TYPE_MISMATCH: the new schema is {new.schema_type} and the old schema {old.schema_type}"]
        else:
            check = _CHECKERS[new.schema_type]
            found = []
            if backward:
                found += check(new.model, old.model, "new", "old")
            if forward:
                found += check(old.model, new.model, "old", "new")
        errors += [message for message in found if message not in errors]
    return errors
