"""AVRO schemas of the registry core: parsing, canonical form, references, and
Avro's schema resolution rules at every compatibility level."""

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


def avro(schema, references=(), resolved=None):
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return parse_schema(SchemaType.AVRO, text, references, resolved or {})


def record(*fields, name="User", namespace="shop", **extra):
    return {"type": "record", "name": name, "namespace": namespace, "fields": list(fields), **extra}


def field(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def errors(level, new, *previous):
    return compatibility_errors(level, avro(new), [avro(p) for p in previous])


NAME = field("name", "string")


# -- each rule: (old, new, BACKWARD ok?, FORWARD ok?, rule broken) ----------------

RULES = {
    "field added with default": (record(NAME), record(NAME, field("age", "int", default=0)), True, True, None),
    "field added without default": (record(NAME), record(NAME, field("age", "int")), False, True,
                                    "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "field removed that had a default": (record(NAME, field("age", "int", default=0)), record(NAME), True, True, None),
    "field removed without default": (record(NAME, field("age", "int")), record(NAME), True, False,
                                      "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "int promoted to long": (record(field("n", "int")), record(field("n", "long")), True, False, "TYPE_MISMATCH"),
    "long to int": (record(field("n", "long")), record(field("n", "int")), False, True, "TYPE_MISMATCH"),
    "int promoted to double": (record(field("n", "int")), record(field("n", "double")), True, False, "TYPE_MISMATCH"),
    "float promoted to double": (record(field("n", "float")), record(field("n", "double")), True, False,
                                 "TYPE_MISMATCH"),
    "string to bytes": (record(field("s", "string")), record(field("s", "bytes")), True, True, None),
    "int to string": (record(field("n", "int")), record(field("n", "string")), False, False, "TYPE_MISMATCH"),
    "logical type kept over its type": (record(field("t", "long")),
                                        record(field("t", {"type": "long", "logicalType": "timestamp-millis"})),
                                        True, True, None),
    "enum symbol added": ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
                          {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}, True, False,
                          "MISSING_ENUM_SYMBOLS"),
    "enum symbol added, old enum has a default": ({"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"},
                                                  {"type": "enum", "name": "E", "symbols": ["A", "B", "C"],
                                                   "default": "A"}, True, True, None),
    "enum symbol removed": ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
                            {"type": "enum", "name": "E", "symbols": ["A"]}, False, True, "MISSING_ENUM_SYMBOLS"),
    "enum symbol removed, new enum has a default": ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
                                                    {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
                                                    True, True, None),
    "union branch added": (record(field("u", ["null", "string"])), record(field("u", ["null", "string", "int"])),
                           True, False, "MISSING_UNION_BRANCH"),
    "type made nullable": (record(field("u", "string")), record(field("u", ["null", "string"])), True, False,
                           "TYPE_MISMATCH"),
    "union narrowed to one type": (record(field("u", ["null", "string"])), record(field("u", "string")), False,
                                   True, "TYPE_MISMATCH"),
    "record renamed": (record(NAME), record(NAME, name="Person"), False, False, "NAME_MISMATCH"),
    "record renamed with an alias": (record(NAME), record(NAME, name="Person", aliases=["User"]), True, False,
                                     "NAME_MISMATCH"),
    "namespace changed": (record(NAME), record(NAME, namespace="store"), True, True, None),
    "nested record gains a field without default": (
        record(field("home", record(field("city", "string"), name="Address"))),
        record(field("home", record(field("city", "string"), field("zip", "string"), name="Address"))),
        False, True, "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "fixed size changed": ({"type": "fixed", "name": "F", "size": 16}, {"type": "fixed", "name": "F", "size": 8},
                           False, False, "FIXED_SIZE_MISMATCH"),
    "array items promoted": ({"type": "array", "items": "int"}, {"type": "array", "items": "long"}, True, False,
                             "TYPE_MISMATCH"),
    "map values changed": ({"type": "map", "values": "int"}, {"type": "map", "values": "boolean"}, False, False,
                           "TYPE_MISMATCH"),
    "record became an array": (record(NAME), {"type": "array", "items": "string"}, False, False, "TYPE_MISMATCH"),
}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_at_each_level(rule):
    old, new, backward_ok, forward_ok, broken = RULES[rule]
    expected = {L.NONE: True, L.BACKWARD: backward_ok, L.FORWARD: forward_ok, L.FULL: backward_ok and forward_ok}
    for level, ok in expected.items():
        found = errors(level, new, old)
        assert (found == []) == ok, (level, found)
        if not ok:
            assert all(message.startswith(broken + ": ") for message in found), found


def test_messages_name_the_rule_the_field_and_its_place():
    assert errors(L.BACKWARD, record(NAME, field("age", "int")), record(NAME)) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'age' at /fields/1 in the new schema has no default value "
        "and is missing in the old schema"]
    assert errors(L.FORWARD, record(NAME), record(NAME, field("age", "int"))) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'age' at /fields/1 in the old schema has no default value "
        "and is missing in the new schema"]
    [message] = errors(L.BACKWARD, record(field("n", "int")), record(field("n", "string")))
    assert message.startswith("TYPE_MISMATCH: the type at /fields/0/type in the new schema")
    assert "reader type: INT not compatible with writer type: STRING" in message
    [message] = errors(L.BACKWARD, {"type": "enum", "name": "E", "symbols": ["A"]},
                       {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]})
    assert message.startswith("MISSING_ENUM_SYMBOLS: ") and "[B, C]" in message and "/symbols" in message
    nested = errors(L.BACKWARD, record(field("home", record(field("zip", "string"), name="Address"))),
                    record(field("home", record(name="Address"))))
    assert nested == ["READER_FIELD_MISSING_DEFAULT_VALUE: field 'zip' at /fields/0/type/fields/0 in the new "
                      "schema has no default value and is missing in the old schema"]


def test_full_reports_both_directions():
    found = errors(L.FULL, record(field("n", "string")), record(field("n", "int")))
    assert len(found) == 2 and "in the new schema" in found[0] and "in the old schema" in found[1]


def test_recursive_types_are_checked_without_looping():
    def node(*extra):
        return {"type": "record", "name": "Node",
                "fields": [field("value", "int"), field("next", ["null", "Node"], default=None), *extra]}
    assert errors(L.FULL, node(field("label", "string", default="")), node()) == []
    [message] = errors(L.BACKWARD, node(field("label", "string")), node())
    assert message.startswith("READER_FIELD_MISSING_DEFAULT_VALUE: field 'label' at /fields/2")


# -- transitive levels: three versions, the latest passes, an older one fails --------

TRANSITIVE = {
    L.BACKWARD_TRANSITIVE: [record(field("a", "int")),
                            record(field("a", "int"), field("b", "string", default="")),
                            record(field("a", "int"), field("b", "string"))],
    L.FORWARD_TRANSITIVE: [record(field("a", "int"), field("b", "string")),
                           record(field("a", "int"), field("b", "string", default="")),
                           record(field("a", "int"))],
    L.FULL_TRANSITIVE: [record(field("a", "int")),
                        record(field("a", "int"), field("b", "string", default="")),
                        record(field("a", "int"), field("b", "string"))],
}


@pytest.mark.parametrize("level", TRANSITIVE)
def test_transitive_levels_check_every_version(level):
    v1, v2, v3 = TRANSITIVE[level]
    plain = CompatibilityLevel(level.removesuffix("_TRANSITIVE"))
    if level != L.FULL_TRANSITIVE:
        assert errors(plain, v3, v1, v2) == []  # the latest alone passes
    else:
        assert errors(L.BACKWARD, v3, v1, v2) == []
    found = errors(level, v3, v1, v2)
    assert found and all(m.startswith("READER_FIELD_MISSING_DEFAULT_VALUE: field 'b'") for m in found), found


def test_non_transitive_levels_look_at_the_latest_only_and_none_or_nothing_passes():
    v1, v2 = record(field("a", "int")), record(field("a", "string"))
    assert errors(L.BACKWARD, v2, v1, v2) == []
    assert errors(L.BACKWARD, v2, v1) != []
    assert errors(L.NONE, v2, v1) == []
    assert compatibility_errors(L.FULL_TRANSITIVE, avro(v2), []) == []


# -- canonical form ------------------------------------------------------------------


def test_canonical_ignores_whitespace_key_order_and_spelling():
    base = avro(record(field("name", "string"), field("tags", {"type": "array", "items": "string"})))
    spaced = avro(json.dumps(json.loads(base.text), indent=4))
    reordered = avro({"fields": [{"type": {"type": "string"}, "name": "name"},
                                 {"type": {"items": {"type": "string"}, "type": "array"}, "name": "tags"}],
                      "name": "shop.User", "type": "record"})
    assert base.canonical == spaced.canonical == reordered.canonical
    assert base.text != spaced.text
    assert avro('"string"').canonical == avro({"type": "string"}).canonical == '"string"'


def test_canonical_keeps_what_changes_meaning():
    with_default = avro(record(field("age", "int", default=0)))
    other_default = avro(record(field("age", "int", default=1)))
    assert with_default.canonical != other_default.canonical
    assert avro(record(NAME)).canonical != avro(record(NAME, namespace="other")).canonical


def test_parsed_schema_fields():
    parsed = avro(record(NAME))
    assert parsed.schema_type == SchemaType.AVRO and parsed.references == ()
    assert json.loads(parsed.text) == record(NAME)
    assert parse_schema("avro", parsed.text).canonical == parsed.canonical  # the type's name in any case


# -- references -------------------------------------------------------------------------

ADDRESS = record(field("city", "string"), name="Address")
PERSON = record(field("home", "shop.Address"), name="Person")
REF = SchemaReference("shop.Address", "address", 1)


def test_references_bring_named_types_from_other_subjects():
    person = avro(PERSON, [REF], {"shop.Address": json.dumps(ADDRESS)})
    assert person.references == (REF,)
    assert json.loads(person.canonical)["fields"][0]["type"] == "shop.Address"
    with pytest.raises(InvalidSchemaError, match="unknown type 'shop.Address'"):
        avro(PERSON)
    with pytest.raises(InvalidSchemaError, match="not resolved"):
        avro(PERSON, [REF], {})


def test_references_of_references_in_any_order():
    country = {"type": "enum", "name": "Country", "namespace": "shop", "symbols": ["NL", "FR"]}
    address = record(field("city", "string"), field("country", "shop.Country"), name="Address")
    resolved = {"shop.Address": json.dumps(address), "shop.Country": json.dumps(country)}
    person = avro(PERSON, [REF], resolved)
    assert person.references == (REF,)


def test_compatibility_follows_referenced_types():
    old = avro(PERSON, [REF], {"shop.Address": json.dumps(ADDRESS)})
    grown = record(field("city", "string"), field("zip", "string"), name="Address")
    new = avro(PERSON, [SchemaReference("shop.Address", "address", 2)], {"shop.Address": json.dumps(grown)})
    assert compatibility_errors(L.BACKWARD, new, [old]) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'zip' at /fields/0/type/fields/1 in the new schema has no "
        "default value and is missing in the old schema"]
    assert compatibility_errors(L.FORWARD, new, [old]) == []


def test_a_bad_reference_is_an_invalid_schema():
    with pytest.raises(InvalidSchemaError, match="reference 'shop.Address'"):
        avro(PERSON, [REF], {"shop.Address": "{not json"})
    inline = record(field("home", ADDRESS), name="Person")
    with pytest.raises(InvalidSchemaError, match="redefine 'shop.Address'"):
        avro(inline, [REF], {"shop.Address": json.dumps(ADDRESS)})


# -- invalid schemas ----------------------------------------------------------------------

INVALID = {
    "{": "not JSON",
    '{"type": "strin"}': "unknown type 'strin'",
    '{"type": "record", "name": "A"}': "has no fields",
    '{"type": "record", "name": "A", "fields": [{"type": "int"}]}': "missing 'name'",
    '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "long"}]}':
        "duplicate field 'a'",
    '{"type": "record", "name": "1A", "fields": []}': "'1A' is not a valid name",
    '{"type": "fixed", "name": "F"}': "missing attribute 'size'",
    '{"type": "array"}': "missing attribute 'items'",
    '["int", "int"]': "duplicate 'int' in a union",
    '["null", ["int"]]': "may not immediately contain another union",
    '{"type": "enum", "name": "E", "symbols": ["A", "A"]}': "symbols",
    '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "int", "default": "x"}]}': "Default value",
    '{"type": "record", "name": "A", "fields": [{"name": "b", "type": {"type": "enum", "name": "A", "symbols": '
    '["X"]}}]}': "redefined",
}


@pytest.mark.parametrize("text", INVALID)
def test_invalid_schemas_say_what_is_wrong(text):
    with pytest.raises(InvalidSchemaError, match=INVALID[text]) as raised:
        avro(text)
    assert str(raised.value).startswith("Invalid Avro")


def test_invalid_arguments():
    with pytest.raises(InvalidSchemaError, match="Unknown schema type 'XML'"):
        parse_schema("XML", "{}")
    with pytest.raises(InvalidSchemaError, match="Empty schema"):
        parse_schema(SchemaType.AVRO, "  ")
    with pytest.raises(InvalidSchemaError, match="unique"):
        avro(PERSON, [REF, REF], {"shop.Address": json.dumps(ADDRESS)})
