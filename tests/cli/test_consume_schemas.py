"""``logbroker consume --value-format/--key-format``: records written with
confluent-kafka's schema registry serializers printed as JSON."""

from __future__ import annotations

import json
import re
import time

from click.testing import CliRunner

from logbroker.cli.main import main

USER = {"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"},
                                                     {"name": "age", "type": "int"}]}


def _broker(broker_factory, tmp_path):
    config = tmp_path / "registry.toml"
    config.write_text("schema_registry_port = 0\n")
    proc = broker_factory("--config", str(config))
    deadline = time.monotonic() + 15
    while (found := re.search(r"schema registry on http://\S+:(\d+)/", proc.log)) is None:
        assert time.monotonic() < deadline, proc.log
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{found.group(1)}"


def test_avro_and_json_values_and_keys_print_as_json(broker_factory, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    proc, url = _broker(broker_factory, tmp_path)
    registry = SchemaRegistryClient({"url": url})
    value_ctx = SerializationContext("users", MessageField.VALUE)
    key_ctx = SerializationContext("users", MessageField.KEY)
    avro = AvroSerializer(registry, json.dumps(USER))
    key_schema = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}}})
    keys = JSONSerializer(key_schema, registry)
    producer = Producer({"bootstrap.servers": proc.bootstrap})
    for i, name in enumerate(["ann", "bob"]):
        producer.produce("users", avro({"name": name, "age": 30 + i}, value_ctx), key=keys({"id": i}, key_ctx),
                         partition=0)
    producer.produce("users", b"not schema-encoded", partition=0)
    assert producer.flush(10) == 0

    base = ["consume", "users", "-b", proc.bootstrap, "--from-beginning", "-e", "--schema-registry", url]
    result = CliRunner().invoke(main, [*base, "--value-format", "avro", "--key-format", "json", "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["key"], r["value"]) for r in rows[:2]] == [({"id": 0}, {"name": "ann", "age": 30}),
                                                          ({"id": 1}, {"name": "bob", "age": 31})]
    assert rows[2]["value"] == "not schema-encoded"  # printed as it is, with a warning
    assert "offset 2" in result.stderr

    text = CliRunner().invoke(main, [*base, "--value-format", "schema", "-K", "="])
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[0].endswith('={"name":"ann","age":30}')

    wrong = CliRunner().invoke(main, [*base, "--value-format", "protobuf", "-n", "1"])
    assert wrong.exit_code == 0 and "its schema is AVRO, not PROTOBUF" in wrong.stderr


def test_produce_encodes_with_a_schema_that_confluent_kafka_decodes(broker_factory, tmp_path):
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    proc, url = _broker(broker_factory, tmp_path)
    schema = tmp_path / "user.avsc"
    schema.write_text(json.dumps(USER))
    key_schema_text = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}}})
    key_schema = tmp_path / "key.json"
    key_schema.write_text(key_schema_text)
    lines = '{"id": 1}|{"name": "ann", "age": 30}\n{"id": 2}|{"name": "bob", "age": 31}\n{"id": 3}|{"name": 7}\n'
    result = CliRunner().invoke(main, [
        "produce", "people", "-b", proc.bootstrap, "--schema-registry", url, "-K", "|", "-p", "0",
        "--value-format", "avro", "--value-schema", str(schema), "--key-format", "json", "--key-schema",
        str(key_schema)], input=lines)
    assert result.exit_code == 1, result.output  # the third line does not fit the schema
    assert "line 3" in result.output and "produced 2 records" in result.output

    registry = SchemaRegistryClient({"url": url})
    consumer = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": "check", "auto.offset.reset": "earliest"})
    consumer.subscribe(["people"])
    got, deadline = [], time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg)
    consumer.close()
    values = SerializationContext("people", MessageField.VALUE)
    keys = SerializationContext("people", MessageField.KEY)
    assert [AvroDeserializer(registry)(m.value(), values) for m in got] == [{"name": "ann", "age": 30},
                                                                           {"name": "bob", "age": 31}]
    assert [JSONDeserializer(key_schema_text)(m.key(), keys) for m in got] == [{"id": 1}, {"id": 2}]
    assert registry.get_latest_version("people-value").schema.schema_type == "AVRO"

    # and back through consume, which prints the same JSON
    out = CliRunner().invoke(main, ["consume", "people", "-b", proc.bootstrap, "--from-beginning", "-e",
                                    "--schema-registry", url, "--value-format", "avro", "--key-format", "json",
                                    "-f", "json"])
    assert [(r["key"], r["value"]) for r in map(json.loads, out.stdout.splitlines())] == [
        ({"id": 1}, {"name": "ann", "age": 30}), ({"id": 2}, {"name": "bob", "age": 31})]
