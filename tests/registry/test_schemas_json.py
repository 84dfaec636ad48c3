"""JSON Schema schemas of the registry core: metaschema checks, canonical form,
``$ref`` across references, and Confluent's JSON Schema compatibility rules
at every level."""

from __future__ import annotations

import json

import pytest

from logbroker.registry import (
    CompatibilityLevel,
    InvalidSchemaError,
    SchemaReference,
    SchemaType,
    compatibility_errors,
    parse_schema,
)

L = CompatibilityLevel
S = {"type": "string"}
I = {"type": "integer"}


def js(schema, references=(), resolved=None):
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return parse_schema(SchemaType.JSON, text, references, resolved or {})


def obj(properties, required=(), **extra):
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def closed(properties, required=(), **extra):
    return obj(properties, required, additionalProperties=False, **extra)


def errors(level, new, *previous):
    return compatibility_errors(level, js(new), [js(p) for p in previous])


# -- each rule: (old, new, rule broken BACKWARD or None, rule broken FORWARD or None) ----

RULES = {
    "property added to an open model": (obj({"a": S}), obj({"a": S, "b": I}),
                                        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", None),
    "property with an empty schema added to an open model": (obj({"a": S}), obj({"a": S, "b": {}}), None, None),
    "property removed from an open model": (obj({"a": S, "b": I}), obj({"a": S}),
                                            None, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
    "optional property added to a closed model": (closed({"a": S}), closed({"a": S, "b": I}),
                                                  None, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    "required property added to a closed model": (closed({"a": S}), closed({"a": S, "b": I}, ["b"]),
                                                  "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                                                  "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    "required property with a default added to a closed model": (
        closed({"a": S}), closed({"a": S, "b": {**I, "default": 0}}, ["b"]),
        None, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    "property removed from a closed model": (closed({"a": S, "b": I}), closed({"a": S}),
                                             "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", None),
    "property added, covered by a partially open model": (
        obj({"a": S}, additionalProperties=S), obj({"a": S, "b": S}, additionalProperties=S), None, None),
    "property added, not covered by a partially open model": (
        obj({"a": S}, additionalProperties=S), obj({"a": S, "b": I}, additionalProperties=S),
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"),
    "open model closed": (obj({"a": S}), closed({"a": S}), "ADDITIONAL_PROPERTIES_REMOVED", None),
    "required added": (obj({"a": S}), obj({"a": S}, ["a"]), "REQUIRED_ATTRIBUTE_ADDED", None),
    "required removed": (obj({"a": S}, ["a"]), obj({"a": S}), None, "REQUIRED_ATTRIBUTE_ADDED"),
    "integer widened to number": (I, {"type": "number"}, None, "TYPE_NARROWED"),
    "string changed to integer": (S, I, "TYPE_CHANGED", "TYPE_CHANGED"),
    "made nullable": (S, {"type": ["string", "null"]}, None, "TYPE_CHANGED"),
    "enum extended": ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, None, "ENUM_ARRAY_NARROWED"),
    "enum changed": ({"enum": ["a", "b"]}, {"enum": ["a", "c"]}, "ENUM_ARRAY_CHANGED", "ENUM_ARRAY_CHANGED"),
    "maxLength relaxed": ({**S, "maxLength": 10}, {**S, "maxLength": 20}, None, "MAX_LENGTH_DECREASED"),
    "maxLength added": (S, {**S, "maxLength": 10}, "MAX_LENGTH_ADDED", None),
    "minLength raised": ({**S, "minLength": 1}, {**S, "minLength": 3}, "MIN_LENGTH_INCREASED", None),
    "pattern changed": ({**S, "pattern": "^a"}, {**S, "pattern": "^b"}, "PATTERN_CHANGED", "PATTERN_CHANGED"),
    "pattern removed": ({**S, "pattern": "^a"}, S, None, "PATTERN_ADDED"),
    "minimum raised": ({**I, "minimum": 0}, {**I, "minimum": 5}, "MINIMUM_INCREASED", None),
    "maximum lowered": ({**I, "maximum": 10}, {**I, "maximum": 5}, "MAXIMUM_DECREASED", None),
    "exclusiveMaximum removed": ({**I, "exclusiveMaximum": 10}, I, None, "EXCLUSIVE_MAXIMUM_ADDED"),
    "multipleOf expanded": ({**I, "multipleOf": 2}, {**I, "multipleOf": 4}, "MULTIPLE_OF_EXPANDED", None),
    "array items changed": ({"type": "array", "items": S}, {"type": "array", "items": I},
                            "TYPE_CHANGED", "TYPE_CHANGED"),
    "array items widened": ({"type": "array", "items": I}, {"type": "array", "items": {"type": "number"}},
                            None, "TYPE_NARROWED"),
    "maxItems added": ({"type": "array", "items": S}, {"type": "array", "items": S, "maxItems": 3},
                       "MAX_ITEMS_ADDED", None),
    "uniqueItems added": ({"type": "array"}, {"type": "array", "uniqueItems": True}, "UNIQUE_ITEMS_ADDED", None),
    "anyOf extended": ({"anyOf": [S, I]}, {"anyOf": [S, I, {"type": "boolean"}]}, None, "SUM_TYPE_NARROWED"),
    "oneOf changed to allOf": ({"oneOf": [S, I]}, {"allOf": [S, I]}, "COMBINED_TYPE_CHANGED",
                               "COMBINED_TYPE_CHANGED"),
    "not widened": ({"not": S}, {"not": {"type": ["string", "null"]}}, "NOT_TYPE_EXTENDED", None),
    "nested property type changed": (obj({"home": obj({"city": S})}), obj({"home": obj({"city": I})}),
                                     "TYPE_CHANGED", "TYPE_CHANGED"),
    "description and title changed": ({**S, "description": "a"}, {**S, "description": "b", "title": "t"},
                                      None, None),
}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_at_each_level(rule):
    old, new, backward, forward = RULES[rule]
    for level, broken in ((L.BACKWARD, [backward]), (L.FORWARD, [forward]), (L.FULL, [backward, forward])):
        found = errors(level, new, old)
        wanted = [b for b in broken if b]
        assert bool(found) == bool(wanted), (level, found)
        for kind in wanted:
            assert any(message.startswith(kind + ": ") for message in found), (level, found)
    assert errors(L.NONE, new, old) == []


def test_messages_say_the_rule_and_the_path():
    assert errors(L.BACKWARD, obj({"a": S, "b": I}), obj({"a": S})) == [
        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: the new schema has an open content model and has a property or item "
        "at '#/properties/b' which is missing in the old schema"]
    assert errors(L.FORWARD, obj({"a": S}), obj({"a": S, "b": I})) == [
        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: the old schema has an open content model and has a property or item "
        "at '#/properties/b' which is missing in the new schema"]
    assert errors(L.BACKWARD, obj({"home": obj({"city": I})}), obj({"home": obj({"city": S})})) == [
        "TYPE_CHANGED: a type at '#/properties/home/properties/city' is different between the new schema and the "
        "old schema"]
    assert errors(L.BACKWARD, {**S, "maxLength": 5}, {**S, "maxLength": 10}) == [
        "MAX_LENGTH_DECREASED: the value at '#/maxLength' in the new schema is less than its value in the old schema"]


def test_local_refs_and_recursive_schemas():
    def tree(value):
        return {"definitions": {"Node": obj({"value": value, "children": {"type": "array",
                                                                          "items": {"$ref": "#/definitions/Node"}}})},
                "$ref": "#/definitions/Node"}
    assert errors(L.FULL, tree(I), tree(I)) == []
    assert errors(L.BACKWARD, tree({"type": "number"}), tree(I)) == []
    found = errors(L.FORWARD, tree({"type": "number"}), tree(I))
    assert found and found[0].startswith("TYPE_NARROWED: a type at '#/properties/value'")


TRANSITIVE = {
    L.BACKWARD_TRANSITIVE: [S, {**S, "maxLength": 10}, {**S, "maxLength": 20}],
    L.FORWARD_TRANSITIVE: [{**S, "maxLength": 10}, {**S, "maxLength": 20}, {**S, "maxLength": 15}],
    L.FULL_TRANSITIVE: [S, I, {**I, "description": "a count"}],
}


@pytest.mark.parametrize("level", TRANSITIVE)
def test_transitive_levels_check_every_version(level):
    v1, v2, v3 = TRANSITIVE[level]
    assert errors(CompatibilityLevel(level.removesuffix("_TRANSITIVE")), v3, v1, v2) == []
    assert errors(level, v3, v2) == []
    assert errors(level, v3, v1, v2) != []


def test_canonical_form():
    base = js(obj({"a": S, "b": I}, ["a"]))
    same = js('{"required": ["a"],\n  "properties": {"b": {"type": "integer"}, "a": {"type": "string"}},'
              ' "type": "object"}')
    assert base.canonical == same.canonical and base.text != same.text
    assert js(obj({"a": S}, ["a"])).canonical != base.canonical
    assert base.schema_type == SchemaType.JSON


ADDRESS = {"$id": "address.json", **obj({"city": S})}
REF = SchemaReference("address.json", "address", 1)


def person(ref="address.json"):
    return obj({"home": {"$ref": ref}})


def test_refs_to_referenced_schemas():
    parsed = js(person(), [REF], {"address.json": json.dumps(ADDRESS)})
    assert parsed.references == (REF,)
    assert js(person("address.json#/properties/city"), [REF], {"address.json": json.dumps(ADDRESS)})
    with pytest.raises(InvalidSchemaError, match="\\$ref 'address.json' resolves to nothing"):
        js(person())
    grown = {"$id": "address.json", **obj({"city": S, "zip": S}, ["zip"], additionalProperties=False)}
    new = js(person(), [SchemaReference("address.json", "address", 2)], {"address.json": json.dumps(grown)})
    found = compatibility_errors(L.BACKWARD, new, [parsed])
    assert [m.split(":")[0] for m in found] == ["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "ADDITIONAL_PROPERTIES_REMOVED"]
    assert "'#/properties/home/properties/zip'" in found[0]
    assert "'#/properties/home/additionalProperties'" in found[1]


def test_schemas_of_different_types_are_not_compatible():
    avro = parse_schema(SchemaType.AVRO, '"string"')
    assert compatibility_errors(L.BACKWARD, js(S), [avro]) == [
        "TYPE_MISMATCH: the new schema is JSON and the old schema AVRO"]


INVALID = {
    "{": "Invalid JSON schema: not JSON",
    '{"type": "strin"}': "'strin' is not valid under any of the given schemas \\(at #/type\\)",
    '{"type": "string", "minLength": -1}': "-1 is less than the minimum of 0",
    '{"properties": {"a": {"$ref": "#/definitions/X"}}}': "\\$ref '#/definitions/X' resolves to nothing",
    '{"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": 5}': "is not of type 'array'",
    "5": "a schema is a JSON object or a boolean, not int",
}


@pytest.mark.parametrize("text", INVALID)
def test_invalid_schemas_say_what_is_wrong(text):
    with pytest.raises(InvalidSchemaError, match=INVALID[text]):
        js(text)


def test_boolean_schemas():
    assert errors(L.BACKWARD, True, S) == []
    assert errors(L.BACKWARD, S, True) != []
    assert errors(L.BACKWARD, S, False) == []
