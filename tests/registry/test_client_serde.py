"""The client side of the schema registry (``logbroker.client.serde``): the
wire format and .proto descriptors without a server, then the REST client
and the serializers against a real ``logbroker serve`` with its registry on,
checked byte for byte against confluent-kafka's serializers and
deserializers both ways (Avro, JSON Schema, Protobuf)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid

import pytest
import trio
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.common.serde import SchemaId
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, timestamp_pb2

from brokerproc import BrokerProcess
from logbroker.broker.security import UserStore
from logbroker.client.serde import (
    Deserializer,
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnreachableError,
    SerializationError,
    Serializer,
    jsonable,
    topic_subject,
)
from logbroker.client.serde._protobuf import build
from logbroker.client.serde.wire import frame, message_indexes_bytes, read_header, read_message_indexes

_REGISTRY_LINE = re.compile(r"schema registry on (http://\S+:\d+)/")
_F = descriptor_pb2.FieldDescriptorProto
PLAIN = {"use.deprecated.format": False}


def _registry_url(proc: BrokerProcess, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _REGISTRY_LINE.search(proc.log)
        if found:
            return found.group(1)
        time.sleep(0.02)
    raise AssertionError(f"no schema registry line in the broker log:\n{proc.log}")


def _start(data_dir, *extra: str) -> tuple[BrokerProcess, str]:
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text("schema_registry_port = 0\n" + "".join(line + "\n" for line in extra))
    proc = BrokerProcess(data_dir, "--config", str(config)).start()
    return proc, _registry_url(proc)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, found = _start(tmp_path_factory.mktemp("serde") / "data")
    yield found
    proc.kill()


@pytest.fixture
def topic(request) -> str:
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"


def _ctx(topic: str, is_key: bool = False) -> SerializationContext:
    return SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE)


# -- the wire format, no server ---------------------------------------------------------------


@pytest.mark.parametrize("indexes", [[0], [1], [0, 0], [2, 5, 1], [63], [64], [300, 0], [1] * 70])
def test_message_indexes_are_confluents(indexes):
    header = SchemaId("PROTOBUF", 7, None, indexes).id_to_bytes()
    assert frame(7, b"", indexes) == header
    assert header[5:] == message_indexes_bytes(indexes)
    assert read_message_indexes(header + b"payload") == (indexes, len(header))
    assert SchemaId("PROTOBUF").from_bytes(io.BytesIO(header)) is not None


def test_first_message_is_one_zero_byte_and_an_empty_list_reads_as_first():
    assert message_indexes_bytes([0]) == b"\x00"
    assert message_indexes_bytes([1]) == b"\x02\x02"  # count 1, index 1, both zigzag
    assert read_message_indexes(b"\x00\x00\x00\x00\x01\x00rest") == ([0], 6)
    with pytest.raises(ValueError):
        message_indexes_bytes([])


def test_frame_and_header():
    data = frame(258, b"\x02x")
    assert data == b"\x00\x00\x00\x01\x02\x02x"
    assert read_header(data) == 258
    assert read_header(frame(2**32 - 1, b"")) == 2**32 - 1
    with pytest.raises(ValueError):
        frame(2**32, b"")
    with pytest.raises(SerializationError, match="too short"):
        read_header(b"\x00\x00\x01")
    with pytest.raises(SerializationError, match="first byte is 0x7b"):
        read_header(b'{"a": 1}')
    with pytest.raises(SerializationError, match="GUID"):
        read_header(b"\x01" + bytes(16))
    with pytest.raises(SerializationError, match="middle of a number"):
        read_message_indexes(b"\x00\x00\x00\x00\x01\x04\x80")
    with pytest.raises(SerializationError, match="entries"):
        read_message_indexes(b"\x00\x00\x00\x00\x01\x01")  # a count of -1


def test_jsonable_for_printing_decoded_values():
    import datetime
    import decimal

    value = {"b": b"\x00\xff", "d": decimal.Decimal("1.50"), "t": datetime.datetime(2024, 5, 1, 12, 0),
             "u": uuid.UUID(int=1), "nested": [(1, b"a")], 3: None}
    assert json.dumps(jsonable(value)) == (
        '{"b": "\\u0000\\u00ff", "d": "1.50", "t": "2024-05-01T12:00:00", '
        '"u": "00000000-0000-0000-0000-000000000001", "nested": [[1, "a"]], "3": null}')


# -- .proto text -> descriptors, no server -------------------------------------------------------

ORDER_PROTO = """
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";

// an order
message Order {
  int64 id = 1;
  optional string note = 2;
  repeated int32 quantities = 3;
  repeated int32 unpacked = 4 [packed = false];
  message Line { string sku = 1; Kind kind = 2; }
  map<string, Line> lines_by_sku = 5;
  oneof payment { string card = 6; bytes token = 7; }
  enum Kind { KIND_UNSPECIFIED = 0; BOOK = 1; }
  google.protobuf.Timestamp at = 8;
  .shop.v1.Order.Line first = 9;
  Status status = 10;
}
enum Status { NEW = 0; PAID = 1; }
message Empty {}
"""


def _protoc_order() -> descriptor_pb2.FileDescriptorProto:
    """ORDER_PROTO as protoc would describe it."""
    fd = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop.v1", syntax="proto3",
                                            dependency=["google/protobuf/timestamp.proto"])
    order = fd.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    order.field.add(name="note", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL, oneof_index=1,
                    proto3_optional=True)
    order.field.add(name="quantities", number=3, type=_F.TYPE_INT32, label=_F.LABEL_REPEATED)
    unpacked = order.field.add(name="unpacked", number=4, type=_F.TYPE_INT32, label=_F.LABEL_REPEATED)
    unpacked.options.packed = False
    line = order.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    line.field.add(name="kind", number=2, type=_F.TYPE_ENUM, type_name=".shop.v1.Order.Kind",
                   label=_F.LABEL_OPTIONAL)
    entry = order.nested_type.add(name="LinesBySkuEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, type_name=".shop.v1.Order.Line",
                    label=_F.LABEL_OPTIONAL)
    order.field.add(name="lines_by_sku", number=5, type=_F.TYPE_MESSAGE,
                    type_name=".shop.v1.Order.LinesBySkuEntry", label=_F.LABEL_REPEATED)
    order.oneof_decl.add(name="payment")
    order.oneof_decl.add(name="_note")
    order.field.add(name="card", number=6, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL, oneof_index=0)
    order.field.add(name="token", number=7, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL, oneof_index=0)
    kind = order.enum_type.add(name="Kind")
    kind.value.add(name="KIND_UNSPECIFIED", number=0)
    kind.value.add(name="BOOK", number=1)
    order.field.add(name="at", number=8, type=_F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                    label=_F.LABEL_OPTIONAL)
    order.field.add(name="first", number=9, type=_F.TYPE_MESSAGE, type_name=".shop.v1.Order.Line",
                    label=_F.LABEL_OPTIONAL)
    order.field.add(name="status", number=10, type=_F.TYPE_ENUM, type_name=".shop.v1.Status",
                    label=_F.LABEL_OPTIONAL)
    status = fd.enum_type.add(name="Status")
    status.value.add(name="NEW", number=0)
    status.value.add(name="PAID", number=1)
    fd.message_type.add(name="Empty")
    return fd


def _classes(*files: descriptor_pb2.FileDescriptorProto, with_timestamp: bool = True) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    if with_timestamp:
        pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    for fd in files:
        pool.Add(fd)
    return pool


ORDER_VALUE = {"id": "12", "note": "", "quantities": [1, 2, 300], "unpacked": [4, 5],
               "lines_by_sku": {"b-1": {"sku": "b-1", "kind": "BOOK"}}, "token": "AAE=",
               "at": "2024-05-01T12:00:00Z", "first": {"sku": "x"}, "status": "PAID"}


def test_proto_text_builds_what_protoc_would():
    schema = build(ORDER_PROTO, {})
    ours = schema.message_class([0])
    theirs = message_factory.GetMessageClass(_classes(_protoc_order()).FindMessageTypeByName("shop.v1.Order"))
    built = descriptor_pb2.DescriptorProto()
    ours.DESCRIPTOR.CopyToProto(built)
    expected = descriptor_pb2.DescriptorProto()
    theirs.DESCRIPTOR.CopyToProto(expected)
    for proto in (built, expected):  # protoc fills json_name; the pool derives the same ones
        for field in [*proto.field, *(f for n in proto.nested_type for f in n.field)]:
            field.ClearField("json_name")
    assert built == expected
    data = json_format.ParseDict(ORDER_VALUE, theirs()).SerializeToString()
    assert json_format.ParseDict(ORDER_VALUE, ours()).SerializeToString() == data
    assert json_format.MessageToDict(ours.FromString(data), preserving_proto_field_name=True) == ORDER_VALUE


def test_message_index_paths():
    schema = build(ORDER_PROTO, {})
    assert schema.message_names() == ["shop.v1.Order", "shop.v1.Empty"]
    assert schema.indexes_of(None) == [0]
    assert schema.indexes_of("Empty") == schema.indexes_of("shop.v1.Empty") == [1]
    assert schema.indexes_of(".shop.v1.Order.Line") == [0, 0]
    assert schema.message_class([0, 0]).DESCRIPTOR.full_name == "shop.v1.Order.Line"
    assert schema.message_class([0, 1]).DESCRIPTOR.full_name == "shop.v1.Order.LinesBySkuEntry"
    with pytest.raises(ValueError, match="no message 'Nope'"):
        schema.indexes_of("Nope")
    with pytest.raises(ValueError, match="has 2"):
        schema.message_class([2])


def test_proto2_defaults_required_and_imports_by_reference():
    common = 'syntax = "proto2"; package base; message Money { required int64 cents = 1; ' \
             'optional string currency = 2 [default = "EUR"]; }'
    main = 'syntax = "proto2"; package shop; import "base/money.proto"; message Price { ' \
           'optional base.Money amount = 1; repeated int32 tiers = 2 [packed = true]; }'
    schema = build(main, {"base/money.proto": common})
    price = schema.message_class([0])
    money = price.DESCRIPTOR.fields_by_name["amount"].message_type
    assert money.full_name == "base.Money"
    assert money.fields_by_name["currency"].default_value == "EUR"
    described = descriptor_pb2.DescriptorProto()
    money.CopyToProto(described)
    assert described.field[0].label == _F.LABEL_REQUIRED
    message = price(tiers=[1, 2])
    message.amount.cents = 5
    assert message.SerializeToString() == bytes.fromhex("0a020805120201 02".replace(" ", ""))


@pytest.mark.parametrize("text, imports, error", [
    ('syntax = "proto3"; message A { Missing m = 1; }', {}, "'Missing' .* is not defined"),
    ('syntax = "proto3"; import "other.proto"; message A {}', {}, "neither one of the schema's references"),
    ('syntax = "proto3"; message A { int32 a = 1 }', {}, "invalid Protobuf schema: line 1"),
    ('edition = "2023"; message A {}', {}, "editions"),
    ('syntax = "proto3"; message A { int32 a = 1; int32 b = 1; }', {}, "invalid Protobuf"),
    ('syntax = "proto2"; message A { optional group G = 1 { optional int32 x = 2; } }', {}, "groups"),
])
def test_proto_errors_are_clear(text, imports, error):
    with pytest.raises(ValueError, match=error):
        build(text, imports)


# -- the REST client against logbroker's registry ------------------------------------------------

USER_V1 = {"type": "record", "name": "User", "namespace": "shop", "fields": [{"name": "name", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int", "default": 0}]}
USER_BAD = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "email", "type": "string"}]}


def _avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema))


def test_rest_client_calls(url, topic):
    registry = SchemaRegistryClient(url + "/")
    subject = f"{topic}-value"
    assert sorted(registry.types()) == ["AVRO", "JSON", "PROTOBUF"]
    first = registry.register(subject, _avro(USER_V1))
    assert registry.register(subject, _avro(USER_V1)) == first  # the same schema: no new version
    assert subject in registry.subjects()
    assert registry.subjects(prefix=topic) == [subject]
    assert registry.versions(subject) == [1]
    assert json.loads(registry.schema(first).text) == USER_V1 and registry.schema(first).schema_type == "AVRO"
    assert registry.schema_uses(first) == [(subject, 1)]

    result = registry.check_compatibility(subject, _avro(USER_BAD))
    assert not result.is_compatible and "READER_FIELD_MISSING_DEFAULT_VALUE" in result.messages[0]
    assert registry.check_compatibility(subject, _avro(USER_V2)).is_compatible
    assert registry.check_compatibility(f"{topic}-new", _avro(USER_BAD)).is_compatible  # nothing to break
    with pytest.raises(SchemaRegistryError) as refused:
        registry.register(subject, _avro(USER_BAD))
    assert (refused.value.status, refused.value.error_code) == (409, 409)

    second = registry.register(subject, _avro(USER_V2))
    latest = registry.latest(subject)
    assert (latest.subject, latest.version, latest.schema_id) == (subject, 2, second)
    assert registry.version(subject, 1).schema_id == first
    assert registry.lookup(subject, _avro(USER_V1)).version == 1
    assert [v.version for v in registry.schemas(topic)] == [1, 2]
    assert [v.version for v in registry.schemas(topic, latest_only=True)] == [2]

    with pytest.raises(SchemaRegistryError) as missing:
        registry.compatibility(subject)
    assert missing.value.error_code == 40408
    assert registry.compatibility(subject, default_to_global=True) == registry.compatibility()
    assert registry.set_compatibility("full", subject) == "FULL"
    assert registry.compatibility(subject) == "FULL"
    assert registry.delete_compatibility(subject) == "FULL"
    with pytest.raises(SchemaRegistryError) as bad_level:
        registry.set_compatibility("SIDEWAYS", subject)
    assert bad_level.value.error_code == 42203

    assert registry.delete_version(subject, 1) == 1
    assert registry.versions(subject) == [2] and registry.versions(subject, deleted=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as not_first:
        registry.delete_subject(subject, permanent=True)
    assert not_first.value.error_code == 40405 and "40405" in str(not_first.value)
    assert registry.delete_subject(subject) == [2]
    assert registry.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in registry.subjects(deleted=True)
    for call, code in [(lambda: registry.versions(subject), 40401), (lambda: registry.schema(999_999), 40403),
                       (lambda: registry.lookup(f"{topic}-x", _avro(USER_V1)), 40401)]:
        with pytest.raises(SchemaRegistryError) as caught:
            call()
        assert caught.value.error_code == code and caught.value.status == 404


def test_subject_names_are_quoted(url):
    registry = SchemaRegistryClient(url)
    odd = f"a b?c#{uuid.uuid4().hex[:6]}-value"
    schema_id = registry.register(odd, _avro(USER_V1))
    assert registry.latest(odd).schema_id == schema_id and odd in registry.subjects()


def test_unreachable_registry_is_one_clear_error():
    registry = SchemaRegistryClient("http://127.0.0.1:1", timeout=2)
    with pytest.raises(SchemaRegistryUnreachableError, match="cannot reach the schema registry at "
                                                             "http://127.0.0.1:1: Connection refused"):
        registry.subjects()
    with pytest.raises(ValueError, match="not http"):
        SchemaRegistryClient("localhost:8081")


def test_basic_auth_with_a_broker_user(tmp_path):
    data = tmp_path / "secured"
    UserStore(data).add("alice", "s3cret")
    proc, secured = _start(data, 'security_protocol = "SASL_PLAINTEXT"')
    try:
        with pytest.raises(SchemaRegistryError) as refused:
            SchemaRegistryClient(secured).subjects()
        assert (refused.value.status, refused.value.error_code) == (401, 40101)
        with pytest.raises(SchemaRegistryError):
            SchemaRegistryClient(secured, user="alice", password="wrong").subjects()
        alice = SchemaRegistryClient(secured, user="alice", password="s3cret")
        assert alice.register("x-value", _avro(USER_V1)) == 1
        in_url = SchemaRegistryClient(secured.replace("http://", "http://alice:s3cret@"))
        assert in_url.subjects() == ["x-value"] and "s3cret" not in repr(in_url)
    finally:
        proc.kill()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_https_with_a_ca_file(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 the standard library's name
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'["over-tls-value"]'
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"https://127.0.0.1:{server.server_address[1]}"
        client = SchemaRegistryClient(address, ca_file=str(cert), user="bob", password="pw")
        assert client.subjects() == ["over-tls-value"]
        assert seen == [("/subjects", "Basic " + base64.b64encode(b"bob:pw").decode())]
        with pytest.raises(SchemaRegistryUnreachableError, match="TLS failed: .*certificate"):
            SchemaRegistryClient(address, timeout=5).subjects()
        with pytest.raises(ValueError, match="CA file"):
            SchemaRegistryClient(address, ca_file=str(tmp_path / "missing.pem"))
    finally:
        server.shutdown()
        server.server_close()


# -- serializers, both ways against confluent-kafka ------------------------------------------------

RICH_AVRO = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "prices", "type": {"type": "map", "values": "double"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["BOOK", "TOY"]}},
        {"name": "blob", "type": "bytes"},
        {"name": "line", "type": {"type": "record", "name": "Line", "fields": [{"name": "qty", "type": "int"}]}},
        {"name": "ok", "type": "boolean"},
    ],
}
RICH_VALUE = {"id": 2**40, "note": "ünïcode", "tags": ["a", "b"], "prices": {"x": 1.5}, "kind": "TOY",
              "blob": b"\x00\xff", "line": {"qty": -3}, "ok": True}


def test_avro_interop_both_ways(url, topic):
    confluent = ConfluentClient({"url": url})
    registry = SchemaRegistryClient(url)
    text = json.dumps(RICH_AVRO)
    theirs = AvroSerializer(confluent, text)(RICH_VALUE, _ctx(topic))
    ours = Serializer(registry, "AVRO", text).encode(topic, RICH_VALUE)
    assert ours == theirs  # the same subject, so the same id: every byte the same
    assert Deserializer(registry).decode(topic, theirs) == RICH_VALUE
    assert AvroDeserializer(ConfluentClient({"url": url}))(ours, _ctx(topic)) == RICH_VALUE
    assert registry.latest(f"{topic}-value").version == 1

    key = Serializer(registry, "avro", '"string"').encode(topic, "k-1", is_key=True)
    assert key == AvroSerializer(confluent, '"string"')("k-1", _ctx(topic, is_key=True))
    assert registry.versions(topic_subject(topic, is_key=True)) == [1]
    assert Deserializer(registry).decode(topic, key, is_key=True) == "k-1"


def test_avro_with_a_reference(url, topic):
    registry = SchemaRegistryClient(url)
    line = {"type": "record", "name": "Line", "namespace": "shop", "fields": [{"name": "qty", "type": "int"}]}
    registry.register(f"{topic}-line", _avro(line))
    order = {"type": "record", "name": "Order", "namespace": "shop",
             "fields": [{"name": "line", "type": "shop.Line"}]}
    ref = SchemaReference("shop.Line", f"{topic}-line", 1)
    data = Serializer(registry, "AVRO", json.dumps(order), references=[ref]).encode(topic, {"line": {"qty": 4}})
    assert registry.latest(f"{topic}-value").schema.references == (ref,)
    assert Deserializer(SchemaRegistryClient(url)).decode(topic, data) == {"line": {"qty": 4}}
    assert AvroDeserializer(ConfluentClient({"url": url}))(data, _ctx(topic)) == {"line": {"qty": 4}}


JSON_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "name": {"type": "string"},
                                                 "tags": {"type": "array", "items": {"type": "string"}}},
               "required": ["n"]}


def test_json_interop_both_ways(url, topic):
    confluent = ConfluentClient({"url": url})
    registry = SchemaRegistryClient(url)
    text = json.dumps(JSON_SCHEMA)
    value = {"n": 5, "name": "zoë", "tags": ["x"]}
    theirs = JSONSerializer(text, confluent)(value, _ctx(topic))
    serializer = Serializer(registry, "JSON", text)
    assert serializer.encode(topic, value) == theirs
    assert Deserializer(registry).decode(topic, theirs) == value
    assert JSONDeserializer(text, schema_registry_client=confluent)(serializer.encode(topic, value),
                                                                    _ctx(topic)) == value
    with pytest.raises(SerializationError, match="n: 'five' is not of type 'integer'"):
        serializer.encode(topic, {"n": "five"})
    with pytest.raises(SerializationError, match="'n' is a required property"):
        serializer.encode(topic, {})
    assert Serializer(registry, "JSON", text, validate=False).encode(topic, {}) == theirs[:5] + b"{}"
    checked = Deserializer(registry, validate=True)
    with pytest.raises(SerializationError, match="value of a record of .*'n' is a required property"):
        checked.decode(topic, theirs[:5] + b"{}")


def _shop_files() -> tuple[descriptor_pb2.FileDescriptorProto, descriptor_pb2.FileDescriptorProto]:
    """money.proto, and order.proto that imports it and Google's Timestamp."""
    money = descriptor_pb2.FileDescriptorProto(name="money.proto", package="shop", syntax="proto3")
    m = money.message_type.add(name="Money")
    m.field.add(name="cents", number=1, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    m.field.add(name="currency", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    order = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3",
                                               dependency=["money.proto", "google/protobuf/timestamp.proto"])
    header = order.message_type.add(name="Header")
    header.field.add(name="source", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    o = order.message_type.add(name="Order")
    o.field.add(name="id", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    o.field.add(name="price", number=2, type=_F.TYPE_MESSAGE, type_name=".shop.Money", label=_F.LABEL_OPTIONAL)
    o.field.add(name="at", number=3, type=_F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                label=_F.LABEL_OPTIONAL)
    o.field.add(name="lines", number=4, type=_F.TYPE_MESSAGE, type_name=".shop.Order.Line",
                label=_F.LABEL_REPEATED)
    line = o.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    line.field.add(name="qty", number=2, type=_F.TYPE_SINT32, label=_F.LABEL_OPTIONAL)
    return money, order


def test_protobuf_interop_both_ways(url, topic):
    pool = _classes(*_shop_files())
    order_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    line_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order.Line"))
    order = order_class(id="o-1", lines=[line_class(sku="b", qty=-2)])
    order.price.cents = 1999
    order.price.currency = "EUR"
    order.at.FromJsonString("2024-05-01T12:00:00Z")
    expected = json_format.MessageToDict(order, preserving_proto_field_name=True)

    confluent = ConfluentClient({"url": url})
    theirs = ProtobufSerializer(order_class, confluent, PLAIN)(order, _ctx(topic))
    assert theirs[5:7] == b"\x02\x02"  # the second message of its file: indexes [1]
    registry = SchemaRegistryClient(url)
    assert Deserializer(registry).decode(topic, theirs) == expected
    latest = registry.latest(f"{topic}-value")
    assert latest.schema.references == (SchemaReference("money.proto", "money.proto", 1),)

    # the registered text, looked up (not registered again): the same id, so every byte the same
    ours = Serializer(registry, "PROTOBUF", latest.schema.text, references=latest.schema.references,
                      auto_register=False, message_name="shop.Order")
    assert ours.encode(topic, expected) == theirs
    assert ProtobufDeserializer(order_class, PLAIN)(ours.encode(topic, expected), _ctx(topic)) == order
    assert ours.encode(topic, order) == theirs  # a message object is taken as it is

    nested = ProtobufSerializer(line_class, ConfluentClient({"url": url}), PLAIN)(
        line_class(sku="n", qty=3), _ctx(f"{topic}-lines"))
    assert nested[5:8] == b"\x04\x02\x00"  # indexes [1, 0]
    assert Deserializer(registry).decode(f"{topic}-lines", nested) == {"sku": "n", "qty": 3}


def test_protobuf_from_proto_text(url, topic):
    registry = SchemaRegistryClient(url)
    serializer = Serializer(registry, "PROTOBUF", ORDER_PROTO, message_name="Order")
    data = serializer.encode(topic, ORDER_VALUE)
    assert data[5:6] == b"\x00"
    assert Deserializer(registry).decode(topic, data) == ORDER_VALUE
    order_class = message_factory.GetMessageClass(_classes(_protoc_order()).FindMessageTypeByName("shop.v1.Order"))
    decoded = ProtobufDeserializer(order_class, PLAIN)(data, _ctx(topic))
    assert json_format.MessageToDict(decoded, preserving_proto_field_name=True) == ORDER_VALUE
    with pytest.raises(SerializationError, match="does not match message shop.v1.Order"):
        serializer.encode(topic, {"id": "x", "nope": 1})
    empty = Serializer(registry, "PROTOBUF", ORDER_PROTO, message_name="Empty").encode(topic, {})
    assert empty[5:] == b"\x02\x02" and Deserializer(registry).decode(topic, empty) == {}


def test_errors_and_tombstones(url, topic):
    registry = SchemaRegistryClient(url)
    text = json.dumps(USER_V1)
    with pytest.raises(SchemaRegistryError) as unregistered:
        Serializer(registry, "AVRO", text, auto_register=False).encode(topic, {"name": "a"})
    assert unregistered.value.error_code == 40401
    data = Serializer(registry, "AVRO", text).encode(topic, {"name": "a"})
    assert Serializer(registry, "AVRO", text, auto_register=False).encode(topic, {"name": "a"}) == data
    with pytest.raises(SerializationError, match="User.name is <1>"):
        Serializer(registry, "AVRO", text).encode(topic, {"name": 1})
    with pytest.raises(SchemaRegistryError) as incompatible:
        Serializer(registry, "AVRO", json.dumps(USER_BAD)).encode(topic, {"name": "a", "email": "e"})
    assert incompatible.value.error_code == 409
    with pytest.raises(SerializationError, match="invalid Avro schema"):
        Serializer(registry, "AVRO", '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]}'
                   ).encode(topic, {"a": 1})
    with pytest.raises(ValueError, match="unknown schema type"):
        Serializer(registry, "XML", "<x/>")

    deserializer = Deserializer(registry)
    assert deserializer.decode(topic, None) is None
    assert Serializer(registry, "AVRO", text).encode(topic, None) is None
    with pytest.raises(SerializationError, match=f"the key of a record of {topic}: not in Confluent's wire format"):
        deserializer.decode(topic, b"plain text", is_key=True)
    with pytest.raises(SerializationError, match=r"\(schema \d+, AVRO\): not Avro"):
        deserializer.decode(topic, data[:5] + b"\x10ab")  # a string of 8 bytes, 2 there
    with pytest.raises(SchemaRegistryError) as unknown:
        deserializer.decode(topic, frame(999_999, b""))
    assert unknown.value.error_code == 40403


async def test_async_variants_fetch_in_a_thread(url, topic):
    registry = SchemaRegistryClient(url)
    serializer = Serializer(registry, "AVRO", json.dumps(USER_V2))
    deserializer = Deserializer(registry)
    loop_thread = threading.get_ident()
    fetched_in = []
    original = registry.request

    def spy(*args, **kwargs):
        fetched_in.append(threading.get_ident())
        return original(*args, **kwargs)

    registry.request = spy
    data = await serializer.encode_async(topic, {"name": "a", "age": 3})
    assert await deserializer.decode_async(topic, data) == {"name": "a", "age": 3}
    assert fetched_in and loop_thread not in fetched_in
    calls = len(fetched_in)
    with trio.fail_after(5):
        assert await serializer.encode_async(topic, {"name": "b", "age": 4}) == serializer.encode(
            topic, {"name": "b", "age": 4})
        assert await deserializer.decode_async(topic, data) == {"name": "a", "age": 3}
    assert len(fetched_in) == calls  # cached: no second call
    assert await serializer.encode_async(topic, None) is None
