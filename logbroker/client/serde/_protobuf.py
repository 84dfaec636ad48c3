"""Protobuf message classes built at run time from ``.proto`` text, with no
generated code and no ``protoc``: proto-schema-parser reads the text, this
module builds the ``FileDescriptorProto`` protoc would (messages, nested
types, enums, map entries, oneofs, proto3 ``optional``, the field options
that change the wire: ``packed``, proto2 defaults), adds it to a private
``DescriptorPool`` and asks ``message_factory`` for the classes.

Imports resolve to the texts of the schema's references (by import path)
or, for Google's well-known types (``google/protobuf/timestamp.proto``...),
to the descriptors the protobuf package ships. Services and extensions are
left out (they do not change how a message is encoded); proto2 groups and
editions are refused.

Not thread-safe while building; a built :class:`ProtoSchema` is read-only.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]  # protobuf ships no type information
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

__all__ = ["ProtoSchema", "build"]

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
# The well-known types' modules: importing one puts its file in protobuf's default pool.
_WELL_KNOWN_MODULES = ("any", "api", "duration", "empty", "field_mask", "source_context", "struct", "timestamp",
                       "type", "wrappers", "descriptor")


class ProtoSchema:
    """A ``.proto`` schema made usable: its message types by message-index path."""

    def __init__(self, pool: Any, proto: Any) -> None:
        self.pool = pool
        self.proto = proto  # the FileDescriptorProto built from the text
        self._classes: dict[tuple[int, ...], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(package={self.proto.package!r}, messages={self.message_names()})"

    def message_names(self) -> list[str]:
        """Full names of the file's top-level messages, in order."""
        prefix = f"{self.proto.package}." if self.proto.package else ""
        return [prefix + m.name for m in self.proto.message_type]

    def message_class(self, indexes: Sequence[int]) -> Any:
        """The message class at ``indexes`` (Confluent's message-index path).

        :raises ValueError: a path that names no message.
        """
        key = tuple(indexes)
        found = self._classes.get(key)
        if found is None:
            name = self.proto.package
            messages = self.proto.message_type
            for depth, index in enumerate(key):
                if not 0 <= index < len(messages):
                    where = "the file" if depth == 0 else f"message {name}"
                    raise ValueError(f"message index {list(key)} names no message: {where} has {len(messages)}")
                name = f"{name}.{messages[index].name}" if name else messages[index].name
                messages = messages[index].nested_type
            found = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))
            self._classes[key] = found
        return found

    def indexes_of(self, name: str | None) -> list[int]:
        """The message-index path of message ``name`` (full, or relative to the
        package, nested with dots); the first message when ``name`` is None.

        :raises ValueError: no such message.
        """
        if not self.proto.message_type:
            raise ValueError("the schema declares no message")
        if name is None:
            return [0]
        package = self.proto.package
        relative = name.lstrip(".")
        if package and relative.startswith(package + "."):
            relative = relative[len(package) + 1:]
        path: list[int] = []
        messages = self.proto.message_type
        for part in relative.split("."):
            found = next((i for i, m in enumerate(messages) if m.name == part), None)
            if found is None:
                raise ValueError(f"the schema has no message {name!r} (it has {', '.join(self.message_names())})")
            path.append(found)
            messages = messages[found].nested_type
        return path


def build(text: str, imports: Mapping[str, str]) -> ProtoSchema:
    """The schema ``text`` with its imports, ``imports`` mapping each import path
    to its text, dependencies first (as ``referenced_schemas`` gives them).

    :raises ValueError: a text that does not parse, a type or import that
        resolves to nothing, a file the descriptor pool refuses.
    """
    pool = descriptor_pool.DescriptorPool()
    known: dict[str, int] = {}  # full name -> _F.TYPE_MESSAGE or _F.TYPE_ENUM, of every file in the pool
    added: set[str] = set()
    for path, body in imports.items():
        _add(pool, _parse(body, f"import {path!r}"), path, imports, known, added)
    name = "schema.proto"
    while name in imports:
        name = "_" + name
    proto = _add(pool, _parse(text, "schema"), name, imports, known, added)
    return ProtoSchema(pool, proto)


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
    if path.startswith("google/protobuf/"):
        module = path.removeprefix("google/protobuf/").removesuffix(".proto")
        if module in _WELL_KNOWN_MODULES:
            importlib.import_module(f"google.protobuf.{module}_pb2")
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


def _enum(out: Any, enum: ast.Enum) -> None:
    out.name = enum.name
    for element in enum.elements:
        if isinstance(element, ast.EnumValue):
            out.value.add(name=element.name, number=element.number)
        elif isinstance(element, ast.Option) and element.name == "allow_alias":
            out.options.allow_alias = bool(_literal(element.value))


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
                out.json_name = str(value)
            elif option.name == "default":
                out.default_value = ("true" if value else "false") if isinstance(value, bool) else str(value)
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
