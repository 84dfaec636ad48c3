"""Serializers and deserializers in Confluent's wire format, byte for byte
those of confluent-kafka's ``AvroSerializer``, ``JSONSerializer`` and
``ProtobufSerializer`` (see :mod:`logbroker.client.serde.wire`).

* Avro: fastavro's schemaless binary encoding; values are what fastavro
  takes and gives (dicts for records).
* JSON: the value as compact UTF-8 JSON (``separators=(",", ":")``, non-ASCII
  kept, as confluent-kafka writes it), checked against the JSON Schema with
  jsonschema before encoding (and after decoding, on request).
* Protobuf: the message's serialized bytes after the message-index list.
  Values are dicts in protobuf's JSON mapping (``json_format``; field names
  as in the ``.proto``, 64-bit integers decode as strings) or message objects.

Subjects follow Confluent's default TopicNameStrategy: ``TOPIC-value`` and
``TOPIC-key``. A :class:`Serializer` registers its schema under the subject
on first use (``auto_register``) or looks it up, once per subject; a
:class:`Deserializer` fetches the schema a value names by id, once per id.

``encode``/``decode`` block on the registry the first time they need a
schema (later calls use the cache and never block); from trio, use
``encode_async``/``decode_async``, which fetch in a worker thread.
Thread-safety: instances may be shared; caches are dicts filled at most once
per key (two threads may both fetch the first time).
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import fastavro
import trio
from fastavro.validation import ValidationError as AvroValidationError, validate as avro_validate
from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type information
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]  # protobuf ships no type information
from jsonschema.exceptions import SchemaError, best_match  # type: ignore[import-untyped]  # jsonschema ships no type information
from jsonschema.validators import Draft7Validator, validator_for  # type: ignore[import-untyped]  # jsonschema ships no type information
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from logbroker.client.serde._protobuf import ProtoSchema, build as build_proto
from logbroker.client.serde.registry import SCHEMA_TYPES, Schema, SchemaReference, SchemaRegistryClient
from logbroker.client.serde.wire import SerializationError, frame, read_header, read_message_indexes

__all__ = ["Deserializer", "Serializer", "jsonable", "topic_subject"]

# What a malformed Avro payload makes fastavro raise: it reads without bounds checks.
_AVRO_READ_ERRORS = (EOFError, ValueError, IndexError, KeyError, TypeError, struct.error, OverflowError)


def topic_subject(topic: str, is_key: bool = False) -> str:
    """Confluent's TopicNameStrategy: ``TOPIC-key`` or ``TOPIC-value``."""
    return f"{topic}-{'key' if is_key else 'value'}"


def jsonable(value: Any) -> Any:
    """A decoded value with only JSON types in it, for printing: ``bytes`` as
    Avro's JSON encoding writes them (one character per byte, U+0000..U+00FF),
    decimals as strings, dates and times in ISO 8601, UUIDs as strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return value


class _Codec(Protocol):
    schema_type: str

    def encode(self, value: Any, indexes: Sequence[int] | None) -> bytes: ...

    def decode(self, payload: bytes, indexes: Sequence[int] | None) -> Any: ...


class _AvroCodec:
    schema_type = "AVRO"

    def __init__(self, schema: Schema, referenced: dict[str, Schema], validate: bool) -> None:
        named: dict[str, Any] = {}
        try:
            for ref in referenced.values():
                fastavro.parse_schema(json.loads(ref.text), named_schemas=named)
            self.parsed = fastavro.parse_schema(json.loads(schema.text), named_schemas=named)
        except fastavro.schema.UnknownType as exc:
            raise SerializationError(f"invalid Avro schema: unknown type {exc}") from None
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise SerializationError(f"invalid Avro schema: {exc}") from None
        self.validate = validate

    def encode(self, value: Any, indexes: Sequence[int] | None) -> bytes:
        if self.validate:
            try:
                avro_validate(value, self.parsed, raise_errors=True)
            except AvroValidationError as exc:
                found = [str(e) for e in exc.errors] if getattr(exc, "errors", None) else [str(exc)]
                raise SerializationError("the value does not match the Avro schema: " + "; ".join(found)) from None
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self.parsed, value)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError, struct.error) as exc:
            raise SerializationError(f"the value does not match the Avro schema: {exc}") from None
        return out.getvalue()

    def decode(self, payload: bytes, indexes: Sequence[int] | None) -> Any:
        try:
            return fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, None)
        except _AVRO_READ_ERRORS as exc:
            raise SerializationError(f"not Avro of its schema: {type(exc).__name__}: {exc}") from None


class _JsonCodec:
    schema_type = "JSON"

    def __init__(self, schema: Schema, referenced: dict[str, Schema], validate: bool) -> None:
        self.validator: Any = None
        if not validate:
            return
        try:
            document = json.loads(schema.text)
            resources = [(name, Resource.from_contents(json.loads(ref.text), default_specification=DRAFT7))
                         for name, ref in referenced.items()]
            validator_class = validator_for(document, default=Draft7Validator)
            validator_class.check_schema(document)
        except (ValueError, SchemaError) as exc:
            raise SerializationError(f"invalid JSON Schema: {getattr(exc, 'message', exc)}") from None
        self.validator = validator_class(document, registry=Registry().with_resources(resources))

    def check(self, value: Any) -> None:
        if self.validator is None:
            return
        error = best_match(self.validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the value"
            raise SerializationError(f"the value does not match the JSON Schema: {where}: {error.message}")

    def encode(self, value: Any, indexes: Sequence[int] | None) -> bytes:
        self.check(value)
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"the value is not JSON: {exc}") from None

    def decode(self, payload: bytes, indexes: Sequence[int] | None) -> Any:
        try:
            value = json.loads(payload)
        except ValueError as exc:
            raise SerializationError(f"not JSON: {exc}") from None
        self.check(value)
        return value


class _ProtobufCodec:
    schema_type = "PROTOBUF"

    def __init__(self, schema: Schema, referenced: dict[str, Schema]) -> None:
        try:
            self.proto: ProtoSchema = build_proto(schema.text, {name: ref.text for name, ref in referenced.items()})
        except ValueError as exc:
            raise SerializationError(str(exc)) from None

    def message_class(self, indexes: Sequence[int] | None) -> Any:
        try:
            return self.proto.message_class(indexes or [0])
        except ValueError as exc:
            raise SerializationError(str(exc)) from None

    def encode(self, value: Any, indexes: Sequence[int] | None) -> bytes:
        cls = self.message_class(indexes)
        if isinstance(value, Message):
            if value.DESCRIPTOR.full_name != cls.DESCRIPTOR.full_name:
                raise SerializationError(f"a {value.DESCRIPTOR.full_name} message given where the schema's "
                                         f"{cls.DESCRIPTOR.full_name} goes")
            return bytes(value.SerializeToString())
        try:
            message = json_format.ParseDict(value, cls())
        except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
            raise SerializationError(f"the value does not match message {cls.DESCRIPTOR.full_name}: {exc}") from None
        return bytes(message.SerializeToString())

    def decode(self, payload: bytes, indexes: Sequence[int] | None) -> Any:
        cls = self.message_class(indexes)
        try:
            message = cls.FromString(payload)
        except DecodeError as exc:
            raise SerializationError(f"not a {cls.DESCRIPTOR.full_name} message: {exc}") from None
        return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _compile(schema: Schema, referenced: dict[str, Schema], validate: bool) -> _Codec:
    if schema.schema_type == "AVRO":
        return _AvroCodec(schema, referenced, validate)
    if schema.schema_type == "JSON":
        return _JsonCodec(schema, referenced, validate)
    if schema.schema_type == "PROTOBUF":
        return _ProtobufCodec(schema, referenced)
    raise SerializationError(f"unknown schema type {schema.schema_type!r}: use {', '.join(SCHEMA_TYPES)}")


class Serializer:
    """Encodes values of one schema for any topic.

    ``schema_type`` is ``AVRO``, ``JSON`` or ``PROTOBUF`` (any case);
    ``schema`` the schema's text; ``references`` the registered schemas it
    uses. With ``auto_register`` (the default) the schema is registered under
    the topic's subject on first use (registering a schema the subject has
    is a no-op that answers its id), else looked up there. ``validate`` checks
    Avro and JSON values before encoding (Protobuf values are checked by
    building the message). ``message_name`` picks the Protobuf message type
    (default: the file's first message).
    """

    def __init__(self, registry: SchemaRegistryClient, schema_type: str, schema: str, *,
                 references: Sequence[SchemaReference] = (), auto_register: bool = True,
                 normalize: bool = False, validate: bool = True, message_name: str | None = None) -> None:
        kind = schema_type.upper()
        if kind not in SCHEMA_TYPES:
            raise ValueError(f"unknown schema type {schema_type!r}: use {', '.join(SCHEMA_TYPES)}")
        self.registry = registry
        self.schema = Schema(schema, kind, tuple(references))
        self.auto_register = auto_register
        self.normalize = normalize
        self.validate = validate
        self.message_name = message_name
        self._codec: _Codec | None = None
        self._indexes: list[int] | None = None
        self._ids: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.schema.schema_type}, auto_register={self.auto_register}, "
                f"ids={self._ids})")

    def schema_id(self, subject: str) -> int:
        """The schema's id under ``subject``: registered or looked up on first
        use, then remembered.

        :raises SchemaRegistryError: 409 incompatible with the subject, 40401/40403
            not registered there (without ``auto_register``).
        """
        found = self._ids.get(subject)
        if found is None:
            if self.auto_register:
                found = self.registry.register(subject, self.schema, normalize=self.normalize)
            else:
                found = self.registry.lookup(subject, self.schema, normalize=self.normalize).schema_id
            self._ids[subject] = found
        return found

    def prepare(self) -> None:
        """Parse the schema (fetching what it references); later calls do nothing.

        :raises SerializationError: a schema that does not parse.
        """
        if self._codec is None:
            codec = _compile(self.schema, self.registry.referenced_schemas(self.schema), self.validate)
            if isinstance(codec, _ProtobufCodec):
                try:
                    self._indexes = codec.proto.indexes_of(self.message_name)
                except ValueError as exc:
                    raise SerializationError(str(exc)) from None
            self._codec = codec

    def encode(self, topic: str, value: Any, is_key: bool = False) -> bytes | None:
        """``value`` in Confluent's wire format for the topic's key or value
        subject; None for None (a tombstone, as confluent-kafka does).

        :raises SerializationError: a value that does not fit the schema.
        :raises SchemaRegistryError: the registry refused the schema.
        """
        if value is None:
            return None
        self.prepare()
        schema_id = self.schema_id(topic_subject(topic, is_key))
        return self._frame(schema_id, value)

    async def encode_async(self, topic: str, value: Any, is_key: bool = False) -> bytes | None:
        """:meth:`encode` for trio: the first call per subject talks to the registry
        in a worker thread."""
        if value is None:
            return None
        subject = topic_subject(topic, is_key)
        schema_id = self._ids.get(subject)
        if self._codec is None or schema_id is None:
            await trio.to_thread.run_sync(self.prepare)
            schema_id = await trio.to_thread.run_sync(self.schema_id, subject)
        return self._frame(schema_id, value)

    def _frame(self, schema_id: int, value: Any) -> bytes:
        assert self._codec is not None  # prepare() ran
        return frame(schema_id, self._codec.encode(value, self._indexes), self._indexes)


class Deserializer:
    """Decodes values in Confluent's wire format, whatever their schema, by the
    schema id they carry. ``validate`` also checks JSON values against their
    JSON Schema (Avro and Protobuf values fit their schema by construction)."""

    def __init__(self, registry: SchemaRegistryClient, *, validate: bool = False) -> None:
        self.registry = registry
        self.validate = validate
        self._codecs: dict[int, _Codec] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schemas={sorted(self._codecs)})"

    def prepare(self, schema_id: int) -> None:
        """Fetch and parse schema ``schema_id`` (and what it references); later
        calls for the same id do nothing.

        :raises SchemaRegistryError: 40403 no such schema.
        :raises SerializationError: a schema that does not parse.
        """
        if schema_id not in self._codecs:
            schema = self.registry.schema(schema_id)
            try:
                codec = _compile(schema, self.registry.referenced_schemas(schema), self.validate)
            except SerializationError as exc:
                raise SerializationError(f"schema {schema_id} ({schema.schema_type}): {exc}") from None
            self._codecs[schema_id] = codec

    def schema_id(self, data: bytes | bytearray | memoryview) -> int:
        """The schema id ``data`` names. :raises SerializationError: not the wire format."""
        return read_header(data)

    def decode(self, topic: str, data: bytes | bytearray | memoryview | None, is_key: bool = False) -> Any:
        """The value ``data`` holds (None for None); ``topic`` and ``is_key`` name
        it in errors.

        :raises SerializationError: not the wire format, or not a value of its schema.
        :raises SchemaRegistryError: the registry does not know the schema id.
        """
        if data is None:
            return None
        schema_id = self._header(topic, data, is_key)
        self.prepare(schema_id)
        return self._decode(topic, data, is_key, schema_id)

    async def decode_async(self, topic: str, data: bytes | bytearray | memoryview | None,
                           is_key: bool = False) -> Any:
        """:meth:`decode` for trio: a schema id seen for the first time is fetched
        in a worker thread."""
        if data is None:
            return None
        schema_id = self._header(topic, data, is_key)
        if schema_id not in self._codecs:
            await trio.to_thread.run_sync(self.prepare, schema_id)
        return self._decode(topic, data, is_key, schema_id)

    def _header(self, topic: str, data: bytes | bytearray | memoryview, is_key: bool) -> int:
        try:
            return read_header(data)
        except SerializationError as exc:
            raise SerializationError(f"{_what(topic, is_key)}: {exc}") from None

    def _decode(self, topic: str, data: bytes | bytearray | memoryview, is_key: bool, schema_id: int) -> Any:
        codec = self._codecs[schema_id]
        try:
            indexes: list[int] | None = None
            offset = 5
            if codec.schema_type == "PROTOBUF":
                indexes, offset = read_message_indexes(data, offset)
            return codec.decode(bytes(data[offset:]), indexes)
        except SerializationError as exc:
            raise SerializationError(f"{_what(topic, is_key)} (schema {schema_id}, {codec.schema_type}): "
                                     f"{exc}") from None


def _what(topic: str, is_key: bool) -> str:
    return f"the {'key' if is_key else 'value'} of a record of {topic}"
