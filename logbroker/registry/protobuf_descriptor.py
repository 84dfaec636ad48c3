"""``.proto`` text to the ``FileDescriptorProto`` protoc would build, with no
generated code and no ``protoc``: proto-schema-parser reads the text, this
module builds the descriptor (messages, nested types, enums, map entries,
oneofs, proto3 ``optional``, reserved numbers and names, the field options
``packed``, ``deprecated``, ``json_name`` and proto2 defaults, enum
``allow_alias``) and adds it to a private ``DescriptorPool``, which checks
it as protoc would (duplicate numbers, unknown types...).

The registry answers ``format=serialized`` with it (Confluent's serialized
``FileDescriptorProto``); the client's serde makes message classes from the
pool (:mod:`logbroker.client.serde`).

Imports resolve to the texts of the schema's references (by import path)
or, for Google's types (``google/protobuf/timestamp.proto``...), to the
descriptors the protobuf package (or googleapis-common-protos, for
``google/type/*``) ships. Services and extensions are left out (they do not
change how a message is encoded); proto2 groups and editions are refused.

Pure: no I/O and no shared state; each call builds its own pool. Errors
for the user are raised as ``ValueError``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool  # type: ignore[import-untyped]  # protobuf ships no type information
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

__all__ = ["build_pool", "file_descriptor"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32, "fixed64": _F.TYPE_FIXED64, "fixed32": _F.TYPE_FIXED32, "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "uint32": _F.TYPE_UINT32, "sfixed32": _F.TYPE_SFIXED32,
    "sfixed64": _F.TYPE_SFIXED64, "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64,
}
_LABELS = {
    ast.FieldCardinality.REQUIRED: _F.LABEL_REQUIRED,
    ast.FieldCardinality.OPTIONAL: _F.LABEL_OPTIONAL,
    ast.FieldCardinality.REPEATED: _F.LABEL_REPEATED,
}
_MAX_FIELD_NUMBER = 2**29 - 1  # `max` in a message's reserved range
_MAX_ENUM_NUMBER = 2**31 - 1  # `max` in an enum's reserved range


def build_pool(text: str, imports: Mapping[str, str], name: str | None = None) -> tuple[Any, Any]:
    """``(pool, file)``: a new ``DescriptorPool`` holding the schema ``text``
    and its imports, and the ``FileDescriptorProto`` built from ``text``.

    ``imports`` maps each import path to its text, dependencies first (as a
    schema's references resolve); ``name`` is the file's name (default
    ``schema.proto``, prefixed with ``_`` until no import has it).

    :raises ValueError: a text that does not parse, a type or import that
        resolves to nothing, a file the descriptor pool refuses.
    """
    pool = descriptor_pool.DescriptorPool()
    known: dict[str, int] = {}  # full name -> _F.TYPE_MESSAGE or _F.TYPE_ENUM, of every file in the pool
    added: set[str] = set()
    for path, body in imports.items():
        _add(pool, _parse(body, f"import {path!r}"), path, imports, known, added)
    if name is None:
        name = "schema.proto"
        while name in imports:
            name = "_" + name
    proto = _add(pool, _parse(text, "schema"), name, imports, known, added)
    return pool, proto


def file_descriptor(text: str, imports: Mapping[str, str], name: str | None = None) -> Any:
    """The ``FileDescriptorProto`` of the schema ``text`` (see :func:`build_pool`).

    :raises ValueError: as :func:`build_pool`.
    """
    return build_pool(text, imports, name)[1]


# -- parsing -----------------------------------------------------------------------------


class _RaisingListener:
    """ANTLR error listener that stops at the first syntax error (the default
    one prints it to stderr and goes on)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int,  # noqa: N802 ANTLR's name
                    msg: str, e: Any) -> None:
        raise ValueError(f"invalid Protobuf {self.what}: line {line}:{column} {msg[:160]}")

    def reportAmbiguity(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass

    def reportContextSensitivity(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass


def _parse(text: str, what: str) -> ast.File:
    listener = _RaisingListener(what)

    def quiet(recognizer: Any) -> None:
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(listener)

    try:
        tree = Parser(setup_lexer=quiet, setup_parser=quiet).parse(text)
    except ValueError:
        raise
    except (AttributeError, TypeError, IndexError) as exc:  # the parser's own failures on odd input
        raise ValueError(f"invalid Protobuf {what}: {exc}") from None
    if tree.edition is not None:
        raise ValueError(f"Protobuf {what}: editions (edition = {tree.edition!r}) are not supported")
    if tree.syntax not in (None, "proto2", "proto3"):
        raise ValueError(f"Protobuf {what}: unknown syntax {tree.syntax!r}")
    return tree


# -- building ----------------------------------------------------------------------------


def _add(pool: Any, tree: ast.File, name: str, imports: Mapping[str, str], known: dict[str, int],
         added: set[str]) -> Any:
    package = next((e.name for e in tree.file_elements if isinstance(e, ast.Package)), "")
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax=tree.syntax or "proto2")
    for element in tree.file_elements:
        if isinstance(element, ast.Import):
            if element.name not in imports:
                _add_well_known(pool, element.name, known, added)
            if element.public:
                proto.public_dependency.append(len(proto.dependency))
            if element.weak:
                proto.weak_dependency.append(len(proto.dependency))
            proto.dependency.append(element.name)
    _declare(tree.file_elements, package, known)
    builder = _FileBuilder(proto.syntax == "proto3", known)
    for element in tree.file_elements:
        if isinstance(element, ast.Message):
            builder.message(proto.message_type.add(), element, package)
        elif isinstance(element, ast.Enum):
            _enum(proto.enum_type.add(), element)
    try:
        pool.Add(proto)
    except (TypeError, ValueError, KeyError) as exc:  # protobuf's own checks: duplicate numbers, bad names...
        raise ValueError(f"invalid Protobuf {name}: {exc}") from None
    added.add(name)
    return proto


def _add_well_known(pool: Any, path: str, known: dict[str, int], added: set[str]) -> None:
    """Copy ``path`` (and what it imports) from protobuf's default pool into ``pool``."""
    if path in added:
        return
    if path.startswith("google/") and path.endswith(".proto"):
        try:  # importing a generated module puts its file in the default pool
            importlib.import_module(path.removesuffix(".proto").replace("/", ".") + "_pb2")
        except ImportError:
            pass
    try:
        found = descriptor_pool.Default().FindFileByName(path)
    except KeyError:
        raise ValueError(f"import {path!r} is neither one of the schema's references nor a well-known "
                         "type") from None
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    for dependency in proto.dependency:
        _add_well_known(pool, dependency, known, added)
    _declare_proto(proto.message_type, proto.enum_type, proto.package, known)
    pool.Add(proto)
    added.add(path)


def _declare(elements: Sequence[Any], scope: str, known: dict[str, int]) -> None:
    for element in elements:
        if isinstance(element, ast.Message):
            full = f"{scope}.{element.name}" if scope else element.name
            known[full] = _F.TYPE_MESSAGE
            _declare(element.elements, full, known)
        elif isinstance(element, ast.Enum):
            known[f"{scope}.{element.name}" if scope else element.name] = _F.TYPE_ENUM


def _declare_proto(messages: Any, enums: Any, scope: str, known: dict[str, int]) -> None:
    for enum in enums:
        known[f"{scope}.{enum.name}" if scope else enum.name] = _F.TYPE_ENUM
    for message in messages:
        full = f"{scope}.{message.name}" if scope else message.name
        known[full] = _F.TYPE_MESSAGE
        _declare_proto(message.nested_type, message.enum_type, full, known)


def _camel(name: str) -> str:
    """protoc's map-entry naming: ``line_items`` -> ``LineItems``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _literal(value: Any) -> Any:
    return value.name if isinstance(value, ast.Identifier) else value


_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _unescape(raw: str) -> str:
    """A string literal's value (the parser keeps the escapes as written)."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if code[0] in "01234567":
            return chr(int(code, 8))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, raw)


def _default(field_type: int, value: Any) -> str:
    """protoc's ``default_value``: strings unescaped, bytes C-escaped (as written),
    booleans ``true``/``false``, enums by value name, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field_type == _F.TYPE_STRING and isinstance(value, str):
        return _unescape(value)
    return str(value)


def _range(text: str, highest: int) -> tuple[int, int]:
    """``"5"``, ``"5 to 9"`` or ``"5 to max"`` as (first, last), both inclusive."""
    first, _, last = (part.strip() for part in text.partition(" to "))
    try:
        return int(first), (highest if last == "max" else int(last or first))
    except ValueError:
        raise ValueError(f"invalid Protobuf reserved range {text!r}") from None


def _enum(out: Any, enum: ast.Enum) -> None:
    out.name = enum.name
    for element in enum.elements:
        if isinstance(element, ast.EnumValue):
            out.value.add(name=element.name, number=element.number)
        elif isinstance(element, ast.Option) and element.name == "allow_alias":
            out.options.allow_alias = bool(_literal(element.value))
        elif isinstance(element, ast.EnumReserved):
            for text in element.ranges:
                first, last = _range(text, _MAX_ENUM_NUMBER)
                out.reserved_range.add(start=first, end=last)  # inclusive, unlike a message's
            out.reserved_name.extend(element.names)


class _FileBuilder:
    """Turns one file's messages into ``DescriptorProto``s, resolving type names
    against ``known`` (every message and enum in the pool and in this file)."""

    def __init__(self, proto3: bool, known: Mapping[str, int]) -> None:
        self.proto3 = proto3
        self.known = known

    def resolve(self, name: str, scope: str) -> tuple[int, str]:
        """``(type, ".full.name")`` of a field's type named ``name`` inside ``scope``,
        searched from the innermost scope out, as protoc does."""
        scalar = _SCALARS.get(name)
        if scalar is not None:
            return scalar, ""
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            candidates = []
            parts = scope.split(".") if scope else []
            while True:
                candidates.append(".".join([*parts, name]))
                if not parts:
                    break
                parts.pop()
        for candidate in candidates:
            kind = self.known.get(candidate)
            if kind is not None:
                return kind, "." + candidate
        raise ValueError(f"Protobuf type {name!r} (used in {scope or 'the file'}) is not defined or imported")

    def message(self, out: Any, message: ast.Message, scope: str) -> None:
        out.name = message.name
        full = f"{scope}.{message.name}" if scope else message.name
        optional_fields = []  # proto3 `optional` fields; their synthetic oneofs follow the real ones
        for element in message.elements:
            if isinstance(element, ast.Field):
                field = self.field(out.field.add(), element, full)
                if self.proto3 and element.cardinality == ast.FieldCardinality.OPTIONAL:
                    field.proto3_optional = True
                    optional_fields.append(field)
            elif isinstance(element, ast.MapField):
                self.map_field(out, element, full)
            elif isinstance(element, ast.OneOf):
                index = len(out.oneof_decl)
                out.oneof_decl.add(name=element.name)
                for member in element.elements:
                    if isinstance(member, ast.Field):
                        self.field(out.field.add(), member, full).oneof_index = index
                    elif isinstance(member, ast.Group):
                        raise ValueError(f"Protobuf group {member.name!r} in {full}: groups are not supported")
            elif isinstance(element, ast.Message):
                self.message(out.nested_type.add(), element, full)
            elif isinstance(element, ast.Enum):
                _enum(out.enum_type.add(), element)
            elif isinstance(element, ast.Reserved):
                for text in element.ranges:
                    first, last = _range(text, _MAX_FIELD_NUMBER)
                    out.reserved_range.add(start=first, end=last + 1)  # end exclusive
                out.reserved_name.extend(element.names)
            elif isinstance(element, ast.Group):
                raise ValueError(f"Protobuf group {element.name!r} in {full}: groups are not supported")
        taken = {o.name for o in out.oneof_decl}
        for field in optional_fields:
            name = "_" + field.name
            while name in taken:  # protoc prefixes X until the synthetic name is free
                name = "X" + name
            taken.add(name)
            field.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add(name=name)

    def field(self, out: Any, field: ast.Field, scope: str) -> Any:
        out.name = field.name
        out.number = field.number
        out.label = _LABELS[field.cardinality] if field.cardinality else _F.LABEL_OPTIONAL
        out.type, type_name = self.resolve(field.type, scope)
        if type_name:
            out.type_name = type_name
        for option in field.options:
            value = _literal(option.value)
            if option.name == "packed":
                out.options.packed = bool(value)
            elif option.name == "deprecated":
                out.options.deprecated = bool(value)
            elif option.name == "json_name":
                out.json_name = _unescape(str(value))
            elif option.name == "default":
                out.default_value = _default(out.type, value)
        return out

    def map_field(self, out: Any, field: ast.MapField, scope: str) -> None:
        entry = out.nested_type.add(name=_camel(field.name) + "Entry")
        entry.options.map_entry = True
        for number, (name, type_) in enumerate((("key", field.key_type), ("value", field.value_type)), 1):
            part = entry.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
            part.type, type_name = self.resolve(type_, scope)
            if type_name:
                part.type_name = type_name
        out.field.add(name=field.name, number=field.number, label=_F.LABEL_REPEATED, type=_F.TYPE_MESSAGE,
                      type_name=f".{scope}.{entry.name}")
