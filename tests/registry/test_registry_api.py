"""The schema registry of a real ``logbroker serve``: Confluent's REST API as
raw HTTP (status codes, error codes, content types) and through
confluent-kafka's SchemaRegistryClient and serializers, ids kept across a
restart, and the ``_schemas`` records in Confluent's format."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from logbroker.broker.security import UserStore

CT = "application/vnd.schemaregistry.v1+json"
_REGISTRY_LINE = re.compile(r"schema registry on http://\S+:(\d+)/")

USER_V1 = {"type": "record", "name": "User", "namespace": "shop",
           "fields": [{"name": "name", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int", "default": 0}]}
USER_NO_DEFAULT = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "email", "type": "string"}]}


def registry_port(proc, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _REGISTRY_LINE.search(proc.log)
        if found:
            return int(found.group(1))
        time.sleep(0.02)
    raise AssertionError(f"no schema registry line in the broker log:\n{proc.log}")


def start_with_registry(broker_factory, tmp_path, *extra: str, data_dir=None):
    config = tmp_path / "registry.toml"
    config.write_text("schema_registry_port = 0\n" + "".join(line + "\n" for line in extra))
    proc = broker_factory("--config", str(config), data_dir=data_dir)
    return proc, f"http://127.0.0.1:{registry_port(proc)}"


class Http:
    def __init__(self, url: str, auth: tuple[str, str] | None = None) -> None:
        self.url = url
        self.auth = auth

    def __call__(self, method: str, path: str, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", CT)
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, response.headers.get("Content-Type", ""), _json(raw)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), _json(exc.read())


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


@pytest.fixture
def registry(broker_factory, tmp_path):
    proc, url = start_with_registry(broker_factory, tmp_path)
    return proc, url, Http(url)


def _register(http, subject, schema, **extra):
    body = {"schema": json.dumps(schema) if not isinstance(schema, str) else schema, **extra}
    return http("POST", f"/subjects/{subject}/versions", body)


def test_register_read_back_and_error_codes(registry):
    _, _, http = registry
    status, content_type, body = _register(http, "users-value", USER_V1)
    assert status == 200 and content_type.startswith(CT) and body == {"id": 1}
    # the same schema, spelled differently: the same id, no new version
    spaced = json.dumps(USER_V1, indent=4)
    assert _register(http, "users-value", spaced)[2] == {"id": 1}
    assert http("GET", "/subjects/users-value/versions")[2] == [1]
    # the same schema under another subject keeps its global id
    assert _register(http, "other-value", USER_V1)[2] == {"id": 1}
    assert _register(http, "users-value", USER_V2)[2] == {"id": 2}
    status, _, latest = http("GET", "/subjects/users-value/versions/latest")
    assert status == 200 and latest["version"] == 2 and latest["id"] == 2 and "schemaType" not in latest
    assert json.loads(latest["schema"]) == USER_V2
    assert json.loads(http("GET", "/schemas/ids/1")[2]["schema"]) == USER_V1
    assert http("GET", "/schemas/ids/1/schema")[2] == USER_V1
    assert sorted(map(tuple, (d.values() for d in http("GET", "/schemas/ids/1/versions")[2]))) == [
        ("other-value", 1), ("users-value", 1)]
    assert http("GET", "/subjects")[2] == ["other-value", "users-value"]
    assert http("GET", "/schemas/types")[2] == ["JSON", "PROTOBUF", "AVRO"]
    # lookup
    status, _, found = http("POST", "/subjects/users-value", {"schema": json.dumps(USER_V2)})
    assert status == 200 and (found["version"], found["id"]) == (2, 2)

    # Confluent's error bodies and codes
    assert http("GET", "/subjects/nope/versions")[0:3:2] == (404, {"error_code": 40401,
                                                                  "message": "Subject 'nope' not found."})
    assert http("GET", "/subjects/users-value/versions/9")[2]["error_code"] == 40402
    assert http("GET", "/subjects/users-value/versions/zero")[2]["error_code"] == 42202
    assert http("GET", "/schemas/ids/99")[2]["error_code"] == 40403
    assert http("POST", "/subjects/users-value", {"schema": json.dumps({"type": "string"})})[2]["error_code"] == 40403
    status, _, bad = _register(http, "users-value", '{"type": "recrod"}')
    assert status == 422 and bad["error_code"] == 42201
    status, _, incompatible = _register(http, "users-value", USER_NO_DEFAULT)
    assert status == 409 and incompatible["error_code"] == 409
    status, _, _ = http("PUT", "/config", {"compatibility": "SIDEWAYS"})
    assert status == 422
    assert http("GET", "/config/users-value")[2]["error_code"] == 40408
    assert http("GET", "/config/users-value?defaultToGlobal=true")[2] == {"compatibilityLevel": "BACKWARD"}
    assert http("GET", "/nothing/here")[0] == 404
    assert http("PATCH", "/subjects")[0] == 405


def test_compatibility_levels_decide(registry):
    _, _, http = registry
    _register(http, "evolving", USER_V1)
    check = http("POST", "/compatibility/subjects/evolving/versions/latest?verbose=true",
                 {"schema": json.dumps(USER_NO_DEFAULT)})[2]
    assert check["is_compatible"] is False and check["messages"]
    assert http("POST", "/compatibility/subjects/evolving/versions/latest",
                {"schema": json.dumps(USER_V2)})[2] == {"is_compatible": True}
    # FORWARD: a new required field is fine (old readers ignore it), removing one without default is not
    assert http("PUT", "/config/evolving", {"compatibility": "FORWARD"})[2] == {"compatibility": "FORWARD"}
    assert _register(http, "evolving", USER_NO_DEFAULT)[0] == 200
    # old readers (with a required email) cannot read records without one
    assert _register(http, "evolving", USER_V2)[0] == 409
    # a schema the subject already holds is answered with its id, whatever the level
    assert _register(http, "evolving", USER_V1)[2] == {"id": 1}
    assert http("DELETE", "/config/evolving")[2] == {"compatibilityLevel": "FORWARD"}
    assert http("PUT", "/config", {"compatibility": "NONE"})[0] == 200
    assert _register(http, "evolving", {"type": "string"})[0] == 200


def test_soft_and_permanent_delete(registry):
    _, _, http = registry
    _register(http, "doomed", USER_V1)
    _register(http, "doomed", USER_V2)
    assert http("DELETE", "/subjects/doomed/versions/1?permanent=true")[2]["error_code"] == 40407
    assert http("DELETE", "/subjects/doomed/versions/1")[2] == 1
    assert http("DELETE", "/subjects/doomed/versions/1")[2]["error_code"] == 40406
    assert http("GET", "/subjects/doomed/versions")[2] == [2]
    assert http("GET", "/subjects/doomed/versions?deleted=true")[2] == [1, 2]
    assert http("GET", "/subjects/doomed/versions/1?deleted=true")[0] == 200
    assert http("DELETE", "/subjects/doomed/versions/1?permanent=true")[2] == 1
    assert http("DELETE", "/subjects/doomed?permanent=true")[2]["error_code"] == 40405
    assert http("DELETE", "/subjects/doomed")[2] == [2]
    assert http("GET", "/subjects")[2] == []
    assert http("GET", "/subjects?deleted=true")[2] == ["doomed"]
    assert http("DELETE", "/subjects/doomed?permanent=true")[2] == [2]
    assert http("GET", "/subjects?deleted=true")[2] == []
    # ids are never reused, even after every schema that had them is gone
    assert _register(http, "fresh", {"type": "string"})[2] == {"id": 3}


def test_references_between_subjects(registry):
    _, _, http = registry
    address = {"type": "record", "name": "Address", "namespace": "shop",
               "fields": [{"name": "city", "type": "string"}]}
    _register(http, "address", address)
    person = {"type": "record", "name": "Person", "namespace": "shop",
              "fields": [{"name": "home", "type": "shop.Address"}]}
    refs = [{"name": "shop.Address", "subject": "address", "version": 1}]
    status, _, body = _register(http, "person-value", person, references=refs)
    assert status == 200, body
    got = http("GET", "/subjects/person-value/versions/1")[2]
    assert got["references"] == refs
    assert http("GET", "/subjects/address/versions/1/referencedby")[2] == [body["id"]]
    assert http("DELETE", "/subjects/address/versions/1")[2]["error_code"] == 42206
    missing = _register(http, "broken", person, references=[{"name": "shop.Address", "subject": "nope",
                                                              "version": 1}])
    assert missing[0] == 422


def test_modes(registry):
    _, _, http = registry
    assert http("GET", "/mode")[2] == {"mode": "READWRITE"}
    assert http("PUT", "/mode/frozen", {"mode": "READONLY"})[2] == {"mode": "READONLY"}
    status, _, body = _register(http, "frozen", USER_V1)
    assert status == 422 and body["error_code"] == 42205
    assert http("DELETE", "/mode/frozen")[2] == {"mode": "READONLY"}
    assert _register(http, "frozen", USER_V1)[0] == 200


def test_ids_and_settings_survive_a_restart_and_topic_is_confluents_format(broker_factory, tmp_path):
    data = tmp_path / "kept"
    proc, url = start_with_registry(broker_factory, tmp_path, data_dir=data)
    http = Http(url)
    assert _register(http, "a-value", USER_V1)[2] == {"id": 1}
    assert _register(http, "a-value", USER_V2)[2] == {"id": 2}
    http("PUT", "/config/a-value", {"compatibility": "FULL"})
    http("DELETE", "/subjects/a-value/versions/1")
    proc.kill()  # no clean shutdown: acknowledged registrations are fsynced
    proc2, url2 = start_with_registry(broker_factory, tmp_path, data_dir=data)
    http = Http(url2)
    assert http("GET", "/subjects/a-value/versions")[2] == [2]
    assert http("GET", "/subjects/a-value/versions/latest")[2]["id"] == 2
    assert http("GET", "/config/a-value")[2] == {"compatibilityLevel": "FULL"}
    assert _register(http, "b-value", {"type": "string"})[2] == {"id": 3}

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=proc2.bootstrap, consumer_timeout_ms=3000)
    consumer.assign([TopicPartition("_schemas", 0)])
    consumer.seek_to_beginning()
    records = [(json.loads(m.key), None if m.value is None else json.loads(m.value)) for m in consumer]
    consumer.close()
    schema_keys = [k for k, _ in records if k["keytype"] == "SCHEMA"]
    assert {"keytype": "SCHEMA", "subject": "a-value", "version": 1, "magic": 1} in schema_keys
    value = next(v for k, v in records if k == {"keytype": "SCHEMA", "subject": "a-value", "version": 2, "magic": 1})
    assert value["id"] == 2 and value["deleted"] is False and json.loads(value["schema"]) == USER_V2
    assert ({"keytype": "CONFIG", "subject": "a-value", "magic": 0}, {"compatibilityLevel": "FULL"}) in records


def test_confluent_client_and_serializers(registry):
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    proc, url, _ = registry
    client = SchemaRegistryClient({"url": url})
    ctx = SerializationContext("people", MessageField.VALUE)

    avro = AvroSerializer(client, json.dumps(USER_V2))
    data = avro({"name": "ann", "age": 7}, ctx)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") >= 1
    assert AvroDeserializer(client)(data, ctx) == {"name": "ann", "age": 7}
    latest = client.get_latest_version("people-value")
    assert latest.version == 1 and json.loads(latest.schema.schema_str) == USER_V2

    json_schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    js = JSONSerializer(json.dumps(json_schema), client)
    jctx = SerializationContext("numbers", MessageField.VALUE)
    blob = js({"n": 5}, jctx)
    assert JSONDeserializer(json.dumps(json_schema))(blob, jctx) == {"n": 5}
    assert client.get_latest_version("numbers-value").schema.schema_type == "JSON"

    client.set_compatibility("people-value", "BACKWARD")
    assert client.get_compatibility("people-value") == "BACKWARD"
    assert client.test_compatibility("people-value", Schema(json.dumps(USER_V1), "AVRO")) is True
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("people-value", Schema(json.dumps({**USER_V2, "fields": [
            *USER_V2["fields"], {"name": "must", "type": "long"}]}), "AVRO"))
    assert refused.value.http_status_code == 409
    assert client.get_subjects() == ["numbers-value", "people-value"]
    assert client.delete_subject("numbers-value") == [1]
    assert client.delete_subject("numbers-value", permanent=True) == [1]
    assert client.get_subjects() == ["people-value"]


def test_protobuf_serializer(registry):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3")
    message = fd.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    message.field.add(name="item", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    order_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))

    _, url, http = registry
    client = SchemaRegistryClient({"url": url})
    ctx = SerializationContext("orders", MessageField.VALUE)
    serializer = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
    data = serializer(order_class(id=42, item="lamp"), ctx)
    assert data[:1] == b"\x00"
    decoded = ProtobufDeserializer(order_class, {"use.deprecated.format": False})(data, ctx)
    assert (decoded.id, decoded.item) == (42, "lamp")
    latest = http("GET", "/subjects/orders-value/versions/latest")[2]
    assert latest["schemaType"] == "PROTOBUF" and "message Order" in latest["schema"]


def test_basic_auth_with_sasl_users(broker_factory, tmp_path):
    data = tmp_path / "secured"
    UserStore(data).add("alice", "s3cret")
    proc, url = start_with_registry(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"', data_dir=data)
    status, _, body = Http(url)("GET", "/subjects")
    assert status == 401 and body["error_code"] == 40101
    assert Http(url, ("alice", "wrong"))("GET", "/subjects")[0] == 401
    assert Http(url, ("alice", "s3cret"))("GET", "/subjects")[0:3:2] == (200, [])
    assert _register(Http(url, ("alice", "s3cret")), "x-value", USER_V1)[2] == {"id": 1}

    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": url, "basic.auth.user.info": "alice:s3cret"})
    assert client.get_subjects() == ["x-value"]


def test_serve_flags_turn_the_registry_and_the_console_on(broker_factory):
    proc = broker_factory("--schema-registry-port", "0", "--console-port", "0", "--console-read-only")
    http = Http(f"http://127.0.0.1:{registry_port(proc)}")
    assert http("GET", "/subjects")[0:3:2] == (200, [])
    console = re.search(r"console on http://\S+:(\d+)/", proc.log)
    assert console is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{console.group(1)}/", timeout=10) as page:
        assert "read-only" in page.read().decode()


def test_acls_guard_subjects_by_their_topic(broker_factory, tmp_path):
    from logbroker.broker.security import Acl, Authorizer

    data = tmp_path / "acl"
    users = UserStore(data)
    users.add("alice", "a-pw")
    users.add("bob", "b-pw")
    acls = Authorizer(data)
    acls.add(Acl("User:alice", "topic", "*", "all"))
    acls.add(Acl("User:alice", "cluster", "kafka-cluster", "all"))
    acls.add(Acl("User:bob", "topic", "orders", "describe"))
    proc, url = start_with_registry(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"',
                                    "authorizer_enable = true", data_dir=data)
    alice, bob = Http(url, ("alice", "a-pw")), Http(url, ("bob", "b-pw"))
    assert _register(alice, "orders-value", USER_V1)[2] == {"id": 1}
    assert _register(alice, "payments-value", USER_V1)[2] == {"id": 1}
    # bob may read the subjects of orders (DESCRIBE), not write them, and not see payments at all
    assert bob("GET", "/subjects")[2] == ["orders-value"]
    assert bob("GET", "/subjects/orders-value/versions/1")[0] == 200
    status, _, body = _register(bob, "orders-value", USER_V2)
    assert status == 403 and body["error_code"] == 40301
    assert bob("GET", "/subjects/payments-value/versions")[0] == 403
    assert bob("PUT", "/config", {"compatibility": "NONE"})[0] == 403
    assert bob("GET", "/schemas/ids/1")[0] == 200  # ids are readable by any user: consumers decode with them
    assert alice("PUT", "/config", {"compatibility": "NONE"})[0] == 200


def _shop_classes():
    """Message classes of ``shop/order.proto``, which imports ``shop/money.proto``
    (a file in a directory) and ``google/protobuf/timestamp.proto``, built at
    run time as protoc's generated modules would register them."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    field = descriptor_pb2.FieldDescriptorProto
    money = descriptor_pb2.FileDescriptorProto(name="shop/money.proto", package="shop", syntax="proto3")
    m = money.message_type.add(name="Money")
    m.field.add(name="currency", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    m.field.add(name="cents", number=2, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    order = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3",
                                               dependency=["shop/money.proto", "google/protobuf/timestamp.proto"])
    o = order.message_type.add(name="Order")
    o.field.add(name="id", number=1, type=field.TYPE_INT64, label=field.LABEL_OPTIONAL)
    o.field.add(name="total", number=2, type=field.TYPE_MESSAGE, type_name=".shop.Money",
                label=field.LABEL_OPTIONAL)
    o.field.add(name="placed_at", number=3, type=field.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                label=field.LABEL_OPTIONAL)
    o.field.add(name="items", number=4, type=field.TYPE_STRING, label=field.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(money)
    pool.Add(order)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def test_protobuf_serializer_with_imports_and_a_cold_deserializer(registry):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2

    order_class = _shop_classes()
    _, url, http = registry
    ctx = SerializationContext("orders", MessageField.VALUE)
    serializer = ProtobufSerializer(order_class, SchemaRegistryClient({"url": url}),
                                    {"use.deprecated.format": False})
    order = order_class(id=7, items=["lamp", "bulb"])
    order.total.currency, order.total.cents = "EUR", 1999
    order.placed_at.seconds = 1_700_000_000
    data = serializer(order, ctx)
    # the import was registered under its import path; the well-known type was not
    assert http("GET", "/subjects")[2] == ["orders-value", "shop/money.proto"]
    latest = http("GET", "/subjects/orders-value/versions/latest")[2]
    assert latest["references"] == [{"name": "shop/money.proto", "subject": "shop/money.proto", "version": 1}]
    assert 'import "shop/money.proto";' in latest["schema"]

    # a new client: nothing cached, so the writer's schema and its import are fetched as descriptors
    deserializer = ProtobufDeserializer(order_class, {"use.deprecated.format": False},
                                        SchemaRegistryClient({"url": url}))
    decoded = deserializer(data, ctx)
    assert decoded == order and decoded.total.cents == 1999 and list(decoded.items) == ["lamp", "bulb"]

    serialized = http("GET", f"/schemas/ids/{latest['id']}?format=serialized")[2]
    fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(serialized["schema"]))
    assert list(fd.dependency) == ["shop/money.proto", "google/protobuf/timestamp.proto"]
    assert [f.type_name for f in fd.message_type[0].field] == ["", ".shop.Money", ".google.protobuf.Timestamp", ""]
    assert serialized["references"] == latest["references"]


def test_subjects_with_a_slash_and_serialized_descriptors(registry):
    from google.protobuf import descriptor_pb2

    _, _, http = registry
    money = 'syntax = "proto3";\npackage shop;\nmessage Money {\n  int64 cents = 1;\n}\n'
    assert _register(http, "shop%2Fmoney.proto", money, schemaType="PROTOBUF")[0:3:2] == (200, {"id": 1})
    assert http("GET", "/subjects")[2] == ["shop/money.proto"]
    assert http("GET", "/subjects/shop%2Fmoney.proto/versions")[2] == [1]
    got = http("GET", "/subjects/shop%2Fmoney.proto/versions/1")[2]
    assert (got["subject"], got["id"], got["schema"]) == ("shop/money.proto", 1, money)
    assert http("GET", "/subjects/shop%2fmoney.proto/versions/latest/schema")[2] == money  # lower-case escape
    assert http("POST", "/subjects/shop%2Fmoney.proto", {"schema": money, "schemaType": "PROTOBUF"})[2][
        "version"] == 1
    assert http("PUT", "/config/shop%2Fmoney.proto", {"compatibility": "FULL"})[2] == {"compatibility": "FULL"}
    assert http("GET", "/config/shop%2Fmoney.proto")[2] == {"compatibilityLevel": "FULL"}
    assert http("GET", "/mode/shop%2Fmoney.proto?defaultToGlobal=true")[2] == {"mode": "READWRITE"}
    assert http("GET", "/subjects/shop/money.proto/versions")[0] == 404  # an unencoded slash is two segments
    # a literal "%2F" in a name (sent as %252F) is another subject than "shop/money.proto"
    assert _register(http, "odd%252Fname", money, schemaType="PROTOBUF")[2] == {"id": 1}
    assert http("GET", "/subjects")[2] == ["odd%2Fname", "shop/money.proto"]

    order = ('syntax = "proto3";\npackage shop;\nimport "shop/money.proto";\n'
             "message Order {\n  Money total = 1;\n}\n")
    refs = [{"name": "shop/money.proto", "subject": "shop/money.proto", "version": 1}]
    status, _, body = _register(http, "orders-value", order, schemaType="PROTOBUF", references=refs)
    assert status == 200, body
    assert http("GET", "/subjects/shop%2Fmoney.proto/versions/1/referencedby")[2] == [body["id"]]

    def descriptor(answer):
        return descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(answer["schema"], validate=True))

    by_id = http("GET", f"/schemas/ids/{body['id']}?format=serialized")[2]
    fd = descriptor(by_id)
    assert (fd.package, list(fd.dependency), fd.message_type[0].name) == ("shop", ["shop/money.proto"], "Order")
    assert fd.message_type[0].field[0].type_name == ".shop.Money"
    assert by_id["references"] == refs and by_id["schemaType"] == "PROTOBUF"
    imported = descriptor(http("GET", "/subjects/shop%2Fmoney.proto/versions/1?format=serialized&deleted=true")[2])
    assert [m.name for m in imported.message_type] == ["Money"]
    looked_up = http("POST", "/subjects/orders-value?format=serialized", {"schema": order, "schemaType": "PROTOBUF",
                                                                         "references": refs})[2]
    assert descriptor(looked_up) == fd
    # without the format, or for other types, the schema as registered
    assert http("GET", f"/schemas/ids/{body['id']}")[2]["schema"] == order
    _register(http, "users-value", USER_V1)
    avro = http("GET", "/subjects/users-value/versions/1?format=serialized")[2]
    assert json.loads(avro["schema"]) == USER_V1

    # deleting: the referenced subject only once nothing uses it
    assert http("DELETE", "/subjects/shop%2Fmoney.proto")[2]["error_code"] == 42206
    assert http("DELETE", "/subjects/orders-value")[2] == [1]
    assert http("DELETE", "/subjects/shop%2Fmoney.proto/versions/1")[2] == 1
    assert http("GET", "/subjects/shop%2Fmoney.proto/versions")[2]["error_code"] == 40401
    assert http("DELETE", "/subjects/shop%2Fmoney.proto?permanent=true")[2] == [1]
    assert http("GET", "/subjects?deleted=true")[2] == ["odd%2Fname", "orders-value", "users-value"]
