"""JSON Schema schemas: parsing (checked against the metaschema the document
names, draft-07 when it names none, as Confluent's registry defaults to),
``$ref`` resolution across referenced schemas, the canonical form, and
Confluent's JSON Schema difference rules.

Confluent compares an ``original`` (the writer's schema) with an ``update``
(the reader's) and lists differences; some kinds are compatible, the rest
are not. Only the incompatible kinds matter for a verdict, so only those are
collected here. Errors for the user are raised as ``ValueError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urljoin

# jsonschema ships no type information.
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]  # no type information
from jsonschema.validators import Draft7Validator, validator_for  # type: ignore[import-untyped]  # no type information

_OBJECT_WORDS = ("properties", "required", "additionalProperties", "patternProperties", "minProperties",
                 "maxProperties", "dependencies", "dependentRequired", "dependentSchemas")
_ARRAY_WORDS = ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems")
_STRING_WORDS = ("minLength", "maxLength", "pattern")
_NUMBER_WORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_COMBINERS = ("allOf", "anyOf", "oneOf")
_NOT_SCHEMAS = frozenset({"enum", "const", "default", "examples"})  # values here are data, not schemas


@dataclass(frozen=True, slots=True)
class JsonModel:
    """A parsed JSON Schema and the documents its ``$ref``s may name, by
    reference name."""

    root: Any
    documents: Mapping[str, Any]


def parse(text: str, resolved: Mapping[str, str]) -> tuple[str, str, JsonModel]:
    """``(text, canonical, model)`` of a JSON Schema; ``resolved`` holds the
    texts of the schemas its ``$ref``s name.

    :raises ValueError: bad JSON, a document its metaschema refuses, a
        ``$ref`` that resolves to nothing.
    """
    root = _load(text, "schema")
    documents = {name: _load(body, f"reference {name!r}") for name, body in resolved.items()}
    if not isinstance(root, (dict, bool)):
        raise ValueError(f"Invalid JSON schema: a schema is a JSON object or a boolean, not {type(root).__name__}")
    try:
        validator_for(root, default=Draft7Validator).check_schema(root)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ValueError(f"Invalid JSON schema: {exc.message} (at #/{where})") from None
    model = JsonModel(root, documents)
    for document in (root, *documents.values()):
        for ref in _refs(document):
            if _follow(model, document, ref) is None:
                raise ValueError(f"Invalid JSON schema: $ref {ref!r} resolves to nothing (is it a reference?)")
    return text, json.dumps(root, sort_keys=True, separators=(",", ":")), model


def reader_errors(reader: object, writer: object, reader_role: str, writer_role: str) -> list[str]:
    """Why data valid for ``writer`` may not be valid for ``reader``; the roles
    ("new", "old") name the two schemas in the messages."""
    assert isinstance(reader, JsonModel) and isinstance(writer, JsonModel)
    differ = _Differ(writer, reader)
    found = differ.compare((writer.root, writer.root), (reader.root, reader.root), [])
    out: list[str] = []
    for kind, path in found:
        message = f"{kind}: {_describe(kind, path, reader_role, writer_role)}"
        if message not in out:
            out.append(message)
    return out


# -- parsing and references --------------------------------------------------------


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"Invalid JSON {what}: not JSON ({exc})") from None


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key not in _NOT_SCHEMAS:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


Located = tuple[Any, Any]  # (the document a schema sits in, the schema)


def _follow(model: JsonModel, document: Any, ref: str) -> Located | None:
    """Where ``ref`` (written in ``document``) points, or None."""
    uri, _, fragment = ref.partition("#")
    if uri:
        target = _document(model, document, uri)
        if target is None:
            return None
        document = target
    return _fragment(document, unquote(fragment))


def _document(model: JsonModel, document: Any, uri: str) -> Any:
    """The document ``uri`` names: a reference name, or a document's ``$id``,
    taken as written or against the citing document's ``$id``."""
    base = document.get("$id", "") if isinstance(document, dict) else ""
    wanted = {uri, urljoin(base, uri)} if base else {uri}
    for name, candidate in model.documents.items():
        ident = candidate.get("$id") if isinstance(candidate, dict) else None
        if name in wanted or (base and urljoin(base, name) in wanted) or ident in wanted:
            return candidate
    if isinstance(model.root, dict) and model.root.get("$id") in wanted:
        return model.root
    return None


def _fragment(document: Any, fragment: str) -> Located | None:
    if fragment == "" or fragment.startswith("/"):
        node = document
        for token in fragment.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return document, node
    for node in _walk(document):  # a plain-name fragment: an anchor
        if node.get("$anchor") == fragment or node.get("$id") == "#" + fragment:
            return document, node
    return None


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in _NOT_SCHEMAS:
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


# -- the shape of a schema, as Confluent's JSON Schema library models it -------------


@dataclass(slots=True)
class _Shape:
    """One schema seen as one kind: ``empty`` (true, {}), ``false``, ``string``,
    ``number``, ``boolean``, ``null``, ``object``, ``array``, ``enum``, ``not``,
    or ``combined`` (allOf/anyOf/oneOf of ``subs``; also what a schema mixing
    several of the others becomes, as an allOf)."""

    kind: str
    doc: Any
    raw: Any
    integer: bool = False
    criterion: str = ""
    subs: list[Any] = field(default_factory=list)  # Located or _Shape

    def key(self) -> str:
        return json.dumps([self.kind, self.integer, self.criterion, self.raw], sort_keys=True, default=str)


def _typed(kind: str, doc: Any, raw: Any) -> _Shape:
    if kind == "integer":
        return _Shape("number", doc, raw, integer=True)
    return _Shape(kind, doc, raw)


def _shape(doc: Any, raw: Any) -> _Shape:
    if raw is True:
        return _Shape("empty", doc, raw)
    if raw is False:
        return _Shape("false", doc, raw)
    if not isinstance(raw, dict):
        return _Shape("empty", doc, raw)
    parts: list[_Shape] = []
    types = raw.get("type")
    if isinstance(types, str):
        parts.append(_typed(types, doc, raw))
    elif isinstance(types, list) and types:
        typed = [_typed(str(t), doc, raw) for t in dict.fromkeys(types)]
        parts.append(typed[0] if len(typed) == 1 else _Shape("combined", doc, raw, criterion="anyOf", subs=typed))
    else:
        implied = [kind for kind, words in (("object", _OBJECT_WORDS), ("array", _ARRAY_WORDS),
                                            ("string", _STRING_WORDS), ("number", _NUMBER_WORDS))
                   if any(word in raw for word in words)]
        typed = [_Shape(kind, doc, raw) for kind in implied]
        if typed:
            parts.append(typed[0] if len(typed) == 1 else _Shape("combined", doc, raw, criterion="anyOf", subs=typed))
    if "enum" in raw:
        parts.append(_Shape("enum", doc, raw["enum"]))
    if "const" in raw:
        parts.append(_Shape("enum", doc, [raw["const"]]))
    for criterion in _COMBINERS:
        if isinstance(raw.get(criterion), list):
            parts.append(_Shape("combined", doc, raw[criterion], criterion=criterion,
                                subs=[(doc, sub) for sub in raw[criterion]]))
    if "not" in raw:
        parts.append(_Shape("not", doc, raw["not"]))
    if not parts:
        return _Shape("empty", doc, raw)
    if len(parts) == 1:
        return parts[0]
    return _Shape("combined", doc, raw, criterion="allOf", subs=parts)


# -- the differences ------------------------------------------------------------------

_Found = list[tuple[str, str]]  # (kind, JSON path)


class _Differ:
    """Confluent's ``SchemaDiff`` for one pair of schemas: original (writer)
    against update (reader). A pair met again while being compared (a
    recursive ``$ref``) counts as compatible."""

    def __init__(self, original: JsonModel, update: JsonModel) -> None:
        self.original = original
        self.update = update
        self.in_progress: set[tuple[int, int]] = set()

    def compare(self, original: Located | None, update: Located | None, path: list[str]) -> _Found:
        if original is None and update is None:
            return []
        if original is None:
            return [("SCHEMA_ADDED", _path(path))]
        if update is None:
            return []  # SCHEMA_REMOVED is compatible
        o_doc, o_raw = self._deref(self.original, original)
        u_doc, u_raw = self._deref(self.update, update)
        key = (id(o_raw), id(u_raw))
        if key in self.in_progress:
            return []
        self.in_progress.add(key)
        try:
            return self._shapes(_shape(o_doc, o_raw), _shape(u_doc, u_raw), path)
        finally:
            self.in_progress.discard(key)

    def _deref(self, model: JsonModel, located: Located) -> Located:
        seen = 0
        doc, raw = located
        while isinstance(raw, dict) and isinstance(raw.get("$ref"), str) and seen < 64:
            target = _follow(model, doc, raw["$ref"])
            if target is None:
                break
            doc, raw = target
            seen += 1
        return doc, raw

    def _sub(self, item: Any, model: JsonModel) -> _Shape:
        if isinstance(item, _Shape):
            return item
        doc, raw = self._deref(model, item)
        return _shape(doc, raw)

    def _shapes(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        if o.kind != "combined" and u.kind == "combined":
            if len(u.subs) == 1:
                if not self._shapes(o, self._sub(u.subs[0], self.update), path):
                    return []
            elif u.criterion in ("anyOf", "oneOf"):
                for sub in u.subs:  # the update widens to a sum type holding the original
                    if not self._shapes(o, self._sub(sub, self.update), path):
                        return []
        elif o.kind == "combined" and u.kind != "combined" and len(o.subs) == 1:
            if not self._shapes(self._sub(o.subs[0], self.original), u, path):
                return []
        if o.kind != u.kind:
            if o.kind == "false" or u.kind == "empty":
                return []
            return [("TYPE_CHANGED", _path(path))]
        if o.kind == "string":
            return _string(o.raw, u.raw, path)
        if o.kind == "number":
            return _number(o, u, path)
        if o.kind == "enum":
            return _enum(o.raw, u.raw, path)
        if o.kind == "combined":
            return self._combined(o, u, path)
        if o.kind == "not":
            # Reversed: the update may forbid less than the original, not more.
            if self.compare_reversed((u.doc, u.raw), (o.doc, o.raw), [*path, "not"]):
                return [("NOT_TYPE_EXTENDED", _path([*path, "not"]))]
            return []
        if o.kind == "object":
            return self._object(o, u, path)
        if o.kind == "array":
            return self._array(o, u, path)
        return []

    def compare_reversed(self, original: Located, update: Located, path: list[str]) -> _Found:
        reverse = _Differ(self.update, self.original)
        return reverse.compare(original, update, path)

    def _combined(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        if o.criterion != u.criterion:
            widened = (u.criterion == "anyOf"
                       or (u.criterion == "oneOf" and len(o.subs) == 1)
                       or (u.criterion == "allOf" and len(o.subs) == 1 and len(u.subs) == 1))
            if not widened:
                return [("COMBINED_TYPE_CHANGED", _path(path))]
        o_subs = list({s.key(): s for s in (self._sub(x, self.original) for x in o.subs)}.values())
        u_subs = list({s.key(): s for s in (self._sub(x, self.update) for x in u.subs)}.values())
        found: _Found = []
        if len(o_subs) < len(u_subs) and u.criterion == "allOf":
            found.append(("PRODUCT_TYPE_EXTENDED", _path(path)))
        elif len(o_subs) > len(u_subs) and u.criterion != "allOf":
            found.append(("SUM_TYPE_NARROWED", _path(path)))
        edges = {(i, j) for i, os in enumerate(o_subs) for j, us in enumerate(u_subs)
                 if not self._shapes(os, us, [*path, f"{o.criterion}/{i}"])}
        if _matching(edges, len(o_subs), len(u_subs)) < min(len(o_subs), len(u_subs)):
            found.append(("COMBINED_TYPE_SUBSCHEMAS_CHANGED", _path(path)))
        return found

    def _object(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        found: _Found = []
        o_props, u_props = _dict(o.raw, "properties"), _dict(u.raw, "properties")
        o_required, u_required = set(_list(o.raw, "required")), set(_list(u.raw, "required"))
        for name in o_props:
            if name in u_props and name in u_required and name not in o_required and not self._has_default(u, name):
                found.append(("REQUIRED_ATTRIBUTE_ADDED", _path([*path, "required", name])))
        for name in sorted(set(o_props) | set(u_props)):
            here = [*path, "properties", name]
            if name not in u_props:
                if _open(u.raw):
                    continue  # PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL is compatible
                partial = _partial(u.raw, name)
                if partial is not None:
                    if self.compare((o.doc, o_props[name]), (u.doc, partial), here):
                        found.append(("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", _path(here)))
                elif o_props[name] is not False:
                    found.append(("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", _path(here)))
            elif name not in o_props:
                if _open(o.raw):
                    if self._sub((u.doc, u_props[name]), self.update).kind != "empty":
                        found.append(("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", _path(here)))
                    continue
                partial = _partial(o.raw, name)
                if partial is not None and self.compare((o.doc, partial), (u.doc, u_props[name]), here):
                    found.append(("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", _path(here)))
                if name in u_required and not self._has_default(u, name):
                    found.append(("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", _path(here)))
            else:
                found += self.compare((o.doc, o_props[name]), (u.doc, u_props[name]), here)
        found += self._dependencies(o, u, path)
        found += self._additional(o, u, path)
        found += _limit(o.raw, u.raw, "maxProperties", path, tighter=-1)
        found += _limit(o.raw, u.raw, "minProperties", path, tighter=1)
        return found

    def _has_default(self, shape: _Shape, name: str) -> bool:
        _, raw = self._deref(self.update, (shape.doc, _dict(shape.raw, "properties")[name]))
        return isinstance(raw, dict) and "default" in raw

    def _dependencies(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        found: _Found = []
        o_arrays, o_schemas = _dependencies(o.raw)
        u_arrays, u_schemas = _dependencies(u.raw)
        for name in sorted(set(o_arrays) | set(u_arrays)):
            here = _path([*path, "dependencies", name])
            if name not in u_arrays:
                continue  # DEPENDENCY_ARRAY_REMOVED is compatible
            if name not in o_arrays:
                found.append(("DEPENDENCY_ARRAY_ADDED", here))
            elif o_arrays[name] != u_arrays[name]:
                if u_arrays[name] >= o_arrays[name]:
                    found.append(("DEPENDENCY_ARRAY_EXTENDED", here))
                elif not u_arrays[name] <= o_arrays[name]:
                    found.append(("DEPENDENCY_ARRAY_CHANGED", here))
        for name in sorted(set(o_schemas) | set(u_schemas)):
            here_list = [*path, "dependencies", name]
            if name not in u_schemas:
                continue
            if name not in o_schemas:
                found.append(("DEPENDENCY_SCHEMA_ADDED", _path(here_list)))
            else:
                found += self.compare((o.doc, o_schemas[name]), (u.doc, u_schemas[name]), here_list)
        return found

    def _additional(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        here = [*path, "additionalProperties"]
        o_value, u_value = o.raw.get("additionalProperties", True), u.raw.get("additionalProperties", True)
        if (o_value is not False) != (u_value is not False):
            return [] if u_value is not False else [("ADDITIONAL_PROPERTIES_REMOVED", _path(here))]
        o_schema = o_value if isinstance(o_value, dict) else None
        u_schema = u_value if isinstance(u_value, dict) else None
        if o_schema is None and u_schema is not None:
            return [("ADDITIONAL_PROPERTIES_NARROWED", _path(here))]
        if o_schema is not None and u_schema is not None:
            return self.compare((o.doc, o_schema), (u.doc, u_schema), here)
        return []

    def _array(self, o: _Shape, u: _Shape, path: list[str]) -> _Found:
        o_all, o_tuple, o_more = _items(o.raw)
        u_all, u_tuple, u_more = _items(u.raw)
        found = self.compare(None if o_all is None else (o.doc, o_all),
                             None if u_all is None else (u.doc, u_all), [*path, "items"])
        for index in range(max(len(o_tuple), len(u_tuple))):
            here = [*path, f"items/{index}"]
            if index < len(o_tuple) and index < len(u_tuple):
                found += self.compare((o.doc, o_tuple[index]), (u.doc, u_tuple[index]), here)
            elif index < len(o_tuple):  # an item the update no longer lists
                if u_more is True:
                    continue
                if isinstance(u_more, dict):
                    if self.compare((o.doc, o_tuple[index]), (u.doc, u_more), here):
                        found.append(("ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", _path(here)))
                elif o_tuple[index] is not False:
                    found.append(("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", _path(here)))
            else:  # an item the update adds
                if o_more is True:
                    if self._sub((u.doc, u_tuple[index]), self.update).kind != "empty":
                        found.append(("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", _path(here)))
                elif isinstance(o_more, dict) and self.compare((o.doc, o_more), (u.doc, u_tuple[index]), here):
                    found.append(("ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", _path(here)))
        here = [*path, "additionalItems"]
        if (o_more is not False) != (u_more is not False):
            if u_more is False:
                found.append(("ADDITIONAL_ITEMS_REMOVED", _path(here)))
        elif not isinstance(o_more, dict) and isinstance(u_more, dict):
            found.append(("ADDITIONAL_ITEMS_NARROWED", _path(here)))
        elif isinstance(o_more, dict) and isinstance(u_more, dict):
            found += self.compare((o.doc, o_more), (u.doc, u_more), here)
        found += _limit(o.raw, u.raw, "maxItems", path, tighter=-1)
        found += _limit(o.raw, u.raw, "minItems", path, tighter=1)
        if u.raw.get("uniqueItems") is True and o.raw.get("uniqueItems") is not True:
            found.append(("UNIQUE_ITEMS_ADDED", _path([*path, "uniqueItems"])))
        return found


def _path(path: list[str]) -> str:
    return "#/" + "/".join(path)


def _dict(raw: Any, key: str) -> dict[str, Any]:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, dict) else {}


def _list(raw: Any, key: str) -> list[Any]:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, list) else []


def _open(raw: Any) -> bool:
    """Any property may appear, with any value."""
    return not _dict(raw, "patternProperties") and raw.get("additionalProperties", True) is True


def _partial(raw: Any, name: str) -> Any:
    """The schema a partially open object gives an unlisted property ``name``, or None."""
    for pattern, schema in _dict(raw, "patternProperties").items():
        try:
            if re.search(pattern, name):
                return schema
        except re.error:
            continue
    extra = raw.get("additionalProperties", True)
    return extra if isinstance(extra, dict) else None


def _dependencies(raw: Any) -> tuple[dict[str, frozenset[str]], dict[str, Any]]:
    arrays = {k: frozenset(v) for k, v in _dict(raw, "dependentRequired").items() if isinstance(v, list)}
    schemas = {k: v for k, v in _dict(raw, "dependentSchemas").items()}
    for key, value in _dict(raw, "dependencies").items():
        if isinstance(value, list):
            arrays[key] = frozenset(value)
        else:
            schemas[key] = value
    return arrays, schemas


def _items(raw: Any) -> tuple[Any, list[Any], Any]:
    """``(schema of every item or None, schemas of leading items, what may
    follow them: True, False or a schema)``, for draft-07 and 2020-12 spellings."""
    if isinstance(raw.get("prefixItems"), list):
        return None, raw["prefixItems"], raw.get("items", True)
    if isinstance(raw.get("items"), list):
        return None, raw["items"], raw.get("additionalItems", True)
    return raw.get("items"), [], True


def _limit(o_raw: Any, u_raw: Any, word: str, path: list[str], tighter: int) -> _Found:
    """A bound the update adds, or moves the strict way (``tighter``: 1 when a
    larger value is stricter, -1 when a smaller one is)."""
    o_value, u_value = _number_or_none(o_raw.get(word)), _number_or_none(u_raw.get(word))
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", word).upper()
    if u_value is None or o_value == u_value:
        return []
    if o_value is None:
        return [(f"{name}_ADDED", _path([*path, word]))]
    if (u_value - o_value) * tighter > 0:
        return [(f"{name}_{'INCREASED' if tighter > 0 else 'DECREASED'}", _path([*path, word]))]
    return []


def _number_or_none(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return Decimal(str(value))


def _string(o: Any, u: Any, path: list[str]) -> _Found:
    found = _limit(o, u, "maxLength", path, tighter=-1) + _limit(o, u, "minLength", path, tighter=1)
    if "pattern" in u and "pattern" not in o:
        found.append(("PATTERN_ADDED", _path([*path, "pattern"])))
    elif "pattern" in u and o["pattern"] != u["pattern"]:
        found.append(("PATTERN_CHANGED", _path([*path, "pattern"])))
    return found


def _bounds(raw: Any) -> dict[str, Any]:
    """Numeric bounds with draft-04's boolean ``exclusiveMaximum``/``Minimum``
    turned into draft-06's numbers."""
    out = {word: raw.get(word) for word in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")}
    for word, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out[word] is True:
            out[word], out[limit] = out[limit], None
        elif out[word] is False:
            out[word] = None
    return out


def _number(o: _Shape, u: _Shape, path: list[str]) -> _Found:
    o_bounds, u_bounds = _bounds(o.raw), _bounds(u.raw)
    found = (_limit(o_bounds, u_bounds, "maximum", path, tighter=-1)
             + _limit(o_bounds, u_bounds, "minimum", path, tighter=1)
             + _limit(o_bounds, u_bounds, "exclusiveMaximum", path, tighter=-1)
             + _limit(o_bounds, u_bounds, "exclusiveMinimum", path, tighter=1))
    o_step, u_step = _number_or_none(o.raw.get("multipleOf")), _number_or_none(u.raw.get("multipleOf"))
    here = _path([*path, "multipleOf"])
    if u_step is not None and o_step != u_step:
        if o_step is None:
            found.append(("MULTIPLE_OF_ADDED", here))
        else:
            try:
                if u_step % o_step == 0:
                    found.append(("MULTIPLE_OF_EXPANDED", here))
                elif o_step % u_step != 0:
                    found.append(("MULTIPLE_OF_CHANGED", here))
            except InvalidOperation:
                found.append(("MULTIPLE_OF_CHANGED", here))
    if u.integer and not o.integer:
        found.append(("TYPE_NARROWED", _path(path)))
    return found


def _enum(o: Any, u: Any, path: list[str]) -> _Found:
    o_values = {json.dumps(v, sort_keys=True) for v in o} if isinstance(o, list) else set()
    u_values = {json.dumps(v, sort_keys=True) for v in u} if isinstance(u, list) else set()
    if o_values == u_values or u_values >= o_values:
        return []
    if u_values <= o_values:
        return [("ENUM_ARRAY_NARROWED", _path([*path, "enum"]))]
    return [("ENUM_ARRAY_CHANGED", _path([*path, "enum"]))]


def _matching(edges: set[tuple[int, int]], left: int, right: int) -> int:
    """Size of a maximum matching of a small bipartite graph (Kuhn's algorithm)."""
    match: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in range(right):
            if (i, j) in edges and j not in seen:
                seen.add(j)
                if j not in match or augment(match[j], seen):
                    match[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(left))


# -- messages (Confluent's descriptions, by kind) ----------------------------------------

_KEYWORD_ADDED = {"MAXIMUM_ADDED", "MINIMUM_ADDED", "EXCLUSIVE_MAXIMUM_ADDED", "EXCLUSIVE_MINIMUM_ADDED",
                  "MULTIPLE_OF_ADDED", "MAX_LENGTH_ADDED", "MIN_LENGTH_ADDED", "PATTERN_ADDED",
                  "REQUIRED_ATTRIBUTE_ADDED", "MAX_PROPERTIES_ADDED", "MIN_PROPERTIES_ADDED",
                  "DEPENDENCY_ARRAY_ADDED", "DEPENDENCY_SCHEMA_ADDED", "MAX_ITEMS_ADDED", "MIN_ITEMS_ADDED",
                  "UNIQUE_ITEMS_ADDED", "ADDITIONAL_ITEMS_REMOVED", "ADDITIONAL_PROPERTIES_REMOVED", "SCHEMA_ADDED"}
_TEMPLATES = {
    "INCREASED": "the value at {path} in the {r} schema is more than its value in the {w} schema",
    "EXPANDED": "the value at {path} in the {r} schema is more than its value in the {w} schema",
    "DECREASED": "the value at {path} in the {r} schema is less than its value in the {w} schema",
    "NARROWED": "an array or combined type at {path} has fewer elements in the {r} schema than the {w} schema",
    "EXTENDED": "an array or combined type at {path} has more elements in the {r} schema than the {w} schema",
    "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL": "the {r} schema has an open content model and has a property or item "
                                            "at {path} which is missing in the {w} schema",
    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL": "the {r} schema has an unopen content model and has a "
                                                       "required property at {path} which is missing in the {w} "
                                                       "schema",
    "REMOVED_FROM_CLOSED_CONTENT_MODEL": "the {r} schema has a closed content model and is missing a property or "
                                         "item present at {path} in the {w} schema",
    "REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "a property or item is missing in the {r} schema but "
                                                           "present at {path} in the {w} schema and is not covered "
                                                           "by its partially open content model",
    "ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the {r} schema has a property or item at {path} which "
                                                         "is missing in the {w} schema and is not covered by its "
                                                         "partially open content model",
}


def _describe(kind: str, path: str, reader: str, writer: str) -> str:
    if kind in _KEYWORD_ADDED:
        template = "the keyword at {path} in the {r} schema is not present in the {w} schema"
    elif kind in ("PATTERN_CHANGED", "MULTIPLE_OF_CHANGED", "DEPENDENCY_ARRAY_CHANGED"):
        template = "the value at {path} is different between the {r} and {w} schema"
    elif kind in ("TYPE_CHANGED", "TYPE_NARROWED", "COMBINED_TYPE_CHANGED", "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                  "ENUM_ARRAY_CHANGED"):
        template = "a type at {path} is different between the {r} schema and the {w} schema"
    elif kind == "ITEM_ADDED_TO_OPEN_CONTENT_MODEL":
        template = _TEMPLATES["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"]
    elif kind == "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL":
        template = _TEMPLATES[kind]
    else:
        suffix = next((s for s in _TEMPLATES if kind.endswith(s)), "")
        template = _TEMPLATES.get(suffix, "the {r} schema differs from the {w} schema at {path}")
    return template.format(path=f"'{path}'", r=reader, w=writer)
