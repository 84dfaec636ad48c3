"""PROTOBUF schemas of the registry core: parsing (text and base64
descriptors), the canonical rendering, imports of references, and
Confluent's Protobuf compatibility rules at every level."""

from __future__ import annotations

import base64

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
HEAD = 'syntax = "proto3";\npackage shop;\n'


def proto(text, references=(), resolved=None):
    return parse_schema(SchemaType.PROTOBUF, text, references, resolved or {})


def order(*fields, more=""):
    return HEAD + "message Order {\n" + "".join(f"  {f}\n" for f in fields) + "}\n" + more


def errors(level, new, *previous):
    return compatibility_errors(level, proto(new), [proto(p) for p in previous])


SUB = "message Sub { string s = 1; }\nmessage Other { string o = 1; }\n"

# -- each rule: (old, new, rule broken BACKWARD or None, rule broken FORWARD or None) ----

RULES = {
    "field added": (order("int64 id = 1;"), order("int64 id = 1;", "string item = 2;"), None, None),
    "field removed": (order("int64 id = 1;", "string item = 2;"), order("int64 id = 1;"), None, None),
    "field renamed": (order("int64 id = 1;"), order("int64 key = 1;"), None, None),
    "int32 to int64": (order("int32 n = 1;"), order("int64 n = 1;"), None, None),
    "int32 to sint32": (order("int32 n = 1;"), order("sint32 n = 1;"),
                        "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
    "fixed32 to sfixed32": (order("fixed32 n = 1;"), order("sfixed32 n = 1;"), None, None),
    "float to double": (order("float n = 1;"), order("double n = 1;"),
                        "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
    "string to bytes": (order("string s = 1;"), order("bytes s = 1;"), None, None),
    "string to int32": (order("string s = 1;"), order("int32 s = 1;"),
                        "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
    "int32 to an enum": (order("int32 c = 1;", more="enum Color { RED = 0; }\n"),
                         order("Color c = 1;", more="enum Color { RED = 0; }\n"), None, None),
    "scalar to message": (order("string s = 1;", more=SUB), order("Sub s = 1;", more=SUB),
                          "FIELD_KIND_CHANGED", "FIELD_KIND_CHANGED"),
    "message type changed": (order("Sub s = 1;", more=SUB), order("Other s = 1;", more=SUB),
                             "FIELD_NAMED_TYPE_CHANGED", "FIELD_NAMED_TYPE_CHANGED"),
    "map value type changed": (order("map<string, int32> m = 1;"), order("map<string, string> m = 1;"),
                               "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
    "map to repeated message": (order("map<string, int32> m = 1;", more=SUB), order("repeated Sub m = 1;", more=SUB),
                                "FIELD_KIND_CHANGED", "FIELD_KIND_CHANGED"),
    "message removed": (order("int64 id = 1;", more=SUB), order("int64 id = 1;"), "MESSAGE_REMOVED", None),
    "message added": (order("int64 id = 1;"), order("int64 id = 1;", more=SUB), None, "MESSAGE_REMOVED"),
    "package changed": (order("int64 id = 1;"), order("int64 id = 1;").replace("package shop", "package store"),
                        "PACKAGE_CHANGED", "PACKAGE_CHANGED"),
    "enum value added": (order("Color c = 1;", more="enum Color { RED = 0; }\n"),
                         order("Color c = 1;", more="enum Color { RED = 0; BLUE = 1; }\n"), None, None),
    "enum removed": (order("int64 id = 1;", more="enum Color { RED = 0; }\n"), order("int64 id = 1;"), None, None),
    "oneof added with new fields": (order("int64 id = 1;"), order("int64 id = 1;", "oneof o { string a = 2; }"),
                                    None, None),
    "one field moved into a new oneof": (order("int64 id = 1;", "string a = 2;"),
                                         order("int64 id = 1;", "oneof o { string a = 2; int32 b = 3; }"), None, None),
    "two fields moved into a oneof": (order("string a = 1;", "string b = 2;"), order("oneof o { string a = 1; "
                                                                                    "string b = 2; }"),
                                      "MULTIPLE_FIELDS_MOVED_TO_ONEOF", None),
    "field added to a oneof": (order("oneof o { string a = 1; }"), order("oneof o { string a = 1; int32 b = 2; }"),
                               None, "ONEOF_FIELD_REMOVED"),
    "field of a oneof changed": (order("oneof o { string a = 1; }"), order("oneof o { double a = 1; }"),
                                 "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
    "numeric field made repeated": (order("int32 n = 1;"), order("repeated int32 n = 1;"),
                                    "FIELD_NUMERIC_LABEL_CHANGED", "FIELD_NUMERIC_LABEL_CHANGED"),
    "string field made repeated": (order("string s = 1;"), order("repeated string s = 1;"), None, None),
    "proto2 required field added": ('syntax = "proto2";\nmessage O { optional int32 a = 1; }\n',
                                    'syntax = "proto2";\nmessage O { optional int32 a = 1; required int32 b = 2; }\n',
                                    "REQUIRED_FIELD_ADDED", "REQUIRED_FIELD_REMOVED"),
    "nested message field changed": (order("Inner i = 1;", "message Inner { int32 n = 1; }"),
                                     order("Inner i = 1;", "message Inner { string n = 1; }"),
                                     "FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"),
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
    assert errors(L.BACKWARD, order("string id = 1;"), order("int64 id = 1;")) == [
        "FIELD_SCALAR_KIND_CHANGED: the type of the field at '#/Order/1' differs between the new and the old "
        "schema and the two do not share an encoding"]
    assert errors(L.BACKWARD, order("int64 id = 1;"), order("int64 id = 1;", more=SUB)) == [
        "MESSAGE_REMOVED: the new schema is missing the message at '#/Other' that the old schema has",
        "MESSAGE_REMOVED: the new schema is missing the message at '#/Sub' that the old schema has"]
    nested = errors(L.BACKWARD, order("Inner i = 1;", "message Inner { string n = 1; }"),
                    order("Inner i = 1;", "message Inner { int32 n = 1; }"))
    assert nested == ["FIELD_SCALAR_KIND_CHANGED: the type of the field at '#/Order/Inner/1' differs between the "
                      "new and the old schema and the two do not share an encoding"]


def test_recursive_messages():
    tree = HEAD + "message Node { int32 value = 1; repeated Node children = 2; }\n"
    assert errors(L.FULL, tree.replace("int32", "int64"), tree) == []


TRANSITIVE_VERSIONS = [order("int64 id = 1;", "string item = 2;"), order("int64 id = 1;"),
                       order("int64 id = 1;", "int32 item = 2;")]


@pytest.mark.parametrize("level", [L.BACKWARD_TRANSITIVE, L.FORWARD_TRANSITIVE, L.FULL_TRANSITIVE])
def test_transitive_levels_check_every_version(level):
    v1, v2, v3 = TRANSITIVE_VERSIONS
    assert errors(CompatibilityLevel(level.removesuffix("_TRANSITIVE")), v3, v1, v2) == []
    found = errors(level, v3, v1, v2)
    assert found and all(m.startswith("FIELD_SCALAR_KIND_CHANGED: ") and "'#/Order/2'" in m for m in found)


def test_canonical_rendering_drops_comments_whitespace_and_option_order():
    commented = proto(HEAD + "// orders\nmessage Order {\n  int64 id = 1;   /* key */\n"
                      '  string item = 2 [json_name = "it", deprecated = true];\n}\n'
                      'option java_package = "shop";\noption go_package = "x/shop";\n')
    plain = proto(HEAD + 'option go_package = "x/shop"; option java_package = "shop";\n'
                  'message Order { int64 id = 1; string item = 2 [deprecated=true, json_name="it"]; }')
    assert commented.canonical != plain.canonical  # options keep their place among the file's elements
    moved = proto(HEAD + 'message Order { int64 id = 1; string item = 2 [deprecated=true, json_name="it"]; }\n'
                  'option java_package = "shop";\noption go_package = "x/shop";')
    assert commented.canonical == moved.canonical
    assert "//" not in commented.canonical and "/*" not in commented.canonical
    assert 'option go_package = "x/shop";\noption java_package = "shop";' in commented.canonical
    assert proto(moved.canonical).canonical == moved.canonical  # rendering is stable
    assert proto(order("int64 id = 1;")).canonical != proto(order("int64 id = 2;")).canonical
    assert commented.text.startswith(HEAD + "// orders")  # the text stays as registered


ADDRESS = 'syntax = "proto3";\npackage shop;\nmessage Address { string city = 1; }\n'
PERSON = HEAD + 'import "address.proto";\nmessage Person { Address home = 1; }\n'
REF = SchemaReference("address.proto", "address", 1)


def test_imports_of_references():
    person = proto(PERSON, [REF], {"address.proto": ADDRESS})
    assert person.references == (REF,)
    with pytest.raises(InvalidSchemaError, match="import 'address.proto' is not among the references"):
        proto(PERSON)
    changed = ADDRESS.replace("string city", "int32 city")
    new = proto(PERSON, [SchemaReference("address.proto", "address", 2)], {"address.proto": changed})
    assert compatibility_errors(L.BACKWARD, new, [person]) == [
        "FIELD_SCALAR_KIND_CHANGED: the type of the field at '#/Address/1' differs between the new and the old "
        "schema and the two do not share an encoding",
        "FIELD_NAMED_TYPE_CHANGED: the message type of the field at '#/Person/1' differs between the new and the "
        "old schema"]
    assert proto(HEAD + 'import "google/protobuf/timestamp.proto";\n'
                 "message E { google.protobuf.Timestamp at = 1; }\n").references == ()


def test_a_base64_descriptor_is_stored_as_proto_text():
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3")
    message = fd.message_type.add(name="Order")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="id", number=1, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    message.field.add(name="tags", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
                      type_name=".shop.Order.TagsEntry")
    entry = message.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    message.oneof_decl.add(name="choice")
    message.field.add(name="a", number=3, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL, oneof_index=0)
    parsed = proto(base64.b64encode(fd.SerializeToString()).decode())
    assert parsed.text == parsed.canonical == (
        'syntax = "proto3";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  map<string, int32> tags = 2;\n'
        "  oneof choice {\n    string a = 3;\n  }\n}\n")
    assert proto(parsed.text).canonical == parsed.canonical


INVALID = {
    "message {": "line 1:8 mismatched input '{'",
    'syntax = "proto3"; message A { int32 x = ; }': "missing INT_LITERAL",
    "bm90IGEgZGVzY3JpcHRvcg==": "neither .proto text nor a base64 FileDescriptorProto",
    HEAD + "message A { int32 x = 1; int32 y = 1; }": "fields 'x' and 'y' of 'shop.A' both use number 1",
    HEAD + "message A { int32 x = 1; string x = 2; }": "field 'x' is defined twice",
    HEAD + "message A { int32 x = 0; }": "has number 0",
    HEAD + "message A { int32 x = 19001; }": "reserved 19000..19999",
    HEAD + "message A { Foo x = 1; }": "type 'Foo', which is not defined or imported",
    HEAD + "message A {} message A {}": "'shop.A' is defined twice",
    'syntax = "proto4"; message A {}': "unknown syntax 'proto4'",
}


@pytest.mark.parametrize("text", INVALID)
def test_invalid_schemas_say_what_is_wrong(text):
    with pytest.raises(InvalidSchemaError, match=INVALID[text]) as raised:
        proto(text)
    assert str(raised.value).startswith("Invalid Protobuf schema")


def _descriptor_with_options():
    """A proto2 file using what the text rendering used to drop: field options
    (packed, json_name, defaults), allow_alias, reserved numbers and names, and a
    nested message declared before a map entry (message-index paths count it)."""
    from google.protobuf import descriptor_pb2

    f = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="tuned.proto", package="p", syntax="proto2")
    m = fd.message_type.add(name="M")
    m.nested_type.add(name="Inner").field.add(name="a", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    entry = m.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_MESSAGE, type_name=".p.M.Inner", label=f.LABEL_OPTIONAL)
    m.nested_type.add(name="After")
    m.field.add(name="nums", number=1, type=f.TYPE_INT32, label=f.LABEL_REPEATED).options.packed = True
    m.field.add(name="tags", number=2, type=f.TYPE_MESSAGE, type_name=".p.M.TagsEntry", label=f.LABEL_REPEATED)
    m.field.add(name="s", number=3, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL, default_value='a"b\\\n',
                json_name="sss")
    m.field.add(name="b", number=4, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL, default_value="\\001z")
    m.field.add(name="c", number=5, type=f.TYPE_ENUM, type_name=".p.E", label=f.LABEL_OPTIONAL, default_value="Y")
    m.field.add(name="d", number=6, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL, default_value="-1.5")
    m.reserved_range.add(start=10, end=11)
    m.reserved_range.add(start=20, end=2**29)
    m.reserved_name.append("gone")
    enum = fd.enum_type.add(name="E")
    enum.options.allow_alias = True
    enum.value.add(name="X", number=0)
    enum.value.add(name="Y", number=1)
    enum.value.add(name="Z", number=1)
    enum.reserved_range.add(start=5, end=9)
    return fd


def test_a_base64_descriptor_keeps_its_options_and_rebuilds_byte_for_byte():
    from logbroker.registry.protobuf_descriptor import file_descriptor

    fd = _descriptor_with_options()
    parsed = proto(base64.b64encode(fd.SerializeToString()).decode())
    for kept in ("[packed = true]", 'json_name = "sss"', 'default = "a\\"b\\\\\\n"', 'default = "\\001z"',
                 "default = Y", "default = -1.5", "option allow_alias = true;", "reserved 20 to 536870911;",
                 'reserved "gone";'):
        assert kept in parsed.text, kept
    assert parsed.text.index("message Inner") < parsed.text.index("map<") < parsed.text.index("message After")
    rebuilt = file_descriptor(parsed.text, {}, name=fd.name)
    assert rebuilt.SerializeToString() == fd.SerializeToString()
    assert file_descriptor(parsed.text, {}).name == "schema.proto"


def test_descriptor_builder_resolves_imports_and_refuses_what_it_cannot_build():
    from logbroker.registry.protobuf_descriptor import build_pool, file_descriptor

    money = 'syntax = "proto3"; package shop; message Money { int64 cents = 1; }'
    main = ('syntax = "proto3"; package shop; import "shop/money.proto"; import "google/protobuf/timestamp.proto";'
            " message Order { Money total = 1; google.protobuf.Timestamp at = 2; map<string, Money> parts = 3; }")
    pool, fd = build_pool(main, {"shop/money.proto": money})
    assert list(fd.dependency) == ["shop/money.proto", "google/protobuf/timestamp.proto"]
    order = pool.FindMessageTypeByName("shop.Order")
    assert order.fields_by_name["total"].message_type.full_name == "shop.Money"
    assert order.fields_by_name["at"].message_type.full_name == "google.protobuf.Timestamp"
    with pytest.raises(ValueError, match="neither one of the schema's references"):
        file_descriptor(main, {})
    with pytest.raises(ValueError, match="groups are not supported"):
        file_descriptor('syntax = "proto2"; message A { optional group G = 1 { optional int32 x = 2; } }', {})
