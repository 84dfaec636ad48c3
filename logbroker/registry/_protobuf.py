"""Protobuf schemas: parsing ``.proto`` text (proto-schema-parser) or a base64
``FileDescriptorProto`` (what Confluent's Python serializer sends; needs the
``protobuf`` package), checks of what the parser leaves to ``protoc`` (field
numbers, names, types and imports that resolve), the canonical rendering,
and Confluent's Protobuf difference rules.

Confluent compares an ``original`` (the writer's schema) with an ``update``
(the reader's); only the difference kinds it holds incompatible are
collected here. Errors for the user are raised as ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from proto_schema_parser import ast
from proto_schema_parser.generator import Generator
from proto_schema_parser.parser import Parser

_GENERAL_NUMBER = "GENERAL_NUMBER"
# Scalars that share a wire encoding, so one reads the other (Confluent's groups).
_SCALAR_KINDS = {
    "int32": _GENERAL_NUMBER, "int64": _GENERAL_NUMBER, "uint32": _GENERAL_NUMBER, "uint64": _GENERAL_NUMBER,
    "bool": _GENERAL_NUMBER, "sint32": "SIGNED_NUMBER", "sint64": "SIGNED_NUMBER",
    "string": "STRING_OR_BYTES", "bytes": "STRING_OR_BYTES", "fixed32": "FIXED32", "sfixed32": "FIXED32",
    "fixed64": "FIXED64", "sfixed64": "FIXED64", "float": "FLOAT", "double": "DOUBLE",
}
_MAX_FIELD_NUMBER = 2**29 - 1
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_WELL_KNOWN = "google/"  # imports of Google's own types need no reference
_FieldLike = ast.Field | ast.MapField | ast.Group


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    element: ast.Message | ast.Enum
    package: str
    source: str  # "" for the schema's own types, else the import that brought it


@dataclass(frozen=True, slots=True)
class ProtoModel:
    """A parsed ``.proto`` file (comments gone) and every message and enum it
    can name, its own and its imports', by full name."""

    file: ast.File
    package: str
    types: Mapping[str, _TypeInfo] = field(default_factory=dict)


def parse(text: str, resolved: Mapping[str, str]) -> tuple[str, str, ProtoModel]:
    """``(text, canonical, model)`` of a Protobuf schema; ``resolved`` holds the
    texts of the files it imports, by import path. A base64 descriptor's text
    is its ``.proto`` rendering.

    :raises ValueError: a text that does not parse, broken numbers or names,
        a type or import that resolves to nothing.
    """
    stripped = text.strip()
    from_descriptor = bool(_BASE64.fullmatch(stripped)) and ";" not in stripped
    tree = _from_descriptor(stripped) if from_descriptor else _parse_text(text, "schema")
    tree = _normalise(tree)
    imported = {name: _normalise(_parse_text(body, f"reference {name!r}")) for name, body in resolved.items()}
    model = _model(tree, imported)
    _validate(model, set(resolved))
    canonical = _render(tree)
    return (canonical if from_descriptor else text), canonical, model


def reader_errors(reader: object, writer: object, reader_role: str, writer_role: str) -> list[str]:
    """Why data written with ``writer`` may not be readable with ``reader``;
    the roles ("new", "old") name the two schemas in the messages."""
    assert isinstance(reader, ProtoModel) and isinstance(writer, ProtoModel)
    found = _Differ(writer, reader).compare()
    out: list[str] = []
    for kind, path in found:
        message = f"{kind}: {_DESCRIPTIONS[kind].format(path=repr(path), r=reader_role, w=writer_role)}"
        if message not in out:
            out.append(message)
    return out


# -- parsing ----------------------------------------------------------------------------


class _RaisingListener:
    """ANTLR error listener that stops at the first syntax error (the default
    one prints it and recovers)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def syntaxError(  # noqa: N802 ANTLR's name
        self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        if len(msg) > 160:  # ANTLR lists every token it expected
            msg = msg[:157] + "..."
        raise ValueError(f"Invalid Protobuf {self.what}: line {line}:{column} {msg}")

    def reportAmbiguity(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass

    def reportContextSensitivity(self, *args: Any) -> None:  # noqa: N802 ANTLR's name
        pass


def _parse_text(text: str, what: str) -> ast.File:
    listener = _RaisingListener(what)

    def quiet(recognizer: Any) -> None:
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(listener)

    try:
        tree = Parser(setup_lexer=quiet, setup_parser=quiet).parse(text)
    except ValueError as exc:
        if str(exc).startswith("Invalid Protobuf"):
            raise
        raise ValueError(f"Invalid Protobuf {what}: {exc}") from None
    except (AttributeError, TypeError, IndexError) as exc:
        raise ValueError(f"Invalid Protobuf {what}: {exc}") from None
    if tree.syntax not in (None, "proto2", "proto3"):
        raise ValueError(f"Invalid Protobuf {what}: unknown syntax {tree.syntax!r}")
    return tree


def _normalise(tree: ast.File) -> ast.File:
    """``tree`` without comments and with options in name order."""
    return replace(tree, file_elements=_elements(tree.file_elements))


def _elements(elements: Sequence[Any]) -> list[Any]:
    kept = [_element(e) for e in elements if not isinstance(e, ast.Comment)]
    options = sorted((e for e in kept if isinstance(e, ast.Option)), key=_option_key)
    others = iter(e for e in kept if not isinstance(e, ast.Option))
    # Options take the places options had, in sorted order; the rest keep theirs.
    sorted_options = iter(options)
    return [next(sorted_options) if isinstance(e, ast.Option) else next(others) for e in kept]


def _element(element: Any) -> Any:
    changes: dict[str, Any] = {}
    if isinstance(element, (ast.Message, ast.OneOf, ast.Enum, ast.Service, ast.Group, ast.Extension, ast.Method)):
        changes["elements"] = _elements(element.elements)
    if isinstance(element, (ast.Field, ast.MapField, ast.EnumValue, ast.ExtensionRange)):
        changes["options"] = sorted(element.options, key=_option_key)
    return replace(element, **changes) if changes else element


def _option_key(option: ast.Option) -> str:
    return f"{option.name}={option.value!r}"


def _render(tree: ast.File) -> str:
    """The file as ``.proto`` text: header, then each element as proto-schema-parser
    writes it, except file options, which it writes wrongly for identifiers."""
    lines = [f'syntax = "{tree.syntax}";'] if tree.syntax else [f'edition = "{tree.edition}";'] if tree.edition else []
    generator = Generator()
    for element in tree.file_elements:
        if isinstance(element, ast.Option):
            lines.append(f"option {element.name} = {_value(element.value)};")
        else:
            lines.append(generator.generate(ast.File(file_elements=[element])))
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ast.Identifier):
        return value.name
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, ast.MessageLiteral):
        fields = [e for e in value.elements if isinstance(e, ast.MessageLiteralField)]
        return "{ " + ", ".join(f"{f.name}: {_value(f.value)}" for f in fields) + " }"
    return str(value)


# -- base64 descriptors -----------------------------------------------------------------

_TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
          9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64"}


def _from_descriptor(text: str) -> ast.File:
    """A base64 ``FileDescriptorProto`` as a ``.proto`` tree. Of the options,
    map entries, the field options ``packed``, ``deprecated``, ``json_name``
    and ``default``, and enums' ``allow_alias`` are carried over (so the
    descriptor :mod:`logbroker.registry.protobuf_descriptor` builds from the
    text encodes and decodes as the original); file, message and custom
    options are not."""
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Invalid Protobuf schema: neither .proto text nor a base64 FileDescriptorProto") from None
    try:
        # Imported here: only binary descriptors need protobuf, which ships no type information.
        from google.protobuf import descriptor_pb2  # type: ignore[import-untyped]  # no type information
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # no type information
    except ImportError:
        raise ValueError("Invalid Protobuf schema: a base64 FileDescriptorProto needs the protobuf package on "
                         "the broker; send the .proto text instead") from None
    fd = descriptor_pb2.FileDescriptorProto()
    try:
        fd.ParseFromString(raw)
    except DecodeError:
        raise ValueError("Invalid Protobuf schema: neither .proto text nor a base64 FileDescriptorProto") from None
    syntax = fd.syntax or "proto2"
    elements: list[Any] = []
    if fd.package:
        elements.append(ast.Package(fd.package))
    public = set(fd.public_dependency)
    elements += [ast.Import(name, public=index in public) for index, name in enumerate(fd.dependency)]
    elements += [_descriptor_message(m, syntax) for m in fd.message_type]
    elements += [_descriptor_enum(e) for e in fd.enum_type]
    for service in fd.service:
        elements.append(ast.Service(service.name, [
            ast.Method(m.name, ast.MessageType(m.input_type, m.client_streaming),
                       ast.MessageType(m.output_type, m.server_streaming)) for m in service.method]))
    return ast.File(syntax=syntax, file_elements=elements)


def _descriptor_message(message: Any, syntax: str) -> ast.Message:
    entries = {n.name: n for n in message.nested_type if n.options.map_entry}
    nested = list(message.nested_type)
    shown = 0  # nested types up to here are in ``elements``: each comes before the map field that follows it
    elements: list[Any] = []
    oneofs: dict[int, ast.OneOf] = {}
    for f in message.field:
        entry_name = f.type_name.rpartition(".")[2]
        if f.label == 3 and f.type == 11 and entry_name in entries:
            at = next(i for i, n in enumerate(nested) if n.name == entry_name)
            elements += [_descriptor_message(n, syntax) for n in nested[shown:at] if not n.options.map_entry]
            shown = max(shown, at + 1)
            key, value = entries[entry_name].field
            elements.append(ast.MapField(f.name, f.number, _descriptor_type(key), _descriptor_type(value)))
            continue
        if f.type == 10:
            raise ValueError(f"Invalid Protobuf schema: group {f.name!r} in a binary descriptor is not supported")
        cardinality = {2: ast.FieldCardinality.REQUIRED, 3: ast.FieldCardinality.REPEATED}.get(f.label)
        if cardinality is None and (syntax == "proto2" or f.proto3_optional):
            cardinality = ast.FieldCardinality.OPTIONAL
        parsed = ast.Field(f.name, f.number, _descriptor_type(f), cardinality, _descriptor_field_options(f))
        if f.HasField("oneof_index") and not f.proto3_optional:
            if f.oneof_index not in oneofs:
                oneofs[f.oneof_index] = ast.OneOf(message.oneof_decl[f.oneof_index].name)
                elements.append(oneofs[f.oneof_index])
            oneofs[f.oneof_index].elements.append(replace(parsed, cardinality=None))
        else:
            elements.append(parsed)
    for r in message.reserved_range:
        elements.append(ast.Reserved(ranges=[str(r.start) if r.end - 1 == r.start else f"{r.start} to {r.end - 1}"]))
    if message.reserved_name:
        elements.append(ast.Reserved(names=list(message.reserved_name)))
    elements += [_descriptor_message(n, syntax) for n in nested[shown:] if not n.options.map_entry]
    elements += [_descriptor_enum(e) for e in message.enum_type]
    return ast.Message(message.name, elements)


def _descriptor_field_options(f: Any) -> list[ast.Option]:
    """The options of a descriptor's field that change its encoding, its
    default or its JSON name, as ``.proto`` options."""
    options: list[ast.Option] = []
    if f.options.HasField("packed"):
        options.append(ast.Option("packed", bool(f.options.packed)))
    if f.options.HasField("deprecated"):
        options.append(ast.Option("deprecated", bool(f.options.deprecated)))
    if f.HasField("json_name"):
        options.append(ast.Option("json_name", str(f.json_name)))
    if f.HasField("default_value"):
        value: Any = ast.Identifier(f.default_value)  # numbers, booleans, enum value names as they are
        if f.type == 9:  # a string: the value itself, quoted and escaped when rendered
            value = str(f.default_value)
        elif f.type == 12:  # bytes: already C-escaped in the descriptor
            value = ast.Identifier(f'"{f.default_value}"')
        options.append(ast.Option("default", value))
    return options


def _descriptor_type(f: Any) -> str:
    return _TYPES.get(f.type) or str(f.type_name)


def _descriptor_enum(enum: Any) -> ast.Enum:
    elements: list[Any] = []
    if enum.options.HasField("allow_alias"):
        elements.append(ast.Option("allow_alias", bool(enum.options.allow_alias)))
    elements += [ast.EnumValue(v.name, v.number) for v in enum.value]
    for r in enum.reserved_range:
        elements.append(ast.EnumReserved(ranges=[str(r.start) if r.end == r.start else f"{r.start} to {r.end}"]))
    if enum.reserved_name:
        elements.append(ast.EnumReserved(names=list(enum.reserved_name)))
    return ast.Enum(enum.name, elements)


# -- the model: types by full name, and checks ------------------------------------------


def _package(tree: ast.File) -> str:
    return next((e.name for e in tree.file_elements if isinstance(e, ast.Package)), "")


def _collect(elements: Sequence[Any], scope: str, package: str, source: str, into: dict[str, _TypeInfo]) -> None:
    for element in elements:
        if isinstance(element, (ast.Message, ast.Enum)):
            name = f"{scope}.{element.name}" if scope else element.name
            if name in into and into[name].source == source:
                raise ValueError(f"Invalid Protobuf schema: {name!r} is defined twice")
            into[name] = _TypeInfo(element, package, source)
            if isinstance(element, ast.Message):
                _collect(element.elements, name, package, source, into)
                groups = [e for e in _all_fields(element) if isinstance(e, ast.Group)]
                for group in groups:
                    into[f"{name}.{group.name}"] = _TypeInfo(ast.Message(group.name, group.elements), package, source)


def _model(tree: ast.File, imported: Mapping[str, ast.File]) -> ProtoModel:
    types: dict[str, _TypeInfo] = {}
    for name, other in imported.items():
        _collect(other.file_elements, _package(other), _package(other), name, types)
    own: dict[str, _TypeInfo] = {}
    _collect(tree.file_elements, _package(tree), _package(tree), "", own)
    types.update(own)
    return ProtoModel(tree, _package(tree), types)


def _all_fields(message: ast.Message) -> Iterator[_FieldLike]:
    """Fields of ``message``, those inside its oneofs included."""
    for element in message.elements:
        if isinstance(element, (ast.Field, ast.MapField, ast.Group)):
            yield element
        elif isinstance(element, ast.OneOf):
            yield from (e for e in element.elements if isinstance(e, (ast.Field, ast.Group)))


def _resolve(types: Mapping[str, _TypeInfo], name: str, scope: str) -> str | None:
    """The full name ``name`` stands for when written in ``scope``, or None."""
    if name.startswith("."):
        return name[1:] if name[1:] in types else None
    parts = scope.split(".") if scope else []
    for depth in range(len(parts), -1, -1):
        candidate = ".".join([*parts[:depth], name])
        if candidate in types:
            return candidate
    return None


def _validate(model: ProtoModel, references: set[str]) -> None:
    for element in model.file.file_elements:
        if isinstance(element, ast.Import) and element.name not in references \
                and not element.name.startswith(_WELL_KNOWN):
            raise ValueError(f"Invalid Protobuf schema: import {element.name!r} is not among the references")
    for name, info in model.types.items():
        if info.source or not isinstance(info.element, ast.Message):
            continue
        numbers: dict[int, str] = {}
        names: set[str] = set()
        for f in _all_fields(info.element):
            if f.name in names:
                raise ValueError(f"Invalid Protobuf schema: field {f.name!r} is defined twice in {name!r}")
            names.add(f.name)
            if f.number in numbers:
                raise ValueError(f"Invalid Protobuf schema: fields {numbers[f.number]!r} and {f.name!r} of {name!r} "
                                 f"both use number {f.number}")
            numbers[f.number] = f.name
            if not 1 <= f.number <= _MAX_FIELD_NUMBER or 19000 <= f.number <= 19999:
                raise ValueError(f"Invalid Protobuf schema: field {f.name!r} of {name!r} has number {f.number}, "
                                 f"outside 1..{_MAX_FIELD_NUMBER} or in the reserved 19000..19999")
            for type_name in _type_names(f):
                if type_name not in _SCALAR_KINDS and not type_name.lstrip(".").startswith("google.") \
                        and _resolve(model.types, type_name, name) is None:
                    raise ValueError(f"Invalid Protobuf schema: field {f.name!r} of {name!r} has type "
                                     f"{type_name!r}, which is not defined or imported")


def _type_names(f: _FieldLike) -> list[str]:
    if isinstance(f, ast.MapField):
        return [f.key_type, f.value_type]
    if isinstance(f, ast.Group):
        return []
    return [f.type]


# -- the differences ---------------------------------------------------------------------

_Found = list[tuple[str, str]]  # (kind, path)

_DESCRIPTIONS = {
    "PACKAGE_CHANGED": "the package differs between the {r} and the {w} schema (at {path})",
    "MESSAGE_REMOVED": "the {r} schema is missing the message at {path} that the {w} schema has",
    "FIELD_KIND_CHANGED": "the field at {path} is a scalar, a message or a map in the {r} schema and another "
                          "of those in the {w} schema",
    "FIELD_SCALAR_KIND_CHANGED": "the type of the field at {path} differs between the {r} and the {w} schema "
                                 "and the two do not share an encoding",
    "FIELD_NAMED_TYPE_CHANGED": "the message type of the field at {path} differs between the {r} and the {w} schema",
    "FIELD_NUMERIC_LABEL_CHANGED": "the numeric field at {path} is repeated in one of the {r} and the {w} schema "
                                   "and not in the other",
    "REQUIRED_FIELD_ADDED": "the {r} schema has a required field at {path} that the {w} schema has not",
    "REQUIRED_FIELD_REMOVED": "the {r} schema is missing the required field at {path} of the {w} schema",
    "ONEOF_FIELD_REMOVED": "the {r} schema is missing the field of a oneof at {path} that the {w} schema has",
    "MULTIPLE_FIELDS_MOVED_TO_ONEOF": "the {r} schema moves more than one field of the {w} schema into the oneof "
                                      "at {path}",
    "FIELD_MOVED_TO_EXISTING_ONEOF": "the {r} schema moves a field into the oneof at {path}, which holds fields of "
                                     "a oneof of the {w} schema",
}


class _Differ:
    """Confluent's Protobuf ``SchemaDiff``, original (writer) against update
    (reader). A pair of messages met again while being compared (a recursive
    type) counts as compatible."""

    def __init__(self, original: ProtoModel, update: ProtoModel) -> None:
        self.original = original
        self.update = update
        self.in_progress: set[tuple[int, int]] = set()

    def compare(self) -> _Found:
        found: _Found = []
        if self.original.package != self.update.package:
            found.append(("PACKAGE_CHANGED", "#/"))
        found += self._types(self.original.file.file_elements, self.update.file.file_elements,
                             self.original.package, self.update.package, [])
        return found

    def _types(self, original: Sequence[Any], update: Sequence[Any], o_scope: str, u_scope: str,
               path: list[str]) -> _Found:
        found: _Found = []
        o_messages = {e.name: e for e in original if isinstance(e, ast.Message)}
        u_messages = {e.name: e for e in update if isinstance(e, ast.Message)}
        for name in sorted(set(o_messages) | set(u_messages)):
            here = [*path, name]
            if name not in u_messages:
                found.append(("MESSAGE_REMOVED", _path(here)))
            elif name in o_messages:  # a message added, moved or an enum changed is compatible
                found += self._message(o_messages[name], u_messages[name], _join(o_scope, name),
                                       _join(u_scope, name), here)
        return found

    def _message(self, o: ast.Message, u: ast.Message, o_scope: str, u_scope: str, path: list[str]) -> _Found:
        key = (id(o), id(u))
        if key in self.in_progress:
            return []
        self.in_progress.add(key)
        try:
            return self._message_fields(o, u, o_scope, u_scope, path) + self._types(
                o.elements, u.elements, o_scope, u_scope, path)
        finally:
            self.in_progress.discard(key)

    def _message_fields(self, o: ast.Message, u: ast.Message, o_scope: str, u_scope: str,
                        path: list[str]) -> _Found:
        found: _Found = []
        o_top = {f.number: f for f in o.elements if isinstance(f, (ast.Field, ast.MapField, ast.Group))}
        u_top = {f.number: f for f in u.elements if isinstance(f, (ast.Field, ast.MapField, ast.Group))}
        o_oneofs = {e.name: e for e in o.elements if isinstance(e, ast.OneOf)}
        u_oneofs = {e.name: e for e in u.elements if isinstance(e, ast.OneOf)}
        o_all = {f.number: f for f in _all_fields(o)}
        u_all = {f.number: f for f in _all_fields(u)}
        o_in_oneof = {f.number: name for name, one in o_oneofs.items() for f in one.elements
                      if isinstance(f, (ast.Field, ast.Group))}
        u_in_oneof = {f.number: name for name, one in u_oneofs.items() for f in one.elements
                      if isinstance(f, (ast.Field, ast.Group))}
        for name, one in u_oneofs.items():
            numbers = [f.number for f in one.elements if isinstance(f, (ast.Field, ast.Group))]
            moved = [n for n in numbers if n in o_top]
            existing = [n for n in numbers if n not in o_top and n in o_in_oneof]
            for n in moved:
                del o_top[n]  # moved into a oneof, not removed
            if len(moved) > 1:
                found.append(("MULTIPLE_FIELDS_MOVED_TO_ONEOF", _path([*path, name])))
            elif len(moved) == 1 and existing:
                found.append(("FIELD_MOVED_TO_EXISTING_ONEOF", _path([*path, name])))
        for name in sorted(set(o_oneofs) & set(u_oneofs)):
            o_fields = {f.number: f for f in o_oneofs[name].elements if isinstance(f, (ast.Field, ast.Group))}
            u_fields = {f.number: f for f in u_oneofs[name].elements if isinstance(f, (ast.Field, ast.Group))}
            for number in sorted(set(o_fields) | set(u_fields)):
                here = [*path, name, str(number)]
                if number not in u_fields:
                    if number not in u_all:
                        found.append(("ONEOF_FIELD_REMOVED", _path(here)))
                elif number in o_fields:
                    found += self._field(o_fields[number], u_fields[number], o_scope, u_scope, here)
        for number in sorted(set(o_top) | set(u_top)):
            here = [*path, str(number)]
            if number not in u_top:
                if _label(o_top[number]) == ast.FieldCardinality.REQUIRED:
                    found.append(("REQUIRED_FIELD_REMOVED", _path(here)))
            elif number not in o_top:
                if _label(u_top[number]) == ast.FieldCardinality.REQUIRED:
                    found.append(("REQUIRED_FIELD_ADDED", _path(here)))
            else:
                found += self._field(o_top[number], u_top[number], o_scope, u_scope, here)
        for number in sorted(set(o_all) & set(u_all)):  # fields that moved into, out of or between oneofs
            o_group, u_group = o_in_oneof.get(number), u_in_oneof.get(number)
            if (o_group is None and u_group is None) or (o_group is not None and o_group == u_group):
                continue
            found += self._field(o_all[number], u_all[number], o_scope, u_scope, [*path, str(number)])
        return found

    def _field(self, o: _FieldLike, u: _FieldLike, o_scope: str, u_scope: str, path: list[str]) -> _Found:
        found = self._type(_field_type(o), _field_type(u), o_scope, u_scope, path)
        if not found and _kind(self.original, _field_type(o), o_scope) == "SCALAR":
            repeated = (_label(o) == ast.FieldCardinality.REPEATED, _label(u) == ast.FieldCardinality.REPEATED)
            scalar = _SCALAR_KINDS.get(str(_field_type(o)), _GENERAL_NUMBER)
            if repeated[0] != repeated[1] and scalar != "STRING_OR_BYTES":
                found.append(("FIELD_NUMERIC_LABEL_CHANGED", _path(path)))
        return found

    def _type(self, o: str | tuple[str, str], u: str | tuple[str, str], o_scope: str, u_scope: str,
              path: list[str]) -> _Found:
        o_kind, u_kind = _kind(self.original, o, o_scope), _kind(self.update, u, u_scope)
        if o_kind != u_kind:
            return [("FIELD_KIND_CHANGED", _path(path))]
        if isinstance(o, tuple) and isinstance(u, tuple):
            return (self._type(o[0], u[0], o_scope, u_scope, path)
                    + self._type(o[1], u[1], o_scope, u_scope, path))
        assert isinstance(o, str) and isinstance(u, str)
        if o_kind == "SCALAR":
            if _SCALAR_KINDS.get(o, _GENERAL_NUMBER) != _SCALAR_KINDS.get(u, _GENERAL_NUMBER):  # enums: numbers
                return [("FIELD_SCALAR_KIND_CHANGED", _path(path))]
            return []
        o_full = _resolve(self.original.types, o, o_scope)
        u_full = _resolve(self.update.types, u, u_scope)
        if o_full is None or u_full is None:
            return [] if o.lstrip(".") == u.lstrip(".") else [("FIELD_NAMED_TYPE_CHANGED", _path(path))]
        o_info, u_info = self.original.types[o_full], self.update.types[u_full]
        if _local(o_full, o_info) != _local(u_full, u_info):
            return [("FIELD_NAMED_TYPE_CHANGED", _path(path))]
        if not (o_info.source or u_info.source):
            return []  # both the schemas' own: compared where they are defined
        assert isinstance(o_info.element, ast.Message) and isinstance(u_info.element, ast.Message)
        inner = self._message(o_info.element, u_info.element, o_full, u_full, [_local(o_full, o_info)])
        return inner + [("FIELD_NAMED_TYPE_CHANGED", _path(path))] if inner else []


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _path(path: list[str]) -> str:
    return "#/" + "/".join(path)


def _local(full: str, info: _TypeInfo) -> str:
    return full[len(info.package) + 1:] if info.package and full.startswith(info.package + ".") else full


def _label(f: _FieldLike) -> ast.FieldCardinality | None:
    return None if isinstance(f, ast.MapField) else f.cardinality


def _field_type(f: _FieldLike) -> str | tuple[str, str]:
    if isinstance(f, ast.MapField):
        return (f.key_type, f.value_type)
    if isinstance(f, ast.Group):
        return f.name
    return f.type


def _kind(model: ProtoModel, type_: str | tuple[str, str], scope: str) -> str:
    if isinstance(type_, tuple):
        return "MAP"
    if type_ in _SCALAR_KINDS:
        return "SCALAR"
    full = _resolve(model.types, type_, scope)
    if full is not None and isinstance(model.types[full].element, ast.Enum):
        return "SCALAR"
    return "MESSAGE"

