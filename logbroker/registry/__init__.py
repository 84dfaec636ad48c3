"""The schema registry's core: schema parsing and compatibility
(:mod:`logbroker.registry.schemas`), ``.proto`` text to the descriptors protoc
would build (:mod:`logbroker.registry.protobuf_descriptor`, imported from its
module: it loads protobuf), pure and without I/O."""

from logbroker.registry.schemas import (
    CompatibilityLevel as CompatibilityLevel,
    InvalidSchemaError as InvalidSchemaError,
    ParsedSchema as ParsedSchema,
    SchemaReference as SchemaReference,
    SchemaType as SchemaType,
    compatibility_errors as compatibility_errors,
    parse_schema as parse_schema,
)

__all__ = [
    "CompatibilityLevel",
    "InvalidSchemaError",
    "ParsedSchema",
    "SchemaReference",
    "SchemaType",
    "compatibility_errors",
    "parse_schema",
]
