"""Schemas for record keys and values: a client of Confluent's Schema Registry
REST API, and serializers/deserializers in Confluent's wire format that
interoperate byte for byte with confluent-kafka's (Avro, JSON Schema,
Protobuf). See docs/schema-registry.md.

::

    registry = SchemaRegistryClient("http://localhost:8081")
    data = Serializer(registry, "AVRO", schema_text).encode("orders", {"id": 1})
    Deserializer(registry).decode("orders", data)  # -> {"id": 1}
"""

from logbroker.client.serde.codec import (
    Deserializer as Deserializer,
    Serializer as Serializer,
    jsonable as jsonable,
    topic_subject as topic_subject,
)
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
