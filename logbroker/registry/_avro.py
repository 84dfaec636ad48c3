"""Avro schemas: parsing (fastavro, plus the checks of Avro's own parser that
fastavro leaves out), the canonical form, and Avro's schema resolution rules
as Apache Avro's ``SchemaCompatibility`` applies them, which is what
Confluent's registry uses.

Errors for the user are raised as ``ValueError`` (the caller turns them into
``InvalidSchemaError``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro.schema import SchemaParseException, UnknownType
from fastavro.schema import parse_schema as _fastavro_parse

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_COMPLEX = _NAMED | {"array", "map"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Which writer types a reader type reads besides its own (Avro's promotions).
_PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "string": {"bytes"},
    "bytes": {"string"},
}


@dataclass(frozen=True, slots=True)
class AvroModel:
    """A parsed Avro schema: fastavro's form (full names) and every named type
    it can use, its own and those of its references, by full name."""

    root: Any
    names: Mapping[str, Any]


def parse(text: str, resolved: Mapping[str, str]) -> tuple[str, str, AvroModel]:
    """``(text, canonical, model)`` of an Avro schema; ``resolved`` holds the
    texts of the schemas defining the named types it references.

    :raises ValueError: bad JSON, unknown type, a broken rule of Avro.
    """
    named: dict[str, Any] = {}
    _load_references(resolved, named)
    own = dict(named)
    obj = _json(text, "schema")
    _require_fields(obj)
    parsed = _parse_one(obj, own)
    _validate(parsed, set(named))
    return text, json.dumps(_normalise(parsed), sort_keys=True, separators=(",", ":")), AvroModel(parsed, own)


def reader_errors(reader: object, writer: object, reader_role: str, writer_role: str) -> list[str]:
    """Why data written with ``writer`` may not be readable with ``reader``;
    the roles ("new", "old") name the two schemas in the messages."""
    assert isinstance(reader, AvroModel) and isinstance(writer, AvroModel)
    checker = _Checker(reader.names, writer.names)
    found = checker.check(reader.root, writer.root, [])
    return [_message(kind, location, detail, reader_role, writer_role) for kind, location, detail in found]


# -- parsing ------------------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"Invalid Avro {what}: not JSON ({exc})") from None


def _parse_one(obj: Any, named: dict[str, Any]) -> Any:
    """fastavro's parse, its errors worded for the user; ``named`` gains the
    named types ``obj`` defines."""
    try:
        return _fastavro_parse(obj, named_schemas=named)
    except UnknownType as exc:
        name = exc.name.get("type") if isinstance(exc.name, dict) else exc.name
        raise ValueError(f"Invalid Avro schema: unknown type {name!r} (a named type defined in another "
                         "subject needs a reference)") from None
    except KeyError as exc:
        raise ValueError(f"Invalid Avro schema: missing attribute {exc.args[0]!r}") from None
    except (SchemaParseException, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"Invalid Avro schema: {str(exc) or type(exc).__name__}") from None


def _load_references(resolved: Mapping[str, str], named: dict[str, Any]) -> None:
    """Parse the referenced schemas into ``named``, in whichever order their
    own references allow (the caller's mapping need not be ordered)."""
    pending = {name: _json(text, f"reference {name!r}") for name, text in resolved.items()}
    while pending:
        problem = ""
        for name, obj in list(pending.items()):
            trial = dict(named)
            try:
                _parse_one(obj, trial)
            except ValueError as exc:
                problem = f"reference {name!r}: {exc}"
                continue
            named.update(trial)
            del pending[name]
            problem = ""  # progress: the ones left may parse on the next pass
            break
        if problem:
            raise ValueError(f"Invalid Avro {problem}")


def _require_fields(node: Any) -> None:
    """Records must list their fields (fastavro would take none as ``[]``)."""
    if isinstance(node, list):
        for branch in node:
            _require_fields(branch)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "error"):
            if not isinstance(node.get("fields"), list):
                raise ValueError(f"Invalid Avro schema: record {node.get('name')!r} has no fields")
            for f in node["fields"]:
                if isinstance(f, dict):
                    _require_fields(f.get("type"))
        elif isinstance(kind, (dict, list)):
            _require_fields(kind)
        _require_fields(node.get("items") if kind == "array" else node.get("values") if kind == "map" else None)


def _validate(node: Any, defined: set[str]) -> None:
    """The rules of Avro's parser that fastavro does not enforce: names, unique
    field names, fields present, no redefinition, unions without duplicates or
    nested unions."""
    if isinstance(node, list):
        seen: set[str] = set()
        for branch in node:
            if isinstance(branch, list):
                raise ValueError("Invalid Avro schema: a union may not immediately contain another union")
            key = _branch_key(branch)
            if key in seen:
                raise ValueError(f"Invalid Avro schema: duplicate {key!r} in a union")
            seen.add(key)
            _validate(branch, defined)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in _COMPLEX:
        if isinstance(kind, (dict, list)):
            _validate(kind, defined)
        return
    if kind in _NAMED:
        name = str(node.get("name", ""))
        if not all(_NAME.fullmatch(part) for part in name.split(".")):
            raise ValueError(f"Invalid Avro schema: {name!r} is not a valid name")
        if name in defined:
            raise ValueError(f"Invalid Avro schema: can't redefine {name!r}")
        defined.add(name)
    if kind in ("record", "error"):
        names: set[str] = set()
        for f in node["fields"]:
            if not _NAME.fullmatch(str(f.get("name"))):
                raise ValueError(f"Invalid Avro schema: field name {f.get('name')!r} is not a valid name")
            if f["name"] in names:
                raise ValueError(f"Invalid Avro schema: duplicate field {f['name']!r} in {node.get('name')!r}")
            names.add(f["name"])
            _validate(f["type"], defined)
    elif kind == "enum":
        symbols = node.get("symbols") or []
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"Invalid Avro schema: duplicate symbols in enum {node.get('name')!r}")
    elif kind == "fixed":
        if not isinstance(node.get("size"), int) or node["size"] < 0:
            raise ValueError(f"Invalid Avro schema: fixed {node.get('name')!r} needs a size >= 0")
    elif kind == "array":
        _validate(node["items"], defined)
    elif kind == "map":
        _validate(node["values"], defined)


def _branch_key(branch: Any) -> str:
    if isinstance(branch, str):
        return branch
    if isinstance(branch, dict):
        kind = branch.get("type")
        if isinstance(kind, str) and kind in _NAMED:
            return str(branch.get("name"))
        if isinstance(kind, str):
            return kind
    return json.dumps(branch, sort_keys=True)


def _normalise(node: Any) -> Any:
    """The schema with fastavro's markers dropped and ``{"type": T}`` written
    ``T``; names are already full (fastavro folds ``namespace`` into them)."""
    if isinstance(node, list):
        return [_normalise(branch) for branch in node]
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not k.startswith("__fastavro") and k != "__named_schemas"}
    kind = out.get("type")
    if isinstance(kind, (dict, list)):
        out["type"] = _normalise(kind)
    elif kind in ("record", "error"):
        out["fields"] = [{**f, "type": _normalise(f["type"])} for f in out.get("fields", [])]
    elif kind == "array":
        out["items"] = _normalise(out["items"])
    elif kind == "map":
        out["values"] = _normalise(out["values"])
    if set(out) == {"type"}:
        return out["type"]
    return out


# -- compatibility --------------------------------------------------------------

_Found = list[tuple[str, str, str]]  # (rule, location, detail)


class _Checker:
    """Apache Avro's reader/writer check: memoised per pair of types, a pair met
    again while being checked (a recursive type) counts as compatible."""

    def __init__(self, reader_names: Mapping[str, Any], writer_names: Mapping[str, Any]) -> None:
        self.reader_names = reader_names
        self.writer_names = writer_names
        self.memo: dict[tuple[int, int], _Found | None] = {}

    def check(self, reader: Any, writer: Any, location: list[str]) -> _Found:
        reader = _resolve(reader, self.reader_names)
        writer = _resolve(writer, self.writer_names)
        if not (isinstance(reader, dict) and isinstance(writer, dict) and _kind(reader) in _NAMED):
            return self._calculate(reader, writer, location)  # only named types recur
        key = (id(reader), id(writer))
        if key in self.memo:
            return self.memo[key] or []
        self.memo[key] = None
        found = self._calculate(reader, writer, location)
        self.memo[key] = found
        return found

    def _calculate(self, reader: Any, writer: Any, location: list[str]) -> _Found:
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind == w_kind:
            if r_kind in PRIMITIVES:
                return []
            if r_kind == "array":
                return self.check(reader["items"], writer["items"], [*location, "items"])
            if r_kind == "map":
                return self.check(reader["values"], writer["values"], [*location, "values"])
            if r_kind == "fixed":
                found = _check_names(reader, writer, location)
                if reader["size"] != writer["size"]:
                    found.append(("FIXED_SIZE_MISMATCH", _pointer([*location, "size"]),
                                  f"expected: {writer['size']}, found: {reader['size']}"))
                return found
            if r_kind == "enum":
                return _check_names(reader, writer, location) + _check_symbols(reader, writer, location)
            if r_kind == "record":
                return _check_names(reader, writer, location) + self._check_fields(reader, writer, location)
            found = []  # two unions: every writer branch must be readable
            for index, branch in enumerate(writer):
                if self.check(reader, branch, [*location, str(index)]):
                    lacking = _kind(_resolve(branch, self.writer_names)).upper()
                    found.append(("MISSING_UNION_BRANCH", _pointer([*location, str(index)]),
                                  f"reader union lacking writer type: {lacking}"))
            return found
        if w_kind == "union":
            found = []
            for branch in writer:
                found += self.check(reader, branch, location)
            return found
        if r_kind == "union":
            if any(not self.check(branch, writer, location) for branch in reader):
                return []
            return [("MISSING_UNION_BRANCH", _pointer(location), f"reader union lacking writer type: {w_kind.upper()}")]
        if w_kind in _PROMOTIONS.get(r_kind, ()):
            return []
        return [("TYPE_MISMATCH", _pointer(location),
                 f"reader type: {r_kind.upper()} not compatible with writer type: {w_kind.upper()}")]

    def _check_fields(self, reader: Any, writer: Any, location: list[str]) -> _Found:
        found: _Found = []
        by_name = {f["name"]: f for f in writer.get("fields", [])}
        for position, field in enumerate(reader.get("fields", [])):
            here = [*location, "fields", str(position)]
            source = next((by_name[n] for n in [field["name"], *field.get("aliases", [])] if n in by_name), None)
            if source is None:
                if "default" not in field:
                    found.append(("READER_FIELD_MISSING_DEFAULT_VALUE", _pointer(here), field["name"]))
            else:
                found += self.check(field["type"], source["type"], [*here, "type"])
        return found


def _resolve(node: Any, names: Mapping[str, Any]) -> Any:
    """The definition ``node`` stands for: a primitive's name, a union's list, or
    a complex type's dict (named types always the one object in ``names``)."""
    while True:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return node
            node = names[node]
            continue
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind in PRIMITIVES:
                return kind  # logical types read as their underlying type, as in Avro
            if isinstance(kind, str) and kind in _NAMED:
                return names.get(node["name"], node)
            if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _COMPLEX):
                node = kind
                continue
        return node


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    kind = str(node["type"])
    return "record" if kind == "error" else kind


def _check_names(reader: Any, writer: Any, location: list[str]) -> _Found:
    r_full, w_full = str(reader["name"]), str(writer["name"])
    namespace = r_full.rpartition(".")[0]
    aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in reader.get("aliases", [])}
    if r_full.rpartition(".")[2] == w_full.rpartition(".")[2] or w_full in aliases:
        return []
    return [("NAME_MISMATCH", _pointer([*location, "name"]), f"expected: {w_full}")]


def _check_symbols(reader: Any, writer: Any, location: list[str]) -> _Found:
    missing = sorted(set(writer["symbols"]) - set(reader["symbols"]))
    if not missing or reader.get("default") in reader["symbols"]:
        return []  # a reader's default symbol stands for the ones it lacks
    return [("MISSING_ENUM_SYMBOLS", _pointer([*location, "symbols"]), f"[{', '.join(missing)}]")]


def _pointer(location: list[str]) -> str:
    return "/" + "/".join(token.replace("~", "~0").replace("/", "~1") for token in location)


def _message(kind: str, location: str, detail: str, reader: str, writer: str) -> str:
    if kind == "READER_FIELD_MISSING_DEFAULT_VALUE":
        text = (f"field '{detail}' at {location} in the {reader} schema has no default value and is missing "
                f"in the {writer} schema")
    elif kind == "TYPE_MISMATCH":
        text = f"the type at {location} in the {reader} schema does not match the {writer} schema ({detail})"
    elif kind == "NAME_MISMATCH":
        text = f"the name of the type at {location} differs between the {reader} and the {writer} schema ({detail})"
    elif kind == "MISSING_ENUM_SYMBOLS":
        text = f"the {reader} schema is missing enum symbols {detail} at {location} that the {writer} schema has"
    elif kind == "MISSING_UNION_BRANCH":
        text = (f"the {reader} schema is missing a type of the union at {location} in the {writer} schema "
                f"({detail})")
    else:
        text = f"the fixed size at {location} in the {reader} schema differs from the {writer} schema ({detail})"
    return f"{kind}: {text}"
