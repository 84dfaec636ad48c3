"""Schemas for record keys and values: a client of Confluent's Schema Registry
REST API, and serializers/deserializers in Confluent's wire format that
interoperate byte for byte with confluent-kafka's (Avro, JSON Schema,
Protobuf). See docs/schema-registry.md.

::

    registry = SchemaRegistryClient("http://localhost:8081")
    data = Serializer(registry, "AVRO", schema_text).encode("orders", {"id": 1})
    Deserializer(registry).decode("orders", data)  # -> {"id": 1}
"""

from typing import TYPE_CHECKING, Any

from logbroker.client.serde.registry import (
    CompatibilityResult as CompatibilityResult,
    Schema as Schema,
    SchemaReference as SchemaReference,
    SchemaRegistryClient as SchemaRegistryClient,
    SchemaRegistryError as SchemaRegistryError,
    SchemaRegistryUnreachableError as SchemaRegistryUnreachableError,
    SubjectVersion as SubjectVersion,
)
from logbroker.client.serde.wire import SerializationError as SerializationError

__all__ = [
    "CompatibilityResult",
    "Deserializer",
    "Schema",
    "SchemaReference",
    "SchemaRegistryClient",
    "SchemaRegistryError",
    "SchemaRegistryUnreachableError",
    "SerializationError",
    "Serializer",
    "SubjectVersion",
    "jsonable",
    "topic_subject",
]

_CODEC_NAMES = frozenset({"Deserializer", "Serializer", "jsonable", "topic_subject"})

if TYPE_CHECKING:
    from logbroker.client.serde.codec import (
        Deserializer as Deserializer,
        Serializer as Serializer,
        jsonable as jsonable,
        topic_subject as topic_subject,
    )


def __getattr__(name: str) -> Any:
    # the codecs import fastavro, jsonschema and protobuf: only when used, so every
    # command line start does not pay for them
    if name in _CODEC_NAMES:
        from logbroker.client.serde import codec

        return getattr(codec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
